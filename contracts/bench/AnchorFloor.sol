// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAuditAnchor} from "../interfaces/IAuditAnchor.sol";
import {RFC9162} from "../lib/RFC9162.sol";

/// @title AnchorFloorBase
/// @notice Benchmark harness: the cheapest honest form of `AuditAnchor.anchor`, a gas lower
/// bound for any contract that stores every checkpoint's root and checks an RFC 9162 §2.1.4
/// consistency proof on chain. It keeps only what anchoring cannot avoid:
/// - one slot `_head` holding the previous checkpoint's size and the checkpoint count, read and
///   rewritten by every call (the proof is checked against the previous size);
/// - one new slot per checkpoint, `_roots[seq]`, holding its root (the previous root is read
///   back from it);
/// - the consistency check with the SHA-256 precompile: {RFC9162-isConsistent}, the very code
///   `AuditAnchor` uses.
/// It stores no block number or timestamp and has no access control and no event: the
/// derived contracts add a single immutable owner check and the {IAuditAnchor.CheckpointAnchored}
/// event, so the benchmark shows what each costs.
/// @dev Used only by scripts/bench_anchor_gas.py; not deployed in production. `_head` is
/// `previousSize | count << 64`. The ABI of `anchor` is AuditAnchor's, so both receive the same
/// calldata bytes.
abstract contract AnchorFloorBase {
    /// @notice `newSize` is not greater than the previous checkpoint's size.
    error AnchorFloorSizeNotIncreasing(uint64 previousSize, uint64 newSize);

    /// @notice The first checkpoint takes no consistency proof.
    error AnchorFloorUnexpectedProof(uint256 proofLength);

    /// @notice The consistency proof does not prove that `(newSize, newRoot)` extends the
    /// previous checkpoint.
    error AnchorFloorInconsistentCheckpoint();

    /// @notice The caller is not the owner (owned variants only).
    error AnchorFloorUnauthorized(address caller);

    uint256 private _head;
    mapping(uint256 seq => bytes32 root) private _roots;

    /// @notice The checkpoint count and the latest checkpoint's size and root.
    function latest() external view returns (uint256 count, uint64 size, bytes32 root) {
        uint256 head = _head;
        count = head >> 64;
        // forge-lint: disable-next-line(unsafe-typecast)
        size = uint64(head); // the low 64 bits are the size
        root = count == 0 ? bytes32(0) : _roots[count - 1];
    }

    /// @dev Checks and stores checkpoint `(newSize, newRoot)`; returns its sequence number.
    function _anchor(uint64 newSize, bytes32 newRoot, bytes32[] calldata proof) internal returns (uint256 seq) {
        uint256 head = _head;
        // forge-lint: disable-next-line(unsafe-typecast)
        uint64 previousSize = uint64(head); // the low 64 bits are the size
        seq = head >> 64;
        if (newSize <= previousSize) {
            revert AnchorFloorSizeNotIncreasing(previousSize, newSize);
        }
        if (seq == 0) {
            if (proof.length != 0) {
                revert AnchorFloorUnexpectedProof(proof.length);
            }
        } else if (!RFC9162.isConsistent(previousSize, newSize, _roots[seq - 1], newRoot, proof)) {
            revert AnchorFloorInconsistentCheckpoint();
        }
        _roots[seq] = newRoot;
        _head = ((seq + 1) << 64) | newSize;
    }

}

/// @notice The floor alone: no access control, no event.
contract AnchorFloor is AnchorFloorBase {
    /// @notice Anchors `(newSize, newRoot)`; same ABI and checks as `AuditAnchor.anchor`.
    function anchor(uint64 newSize, bytes32 newRoot, bytes32[] calldata consistencyProof)
        external
        returns (uint256 seq)
    {
        seq = _anchor(newSize, newRoot, consistencyProof);
    }
}

/// @notice The floor with the cheapest access control: one immutable owner address.
contract AnchorFloorOwned is AnchorFloorBase {
    address private immutable _owner;

    constructor(address owner) {
        _owner = owner;
    }

    /// @notice Anchors `(newSize, newRoot)`; only the owner may call.
    function anchor(uint64 newSize, bytes32 newRoot, bytes32[] calldata consistencyProof)
        external
        returns (uint256 seq)
    {
        if (msg.sender != _owner) {
            revert AnchorFloorUnauthorized(msg.sender);
        }
        seq = _anchor(newSize, newRoot, consistencyProof);
    }
}

/// @notice The floor with AuditAnchor's {IAuditAnchor.CheckpointAnchored} event.
contract AnchorFloorEvent is AnchorFloorBase {
    /// @notice Anchors `(newSize, newRoot)` and emits {IAuditAnchor.CheckpointAnchored}.
    function anchor(uint64 newSize, bytes32 newRoot, bytes32[] calldata consistencyProof)
        external
        returns (uint256 seq)
    {
        seq = _anchor(newSize, newRoot, consistencyProof);
        emit IAuditAnchor.CheckpointAnchored(seq, newSize, newRoot);
    }
}

/// @notice The floor with both the immutable owner check and the event.
contract AnchorFloorOwnedEvent is AnchorFloorBase {
    address private immutable _owner;

    constructor(address owner) {
        _owner = owner;
    }

    /// @notice Anchors `(newSize, newRoot)` and emits {IAuditAnchor.CheckpointAnchored}; only
    /// the owner may call.
    function anchor(uint64 newSize, bytes32 newRoot, bytes32[] calldata consistencyProof)
        external
        returns (uint256 seq)
    {
        if (msg.sender != _owner) {
            revert AnchorFloorUnauthorized(msg.sender);
        }
        seq = _anchor(newSize, newRoot, consistencyProof);
        emit IAuditAnchor.CheckpointAnchored(seq, newSize, newRoot);
    }
}
