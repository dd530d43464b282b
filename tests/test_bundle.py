"""Proof bundles: built from a real log anchored on a real Anvil, checked against the JSON Schema
(Draft 2020-12) and read back; malformed bundles are refused by both the schema and the parser."""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from eth_account import Account
from jsonschema import Draft202012Validator

from chainaudit.app.deploy import deploy_contracts
from chainaudit.chain.chain import Chain
from chainaudit.chain.devnet import Devnet
from chainaudit.core import merkle
from chainaudit.core.bundle import (
    Bundle,
    load_bundle,
    loads_bundle,
    parse_bundle,
    schema,
    write_bundle,
)
from chainaudit.core.errors import InputError, NotFoundError, ProofPendingError, StoreError
from chainaudit.core.records import PreparedRecord, prepare
from chainaudit.log.store import Log
from chainaudit.service.anchoring import AnchorBook, Anchorer, AnchorPolicy, AnchorRecord
from chainaudit.service.bundling import build_bundle
from tests.tamper import replace_in_body, rewrite_node, set_body

VALIDATOR = Draft202012Validator(schema())


def records(start: int, count: int) -> list[PreparedRecord]:
    return [
        prepare(
            {
                "id": f"rec-{i:07d}",
                "kind": "document",
                "timestamp": "2026-11-21T09:30:00Z",
                "actor": "inspector:sgs",
                "payload": {"certificate": f"CERT-{i}", "passed": i % 3 != 0, "lot": i},
            }
        )
        for i in range(start, start + count)
    ]


@dataclass
class Anchored:
    log: Log
    book: AnchorBook
    contract: str
    first: AnchorRecord  # size 20, seq 0
    second: AnchorRecord  # size 37, seq 1


@pytest.fixture(scope="module")
def anchored(anvil: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Anchored]:
    """37 anchored records in two checkpoints (20, then 37) and 3 not yet anchored."""
    chain = Chain(anvil.rpc_url)
    account = Account.from_key(anvil.accounts[0].private_key)
    contract = deploy_contracts(chain, account)["AuditAnchor"].address
    with Log.open(tmp_path_factory.mktemp("bundle")) as log:
        anchorer = Anchorer(log, chain, account, contract, policy=AnchorPolicy(finality=10_000))
        log.append(records(0, 20))
        first = anchorer.anchor_now(timeout=60)
        log.append(records(20, 17))
        second = anchorer.anchor_now(timeout=60)
        log.append(records(37, 3))
        book = AnchorBook(log)
        yield Anchored(log, book, contract, first, second)
        book.close()
        anchorer.close()


def schema_errors(document: Any) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(document)]


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    document = schema()
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(document)


def test_bundle_holds_the_record_proof_checkpoint_and_anchor(anchored: Anchored) -> None:
    bundle = build_bundle(anchored.log, anchored.book, "rec-0000005")
    assert schema_errors(bundle) == []
    second = anchored.second
    assert bundle["version"] == 1
    assert (bundle["leaf_index"], bundle["tree_size"]) == (5, 37)
    assert bundle["checkpoint"] == {"tree_size": 37, "root": "0x" + second.root.hex()}
    assert second.root == anchored.log.root_at(37)
    assert bundle["anchor"] == {
        "chain_id": 31337,
        "contract": anchored.contract,
        "tx_hash": "0x" + (second.tx_hash or b"").hex(),
        "block_number": second.block_number,
        "block_hash": "0x" + (second.block_hash or b"").hex(),
        "checkpoint_seq": 1,
        "status": "confirmed",
    }
    assert bundle["inclusion_proof"] == [
        "0x" + h.hex() for h in anchored.log.inclusion_proof(5, 37)
    ]
    # The leaf hash is SHA-256(0x00 || JCS bytes) with an independent RFC 8785 implementation.
    leaf = merkle.hash_leaf(rfc8785.dumps(bundle["record"]))
    assert bundle["leaf_hash"] == "0x" + leaf.hex()
    assert bundle["record"]["payload"] == {"certificate": "CERT-5", "passed": True, "lot": 5}
    assert "consistency" not in bundle


