-- Sealed slot and content-hash values are found by their blind index (eventstore/encryption.py):
-- the same lookups as 0001 and 0002, on the sealed form.
CREATE INDEX IF NOT EXISTS events_user_content_hash_blind_idx
    ON memsaga.events (user_id, ((payload->'content_hash'->>'$idx')));
CREATE INDEX IF NOT EXISTS events_user_slot_blind_idx
    ON memsaga.events (user_id, ((payload->'slot'->>'$idx')));
