-- Isolation between users (docs/privacy.md): row-level security on every read-model table,
-- enabled and forced, and a read role that sees one user's rows per transaction.
--
-- memsaga_reader: the role the read side queries as (projections/row_security.py switches to
-- it in each read transaction, with the user in memsaga.user_id). NOLOGIN: a deployment that
-- wants a login of its own for reads creates one IN ROLE memsaga_reader (docs/privacy.md).
-- Roles belong to the cluster, not the database: another database may have made it already,
-- perhaps at this very moment.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'memsaga_reader') THEN
        CREATE ROLE memsaga_reader NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;

-- The owner of the read models switches to the read role (a superuser is a member of every role).
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'memsaga_reader', 'MEMBER') THEN
        GRANT memsaga_reader TO CURRENT_USER;
    END IF;
END $$;

GRANT USAGE ON SCHEMA memsaga_read TO memsaga_reader;

-- Protect one read-model table; returns whether the read role may read it (it has a user column).
-- Called for every table of every projection version when it is created (projections/versions.py)
-- and below for the tables made before this migration; idempotent.
--
-- Two policies, both permissive:
-- * memsaga_owner_writes, TO the table's owner (the projector, which writes): every row. FORCE makes
--   the owner subject to policies too, so without it the projector would see and write nothing.
--   A policy on a role rather than a session setting only the writer sets: any role can set any
--   memsaga.* setting, but the read role cannot become the owner.
-- * memsaga_reader_one_user, TO memsaga_reader, SELECT only: the rows of the user named in
--   memsaga.user_id for this transaction; none when it is unset or empty.
CREATE FUNCTION memsaga.protect_read_model(p_table regclass) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_owner name := (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = p_table);
    v_has_user boolean := EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = p_table AND attname = 'user_id' AND attnum > 0 AND NOT attisdropped);
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', p_table);
    IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = p_table AND polname = 'memsaga_owner_writes') THEN
        EXECUTE format('CREATE POLICY memsaga_owner_writes ON %s TO %I USING (true) WITH CHECK (true)',
                       p_table, v_owner);
    END IF;
    IF v_has_user THEN
        IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = p_table AND polname = 'memsaga_reader_one_user') THEN
            EXECUTE format($p$CREATE POLICY memsaga_reader_one_user ON %s FOR SELECT TO memsaga_reader
                              USING (user_id = nullif(current_setting('memsaga.user_id', true), ''))$p$,
                           p_table);
        END IF;
        EXECUTE format('GRANT SELECT ON %s TO memsaga_reader', p_table);
    END IF;
    RETURN v_has_user;
END $$;

-- A reader view runs with the rights of whoever queries it (security_invoker), so the policies of
-- its table apply to the read role; without it a view runs as its owner, who sees every row.
-- The read role may query it when it has a user column (its table is then protected above).
CREATE FUNCTION memsaga.expose_read_model_view(p_view regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', p_view);
    IF EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = p_view AND attname = 'user_id' AND attnum > 0 AND NOT attisdropped) THEN
        EXECUTE format('GRANT SELECT ON %s TO memsaga_reader', p_view);
    END IF;
END $$;

-- What existed before this migration.
SELECT memsaga.protect_read_model(c.oid) FROM pg_class c
WHERE c.relnamespace = 'memsaga_read'::regnamespace AND c.relkind IN ('r', 'p');
SELECT memsaga.expose_read_model_view(c.oid) FROM pg_class c
WHERE c.relnamespace = 'memsaga_read'::regnamespace AND c.relkind = 'v';
