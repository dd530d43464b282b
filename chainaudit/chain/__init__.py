"""The chain: JSON-RPC, the typed AuditAnchor and escrow clients, the devnet toolchain."""
