"""Benchmark the API's scale (issue 15): one process against ``serve --workers N``, one run.

For today's one-process ``chainaudit serve`` (the log in SQLite), then ``chainaudit serve
--workers N`` for each N of ``--workers`` on SQLite, then ``chainaudit serve --workers N`` for
each N of ``--postgresql-workers`` with the log in PostgreSQL (``CHAINAUDIT_DATABASE_URL``): a
private server this script starts and stops (``tests/pgserver.py``'s :class:`PgServer`, here
with ``fsync`` and ``full_page_writes`` on, as a deployment runs it) (a configuration this
version cannot run is printed as "not available"):

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

Then ``chainaudit audit --jobs J`` for each J of ``--audit-jobs`` over the same ``--records``
log, in SQLite and in PostgreSQL (one command, no server), in seconds.
Prints one table, every figure from this run, with the goals of issue 15 and the peers'
published figures beside them (published, not measured here). Writes reports/bench_scale.json.

Every server runs in its own process on loopback with no chain (no anchoring); the clients are
other processes. `wrk` is Debian's package ``wrk``: ``make bench`` installs it, or
``apt-get install wrk``.

    .venv/bin/python scripts/bench_scale.py                           # 1,000,000 records
    .venv/bin/python scripts/bench_scale.py --records 100000 --seconds 10 --workers 2
    .venv/bin/python scripts/bench_scale.py --postgresql-workers ''   # no PostgreSQL
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
from bench_api import bench_appends, bench_proofs_wrk, record

from chainaudit.chain.devnet import free_port
from chainaudit.log.store import DB_NAME, Log
from chainaudit.service.keys import KeyStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' PostgreSQL server, reused as it is
from tests.pgserver import Databases, PgServer  # noqa: E402

PG_SHARED_BUFFERS = "512MB"
"""The benchmark cluster's ``shared_buffers`` (the tests' 64 MB would not hold the 1M log's
hot pages)."""
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
    "post": "≥ 5,000/s, p99 ≤ 50 ms (embedded); ≥ 3,000/s (PostgreSQL)",
    "batch": "≥ 50,000 records/s (PostgreSQL)",
    "proof": "≥ 10,000/s, p99 ≤ 20 ms at 1M",
    "audit": "≤ 40 s at 10M using both cores (today 86 s on one)",
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


def _env(database_url: str | None) -> dict[str, str]:
    """This process's environment, with ``CHAINAUDIT_DATABASE_URL`` when the log is in
    PostgreSQL."""
    env = dict(os.environ)
    env.pop("CHAINAUDIT_DATABASE_URL", None)
    if database_url is not None:
        env["CHAINAUDIT_DATABASE_URL"] = database_url
    return env


def issue_key(data_dir: Path, database_url: str | None = None) -> str:
    """An operator's API key in the log's database (created empty if missing)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    Log.open(data_dir, database_url=database_url).close()
    store = KeyStore(data_dir / DB_NAME, database_url=database_url)
    token = store.create("operator", name="bench")[1]
    store.close()
    return token


