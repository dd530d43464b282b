"""Fixtures of the risk tests: one escrow world per package on the session's Anvil (reverted
after every test), a fresh log per test, and helpers that walk deals through their states."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chainaudit.app.deploy import deploy_contracts
from chainaudit.chain.escrow import MilestoneParams
from chainaudit.log.store import Log
from chainaudit.risk import RiskGate, parse_rule_set
from chainaudit.service.anchoring import Anchorer, AnchorPolicy
from chainaudit.service.indexer import KIND as EVENT_KIND
from chainaudit.service.indexer import Indexer
from chainaudit.service.reconcile import ReconcileReport, reconcile
from tests.escrow_world import AMOUNT, DAY, World, h, now

REPORT = h("inspection report")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def log(data_dir: Path) -> Iterator[Log]:
    with Log.open(data_dir) as opened:
        yield opened


def rules(*tables: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A rule document: version, owner and the given rule tables."""
    return {"version": "test", "owner": "risk@example.com", "rules": list(tables), **top}


def gate(log: Log, world: World, *tables: dict[str, Any], **top: Any) -> RiskGate:
    """A gate over ``log`` with the given rules, restricted to the world's vault."""
    return RiskGate(
        log,
        parse_rule_set(rules(*tables, **top)),
        contract=world.client.address,
        chain_id=world.client.chain_id,
    )


def indexer(log: Log, world: World) -> Indexer:
    return Indexer(log, world.chain, world.client.address)


def milestones(
    world: World, tag: str, count: int = 1, amount: int = AMOUNT
) -> list[MilestoneParams]:
    """Milestones whose purchase-order hashes are unique to ``tag``."""
    start = now(world.w3)
    return [
        MilestoneParams(
            amount=amount,
            due_date=start + 30 * DAY * (i + 1),
            document_hash=h(f"purchase order {tag} / {i}"),
        )
        for i in range(count)
    ]


def to_accepted(world: World, deal_id: int, milestone: int = 0) -> None:
    """Ship, inspect (2 of 3) and accept a funded milestone."""
    client = world.client
    client.mark_shipped(world.supplier, deal_id, milestone, h(f"bill of lading {deal_id}"))
    client.attest(world.inspector1, deal_id, milestone, REPORT)
    client.attest(world.inspector2, deal_id, milestone, REPORT)
    client.accept(world.buyer, deal_id, milestone)


@dataclass
class Busy:
    world: World
    log: Log
    anchor: str
    deal_id: int

    def reconcile(self, **options: object) -> ReconcileReport:
        settings: dict[str, object] = {
            "anchor_contract": self.anchor,
            "max_unanchored_seconds": 3600.0,
            "gate_decisions": False,  # the busy deal moves money by direct calls, by design
        }
        settings.update(options)
        return reconcile(self.log, self.world.client, **settings)  # type: ignore[arg-type]

    def event_record(self, name: str) -> str:
        for entry in self.log.scan(kind=EVENT_KIND, limit=10_000):
            if entry.body and json.loads(entry.body)["payload"]["event"] == name:
                return entry.record_id
        raise AssertionError(f"no {name} record")

    def tamper(self, edit: Callable[[sqlite3.Connection], None]) -> None:
        db = sqlite3.connect(self.log.path)
        with db:
            edit(db)
        db.close()


@pytest.fixture
def busy(world: World, log: Log) -> Busy:
    """A deal with a release, a withdrawal and a financed milestone, indexed and anchored."""
    client = world.client
    planned = milestones(world, "rc", 2)
    planned[1] = dataclasses.replace(planned[1], invoice_hash=h("invoice rc"))
    deal_id = client.create_deal(world.buyer, world.params(), planned).deal_id
    client.fund(world.buyer, deal_id, 0, AMOUNT)
    client.fund(world.buyer, deal_id, 1, AMOUNT)
    to_accepted(world, deal_id, 0)
    client.release(world.stranger, deal_id, 0)
    client.withdraw(world.supplier, world.token)
    invoice, advance = h("invoice rc"), AMOUNT * 95 // 100
    client.offer_financing(
        world.supplier,
        deal_id,
        1,
        financier=world.financier.address,
        advance=advance,
        invoice_hash=invoice,
        expires_at=now(world.w3) + DAY,
    )
    client.accept_financing(world.financier, deal_id, 1, advance=advance, invoice_hash=invoice)
    indexer(log, world).tick()
    anchor = deploy_contracts(world.chain, world.admin)["AuditAnchor"].address
    anchorer = Anchorer(log, world.chain, world.admin, anchor, policy=AnchorPolicy(finality=1))
    anchorer.anchor_now(timeout=60)
    anchorer.close()
    return Busy(world, log, anchor, deal_id)
