-- Columns a second venue needs in the generic tables (docs/secmaster.md, "Feeds other than Kalshi").
-- Polymarket maps onto the same three levels: series = Gamma event (the level that carries the
-- category, from its tags), events = market (condition id), markets = outcome token (token id, the
-- unit a connector subscribes). Kalshi rows leave these NULL.

ALTER TABLE series  ADD COLUMN slug text;           -- Gamma event slug (the key is its id)
ALTER TABLE events  ADD COLUMN slug text;           -- Gamma market slug
ALTER TABLE events  ADD COLUMN exchange_id text;    -- Gamma market id (its /markets?id= key)
ALTER TABLE events  ADD COLUMN neg_risk boolean;
ALTER TABLE markets ADD COLUMN outcome text;        -- the token's outcome (Yes / No / a name)
ALTER TABLE markets ADD COLUMN outcome_index integer;  -- its position in the market's outcomes
