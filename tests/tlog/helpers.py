"""A hand-made tiled log: a static directory written from a list of raw entries, served over
HTTP by a plain static file server.

``chainaudit serve`` serves its own read path (see tests/interop/tiled.py and the end-to-end
split view of two real stores in tests/tlog/test_split_view.py). These folders are for the
tests that need histories a store would not write: arbitrary entry bytes, a forged entry at
a chosen index, a log that rewrites its history between two polls, checkpoint files of
another history. ``checkpoint`` is signed with :func:`chainaudit.core.note.sign_checkpoint`; the
hash tiles and entry bundles are computed here with :mod:`chainaudit.core.merkle` and laid out
with :mod:`chainaudit.core.tlogtiles` (c2sp.org/tlog-tiles), independently of the store.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from chainaudit.chain.devnet import free_port
from chainaudit.core import merkle, note, tlogtiles

ORIGIN = "example.test/chainaudit-log"


def write_log(directory: Path, entries: Sequence[bytes], signer: note.Signer) -> note.Note:
    """Write the read path of the log of ``entries`` into ``directory``; return its checkpoint."""
    size = len(entries)
    level_hashes = [merkle.hash_leaf(e) for e in entries]
    for level in range(tlogtiles.levels_for(size)):
        for ref in tlogtiles.tiles_for(size, level):
            start = ref.index * tlogtiles.TILE_WIDTH
            _write(directory / ref.path(), b"".join(level_hashes[start : start + ref.width]))
        # the next level: the nodes of height 8(level+1), each the root of 256 nodes below
        full = len(level_hashes) // tlogtiles.TILE_WIDTH
        level_hashes = [
            merkle.root_hash(level_hashes[i * 256 : (i + 1) * 256]) for i in range(full)
        ]
    for ref in tlogtiles.tiles_for(size, None):
        start = ref.index * tlogtiles.TILE_WIDTH
        _write(
            directory / ref.path(),
            tlogtiles.encode_entries(entries[start : start + ref.width]),
        )
    root = merkle.root_hash([merkle.hash_leaf(e) for e in entries])
    signed = note.sign_checkpoint(signer, note.Checkpoint(signer.name, size, root))
    _write(directory / "checkpoint", signed.encode().encode())
    return signed


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on a free loopback port; yields the base URL (ending in ``/``)."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def entries(n: int, tag: str = "record") -> list[bytes]:
    """``n`` distinct entries."""
    return [f'{{"id":"{tag}-{i}"}}'.encode() for i in range(n)]
