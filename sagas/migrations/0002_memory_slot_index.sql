-- Reconciliation looks up a user's MemoryCreated events by slot (activities/memory_index.py).
-- Not partial, for the reason given in 0001.
CREATE INDEX IF NOT EXISTS events_user_slot_idx
    ON memsaga.events (user_id, (payload->>'slot'));
