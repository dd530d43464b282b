"""Fixtures of the risk tests: one escrow world per package on the session's Anvil (reverted
after every test), a fresh log per test, and helpers that walk deals through their states."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainaudit.devnet import Devnet
from chainaudit.escrow import MilestoneParams
from chainaudit.indexer import Indexer
from chainaudit.risk import RiskGate, parse_rule_set
from chainaudit.store import Log
from tests.escrow_world import AMOUNT, DAY, World, escrow_devnet, h, make_world, now, snapshot

REPORT = h("inspection report")


@pytest.fixture(scope="package")
def devnet(anvil: Devnet) -> Iterator[Devnet]:
    with escrow_devnet(anvil) as chosen:
        yield chosen


@pytest.fixture(scope="package")
def base(devnet: Devnet) -> World:
    return make_world(devnet)


@pytest.fixture
def world(base: World) -> Iterator[World]:
    with snapshot(base.w3):
        yield base


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
