"""Bundle verification against a real Anvil: a valid bundle passes every check, and every kind
of tampering fails exactly the checks that can see it."""

from __future__ import annotations

import copy
import dataclasses
import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from chainaudit.app.deploy import deploy_contracts
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet, free_port, load_settings
from chainaudit.core import merkle
from chainaudit.core.bundle import parse_bundle
from chainaudit.core.errors import ChainUnavailableError, InputError, VerificationError
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log.store import Log
from chainaudit.service.anchoring import AnchorBook, Anchorer, AnchorPolicy
from chainaudit.service.bundling import build_bundle
from chainaudit.verify.verifier import Verdict, verify_bundle, verify_consistency_bundles

ALL_CHECKS = ["record", "inclusion", "chain_id", "contract", "checkpoint", "block", "transaction"]

Bundle = dict[str, Any]


def records(start: int, count: int, actor: str = "supplier:globex") -> list[PreparedRecord]:
    return [
        prepare(
            {
                "id": f"inv-{i:07d}",
                "kind": "transaction",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": actor,
                "payload": {"amount": i * 100, "currency": "USD"},
            },
            salt=f"{i:032x}",  # fixed, so that two logs of the same records have one root
        )
        for i in range(start, start + count)
    ]


@dataclass
class Setup:
    chain: Chain
    account: LocalAccount
    contract: str
    other_contract: str  # a second AuditAnchor deployment holding another log's checkpoint
    old: Bundle  # inv-0000003 at the first checkpoint (size 20, seq 0)
    bundle: Bundle  # inv-0000005 at the second checkpoint (size 37, seq 1)
    new: Bundle  # inv-0000025 at size 37 with a consistency proof from size 20
    first_tx: str