@contextmanager
def served(
    data_dir: Path, workers: int | None, log_file: Path, database_url: str | None = None
) -> Iterator[str]:
    """``chainaudit serve`` (with ``--workers`` unless ``workers`` is None) over ``data_dir``
    (the log in ``database_url`` when given) on a free loopback port, with no chain and no
    rate limit; yields its URL."""
    port = free_port()
    command = [*CHAINAUDIT, "--data-dir", str(data_dir), "serve", "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    env = {
        **_env(database_url),
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


def durable_appends(data_dir: Path, database_url: str | None = None) -> int:
    """The benchmark's single records the log holds (after the server stopped)."""
    with Log.open(data_dir, database_url=database_url) as log:
        return log.count_ids(ID_PREFIX)


def write_records(count: int, workdir: Path) -> Path:
    """``count`` of ``bench_api``'s records (which its proof script asks for), as JSONL."""
    source = workdir / "records.jsonl"
    if not source.exists():
        with source.open("w") as out:
            for i in range(count):
                out.write(json.dumps(record(i)) + "\n")
    return source


def build_log(
    data_dir: Path, source: Path, count: int, database_url: str | None = None
) -> dict[str, Any]:
    """A log of the ``count`` records of ``source`` and an operator's key, built with
    ``chainaudit ingest`` (in ``database_url`` when given); returns the token and the build
    time."""
    token = issue_key(data_dir, database_url)
    started = time.perf_counter()
    subprocess.run(
        [*CHAINAUDIT, "--data-dir", str(data_dir), "ingest", "-q", str(source)],
        check=True,
        stdout=subprocess.DEVNULL,
        env=_env(database_url),
    )
    elapsed = time.perf_counter() - started
    return {"token": token, "ingest_seconds": elapsed, "ingest_records_per_s": count / elapsed}


def time_audit(data_dir: Path, jobs: int, database_url: str | None = None) -> dict[str, Any]:
    """``chainaudit audit --json --jobs JOBS`` over ``data_dir`` (the log in ``database_url``
    when given): wall-clock seconds; it must be clean."""
    command = [*CHAINAUDIT, "--data-dir", str(data_dir), "audit", "--json", "--jobs", str(jobs)]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        check=False,  # a finding exits 1: reported below with the output
        capture_output=True,
        text=True,
        env=_env(database_url),
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bench_scale: the audit failed:\n{done.stdout}{done.stderr}")
    report = json.loads(done.stdout)
    return {
        "seconds": elapsed,
        "jobs": jobs,
        "tree_size": report["tree_size"],
        "clean": report["clean"],
        "load_before": load,
        "command": (
            "CHAINAUDIT_DATABASE_URL=<the private server's database> " if database_url else ""
        )
        + " ".join(["chainaudit", *command[3:]]),
    }


def measure(
    name: str,
    workers: int | None,
    args: argparse.Namespace,
    proofs: tuple[Path, str, str | None],
    database_url: str | None = None,
) -> dict[str, Any]:
    """Every per-configuration figure for one server configuration: appends to a new log
    (in ``database_url`` when given), proofs from ``proofs`` (its data directory, a token,
    its database URL)."""
    proofs_dir, token, proofs_url = proofs
    work = args.workdir / name
    work.mkdir()
    data = work / "data"
    post_token = issue_key(data, database_url)
    log_file = work / "serve.log"
    load = os.getloadavg()[0]
    with served(data, workers, log_file, database_url) as url:
        print(f"[{name}] single-record appends ...", flush=True)
        post = bench_single_posts(url, post_token, args.seconds, args.connections, work)
        print(f"[{name}] batched appends ...", flush=True)
        batch = asyncio.run(bench_appends(url, post_token, args.append_batches, args.batch_size, 4))
    post["durable"] = durable_appends(data, database_url)
    if post["durable"] < post["acknowledged"]:
        raise SystemExit(
            f"bench_scale: {post['acknowledged']} appends acknowledged, {post['durable']} in "
            "the log: an acknowledged record was lost"
        )
    with served(proofs_dir, workers, log_file, proofs_url) as url:
        print(f"[{name}] proof fetches at {args.records:,} records ...", flush=True)
        fetched = bench_proofs_wrk(url, token, args.records, args.seconds, args.connections, work)
    return {
        "post": post,
        "batch_records_per_s": batch,
        "proofs": fetched,
        "load_before": load,
        "load_after": os.getloadavg()[0],
    }


def table(report: dict[str, Any]) -> str:
    """One table: a column per configuration, then the goals; the peers' published figures
    below, in the same table."""
    configs: dict[str, dict[str, Any] | None] = report["configurations"]
    records = report["records"]

    audits: dict[str, dict[str, dict[str, Any]]] = report["audit"]

    def audit_cell(name: str, jobs: str) -> str:
        engine = "sqlite" if name == "serve" else "postgresql" if name.startswith("pg-") else ""
        got = audits.get(engine, {}).get(jobs)
        return f"{got['seconds']:.1f} s" if got else "-"

    def cell(name: str, row: str) -> str:
        if row.startswith("audit-"):
            return audit_cell(name, row.removeprefix("audit-"))
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
            "load": f"{got['load_before']:.1f} / {got['load_after']:.1f}",
        }[row]

    rows = [
        (f"POST /v1/records, {report['connections']} conn., 2xx", "post", GOALS["post"]),
        ("  p50 / p99 (ms)", "post_latency", ""),
        ("  non-2xx / socket errors", "post_errors", ""),
        ("  acknowledged / in the log after", "post_durable", ""),
        (f"batched appends ({report['batch_size']:,}/request)", "batch", GOALS["batch"]),
        (f"proof fetch at {records:,} records", "proof", GOALS["proof"]),
        ("  p50 / p99 (ms)", "proof_latency", ""),
        ("  load average before / after", "load", ""),
    ]
    jobs = sorted({j for engine in audits.values() for j in engine}, key=int)
    rows += [
        (f"chainaudit audit --jobs {j}, {records:,} rec.", f"audit-{j}", GOALS["audit"])
        for j in jobs
    ]
    names = list(configs)

    def head(name: str) -> str:
        if name == "serve":
            return "serve (SQLite, 1 proc., today)"
        if name.startswith("pg-"):
            return f"--workers {name.removeprefix('pg-')} PostgreSQL"
        return f"--workers {name} SQLite"

    heads = [head(n) for n in names]
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


