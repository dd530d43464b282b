"""Tests of chainaudit.chain.toolchain: finding the tools and compiling with a content-addressed
cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import solcx

from chainaudit.chain import toolchain
from chainaudit.chain.escrow_deploy import EIP170_CODE_LIMIT
from chainaudit.chain.toolchain import (
    SOLC_VERSION,
    compile_contracts,
    project_root,
    solc_binary,
    tool_path,
)
from chainaudit.core.errors import ToolchainError

ROOT = Path(__file__).resolve().parents[1]


def test_project_root_is_the_checkout() -> None:
    assert project_root() == ROOT
    assert (project_root() / "foundry.toml").is_file()


def test_solc_shim_answers_version_in_native_format() -> None:
    done = subprocess.run(
        [str(ROOT / "tools" / "solc"), "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines()[0].startswith("solc, the solidity compiler")
    assert f"Version: {SOLC_VERSION}+commit." in done.stdout


def test_solc_binary_reports_the_pinned_version() -> None:
    assert toolchain.compiler_version(solc_binary()) == SOLC_VERSION


@pytest.mark.parametrize("name", ["anvil", "forge", "cast"])
def test_tool_path_prefers_pinned_npm_binary(name: toolchain.ToolName) -> None:
    path = tool_path(name)
    assert "node_modules" in path.parts and path.name == name
    done = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
    assert "1.7.1" in done.stdout


@pytest.fixture
def tiny_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway checkout: foundry.toml, node_modules and tools of the real one, one contract."""
    (tmp_path / "contracts" / "test").mkdir(parents=True)
    shutil.copy(ROOT / "foundry.toml", tmp_path / "foundry.toml")
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    (tmp_path / "tools").symlink_to(ROOT / "tools")
    (tmp_path / "contracts" / "Tiny.sol").write_text(
        "// SPDX-License-Identifier: Apache-2.0\npragma solidity ^0.8.24;\n"
        'import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";\n'
        "contract Tiny is Ownable { constructor() Ownable(msg.sender) {}\n"
        "  function answer() external pure returns (uint256) { return 42; } }\n"
    )
    (tmp_path / "contracts" / "test" / "Tiny.t.sol").write_text("this is not solidity\n")
    monkeypatch.setenv("CHAINAUDIT_PROJECT_ROOT", str(tmp_path))
    return tmp_path


def _count_compiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = solcx.compile_standard

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(solcx, "compile_standard", counting)
    return calls


