-- Appends one event, what most appends carry (a saga step, a command): append_events' checks,
-- in the same order, with the same locks and settings (see append_events.sql for why), taking the
-- event's columns as scalars (in the order of eventstore/columns.py) and returning one row. For
-- one event, the eleven arrays and the set-returning function cost on both ends (measured with
-- asyncpg through one pool: 1.15x the appends per second of append_events' VALUES path with one
-- writer, 1.08x with eight). Three statements instead of five: each PL/pgSQL statement is a trip
-- through the executor (pgbench -M prepared, one client, eight runs of 6 s: median 2,220 calls/s
-- against 2,018 for the same checks in five statements, and 2,510 plain inserts).
-- The signature before the sealed column (migration 0007) goes: a new parameter is a new function.
DROP FUNCTION IF EXISTS memsaga.append_event(text, bigint, uuid, text, integer, text, text, text,
    timestamptz, text, text);
CREATE OR REPLACE FUNCTION memsaga.append_event(
    p_stream_id text, p_expected bigint, p_event_id uuid, p_type text, p_version integer,
    p_correlation text, p_causation text, p_user_id text, p_occurred_at timestamptz,
    p_payload text, p_metadata text, p_sealed bytea,
    OUT outcome text, OUT stream_version bigint, OUT event_position bigint
)
LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_duplicate boolean;
BEGIN
    -- A transaction id before any position (eventstore/tail.py relies on it), then the stream's
    -- lock: appenders to one stream queue here, appenders to different streams do not meet.
    -- A target list is evaluated left to right.
    PERFORM pg_current_xact_id(), pg_advisory_xact_lock(1835363699, hashtext(p_stream_id));
    -- A new statement, so a new snapshot: it sees what the lock's previous holder committed.
    SELECT EXISTS (SELECT 1 FROM memsaga.events e WHERE e.event_id = p_event_id),
           coalesce((SELECT max(e.version) FROM memsaga.events e WHERE e.stream_id = p_stream_id), 0)
      INTO v_duplicate, stream_version;
    IF v_duplicate THEN
        outcome := 'duplicate';
        stream_version := NULL;
        RETURN;
    END IF;
    IF NOT (p_expected = -1 OR (p_expected = -2 AND stream_version > 0) OR p_expected = stream_version) THEN
        outcome := 'wrong_version';
        RETURN;
    END IF;
    stream_version := stream_version + 1;
    INSERT INTO memsaga.events (event_id, stream_id, version, event_type, event_version,
                                correlation_id, causation_id, user_id, occurred_at, payload, metadata, sealed)
    VALUES (p_event_id, p_stream_id, stream_version, p_type, p_version, p_correlation,
            p_causation, p_user_id, p_occurred_at, p_payload::jsonb, p_metadata::jsonb, p_sealed)
    RETURNING events.position INTO event_position;
    outcome := 'appended';
END $$;
