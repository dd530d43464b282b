"""``chainaudit backup|restore|export|import``: copies of the data you can trust.

Registered on the main parser by :mod:`chainaudit.cli`; the handlers import their modules
only when they run. Every refusal is a :class:`chainaudit.core.errors.ChainauditError`: one line on
stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainaudit.app.settings import Settings
from chainaudit.core.errors import ConfigError, InputError

if TYPE_CHECKING:
    from chainaudit.service.backup import Anchored
    from chainaudit.service.export import ExportSummary

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add ``backup``, ``restore``, ``export`` and ``import`` to ``commands`` (sub-parsers)."""
    backup = commands.add_parser(
        "backup",
        help="copy the data directory into a new directory DEST, online (SQLite backup API), "
        "with a manifest of hashes; secrets are left out unless --include-secrets",
    )
    backup.add_argument("dest", type=Path, help="the new backup directory")
    backup.add_argument(
        "--include-secrets",
        action="store_true",
        help="also copy the data keys (keys.sqlite) and the development log signing key, if "
        "they are in the data directory (the master key and keystores never are)",
    )
    backup.set_defaults(handler=cmd_backup)

    restore = commands.add_parser(
        "restore",
        help="restore a backup directory SRC as the (new or empty) data directory; refused "
        "unless the restored log reproduces every checkpoint anchored on chain",
    )
    restore.add_argument("src", type=Path, help="the backup directory")
    _add_chain_check(restore, "restore")
    restore.set_defaults(handler=cmd_restore)

    export = commands.add_parser(
        "export",
        help="write the log (records, leaf hashes, signatures, checkpoints) as engine-neutral "
        "JSON Lines into a new FILE",
    )
    export.add_argument("file", type=Path, help="the new export file")
    export.set_defaults(handler=cmd_export)

    load = commands.add_parser(
        "import",
        help="rebuild the log of an export FILE into an empty log: every leaf re-hashed, every "
        "checkpoint anchored on chain and the root checked; nothing is written if anything "
        "differs",
    )
    load.add_argument("file", type=Path, help="a file written by `chainaudit export`")
    _add_chain_check(load, "import")
    load.set_defaults(handler=cmd_import)

    move = commands.add_parser(
        "migrate",
        help="move the data directory's SQLite log and the state beside it into an empty "
        "PostgreSQL database: every leaf re-hashed and every anchored checkpoint checked, "
        "nothing kept of a refused migration",
    )
    move.add_argument(
        "--to", required=True, metavar="URL", help="the PostgreSQL database (postgresql://...)"
    )
    _add_chain_check(move, "migrate")
    move.set_defaults(handler=cmd_migrate)


