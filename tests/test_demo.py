"""`make demo`'s scenario runs end to end (in a directory of its own), twice, and
`--stop` stops everything it left running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.demo_lock import demo_running

ROOT = Path(__file__).resolve().parents[1]


def run_demo(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), *args],
        env={**os.environ, "CHAINAUDIT_DEMO_DIR": str(work)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_demo_plays_the_whole_scenario_and_stops(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    with demo_running():
        _plays_and_stops(work)


def _plays_and_stops(work: Path) -> None:
    try:
        first = run_demo(work)
        assert first.returncode == 0, first.stdout + first.stderr
        out = first.stdout
        for line in (
            "funded milestone 1",
            "milestone 1 released",
            "now owns milestone 2's claim",
            "is refused: SupplyChainEscrowInvoiceNotDeclared",
            "matched rule large-release: held",
            "Bob (approver) approved it",
            "milestone 2 released: 61,337.25 mUSDC credited to First Factor Bank",
            "VALID: record CERT-SGS-4411",
            "ALTERED    index",
            "restored; audit: clean",
            "matched rule large-release: held, alert AL-",
            "left open, compliance hold left in place",
            "signed in as the compliance officer",
        ):
            assert line in out, line
        urls = [row.split()[-1] for row in out.splitlines() if "API:" in row]
        api = urls[0].removesuffix("/docs")
        assert httpx.get(f"{api}/healthz", timeout=5).status_code == 200  # left running
        second = run_demo(work)  # idempotent: stops the first and starts afresh
        assert second.returncode == 0, second.stdout + second.stderr
    finally:
        stopped = run_demo(work, "--stop")
    assert stopped.returncode == 0 and "demo stopped" in stopped.stdout
    assert not (work / "serve.pid").exists()
