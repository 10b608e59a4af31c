-- Appends a batch in one round trip: idempotency check, expected-version check and insert.
-- Returns outcome 'appended' | 'duplicate' | 'wrong_version'. The rare race the stream lock
-- cannot prevent (one event id sent to two streams at once) ends in a unique violation, which the
-- caller answers by calling again, when these checks see the winner's rows.
--
-- Parameters: the stream, the expected-version code (-1 any, -2 stream exists, 0 no stream, n
-- exact), then one array per written envelope column, in the order of eventstore/columns.py.
--
-- Why the settings (kept here: CREATE OR REPLACE drops those of the function it replaces):
-- * enable_seqscan = off: PL/pgSQL caches each statement's plan for the life of the connection.
--   Plans made while memsaga.events was small use sequential scans and keep them as the table
--   grows (measured: 1,900 -> 500 appends/s over 10,000 events on one connection). Every
--   statement here is an index lookup by design (event id, stream id + version).
-- * jit = off: JIT compilation costs milliseconds and never pays off for these few-row
--   statements, whose disable costs can cross jit_above_cost (measured: a forced sequential scan
--   in a trigger made every append pay ~18 ms of JIT).
-- A single event is inserted with VALUES instead of unnest() WITH ORDINALITY and array_agg: the
-- same checks, a simpler plan (pgbench, one client: about 1.08x the calls per second); most
-- single events come through append_event instead.
-- The signature before the sealed column (migration 0007) goes: a new parameter is a new function.
DROP FUNCTION IF EXISTS memsaga.append_events(text, bigint, uuid[], text[], integer[], text[], text[],
    text[], timestamptz[], text[], text[]);
CREATE OR REPLACE FUNCTION memsaga.append_events(
    p_stream_id text, p_expected bigint, p_event_ids uuid[], p_types text[], p_versions integer[],
    p_correlation text[], p_causation text[], p_user_ids text[], p_occurred_at timestamptz[],
    p_payloads text[], p_metadata text[], p_sealed bytea[]
) RETURNS TABLE (outcome text, stream_version bigint, positions bigint[])
LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_current   bigint;
    v_position  bigint;
    v_positions bigint[];
BEGIN
    -- A transaction id before any position (eventstore/tail.py relies on it).
    PERFORM pg_current_xact_id();
    -- Appenders to one stream queue here; appenders to different streams do not meet.
    PERFORM pg_advisory_xact_lock(1835363699, hashtext(p_stream_id));
    IF EXISTS (SELECT 1 FROM memsaga.events e WHERE e.event_id = ANY (p_event_ids)) THEN
        RETURN QUERY SELECT 'duplicate'::text, NULL::bigint, NULL::bigint[];
        RETURN;
    END IF;
    SELECT coalesce(max(e.version), 0) INTO v_current FROM memsaga.events e WHERE e.stream_id = p_stream_id;
    IF NOT (p_expected = -1 OR (p_expected = -2 AND v_current > 0) OR p_expected = v_current) THEN
        RETURN QUERY SELECT 'wrong_version'::text, v_current, NULL::bigint[];
        RETURN;
    END IF;
    IF cardinality(p_event_ids) = 1 THEN
        INSERT INTO memsaga.events (event_id, stream_id, version, event_type, event_version,
                                    correlation_id, causation_id, user_id, occurred_at, payload, metadata, sealed)
        VALUES (p_event_ids[1], p_stream_id, v_current + 1, p_types[1], p_versions[1], p_correlation[1],
                p_causation[1], p_user_ids[1], p_occurred_at[1], p_payloads[1]::jsonb, p_metadata[1]::jsonb,
                p_sealed[1])
        RETURNING position INTO v_position;
        RETURN QUERY SELECT 'appended'::text, v_current + 1, ARRAY[v_position];
        RETURN;
    END IF;
    WITH inserted AS (
        INSERT INTO memsaga.events (event_id, stream_id, version, event_type, event_version,
                                    correlation_id, causation_id, user_id, occurred_at, payload, metadata, sealed)
        SELECT n.event_id, p_stream_id, v_current + n.ord, n.event_type, n.event_version,
               n.correlation_id, n.causation_id, n.user_id, n.occurred_at, n.payload::jsonb, n.metadata::jsonb,
               n.sealed
        FROM unnest(p_event_ids, p_types, p_versions, p_correlation, p_causation, p_user_ids,
                    p_occurred_at, p_payloads, p_metadata, p_sealed)
             WITH ORDINALITY AS n(event_id, event_type, event_version, correlation_id, causation_id,
                                  user_id, occurred_at, payload, metadata, sealed, ord)
        ORDER BY n.ord
        RETURNING events.version, events.position
    )
    SELECT array_agg(i.position ORDER BY i.version) INTO v_positions FROM inserted i;
    RETURN QUERY SELECT 'appended'::text, v_current + cardinality(p_event_ids), v_positions;
END $$;
