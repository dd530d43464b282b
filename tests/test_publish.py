"""``chainaudit publish DIR``: the served bytes as files, full tiles written once, partials
pruned after their full tile, the checkpoint last, growth followed, bad arguments refused."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from chainaudit import note, publish, tlogtiles
from chainaudit.cli import main
from chainaudit.errors import StoreError
from chainaudit.publish import CHECKPOINT, Publisher
from chainaudit.store import Log
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