def test_compile_then_cache_hit_then_recompile_on_change(
    tiny_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_compiles(monkeypatch)
    first = compile_contracts()
    assert set(first) == {"Tiny"}  # tests are not compiled, imported Ownable is not returned
    tiny = first["Tiny"]
    assert tiny.source == "contracts/Tiny.sol"
    assert any(item.get("name") == "answer" for item in tiny.abi)
    assert tiny.bytecode.startswith("0x60") and len(tiny.deployed_bytecode) > 100
    assert len(calls) == 1
    cached = list((tiny_project / "build" / "artifacts").glob("*.json"))
    assert len(cached) == 1

    assert compile_contracts() == first  # unchanged tree: a cache hit, no compiler run
    assert len(calls) == 1

    source = tiny_project / "contracts" / "Tiny.sol"
    source.write_text(source.read_text().replace("42", "43"))
    changed = compile_contracts()
    assert len(calls) == 2
    assert changed["Tiny"].deployed_bytecode != tiny.deployed_bytecode
    assert len(list((tiny_project / "build" / "artifacts").glob("*.json"))) == 2


def test_compile_error_raises_toolchain_error(tiny_project: Path) -> None:
    (tiny_project / "contracts" / "Broken.sol").write_text(
        "// SPDX-License-Identifier: Apache-2.0\npragma solidity ^0.8.24;\ncontract Broken {\n"
    )
    with pytest.raises(ToolchainError, match=r"Broken\.sol"):
        compile_contracts()


def test_extra_sources_are_compiled(tiny_project: Path) -> None:
    bench = tiny_project / "contracts" / "bench"
    bench.mkdir()
    (bench / "Harness.sol").write_text(
        "// SPDX-License-Identifier: Apache-2.0\npragma solidity ^0.8.24;\n"
        "contract Harness { function f() external {} }\n"
    )
    assert "Harness" not in compile_contracts()
    assert set(compile_contracts(["contracts/bench/Harness.sol"])) == {"Tiny", "Harness"}


def test_real_contracts_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    artifacts = compile_contracts()
    anchor = artifacts["AuditAnchor"]
    names = {item.get("name") for item in anchor.abi}
    assert {"anchor", "verifyInclusion", "checkpoint", "CheckpointAnchored"} <= names
    assert len(anchor.deployed_bytecode) > 1000
    # Second call on the unchanged tree must not run the compiler at all.
    monkeypatch.setattr(solcx, "compile_standard", _fail)
    assert compile_contracts() == artifacts


#: EIP-170: the most runtime code a contract may have (Ethereum and every major EVM chain).
EIP170_RUNTIME_LIMIT = 24_576
#: EIP-3860: the most creation code (init code) a deployment may send.
EIP3860_INITCODE_LIMIT = 2 * EIP170_RUNTIME_LIMIT


def _size(hex_code: str) -> int:
    return (len(hex_code) - 2) // 2


def test_deployable_contracts_fit_the_eip170_code_size_limit() -> None:
    """Every contract under contracts/ (tests and benchmark harnesses aside) can be deployed on a
    real network: runtime code within EIP-170, creation code within EIP-3860, compiled with the
    project's settings (those of foundry.toml, via-IR included)."""
    artifacts = compile_contracts()
    deployable = {name: a for name, a in artifacts.items() if _size(a.deployed_bytecode) > 0}
    assert {"AuditAnchor", "SupplyChainEscrow"} <= set(deployable)
    runtime = {name: _size(a.deployed_bytecode) for name, a in deployable.items()}
    over = {name: size for name, size in runtime.items() if size > EIP170_RUNTIME_LIMIT}
    assert not over, (
        f"runtime code over the EIP-170 limit of {EIP170_RUNTIME_LIMIT:,} bytes: {over} "
        "(no public chain accepts such a deployment)"
    )
    initcode = {name: _size(a.bytecode) for name, a in deployable.items()}
    over = {name: size for name, size in initcode.items() if size > EIP3860_INITCODE_LIMIT}
    assert not over, f"creation code over the EIP-3860 limit of {EIP3860_INITCODE_LIMIT:,}: {over}"


def test_eip170_limit_matches_the_deploy_helper() -> None:
    assert EIP170_CODE_LIMIT == EIP170_RUNTIME_LIMIT


def test_compiler_settings_mirror_foundry_toml() -> None:
    """Python compiles what forge compiles: same optimizer, EVM version and pipeline (via-IR)."""
    with (ROOT / "foundry.toml").open("rb") as fh:
        profile = tomllib.load(fh)["profile"]["default"]
    settings = toolchain._compiler_settings(ROOT)
    assert settings["optimizer"] == {
        "enabled": profile["optimizer"],
        "runs": profile["optimizer_runs"],
    }
    assert settings["evmVersion"] == profile["evm_version"]
    assert settings.get("viaIR", False) == profile.get("via_ir", False)


def _fail(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("the compiler ran on an unchanged tree")


def test_missing_tool_is_an_actionable_error(
    tiny_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tiny_project / "node_modules").unlink()
    (tiny_project / "node_modules").mkdir()
    monkeypatch.setenv("PATH", str(tiny_project / "empty-bin"))
    with pytest.raises(ToolchainError, match=r"npm ci.*@foundry-rs/anvil"):
        tool_path("anvil")


def test_chainaudit_solc_env_wins_and_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "solc"
    fake.write_text("#!/bin/sh\necho 'Version: 0.8.30+commit.deadbeef'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CHAINAUDIT_SOLC", str(fake))
    assert solc_binary() == fake
    monkeypatch.setenv("CHAINAUDIT_SOLC", str(tmp_path / "missing"))
    with pytest.raises(ToolchainError, match="CHAINAUDIT_SOLC"):
        solc_binary()


def test_native_solc_on_path_with_wrong_version_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for version, name in (("0.8.19", "old"), (SOLC_VERSION, "good")):
        d = bin_dir / name
        d.mkdir()
        exe = d / "solc"
        exe.write_text(f"#!/bin/sh\necho 'Version: {version}+commit.00000000.Linux.g++'\n")
        exe.chmod(0o755)
    monkeypatch.delenv("CHAINAUDIT_SOLC", raising=False)
    monkeypatch.setenv("PATH", f"{bin_dir / 'old'}{os.pathsep}/usr/bin")
    assert solc_binary() != bin_dir / "old" / "solc"
    monkeypatch.setenv("PATH", f"{bin_dir / 'good'}{os.pathsep}/usr/bin")
    assert solc_binary() == bin_dir / "good" / "solc"
