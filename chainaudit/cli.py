"""The ``chainaudit`` command line.

Exit codes: 0 success, 1 a verification or audit failure, 2 a usage or input error (bad
arguments, unreadable files, invalid JSON or records, no log at the data directory, a chain
endpoint that cannot be reached). Errors print one line on stderr, saying where and what to do
(the data directory and ``--data-dir``/``CHAINAUDIT_DATA_DIR``; the endpoint and
``chainaudit devnet --detach``; a revert by its contract's custom error and arguments).

Only commands that write records create a log; every other command refuses a data directory
without one. ``--version`` works on every command; ``--json`` prints the result of every
command that has one as a single JSON document, with the names and ``0x``-hex hashes of
``docs/json.md`` (shared with the API and proof bundles).

``proof RECORD_ID -o FILE`` writes a proof bundle (:mod:`chainaudit.core.bundle`); for a record not
anchored yet it exits 2 with "proof pending: ..." (fetch it again after the next anchor).
``verify BUNDLE [--rpc URL --chain-id ID --contract ADDRESS]`` and ``verify --consistency OLD
NEW`` (:mod:`chainaudit.verify.verifier`) print one line per check and exit 0 when valid, 1 when a
check failed (named on stderr), 2 when the bundle or the endpoint cannot be used — or when ``--rpc``
comes without the chain and contract to trust (``--trust-bundle-contract`` accepts the
bundle's own, with a warning in the verdict). ``--log-key VKEY`` (the log's note verifier key)
adds the ``checkpoint_note`` check of the bundle's signed checkpoint. Every JSON input is
checked for nesting before it is parsed (:mod:`chainaudit.core.jsonlimits`).

``log-key generate --origin O --keystore FILE`` creates the log's checkpoint signing key in an
encrypted keystore (password from ``CHAINAUDIT_LOG_SIGNING_KEYSTORE_PASSWORD`` or a prompt);
``log-key verifier`` prints the configured key's verifier key (:mod:`chainaudit.app.logkey`).

``proof RECORD_ID --format tlog-proof`` writes a ``c2sp.org/tlog-proof@v1`` file
(:mod:`chainaudit.verify.tlogproof`); ``verify`` tells it from a bundle v1 by content and checks it
against ``--log-key`` and the witness quorum (``--witness``, ``--quorum``). ``verify --state
FILE`` refuses a checkpoint that is not provably consistent with the last one it accepted
(:mod:`chainaudit.verify.state`; proofs from the evidence or ``--log-url``). ``monitor``
follows a log's read path and its anchors (:mod:`chainaudit.verify.monitor`): exit 1 on any finding.
See ``docs/transparency.md``.

``audit [--chain]`` (:meth:`chainaudit.log.store.Log.audit`,
:func:`chainaudit.risk.book.audit_tables`,
:func:`chainaudit.service.indexer.audit_index`,
:func:`chainaudit.log.record_index.audit_record_index`) prints one line per finding and exits 1 if
there is any; ``--jobs N`` (default: the number of CPUs) re-derives the leaves and nodes in N worker
processes, the report unchanged.

Controlled actions need two officers (:mod:`chainaudit.service.approvals`): ``risk resolve
--cleared``, ``risk hold lift``, a ``risk hold renew`` that shortens a hold, ``risk rules`` with a
changed rule set, ``pause``, ``unpause`` and ``keys create`` of an admin, operator or partner key
(once an admin key exists) record a request; a second officer runs ``approvals approve ID``. An
officer identifies with its own API key in ``CHAINAUDIT_API_KEY`` (checked against the local
key store); the requester's key cannot approve.

Privacy (``docs/privacy.md``): ``erase ID --reason … --basis …`` requests the erasure of a
record's content (the controlled action ``record.erase``: a second officer's ``approvals
approve ID`` performs it); ``retention run [--batch N] [--dry-run]`` erases what the data
policy's retention periods say has expired and prints a JSON summary; ``master-key generate``
prints a new master key and ``master-key rotate`` rewraps every data key under a new one.
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

from chainaudit import backup_cli, witness_cli
from chainaudit.app.settings import Settings, load_settings
from chainaudit.app.stores import open_log as _open_log
from chainaudit.core import datapolicy, minimum, provenance
from chainaudit.core.errors import ChainauditError, InputError, VerificationError
from chainaudit.core.jsonlimits import restore_recursion_limit
from chainaudit.log.ingest import ingest_file, local_submitter
from chainaudit.log.store import Log

if TYPE_CHECKING:
    from chainaudit.core.bundle import Bundle
    from chainaudit.service.keys import KeyStore

__all__ = ["main"]

# Commands import the chain, API and bundle modules when they run: web3 alone takes most of a
# second to import, which every `chainaudit ingest` would otherwise pay.
ROLES = ("admin", "operator", "partner", "auditor", "regulator")  # chainaudit.service.keys.ROLES

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


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


_json_output = False
"""Set by :func:`main` from ``--json``: print each command's result as one JSON document."""


def _emit(text: str, result: dict[str, Any] | list[Any]) -> None:
    """Print a command's result: ``text`` for people, or ``result`` as JSON with ``--json``
    (field names and ``0x``-hex hashes as in ``docs/json.md``)."""
    if _json_output:
        _print_json(result)
    else:
        print(text)


def _hex(value: bytes) -> str:
    """A hash as every JSON of the project writes it: ``0x`` and lowercase hex."""
    from chainaudit.core.wire import hex0x  # noqa: PLC0415

    return hex0x(value)


# -- commands ---------------------------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    started = time.perf_counter()
    try:  # before the log is opened: a mistyped file name must not leave an empty log
        Path(args.file).open("rb").close()
    except OSError as exc:
        raise InputError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    submitter = local_submitter()  # stamped into every record; reserved records are refused
    # minimum necessary: a record with payload fields its kind does not declare is refused
    # (naming the line) before the log is opened, so nothing of the file is appended
    minimum.check_file(Path(args.file), datapolicy.load(settings.data_policy_file))
    with _open_log(settings, create=True) as log:
        result = ingest_file(
            log,
            Path(args.file),
            commit_every=args.commit_every,
            workers=args.workers,
            progress=None if args.quiet else ProgressBar("ingest"),
            submitter=submitter,
        )
    elapsed = time.perf_counter() - started
    _emit(
        f"ingested {result.records} records ({result.appended} new, {result.duplicates} "
        f"already present) as {submitter} in {elapsed:.2f}s; tree size {result.tree_size}; "
        f"root {result.root.hex()}",
        {
            "records": result.records,
            "appended": result.appended,
            "duplicates": result.duplicates,
            "submitter": submitter,
            "seconds": round(elapsed, 3),
            "checkpoint": {"tree_size": result.tree_size, "root": _hex(result.root)},
        },
    )
    return EXIT_OK


