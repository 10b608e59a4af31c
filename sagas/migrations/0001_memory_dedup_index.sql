-- Deduplication looks up a user's MemoryCreated events by content hash
-- (activities/memory_index.py). Not partial: the query passes the event type as a parameter,
-- and a generic prepared plan could not prove a partial index's predicate.
CREATE INDEX IF NOT EXISTS events_user_content_hash_idx
    ON memsaga.events (user_id, (payload->>'content_hash'));