def measure_postgresql(
    args: argparse.Namespace,
    pg_workers: list[int],
    source: Path,
    available: bool,
    configs: dict[str, dict[str, Any] | None],
    audit: dict[str, dict[str, dict[str, Any]]],
    audit_jobs: list[int],
) -> dict[str, Any]:
    """The PostgreSQL configurations, on a private durable server started now and stopped
    after: the ``--records`` log ingested into a database of its own, audited, then
    ``serve --workers N`` for each N (appending to a fresh database each); fills ``configs``
    and ``audit``, returns the build figures."""
    print("starting a private PostgreSQL (fsync on) ...", flush=True)
    with PgServer(fsync=True, shared_buffers=PG_SHARED_BUFFERS) as server:
        databases = Databases(server.url)
        proofs_dir, proofs_url = args.workdir / "pg-proofs", databases.create()
        print(f"building a log of {args.records:,} records in PostgreSQL ...", flush=True)
        built = build_log(proofs_dir, source, args.records, proofs_url)
        audit["postgresql"] = {}
        for jobs in audit_jobs:
            print(f"chainaudit audit --jobs {jobs} (PostgreSQL) ...", flush=True)
            audit["postgresql"][str(jobs)] = time_audit(proofs_dir, jobs, proofs_url)
        for n in pg_workers:
            name = f"pg-{n}"
            if not available:
                configs[name] = None
                continue
            try:
                configs[name] = measure(
                    name, n, args, (proofs_dir, built["token"], proofs_url), databases.create()
                )
            except ServerFailedError as exc:  # shown in the table; the other figures stand
                print(f"[{name}] {exc}", flush=True)
                configs[name] = {"failed": str(exc)}
    return {k: v for k, v in built.items() if k != "token"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="log size of the proofs")
    parser.add_argument(
        "--workers",
        default="1,2,4",
        help="comma-separated N of `serve --workers N` to measure after the one-process serve",
    )
    parser.add_argument(
        "--postgresql-workers",
        default="2",
        help="comma-separated N of `serve --workers N` to measure with the log in a private "
        "PostgreSQL ('' for none)",
    )
    parser.add_argument(
        "--audit-jobs", default="1,2", help="comma-separated J of `chainaudit audit --jobs J`"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="each wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--append-batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_scale.json")
    args = parser.parse_args()
    workers = [int(n) for n in args.workers.split(",") if n.strip()]
    pg_workers = [int(n) for n in args.postgresql_workers.split(",") if n.strip()]
    audit_jobs = [int(j) for j in args.audit_jobs.split(",") if j.strip()]
    if shutil.which("wrk") is None:
        raise SystemExit("bench_scale: wrk is not installed (make bench installs it)")
    available = workers_flag_available()

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        args.workdir = Path(tmp)
        proofs_dir = args.workdir / "proofs"
        print(f"building a log of {args.records:,} records (chainaudit ingest) ...", flush=True)
        source = write_records(args.records, args.workdir)
        built = build_log(proofs_dir, source, args.records)
        audit: dict[str, dict[str, dict[str, Any]]] = {"sqlite": {}}
        for jobs in audit_jobs:
            print(f"chainaudit audit --jobs {jobs} ...", flush=True)
            audit["sqlite"][str(jobs)] = time_audit(proofs_dir, jobs)
        try:
            configs: dict[str, dict[str, Any] | None] = {
                "serve": measure("serve", None, args, (proofs_dir, built["token"], None))
            }
        except ServerFailedError as exc:
            raise SystemExit(f"bench_scale: {exc}") from exc
        for n in workers:
            if not available:
                configs[str(n)] = None
                continue
            try:
                configs[str(n)] = measure(
                    f"workers-{n}", n, args, (proofs_dir, built["token"], None)
                )
            except ServerFailedError as exc:  # shown in the table; the other figures stand
                print(f"[workers-{n}] {exc}", flush=True)
                configs[str(n)] = {"failed": str(exc)}
        if pg_workers:
            built["postgresql"] = measure_postgresql(
                args, pg_workers, source, available, configs, audit, audit_jobs
            )

    report: dict[str, Any] = {
        "records": args.records,
        "connections": args.connections,
        "batch_size": args.batch_size,
        "seconds": args.seconds,
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "postgresql": {"fsync": True, "full_page_writes": True, "shared_buffers": PG_SHARED_BUFFERS}
        if pg_workers
        else None,
        "build": {k: v for k, v in built.items() if k != "token"},
        "command": " ".join(["scripts/bench_scale.py", *sys.argv[1:]]),
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
    if pg_workers:
        print(
            "PostgreSQL: a private server started by this script (tests/pgserver.py), "
            f"fsync and full_page_writes on, shared_buffers {PG_SHARED_BUFFERS}; log built at "
            f"{built['postgresql']['ingest_records_per_s']:,.0f} records/s"
        )
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    if not available:
        print("`chainaudit serve --workers` is not available in this version: not measured")
    print(table(report))
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
