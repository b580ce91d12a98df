-- Change data capture by transactional outbox (docs/secmaster.md says why, not logical decoding).
--
-- Every row change of series/events/markets writes one outbox row in the same transaction, so a
-- change is captured if and only if it commits. The CDC publisher sends outbox rows to JetStream in
-- id order with Nats-Msg-Id = epoch + id and deletes them only after the acks.
--
-- Commit order: ids come from a sequence when the change happens, not when it commits, so two
-- overlapping writers could commit in the opposite order of their ids. A statement-level trigger
-- therefore takes one transaction-scoped advisory lock before a writer's first change to any of the
-- three tables and holds it to commit: writers of the secmaster are serialised, every id a
-- transaction gets is above every id of the transactions committed before it, and rows never
-- become visible out of id order, so id order is commit order and the publisher never skips a row.
-- Advisory lock keys: (1397968196 = 'SSMD', 1) migrations, (…, 2) this commit order, (…, 3) the
-- publisher's leader lock.

CREATE TABLE secmaster_cdc_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name      text        NOT NULL,
    operation       text        NOT NULL CHECK (operation IN ('insert', 'update', 'delete')),
    row_data        jsonb       NOT NULL,  -- the new row; the old row for a delete
    old_key         jsonb,                 -- primary key before the change (update, delete)
    changed_columns text[],                -- columns an update changed (updated_at left out)
    txid            xid8        NOT NULL DEFAULT pg_current_xact_id(),
    tx_time         timestamptz NOT NULL DEFAULT now()
);

-- One row: a random epoch that makes message ids unique across databases (a re-created database
-- starts its ids at 1 again; the stream's duplicate window must not mistake them for old ones).
CREATE TABLE secmaster_cdc_state (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch      uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO secmaster_cdc_state DEFAULT VALUES;

CREATE FUNCTION secmaster_cdc_serialize() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1397968196, 2);
    RETURN NULL;
END
$$;

-- timezone pinned so timestamps in the JSON are always UTC, whatever the writer's session says.
CREATE FUNCTION secmaster_cdc_capture() RETURNS trigger
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    new_row jsonb;
    old_row jsonb;
    key     jsonb;
    changed text[];
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_row := to_jsonb(OLD);
        SELECT jsonb_object_agg(k, old_row -> k) INTO key FROM unnest(TG_ARGV) AS k;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_row := to_jsonb(NEW);
    END IF;
    IF TG_OP = 'UPDATE' THEN
        SELECT coalesce(array_agg(n.key ORDER BY n.key), '{}') INTO changed
          FROM jsonb_each(new_row) AS n
         WHERE n.key <> 'updated_at' AND n.value IS DISTINCT FROM old_row -> n.key;
    END IF;
    INSERT INTO secmaster_cdc_outbox (table_name, operation, row_data, old_key, changed_columns)
    VALUES (TG_TABLE_NAME, lower(TG_OP), coalesce(new_row, old_row), key, changed);
    PERFORM pg_notify('ssmd_secmaster_cdc', '');  -- delivered at commit; the publisher wakes up
    RETURN NULL;
END
$$;

CREATE FUNCTION secmaster_cdc_no_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE % would bypass change data capture; use DELETE', TG_TABLE_NAME
        USING ERRCODE = 'feature_not_supported';
END
$$;

CREATE TRIGGER series_cdc_order BEFORE INSERT OR UPDATE OR DELETE ON series
    FOR EACH STATEMENT EXECUTE FUNCTION secmaster_cdc_serialize();
CREATE TRIGGER series_cdc AFTER INSERT OR UPDATE OR DELETE ON series
    FOR EACH ROW EXECUTE FUNCTION secmaster_cdc_capture('feed', 'ticker');
CREATE TRIGGER series_no_truncate BEFORE TRUNCATE ON series
    FOR EACH STATEMENT EXECUTE FUNCTION secmaster_cdc_no_truncate();

CREATE TRIGGER events_cdc_order BEFORE INSERT OR UPDATE OR DELETE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION secmaster_cdc_serialize();
CREATE TRIGGER events_cdc AFTER INSERT OR UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION secmaster_cdc_capture('feed', 'event_ticker');
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION secmaster_cdc_no_truncate();

CREATE TRIGGER markets_cdc_order BEFORE INSERT OR UPDATE OR DELETE ON markets
    FOR EACH STATEMENT EXECUTE FUNCTION secmaster_cdc_serialize();
CREATE TRIGGER markets_cdc AFTER INSERT OR UPDATE OR DELETE ON markets
    FOR EACH ROW EXECUTE FUNCTION secmaster_cdc_capture('feed', 'ticker');
CREATE TRIGGER markets_no_truncate BEFORE TRUNCATE ON markets
    FOR EACH STATEMENT EXECUTE FUNCTION secmaster_cdc_no_truncate();
