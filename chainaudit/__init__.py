"""chainaudit: provable audit trails and escrowed payments for supply-chain finance.

Records are canonicalised (RFC 8785), hashed into an append-only RFC 9162 Merkle log, and the
log's checkpoints are anchored on an Ethereum chain. Importing the package has no side effects.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
