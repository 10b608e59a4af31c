-- Whose saga is which (memsaga/saga_owners.py): the Temporal payload codec seals a workflow's
-- payloads with its user's key, so it must know the user from the workflow id alone.
CREATE TABLE IF NOT EXISTS memsaga.saga_owners (
    workflow_id text        PRIMARY KEY,
    user_id     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS saga_owners_user_idx ON memsaga.saga_owners (user_id);
