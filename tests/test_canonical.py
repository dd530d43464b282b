"""RFC 8785 canonical form, checked against the independent ``rfc8785`` package."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from chainaudit.core.canonical import MAX_SAFE_INTEGER, canonicalize
from chainaudit.core.errors import RecordError

# Text without lone surrogates (they cannot be UTF-8), including astral-plane characters.
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | text
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(values)
def test_matches_rfc8785_package(value: Any) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        {"\U0001f600": 1, "\ue000": 2, "a": 3},  # UTF-16 order differs from code-point order
        {"ctl": "\x00\x1f\x7f\u2028", "q": '"\\/', "e": "\u00e9\u20ac"},
        {"b": [True, False, None], "a": {"z": -0, "y": MAX_SAFE_INTEGER}},
    ],
)
def test_tricky_values_match_rfc8785(value: Any) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


def test_rfc8785_key_order_example() -> None:
    """The sorting example of RFC 8785 §3.2.3 (keys only)."""
    value = {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7}
    keys = [k for k in value]
    out = canonicalize(value).decode()
    positions = sorted(keys, key=lambda k: out.index(f'"{k}"' if k != "\r" else '"\\r"'))
    assert positions == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": 1.5}, "floating-point"),
        ({"a": [0, float("nan")]}, "floating-point"),
        ({"a": MAX_SAFE_INTEGER + 1}, "outside the exact range"),
        ({"a": "\ud800"}, "lone surrogate"),
        ({1: "x"}, "keys must be strings"),
        ({"a": (1, 2)}, "not a JSON value"),
    ],
)
def test_out_of_domain_values_are_refused(value: Any, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        canonicalize(value)


def test_nesting_limit() -> None:
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(RecordError, match="nesting deeper"):
        canonicalize(deep)
