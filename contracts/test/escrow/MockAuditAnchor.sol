// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAuditAnchor} from "../../interfaces/IAuditAnchor.sol";

/// @notice Test double of AuditAnchor: `verifyInclusion` accepts exactly the
/// (checkpoint, index, leaf, proof) tuples registered with {setInclusion}.
contract MockAuditAnchor is IAuditAnchor {
    mapping(bytes32 => bool) private _valid;
    uint256 private _count;

    function setInclusion(uint256 seq, uint256 leafIndex, bytes32 leafHash, bytes32[] calldata proof) external {
        _valid[keccak256(abi.encode(seq, leafIndex, leafHash, proof))] = true;
        if (seq >= _count) _count = seq + 1;
    }

    function anchor(uint64, bytes32, bytes32[] calldata) external returns (uint256 seq) {
        seq = _count++;
    }

    function verifyInclusion(uint256 checkpointSeq, uint256 leafIndex, bytes32 leafHash, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        if (checkpointSeq >= _count) revert AuditAnchorUnknownCheckpoint(checkpointSeq, _count);
        return _valid[keccak256(abi.encode(checkpointSeq, leafIndex, leafHash, proof))];
    }

    function checkpoint(uint256 seq) external view returns (uint64, bytes32, uint64, uint64) {
        if (seq >= _count) revert AuditAnchorUnknownCheckpoint(seq, _count);
        return (uint64(seq + 1), bytes32(0), 0, 0);
    }

    function checkpointCount() external view returns (uint256) {
        return _count;
    }

    function latestCheckpoint() external view returns (uint256, uint64, bytes32, uint64, uint64) {
        if (_count == 0) revert AuditAnchorUnknownCheckpoint(0, 0);
        return (_count - 1, uint64(_count), bytes32(0), 0, 0);
    }
}
