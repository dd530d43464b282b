"""Benchmark the API's scale (issue 15): one process against ``serve --workers N``, one run.

For today's one-process ``chainaudit serve`` and then ``chainaudit serve --workers N`` for each
N of ``--workers`` (a configuration this version cannot run is printed as "not available"):

1. Single-record appends: ``POST /v1/records`` from `wrk` over ``--connections`` connections
   (64) for ``--seconds``, each request a record with an id never used before (a Lua script
   numbers them per wrk thread); reports the acknowledged appends per second (2xx answers
   only) and the p50/p99 latency, and checks afterwards that the log holds at least every
   acknowledged record (durable before acknowledged).
2. Batched appends: ``POST /v1/records/batch`` of ``--batch-size`` records from 4 concurrent
   clients (``scripts/bench_api.py``'s client), in records/s.
3. Proof fetches at ``--records`` records (a log built once with ``chainaudit ingest``):
   ``GET /v1/records/{id}/proof`` for random records from `wrk` (``scripts/bench_api.py``'s
   script), requests/s and p50/p99.

Then ``chainaudit audit`` over the same ``--records`` log (one command, no server), in seconds.
Prints one table, every figure from this run, with the goals of issue 15 and the peers'
published figures beside them (published, not measured here). Writes reports/bench_scale.json.

Every server runs in its own process on loopback with no chain (no anchoring); the clients are
other processes. `wrk` is Debian's package ``wrk``: ``make bench`` installs it, or
``apt-get install wrk``.

    .venv/bin/python scripts/bench_scale.py                           # 1,000,000 records
    .venv/bin/python scripts/bench_scale.py --records 100000 --seconds 10 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
from bench_api import bench_appends, bench_proofs_wrk, issue_key, record

from chainaudit.devnet import free_port
from chainaudit.store import Log

ROOT = Path(__file__).resolve().parents[1]
CHAINAUDIT = [sys.executable, "-m", "chainaudit"]
ID_PREFIX = "scale-"


class ServerFailedError(Exception):
    """The server exited or did not answer in time (the message ends with its last lines)."""


POST_SCRIPT = """
-- one record per request, its id never used before: the prefix, wrk's thread, a counter
counter = 0
thread_no = 0
local threads = 0

function setup(thread)
  thread:set("thread_no", threads)
  threads = threads + 1
end

request = function()
  counter = counter + 1
  local id = "PREFIX" .. thread_no .. "-" .. counter
  local body = '{"id":"' .. id .. '","kind":"transaction","timestamp":"2026-11-21T09:30:00Z",'
    .. '"actor":"supplier:globex","payload":{"type":"invoice","amount":' .. counter
    .. ',"currency":"USD"}}'
  return wrk.format("POST", "/v1/records",
    {["Authorization"] = "Bearer TOKEN", ["Content-Type"] = "application/json"}, body)
end
"""

GOALS = {
    "post": "≥ 5,000/s, p99 ≤ 50 ms (embedded)",
    "batch": "≥ 50,000 records/s (PostgreSQL)",
    "proof": "≥ 10,000/s, p99 ≤ 20 ms at 1M",
    "audit": "≤ 40 s at 10M (today 86 s)",
}
PUBLISHED = [
    ("Tessera (POSIX), writes", "2,900/s on 12 cores; ~10,000/s on 7 cores with NVMe"),
    ("Trillian, writes", "~1,200 qps"),
    ("immudb, embedded appends", "1.2-1.8M entries/s"),
]
"""The peers' figures quoted in issue 15: published, not measured here."""


