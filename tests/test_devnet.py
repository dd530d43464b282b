"""Tests of chainaudit.chain.devnet against real Anvil processes (never on port 8545)."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest

from chainaudit.chain.devnet import (
    Devnet,
    derive_accounts,
    free_port,
    load_settings,
    start_detached,
    stop_detached,
    wait_for_rpc,
)
from chainaudit.core.errors import ChainError, ChainUnavailableError, ConfigError

# Anvil's first well-known account for the public "test ... junk" mnemonic.
FIRST_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
FIRST_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def rpc(url: str, method: str, params: list[object] | None = None) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["result"]


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return False
    return stat.read_text().rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def port_open(port: int) -> bool:
    """Whether something listens on the loopback port.

    Binding, not connecting: a connect to a free port in the ephemeral range can succeed by
    connecting the socket to itself (TCP simultaneous open), which once failed CI.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def test_load_settings_reads_anvil_env() -> None:
    settings = load_settings()
    assert settings.chain_id == 31337
    assert settings.host == "127.0.0.1"
    assert settings.mnemonic == "test test test test test test test test test test test junk"
    assert settings.accounts == 10 and settings.balance == 10000
    assert settings.block_time == 0 and settings.gas_limit == 30_000_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ANVIL_CHAIN_ID=31337\n", "is missing"),
        ("ANVIL_CHAIN_ID=abc\n", "not an integer"),
        ("just a line\n", "KEY=VALUE"),
    ],
)
def test_load_settings_refuses_bad_files(tmp_path: Path, text: str, message: str) -> None:
    env = tmp_path / "anvil.env"
    env.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_load_settings_quotes_and_comments(tmp_path: Path) -> None:
    env = tmp_path / "anvil.env"
    lines = (Path(__file__).resolve().parents[1] / "anvil.env").read_text().splitlines()
    lines = [
        "ANVIL_MNEMONIC='one two  three' # trailing comment"
        if ln.startswith("ANVIL_MNEMONIC")
        else ln
        for ln in lines
    ]
    env.write_text("\n".join(lines) + "\n")
    assert load_settings(env).mnemonic == "one two  three"


def test_derive_accounts_matches_anvil_well_known_keys() -> None:
    accounts = derive_accounts(load_settings().mnemonic, 3)
    assert accounts[0].address == FIRST_ADDRESS
    assert accounts[0].private_key == FIRST_KEY
    assert len({a.address for a in accounts}) == 3


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert port != 8545
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_devnet_starts_answers_and_stops() -> None:
    port = free_port()
    devnet = Devnet(port=port)
    with devnet:
        assert devnet.is_running()
        pid = devnet.pid
        assert pid is not None and alive(pid)
        assert devnet.rpc_url == f"http://127.0.0.1:{port}"
        assert rpc(devnet.rpc_url, "eth_chainId") == hex(31337)
        accounts = rpc(devnet.rpc_url, "eth_accounts")
        assert isinstance(accounts, list)
        assert [a.lower() for a in accounts] == [a.address.lower() for a in devnet.accounts]
        balance = rpc(devnet.rpc_url, "eth_getBalance", [FIRST_ADDRESS, "latest"])
        assert int(str(balance), 16) == 10_000 * 10**18
    assert not devnet.is_running()
    assert not alive(pid)
    assert not port_open(port)
    devnet.stop()  # idempotent


def test_session_fixture(anvil: Devnet) -> None:
    assert anvil.chain_id == 31337
    assert rpc(anvil.rpc_url, "eth_chainId") == hex(anvil.chain_id)
    assert "8545" not in anvil.rpc_url


def test_devnet_refuses_a_busy_port() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(ChainError, match="already in use"):
            Devnet(port=holder.getsockname()[1]).start()


def test_wait_for_rpc_times_out_with_chain_unavailable() -> None:
    with pytest.raises(ChainUnavailableError, match="eth_chainId"):
        wait_for_rpc(f"http://127.0.0.1:{free_port()}", timeout=0.3)


def test_detached_devnet_start_and_stop_by_pid_file(tmp_path: Path) -> None:
    port = free_port()
    detached = start_detached(tmp_path, port=port)
    try:
        assert detached.pid_file == tmp_path / "anvil.pid"
        assert int(detached.pid_file.read_text()) == detached.pid
        info = json.loads((tmp_path / "anvil.json").read_text())
        assert info["rpc_url"] == detached.rpc_url == f"http://127.0.0.1:{port}"
        assert alive(detached.pid)
        assert rpc(detached.rpc_url, "eth_chainId") == hex(31337)
        # It runs in its own session, so a terminal's Ctrl-C does not reach it.
        assert os.getsid(detached.pid) == detached.pid
        with pytest.raises(ChainError, match="already running"):
            start_detached(tmp_path, port=free_port())
    finally:
        stopped = stop_detached(detached.pid_file)
    assert stopped is True
    assert not alive(detached.pid)
    assert not port_open(port)
    assert not detached.pid_file.exists()
    assert not (tmp_path / "anvil.json").exists()
    assert stop_detached(detached.pid_file) is False


def test_stop_detached_leaves_unrelated_processes_alone(tmp_path: Path) -> None:
    pid_file = tmp_path / "anvil.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # a stale pid that now belongs to pytest
    assert stop_detached(pid_file) is False
    assert alive(os.getpid())
    assert not pid_file.exists()
