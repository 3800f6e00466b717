-- Issue 4: scheduled refreshes, runs and their jobs, shared by every replica on one database.
-- Portable SQL (SQLite and PostgreSQL). Timestamps are fixed-width RFC 3339 UTC text, so
-- text comparison is time comparison.

-- A cron schedule as the operator wrote it, evaluated in its time zone.
CREATE TABLE schedules (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    cron            TEXT NOT NULL,           -- crontab: 5 fields (or 6, seconds first), or @daily etc.
    timezone        TEXT NOT NULL,           -- IANA name, e.g. 'America/Chicago'
    scope           TEXT NOT NULL,           -- 'all' | 'site' | 'metric' | 'flagged'
    scope_value     TEXT,                    -- the site code or metric key, for 'site' and 'metric'
    catch_up        TEXT NOT NULL,           -- ticks missed while no replica ran: 'once' | 'skip'
    enabled         BIGINT NOT NULL,         -- 1 = active, 0 = paused
    next_fire_at    TEXT,                    -- the next tick (UTC); NULL when paused
    last_fire_at    TEXT,                    -- the last tick claimed (UTC)
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX schedules_due ON schedules (enabled, next_fire_at);

-- One refresh of a scope: from a schedule tick, the dashboard or the command line.
CREATE TABLE refresh_runs (
    id              TEXT PRIMARY KEY,
    schedule_id     TEXT,                    -- NULL for on-demand runs
    schedule_name   TEXT,
    origin          TEXT NOT NULL,           -- 'schedule' | 'manual' | 'cli'
    scope           TEXT NOT NULL,
    scope_value     TEXT,
    scheduled_for   TEXT,                    -- the tick a scheduled run is for (UTC)
    force           BIGINT NOT NULL,         -- 1 = call the agent even for unchanged cards
    status          TEXT NOT NULL,           -- 'running' | 'finished' | 'skipped'
    total           BIGINT NOT NULL,         -- jobs
    note            TEXT,                    -- e.g. catch-up after missed ticks
    created_at      TEXT NOT NULL,
    finished_at     TEXT,
    -- A tick makes at most one run, whichever replica claims it.
    UNIQUE (schedule_id, scheduled_for)
);
CREATE INDEX refresh_runs_status ON refresh_runs (status, created_at);

-- One card of a run. Claimed by one replica at a time under a lease; a replica that dies
-- loses its lease and another takes the job over. `attempts` doubles as the fencing token:
-- a result is stored only by the claim that still holds the job.
CREATE TABLE refresh_jobs (
    id              TEXT PRIMARY KEY,        -- sortable: claims take the oldest first
    run_id          TEXT NOT NULL REFERENCES refresh_runs (id),
    site            TEXT NOT NULL,
    metric          TEXT NOT NULL,
    status          TEXT NOT NULL,           -- 'queued' | 'running' | 'done' | 'unchanged' | 'failed'
    claimed_by      TEXT,                    -- replica id
    lease_until     TEXT,                    -- claim expiry (UTC), renewed while running
    attempts        BIGINT NOT NULL,         -- claims so far
    insight_id      TEXT,                    -- the insight made (done), kept (unchanged) or the failed attempt
    error           TEXT,
    started_at      TEXT,
    finished_at     TEXT,
    UNIQUE (run_id, site, metric)
);
CREATE INDEX refresh_jobs_queue ON refresh_jobs (status, lease_until);
CREATE INDEX refresh_jobs_run ON refresh_jobs (run_id, status);

-- The job that produced an insight: one insight per job, enforced by the database.
ALTER TABLE insights ADD COLUMN job_id TEXT;
CREATE UNIQUE INDEX insights_job ON insights (job_id);
