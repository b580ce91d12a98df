-- Secmaster reference data: series (with the category), events, markets; one row per (feed, ticker).
-- Only reference fields live here: prices, sizes and volumes change every second and belong to the
-- market-data streams, so a REST sync that finds nothing new really writes nothing.
-- Statuses keep the exchange's REST response vocabulary (Kalshi: initialized, active, inactive,
-- closed, determined, disputed, amended, finalized; protocols.md A7). No foreign keys: the REST API
-- lists markets whose event it does not list (multivariate events), and rows must still land.

CREATE TABLE series (
    feed               text        NOT NULL,
    ticker             text        NOT NULL,
    title              text        NOT NULL DEFAULT '',
    category           text,
    tags               text[]      NOT NULL DEFAULT '{}',
    frequency          text,
    fee_type           text,
    fee_multiplier     numeric,
    settlement_sources jsonb       NOT NULL DEFAULT '[]',
    contract_url       text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed, ticker)
);
CREATE INDEX series_category_idx ON series (feed, category);

CREATE TABLE events (
    feed                   text        NOT NULL,
    event_ticker           text        NOT NULL,
    series_ticker          text        NOT NULL,
    title                  text        NOT NULL DEFAULT '',
    sub_title              text,
    category               text,  -- deprecated upstream; the series' category is authoritative
    collateral_return_type text,
    mutually_exclusive     boolean,
    strike_date            timestamptz,
    strike_period          text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed, event_ticker)
);
CREATE INDEX events_series_idx ON events (feed, series_ticker);

CREATE TABLE markets (
    feed                     text        NOT NULL,
    ticker                   text        NOT NULL,
    event_ticker             text        NOT NULL,
    market_type              text,
    title                    text        NOT NULL DEFAULT '',
    subtitle                 text,
    yes_sub_title            text,
    no_sub_title             text,
    status                   text        NOT NULL,
    result                   text,
    can_close_early          boolean,
    open_time                timestamptz,
    close_time               timestamptz,
    expected_expiration_time timestamptz,
    latest_expiration_time   timestamptz,
    settlement_timer_seconds integer,
    strike_type              text,
    floor_strike             numeric,
    cap_strike               numeric,
    custom_strike            jsonb,
    settlement_value_dollars numeric,
    settlement_ts            timestamptz,
    notional_value_dollars   numeric,
    price_level_structure    text,
    rules_primary            text,
    rules_secondary          text,
    exchange_created_time    timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed, ticker)
);
CREATE INDEX markets_event_idx ON markets (feed, event_ticker);
CREATE INDEX markets_status_idx ON markets (feed, status);

-- Every writer (REST sync, lifecycle consumer, a person with psql) gets the same rule: an UPDATE that
-- changes nothing but the timestamps is dropped, so updated_at and change data capture move only on
-- real changes; a real change stamps updated_at and keeps created_at.
CREATE FUNCTION secmaster_touch_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (to_jsonb(NEW) - 'updated_at' - 'created_at') = (to_jsonb(OLD) - 'updated_at' - 'created_at') THEN
        RETURN NULL;
    END IF;
    NEW.created_at := OLD.created_at;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER series_touch BEFORE UPDATE ON series FOR EACH ROW EXECUTE FUNCTION secmaster_touch_row();
CREATE TRIGGER events_touch BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION secmaster_touch_row();
CREATE TRIGGER markets_touch BEFORE UPDATE ON markets FOR EACH ROW EXECUTE FUNCTION secmaster_touch_row();
