"""Maker-checker on the command line, against a real log (and a real Anvil for pause, unpause
and holds): for each controlled action one officer alone cannot complete it (the request
changes nothing), the requester cannot approve it, and a second officer can; each step is an
``approval:`` record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chainaudit.core import provenance
from chainaudit.core.errors import NotFoundError
from chainaudit.log.store import DB_NAME, Log
from chainaudit.risk import ActionRequest, Outcome, RiskBook, RiskGate, parse_rule_set
from chainaudit.service import approvals
from chainaudit.service.keys import KeyStore
from tests.escrow_world import AMOUNT, World
from tests.officers import issue, requested, run_as
from tests.risk.conftest import milestones, rules

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rules.toml"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def log(data_dir: Path) -> Any:
    with Log.open(data_dir) as opened:
        yield opened


def _steps(log: Log, approval_id: str) -> list[dict[str, Any]]:
    log.refresh()
    found = []
    for step in ("requested", "decided", "outcome"):
        try:
            entry = log.entry(f"approval:{approval_id}:{step}")
        except NotFoundError:
            continue
        document = json.loads(entry.body or b"{}")
        assert provenance.document_entitled(document)
        found.append(document["payload"])
    return found


def _request(
    mp: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], token: str, data: Path, *a: str
) -> str:
    capsys.readouterr()
    assert run_as(mp, token, data, *a) == 0
    return requested(capsys.readouterr().out)


def _refuse_self_approval(
    mp: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], token: str, data: Path, aid: str
) -> None:
    assert run_as(mp, token, data, "approvals", "approve", aid) == 2
    assert "the requester cannot approve" in capsys.readouterr().err


def test_clearing_an_alert_and_activating_rules_need_two_officers(
    data_dir: Path, log: Log, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = issue(data_dir), issue(data_dir)
    gate = RiskGate(
        log,
        parse_rule_set(
            rules({"id": "big", "type": "amount_above", "severity": "high", "threshold": "10"})
        ),
    )
    held = gate.check(
        ActionRequest(
            action="fund",
            deal_id=1,
            milestone=0,
            amount=100,
            token="0x4444444444444444444444444444444444444444",
            party="0x1111111111111111111111111111111111111111",
            actor="0x1111111111111111111111111111111111111111",
            parties={"buyer": "0x1111111111111111111111111111111111111111"},
        ),
        at=1_800_000_000,
    )
    assert held.outcome is Outcome.HOLD
    alert_id = str(held.alert_id)

    # without an officer key nothing happens; with one, only a request is recorded
    assert run_as(monkeypatch, None, data_dir, "risk", "resolve", alert_id, "--cleared") == 2
    assert "needs two officers" in capsys.readouterr().err
    clear = _request(
        monkeypatch, capsys, one, data_dir, "risk", "resolve", alert_id, "--cleared", "--note", "ok"
    )
    with RiskBook(log.path) as book:
        book.sync(log)
        assert book.alert(alert_id).status == "open"
    _refuse_self_approval(monkeypatch, capsys, one, data_dir, clear)
    assert run_as(monkeypatch, two, data_dir, "approvals", "list", "--json") == 0
    assert [a["approval_id"] for a in json.loads(capsys.readouterr().out)] == [clear]
    assert run_as(monkeypatch, two, data_dir, "approvals", "approve", clear) == 0
    assert "executed" in capsys.readouterr().out
    with RiskBook(log.path) as book:
        book.sync(log)
        alert = book.alert(alert_id)
    assert (alert.status, alert.resolution) == ("resolved", "cleared")
    steps = _steps(log, clear)
    assert [s["step"] for s in steps] == ["requested", "approved", "executed"]
    assert steps[0]["requested_by"] != steps[1]["by"]

    # rules: a changed rule file is a request; it is in force only once a second officer approves
    target = data_dir / "rules.toml"
    target.write_text(EXAMPLE.read_text())
    activate = _request(monkeypatch, capsys, one, data_dir, "risk", "rules")
    assert gate.book.latest_rule_set().hash == gate.rule_set.hash  # type: ignore[union-attr]
    from_file = RiskGate.from_file(log, target)  # the service's gate keeps the rules in force
    assert from_file.rule_set.hash == gate.rule_set.hash
    _refuse_self_approval(monkeypatch, capsys, one, data_dir, activate)
    assert run_as(monkeypatch, two, data_dir, "approvals", "reject", activate) == 0
    assert run_as(monkeypatch, two, data_dir, "approvals", "approve", activate) == 2
    assert "already rejected" in capsys.readouterr().err
    activate = _request(monkeypatch, capsys, one, data_dir, "risk", "rules")
    assert run_as(monkeypatch, two, data_dir, "approvals", "approve", activate) == 0
    log.refresh()
    gate.book.sync(log)
    latest = gate.book.latest_rule_set()
    assert latest is not None and latest.version == "2026-05-example"
    assert from_file.reload() and from_file.rule_set.hash == latest.hash  # now in force
    capsys.readouterr()
    assert run_as(monkeypatch, None, data_dir, "risk", "rules") == 0  # unchanged: nothing to ask
    assert "unchanged since" in capsys.readouterr().out
    from_file.close()
    gate.close()


def test_keys_need_two_admins_once_an_admin_exists(
    data_dir: Path, log: Log, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the bootstrap: before any admin key exists the machine's operator creates one alone
    assert (
        run_as(monkeypatch, None, data_dir, "keys", "create", "--role", "admin", "--name", "a1")
        == 0
    )
    admin1 = capsys.readouterr().out.strip().splitlines()[-1]
    admin2 = issue(data_dir, "admin")
    operator = issue(data_dir, "operator")
    create = ["keys", "create", "--role", "operator", "--name", "officer", "--expires-in", "30"]
    assert run_as(monkeypatch, None, data_dir, *create) == 2  # no longer alone
    assert run_as(monkeypatch, operator, data_dir, *create) == 2
    assert "may not request keys.create" in capsys.readouterr().err
    aid = _request(monkeypatch, capsys, admin1, data_dir, *create)
    store = KeyStore(data_dir / DB_NAME)
    assert len(store.list()) == 3  # nothing created yet
    _refuse_self_approval(monkeypatch, capsys, admin1, data_dir, aid)
    assert run_as(monkeypatch, operator, data_dir, "approvals", "approve", aid) == 2
    assert "needs admin" in capsys.readouterr().err
    assert run_as(monkeypatch, admin2, data_dir, "approvals", "approve", aid) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    created = store.authenticate(token)
    assert created is not None and created.role == "operator" and created.expires_ms is not None
    store.close()
    # auditors read only: one admin (and the command line) creates them alone
    assert (
        run_as(monkeypatch, None, data_dir, "keys", "create", "--role", "auditor", "--name", "x")
        == 0
    )
    approval = approvals.load(log, aid)
    assert approval.status == "executed" and approval.result == {
        "key_id": created.key_id,
        "role": "operator",
        "address": None,
    }
    # rotating the operator's key (its token would go to the admin) takes two admins as well
    rotate = _request(monkeypatch, capsys, admin1, data_dir, "keys", "rotate", created.key_id)
    _refuse_self_approval(monkeypatch, capsys, admin1, data_dir, rotate)
    store = KeyStore(data_dir / DB_NAME)
    assert store.authenticate(token) is not None  # unchanged so far
    assert run_as(monkeypatch, admin2, data_dir, "approvals", "approve", rotate) == 0
    rotated = capsys.readouterr().out.strip().splitlines()[-1]
    assert store.authenticate(token) is None and store.authenticate(rotated) is not None
    store.close()


def test_pausing_unpausing_and_lifting_a_hold_need_two_officers(
    world: World,
    data_dir: Path,
    log: Log,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAINAUDIT_RPC_URL", world.devnet.rpc_url)
    monkeypatch.setenv("CHAINAUDIT_PAUSER_KEY", world.admin.key.hex())
    escrow = ["--escrow", world.client.address]
    one = issue(data_dir, address=world.approver3.address)
    two = issue(data_dir, address=world.officer.address)
    world.client.grant_role(world.admin, "COMPLIANCE_ROLE", world.approver3.address)

    pause = _request(monkeypatch, capsys, one, data_dir, "pause", "--note", "stolen key")
    assert not world.client.paused()
    _refuse_self_approval(monkeypatch, capsys, one, data_dir, pause)
    assert run_as(monkeypatch, two, data_dir, "approvals", "approve", pause, *escrow) == 0
    assert world.client.paused()
    unpause = _request(monkeypatch, capsys, two, data_dir, "unpause")
    _refuse_self_approval(monkeypatch, capsys, two, data_dir, unpause)
    assert world.client.paused()
    assert run_as(monkeypatch, one, data_dir, "approvals", "approve", unpause, *escrow) == 0
    assert not world.client.paused()

    client = world.client
    deal_id = client.create_deal(world.buyer, world.params(), milestones(world, "mc")).deal_id
    client.fund(world.buyer, deal_id, 0, AMOUNT)
    hold = ["risk", "hold"]
    where = [str(deal_id), "0", *escrow]
    monkeypatch.setenv("CHAINAUDIT_COMPLIANCE_KEY", world.approver3.key.hex())  # officer one's
    assert run_as(monkeypatch, one, data_dir, *hold, "place", *where, "--reason", "screening") == 0
    assert client.deal(deal_id).milestones[0].hold.active  # type: ignore[union-attr]
    shorten = _request(
        monkeypatch,
        capsys,
        one,
        data_dir,
        *hold,
        "renew",
        *where,
        "--reason",
        "less",
        "--duration",
        "60",
    )
    lift = _request(
        monkeypatch, capsys, one, data_dir, *hold, "lift", *where, "--reason", "cleared"
    )
    assert client.deal(deal_id).milestones[0].hold.active  # type: ignore[union-attr]
    _refuse_self_approval(monkeypatch, capsys, one, data_dir, lift)
    # officer two approves on its own machine, with its own on-chain key
    monkeypatch.setenv("CHAINAUDIT_COMPLIANCE_KEY", world.officer.key.hex())
    assert run_as(monkeypatch, two, data_dir, "approvals", "approve", shorten, *escrow) == 0
    assert run_as(monkeypatch, two, data_dir, "approvals", "approve", lift, *escrow) == 0
    assert client.deal(deal_id).milestones[0].hold is None
    result = approvals.load(log, lift).result
    assert result is not None and result["officer"] == world.officer.address
    tx = world.w3.eth.get_transaction(result["tx_hash"])
    assert tx["from"] == world.officer.address
    assert [s["step"] for s in _steps(log, lift)] == ["requested", "approved", "executed"]
