# Type stub of the C extension built from _native.c (see chainaudit/native.py).

MAX_RECORD_BYTES: int
SHA256_HARDWARE: bool

def prepare_lines(
    raw: bytes, kinds: frozenset[str] | set[str], salts: bytes, /
) -> list[tuple[str, str, str, int, bool, bytes, bytes] | int]: ...
def sha256(data: bytes, /, *, portable: bool = False) -> bytes: ...
def hash_pairs(pairs: bytes, /) -> bytes: ...
