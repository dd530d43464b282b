"""Serving an ASGI app with uvicorn, for the API and the witness: bind the socket first (a
one-line error when it cannot be), announce the URL only once connections are accepted
(:func:`serve_bound`), or run it in a background thread (:class:`ServedThread`, used by
:class:`~chainaudit.api.server.ServerThread` and
:class:`~chainaudit.service.witness.WitnessThread`), or in several worker processes sharing the
socket (:func:`serve_workers`, pre-fork)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import NoReturn, Self

import uvicorn

from chainaudit.core.errors import ChainauditError, InputError, WorkersFailedError

__all__ = ["ServedThread", "serve_bound", "serve_workers"]


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

    Raises :class:`~chainaudit.core.errors.InputError` with one line naming the address and why
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


MAX_START_FAILURES = 3
"""Workers that exit before they serve, in a row, after which ``serve_workers`` gives up."""
RESTART_DELAY = 0.5
"""Seconds before a dead worker is replaced (a worker crashing in a loop costs little)."""
STOP_GRACE = 30.0
"""Seconds the workers get to finish on SIGTERM before they are killed."""


def serve_workers(
    host: str,
    port: int,
    make_config: Callable[[int], uvicorn.Config],
    *,
    workers: int,
    scheme: str = "http",
    on_started: Callable[[str], None] | None = None,
    before_fork: Callable[[], None] | None = None,
    after_worker_exit: Callable[[int], None] | None = None,
) -> None:
    """Serve with ``workers`` processes sharing one listening socket (pre-fork).

    The socket is bound once, here (:func:`bind`: a one-line :class:`InputError` when it
    cannot be); each worker is a forked child that builds its own app and stores with
    ``make_config(bound port)`` and serves the inherited socket; the kernel spreads the
    connections. ``on_started`` gets the URL once every worker accepts connections.

    The calling process supervises: a worker that dies is replaced (after
    :data:`RESTART_DELAY`); SIGTERM or SIGINT stops every worker (SIGTERM, then SIGKILL after
    :data:`STOP_GRACE` seconds) and returns. Workers die with this process (Linux
    ``PR_SET_PDEATHSIG``). ``before_fork`` runs here before each fork, ``after_worker_exit``
    here with the pid of each worker that ended (hooks for multi-process metrics).

    Preconditions: ``workers >= 1``; the calling process runs no other thread (fork).

    Raises:
        InputError: the socket cannot be bound.
        WorkersFailedError: :data:`MAX_START_FAILURES` workers in a row exited before they
            served (a bad setting, an unreadable data directory...; each says why on
            stderr); the others are stopped first.
    """
    if workers < 1:
        raise InputError(f"cannot serve with {workers} workers: at least 1")
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    supervisor = _Supervisor(
        sock,
        lambda: make_config(bound),
        workers,
        before_fork=before_fork,
        after_worker_exit=after_worker_exit,
    )
    try:
        supervisor.run(lambda: on_started(f"{scheme}://{shown}:{bound}") if on_started else None)
    finally:
        sock.close()


class _Supervisor:
    """The parent of ``serve_workers``: forks, watches and stops the workers."""

    def __init__(
        self,
        sock: socket.socket,
        make_config: Callable[[], uvicorn.Config],
        workers: int,
        *,
        before_fork: Callable[[], None] | None,
        after_worker_exit: Callable[[int], None] | None,
    ) -> None:
        self.sock = sock
        self.make_config = make_config
        self.workers = workers
        self.before_fork = before_fork
        self.after_worker_exit = after_worker_exit
        self.children: dict[int, int] = {}
        """Worker pid -> its slot (0..workers-1)."""
        self.ready: set[int] = set()
        self.stopping = False
        self.failures = 0
        self.ready_r, self.ready_w = os.pipe()

    def run(self, announce: Callable[[], None]) -> None:
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self._supervise(announce)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(self.ready_r)
            os.close(self.ready_w)

    def _on_signal(self, _sig: int, _frame: object) -> None:
        self.stopping = True

    def _supervise(self, announce: Callable[[], None]) -> None:
        for slot in range(self.workers):
            self._fork(slot)
        announced = False
        restarts: dict[int, float] = {}  # slot -> when to fork it again
        while not self.stopping:
            try:
                readable, _, _ = select.select([self.ready_r], [], [], 0.2)
            except InterruptedError:
                continue
            if readable:
                for line in os.read(self.ready_r, 4096).split():
                    self.ready.add(int(line))
                    self.failures = 0
            if not announced and len(self.ready & set(self.children)) >= self.workers:
                announce()
                announced = True
            self._reap(restarts)
            now = time.monotonic()
            for slot, when in list(restarts.items()):
                if when <= now and not self.stopping:
                    del restarts[slot]
                    self._fork(slot)

    def _reap(self, restarts: dict[int, float]) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            if self.after_worker_exit is not None:
                self.after_worker_exit(pid)
            if slot is None or self.stopping:
                continue
            served = pid in self.ready
            self.ready.discard(pid)
            how = _exit_status(status)
            if not served:
                self.failures += 1
                if self.failures >= MAX_START_FAILURES:
                    raise WorkersFailedError(
                        f"the API workers keep exiting before they serve ({self.failures} in "
                        f"a row; the last, worker {slot + 1} (pid {pid}), {how}): see the "
                        "error above"
                    )
            print(
                f"chainaudit serve: worker {slot + 1} (pid {pid}) {how}; starting another",
                file=sys.stderr,
                flush=True,
            )
            restarts[slot] = time.monotonic() + RESTART_DELAY

    def _fork(self, slot: int) -> None:
        if self.before_fork is not None:
            self.before_fork()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            _worker(self.sock, self.make_config, self.ready_w, self.ready_r, parent)
        self.children[pid] = slot

    def _stop_all(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while self.children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            self.children.pop(pid, None)
            if self.after_worker_exit is not None:
                self.after_worker_exit(pid)
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()


def _exit_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"was killed by signal {sig} ({signal.Signals(sig).name})"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM to this process when its parent dies (elsewhere: nothing);
    exit at once if the parent is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(0)


def _worker(
    sock: socket.socket,
    make_config: Callable[[], uvicorn.Config],
    ready_w: int,
    ready_r: int,
    parent: int,
) -> NoReturn:
    """A forked worker: build the app and its stores, serve ``sock`` until SIGTERM, exit."""
    code = 0
    try:
        os.close(ready_r)
        os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the parent, which stops the workers
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _raise_exit)  # before uvicorn handles it, and after
        _die_with_parent(parent)

        def ready() -> None:
            os.write(ready_w, f"{os.getpid()}\n".encode())

        server = AnnouncingServer(make_config(), ready)
        server.run(sockets=[sock])
        code = 0 if server.started else 3
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except ChainauditError as exc:
        print(f"chainaudit serve: worker {os.getpid()}: error: {exc}", file=sys.stderr)
        code = 2
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
    os._exit(code)


def _raise_exit(_sig: int, _frame: object) -> None:
    raise SystemExit(0)
