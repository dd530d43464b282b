"""The API's Prometheus metrics with ``prometheus_client``, in one process or summed over the
pre-forked workers of ``chainaudit serve --workers N`` (its multiprocess mode).

Two kinds of metric, two sources:

* **Process counters** (:class:`ApiMetrics`): records appended, requests by method, route and
  status, request latency. Each process counts its own; in multiprocess mode (the environment
  variable :data:`MULTIPROC_ENV` names a directory) each process writes them to its own files
  there and ``/metrics`` answers their sum, whichever worker serves the scrape.
* **Log readings** (:class:`LogReading`): the log's size, anchors by status, anchor lag,
  integrity alarms, record index lag. They describe the shared database, not a process, so
  the process answering the scrape reads them then (as before): no per-process copy is kept
  and no multiprocess mode applies (see :func:`_log_families` for each gauge).

The pre-fork parent calls :func:`prepare_multiprocess_dir` once before it forks (a fresh, empty
directory: values of a previous run would otherwise be added to this run's), each worker calls
:func:`mark_process_dead` as it exits. A process that never sees the variable, e.g. a plain
``chainaudit serve`` or a test, counts in memory as before.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "ANCHOR_STATUSES",
    "LATENCY_BUCKETS",
    "MULTIPROC_ENV",
    "ApiMetrics",
    "LogReading",
    "mark_process_dead",
    "multiprocess_dir",
    "prepare_multiprocess_dir",
]

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable naming the directory the worker processes share (read by
``prometheus_client`` itself)."""

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper bounds (seconds) of ``chainaudit_http_request_seconds``' buckets (and ``+Inf``)."""

ANCHOR_STATUSES: Final = ("pending", "submitted", "confirmed", "final", "superseded")
"""Every status ``chainaudit_anchors`` reports, zero or not."""

# No ``<name>_created`` series beside each counter and histogram: the metric names stay those
# of the hand-written exposition this module replaced (and multiprocess mode has none).
disable_created_metrics()  # type: ignore[no-untyped-call]


