"""Online backup and checked restore of a data directory: ``chainaudit backup`` / ``restore``.

A backup is a directory: one consistent copy of every SQLite database of the data directory,
taken with SQLite's online backup API while ``chainaudit serve`` may be appending, the risk
rules file, and ``manifest.json`` (each file's size and SHA-256, the backed-up log's tree
size and root, the time, the chainaudit version). It is written beside its destination
under a temporary name and renamed at the end: a failed backup leaves no directory there.

**Order and cross-file consistency.** Each database is copied in one step of the backup API:
one read transaction, one WAL snapshot of that file. Across files the order is chosen so
that whatever one copy refers to is in the copies taken after it: a file whose rows point
into an append-only file is copied *before* it. Today the log, its anchor book, the API keys,
the indexer, the risk tables and the derived indexes all live in ``log.sqlite``, so one
snapshot holds them together and every anchored checkpoint is in the copied log. Should the
anchor book move to a file of its own (:data:`BEFORE_LOG`), it is copied before the log:
an anchor names a size and root that the log reached before the anchor was written, so the
later copy of the log holds it. The data keys (``keys.sqlite``) are written just before the
log commits the records they seal, so they are copied *after* the log: every key the copied
log needs is in the later copy (a key destroyed by an erasure in between belongs to a
record whose erasure the copy then lacks; restore refuses it, as it cannot open that body).

**Secrets are not copied by default.** The master key never lives in the data directory
(settings refuse it there), keystores live where the settings point, and by default the
backup also leaves out the two secrets a development data directory may hold: the data keys
(``keys.sqlite``: without them a record encrypted at rest is unreadable, and keeping them out
of backups is what makes an erasure reach the backups too) and the development log signing
key (``log-signing.key``). ``--include-secrets`` copies both, marked ``"secret": true`` in
the manifest; the command says which files it left out either way.

A restore (:func:`restore`) checks the manifest's hashes, rebuilds the data directory in a
temporary directory beside it, then refuses it unless the restored log reproduces every
checkpoint anchored on chain: the stored tiles give each anchored root, and every record
re-hashes to its committed leaf and every stored node to its children (so the records' own
content gives those roots too). A refusal names the first anchored checkpoint whose tree
contains a difference. Only then is the directory renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from chainaudit import __version__
from chainaudit.core.errors import ChainauditError, ConfigError, NotFoundError, StoreError
from chainaudit.log.store import DB_NAME, AuditFinding, Log

__all__ = [
    "MANIFEST",
    "Anchored",
    "BackupError",
    "BackupResult",
    "RestoreRefusedError",
    "RestoreResult",
    "backup",
    "backup_order",
    "chain_anchors",
    "restore",
]

FORMAT: Final = "chainaudit-backup/1"
MANIFEST: Final = "manifest.json"
KEYS_DB: Final = "keys.sqlite"
"""The data keys (:data:`chainaudit.log.datakeys.KEYS_DB`): a secret, copied only on request."""
DEV_KEY_FILE: Final = "log-signing.key"
"""The development log signing key (:data:`chainaudit.app.logkey.DEV_KEY_FILE`): a secret."""
RULES_FILE: Final = "rules.toml"
"""The risk rules (:data:`chainaudit.app.context.RULES_FILE`): configuration, copied as is."""
_WHY_KEYS: Final = (
    "the data keys of records encrypted at rest, a secret (--include-secrets copies it)"
)
_WHY_SIGNER: Final = "the development log signing key, a secret (--include-secrets copies it)"
_SIDECARS: Final = (".sqlite-wal", ".sqlite-shm", ".sqlite-journal")
"""The files SQLite keeps beside a database: the backup API copies their committed content."""
BEFORE_LOG: Final = ("anchors.sqlite",)
"""Database files whose rows refer to the log's sizes and roots: copied before the log."""


class BackupError(ChainauditError):
    """A backup cannot be taken, or a backup directory is not usable."""


