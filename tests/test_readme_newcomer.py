"""The README's "Using it yourself" block runs as written, as a newcomer would run it: from a
checkout (here a temporary folder holding the checkout's `.venv`, `node_modules` and
`examples`), with nothing of the project on PATH until the block activates the venv and adds
npm's Foundry; the sample records ingest, anchor and verify on a real Anvil."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from chainaudit.chain.devnet import free_port
from chainaudit.core.records import parse_json_line

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "records.jsonl"


def newcomer_block() -> str:
    """The first shell block of the README's "Using it yourself" section."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Using it yourself")
    match = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert match is not None, "the README lost its 'Using it yourself' block"
    return match.group(1)


def test_the_sample_records_are_valid_client_records() -> None:
    lines = EXAMPLES.read_bytes().splitlines()
    assert len(lines) == 5
    ids = [
        parse_json_line(line.decode(), n, submitter="local:newcomer").record_id
        for n, line in enumerate(lines, 1)
    ]
    assert "cert-2026-0001" in ids and len(set(ids)) == len(ids)


def test_using_it_yourself_runs_as_written(tmp_path: Path) -> None:
    for name in (".venv", "node_modules", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    chain_port = free_port()
    rpc = f"http://127.0.0.1:{chain_port}"
    script = (
        newcomer_block()
        .replace("http://127.0.0.1:8545", rpc)
        .replace("chainaudit devnet --detach", f"chainaudit devnet --detach --port {chain_port}")
    )
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p and not p.startswith(venv_bin)]
    path = [p for p in path if "node_modules" not in p and "/.venv" not in p]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CHAINAUDIT_")},
        "PATH": os.pathsep.join(path),
        "CHAINAUDIT_RPC_URL": rpc,
    }
    env.pop("VIRTUAL_ENV", None)
    transcript = tmp_path / "transcript.txt"
    with transcript.open("w") as out:
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        process.wait(timeout=240)
        output = transcript.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        subprocess.run(
            [sys.executable, "-m", "chainaudit", "devnet", "--stop"],
            cwd=tmp_path,
            env=env,
            check=False,
            capture_output=True,
        )
    assert process.returncode == 0, output
    assert "5 new" in output
    assert "VALID: record cert-2026-0001" in output
    bundle_root = re.search(r'"root": ?"(0x[0-9a-f]{64})"', (tmp_path / "bundle.json").read_text())
    assert bundle_root is not None and bundle_root.group(1) in output  # cast read the same root
