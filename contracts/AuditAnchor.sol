// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {IAuditAnchor} from "./interfaces/IAuditAnchor.sol";
import {RFC9162} from "./lib/RFC9162.sol";

/// @title AuditAnchor
/// @notice Anchors checkpoints `(treeSize, root)` of chainaudit's RFC 9162 Merkle log. Each new
/// checkpoint must come with an RFC 9162 §2.1.4 consistency proof from the previous one, checked
/// here with the SHA-256 precompile, so even a stolen anchoring key cannot anchor a rewritten
/// history. Any contract can verify RFC 9162 §2.1.3 inclusion proofs against an anchored
/// checkpoint with {verifyInclusion}.
/// @dev Storage is packed to keep `anchor` cheap (one new slot for the root, and on every second
/// checkpoint one new slot for two checkpoints' metadata):
/// - `_head`: bits 0..47 checkpoint count, 48..95 latest tree size, 96..255 a cached holder of
///   ANCHORER_ROLE (a fast path that saves the cold role lookup; `hasRole` stays authoritative:
///   the cache is only ever a current holder or zero);
/// - `_roots[seq]`: the root of checkpoint `seq`;
/// - `_metas[seq / 2]`: two 128-bit records, checkpoint `seq` at bit `128 * (seq % 2)`, each
///   `treeSize (48 bits) | blockNumber (40 bits) << 48 | timestamp (40 bits) << 88`.
/// Tree sizes are therefore limited to 2^48 - 1 leaves. A stored size is never 0, which marks a
/// checkpoint that exists.
///
/// The anchored tree size is the anchorer's assertion: this contract cannot check it. An RFC 9162
/// §2.1.4 consistency proof binds the previous checkpoint and the new root, not the new size:
/// for a 12-leaf log the genuine 6 -> 12 proof is also accepted as `anchor(14, root12)`. Under
/// such a checkpoint genuine leaves verify at indexes the log does not have, an interior node
/// verifies as a leaf, and honest anchoring of the true size is blocked for ever (sizes must
/// grow). What the chain guarantees is that anchored roots extend each other (RFC 9162
/// consistency): the anchored history is append-only, even for a stolen anchoring key. Monitors
/// that read the log (its signed checkpoints) check the anchored sizes against it.
contract AuditAnchor is IAuditAnchor, AccessControlDefaultAdminRules {
    /// @notice The role allowed to call {anchor}.
    bytes32 public constant ANCHORER_ROLE = keccak256("ANCHORER_ROLE");

    /// @notice The largest tree size a checkpoint can have.
    uint64 public constant MAX_TREE_SIZE = type(uint48).max;

    uint256 private constant _MASK48 = type(uint48).max;
    uint256 private constant _MASK40 = type(uint40).max;
    uint256 private constant _MASK128 = type(uint128).max;
    uint256 private constant _ANCHORER_SHIFT = 96;
    uint256 private constant _SIZE_SHIFT = 48;

    uint256 private _head;
    mapping(uint256 seq => bytes32 root) private _roots;
    mapping(uint256 pair => uint256 records) private _metas;

    /// @notice Deploys the anchor with `initialAdmin` as default admin (transfers of the admin
    /// role wait `initialAdminDelay` seconds) and, unless zero, `initialAnchorer` holding
    /// ANCHORER_ROLE.
    /// @dev Emits {RoleGranted} events.
    constructor(uint48 initialAdminDelay, address initialAdmin, address initialAnchorer)
        AccessControlDefaultAdminRules(initialAdminDelay, initialAdmin)
    {
        if (initialAnchorer != address(0)) {
            _grantRole(ANCHORER_ROLE, initialAnchorer);
        }
    }

    /// @inheritdoc IAuditAnchor
    function anchor(uint64 newSize, bytes32 newRoot, bytes32[] calldata consistencyProof)
        external
        returns (uint256 seq)
    {
        uint256 head = _head;
        // Fast path: the caller is the cached anchorer (never address(0), which means "none").
        uint256 cached = head >> _ANCHORER_SHIFT;
        if (cached == 0 || cached != uint256(uint160(_msgSender()))) {
            _checkRole(ANCHORER_ROLE);
        }
        seq = head & _MASK48;
        // forge-lint: disable-next-line(unsafe-typecast)
        uint64 previousSize = uint64((head >> _SIZE_SHIFT) & _MASK48); // masked to 48 bits
        if (newSize <= previousSize) {
            revert AuditAnchorSizeNotIncreasing(previousSize, newSize);
        }
        if (newSize > MAX_TREE_SIZE) {
            revert AuditAnchorSizeTooLarge(newSize, MAX_TREE_SIZE);
        }
        if (seq == 0) {
            if (consistencyProof.length != 0) {
                revert AuditAnchorUnexpectedProof(consistencyProof.length);
            }
        } else {
            bytes32 previousRoot = _roots[seq - 1];
            if (!RFC9162.isConsistent(previousSize, newSize, previousRoot, newRoot, consistencyProof)) {
                revert AuditAnchorInconsistentCheckpoint(
                    previousSize, previousRoot, newSize, newRoot, consistencyProof.length
                );
            }
        }

        _roots[seq] = newRoot;
        uint256 record = uint256(newSize) | ((block.number & _MASK40) << 48) | ((block.timestamp & _MASK40) << 88);
        if (seq & 1 == 0) {
            _metas[seq >> 1] = record;
        } else {
            _metas[seq >> 1] |= record << 128;
        }
        _head = (head & ~(_MASK48 | (_MASK48 << _SIZE_SHIFT))) | (seq + 1) | (uint256(newSize) << _SIZE_SHIFT);
        emit CheckpointAnchored(seq, newSize, newRoot);
    }

    /// @inheritdoc IAuditAnchor
    function verifyInclusion(uint256 checkpointSeq, uint256 leafIndex, bytes32 leafHash, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        uint256 treeSize = _recordOf(checkpointSeq) & _MASK48;
        // A stored size is never 0 (anchor requires newSize > previous >= 0), so 0 is the
        // "never anchored" sentinel; it is a storage marker, not a balance or a timestamp.
        // slither-disable-next-line incorrect-equality,timestamp
        if (treeSize == 0) {
            revert AuditAnchorUnknownCheckpoint(checkpointSeq, _head & _MASK48);
        }
        return RFC9162.isIncluded(leafIndex, treeSize, leafHash, _roots[checkpointSeq], proof);
    }

    /// @inheritdoc IAuditAnchor
    function checkpoint(uint256 seq)
        public
        view
        returns (uint64 treeSize, bytes32 root, uint64 blockNumber, uint64 timestamp)
    {
        uint256 record = _recordOf(seq);
        // Every field is masked to at most 48 bits before the cast.
        // forge-lint: disable-next-line(unsafe-typecast)
        treeSize = uint64(record & _MASK48);
        // 0 is the "never anchored" sentinel (see verifyInclusion); not a balance or a time.
        // slither-disable-next-line incorrect-equality,timestamp
        if (treeSize == 0) {
            revert AuditAnchorUnknownCheckpoint(seq, _head & _MASK48);
        }
        root = _roots[seq];
        // forge-lint: disable-next-line(unsafe-typecast)
        blockNumber = uint64((record >> 48) & _MASK40);
        // forge-lint: disable-next-line(unsafe-typecast)
        timestamp = uint64((record >> 88) & _MASK40);
    }

    /// @inheritdoc IAuditAnchor
    function checkpointCount() public view returns (uint256) {
        return _head & _MASK48;
    }

    /// @inheritdoc IAuditAnchor
    function latestCheckpoint()
        external
        view
        returns (uint256 seq, uint64 treeSize, bytes32 root, uint64 blockNumber, uint64 timestamp)
    {
        uint256 count = checkpointCount();
        if (count == 0) {
            revert AuditAnchorUnknownCheckpoint(0, 0);
        }
        seq = count - 1;
        (treeSize, root, blockNumber, timestamp) = checkpoint(seq);
    }

    /// @dev Keeps the cached anchorer in `_head` when ANCHORER_ROLE is granted and none is cached.
    function _grantRole(bytes32 role, address account) internal virtual override returns (bool granted) {
        granted = super._grantRole(role, account);
        if (granted && role == ANCHORER_ROLE) {
            uint256 head = _head;
            if (head >> _ANCHORER_SHIFT == 0) {
                _head = head | (uint256(uint160(account)) << _ANCHORER_SHIFT);
            }
        }
    }

    /// @dev Clears the cached anchorer in `_head` when its ANCHORER_ROLE is revoked or renounced.
    function _revokeRole(bytes32 role, address account) internal virtual override returns (bool revoked) {
        revoked = super._revokeRole(role, account);
        if (revoked && role == ANCHORER_ROLE) {
            uint256 head = _head;
            // The top 160 bits of `_head` are the cached address.
            // forge-lint: disable-next-line(unsafe-typecast)
            if (address(uint160(head >> _ANCHORER_SHIFT)) == account) {
                _head = head & ((uint256(1) << _ANCHORER_SHIFT) - 1);
            }
        }
    }

    /// @dev The packed 128-bit metadata record of checkpoint `seq` (zero when it does not exist).
    function _recordOf(uint256 seq) private view returns (uint256) {
        return (_metas[seq >> 1] >> ((seq & 1) << 7)) & _MASK128;
    }
}
