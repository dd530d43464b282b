// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title MockStablecoin
/// @notice A 6-decimal stablecoin stand-in for devnets and tests; its owner mints (a faucet).
/// @dev Not for production: the owner can mint without limit.
contract MockStablecoin is ERC20, Ownable {
    /// @param name_ Token name, e.g. "Mock USD Coin".
    /// @param symbol_ Token symbol, e.g. "mUSDC".
    /// @param initialOwner The account allowed to mint.
    constructor(string memory name_, string memory symbol_, address initialOwner)
        ERC20(name_, symbol_)
        Ownable(initialOwner)
    {}

    /// @notice 6 decimals, like the common USD stablecoins.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mints `amount` to `to`.
    /// @dev Requirements: caller is the owner (else `OwnableUnauthorizedAccount`).
    /// Emits an ERC-20 {Transfer} event from the zero address.
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
