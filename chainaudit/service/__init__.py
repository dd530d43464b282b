"""The operator's services: anchoring, indexing, reconciliation, statements, trace."""
