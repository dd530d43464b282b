def seal_many(
    keys: bytes, nonces: bytes, bodies: list[bytes], aads: list[bytes], magic: bytes, /
) -> list[bytes]: ...
def seal_columns(
    text: bytes,
    meta: bytes,
    kinds: tuple[bytes, ...],
    first: int,
    keys: bytes,
    nonces: bytes,
    magic: bytes,
    /,
) -> tuple[bytes, bytes, bytes]: ...
def drop_sealed(text: bytes, meta: bytes, start: int, stop: int, /) -> tuple[bytes, bytes]: ...
