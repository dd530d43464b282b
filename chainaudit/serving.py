"""An ASGI app served by uvicorn in a background thread: the API's and the witness's test and
embedding helper (:class:`~chainaudit.api.server.ServerThread`,
:class:`~chainaudit.witness.WitnessThread`)."""

from __future__ import annotations

import threading
import time
from typing import Self

import uvicorn

from chainaudit.errors import ChainauditError


class ServedThread:
    """Serve ``config`` in a daemon thread; a context manager that starts and stops it."""

    def __init__(self, config: uvicorn.Config, url: str, *, what: str) -> None:
        self.url = url
        self._what = what
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=what, daemon=True)

    def start(self, timeout: float = 30.0) -> Self:
        """Start serving; return once connections are accepted.

        Raises:
            ChainauditError: the server stopped or did not start within ``timeout`` seconds.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ChainauditError(f"the {self._what} did not start at {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask the server to exit and wait for its thread (at most 30 s)."""
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
