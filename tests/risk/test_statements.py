"""Per-party statements from a busy vault: every movement with its record, anchored lines
with proof bundles that verify against the chain, pending lines for what came after the
anchor; CSV and JSON exports through the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from chainaudit.cli import main
from chainaudit.core.bundle import parse_bundle
from chainaudit.service.anchoring import AnchorBook
from chainaudit.service.statements import CSV_COLUMNS, build_statement
from chainaudit.verify.verifier import verify_bundle
from tests.escrow_world import AMOUNT
from tests.risk.conftest import Busy, indexer

ADVANCE = AMOUNT * 95 // 100


def test_supplier_statement_lists_every_movement_with_its_proof(busy: Busy) -> None:
    world, log = busy.world, busy.log
    book = AnchorBook(log)
    statement = build_statement(log, book, world.supplier.address.lower(), bundles=True)
    assert statement.party == world.supplier.address  # checksummed
    kinds = [(line.kind, line.direction, line.amount) for line in statement.lines]
    assert kinds == [
        ("release", "in", AMOUNT),
        ("withdrawal", "out", AMOUNT),
        ("advance_received", "in", ADVANCE),
    ]
    assert all(line.proof_status in ("anchored", "final") for line in statement.lines)
    assert statement.totals[world.token] == {
        "paid_in": 0,
        "credited": AMOUNT + ADVANCE,
        "withdrawn": AMOUNT,
        "credit": ADVANCE,
    }
    assert statement.totals[world.token]["credit"] == world.client.credit_of(
        world.supplier.address, world.token
    )
    release = statement.lines[0]
    assert log.entry(release.record_id).index == release.leaf_index
    assert release.counterparty == world.buyer.address and release.deal_id == busy.deal_id
    document = statement.to_json()
    json.dumps(document, allow_nan=False)
    bundle = document["lines"][0]["bundle"]
    verdict = verify_bundle(parse_bundle(bundle), chain=world.chain)
    assert verdict.valid and verdict.chain_checked, verdict.failed
    assert bundle["record"]["id"] == release.record_id
    book.close()


def test_financier_and_buyer_statements_and_pending_lines(busy: Busy) -> None:
    world, log = busy.world, busy.log
    world.client.withdraw(world.supplier, world.token)  # after the anchor
    indexer(log, world).tick()
    book = AnchorBook(log)
    supplier = build_statement(log, book, world.supplier.address)
    assert supplier.lines[-1].kind == "withdrawal" and supplier.lines[-1].amount == ADVANCE
    assert (
        supplier.lines[-1].proof_status == "pending" and supplier.lines[-1].checkpoint_seq is None
    )
    assert supplier.totals[world.token]["credit"] == 0
    financier = build_statement(log, book, world.financier.address)
    assert [(m.kind, m.direction, m.amount) for m in financier.lines] == [
        ("advance_paid", "out", ADVANCE)
    ]
    buyer = build_statement(log, book, world.buyer.address)
    assert [m.kind for m in buyer.lines] == ["funding", "funding"]
    assert buyer.totals[world.token]["paid_in"] == 2 * AMOUNT
    assert build_statement(log, book, world.stranger.address).lines == []
    book.close()


def test_statement_command_writes_csv_and_json(busy: Busy, data_dir: Path, tmp_path: Path) -> None:
    supplier = busy.world.supplier.address
    out_csv, out_json = tmp_path / "s.csv", tmp_path / "s.json"
    base = ["--data-dir", str(data_dir), "statement", supplier]
    assert main([*base, "--format", "csv", "-o", str(out_csv)]) == 0
    rows = list(csv.reader(io.StringIO(out_csv.read_bytes().decode())))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 4
    assert [r[1] for r in rows[1:]] == ["release", "withdrawal", "advance_received"]
    assert rows[1][3] == str(AMOUNT) and rows[1][12] in ("anchored", "final")
    assert main([*base, "--format", "json", "-o", str(out_json), "--bundles"]) == 0
    document = json.loads(out_json.read_text())
    assert [line["record_id"] for line in document["lines"]] == [r[8] for r in rows[1:]]
    assert all("bundle" in line for line in document["lines"])
    assert main([*base[:-1], "not-an-address"]) == 2
