"""Limits that keep hostile JSON from crashing a process, checked before any parser runs.

CPython's ``json`` module parses nested arrays and objects recursively. Under the default
recursion limit (1,000) a deeply nested document raises :class:`RecursionError`; under a
raised limit it overflows the C stack and the process dies with ``SIGSEGV``. The library
``py_ecc`` (imported by ``eth_account``, hence by web3) raises the limit to 100,000 when it
is imported, so every chainaudit process that touches the chain was exposed.

Two defences, both here:

* :func:`check_nesting` counts bracket depth outside JSON strings with C-speed primitives (a
  regular expression removes strings, ``bytes.translate`` keeps the brackets, a running sum
  finds the deepest point) and refuses text nested deeper than :data:`MAX_JSON_DEPTH` with
  :class:`~chainaudit.core.errors.JsonNestingError`. The API runs it on every request body, the
  CLI on every bundle and JSON Lines record it reads.
* :func:`restore_recursion_limit` imports ``py_ecc`` (so that it cannot raise the limit later)
  and puts the interpreter's default limit back. The CLI, the API and the chain edge call it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import sys
from array import array
from itertools import accumulate
from typing import Any, Final

from chainaudit.core.errors import DuplicateKeyError, InputError, JsonNestingError, JsonSyntaxError

__all__ = [
    "DEFAULT_RECURSION_LIMIT",
    "MAX_JSON_DEPTH",
    "check_nesting",
    "loads",
    "nesting_depth",
    "pointer_token",
    "restore_recursion_limit",
]

MAX_JSON_DEPTH: Final = 64
"""The deepest nesting of arrays and objects accepted in any JSON input (a record may nest
at most 32 levels, :data:`chainaudit.core.canonical.MAX_DEPTH`; a bundle wraps it in one more)."""

DEFAULT_RECURSION_LIMIT: Final = 1000
"""CPython's default recursion limit, which :func:`restore_recursion_limit` puts back."""

_STRING: Final = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)
"""A JSON string; an unterminated one runs to the end of the text (a parser stops there, and
a lone backslash at the end is taken too: the match never fails, so every byte is scanned
once — no backtracking, no quadratic time)."""

_BRACKETS: Final = b"[]{}"
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in _BRACKETS)
_STEPS: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
"""Opening brackets become +1 and closing ones -1 (``0xff`` read as a signed byte)."""


def nesting_depth(text: str | bytes) -> int:
    """Return how deeply ``text`` nests arrays and objects, counting brackets outside JSON
    strings.

    For valid JSON this is exact. For invalid JSON it is an upper bound of the depth a
    recursive parser reaches before it stops at the first error (brackets of either kind
    close any open one; an unterminated string runs to the end, where a parser stops).
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(accumulate(array("b", brackets.translate(_STEPS)), initial=0))


def check_nesting(
    text: str | bytes, *, limit: int = MAX_JSON_DEPTH, source: str = "JSON input"
) -> None:
    """Raise :class:`~chainaudit.core.errors.JsonNestingError` if ``text`` nests arrays and objects
    deeper than ``limit`` levels; return nothing otherwise. Cheap for small inputs: text
    with at most ``limit`` opening brackets passes without a scan."""
    if isinstance(text, str):
        if text.count("[") + text.count("{") <= limit:
            return
    elif text.count(b"[") + text.count(b"{") <= limit:
        return
    depth = nesting_depth(text)
    if depth > limit:
        raise JsonNestingError(
            f"{source} nests arrays and objects {depth} levels deep; at most {limit} are allowed",
            depth=depth,
            limit=limit,
        )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Duplicate(key)
        result[key] = value
    return result


class _Duplicate(Exception):  # noqa: N818 - internal control flow
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _Marked:
    """Stands for an object with a repeated member in the second, locating parse."""

    def __init__(self, key: str, pairs: list[tuple[str, Any]]) -> None:
        self.key = key
        self.pairs = pairs


def _mark_duplicates(pairs: list[tuple[str, Any]]) -> Any:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return _Marked(key, pairs)
        seen.add(key)
    return dict(pairs)


def pointer_token(part: str | int) -> str:
    """One reference token of an RFC 6901 JSON pointer (``~`` and ``/`` escaped)."""
    return str(part).replace("~", "~0").replace("/", "~1")


def _find_marked(value: Any, path: str) -> tuple[str, str] | None:
    """The pointer and key of the first object in ``value`` marked as repeating a member."""
    if isinstance(value, _Marked):
        for key, child in value.pairs:
            found = _find_marked(child, f"{path}/{pointer_token(key)}")
            if found is not None:
                return found
        return f"{path}/{pointer_token(value.key)}", value.key
    children = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for name, child in children:
        found = _find_marked(child, f"{path}/{pointer_token(name)}")
        if found is not None:
            return found
    return None


def _locate_duplicate(text: str, key: str) -> tuple[str, str]:
    """Where the (first innermost) repeated member of ``text`` is: ``(pointer, key)``."""
    found = _find_marked(json.loads(text, object_pairs_hook=_mark_duplicates), "")
    return found if found is not None else ("", key)


def loads(text: str | bytes, *, source: str = "JSON input", limit: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON text after :func:`check_nesting`, refusing duplicate object keys.

    Raises :class:`~chainaudit.core.errors.InputError` (naming ``source``) for text that is not
    UTF-8, not JSON (:class:`~chainaudit.core.errors.JsonSyntaxError`, with the byte offset, line
    and column where the parser stopped), nested too deeply
    (:class:`~chainaudit.core.errors.JsonNestingError`) or holding a duplicate key
    (:class:`~chainaudit.core.errors.DuplicateKeyError`, with the JSON pointer of the member).
    """
    check_nesting(text, limit=limit, source=source)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonSyntaxError(
                f"{source}: not valid UTF-8 at byte {exc.start} ({exc.reason})",
                offset=exc.start,
                line=exc.object[: exc.start].count(b"\n") + 1,
                column=exc.start - exc.object.rfind(b"\n", 0, exc.start),
            ) from exc
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except _Duplicate as exc:
        pointer, key = _locate_duplicate(text, exc.key)
        raise DuplicateKeyError(
            f"{source}: duplicate JSON key {key!r} at {pointer or '/'}; "
            "every member of an object must have its own name",
            key=key,
            pointer=pointer,
        ) from None
    except json.JSONDecodeError as exc:
        offset = len(text[: exc.pos].encode("utf-8", "surrogatepass"))
        raise JsonSyntaxError(
            f"{source}: not valid JSON at byte {offset} (line {exc.lineno}, column "
            f"{exc.colno}): {exc.msg}",
            offset=offset,
            line=exc.lineno,
            column=exc.colno,
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{source}: not valid JSON ({exc})") from exc


def restore_recursion_limit() -> None:
    """Import ``py_ecc`` now (it raises the recursion limit to 100,000 as it is imported) and
    restore :data:`DEFAULT_RECURSION_LIMIT`, so that later imports cannot raise it again.

    A raised limit turns a deeply nested input into a C stack overflow (``SIGSEGV``) instead
    of a :class:`RecursionError`. Idempotent; a no-op where ``py_ecc`` is not installed.
    """
    with contextlib.suppress(ImportError):  # web3 always brings it
        importlib.import_module("py_ecc")  # for its side effect, undone below
    if sys.getrecursionlimit() > DEFAULT_RECURSION_LIMIT:
        sys.setrecursionlimit(DEFAULT_RECURSION_LIMIT)