def workers_flag_available() -> bool:
    """Whether this version's ``chainaudit serve`` takes ``--workers``."""
    shown = subprocess.run(
        [*CHAINAUDIT, "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    return "--workers" in shown


def _tail(log_file: Path) -> str:
    lines = log_file.read_text(errors="replace").strip().splitlines()
    return " | ".join(lines[-3:]) or "(no output)"


@contextmanager
def served(data_dir: Path, workers: int | None, log_file: Path) -> Iterator[str]:
    """``chainaudit serve`` (with ``--workers`` unless ``workers`` is None) over ``data_dir``
    on a free loopback port, with no chain and no rate limit; yields its URL."""
    port = free_port()
    command = [*CHAINAUDIT, "--data-dir", str(data_dir), "serve", "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    env = {
        **os.environ,
        "CHAINAUDIT_RATE_LIMIT_PER_SECOND": "1000000",
        "CHAINAUDIT_RATE_LIMIT_BURST": "1000000",
        "CHAINAUDIT_RPC_URL": f"http://127.0.0.1:{free_port()}",  # no chain: not needed here
    }
    with log_file.open("ab") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise ServerFailedError(f"the server exited: {_tail(log_file)}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
            if time.monotonic() > deadline:
                raise ServerFailedError(f"the server did not start: {_tail(log_file)}")
        yield url
    finally:  # the whole process group: the workers of `serve --workers N` too
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _ms(out: str, label: str) -> float:
    match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
    if match is None:
        raise SystemExit(f"bench_scale: cannot read the {label} latency from wrk:\n{out}")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def bench_single_posts(
    url: str, token: str, seconds: float, connections: int, workdir: Path
) -> dict[str, Any]:
    """Single-record appends from wrk; counts the 2xx answers only."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench_scale: wrk is not installed (make bench installs it)")
    script = workdir / "post.lua"
    script.write_text(POST_SCRIPT.replace("PREFIX", ID_PREFIX).replace("TOKEN", token))
    threads = min(2, connections)
    out = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            "--latency",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if total is None:
        raise SystemExit(f"bench_scale: cannot read wrk's output:\n{out}")
    elapsed = float(total.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[total.group(3)]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    refused = int(failed.group(1)) if failed else 0
    acknowledged = int(total.group(1)) - refused
    return {
        "acknowledged": acknowledged,
        "acknowledged_per_s": acknowledged / elapsed,
        "non_2xx": refused,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
        "p50_ms": _ms(out, "50%"),
        "p99_ms": _ms(out, "99%"),
        "seconds": elapsed,
        "connections": connections,
    }


def durable_appends(data_dir: Path) -> int:
    """The benchmark's single records the log holds (after the server stopped)."""
    with Log.open(data_dir) as log:
        return log.count_ids(ID_PREFIX)


def build_log(data_dir: Path, count: int, workdir: Path) -> dict[str, Any]:
    """A log of ``count`` records (``bench_api``'s, which its proof script asks for) and an
    operator's key, built with ``chainaudit ingest``; returns the token and the build time."""
    token = issue_key(data_dir)
    source = workdir / "records.jsonl"
    with source.open("w") as out:
        for i in range(count):
            out.write(json.dumps(record(i)) + "\n")
    started = time.perf_counter()
    subprocess.run(
        [*CHAINAUDIT, "--data-dir", str(data_dir), "ingest", "-q", str(source)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - started
    source.unlink()
    return {"token": token, "ingest_seconds": elapsed, "ingest_records_per_s": count / elapsed}


def time_audit(data_dir: Path) -> dict[str, Any]:
    """``chainaudit audit --json`` over ``data_dir``: wall-clock seconds; it must be clean."""
    started = time.perf_counter()
    done = subprocess.run(
        [*CHAINAUDIT, "--data-dir", str(data_dir), "audit", "--json"],
        check=False,  # a finding exits 1: reported below with the output
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bench_scale: the audit failed:\n{done.stdout}{done.stderr}")
    report = json.loads(done.stdout)
    return {"seconds": elapsed, "tree_size": report["tree_size"], "clean": report["clean"]}


def measure(
    name: str, workers: int | None, args: argparse.Namespace, proofs_dir: Path, token: str
) -> dict[str, Any]:
    """Every per-configuration figure for one server configuration."""
    work = args.workdir / name
    work.mkdir()
    data = work / "data"
    post_token = issue_key(data)
    log_file = work / "serve.log"
    with served(data, workers, log_file) as url:
        print(f"[{name}] single-record appends ...", flush=True)
        post = bench_single_posts(url, post_token, args.seconds, args.connections, work)
        print(f"[{name}] batched appends ...", flush=True)
        batch = asyncio.run(bench_appends(url, post_token, args.append_batches, args.batch_size, 4))
    post["durable"] = durable_appends(data)
    if post["durable"] < post["acknowledged"]:
        raise SystemExit(
            f"bench_scale: {post['acknowledged']} appends acknowledged, {post['durable']} in "
            "the log: an acknowledged record was lost"
        )
    with served(proofs_dir, workers, log_file) as url:
        print(f"[{name}] proof fetches at {args.records:,} records ...", flush=True)
        proofs = bench_proofs_wrk(url, token, args.records, args.seconds, args.connections, work)
    return {"post": post, "batch_records_per_s": batch, "proofs": proofs}


def table(report: dict[str, Any]) -> str:
    """One table: a column per configuration, then the goals; the peers' published figures
    below, in the same table."""
    configs: dict[str, dict[str, Any] | None] = report["configurations"]
    records = report["records"]

    def cell(name: str, row: str) -> str:
        got = configs[name]
        if got is None:
            return "not available"
        if "failed" in got:
            return "did not start"
        post, proofs = got["post"], got["proofs"]
        return {
            "post": f"{post['acknowledged_per_s']:,.0f}/s",
            "post_latency": f"{post['p50_ms']:.1f} / {post['p99_ms']:.1f}",
            "post_errors": f"{post['non_2xx']} / {post['socket_errors']}",
            "post_durable": f"{post['acknowledged']:,} / {post['durable']:,}",
            "batch": f"{got['batch_records_per_s']:,.0f}/s",
            "proof": f"{proofs['requests_per_s']:,.0f}/s",
            "proof_latency": f"{proofs['p50_ms']:.2f} / {proofs['p99_ms']:.2f}",
            "audit": f"{report['audit']['seconds']:.1f} s" if name == "serve" else "-",
        }[row]

    rows = [
        (f"POST /v1/records, {report['connections']} conn., 2xx", "post", GOALS["post"]),
        ("  p50 / p99 (ms)", "post_latency", ""),
        ("  non-2xx / socket errors", "post_errors", ""),
        ("  acknowledged / in the log after", "post_durable", ""),
        (f"batched appends ({report['batch_size']:,}/request)", "batch", GOALS["batch"]),
        (f"proof fetch at {records:,} records", "proof", GOALS["proof"]),
        ("  p50 / p99 (ms)", "proof_latency", ""),
        (f"chainaudit audit, {records:,} records", "audit", GOALS["audit"]),
    ]
    names = list(configs)
    heads = ["serve (1 process, today)" if n == "serve" else f"serve --workers {n}" for n in names]
    label_w = max(len(r[0]) for r in rows + [(p, "", "") for p, _ in PUBLISHED]) + 2
    widths = [max(len(h), 14) + 2 for h in heads]
    lines = [
        f"{'measured in this run':<{label_w}}"
        + "".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))
        + "   goal (issue 15)"
    ]
    for label, key, goal in rows:
        cells = "".join(f"{cell(n, key):>{w}}" for n, w in zip(names, widths, strict=True))
        lines.append(f"{label:<{label_w}}{cells}   {goal}")
    lines.append(f"{'published, not measured here':<{label_w}}")
    lines += [f"{peer:<{label_w}}{figure}" for peer, figure in PUBLISHED]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="log size of the proofs")
    parser.add_argument(
        "--workers",
        default="1,2,4",
        help="comma-separated N of `serve --workers N` to measure after the one-process serve",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="each wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--append-batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_scale.json")
    args = parser.parse_args()
    workers = [int(n) for n in args.workers.split(",") if n.strip()]
    if shutil.which("wrk") is None:
        raise SystemExit("bench_scale: wrk is not installed (make bench installs it)")
    available = workers_flag_available()

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        args.workdir = Path(tmp)
        proofs_dir = args.workdir / "proofs"
        print(f"building a log of {args.records:,} records (chainaudit ingest) ...", flush=True)
        built = build_log(proofs_dir, args.records, args.workdir)
        print("chainaudit audit ...", flush=True)
        audit = time_audit(proofs_dir)
        try:
            configs: dict[str, dict[str, Any] | None] = {
                "serve": measure("serve", None, args, proofs_dir, built["token"])
            }
        except ServerFailedError as exc:
            raise SystemExit(f"bench_scale: {exc}") from exc
        for n in workers:
            if not available:
                configs[str(n)] = None
                continue
            try:
                configs[str(n)] = measure(f"workers-{n}", n, args, proofs_dir, built["token"])
            except ServerFailedError as exc:  # shown in the table; the other figures stand
                print(f"[workers-{n}] {exc}", flush=True)
                configs[str(n)] = {"failed": str(exc)}

    report: dict[str, Any] = {
        "records": args.records,
        "connections": args.connections,
        "batch_size": args.batch_size,
        "seconds": args.seconds,
        "machine": {"cpus": os.cpu_count()},
        "build": {k: v for k, v in built.items() if k != "token"},
        "audit": audit,
        "configurations": configs,
        "published_not_measured_here": dict(PUBLISHED),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(
        f"scale benchmark: {os.cpu_count()} CPUs, wrk on loopback, {args.seconds:g} s per wrk "
        f"run, no chain; log built by chainaudit ingest at "
        f"{built['ingest_records_per_s']:,.0f} records/s"
    )
    if not available:
        print("`chainaudit serve --workers` is not available in this version: not measured")
    print(table(report))
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
