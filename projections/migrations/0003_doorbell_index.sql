-- Appends run their trigger inside memsaga.append_events, whose enable_seqscan = off (eventstore
-- migration 0002) also applies to the trigger's "is any doorbell armed?" query. With only a
-- sequential scan possible, that query was costed at 1e10, past jit_above_cost, and every append
-- paid a JIT compilation (~18 ms, measured: 55 appends/s instead of ~1,000). A partial index on
-- armed doorbells gives the query an index path (and answers it from an empty index while no relay
-- waits).
CREATE INDEX relay_doorbells_armed_idx ON memsaga.relay_doorbells (stream) WHERE armed;
