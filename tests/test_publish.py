"""``chainaudit publish DIR``: the served bytes as files, full tiles written once, partials
pruned after their full tile, the checkpoint last, growth followed, bad arguments refused."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from chainaudit.cli import main
from chainaudit.core import note, tlogtiles
from chainaudit.core.errors import StoreError
from chainaudit.log import publish
from chainaudit.log.publish import CHECKPOINT, Publisher
from chainaudit.log.store import Log
from tests.interop.tiled import ORIGIN, Tiled, make_tiled, serving, sign
from tests.test_tiles import leaf_records


def files(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_published_files_are_the_served_bytes(tmp_path: Path) -> None:
    tiled = make_tiled(tmp_path / "data", size=66_000)
    out = tmp_path / "out"
    with Log.open(tiled.data_dir) as log:
        done = Publisher(log, out).publish()
        checkpoint = log.signed_checkpoint()
    published = files(out)
    assert done.size == 66_000 and done.checkpoint and done.paths[-1] == CHECKPOINT
    assert published.pop(CHECKPOINT).decode() == checkpoint
    expected = {
        ref.path()
        for level in [*range(tlogtiles.levels_for(66_000)), None]
        for ref in tlogtiles.tiles_for(66_000, level)
    }
    # The older checkpoint's partials are not published: the first run starts at the latest.
    assert set(published) == expected
    assert not any(name.startswith(".tmp-") for name in published)
    with serving(tiled) as url, httpx.Client(base_url=url) as client:
        for path in [*sorted(expected)[:20], *sorted(expected)[-20:]]:
            assert client.get(f"/{path}").content == published[path], path


def test_full_tiles_are_written_once_partials_pruned_and_the_checkpoint_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiled = make_tiled(tmp_path / "data", size=300)
    out = tmp_path / "out"
    writes: list[str] = []
    real = publish.write_atomically

    def spy(path: Path, data: bytes) -> None:
        if path.name == CHECKPOINT:  # every tile of its size is on disk by then
            size = note.Checkpoint.parse(note.Note.parse(data).text).size
            for level in [*range(tlogtiles.levels_for(size)), None]:
                for ref in tlogtiles.tiles_for(size, level):
                    assert (out / ref.path()).is_file(), ref.path()
        writes.append(str(path.relative_to(out)))
        real(path, data)

    monkeypatch.setattr(publish, "write_atomically", spy)
    with Log.open(tiled.data_dir) as log:
        publisher = Publisher(log, out)
        publisher.publish()
        assert writes[-1] == CHECKPOINT and (out / "tile/0/001.p/44").is_file()
        full = out / "tile/0/000"
        inode = full.stat().st_ino
        writes.clear()
        assert publisher.publish().written == 0 and writes == []  # nothing new
        log.append(leaf_records(520)[300:])
        sign(log, tiled.signer, 400)
        done = publisher.publish()
        assert writes == ["tile/0/001.p/144", "tile/entries/001.p/144", CHECKPOINT]
        assert (out / "tile/0/001.p/44").is_file()  # tile 1 is not full: both partials kept
        sign(log, tiled.signer, 520)
        writes.clear()
        done = publisher.publish()
        assert writes[-1] == CHECKPOINT and "tile/0/001" in writes and "tile/0/000" not in writes
        assert done.pruned == 2  # tile/0/001.p and tile/entries/001.p, once 001 is full
        assert not (out / "tile/0/001.p").exists() and not (out / "tile/entries/001.p").exists()
        assert full.stat().st_ino == inode  # never rewritten
        assert (out / "tile/0/002.p/8").is_file()
    # A fresh publisher over the same directory rewrites nothing.
    with Log.open(tiled.data_dir) as log:
        writes.clear()
        assert Publisher(log, out).publish().written == 0 and writes == []


def test_follow_publishes_growth(tmp_path: Path) -> None:
    tiled = make_tiled(tmp_path / "data", size=100)
    out = tmp_path / "out"
    stop = threading.Event()
    rounds: list[int] = []
    with Log.open(tiled.data_dir) as reader:
        publisher = Publisher(reader, out)
        thread = threading.Thread(
            target=publisher.follow, args=(0.05, stop, lambda d: rounds.append(d.size))
        )
        thread.start()
        try:
            with Log.open(tiled.data_dir) as writer:
                writer.append(leaf_records(700)[100:])
                sign(writer, tiled.signer, 700)
            deadline = time.monotonic() + 10
            checkpoint = out / CHECKPOINT
            while not checkpoint.is_file() or b"\n700\n" not in checkpoint.read_bytes():
                assert time.monotonic() < deadline, rounds
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join(timeout=10)
    assert rounds[0] == 100 and rounds[-1] == 700
    assert (out / "tile/0/001").is_file() and (out / "tile/entries/002.p/188").is_file()


def test_a_checkpoint_that_does_not_match_the_log_is_not_published(tmp_path: Path) -> None:
    tiled = make_tiled(tmp_path / "data", size=10)
    with Log.open(tiled.data_dir) as log:
        forged = note.sign_checkpoint(tiled.signer, note.Checkpoint(ORIGIN, 10, b"\x01" * 32))
        log.put_signed_checkpoint(10, forged.encode())
        with pytest.raises(StoreError, match="does not match"):
            Publisher(log, tmp_path / "out").publish()
    assert not (tmp_path / "out" / CHECKPOINT).exists()


def test_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tiled: Tiled = make_tiled(tmp_path / "data", size=300)
    data = ["--data-dir", str(tiled.data_dir)]
    out = tmp_path / "out"
    assert main([*data, "publish", str(out), "--json"]) == 0
    assert '"tree_size": 300' in capsys.readouterr().out
    assert (out / "tile/0/001.p/44").is_file()
    assert not (out / "tile/entries").exists()  # entries are off unless the operator says
    monkeypatch.setenv("CHAINAUDIT_TILES_ENTRIES", "true")
    assert main([*data, "publish", str(out), "--json"]) == 0
    assert (out / "tile/entries/001.p/44").is_file()
    assert '"removed": []' in capsys.readouterr().out
    monkeypatch.delenv("CHAINAUDIT_TILES_ENTRIES")
    assert main([*data, "publish", str(out), "--interval", "1"]) == 2
    assert "--interval needs --follow" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main([*data, "publish", str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["--data-dir", str(tmp_path / "none"), "publish", str(out)]) == 2
    assert "no log" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main([*data, "publish"])
    assert usage.value.code == 2
    monkeypatch.setenv("CHAINAUDIT_TILES_ENTRIES", "false")
    assert main([*data, "publish", str(tmp_path / "hashes")]) == 0
    assert not (tmp_path / "hashes" / "tile" / "entries").exists()
    assert (tmp_path / "hashes" / "tile/0/001.p/44").is_file()


def test_without_a_signed_checkpoint_tiles_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Log.open(tmp_path / "data") as log:
        log.append(leaf_records(5))
    assert main(["--data-dir", str(tmp_path / "data"), "publish", str(tmp_path / "out")]) == 0
    assert "no signed checkpoint" in capsys.readouterr().err
    assert sorted(files(tmp_path / "out")) == ["tile/0/000.p/5"]  # entries are off by default


def test_a_short_hash_tile_left_on_disk_is_written_again(tmp_path: Path) -> None:
    tiled = make_tiled(tmp_path / "data", size=300)
    out = tmp_path / "out"
    with Log.open(tiled.data_dir) as log:
        Publisher(log, out).publish()
        (out / "tile/0/000").write_bytes(b"\x00" * 100)  # e.g. an older publisher's crash
        assert Publisher(log, out).publish().paths == ["tile/0/000"]
        assert (out / "tile/0/000").read_bytes() == log.hash_tile(0, 0)


def test_an_entry_bundle_with_an_erased_record_is_withheld(tmp_path: Path) -> None:
    import sqlite3  # noqa: PLC0415

    from tests.tamper import set_body  # noqa: PLC0415

    tiled = make_tiled(tmp_path / "data", size=300)
    db = sqlite3.connect(tiled.data_dir / "log.sqlite")
    set_body(db, 3, None)  # as an erasure leaves it
    db.commit()
    db.close()
    out = tmp_path / "out"
    with Log.open(tiled.data_dir) as log:
        done = Publisher(log, out).publish()
    assert done.withheld == ["tile/entries/000"] and done.checkpoint
    assert (out / "tile/0/000").is_file() and not (out / "tile/entries/000").exists()
    assert (out / "tile/entries/001.p/44").is_file()


def test_publish_never_writes_a_private_kinds_entries(tmp_path: Path) -> None:
    """The data policy's private kinds (personal or encrypted) stay out of published entries;
    their leaf hashes are still published."""
    tiled = make_tiled(tmp_path / "log", size=300)
    out = tmp_path / "out"
    with Log.open(tiled.data_dir) as log:
        kind = log.entry_at(0).kind
        done = Publisher(log, out, withhold=frozenset({kind})).publish()
    assert "tile/entries/000" in done.withheld
    assert not (out / "tile" / "entries" / "000").exists()
    assert (out / "tile" / "0" / "000").stat().st_size == 256 * 32


def test_every_checkpoint_signed_between_rounds_gets_its_partial_tiles(tmp_path: Path) -> None:
    """c2sp.org/tlog-tiles: "Logs MUST serve partial tiles corresponding to tree sizes for
    which a checkpoint was produced", including those signed between two rounds."""
    tiled = make_tiled(tmp_path / "data", size=290)
    out = tmp_path / "out"
    with Log.open(tiled.data_dir) as log:
        publisher = Publisher(log, out)
        publisher.publish()
        log.append(leaf_records(320)[290:])
        for size in (300, 310, 320):
            sign(log, tiled.signer, size)
        done = publisher.publish()
    assert done.size == 320
    for width in (34, 44, 54, 64):  # 290 (the first round), 300, 310, 320
        assert (out / f"tile/0/001.p/{width}").is_file(), width
        assert (out / f"tile/entries/001.p/{width}").is_file(), width
    # A fresh publisher (nothing on disk) publishes the partials of every signed size too,
    # except those whose full tile is published (the spec lets a log delete them then).
    fresh = tmp_path / "fresh"
    with Log.open(tiled.data_dir) as log:
        Publisher(log, fresh).publish()
    assert sorted(p.name for p in (fresh / "tile/0/001.p").iterdir()) == ["34", "44", "54", "64"]


