-- Where the lifecycle consumer (ssmd lifecycle) stands in its JetStream stream.
--
-- last_seq is the stream sequence of the last lifecycle message applied to the secmaster. It is
-- written in the same transaction as the market and event rows that message changed, so the row
-- changes and the progress commit together or not at all: a message at or below last_seq is
-- already in the tables and is skipped when JetStream delivers it again (after a crash between the
-- commit and the ack, or a restart). The consumer never applies a message before every earlier one
-- (docs/secmaster.md), so last_seq also says that nothing below it is missing.
--
-- stream_created is the stream's creation time as JetStream reports it: a stream deleted and made
-- again numbers its messages from 1, and a progress row of the old stream must not make the
-- consumer skip them.
--
-- Bookkeeping, not reference data: no change data capture triggers on this table.

CREATE TABLE secmaster_lifecycle_progress (
    stream         text        PRIMARY KEY,
    stream_created timestamptz,
    last_seq       bigint      NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
