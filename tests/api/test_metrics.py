"""``/metrics`` over real HTTP: every metric keeps its name, type, labels and help text (pinned
from the hand-written exposition prometheus_client replaced), and the values count what the
requests did."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from chainaudit.app.metrics import MULTIPROC_ENV, ApiMetrics, LogReading
from chainaudit.chain.devnet import free_port
from chainaudit.log.store import DB_NAME
from chainaudit.service.keys import KeyStore
from chainaudit.verify.monitor import write_metrics
from tests.api.conftest import Api, database_url_for, open_log
from tests.api.test_records_api import record

# name: (type, help, label names of its samples) -- as the hand-written exposition had them.
PINNED: dict[str, tuple[str, str, frozenset[str]]] = {
    "chainaudit_log_size": ("gauge", "Leaves in the log.", frozenset()),
    "chainaudit_records_appended_total": (
        "counter",
        "Records appended through this API process.",
        frozenset(),
    ),
    "chainaudit_anchors": ("gauge", "Anchors by status.", frozenset({"status"})),
    "chainaudit_anchor_lag_records": (
        "gauge",
        "Leaves not yet in an anchored checkpoint.",
        frozenset(),
    ),
    "chainaudit_anchor_lag_seconds": (
        "gauge",
        "Age of the oldest leaf not yet anchored.",
        frozenset(),
    ),
    "chainaudit_integrity_alarms_total": (
        "counter",
        "Integrity alarms in the log: a service record whose id another record had taken, "
        "written under a derived id.",
        frozenset({"alarm"}),
    ),
    "chainaudit_record_index_lag_records": (
        "gauge",
        "Leaves the record index has not indexed yet (record lists index them before answering).",
        frozenset(),
    ),
    "chainaudit_http_requests_total": (
        "counter",
        "Requests by method, route and status.",
        frozenset({"method", "route", "status"}),
    ),
    "chainaudit_http_request_seconds": ("histogram", "Request latency.", frozenset({"route"})),
}
BUCKETS = ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "+Inf"]
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class Exposition:
    """The Prometheus text format, read line by line (no library: the test pins the text)."""

    helps: dict[str, str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, name: str, **labels: str) -> float:
        found = [v for n, ls, v in self.samples if n == name and ls == labels]
        assert len(found) == 1, (name, labels, found)
        return found[0]


def parse(text: str) -> Exposition:
    out = Exposition()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, text_ = line[len("# HELP ") :].partition(" ")
            out.helps[name] = text_
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            out.types[name] = kind
        elif line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, line
            labels = dict(LABEL.findall(match.group(2) or ""))
            out.samples.append((match.group(1), labels, float(match.group(3))))
    return out


def family(sample: str, types: dict[str, str]) -> str:
    """The metric a sample belongs to (a histogram's ``_bucket``/``_count``/``_sum``)."""
    for suffix in ("_bucket", "_count", "_sum"):
        base = sample.removesuffix(suffix)
        if base != sample and types.get(base) == "histogram":
            return base
    return sample


def test_metrics_keep_their_names_types_labels_and_help(api: Api) -> None:
    with api.client("operator") as operator:
        assert operator.post("/v1/records", json=record(1)).status_code == 201
        batch = {"records": [record(i) for i in range(2, 5)]}
        assert operator.post("/v1/records/batch", json=batch).status_code == 201
    with api.client("auditor") as auditor:
        assert auditor.get("/v1/records/api-2/proof").status_code == 200
        assert auditor.get("/v1/records/absent/proof").status_code == 404
        answer = auditor.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    got = parse(answer.text)
    assert got.types == {name: kind for name, (kind, _, _) in PINNED.items()}
    assert got.helps == {name: help_ for name, (_, help_, _) in PINNED.items()}
    for name, labels, _ in got.samples:
        base = family(name, got.types)
        assert base in PINNED, name  # no new series (e.g. no ``_created``)
        expected = set(PINNED[base][2]) | ({"le"} if name.endswith("_bucket") else set())
        assert set(labels) == expected, (name, labels)
    # The values: 4 records, the log also holds the action record after each of the 2 writes.
    assert got.value("chainaudit_log_size") == 6
    assert got.value("chainaudit_records_appended_total") == 4
    assert got.value("chainaudit_anchor_lag_records") == 6
    assert got.value("chainaudit_integrity_alarms_total", alarm="id-conflict") == 0
    statuses = {ls["status"] for n, ls, _ in got.samples if n == "chainaudit_anchors"}
    assert statuses == {"pending", "submitted", "confirmed", "final", "superseded"}
    proof = "/v1/records/{record_id}/proof"
    for method, route, status in (
        ("POST", "/v1/records", "201"),
        ("POST", "/v1/records/batch", "201"),
        ("GET", proof, "200"),
        ("GET", proof, "404"),
    ):
        labels = {"method": method, "route": route, "status": status}
        assert got.value("chainaudit_http_requests_total", **labels) == 1
    les = [
        ls["le"]
        for n, ls, _ in got.samples
        if n == "chainaudit_http_request_seconds_bucket" and ls["route"] == proof
    ]
    assert les == BUCKETS
    assert got.value("chainaudit_http_request_seconds_count", route=proof) == 2
    assert got.value("chainaudit_http_request_seconds_bucket", route=proof, le="+Inf") == 2
    assert 0 < got.value("chainaudit_http_request_seconds_sum", route=proof) < 60


# -- across processes (multiprocess mode) ----------------------------------------------------


def run_python(code: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


@contextmanager
def serve_app(data_dir: Path, env: dict[str, str], log: Path) -> Iterator[tuple[str, str]]:
    """`chainaudit serve` in its own process over ``data_dir`` (no chain); yields its URL and
    an operator's token. Its stores are on the test's engine, a database of its own."""
    data_dir.mkdir(parents=True)
    database_url = database_url_for(data_dir)
    open_log(data_dir).close()
    keys = KeyStore(data_dir / DB_NAME, database_url=database_url)
    env = {k: v for k, v in env.items() if k != "CHAINAUDIT_DATABASE_URL"}
    if database_url is not None:
        env["CHAINAUDIT_DATABASE_URL"] = database_url
    token = keys.create("operator", name="metrics")[1]
    keys.close()
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "chainaudit", "serve", "--port", str(port)],
            env={**env, "CHAINAUDIT_DATA_DIR": str(data_dir)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield url, token
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_two_processes_counts_add_up_in_one_exposition(tmp_path: Path) -> None:
    """Two API processes share a multiprocess directory (as the workers of ``serve --workers``
    do): each counts its own appends and requests, and either one's /metrics answers the sum
    of both, with the same names, types and help texts; values of a previous run left in the
    directory are cleared by :func:`prepare_multiprocess_dir` first."""
    shared = tmp_path / "prometheus"
    env = {
        **os.environ,
        MULTIPROC_ENV: str(shared),
        "CHAINAUDIT_RPC_URL": f"http://127.0.0.1:{free_port()}",  # no chain: not needed
        "CHAINAUDIT_METRICS_PUBLIC": "true",
    }
    shared.mkdir()
    # a previous run's counts, left behind in the directory
    run_python("from chainaudit.app.metrics import ApiMetrics; ApiMetrics().appended(1000)", env)
    assert list(shared.iterdir())
    run_python(
        "from pathlib import Path; from chainaudit.app.metrics import prepare_multiprocess_dir; "
        f"prepare_multiprocess_dir(Path({str(shared)!r}))",
        env,
    )
    assert not list(shared.iterdir())
    with (
        serve_app(tmp_path / "a", env, tmp_path / "a.log") as (a, token_a),
        serve_app(tmp_path / "b", env, tmp_path / "b.log") as (b, token_b),
    ):
        for url, token, ids in ((a, token_a, range(2)), (b, token_b, range(2, 5))):
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                for i in ids:
                    assert client.post("/v1/records", json=record(i)).status_code == 201
        scrapes = [parse(httpx.get(f"{url}/metrics", timeout=30).text) for url in (a, b)]
    for got in scrapes:
        assert got.types == {name: kind for name, (kind, _, _) in PINNED.items()}
        assert got.helps == {name: help_ for name, (_, help_, _) in PINNED.items()}
        assert got.value("chainaudit_records_appended_total") == 2 + 3  # not 1005
        post = {"method": "POST", "route": "/v1/records", "status": "201"}
        assert got.value("chainaudit_http_requests_total", **post) == 5
        assert got.value("chainaudit_http_request_seconds_count", route="/v1/records") == 5
    # the log readings are each server's own database: a has 2 records and 2 action records
    assert scrapes[0].value("chainaudit_log_size") == 4
    assert scrapes[1].value("chainaudit_log_size") == 6


def test_one_process_counts_alone(tmp_path: Path) -> None:
    """Without the shared directory each app counts only its own (as before): two apps in one
    process do not see each other's counts."""
    first, second = ApiMetrics(), ApiMetrics()
    first.appended(3)
    first.observe("GET", "/healthz", 200, 0.002)
    reading = LogReading(0, {}, 0, 0.0, 0, 0)
    one = parse(first.exposition(reading))
    other = parse(second.exposition(reading))
    assert one.value("chainaudit_records_appended_total") == 3
    assert other.value("chainaudit_records_appended_total") == 0
    assert one.value("chainaudit_http_request_seconds_bucket", route="/healthz", le="0.001") == 0
    assert one.value("chainaudit_http_request_seconds_bucket", route="/healthz", le="0.0025") == 1
    assert not [n for n, _, _ in other.samples if n.startswith("chainaudit_http_request")]
    assert MULTIPROC_ENV not in os.environ


def test_the_monitors_textfile_keeps_its_metrics(tmp_path: Path) -> None:
    """``chainaudit monitor --metrics-file``: the same names, types, help texts and labels as
    the hand-written file had; a read path's URL is escaped as a label value; the file is
    replaced whole (no temporary file left beside it)."""
    path = tmp_path / "monitor.prom"
    write_metrics(path, {"consistency": 2}, 4, {'http://a/"x"\\': 16, "http://b/": 9})
    write_metrics(path, {"consistency": 2, "split-view": 1}, 5, {"http://b/": 12})
    got = parse(path.read_text())
    assert got.types == {
        "chainaudit_monitor_findings_total": "counter",
        "chainaudit_monitor_polls_total": "counter",
        "chainaudit_monitor_tree_size": "gauge",
    }
    assert got.helps == {
        "chainaudit_monitor_findings_total": "Findings the monitor reported, by kind.",
        "chainaudit_monitor_polls_total": "Polls the monitor completed.",
        "chainaudit_monitor_tree_size": "The tree size each read path serves.",
    }
    assert got.value("chainaudit_monitor_findings_total", kind="split-view") == 1
    assert got.value("chainaudit_monitor_polls_total") == 5
    assert [(n, ls) for n, ls, _ in got.samples if n == "chainaudit_monitor_tree_size"] == [
        ("chainaudit_monitor_tree_size", {"log": "http://b/"})
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["monitor.prom"]
    write_metrics(path, {}, 1, {'http://a/"x"\\': 16})
    assert 'chainaudit_monitor_tree_size{log="http://a/\\"x\\"\\\\"} 16' in path.read_text()


FORKED_WORKERS = """
import json, os, sys
from pathlib import Path
from chainaudit.app.metrics import (
    ApiMetrics, LogReading, mark_process_dead, prepare_multiprocess_dir,
)

# the parent imported prometheus_client (above) before the directory was chosen
prepare_multiprocess_dir(Path(sys.argv[1]))
children = []
for n in (2, 3):
    pid = os.fork()
    if pid == 0:  # a worker builds its metrics after the fork, counts, and exits
        metrics = ApiMetrics()
        metrics.appended(n)
        for _ in range(n):
            metrics.observe("POST", "/v1/records", 201, 0.003)
        mark_process_dead()
        os._exit(0)
    children.append(pid)
for pid in children:
    assert os.waitpid(pid, 0)[1] == 0
print(ApiMetrics().exposition(LogReading(0, {}, 0, 0.0, 0, 0)))
"""


def test_workers_forked_after_the_directory_is_prepared_add_up(tmp_path: Path) -> None:
    """The pre-fork flow in one real parent: it prepares the directory (after
    prometheus_client was imported), forks two workers that count and exit, then its
    exposition is the sum of both."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"stale")  # a previous run's file: removed
    (shared / "notes.txt").write_text("kept")  # anything else: left alone
    env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
    done = subprocess.run(
        [sys.executable, "-c", FORKED_WORKERS, str(shared)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    got = parse(done.stdout)
    assert got.value("chainaudit_records_appended_total") == 2 + 3
    post = {"method": "POST", "route": "/v1/records", "status": "201"}
    assert got.value("chainaudit_http_requests_total", **post) == 5
    bucket = {"route": "/v1/records", "le": "0.005"}
    assert got.value("chainaudit_http_request_seconds_bucket", **bucket) == 5
    assert got.types["chainaudit_http_request_seconds"] == "histogram"
    assert (shared / "notes.txt").read_text() == "kept"
    assert not (shared / "counter_1.db").exists()
