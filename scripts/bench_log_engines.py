"""The log on SQLite and on PostgreSQL, side by side in one run (not a timed test).

Measures on each engine, with the same generated records: single-record appends (one durable
transaction each, the API's worst case), ``Log.append`` of prepared records in batches of
1,000, the bulk ingest lane (``ingest.ingest_file``: native byte columns, one transaction),
inclusion proofs at the final size, and ``Log.audit``. PostgreSQL is a private server started
for the run as the tests start it (tests/pgserver.py: ``fsync=off``, so its commits cost less
than a production server's) unless ``--database-url`` names one (a superuser's URL: a schema
is created there).

    .venv/bin/python scripts/bench_log_engines.py --records 100000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chainaudit.core.records import prepare  # noqa: E402
from chainaudit.log import ingest  # noqa: E402
from chainaudit.log.store import Log  # noqa: E402
from tests.pgserver import Databases, PgServer  # noqa: E402


def line(i: int, prefix: str) -> str:
    return json.dumps(
        {
            "id": f"{prefix}-{i:08d}",
            "kind": "transaction",
            "timestamp": "2026-11-21T09:30:00Z",
            "actor": "supplier:globex",
            "payload": {"amount": i, "currency": "USD", "invoice": f"INV-{i}"},
        }
    )


def run(name: str, work: Path, url: str | None, records: int, singles: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    source = work / f"{name}.jsonl"
    source.write_text("\n".join(line(i, "bulk") for i in range(records)) + "\n")
    with Log.open(work / name, database_url=url) as log:
        started = time.perf_counter()
        result = ingest.ingest_file(log, source)
        figures["bulk ingest records/s"] = result.appended / (time.perf_counter() - started)
        prepared = [prepare(json.loads(line(i, "batch"))) for i in range(records // 2)]
        started = time.perf_counter()
        for k in range(0, len(prepared), 1000):
            log.append(prepared[k : k + 1000])
        figures["append x1000 records/s"] = len(prepared) / (time.perf_counter() - started)
        one = [prepare(json.loads(line(i, "single"))) for i in range(singles)]
        started = time.perf_counter()
        for record in one:
            log.append([record])
        figures["single appends/s"] = singles / (time.perf_counter() - started)
        times = []
        for i in range(0, log.size, max(1, log.size // 2000)):
            t = time.perf_counter()
            log.inclusion_proof_with_root(i)
            times.append(time.perf_counter() - t)
        figures["proof p50 ms"] = statistics.median(times) * 1000
        figures["proof p99 ms"] = statistics.quantiles(times, n=100)[98] * 1000
        started = time.perf_counter()
        assert log.audit().clean
        figures["audit s"] = time.perf_counter() - started
        figures["size"] = log.size
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--singles", type=int, default=2_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        admin = args.database_url or stack.enter_context(PgServer()).url
        url = Databases(admin).create()
        rows = {
            engine: run(engine, Path(tmp), target, args.records, args.singles)
            for engine, target in (("sqlite", None), ("postgresql", url))
        }
    keys = list(rows["sqlite"])
    print(f"{'':26}" + "".join(f"{engine:>14}" for engine in rows))
    for key in keys:
        print(f"{key:26}" + "".join(f"{rows[e][key]:>14,.2f}" for e in rows))


if __name__ == "__main__":
    main()
