-- The lifecycle writer announces Polymarket markets as a whole (docs/secmaster.md): a new_market whose
-- Gamma event the secmaster does not hold yet inserts that event's `series` row too (title and slug
-- only where missing; the category stays the sync's). Kalshi's lifecycle messages still write only
-- events and markets.
GRANT SELECT, INSERT, UPDATE ON series TO ssmd_lifecycle_writer;
