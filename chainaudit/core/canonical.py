"""RFC 8785 JSON Canonicalization Scheme (JCS) for chainaudit's JSON values.

Pure, no I/O. chainaudit records hold no floating-point numbers (amounts are integers in minor
units or decimal strings), so the value domain is: objects with string keys, arrays, strings,
integers within the I-JSON safe range (RFC 7493 §2.2: ``|n| <= 2**53 - 1``), booleans and null.
For that domain JCS output is:

* object members sorted by their keys' UTF-16 code units (RFC 8785 §3.2.3),
* no insignificant whitespace,
* strings escaped as ECMAScript's ``JSON.stringify`` does (RFC 8785 §3.2.2.2): only ``"``,
  ``\\``, and the C0 controls, with the short forms ``\\b \\t \\n \\f \\r`` and lowercase
  ``\\u00xx`` otherwise; every other character is written as UTF-8,
* integers in their shortest decimal form (RFC 8785 §3.2.2.3).

Python's :func:`json.dumps` with ``ensure_ascii=False`` escapes exactly those characters, so it
is used as the fast path; keys are sorted by code point there, which equals UTF-16 order unless
a key holds a character outside the Basic Multilingual Plane, and then the slow path sorts by
UTF-16 code units itself.
"""

from __future__ import annotations

import json
from typing import Any

from chainaudit.core.errors import RecordError

__all__ = ["MAX_DEPTH", "MAX_SAFE_INTEGER", "canonicalize", "canonicalize_checked", "check_value"]

MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 32

_dumps = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), check_circular=False
).encode


def check_value(value: Any, path: str = "$", depth: int = 0) -> bool:
    """Check that ``value`` lies in the canonicalisable domain.

    Returns ``True`` when some object key holds a character outside the Basic Multilingual
    Plane (so code-point order and UTF-16 order may differ). Raises :class:`RecordError` naming
    the JSON path of the first float, non-string key, unsafe integer, lone surrogate or
    too-deep nesting.
    """
    kind = type(value)
    if kind is str:
        _check_text(value, path)
        return False
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return False
        raise RecordError(
            f"{path}: integer {value} is outside the exact range ±(2**53-1); "
            "send large amounts as a decimal string"
        )
    if value is None or kind is bool:
        return False
    if depth >= MAX_DEPTH:
        raise RecordError(f"{path}: nesting deeper than {MAX_DEPTH} levels")
    if kind is dict:
        astral = False
        for key, item in value.items():
            if type(key) is not str:
                raise RecordError(f"{path}: object keys must be strings")
            if not key.isascii():
                _check_text(key, path)
                astral = astral or max(key) > "\uffff"
            astral = check_value(item, f"{path}.{key}", depth + 1) or astral
        return astral
    if kind is list:
        astral = False
        for i, item in enumerate(value):
            astral = check_value(item, f"{path}[{i}]", depth + 1) or astral
        return astral
    if kind is float:
        raise RecordError(
            f"{path}: floating-point numbers are not allowed; "
            "use integer minor units or a decimal string"
        )
    raise RecordError(f"{path}: {kind.__name__} is not a JSON value")


def _check_text(text: str, path: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RecordError(f"{path}: string holds a lone surrogate") from exc


def canonicalize(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of ``value``.

    Raises :class:`RecordError` if ``value`` is outside the domain described above.
    """
    if check_value(value):
        return _encode_utf16_sorted(value).encode("utf-8")
    return _dumps(value).encode("utf-8")


def canonicalize_checked(value: Any) -> bytes:
    """Like :func:`canonicalize` for a value already passed through :func:`check_value`
    without astral keys. Skips the second walk; callers must uphold that precondition."""
    return _dumps(value).encode("utf-8")


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be")


def _encode_utf16_sorted(value: Any) -> str:
    if type(value) is dict:
        members = sorted(value.items(), key=lambda item: _utf16_key(item[0]))
        inner = ",".join(f"{_dumps(k)}:{_encode_utf16_sorted(v)}" for k, v in members)
        return "{" + inner + "}"
    if type(value) is list:
        return "[" + ",".join(_encode_utf16_sorted(v) for v in value) + "]"
    return _dumps(value)
