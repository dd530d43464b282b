"""Benchmark the record index (issue 14): what a record list costs with it, and without.

Builds a log of ``--records`` records of other parties (plus three of one partner at the
end), then measures:
  * the follower's catch-up (:meth:`RecordIndex.sync`) over the whole log, in records/s;
  * a partner's empty page from the index (:meth:`RecordIndex.candidates`: the records it
    might see, none) against the scan the list used to do (20,000 records examined a page,
    and every page up to the partner's own records);
  * an officer's page filtered by kind (``document``: the last three records) from the index
    against a filtered :meth:`Log.scan` of the whole log.

    .venv/bin/python scripts/bench_index.py                    # 200,000 records
    .venv/bin/python scripts/bench_index.py --records 1000000

Appends are untouched by the index (it follows the log from a cursor), so
``scripts/bench_log.py`` measures the same ingest as before.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chainaudit.core import provenance
from chainaudit.core.records import prepare
from chainaudit.log.record_index import Filters, RecordIndex
from chainaudit.log.store import Log

PARTNER = "0x00000000000000000000000000000000000000aa"


def build(path: Path, count: int) -> Log:
    log = Log(path)
    submitter = provenance.local_submitter("bench")
    chunk = 50_000
    for first in range(0, count, chunk):
        log.append(
            [
                prepare(
                    {
                        "id": f"r-{i}",
                        "kind": "transaction",
                        "timestamp": f"2026-11-{1 + i % 28:02d}T09:30:00Z",
                        "actor": f"supplier:{i % 7}",
                        "payload": {"amount": i},
                    },
                    salt="0" * 32,
                    submitter=submitter,
                )
                for i in range(first, min(first + chunk, count))
            ]
        )
    log.append(
        [
            prepare(
                {
                    "id": f"own-{i}",
                    "kind": "document",
                    "timestamp": "2026-12-01T09:30:00Z",
                    "actor": PARTNER,
                    "payload": {"n": i},
                },
                submitter=submitter,
            )
            for i in range(3)
        ]
    )
    return log


def timed(run: Callable[[], Any], repeat: int = 5) -> float:
    """The median seconds of ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def old_partner_page(log: Log) -> int:
    """The old list's work before the partner's first record: scan pages of 20,000."""
    examined, start = 0, 0
    while True:
        found = log.scan(start=start, limit=20_000)
        examined += len(found)
        if any(e.actor == PARTNER for e in found) or len(found) < 20_000:
            return examined
        start = found[-1].index + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        log = build(Path(tmp) / "log.sqlite", args.records)
        built = time.perf_counter() - began
        index = RecordIndex(log.path)
        began = time.perf_counter()
        indexed = index.sync(log)
        sync_s = time.perf_counter() - began
        nobody = "0x00000000000000000000000000000000000000cc"

        def candidates(who: str) -> list[int]:
            return index.candidates(
                Filters(), start=0, limit=101, actors=[who, "key:k"], party=who, deals=["7"]
            )

        results = {
            "records": log.size,
            "build_s": round(built, 2),
            "index_sync_records_per_s": round(indexed / sync_s),
            "partner_empty_page_index_ms": round(timed(lambda: candidates(nobody)) * 1000, 3),
            "partner_first_page_index_ms": round(
                timed(lambda: log.entries_at(candidates(PARTNER))) * 1000, 3
            ),
            "partner_first_page_old_scan_ms": round(
                timed(lambda: old_partner_page(log), repeat=1) * 1000, 1
            ),
            "officer_kind_filter_index_ms": round(
                timed(
                    lambda: log.entries_at(
                        index.matching(Filters(kind="document"), start=0, limit=101)
                    )
                )
                * 1000,
                3,
            ),
            "officer_kind_filter_old_scan_ms": round(
                timed(lambda: log.scan(kind="document", limit=101), repeat=1) * 1000, 1
            ),
        }
        index.close()
        log.close()
    print(json.dumps(results, indent=2))
    out = Path(__file__).resolve().parents[1] / "reports" / "bench_index.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
