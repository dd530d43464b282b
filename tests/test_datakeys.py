"""Data keys: sealing and opening record bodies, the master key, rotation and destruction, on
a real ``keys.sqlite`` and in a real PostgreSQL database (the keyring tests run on both)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from chainaudit.core.errors import ConfigError
from chainaudit.log import datakeys
from chainaudit.log.datakeys import Keyring, KeyringError

BODY = b'{"actor":"a","id":"r1","kind":"transaction","payload":{"name":"Li Wei"},"salt":"00"}'


Opener = Callable[[Path, bytes], Keyring]


def sqlite_keyring(tmp_path: Path, master: bytes) -> Keyring:
    return Keyring(tmp_path / datakeys.KEYS_DB, master)


@pytest.fixture
def keyring(log_database: str | None) -> Iterator[Opener]:
    """``keyring(tmp_path, master)``: the keyring of a data directory on the test's engine
    (``keys.sqlite`` there, or the tables of a fresh PostgreSQL database), opened anew at each
    call."""
    opened: list[Keyring] = []

    def open_(tmp_path: Path, master: bytes) -> Keyring:
        opened.append(Keyring(tmp_path / datakeys.KEYS_DB, master, database_url=log_database))
        return opened[-1]

    yield open_
    for ring in opened:
        ring.close()


def test_a_sealed_body_opens_only_at_its_own_leaf_and_id(tmp_path: Path, keyring: Opener) -> None:
    ring = keyring(tmp_path, os.urandom(32))
    (sealed,) = ring.seal([(7, "r1", BODY)])
    assert datakeys.is_sealed(sealed) and BODY not in sealed and b"Li Wei" not in sealed
    assert ring.open(7, "r1", sealed) == BODY
    assert ring.open(7, "other-id", sealed) is None  # the key row names r1
    moved = keyring(tmp_path, ring._master)
    moved.seal([(8, "r1", b"{}")])
    with pytest.raises(KeyringError, match="does not open"):
        moved.open(8, "r1", sealed)  # leaf 7's body at leaf 8: the associated data differs


def raw_keys_file(tmp_path: Path) -> bytes:
    raw = (tmp_path / datakeys.KEYS_DB).read_bytes()
    wal = tmp_path / (datakeys.KEYS_DB + "-wal")
    return raw + (wal.read_bytes() if wal.exists() else b"")


def stored_versions(ring: Keyring) -> int:
    """How many row versions, live or dead, the pages of ``key_runs`` and its TOAST table
    hold on PostgreSQL (``pageinspect``): after a destroy's ``VACUUM`` only the live ones."""
    db = ring._db
    db.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
    (toast,) = db.execute(
        "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'key_runs'::regclass"
    ).fetchone()
    total = 0
    for table in ("key_runs", toast):
        (pages,) = db.execute("SELECT pg_relation_size(?::regclass) / 8192", (table,)).fetchone()
        for page in range(int(pages)):
            (count,) = db.execute(
                "SELECT count(*) FROM heap_page_items(get_raw_page(?, ?)) WHERE t_data IS NOT NULL",
                (table, page),
            ).fetchone()
            total += int(count)
    return total


def live_versions(ring: Keyring) -> int:
    """How many live rows ``key_runs`` and its TOAST table have (PostgreSQL)."""
    db = ring._db
    (toast,) = db.execute(
        "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'key_runs'::regclass"
    ).fetchone()
    (rows,) = db.execute("SELECT count(*) FROM key_runs").fetchone()
    (chunks,) = db.execute(f"SELECT count(*) FROM {toast}").fetchone()
    return int(rows) + int(chunks)


def test_a_destroyed_key_leaves_the_body_unreadable_and_no_copy_in_the_file(
    tmp_path: Path, keyring: Opener
) -> None:
    master = os.urandom(32)
    ring = keyring(tmp_path, master)
    sealed = ring.seal([(i, f"r{i}", BODY) for i in range(3)])
    query = "SELECT wrapped FROM key_runs WHERE first = 0"
    wrapped = bytes(ring._db.execute(query).fetchone()[0])
    assert ring.destroy([1, 99]) == 1
    assert ring.open(1, "r1", sealed[1]) is None
    assert ring.open(0, "r0", sealed[0]) == BODY
    assert ring.open(2, "r2", sealed[2]) == BODY
    # The run was re-encrypted without key 1: the old run (which, with the master key,
    # would give key 1 back) is in neither the file nor its WAL.
    if ring.engine == "sqlite":
        raw = raw_keys_file(tmp_path)
        assert not any(wrapped[at : at + 16] in raw for at in range(0, len(wrapped), 16))
    else:  # no live row holds it, and VACUUM left no dead version of the old run
        assert bytes(ring._db.execute(query).fetchone()[0]) != wrapped
        assert stored_versions(ring) == live_versions(ring)
    assert ring.count() == 2 and not ring.has_key(1) and ring.has_key(0)


