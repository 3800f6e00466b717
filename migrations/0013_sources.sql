-- Data sources (defined in the sources file, `opsight-sources.toml`) as this database knows
-- them: where each one's sync stands. A row is made on a source's first sync or tick.
CREATE TABLE sources (
    name             TEXT PRIMARY KEY,
    watermark        TEXT,       -- highest value of the source's watermark column synced
    next_due         TEXT,       -- its schedule's next tick (RFC 3339), claimed by compare-and-set
    lease_until      TEXT,       -- a sync in progress holds the source until then (renewed)
    leased_by        TEXT,       -- the sync holding it (its id)
    last_success_at  TEXT,
    last_attempt_at  TEXT,
    last_error       TEXT        -- the last failed sync's message; NULL once one succeeds
);

-- One row per sync: what it read and wrote, how long it took, how it ended.
CREATE TABLE source_syncs (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,  -- manual | schedule | command
    actor        TEXT,
    replica      TEXT NOT NULL,
    status       TEXT NOT NULL,  -- running | succeeded | failed | abandoned
    since        TEXT,           -- what was asked for: the window's first day or the watermark
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    rows_read    BIGINT NOT NULL DEFAULT 0,
    inserted     BIGINT NOT NULL DEFAULT 0,
    updated      BIGINT NOT NULL DEFAULT 0,
    duration_ms  BIGINT,
    error        TEXT
);
CREATE INDEX source_syncs_source ON source_syncs (source, started_at);