class RestoreRefusedError(BackupError):
    """The restored data does not reproduce what the chain or the manifest says it must."""


@dataclass(frozen=True, slots=True)
class Anchored:
    """One checkpoint as the AuditAnchor contract holds it."""

    seq: int
    tree_size: int
    root: bytes
    block: int


@dataclass(slots=True)
class BackupResult:
    """What :func:`backup` wrote."""

    directory: Path
    manifest: dict[str, Any]
    left_out: list[tuple[str, str]] = field(default_factory=list)
    """``(file name, why)`` of each file of the data directory not copied."""


@dataclass(slots=True)
class RestoreResult:
    """What :func:`restore` restored and checked."""

    tree_size: int
    root: bytes
    files: list[str]
    anchors_checked: int
    chain_checked: bool
    behind: int = 0
    """Anchored leaves beyond the restored log (only with ``allow_behind``)."""


# -- backup ------------------------------------------------------------------------------------


def backup_order(names: list[str]) -> list[str]:
    """The database file names of a data directory in the order they are copied (see the
    module's docstring): :data:`BEFORE_LOG` files, the log, the others by name, the keys."""

    def rank(name: str) -> tuple[int, str]:
        if name in BEFORE_LOG:
            return 0, name
        if name == DB_NAME:
            return 1, name
        return (3 if name == KEYS_DB else 2), name

    return sorted(names, key=rank)


