"""The ``chainaudit`` command line.

Exit codes: 0 success, 1 a verification or audit failure, 2 a usage or input error (bad
arguments, unreadable files, invalid JSON or records). Errors print one line on stderr.

``proof RECORD_ID -o FILE`` writes a proof bundle (:mod:`chainaudit.bundle`); for a record not
anchored yet it exits 2 with "proof pending: ..." (fetch it again after the next anchor).
``verify BUNDLE [--rpc URL]`` and ``verify --consistency OLD NEW`` (:mod:`chainaudit.verify`)
print one line per check and exit 0 when valid, 1 when a check failed (named on stderr),
2 when the bundle or the endpoint cannot be used.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from chainaudit.errors import ChainauditError, InputError, VerificationError
from chainaudit.ingest import ingest_file
from chainaudit.settings import Settings, load_settings
from chainaudit.store import Log

if TYPE_CHECKING:
    from chainaudit.bundle import Bundle
    from chainaudit.keys import KeyStore

# Commands import the chain, API and bundle modules when they run: web3 alone takes most of a
# second to import, which every `chainaudit ingest` would otherwise pay.
ROLES = ("admin", "operator", "partner", "auditor", "regulator")  # chainaudit.keys.ROLES

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
    from chainaudit.anchoring import AnchorBook  # noqa: PLC0415
    from chainaudit.bundle import build_bundle, write_bundle  # noqa: PLC0415

    if args.output is None:
        if args.no_record or args.since is not None:
            raise InputError(
                "--no-record and --since shape a proof bundle: add -o FILE (or -o - for stdout)"
            )
        return _plain_proof(args, settings)
    with _open_log(settings) as log:
        book = AnchorBook(log)
        try:
            bundle = build_bundle(
                log,
                book,
                args.record_id,
                include_record=not args.no_record,
                since_size=args.since,
            )
        finally:
            book.close()
    if args.output == "-":
        _print_json(bundle)
        return EXIT_OK
    write_bundle(bundle, args.output)
    anchor = bundle["anchor"]
    print(
        f"wrote the proof bundle of record {args.record_id} (leaf {bundle['leaf_index']}, "
        f"tree size {bundle['tree_size']}, checkpoint {anchor['checkpoint_seq']} on chain "
        f"{anchor['chain_id']}, {anchor['status']}) to {args.output}"
        + ("" if "record" in bundle else "; the record itself is not included")
    )
    return EXIT_OK


def _plain_proof(args: argparse.Namespace, settings: Settings) -> int:
    """The inclusion proof at the log's current size, anchored or not (bare hex)."""
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


def _read_bundle(name: str) -> Bundle:
    from chainaudit.bundle import load_bundle, loads_bundle  # noqa: PLC0415

    if name == "-":
        return loads_bundle(sys.stdin.buffer.read(), source="stdin")
    return load_bundle(name)


