"""A small tiled log for the tlog-tiles tests: records across tile and level borders, signed
checkpoints stored in the log, a server with no chain (the read path needs none) and a static
file server."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from chainaudit.api.server import ServerThread
from chainaudit.app.settings import Settings
from chainaudit.chain.devnet import free_port
from chainaudit.core import note
from chainaudit.log.store import Log
from tests.test_tiles import leaf_records

ORIGIN = "chainaudit.example/test-log"
SIZE = 66_000
"""Three hash tile levels; partial tiles at every level and a partial entry bundle."""
OLD_SIZE = 1_234
"""The size of the older signed checkpoint (or a third of a smaller log)."""


@dataclass
class Tiled:
    data_dir: Path
    signer: note.Signer
    size: int

    @property
    def vkey(self) -> str:
        return self.signer.verifier().encode()

    def settings(self, **extra: object) -> Settings:
        # No chain: the read path needs none (a closed port refuses at once).
        # Entry bundles on unless a test says otherwise (their default is off).
        extra = {"tiles_entries": True, **extra}
        return Settings(data_dir=self.data_dir, rpc_url="http://127.0.0.1:9", **extra)  # type: ignore[arg-type]


def sign(log: Log, signer: note.Signer, size: int) -> str:
    """Sign and store the checkpoint of ``size`` (what t16a's service does)."""
    text = note.sign_checkpoint(signer, note.Checkpoint(ORIGIN, size, log.root_at(size))).encode()
    log.put_signed_checkpoint(size, text)
    return text


def make_tiled(directory: Path, size: int = SIZE) -> Tiled:
    signer = note.Signer.generate(ORIGIN)
    with Log.open(directory) as log:
        records = leaf_records(size)
        old = min(OLD_SIZE, size // 3)
        log.append(records[:old])
        sign(log, signer, old)
        log.append(records[old:])
        sign(log, signer, size)
    return Tiled(directory, signer, size)


@contextmanager
def serving(tiled: Tiled, **extra: object) -> Iterator[str]:
    """``chainaudit serve``'s app over the log (no anchorer); yields its URL."""
    with ServerThread(tiled.settings(**extra), free_port(), run_anchorer=False) as server:
        yield server.url


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def static_server(directory: Path) -> Iterator[str]:
    """A threaded static file server over ``directory`` (as a CDN or object store would be)."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
