"""Data keys: sealing and opening record bodies, the master key, rotation and destruction, on
a real ``keys.sqlite``."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from chainaudit import datakeys
from chainaudit.datakeys import Keyring, KeyringError
from chainaudit.errors import ConfigError

BODY = b'{"actor":"a","id":"r1","kind":"transaction","payload":{"name":"Li Wei"},"salt":"00"}'


def keyring(tmp_path: Path, master: bytes) -> Keyring:
    return Keyring(tmp_path / datakeys.KEYS_DB, master)


def test_a_sealed_body_opens_only_at_its_own_leaf_and_id(tmp_path: Path) -> None:
    ring = keyring(tmp_path, os.urandom(32))
    (sealed,) = ring.seal([(7, "r1", BODY)])
    assert datakeys.is_sealed(sealed) and BODY not in sealed and b"Li Wei" not in sealed
    assert ring.open(7, "r1", sealed) == BODY
    assert ring.open(7, "other-id", sealed) is None  # the key row names r1
    moved = Keyring(tmp_path / datakeys.KEYS_DB, ring._master)
    moved.seal([(8, "r1", b"{}")])
    with pytest.raises(KeyringError, match="does not open"):
        moved.open(8, "r1", sealed)  # leaf 7's body at leaf 8: the associated data differs


def test_a_destroyed_key_leaves_the_body_unreadable_and_no_copy_in_the_file(
    tmp_path: Path,
) -> None:
    master = os.urandom(32)
    ring = keyring(tmp_path, master)
    sealed = ring.seal([(i, f"r{i}", BODY) for i in range(3)])
    wrapped = bytes(ring._db.execute("SELECT wrapped FROM data_keys WHERE idx = 1").fetchone()[0])
    assert ring.destroy([1, 99]) == 1
    assert ring.open(1, "r1", sealed[1]) is None
    assert ring.open(0, "r0", sealed[0]) == BODY
    raw = (tmp_path / datakeys.KEYS_DB).read_bytes()
    wal = tmp_path / (datakeys.KEYS_DB + "-wal")
    raw += wal.read_bytes() if wal.exists() else b""
    assert wrapped not in raw


def test_rotation_rewraps_every_key_and_the_old_master_no_longer_opens(tmp_path: Path) -> None:
    old, new = os.urandom(32), os.urandom(32)
    ring = keyring(tmp_path, old)
    sealed = ring.seal([(i, f"r{i}", BODY) for i in range(5)])
    assert ring.rotate(new) == 5
    assert ring.rotate(new) == 0  # idempotent: already under the new key
    ring.close()
    with pytest.raises(KeyringError, match="wrapped by master key"):
        keyring(tmp_path, old).open(0, "r0", sealed[0])
    fresh = keyring(tmp_path, new)
    assert [fresh.open(i, f"r{i}", sealed[i]) for i in range(5)] == [BODY] * 5


def test_rotation_refuses_a_key_wrapped_by_a_third_master(tmp_path: Path) -> None:
    first, second, third = (os.urandom(32) for _ in range(3))
    keyring(tmp_path, first).seal([(0, "r0", BODY)])
    with pytest.raises(KeyringError, match="neither the current"):
        keyring(tmp_path, second).rotate(third)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"x" * 16).decode(), "16 bytes"),
        ("", "0 bytes"),
    ],
)
def test_a_malformed_master_key_is_refused_without_echoing_it(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        datakeys.parse_master_key(text)
    assert text == "" or text not in str(caught.value)


def test_the_master_key_comes_from_the_setting_or_a_file_not_both(tmp_path: Path) -> None:
    key = os.urandom(32)
    text = base64.b64encode(key).decode()
    file = tmp_path / "master.key"
    file.write_text(text + "\n")
    assert datakeys.master_key_from(text, None) == key
    assert datakeys.master_key_from(None, file) == key
    assert datakeys.master_key_from(None, None) is None
    with pytest.raises(ConfigError, match="not both"):
        datakeys.master_key_from(text, file)
    assert text not in repr(datakeys.AtRest(key, frozenset({"transaction"})))
