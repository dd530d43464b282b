// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice Extra cheatcodes used only by the escrow tests. Declared here (same cheatcode
/// address as `Vm`) so that the shared `contracts/test/Vm.sol` stays untouched.
interface EscrowVm {
    struct Gas {
        uint64 gasLimit;
        uint64 gasTotalUsed;
        uint64 gasMemoryUsed;
        int64 gasRefunded;
        uint64 gasRemaining;
    }

    function lastCallGas() external view returns (Gas memory gas);
    function expectRevert(bytes calldata revertData, address reverter) external;
    function getBlockTimestamp() external view returns (uint256);
    function getChainId() external view returns (uint256);
    function isContext(uint8 context) external view returns (bool);
}