def test_an_erasure_removes_the_published_entry_bundles_holding_the_record(
    tmp_path: Path,
) -> None:
    from tests.test_erasure import erase  # noqa: PLC0415

    tiled = make_tiled(tmp_path / "data", size=300)
    out, other = tmp_path / "out", tmp_path / "other"
    with Log.open(tiled.data_dir) as log:
        publisher = Publisher(log, out)
        publisher.publish()
        Publisher(log, other).publish()
        hashes = {path: data for path, data in files(out).items() if "entries" not in path}
        erase(log, "r-3")  # in tile/entries/000
        erase(log, "r-290")  # in tile/entries/001.p/44 (the partial holds 256..299)
        done = publisher.publish()
        assert sorted(done.removed) == ["tile/entries/000", "tile/entries/001.p/44"]
        assert not (out / "tile/entries/000").exists()
        assert not (out / "tile/entries/001.p/44").exists()
        assert "tile/entries/000" not in done.paths  # not written again
        published = files(out)
        assert all(published[path] == data for path, data in hashes.items())  # hash tiles stay
        assert publisher.publish().removed == []
        # A fresh publisher (erasures made while none ran) checks every bundle on disk.
        assert sorted(Publisher(log, other).publish().removed) == sorted(done.removed)
    assert not (other / "tile/entries/000").exists() and (other / "tile/0/000").is_file()