def cmd_proof(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.core.bundle import write_bundle  # noqa: PLC0415
    from chainaudit.service.anchoring import AnchorBook  # noqa: PLC0415
    from chainaudit.service.bundling import build_bundle  # noqa: PLC0415

    if args.format == "tlog-proof":
        return _tlog_proof(args, settings)
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
    _emit(
        f"wrote the proof bundle of record {args.record_id} (leaf {bundle['leaf_index']}, "
        f"tree size {bundle['tree_size']}, checkpoint {anchor['checkpoint_seq']} on chain "
        f"{anchor['chain_id']}, {anchor['status']}) to {args.output}"
        + ("" if "record" in bundle else "; the record itself is not included"),
        {
            "file": str(args.output),
            "record_id": args.record_id,
            "record_included": "record" in bundle,
            "leaf_index": bundle["leaf_index"],
            "leaf_hash": bundle["leaf_hash"],
            "tree_size": bundle["tree_size"],
            "checkpoint": bundle["checkpoint"],
            "anchor": anchor,
        },
    )
    return EXIT_OK


def _tlog_proof(args: argparse.Namespace, settings: Settings) -> int:
    """``proof ID --format tlog-proof``: a c2sp.org/tlog-proof@v1 file against the log's
    latest signed checkpoint, the record's leaf data as its extra data (unless --no-record)."""
    from chainaudit.service.bundling import build_tlog_proof  # noqa: PLC0415
    from chainaudit.verify.tlogproof import TlogProof  # noqa: PLC0415

    if args.since is not None:
        raise InputError("--since shapes a bundle v1; a tlog-proof carries no consistency proof")
    with _open_log(settings) as log:
        proof = build_tlog_proof(log, args.record_id)
    if args.no_record:
        proof = TlogProof(proof.index, proof.proof, proof.checkpoint, None)
    text = proof.encode()
    if args.output is None or args.output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    target = Path(args.output)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise InputError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    size = proof.checkpoint.split("\n", 2)[1]
    _emit(
        f"wrote the tlog-proof of record {args.record_id} (leaf {proof.index}, signed "
        f"checkpoint of size {size}) to {args.output}"
        + ("" if proof.extra is not None else "; the record itself is not included"),
        {
            "file": str(args.output),
            "record_id": args.record_id,
            "record_included": proof.extra is not None,
            "leaf_index": proof.index,
            "tree_size": int(size),
        },
    )
    return EXIT_OK


def _plain_proof(args: argparse.Namespace, settings: Settings) -> int:
    """The inclusion proof at the log's current size, anchored or not: a bundle's fields
    without the record and the anchor (``docs/json.md``)."""
    with _open_log(settings) as log:
        entry = log.entry(args.record_id)
        size = log.size
        proof = {
            "record_id": entry.record_id,
            "leaf_index": entry.index,
            "leaf_hash": _hex(entry.leaf_hash),
            "tree_size": size,
            "inclusion_proof": [_hex(h) for h in log.inclusion_proof(entry.index, size)],
            "checkpoint": {"tree_size": size, "root": _hex(log.root())},
        }
    _print_json(proof)
    return EXIT_OK


def _read_bundle(name: str) -> Bundle:
    from chainaudit.core.bundle import load_bundle, loads_bundle  # noqa: PLC0415

    if name == "-":
        return loads_bundle(sys.stdin.buffer.read(), source="stdin")
    return load_bundle(name)


def _read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from exc


def _state_check(
    args: argparse.Namespace,
    origin: str,
    size: int,
    root: bytes,
    given: tuple[int, bytes, Sequence[bytes]] | None,
) -> Any:
    """``verify --state``: the evidence's checkpoint against the remembered one of its origin
    (:mod:`chainaudit.verify.state`); a Check, the file updated only when it passes."""
    from chainaudit.verify.state import VerifierState  # noqa: PLC0415
    from chainaudit.verify.tlogclient import consistency_source  # noqa: PLC0415
    from chainaudit.verify.tlogproof import parse_keys  # noqa: PLC0415
    from chainaudit.verify.verifier import Check  # noqa: PLC0415

    state = VerifierState.load(args.state)
    key = parse_keys([args.log_key], "--log-key")[0] if args.log_key else None
    proofs = consistency_source(args.log_url, key) if args.log_url else None
    try:
        detail = state.accept(origin, size, root, given=given, proofs=proofs)
    except VerificationError as exc:
        return Check("state", "fail", f"{origin}: {exc}")
    return Check("state", "pass", f"{origin}: {detail} (state file {args.state})")


def _policy_log_key(policy: Any, checkpoint: str, given: str | None) -> Any:
    """The log key a tlog-proof's checkpoint is checked against under a ``tlog-policy``: one
    of the policy's ``log`` lines (c2sp.org/tlog-policy: a checkpoint counts only if signed by
    a listed log). ``--log-key``, if given, must be one of them; without it, the listed key
    that signed the checkpoint (by origin) is used.

    Raises:
        InputError: ``--log-key`` is not a log of the policy, or neither names a log.
        VerificationError: no log of the policy has the checkpoint's origin or signed it.
    """
    from chainaudit.core import note as notes  # noqa: PLC0415
    from chainaudit.core.errors import NoteError  # noqa: PLC0415
    from chainaudit.verify.tlogproof import parse_keys  # noqa: PLC0415

    listed: list[notes.Verifier] = policy.log_verifiers()
    if given is not None:
        key = parse_keys([given], "--log-key")[0]
        if listed and key not in listed:
            raise InputError(f"--log-key {key.encode()} is not a log of the --policy file")
        return key
    if not listed:
        raise InputError("the --policy file lists no log: give the log's key with --log-key")
    try:
        signed = notes.Note.parse(checkpoint)
        origin = notes.Checkpoint.parse(signed.text).origin
        candidates = [key for key in listed if key.name == origin]
        signers = signed.verified_by(candidates)
    except NoteError as exc:
        raise VerificationError(f"the checkpoint: {exc}", check="log_signature") from exc
    for key in candidates:
        if key.name in signers:
            return key
    raise VerificationError(
        f"no log of the policy signed the checkpoint of {origin}", check="log_signature"
    )


def _verify_tlog_proof(args: argparse.Namespace, data: bytes) -> tuple[Any, str]:
    """``verify FILE`` of a c2sp.org/tlog-proof@v1: the verdict and what it proves."""
    from chainaudit.core.witness_policy import Policy, load_policy  # noqa: PLC0415
    from chainaudit.verify.tlogproof import (  # noqa: PLC0415
        WitnessPolicy,
        parse_keys,
        parse_tlog_proof,
        verify_tlog_proof,
    )
    from chainaudit.verify.verifier import Verdict  # noqa: PLC0415

    if args.rpc:
        raise InputError(
            "a tlog-proof names no anchor: --rpc applies to bundle v1 (compare a log's "
            "anchors with `chainaudit monitor`)"
        )
    proof = parse_tlog_proof(data)
    policy: WitnessPolicy | Policy | None = None
    if args.policy and (args.witness or args.quorum is not None):
        raise InputError("give either --policy FILE or --witness/--quorum, not both")
    if args.policy:
        policy = load_policy(args.policy)
        log_key = _policy_log_key(policy, proof.checkpoint, args.log_key)
    elif args.log_key is None:
        raise InputError(
            "a tlog-proof is checked against the log's public key: give --log-key VKEY "
            "(<name>+<key id>+<base64 key>, from a source you trust) or a --policy FILE "
            "that lists the log"
        )
    else:
        log_key = parse_keys([args.log_key], "--log-key")[0]
    if policy is None and (args.witness or args.quorum is not None):
        witnesses = tuple(parse_keys(args.witness or [], "--witness"))
        quorum = len(witnesses) if args.quorum is None else args.quorum
        policy = WitnessPolicy(witnesses, quorum)
    entry = _read_input(args.entry) if args.entry else None
    verdict, checkpoint = verify_tlog_proof(proof, log_key=log_key, entry=entry, policy=policy)
    if args.state and verdict.valid:
        check = _state_check(args, checkpoint.origin, checkpoint.size, checkpoint.root, None)
        verdict = Verdict((*verdict.checks, check), chain_checked=False)
    subject = (
        f"the entry is leaf {proof.index} of {checkpoint.origin} at size {checkpoint.size}, "
        "signed by the log"
        + ("" if policy is None else f" and witnessed as the policy requires ({policy.quorum})")
    )
    return verdict, subject


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


def _verify_with_local_erasures(
    settings: Settings, bundle: Bundle, chain: Any, pins: dict[str, Any]
) -> Any:
    """:func:`~chainaudit.verify.verifier.verify_bundle`, told which leaves the log in the data
    directory (if there is one: the operator's side) has erased, so that a bundle still
    carrying erased content fails its record check, naming the erasure."""
    from chainaudit.service.erasure import erased_leaves  # noqa: PLC0415
    from chainaudit.verify.verifier import verify_bundle  # noqa: PLC0415

    url = settings.log_database_url
    if bundle.record is None or not Log.exists(settings.data_dir, database_url=url):
        return verify_bundle(bundle, chain=chain, **pins)
    with Log.open(settings.data_dir, kinds=settings.record_kinds, database_url=url) as log:
        return verify_bundle(bundle, chain=chain, erased=erased_leaves(log), **pins)


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.chain.chain import Chain  # noqa: PLC0415
    from chainaudit.verify.tlogproof import is_tlog_proof  # noqa: PLC0415
    from chainaudit.verify.verifier import (  # noqa: PLC0415
        Verdict,
        verify_consistency_bundles,
    )

    if args.state and args.consistency:
        raise InputError("--state remembers one checkpoint at a time: not with --consistency")
    if args.log_url and not args.state:
        raise InputError("--log-url fetches consistency proofs for --state FILE: give both")
    if (
        args.rpc
        and not args.trust_bundle_contract
        and (args.contract is None or args.chain_id is None)
    ):
        missing = " and ".join(
            flag
            for flag, value in (
                ("--contract ADDRESS", args.contract),
                ("--chain-id ID", args.chain_id),
            )
            if value is None
        )
        raise InputError(
            f"verify --rpc needs the anchor you trust: pass {missing} (from a source you trust, "
            "not from the bundle: anyone can deploy an AuditAnchor), or --trust-bundle-contract "
            "to accept the bundle's own contract and chain with a warning"
        )
    chain = Chain(args.rpc, timeout=settings.rpc_timeout) if args.rpc else None
    pins = {
        "confirmations": settings.confirmations
        if args.confirmations is None
        else args.confirmations,
        "finality": settings.finality if args.finality is None else args.finality,
        "expected_chain_id": args.chain_id,
        "expected_contract": args.contract,
    }
    if args.consistency:
        if args.bundle is not None:
            raise InputError("give either a bundle or --consistency OLD NEW, not both")
        old, new = (_read_bundle(name) for name in args.consistency)
        verdict = verify_consistency_bundles(old, new, chain, log_key=args.log_key, **pins)
        subject = (
            f"checkpoint {new.anchor.checkpoint_seq} (size {new.checkpoint.tree_size}) extends "
            f"checkpoint {old.anchor.checkpoint_seq} (size {old.checkpoint.tree_size})"
        )
    else:
        if args.bundle is None:
            raise InputError("give a bundle file to verify (or --consistency OLD NEW)")
        data = _read_input(args.bundle)
        if is_tlog_proof(data):
            verdict, subject = _verify_tlog_proof(args, data)
        else:
            from chainaudit.core.bundle import loads_bundle  # noqa: PLC0415

            bundle = loads_bundle(data, source="stdin" if args.bundle == "-" else args.bundle)
            if args.witness or args.quorum is not None or args.entry or args.policy:
                raise InputError(
                    "--policy, --witness, --quorum and --entry apply to a tlog-proof; this is "
                    "a bundle v1"
                )
            pins = {**pins, "log_key": args.log_key}
            verdict = _verify_with_local_erasures(settings, bundle, chain, pins)
            if args.state and verdict.valid:
                given = bundle.consistency
                check = _state_check(
                    args,
                    f"anchor:{bundle.anchor.chain_id}/{bundle.anchor.contract}",
                    bundle.checkpoint.tree_size,
                    bundle.checkpoint.root,
                    None if given is None else (given.from_tree_size, given.from_root, given.proof),
                )
                verdict = Verdict(
                    (*verdict.checks, check),
                    chain_checked=verdict.chain_checked,
                    warnings=verdict.warnings,
                )
            who = f"record {bundle.record_id}" if bundle.record_id else "the leaf"
            if bundle.erasure is not None:
                who += " (content erased)"
            subject = (
                f"{who} is leaf {bundle.leaf_index} of checkpoint "
                f"{bundle.anchor.checkpoint_seq} (tree size {bundle.checkpoint.tree_size}) of "
                f"contract {bundle.anchor.contract} on chain {bundle.anchor.chain_id}"
            )
    if args.json:
        _print_json(verdict.to_json())
    else:
        marks = _marks()
        width = max(len(check.name) for check in verdict.checks)
        for check in verdict.checks:
            print(f"{marks[check.status]} {check.name:{width}}  {check.detail}")
        for warning in verdict.warnings:
            print(f"WARNING: {warning}")
        if not verdict.valid:
            print(f"INVALID: failed check(s): {', '.join(verdict.failed)}")
        elif verdict.chain_checked or verdict.checks[0].name == "entry":
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


def cmd_monitor(args: argparse.Namespace, settings: Settings) -> int:
    """``monitor``: follow a log's read path and its anchors (:mod:`chainaudit.verify.monitor`)."""
    from web3 import Web3  # noqa: PLC0415

    from chainaudit.verify.monitor import Monitor, follow  # noqa: PLC0415
    from chainaudit.verify.state import VerifierState  # noqa: PLC0415
    from chainaudit.verify.tlogproof import parse_keys  # noqa: PLC0415

    if args.rpc and (args.contract is None or args.chain_id is None):
        raise InputError(
            "monitor --rpc needs the anchor you trust: --contract ADDRESS and --chain-id ID"
        )
    if (args.contract or args.chain_id) and not args.rpc:
        raise InputError("--contract and --chain-id name the anchors to check: add --rpc URL")
    if not args.follow and (
        args.interval is not None or args.max_polls is not None or args.webhook or args.metrics_file
    ):
        raise InputError("--interval, --max-polls, --webhook and --metrics-file need --follow")
    contract = None
    if args.contract is not None:
        if not Web3.is_address(args.contract):
            raise InputError(f"--contract {args.contract!r} is not an address")
        contract = str(Web3.to_checksum_address(args.contract))
    state = VerifierState.load(args.state) if args.state else VerifierState(None)
    monitor = Monitor(
        log_urls=args.log_url,
        checkpoints={name: _read_input(name) for name in args.checkpoint or []},
        log_key=parse_keys([args.log_key], "--log-key")[0],
        state=state,
        rpc=args.rpc,
        contract=contract,
        chain_id=args.chain_id,
        timeout=settings.rpc_timeout,
    )
    if not args.follow:
        findings = monitor.poll()
        if args.json:
            _print_json({"findings": [f.to_json() for f in findings], "tree_sizes": monitor.sizes})
        else:
            for finding in findings:
                print(finding.line())
            sizes = ", ".join(f"{url} serves {size}" for url, size in monitor.sizes.items())
            print(f"{len(findings)} finding(s); {sizes or 'no log read'}")
        for message in monitor.unavailable:
            print(f"chainaudit: {message}", file=sys.stderr)
        if findings:
            return EXIT_FAILED
        return EXIT_USAGE if monitor.unavailable else EXIT_OK

    def report(finding: Any) -> None:
        print(finding.line(), flush=True)

    def trouble(message: str) -> None:
        print(f"chainaudit monitor: {message}", file=sys.stderr, flush=True)

    follow(
        monitor,
        interval=30.0 if args.interval is None else args.interval,
        max_polls=args.max_polls,
        report=report,
        trouble=trouble,
        metrics=None if args.metrics_file is None else Path(args.metrics_file),
        webhook=args.webhook,
    )
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app.context import chain_from  # noqa: PLC0415
    from chainaudit.app.deploy import contract_address  # noqa: PLC0415
    from chainaudit.log.record_index import audit_record_index  # noqa: PLC0415
    from chainaudit.risk.book import audit_tables  # noqa: PLC0415
    from chainaudit.service.anchoring import audit_against_chain  # noqa: PLC0415
    from chainaudit.service.indexer import audit_index  # noqa: PLC0415

    with _open_log(settings) as log:
        chain = chain_from(settings, args.rpc) if args.chain else None
        report = log.audit(
            chain_id=None if chain is None else chain.chain_id(),
            jobs=args.jobs or os.cpu_count() or 1,
        )
        report.findings.extend(audit_tables(log))
        report.findings.extend(audit_index(log))
        report.findings.extend(audit_record_index(log))
        if chain is not None:
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
                "root": _hex(report.root),
                "checkpoint": {"tree_size": report.tree_size, "root": _hex(report.root)},
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
    from chainaudit.chain.devnet import Devnet, start_detached, stop_detached  # noqa: PLC0415

    devnet_dir = settings.data_dir / "devnet"
    if args.stop:
        stopped = stop_detached(devnet_dir / "anvil.pid")
        _emit("devnet stopped" if stopped else "no devnet was running", {"stopped": stopped})
        return EXIT_OK
    if args.detach:
        started = start_detached(devnet_dir, port=args.port)
        _emit(
            f"devnet running at {started.rpc_url} (chain id {started.chain_id}, pid {started.pid})",
            {"rpc_url": started.rpc_url, "chain_id": started.chain_id, "pid": started.pid},
        )
        return EXIT_OK
    with Devnet(port=args.port) as devnet:
        _emit(
            f"devnet running at {devnet.rpc_url} (chain id {devnet.chain_id}); Ctrl-C stops it\n"
            + "\n".join(f"  account {account.address}" for account in devnet.accounts[:3]),
            {
                "rpc_url": devnet.rpc_url,
                "chain_id": devnet.chain_id,
                "accounts": [account.address for account in devnet.accounts[:3]],
            },
        )
        sys.stdout.flush()
        try:
            while devnet.is_running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopping devnet")
    return EXIT_OK


def _clearance_signer(settings: Settings) -> str | None:
    """The EscrowGate's clearance signer: the configured key's address, else (development)
    the devnet's account 0, whose key the development service signs clearances with; ``None``
    (no gate) otherwise."""
    from chainaudit.app.roles import clearance_account  # noqa: PLC0415

    account = clearance_account(settings)
    return None if account is None else str(account.address)


def cmd_deploy(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app.context import chain_from  # noqa: PLC0415
    from chainaudit.app.deploy import deploy_contracts  # noqa: PLC0415
    from chainaudit.app.roles import anchorer_account  # noqa: PLC0415

    chain = chain_from(settings, args.rpc)
    deployer = anchorer_account(settings)
    officers = tuple(args.compliance or ())
    arbiters: tuple[str, ...] = ()
    inspectors: tuple[str, ...] = ()
    if settings.environment == "development":
        from chainaudit.app.deploy import DEVNET_PARTIES  # noqa: PLC0415
        from chainaudit.chain.devnet import derive_accounts  # noqa: PLC0415
        from chainaudit.chain.devnet import load_settings as devnet_settings  # noqa: PLC0415

        accounts = derive_accounts(devnet_settings().mnemonic, 10)
        if not officers:
            officers = (accounts[DEVNET_PARTIES["compliance"]].address,)
        # the devnet's arbiter and inspector are accredited (deals may name only those)
        arbiters = (accounts[DEVNET_PARTIES["arbiter"]].address,)
        inspectors = (accounts[DEVNET_PARTIES["inspector"]].address,)
    deployed = deploy_contracts(
        chain,
        deployer,
        anchorer=args.anchorer,
        directory=settings.deployments_dir,
        escrow=not args.no_escrow,
        compliance_officers=officers,
        arbiters=arbiters,
        inspectors=inspectors,
        clearance_signer=_clearance_signer(settings),
    )
    written = settings.deployments_dir / f"{chain.chain_id()}.json"
    _emit(
        "\n".join(
            [
                f"{name} deployed at {c.address} (tx {c.tx_hash[:12]}...)"
                for name, c in deployed.items()
            ]
            + [f"wrote {written}"]
        ),
        {
            "chain_id": chain.chain_id(),
            "file": str(written),
            "contracts": {
                name: {"address": c.address, "tx_hash": c.tx_hash, "block_number": c.block_number}
                for name, c in deployed.items()
            },
        },
    )
    return EXIT_OK


def cmd_anchor(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app.context import anchorer_from, chain_from  # noqa: PLC0415

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
        signed = done.checkpoint_note(log)
    tx = "0x" + done.tx_hash.hex() if done.tx_hash else "?"
    _emit(
        f"anchored tree size {done.tree_size} root {done.root.hex()} as checkpoint "
        f"{done.seq} ({done.status}) in block {done.block_number}, tx {tx}",
        {
            "checkpoint": {"tree_size": done.tree_size, "root": _hex(done.root)},
            "checkpoint_note": signed,
            "anchor": {
                "chain_id": done.chain_id,
                "contract": done.contract,
                "checkpoint_seq": done.seq,
                "status": done.status,
                "block_number": done.block_number,
                "block_hash": _hex(done.block_hash) if done.block_hash else None,
                "tx_hash": _hex(done.tx_hash) if done.tx_hash else None,
            },
        },
    )
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.api.server import serve  # noqa: PLC0415

    def announce(url: str) -> None:
        processes = f" with {args.workers} worker processes" if args.workers > 1 else ""
        print(f"serving the API at {url}{processes} (docs at /docs); Ctrl-C stops it", flush=True)

    try:  # the service keeps its log and state there: a writer, it may create it
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"cannot create the data directory {settings.data_dir}: {exc.strerror or exc} "
            "(choose another with --data-dir or CHAINAUDIT_DATA_DIR)"
        ) from exc
    serve(settings, host=args.host, port=args.port, workers=args.workers, on_started=announce)
    return EXIT_OK


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    """Write the C2SP tlog-tiles files (checkpoint, tile/..., tile/entries/...) into DIR."""
    import threading  # noqa: PLC0415

    from chainaudit.log.publish import Published, Publisher, check_directory  # noqa: PLC0415

    if args.interval is not None and not args.follow:
        raise InputError("--interval needs --follow")
    directory = check_directory(Path(args.directory))
    log = _open_log(settings)

    def report(done: Published) -> None:
        checkpoint = "and the checkpoint" if done.checkpoint else "(no new checkpoint)"
        if args.follow and not done.checkpoint and not done.written:
            checkpoint = "(nothing new)"
        _emit(
            f"published size {done.size}: {done.written} tile file(s) {checkpoint}"
            f"{f', pruned {done.pruned} partial tile folder(s)' if done.pruned else ''} "
            f"into {directory}"
            + (
                f"; withheld {len(done.withheld)} entry bundle(s) holding erased, private "
                "or over-long records"
                if done.withheld
                else ""
            )
            + (
                f"; removed {len(done.removed)} published entry bundle(s) now holding "
                "erased or private records"
                if done.removed
                else ""
            ),
            {
                "tree_size": done.size,
                "written": done.written,
                "checkpoint": done.checkpoint,
                "pruned": done.pruned,
                "withheld": done.withheld,
                "removed": done.removed,
                "directory": str(directory),
            },
        )
        sys.stdout.flush()

    with log:
        private = datapolicy.load(settings.data_policy_file).private_kinds()
        publisher = Publisher(log, directory, entries=settings.tiles_entries, withhold=private)
        if log.signed_checkpoint() is None:
            print(
                "chainaudit: the log has no signed checkpoint yet: publishing its tiles "
                "without a checkpoint file",
                file=sys.stderr,
            )
        if not args.follow:
            report(publisher.publish())
            return EXIT_OK
        stop = threading.Event()
        try:
            publisher.follow(args.interval or 2.0, stop, report)
        except KeyboardInterrupt:
            stop.set()
        return EXIT_OK


LOG_KEYSTORE_PASSWORD_ENV = "CHAINAUDIT_LOG_SIGNING_KEYSTORE_PASSWORD"  # noqa: S105 - a name


def _new_keystore_password() -> str:
    """The new keystore's password: the environment's, else typed twice (never echoed)."""
    import getpass  # noqa: PLC0415

    password = os.environ.get(LOG_KEYSTORE_PASSWORD_ENV)
    if password is not None:
        return password
    if not sys.stdin.isatty():
        raise InputError(
            f"no keystore password: set {LOG_KEYSTORE_PASSWORD_ENV} or run on a terminal"
        )
    first = getpass.getpass("keystore password: ")
    if first != getpass.getpass("again: "):
        raise InputError("the two passwords differ")
    return first


def cmd_log_key_generate(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app.logkey import generate_keystore  # noqa: PLC0415

    signer = generate_keystore(args.keystore, args.origin, _new_keystore_password())
    verifier = signer.verifier().encode()
    _emit(
        f"wrote the log key of {signer.name} to {args.keystore}; its verifier key:\n{verifier}",
        {"origin": signer.name, "keystore": str(args.keystore), "verifier_key": verifier},
    )
    return EXIT_OK


def cmd_log_key_verifier(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app.logkey import log_signer  # noqa: PLC0415

    verifier = log_signer(settings).verifier()
    _emit(verifier.encode(), {"origin": verifier.name, "verifier_key": verifier.encode()})
    return EXIT_OK


def _key_store(settings: Settings, *, create: bool = False) -> tuple[Log, KeyStore]:
    from chainaudit.service.keys import KeyStore  # noqa: PLC0415

    log = _open_log(settings, create=create)
    return log, KeyStore(log.path, database_url=log.database_url)


def _expiry(days: float | None) -> int | None:
    return None if days is None else int(time.time() * 1000 + days * 86_400_000)


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app.controls import KEY_ROLES_NEEDING_TWO  # noqa: PLC0415
    from chainaudit.log.actions import cli_actor, record_action  # noqa: PLC0415

    log, store = _key_store(settings, create=True)
    try:
        if args.role in KEY_ROLES_NEEDING_TWO and store.has_active_admin():
            params = {
                "role": args.role,
                "name": args.name,
                "address": args.address,
                "expires_ms": _expiry(args.expires_in),
            }
            return _request(log, "keys.create", params)
        # auditors and regulators; or the bootstrap, before any admin key exists
        key, token = store.create(
            args.role, name=args.name, address=args.address, expires_ms=_expiry(args.expires_in)
        )
        record_action(
            log,
            action="keys.create",
            actor=cli_actor(),
            details={
                "target_key": key.key_id,
                "role": key.role,
                "address": key.address,
                "expires_ms": key.expires_ms,
            },
            submitter=provenance.KEYS,
        )
    finally:
        store.close()
        log.close()
    _emit(
        f"created {key.role} key {key.key_id} ({key.name}); token (shown once):\n{token}",
        {**_key_json(key), "token": token},
    )
    return EXIT_OK


def cmd_keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app.controls import KEY_ROLES_NEEDING_TWO  # noqa: PLC0415
    from chainaudit.log.actions import cli_actor, record_action  # noqa: PLC0415

    log, store = _key_store(settings)
    try:
        target = store.get(args.key_id)
        if target.role in KEY_ROLES_NEEDING_TWO and store.has_active_admin():
            params = {"key_id": args.key_id, "expires_ms": _expiry(args.expires_in)}
            return _request(log, "keys.rotate", params)
        key, token = store.rotate(args.key_id, expires_ms=_expiry(args.expires_in))
        record_action(
            log,
            action="keys.rotate",
            actor=cli_actor(),
            details={"target_key": key.key_id, "role": key.role, "expires_ms": key.expires_ms},
        )
    finally:
        store.close()
        log.close()
    _emit(
        f"rotated key {key.key_id} ({key.name}); the old token no longer works; new token:\n"
        + token,
        {**_key_json(key), "token": token},
    )
    return EXIT_OK


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.log.actions import cli_actor, record_action  # noqa: PLC0415

    log, store = _key_store(settings)
    try:
        key = store.revoke(args.key_id)
        record_action(
            log,
            action="keys.revoke",
            actor=cli_actor(),
            details={"target_key": key.key_id, "role": key.role},
            submitter=provenance.KEYS,
        )
    finally:
        store.close()
        log.close()
    _emit(f"revoked key {key.key_id} ({key.name})", _key_json(key))
    return EXIT_OK


def cmd_keys_personal_data(args: argparse.Namespace, settings: Settings) -> int:
    """Request the personal-data permission for an auditor or regulator key (a second admin
    approves it with ``chainaudit approvals approve``), or ``--withdraw`` it at once."""
    from chainaudit.log.actions import cli_actor, record_action  # noqa: PLC0415
    from chainaudit.service.keys import READ_ONLY_ROLES  # noqa: PLC0415

    log, store = _key_store(settings)
    try:
        target = store.get(args.key_id)
        if not target.active or target.role not in READ_ONLY_ROLES:
            raise InputError(
                f"key {target.key_id} is {'revoked' if not target.active else 'a ' + target.role}"
                " key: only active auditor and regulator keys carry the personal-data permission"
            )
        if not args.withdraw:
            return _request(log, "keys.grant-personal-data", {"key_id": target.key_id})
        key = store.set_personal_data(target.key_id, False)
        record_action(
            log,
            action="keys.withdraw-personal-data",
            actor=cli_actor(),
            details={"target_key": key.key_id, "role": key.role},
            submitter=provenance.KEYS,
        )
    finally:
        store.close()
        log.close()
    _emit(f"withdrew the personal-data permission of key {key.key_id} ({key.name})", _key_json(key))
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.service.keys import format_ms  # noqa: PLC0415

    log, store = _key_store(settings)
    try:
        keys = store.list()
    finally:
        store.close()
        log.close()
    if _json_output:
        _print_json([_key_json(key) for key in keys])
        return EXIT_OK
    for key in keys:
        state = _key_state(key)
        expiry = "" if key.expires_ms is None else f"  (expires {format_ms(key.expires_ms)})"
        expiry += "  (reads personal data)" if key.personal_data else ""
        print(f"{key.key_id}  {key.role:9}  {state:7}  {key.address or '-':42}  {key.name}{expiry}")
    return EXIT_OK


def _key_state(key: Any) -> str:
    return "revoked" if not key.active else "expired" if key.expired() else "active"


def _key_json(key: Any) -> dict[str, Any]:
    """A key's public description (never its secret) as JSON."""
    return {
        "key_id": key.key_id,
        "name": key.name,
        "role": key.role,
        "address": key.address,
        "state": _key_state(key),
        "created_ms": key.created_ms,
        "expires_ms": key.expires_ms,
        "revoked_ms": key.revoked_ms,
        "personal_data": key.personal_data,
    }


# -- maker-checker ------------------------------------------------------------------------------

OFFICER_KEY_ENV = "CHAINAUDIT_API_KEY"


def _officer(log: Log) -> Any:
    """The officer running this command, from the API key in ``CHAINAUDIT_API_KEY``.

    Raises :class:`InputError` without a key, for an unknown, revoked or expired one, and
    :class:`~chainaudit.service.approvals.ApprovalError` for a key that is not an officer's.
    """
    from chainaudit.service.approvals import Officer  # noqa: PLC0415
    from chainaudit.service.keys import KeyStore  # noqa: PLC0415

    token = os.environ.get(OFFICER_KEY_ENV, "").strip()
    if not token:
        raise InputError(
            f"this action needs two officers: set {OFFICER_KEY_ENV} to your own admin or "
            "operator API key to request or approve it"
        )
    store = KeyStore(log.path, database_url=log.database_url)
    try:
        key = store.authenticate(token)
    finally:
        store.close()
    if key is None:
        raise InputError(f"the API key in {OFFICER_KEY_ENV} is unknown or revoked")
    if key.expired():
        raise InputError(key.expiry_detail())
    return Officer.of_key(key)


def _request(log: Log, action: str, params: dict[str, Any], note: str | None = None) -> int:
    """Record the calling officer's request for ``action``; print how to approve it."""
    from chainaudit.app.controls import check_params  # noqa: PLC0415
    from chainaudit.service.approvals import request  # noqa: PLC0415

    maker = _officer(log)
    approval = request(log.append, action, check_params(action, params), maker, note)
    _emit(
        f"approval {approval.approval_id} requested ({action}) by {maker.actor}; a second "
        f"officer approves it with `chainaudit approvals approve {approval.approval_id}`",
        approval.to_json(),
    )
    return EXIT_OK


def _print_approval(approval: Any) -> None:
    if _json_output:
        _print_json(approval.to_json())
        return
    decided = f", {approval.status} by {approval.decided_by}" if approval.decided_by else ""
    print(
        f"{approval.approval_id}  {approval.status:9} {approval.action:15} requested by "
        f"{approval.requested_by}{decided}  {json.dumps(approval.params, sort_keys=True)[:200]}"
    )


def cmd_approvals(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app import controls  # noqa: PLC0415
    from chainaudit.service import approvals  # noqa: PLC0415
    from chainaudit.service.keys import KeyStore  # noqa: PLC0415

    with _open_log(settings) as log:
        if args.approvals_action == "list":
            found = approvals.pending(log)
            if args.json:
                _print_json([a.to_json() for a in found])
            else:
                for approval in found:
                    _print_approval(approval)
                print(f"{len(found)} pending request(s)")
            return EXIT_OK
        if args.approvals_action == "show":
            approval = approvals.load(log, args.approval_id)
            if args.json:
                _print_json(approval.to_json())
            else:
                _print_approval(approval)
            return EXIT_OK
        checker = _officer(log)
        if args.approvals_action == "reject":
            done = approvals.reject(log, log.append, args.approval_id, checker, args.note)
            _print_approval(done)
            return EXIT_OK
        store = KeyStore(log.path, database_url=log.database_url)
        ctx = controls.Context(
            log=log,
            settings=settings,
            checker=checker,
            escrow=lambda: _escrow_client(settings, args),
            keys=store,
        )
        try:
            done = approvals.approve(
                log,
                log.append,
                args.approval_id,
                checker,
                lambda approval: controls.execute(ctx, approval),
                args.note,
            )
        finally:
            store.close()
    if _json_output:
        token = {"token": ctx.secrets["token"]} if "token" in ctx.secrets else {}
        _print_json({**done.to_json(), **token})
        return EXIT_OK
    _print_approval(done)
    print(f"executed: {json.dumps(done.result, sort_keys=True)}")
    if "token" in ctx.secrets:
        print("token of the new key (shown once):")
        print(ctx.secrets["token"])
    return EXIT_OK


# -- privacy: erasure, retention, master key ----------------------------------------------------


def cmd_erase(args: argparse.Namespace, settings: Settings) -> int:
    """Request the erasure of a record's content (``record.erase``); a second officer runs
    ``approvals approve ID``, which erases it."""
    from chainaudit.service import erasure  # noqa: PLC0415

    with _open_log(settings) as log:
        try:
            erasure.check_erasable(log.entry(args.record_id))
            params = erasure.check_request(
                {"record_id": args.record_id, "reason": args.reason, "basis": args.basis}
            )
        except erasure.ErasureError as exc:
            raise InputError(str(exc)) from exc
        return _request(log, "record.erase", params, args.note)


def cmd_retention(args: argparse.Namespace, settings: Settings) -> int:
    """Erase the records whose kind's retention period has ended (bounded by ``--batch``);
    print a JSON summary."""
    from chainaudit.app import privacy  # noqa: PLC0415
    from chainaudit.service import erasure  # noqa: PLC0415

    policy, digest = privacy.policy_from(settings)
    if settings.data_policy_file is None:
        raise InputError(
            "no data policy: set CHAINAUDIT_DATA_POLICY_FILE to the policy file that declares "
            "retention_days per record kind"
        )
    with _open_log(settings) as log:
        summary = erasure.run_retention(
            log, policy, digest, batch=args.batch, dry_run=args.dry_run, now_ms=args.now_ms
        )
    _print_json(summary)
    return EXIT_OK


def cmd_vacuum(args: argparse.Namespace, settings: Settings) -> int:
    """Finish erasures on disk: rebuild the log file (``VACUUM``, no freed page of the old file
    survives), truncate its WAL and the keys file's; report whether each truncation completed
    (a reader can hold one back: run it again)."""
    with _open_log(settings) as log:
        log.vacuum()
        log_wal = log.checkpoint_wal()
        keys_wal = log.checkpoint_keys_wal()
    done = log_wal and keys_wal
    _emit(
        "vacuumed the log; "
        + ("both WALs truncated" if done else "a reader held a WAL back: run it again later"),
        {"vacuumed": True, "log_wal_truncated": log_wal, "keys_wal_truncated": keys_wal},
    )
    return EXIT_OK if done else EXIT_FAILED


def _new_master_key(args: argparse.Namespace) -> bytes:
    from chainaudit.log import datakeys  # noqa: PLC0415

    text = os.environ.get(NEW_MASTER_KEY_ENV)
    if args.new_key_file is not None:
        if text is not None:
            raise InputError(f"give --new-key-file or {NEW_MASTER_KEY_ENV}, not both")
        try:
            text = Path(args.new_key_file).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the new master key {args.new_key_file}: {exc}") from exc
    if text is None:
        raise InputError(
            f"give the new master key with --new-key-file FILE or {NEW_MASTER_KEY_ENV}"
        )
    return datakeys.parse_master_key(text, source="the new master key")


NEW_MASTER_KEY_ENV = "CHAINAUDIT_NEW_MASTER_KEY"


def cmd_master_key(args: argparse.Namespace, settings: Settings) -> int:
    """``master-key generate`` prints a new random key; ``master-key rotate`` rewraps every
    data key under the new key (then configure it in place of the old one)."""
    import base64  # noqa: PLC0415
    import secrets  # noqa: PLC0415

    from chainaudit.log import datakeys  # noqa: PLC0415

    if args.master_key_action == "generate":
        print(base64.b64encode(secrets.token_bytes(datakeys.KEY_SIZE)).decode("ascii"))
        return EXIT_OK
    new = _new_master_key(args)
    with _open_log(settings) as log:
        if log.at_rest is None:
            raise InputError(
                "no master key is configured (CHAINAUDIT_MASTER_KEY or "
                "CHAINAUDIT_MASTER_KEY_FILE): nothing to rotate from"
            )
        keyring = log.keyring()
        old_id = keyring.master_id
        count = keyring.rotate(new)
    _emit(
        f"rewrapped {count} data key(s) from master key {old_id} to {keyring.master_id}; "
        "now configure the new key in place of the old one, then destroy the old key "
        "(docs/privacy.md)",
        {"rewrapped": count, "from_master_key": old_id, "to_master_key": keyring.master_id},
    )
    return EXIT_OK


# -- risk controls, emergency response, reconciliation, statements ------------------------------


def _escrow_client(settings: Settings, args: argparse.Namespace) -> Any:
    from chainaudit.app.context import chain_from  # noqa: PLC0415
    from chainaudit.app.deploy import contract_address  # noqa: PLC0415
    from chainaudit.chain.escrow import EscrowClient  # noqa: PLC0415

    chain = chain_from(settings, getattr(args, "rpc", None))
    override = getattr(args, "escrow", None)
    return EscrowClient(chain, override or contract_address(settings, chain, "SupplyChainEscrow"))


def cmd_risk_rules(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app.context import rules_path  # noqa: PLC0415
    from chainaudit.log.actions import cli_actor  # noqa: PLC0415
    from chainaudit.risk.book import RiskBook  # noqa: PLC0415
    from chainaudit.risk.decisions import announce_rule_set  # noqa: PLC0415
    from chainaudit.risk.rules import load_rule_file  # noqa: PLC0415

    path = rules_path(settings, args.rules)
    rule_set = load_rule_file(path)
    with (
        _open_log(settings, create=True) as log,
        RiskBook(log.path, database_url=log.database_url) as book,
    ):
        book.sync(log)
        latest = book.latest_rule_set()
        if latest is not None and latest.hash != rule_set.hash:  # a change: two officers
            print(f"rule set {rule_set.version!r} from {path}: hash {rule_set.hash}")
            params = {"rules": dict(rule_set.document), "source": str(path)}
            return _request(log, "rules.activate", params)
        announced = announce_rule_set(log, book, rule_set, actor=cli_actor(), source=str(path))
    state = "announced as" if announced.changed else "unchanged since"
    _emit(
        f"rule set {rule_set.version!r} ({len(rule_set.rules)} rules) from {path}: hash "
        f"{rule_set.hash}; {state} record {announced.record_id}",
        {
            "version": rule_set.version,
            "rules": len(rule_set.rules),
            "file": str(path),
            "rule_set_hash": rule_set.hash,
            "changed": announced.changed,
            "record_id": announced.record_id,
        },
    )
    return EXIT_OK


def cmd_risk_replay(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.risk.book import RiskBook  # noqa: PLC0415
    from chainaudit.risk.decisions import replay_decision  # noqa: PLC0415

    with _open_log(settings) as log, RiskBook(log.path, database_url=log.database_url) as book:
        report = replay_decision(log, book, args.record_id)
    if args.json:
        _print_json(report.to_json())
    else:
        for problem in report.problems:
            print(f"MISMATCH  {problem}")
        verdict = "matches" if report.matches else "DOES NOT MATCH"
        print(
            f"replay of {report.record_id} {verdict}: recorded {report.recorded_outcome}, "
            f"replayed {report.replayed_outcome} (rule set {report.rule_set_hash}; fired: "
            f"{', '.join(report.fired) or 'none'})"
        )
    return EXIT_OK if report.matches else EXIT_FAILED


def cmd_risk_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.risk.book import RiskBook  # noqa: PLC0415

    with _open_log(settings) as log, RiskBook(log.path, database_url=log.database_url) as book:
        book.sync(log)
        alerts = book.alerts(status=args.status, deal_id=args.deal, limit=args.limit)
    if args.json:
        _print_json([a.to_json() for a in alerts])
        return EXIT_OK
    for a in alerts:
        where = f"deal {a.deal_id}" if a.deal_id is not None else "new deal"
        if a.milestone is not None:
            where += f" milestone {a.milestone}"
        print(
            f"{a.alert_id}  {a.status:12} {a.severity:8} {a.outcome:6} {a.action:7} {where}  "
            f"owner {a.owner}: {a.summary}"
        )
    print(f"{len(alerts)} alert(s)")
    return EXIT_OK


def _transition(args: argparse.Namespace, settings: Settings, transition: str) -> int:
    from chainaudit.log.actions import cli_actor  # noqa: PLC0415
    from chainaudit.risk.book import RiskBook  # noqa: PLC0415
    from chainaudit.risk.decisions import transition_alert  # noqa: PLC0415

    resolution = getattr(args, "resolution", None)
    if resolution == "cleared":
        with _open_log(settings) as log:
            params = {"alert_id": args.alert_id, "note": args.note}
            return _request(log, "alert.clear", {k: v for k, v in params.items() if v})
    with _open_log(settings) as log, RiskBook(log.path, database_url=log.database_url) as book:
        record_id, alert = transition_alert(
            log,
            book,
            args.alert_id,
            transition,
            by=cli_actor(),
            note=args.note,
            resolution=resolution,
        )
    extra = f" ({resolution})" if resolution else ""
    _emit(
        f"alert {alert.alert_id} {alert.status}{extra}; record {record_id}",
        {"alert": alert.to_json(), "record_id": record_id},
    )
    return EXIT_OK


def cmd_risk_ack(args: argparse.Namespace, settings: Settings) -> int:
    return _transition(args, settings, "acknowledged")


def cmd_risk_resolve(args: argparse.Namespace, settings: Settings) -> int:
    return _transition(args, settings, "resolved")


def cmd_risk_hold(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app.roles import operator_account  # noqa: PLC0415
    from chainaudit.log.actions import cli_actor  # noqa: PLC0415
    from chainaudit.risk import holds  # noqa: PLC0415

    client = _escrow_client(settings, args)
    actor = cli_actor()
    shortens = False
    if args.hold_action == "renew":
        deal = client.deal(args.deal_id)
        if not 0 <= args.milestone < len(deal.milestones):
            raise InputError(f"deal {args.deal_id} has no milestone {args.milestone}")
        hold = deal.milestones[args.milestone].hold
        shortens = hold is not None and hold.active and deal.timestamp + args.duration < hold.until
    officer = (
        None if args.hold_action == "lift" or shortens else operator_account(settings, "compliance")
    )
    with _open_log(settings) as log:
        if officer is None:
            _officer(log)  # refuse before writing the reason when no officer asks
        reason = holds.reason_record(
            log,
            deal_id=args.deal_id,
            milestone=args.milestone,
            reason=args.reason,
            by=actor,
            alert_id=args.alert,
        )
        if officer is None:  # lifting or shortening frees money: a request for two officers
            params: dict[str, Any] = {
                "deal_id": args.deal_id,
                "milestone": args.milestone,
                "reason_hash": "0x" + reason.leaf_hash.hex(),
            }
            if args.hold_action == "lift":
                params |= {"alert_id": args.alert} if args.alert else {}
            else:
                params["duration"] = args.duration
            if args.note:
                params["note"] = args.note
            if not _json_output:  # with --json, the request below is the one document
                print(f"reason record {reason.record_id} (hash {reason.leaf_hash.hex()})")
            action = "hold.lift" if args.hold_action == "lift" else "hold.shorten"
            return _request(log, action, params)
        common: dict[str, Any] = {"reason_hash": reason.leaf_hash, "by": actor, "note": args.note}
        if args.hold_action == "place":
            done = holds.place_hold(
                log, client, officer, args.deal_id, args.milestone, duration=args.duration,
                alert_id=args.alert, **common,
            )  # fmt: skip
        else:
            done = holds.renew_hold(
                log, client, officer, args.deal_id, args.milestone, duration=args.duration,
                alert_id=args.alert, **common,
            )  # fmt: skip
    until = f" until {done.until}" if done.until else ""
    _emit(
        f"hold {args.hold_action}: deal {args.deal_id} milestone {args.milestone}{until}; "
        f"reason record {reason.record_id} (hash {reason.leaf_hash.hex()}); tx {done.tx.tx_hash}; "
        f"record {done.record_id}",
        {
            "action": args.hold_action,
            "deal_id": args.deal_id,
            "milestone": args.milestone,
            "until": done.until,
            "reason_record_id": reason.record_id,
            "reason_hash": _hex(reason.leaf_hash),
            "tx_hash": done.tx.tx_hash,
            "record_id": done.record_id,
        },
    )
    return EXIT_OK


def _emergency(args: argparse.Namespace, settings: Settings, action: str) -> int:
    from chainaudit.core.errors import RiskError  # noqa: PLC0415
    from chainaudit.risk.incidents import incident_steps  # noqa: PLC0415

    with _open_log(settings) as log:
        steps = [] if args.incident is None else incident_steps(log, args.incident)
        if any(step.step == "reviewed" for step in steps):  # refused before asking anyone
            raise RiskError(f"incident {args.incident} was reviewed and is closed")
        params = {"incident_id": args.incident, "note": args.note}
        return _request(log, f"escrow.{action}", {k: v for k, v in params.items() if v})


def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    return _emergency(args, settings, "pause")


def cmd_unpause(args: argparse.Namespace, settings: Settings) -> int:
    return _emergency(args, settings, "unpause")


def cmd_incident(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.log.actions import cli_actor  # noqa: PLC0415
    from chainaudit.risk import incidents  # noqa: PLC0415

    with _open_log(settings, create=args.incident_action != "show") as log:
        if args.incident_action == "open":
            incident_id = incidents.open_incident(
                log, title=args.title, actor=cli_actor(), severity=args.severity, note=args.note
            )
            _emit(
                f"incident {incident_id} opened (detected)",
                {"incident_id": incident_id, "step": "detected"},
            )
            return EXIT_OK
        if args.incident_action in ("step", "close"):
            step = "reviewed" if args.incident_action == "close" else args.step
            record_id = incidents.record_step(
                log, args.incident_id, step, actor=cli_actor(), note=args.note
            )
            closed = " and closed" if step == "reviewed" else ""
            _emit(
                f"incident {args.incident_id}: {step} recorded{closed}; record {record_id}",
                {
                    "incident_id": args.incident_id,
                    "step": step,
                    "closed": step == "reviewed",
                    "record_id": record_id,
                },
            )
            return EXIT_OK
        steps = incidents.incident_steps(log, args.incident_id)
    if args.json:
        _print_json([asdict(s) for s in steps])
    else:
        for s in steps:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s.timestamp_ms / 1000))
            detail = s.details.get("action") or s.details.get("title") or ""
            print(f"{when}  {s.step:9} {s.actor:20} {detail} {s.note or ''}".rstrip())
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app.deploy import contract_address  # noqa: PLC0415
    from chainaudit.core.errors import ConfigError  # noqa: PLC0415
    from chainaudit.service.indexer import Indexer  # noqa: PLC0415
    from chainaudit.service.reconcile import reconcile  # noqa: PLC0415

    client = _escrow_client(settings, args)
    try:
        anchor: str | None = contract_address(settings, client.chain)
    except ConfigError:
        anchor = None
    limit = args.max_unanchored_seconds or settings.max_batch_seconds
    with _open_log(settings, create=True) as log:
        if args.index:
            indexer = Indexer(
                log,
                client.chain,
                client.address,
                start_block=args.from_block,
                confirmations=settings.confirmations,
            )
            try:
                while indexer.tick() or indexer.cursor().number < (
                    client.chain.block_number() - settings.confirmations + 1
                ):
                    pass
            finally:
                indexer.close()
        report = reconcile(
            log,
            client,
            start_block=args.from_block,
            anchor_contract=anchor,
            max_unanchored_seconds=limit,
            append=not args.no_record,
            gate_decisions=not args.no_gate_decisions,
        )
    if args.json:
        _print_json(report.to_json())
    else:
        for d in report.differences:
            figures = f" [chain {d.chain}, log {d.log}]" if d.chain or d.log else ""
            print(f"{d.kind.upper():16} {d.subject}: {d.detail}{figures}")
        checked = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.checked.items())
        verdict = "no difference" if report.clean else f"{len(report.differences)} difference(s)"
        recorded = f"; report record {report.record_id}" if report.record_id else ""
        print(
            f"reconcile: {verdict} at block {report.block_number}; checked {checked}; log size "
            f"{report.tree_size}, anchored {report.anchored_size}"
            + ("" if anchor else " (no AuditAnchor deployment: anchors not audited)")
            + recorded
        )
    return EXIT_OK if report.clean else EXIT_FAILED


def cmd_statement(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.service.anchoring import AnchorBook  # noqa: PLC0415
    from chainaudit.service.statements import build_statement  # noqa: PLC0415

    with _open_log(settings) as log:
        book = AnchorBook(log)
        try:
            statement = build_statement(
                log, book, args.address, contract=args.escrow, bundles=args.bundles
            )
        finally:
            book.close()
    if args.format == "csv" and not _json_output:
        text = statement.to_csv()
    else:
        text = json.dumps(statement.to_json(), indent=2, sort_keys=True) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        try:
            Path(args.output).write_text(text, encoding="utf-8", newline="")
        except OSError as exc:
            raise InputError(f"cannot write {args.output}: {exc}") from exc
        pending = sum(1 for line in statement.lines if line.proof_status == "pending")
        _emit(
            f"wrote the statement of {statement.party} ({len(statement.lines)} movement(s), "
            f"{pending} not anchored yet) to {args.output}",
            {
                "file": str(args.output),
                "party": statement.party,
                "movements": len(statement.lines),
                "pending": pending,
            },
        )
    return EXIT_OK


def _register_risk_commands(commands: Any) -> None:
    """The risk, emergency, reconciliation and statement commands (``docs/risk.md``)."""
    risk = commands.add_parser("risk", help="risk rules, decision replay, alerts and holds")
    actions = risk.add_subparsers(dest="risk_command", required=True, metavar="ACTION")
    rules = actions.add_parser(
        "rules", help="load the rule file; announce it in the log when its hash changed"
    )
    rules.add_argument("--rules", metavar="FILE", help="default: <data dir>/rules.toml")
    rules.set_defaults(handler=cmd_risk_rules)
    replay = actions.add_parser(
        "replay",
        help="re-evaluate a decision record; exit 1 unless the outcome matches",
        description=(
            "Re-evaluate a risk decision from its record and the rule set its hash names "
            "(found in the log's announcements). Exit 0 when the outcome and every fired rule "
            "match, 1 otherwise (including a record altered since it was logged)."
        ),
    )
    replay.add_argument("record_id")
    replay.add_argument("--json", action="store_true")
    replay.set_defaults(handler=cmd_risk_replay)
    alerts = actions.add_parser("alerts", help="list alerts, newest first")
    alerts.add_argument("--status", choices=("open", "acknowledged", "resolved"))
    alerts.add_argument("--deal", metavar="DEAL_ID", help="only this deal's alerts")
    alerts.add_argument("--limit", type=_positive_int, default=1_000)
    alerts.add_argument("--json", action="store_true")
    alerts.set_defaults(handler=cmd_risk_alerts)
    ack = actions.add_parser("ack", help="acknowledge an open alert")
    ack.add_argument("alert_id")
    ack.add_argument("--note")
    ack.set_defaults(handler=cmd_risk_ack)
    resolve = actions.add_parser("resolve", help="resolve an alert: cleared or confirmed")
    resolve.add_argument("alert_id")
    outcome = resolve.add_mutually_exclusive_group(required=True)
    outcome.add_argument(
        "--cleared",
        dest="resolution",
        action="store_const",
        const="cleared",
        help="reviewed: the same action may proceed",
    )
    outcome.add_argument(
        "--confirmed",
        dest="resolution",
        action="store_const",
        const="confirmed",
        help="the risk is real: the action stays blocked",
    )
    resolve.add_argument("--note")
    resolve.set_defaults(handler=cmd_risk_resolve)
    hold = actions.add_parser("hold", help="place, renew or lift a compliance hold on chain")
    hold.add_argument("hold_action", choices=("place", "renew", "lift"))
    hold.add_argument("deal_id", type=_positive_int)
    hold.add_argument("milestone", type=int)
    hold.add_argument("--reason", required=True, help="recorded; its leaf hash goes on chain")
    hold.add_argument("--duration", type=_positive_int, default=7 * 24 * 3600, help="seconds")
    hold.add_argument("--alert", metavar="ALERT_ID", help="the alert this decision answers")
    hold.add_argument("--note")
    hold.add_argument("--escrow", metavar="ADDRESS", help="default: deployments/<chain>.json")
    hold.add_argument("--rpc", help="chain endpoint (default: $CHAINAUDIT_RPC_URL)")
    hold.set_defaults(handler=cmd_risk_hold)

    for name, handler, text in (
        ("pause", cmd_pause, "request a pause of the escrow: no new deals, funding or financing"),
        ("unpause", cmd_unpause, "request that the escrow resume new business"),
    ):
        emergency = commands.add_parser(name, help=text)
        emergency.add_argument("--incident", metavar="ID", help="record it as the incident's step")
        emergency.add_argument("--note")
        emergency.add_argument("--escrow", metavar="ADDRESS", help="default: deployments file")
        emergency.add_argument("--rpc", help="chain endpoint (default: $CHAINAUDIT_RPC_URL)")
        emergency.set_defaults(handler=handler)

    incident = commands.add_parser("incident", help="incident steps as decision records")
    steps = incident.add_subparsers(dest="incident_action", required=True, metavar="ACTION")
    opened = steps.add_parser("open", help="record the detection; prints the incident id")
    opened.add_argument("--title", required=True)
    opened.add_argument("--severity", choices=("low", "medium", "high", "critical"), default="high")
    opened.add_argument("--note")
    step = steps.add_parser("step", help="record assessed, decided or handled")
    step.add_argument("incident_id")
    step.add_argument("step", choices=("assessed", "decided", "handled"))
    step.add_argument("--note")
    close = steps.add_parser("close", help="record the review and close the incident")
    close.add_argument("incident_id")
    close.add_argument("--note")
    show = steps.add_parser("show", help="list the incident's steps")
    show.add_argument("incident_id")
    show.add_argument("--json", action="store_true")
    incident.set_defaults(handler=cmd_incident)

    rec = commands.add_parser(
        "reconcile",
        help="compare the escrow on chain, its indexed events and the anchors; 1 if they differ",
    )
    rec.add_argument("--escrow", metavar="ADDRESS", help="default: deployments/<chain>.json")
    rec.add_argument("--rpc", help="chain endpoint (default: $CHAINAUDIT_RPC_URL)")
    rec.add_argument(
        "--from-block", type=int, default=0, help="the vault's first block (indexer start)"
    )
    rec.add_argument(
        "--max-unanchored-seconds",
        type=float,
        metavar="S",
        help="waiting leaves older than this are a difference (default: the batch interval)",
    )
    rec.add_argument(
        "--index", action="store_true", help="run the escrow indexer up to the head first"
    )
    rec.add_argument("--no-record", action="store_true", help="do not append the report")
    rec.add_argument(
        "--no-gate-decisions",
        action="store_true",
        help="do not match money movements with the risk gate's decisions (a vault without one)",
    )
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(handler=cmd_reconcile)

    statement = commands.add_parser(
        "statement", help="every movement of a party's money with its record's proof status"
    )
    statement.add_argument("address")
    statement.add_argument("--format", choices=("csv", "json"), default="json")
    statement.add_argument("-o", "--output", metavar="FILE", help="default: stdout")
    statement.add_argument(
        "--bundles", action="store_true", help="JSON: embed each anchored line's proof bundle"
    )
    statement.add_argument("--escrow", metavar="ADDRESS", help="only this vault's movements")
    statement.set_defaults(handler=cmd_statement)


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

    ingest = commands.add_parser(
        "ingest",
        help="append the records of a JSON Lines file, stamped local:<user> (kinds decision, "
        "escrow_event, admin and the service's id namespaces are refused)",
    )
    ingest.add_argument("file", help="JSON Lines file, one record per line")
    ingest.add_argument(
        "--commit-every",
        type=_positive_int,
        metavar="N",
        help="commit (and acknowledge) every N records instead of the whole file at once",
    )
    ingest.add_argument(
        "--workers",
        type=_non_negative_int,
        help="parser processes, 0 for none (default: chosen by the input)",
    )
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
    proof.add_argument(
        "--format",
        choices=("bundle", "tlog-proof"),
        default="bundle",
        help="bundle: proof bundle v1 (with -o); tlog-proof: a c2sp.org/tlog-proof@v1 file "
        "against the log's latest signed checkpoint (to -o FILE or stdout)",
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
    verify.add_argument(
        "bundle",
        nargs="?",
        help="a bundle v1 or c2sp.org/tlog-proof@v1 file, told apart by content ('-': stdin)",
    )
    verify.add_argument(
        "--log-key",
        metavar="VKEY",
        help="the log's verifier key <origin>+<hex id>+<base64 key> (`chainaudit log-key "
        "verifier`, from a source you trust): required for a tlog-proof; for a bundle v1, "
        "checks its signed checkpoint note",
    )
    verify.add_argument(
        "--policy",
        metavar="FILE",
        help="a c2sp.org/tlog-policy file: the witnesses whose cosignatures count and the "
        "quorum a tlog-proof's checkpoint must meet",
    )
    verify.add_argument(
        "--witness",
        action="append",
        metavar="VKEY",
        help="a trusted witness's cosignature/v1 verifier key (repeat for several)",
    )
    verify.add_argument(
        "--quorum",
        type=_non_negative_int,
        metavar="K",
        help="how many --witness keys must have cosigned the checkpoint (default: all)",
    )
    verify.add_argument(
        "--entry",
        metavar="FILE",
        help="the entry (leaf data) of a tlog-proof, instead of the proof's extra data",
    )
    verify.add_argument(
        "--state",
        metavar="FILE",
        help="remember the last checkpoint accepted per origin in FILE and refuse one that is "
        "not provably consistent with it (fork detection)",
    )
    verify.add_argument(
        "--log-url",
        metavar="URL",
        help="with --state: the log's tiled read path, for the consistency proofs the "
        "evidence does not carry",
    )
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
        metavar="N",
        help="blocks the anchor must be under, counting its own (default: "
        "$CHAINAUDIT_CONFIRMATIONS, else 1)",
    )
    verify.add_argument(
        "--finality",
        type=_positive_int,
        metavar="N",
        help="blocks the anchor must be under for a bundle that claims status 'final' "
        "(default: $CHAINAUDIT_FINALITY, else 12); a false claim fails the block check",
    )
    verify.add_argument(
        "--chain-id",
        type=_positive_int,
        metavar="ID",
        help="the chain id you trust (required with --rpc)",
    )
    verify.add_argument(
        "--contract",
        metavar="ADDRESS",
        help="the AuditAnchor address you trust (required with --rpc)",
    )
    verify.add_argument(
        "--trust-bundle-contract",
        action="store_true",
        help="with --rpc and no --contract/--chain-id, accept the contract and chain the "
        "bundle names; the verdict then carries a warning",
    )
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")
    verify.set_defaults(handler=cmd_verify)

    monitor = commands.add_parser(
        "monitor",
        help="follow a log's public read path and its on-chain anchors; report findings",
        description=(
            "Check a tiled log (c2sp.org/tlog-tiles) from its public read path and a chain "
            "endpoint only: each checkpoint's signature, the root recomputed from the tiles, "
            "consistency with the previous checkpoint (--state), split views between several "
            "--log-url, and every on-chain anchor (size and root) against the served tree. "
            "One-shot: exit 0 clean, 1 on any finding, 2 on bad usage or an unreachable log "
            "or chain. --follow: one line per finding on stdout, a counter in --metrics-file, "
            "a JSON POST to --webhook."
        ),
    )
    monitor.add_argument(
        "--log-url",
        action="append",
        required=True,
        metavar="URL",
        help="the log's read path (repeat: several views of the same log, for split views)",
    )
    monitor.add_argument("--log-key", required=True, metavar="VKEY", help="the log's note key")
    monitor.add_argument("--rpc", metavar="URL", help="your chain endpoint (anchor checks)")
    monitor.add_argument("--contract", metavar="ADDRESS", help="the AuditAnchor you trust")
    monitor.add_argument("--chain-id", type=_positive_int, metavar="ID", help="its chain id")
    monitor.add_argument(
        "--state", metavar="FILE", help="remember checkpoints and checked anchors across runs"
    )
    monitor.add_argument(
        "--checkpoint",
        action="append",
        metavar="FILE",
        help="a signed checkpoint of the log obtained elsewhere (a witness's cosigned one, "
        "another client's): must be one history with the served tree (repeatable)",
    )
    monitor.add_argument("--follow", action="store_true", help="poll until interrupted")
    monitor.add_argument(
        "--interval", type=_positive_float, metavar="S", help="seconds between polls (30)"
    )
    monitor.add_argument(
        "--max-polls", type=_positive_int, metavar="N", help="with --follow: stop after N polls"
    )
    monitor.add_argument("--webhook", metavar="URL", help="POST each finding as JSON here")
    monitor.add_argument(
        "--metrics-file",
        metavar="FILE",
        help="write Prometheus text metrics (findings per kind, polls, tree sizes) after each poll",
    )
    monitor.add_argument("--json", action="store_true", help="one-shot: print JSON")
    monitor.set_defaults(handler=cmd_monitor)

    audit = commands.add_parser(
        "audit",
        help="re-derive every leaf, node and index row from the records, check signatures and "
        "who submitted each record; exit 1 on any finding",
    )
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.add_argument(
        "--chain",
        action="store_true",
        help="also compare every checkpoint anchored on chain with the log, and check "
        "signatures for that chain's id (else for the chains the log was anchored on)",
    )
    audit.add_argument("--rpc", help="chain endpoint (default: $CHAINAUDIT_RPC_URL)")
    audit.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="processes re-deriving the leaves and nodes in parallel (default: the number of "
        "CPUs); the report is the same whatever N is",
    )
    audit.set_defaults(handler=cmd_audit)

    server = commands.add_parser("serve", help="run the HTTP API with the anchoring service")
    server.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    server.add_argument(
        "--port", type=int, default=8000, help="port (default 8000; 0: any free port)"
    )
    server.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="worker processes sharing the port (default 1); one of them, elected through "
        "the database, runs the anchoring service, the escrow indexer and checkpoint signing",
    )
    server.set_defaults(handler=cmd_serve)

    publish = commands.add_parser(
        "publish",
        help="write the log as C2SP tlog-tiles static files (checkpoint, tile/...) into DIR",
        description="Write DIR/checkpoint, DIR/tile/<L>/<N>[.p/<W>] and "
        "DIR/tile/entries/<N>[.p/<W>] exactly as `chainaudit serve` serves them, for a static "
        "web server, CDN or object store. Full tiles are written once; partial tiles under "
        "their .p/<W> names, pruned once their full tile is published; every file through a "
        "temporary name and a rename, the checkpoint last. Entries follow the tiles_entries "
        "setting.",
    )
    publish.add_argument("directory", metavar="DIR", help="where to write (created if needed)")
    publish.add_argument(
        "--follow", action="store_true", help="keep running: publish the log's growth"
    )
    publish.add_argument(
        "--interval",
        type=_positive_float,
        metavar="S",
        help="seconds between polls of the log with --follow (default 2)",
    )
    publish.set_defaults(handler=cmd_publish)

    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key; prints its token once")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument(
        "--address",
        help="the Ethereum address a partner key acts for, or an officer's own on-chain account",
    )
    create.add_argument(
        "--expires-in", type=_positive_float, metavar="DAYS", help="the key expires after DAYS"
    )
    create.set_defaults(handler=cmd_keys_create)
    rotate = key_commands.add_parser(
        "rotate", help="give a key a new secret (the old token stops working); prints it once"
    )
    rotate.add_argument("key_id")
    rotate.add_argument(
        "--expires-in",
        type=_positive_float,
        metavar="DAYS",
        help="the new token expires after DAYS",
    )
    rotate.set_defaults(handler=cmd_keys_rotate)
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=cmd_keys_revoke)
    listing = key_commands.add_parser("list", help="list keys (never their secrets)")
    listing.set_defaults(handler=cmd_keys_list)
    personal = key_commands.add_parser(
        "personal-data",
        help="request the personal-data permission for an auditor or regulator key (a second "
        "admin approves it), or withdraw it",
    )
    personal.add_argument("key_id")
    personal.add_argument(
        "--withdraw", action="store_true", help="withdraw the permission now (one admin)"
    )
    personal.set_defaults(handler=cmd_keys_personal_data)

    devnet = commands.add_parser("devnet", help="run Anvil with the settings in anvil.env")
    devnet.add_argument("--port", type=_positive_int, help="override ANVIL_PORT")
    mode = devnet.add_mutually_exclusive_group()
    mode.add_argument("--detach", action="store_true", help="run in the background (pid file)")
    mode.add_argument("--stop", action="store_true", help="stop the background devnet")
    devnet.set_defaults(handler=cmd_devnet)

    deploy = commands.add_parser("deploy", help="deploy the contracts; write deployments/")
    deploy.add_argument("--rpc", help="chain endpoint (default: $CHAINAUDIT_RPC_URL)")
    deploy.add_argument("--anchorer", help="address granted ANCHORER_ROLE (default: deployer)")
    deploy.add_argument(
        "--compliance",
        action="append",
        metavar="ADDRESS",
        help="address granted COMPLIANCE_ROLE on the escrow (repeatable; devnet default: "
        "the demo's compliance officer)",
    )
    deploy.add_argument(
        "--no-escrow", action="store_true", help="deploy AuditAnchor only, not the escrow vault"
    )
    deploy.set_defaults(handler=cmd_deploy)

    anchor = commands.add_parser("anchor", help="anchor the log's current checkpoint now")
    anchor.add_argument("--rpc", help="chain endpoint (default: $CHAINAUDIT_RPC_URL)")
    anchor.add_argument("--timeout", type=float, default=120.0, help="seconds to wait")
    anchor.add_argument(
        "--follow", action="store_true", help="keep running: anchor batches by the policy"
    )
    anchor.set_defaults(handler=cmd_anchor)
    _register_log_key_commands(commands)
    _register_risk_commands(commands)
    _register_approval_commands(commands)
    witness_cli.register(commands)
    backup_cli.register(commands)
    _register_privacy_commands(commands)
    _add_common_flags(parser)
    return parser


NO_RESULT_COMMANDS = frozenset({"serve"})
"""Commands that print no result (they run until stopped): no ``--json``."""


def _add_common_flags(parser: argparse.ArgumentParser, top: bool = True) -> None:
    """``--version`` on the program and on every command and sub-command; ``--json`` on
    every command that prints a result (each prints one JSON document with it)."""
    from chainaudit import __version__  # noqa: PLC0415

    parser.add_argument(
        "--version", action="version", version=f"chainaudit {__version__}", help="print the version"
    )
    commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in commands:
        for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
            _add_common_flags(sub, top=False)
    has_json = any("--json" in a.option_strings for a in parser._actions)
    name = parser.prog.split()[-1]
    if not top and not commands and not has_json and name not in NO_RESULT_COMMANDS:
        parser.add_argument(
            "--json", action="store_true", help="print the result as one JSON document"
        )


def _register_log_key_commands(commands: Any) -> None:
    """``log-key generate|verifier``: the log's checkpoint key (:mod:`chainaudit.app.logkey`)."""
    log_key = commands.add_parser(
        "log-key",
        help="the log's checkpoint signing key: generate a keystore, print the verifier key",
        description=(
            "The log signs its checkpoints as C2SP signed notes with an Ed25519 key named "
            "after the log's origin (CHAINAUDIT_LOG_ORIGIN)."
        ),
    )
    steps = log_key.add_subparsers(dest="log_key_action", required=True, metavar="ACTION")
    generate = steps.add_parser(
        "generate",
        help="create a key in a new encrypted keystore; prints its verifier key",
        description=(
            f"The password comes from ${LOG_KEYSTORE_PASSWORD_ENV}, else is asked twice on "
            "the terminal; it is never printed. Use the keystore with "
            "CHAINAUDIT_LOG_SIGNING_KEYSTORE."
        ),
    )
    generate.add_argument("--origin", required=True, help="the log's origin, e.g. example.com/log")
    generate.add_argument("--keystore", required=True, type=Path, metavar="FILE")
    generate.set_defaults(handler=cmd_log_key_generate)
    verifier = steps.add_parser(
        "verifier", help="print the log's verifier key (name+hexid+base64key)"
    )
    verifier.set_defaults(handler=cmd_log_key_verifier)


def _register_approval_commands(commands: Any) -> None:
    """``approvals list|show|approve|reject`` (maker-checker,
    :mod:`chainaudit.service.approvals`)."""
    approvals = commands.add_parser(
        "approvals",
        help="requests for two-officer actions: list, show, approve, reject",
        description=(
            "Clearing alerts, lifting or shortening holds, activating rule sets, pausing, "
            "creating admin, operator or partner keys and erasing a record's content need two "
            "officers. Approve or reject "
            f"with your own API key in ${OFFICER_KEY_ENV}; the requester cannot approve."
        ),
    )
    steps = approvals.add_subparsers(dest="approvals_action", required=True, metavar="ACTION")
    listing = steps.add_parser("list", help="the pending requests")
    listing.add_argument("--json", action="store_true")
    show = steps.add_parser("show", help="one request and where it stands")
    show.add_argument("approval_id")
    show.add_argument("--json", action="store_true")
    for name, text in (
        ("approve", "approve a request as a second officer, and run it"),
        ("reject", "reject a request as a second officer"),
    ):
        decide = steps.add_parser(name, help=text)
        decide.add_argument("approval_id")
        decide.add_argument("--note")
        if name == "approve":
            decide.add_argument("--escrow", metavar="ADDRESS", help="default: deployments file")
            decide.add_argument("--rpc", help="chain endpoint (default: $CHAINAUDIT_RPC_URL)")
    approvals.set_defaults(handler=cmd_approvals)


def _register_privacy_commands(commands: Any) -> None:
    """``erase``, ``retention run`` and ``master-key generate|rotate`` (docs/privacy.md)."""
    erase = commands.add_parser(
        "erase",
        help="request the erasure of a record's content (two officers: a second one runs "
        "`approvals approve ID`)",
        description=(
            "Records the request (action record.erase) with your own officer API key in "
            f"${OFFICER_KEY_ENV}; a different officer approves it with `chainaudit approvals "
            "approve ID`, which removes the content for good, destroys its data key and "
            "appends the erasure record. The leaf hash, and so every proof, stays."
        ),
    )
    erase.add_argument("record_id")
    erase.add_argument("--reason", required=True, help="why the content is erased")
    erase.add_argument("--basis", required=True, help="the legal basis, e.g. 'GDPR Art. 17(1)(a)'")
    erase.add_argument("--note", help="a note for the approving officer")
    erase.set_defaults(handler=cmd_erase)

    retention = commands.add_parser(
        "retention", help="erase what the data policy's retention periods say has expired"
    )
    steps = retention.add_subparsers(dest="retention_action", required=True, metavar="ACTION")
    run = steps.add_parser(
        "run",
        help="erase expired records of the kinds with retention_days, in one bounded batch; "
        "print a JSON summary (idempotent: run it again for the rest)",
    )
    run.add_argument(
        "--batch", type=_positive_int, default=1_000, help="erase at most N records (1000)"
    )
    run.add_argument("--dry-run", action="store_true", help="report what would be erased")
    run.add_argument("--now-ms", type=_non_negative_int, help=argparse.SUPPRESS)  # tests
    run.add_argument("--json", action="store_true", help="(the summary is always JSON)")
    retention.set_defaults(handler=cmd_retention)

    vacuum = commands.add_parser(
        "vacuum",
        help="finish erasures on disk: VACUUM the log, truncate its WAL and the keys file's "
        "(exit 1 when a reader held a WAL back)",
    )
    vacuum.add_argument("--json", action="store_true", help="print the result as JSON")
    vacuum.set_defaults(handler=cmd_vacuum)

    master = commands.add_parser(
        "master-key", help="the master key of encryption at rest: generate, rotate"
    )
    actions = master.add_subparsers(dest="master_key_action", required=True, metavar="ACTION")
    actions.add_parser("generate", help="print a new random master key (base64)")
    rotate = actions.add_parser(
        "rotate",
        help="rewrap every data key under a new master key (stop the server first)",
    )
    rotate.add_argument(
        "--new-key-file", help=f"file holding the new key (else ${NEW_MASTER_KEY_ENV})"
    )
    master.set_defaults(handler=cmd_master_key)


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script passes it to ``sys.exit``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    restore_recursion_limit()  # and keep it: a deep input must raise, never overflow the stack
    global _json_output  # noqa: PLW0603 - one flag for every command's printing helpers
    _json_output = bool(getattr(args, "json", False))
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
    except OSError as exc:
        if not type(exc).__module__.startswith(("requests", "urllib3")):
            raise
        # a transport error raised outside chainaudit.chain.chain's translation: the same one line
        from chainaudit.chain.chain import unreachable  # noqa: PLC0415

        rpc = getattr(args, "rpc", None) or os.environ.get("CHAINAUDIT_RPC_URL")
        rpc = rpc or str(Settings.model_fields["rpc_url"].default)
        print(f"chainaudit: {unreachable('chain', rpc, exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("chainaudit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