def _show(args: argparse.Namespace, text: str, result: dict[str, Any]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(text)


def _progress(args: argparse.Namespace) -> Any:
    if getattr(args, "json", False):
        return None
    return lambda line: print(f"  {line}", flush=True)


def _embedded_only(settings: Settings, what: str) -> None:
    """Refuse ``what`` (a file-level command) when the log lives in a database server."""
    if settings.log_database_url is not None:
        raise ConfigError(
            f"{what} copies the embedded engine's files; this log is in a database server: "
            "back it up with pg_dump or a base backup (docs/deploy.md), or move the log "
            "itself with `chainaudit export` / `chainaudit import`"
        )


def _anchors(
    args: argparse.Namespace, settings: Settings, what: str
) -> tuple[Callable[[], list[Anchored]] | None, str]:
    """How ``what`` (restore, import) reads the checkpoints anchored on chain, and a phrase
    naming them; ``(None, …)`` only with ``--no-chain-check``. The chain and the contract are
    resolved now, before anything is copied or written.

    Raises:
        ConfigError: no AuditAnchor is configured (the message names ``--no-chain-check``).
        ChainUnavailableError: the chain endpoint cannot be reached.
    """
    from chainaudit.app.context import chain_from  # noqa: PLC0415
    from chainaudit.app.deploy import contract_address  # noqa: PLC0415
    from chainaudit.service.backup import chain_anchors  # noqa: PLC0415

    if args.no_chain_check:
        skipped = "chain check SKIPPED (--no-chain-check): the log was not compared with any anchor"
        return None, skipped
    chain = chain_from(settings, args.rpc)
    try:
        contract = contract_address(settings, chain)
    except (ConfigError, InputError) as exc:
        raise ConfigError(
            f"{what} checks the log against its anchors on chain, but {exc}: set "
            f"CHAINAUDIT_ANCHOR_CONTRACT (or deployments/), or pass --no-chain-check to {what} "
            "without that check"
        ) from exc
    where = f"contract {contract} on chain {chain.chain_id()}"
    return partial(chain_anchors, chain, contract), where


def _add_chain_check(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--rpc", help="chain endpoint (default: $CHAINAUDIT_RPC_URL)")
    parser.add_argument(
        "--no-chain-check",
        action="store_true",
        help=f"{what} without comparing the log with the anchors on chain (no chain here): "
        "only the copy's own hashes and tree are checked",
    )
    parser.add_argument(
        "--allow-behind",
        action="store_true",
        help="accept a copy older than the latest anchor (the anchored records after it are "
        "lost); every anchor within the copy must still match",
    )


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.service.backup import backup  # noqa: PLC0415

    _embedded_only(settings, "backup")
    result = backup(
        settings.data_dir,
        args.dest,
        include_secrets=args.include_secrets,
        progress=_progress(args),
    )
    manifest = result.manifest
    log = manifest["log"]
    lines = [
        f"backed up {len(manifest['files'])} file(s) of {settings.data_dir} into {args.dest} "
        f"(log: tree size {log['tree_size']}, root {log['root']}; manifest.json holds each "
        "file's SHA-256)"
    ]
    for name, why in result.left_out:
        lines.append(f"not copied: {name}: {why}")
    outside = [
        (what, path)
        for what, path in (
            ("the data keys file", settings.keys_file),
            ("the master key file", settings.master_key_file),
            ("the anchorer keystore", settings.anchorer_keystore),
            ("the log signing keystore", settings.log_signing_keystore),
        )
        if path is not None
    ]
    for what, path in outside:
        lines.append(f"not copied: {path}: {what}, configured outside the data directory")
    if not args.include_secrets:
        lines.append(
            "secrets are not in this backup: keep the master key, keystores and data keys "
            "with your key management; a restore of records encrypted at rest needs them"
        )
    _show(args, "\n".join(lines), manifest)
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app.privacy import at_rest_from  # noqa: PLC0415
    from chainaudit.log.store import Log  # noqa: PLC0415
    from chainaudit.service.backup import restore  # noqa: PLC0415

    _embedded_only(settings, "restore")
    anchors, where = _anchors(args, settings, "restore")

    at_rest = at_rest_from(settings)
    result = restore(
        args.src,
        settings.data_dir,
        anchors=anchors,
        open_log=lambda path: Log(path, kinds=settings.record_kinds, at_rest=at_rest),
        allow_behind=args.allow_behind,
        progress=_progress(args),
    )
    text = (
        f"restored {len(result.files)} file(s) into {settings.data_dir}: log tree size "
        f"{result.tree_size}, root 0x{result.root.hex()}; "
    )
    if result.chain_checked:
        text += (
            f"every record re-hashed; {result.anchors_checked} anchored checkpoint(s) of "
            f"{where} reproduced"
        )
        if result.behind:
            text += f"; WARNING: {result.behind} anchored record(s) are not in this backup"
    else:
        text += f"every record re-hashed; {where}"
    _show(
        args,
        text,
        {
            "data_dir": str(settings.data_dir),
            "files": result.files,
            "tree_size": result.tree_size,
            "root": "0x" + result.root.hex(),
            "chain_checked": result.chain_checked,
            "anchors_checked": result.anchors_checked,
            "anchored_records_missing": result.behind,
        },
    )
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app.stores import open_log as _open_log  # noqa: PLC0415
    from chainaudit.service.export import export_file  # noqa: PLC0415

    with _open_log(settings) as log:
        summary = export_file(log, args.file)
    _show(
        args,
        f"exported {summary.tree_size} leaves ({summary.erased} erased) and "
        f"{summary.signed_checkpoints} signed checkpoint(s) to {args.file}: root "
        f"0x{summary.root.hex()} (record contents are in plain text: keep the file as safe "
        "as the database)",
        {
            "file": str(args.file),
            "tree_size": summary.tree_size,
            "root": "0x" + summary.root.hex(),
            "erased": summary.erased,
            "signed_checkpoints": summary.signed_checkpoints,
        },
    )
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app.stores import open_log as _open_log  # noqa: PLC0415
    from chainaudit.service.export import import_log  # noqa: PLC0415

    try:
        source = args.file.open(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    anchors, where = _anchors(args, settings, "import")
    anchored = [] if anchors is None else anchors()
    with source, _open_log(settings, create=True) as log:
        summary = import_log(log, iter(source), anchored=anchored, allow_behind=args.allow_behind)
    checked, fields = _checked(summary, anchored, where, chain_checked=anchors is not None)
    _show(
        args,
        f"imported {summary.tree_size} leaves ({summary.erased} erased) and "
        f"{summary.signed_checkpoints} signed checkpoint(s) from {args.file}: root "
        f"0x{summary.root.hex()}, as the export states; {checked}",
        {**fields, "file": str(args.file), "signed_checkpoints": summary.signed_checkpoints},
    )
    return 0


def _checked(
    summary: ExportSummary, anchored: list[Anchored], where: str, *, chain_checked: bool
) -> tuple[str, dict[str, Any]]:
    """What an import or a migration checked against the chain, as a phrase and as the JSON
    fields shared by both (with the rebuilt log's size, root and erased leaves)."""
    reproduced = sum(a.tree_size <= summary.tree_size for a in anchored)
    phrase = (
        f"{reproduced} anchored checkpoint(s) of {where} reproduced" if chain_checked else where
    )
    return phrase, {
        "chain_checked": chain_checked,
        "anchors_checked": reproduced,
        "tree_size": summary.tree_size,
        "root": "0x" + summary.root.hex(),
        "erased": summary.erased,
    }


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from chainaudit.app.privacy import at_rest_from  # noqa: PLC0415
    from chainaudit.service.migrate import migrate  # noqa: PLC0415

    if settings.log_database_url is not None:
        raise InputError(
            "CHAINAUDIT_DATABASE_URL is set: the log is in PostgreSQL already; migrate moves the "
            "data directory's SQLite log (unset it and give the target with --to)"
        )
    anchors, where = _anchors(args, settings, "migrate")
    anchored = [] if anchors is None else anchors()
    moved = migrate(
        settings.data_dir,
        args.to,
        kinds=settings.record_kinds,
        at_rest=at_rest_from(settings),
        anchored=anchored,
        allow_behind=args.allow_behind,
        progress=_progress(args),
    )
    checked, fields = _checked(moved.log, anchored, where, chain_checked=anchors is not None)
    tables = ", ".join(f"{name} ({rows})" for name, rows in sorted(moved.tables.items()))
    _show(
        args,
        f"migrated {moved.log.tree_size} leaves ({moved.log.erased} erased), root "
        f"0x{moved.log.root.hex()}; {checked}; copied {tables or 'no other table'}. Set "
        "CHAINAUDIT_DATABASE_URL to the database to use it (the data directory now refuses "
        "to open its SQLite log)",
        {**fields, "tables": moved.tables},
    )
    return 0