def _marks() -> dict[str, str]:
    """Check marks for the terminal. When stdout cannot encode them (an ASCII locale), use
    ASCII stand-ins and let other characters (the "§" of RFC citations) degrade to "?"."""
    try:
        "\u2713\u2717\u00a7".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        if isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(errors="replace")
        return {"pass": "ok  ", "fail": "FAIL", "skip": "-   "}
    return {"pass": "\u2713", "fail": "\u2717", "skip": "-"}


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.chain import Chain  # noqa: PLC0415
    from chainaudit.verify import verify_bundle, verify_consistency_bundles  # noqa: PLC0415

    chain = Chain(args.rpc, timeout=settings.rpc_timeout) if args.rpc else None
    pins = {
        "confirmations": args.confirmations,
        "expected_chain_id": args.chain_id,
        "expected_contract": args.contract,
    }
    if args.consistency:
        if args.bundle is not None:
            raise InputError("give either a bundle or --consistency OLD NEW, not both")
        old, new = (_read_bundle(name) for name in args.consistency)
        verdict = verify_consistency_bundles(old, new, chain, **pins)
        subject = (
            f"checkpoint {new.anchor.checkpoint_seq} (size {new.checkpoint.tree_size}) extends "
            f"checkpoint {old.anchor.checkpoint_seq} (size {old.checkpoint.tree_size})"
        )
    else:
        if args.bundle is None:
            raise InputError("give a bundle file to verify (or --consistency OLD NEW)")
        bundle = _read_bundle(args.bundle)
        verdict = verify_bundle(bundle, chain=chain, **pins)
        who = f"record {bundle.record_id}" if bundle.record_id else "the leaf"
        subject = (
            f"{who} is leaf {bundle.leaf_index} of checkpoint {bundle.anchor.checkpoint_seq} "
            f"(tree size {bundle.checkpoint.tree_size}) of contract {bundle.anchor.contract} "
            f"on chain {bundle.anchor.chain_id}"
        )
    if args.json:
        _print_json(verdict.to_json())
    else:
        marks = _marks()
        width = max(len(check.name) for check in verdict.checks)
        for check in verdict.checks:
            print(f"{marks[check.status]} {check.name:{width}}  {check.detail}")
        if not verdict.valid:
            print(f"INVALID: failed check(s): {', '.join(verdict.failed)}")
        elif verdict.chain_checked:
            print(f"VALID: {subject}")
        else:
            print(
                "VALID offline only: chain checks were skipped (no --rpc); the bundle is "
                "internally consistent but its anchor was NOT checked against the chain"
            )
    if not verdict.valid:
        first = next(check for check in verdict.checks if check.failed)
        print(f"chainaudit: verification failed: {first.name}: {first.detail}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.anchoring import audit_against_chain  # noqa: PLC0415
    from chainaudit.context import chain_from  # noqa: PLC0415
    from chainaudit.deploy import contract_address  # noqa: PLC0415

    with _open_log(settings) as log:
        report = log.audit()
        if args.chain:
            chain = chain_from(settings, args.rpc)
            report.findings.extend(
                audit_against_chain(log, chain, contract_address(settings, chain))
            )
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


def cmd_devnet(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.devnet import Devnet, start_detached, stop_detached  # noqa: PLC0415

    devnet_dir = settings.data_dir / "devnet"
    if args.stop:
        stopped = stop_detached(devnet_dir / "anvil.pid")
        print("devnet stopped" if stopped else "no devnet was running")
        return EXIT_OK
    if args.detach:
        started = start_detached(devnet_dir, port=args.port)
        print(
            f"devnet running at {started.rpc_url} (chain id {started.chain_id}, pid {started.pid})"
        )
        return EXIT_OK
    with Devnet(port=args.port) as devnet:
        print(f"devnet running at {devnet.rpc_url} (chain id {devnet.chain_id}); Ctrl-C stops it")
        for account in devnet.accounts[:3]:
            print(f"  account {account.address}")
        try:
            while devnet.is_running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopping devnet")
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.context import anchorer_account, chain_from  # noqa: PLC0415
    from chainaudit.deploy import deploy_contracts  # noqa: PLC0415

    chain = chain_from(settings, args.rpc)
    deployer = anchorer_account(settings)
    deployed = deploy_contracts(
        chain, deployer, anchorer=args.anchorer, directory=settings.deployments_dir
    )
    for name, contract in deployed.items():
        print(f"{name} deployed at {contract.address} (tx {contract.tx_hash[:12]}...)")
    print(f"wrote {settings.deployments_dir / f'{chain.chain_id()}.json'}")
    return EXIT_OK


def cmd_anchor(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.context import anchorer_from, chain_from  # noqa: PLC0415

    with _open_log(settings) as log:
        anchorer = anchorer_from(settings, log, chain_from(settings, args.rpc))
        try:
            if args.follow:
                print("anchoring service running; Ctrl-C stops it")
                stop = threading.Event()
                try:
                    anchorer.run(stop)
                except KeyboardInterrupt:
                    stop.set()
                return EXIT_OK
            done = anchorer.anchor_now(timeout=args.timeout)
        finally:
            anchorer.close()
    tx = "0x" + done.tx_hash.hex() if done.tx_hash else "?"
    print(
        f"anchored tree size {done.tree_size} root {done.root.hex()} as checkpoint "
        f"{done.seq} ({done.status}) in block {done.block_number}, tx {tx}"
    )
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.api.server import serve  # noqa: PLC0415

    print(f"serving the API at http://{args.host}:{args.port} (docs at /docs); Ctrl-C stops it")
    serve(settings, host=args.host, port=args.port)
    return EXIT_OK


def _key_store(settings: Settings) -> tuple[Log, KeyStore]:
    from chainaudit.keys import KeyStore  # noqa: PLC0415

    log = _open_log(settings)
    return log, KeyStore(log.path)


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.actions import cli_actor, record_action  # noqa: PLC0415

    log, store = _key_store(settings)
    try:
        key, token = store.create(args.role, name=args.name, address=args.address)
        record_action(
            log,
            action="keys.create",
            actor=cli_actor(),
            details={"target_key": key.key_id, "role": key.role, "address": key.address},
        )
    finally:
        store.close()
        log.close()
    print(f"created {key.role} key {key.key_id} ({key.name}); token (shown once):")
    print(token)
    return EXIT_OK


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.actions import cli_actor, record_action  # noqa: PLC0415

    log, store = _key_store(settings)
    try:
        key = store.revoke(args.key_id)
        record_action(
            log,
            action="keys.revoke",
            actor=cli_actor(),
            details={"target_key": key.key_id, "role": key.role},
        )
    finally:
        store.close()
        log.close()
    print(f"revoked key {key.key_id} ({key.name})")
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    log, store = _key_store(settings)
    try:
        keys = store.list()
    finally:
        store.close()
        log.close()
    for key in keys:
        state = "active" if key.active else "revoked"
        print(f"{key.key_id}  {key.role:9}  {state:7}  {key.address or '-':42}  {key.name}")
    return EXIT_OK


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

    proof = commands.add_parser(
        "proof",
        help="print a record's inclusion proof, or write its proof bundle with -o",
        description=(
            "Without -o, print the record's inclusion proof at the log's current size. With "
            "-o, write its proof bundle (v1): the record, inclusion proof, checkpoint and "
            "anchor, verifiable with `chainaudit verify` and a chain endpoint alone. A record "
            "newer than the last confirmed anchor has no bundle yet: exit 2, 'proof pending'."
        ),
    )
    proof.add_argument("record_id")
    proof.add_argument(
        "-o", "--output", metavar="FILE", help="write the proof bundle to FILE ('-': stdout)"
    )
    proof.add_argument(
        "--no-record", action="store_true", help="leave the record out of the bundle (privacy)"
    )
    proof.add_argument(
        "--since",
        type=_positive_int,
        metavar="SIZE",
        help="also prove the checkpoint extends the log at SIZE (an older bundle's tree size)",
    )
    proof.set_defaults(handler=cmd_proof)

    verify = commands.add_parser(
        "verify",
        help="verify a proof bundle against a chain endpoint; exit 1 if it fails",
        description=(
            "Check a proof bundle with nothing but the bundle and a chain endpoint: the "
            "record's hash, the RFC 9162 inclusion proof, and the checkpoint, block and "
            "transaction on chain. Exit 0 valid, 1 invalid (the failed checks are named), "
            "2 unusable input or unreachable endpoint."
        ),
    )
    verify.add_argument("bundle", nargs="?", help="the bundle file ('-': stdin)")
    verify.add_argument(
        "--consistency",
        nargs=2,
        metavar=("OLD", "NEW"),
        help="verify that NEW's checkpoint extends OLD's (NEW made with proof --since)",
    )
    verify.add_argument(
        "--rpc", metavar="URL", help="your chain endpoint; without it chain checks are skipped"
    )
    verify.add_argument(
        "--confirmations",
        type=_positive_int,
        default=1,
        metavar="N",
        help="blocks the anchor must be under, counting its own (default 1)",
    )
    verify.add_argument(
        "--chain-id", type=_positive_int, metavar="ID", help="the chain id you expect"
    )
    verify.add_argument("--contract", metavar="ADDRESS", help="the AuditAnchor address you trust")
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")
    verify.set_defaults(handler=cmd_verify)

    audit = commands.add_parser(
        "audit", help="re-derive every leaf and node; exit 1 on any difference"
    )
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.add_argument(
        "--chain",
        action="store_true",
        help="also compare every checkpoint anchored on chain with the log",
    )
    audit.add_argument("--rpc", help="chain endpoint (default: $CHAINAUDIT_RPC_URL)")
    audit.set_defaults(handler=cmd_audit)

    server = commands.add_parser("serve", help="run the HTTP API with the anchoring service")
    server.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    server.add_argument("--port", type=_positive_int, default=8000, help="port (default 8000)")
    server.set_defaults(handler=cmd_serve)

    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key; prints its token once")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--address", help="the Ethereum address a partner key acts for")
    create.set_defaults(handler=cmd_keys_create)
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=cmd_keys_revoke)
    listing = key_commands.add_parser("list", help="list keys (never their secrets)")
    listing.set_defaults(handler=cmd_keys_list)

    devnet = commands.add_parser("devnet", help="run Anvil with the settings in anvil.env")
    devnet.add_argument("--port", type=_positive_int, help="override ANVIL_PORT")
    mode = devnet.add_mutually_exclusive_group()
    mode.add_argument("--detach", action="store_true", help="run in the background (pid file)")
    mode.add_argument("--stop", action="store_true", help="stop the background devnet")
    devnet.set_defaults(handler=cmd_devnet)

    deploy = commands.add_parser("deploy", help="deploy the contracts; write deployments/")
    deploy.add_argument("--rpc", help="chain endpoint (default: $CHAINAUDIT_RPC_URL)")
    deploy.add_argument("--anchorer", help="address granted ANCHORER_ROLE (default: deployer)")
    deploy.set_defaults(handler=cmd_deploy)

    anchor = commands.add_parser("anchor", help="anchor the log's current checkpoint now")
    anchor.add_argument("--rpc", help="chain endpoint (default: $CHAINAUDIT_RPC_URL)")
    anchor.add_argument("--timeout", type=float, default=120.0, help="seconds to wait")
    anchor.add_argument(
        "--follow", action="store_true", help="keep running: anchor batches by the policy"
    )
    anchor.set_defaults(handler=cmd_anchor)
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
        overrides = {} if args.data_dir is None else {"data_dir": args.data_dir}
        settings = load_settings(**overrides)
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