def test_newest_covering_checkpoint_is_used(anchored: Anchored) -> None:
    early = build_bundle(anchored.log, anchored.book, "rec-0000000")
    late = build_bundle(anchored.log, anchored.book, "rec-0000036")
    assert early["checkpoint"] == late["checkpoint"]
    assert early["anchor"]["checkpoint_seq"] == late["anchor"]["checkpoint_seq"] == 1


def test_record_can_be_withheld(anchored: Anchored) -> None:
    bundle = build_bundle(anchored.log, anchored.book, "rec-0000007", include_record=False)
    assert "record" not in bundle and schema_errors(bundle) == []
    assert bundle["leaf_hash"] == "0x" + anchored.log.leaf_hash(7).hex()


def test_since_carries_a_consistency_proof_from_the_older_root(anchored: Anchored) -> None:
    bundle = build_bundle(anchored.log, anchored.book, "rec-0000003", since_size=20)
    assert schema_errors(bundle) == []
    consistency = bundle["consistency"]
    assert consistency["from_tree_size"] == 20
    assert consistency["from_root"] == "0x" + anchored.first.root.hex()
    merkle.verify_consistency(
        20,
        37,
        [bytes.fromhex(h[2:]) for h in consistency["proof"]],
        anchored.first.root,
        anchored.second.root,
    )
    same = build_bundle(anchored.log, anchored.book, "rec-0000003", since_size=37)
    assert same["consistency"]["proof"] == []


@pytest.mark.parametrize("since", [0, -1, 41])
def test_since_outside_the_log_is_an_input_error(anchored: Anchored, since: int) -> None:
    with pytest.raises(InputError, match="between 1 and the log's size 40"):
        build_bundle(anchored.log, anchored.book, "rec-0000003", since_size=since)


def test_since_past_the_anchored_size_is_pending(anchored: Anchored) -> None:
    with pytest.raises(ProofPendingError):
        build_bundle(anchored.log, anchored.book, "rec-0000003", since_size=38)


def test_unanchored_record_is_pending(anchored: Anchored) -> None:
    with pytest.raises(ProofPendingError) as caught:
        build_bundle(anchored.log, anchored.book, "rec-0000038")
    assert str(caught.value) == (
        "proof pending: record rec-0000038 (leaf 38) is not anchored yet; anchor with "
        "`chainaudit anchor` or fetch again later"
    )
    assert (caught.value.record_id, caught.value.leaf_index) == ("rec-0000038", 38)


def test_unknown_record_is_not_found(anchored: Anchored) -> None:
    with pytest.raises(NotFoundError, match="no record with id 'nope'"):
        build_bundle(anchored.log, anchored.book, "nope")


def test_erased_record_is_left_out_and_altered_record_is_refused(anchored: Anchored) -> None:
    db = sqlite3.connect(anchored.log.path)
    with db:
        set_body(db, "rec-0000030", None)
        replace_in_body(db, "rec-0000031", "CERT-31", "CERT-99")
    db.close()
    erased = build_bundle(anchored.log, anchored.book, "rec-0000030")
    assert "record" not in erased and erased["leaf_index"] == 30
    with pytest.raises(StoreError, match="no longer hashes to its leaf"):
        build_bundle(anchored.log, anchored.book, "rec-0000031")
    # Withholding the record does not need its content.
    assert "record" not in build_bundle(
        anchored.log, anchored.book, "rec-0000031", include_record=False
    )


def test_rewritten_log_gets_no_bundle(anvil: Devnet, tmp_path: Path) -> None:
    chain = Chain(anvil.rpc_url)
    account = Account.from_key(anvil.accounts[0].private_key)
    contract = deploy_contracts(chain, account)["AuditAnchor"].address
    with Log.open(tmp_path) as log:
        log.append(records(0, 3))
        anchorer = Anchorer(log, chain, account, contract)
        anchorer.anchor_now(timeout=60)
        anchorer.close()
        db = sqlite3.connect(log.path)
        with db:  # leaf 2 is a stored node of the tree of 3: the root at size 3 changes
            rewrite_node(db, 0, 2, bytes(32))
        db.close()
        book = AnchorBook(log)
        with pytest.raises(StoreError, match="the log was rewritten"):
            build_bundle(log, book, "rec-0000000")
        book.close()


