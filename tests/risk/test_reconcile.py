"""Reconciliation on a real Anvil and a real log: clean after a busy deal, then each kind of
difference injected for real — a deleted, an altered and a forged event record, tokens sent
to the vault behind the contract's back, records left unanchored past the batch interval."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chainaudit.cli import main
from chainaudit.core.records import prepare
from chainaudit.service.indexer import KIND as EVENT_KIND
from chainaudit.service.reconcile import ReconcileReport
from tests.escrow_world import AMOUNT
from tests.risk.conftest import Busy, indexer
from tests.tamper import delete_record, replace_in_body


def kinds(report: ReconcileReport) -> set[str]:
    return {d.kind for d in report.differences}


def test_a_busy_vault_reconciles_and_the_report_is_recorded(busy: Busy) -> None:
    report = busy.reconcile()
    assert report.clean, report.differences
    assert report.checked["chain_events"] == report.checked["indexed_events"] > 10
    assert report.checked["deals"] == 1 and report.checked["milestones"] == 2
    assert report.anchored_size > 0 and report.record_id is not None
    body = busy.log.entry(report.record_id).body
    assert body is not None
    recorded = json.loads(body)["payload"]
    assert recorded["type"] == "reconciliation" and recorded["clean"] is True
    assert recorded["difference_count"] == 0


def test_a_deleted_event_record_is_a_missing_event(busy: Busy) -> None:
    victim = busy.event_record("MilestoneReleased")
    busy.tamper(lambda db: delete_record(db, victim))
    report = busy.reconcile()
    missing = [d for d in report.differences if d.kind == "missing_event"]
    assert len(missing) == 1 and "MilestoneReleased" in missing[0].subject
    # the books built from the remaining events disagree with the contract as well
    assert {"milestone", "accounting", "credit"} <= kinds(report)


def test_an_altered_event_record_is_reported_with_both_versions(busy: Busy) -> None:
    victim = busy.event_record("MilestoneFunded")
    busy.tamper(
        lambda db: replace_in_body(db, victim, f'"amount":"{AMOUNT}"', f'"amount":"{AMOUNT - 1}"')
    )
    report = busy.reconcile()
    altered = [d for d in report.differences if d.kind == "altered_event"]
    assert [d.subject for d in altered] == [f"record {victim}"]
    assert str(AMOUNT - 1) in altered[0].detail and str(AMOUNT) in altered[0].detail
    funded = [d for d in report.differences if d.kind == "milestone" and "funded" in d.detail]
    assert funded and (funded[0].chain, funded[0].log) == (str(AMOUNT), str(AMOUNT - 1))


@pytest.mark.parametrize("submitter", [None, "key:mallory", "service:risk"])
def test_a_forged_event_record_is_reported_and_changes_no_book(
    busy: Busy, submitter: str | None
) -> None:
    """An escrow event written behind the indexer's back (no submitter, a partner's key, or
    another service) is named by reconcile and never replayed: the books stay as the chain's."""
    client = busy.world.client
    last = busy.log.entry(busy.event_record("ReceivableFinanced")).body or b""
    last_block = json.loads(last)["payload"]["block_number"]
    forged = prepare(
        {
            "id": "escrow:forged:1",
            "kind": EVENT_KIND,
            "timestamp": "2026-01-01T00:00:00Z",
            "actor": "chainaudit:indexer",
            "payload": {
                "type": "event",
                "chain_id": client.chain_id,
                "contract": client.address,
                "block_number": last_block,
                "block_hash": "0x" + "11" * 32,
                "tx_hash": "0x" + "22" * 32,
                "tx_from": busy.world.buyer.address,
                "log_index": 0,
                "event": "MilestoneFunded",
                "deal_id": str(busy.deal_id),
                "args": {
                    "dealId": str(busy.deal_id),
                    "milestone": 0,
                    "buyer": busy.world.buyer.address,
                    "amount": "5",
                    "fundedTotal": "5",
                },
            },
        },
        submitter=submitter,
    )
    busy.log.append([forged])
    report = busy.reconcile(append=False)
    assert [(d.kind, d.subject) for d in report.differences] == [
        ("unentitled_record", "record escrow:forged:1")
    ]
    assert (submitter or "no submitter") in report.differences[0].detail


