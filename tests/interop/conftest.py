"""The Go checker of tests/interop/tlogcheck, built once per session with Debian's Go and
golang.org/x/mod (GOPATH mode, offline; `make go-tlog` installs them)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

GOPATH = "/usr/share/gocode"
SUMDB = Path(GOPATH) / "src/golang.org/x/mod/sumdb"
SOURCE = Path(__file__).parent / "tlogcheck"


def _gocache(fallback: Path) -> str:
    """Go's build cache: the user's own when it is writable (a rebuild then takes a second),
    else a fresh one in the session's temporary directory."""
    configured = os.environ.get("GOCACHE") or str(Path.home() / ".cache" / "go-build")
    try:
        Path(configured).mkdir(parents=True, exist_ok=True)
        if os.access(configured, os.W_OK):
            return configured
    except OSError:
        pass
    return str(fallback)


@pytest.fixture(scope="session")
def tlogcheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None or not (SUMDB / "note").is_dir() or not (SUMDB / "tlog").is_dir():
        pytest.fail(
            "Go and golang.org/x/mod/sumdb are needed (Debian's golang-go and "
            "golang-golang-x-mod-dev): run `make go-tlog`"
        )
    out = tmp_path_factory.mktemp("go")
    binary = out / "tlogcheck"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": GOPATH,
        "GOCACHE": _gocache(out / "cache"),
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return binary
