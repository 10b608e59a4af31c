-- memsaga projections: relay checkpoint, projection registry and checkpoints, applied-event
-- tracking, parked events, and the wake-up signal for the relay.
-- Read models live in schema memsaga_read: one table set per projection version
-- (memories_v1, memories_v2, ...) and a view per table (memories) on the active version.

CREATE SCHEMA IF NOT EXISTS memsaga_read;

-- The outbox relay's progress per JetStream stream: the gap-safe tail position up to
-- which every event was acknowledged by JetStream. Only ever moves forward.
CREATE TABLE memsaga.relay_checkpoints (
    stream      text        NOT NULL PRIMARY KEY,
    position    bigint      NOT NULL DEFAULT 0 CHECK (position >= 0),
    published   bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per projection once it has an active read model; readers go through its views.
CREATE TABLE memsaga.projections (
    name              text        NOT NULL PRIMARY KEY,
    active_version    integer     NOT NULL,
    building_version  integer,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Every version of every projection's read model, with its checkpoint: the highest
-- position applied and how many events were applied (duplicates are not counted).
CREATE TABLE memsaga.projection_versions (
    name           text        NOT NULL,
    version        integer     NOT NULL CHECK (version >= 1),
    code_version   integer     NOT NULL,
    state          text        NOT NULL CHECK (state IN ('building', 'active', 'retired')),
    position       bigint      NOT NULL DEFAULT 0,
    applied        bigint      NOT NULL DEFAULT 0,
    build_head     bigint,     -- the event store's head when the rebuild last reported progress
    created_at     timestamptz NOT NULL DEFAULT now(),
    activated_at   timestamptz,
    retired_at     timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

-- Which events each projection version has applied: the idempotency guard that makes
-- at-least-once delivery apply each event exactly once. Written in the handler's transaction.
CREATE TABLE memsaga.projection_applied (
    name        text        NOT NULL,
    version     integer     NOT NULL,
    event_id    uuid        NOT NULL,
    position    bigint      NOT NULL,
    PRIMARY KEY (name, version, event_id)
);

-- Poison events: parked with their error after too many failed deliveries, so the others
-- flow. Nothing is deleted: a retry marks the row 'retried', a drop marks it 'dropped' with
-- the reason; the event itself stays in memsaga.events.
CREATE TABLE memsaga.projection_parked (
    name            text        NOT NULL,
    event_id        uuid        NOT NULL,
    version         integer     NOT NULL,   -- the read-model version it failed on
    position        bigint,
    stream_id       text,
    stream_version  bigint,
    event_type      text,
    error           text        NOT NULL,
    deliveries      integer     NOT NULL,
    retries         integer     NOT NULL DEFAULT 0,
    status          text        NOT NULL DEFAULT 'parked' CHECK (status IN ('parked', 'retried', 'dropped')),
    drop_reason     text,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    PRIMARY KEY (name, event_id),
    CHECK (status <> 'dropped' OR coalesce(drop_reason, '') <> '')
);
CREATE INDEX projection_parked_status_idx ON memsaga.projection_parked (status, name);

-- Wake the relay when events commit. Statement-level: one notification per append, however
-- many events it holds; identical payloads within a transaction fold into one. NOTIFY is
-- only a wake-up: the relay also polls, because notifications sent while it is
-- disconnected are lost.
CREATE FUNCTION memsaga.notify_events_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('memsaga_events', '');
    RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON memsaga.events
    FOR EACH STATEMENT EXECUTE FUNCTION memsaga.notify_events_appended();
