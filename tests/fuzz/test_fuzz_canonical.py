"""Fuzzing the canonical form (RFC 8785) and the record parser against independent references.

* Any Python value: :func:`chainaudit.core.canonical.canonicalize` either refuses it with
  :class:`RecordError` exactly when it lies outside the documented domain (a float, an integer
  beyond ±(2**53-1), a non-string key, a lone surrogate, containers nested deeper than 32), as
  judged by this file's own checker, or returns the bytes of the independent ``rfc8785``
  package.
* Any text: :func:`chainaudit.core.jsonlimits.loads` raises only :class:`InputError`, and
  :func:`chainaudit.core.records.parse_json_line` only :class:`RecordError`; a line it accepts is
  in the domain, and its stored body is the RFC 8785 form of the line's own JSON (plus the
  salt it drew), whichever of its two decoders took it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import event, given
from hypothesis import strategies as st

from chainaudit.core import jsonlimits
from chainaudit.core.canonical import canonicalize
from chainaudit.core.errors import InputError, RecordError
from chainaudit.core.records import KINDS, parse_json_line
from tests.fuzz.budget import fuzz_settings

SAFE = 2**53 - 1
DEPTH = 32


def in_domain(value: Any, depth: int = 0) -> bool:
    """The canonical domain, written independently of chainaudit.core.canonical."""
    if value is None or type(value) is bool:
        return True
    if type(value) is int:
        return -SAFE <= value <= SAFE
    if type(value) is str:
        return not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if type(value) is dict:
        return depth < DEPTH and all(
            type(k) is str and in_domain(k) and in_domain(v, depth + 1) for k, v in value.items()
        )
    if type(value) is list:
        return depth < DEPTH and all(in_domain(v, depth + 1) for v in value)
    return False


texts = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(
    ["", "\u20ac", "\U0001f600", "\ud800", "a\udfffb", "\x00\x1f\x7f", "\ufeff", "é"]
)
integers = st.integers() | st.sampled_from([SAFE, SAFE + 1, -SAFE, -SAFE - 1, 0, -1, 2**64])
scalars = st.none() | st.booleans() | integers | texts | st.floats(allow_nan=False)
keys = texts | st.integers(-3, 3) | st.none()


def nested(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)


values = st.recursive(scalars, nested, max_leaves=25)


@st.composite
def deep_values(draw: st.DrawFn) -> Any:
    """A value wrapped in 28 to 36 containers: around the 32-level limit."""
    value = draw(scalars)
    for _ in range(draw(st.integers(28, 36))):
        value = [value] if draw(st.booleans()) else {draw(texts): value}
    return value


@fuzz_settings(300)
@given(values | deep_values())
def test_canonicalize_refuses_exactly_the_out_of_domain_values(value: Any) -> None:
    if not in_domain(value):
        with pytest.raises(RecordError):
            canonicalize(value)
        return
    canonical = canonicalize(value)
    assert canonical == rfc8785.dumps(value)
    assert json.loads(canonical) == value


JSON_TOKENS = [
    "{", "}", "[", "]", ",", ":", '"', '"id"', '"kind"', '"payload"', '"a"', '"\\u00e9"',
    '"\\ud800"', '"\\ud83d\\ude00"', '"\\"', "\\", "0", "-0", "1", "-1", "1.0", "1e2", "1E400",
    "9007199254740991", "9007199254740992", "-9007199254740993", "true", "false", "null",
    "NaN", "Infinity", "-Infinity", " ", "\t", "\n", "\r", "\x00", "\u2028", "\ufeff", "é",
]  # fmt: skip


json_soup = st.lists(st.sampled_from(JSON_TOKENS), max_size=40).map("".join)
json_text = st.recursive(scalars, nested, max_leaves=12).map(
    lambda v: json.dumps(v, ensure_ascii=False)  # int and null keys become strings, maybe twice
)


@fuzz_settings(300)
@given(json_soup | json_text | st.text(st.characters(exclude_categories=()), max_size=60))
def test_any_text_is_parsed_or_refused_with_the_documented_error(text: str) -> None:
    try:
        value = jsonlimits.loads(text)
    except InputError:
        value = None
    else:
        try:
            canonical = canonicalize(value)
        except RecordError:
            assert not in_domain(value)
        else:
            assert in_domain(value) and canonical == rfc8785.dumps(value)


def record_line(payload: Any, extra: str) -> str:
    head = '{"id":"po-1","kind":"transaction","timestamp":"2026-11-21T09:30:00Z","actor":"a:b"'
    return head + ',"payload":' + payload + extra + "}"


safe_scalars = st.none() | st.booleans() | st.integers(-SAFE, SAFE) | st.text(max_size=12)


def one_in(n: int, rare: st.SearchStrategy[Any], usual: st.SearchStrategy[Any]) -> Any:
    """``rare`` one time in ``n``, else ``usual``."""
    return st.integers(1, n).flatmap(lambda i: rare if i == 1 else usual)


payload_texts = st.dictionaries(
    st.text(max_size=8), st.recursive(one_in(20, scalars, safe_scalars), nested, max_leaves=8)
).map(lambda v: json.dumps(v, ensure_ascii=False))  # mostly valid payloads, some hostile
extras = ["", ',"salt":"' + "ab" * 16 + '"', ',"x":1', ',"payload":{}', ',"id":"x"', ',"salt":1']
record_lines = st.builds(
    record_line,
    one_in(4, json_soup | json_text, payload_texts),
    one_in(3, st.sampled_from(extras), st.sampled_from(extras[:2])),
)


@fuzz_settings(300)
@given(one_in(4, json_soup | json_text, record_lines))
def test_the_record_parser_agrees_with_the_reference_or_refuses(line: str) -> None:
    try:
        prepared = parse_json_line(line, 1, kinds=KINDS, submitter="local:fuzz")
    except RecordError:
        event("refused")
        return
    event("accepted")
    sent = json.loads(line)
    assert type(sent) is dict and in_domain(sent)
    body = json.loads(prepared.body)
    assert prepared.body == rfc8785.dumps(body)
    expected = {**sent, "submitter": "local:fuzz"}
    expected.setdefault("salt", body["salt"])
    assert body == expected
