-- One row per address: the winning write this node holds (registration or tombstone).
CREATE TABLE IF NOT EXISTS entry (
    address     TEXT PRIMARY KEY,
    app_name    TEXT    NOT NULL,
    last_update INTEGER NOT NULL,  -- wall time stamped by the accepting node; display only
    version     INTEGER NOT NULL,  -- Lamport version of the write
    origin      TEXT    NOT NULL,  -- address of the node that accepted the write
    deleted     INTEGER NOT NULL DEFAULT 0,
    renewed_at  REAL    NOT NULL,  -- lease clock of THIS node: renewal (or deletion) instant
    seen_at     REAL    NOT NULL,  -- lease clock of THIS node when it first stored this version
    seen_round  INTEGER NOT NULL   -- this node's gossip round counter at that instant
);

-- Node-local counters that must survive restarts (the Lamport clock).
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
