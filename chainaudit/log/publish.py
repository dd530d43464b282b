"""``chainaudit publish DIR``: the C2SP ``tlog-tiles`` read path as static files.

Writes, under ``DIR``, exactly the resources ``c2sp.org/tlog-tiles`` names below a log's
prefix, so that any static web server, CDN or object store serving ``DIR`` is a tiled log:

* ``checkpoint``: the latest signed checkpoint the log stores
  (:meth:`chainaudit.log.store.Log.signed_checkpoint`), checked against the log's own root at
  its size before it is published;
* ``tile/<L>/<N>[.p/<W>]``: every hash tile of the tree of that size, and the partial tiles
  of every size signed since the checkpoint last published (:meth:`Log.signed_sizes`: the
  signer may sign several between two rounds, and the spec says "Logs MUST serve partial
  tiles corresponding to tree sizes for which a checkpoint was produced"; a fresh directory
  gets those of every signed size), except partials whose full tile is published;
* ``tile/entries/<N>[.p/<W>]``: every entry bundle (unless ``entries`` is off: leaf hashes
  only, as the ``tiles_entries`` setting does for ``chainaudit serve``).

The bytes are those ``GET /tile/...`` serves (:meth:`Log.hash_tile`, :meth:`Log.entry_bundle`).

Order and atomicity: every file is written to a temporary name in its directory and renamed
into place (a reader sees a whole file or none), and the checkpoint is renamed last, so a
reader never sees a checkpoint whose tiles are not all there already. A full tile is
written once and never rewritten (it never changes); a partial tile is written under its own
``.p/<W>`` name, whose bytes never change either.

Partial tiles are pruned: once full tile ``N`` is published, its directory of partials
``N.p/`` is removed, after the new checkpoint is in place. The spec allows it ("logs MAY
delete any partial tile once the corresponding full tile is available"), and a client still
holding an older checkpoint falls back to the full tile (whose first ``W`` hashes are the
partial's). Partials of a tile that is not yet full are all kept: each one belongs to a
checkpoint a client may hold.

An entry bundle holding an erased record cannot be produced (its leaf data is gone): it is
left out and named in :attr:`Published.withheld`; the hash tiles still prove the record (so
is a bundle holding a record of a private kind or one too long for a ``uint16`` length). A
bundle published before its record was erased is deleted by the next round
(:attr:`Published.removed`): each round reads the erasure records appended since the last
(:meth:`Log.erased_since`), and a publisher's first round checks every bundle on disk (which
also removes bundles of a kind the data policy has since made private). Withdrawing a
partial bundle of a published checkpoint puts the erasure before the spec's "MUST serve
partial tiles": the hash tiles, which every proof needs, are never withdrawn.

``follow`` survives a failed round (a locked database, a full disk): it logs it and tries
again next round.

Without a signed checkpoint in the log the tiles of the log's current size are published and
no ``checkpoint`` file is written (there is nothing a client could verify them against).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chainaudit.core import note, tlogtiles
from chainaudit.core.errors import ChainauditError, InputError, NoteError, NotFoundError, StoreError
from chainaudit.log.store import Log

__all__ = ["CHECKPOINT", "Published", "Publisher", "check_directory", "write_atomically"]

CHECKPOINT = "checkpoint"
logger = logging.getLogger(__name__)


@dataclass
class Published:
    """What one :func:`publish` round did."""

    size: int
    """The tree size the published tiles (and checkpoint, if any) are of."""
    checkpoint: bool
    """Whether a (new or changed) ``checkpoint`` file was written."""
    written: int = 0
    """Tile files written (full tiles and partial tiles)."""
    pruned: int = 0
    """Directories of partial tiles removed (their full tile is published)."""
    paths: list[str] = field(default_factory=list)
    """The paths written, relative to the directory (the checkpoint last)."""
    withheld: list[str] = field(default_factory=list)
    """Entry bundles not published: they hold an erased record, whose leaf data is gone (its
    leaf hash stays in the level-0 tile, which is published)."""
    removed: list[str] = field(default_factory=list)
    """Published entry bundles deleted: they now hold an erased record (or one the data
    policy keeps private)."""


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory, flushed to
    disk, and a rename, so a reader sees the old file, or none, or the whole new one, and a
    crash never leaves a short file under the final name (a full tile is never rewritten)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def sync_directories(directories: set[Path]) -> None:
    """Flush the renames done in ``directories`` to disk (before the checkpoint names them)."""
    for directory in sorted(directories):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Publisher:
    """Publishes one log into one directory, remembering what it already wrote (so each
    round of ``--follow`` writes only the growth)."""

    def __init__(
        self,
        log: Log,
        directory: Path,
        *,
        entries: bool = True,
        withhold: frozenset[str] = frozenset(),
    ) -> None:
        self.log = log
        self.directory = directory
        self.entries = entries
        self.withhold = withhold
        """Kinds whose entry bundles are never written (the data policy's private kinds)."""
        self._size = 0
        """Every full tile of a tree of this size is known to be on disk."""
        self._note: str | None = None
        self.failures = 0
        """Rounds of :meth:`follow` that failed (and were retried)."""
        self._erasures_checked: int | None = None
        """Erasure records below this index have been applied to the bundles on disk
        (``None``: not yet, the first round checks every bundle on disk)."""

    def _levels(self, size: int) -> list[int | None]:
        hashes: list[int | None] = list(range(tlogtiles.levels_for(size)))
        return [*hashes, None] if self.entries else hashes

    def _bytes(self, ref: tlogtiles.TileRef) -> bytes:
        if ref.level is None:
            return self.log.entry_bundle(ref.index, ref.width, withhold=self.withhold)
        return self.log.hash_tile(ref.level, ref.index, ref.width)

    def _target(self) -> tuple[int, str | None]:
        """The size to publish and its signed checkpoint note (``None``: the log has none)."""
        self.log.refresh()
        text = self.log.signed_checkpoint()
        if text is None:
            return self.log.size, None
        try:
            checkpoint = note.Checkpoint.parse(note.Note.parse(text).text)
        except NoteError as exc:
            raise StoreError(f"the log's latest signed checkpoint does not parse: {exc}") from exc
        if checkpoint.size > self.log.size:
            raise StoreError(
                f"the log's signed checkpoint is of size {checkpoint.size}, beyond the log "
                f"({self.log.size} records)"
            )
        if checkpoint.root != self.log.root_at(checkpoint.size):
            raise StoreError(
                f"the log's signed checkpoint of size {checkpoint.size} does not match the "
                "log's root at that size: refusing to publish it"
            )
        return checkpoint.size, text

    def publish(self) -> Published:
        """Delete the published entry bundles that now hold an erased record, write every
        tile of the target size not yet on disk and the partial tiles of every size signed
        since the last published checkpoint, then the checkpoint, then prune the partials
        whose full tile is now published."""
        size, text = self._target()
        done = Published(size, checkpoint=False)
        if self.entries:
            self._unpublish(done)
        completed: list[Path] = []
        written_in: set[Path] = set()
        seen: set[str] = set()
        for signed in self.log.signed_sizes(self._published_size(), size):
            for level in self._levels(signed):
                height = 0 if level is None else tlogtiles.TILE_HEIGHT * level
                superseded = (size >> height) // tlogtiles.TILE_WIDTH  # full at the target
                for ref in tlogtiles.tiles_for(signed, level):
                    if ref.partial and ref.index >= superseded and ref.path() not in seen:
                        seen.add(ref.path())
                        self._write(ref, done, written_in)
        for level in self._levels(size):
            known = self._known_full(level)
            for ref in tlogtiles.tiles_for(size, level):
                if not ref.partial and ref.index < known:
                    continue
                self._write(ref, done, written_in)
                if not ref.partial:
                    path = self.directory / ref.path()
                    completed.append(path.with_name(path.name + ".p"))
        sync_directories(written_in)
        if text is not None and text != self._note_on_disk():
            write_atomically(self.directory / CHECKPOINT, text.encode())
            done.checkpoint = True
            done.paths.append(CHECKPOINT)
        for partials in completed:  # after the checkpoint: no published size needs them
            if partials.is_dir():
                shutil.rmtree(partials)
                done.pruned += 1
        self._size, self._note = size, text
        return done

    def _write(self, ref: tlogtiles.TileRef, done: Published, written_in: set[Path]) -> Path | None:
        """Write tile ``ref`` unless it is on disk already; its path, or ``None`` when it is
        an entry bundle that cannot be published (named in ``done.withheld``)."""
        path = self.directory / ref.path()
        if self._on_disk(ref, path):  # a tile's bytes, full or partial, never change
            return path
        try:
            data = self._bytes(ref)
        except NotFoundError:  # a bundle holding an erased, private or too long record
            done.withheld.append(ref.path())
            return None
        write_atomically(path, data)
        written_in.add(path.parent)
        done.written += 1
        done.paths.append(ref.path())
        return path

    def _published_size(self) -> int:
        """The size of the checkpoint on disk (0: none): the partial tiles of every size
        signed after it are published in this round."""
        text = self._note_on_disk()
        if text is None:
            return 0
        try:
            return note.Checkpoint.parse(note.Note.parse(text).text).size
        except NoteError:
            return 0

    def _unpublish(self, done: Published) -> None:
        """Delete every published entry bundle (full or partial) that holds a record erased
        since the last round, so it is neither served nor written again. The first round
        of a publisher checks every bundle on disk instead (erasures while no publisher ran,
        or a data policy that now keeps a kind private); later rounds read only the erasure
        records appended since (:meth:`Log.erased_since`, one range read)."""
        if self._erasures_checked is None:
            root = self.directory / "tile" / tlogtiles.ENTRIES
            bundles = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
            for path in sorted(bundles):
                try:
                    ref = tlogtiles.parse_path(str(path.relative_to(self.directory)))
                except InputError:
                    continue  # not a tile: not ours to delete
                try:
                    self._bytes(ref)
                except NotFoundError:
                    self._remove(path, done)
        else:
            for leaf in self.log.erased_since(self._erasures_checked):
                index, position = divmod(leaf, tlogtiles.TILE_WIDTH)
                full = self.directory / tlogtiles.TileRef(None, index).path()
                candidates = [full, *full.with_name(full.name + ".p").glob("*")]
                for path in candidates:
                    width = tlogtiles.TILE_WIDTH if path == full else int(path.name)
                    if width > position and path.is_file():
                        self._remove(path, done)
        self._erasures_checked = self.log.size

    def _remove(self, path: Path, done: Published) -> None:
        path.unlink(missing_ok=True)
        done.removed.append(str(path.relative_to(self.directory)))

    @staticmethod
    def _on_disk(ref: tlogtiles.TileRef, path: Path) -> bool:
        """Whether the tile is published: its file exists (with the size a hash tile has)."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return False
        return ref.level is None or size == tlogtiles.HASH_SIZE * ref.width

    def _known_full(self, level: int | None) -> int:
        height = 0 if level is None else tlogtiles.TILE_HEIGHT * level
        return (self._size >> height) // tlogtiles.TILE_WIDTH

    def _note_on_disk(self) -> str | None:
        if self._note is not None:
            return self._note
        try:
            return (self.directory / CHECKPOINT).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def follow(
        self,
        interval: float,
        stop: threading.Event,
        on_round: Callable[[Published], None] | None = None,
    ) -> None:
        """Publish, then publish the log's growth every ``interval`` seconds until ``stop``
        is set (``on_round`` sees each round that wrote or removed something). A round that
        fails (a locked database, a full disk, an unwritable directory) is logged and
        counted in :attr:`failures`, and the next round tries again."""
        while True:
            try:
                done = self.publish()
            except (ChainauditError, OSError, sqlite3.Error) as exc:
                # e.g. "database is locked" or a full disk: this round is lost, not the
                # publisher; the next round writes what this one did not.
                self.failures += 1
                logger.warning("publish round failed, retrying in %ss: %s", interval, exc)
            else:
                if on_round is not None and (
                    done.written or done.checkpoint or done.pruned or done.removed
                ):
                    on_round(done)
            if stop.wait(interval):
                return


def check_directory(directory: Path) -> Path:
    """Create ``directory`` if needed; raises :class:`InputError` when it cannot be used."""
    if directory.exists() and not directory.is_dir():
        raise InputError(f"cannot publish into {directory}: it is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {directory}: {exc.strerror or exc}") from exc
    if not os.access(directory, os.W_OK):
        raise InputError(f"cannot publish into {directory}: it is not writable")
    return directory