def test_the_keys_of_one_bundle_are_one_row_and_erasing_one_leaves_the_others(
    tmp_path: Path, keyring: Opener
) -> None:
    master = os.urandom(32)
    ring = keyring(tmp_path, master)
    items = [(i, f"r{i}", BODY + str(i).encode()) for i in range(250, 600)]
    sealed = ring.seal(items)
    runs = ring._db.execute("SELECT first, length FROM key_runs ORDER BY first").fetchall()
    assert runs == [(250, 6), (256, 128), (384, 128), (512, 88)]  # one row per bundle touched
    old = {
        first: bytes(w)
        for first, w in ring._db.execute("SELECT first, wrapped FROM key_runs").fetchall()
    }
    pieces = [old[256][at : at + 16] for at in range(0, len(old[256]), 16)]
    if ring.engine == "sqlite":
        before = raw_keys_file(tmp_path)
        assert sum(piece in before for piece in pieces) > len(pieces) // 2  # the check sees it
    assert ring.destroy([300]) == 1
    assert ring.open(300, "r300", sealed[50]) is None
    assert [ring.open(i, f"r{i}", sealed[i - 250]) for i in (250, 299, 301, 383, 599)] == [
        BODY + str(i).encode() for i in (250, 299, 301, 383, 599)
    ]
    if ring.engine == "sqlite":
        raw = raw_keys_file(tmp_path)
        # Its run was rewritten, with no 16-byte piece of the old one left anywhere (a run
        # larger than a page is stored in pieces), and only its run.
        assert not any(piece in raw for piece in pieces)
    else:  # the old version of the run (TOASTed: 4 KiB) is vacuumed away, row and chunks
        assert stored_versions(ring) == live_versions(ring)
    now = dict(ring._db.execute("SELECT first, wrapped FROM key_runs").fetchall())
    assert {first: bytes(w) == old[first] for first, w in now.items()} == {
        250: True,
        256: False,
        384: True,
        512: True,
    }
    ring.close()
    # Even with the master key, nothing in today's file gives key 300 back.
    again = keyring(tmp_path, master)
    assert again.open(300, "r300", sealed[50]) is None and not again.has_key(300)
    assert again.count() == len(items) - 1


def test_the_last_key_of_a_run_destroyed_removes_the_row(tmp_path: Path, keyring: Opener) -> None:
    ring = keyring(tmp_path, os.urandom(32))
    ring.seal([(3, "r3", BODY)])
    assert ring.destroy([3]) == 1 and ring.destroy([3]) == 0
    assert ring._db.execute("SELECT count(*) FROM key_runs").fetchone()[0] == 0


def test_a_row_left_by_a_rolled_back_append_never_shadows_a_later_one(
    tmp_path: Path, keyring: Opener
) -> None:
    ring = keyring(tmp_path, os.urandom(32))
    ring.seal([(i, f"lost{i}", BODY) for i in range(105, 150)])  # the log rolled back
    sealed = ring.seal([(i, f"r{i}", BODY) for i in range(100, 120)])  # then committed
    assert [ring.open(i, f"r{i}", sealed[i - 100]) for i in range(100, 120)] == [BODY] * 20
    assert not ring.has_key(130)


def test_a_moved_or_relabelled_run_does_not_open(tmp_path: Path, keyring: Opener) -> None:
    ring = keyring(tmp_path, os.urandom(32))
    (sealed,) = ring.seal([(5, "r5", BODY)])
    ring._db.execute("UPDATE key_runs SET first = 4, length = 2")
    ring._db.execute("""UPDATE key_runs SET ids = '[null,"r5"]'""")
    with pytest.raises(KeyringError, match="do not open"):
        ring.open(5, "r5", sealed)


def test_keys_of_the_first_format_still_open_rotate_and_are_destroyed(
    tmp_path: Path, keyring: Opener
) -> None:
    old, new = os.urandom(32), os.urandom(32)
    ring = keyring(tmp_path, old)
    key, nonce = os.urandom(32), os.urandom(12)
    body = (
        datakeys.MAGIC + nonce + AESGCM(key).encrypt(nonce, BODY, datakeys.associated_data("r0", 0))
    )
    ring._db.execute(
        "INSERT INTO data_keys VALUES (0, 'r0', ?, ?)", (ring.master_id, aes_key_wrap(old, key))
    )
    assert ring.open(0, "r0", body) == BODY and ring.has_key(0) and ring.count() == 1
    assert ring.rotate(new) == 1
    assert ring.open(0, "r0", body) == BODY
    assert ring.destroy([0]) == 1 and ring.open(0, "r0", body) is None


