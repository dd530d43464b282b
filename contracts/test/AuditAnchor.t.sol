// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {AuditAnchor} from "../AuditAnchor.sol";
import {IAuditAnchor} from "../interfaces/IAuditAnchor.sol";
import {TestBase} from "./Vm.sol";
import {RFC9162Reference as Ref} from "./helpers/RFC9162Reference.sol";

contract AuditAnchorTest is TestBase {
    AuditAnchor internal anchorContract;
    address internal admin = address(0xAD);
    address internal anchorer = address(0xA1);
    address internal stranger = address(0x5757);
    bytes32 internal anchorerRole;

    function setUp() public {
        anchorContract = new AuditAnchor(1 days, admin, anchorer);
        anchorerRole = anchorContract.ANCHORER_ROLE();
    }

    // ---------------------------------------------------------------- helpers

    /// @dev `n` pseudo-random leaf hashes derived from `seed`.
    function _leaves(uint256 seed, uint256 n) internal pure returns (bytes32[] memory leaves) {
        leaves = new bytes32[](n);
        for (uint256 i = 0; i < n; ++i) {
            leaves[i] = Ref.leafHash(abi.encode(seed, i));
        }
    }

    /// @dev The RFC 6962 reference tree's eight leaves (certificate-transparency test data).
    function _rfcLeaves() internal pure returns (bytes32[] memory leaves) {
        leaves = new bytes32[](8);
        leaves[0] = Ref.leafHash(hex"");
        leaves[1] = Ref.leafHash(hex"00");
        leaves[2] = Ref.leafHash(hex"10");
        leaves[3] = Ref.leafHash(hex"2021");
        leaves[4] = Ref.leafHash(hex"3031");
        leaves[5] = Ref.leafHash(hex"40414243");
        leaves[6] = Ref.leafHash(hex"5051525354555657");
        leaves[7] = Ref.leafHash(hex"606162636465666768696a6b6c6d6e6f");
    }

    function _bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        return min + (x % (max - min + 1));
    }

    function _anchor(uint256 size, bytes32 root, bytes32[] memory proof) internal returns (uint256) {
        vm.prank(anchorer);
        return anchorContract.anchor(uint64(size), root, proof);
    }

    function _anchorTree(bytes32[] memory leaves, uint256 size) internal returns (uint256 seq) {
        uint256 count = anchorContract.checkpointCount();
        bytes32[] memory proof;
        if (count != 0) {
            (uint64 previousSize,,,) = anchorContract.checkpoint(count - 1);
            proof = Ref.consistencyProof(leaves, previousSize, size);
        }
        seq = _anchor(size, Ref.root(leaves, size), proof);
    }

    function _copy(bytes32[] memory a) internal pure returns (bytes32[] memory b) {
        b = new bytes32[](a.length);
        for (uint256 i = 0; i < a.length; ++i) {
            b[i] = a[i];
        }
    }

    function _expectInconsistent(uint256 size1, bytes32 root1, uint256 size2, bytes32 root2, uint256 proofLength)
        internal
    {
        vm.expectRevert(
            abi.encodeWithSelector(
                IAuditAnchor.AuditAnchorInconsistentCheckpoint.selector,
                uint64(size1),
                root1,
                uint64(size2),
                root2,
                proofLength
            )
        );
    }

    // ------------------------------------------------------ reference tree vs RFC data

    function test_referenceTreeMatchesRfc6962Roots() public pure {
        bytes32[] memory leaves = _rfcLeaves();
        assertEq(Ref.root(leaves, 1), 0x6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d, "root 1");
        assertEq(Ref.root(leaves, 3), 0xaeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77, "root 3");
        assertEq(Ref.root(leaves, 6), 0x76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef, "root 6");
        assertEq(Ref.root(leaves, 7), 0xddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c, "root 7");
        assertEq(Ref.root(leaves, 8), 0x5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328, "root 8");
    }

    // ------------------------------------------------------------ happy paths

    function test_firstCheckpoint_storedWithBlockAndTimestamp() public {
        bytes32[] memory leaves = _rfcLeaves();
        vm.roll(1234);
        vm.warp(1_700_000_000);
        vm.expectEmit(true, true, true, true, address(anchorContract));
        emit IAuditAnchor.CheckpointAnchored(0, 3, Ref.root(leaves, 3));
        uint256 seq = _anchor(3, Ref.root(leaves, 3), new bytes32[](0));

        assertEq(seq, 0, "first seq");
        assertEq(anchorContract.checkpointCount(), 1, "count");
        (uint64 size, bytes32 root, uint64 blockNumber, uint64 timestamp) = anchorContract.checkpoint(0);
        assertEq(size, 3, "size");
        assertEq(root, 0xaeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77, "root");
        assertEq(blockNumber, 1234, "block");
        assertEq(timestamp, 1_700_000_000, "timestamp");
    }

    function test_chainOfCheckpoints_allSizesOfRfcTree() public {
        bytes32[] memory leaves = _rfcLeaves();
        for (uint256 size = 1; size <= 8; ++size) {
            vm.roll(100 + size);
            vm.warp(1_000 + 10 * size);
            bytes32[] memory proof;
            if (size > 1) {
                proof = Ref.consistencyProof(leaves, size - 1, size);
            }
            vm.expectEmit(true, true, true, true, address(anchorContract));
            emit IAuditAnchor.CheckpointAnchored(size - 1, uint64(size), Ref.root(leaves, size));
            assertEq(_anchor(size, Ref.root(leaves, size), proof), size - 1, "seq");
        }
        assertEq(anchorContract.checkpointCount(), 8, "count");
        for (uint256 seq = 0; seq < 8; ++seq) {
            (uint64 size, bytes32 root, uint64 blockNumber, uint64 timestamp) = anchorContract.checkpoint(seq);
            assertEq(size, seq + 1, "size");
            assertEq(root, Ref.root(leaves, seq + 1), "root");
            assertEq(blockNumber, 101 + seq, "block");
            assertEq(timestamp, 1_000 + 10 * (seq + 1), "timestamp");
        }
        (uint256 latestSeq, uint64 latestSize, bytes32 latestRoot, uint64 latestBlock, uint64 latestTime) =
            anchorContract.latestCheckpoint();
        assertEq(latestSeq, 7, "latest seq");
        assertEq(latestSize, 8, "latest size");
        assertEq(latestRoot, 0x5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328, "latest root");
        assertEq(latestBlock, 108, "latest block");
        assertEq(latestTime, 1_080, "latest time");
    }

    function test_jumpsAcrossPowersOfTwo() public {
        bytes32[] memory leaves = _leaves(7, 1100);
        uint256[8] memory sizes = [uint256(1), 2, 5, 64, 65, 511, 1024, 1100];
        for (uint256 i = 0; i < sizes.length; ++i) {
            assertEq(_anchorTree(leaves, sizes[i]), i, "seq");
        }
        for (uint256 i = 0; i < sizes.length; ++i) {
            (uint64 size, bytes32 root,,) = anchorContract.checkpoint(i);
            assertEq(size, sizes[i], "size");
            assertEq(root, Ref.root(leaves, sizes[i]), "root");
        }
    }

    // ------------------------------------------------- refused checkpoints: sizes

    function test_revert_firstCheckpointOfSizeZero() public {
        vm.expectRevert(abi.encodeWithSelector(IAuditAnchor.AuditAnchorSizeNotIncreasing.selector, 0, 0));
        _anchor(0, bytes32(uint256(1)), new bytes32[](0));
    }

    function test_revert_firstCheckpointWithProof() public {
        bytes32[] memory proof = new bytes32[](1);
        vm.expectRevert(abi.encodeWithSelector(IAuditAnchor.AuditAnchorUnexpectedProof.selector, 1));
        _anchor(2, bytes32(uint256(1)), proof);
    }

    function test_revert_sizeEqualOrSmaller() public {
        bytes32[] memory leaves = _rfcLeaves();
        _anchorTree(leaves, 5);
        bytes32 root5 = Ref.root(leaves, 5);
        bytes32 root4 = Ref.root(leaves, 4);
        bytes32[] memory proof = Ref.consistencyProof(leaves, 4, 5);
        // (Arguments are computed first: the sha256 precompile calls would consume expectRevert.)
        vm.expectRevert(abi.encodeWithSelector(IAuditAnchor.AuditAnchorSizeNotIncreasing.selector, 5, 5));
        _anchor(5, root5, new bytes32[](0));
        vm.expectRevert(abi.encodeWithSelector(IAuditAnchor.AuditAnchorSizeNotIncreasing.selector, 5, 4));
        _anchor(4, root4, proof);
        assertEq(anchorContract.checkpointCount(), 1, "nothing anchored");
    }

    function test_revert_sizeTooLarge() public {
        uint64 tooLarge = uint64(type(uint48).max) + 1;
        vm.expectRevert(
            abi.encodeWithSelector(IAuditAnchor.AuditAnchorSizeTooLarge.selector, tooLarge, type(uint48).max)
        );
        _anchor(tooLarge, bytes32(uint256(1)), new bytes32[](0));
    }

    // ------------------------------------------------- refused checkpoints: proofs

    function _anchoredPair(uint256 size1, uint256 size2)
        internal
        returns (bytes32[] memory leaves, bytes32 root1, bytes32 root2, bytes32[] memory proof)
    {
        leaves = _leaves(42, size2);
        root1 = Ref.root(leaves, size1);
        root2 = Ref.root(leaves, size2);
        _anchor(size1, root1, new bytes32[](0));
        proof = Ref.consistencyProof(leaves, size1, size2);
    }

    function test_revert_emptyProofAfterFirst() public {
        (, bytes32 root1, bytes32 root2,) = _anchoredPair(6, 13);
        _expectInconsistent(6, root1, 13, root2, 0);
        _anchor(13, root2, new bytes32[](0));
    }

    function test_revert_forgedProof() public {
        (, bytes32 root1, bytes32 root2, bytes32[] memory proof) = _anchoredPair(6, 13);
        for (uint256 i = 0; i < proof.length; ++i) {
            bytes32[] memory forged = _copy(proof);
            forged[i] ^= bytes32(uint256(1) << (i % 256));
            _expectInconsistent(6, root1, 13, root2, forged.length);
            _anchor(13, root2, forged);
        }
        _anchor(13, root2, proof);
        assertEq(anchorContract.checkpointCount(), 2, "honest proof accepted afterwards");
    }

    function test_revert_truncatedProof() public {
        (, bytes32 root1, bytes32 root2, bytes32[] memory proof) = _anchoredPair(6, 13);
        bytes32[] memory truncated = _copy(proof);
        assembly ("memory-safe") {
            mstore(truncated, sub(mload(truncated), 1))
        }
        _expectInconsistent(6, root1, 13, root2, truncated.length);
        _anchor(13, root2, truncated);
    }

    function test_revert_extendedProof() public {
        (, bytes32 root1, bytes32 root2, bytes32[] memory proof) = _anchoredPair(6, 13);
        bytes32[] memory extended = new bytes32[](proof.length + 1);
        for (uint256 i = 0; i < proof.length; ++i) {
            extended[i] = proof[i];
        }
        extended[proof.length] = root2;
        _expectInconsistent(6, root1, 13, root2, extended.length);
        _anchor(13, root2, extended);
    }

    function test_revert_reorderedProof() public {
        (, bytes32 root1, bytes32 root2, bytes32[] memory proof) = _anchoredPair(6, 13);
        assertTrue(proof.length >= 2, "proof long enough to reorder");
        bytes32[] memory reordered = _copy(proof);
        (reordered[0], reordered[1]) = (reordered[1], reordered[0]);
        _expectInconsistent(6, root1, 13, root2, reordered.length);
        _anchor(13, root2, reordered);
    }

    function test_revert_wrongNewRoot() public {
        (bytes32[] memory leaves, bytes32 root1,, bytes32[] memory proof) = _anchoredPair(6, 13);
        bytes32 wrongRoot = Ref.root(leaves, 12);
        _expectInconsistent(6, root1, 13, wrongRoot, proof.length);
        _anchor(13, wrongRoot, proof);
    }

    function test_revert_rewrittenHistory() public {
        (bytes32[] memory leaves, bytes32 root1,,) = _anchoredPair(6, 13);
        // Same length, but the leaf at old position 2 is replaced.
        bytes32[] memory rewritten = _copy(leaves);
        rewritten[2] = Ref.leafHash("forged record");
        bytes32 rewrittenRoot = Ref.root(rewritten, 13);
        bytes32[] memory rewrittenProof = Ref.consistencyProof(rewritten, 6, 13);
        _expectInconsistent(6, root1, 13, rewrittenRoot, rewrittenProof.length);
        _anchor(13, rewrittenRoot, rewrittenProof);
    }

    function test_revert_proofForOtherSizes() public {
        (bytes32[] memory leaves, bytes32 root1,,) = _anchoredPair(6, 13);
        bytes32 root13 = Ref.root(leaves, 13);
        bytes32 root12 = Ref.root(leaves, 12);
        bytes32[] memory otherProof = Ref.consistencyProof(leaves, 5, 13);
        _expectInconsistent(6, root1, 13, root13, otherProof.length);
        _anchor(13, root13, otherProof);
        bytes32[] memory proofTo12 = Ref.consistencyProof(leaves, 6, 12);
        _expectInconsistent(6, root1, 13, root13, proofTo12.length);
        _anchor(13, root13, proofTo12);
        // Note: RFC 9162's verifier does not bind the new size exactly. The (6, 12) proof with
        // root12 also "verifies" as a proof to size 13, as would (6, 13) to size 14: the proof
        // shapes coincide. No leaf sha256(0x00 || data) can be proven at index 12 of such a
        // checkpoint without a SHA-256 preimage, and the old leaves stay bound, so history
        // cannot be rewritten; see the AuditAnchor docs.
    }

    function test_revert_powerOfTwoOldSizeWithOldRootPrepended() public {
        // For a power-of-two old size the old root is implicit; an explicit copy is refused.
        bytes32[] memory leaves = _leaves(3, 11);
        bytes32 root8 = Ref.root(leaves, 8);
        bytes32 root11 = Ref.root(leaves, 11);
        _anchor(8, root8, new bytes32[](0));
        bytes32[] memory proof = Ref.consistencyProof(leaves, 8, 11);
        bytes32[] memory prepended = new bytes32[](proof.length + 1);
        prepended[0] = root8;
        for (uint256 i = 0; i < proof.length; ++i) {
            prepended[i + 1] = proof[i];
        }
        _expectInconsistent(8, root8, 11, root11, prepended.length);
        _anchor(11, root11, prepended);
        _anchor(11, root11, proof);
    }

    // ------------------------------------------------------------------- roles

    function test_revert_strangerCannotAnchor() public {
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, anchorerRole)
        );
        vm.prank(stranger);
        anchorContract.anchor(1, bytes32(uint256(1)), new bytes32[](0));
    }

    function test_revert_adminIsNotAnchorer() public {
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, admin, anchorerRole)
        );
        vm.prank(admin);
        anchorContract.anchor(1, bytes32(uint256(1)), new bytes32[](0));
    }

    /// @dev Anchors leaves[0:size] as `who`, from the previous checkpoint of `size - 1` leaves
    /// (arguments are computed before the prank: sha256 precompile calls would consume it).
    function _anchorNextAs(address who, bytes32[] memory leaves, uint256 size) internal {
        bytes32 root = Ref.root(leaves, size);
        bytes32[] memory proof = size > 1 ? Ref.consistencyProof(leaves, size - 1, size) : new bytes32[](0);
        vm.prank(who);
        anchorContract.anchor(uint64(size), root, proof);
    }

    function _expectUnauthorized(address who) internal {
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, who, anchorerRole)
        );
    }

    function test_roles_grantRevokeRenounce() public {
        bytes32[] memory leaves = _leaves(9, 10);
        address second = address(0xB2);
        address third = address(0xC3);
        vm.prank(admin);
        anchorContract.grantRole(anchorerRole, second);
        assertTrue(anchorContract.hasRole(anchorerRole, second), "second granted");

        // Both anchorers can anchor (the second one through the uncached path).
        _anchorNextAs(anchorer, leaves, 1);
        _anchorNextAs(second, leaves, 2);

        // Revoking the first (cached) anchorer shuts it out, the second keeps working.
        vm.prank(admin);
        anchorContract.revokeRole(anchorerRole, anchorer);
        assertTrue(!anchorContract.hasRole(anchorerRole, anchorer), "revoked");
        bytes32 root3 = Ref.root(leaves, 3);
        bytes32[] memory proof3 = Ref.consistencyProof(leaves, 2, 3);
        _expectUnauthorized(anchorer);
        vm.prank(anchorer);
        anchorContract.anchor(3, root3, proof3);
        _anchorNextAs(second, leaves, 3);

        // A later grant works (and is cached); a renounced role is gone.
        vm.prank(admin);
        anchorContract.grantRole(anchorerRole, third);
        _anchorNextAs(third, leaves, 4);
        vm.prank(third);
        anchorContract.renounceRole(anchorerRole, third);
        bytes32 root5 = Ref.root(leaves, 5);
        bytes32[] memory proof5 = Ref.consistencyProof(leaves, 4, 5);
        _expectUnauthorized(third);
        vm.prank(third);
        anchorContract.anchor(5, root5, proof5);
        _anchorNextAs(second, leaves, 5);

        // With every holder gone, nobody (not even address(0), the "no cache" marker) anchors.
        vm.prank(admin);
        anchorContract.revokeRole(anchorerRole, second);
        bytes32 root6 = Ref.root(leaves, 6);
        bytes32[] memory proof6 = Ref.consistencyProof(leaves, 5, 6);
        _expectUnauthorized(second);
        vm.prank(second);
        anchorContract.anchor(6, root6, proof6);
        _expectUnauthorized(address(0));
        vm.prank(address(0));
        anchorContract.anchor(6, root6, proof6);
        assertEq(anchorContract.checkpointCount(), 5, "count");
    }

    function test_noAnchorerAtDeployment() public {
        AuditAnchor bare = new AuditAnchor(0, admin, address(0));
        _expectUnauthorized(address(0));
        vm.prank(address(0));
        bare.anchor(1, bytes32(uint256(1)), new bytes32[](0));
    }

    // ---------------------------------------------------------------- inclusion

    function test_verifyInclusion_everyLeafOfRfcTree() public {
        bytes32[] memory leaves = _rfcLeaves();
        for (uint256 size = 1; size <= 8; ++size) {
            _anchorTree(leaves, size);
        }
        for (uint256 seq = 0; seq < 8; ++seq) {
            uint256 size = seq + 1;
            for (uint256 i = 0; i < size; ++i) {
                bytes32[] memory proof = Ref.inclusionProof(leaves, i, size);
                assertTrue(anchorContract.verifyInclusion(seq, i, leaves[i], proof), "valid proof");
                assertTrue(!anchorContract.verifyInclusion(seq, i, leaves[(i + 1) % 8], proof), "other leaf");
                if (size > 1) {
                    assertTrue(!anchorContract.verifyInclusion(seq, (i + 1) % size, leaves[i], proof), "other index");
                }
                if (seq > 0 && i < size - 1) {
                    // The proof is for this checkpoint's tree, not the previous one.
                    bytes32[] memory previous = Ref.inclusionProof(leaves, i, size - 1);
                    bool same = keccak256(abi.encode(previous)) == keccak256(abi.encode(proof));
                    assertTrue(anchorContract.verifyInclusion(seq - 1, i, leaves[i], previous), "previous");
                    if (!same) {
                        assertTrue(!anchorContract.verifyInclusion(seq - 1, i, leaves[i], proof), "wrong checkpoint");
                    }
                }
            }
            assertTrue(!anchorContract.verifyInclusion(seq, size, leaves[0], new bytes32[](0)), "index >= size");
        }
    }

    function test_verifyInclusion_tamperedProofsAreFalse() public {
        bytes32[] memory leaves = _leaves(5, 300);
        _anchorTree(leaves, 300);
        uint256 index = 137;
        bytes32[] memory proof = Ref.inclusionProof(leaves, index, 300);
        assertTrue(anchorContract.verifyInclusion(0, index, leaves[index], proof), "valid");
        for (uint256 i = 0; i < proof.length; ++i) {
            bytes32[] memory forged = _copy(proof);
            forged[i] ^= bytes32(uint256(0x80));
            assertTrue(!anchorContract.verifyInclusion(0, index, leaves[index], forged), "forged element");
        }
        bytes32[] memory truncated = _copy(proof);
        assembly ("memory-safe") {
            mstore(truncated, sub(mload(truncated), 1))
        }
        assertTrue(!anchorContract.verifyInclusion(0, index, leaves[index], truncated), "truncated");
        bytes32[] memory extended = new bytes32[](proof.length + 1);
        for (uint256 i = 0; i < proof.length; ++i) {
            extended[i] = proof[i];
        }
        assertTrue(!anchorContract.verifyInclusion(0, index, leaves[index], extended), "extended");
        bytes32[] memory reordered = _copy(proof);
        (reordered[0], reordered[1]) = (reordered[1], reordered[0]);
        assertTrue(!anchorContract.verifyInclusion(0, index, leaves[index], reordered), "reordered");
        assertTrue(!anchorContract.verifyInclusion(0, index, leaves[index], new bytes32[](0)), "empty");
        assertTrue(!anchorContract.verifyInclusion(0, type(uint256).max, leaves[index], proof), "huge index");
        // The raw record bytes are not a leaf hash.
        assertTrue(!anchorContract.verifyInclusion(0, index, keccak256(abi.encode(5, index)), proof), "not a leaf");
    }

    function test_revert_unknownCheckpoint() public {
        vm.expectRevert(abi.encodeWithSelector(IAuditAnchor.AuditAnchorUnknownCheckpoint.selector, 0, 0));
        anchorContract.verifyInclusion(0, 0, bytes32(0), new bytes32[](0));
        vm.expectRevert(abi.encodeWithSelector(IAuditAnchor.AuditAnchorUnknownCheckpoint.selector, 0, 0));
        anchorContract.latestCheckpoint();
        _anchorTree(_rfcLeaves(), 2);
        vm.expectRevert(abi.encodeWithSelector(IAuditAnchor.AuditAnchorUnknownCheckpoint.selector, 1, 1));
        anchorContract.checkpoint(1);
        vm.expectRevert(abi.encodeWithSelector(IAuditAnchor.AuditAnchorUnknownCheckpoint.selector, 1, 1));
        anchorContract.verifyInclusion(1, 0, bytes32(0), new bytes32[](0));
        vm.expectRevert(
            abi.encodeWithSelector(IAuditAnchor.AuditAnchorUnknownCheckpoint.selector, type(uint256).max, 1)
        );
        anchorContract.checkpoint(type(uint256).max);
    }

    // ---------------------------------------------------------------- fuzzing

    /// @dev Two checkpoints of a random tree: the honest consistency proof is accepted, the
    /// checkpoints read back, and inclusion proofs verify in both (and fail when tampered).
    function testFuzz_consistencyAndInclusion(uint256 seed, uint256 size1, uint256 size2, uint256 index) public {
        size2 = _bound(size2, 2, 4096);
        size1 = _bound(size1, 1, size2 - 1);
        bytes32[] memory leaves = _leaves(seed, size2);
        bytes32 root1 = Ref.root(leaves, size1);
        bytes32 root2 = Ref.root(leaves, size2);
        _anchor(size1, root1, new bytes32[](0));
        _anchor(size2, root2, Ref.consistencyProof(leaves, size1, size2));

        (uint64 storedSize, bytes32 storedRoot,,) = anchorContract.checkpoint(1);
        assertEq(storedSize, size2, "size2");
        assertEq(storedRoot, root2, "root2");
        _checkInclusion(leaves, size1, size2, _bound(index, 0, size2 - 1), seed);
    }

    function _checkInclusion(bytes32[] memory leaves, uint256 size1, uint256 size2, uint256 index, uint256 seed)
        internal
        view
    {
        bytes32[] memory proof = Ref.inclusionProof(leaves, index, size2);
        assertTrue(anchorContract.verifyInclusion(1, index, leaves[index], proof), "included in checkpoint 1");
        assertTrue(
            !anchorContract.verifyInclusion(1, index, leaves[index] ^ bytes32(uint256(1)), proof), "tampered leaf"
        );
        if (proof.length > 0) {
            proof[seed % proof.length] ^= bytes32(uint256(1) << (seed % 256));
            assertTrue(!anchorContract.verifyInclusion(1, index, leaves[index], proof), "tampered proof");
        }
        if (index < size1) {
            bytes32[] memory proof1 = Ref.inclusionProof(leaves, index, size1);
            assertTrue(anchorContract.verifyInclusion(0, index, leaves[index], proof1), "included in checkpoint 0");
        } else {
            assertTrue(
                !anchorContract.verifyInclusion(0, index, leaves[index], Ref.inclusionProof(leaves, index, size2)),
                "new leaf not in checkpoint 0"
            );
        }
    }

    /// @dev A consistency proof with one flipped bit, or for a rewritten old leaf, is refused.
    function testFuzz_tamperedConsistencyRefused(uint256 seed, uint256 size1, uint256 size2, uint256 flip) public {
        size2 = _bound(size2, 2, 4096);
        size1 = _bound(size1, 1, size2 - 1);
        bytes32[] memory leaves = _leaves(seed, size2);
        bytes32 root1 = Ref.root(leaves, size1);
        bytes32 root2 = Ref.root(leaves, size2);
        _anchor(size1, root1, new bytes32[](0));
        bytes32[] memory proof = Ref.consistencyProof(leaves, size1, size2);

        bytes32[] memory forged = _copy(proof);
        forged[flip % forged.length] ^= bytes32(uint256(1) << ((flip >> 128) % 256));
        _expectInconsistent(size1, root1, size2, root2, forged.length);
        _anchor(size2, root2, forged);

        bytes32[] memory rewritten = _copy(leaves);
        rewritten[flip % size1] = Ref.leafHash(abi.encode("rewritten", flip));
        bytes32 rewrittenRoot = Ref.root(rewritten, size2);
        bytes32[] memory rewrittenProof = Ref.consistencyProof(rewritten, size1, size2);
        _expectInconsistent(size1, root1, size2, rewrittenRoot, rewrittenProof.length);
        _anchor(size2, rewrittenRoot, rewrittenProof);

        _anchor(size2, root2, proof);
        assertEq(anchorContract.checkpointCount(), 2, "honest proof accepted");
    }
}
