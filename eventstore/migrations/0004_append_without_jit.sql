-- JIT compilation costs milliseconds and never pays off for the few-row statements of an append;
-- the statements of append_events (and of triggers fired inside it, such as the relay's doorbell
-- check) are planned with enable_seqscan = off, whose disable costs can cross jit_above_cost. So
-- appends never JIT-compile (measured: a forced sequential scan in a trigger made every append pay
-- ~18 ms of JIT).
ALTER FUNCTION memsaga.append_events(text, bigint, uuid[], text[], integer[], text[], text[], text[],
                                     timestamptz[], text[], text[])
    SET jit = off;