def test_rotation_rewraps_every_key_and_the_old_master_no_longer_opens(
    tmp_path: Path, keyring: Opener
) -> None:
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


def test_rotation_refuses_a_key_wrapped_by_a_third_master(tmp_path: Path, keyring: Opener) -> None:
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


def test_the_openssl_extension_and_cryptography_seal_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chainaudit import _seal  # noqa: PLC0415 - built by `make setup` (libssl-dev)

    keys, nonces = os.urandom(64), os.urandom(24)
    bodies, aads = [BODY, b""], [datakeys.associated_data("r1", 3), b""]
    sealed = _seal.seal_many(keys, nonces, bodies, aads, datakeys.MAGIC)
    for i in range(2):
        expected = AESGCM(keys[32 * i : 32 * (i + 1)]).encrypt(
            nonces[12 * i : 12 * (i + 1)], bodies[i], aads[i]
        )
        assert sealed[i] == datakeys.MAGIC + nonces[12 * i : 12 * (i + 1)] + expected
    with pytest.raises(ValueError, match="differ in count"):
        _seal.seal_many(keys, nonces, [BODY], aads, datakeys.MAGIC)
    # Without the extension, cryptography seals, and the keyring opens either.
    ring = sqlite_keyring(tmp_path, os.urandom(32))
    with_c = ring.seal([(0, "r0", BODY)])
    monkeypatch.setattr(datakeys, "_seal", None)
    without = ring.seal([(1, "r1", BODY)])
    assert ring.open(0, "r0", with_c[0]) == BODY and ring.open(1, "r1", without[0]) == BODY


@pytest.mark.parametrize("extension", [True, False])
def test_a_batch_is_sealed_column_wise_the_same_with_or_without_the_extension(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extension: bool
) -> None:
    from chainaudit.core.records import KINDS  # noqa: PLC0415
    from chainaudit.log import native  # noqa: PLC0415

    if not extension:
        monkeypatch.setattr(datakeys, "_seal", None)
    lines = [
        {"id": f"b{i}", "kind": "transaction" if i % 3 else "document", "actor": "a:b",
         "timestamp": "2026-11-21T09:30:00Z", "payload": {"n": i}, "salt": f"{i:032x}"}
        for i in range(600)
    ]  # fmt: skip
    raw = "\n".join(json.dumps(line) for line in lines).encode() + b"\n"
    batch = native.prepare_batch(raw, frozenset(KINDS), os.urandom(16 * 601))
    assert batch is not None
    at_rest = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    sealed = datakeys.seal_batch(batch, 1000, at_rest)
    assert sealed is not None and sealed.plain().meta == batch.meta
    ring = sqlite_keyring(tmp_path, at_rest.master)
    ring.store(list(sealed.keys))
    plain, opened = batch.records(), sealed.records()
    assert [r.leaf_hash for r in plain] == [r.leaf_hash for r in opened]
    for i, (p, s) in enumerate(zip(plain, opened, strict=True)):
        assert datakeys.is_sealed(s.body) == (i % 3 != 0)
        assert (ring.open(1000 + i, s.record_id, s.body) if i % 3 else s.body) == p.body
    assert ring.count() == 400
    assert datakeys.seal_batch(batch, 0, datakeys.AtRest(at_rest.master)) is None


def test_a_packed_sealed_batch_sends_each_sealed_body_once(tmp_path: Path) -> None:
    from chainaudit import _seal  # noqa: F401, PLC0415 - built by `make setup` (libssl-dev)
    from chainaudit.core.records import KINDS  # noqa: PLC0415
    from chainaudit.log import bundles, native  # noqa: PLC0415

    raw = b"".join(
        json.dumps(
            {"id": f"p{i}", "kind": "transaction" if i % 4 else "document", "actor": "a:b",
             "timestamp": "2026-11-21T09:30:00Z", "payload": {"n": i}, "salt": f"{i:032x}"}
        ).encode() + b"\n"
        for i in range(700)
    )  # fmt: skip
    batch = native.prepare_batch(raw, frozenset(KINDS), os.urandom(16 * 701))
    assert batch is not None
    at_rest = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    packed = bundles.pack(datakeys.seal_batch(batch, 100, at_rest) or batch, 100)
    trimmed = datakeys.drop_packed(packed)
    head, stop = 28, 28 + 5 * 128  # leaves 128 .. 767 are in the packed bundles
    assert len(packed.packed) == 5 and len(trimmed.bodies) < len(packed.bodies)
    assert trimmed.plain().records() == batch.records()  # the plain bodies are all there
    kept, full = trimmed.records(), packed.records()
    assert kept[:head] == full[:head] and kept[stop:] == full[stop:]
    assert all(r.body == b"" for i, r in enumerate(kept[head:stop]) if (i + head) % 4)
    assert [r.body for r in kept[head:stop:4]] == [r.body for r in full[head:stop:4]]