def multiprocess_dir() -> Path | None:
    """The shared directory of multiprocess mode, or ``None`` when this process counts alone."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def prepare_multiprocess_dir(path: Path) -> Path:
    """Make ``path`` the directory of multiprocess mode, emptied of any earlier values, and
    switch this process (hence the workers it forks afterwards) to it; returns ``path``.

    Precondition: called by the pre-fork parent before it forks and before any worker builds
    its app. Creates ``path`` if needed and removes the value files (``*.db``) a previous run
    left there (they would be added to this run's); nothing else in it is touched. Sets
    :data:`MULTIPROC_ENV`, which the workers inherit, and selects ``prometheus_client``'s
    file-backed values in this process (it chooses them when first imported, which may have
    happened before). Raises :class:`OSError` when ``path`` cannot be created or cleaned.
    """
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    _use_files()
    return path


def mark_process_dead(pid: int | None = None) -> None:
    """Tell the shared directory that worker ``pid`` (default: this process) has exited: its
    live-only values are dropped; its counters stay in the sums (they happened). A no-op
    outside multiprocess mode. Call it from the worker as it exits, or from the parent once
    it has reaped the worker."""
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(os.getpid() if pid is None else pid, str(directory))  # type: ignore[no-untyped-call]


def _use_files() -> None:
    """Select the file-backed value class when :data:`MULTIPROC_ENV` is set but
    ``prometheus_client`` was imported before it was (its value class is chosen at import)."""
    if multiprocess_dir() is not None and not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class LogReading:
    """What ``/metrics`` reads from the database at scrape time."""

    size: int
    """Leaves in the log."""
    anchors: Mapping[str, int]
    """Anchors by status (a status absent here is reported as 0)."""
    anchor_lag_records: int
    anchor_lag_seconds: float
    integrity_alarms: int
    record_index_lag: int


def _log_families(reading: LogReading) -> Iterator[Metric]:
    """The log readings as metric families. Each gauge below is read from the shared database
    by the process answering the scrape, so every worker would report the same value at the
    same moment: none is stored per process, hence none needs a multiprocess mode. (Were they
    stored, ``mostrecent`` would be the mode: ``livesum``/``sum`` would multiply them by the
    number of workers, ``max`` would keep a stale lag after it shrank.)"""
    # gauge: the log only grows; read now, it is the freshest value any worker could give.
    size = GaugeMetricFamily("chainaudit_log_size", "Leaves in the log.", value=reading.size)
    yield size
    # gauge by status: anchors move between statuses, so the counts go up and down.
    anchors = GaugeMetricFamily("chainaudit_anchors", "Anchors by status.", labels=["status"])
    for status in ANCHOR_STATUSES:
        anchors.add_metric([status], reading.anchors.get(status, 0))
    yield anchors
    # gauges: the lag shrinks at each anchor, grows with each append.
    yield GaugeMetricFamily(
        "chainaudit_anchor_lag_records",
        "Leaves not yet in an anchored checkpoint.",
        value=reading.anchor_lag_records,
    )
    yield GaugeMetricFamily(
        "chainaudit_anchor_lag_seconds",
        "Age of the oldest leaf not yet anchored.",
        value=round(reading.anchor_lag_seconds, 3),
    )
    # a counter read from the log: alarms are records, they are never removed.
    alarms = CounterMetricFamily(
        "chainaudit_integrity_alarms",
        "Integrity alarms in the log: a service record whose id another record had taken, "
        "written under a derived id.",
        labels=["alarm"],
    )
    alarms.add_metric(["id-conflict"], reading.integrity_alarms)
    yield alarms
    # gauge: the index catches up, the log grows.
    yield GaugeMetricFamily(
        "chainaudit_record_index_lag_records",
        "Leaves the record index has not indexed yet (record lists index them before answering).",
        value=reading.record_index_lag,
    )


class _Reading(Collector):
    def __init__(self, reading: LogReading) -> None:
        self.reading = reading

    def collect(self) -> Iterator[Metric]:
        return _log_families(self.reading)


class ApiMetrics:
    """One API process's counters and latency histogram (thread-safe), and the exposition.

    Outside multiprocess mode each instance counts alone (its own registry: several apps in
    one process, as in the tests, do not share counts). In multiprocess mode every worker's
    values live in the shared directory and :meth:`exposition` sums them all.
    """

    def __init__(self) -> None:
        _use_files()
        self._registry = CollectorRegistry(auto_describe=True)
        self._appended = Counter(
            "chainaudit_records_appended",
            "Records appended through this API process.",
            registry=self._registry,
        )
        self._requests = Counter(
            "chainaudit_http_requests",
            "Requests by method, route and status.",
            ["method", "route", "status"],
            registry=self._registry,
        )
        self._latency = Histogram(
            "chainaudit_http_request_seconds",
            "Request latency.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self._registry,
        )
        directory = multiprocess_dir()
        if directory is None:
            self._exposed = self._registry
        else:
            self._exposed = CollectorRegistry(auto_describe=False)
            multiprocess.MultiProcessCollector(self._exposed, str(directory))  # type: ignore[no-untyped-call]

    def appended(self, records: int) -> None:
        """Count ``records`` (>= 0) appended by this process's writer."""
        self._appended.inc(records)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request answered with ``status`` after ``seconds``."""
        self._requests.labels(method, route, str(status)).inc()
        self._latency.labels(route).observe(seconds)

    def exposition(self, reading: LogReading) -> str:
        """The Prometheus text format: ``reading``'s gauges, then the process counters (this
        process's, or every worker's sum in multiprocess mode)."""
        log = CollectorRegistry(auto_describe=False)
        log.register(_Reading(reading))
        return (generate_latest(log) + generate_latest(self._exposed)).decode()
