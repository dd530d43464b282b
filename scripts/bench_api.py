"""Benchmark the HTTP API from a second process on loopback.

1. Batched appends: POST /v1/records/batch with 1,000 records per request from several
   concurrent connections, against a fresh data directory; reports records/s.
2. Proof fetches at scale: the log is filled to --records leaves (1,000,000 by default, written
   straight through the store to save time), the server restarted over it, and
   GET /v1/records/{id}/proof requested for random records from concurrent connections for
   --seconds; reports requests/s and p50/p99 latency.

The server runs in its own process (uvicorn, one worker); this script is the client.
Writes reports/bench_api.json.

    .venv/bin/python scripts/bench_api.py
    .venv/bin/python scripts/bench_api.py --records 100000 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from chainaudit.devnet import free_port
from chainaudit.keys import KeyStore
from chainaudit.records import prepare
from chainaudit.store import DB_NAME, Log

ROOT = Path(__file__).resolve().parents[1]


def record(i: int) -> dict[str, Any]:
    return {
        "id": f"bench-{i:09d}",
        "kind": "transaction",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": "supplier:globex",
        "payload": {"type": "invoice", "amount": i * 7 % 10_000_000, "currency": "USD"},
    }


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CHAINAUDIT_DATA_DIR": str(data_dir),
        "CHAINAUDIT_RATE_LIMIT_PER_SECOND": "1000000",
        "CHAINAUDIT_RATE_LIMIT_BURST": "1000000",
        "CHAINAUDIT_RPC_URL": f"http://127.0.0.1:{free_port()}",  # no chain: not needed here
    }
    code = (
        "from chainaudit.api.server import serve; from chainaudit.settings import Settings; "
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


async def bench_proofs(
    url: str, token: str, count: int, seconds: float, workers: int
) -> dict[str, float]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(5)
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            record_id = f"bench-{rng.randrange(count):09d}"
            t = time.perf_counter()
            response = await client.get(f"/v1/records/{record_id}/proof")
            latencies.append(time.perf_counter() - t)
            if response.status_code != 200:
                raise SystemExit(f"proof failed: {response.status_code} {response.text[:200]}")

    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30, limits=limits) as c:
        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for _ in range(workers)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "requests_per_s": len(ordered) / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
        "concurrency": workers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--append-batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_api.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        appends_dir = Path(tmp) / "appends"
        token = issue_key(appends_dir)
        port = free_port()
        server = start_server(appends_dir, port)
        try:
            print("batched appends ...", flush=True)
            rate = asyncio.run(
                bench_appends(
                    f"http://127.0.0.1:{port}", token, args.append_batches, args.batch_size, 4
                )
            )
        finally:
            stop_server(server)

        proofs_dir = Path(tmp) / "proofs"
        token = issue_key(proofs_dir)
        print(f"filling the log to {args.records:,} records ...", flush=True)
        fill(proofs_dir, args.records)
        port = free_port()
        server = start_server(proofs_dir, port)
        try:
            print("proof fetches ...", flush=True)
            proofs = asyncio.run(
                bench_proofs(
                    f"http://127.0.0.1:{port}", token, args.records, args.seconds, args.concurrency
                )
            )
        finally:
            stop_server(server)

    report = {
        "batched_appends": {
            "records_per_s": rate,
            "batch_size": args.batch_size,
            "batches": args.append_batches,
        },
        "proof_fetch": {**proofs, "log_size": args.records},
        "machine": {"cpus": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nbatched appends: {rate:,.0f} records/s ({args.batch_size} per request)")
    print(
        f"proof fetch at {args.records:,} records: {proofs['requests_per_s']:,.0f} requests/s, "
        f"p50 {proofs['p50_ms']:.2f} ms, p99 {proofs['p99_ms']:.2f} ms "
        f"(concurrency {args.concurrency})"
    )
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
