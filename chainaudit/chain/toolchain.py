"""The Ethereum toolchain: where Anvil, Forge, Cast and solc live, and compiling the contracts.

Binaries are looked up in a fixed order and a missing tool raises
:class:`~chainaudit.core.errors.ToolchainError` with a message that says how to install it:

* ``anvil``, ``forge``, ``cast``: the native binary shipped in the pinned npm package
  ``node_modules/@foundry-rs/<name>-<platform>/bin``, else the one on ``PATH``;
* ``solc``: the ``CHAINAUDIT_SOLC`` environment variable, else a native ``solc`` of
  :data:`SOLC_VERSION` on ``PATH``, else py-solc-x's install folder, else the ``tools/solc``
  shim over the npm ``solc`` package (the compiler built to WebAssembly).

:func:`compile_contracts` compiles ``contracts/**/*.sol`` (tests and benchmark harnesses
excluded unless passed in) with the optimizer settings of ``foundry.toml`` and caches the output
under ``build/artifacts/<key>.json``, where the key is the SHA-256 of every Solidity source under
``contracts/``, the npm lock file, the settings and the compiler version. Nothing runs at import.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeAlias

from chainaudit.core.errors import ToolchainError

__all__ = [
    "SOLC_VERSION",
    "ContractArtifact",
    "ToolName",
    "compile_contracts",
    "compiler_version",
    "project_root",
    "solc_binary",
    "tool_path",
]

_log = logging.getLogger(__name__)

#: The solc version the contracts are built with (the pinned npm ``solc`` package).
SOLC_VERSION = "0.8.30"

#: The Foundry tools chainaudit runs.
ToolName: TypeAlias = Literal["anvil", "forge", "cast"]

_ROOT_ENV = "CHAINAUDIT_PROJECT_ROOT"
_SOLC_ENV = "CHAINAUDIT_SOLC"
_EXCLUDED_DIRS = frozenset({"test", "bench"})
_VERSION_RE = re.compile(r"Version:\s*(\d+\.\d+\.\d+)")
_CACHE_FORMAT = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractArtifact:
    """One compiled contract.

    ``bytecode`` (creation code) and ``deployed_bytecode`` (runtime code) are 0x-prefixed hex;
    both are ``"0x"`` for interfaces and abstract contracts.
    """

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    #: The source unit name the contract was compiled from, e.g. ``contracts/AuditAnchor.sol``.
    source: str = ""


def _is_project_root(path: Path) -> bool:
    return (path / "foundry.toml").is_file() and (path / "contracts").is_dir()


@cache
def _find_project_root(env_value: str | None, cwd: str) -> Path:
    if env_value:
        root = Path(env_value).expanduser().resolve()
        if not _is_project_root(root):
            raise ToolchainError(
                f"{_ROOT_ENV}={env_value} is not a chainaudit checkout "
                "(it needs foundry.toml and contracts/)"
            )
        return root
    package_parent = Path(__file__).resolve().parents[2]
    for candidate in (package_parent, *Path(cwd).resolve().parents, Path(cwd).resolve()):
        if _is_project_root(candidate):
            return candidate
    raise ToolchainError(
        "cannot find the chainaudit project root (a directory with foundry.toml and contracts/); "
        f"run from inside the checkout or set {_ROOT_ENV}"
    )


def project_root() -> Path:
    """Return the checkout's root directory (the one holding ``foundry.toml`` and ``contracts/``).

    Looks at ``$CHAINAUDIT_PROJECT_ROOT``, then the directory above the installed package, then
    the current directory and its parents.

    Raises:
        ToolchainError: no such directory was found.
    """
    return _find_project_root(os.environ.get(_ROOT_ENV), os.getcwd())


def _npm_platform() -> str:
    """The platform suffix of the ``@foundry-rs/<tool>-<platform>`` npm packages."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    system = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(
        sys.platform, sys.platform
    )
    return f"{system}-{arch}"


