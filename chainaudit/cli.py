"""The ``chainaudit`` command line.

Exit codes: 0 success, 1 a verification or audit failure, 2 a usage or input error (bad
arguments, unreadable files, invalid JSON or records). Errors print one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from chainaudit.errors import ChainauditError, VerificationError
from chainaudit.ingest import ingest_file
from chainaudit.settings import Settings
from chainaudit.store import Log

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace, Settings], int]


class ProgressBar:
    """A progress line on a terminal; plain lines for every durable commit elsewhere."""

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.perf_counter()
        self._last = 0.0

    def __call__(self, done: int, total: int, committed: bool) -> None:
        if self.tty:
            now = time.perf_counter()
            if now - self._last < 0.1 and done < total:
                return
            self._last = now
            width = 30
            filled = width * done // max(total, 1)
            rate = done / max(now - self.started, 1e-9)
            self.stream.write(
                f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                f"{done:,}/{total:,} ({rate:,.0f}/s)"
            )
            if done >= total and committed:
                self.stream.write("\n")
        elif committed:
            self.stream.write(f"{self.label}: committed {done}/{total}\n")
        self.stream.flush()


def _open_log(settings: Settings) -> Log:
    return Log.open(settings.data_dir, kinds=settings.record_kinds)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


# -- commands ---------------------------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    started = time.perf_counter()
    with _open_log(settings) as log:
        result = ingest_file(
            log,
            Path(args.file),
            commit_every=args.commit_every,
            workers=args.workers,
            progress=None if args.quiet else ProgressBar("ingest"),
        )
    elapsed = time.perf_counter() - started
    print(
        f"ingested {result.records} records ({result.appended} new, {result.duplicates} "
        f"already present) in {elapsed:.2f}s; tree size {result.tree_size}; "
        f"root {result.root.hex()}"
    )
    return EXIT_OK


def cmd_proof(args: argparse.Namespace, settings: Settings) -> int:
    with _open_log(settings) as log:
        entry = log.entry(args.record_id)
        size = log.size
        proof = {
            "record_id": entry.record_id,
            "leaf_index": entry.index,
            "leaf_hash": entry.leaf_hash.hex(),
            "tree_size": size,
            "inclusion_proof": [h.hex() for h in log.inclusion_proof(entry.index, size)],
            "root": log.root().hex(),
        }
    _print_json(proof)
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    with _open_log(settings) as log:
        report = log.audit()
    if args.json:
        _print_json(
            {
                "clean": report.clean,
                "tree_size": report.tree_size,
                "records_checked": report.records_checked,
                "nodes_checked": report.nodes_checked,
                "root": report.root.hex(),
                "findings": [asdict(f) for f in report.findings],
            }
        )
    else:
        for f in report.findings:
            where = f"index {f.index}" if f.index is not None else "log"
            who = f" record {f.record_id!r}" if f.record_id else ""
            print(f"{f.problem.upper():10} {where}{who}: {f.detail}")
        verdict = "clean" if report.clean else f"{len(report.findings)} problem(s)"
        print(
            f"audit: {verdict}; {report.records_checked} records and {report.nodes_checked} "
            f"tree nodes checked; tree size {report.tree_size}; root {report.root.hex()}"
        )
    return EXIT_OK if report.clean else EXIT_FAILED


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainaudit",
        description="Provable audit trails and escrowed payments for supply-chain finance.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="directory of the log (default: $CHAINAUDIT_DATA_DIR or ./.data)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="append the records of a JSON Lines file")
    ingest.add_argument("file", help="JSON Lines file, one record per line")
    ingest.add_argument(
        "--commit-every",
        type=_positive_int,
        metavar="N",
        help="commit (and acknowledge) every N records instead of the whole file at once",
    )
    ingest.add_argument("--workers", type=_positive_int, help="parser processes (default 2)")
    ingest.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    ingest.set_defaults(handler=cmd_ingest)

    proof = commands.add_parser("proof", help="print a record's inclusion proof as JSON")
    proof.add_argument("record_id")
    proof.set_defaults(handler=cmd_proof)

    audit = commands.add_parser(
        "audit", help="re-derive every leaf and node; exit 1 on any difference"
    )
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.set_defaults(handler=cmd_audit)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script passes it to ``sys.exit``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings() if args.data_dir is None else Settings(data_dir=args.data_dir)
        handler: Handler = args.handler
        return handler(args, settings)
    except VerificationError as exc:
        print(f"chainaudit: verification failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ChainauditError as exc:
        print(f"chainaudit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader (e.g. `head`) went away: not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the flush at exit
        return EXIT_OK
    except KeyboardInterrupt:
        print("chainaudit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
