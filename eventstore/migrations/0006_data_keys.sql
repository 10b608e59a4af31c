-- Per-user data keys for personal data (eventstore/keys.py), wrapped by the master key.
-- Destroying a key (forgetting a user) clears `wrapped` for good: what it sealed is unreadable.
CREATE TABLE memsaga.data_keys (
    user_id       text        PRIMARY KEY,
    wrapped       bytea,
    master_key_id text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    destroyed_at  timestamptz,
    CONSTRAINT data_keys_destroyed CHECK ((wrapped IS NULL) = (destroyed_at IS NOT NULL)),
    CONSTRAINT data_keys_master CHECK ((wrapped IS NULL) = (master_key_id IS NULL))
);

-- Blobs sealed with their user's key are stored under an address keyed by that user.
ALTER TABLE memsaga.blobs ADD COLUMN sealed boolean NOT NULL DEFAULT false;