def backup(
    data_dir: Path,
    dest: Path,
    *,
    include_secrets: bool = False,
    progress: Callable[[str], None] | None = None,
) -> BackupResult:
    """Copy the data directory ``data_dir`` into the new directory ``dest``, online.

    Preconditions: ``data_dir`` holds a log (``log.sqlite``); ``dest`` does not exist, or is
    an empty directory. Results: ``dest`` holds a copy of each database file (SQLite backup
    API, in :func:`backup_order`), ``rules.toml`` if present, the secrets only with
    ``include_secrets``, and ``manifest.json``; ``progress`` is told each file as it is
    copied.

    Raises:
        BackupError: no log in ``data_dir``, ``dest`` is not new, or a copy fails (nothing
            is left at ``dest`` then).
    """
    say = progress or (lambda _: None)
    if not (data_dir / DB_NAME).is_file():
        raise BackupError(f"no log at {data_dir} (no {DB_NAME} there): nothing to back up")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} exists and is not an empty directory: give a new one")
    temporary = _beside(dest, "backup")
    try:
        temporary.mkdir(parents=True)
        files: list[dict[str, Any]] = []
        left_out: list[tuple[str, str]] = []
        databases = [p.name for p in data_dir.iterdir() if p.is_file() and p.suffix == ".sqlite"]
        for name in backup_order(databases):
            if name == KEYS_DB and not include_secrets:
                left_out.append((name, _WHY_KEYS))
                continue
            say(f"copying {name} (SQLite online backup)")
            _copy_database(data_dir / name, temporary / name)
            files.append({"name": name, "method": "sqlite-backup", "secret": name == KEYS_DB})
        for name, secret in ((RULES_FILE, False), (DEV_KEY_FILE, True)):
            if not (data_dir / name).is_file():
                continue
            if secret and not include_secrets:
                left_out.append((name, _WHY_SIGNER))
                continue
            say(f"copying {name}")
            shutil.copyfile(data_dir / name, temporary / name)
            files.append({"name": name, "method": "copy", "secret": secret})
        taken = {item["name"] for item in files} | {name for name, _ in left_out}
        for entry in sorted(data_dir.iterdir()):
            if entry.name not in taken and not entry.name.endswith(_SIDECARS):
                left_out.append((entry.name, "not a database, rules or key file of chainaudit"))
        size, root = _log_state(temporary / DB_NAME)
        for item in files:
            path = temporary / item["name"]
            item["bytes"] = path.stat().st_size
            item["sha256"] = "0x" + _sha256(path)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "chainaudit_version": __version__,
            "source": str(data_dir.resolve()),
            "log": {"tree_size": size, "root": "0x" + root.hex()},
            "files": files,
            "left_out": [{"name": n, "why": why} for n, why in left_out],
        }
        (temporary / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _fsync_tree(temporary)
        if dest.exists():
            dest.rmdir()  # empty (checked above)
        temporary.rename(dest)
        _fsync_dir(dest.parent)
    except BaseException as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        if isinstance(exc, OSError | sqlite3.Error) and not isinstance(exc, BrokenPipeError):
            raise BackupError(f"cannot back up {data_dir} into {dest}: {exc}") from exc
        raise
    return BackupResult(dest, manifest, left_out)


def _copy_database(source: Path, target: Path) -> None:
    """One consistent copy of the SQLite database ``source`` (a single step of the online
    backup API: one read transaction, so concurrent commits are either wholly in or out)."""
    src = sqlite3.connect(source, timeout=30.0)  # reads only
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _log_state(path: Path) -> tuple[int, bytes]:
    """The tree size and root of the copied log ``path``, read through :class:`Log` (which
    leaves the file in WAL mode, fully checkpointed: what a live log expects)."""
    with Log(path) as log:  # its close checkpoints the WAL into the file and deletes it
        return log.size, log.root()


# -- restore -----------------------------------------------------------------------------------


def read_manifest(source: Path) -> dict[str, Any]:
    """The manifest of the backup directory ``source``, its files' sizes and hashes checked.

    Raises:
        RestoreRefusedError: a file is missing or differs from its manifest entry.
        BackupError: ``source`` is no backup (no readable manifest of this format).
    """
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{source} is not a chainaudit backup: {MANIFEST}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{source}/{MANIFEST} is not a {FORMAT} manifest")
    names = []
    for item in manifest.get("files", []):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or Path(name).name != name or name == MANIFEST:
            raise BackupError(f"{source}/{MANIFEST} names a file badly: {item!r}")
        path = source / name
        if not path.is_file():
            raise RestoreRefusedError(f"the backup lacks {name}, which its manifest lists")
        stated = item.get("sha256")
        if path.stat().st_size != item.get("bytes") or "0x" + _sha256(path) != stated:
            raise RestoreRefusedError(
                f"{name} of the backup differs from its manifest (size or SHA-256): the "
                "backup was altered or damaged"
            )
        names.append(name)
    if DB_NAME not in names:
        raise BackupError(f"the backup at {source} holds no {DB_NAME}")
    return manifest


def restore(
    source: Path,
    data_dir: Path,
    *,
    anchors: Callable[[], list[Anchored]] | None,
    open_log: Callable[[Path], Log],
    allow_behind: bool = False,
    progress: Callable[[str], None] | None = None,
) -> RestoreResult:
    """Restore the backup directory ``source`` as the data directory ``data_dir``.

    ``anchors`` reads the checkpoints anchored on chain (:func:`chain_anchors`); ``None``
    skips that check (the caller asked for it explicitly). ``open_log`` opens a log file
    with the deployment's settings (kinds, master key). ``allow_behind`` accepts a backup
    older than the chain's latest anchor: anchors beyond the restored log are then counted
    in :attr:`RestoreResult.behind`, every anchor within it must still match.

    Preconditions: ``data_dir`` does not exist or is an empty directory. The backup is
    copied into a temporary directory beside ``data_dir``, checked, and renamed to
    ``data_dir`` only when every check passed: a refused or failed restore leaves
    ``data_dir`` as it was and nothing beside it.

    Raises:
        BackupError: ``data_dir`` is not empty, ``source`` is not a backup, or a file cannot
            be copied or renamed.
        RestoreRefusedError: a file differs from the manifest, the log's size or root is not
            the manifest's, a record's content does not hash to its leaf, or the log does not
            reproduce an anchored checkpoint (the message names the first).
    """
    say = progress or (lambda _: None)
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(
            f"the data directory {data_dir} is not empty: restore only into a new or empty "
            "directory (move the old one away first)"
        )
    manifest = read_manifest(source)
    names = [item["name"] for item in manifest["files"]]
    say(f"manifest checked: {len(names)} files, SHA-256 as recorded")
    temporary = _beside(data_dir, "restore")
    try:
        temporary.mkdir(parents=True)
        for name in names:
            shutil.copyfile(source / name, temporary / name)
        _fsync_tree(temporary)
        with open_log(temporary / DB_NAME) as log:
            result = _check_restored(log, manifest, anchors, allow_behind, say)
        for leftover in temporary.glob("*.sqlite-*"):  # the WAL and index of the check
            leftover.unlink()
        if data_dir.exists():
            data_dir.rmdir()  # empty (checked above)
        temporary.rename(data_dir)
        _fsync_dir(data_dir.parent)
    except BaseException as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        if isinstance(exc, OSError | sqlite3.Error) and not isinstance(exc, BrokenPipeError):
            raise BackupError(f"cannot restore {source} into {data_dir}: {exc}") from exc
        raise
    result.files = names
    return result


def _check_restored(
    log: Log,
    manifest: dict[str, Any],
    anchors: Callable[[], list[Anchored]] | None,
    allow_behind: bool,
    say: Callable[[str], None],
) -> RestoreResult:
    stated = manifest.get("log", {})
    size, root = log.size, log.root()
    if size != stated.get("tree_size") or "0x" + root.hex() != stated.get("root"):
        raise RestoreRefusedError(
            f"the restored log has {size} leaves and root 0x{root.hex()}, the manifest says "
            f"{stated.get('tree_size')} and {stated.get('root')}"
        )
    anchored = [] if anchors is None else anchors()
    within = [a for a in anchored if a.tree_size <= size]
    behind = [a for a in anchored if a.tree_size > size]
    if behind and not allow_behind:
        first = behind[0]
        raise RestoreRefusedError(
            f"anchored checkpoint {first.seq} (tree size {first.tree_size}, block "
            f"{first.block}) is beyond the restored log's {size} leaves: this backup is older "
            "than the chain's history (restore a newer one, or pass --allow-behind to accept "
            f"losing {behind[-1].tree_size - size} anchored records)"
        )
    say(f"checking {size} records against {len(within)} anchored checkpoints")
    _check_content(log, size, within)
    return RestoreResult(
        tree_size=size,
        root=root,
        files=[],
        anchors_checked=len(within),
        chain_checked=anchors is not None,
        behind=(behind[-1].tree_size - size) if behind else 0,
    )


_STRUCTURAL: Final = frozenset(
    {"altered", "reordered", "deleted", "inserted", "tree", "history", "erased"}
)
"""The findings of :meth:`Log.audit` that mean the stored tree or records are not the ones
committed, or a record's content is gone with no erasure record (also what a record sealed
at rest reads as when its data key is missing); the others, such as who submitted a record,
are about what the records say, not whether the copy is whole."""
_SPAN: Final = re.compile(r"leaves \[(\d+), (\d+)\)")
"""How :meth:`Log.audit` names the leaves under a node or a checkpoint in a finding."""


def _check_content(log: Log, size: int, anchored: list[Anchored]) -> None:
    """Refuse unless every anchored checkpoint is reproduced by the stored tiles
    (:meth:`Log.root_at`, what proofs are built from) and the stored tiles and records are
    whole: :meth:`Log.audit` re-hashes every record against its committed leaf and every
    stored node against its children, so together the records' own content gives the
    anchored roots too (an erased record counts with its stored leaf hash). The first
    anchored checkpoint covering a difference is named; a difference past the last anchor
    is refused too."""
    failures: list[tuple[int, str]] = []  # (seq of the first anchor covering it, message)
    for anchor in anchored:
        tiles_root = log.root_at(anchor.tree_size)
        if tiles_root != anchor.root:
            failures.append((anchor.seq, _differs(anchor, f"the tiles give 0x{tiles_root.hex()}")))
            break
    try:
        report = log.audit()
    except (StoreError, ConfigError, NotFoundError) as exc:
        raise RestoreRefusedError(
            f"cannot check the restored records: {exc} (a backup without its data keys cannot "
            "be checked: restore them too, with the master key configured)"
        ) from exc
    for finding in report.findings:
        if finding.problem not in _STRUCTURAL:
            continue
        what = f"the audit finds {finding.problem!r}"
        if finding.index is not None:
            what += f" at leaf {finding.index}"
        what += f": {finding.detail}"
        if finding.problem == "erased":
            what += (
                " (a record encrypted at rest whose data key was not restored reads as erased: "
                "restore the data keys too, e.g. a backup taken with --include-secrets)"
            )
        needed = _size_needing(finding)
        covering = next((a for a in anchored if needed is not None and a.tree_size >= needed), None)
        if covering is not None:
            failures.append((covering.seq, _differs(covering, what)))
        else:
            where = " past its last anchor" if anchored and needed is not None else ""
            failures.append((len(anchored), f"the restored log is damaged{where}: {what}"))
    if report.tree_size != size and not failures:
        failures.append((len(anchored), f"the audit read {report.tree_size} leaves of {size}"))
    if failures:
        raise RestoreRefusedError(min(failures, key=lambda f: f[0])[1])


def _size_needing(finding: AuditFinding) -> int | None:
    """The smallest tree size that what ``finding`` names is part of, ``None`` if it names no
    leaf. A record (``altered``, ``deleted``, ...) at leaf ``i`` is part of every tree of more
    than ``i`` leaves. A stored node over leaves ``[a, b)`` (``tree``: the node or one of its
    children differs; ``history``: the root at ``b``) is used only by trees of ``b`` leaves or
    more: a corrupted node that no anchored tree contains leaves every anchored proof whole,
    and is reported as damage past the last anchor."""
    if finding.problem in ("tree", "history"):
        span = _SPAN.search(finding.detail)
        if span is not None:
            return int(span.group(2))
    return None if finding.index is None else finding.index + 1


def _differs(anchor: Anchored, found: str) -> str:
    return (
        f"anchored checkpoint {anchor.seq} (tree size {anchor.tree_size}, block {anchor.block}) "
        f"differs: the chain holds root 0x{anchor.root.hex()}; in the restored log {found}"
    )


def chain_anchors(chain: Any, contract_address: str) -> list[Anchored]:
    """Every checkpoint the AuditAnchor contract at ``contract_address`` holds, oldest first
    (``chain`` is a :class:`chainaudit.chain.chain.Chain`)."""
    from chainaudit.chain.anchor_abi import AUDIT_ANCHOR_ABI  # noqa: PLC0415

    contract = chain.contract(contract_address, AUDIT_ANCHOR_ABI)
    count = int(chain.run("checkpointCount()", contract.functions.checkpointCount().call))
    found: list[Anchored] = []
    for seq in range(count):
        size, root, block, _ = chain.run(
            f"checkpoint({seq})", contract.functions.checkpoint(seq).call
        )
        found.append(Anchored(seq, int(size), bytes(root), int(block)))
    return found


# -- helpers -----------------------------------------------------------------------------------


def _beside(target: Path, what: str) -> Path:
    """A fresh hidden name in ``target``'s parent directory (same file system: the final
    rename is atomic)."""
    return target.parent / f".{target.name}.{what}-{secrets.token_hex(4)}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_tree(directory: Path) -> None:
    """Flush every file of ``directory`` and the directory itself to disk."""
    for path in directory.iterdir():
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    """Make the entries of ``directory`` (a rename into it) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
