# Type stub of the C extension built from _native.c (see chainaudit/log/native.py).

from typing import Any, TypeVar, overload

MAX_RECORD_BYTES: int
SHA256_HARDWARE: bool

_Record = TypeVar("_Record", bound=tuple[str, str, str, int, bool, bytes, bytes])

@overload
def prepare_lines(
    raw: bytes,
    kinds: frozenset[str] | set[str],
    salts: bytes,
    record_type: None = None,
    submitter: str | None = None,
    reserved: tuple[str, ...] | None = None,
    /,
) -> list[tuple[str, str, str, int, bool, bytes, bytes] | int]: ...
@overload
def prepare_lines(
    raw: bytes,
    kinds: frozenset[str] | set[str],
    salts: bytes,
    record_type: type[_Record],
    submitter: str | None = None,
    reserved: tuple[str, ...] | None = None,
    /,
) -> list[_Record | int]: ...
def sha256(data: bytes, /, *, portable: bool = False) -> bytes: ...
def hash_pairs(pairs: bytes, /) -> bytes: ...
def bundle_parts(
    first: int, records: list[Any], fields: tuple[int, int, int, int, int], /
) -> tuple[bytes, bytes]: ...
def batch_bundle_parts(
    first: int, meta: bytes, bodies: bytes, start: int, stop: int, /
) -> tuple[bytes, bytes]: ...
def prepare_batch(
    raw: bytes,
    kinds: frozenset[str] | set[str],
    salts: bytes,
    submitter: str | None = None,
    reserved: tuple[str, ...] | None = None,
    /,
) -> tuple[int, bytes, bytes, bytes, bytes] | None: ...
