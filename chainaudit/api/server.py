"""Running the API with uvicorn: in the foreground (``chainaudit serve``, one process or
``--workers N`` processes on one socket) or in a thread (tests and benchmarks, on a free
loopback port)."""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from chainaudit.api.app import create_app
from chainaudit.app import metrics
from chainaudit.app.settings import Settings
from chainaudit.core.errors import InputError
from chainaudit.service.serving import ServedThread, serve_bound, serve_workers

__all__ = ["ServerThread", "check_transport", "loopback", "serve"]


def _config(settings: Settings, host: str, port: int, *, run_anchorer: bool) -> uvicorn.Config:
    tls: dict[str, Any] = {}
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        tls = {
            "ssl_certfile": str(settings.tls_cert_file),
            "ssl_keyfile": str(settings.tls_key_file),
        }
    return uvicorn.Config(
        create_app(settings, run_anchorer=run_anchorer),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        **tls,
    )


def loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP address) is this machine's loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_transport(settings: Settings, host: str) -> str:
    """The scheme the API will be served with on ``host``: ``https`` when the settings name a
    certificate and key (both readable and matching), else ``http``.

    Raises :class:`~chainaudit.core.errors.InputError` (one line) when the certificate or key
    cannot be loaded, or when production would serve plain HTTP on a non-loopback address
    without ``behind_proxy`` (a TLS-terminating proxy in front).
    """
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is not None and key is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise InputError(
                f"cannot serve TLS with certificate {cert} and key {key}: {why}"
            ) from exc
        return "https"
    if settings.environment == "production" and not loopback(host) and not settings.behind_proxy:
        raise InputError(
            f"refusing to serve plain HTTP on {host} in production: set tls_cert_file and "
            "tls_key_file (CHAINAUDIT_TLS_CERT_FILE, CHAINAUDIT_TLS_KEY_FILE), or "
            "behind_proxy=true when a TLS-terminating proxy is in front"
        )
    return "http"


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int = 1,
    on_started: Callable[[str], None] | None = None,
    before_fork: Callable[[], None] | None = None,
    after_worker_exit: Callable[[int], None] | None = None,
) -> None:
    """Serve until interrupted, over TLS when the settings name a certificate and key.

    The transport is checked first (:func:`check_transport`: a one-line :class:`InputError`
    for an unusable certificate, or plain HTTP off loopback in production without
    ``behind_proxy``), then the socket is bound (:func:`bind` raises a one-line
    :class:`InputError` when it cannot be); ``on_started`` then gets the URL served
    (``https://`` over TLS), once the app has started and connections are accepted.

    ``workers`` > 1: that many processes serve the one socket (:func:`~chainaudit.service.serving.
    serve_workers`; each opens its own stores, and one of them, elected through the
    database, runs the anchoring service and the other background work,
    :mod:`chainaudit.service.leader`); ``on_started`` is called once all of them accept connections.
    The workers' counters are summed in ``prometheus_client``'s multiprocess mode
    (:mod:`chainaudit.app.metrics`): in ``PROMETHEUS_MULTIPROC_DIR`` when set, else in a
    directory made for this run and removed at its end; each worker that ends is marked
    dead there. ``before_fork`` and ``after_worker_exit`` are extra hooks of the parent.
    Raises :class:`~chainaudit.core.errors.WorkersFailedError` when the workers keep dying at
    start."""
    scheme = check_transport(settings, host)
    if workers == 1:
        serve_bound(
            host,
            port,
            lambda bound: _config(settings, host, bound, run_anchorer=True),
            scheme=scheme,
            on_started=on_started,
        )
        return
    shared = metrics.multiprocess_dir()  # the operator's, else one for this run only
    own = shared is None
    directory = metrics.prepare_multiprocess_dir(
        shared or Path(tempfile.mkdtemp(prefix="chainaudit-metrics-"))
    )

    def worker_exited(pid: int) -> None:
        metrics.mark_process_dead(pid)
        if after_worker_exit is not None:
            after_worker_exit(pid)

    try:
        serve_workers(
            host,
            port,
            lambda bound: _config(settings, host, bound, run_anchorer=True),
            workers=workers,
            scheme=scheme,
            on_started=on_started,
            before_fork=before_fork,
            after_worker_exit=worker_exited,
        )
    finally:
        if own:
            shutil.rmtree(directory, ignore_errors=True)


class ServerThread(ServedThread):
    """The API served by uvicorn in a background thread; a context manager."""

    def __init__(
        self, settings: Settings, port: int, *, host: str = "127.0.0.1", run_anchorer: bool = True
    ) -> None:
        scheme = "https" if settings.tls_cert_file is not None else "http"
        config = _config(settings, host, port, run_anchorer=run_anchorer)
        super().__init__(config, f"{scheme}://{host}:{port}", what="API server")
        self.app: Any = config.app
        """The served FastAPI app (tests reach its ``state.services``)."""
