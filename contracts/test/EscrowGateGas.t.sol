// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {GateFixture} from "./escrow/GateFixture.sol";
import {IEscrowGate as G} from "../interfaces/IEscrowGate.sol";
import {ISupplyChainEscrow as I} from "../interfaces/ISupplyChainEscrow.sol";

/// @notice Issue 13's gas budgets with the gate: fund <= 90,000 and release <= 100,000 with a
/// clearance, create <= 200,000, withdraw <= 50,000 (whole transactions). Run with isolation:
///     forge test --isolate --match-contract EscrowGateGasTest -vv
/// Steady state as in EscrowGasTest, and the gate has already spent a clearance nonce of the
/// same bitmap word (the signer issues nonces in sequence).
contract EscrowGateGasTest is GateFixture {
    uint256 internal constant CREATE_BUDGET = 200_000;
    uint256 internal constant FUND_BUDGET = 90_000;
    uint256 internal constant RELEASE_BUDGET = 100_000;
    uint256 internal constant WITHDRAW_BUDGET = 50_000;

    event GasMeasured(string operation, uint256 gasUsed, uint256 budget);

    function setUp() public override {
        super.setUp();
        // An earlier policy deal, run as in EscrowGasTest: the vault holds the token (milestone 1
        // stays funded) and the supplier has withdrawn a payment before.
        uint256 warm = _policyDeal();
        _fundWith(warm, 1, AMOUNT, _cleared(warm, 1, G.Action.Fund, AMOUNT));
        _toAcceptedCleared(warm, 0);
        _releaseWith(warm, 0, _cleared(warm, 0, G.Action.Release, AMOUNT));
        vm.prank(supplier);
        escrow.withdraw(address(usdc));
    }

    function _measured(string memory operation, uint256 budget) internal returns (uint256 gasUsed) {
        gasUsed = evm.lastCallGas().gasTotalUsed;
        emit GasMeasured(operation, gasUsed, budget);
        assertTrue(gasUsed <= budget, operation);
    }

    function test_gas_createDeal_policy() public {
        I.DealParams memory p = _params(3, 2);
        p.policy = POLICY;
        I.MilestoneParams[] memory ms = _milestones(2, AMOUNT);
        vm.prank(buyer);
        escrow.createDeal(p, ms);
        _measured("createDeal (policy, gate checks parties)", CREATE_BUDGET);
    }

    function test_gas_fund_withClearance() public {
        uint256 id = _policyDeal();
        bytes memory c = _cleared(id, 0, G.Action.Fund, AMOUNT);
        _fundWith(id, 0, AMOUNT, c);
        _measured("fund (with clearance)", FUND_BUDGET);
    }

    function test_gas_fund_noPolicy_gatedVault() public {
        uint256 id = _standardDeal();
        _fund(id, 0, AMOUNT);
        _measured("fund (no policy, gated vault: freeze check only)", FUND_BUDGET);
    }

    function test_gas_release_withClearance() public {
        uint256 id = _policyDeal();
        _toAcceptedCleared(id, 0);
        bytes memory c = _cleared(id, 0, G.Action.Release, AMOUNT);
        _releaseWith(id, 0, c);
        _measured("release (accepted, with clearance)", RELEASE_BUDGET);
    }

    function test_gas_withdraw_gatedVault() public {
        uint256 id = _policyDeal();
        _toAcceptedCleared(id, 0);
        _releaseWith(id, 0, _cleared(id, 0, G.Action.Release, AMOUNT));
        vm.prank(supplier);
        escrow.withdraw(address(usdc));
        _measured("withdraw (gated vault: freeze check)", WITHDRAW_BUDGET);
    }
}
