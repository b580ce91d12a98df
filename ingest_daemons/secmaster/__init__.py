"""The security master: PostgreSQL tables of series, events and markets, and their change data capture.

* :mod:`postgres` — the database: ``DATABASE_URL`` or an embedded PostgreSQL started by the project;
* :mod:`migrate` — versioned schema migrations, applied on every start;
* :mod:`store` — batched upserts that skip no-op updates;
* :mod:`kalshi_sync` (with :mod:`rest`, :mod:`kalshi_rows`) — the REST sync;
* :mod:`cdc` (with :mod:`cdc_outbox`) — every committed change to ``{ENV}_SECMASTER_CDC``.

See docs/secmaster.md for the design and why CDC uses a transactional outbox.
"""
