"""A monitor of a tiled log and its on-chain anchors, from public data only (no API key).

Each :meth:`Monitor.poll` does, for every read path given (``c2sp.org/tlog-tiles``):

``signature``
    fetch ``checkpoint`` and check the log's signature and origin (c2sp.org/tlog-checkpoint);
``tiles``
    recompute the root from the tiles and compare it with the checkpoint's
    (:class:`~chainaudit.verify.tlogclient.TileReader`);
``split-view``
    two signed checkpoints of the same origin, served by different read paths, must be one
    history: equal roots at equal sizes, else an RFC 9162 §2.1.4.2 consistency proof from the
    smaller to the larger, built from the larger one's tiles;
    A signed checkpoint obtained elsewhere (``--checkpoint FILE``: a witness's cosigned one,
    another client's) is compared with the served tree the same way; one larger than the
    served tree is a ``stale`` finding (the log signed more than it serves).
``consistency``
    the checkpoint must be consistent with the one remembered from the previous poll (the
    state file, :mod:`chainaudit.verify.state`): a log that rewrites or rolls back its history
    between polls is reported;
``anchor``
    every on-chain ``AuditAnchor`` checkpoint ``(size, root)`` not yet checked clean must be a
    checkpoint of the served tree: its size at most the served size and its root the tiles'
    root at that size. A finding names the size whose root the anchored root is, if any (the
    tiles are searched up to the served size, at most :data:`MAX_SEARCH` sizes). This is what
    catches a mis-sized anchor: the contract checks the consistency proof's hashes, and the
    genuine proof from 6 to 12 leaves also passes as a proof from 6 to 14.

A finding is a :class:`Finding`. A read path or chain endpoint that cannot be reached is not a
finding (nothing was proved): a read path is left out of the round (:attr:`Monitor.unavailable`),
and when none can be read, or the chain cannot, :meth:`Monitor.poll` raises
:class:`~chainaudit.core.errors.InputError` or
:class:`~chainaudit.core.errors.ChainUnavailableError`. ``chainaudit monitor`` reports these on
stderr; one-shot it exits 2 for them unless there is a finding (exit 1); in follow mode it carries
on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chainaudit.core import merkle, note
from chainaudit.core.errors import InputError, VerificationError
from chainaudit.core.tlogtiles import TILE_WIDTH
from chainaudit.verify.state import VerifierState
from chainaudit.verify.tlogclient import TileReader, TlogClient

__all__ = ["MAX_SEARCH", "Finding", "Monitor", "write_metrics"]

MAX_SEARCH: Final = 1 << 20
"""The most tree sizes searched for the size an anchored root belongs to."""


@dataclass(frozen=True, slots=True)
class Finding:
    """Something the log or its anchors got wrong: ``kind`` (``signature``, ``tiles``,
    ``split-view``, ``stale``, ``consistency``, ``anchor``), where (``source``), and what."""

    kind: str
    source: str
    detail: str

    def line(self) -> str:
        return f"FINDING {self.kind} {self.source}: {self.detail}"

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "source": self.source, "detail": self.detail}


@dataclass
class _View:
    url: str
    checkpoint: note.Checkpoint
    reader: TileReader


@dataclass
class Monitor:
    """Follows the logs at ``log_urls`` (all the same log, signed by ``log_key``) and,
    with ``rpc`` and ``contract``, the anchors of that log on chain."""

    log_urls: Sequence[str]
    log_key: note.Verifier
    state: VerifierState
    rpc: str | None = None
    contract: str | None = None
    chain_id: int | None = None
    timeout: float = 10.0
    checkpoints: dict[str, bytes] = field(default_factory=dict)
    """Signed checkpoints of the log from elsewhere (a witness, another client), by name:
    each must be one history with the served tree (else a ``split-view`` finding)."""
    sizes: dict[str, int] = field(default_factory=dict)
    """The served tree size of each read path at the last poll."""
    unavailable: list[str] = field(default_factory=list)
    """Why each read path left out of the last poll could not be read."""

    def poll(self) -> list[Finding]:
        """One round of checks (see the module); returns the findings, in order. A read path
        that cannot be read is left out of the round and named in :attr:`unavailable`.

        Raises:
            InputError: no read path could be read (nothing was checked).
            ChainUnavailableError: the chain endpoint cannot be reached.
        """
        findings: list[Finding] = []
        self.unavailable = []
        clients = [TlogClient(url, timeout=self.timeout) for url in self.log_urls]
        try:
            views = []
            for client in clients:
                try:
                    view = self._view(client, findings)
                except InputError as exc:
                    self.unavailable.append(str(exc))
                    continue
                if view is not None:
                    views.append(view)
            if len(self.unavailable) == len(clients):
                raise InputError("; ".join(self.unavailable))
            findings += self._split_views(views)
            if views:
                for name, raw in self.checkpoints.items():
                    findings += self._compare_checkpoint(name, raw, views[0])
            for view in views:
                findings += self._remember(view)
            if self.rpc is not None and self.contract is not None and views:
                findings += self._anchors(views[0])
        finally:
            for client in clients:
                client.close()
        return findings

    def _view(self, client: TlogClient, findings: list[Finding]) -> _View | None:
        url = client.base_url
        try:
            checkpoint, _ = note.open_checkpoint(client.checkpoint_note(), self.log_key)
        except VerificationError as exc:
            findings.append(Finding("signature", url, f"the served checkpoint: {exc}"))
            return None
        reader = TileReader(client, checkpoint.size, checkpoint.root)
        try:
            reader.check_root()
        except VerificationError as exc:
            findings.append(Finding("tiles", url, str(exc)))
            return None
        self.sizes[url] = checkpoint.size
        return _View(url, checkpoint, reader)

    def _split_views(self, views: Sequence[_View]) -> list[Finding]:
        findings: list[Finding] = []
        for i, a in enumerate(views):
            for b in views[i + 1 :]:
                small, big = (a, b) if a.checkpoint.size <= b.checkpoint.size else (b, a)
                try:
                    if small.checkpoint.size == big.checkpoint.size:
                        if small.checkpoint.root != big.checkpoint.root:
                            raise VerificationError("the roots differ at the same size")
                    elif small.checkpoint.size:
                        proof = big.reader.consistency_proof(small.checkpoint.size)
                        merkle.verify_consistency(
                            small.checkpoint.size,
                            big.checkpoint.size,
                            proof,
                            small.checkpoint.root,
                            big.checkpoint.root,
                        )
                except VerificationError as exc:
                    findings.append(
                        Finding(
                            "split-view",
                            f"{a.url} {b.url}",
                            f"two signed checkpoints of {a.checkpoint.origin} are not one "
                            f"history: size {a.checkpoint.size} root 0x{a.checkpoint.root.hex()} "
                            f"and size {b.checkpoint.size} root 0x{b.checkpoint.root.hex()} "
                            f"({exc})",
                        )
                    )
        return findings

    def _compare_checkpoint(self, name: str, raw: bytes, view: _View) -> list[Finding]:
        """A checkpoint from elsewhere against the served tree: signed by the log, and the
        same history (RFC 9162 §2.1.4.2, the proof built from the served tiles)."""
        try:
            other, _ = note.open_checkpoint(raw, self.log_key)
        except VerificationError as exc:
            return [Finding("signature", name, f"the checkpoint: {exc}")]
        served, reader = view.checkpoint, view.reader
        if other.size > served.size:
            return [
                Finding(
                    "stale",
                    f"{name} {view.url}",
                    f"the log signed size {other.size} elsewhere but serves size {served.size}",
                )
            ]
        try:
            if other.size == served.size:
                if other.root != served.root:
                    raise VerificationError("the roots differ at the same size")
            elif other.size:
                merkle.verify_consistency(
                    other.size,
                    served.size,
                    reader.consistency_proof(other.size),
                    other.root,
                    served.root,
                )
        except VerificationError as exc:
            return [
                Finding(
                    "split-view",
                    f"{name} {view.url}",
                    f"two signed checkpoints of {served.origin} are not one history: size "
                    f"{other.size} root 0x{other.root.hex()} and the served size {served.size} "
                    f"root 0x{served.root.hex()} ({exc})",
                )
            ]
        return []

    def _remember(self, view: _View) -> list[Finding]:
        reader, checkpoint = view.reader, view.checkpoint

        def proofs(size1: int, size2: int) -> list[bytes]:
            if size2 > reader.size:
                raise VerificationError(
                    f"rollback: the log serves size {reader.size}, it served {size2} before",
                    check="state",
                )
            return reader.consistency_proof(size1, size2)

        try:
            self.state.accept(checkpoint.origin, checkpoint.size, checkpoint.root, proofs=proofs)
        except VerificationError as exc:
            return [Finding("consistency", view.url, str(exc))]
        return []

    def _anchors(self, view: _View) -> list[Finding]:
        from chainaudit.chain.anchor_abi import AUDIT_ANCHOR_ABI  # noqa: PLC0415
        from chainaudit.chain.chain import Chain  # noqa: PLC0415

        assert self.rpc is not None and self.contract is not None
        chain = Chain(self.rpc, timeout=self.timeout)
        actual = chain.chain_id()
        if self.chain_id is not None and actual != self.chain_id:
            raise InputError(f"the endpoint serves chain {actual}, not chain {self.chain_id}")
        if not chain.code_at(self.contract):
            raise InputError(f"there is no contract at {self.contract} on chain {actual}")
        contract = chain.contract(self.contract, AUDIT_ANCHOR_ABI)
        key = f"{actual}/{self.contract}"
        count = int(chain.run("checkpointCount()", contract.functions.checkpointCount().call))
        clean = self.state.anchors.get(key, 0)
        findings: list[Finding] = []
        for seq in range(clean, count):
            size, root, _, _ = chain.run(
                f"checkpoint({seq})", contract.functions.checkpoint(seq).call
            )
            finding = self._check_anchor(view, seq, int(size), bytes(root))
            if finding is None:
                if not findings:
                    self.state.anchors[key] = seq + 1
            else:
                findings.append(finding)
        self.state.save()
        return findings

    def _check_anchor(self, view: _View, seq: int, size: int, root: bytes) -> Finding | None:
        reader = view.reader
        source = f"anchor {seq} of {self.contract}"
        if size <= reader.size:
            if reader.root_at(size) == root:
                return None
            problem = (
                f"anchors size {size} with root 0x{root.hex()}, but the tiles give root "
                f"0x{reader.root_at(size).hex()} at size {size}"
            )
        else:
            problem = (
                f"anchors size {size} with root 0x{root.hex()}, beyond the served tree of "
                f"{reader.size} leaves"
            )
        found = find_size(reader, root)
        if found is not None:
            problem += f"; the tiles support size {found}: the anchored root is its root"
        else:
            searched = min(reader.size, MAX_SEARCH)
            problem += f"; no tree size up to {searched} has that root"
        return Finding("anchor", source, problem)


def find_size(reader: TileReader, root: bytes, limit: int = MAX_SEARCH) -> int | None:
    """The smallest size ``n <= min(reader.size, limit)`` whose root (RFC 9162 §2.1.1) is
    ``root``, by one pass over the authenticated leaf hashes (a stack of perfect subtrees)."""
    stack: list[tuple[int, bytes]] = []
    leaves: list[bytes] = []
    for n in range(1, min(reader.size, limit) + 1):
        index = n - 1
        if index % TILE_WIDTH == 0:
            leaves = reader.tile_hashes(0, index // TILE_WIDTH)
        node, height = leaves[index % TILE_WIDTH], 0
        while stack and stack[-1][0] == height:
            node, height = merkle.hash_children(stack.pop()[1], node), height + 1
        stack.append((height, node))
        folded = stack[-1][1]
        for _, left in reversed(stack[:-1]):
            folded = merkle.hash_children(left, folded)
        if folded == root:
            return n
    return None


def write_metrics(path: Path, counts: dict[str, int], polls: int, sizes: dict[str, int]) -> None:
    """Write Prometheus text-format metrics to ``path`` atomically (for a node exporter's
    textfile collector): findings per kind, polls, and the served tree size per read path.
    Raises :class:`OSError` when ``path``'s directory cannot be written."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_MonitorReading(counts, polls, sizes))
    write_to_textfile(str(path), registry)


