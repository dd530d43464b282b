"""The maker-checker core on a real log: distinct officers, one decision per request, expiry,
and step records that readers trust only from the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chainaudit.core import provenance
from chainaudit.core.records import prepare
from chainaudit.log.store import Log
from chainaudit.service import approvals

ALICE = approvals.Officer("key:aaaaaaaaaaaa", "operator", "0x" + "11" * 20)
BOB = approvals.Officer("key:bbbbbbbbbbbb", "operator", "0x" + "22" * 20)
ALICE_AGAIN = approvals.Officer("key:cccccccccccc", "admin", "0x" + "11" * 20)


@pytest.fixture
def log(tmp_path: Path) -> Any:
    with Log.open(tmp_path / "data") as opened:
        yield opened


def test_one_decision_by_a_distinct_officer_runs_the_action_once(log: Log) -> None:
    asked = approvals.request(log.append, "escrow.pause", {"note": "x"}, ALICE)
    ran: list[str] = []

    def run(approval: approvals.Approval) -> dict[str, Any]:
        ran.append(approval.approval_id)
        return {"done": True}

    for same in (ALICE, ALICE_AGAIN):  # the requester, or its other key on the same account
        with pytest.raises(approvals.ApprovalError, match="cannot approve") as refused:
            approvals.approve(log, log.append, asked.approval_id, same, run)
        assert refused.value.status == 403
    assert ran == [] and approvals.load(log, asked.approval_id).status == "pending"
    done = approvals.approve(log, log.append, asked.approval_id, BOB, run)
    assert (done.status, done.decided_by, done.result, ran) == (
        "executed",
        BOB.actor,
        {"done": True},
        [asked.approval_id],
    )
    with pytest.raises(approvals.ApprovalError, match="already executed"):
        approvals.approve(log, log.append, asked.approval_id, BOB, run)
    assert ran == [asked.approval_id]
    with pytest.raises(approvals.ApprovalError, match=r"may not request keys\.create"):
        approvals.request(log.append, "keys.create", {}, ALICE)


def test_old_requests_expire_and_forged_steps_are_ignored(log: Log) -> None:
    asked = approvals.request(log.append, "alert.clear", {"alert_id": "AL-" + "0" * 16}, ALICE)
    later = asked.requested_ms + approvals.MAX_AGE_MS + 1
    assert approvals.load(log, asked.approval_id, at_ms=later).status == "expired"
    # a "decided" step written straight into the log by a client key is not believed
    forged = prepare(
        {
            "id": f"approval:{asked.approval_id}:decided",
            "kind": "admin",
            "timestamp": "2026-01-01T00:00:00Z",
            "actor": BOB.actor,
            "payload": {
                "type": "approval",
                "approval_id": asked.approval_id,
                "action": "alert.clear",
                "step": "approved",
                "by": BOB.actor,
            },
        },
        submitter=provenance.key_submitter("bbbbbbbbbbbb"),
    )
    log.append([forged])
    assert approvals.load(log, asked.approval_id).status == "pending"
    assert [a.approval_id for a in approvals.pending(log)] == [asked.approval_id]


def test_pending_reads_the_requests_only_not_the_log(log: Log) -> None:
    """``GET /v1/approvals`` used to scan every ``admin`` record (one per API write)."""
    noise = [
        prepare(
            {
                "id": f"action-append-{i}",
                "kind": "admin",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "key:aaaaaaaaaaaa",
                "payload": {"action": "records.append", "n": i},
            },
            submitter=provenance.API,
        )
        for i in range(5_000)
    ]
    log.append(noise)
    asked = approvals.request(log.append, "escrow.pause", {"note": "x"}, ALICE)
    decoded: list[int] = []
    decode = log._decode_bundle

    def counted(key: int, blob: object) -> Any:
        decoded.append(key)
        return decode(key, blob)

    log._decode_bundle = counted  # type: ignore[method-assign]
    assert [a.approval_id for a in approvals.pending(log)] == [asked.approval_id]
    assert len(decoded) <= 2, f"{len(decoded)} record bundles decoded"  # the request's own