@pytest.fixture(scope="module")
def setup(anvil: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    chain = Chain(anvil.rpc_url)
    account = Account.from_key(anvil.accounts[0].private_key)
    contract = deploy_contracts(chain, account)["AuditAnchor"].address
    other = deploy_contracts(chain, account)["AuditAnchor"].address
    policy = AnchorPolicy(finality=10_000)
    with Log.open(tmp_path_factory.mktemp("other")) as log:
        log.append(records(0, 37, actor="someone:else"))
        Anchorer(log, chain, account, other, policy=policy).anchor_now(timeout=60)
    with Log.open(tmp_path_factory.mktemp("verify")) as log:
        anchorer = Anchorer(log, chain, account, contract, policy=policy)
        book = AnchorBook(log)
        log.append(records(0, 20))
        first = anchorer.anchor_now(timeout=60)
        old = build_bundle(log, book, "inv-0000003")
        log.append(records(20, 17))
        anchorer.anchor_now(timeout=60)
        bundle = build_bundle(log, book, "inv-0000005")
        new = build_bundle(log, book, "inv-0000025", since_size=20)
        book.close()
        anchorer.close()
    yield Setup(
        chain, account, contract, other, old, bundle, new, "0x" + (first.tx_hash or b"").hex()
    )


def statuses(verdict: Verdict) -> dict[str, str]:
    return {check.name: check.status for check in verdict.checks}


def test_valid_bundle_passes_every_check_in_order(setup: Setup) -> None:
    verdict = verify_bundle(setup.bundle, chain=setup.chain)
    assert [c.name for c in verdict.checks] == ALL_CHECKS
    assert verdict.valid and verdict.chain_checked and verdict.failed == ()
    assert all(c.ok for c in verdict.checks), verdict.to_json()
    assert "leaf 5 is in the tree of size 37" in verdict.check("inclusion").detail
    assert "checkpoint 1 on chain is (size 37" in verdict.check("checkpoint").detail
    verdict.raise_for_failure()  # returns quietly
    assert verdict.to_json()["valid"] is True


def test_without_a_chain_only_the_local_checks_run(setup: Setup) -> None:
    verdict = verify_bundle(setup.bundle, chain=None)
    assert verdict.valid and not verdict.chain_checked
    assert statuses(verdict) == {
        "record": "pass",
        "inclusion": "pass",
        **{name: "skip" for name in ALL_CHECKS[2:]},
    }
    assert "anchor was not checked" in verdict.check("block").detail


def _flip(hex_hash: str, position: int = -1) -> str:
    digits = list(hex_hash)
    digits[position] = "0" if digits[position] != "0" else "1"
    return "".join(digits)


def _edit(path: str, change: Callable[[Any], Any]) -> Callable[[Bundle], None]:
    def mutate(bundle: Bundle) -> None:
        *parents, last = path.split(".")
        target = bundle
        for name in parents:
            target = target[name]
        target[last] = change(target[last])

    return mutate


def _both_sizes(size: int) -> Callable[[Bundle], None]:
    def mutate(bundle: Bundle) -> None:
        bundle["tree_size"] = bundle["checkpoint"]["tree_size"] = size

    return mutate


def _without_record(then: Callable[[Bundle], None]) -> Callable[[Bundle], None]:
    def mutate(bundle: Bundle) -> None:
        del bundle["record"]
        then(bundle)

    return mutate


NO_CODE = "0x000000000000000000000000000000000000dEaD"

# (description, mutation, the checks that must fail, in order)
TAMPERING: list[tuple[str, Callable[[Setup], Callable[[Bundle], None]], tuple[str, ...]]] = [
    (
        "record payload changed",
        lambda s: _edit("record.payload", lambda p: {**p, "amount": 1}),
        ("record",),
    ),
    ("record salt changed", lambda s: _edit("record.salt", lambda v: "0" * 32), ("record",)),
    ("record actor changed", lambda s: _edit("record.actor", lambda v: "mallory"), ("record",)),
    ("leaf hash changed", lambda s: _edit("leaf_hash", _flip), ("record", "inclusion")),
    (
        "leaf hash changed, record withheld",
        lambda s: _without_record(_edit("leaf_hash", _flip)),
        ("inclusion",),
    ),
    (
        "a proof hash flipped",
        lambda s: _edit("inclusion_proof", lambda p: [_flip(p[0]), *p[1:]]),
        ("inclusion",),
    ),
    ("proof truncated", lambda s: _edit("inclusion_proof", lambda p: p[:-1]), ("inclusion",)),
    (
        "proof extended",
        lambda s: _edit("inclusion_proof", lambda p: [*p, "0x" + "11" * 32]),
        ("inclusion",),
    ),
    (
        "proof hashes swapped",
        lambda s: _edit("inclusion_proof", lambda p: [p[1], p[0], *p[2:]]),
        ("inclusion",),
    ),
    ("leaf index changed", lambda s: _edit("leaf_index", lambda i: i - 1), ("inclusion",)),
    ("leaf index past the tree", lambda s: _edit("leaf_index", lambda i: 37), ("inclusion",)),
    (
        "checkpoint root changed",
        lambda s: _edit("checkpoint.root", _flip),
        ("inclusion", "checkpoint", "transaction"),
    ),
    (
        "checkpoint size changed",
        lambda s: _edit("checkpoint.tree_size", lambda n: n + 1),
        ("inclusion", "checkpoint", "transaction"),
    ),
    # For leaf 5 the RFC 9162 proof to size 37 also folds to the same root at size 38 (the
    # proof binds the size only through its shape): only the chain can tell.
    ("both sizes changed", lambda s: _both_sizes(38), ("checkpoint", "transaction")),
    (
        "anchor seq points at the older checkpoint",
        lambda s: _edit("anchor.checkpoint_seq", lambda n: 0),
        ("checkpoint", "transaction"),
    ),
    (
        "anchor seq that does not exist",
        lambda s: _edit("anchor.checkpoint_seq", lambda n: 99),
        ("checkpoint", "transaction"),
    ),
    (
        "anchor block number changed",
        lambda s: _edit("anchor.block_number", lambda n: n - 1),
        ("checkpoint", "block", "transaction"),
    ),
    (
        "anchor block hash changed",
        lambda s: _edit("anchor.block_hash", _flip),
        ("block", "transaction"),
    ),
    ("anchor tx hash changed", lambda s: _edit("anchor.tx_hash", _flip), ("transaction",)),
    (
        "anchor tx hash of the other anchor",
        lambda s: _edit("anchor.tx_hash", lambda v: s.first_tx),
        ("transaction",),
    ),
    ("anchor chain id changed", lambda s: _edit("anchor.chain_id", lambda n: 1), ("chain_id",)),
    (
        "contract without code",
        lambda s: _edit("anchor.contract", lambda v: NO_CODE),
        ("contract", "transaction"),
    ),
    (
        "another AuditAnchor deployment",
        lambda s: _edit("anchor.contract", lambda v: s.other_contract),
        ("checkpoint", "transaction"),
    ),
]


@pytest.mark.parametrize(
    ("tamper", "failing"),
    [pytest.param(t, f, id=desc) for desc, t, f in TAMPERING],
)
def test_tampering_fails_the_checks_that_see_it(
    setup: Setup,
    tamper: Callable[[Setup], Callable[[Bundle], None]],
    failing: tuple[str, ...],
) -> None:
    bundle = copy.deepcopy(setup.bundle)
    tamper(setup)(bundle)
    assert bundle != setup.bundle
    verdict = verify_bundle(bundle, chain=setup.chain)
    assert not verdict.valid
    assert verdict.failed == failing, verdict.to_json()
    with pytest.raises(VerificationError) as caught:
        verdict.raise_for_failure()
    assert caught.value.check == failing[0]
    offline = verify_bundle(bundle, chain=None)
    local = tuple(name for name in failing if name in ("record", "inclusion"))
    assert offline.failed == local


def test_wrong_chain_id_skips_the_other_chain_checks(setup: Setup) -> None:
    bundle = copy.deepcopy(setup.bundle)
    bundle["anchor"]["chain_id"] = 1
    verdict = verify_bundle(bundle, chain=setup.chain)
    assert "the endpoint serves chain 31337, the bundle names chain 1" in (
        verdict.check("chain_id").detail
    )
    assert [statuses(verdict)[n] for n in ALL_CHECKS[3:]] == ["skip"] * 4


def test_a_final_status_is_checked_against_the_finality(setup: Setup) -> None:
    depth = setup.chain.block_number() - setup.bundle["anchor"]["block_number"] + 1
    assert setup.bundle["anchor"]["status"] == "confirmed"
    assert verify_bundle(setup.bundle, chain=setup.chain, finality=depth + 100).valid
    claimed = copy.deepcopy(setup.bundle)
    claimed["anchor"]["status"] = "final"
    early = verify_bundle(claimed, chain=setup.chain, finality=depth + 100)
    assert early.failed == ("block",)
    assert f"has {depth} confirmation(s) and final takes {depth + 100}" in (
        early.check("block").detail
    )
    due = verify_bundle(claimed, chain=setup.chain, finality=depth)
    assert due.valid and f"final as claimed (at least {depth})" in due.check("block").detail
    for bad in (0, True):
        with pytest.raises(InputError, match="finality"):
            verify_bundle(claimed, chain=setup.chain, finality=bad)


def test_unpinned_verdicts_carry_warnings(setup: Setup) -> None:
    unpinned = verify_bundle(setup.bundle, chain=setup.chain)
    assert unpinned.valid
    assert [w.split(":")[0] for w in unpinned.warnings] == [
        "the AuditAnchor address was not pinned",
        "the chain id was not pinned",
    ]
    assert setup.contract in unpinned.warnings[0]
    assert unpinned.to_json()["warnings"] == list(unpinned.warnings)
    pinned = verify_bundle(
        setup.bundle, chain=setup.chain, expected_chain_id=31337, expected_contract=setup.contract
    )
    assert pinned.warnings == ()
    assert verify_bundle(setup.bundle, chain=None).warnings == ()


def test_a_forged_tree_passes_offline_and_fails_on_chain(setup: Setup) -> None:
    """An operator who invents records and a tree around them gets a self-consistent bundle;
    only the anchor on chain exposes it."""
    forged = records(0, 37, actor="mallory")
    leaves = [r.leaf_hash for r in forged]
    bundle = copy.deepcopy(setup.bundle)
    bundle["record"] = forged[5].document()
    bundle["leaf_hash"] = "0x" + leaves[5].hex()
    bundle["inclusion_proof"] = ["0x" + h.hex() for h in merkle.inclusion_proof(leaves, 5)]
    bundle["checkpoint"]["root"] = "0x" + merkle.root_hash(leaves).hex()
    assert verify_bundle(bundle, chain=None).valid
    assert verify_bundle(bundle, chain=setup.chain).failed == ("checkpoint", "transaction")


def test_pins_for_chain_and_contract(setup: Setup) -> None:
    pinned = verify_bundle(
        setup.bundle, chain=setup.chain, expected_chain_id=31337, expected_contract=setup.contract
    )
    assert pinned.valid
    lower = verify_bundle(setup.bundle, chain=setup.chain, expected_contract=setup.contract.lower())
    assert lower.valid
    other = verify_bundle(setup.bundle, chain=setup.chain, expected_contract=setup.other_contract)
    assert other.failed == ("contract",)
    assert statuses(other)["checkpoint"] == "skip"
    assert f"you expect {setup.other_contract}" in other.check("contract").detail
    wrong_chain = verify_bundle(setup.bundle, chain=setup.chain, expected_chain_id=5)
    assert wrong_chain.failed == ("chain_id",)
    with pytest.raises(InputError, match="is not an address"):
        verify_bundle(setup.bundle, chain=setup.chain, expected_contract="0x123")


def test_confirmations_are_counted_from_the_head(setup: Setup) -> None:
    head = setup.chain.block_number()
    depth = head - setup.bundle["anchor"]["block_number"] + 1
    assert verify_bundle(setup.bundle, chain=setup.chain, confirmations=depth).valid
    deep = verify_bundle(setup.bundle, chain=setup.chain, confirmations=depth + 5)
    assert deep.failed == ("block",)
    assert f"{depth} confirmation(s); {depth + 5} are required" in deep.check("block").detail
    for bad in (0, -1, True):
        with pytest.raises(InputError, match="confirmations"):
            verify_bundle(setup.bundle, chain=setup.chain, confirmations=bad)


def test_reorganised_anchor_fails_the_block_check(setup: Setup, w3: Web3, tmp_path: Path) -> None:
    contract = deploy_contracts(setup.chain, setup.account)["AuditAnchor"].address
    with Log.open(tmp_path) as log:
        anchorer = Anchorer(log, setup.chain, setup.account, contract)
        book = AnchorBook(log)
        log.append(records(0, 5))
        anchorer.anchor_now(timeout=60)
        bundle = build_bundle(log, book, "inv-0000002")
        assert verify_bundle(bundle, chain=setup.chain).valid
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        w3.provider.make_request("anvil_reorg", [2, []])  # type: ignore[arg-type]
        verdict = verify_bundle(bundle, chain=setup.chain)
        assert verdict.failed == ("checkpoint", "block", "transaction")
        assert "reorganised away" in verdict.check("block").detail
        # The anchoring service notices and anchors again; a fresh bundle verifies.
        for _ in range(200):  # until it is confirmed again (receipts can trail a little)
            anchorer.tick()
            current = book.latest_anchored()
            if current is not None and current.block_hash != bytes.fromhex(
                bundle["anchor"]["block_hash"][2:]
            ):
                break
            time.sleep(0.02)
        fresh = build_bundle(log, book, "inv-0000002")
        assert fresh["anchor"]["block_hash"] != bundle["anchor"]["block_hash"]
        assert verify_bundle(fresh, chain=setup.chain).valid
        assert verify_bundle(bundle, chain=setup.chain).failed[-2:] == ("block", "transaction")
        book.close()
        anchorer.close()


def test_a_chain_with_another_id_is_refused(setup: Setup, tmp_path: Path) -> None:
    settings = dataclasses.replace(load_settings(), chain_id=31338)
    with Devnet(settings=settings, port=free_port()) as devnet:
        elsewhere = Chain(devnet.rpc_url)
        # The same log anchored on the other chain by the same deployer.
        account = Account.from_key(devnet.accounts[0].private_key)
        contract = deploy_contracts(elsewhere, account)["AuditAnchor"].address
        with Log.open(tmp_path) as log:
            log.append(records(0, 20))
            log.append(records(20, 17))
            anchorer = Anchorer(log, elsewhere, account, contract)
            anchorer.anchor_now(timeout=60)
            book = AnchorBook(log)
            replica = build_bundle(log, book, "inv-0000005")
            book.close()
            anchorer.close()
        assert replica["anchor"]["chain_id"] == 31338
        assert replica["checkpoint"] == setup.bundle["checkpoint"]
        assert verify_bundle(replica, chain=elsewhere).valid
        verdict = verify_bundle(setup.bundle, chain=elsewhere)
        assert verdict.failed == ("chain_id",)
        assert "serves chain 31338, the bundle names chain 31337" in (
            verdict.check("chain_id").detail
        )
        relabelled = copy.deepcopy(replica)  # claims to be anchored on this chain instead
        relabelled["anchor"]["chain_id"] = 31337
        verdict = verify_bundle(relabelled, chain=setup.chain)
        assert {"block", "transaction"} <= set(verdict.failed) <= set(ALL_CHECKS[3:])
        assert verify_bundle(relabelled, chain=elsewhere).failed == ("chain_id",)


def test_unreachable_endpoint_proves_nothing_and_raises(setup: Setup) -> None:
    down = Chain(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(ChainUnavailableError):
        verify_bundle(setup.bundle, chain=down)


class _NotRpc(http.server.BaseHTTPRequestHandler):
    """A web server that is not a JSON-RPC endpoint: an HTML page, or an error status."""

    def do_POST(self) -> None:
        status = 200 if self.path == "/html" else 502
        body = b"<html>not a node</html>"
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("path", ["/html", "/bad-gateway"])
def test_an_endpoint_that_is_not_json_rpc_is_unusable(setup: Setup, path: str) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotRpc)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = Chain(f"http://127.0.0.1:{server.server_port}{path}", timeout=5)
        with pytest.raises(ChainUnavailableError, match="does not answer as an Ethereum JSON-RPC"):
            verify_bundle(setup.bundle, chain=endpoint)
    finally:
        server.shutdown()
        server.server_close()


def test_malformed_bundle_is_an_input_error(setup: Setup) -> None:
    broken = copy.deepcopy(setup.bundle)
    del broken["checkpoint"]
    with pytest.raises(InputError, match="missing field"):
        verify_bundle(broken, chain=None)


def test_record_outside_the_canonical_domain_fails_the_record_check(setup: Setup) -> None:
    bundle = copy.deepcopy(setup.bundle)
    bundle["record"]["payload"]["amount"] = 1.5
    verdict = verify_bundle(bundle, chain=None)
    assert verdict.failed == ("record",)
    assert "floating-point" in verdict.check("record").detail


# -- consistency between two bundles ----------------------------------------------------------


def test_new_checkpoint_extends_the_old_one(setup: Setup) -> None:
    verdict = verify_consistency_bundles(setup.old, setup.new, setup.chain)
    assert verdict.valid, verdict.to_json()
    names = [c.name for c in verdict.checks]
    assert names == [f"old.{n}" for n in ALL_CHECKS] + [f"new.{n}" for n in ALL_CHECKS] + [
        "consistency",
        "sequence",
    ]
    assert "size 37 extends the tree of size 20" in verdict.check("consistency").detail
    assert "checkpoint 0 (size 20) precedes checkpoint 1 (size 37)" in (
        verdict.check("sequence").detail
    )
    offline = verify_consistency_bundles(setup.old, setup.new, None)
    assert offline.valid and not offline.chain_checked


def test_consistency_tampering_is_caught(setup: Setup) -> None:
    proof_flipped = copy.deepcopy(setup.new)
    proof_flipped["consistency"]["proof"][0] = _flip(proof_flipped["consistency"]["proof"][0])
    verdict = verify_consistency_bundles(setup.old, proof_flipped, setup.chain)
    assert verdict.failed == ("consistency",)

    forked = copy.deepcopy(setup.old)  # the auditor's old checkpoint differs: a split view
    forked["checkpoint"]["root"] = _flip(forked["checkpoint"]["root"])
    verdict = verify_consistency_bundles(forked, setup.new, setup.chain)
    assert verdict.failed == (
        "old.inclusion",
        "old.checkpoint",
        "old.transaction",
        "consistency",
    )
    assert "two different histories" in verdict.check("consistency").detail

    from_root = copy.deepcopy(setup.new)
    from_root["consistency"]["from_root"] = _flip(from_root["consistency"]["from_root"])
    assert verify_consistency_bundles(setup.old, from_root, None).failed == ("consistency",)

    reordered = copy.deepcopy(setup.new)
    reordered["anchor"]["checkpoint_seq"] = 0
    verdict = verify_consistency_bundles(setup.old, reordered, setup.chain)
    assert verdict.failed == ("new.checkpoint", "new.transaction", "sequence")
    assert verify_consistency_bundles(setup.old, reordered, None).failed == ("sequence",)

    moved = copy.deepcopy(setup.new)
    moved["anchor"]["contract"] = setup.other_contract
    assert "sequence" in verify_consistency_bundles(setup.old, moved, setup.chain).failed


def test_consistency_needs_a_proof_from_the_old_size(setup: Setup) -> None:
    with pytest.raises(InputError, match="carries no consistency proof"):
        verify_consistency_bundles(setup.old, setup.bundle, setup.chain)
    other_size = copy.deepcopy(setup.new)
    other_size["consistency"]["from_tree_size"] = 19
    with pytest.raises(InputError, match="starts at size 19, the old checkpoint has size 20"):
        verify_consistency_bundles(setup.old, other_size, None)


def test_bundle_parsed_once_verifies_like_its_json(setup: Setup) -> None:
    parsed = parse_bundle(setup.bundle)
    assert verify_bundle(parsed, chain=setup.chain) == verify_bundle(
        setup.bundle, chain=setup.chain
    )


def test_the_verifier_loads_nothing_of_the_operators_side() -> None:
    # The independent verifier reads the bundle format and the chain, never the log, the anchor
    # book or the service's settings: an auditor runs it without trusting our server.
    code = (
        "import sys, chainaudit.verify.verifier; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('chainaudit.'))))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    operators_side = {
        "chainaudit.log.store",
        "chainaudit.service.anchoring",
        "chainaudit.service.bundling",
        "chainaudit.service.erasure",
        "chainaudit.app.settings",
        "chainaudit.api",
    }
    assert "chainaudit.core.bundle" in loaded
    assert not loaded & operators_side
