"""The pure core: canonical form, hashing, Merkle proofs, records, tiles, notes; no I/O."""
