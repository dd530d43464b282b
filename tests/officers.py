"""Officers for maker-checker tests of the command line: keys in a data directory's key store,
and running ``chainaudit`` as one of them (``CHAINAUDIT_API_KEY``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chainaudit.cli import OFFICER_KEY_ENV, main
from chainaudit.log.store import DB_NAME
from chainaudit.service.keys import KeyStore

APPROVAL = re.compile(r"approval (APR-[0-9a-f]{16}) requested")


def issue(data_dir: Path, role: str = "operator", *, address: str | None = None) -> str:
    """A new officer key (``role``) in ``data_dir``'s key store; returns its token."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = KeyStore(data_dir / DB_NAME)
    try:
        return store.create(role, name=f"{role} officer", address=address)[1]
    finally:
        store.close()


def run_as(monkeypatch: pytest.MonkeyPatch, token: str | None, data_dir: Path, *argv: str) -> int:
    """``chainaudit --data-dir DATA_DIR ARGV`` as the officer holding ``token`` (none: None)."""
    if token is None:
        monkeypatch.delenv(OFFICER_KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(OFFICER_KEY_ENV, token)
    return main(["--data-dir", str(data_dir), *argv])


def requested(out: str) -> str:
    """The approval id a request command printed."""
    found = APPROVAL.search(out)
    assert found is not None, out
    return found.group(1)
