"""``chainaudit publish DIR``: the C2SP ``tlog-tiles`` read path as static files.

Writes, under ``DIR``, exactly the resources ``c2sp.org/tlog-tiles`` names below a log's
prefix, so that any static web server, CDN or object store serving ``DIR`` is a tiled log:

* ``checkpoint``: the latest signed checkpoint the log stores
  (:meth:`chainaudit.store.Log.signed_checkpoint`), checked against the log's own root at
  its size before it is published;
* ``tile/<L>/<N>[.p/<W>]``: every hash tile of the tree of that size;
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
left out and named in :attr:`Published.withheld`; the hash tiles still prove the record.

Without a signed checkpoint in the log the tiles of the log's current size are published and
no ``checkpoint`` file is written (there is nothing a client could verify them against).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chainaudit import note, tlogtiles
from chainaudit.errors import InputError, NoteError, NotFoundError, StoreError
from chainaudit.store import Log

CHECKPOINT = "checkpoint"


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
        """Write every tile of the target size not yet on disk, then the checkpoint, then
        prune the partials whose full tile is now published."""
        size, text = self._target()
        done = Published(size, checkpoint=False)
        completed: list[Path] = []
        written_in: set[Path] = set()
        for level in self._levels(size):
            known = self._known_full(level)
            for ref in tlogtiles.tiles_for(size, level):
                if not ref.partial and ref.index < known:
                    continue
                path = self.directory / ref.path()
                if not self._on_disk(ref, path):  # a tile's bytes, full or partial, never change
                    try:
                        data = self._bytes(ref)
                    except NotFoundError:  # a bundle holding an erased or private record
                        done.withheld.append(ref.path())
                        continue
                    write_atomically(path, data)
                    written_in.add(path.parent)
                    done.written += 1
                    done.paths.append(ref.path())
                if not ref.partial:
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
        is set (``on_round`` sees each round that wrote something)."""
        while True:
            done = self.publish()
            if on_round is not None and (done.written or done.checkpoint or done.pruned):
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
