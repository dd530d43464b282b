"""A client of a log's C2SP ``tlog-tiles`` read path: checkpoint, hash tiles, entry bundles.

:class:`TlogClient` fetches the three kinds of object below a log's base URL
(``c2sp.org/tlog-tiles``, "Checkpoints", "Merkle Tree" and "Log Entries"), with a size limit
on every response. :class:`TileReader` binds the client to one tree: a checkpoint's size and
root. From the tiles of that tree it reconstructs any perfect subtree hash, the root at any
smaller size, and RFC 9162 inclusion (§2.1.3.1) and consistency (§2.1.4.1) proofs between any
two sizes up to it, the way Go's ``tlog.TileHashReader`` does.

Every tile the reader uses is authenticated before use:

* the *right edge* of the tree is the partial tile of each level (there is at most one); the
  root of the tree is computed from those tiles alone, and must equal the checkpoint's root
  (that authenticates every hash in them: each is folded into the root);
* a *full* tile of level ``L`` and index ``N`` folds (RFC 9162 §2.1.1) into the node of height
  ``8(L+1)`` and index ``N``, which is entry ``N mod 256`` of tile ``N div 256`` of level
  ``L+1``: the fold must equal that (itself authenticated) entry;
* an entry bundle's entries hash (``SHA-256(0x00 || entry)``) to the level-0 tile's hashes.

A served object that fails any of these raises :class:`~chainaudit.core.errors.VerificationError`
(the log served something its checkpoint does not commit to). A log that cannot be reached,
answers with an error status, or redirects raises :class:`~chainaudit.core.errors.InputError`:
nothing was proved either way. No ``file://`` URLs: only ``http`` and ``https``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import httpx

from chainaudit.core import merkle, note, tlogtiles
from chainaudit.core.errors import InputError, VerificationError
from chainaudit.core.tlogtiles import TILE_HEIGHT, TILE_WIDTH, TileRef

__all__ = [
    "MAX_CHECKPOINT_BYTES",
    "MAX_ENTRY_BUNDLE_BYTES",
    "TileReader",
    "TlogClient",
    "consistency_source",
]

MAX_CHECKPOINT_BYTES: Final = 64 * 1024
"""The largest checkpoint (with its signature lines) the client reads."""
MAX_TILE_BYTES: Final = TILE_WIDTH * tlogtiles.HASH_SIZE
MAX_ENTRY_BUNDLE_BYTES: Final = TILE_WIDTH * (2 + tlogtiles.MAX_ENTRY_BYTES)
"""256 entries of the largest size a uint16 length allows."""
DEFAULT_TIMEOUT: Final = 10.0


class _NotFoundError(Exception):
    """A 404 from the log (internal: a partial tile may have been replaced by the full one)."""


class TlogClient:
    """Fetches a tiled log's read path below ``base_url`` (``http://`` or ``https://``).

    Use as a context manager or call :meth:`close`. Redirects are not followed.
    """

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InputError(f"a log URL is http:// or https://, not {base_url[:60]!r}")
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._http = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TlogClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, limit: int) -> bytes:
        url = self.base_url + path
        try:
            with self._http.stream("GET", url) as response:
                if response.status_code == 404:
                    raise _NotFoundError(url)
                if response.status_code != 200:
                    raise InputError(f"the log answered {response.status_code} for {url}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise VerificationError(
                            f"{url}: the log served more than {limit} bytes", check="read-path"
                        )
                return bytes(body)
        except httpx.HTTPError as exc:
            raise InputError(f"cannot read {url}: {exc}") from exc

    def get(self, path: str, limit: int) -> bytes:
        """The body of ``path`` below the base URL, at most ``limit`` bytes.

        Raises:
            InputError: unreachable, an error status (404 included), or a redirect.
            VerificationError: the body is larger than ``limit``.
        """
        try:
            return self._get(path, limit)
        except _NotFoundError as exc:
            raise InputError(f"the log has no {exc}") from exc

    def checkpoint_note(self) -> bytes:
        """The raw signed checkpoint the log serves (``<base>/checkpoint``)."""
        return self.get("checkpoint", MAX_CHECKPOINT_BYTES)

    def checkpoint(self, log_key: note.Verifier) -> tuple[note.Checkpoint, note.Note]:
        """The served checkpoint, its signature by ``log_key`` checked (tlog-checkpoint).

        Raises:
            NoteError: malformed or not signed by ``log_key`` (a :class:`VerificationError`).
        """
        return note.open_checkpoint(self.checkpoint_note(), log_key)

    def tile(self, ref: TileRef) -> bytes:
        """A hash tile or entry bundle as served. A partial tile that is gone (404) is read
        from the full tile that replaced it (tlog-tiles: clients fall back to the full tile)."""
        limit = MAX_ENTRY_BUNDLE_BYTES if ref.level is None else MAX_TILE_BYTES
        try:
            return self._get(ref.path(), limit)
        except _NotFoundError as exc:
            if not ref.partial:
                raise InputError(f"the log has no {exc}") from exc
        return self.get(TileRef(ref.level, ref.index).path(), limit)


@dataclass
class TileReader:
    """The tree of ``size`` leaves with ``root``, read from a log's tiles (see the module).

    ``size`` and ``root`` come from a checkpoint the caller has verified (or at least will
    compare proofs against); :meth:`check_root` authenticates the right edge against them.
    """

    client: TlogClient
    size: int
    root: bytes
    _tiles: dict[tuple[int, int], list[bytes]] = field(default_factory=dict)
    _edge_checked: bool = False

    def _ref(self, level: int | None, index: int) -> TileRef:
        refs = tlogtiles.tiles_for(self.size, level)
        if not 0 <= index < len(refs):
            raise VerificationError(
                f"tile {level}/{index} is outside a tree of {self.size}", check="read-path"
            )
        return refs[index]

    def _fetch_hashes(self, level: int, index: int) -> list[bytes]:
        ref = self._ref(level, index)
        body = self.client.tile(ref)
        if ref.partial and len(body) > ref.width * tlogtiles.HASH_SIZE:
            body = body[: ref.width * tlogtiles.HASH_SIZE]  # the full tile's prefix
        if len(body) != ref.width * tlogtiles.HASH_SIZE:
            raise VerificationError(
                f"tile {ref.path()} has {len(body)} bytes, not {ref.width} hashes of 32",
                check="read-path",
            )
        return tlogtiles.split_hashes(body)

    def check_root(self) -> None:
        """Compute the root from the right-edge (partial) tiles and compare it with ``root``.

        Raises:
            VerificationError: the tiles do not reproduce the root.
        """
        if self._edge_checked:
            return
        if self.size == 0:
            if self.root != merkle.EMPTY_ROOT:
                raise VerificationError("the empty tree has another root", check="tiles")
            self._edge_checked = True
            return
        for level in range(tlogtiles.levels_for(self.size)):
            refs = tlogtiles.tiles_for(self.size, level)
            if refs and refs[-1].partial:
                self._tiles[(level, refs[-1].index)] = self._fetch_hashes(level, refs[-1].index)
        computed = merkle.range_hash(0, self.size, self._edge_node)
        if computed != self.root:
            raise VerificationError(
                f"the tiles of the tree of size {self.size} give root 0x{computed.hex()}, the "
                f"checkpoint says 0x{self.root.hex()}",
                check="tiles",
            )
        self._edge_checked = True

    def _edge_node(self, height: int, index: int) -> bytes:
        level, (tile, offset, count) = height // TILE_HEIGHT, self._span(height, index)
        return merkle.root_hash(self._tiles[(level, tile)][offset : offset + count])

    @staticmethod
    def _span(height: int, index: int) -> tuple[int, int, int]:
        """Where node (height, index) lies in the tiles of level ``height // 8``: tile index,
        first position, number of tile hashes folding into it."""
        shift = height % TILE_HEIGHT
        first = index << shift
        return first // TILE_WIDTH, first % TILE_WIDTH, 1 << shift

    def tile_hashes(self, level: int, index: int) -> list[bytes]:
        """The authenticated hashes of tile ``index`` of ``level`` in this tree."""
        self.check_root()
        key = (level, index)
        if key in self._tiles:
            return self._tiles[key]
        ref = self._ref(level, index)
        if ref.partial:  # the right edge is loaded by check_root; anything else is a bug
            raise VerificationError(f"tile {ref.path()} was not authenticated", check="tiles")
        hashes = self._fetch_hashes(level, index)
        parent = self.tile_hashes(level + 1, index // TILE_WIDTH)[index % TILE_WIDTH]
        if merkle.root_hash(hashes) != parent:
            raise VerificationError(
                f"tile {ref.path()} does not hash to its parent node in tile "
                f"{level + 1}/{index // TILE_WIDTH}: the log serves a tile its checkpoint does "
                "not commit to",
                check="tiles",
            )
        self._tiles[key] = hashes
        return hashes

    def node(self, height: int, index: int) -> bytes:
        """The hash of the perfect subtree of ``2**height`` leaves starting at leaf
        ``index * 2**height`` (RFC 9162 §2.1.1); it must lie inside the tree."""
        if height < 0 or index < 0 or (index + 1) << height > self.size:
            raise VerificationError(
                f"node ({height}, {index}) is outside a tree of {self.size}", check="read-path"
            )
        tile, offset, count = self._span(height, index)
        hashes = self.tile_hashes(height // TILE_HEIGHT, tile)
        return merkle.root_hash(hashes[offset : offset + count])

    def _check(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise VerificationError(
                f"size {size} is beyond the served tree of {self.size}", check="read-path"
            )

    def root_at(self, size: int) -> bytes:
        """MTH(D[size]) for ``size <= self.size`` (RFC 9162 §2.1.1)."""
        self._check(size)
        if size == self.size:
            self.check_root()
            return self.root
        return merkle.range_hash(0, size, self.node) if size else merkle.EMPTY_ROOT

    def leaf_hash(self, index: int) -> bytes:
        return self.node(0, index)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) (RFC 9162 §2.1.3.1); ``size`` defaults to the tree's."""
        size = self.size if size is None else size
        self._check(size)
        if not 0 <= index < size:
            raise VerificationError(f"leaf {index} is not in a tree of {size}", check="read-path")
        return [merkle.range_hash(a, b, self.node) for a, b in merkle.inclusion_ranges(index, size)]

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1); ``size2`` defaults to the tree's."""
        size2 = self.size if size2 is None else size2
        self._check(size2)
        if not 0 <= size1 <= size2:
            raise VerificationError(
                f"no consistency proof from {size1} to {size2}", check="read-path"
            )
        return [
            merkle.range_hash(a, b, self.node) for a, b in merkle.consistency_ranges(size1, size2)
        ]

    def entries(self, bundle: int) -> list[bytes]:
        """The entries of entry bundle ``bundle``, checked against the level-0 tile."""
        ref = self._ref(None, bundle)
        body = self.client.tile(ref)
        try:
            entries = tlogtiles.decode_entries(body)
        except InputError as exc:
            raise VerificationError(f"entry bundle {ref.path()}: {exc}", check="entries") from exc
        entries = entries[: ref.width] if ref.partial else entries
        leaves = self.tile_hashes(0, bundle)
        if len(entries) != len(leaves) or any(
            merkle.hash_leaf(e) != h for e, h in zip(entries, leaves, strict=False)
        ):
            raise VerificationError(
                f"entry bundle {ref.path()} does not match the tree's leaf hashes",
                check="entries",
            )
        return entries

    def entry(self, index: int) -> bytes:
        """The data of leaf ``index``, authenticated."""
        self._check(index + 1)
        return self.entries(index // TILE_WIDTH)[index % TILE_WIDTH]


def consistency_source(
    base_url: str, log_key: note.Verifier | None = None, *, timeout: float = DEFAULT_TIMEOUT
) -> Callable[[int, int], list[bytes]]:
    """A function returning PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1) built from the tiles
    of the log at ``base_url``, as of the checkpoint it serves when called (its signature
    checked when ``log_key`` is given). The caller verifies the proof against the roots it
    trusts, so a lying log can only make the proof fail.

    The function raises :class:`VerificationError` when the served tree is smaller than
    ``size2`` and :class:`InputError` when the log cannot be read.
    """

    def fetch(size1: int, size2: int) -> list[bytes]:
        with TlogClient(base_url, timeout=timeout) as client:
            raw = client.checkpoint_note()
            if log_key is not None:
                checkpoint, _ = note.open_checkpoint(raw, log_key)
            else:
                checkpoint = note.Checkpoint.parse(note.Note.parse(raw).text)
            if size2 > checkpoint.size:
                raise VerificationError(
                    f"not consistent: the log at {base_url} serves a tree of "
                    f"{checkpoint.size}, smaller than size {size2}",
                    check="state",
                )
            return TileReader(client, checkpoint.size, checkpoint.root).consistency_proof(
                size1, size2
            )

    return fetch
