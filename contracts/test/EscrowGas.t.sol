// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EscrowFixture} from "./escrow/EscrowFixture.sol";
import {ISupplyChainEscrow} from "../interfaces/ISupplyChainEscrow.sol";

/// @notice Whole-transaction gas of the hot paths against the budgets of the escrow issue.
/// @dev Run with isolation so that every top-level call is its own transaction (21,000 base
/// gas, calldata, cold accounts and slots, refunds), as on chain:
///     node_modules/.bin/forge test --isolate --match-contract EscrowGasTest -vv
/// Without `--isolate` the figures exclude the intrinsic cost and are only lower bounds.
/// The scenario is steady state: the vault already holds the token (an earlier deal was
/// funded), and the withdrawing payee already holds some of the token.
contract EscrowGasTest is EscrowFixture {
    uint256 internal constant CREATE_BUDGET = 180_000;
    uint256 internal constant FUND_BUDGET = 80_000;
    uint256 internal constant RELEASE_BUDGET = 90_000;
    uint256 internal constant WITHDRAW_BUDGET = 50_000;

    event GasMeasured(string operation, uint256 gasUsed, uint256 budget);

    function setUp() public override {
        super.setUp();
        // An earlier deal, fully run: the vault holds the token and the supplier has withdrawn
        // a payment before, so neither balance slot is fresh.
        uint256 warm = _create(_params(1, 1), _milestones(2, AMOUNT));
        _fund(warm, 0, AMOUNT);
        _fund(warm, 1, AMOUNT);
        _ship(warm, 0);
        _attest(warm, 0, inspector1);
        vm.prank(buyer);
        escrow.acceptMilestone(warm, 0);
        escrow.release(warm, 0);
        vm.prank(supplier);
        escrow.withdraw(address(usdc));
    }

    function _measured(string memory operation, uint256 budget) internal returns (uint256 gasUsed) {
        gasUsed = evm.lastCallGas().gasTotalUsed;
        emit GasMeasured(operation, gasUsed, budget);
        assertTrue(gasUsed <= budget, operation);
    }

    function test_gas_createDeal_twoMilestones_threeInspectors() public {
        ISupplyChainEscrow.DealParams memory p = _params(3, 2);
        ISupplyChainEscrow.MilestoneParams[] memory ms = _milestones(2, AMOUNT);
        vm.prank(buyer);
        escrow.createDeal(p, ms);
        _measured("createDeal (2 milestones, 2-of-3 inspectors)", CREATE_BUDGET);
    }

    function test_gas_createDeal_twoMilestones_oneInspector() public {
        ISupplyChainEscrow.DealParams memory p = _params(1, 1);
        ISupplyChainEscrow.MilestoneParams[] memory ms = _milestones(2, AMOUNT);
        vm.prank(buyer);
        escrow.createDeal(p, ms);
        _measured("createDeal (2 milestones, 1 inspector)", CREATE_BUDGET);
    }

    function test_gas_fund_full() public {
        uint256 id = _standardDeal();
        _fund(id, 0, AMOUNT);
        _measured("fund (full milestone, unlimited allowance)", FUND_BUDGET);
    }

    function test_gas_fund_exactAllowance() public {
        uint256 id = _standardDeal();
        vm.prank(buyer);
        usdc.approve(address(escrow), AMOUNT);
        _fund(id, 0, AMOUNT);
        _measured("fund (full milestone, exact allowance)", FUND_BUDGET);
    }

    function test_gas_fund_partial() public {
        uint256 id = _standardDeal();
        _fund(id, 0, AMOUNT / 2);
        _measured("fund (partial)", FUND_BUDGET);
    }

    function test_gas_release_accepted() public {
        uint256 id = _standardDeal();
        _toAccepted(id, 0);
        escrow.release(id, 0);
        _measured("release (accepted, fresh payee credit)", RELEASE_BUDGET);
    }

    function test_gas_release_deemed() public {
        uint256 id = _standardDeal();
        _toInspected(id, 0);
        vm.warp(_now() + WINDOW + 1);
        escrow.release(id, 0);
        _measured("release (deemed acceptance)", RELEASE_BUDGET);
    }

    function test_gas_withdraw() public {
        uint256 id = _standardDeal();
        _toAccepted(id, 0);
        escrow.release(id, 0);
        vm.prank(supplier);
        escrow.withdraw(address(usdc));
        _measured("withdraw (payee already holds the token)", WITHDRAW_BUDGET);
    }

    /// @dev A first-time holder pays 20,000 more for its fresh token balance slot inside the
    /// token contract; reported, not held to the budget.
    function test_gas_withdraw_freshHolder() public {
        uint256 id = _standardDeal();
        _toAccepted(id, 0);
        escrow.release(id, 0);
        uint256 held = usdc.balanceOf(supplier);
        vm.prank(supplier);
        usdc.transfer(address(0xdead), held);
        vm.prank(supplier);
        escrow.withdraw(address(usdc));
        _measured("withdraw (fresh token holder)", WITHDRAW_BUDGET + 25_000);
    }
}
