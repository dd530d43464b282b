"""The monitor against test-only tiled logs over loopback HTTP: split views, a log that
rewrites its history between polls, follow mode's lines, metrics and webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from chainaudit.chain.devnet import free_port
from chainaudit.cli import main
from chainaudit.core import note
from chainaudit.verify.monitor import Monitor, follow
from chainaudit.verify.state import VerifierState
from tests.tlog.helpers import ORIGIN, entries, serve, write_log


@pytest.fixture(scope="module")
def signer() -> note.Signer:
    return note.Signer.generate(ORIGIN)


def histories() -> tuple[list[bytes], list[bytes]]:
    honest = entries(12)
    forked = list(honest)
    forked[4] = b'{"id":"forged"}'
    return honest, forked


def test_split_view_between_two_read_paths(
    tmp_path: Path, signer: note.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two hand-made read paths of two histories under one key: reported (the end-to-end
    scenario with two real stores and `chainaudit serve` is tests/tlog/test_split_view.py)."""
    honest, forked = histories()
    write_log(tmp_path / "a", honest, signer)
    write_log(tmp_path / "b", forked[:10], signer)  # a shorter, different history
    key = signer.verifier().encode()
    with serve(tmp_path / "a") as a, serve(tmp_path / "b") as b:
        assert main(["monitor", "--log-url", a, "--log-key", key]) == 0
        assert "0 finding(s)" in capsys.readouterr().out
        assert main(["monitor", "--log-url", a, "--log-url", b, "--log-key", key]) == 1
        out = capsys.readouterr().out
        assert f"FINDING split-view {a} {b}" in out and "not one history" in out
        # a checkpoint from elsewhere (a witness's cosigned copy): the forked one is a split
        # view, an older honest one is fine, a larger one means the log serves a stale tree
        witness = note.Signer.generate("witness.test", note.COSIGNATURE_V1)
        files = {}
        for name, history in (("fork", forked), ("old", honest[:7]), ("big", entries(13))):
            signed = write_log(tmp_path / name, history, signer)
            cosigned = signed.with_signatures((witness.sign(signed.text, timestamp=1),))
            files[name] = tmp_path / f"{name}.checkpoint"
            files[name].write_text(cosigned.encode())
        base = ["monitor", "--log-url", a, "--log-key", key, "--checkpoint"]
        assert main([*base, str(files["old"])]) == 0
        assert main([*base, str(files["fork"])]) == 1
        assert f"FINDING split-view {files['fork']} {a}" in capsys.readouterr().out
        assert main([*base, str(files["big"])]) == 1
        assert "FINDING stale" in capsys.readouterr().out
        # a wrong key: the signature finding
        other = note.Signer.generate(ORIGIN).verifier().encode()
        assert main(["monitor", "--log-url", a, "--log-key", other]) == 1
        assert "FINDING signature" in capsys.readouterr().out
    # an unreachable log is not a finding: nothing was proved (exit 2)
    assert main(["monitor", "--log-url", a, "--log-key", key]) == 2
    assert main(["monitor", "--log-url", a, "--log-key", key, "--interval", "1"]) == 2


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()
    thread.join()


def test_follow_reports_a_rewritten_history_once(
    tmp_path: Path, signer: note.Signer, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    """Between two polls the log swaps its history for another of the same size, then grows
    honestly from the forged one: the monitor's state refuses both, each reported once."""
    honest, forked = histories()
    served = tmp_path / "log"
    write_log(served, honest[:8], signer)
    state_file = tmp_path / "state.json"
    metrics = tmp_path / "metrics.prom"
    lines: list[str] = []
    troubles: list[str] = []
    steps = iter([honest, forked, forked + entries(4, "later")])

    def between_polls(_: float) -> None:
        write_log(served, next(steps), signer)

    url, received = webhook
    with serve(served) as base:
        monitor = Monitor([base], signer.verifier(), VerifierState.load(state_file))
        counts = follow(
            monitor,
            interval=0.01,
            max_polls=4,
            report=lambda f: lines.append(f.line()),
            trouble=troubles.append,
            metrics=metrics,
            webhook=url,
            sleep=between_polls,
        )
    assert troubles == []
    assert counts == {"consistency": 2}, lines
    assert "fork detected: two checkpoints of size 12 with different roots" in lines[0]
    assert "fork detected: the checkpoint of size 16" in lines[1]
    assert "not consistent with the remembered size 12" in lines[1]
    assert [body["detail"] for body in received] == [line.split(": ", 1)[1] for line in lines]
    assert {body["kind"] for body in received} == {"consistency"}
    text = metrics.read_text()
    assert 'chainaudit_monitor_findings_total{kind="consistency"} 2' in text
    assert "chainaudit_monitor_polls_total 4" in text
    assert f'chainaudit_monitor_tree_size{{log="{base}"}} 16' in text
    assert json.loads(state_file.read_text())["origins"][ORIGIN]["size"] == 12


def test_follow_from_the_command_line(
    tmp_path: Path, signer: note.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    """--follow prints each finding once however many polls see it; a read path that cannot
    be read is named on stderr while the others are still checked."""
    honest, forked = histories()
    write_log(tmp_path / "a", honest, signer)
    write_log(tmp_path / "b", forked, signer)
    metrics = tmp_path / "m.prom"
    key = signer.verifier().encode()
    with serve(tmp_path / "a") as a, serve(tmp_path / "b") as b:
        with serve(tmp_path / "gone") as gone:
            pass
        args = ["monitor", "--log-key", key, "--log-url", a, "--log-url", b, "--log-url", gone]
        follow_args = ["--follow", "--interval", "0.01", "--max-polls", "3"]
        assert main([*args, *follow_args, "--metrics-file", str(metrics)]) == 0
        captured = capsys.readouterr()
        assert captured.out.count("FINDING split-view") == 1
        assert captured.err.count(f"cannot read {gone}checkpoint") == 3
        assert 'chainaudit_monitor_findings_total{kind="split-view"} 1' in metrics.read_text()
        # one-shot: the finding wins over the unreadable path (exit 1); alone, it is exit 2
        assert main(args) == 1
        assert main(["monitor", "--log-key", key, "--log-url", a, "--log-url", gone]) == 2
