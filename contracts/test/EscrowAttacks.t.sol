// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EscrowFixture} from "./escrow/EscrowFixture.sol";
import {
    BlocklistToken, FeeOnTransferToken, PositiveRebaseToken, ReentrantToken, TestToken
} from "./escrow/MaliciousTokens.sol";
import {ISupplyChainEscrow as I} from "../interfaces/ISupplyChainEscrow.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @notice Hostile tokens and payees: re-entrancy, transfer fees, rebasing, block-listed payees,
/// and the operator trying to reach deal funds.
contract EscrowAttacksTest is EscrowFixture {
    function _dealIn(TestToken token) internal returns (uint256 id) {
        vm.prank(admin);
        escrow.setTokenAllowed(address(token), true);
        token.mint(buyer, 10 * uint256(AMOUNT));
        vm.prank(buyer);
        token.approve(address(escrow), type(uint256).max);
        I.DealParams memory p = _params(1, 1);
        p.token = address(token);
        id = _create(p, _milestones(2, AMOUNT));
    }

    function test_feeOnTransferToken_refused() public {
        FeeOnTransferToken fee = new FeeOnTransferToken();
        uint256 id = _dealIn(fee);
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(
                I.SupplyChainEscrowTransferMismatch.selector, address(fee), AMOUNT, AMOUNT - AMOUNT / 100
            )
        );
        escrow.fund(id, 0, AMOUNT);
        assertEq(fee.balanceOf(address(escrow)), 0, "nothing kept");
    }

    function test_rebasingToken_refused() public {
        PositiveRebaseToken rebase = new PositiveRebaseToken();
        uint256 id = _dealIn(rebase);
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(I.SupplyChainEscrowTransferMismatch.selector, address(rebase), AMOUNT, AMOUNT + 1)
        );
        escrow.fund(id, 0, AMOUNT);
    }

    function test_reentrantToken_cannotReenterFundOrWithdraw() public {
        ReentrantToken evil = new ReentrantToken();
        uint256 id = _dealIn(evil);
        // during fund's transferFrom, re-enter fund for the other milestone
        evil.arm(address(escrow), abi.encodeCall(escrow.fund, (id, 1, AMOUNT)));
        _fund(id, 0, AMOUNT);
        assertTrue(!evil.reentrySucceeded(), "re-entry blocked");
        assertEq(
            keccak256(evil.reentryResult()),
            keccak256(abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)),
            "reentrancy guard error"
        );
        assertEq(escrow.getMilestone(id, 1).funded, 0, "other milestone untouched");
        assertEq(evil.balanceOf(address(escrow)), AMOUNT, "exact balance");

        // during withdraw's transfer, try to withdraw again
        _ship(id, 0);
        _attest(id, 0, inspector1);
        vm.prank(buyer);
        escrow.acceptMilestone(id, 0);
        escrow.release(id, 0);
        evil.arm(address(escrow), abi.encodeCall(escrow.withdraw, (address(evil))));
        vm.prank(supplier);
        escrow.withdraw(address(evil));
        assertTrue(!evil.reentrySucceeded(), "second withdraw blocked");
        assertEq(evil.balanceOf(supplier), AMOUNT, "paid once");
        assertEq(evil.balanceOf(address(escrow)), 0, "vault empty");
    }

    function test_reentrantToken_unguardedCallbackKeepsBooksStraight() public {
        ReentrantToken evil = new ReentrantToken();
        uint256 id = _dealIn(evil);
        _fund(id, 0, AMOUNT);
        _fund(id, 1, AMOUNT);
        for (uint256 m; m < 2; ++m) {
            _ship(id, m);
            _attest(id, m, inspector1);
            vm.prank(buyer);
            escrow.acceptMilestone(id, m);
        }
        escrow.release(id, 0);
        // release (not guarded, no token call) runs inside the supplier's withdrawal transfer
        evil.arm(address(escrow), abi.encodeCall(escrow.release, (id, 1)));
        vm.prank(supplier);
        escrow.withdraw(address(evil));
        assertTrue(evil.reentrySucceeded(), "release is harmless to re-enter");
        assertEq(escrow.creditOf(supplier, address(evil)), AMOUNT, "second release credited, not paid");
        assertEq(evil.balanceOf(address(escrow)), AMOUNT, "vault holds exactly the credit");
    }

    function test_blocklistedPayee_blocksOnlyItself() public {
        BlocklistToken token = new BlocklistToken();
        uint256 id = _dealIn(token);
        _fund(id, 0, AMOUNT);
        _fund(id, 1, AMOUNT);
        _ship(id, 0);
        _attest(id, 0, inspector1);
        vm.prank(buyer);
        escrow.acceptMilestone(id, 0);
        token.setBlocked(supplier, true);
        escrow.release(id, 0); // crediting never transfers
        vm.prank(supplier);
        vm.expectRevert(abi.encodeWithSelector(BlocklistToken.Blocked.selector, supplier));
        escrow.withdraw(address(token));
        assertEq(escrow.creditOf(supplier, address(token)), AMOUNT, "credit kept for later");
        // the buyer still gets its long-stop refund of the other milestone
        vm.warp(START + 180 days + 1);
        vm.prank(buyer);
        escrow.reclaimAfterLongStop(id);
        vm.prank(buyer);
        escrow.withdraw(address(token));
        assertEq(token.balanceOf(address(escrow)), AMOUNT, "only the blocked credit remains");
        token.setBlocked(supplier, false);
        vm.prank(supplier);
        escrow.withdraw(address(token));
        assertEq(token.balanceOf(address(escrow)), 0, "vault empty");
    }

    function test_operatorHasNoPathToDealFunds() public {
        uint256 id = _standardDeal();
        _fund(id, 0, AMOUNT);
        vm.startPrank(admin);
        escrow.grantRole(escrow.COMPLIANCE_ROLE(), admin);
        escrow.pause();
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowNothingToWithdraw.selector, admin, address(usdc)));
        escrow.withdraw(address(usdc));
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, admin, I.Party.Arbiter));
        escrow.resolveDispute(id, 0, 0, bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(I.SupplyChainEscrowUnauthorized.selector, id, admin, I.Party.Buyer));
        escrow.reclaimAfterLongStop(id);
        // delisting the token does not trap the funds
        escrow.setTokenAllowed(address(usdc), false);
        vm.stopPrank();
        vm.warp(START + 180 days + 1);
        vm.prank(buyer);
        escrow.reclaimAfterLongStop(id);
        vm.prank(buyer);
        escrow.withdraw(address(usdc));
        assertEq(usdc.balanceOf(address(escrow)), 0, "buyer got everything back while paused");
    }
}
