"""The nesting pre-scan (chainaudit.core.jsonlimits) against the parser, and the recursion limit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chainaudit.core import jsonlimits
from chainaudit.core.errors import DuplicateKeyError, InputError, JsonNestingError, JsonSyntaxError


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("", 0),
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": "[[[["}]}', 3),
        ('["\\"[[", [[]]]', 3),  # an escaped quote does not end the string
        ('["\\\\", [[]]]', 3),  # an escaped backslash does not escape the quote
        ("[[[", 3),  # unclosed: a parser descends before it fails
        ('"abc[[[', 0),  # an unterminated string runs to the end
        ("[" * 1000 + "]" * 1000, 1000),
    ],
)
def test_nesting_depth(text: str, depth: int) -> None:
    assert jsonlimits.nesting_depth(text) == depth
    assert jsonlimits.nesting_depth(text.encode()) == depth


def test_depth_agrees_with_the_parser_on_valid_json() -> None:
    documents = [
        {"a": [[{"b": "]]]"}], {"c": "\\\\[["}], "d": []},
        [[[["x", {"y": [1, 2, {"z": "{{{"}]}]]]],
    ]
    for document in documents:
        text = json.dumps(document)

        def depth(value: object) -> int:
            if isinstance(value, dict):
                return 1 + max((depth(v) for v in value.values()), default=0)
            if isinstance(value, list):
                return 1 + max((depth(v) for v in value), default=0)
            return 0

        assert jsonlimits.nesting_depth(text) == depth(document)


def test_check_nesting_and_loads_refuse_deep_input_before_parsing() -> None:
    jsonlimits.check_nesting("[" * 64 + "]" * 64)
    with pytest.raises(JsonNestingError, match="65 levels deep; at most 64") as caught:
        jsonlimits.check_nesting(b"[" * 65 + b"]" * 65, source="the body")
    assert (caught.value.depth, caught.value.limit) == (65, 64)
    assert isinstance(caught.value, InputError)
    with pytest.raises(JsonNestingError):
        jsonlimits.loads("[" * 200_000)
    with pytest.raises(InputError, match="duplicate JSON key 'a'"):
        jsonlimits.loads('{"a": 1, "a": 2}')


def test_importing_the_chain_edge_leaves_the_default_recursion_limit() -> None:
    code = (
        "import sys, chainaudit.chain.chain, chainaudit.verify.verifier, chainaudit.api.app, web3, "
        "eth_account; print(sys.getrecursionlimit())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "1000"


@pytest.mark.parametrize(
    ("text", "pointer"),
    [
        ('{"a": 1, "a": 2}', "/a"),
        ('{"p": {"amount": 1, "amount": 2}}', "/p/amount"),
        ('[0, {"x": [{"k/~": 1, "k/~": 1}]}]', "/1/x/0/k~1~0"),
        ('{"a": {"b": 1}, "a": 2, "c": {"d": 1, "d": 1}}', "/c/d"),
    ],
)
def test_a_duplicate_key_is_refused_with_its_pointer(text: str, pointer: str) -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        jsonlimits.loads(text, source="the body")
    assert caught.value.pointer == pointer
    assert f"at {pointer}" in str(caught.value)


def test_a_syntax_error_names_its_byte_offset() -> None:
    text = '{"name": "é\u20ac",\n "x": }'.encode()
    with pytest.raises(JsonSyntaxError) as caught:
        jsonlimits.loads(text, source="the body")
    offset = text.index(b"}")
    assert (caught.value.offset, caught.value.line, caught.value.column) == (offset, 2, 7)
    assert f"at byte {offset} (line 2, column 7)" in str(caught.value)
    with pytest.raises(JsonSyntaxError, match="not valid UTF-8 at byte 3") as bad:
        jsonlimits.loads(b'["a\xff"]')
    assert bad.value.offset == 3
