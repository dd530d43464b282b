// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {IAuditAnchor} from "../interfaces/IAuditAnchor.sol";

/// @notice Benchmark harness: OpenZeppelin MerkleProof (keccak, sorted pairs) against a root kept
/// in storage, as a contract that trusts a stored root would do it.
/// @dev Used only by scripts/bench_anchor_gas.py; not deployed in production.
contract OZMerkleBench {
    bytes32 private _root;

    constructor(bytes32 root) {
        _root = root;
    }

    /// @notice MerkleProof.verify (memory proof), as a transaction.
    function verify(bytes32[] calldata proof, bytes32 leaf) external returns (bool) {
        return MerkleProof.verify(proof, _root, leaf);
    }

    /// @notice MerkleProof.verifyCalldata, as a transaction.
    function verifyCalldata(bytes32[] calldata proof, bytes32 leaf) external returns (bool) {
        return MerkleProof.verifyCalldata(proof, _root, leaf);
    }

    /// @notice Execution gas of MerkleProof.verify alone (measured with gasleft, cold storage).
    function measure(bytes32[] calldata proof, bytes32 leaf) external returns (bool ok, uint256 gasUsed) {
        uint256 before = gasleft();
        ok = MerkleProof.verify(proof, _root, leaf);
        gasUsed = before - gasleft();
    }
}

/// @notice Benchmark harness: a contract calling AuditAnchor.verifyInclusion, as the escrow does.
/// @dev Used only by scripts/bench_anchor_gas.py; not deployed in production.
contract AnchorInclusionBench {
    IAuditAnchor private immutable _anchor;

    constructor(IAuditAnchor anchor) {
        _anchor = anchor;
    }

    /// @notice AuditAnchor.verifyInclusion through an external call, as a transaction.
    function verify(uint256 seq, uint256 leafIndex, bytes32 leafHash, bytes32[] calldata proof)
        external
        returns (bool)
    {
        return _anchor.verifyInclusion(seq, leafIndex, leafHash, proof);
    }

    /// @notice Execution gas of the external verifyInclusion call alone (gasleft, cold access).
    function measure(uint256 seq, uint256 leafIndex, bytes32 leafHash, bytes32[] calldata proof)
        external
        returns (bool ok, uint256 gasUsed)
    {
        uint256 before = gasleft();
        ok = _anchor.verifyInclusion(seq, leafIndex, leafHash, proof);
        gasUsed = before - gasleft();
    }
}
