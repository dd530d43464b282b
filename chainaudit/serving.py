"""Serving an ASGI app with uvicorn, for the API and the witness: bind the socket first (a
one-line error when it cannot be), announce the URL only once connections are accepted
(:func:`serve_bound`), or run it in a background thread (:class:`ServedThread`, used by
:class:`~chainaudit.api.server.ServerThread` and :class:`~chainaudit.witness.WitnessThread`)."""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable
from typing import Self

import uvicorn

from chainaudit.errors import ChainauditError, InputError


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


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free port), before anything starts.

    Raises :class:`~chainaudit.errors.InputError` with one line naming the address and why
    (the port is busy, out of range, the interface does not exist here...).
    """
    if not 0 <= port <= 65535:
        raise InputError(f"cannot serve on port {port}: a TCP port is between 1 and 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"cannot serve on {host}:{port}: unknown interface ({exc})") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not SO_REUSEPORT
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = (
            "the port is in use by another process (choose another with --port)"
            if exc.errno == errno.EADDRINUSE
            else exc.strerror or str(exc)
        )
        raise InputError(f"cannot serve on {host}:{port}: {why}") from exc
    sock.set_inheritable(True)
    return sock


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that calls ``on_started`` once the app started and the socket
    accepts connections (never before: a failed start announces nothing)."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()


def serve_bound(
    host: str,
    port: int,
    make_config: Callable[[int], uvicorn.Config],
    *,
    scheme: str = "http",
    on_started: Callable[[str], None] | None = None,
) -> None:
    """Bind ``host:port`` first (:func:`bind`; port 0: any free port), then serve the config
    ``make_config(bound port)`` builds until interrupted; ``on_started`` gets the URL once
    the app started and connections are accepted.

    Raises:
        InputError: the socket cannot be bound (one line naming the address and why).
    """
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown}:{bound}"
    try:
        server = AnnouncingServer(
            make_config(bound), lambda: on_started(url) if on_started else None
        )
        server.run(sockets=[sock])
    finally:
        sock.close()