def test_parse_round_trip_and_files(anchored: Anchored, tmp_path: Path) -> None:
    document = build_bundle(anchored.log, anchored.book, "rec-0000011", since_size=20)
    parsed = parse_bundle(document)
    assert isinstance(parsed, Bundle)
    assert parsed.record_id == "rec-0000011"
    assert parsed.leaf_hash == anchored.log.leaf_hash(11)
    assert parsed.to_json() == document
    assert loads_bundle(json.dumps(document)) == parsed
    path = tmp_path / "bundle.json"
    write_bundle(document, path)
    assert load_bundle(path) == parsed
    assert json.loads(path.read_text()) == document
    upper = copy.deepcopy(document)
    upper["leaf_hash"] = "0x" + upper["leaf_hash"][2:].upper()
    upper["anchor"]["contract"] = upper["anchor"]["contract"].lower()
    assert parse_bundle(upper) == parsed  # either hex case reads; addresses are checksummed


Mutation = Callable[[dict[str, Any]], Any]


def _set(path: str, value: Any) -> Mutation:
    def mutate(bundle: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = bundle
        for name in parents:
            target = target[name]
        target[last] = value

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(bundle: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = bundle
        for name in parents:
            target = target[name]
        del target[last]

    return mutate


MALFORMED: list[tuple[str, Mutation, str]] = [
    ("version 2 is not read", _set("version", 2), "unsupported bundle version 2"),
    ("version is required", _drop("version"), "missing field(s): version"),
    ("unknown top-level field", _set("note", "hi"), "unknown field(s): note"),
    ("leaf hash without 0x", _set("leaf_hash", "ab" * 32), "leaf_hash must be 0x"),
    ("leaf hash of 31 bytes", _set("leaf_hash", "0x" + "ab" * 31), "leaf_hash must be 0x"),
    ("leaf hash not hex", _set("leaf_hash", "0x" + "zz" * 32), "leaf_hash must be 0x"),
    ("leaf hash a number", _set("leaf_hash", 7), "leaf_hash must be 0x"),
    ("negative leaf index", _set("leaf_index", -1), "leaf_index must be between"),
    ("leaf index as string", _set("leaf_index", "5"), "leaf_index must be an integer"),
    ("tree size 0", _set("tree_size", 0), "tree_size must be between 1"),
    ("tree size beyond 48 bits", _set("tree_size", 2**48), "tree_size must be between 1"),
    ("tree size true", _set("tree_size", True), "tree_size must be an integer"),
    ("proof not a list", _set("inclusion_proof", "0x00"), "inclusion_proof must be a list"),
    ("proof item short", _set("inclusion_proof", ["0x00"]), "inclusion_proof[0] must be 0x"),
    ("proof of 65 hashes", _set("inclusion_proof", ["0x" + "00" * 32] * 65), "at most 64"),
    ("checkpoint without root", _drop("checkpoint.root"), "missing field(s): root"),
    ("checkpoint extra field", _set("checkpoint.seq", 1), "unknown field(s): seq"),
    ("checkpoint not an object", _set("checkpoint", [37]), "checkpoint must be a JSON object"),
    ("anchor without tx hash", _drop("anchor.tx_hash"), "missing field(s): tx_hash"),
    ("short contract address", _set("anchor.contract", "0x1234"), "anchor.contract must be"),
    ("anchor status pending", _set("anchor.status", "pending"), "anchor.status must be"),
    ("chain id 0", _set("anchor.chain_id", 0), "anchor.chain_id must be between 1"),
    ("fractional block number", _set("anchor.block_number", 2.5), "must be an integer"),
    ("negative seq", _set("anchor.checkpoint_seq", -1), "checkpoint_seq must be between"),
    ("record without salt", _drop("record.salt"), "record: missing field(s): salt"),
    ("record extra field", _set("record.erased", False), "record: unknown field(s): erased"),
    ("record null", _set("record", None), "record must be a JSON object"),
    ("record payload a list", _set("record.payload", []), "record.payload must be a JSON"),
    ("record salt uppercase", _set("record.salt", "AB" * 16), "record.salt is malformed"),
    ("record empty actor", _set("record.actor", ""), "record.actor must be a string"),
    ("consistency without proof", _drop("consistency.proof"), "missing field(s): proof"),
    ("consistency from size 0", _set("consistency.from_tree_size", 0), "from_tree_size must"),
    ("consistency root short", _set("consistency.from_root", "0x01"), "from_root must be 0x"),
]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [pytest.param(m, msg, id=desc) for desc, m, msg in MALFORMED],
)
def test_malformed_bundles_are_refused_by_schema_and_parser(
    anchored: Anchored, mutate: Mutation, message: str
) -> None:
    document = build_bundle(anchored.log, anchored.book, "rec-0000011", since_size=20)
    assert schema_errors(document) == []
    mutate(document)
    assert schema_errors(document), "the schema accepted a malformed bundle"
    with pytest.raises(InputError) as caught:
        parse_bundle(document)
    assert message in str(caught.value)


def test_not_an_object_is_refused() -> None:
    values: list[Any] = [[], "bundle", None, 1]
    for value in values:
        assert schema_errors(value)
        with pytest.raises(InputError, match="bundle must be a JSON object"):
            parse_bundle(value)


def test_parser_is_stricter_than_the_schema_where_json_schema_cannot_say(
    anchored: Anchored,
) -> None:
    document = build_bundle(anchored.log, anchored.book, "rec-0000011")
    contract = document["anchor"]["contract"]
    wrong_checksum = contract[:2] + contract[2:].swapcase()
    for mutate, message in [
        (_set("anchor.contract", wrong_checksum), "wrong EIP-55 checksum"),
        (_set("leaf_index", 11.0), "leaf_index must be an integer"),
        (_set("leaf_hash", document["leaf_hash"] + "\n"), "leaf_hash must be 0x"),
    ]:
        changed = copy.deepcopy(document)
        mutate(changed)
        with pytest.raises(InputError, match=message):
            parse_bundle(changed)


def test_unreadable_files_are_input_errors(tmp_path: Path, anchored: Anchored) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_bundle(tmp_path / "missing.json")
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"version": "\xe9"}')
    with pytest.raises(InputError, match="not valid UTF-8"):
        load_bundle(latin1)
    truncated = tmp_path / "truncated.json"
    text = json.dumps(build_bundle(anchored.log, anchored.book, "rec-0000001"))
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(InputError, match=r"truncated\.json: not valid JSON"):
        load_bundle(truncated)
    # A second "leaf_hash" could make two parsers see two different bundles: refused.
    duplicated = text[:-1] + ', "leaf_hash": "0x' + "00" * 32 + '"}'
    with pytest.raises(InputError, match="duplicate JSON key 'leaf_hash'"):
        loads_bundle(duplicated)
    with pytest.raises(InputError, match="cannot write"):
        write_bundle(json.loads(text), tmp_path / "no-such-dir" / "b.json")