def test_an_entitled_event_record_the_chain_never_emitted_is_an_extra_event(busy: Busy) -> None:
    """An event stamped by the indexer itself but absent on chain (a record altered in place
    after it was written, say) is still compared with the chain and replayed."""
    client = busy.world.client
    last = busy.log.entry(busy.event_record("ReceivableFinanced")).body or b""
    last_block = json.loads(last)["payload"]["block_number"]
    forged = prepare(
        {
            "id": "escrow:forged:2",
            "kind": EVENT_KIND,
            "timestamp": "2026-01-01T00:00:00Z",
            "actor": "chainaudit:indexer",
            "payload": {
                "type": "event",
                "chain_id": client.chain_id,
                "contract": client.address,
                "block_number": last_block,
                "block_hash": "0x" + "11" * 32,
                "tx_hash": "0x" + "22" * 32,
                "tx_from": busy.world.buyer.address,
                "log_index": 0,
                "event": "MilestoneFunded",
                "deal_id": str(busy.deal_id),
                "args": {
                    "dealId": str(busy.deal_id),
                    "milestone": 0,
                    "buyer": busy.world.buyer.address,
                    "amount": "5",
                    "fundedTotal": "5",
                },
            },
        },
        submitter="service:indexer",
    )
    busy.log.append([forged])
    report = busy.reconcile()
    extra = [d for d in report.differences if d.kind == "extra_event"]
    assert [d.subject for d in extra] == ["record escrow:forged:2"]
    assert {"balance", "milestone"} <= kinds(report)  # replayed, it breaks the books too


def test_tokens_sent_to_the_vault_directly_are_a_balance_mismatch(busy: Busy) -> None:
    world = busy.world
    client = world.client
    gift = 123_456
    client.transact(world.buyer, client.token(world.token).functions.transfer(client.address, gift))
    indexer(busy.log, world).tick()  # nothing to index, but the cursor reaches the transfer
    report = busy.reconcile()
    assert kinds(report) == {"balance"}, report.differences
    surplus = [d for d in report.differences if "surplus" in d.detail]
    assert len(surplus) == 1 and int(surplus[0].chain or 0) - int(surplus[0].log or 0) == gift
    assert len(report.differences) == 2  # against the contract's books and against the events


def test_records_left_unanchored_past_the_batch_interval(busy: Busy) -> None:
    busy.log.append(
        [
            prepare(
                {
                    "id": "late-1",
                    "kind": "document",
                    "timestamp": "2026-01-01T00:00:00Z",
                    "actor": "inspector:sgs",
                    "payload": {"lot": 1},
                }
            )
        ]
    )
    assert busy.reconcile(append=False).clean  # within the interval
    time.sleep(0.15)
    report = busy.reconcile(max_unanchored_seconds=0.1)
    assert kinds(report) == {"unanchored"}
    assert report.differences[0].subject == f"leaves [{report.anchored_size}, {report.tree_size})"


def test_reconcile_command_exit_codes(
    busy: Busy, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = busy.world
    monkeypatch.setenv("CHAINAUDIT_RPC_URL", world.devnet.rpc_url)
    monkeypatch.setenv("CHAINAUDIT_ANCHOR_CONTRACT", busy.anchor)
    base = ["--data-dir", str(data_dir), "reconcile", "--escrow", world.client.address]
    base.append("--no-gate-decisions")  # the busy deal moves money by direct calls
    assert main([*base, "--max-unanchored-seconds", "3600"]) == 0
    client = world.client
    client.transact(world.buyer, client.token(world.token).functions.transfer(client.address, 1))
    assert main([*base, "--index", "--max-unanchored-seconds", "3600", "--json"]) == 1