def test_keys_live_apart_from_the_data(tmp_path: Path) -> None:
    """The keys file can (in production: must) live outside the data directory, and the master
    key file never inside it: a backup of the data then holds no key."""
    from chainaudit.app.privacy import at_rest_from  # noqa: PLC0415
    from chainaudit.app.settings import Settings  # noqa: PLC0415
    from chainaudit.core.records import prepare  # noqa: PLC0415
    from chainaudit.log.store import Log  # noqa: PLC0415

    data, vault = tmp_path / "data", tmp_path / "vault"
    vault.mkdir()
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"kinds": {"transaction": {"encrypt": True}}}))
    secret = base64.b64encode(os.urandom(32)).decode()
    common = {"data_dir": data, "data_policy_file": policy, "master_key": secret}
    with pytest.raises(ConfigError, match="CHAINAUDIT_KEYS_FILE"):
        at_rest_from(Settings(environment="production", **common))  # type: ignore[arg-type]
    at_rest = at_rest_from(
        Settings(environment="production", keys_file=vault / "keys.sqlite", **common)  # type: ignore[arg-type]
    )
    assert at_rest is not None and at_rest.keys_file == vault / "keys.sqlite"
    record = {
        "id": "tx-1",
        "kind": "transaction",
        "timestamp": "2026-11-21T09:30:00Z",
        "actor": "supplier:acme",
        "payload": {"iban": "DE44500105175407324931"},
    }
    with Log.open(data, at_rest=at_rest) as log:
        log.append([prepare(record)])
        assert b"DE445001" in (log.entry("tx-1").body or b"")
    assert (vault / "keys.sqlite").is_file() and not (data / datakeys.KEYS_DB).exists()
    inside = data / "master.key"
    inside.write_text(secret + "\n")
    with pytest.raises(ConfigError, match="inside the data directory"):
        at_rest_from(Settings(data_dir=data, data_policy_file=policy, master_key_file=inside))


def test_a_sealed_log_in_postgresql_keeps_its_keys_there_and_erasure_shreds_them(
    tmp_path: Path, database_url: str
) -> None:
    """With the log in PostgreSQL and no keys file configured, the data keys live in the
    log's database (no ``keys.sqlite``); an append stores them while it holds the log's
    writer lock (no deadlock), a restart reads them, and an erasure leaves no live key row and
    no dead version of it. With ``keys_file`` set they stay in that SQLite file."""
    from chainaudit.core.records import prepare  # noqa: PLC0415
    from chainaudit.log.store import Log  # noqa: PLC0415
    from chainaudit.service.erasure import erase  # noqa: PLC0415

    data = tmp_path / "data"
    at_rest = datakeys.AtRest(os.urandom(32), frozenset({"transaction"}))
    records = [
        prepare(
            {
                "id": f"tx-{i}",
                "kind": "transaction",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "supplier:acme",
                "payload": {"iban": f"DE{i:020d}"},
            }
        )
        for i in range(3)
    ]
    with Log.open(data, at_rest=at_rest, database_url=database_url) as log:
        log.append(records)
        ring = log.keyring()
        assert ring.engine == "postgresql" and ring.count() == 3
    assert not (data / datakeys.KEYS_DB).exists()
    with Log.open(data, at_rest=at_rest, database_url=database_url) as log:  # a restart
        assert b"DE00000000000000000001" in (log.entry("tx-1").body or b"")
        erase(log, "tx-1", reason="a request", basis="GDPR 17", requested_by="a", approved_by="b")
        ring = log.keyring()
        assert ring.count() == 2 and not ring.has_key(1) and ring.has_key(2)
        assert stored_versions(ring) == live_versions(ring)
        assert log.entry("tx-1").body is None and log.entry("tx-2").body is not None
        assert log.audit().clean
    kept = datakeys.AtRest(at_rest.master, at_rest.kinds, tmp_path / "vault.sqlite")
    with Log.open(tmp_path / "other", at_rest=kept, database_url=database_url) as log:
        assert log.keyring().engine == "sqlite"
    assert (tmp_path / "vault.sqlite").is_file()
