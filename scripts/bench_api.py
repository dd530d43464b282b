"""Benchmark the HTTP API from a second process on loopback.

1. Batched appends: POST /v1/records/batch with 1,000 records per request from several
   concurrent connections, against a fresh data directory; reports records/s, with
   encryption at rest off and on (docs/privacy.md: every record sealed with its own
   AES-256-GCM data key) in the same run, --rounds times with off and on alternating, and the
   cost of turning it on (the median over the rounds).
2. Proof fetches at scale: the log is filled to --records leaves (1,000,000 by default, written
   straight through the store to save time), the server restarted over it, and
   GET /v1/records/{id}/proof requested for random records by `wrk` (Debian's HTTP load
   generator, a C program: a Python client saturates long before the server does) over
   --concurrency connections for --seconds; reports requests/s and p50/p99 latency.

The server runs in its own process (uvicorn, one worker); the clients are other processes on
loopback. `make bench` installs wrk when it is missing.
Writes reports/bench_api.json.

    .venv/bin/python scripts/bench_api.py
    .venv/bin/python scripts/bench_api.py --records 100000 --seconds 10
    .venv/bin/python scripts/bench_api.py --no-proofs     # the appends only
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from chainaudit.chain.devnet import free_port
from chainaudit.core.records import prepare
from chainaudit.log.store import DB_NAME, Log
from chainaudit.service.keys import KeyStore

ROOT = Path(__file__).resolve().parents[1]


def record(i: int) -> dict[str, Any]:
    return {
        "id": f"bench-{i:09d}",
        "kind": "transaction",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": "supplier:globex",
        "payload": {"type": "invoice", "amount": i * 7 % 10_000_000, "currency": "USD"},
    }


def sealing_env(work: Path) -> dict[str, str]:
    """Settings that seal every ``transaction`` record at rest (a fresh master key)."""
    policy = work / "policy.json"
    policy.write_text(json.dumps({"kinds": {"transaction": {"encrypt": True}}}))
    return {
        "CHAINAUDIT_DATA_POLICY_FILE": str(policy),
        "CHAINAUDIT_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
    }


def start_server(
    data_dir: Path, port: int, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **(extra or {}),
        "CHAINAUDIT_DATA_DIR": str(data_dir),
        "CHAINAUDIT_RATE_LIMIT_PER_SECOND": "1000000",
        "CHAINAUDIT_RATE_LIMIT_BURST": "1000000",
        "CHAINAUDIT_RPC_URL": f"http://127.0.0.1:{free_port()}",  # no chain: not needed here
    }
    code = (
        "from chainaudit.api.server import serve; from chainaudit.app.settings import Settings; "
        f"serve(Settings(), port={port})"
    )
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the API server did not start")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def issue_key(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    Log.open(data_dir).close()
    store = KeyStore(data_dir / DB_NAME)
    token = store.create("operator", name="bench")[1]
    store.close()
    return token


async def bench_appends(url: str, token: str, batches: int, size: int, workers: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for b in range(batches):
        queue.put_nowait(b)
    headers = {"Authorization": f"Bearer {token}"}

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            b = queue.get_nowait()
            body = {"records": [record(b * size + i) for i in range(size)]}
            response = await client.post("/v1/records/batch", json=body)
            if response.status_code != 201:
                raise SystemExit(f"append failed: {response.status_code} {response.text[:200]}")

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(workers)))
        elapsed = time.perf_counter() - started
    return batches * size / elapsed


def fill(data_dir: Path, count: int) -> None:
    with Log.open(data_dir) as log:
        chunk = 50_000
        for start in range(log.size, count, chunk):
            log.append([prepare(record(i)) for i in range(start, min(count, start + chunk))])


WRK_SCRIPT = """
request = function()
  local id = string.format("bench-%09d", math.random(0, COUNT - 1))
  return wrk.format("GET", "/v1/records/" .. id .. "/proof", {["Authorization"] = "Bearer TOKEN"})
