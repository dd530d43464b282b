"""Fuzzing the proof-bundle parser and the offline verifier.

Starting from a well-formed bundle (a real RFC 9162 tree, a prepared record), the tests send
arbitrary bytes, JSON token soup, byte-level mutations of the bundle's text, and structural
mutations of its JSON (a field replaced by any JSON value, deleted, added, duplicated, nested
deep). :func:`chainaudit.core.bundle.loads_bundle` must return a bundle or raise
:class:`InputError`, nothing else, in bounded time; a bundle it returns must survive a round
trip and the offline verifier (no chain), which may judge it invalid but must not raise.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from chainaudit.core import merkle
from chainaudit.core.bundle import Bundle, loads_bundle, parse_bundle
from chainaudit.core.errors import InputError
from chainaudit.core.records import prepare
from chainaudit.verify.verifier import verify_bundle
from tests.fuzz.budget import fuzz_settings


def well_formed_bundle() -> dict[str, Any]:
    """A bundle for leaf 5 of a 13-leaf tree, with a consistency proof from size 7; the anchor
    fields are well-formed (the offline verifier does not read the chain)."""
    record = prepare(
        {
            "id": "cert-7",
            "kind": "document",
            "timestamp": "2026-12-02T10:15:00+08:00",
            "actor": "inspector:sgs",
            "payload": {"result": "passed", "port": "Ningbo\u2013Zhoushan", "containers": 3},
        },
        salt="5a" * 16,
        submitter="local:fuzz",
    )
    leaves = [merkle.hash_leaf(bytes([i])) for i in range(13)]
    leaves[5] = record.leaf_hash
    root = merkle.root_hash(leaves)
    return {
        "version": 1,
        "record": json.loads(record.body),
        "leaf_hash": "0x" + record.leaf_hash.hex(),
        "leaf_index": 5,
        "tree_size": 13,
        "inclusion_proof": ["0x" + h.hex() for h in merkle.inclusion_proof(leaves, 5)],
        "checkpoint": {"tree_size": 13, "root": "0x" + root.hex()},
        "anchor": {
            "chain_id": 31337,
            "contract": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
            "tx_hash": "0x" + "77" * 32,
            "block_number": 42,
            "block_hash": "0x" + "42" * 32,
            "checkpoint_seq": 1,
            "status": "confirmed",
        },
        "consistency": {
            "from_tree_size": 7,
            "from_root": "0x" + merkle.root_hash(leaves[:7]).hex(),
            "proof": ["0x" + h.hex() for h in merkle.consistency_proof(leaves, 7)],
        },
    }


BUNDLE = well_formed_bundle()
TEXT = json.dumps(BUNDLE).encode()


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a member or element of ``value`` (not the root)."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, (dict, list)):
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            found.append((*prefix, key))
            found.extend(paths(item, (*prefix, key)))
    return found


PATHS = paths(BUNDLE)
any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=70)
    | st.sampled_from(["0x" + "ab" * 32, "0x" + "AB" * 20, "final", "0x", "1e3", "0x" + "0" * 64]),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


def check(text: bytes | str) -> None:
    """The property: a bundle or InputError; a bundle round-trips and verifies offline."""
    try:
        parsed = loads_bundle(text)
    except InputError:
        event("refused")
        return
    event("parsed")
    assert isinstance(parsed, Bundle)
    assert parse_bundle(json.loads(json.dumps(parsed.to_json()))) == parsed
    verdict = verify_bundle(parsed, chain=None)
    assert not verdict.chain_checked
    event("valid offline" if verdict.valid else "invalid offline")


def test_the_seed_bundle_parses_and_verifies_offline() -> None:
    verdict = verify_bundle(loads_bundle(TEXT), chain=None)
    assert verdict.valid, verdict


TOKENS = ["{", "}", "[", "]", ",", ":", '"', '"version"', "1", '"record"', '"0x"', "null"]


@fuzz_settings(300)
@given(st.binary(max_size=300) | st.lists(st.sampled_from(TOKENS), max_size=50).map("".join))
def test_arbitrary_input_is_a_bundle_or_an_input_error(text: bytes | str) -> None:
    check(text)


@fuzz_settings(300)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, len(TEXT)), st.binary(min_size=1, max_size=3)),
        min_size=1,
        max_size=4,
    )
)
def test_byte_mutations_of_a_bundle(edits: list[tuple[int, int, bytes]]) -> None:
    text = bytearray(TEXT)
    for action, position, junk in edits:
        at = min(position, len(text))
        if action == 0:
            text[at:at] = junk
        elif action == 1:
            del text[at : at + len(junk)]
        else:
            text[at : at + len(junk)] = junk
    check(bytes(text))


@fuzz_settings(400)
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(PATHS), st.sampled_from(["set", "drop", "add"]), any_json),
        min_size=1,
        max_size=3,
    ),
    duplicate=st.integers(0, 9).map(lambda n: n == 0),
)
def test_structural_mutations_of_a_bundle(
    edits: list[tuple[tuple[Any, ...], str, Any]], duplicate: bool
) -> None:
    bundle = copy.deepcopy(BUNDLE)
    for path, action, value in edits:
        parent: Any = bundle
        try:
            for key in path[:-1]:
                parent = parent[key]
            last = path[-1]
            if action == "set":
                parent[last] = value
            elif action == "drop":
                del parent[last]
            elif isinstance(parent, dict):
                parent[f"extra_{last}"] = value
            elif isinstance(parent, list):
                parent.append(value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced this path
    text = json.dumps(bundle)
    if duplicate and text.startswith("{") and len(text) > 2:
        text = '{"version": 1, ' + text[1:]  # a duplicate key (or a first one)
    check(text)


@pytest.mark.parametrize("opener", ["[", '{"a":'])
@fuzz_settings(10, deadline_seconds=5)
@given(depth=st.integers(60, 500_000))
def test_deep_nesting_anywhere_is_an_input_error(opener: str, depth: int) -> None:
    text = TEXT.decode().replace('"payload": {', '"payload": {"deep": ' + opener * depth, 1)
    if depth > 64:
        with pytest.raises(InputError):
            loads_bundle(text)
    else:
        check(text)