def tool_path(name: ToolName) -> Path:
    """Return the path of the ``anvil``, ``forge`` or ``cast`` executable.

    The native binary of the pinned npm package is preferred over one on ``PATH``.

    Raises:
        ToolchainError: the tool is in neither place.
    """
    exe = f"{name}.exe" if sys.platform == "win32" else name
    try:
        root: Path | None = project_root()
    except ToolchainError:
        root = None
    if root is not None:
        native = root / "node_modules" / "@foundry-rs" / f"{name}-{_npm_platform()}" / "bin" / exe
        if native.is_file() and os.access(native, os.X_OK):
            return native
    found = shutil.which(name)
    if found:
        return Path(found)
    where = f" in {root}" if root is not None else ""
    raise ToolchainError(
        f"{name} not found: run `npm ci`{where} (it installs the pinned @foundry-rs/{name} "
        f"package for {_npm_platform()}), or install Foundry so that `{name}` is on PATH"
    )


@cache
def _binary_version(path: str) -> str | None:
    """The ``x.y.z`` version a solc binary reports, or None when it does not run."""
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION_RE.search(done.stdout)
    return match.group(1) if done.returncode == 0 and match else None


def _solcx_binary() -> Path | None:
    try:
        import solcx  # noqa: PLC0415 - optional at runtime, imported lazily

        folder = Path(solcx.get_solcx_install_folder())
    except Exception:  # any failure just means "no usable py-solc-x install"
        return None
    name = f"solc-v{SOLC_VERSION}"
    for candidate in (folder / name / "solc", folder / name / "solc.exe", folder / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def solc_binary() -> Path:
    """Return the solc executable to compile with.

    Order: ``$CHAINAUDIT_SOLC``; a native ``solc`` on ``PATH`` that reports
    :data:`SOLC_VERSION`; py-solc-x's install folder (``solc-v<SOLC_VERSION>``); the
    ``tools/solc`` shim over npm ``solc``.

    Raises:
        ToolchainError: ``$CHAINAUDIT_SOLC`` names no executable, or nothing was found.
    """
    configured = os.environ.get(_SOLC_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolchainError(f"{_SOLC_ENV}={configured} is not an executable file")
        return path
    on_path = shutil.which("solc")
    if on_path and _binary_version(on_path) == SOLC_VERSION:
        return Path(on_path)
    installed = _solcx_binary()
    if installed is not None:
        return installed
    shim = project_root() / "tools" / "solc"
    if shim.is_file() and (project_root() / "node_modules" / "solc").is_dir():
        return shim
    raise ToolchainError(
        f"no solc {SOLC_VERSION} found: run `npm ci` (the tools/solc shim needs the npm solc "
        f"package), or set {_SOLC_ENV} to a solc {SOLC_VERSION} binary"
    )


def compiler_version(solc: Path) -> str:
    """Return the ``x.y.z`` version that the solc binary ``solc`` reports.

    Raises:
        ToolchainError: the binary does not run or does not report a version.
    """
    version = _binary_version(str(solc))
    if version is None:
        raise ToolchainError(f"{solc} --version failed; is it a working solc binary?")
    return version


def _compiler_settings(root: Path) -> dict[str, Any]:
    """Standard-JSON settings mirroring ``[profile.default]`` of ``foundry.toml``."""
    try:
        with (root / "foundry.toml").open("rb") as fh:
            profile = tomllib.load(fh).get("profile", {}).get("default", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ToolchainError(f"cannot read {root / 'foundry.toml'}: {exc}") from exc
    settings: dict[str, Any] = {
        "optimizer": {
            "enabled": bool(profile.get("optimizer", False)),
            "runs": int(profile.get("optimizer_runs", 200)),
        },
        "evmVersion": str(profile.get("evm_version", "prague")),
        "remappings": sorted(str(r) for r in profile.get("remappings", [])),
        "outputSelection": {
            "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
        },
    }
    if profile.get("via_ir"):
        settings["viaIR"] = True
    return settings


def _default_sources(root: Path) -> list[Path]:
    contracts = root / "contracts"
    return sorted(
        path
        for path in contracts.rglob("*.sol")
        if not _EXCLUDED_DIRS.intersection(path.relative_to(contracts).parts[:-1])
    )


def _unit_name(root: Path, path: Path) -> str:
    resolved = (path if path.is_absolute() else root / path).resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError as exc:
        raise ToolchainError(f"{path} is outside the project root {root}") from exc


def _cache_key(root: Path, units: Iterable[str], settings: dict[str, Any], version: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"format={_CACHE_FORMAT}\nsolc={version}\n".encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(("\nunits=" + ",".join(sorted(units)) + "\n").encode())
    # Every Solidity file under contracts/ (a main source may import any of them) and the npm
    # lock file, which pins OpenZeppelin.
    watched = sorted((root / "contracts").rglob("*.sol"))
    lock = root / "package-lock.json"
    if lock.is_file():
        watched.append(lock)
    for path in watched:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _artifacts_from_output(
    output: dict[str, Any], units: Sequence[str]
) -> dict[str, ContractArtifact]:
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        text = "\n".join(str(e.get("formattedMessage", e.get("message", e))) for e in errors)
        raise ToolchainError(f"solc failed:\n{text}")
    artifacts: dict[str, ContractArtifact] = {}
    for unit in units:
        for name, data in output.get("contracts", {}).get(unit, {}).items():
            if name in artifacts:
                raise ToolchainError(
                    f"contract name {name} is defined in both {artifacts[name].source} and {unit}"
                )
            evm = data.get("evm", {})
            artifacts[name] = ContractArtifact(
                name=name,
                abi=list(data.get("abi", [])),
                bytecode="0x" + str(evm.get("bytecode", {}).get("object", "")),
                deployed_bytecode="0x" + str(evm.get("deployedBytecode", {}).get("object", "")),
                source=unit,
            )
    return artifacts


def _write_cache(path: Path, artifacts: dict[str, ContractArtifact]) -> None:
    payload = {
        name: {
            "abi": a.abi,
            "bytecode": a.bytecode,
            "deployed_bytecode": a.deployed_bytecode,
            "source": a.source,
        }
        for name, a in artifacts.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"format": _CACHE_FORMAT, "contracts": payload}, sort_keys=True))
    os.replace(tmp, path)


def _read_cache(path: Path) -> dict[str, ContractArtifact] | None:
    try:
        data = json.loads(path.read_text())
        return {
            name: ContractArtifact(
                name=name,
                abi=entry["abi"],
                bytecode=entry["bytecode"],
                deployed_bytecode=entry["deployed_bytecode"],
                source=entry["source"],
            )
            for name, entry in data["contracts"].items()
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None


def artifacts_dir() -> Path:
    """Return the directory of cached compiler output (``build/artifacts`` of the checkout)."""
    return project_root() / "build" / "artifacts"


def compile_contracts(
    extra_sources: Sequence[str | Path] = (), *, use_cache: bool = True
) -> dict[str, ContractArtifact]:
    """Compile the project's contracts and return them by contract name.

    Compiles every ``contracts/**/*.sol`` outside ``contracts/test`` and ``contracts/bench``,
    plus ``extra_sources`` (paths relative to the project root or absolute, inside it), through
    py-solc-x's ``compile_standard`` with :func:`solc_binary` and the optimizer settings of
    ``foundry.toml``. Only contracts defined in those files are returned (not imported
    dependencies). The result is cached under ``build/artifacts``; an unchanged tree is a cache
    hit and runs no compiler.

    Raises:
        ToolchainError: no compiler, a compile error, or two contracts with the same name.
    """
    root = project_root()
    units = sorted(
        {_unit_name(root, p) for p in _default_sources(root)}
        | {_unit_name(root, Path(p)) for p in extra_sources}
    )
    for unit in units:
        if not (root / unit).is_file():
            raise ToolchainError(f"source file {unit} does not exist")
    solc = solc_binary()
    version = compiler_version(solc)
    settings = _compiler_settings(root)
    cache_file = artifacts_dir() / f"{_cache_key(root, units, settings, version)}.json"
    if use_cache:
        cached = _read_cache(cache_file)
        if cached is not None:
            _log.debug("compile cache hit: %s", cache_file)
            return cached

    import solcx  # noqa: PLC0415 - heavy import, only needed on a cache miss
    from solcx.exceptions import SolcError  # noqa: PLC0415

    sources = {unit: {"content": (root / unit).read_text(encoding="utf-8")} for unit in units}
    _log.info("compiling %d Solidity files with %s (solc %s)", len(units), solc, version)
    try:
        output: dict[str, Any] = solcx.compile_standard(
            {"language": "Solidity", "sources": sources, "settings": settings},
            solc_binary=solc,
            base_path=str(root),
            allow_paths=[str(root / "contracts"), str(root / "node_modules")],
        )
    except SolcError as exc:
        raise ToolchainError(f"solc failed: {exc}") from exc
    except OSError as exc:
        raise ToolchainError(f"cannot run {solc}: {exc}") from exc
    artifacts = _artifacts_from_output(output, units)
    _write_cache(cache_file, artifacts)
    return artifacts