end
"""


def bench_proofs_wrk(
    url: str, token: str, count: int, seconds: float, connections: int, workdir: Path
) -> dict[str, float]:
    """Proof fetches driven by wrk; every answer must be 200."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench_api: wrk is not installed (make bench installs it)")
    script = workdir / "proof.lua"
    script.write_text(WRK_SCRIPT.replace("COUNT", str(count)).replace("TOKEN", token))
    result = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), "--latency", url],
        check=True,
        capture_output=True,
        text=True,
    )
    out = result.stdout
    if "Non-2xx" in out:
        raise SystemExit(f"bench_api: some proof fetches failed:\n{out}")

    def latency(label: str) -> float:
        match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        if match is None:
            raise SystemExit(f"bench_api: cannot read the {label} latency from wrk:\n{out}")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    requests = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if requests is None or rate is None:
        raise SystemExit(f"bench_api: cannot read wrk's output:\n{out}")
    return {
        "requests": int(requests.group(1)),
        "requests_per_s": float(rate.group(1)),
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
        "concurrency": connections,
        "client": "wrk",
    }


def report_appends(
    args: argparse.Namespace,
    rounds: list[dict[str, float]],
    proofs: dict[str, Any] | None = None,
) -> None:
    """Write the report and print the appends' lines (medians over ``rounds``)."""
    rates = {mode: statistics.median(r[mode] for r in rounds) for mode in ("off", "on")}
    report: dict[str, Any] = {
        "batched_appends": {
            "records_per_s": rates["off"],
            "batch_size": args.batch_size,
            "batches": args.append_batches,
        },
        "encryption": {
            "appends_off_records_per_s": rates["off"],
            "appends_on_records_per_s": rates["on"],
            "appends_cost": statistics.median(1 - r["on"] / r["off"] for r in rounds),
            "rounds": rounds,
        },
        "machine": {"cpus": os.cpu_count()},
    }
    if proofs is not None:
        report["proof_fetch"] = proofs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nbatched appends: {rates['off']:,.0f} records/s ({args.batch_size} per request)")
    print(
        f"  with encryption at rest on: {rates['on']:,.0f} records/s "
        f"(cost {report['encryption']['appends_cost']:.0%}; medians of {len(rounds)} rounds, "
        "off and on alternating)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--append-batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_api.json")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of batched appends with encryption off and on, alternating",
    )
    parser.add_argument("--no-proofs", action="store_true", help="measure the appends only")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        rounds: list[dict[str, float]] = []
        modes = [("off", None), ("on", sealing_env(Path(tmp)))]
        for round_ in range(args.rounds):
            rates = {}
            for mode, extra in modes if round_ % 2 == 0 else modes[::-1]:
                appends_dir = Path(tmp) / f"appends-{mode}-{round_}"
                token = issue_key(appends_dir)
                port = free_port()
                server = start_server(appends_dir, port, extra)
                try:
                    print(
                        f"batched appends, encryption at rest {mode}, round {round_ + 1} ...",
                        flush=True,
                    )
                    rates[mode] = asyncio.run(
                        bench_appends(
                            f"http://127.0.0.1:{port}",
                            token,
                            args.append_batches,
                            args.batch_size,
                            4,
                        )
                    )
                finally:
                    stop_server(server)
            rounds.append(rates)
        if args.no_proofs:
            report_appends(args, rounds)
            return

        proofs_dir = Path(tmp) / "proofs"
        token = issue_key(proofs_dir)
        print(f"filling the log to {args.records:,} records ...", flush=True)
        fill(proofs_dir, args.records)
        port = free_port()
        server = start_server(proofs_dir, port)
        try:
            print("proof fetches ...", flush=True)
            proofs = bench_proofs_wrk(
                f"http://127.0.0.1:{port}",
                token,
                args.records,
                args.seconds,
                args.concurrency,
                Path(tmp),
            )
        finally:
            stop_server(server)

    report_appends(args, rounds, {**proofs, "log_size": args.records})
    print(
        f"proof fetch at {args.records:,} records: {proofs['requests_per_s']:,.0f} requests/s, "
        f"p50 {proofs['p50_ms']:.2f} ms, p99 {proofs['p99_ms']:.2f} ms "
        f"(concurrency {args.concurrency})"
    )
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
