"""The shape of every JSON document chainaudit emits (API, CLI, bundles): ``docs/json.md``.

One scheme everywhere: hashes (leaf hashes, roots, proof nodes, transaction and block hashes)
are ``0x`` and 64 lowercase hex digits; the names are the proof bundle's (``leaf_index``,
``leaf_hash``, ``tree_size``, ``inclusion_proof``, ``checkpoint: {tree_size, root}``,
``anchor: {chain_id, contract, tx_hash, block_number, block_hash, checkpoint_seq, status}``);
a record is named by ``record_id``. Readers accept hex digits in either case.
"""

from __future__ import annotations

__all__ = ["hex0x"]


def hex0x(value: bytes) -> str:
    """A hash as every JSON of the project writes it: ``0x`` and lowercase hex."""
    return "0x" + value.hex()
