// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title RFC9162
/// @notice Verifiers of RFC 9162 Merkle tree proofs (SHA-256, `0x00` leaf and `0x01` node
/// prefixes) on chain, with the SHA-256 precompile: inclusion (§2.1.3.2) and consistency
/// (§2.1.4.2). Both return false, never revert, on a wrong proof.
/// @dev Internal functions only: they are compiled into the contract that uses them.
library RFC9162 {
    /// @dev RFC 9162 §2.1.3.2: whether `proof` proves `leafHash` at `leafIndex` in the tree of
    /// `treeSize` leaves with root `root`. Requires `treeSize > 0`. Returns false, never reverts,
    /// on a wrong proof (too short, too long, wrong hashes) or `leafIndex >= treeSize`.
    /// slither flags the RFC 9162 index arithmetic below (`fn == sn`, LSB tests) as "strict
    /// equality" and "timestamp" comparisons: they compare tree positions, never balances or
    /// times, and the algorithm requires exact equality.
    // slither-disable-start incorrect-equality,timestamp
    function isIncluded(uint256 leafIndex, uint256 treeSize, bytes32 leafHash, bytes32 root, bytes32[] calldata proof)
        internal
        view
        returns (bool ok)
    {
        if (leafIndex >= treeSize) {
            return false;
        }
        assembly ("memory-safe") {
            // Hash input 0x01 || left || right at [buf, buf + 65), past the free memory pointer.
            let buf := mload(0x40)
            mstore8(buf, 1)
            let left := add(buf, 1)
            let right := add(buf, 33)
            let fn := leafIndex
            let sn := sub(treeSize, 1)
            let r := leafHash
            ok := 1
            for {
                let off := proof.offset
                let end := add(off, shl(5, proof.length))
            } lt(off, end) { off := add(off, 0x20) } {
                if iszero(sn) {
                    ok := 0
                    break
                }
                switch or(and(fn, 1), eq(fn, sn))
                case 0 {
                    mstore(left, r)
                    mstore(right, calldataload(off))
                }
                default {
                    mstore(left, calldataload(off))
                    mstore(right, r)
                    // Skip the levels where this subtree is the last, unpaired node.
                    for {} and(iszero(and(fn, 1)), iszero(iszero(fn))) {} {
                        fn := shr(1, fn)
                        sn := shr(1, sn)
                    }
                }
                if iszero(staticcall(gas(), 0x02, buf, 65, 0x00, 0x20)) { revert(0, 0) }
                r := mload(0x00)
                fn := shr(1, fn)
                sn := shr(1, sn)
            }
            ok := and(ok, and(iszero(sn), eq(r, root)))
        }
    }
    // slither-disable-end incorrect-equality,timestamp

    /// @dev RFC 9162 §2.1.4.2: whether `proof` proves that the tree `(size2, root2)` extends the
    /// tree `(size1, root1)`. Requires `0 < size1 < size2`. Returns false on any wrong proof.
    function isConsistent(uint256 size1, uint256 size2, bytes32 root1, bytes32 root2, bytes32[] calldata proof)
        internal
        view
        returns (bool ok)
    {
        if (proof.length == 0) {
            return false;
        }
        assembly ("memory-safe") {
            let buf := mload(0x40)
            mstore8(buf, 1)
            let left := add(buf, 1)
            let right := add(buf, 33)
            let off := proof.offset
            let end := add(off, shl(5, proof.length))
            // When size1 is a power of two, the old root is the first node of the path.
            let fr := root1
            if and(size1, sub(size1, 1)) {
                fr := calldataload(off)
                off := add(off, 0x20)
            }
            let sr := fr
            let fn := sub(size1, 1)
            let sn := sub(size2, 1)
            for {} and(fn, 1) {} {
                fn := shr(1, fn)
                sn := shr(1, sn)
            }
            ok := 1
            for {} lt(off, end) { off := add(off, 0x20) } {
                if iszero(sn) {
                    ok := 0
                    break
                }
                switch or(and(fn, 1), eq(fn, sn))
                case 0 {
                    mstore(left, sr)
                    mstore(right, calldataload(off))
                    if iszero(staticcall(gas(), 0x02, buf, 65, 0x00, 0x20)) { revert(0, 0) }
                    sr := mload(0x00)
                }
                default {
                    mstore(left, calldataload(off))
                    mstore(right, fr)
                    if iszero(staticcall(gas(), 0x02, buf, 65, 0x00, 0x20)) { revert(0, 0) }
                    fr := mload(0x00)
                    mstore(right, sr)
                    if iszero(staticcall(gas(), 0x02, buf, 65, 0x00, 0x20)) { revert(0, 0) }
                    sr := mload(0x00)
                    for {} and(iszero(and(fn, 1)), iszero(iszero(fn))) {} {
                        fn := shr(1, fn)
                        sn := shr(1, sn)
                    }
                }
                fn := shr(1, fn)
                sn := shr(1, sn)
            }
            ok := and(ok, and(iszero(sn), and(eq(fr, root1), eq(sr, root2))))
        }
    }
}
