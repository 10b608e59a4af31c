-- Partitioned projections (docs/deploy.md, Projection runners): a version's partition count,
-- a checkpoint per partition, the live runners of each projection and a lease per partition.

-- A version's partition count is fixed when it is created; another count is another version.
ALTER TABLE memsaga.projection_versions
    ADD COLUMN partitions integer NOT NULL DEFAULT 1 CHECK (partitions BETWEEN 1 AND 64);

-- The checkpoint of each partition of a partitioned version, written by the runner holding its
-- lease in the transaction of each batch. A partition's position is the greater of its row's
-- and its version's (the build's, which covers every partition); applied adds up.
CREATE TABLE memsaga.projection_partitions (
    name        text        NOT NULL,
    version     integer     NOT NULL,
    partition   integer     NOT NULL CHECK (partition >= 0),
    position    bigint      NOT NULL DEFAULT 0,
    applied     bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version, partition),
    FOREIGN KEY (name, version) REFERENCES memsaga.projection_versions (name, version)
);

-- Runners of a partitioned projection that are alive: each renews its row every few seconds.
CREATE TABLE memsaga.projection_runners (
    name        text        NOT NULL,
    partitions  integer     NOT NULL,
    runner_id   uuid        NOT NULL,
    host        text        NOT NULL,
    pid         integer     NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (name, partitions, runner_id)
);

-- Which runner applies each partition (of a projection with that many partitions): held until
-- expires_at, renewed by its holder, taken by another runner once expired. A batch commits only
-- while its runner holds the lease (checked, and the row share-locked, in the batch's transaction).
CREATE TABLE memsaga.projection_leases (
    name         text        NOT NULL,
    partitions   integer     NOT NULL,
    partition    integer     NOT NULL CHECK (partition >= 0),
    owner        uuid        NOT NULL,
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (name, partitions, partition)
);
