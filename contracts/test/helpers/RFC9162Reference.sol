// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice A straightforward, recursive RFC 9162 §2.1 Merkle tree over leaf hashes, written
/// from the RFC's definitions (MTH, PATH, PROOF/SUBPROOF) to test AuditAnchor's optimised
/// verifiers against. Slow on purpose: every node is recomputed from the leaves.
library RFC9162Reference {
    /// @notice sha256(0x00 || data).
    function leafHash(bytes memory data) internal pure returns (bytes32) {
        return sha256(abi.encodePacked(bytes1(0x00), data));
    }

    /// @notice sha256(0x01 || left || right).
    function nodeHash(bytes32 left, bytes32 right) internal pure returns (bytes32) {
        return sha256(abi.encodePacked(bytes1(0x01), left, right));
    }

    /// @notice The largest power of two smaller than `n` (requires n > 1).
    function split(uint256 n) internal pure returns (uint256 k) {
        k = 1;
        while (k << 1 < n) {
            k <<= 1;
        }
    }

    /// @notice MTH(D[0:n]) for the first `n` of `leaves`.
    function root(bytes32[] memory leaves, uint256 n) internal pure returns (bytes32) {
        if (n == 0) {
            return sha256("");
        }
        return _mth(leaves, 0, n);
    }

    /// @notice PATH(m, D[0:n]), the inclusion proof of leaf `m` in the tree of the first `n` leaves.
    function inclusionProof(bytes32[] memory leaves, uint256 m, uint256 n) internal pure returns (bytes32[] memory) {
        require(m < n && n <= leaves.length, "reference: bad inclusion arguments");
        bytes32[] memory out = new bytes32[](64);
        uint256 len = _path(leaves, m, 0, n, out, 0);
        return _truncate(out, len);
    }

    /// @notice PROOF(m, D[0:n]), the consistency proof from the first `m` to the first `n` leaves.
    function consistencyProof(bytes32[] memory leaves, uint256 m, uint256 n) internal pure returns (bytes32[] memory) {
        require(0 < m && m <= n && n <= leaves.length, "reference: bad consistency arguments");
        bytes32[] memory out = new bytes32[](128);
        uint256 len = _subproof(leaves, m, 0, n, true, out, 0);
        return _truncate(out, len);
    }

    function _mth(bytes32[] memory leaves, uint256 start, uint256 end) private pure returns (bytes32) {
        uint256 n = end - start;
        if (n == 1) {
            return leaves[start];
        }
        uint256 k = split(n);
        return nodeHash(_mth(leaves, start, start + k), _mth(leaves, start + k, end));
    }

    // RFC 9162 §2.1.3.1: PATH(m, D[n]); appends to `out` from `len`, returns the new length.
    function _path(bytes32[] memory leaves, uint256 m, uint256 start, uint256 end, bytes32[] memory out, uint256 len)
        private
        pure
        returns (uint256)
    {
        uint256 n = end - start;
        if (n == 1) {
            return len;
        }
        uint256 k = split(n);
        if (m < k) {
            len = _path(leaves, m, start, start + k, out, len);
            out[len] = _mth(leaves, start + k, end);
        } else {
            len = _path(leaves, m - k, start + k, end, out, len);
            out[len] = _mth(leaves, start, start + k);
        }
        return len + 1;
    }

    // RFC 9162 §2.1.4.1: SUBPROOF(m, D[n], b).
    function _subproof(
        bytes32[] memory leaves,
        uint256 m,
        uint256 start,
        uint256 end,
        bool complete,
        bytes32[] memory out,
        uint256 len
    ) private pure returns (uint256) {
        uint256 n = end - start;
        if (m == n) {
            if (complete) {
                return len;
            }
            out[len] = _mth(leaves, start, end);
            return len + 1;
        }
        uint256 k = split(n);
        if (m <= k) {
            len = _subproof(leaves, m, start, start + k, complete, out, len);
            out[len] = _mth(leaves, start + k, end);
        } else {
            len = _subproof(leaves, m - k, start + k, end, false, out, len);
            out[len] = _mth(leaves, start, start + k);
        }
        return len + 1;
    }

    function _truncate(bytes32[] memory out, uint256 len) private pure returns (bytes32[] memory) {
        assembly ("memory-safe") {
            mstore(out, len)
        }
        return out;
    }
}
