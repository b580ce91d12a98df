-- Least privilege: one NOLOGIN role per service, holding exactly what that service does, so no
-- service needs the schema owner or a superuser (docs/secmaster.md, "Database roles").
--
--   ssmd_sync_writer       REST sync (ssmd secmaster sync, the Dagster sync asset): upserts series,
--                          events and markets; never deletes.
--   ssmd_lifecycle_writer  lifecycle consumer (ssmd lifecycle): upserts events and markets, keeps
--                          its stream position in secmaster_lifecycle_progress.
--   ssmd_cdc_reader        CDC publisher (ssmd cdc): reads the outbox and the epoch, deletes outbox
--                          rows once JetStream acknowledged them; cannot touch reference data.
--   ssmd_readonly          Dagster and people: SELECT on every table, including later ones.
--
-- A service logs in as a LOGIN user that is a member of its role (created by the deployment, or by
-- `ssmd` itself for the embedded server); this migration runs as the schema owner, which needs
-- CREATEROLE. Roles belong to the whole cluster, not to one database, so creating them tolerates
-- their existence (another database, or a concurrent migration of one).
--
-- The outbox is written by the CDC capture trigger. It now runs as its owner (SECURITY DEFINER,
-- search_path pinned), so writers need no privilege on the outbox and cannot forge or delete
-- captured changes.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['ssmd_sync_writer', 'ssmd_lifecycle_writer', 'ssmd_cdc_reader', 'ssmd_readonly']
    LOOP
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by a migration of another database
        END;
    END LOOP;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO ssmd_sync_writer, ssmd_lifecycle_writer, ssmd_cdc_reader, ssmd_readonly',
                   current_schema());
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO ssmd_readonly', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO ssmd_readonly', current_schema());
    EXECUTE format('ALTER FUNCTION secmaster_cdc_capture() SECURITY DEFINER SET search_path = %I, pg_temp',
                   current_schema());
END
$$;

-- Every service checks the schema version on start (migrate.py) before it does anything else.
GRANT SELECT ON schema_migrations TO ssmd_sync_writer, ssmd_lifecycle_writer, ssmd_cdc_reader, ssmd_readonly;

GRANT SELECT, INSERT, UPDATE ON series, events, markets TO ssmd_sync_writer;

GRANT SELECT, INSERT, UPDATE ON events, markets TO ssmd_lifecycle_writer;
GRANT SELECT, INSERT, UPDATE ON secmaster_lifecycle_progress TO ssmd_lifecycle_writer;

GRANT SELECT, DELETE ON secmaster_cdc_outbox TO ssmd_cdc_reader;
GRANT SELECT ON secmaster_cdc_state TO ssmd_cdc_reader;
