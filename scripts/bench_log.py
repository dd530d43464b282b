"""Benchmark the record log against pymerkle's SqliteTree, side by side in one run.

Measures, on the same generated records:
  * durable bulk ingest through the CLI path (`python -m chainaudit ingest`, a subprocess,
    wall-clock time including interpreter start-up, parsing, validation, RFC 8785
    canonicalisation, salting, hashing and the fsync'd commit);
  * chainaudit's `Log.append` alone: the same records, prepared as objects (the API's path),
    appended to a fresh log in one durable transaction in one process (the CLI instead
    appends byte columns that a parsing child prepares beside it, so it can be faster);
  * pymerkle 7's `SqliteTree.append_entries` fed the very same canonical record bytes (so its
    leaves, and its root, equal ours; it does no parsing or validation, which favours it);
  * inclusion-proof latency (p50/p99) at the final size for both, and chainaudit's lookup of
    a record by id (`Log.entry`: the id index, then the record out of its compressed bundle;
    pymerkle has no lookup by id).

  * the same ingest and ``Log.append`` with encryption at rest on (docs/privacy.md: every
    record sealed with its own AES-256-GCM data key, the keys of a bundle encrypted together
    into one row of ``keys.sqlite``), beside the runs with it off, then ``--encryption-rounds``
    more rounds of both, off and on alternating; the cost of turning it on is the median over
    the rounds of 1 - on/off.

Writes reports/bench_log.json and prints a table with the ratios.

    .venv/bin/python scripts/bench_log.py                 # 1,000,000 records (a few minutes)
    .venv/bin/python scripts/bench_log.py --records 100000
    .venv/bin/python scripts/bench_log.py --workers 0     # parse in the writer's process
    .venv/bin/python scripts/bench_log.py --records 100000 --encryption-rounds 5
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pymerkle import SqliteTree

from chainaudit.core.records import PreparedRecord
from chainaudit.log.datakeys import AtRest
from chainaudit.log.store import Log

ROOT = Path(__file__).resolve().parents[1]


def generate(path: Path, count: int) -> None:
    """Write ``count`` realistic SCF transaction records as JSON Lines."""
    rng = random.Random(7)
    parties = [f"supplier:{n}" for n in ("globex", "initech", "umbrella", "hooli", "acme")]
    with path.open("w") as out:
        for i in range(count):
            record = {
                "id": f"inv-{i:09d}",
                "kind": "transaction",
                "timestamp": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{i % 59:02d}Z",
                "actor": rng.choice(parties),
                "payload": {
                    "type": "invoice",
                    "amount": rng.randrange(1_000, 50_000_000),
                    "currency": "USD",
                    "buyer": "buyer:megacorp",
                    "po": f"PO-{i // 10:08d}",
                    "due": "2027-01-31",
                },
            }
            out.write(json.dumps(record) + "\n")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "samples": len(ordered),
    }


MASTER_KEY = os.urandom(32)
"""The master key of the encrypted runs (a fresh one per benchmark)."""


def sealing_env(work: Path) -> dict[str, str]:
    """The environment of an ingest with every ``transaction`` record sealed at rest."""
    policy = work / "policy.json"
    policy.write_text(json.dumps({"kinds": {"transaction": {"encrypt": True}}}))
    return {
        **os.environ,
        "CHAINAUDIT_DATA_POLICY_FILE": str(policy),
        "CHAINAUDIT_MASTER_KEY": base64.b64encode(MASTER_KEY).decode(),
    }


def bench_chainaudit(
    source: Path,
    data: Path,
    count: int,
    proofs: int,
    workers: int | None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    command = [sys.executable, "-m", "chainaudit", "--data-dir", str(data), "ingest", "-q"]
    if workers is not None:
        command += ["--workers", str(workers)]
    os.sync()  # each timed phase starts with no earlier writes still in flight
    started = time.perf_counter()
    subprocess.run([*command, str(source)], check=True, stdout=subprocess.DEVNULL, env=env)
    elapsed = time.perf_counter() - started
    rng = random.Random(11)
    at_rest = AtRest(MASTER_KEY) if env is not None else None
    with Log.open(data, at_rest=at_rest) as log:
        assert log.size == count
        samples = []
        for _ in range(proofs):
            index = rng.randrange(count)
            t = time.perf_counter()
            log.inclusion_proof(index)
            samples.append(time.perf_counter() - t)
        root = log.root().hex()
        lookups = []
        for _ in range(proofs):
            record_id = f"inv-{rng.randrange(count):09d}"
            t = time.perf_counter()
            log.entry(record_id)
            lookups.append(time.perf_counter() - t)
    return {
        "ingest_seconds": elapsed,
        "ingest_records_per_s": count / elapsed,
        "proof": percentiles(samples),
        "entry_by_id": percentiles(lookups),
        "root": root,
    }


def bench_store_only(
    data: Path, fresh: Path, count: int, at_rest: AtRest | None = None
) -> dict[str, Any]:
    """chainaudit's ``Log.append`` alone: the records the CLI prepared, as objects, appended
    to a fresh log in one durable transaction in this process (sealed at rest with
    ``at_rest``)."""
    with Log.open(data) as log:
        prepared = [
            PreparedRecord(e.record_id, e.kind, e.actor, e.timestamp_ms, True, e.body, e.leaf_hash)
            for e in log.entries()
            if e.body is not None
        ]
    assert len(prepared) == count
    os.sync()
    started = time.perf_counter()
    with Log.open(fresh, at_rest=at_rest) as log, log.transaction() as batch:
        for start in range(0, count, 4096):
            batch.append(prepared[start : start + 4096])
    elapsed = time.perf_counter() - started
    return {"append_seconds": elapsed, "append_records_per_s": count / elapsed}


def bench_pymerkle(data: Path, peer_db: Path, count: int, proofs: int) -> dict[str, Any]:
    with Log.open(data) as log:
        bodies = [e.body for e in log.entries() if e.body is not None]
    tree = SqliteTree(str(peer_db))
    os.sync()
    started = time.perf_counter()
    tree.append_entries(bodies)
    elapsed = time.perf_counter() - started
    rng = random.Random(11)
    samples = []
    for _ in range(proofs):
        index = rng.randrange(count)
        t = time.perf_counter()
        tree.prove_inclusion(index + 1)  # pymerkle counts leaves from 1
        samples.append(time.perf_counter() - t)
    root = tree.get_root().hex()
    tree.close()
    return {
        "ingest_seconds": elapsed,
        "ingest_records_per_s": count / elapsed,
        "proof": percentiles(samples),
        "root": root,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=2000, help="proofs sampled for chainaudit")
    parser.add_argument("--peer-proofs", type=int, default=200, help="proofs sampled for pymerkle")
    parser.add_argument(
        "--workers", type=int, help="pass --workers to `chainaudit ingest` (default: its own)"
    )
    parser.add_argument(
        "--encryption-rounds",
        type=int,
        default=3,
        help="extra rounds of ingest and Log.append with encryption off and on, alternating "
        "(the order swapped each round); the costs reported are medians over all rounds",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_log.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-log-") as tmp:
        work = Path(tmp)
        source = work / "records.jsonl"
        print(f"generating {args.records:,} records ...", flush=True)
        generate(source, args.records)
        print("chainaudit ingest (CLI) ...", flush=True)
        ours = bench_chainaudit(source, work / "data", args.records, args.proofs, args.workers)
        print("chainaudit Log.append alone (records already prepared as objects) ...", flush=True)
        store_only = bench_store_only(work / "data", work / "store-only", args.records)
        print("pymerkle SqliteTree.append_entries ...", flush=True)
        peer = bench_pymerkle(work / "data", work / "pymerkle.db", args.records, args.peer_proofs)
        print("chainaudit ingest and Log.append with encryption at rest on ...", flush=True)
        sealed = bench_chainaudit(
            source, work / "sealed", args.records, 200, args.workers, sealing_env(work)
        )
        sealed_store = bench_store_only(
            work / "data",
            work / "sealed-store-only",
            args.records,
            AtRest(MASTER_KEY, frozenset({"transaction"})),
        )
        pairs = [
            (
                ours["ingest_records_per_s"],
                sealed["ingest_records_per_s"],
                store_only["append_records_per_s"],
                sealed_store["append_records_per_s"],
            )
        ]
        for round_ in range(args.encryption_rounds):
            print(f"encryption off and on, round {round_ + 1} ...", flush=True)
            at = work / f"round-{round_}"
            runs: dict[bool, tuple[float, float]] = {}
            for on in (False, True) if round_ % 2 else (True, False):
                env = sealing_env(work) if on else None
                name = "on" if on else "off"
                ingest = bench_chainaudit(
                    source, at / f"ingest-{name}", args.records, 10, args.workers, env
                )
                append = bench_store_only(
                    work / "data",
                    at / f"append-{name}",
                    args.records,
                    AtRest(MASTER_KEY, frozenset({"transaction"})) if on else None,
                )
                runs[on] = (ingest["ingest_records_per_s"], append["append_records_per_s"])
            pairs.append((runs[False][0], runs[True][0], runs[False][1], runs[True][1]))

    report = {
        "records": args.records,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "ingest_workers": args.workers,
        "chainaudit": ours,
        "chainaudit_store_only": store_only,
        "pymerkle": peer,
        "same_root": ours["root"] == peer["root"],
        "encryption": {
            "rounds": len(pairs),
            "ingest_off_records_per_s": statistics.median(p[0] for p in pairs),
            "ingest_on_records_per_s": statistics.median(p[1] for p in pairs),
            "ingest_cost": statistics.median(1 - p[1] / p[0] for p in pairs),
            "append_off_records_per_s": statistics.median(p[2] for p in pairs),
            "append_on_records_per_s": statistics.median(p[3] for p in pairs),
            "append_cost": statistics.median(1 - p[3] / p[2] for p in pairs),
            "per_round": [
                {
                    "ingest_off": p[0],
                    "ingest_on": p[1],
                    "append_off": p[2],
                    "append_on": p[3],
                }
                for p in pairs
            ],
            "entry_by_id_on": sealed["entry_by_id"],
        },
        "ratios": {
            "ingest_chainaudit_over_pymerkle": ours["ingest_records_per_s"]
            / peer["ingest_records_per_s"],
            "proof_p50_pymerkle_over_chainaudit": peer["proof"]["p50_ms"] / ours["proof"]["p50_ms"],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\n{'':26}{'chainaudit':>14}{'pymerkle':>14}")
    print(
        f"{'ingest records/s':26}{ours['ingest_records_per_s']:>14,.0f}"
        f"{peer['ingest_records_per_s']:>14,.0f}"
    )
    print(f"{'  Log.append alone':26}{store_only['append_records_per_s']:>14,.0f}{'':>14}")
    for key in ("p50_ms", "p99_ms"):
        print(f"{'proof ' + key:26}{ours['proof'][key]:>14.3f}{peer['proof'][key]:>14.3f}")
    for key in ("p50_ms", "p99_ms"):
        print(f"{'record by id ' + key:26}{ours['entry_by_id'][key]:>14.3f}{'—':>14}")
    enc = report["encryption"]
    print(
        f"\n{'encryption at rest':26}{'off':>14}{'on':>14}{'cost':>8}"
        f"   (medians of {enc['rounds']} rounds, off and on alternating)"
    )
    print(
        f"{'  ingest records/s':26}{enc['ingest_off_records_per_s']:>14,.0f}"
        f"{enc['ingest_on_records_per_s']:>14,.0f}{enc['ingest_cost']:>8.0%}"
    )
    print(
        f"{'  Log.append records/s':26}{enc['append_off_records_per_s']:>14,.0f}"
        f"{enc['append_on_records_per_s']:>14,.0f}{enc['append_cost']:>8.0%}"
    )
    print(f"\nsame root: {report['same_root']}")
    for name, value in report["ratios"].items():
        print(f"{name}: {value:.2f}")
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
