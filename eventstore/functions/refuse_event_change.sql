-- Events are facts: the trigger function that refuses UPDATE, DELETE and TRUNCATE on
-- memsaga.events (its triggers: migration 0001).
CREATE OR REPLACE FUNCTION memsaga.refuse_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'memsaga.events is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'append a compensating event instead of changing or deleting one';
END $$;