def test_a_record_withheld_for_privacy_says_so_and_still_proves_its_leaf(
    anchored: Anchored,
) -> None:
    from chainaudit.verify.verifier import verify_bundle  # noqa: PLC0415 - this test only

    reason = "personal data: not for this reader"
    bundle = build_bundle(anchored.log, anchored.book, "rec-0000007", withheld=reason)
    assert "record" not in bundle and bundle["withheld"] == reason
    assert schema_errors(bundle) == []
    parsed = parse_bundle(bundle)
    assert parsed.withheld == reason and parsed.record is None
    assert parsed.to_json() == bundle
    verdict = verify_bundle(parsed, chain=None)
    checks = {c.name: c for c in verdict.checks}
    assert checks["record"].status == "skip"
    assert f"record withheld ({reason})" in checks["record"].detail
    assert checks["inclusion"].status == "pass"
    # a bundle cannot both withhold its record and carry it, nor withhold it for no reason
    whole = build_bundle(anchored.log, anchored.book, "rec-0000007")
    for document, message in [
        ({**whole, "withheld": reason}, "must not carry it"),
        ({**bundle, "withheld": ""}, "withheld must be a reason"),
        ({**bundle, "withheld": 7}, "withheld must be a reason"),
    ]:
        assert schema_errors(document), document
        with pytest.raises(InputError, match=message):
            parse_bundle(document)
    with pytest.raises(InputError, match="withheld must be a reason"):
        build_bundle(anchored.log, anchored.book, "rec-0000007", withheld="x" * 501)
