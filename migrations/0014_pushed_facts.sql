-- Day-level tallies a data source computed itself (push-down: the warehouse runs the
-- GROUP BY, Opsight receives the aggregates, not the lines). The metric store (kpi_facts)
-- holds their sum with the lines' own tallies; these rows are what a re-tally of the
-- lines adds back, and what the source's next sync replaces. `scoring` is the
-- fingerprint of the rules they were scored with: a sync that finds another one reads
-- every day it holds again.
CREATE TABLE pushed_facts (
    source              TEXT NOT NULL,
    site                TEXT NOT NULL,
    day                 TEXT NOT NULL,
    dimension           TEXT NOT NULL,
    member              TEXT NOT NULL,
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
    scoring             TEXT NOT NULL,
    PRIMARY KEY (source, site, day, dimension, member)
);
CREATE INDEX pushed_facts_day ON pushed_facts (source, day);

-- Bytes of values a sync read from its source (lines, or aggregates when pushed down).
ALTER TABLE source_syncs ADD COLUMN bytes_read BIGINT NOT NULL DEFAULT 0;
