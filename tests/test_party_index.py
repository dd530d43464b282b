"""The party index the escrow indexer keeps: who is a party of which deal, from the events
it records (an offer makes no party, an accepted financing does), upgraded in place and
checked by the index audit."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainaudit.log import database
from chainaudit.log.store import Log
from chainaudit.service.indexer import Indexer, audit_index, deals_of
from tests.escrow_world import AMOUNT, World, h, now


@pytest.fixture
def log(tmp_path: Path, log_database: str | None) -> Iterator[Log]:
    """The log (and the indexer's tables beside it) on each engine in turn."""
    with Log.open(tmp_path / "data", database_url=log_database) as opened:
        yield opened


def raw(log: Log) -> database.Database:
    """A plain connection to the database of ``log``'s tables (to tamper with them)."""
    return database.connect(log.database_url or log.path)


def _deals(log: Log, world: World, who: str) -> list[int]:
    return deals_of(
        log.path,
        world.client.chain_id,
        world.client.address,
        who,
        database_url=log.database_url,
    )


def _parties(log: Log) -> set[tuple[str, int, str]]:
    db = raw(log)
    rows = {
        (str(p), int(d), str(r))
        for p, d, r in db.execute("SELECT party, deal_id, role FROM escrow_deal_parties")
    }
    db.close()
    return rows


def test_parties_come_from_the_indexed_events(log: Log, world: World) -> None:
    client = world.client
    declared = [
        dataclasses.replace(m, invoice_hash=h(f"invoice {i}"))
        for i, m in enumerate(world.milestones(2))
    ]
    first = client.create_deal(world.buyer, world.params(), declared).deal_id
    second = client.create_deal(
        world.stranger, world.params(supplier=world.approver1.address), world.milestones(1)
    ).deal_id
    assert first is not None and second is not None
    client.fund(world.buyer, first, 0, AMOUNT)
    offered_to = world.approver3
    client.offer_financing(
        world.supplier,
        first,
        1,
        financier=offered_to.address,
        advance=AMOUNT // 2,
        invoice_hash=h("invoice 1"),
        expires_at=now(world.w3) + 86_400,
    )
    indexer = Indexer(log, world.chain, client.address)
    indexer.tick()
    assert _deals(log, world, world.buyer.address) == [first]
    assert _deals(log, world, world.supplier.address) == [first]
    assert _deals(log, world, world.inspector2.address.lower()) == [second, first]
    assert _deals(log, world, world.arbiter.address) == [second, first]
    assert _deals(log, world, world.stranger.address) == [second]
    assert _deals(log, world, offered_to.address) == []  # an offer makes no party
    vault = (log.path, world.client.chain_id, world.client.address)
    found = deals_of(
        *vault, world.arbiter.address, before=second, limit=1, database_url=log.database_url
    )
    assert found == [first]

    funded = world.financier
    client.offer_financing(
        world.supplier,
        first,
        0,
        financier=funded.address,
        advance=AMOUNT // 2,
        invoice_hash=h("invoice 0"),
        expires_at=now(world.w3) + 86_400,
    )
    client.accept_financing(funded, first, 0, advance=AMOUNT // 2, invoice_hash=h("invoice 0"))
    indexer.tick()
    assert _deals(log, world, funded.address) == [first]
    assert audit_index(log) == []
    indexer.close()


def test_an_existing_index_is_backfilled_in_place(log: Log, world: World) -> None:
    deal_id = world.client.create_deal(world.buyer, world.params(), world.milestones(1)).deal_id
    indexer = Indexer(log, world.chain, world.client.address)
    indexer.tick()
    indexer.close()
    before = _parties(log)
    assert (world.buyer.address.lower(), deal_id, "buyer") in before
    db = raw(log)
    db.execute("DROP TABLE escrow_deal_parties")  # as a log indexed by the previous version
    db.close()
    assert _deals(log, world, world.buyer.address) == []
    Indexer(log, world.chain, world.client.address).close()  # opening upgrades it
    assert _parties(log) == before
    assert _deals(log, world, world.buyer.address) == [deal_id]


def test_the_index_audit_names_forged_and_missing_parties(log: Log, world: World) -> None:
    deal_id = world.client.create_deal(world.buyer, world.params(), world.milestones(1)).deal_id
    indexer = Indexer(log, world.chain, world.client.address)
    indexer.tick()
    indexer.close()
    assert audit_index(log) == []
    db = raw(log)
    stranger = world.stranger.address.lower()
    db.execute(
        "UPDATE escrow_deal_parties SET party = ? WHERE party = ? AND role = 'supplier'",
        (stranger, world.supplier.address.lower()),
    )
    db.close()
    details = sorted(f.detail for f in audit_index(log))
    assert details == [
        f"party index: makes {stranger} the supplier of deal {deal_id}, which the event does not",
        f"party index: the event makes {world.supplier.address.lower()} the supplier of deal "
        f"{deal_id}, missing from the party index",
    ]
