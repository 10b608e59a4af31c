-- The ciphertext of an event with personal fields: its whole plain payload, sealed with its user's
-- key (eventstore/encryption.py). The payload column then holds the payload redacted (tokens and
-- blind indexes where the personal values were). NULL for a plain event, and for the rows sealed
-- before this column (their values sit in the payload under "$sealed", and still open).
-- Adding a nullable column without a default rewrites nothing, and touches no stored event.
ALTER TABLE memsaga.events ADD COLUMN sealed bytea;
