"""A private PostgreSQL server for the test session, started the way the tests start Anvil.

:class:`PgServer` runs Debian's PostgreSQL (``initdb`` and ``pg_ctl`` from
``/usr/lib/postgresql/<version>/bin``; ``make test`` installs the ``postgresql`` package when
``initdb`` is missing) in a temporary directory, on a free loopback port, with its unix socket
in that directory too, and stops it (and removes the directory) when the session ends.
PostgreSQL refuses to run as root: when the tests run as root the cluster belongs to a system
user, :data:`TEST_USER` (created with ``useradd --system`` if missing), and the server runs
under it via ``runuser``. ``CHAINAUDIT_TEST_DATABASE_URL`` points the suite at an existing
server instead (a superuser's ``postgresql://`` URL: each test gets a database or schema
created there).

The cluster is built for speed, not durability (``fsync=off``): a test kills processes, never
the machine. ``PgServer(fsync=True)`` keeps PostgreSQL's durable defaults (``fsync`` and
``full_page_writes`` on), for a benchmark (``scripts/bench_scale.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from chainaudit.chain.devnet import free_port

TEST_USER = "chainaudit-test"
"""The system user that owns the test cluster when the tests run as root."""
URL_ENV = "CHAINAUDIT_TEST_DATABASE_URL"
"""Names an existing server (a superuser's URL) instead of starting one."""


class PgServerError(RuntimeError):
    """The test server could not be set up or started (the message says which step)."""


def bin_dir() -> Path:
    """The directory of PostgreSQL's server programs (``initdb``, ``pg_ctl``, ``postgres``).

    Raises :class:`PgServerError` when no PostgreSQL server is installed.
    """
    found = shutil.which("initdb")
    if found is not None:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if versions:
        return Path(versions[-1]).parent
    raise PgServerError(
        "no PostgreSQL server is installed (initdb not found): run `make test`, which installs "
        f"Debian's postgresql package, or set {URL_ENV} to an existing server"
    )


def _ensure_user() -> pwd.struct_passwd:
    """The :data:`TEST_USER` account, created as a system user (no home, no shell) if
    missing."""
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(TEST_USER)


class PgServer:
    """One PostgreSQL cluster in a temporary directory; a context manager.

    ``url`` is a superuser's ``postgresql://`` URL (TCP on 127.0.0.1:``port``) once started.
    """

    def __init__(self, *, fsync: bool = False, shared_buffers: str = "64MB") -> None:
        self.fsync = fsync
        """Whether the server syncs its writes to disk (off for tests)."""
        self.shared_buffers = shared_buffers
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="chainaudit-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_user: list[str] = []
        self._started = False
        self._lock = threading.Lock()

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self._as_user, *argv], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PgServerError(
                f"{Path(argv[0]).name} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )

    def start(self) -> PgServer:
        """Initialise the cluster and start the server; returns once it accepts connections.

        Raises :class:`PgServerError` naming the step that failed (the directory is removed).
        """
        programs = bin_dir()
        try:
            self.socket_dir.mkdir()
            if os.geteuid() == 0:
                user = _ensure_user()
                os.chown(self.root, user.pw_uid, user.pw_gid)
                os.chown(self.socket_dir, user.pw_uid, user.pw_gid)
                self._as_user = ["runuser", "-u", TEST_USER, "--"]
            self._run(
                str(programs / "initdb"),
                "-D",
                str(self.data),
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
            options = " ".join(
                [
                    f"-p {self.port}",
                    "-c listen_addresses=127.0.0.1",
                    f"-c unix_socket_directories={self.socket_dir}",
                    "-c max_connections=200",
                    f"-c shared_buffers={self.shared_buffers}",
                ]
                + ([] if self.fsync else ["-c fsync=off", "-c full_page_writes=off"])
            )
            self._started = True
            atexit.register(self.stop)  # a session that dies without its teardown
            self._run(
                str(programs / "pg_ctl"),
                "start",
                "-D",
                str(self.data),
                "-l",
                str(self.root / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (immediate shutdown) and remove its directory; idempotent."""
        with self._lock:
            if self._started and (self.data / "postmaster.pid").exists():
                with contextlib.suppress(PgServerError):
                    self._run(
                        str(bin_dir() / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate"
                    )
            self._started = False
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Databases:
    """Hands out fresh, empty databases on one server (``admin_url``: a superuser's URL).

    Each is a schema of the server's ``postgres`` database, reached through a URL whose
    ``search_path`` is that schema alone (measured: ~10x faster than ``CREATE DATABASE ...
    TEMPLATE template0``, and as isolating for code that names no schema).
    """

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._count = 0

    def create(self) -> str:
        """A new empty schema; returns the URL that reaches it."""
        import psycopg  # noqa: PLC0415

        self._count += 1
        name = f"t{os.getpid()}_{self._count}"
        with psycopg.connect(self.admin_url, autocommit=True) as db:
            db.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            db.execute(f"CREATE SCHEMA {name}")
        separator = "&" if "?" in self.admin_url else "?"
        return f"{self.admin_url}{separator}options={quote(f'-csearch_path={name}')}"

    def drop(self, url: str) -> None:
        """Remove the schema that ``url`` (from :meth:`create`) reaches, and what is in it;
        left in place (it is in a temporary cluster, or a later run drops it) when a
        connection a test leaked still holds a lock on it for 5 s."""
        import psycopg  # noqa: PLC0415

        name = url.rsplit("search_path%3D", 1)[-1]
        with psycopg.connect(self.admin_url, autocommit=True) as db:
            db.execute("SET lock_timeout = '5s'")
            with contextlib.suppress(psycopg.errors.LockNotAvailable):
                db.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
