-- The relay's doorbell: appends notify only while some relay waits for them.
--
-- A transaction that sends NOTIFY holds PostgreSQL's notification-queue lock while it
-- commits, so notifying appends cannot share a WAL flush and commit one after another
-- (docs/performance.md: about half the throughput of eight concurrent appenders). A relay
-- that is busy catching up polls again at once and needs no wake-up; one that has caught up
-- arms its doorbell and waits. So appends notify only while a doorbell is armed.
--
-- UNLOGGED: no WAL for arming, and after a crash the table comes back empty: nobody armed,
-- relays poll on their timer until they arm again (they do whenever they reconnect).
CREATE UNLOGGED TABLE memsaga.relay_doorbells (
    stream     text        NOT NULL PRIMARY KEY,  -- the relay's JetStream stream (its checkpoint's key)
    armed      boolean     NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION memsaga.notify_events_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM memsaga.relay_doorbells WHERE armed) THEN
        PERFORM pg_notify('memsaga_events', '');
    END IF;
    RETURN NULL;
END $$;
