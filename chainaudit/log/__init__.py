"""The log: its store, schema, bundles, ingest, data keys and the indexes that follow it."""
