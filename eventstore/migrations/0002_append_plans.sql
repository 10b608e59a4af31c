-- PL/pgSQL caches each statement's plan for the life of the connection. Plans made while
-- memsaga.events was small (a new deployment, a test) use sequential scans and keep them as the
-- table grows, until an ANALYZE happens to invalidate them: appends then slow down with the size
-- of the log (measured: 1,900 -> 500 appends/s over 10,000 events on one connection). Every
-- statement in append_events is an index lookup by design (event id, stream id + version), so
-- plan it that way whatever the statistics say.
ALTER FUNCTION memsaga.append_events(text, bigint, uuid[], text[], integer[], text[], text[], text[],
                                     timestamptz[], text[], text[])
    SET enable_seqscan = off;