def test_a_record_too_long_for_a_bundle_length_is_withheld(tmp_path: Path) -> None:
    """A record may be 65,536 bytes (records.MAX_RECORD_BYTES); a bundle's uint16 length
    holds 65,535: that bundle is withheld like an erased one, its leaf hash published."""
    from chainaudit.core import merkle  # noqa: PLC0415
    from chainaudit.core.errors import NotFoundError  # noqa: PLC0415
    from chainaudit.core.records import MAX_RECORD_BYTES, PreparedRecord  # noqa: PLC0415

    tiled = make_tiled(tmp_path / "data", size=260)
    head = b'{"actor":"x","id":"big","kind":"transaction","pad":"'
    body = head + b"a" * (MAX_RECORD_BYTES - len(head) - 2) + b'"}'
    assert len(body) == MAX_RECORD_BYTES
    big = PreparedRecord("big", "transaction", "x", 0, True, body, merkle.hash_leaf(body))
    out = tmp_path / "out"
    with Log.open(tiled.data_dir) as log:
        log.append([big])
        sign(log, tiled.signer, 261)
        with pytest.raises(NotFoundError, match="at leaf 260 is 65536 bytes"):
            log.entry_bundle(1, 5)
        done = Publisher(log, out).publish()
    assert done.checkpoint and done.withheld == ["tile/entries/001.p/5"]
    assert (out / "tile/0/001.p/5").is_file() and (out / "tile/entries/000").is_file()
    with serving(tiled, tiles_entries=True) as url, httpx.Client(base_url=url) as client:
        assert client.get("/tile/entries/001.p/5").status_code == 404
        assert client.get("/tile/0/001.p/5").status_code == 200


def test_follow_survives_a_failed_round(tmp_path: Path) -> None:
    """A round that fails (here a file in the way of a tile directory) is logged and the
    next round tries again, as the monitor's follow loop does."""
    tiled = make_tiled(tmp_path / "data", size=100)
    out = tmp_path / "out"
    out.mkdir()
    blocker = out / "tile"
    blocker.write_text("in the way")  # mkdir tile/0 fails: a real OSError
    stop = threading.Event()
    rounds: list[int] = []
    with Log.open(tiled.data_dir) as reader:
        publisher = Publisher(reader, out)
        thread = threading.Thread(
            target=publisher.follow, args=(0.05, stop, lambda d: rounds.append(d.size))
        )
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while publisher.failures < 2:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert thread.is_alive() and rounds == []
            blocker.unlink()
            while not (out / CHECKPOINT).is_file():
                assert time.monotonic() < deadline, rounds
                time.sleep(0.02)
        finally:
            stop.set()
            thread.join(timeout=10)
    assert rounds == [100] and (out / "tile/0/000.p/100").is_file()
