// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice Test-only ERC-20 with a public faucet (6 decimals).
contract TestToken is ERC20 {
    constructor(string memory name_) ERC20(name_, name_) {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}

/// @notice Takes a 1% fee on every transfer (burned), like fee-on-transfer tokens.
contract FeeOnTransferToken is TestToken {
    constructor() TestToken("FEE") {}

    function _update(address from, address to, uint256 value) internal override {
        if (from != address(0) && to != address(0)) {
            uint256 fee = value / 100;
            super._update(from, address(0), fee);
            value -= fee;
        }
        super._update(from, to, value);
    }
}

/// @notice Pays a "rebase" bonus to the receiver of every transfer, so the receiver's balance
/// grows by more than the amount sent.
contract PositiveRebaseToken is TestToken {
    constructor() TestToken("REBASE") {}

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (from != address(0) && to != address(0)) super._update(address(0), to, 1);
    }
}

/// @notice Refuses transfers to block-listed accounts (like USDC's blacklist).
contract BlocklistToken is TestToken {
    mapping(address => bool) public blocked;

    error Blocked(address account);

    constructor() TestToken("BLOCK") {}

    function setBlocked(address account, bool value) external {
        blocked[account] = value;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (blocked[to]) revert Blocked(to);
        super._update(from, to, value);
    }
}

/// @notice On each transfer, calls back into a target with a configured payload (once), and
/// records whether that re-entrant call succeeded and what it returned.
contract ReentrantToken is TestToken {
    address public target;
    bytes public payload;
    bool public armed;
    bool public reentrySucceeded;
    bytes public reentryResult;

    constructor() TestToken("REENTER") {}

    function arm(address target_, bytes calldata payload_) external {
        target = target_;
        payload = payload_;
        armed = true;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (armed && from != address(0) && to != address(0)) {
            armed = false;
            (reentrySucceeded, reentryResult) = target.call(payload);
        }
    }
}

/// @notice A share-based rebasing token (stETH-like): balances are shares times a rate that
/// the token can cut (a negative rebase), so a holder's balance shrinks without any transfer.
/// Declares `sharesOf`, which the vault's allow-list refuses.
contract SharesRebaseToken is TestToken {
    uint256 public ratePercent = 100;

    constructor() TestToken("SHARES") {}

    function sharesOf(address account) external view returns (uint256) {
        return super.balanceOf(account);
    }

    function balanceOf(address account) public view override returns (uint256) {
        return super.balanceOf(account) * ratePercent / 100;
    }

    function rebase(uint256 newRatePercent) external {
        ratePercent = newRatePercent;
    }
}

/// @notice An Aave-like interest-bearing token that declares `scaledBalanceOf`.
contract ScaledBalanceToken is TestToken {
    constructor() TestToken("SCALED") {}

    function scaledBalanceOf(address account) external view returns (uint256) {
        return balanceOf(account);
    }
}