class _MonitorReading(Collector):
    """One poll's figures as metric families (a fresh registry each write: the monitor's
    state, not prometheus_client's, holds the counts)."""

    def __init__(self, counts: dict[str, int], polls: int, sizes: dict[str, int]) -> None:
        self.counts, self.polls, self.sizes = counts, polls, sizes

    def collect(self) -> Iterator[Metric]:
        findings = CounterMetricFamily(
            "chainaudit_monitor_findings",
            "Findings the monitor reported, by kind.",
            labels=["kind"],
        )
        for kind, n in sorted(self.counts.items()):
            findings.add_metric([kind], n)
        yield findings
        yield CounterMetricFamily(
            "chainaudit_monitor_polls", "Polls the monitor completed.", value=self.polls
        )
        sizes = GaugeMetricFamily(
            "chainaudit_monitor_tree_size", "The tree size each read path serves.", labels=["log"]
        )
        for url, size in sorted(self.sizes.items()):
            sizes.add_metric([url], size)
        yield sizes


def post_webhook(url: str, finding: Finding, *, timeout: float = 5.0) -> str | None:
    """POST the finding as JSON to ``url``; returns an error message, or ``None``."""
    body: dict[str, Any] = {**finding.to_json(), "time": int(time.time())}
    try:
        response = httpx.post(url, json=body, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        return f"webhook {url}: {exc}"
    if response.status_code >= 300:
        return f"webhook {url}: answered {response.status_code}"
    return None


def follow(
    monitor: Monitor,
    *,
    interval: float,
    max_polls: int | None,
    report: Callable[[Finding], None],
    trouble: Callable[[str], None],
    metrics: Path | None = None,
    webhook: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, int]:
    """Poll every ``interval`` seconds (``max_polls`` times, or forever): each finding is
    reported once (``report``, the metric, the webhook); an unreachable log or chain is passed
    to ``trouble`` and the next poll tries again. Returns the findings counted per kind."""
    from chainaudit.core.errors import ChainError  # noqa: PLC0415

    counts: dict[str, int] = {}
    seen: set[Finding] = set()
    polls = 0
    while max_polls is None or polls < max_polls:
        try:
            findings = monitor.poll()
            for message in monitor.unavailable:
                trouble(message)
        except (InputError, ChainError) as exc:
            trouble(str(exc))
            findings = []
        polls += 1
        for finding in findings:
            if finding in seen:
                continue
            seen.add(finding)
            counts[finding.kind] = counts.get(finding.kind, 0) + 1
            report(finding)
            if webhook is not None and (error := post_webhook(webhook, finding)) is not None:
                trouble(error)
        if metrics is not None:
            write_metrics(metrics, counts, polls, monitor.sizes)
        if max_polls is None or polls < max_polls:
            sleep(interval)
    return counts


def dumps(findings: Sequence[Finding]) -> str:
    return json.dumps([f.to_json() for f in findings], indent=2)
