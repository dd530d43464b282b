"""The local devnet: an Anvil process configured from ``anvil.env``.

* :func:`load_settings` reads ``anvil.env`` (``KEY=VALUE`` lines, values optionally quoted)
  into a :class:`DevnetSettings`;
* :class:`Devnet` runs Anvil as a child process, waits until it answers ``eth_chainId`` on
  loopback, and stops it (also as a context manager);
* :func:`start_detached` / :func:`stop_detached` run Anvil in its own session, tracked by a pid
  file under a data directory (for ``chainaudit devnet --detach``);
* :func:`derive_accounts` returns the devnet's well-known accounts, derived from the mnemonic in
  ``anvil.env`` along ``m/44'/60'/0'/0/i``. These are public test keys: never use them on a
  real network.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from chainaudit.chain.toolchain import project_root, tool_path
from chainaudit.core.errors import ChainError, ChainUnavailableError, ConfigError, ToolchainError

__all__ = [
    "DetachedDevnet",
    "DevAccount",
    "Devnet",
    "DevnetSettings",
    "derive_accounts",
    "free_port",
    "load_settings",
    "start_detached",
    "stop_detached",
    "wait_for_rpc",
]

_HD_PATH = "m/44'/60'/0'/0/{index}"
_LOOPBACK = "127.0.0.1"
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - names, not a bind
_PID_FILE = "anvil.pid"
_INFO_FILE = "anvil.json"
_LOG_FILE = "anvil.log"


@dataclass(frozen=True, slots=True, kw_only=True)
class DevnetSettings:
    """Anvil's settings, as in ``anvil.env``."""

    chain_id: int
    host: str
    port: int
    #: Seconds between blocks; 0 mines a block per transaction.
    block_time: int
    #: How many funded accounts Anvil derives from the mnemonic.
    accounts: int
    #: Each account's balance, in ether.
    balance: int
    mnemonic: str
    gas_limit: int


@dataclass(frozen=True, slots=True)
class DevAccount:
    """A funded devnet account (a well-known, public test key)."""

    address: str
    #: 0x-prefixed hex private key.
    private_key: str


_INT_FIELDS = {
    "ANVIL_CHAIN_ID": "chain_id",
    "ANVIL_PORT": "port",
    "ANVIL_BLOCK_TIME": "block_time",
    "ANVIL_ACCOUNTS": "accounts",
    "ANVIL_BALANCE": "balance",
    "ANVIL_GAS_LIMIT": "gas_limit",
}
_STR_FIELDS = {"ANVIL_HOST": "host", "ANVIL_MNEMONIC": "mnemonic"}


def _parse_env_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read devnet settings {path}: {exc}") from exc
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"{path}:{lineno}: expected KEY=VALUE, got {raw!r}")
        try:
            parts = shlex.split(value, comments=True)
        except ValueError as exc:
            raise ConfigError(f"{path}:{lineno}: {exc} in {raw!r}") from exc
        values[key] = " ".join(parts)
    return values


def load_settings(path: Path | None = None) -> DevnetSettings:
    """Read the devnet settings from ``anvil.env`` (default: the one in the project root).

    Raises:
        ConfigError: the file is missing, malformed, or lacks a setting.
    """
    env_path = path if path is not None else project_root() / "anvil.env"
    values = _parse_env_file(env_path)
    fields: dict[str, int | str] = {}
    for key, name in _INT_FIELDS.items():
        if key not in values:
            raise ConfigError(f"{env_path}: {key} is missing")
        try:
            number = int(values[key], 10)
        except ValueError as exc:
            raise ConfigError(f"{env_path}: {key}={values[key]!r} is not an integer") from exc
        if number < 0:
            raise ConfigError(f"{env_path}: {key} must not be negative")
        fields[name] = number
    for key, name in _STR_FIELDS.items():
        if not values.get(key):
            raise ConfigError(f"{env_path}: {key} is missing")
        fields[name] = values[key]
    settings = DevnetSettings(**fields)  # type: ignore[arg-type]
    if not 0 < settings.port < 65536:
        raise ConfigError(f"{env_path}: ANVIL_PORT={settings.port} is not a TCP port")
    return settings


def derive_accounts(mnemonic: str, count: int) -> list[DevAccount]:
    """Derive the first ``count`` accounts of ``mnemonic`` along ``m/44'/60'/0'/0/i``.

    These match the accounts Anvil funds for the same mnemonic.
    """
    from eth_account import Account  # noqa: PLC0415 - keep `import chainaudit.chain.devnet` light

    Account.enable_unaudited_hdwallet_features()
    accounts = []
    for index in range(count):
        local = Account.from_mnemonic(mnemonic, account_path=_HD_PATH.format(index=index))
        accounts.append(DevAccount(address=local.address, private_key="0x" + local.key.hex()))
    return accounts


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((_LOOPBACK, port)) != 0:
            return False
        # A connect to a free ephemeral port can reach the socket itself (TCP simultaneous
        # open); that is no listener.
        return bool(sock.getsockname() != sock.getpeername())


