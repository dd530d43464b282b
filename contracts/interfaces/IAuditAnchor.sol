// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IAuditAnchor
/// @notice Checkpoints `(treeSize, root)` of chainaudit's RFC 9162 Merkle log, anchored on chain in
/// order. Every new checkpoint's root is proven consistent with the previous one (RFC 9162
/// §2.1.4), so the anchored roots extend each other. The tree size is the anchorer's assertion
/// (a consistency proof does not bind the new size); monitors check it against the log. Any
/// contract can check that a leaf is included in an anchored checkpoint with {verifyInclusion}.
/// @dev The tree is RFC 9162 §2.1 (the RFC 6962 tree): SHA-256, leaf = sha256(0x00 || data),
/// node = sha256(0x01 || left || right). It is NOT OpenZeppelin MerkleProof's keccak sorted-pair
/// tree. Checkpoint sequence numbers start at 0.
interface IAuditAnchor {
    /// @notice The tree size does not grow: `newSize` must be greater than `previousSize`
    /// (the first checkpoint must have a size of at least 1, `previousSize` is then 0).
    error AuditAnchorSizeNotIncreasing(uint64 previousSize, uint64 newSize);

    /// @notice The tree size does not fit the packed checkpoint storage.
    error AuditAnchorSizeTooLarge(uint64 newSize, uint64 maxSize);

    /// @notice The consistency proof does not prove that the checkpoint `(newSize, newRoot)`
    /// extends the previous checkpoint `(previousSize, previousRoot)`.
    error AuditAnchorInconsistentCheckpoint(
        uint64 previousSize, bytes32 previousRoot, uint64 newSize, bytes32 newRoot, uint256 proofLength
    );

    /// @notice The first checkpoint takes no consistency proof; `proofLength` elements were given.
    error AuditAnchorUnexpectedProof(uint256 proofLength);

    /// @notice No checkpoint has sequence number `seq`; `count` checkpoints exist.
    error AuditAnchorUnknownCheckpoint(uint256 seq, uint256 count);

    /// @notice A checkpoint was anchored.
    /// @param seq The checkpoint's sequence number (0 for the first).
    /// @param treeSize The number of leaves of the log at the checkpoint, as the anchorer asserts.
    /// @param root The RFC 9162 root hash of the log at the checkpoint.
    event CheckpointAnchored(uint256 indexed seq, uint64 indexed treeSize, bytes32 indexed root);

    /// @notice Anchors the checkpoint `(newSize, newRoot)` after checking that it extends the
    /// latest anchored checkpoint.
    /// @dev Requirements:
    /// - the caller holds `ANCHORER_ROLE` (else `AccessControlUnauthorizedAccount`);
    /// - `newSize` is greater than the latest anchored size (0 when none);
    /// - for the first checkpoint, `consistencyProof` is empty;
    /// - otherwise `consistencyProof` is the RFC 9162 §2.1.4 consistency proof from the latest
    ///   checkpoint to `(newSize, newRoot)`.
    /// Emits a {CheckpointAnchored} event.
    /// @return seq The new checkpoint's sequence number.
    function anchor(uint64 newSize, bytes32 newRoot, bytes32[] calldata consistencyProof)
        external
        returns (uint256 seq);

    /// @notice Whether `leafHash` is the leaf at `leafIndex` of the tree of checkpoint
    /// `checkpointSeq`, by the RFC 9162 §2.1.3.2 algorithm.
    /// @dev Returns false (never reverts) for any wrong or malformed proof, including an index
    /// outside the tree. Reverts with `AuditAnchorUnknownCheckpoint` only when `checkpointSeq` was
    /// never anchored. `leafHash` is the leaf hash sha256(0x00 || data), not the data.
    function verifyInclusion(uint256 checkpointSeq, uint256 leafIndex, bytes32 leafHash, bytes32[] calldata proof)
        external
        view
        returns (bool);

    /// @notice The checkpoint with sequence number `seq`, and the block that anchored it.
    /// @dev Reverts with `AuditAnchorUnknownCheckpoint` when `seq` was never anchored.
    function checkpoint(uint256 seq)
        external
        view
        returns (uint64 treeSize, bytes32 root, uint64 blockNumber, uint64 timestamp);

    /// @notice The number of anchored checkpoints.
    function checkpointCount() external view returns (uint256);

    /// @notice The latest anchored checkpoint.
    /// @dev Reverts with `AuditAnchorUnknownCheckpoint(0, 0)` when nothing was anchored yet.
    function latestCheckpoint()
        external
        view
        returns (uint256 seq, uint64 treeSize, bytes32 root, uint64 blockNumber, uint64 timestamp);
}
