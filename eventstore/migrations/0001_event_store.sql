-- memsaga event store: append-only events, content-addressed blobs.
CREATE SCHEMA IF NOT EXISTS memsaga;

-- CACHE 1 is load-bearing: positions must be handed out in time order across sessions
-- for the gap-safe tail (eventstore/tail.py) to reason about in-flight positions.
CREATE SEQUENCE memsaga.events_position_seq AS bigint CACHE 1;

CREATE TABLE memsaga.events (
    position        bigint      NOT NULL DEFAULT nextval('memsaga.events_position_seq'),
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid        NOT NULL,
    stream_id       text        NOT NULL,
    version         bigint      NOT NULL CHECK (version >= 1),
    event_type      text        NOT NULL,
    event_version   integer     NOT NULL CHECK (event_version >= 1),
    correlation_id  text        NOT NULL CHECK (correlation_id <> ''),
    causation_id    text        NOT NULL CHECK (causation_id <> ''),
    user_id         text,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT events_pkey PRIMARY KEY (position),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);
ALTER SEQUENCE memsaga.events_position_seq OWNED BY memsaga.events.position;

CREATE INDEX events_correlation_idx ON memsaga.events (correlation_id, position);
CREATE INDEX events_causation_idx ON memsaga.events (causation_id);

-- Events are facts: refuse UPDATE, DELETE and TRUNCATE at the database itself.
CREATE FUNCTION memsaga.refuse_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'memsaga.events is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'append a compensating event instead of changing or deleting one';
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON memsaga.events
    FOR EACH ROW EXECUTE FUNCTION memsaga.refuse_event_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON memsaga.events
    FOR EACH STATEMENT EXECUTE FUNCTION memsaga.refuse_event_change();

-- One round trip per append: idempotency check, expected-version check and insert.
-- Returns outcome 'appended' | 'duplicate' | 'wrong_version'. The rare race the stream lock
-- cannot prevent (one event id sent to two streams at once) ends in a unique violation,
-- which the caller answers by calling again, when these checks see the winner's rows.
CREATE FUNCTION memsaga.append_events(
    p_stream_id      text,
    p_expected       bigint,   -- -1 any, -2 stream exists, 0 no stream, n exact
    p_event_ids      uuid[],
    p_types          text[],
    p_versions       integer[],
    p_correlation    text[],
    p_causation      text[],
    p_user_ids       text[],
    p_occurred_at    timestamptz[],
    p_payloads       text[],
    p_metadata       text[]
) RETURNS TABLE (outcome text, stream_version bigint, positions bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    v_current   bigint;
    v_positions bigint[];
BEGIN
    -- Take a transaction id before any position: the tail relies on "a position handed out
    -- before a snapshot belongs to a transaction id below that snapshot's xmax".
    PERFORM pg_current_xact_id();

    -- Appenders to one stream queue here (held to the end of the transaction, as a row lock
    -- would be); appenders to different streams do not meet. Without it, a hot stream
    -- turns every concurrent append into a unique-violation retry.
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

    WITH inserted AS (
        INSERT INTO memsaga.events (event_id, stream_id, version, event_type, event_version,
                                    correlation_id, causation_id, user_id, occurred_at, payload, metadata)
        SELECT n.event_id, p_stream_id, v_current + n.ord, n.event_type, n.event_version,
               n.correlation_id, n.causation_id, n.user_id, n.occurred_at, n.payload::jsonb, n.metadata::jsonb
        FROM unnest(p_event_ids, p_types, p_versions, p_correlation, p_causation, p_user_ids,
                    p_occurred_at, p_payloads, p_metadata)
             WITH ORDINALITY AS n(event_id, event_type, event_version, correlation_id, causation_id,
                                  user_id, occurred_at, payload, metadata, ord)
        ORDER BY n.ord
        RETURNING events.version, events.position
    )
    SELECT array_agg(i.position ORDER BY i.version) INTO v_positions FROM inserted i;

    RETURN QUERY SELECT 'appended'::text, v_current + cardinality(p_event_ids), v_positions;
END $$;

CREATE TABLE memsaga.blobs (
    sha256      text        NOT NULL PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size        bigint      NOT NULL,
    content     bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
