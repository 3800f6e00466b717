-- The team's catalogue (app/src/domain/catalogue.rs): extra dimensions and fields kept
-- with each line, and KPIs defined as data.
--
-- `attrs`: a line's catalogue dimensions and fields, a JSON object of text values (NULL
-- when it has none); re-tallies read them back.
ALTER TABLE order_lines ADD COLUMN attrs TEXT;

-- The catalogue the store was tallied with (JSON; '' = none). Part of the scoring
-- fingerprint: a change re-tallies every line.
ALTER TABLE kpi_store ADD COLUMN catalogue TEXT NOT NULL DEFAULT '';

-- Each catalogue KPI's numerator and denominator, in the slot its place in the catalogue
-- gives it (at most 8). Additive like every other tally column.
ALTER TABLE kpi_facts ADD COLUMN m0_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m0_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m1_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m1_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m2_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m2_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m3_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m3_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m4_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m4_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m5_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m5_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m6_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m6_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m7_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_facts ADD COLUMN m7_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m0_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m0_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m1_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m1_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m2_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m2_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m3_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m3_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m4_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m4_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m5_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m5_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m6_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m6_den BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m7_num BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pushed_facts ADD COLUMN m7_den BIGINT NOT NULL DEFAULT 0;