def _loopback_url(host: str, port: int) -> str:
    target = _LOOPBACK if host in _WILDCARD_HOSTS or host == "localhost" else host
    if ":" in target:
        target = f"[{target}]"
    return f"http://{target}:{port}"


def _rpc_chain_id(url: str, timeout: float) -> int:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    request = urllib.request.Request(  # noqa: S310 - a local http URL built above
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        reply = json.loads(response.read())
    return int(reply["result"], 16)


def wait_for_rpc(
    url: str,
    *,
    timeout: float = 30.0,
    expected_chain_id: int | None = None,
    process: subprocess.Popen[bytes] | None = None,
) -> int:
    """Poll ``eth_chainId`` at ``url`` until it answers, and return the chain id.

    Raises:
        ToolchainError: ``process`` exited before the endpoint answered.
        ChainError: the endpoint answered with another chain id than ``expected_chain_id``.
        ChainUnavailableError: no answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        if process is not None and process.poll() is not None:
            raise ToolchainError(
                f"anvil exited with status {process.returncode} before answering at {url}"
            )
        try:
            chain_id = _rpc_chain_id(url, timeout=2.0)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            last_error = exc
        else:
            if expected_chain_id is not None and chain_id != expected_chain_id:
                raise ChainError(
                    f"{url} answered chain id {chain_id}, expected {expected_chain_id}"
                )
            return chain_id
        if time.monotonic() >= deadline:
            raise ChainUnavailableError(
                f"no answer to eth_chainId at {url} within {timeout:g}s: {last_error}"
            )
        time.sleep(0.05)


def _anvil_command(
    settings: DevnetSettings, host: str, port: int, extra_args: Sequence[str] = ()
) -> list[str]:
    command = [
        str(tool_path("anvil")),
        "--host",
        host,
        "--port",
        str(port),
        "--chain-id",
        str(settings.chain_id),
        "--accounts",
        str(settings.accounts),
        "--balance",
        str(settings.balance),
        "--mnemonic",
        settings.mnemonic,
        "--gas-limit",
        str(settings.gas_limit),
    ]
    if settings.block_time > 0:
        command += ["--block-time", str(settings.block_time)]
    return command + list(extra_args)


def _check_port_free(host: str, port: int) -> None:
    if _port_in_use(port):
        raise ChainError(
            f"port {port} is already in use on {host}; pick another port (or stop the "
            "process holding it)"
        )


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


class Devnet:
    """An Anvil devnet run as a child process.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with Devnet(port=free_port()) as devnet:
            print(devnet.rpc_url, devnet.chain_id, devnet.accounts[0].address)
    """

    def __init__(
        self,
        settings: DevnetSettings | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        startup_timeout: float = 30.0,
        log_path: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """Prepare (not start) a devnet.

        ``host`` and ``port`` override ``settings``; ``extra_args`` are appended to Anvil's
        command line (for example ``["--steps-tracing"]``).
        """
        self.settings = settings if settings is not None else load_settings()
        self.host = host if host is not None else self.settings.host
        self.port = port if port is not None else self.settings.port
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self.extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._accounts: list[DevAccount] | None = None

    @property
    def rpc_url(self) -> str:
        """The JSON-RPC endpoint, on loopback when Anvil listens on every interface."""
        return _loopback_url(self.host, self.port)

    @property
    def chain_id(self) -> int:
        """The chain id Anvil runs with."""
        return self.settings.chain_id

    @property
    def accounts(self) -> list[DevAccount]:
        """The funded accounts (public test keys), in Anvil's order."""
        if self._accounts is None:
            self._accounts = derive_accounts(self.settings.mnemonic, self.settings.accounts)
        return self._accounts

    @property
    def pid(self) -> int | None:
        """The Anvil process id while it runs."""
        return self._process.pid if self.is_running() and self._process else None

    def is_running(self) -> bool:
        """Whether the Anvil process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start Anvil and wait until it answers ``eth_chainId``.

        Raises:
            ChainError: the port is already taken, or something else answers there.
            ToolchainError: anvil is missing or exited during startup.
            ChainUnavailableError: anvil did not answer within ``startup_timeout``.
        """
        if self.is_running():
            return self
        _check_port_free(self.host, self.port)
        command = _anvil_command(self.settings, self.host, self.port, self.extra_args)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        sink: IO[bytes] | int = self._log if self._log is not None else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            self._close_log()
            raise ToolchainError(f"cannot run {command[0]}: {exc}") from exc
        try:
            wait_for_rpc(
                self.rpc_url,
                timeout=self.startup_timeout,
                expected_chain_id=self.chain_id,
                process=self._process,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Anvil (SIGTERM, then SIGKILL after ``timeout`` seconds); idempotent."""
        if self._process is not None:
            _terminate(self._process, timeout)
            self._process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        """Start the devnet."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the devnet."""
        self.stop()

    def __repr__(self) -> str:
        """A short description with the URL and state."""
        state = "running" if self.is_running() else "stopped"
        return f"Devnet({self.rpc_url}, chain_id={self.chain_id}, {state})"


@dataclass(frozen=True, slots=True, kw_only=True)
class DetachedDevnet:
    """A detached Anvil, as recorded in its data directory."""

    pid: int
    rpc_url: str
    chain_id: int
    pid_file: Path
    log_file: Path


def start_detached(
    data_dir: Path,
    settings: DevnetSettings | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    startup_timeout: float = 30.0,
) -> DetachedDevnet:
    """Start Anvil in its own session, outliving this process, and wait until it answers.

    Writes ``anvil.pid`` (the process id), ``anvil.json`` (pid, URL, chain id) and
    ``anvil.log`` under ``data_dir``.

    Raises:
        ChainError: a devnet recorded in ``data_dir`` still runs, or the port is taken.
        ToolchainError: anvil is missing or exited during startup.
        ChainUnavailableError: anvil did not answer within ``startup_timeout``.
    """
    settings = settings if settings is not None else load_settings()
    host = host if host is not None else settings.host
    port = port if port is not None else settings.port
    data_dir.mkdir(parents=True, exist_ok=True)
    pid_file = data_dir / _PID_FILE
    existing = _read_pid(pid_file)
    if existing is not None and _is_anvil(existing):
        raise ChainError(f"a devnet is already running (pid {existing}, {pid_file}); stop it first")
    _check_port_free(host, port)
    log_file = data_dir / _LOG_FILE
    command = _anvil_command(settings, host, port)
    with log_file.open("ab") as log:
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise ToolchainError(f"cannot run {command[0]}: {exc}") from exc
    url = _loopback_url(host, port)
    try:
        wait_for_rpc(
            url, timeout=startup_timeout, expected_chain_id=settings.chain_id, process=process
        )
    except BaseException:
        _terminate(process, 10.0)
        raise
    _write_atomic(pid_file, f"{process.pid}\n")
    info = {"pid": process.pid, "rpc_url": url, "chain_id": settings.chain_id}
    _write_atomic(data_dir / _INFO_FILE, json.dumps(info, indent=2) + "\n")
    return DetachedDevnet(
        pid=process.pid,
        rpc_url=url,
        chain_id=settings.chain_id,
        pid_file=pid_file,
        log_file=log_file,
    )


def stop_detached(pid_file: Path, timeout: float = 10.0) -> bool:
    """Stop the Anvil recorded in ``pid_file`` and remove its pid and info files.

    Only a process that is Anvil is signalled (a stale pid reused by another program is left
    alone). Returns True when a running devnet was stopped, False when none was running.

    Raises:
        ChainError: the process did not exit, even after SIGKILL.
    """
    pid = _read_pid(pid_file)
    stopped = False
    if pid is not None and _is_anvil(pid):
        _signal(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            _signal(pid, signal.SIGKILL)
            if not _wait_gone(pid, timeout):
                raise ChainError(f"anvil (pid {pid}) did not exit after SIGKILL")
        stopped = True
    for path in (pid_file, pid_file.with_name(_INFO_FILE)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return stopped


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_pid(pid_file: Path) -> int | None:
    try:
        text = pid_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ChainError(f"cannot read {pid_file}: {exc}") from exc
    if not text.isdigit() or int(text) <= 0:
        raise ChainError(f"{pid_file} does not hold a process id: {text!r}")
    return int(text)


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child (so it is not left a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _is_alive(pid: int) -> bool:
    _reap(pid)
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            # The state follows the parenthesised command name; Z is a zombie, X dead.
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in {"Z", "X"}
    if sys.platform == "linux":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_anvil(pid: int) -> bool:
    if not _is_alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            argv0 = cmdline.read_bytes().split(b"\0", 1)[0]
        except OSError:
            return False
        return Path(os.fsdecode(argv0)).name.startswith("anvil")
    return True  # no /proc (macOS): trust the pid file


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
