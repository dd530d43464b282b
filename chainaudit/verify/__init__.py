"""The independent verifier: proof bundles, tlog proofs, clients and the monitor."""
