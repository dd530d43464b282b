"""No input crashes a process: a deeply nested body sent with no key to a real `chainaudit
serve` process is refused with a problem, and the server keeps serving (issue 14)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chainaudit.app.settings import Settings
from chainaudit.chain.devnet import Devnet, free_port
from tests.api.conftest import make_settings

DEEP = b"[" * 200_000 + b"]" * 200_000  # 400 KB, 200,000 levels
DEEP_OBJECTS = b'{"a":' * 80_000 + b"1" + b"}" * 80_000


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a `chainaudit` subprocess these settings."""
    assert settings.anchorer_key is not None and settings.anchor_contract is not None
    return {
        **os.environ,
        "CHAINAUDIT_DATA_DIR": str(settings.data_dir),
        "CHAINAUDIT_RPC_URL": settings.rpc_url,
        "CHAINAUDIT_DEPLOYMENTS_DIR": str(settings.deployments_dir),
        "CHAINAUDIT_ANCHOR_CONTRACT": settings.anchor_contract,
        "CHAINAUDIT_ANCHORER_KEY": settings.anchorer_key.get_secret_value(),
        "CHAINAUDIT_MAX_BATCH_SECONDS": "3600",
    }


@pytest.fixture
def served(tmp_path: Path, anvil: Devnet) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`chainaudit serve` in its own process (the real entry point and its imports)."""
    settings = make_settings(tmp_path, anvil)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:  # a file, not a pipe nobody reads
        process = subprocess.Popen(
            [sys.executable, "-m", "chainaudit", "serve", "--port", str(port)],
            env=settings_env(settings),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)
    try:
        yield url, process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/records", DEEP),
        ("/v1/records/batch", DEEP),
        ("/v1/verify", DEEP_OBJECTS),
        ("/v1/deals", DEEP),
    ],
)
def test_deep_body_without_a_key_is_refused_and_the_server_keeps_serving(
    served: tuple[str, subprocess.Popen[bytes]], path: str, body: bytes
) -> None:
    url, process = served
    response = httpx.post(
        url + path, content=body, headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "https://chainaudit.dev/problems/nesting-too-deep"
    assert problem["instance"] == path
    assert "at most 64 are allowed" in problem["detail"]
    assert process.poll() is None
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    assert process.poll() is None


def test_nesting_within_the_limit_reaches_the_route(
    served: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, _ = served
    shallow = b"[" * 64 + b"]" * 64
    response = httpx.post(
        url + "/v1/records", content=shallow, headers={"content-type": "application/json"}
    )
    assert response.status_code == 401  # parsed, then refused for want of a key
