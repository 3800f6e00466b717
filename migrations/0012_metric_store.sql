-- The metric store: additive tallies per site, due day and dimension member (see
-- app/src/domain/tally.rs), maintained by every import and re-scored when a scoring
-- parameter or a unit cost changes. Packs, tiles, trends, alerts and digests read only
-- this; raw lines are read for drill-through and re-scoring.
CREATE TABLE kpi_facts (
    site                TEXT NOT NULL,
    day                 TEXT NOT NULL,      -- the lines' due date
    dimension           TEXT NOT NULL,      -- '' = the site's total; carrier, customer,
                                            -- category, reason, delivered_on
    member              TEXT NOT NULL,      -- '' for the total (and for no reason code)
    lines               BIGINT NOT NULL,
    otif_lines          BIGINT NOT NULL,
    on_time_lines       BIGINT NOT NULL,
    in_full_lines       BIGINT NOT NULL,
    units_ordered       BIGINT NOT NULL,
    units_delivered     BIGINT NOT NULL,
    open_lines          BIGINT NOT NULL,
    unreasoned_failures BIGINT NOT NULL,
    failed_cost_cents   BIGINT NOT NULL,
    uncosted_failures   BIGINT NOT NULL,
    PRIMARY KEY (site, day, dimension, member)
);
CREATE INDEX kpi_facts_day ON kpi_facts (day, dimension);

-- What the store was tallied with, and a version that moves on with every write to it
-- (read models are cached by it). One row.
CREATE TABLE kpi_store (
    id            BIGINT PRIMARY KEY,
    scoring       TEXT NOT NULL,            -- fingerprint of the scoring rules and unit costs
    data_version  BIGINT NOT NULL,
    updated_at    TEXT NOT NULL
);
INSERT INTO kpi_store (id, scoring, data_version, updated_at) VALUES (1, '', 0, '');

-- Where each line came from: the import that last wrote it and its line in that file.
ALTER TABLE order_lines ADD COLUMN import_id TEXT;
ALTER TABLE order_lines ADD COLUMN import_line BIGINT;

-- The old roll-up (site totals only, scored at import time) and the index only its
-- network scan used.
DROP TABLE kpi_daily;
DROP INDEX order_lines_due;

-- Cards by lens: a weekly and a monthly card (or one compared with a year ago) of the same
-- site and KPI live side by side. `period` is the period explained (its label); rows from
-- before this migration are weekly cards and keep an empty label (read from
-- period_start).
ALTER TABLE insights ADD COLUMN lens TEXT NOT NULL DEFAULT 'week';
ALTER TABLE insights ADD COLUMN period TEXT NOT NULL DEFAULT '';
CREATE INDEX insights_lens ON insights (lens, site, metric, status, created_at);

-- A conversation is about one period and comparison (its label; empty for older rows,
-- which are about the ISO week of period_start, against the week before).
ALTER TABLE conversations ADD COLUMN period TEXT NOT NULL DEFAULT '';
ALTER TABLE conversations ADD COLUMN compare TEXT NOT NULL DEFAULT 'previous';

-- Runs refresh the cards of one period and comparison (its label; empty for the latest
-- complete week when the job runs). Schedules name a grain (`month`: the latest complete
-- month when the tick fires) or a fixed period, and a comparison.
ALTER TABLE refresh_runs ADD COLUMN period TEXT NOT NULL DEFAULT '';
ALTER TABLE refresh_runs ADD COLUMN compare TEXT NOT NULL DEFAULT 'previous';
ALTER TABLE schedules ADD COLUMN period TEXT NOT NULL DEFAULT '';
ALTER TABLE schedules ADD COLUMN compare TEXT NOT NULL DEFAULT 'previous';
