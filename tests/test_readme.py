"""The README's API tour runs as written: the shell block is extracted and executed against a
real devnet and a real `chainaudit serve` (ports moved to free ones, everything stopped)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from chainaudit.chain.devnet import free_port

ROOT = Path(__file__).resolve().parents[1]


def tour_block() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("A short tour")
    match = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert match is not None, "the README lost its API tour"
    return match.group(1)


def test_api_tour_runs_as_written(tmp_path: Path) -> None:
    api_port, chain_port = free_port(), free_port()
    script = (
        tour_block()
        .replace("8000", str(api_port))
        .replace("http://127.0.0.1:8545", f"http://127.0.0.1:{chain_port}")
        .replace("chainaudit devnet --detach", f"chainaudit devnet --detach --port {chain_port}")
    )
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CHAINAUDIT_RPC_URL": f"http://127.0.0.1:{chain_port}",
        "CHAINAUDIT_MAX_BATCH_SECONDS": "3600",
    }
    transcript = tmp_path / "transcript.txt"
    with transcript.open("w") as out:  # a file, not a pipe: the backgrounded server keeps it
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
        os.killpg(process.pid, signal.SIGTERM)  # the backgrounded `chainaudit serve`
        subprocess.run(
            [sys.executable, "-m", "chainaudit", "devnet", "--stop"],
            cwd=tmp_path,
            env=env,
            check=False,
            capture_output=True,
        )
    assert process.returncode == 0, output
    assert '"record_id":"po-1"' in output and '"inclusion_proof"' in output
    assert "VALID: record po-1" in output
    assert '"type":"https://chainaudit.dev/problems/not-found"' in output
