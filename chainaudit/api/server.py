"""Running the API with uvicorn: in the foreground (``chainaudit serve``) or in a thread
(tests and benchmarks, on a free loopback port)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from chainaudit.api.app import create_app
from chainaudit.errors import ChainauditError
from chainaudit.settings import Settings


def _config(settings: Settings, host: str, port: int, *, run_anchorer: bool) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings, run_anchorer=run_anchorer),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted."""
    uvicorn.Server(_config(settings, host, port, run_anchorer=True)).run()


class ServerThread:
    """The API served by uvicorn in a background thread; a context manager."""

    def __init__(
        self, settings: Settings, port: int, *, host: str = "127.0.0.1", run_anchorer: bool = True
    ) -> None:
        self.url = f"http://{host}:{port}"
        self._server = uvicorn.Server(_config(settings, host, port, run_anchorer=run_anchorer))
        self.app: Any = self._server.config.app
        """The served FastAPI app (tests reach its ``state.services``)."""
        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ChainauditError(f"the API server did not start at {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
