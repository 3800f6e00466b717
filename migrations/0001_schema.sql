-- Opsight schema. Portable SQL (SQLite and PostgreSQL): natural or text keys, no
-- autoincrement, dates as ISO 'YYYY-MM-DD' text (sorts correctly), timestamps as
-- RFC 3339 UTC text, JSON documents as text.

-- Distribution centres.
CREATE TABLE sites (
    code        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    region      TEXT NOT NULL DEFAULT ''
);

-- The fact table: one row per order line. A line belongs to the period of its due_date.
CREATE TABLE order_lines (
    order_id        TEXT NOT NULL,
    line_no         BIGINT NOT NULL,
    site            TEXT NOT NULL REFERENCES sites(code),
    customer        TEXT NOT NULL,
    carrier         TEXT NOT NULL,
    sku             TEXT NOT NULL,
    category        TEXT NOT NULL,
    ordered_qty     BIGINT NOT NULL,
    delivered_qty   BIGINT NOT NULL,
    due_date        TEXT NOT NULL,
    delivered_date  TEXT,
    reason_code     TEXT,
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX order_lines_site_due ON order_lines (site, due_date);
CREATE INDEX order_lines_due ON order_lines (due_date);

-- Daily roll-up per site: numerators and denominators, so every aggregate is exact.
-- Rebuilt for the affected days by every import and by seed-demo.
CREATE TABLE kpi_daily (
    site             TEXT NOT NULL,
    day              TEXT NOT NULL,
    week_start       TEXT NOT NULL,          -- Monday of the day's ISO week
    lines            BIGINT NOT NULL,
    otif_lines       BIGINT NOT NULL,
    on_time_lines    BIGINT NOT NULL,
    in_full_lines    BIGINT NOT NULL,
    units_ordered    BIGINT NOT NULL,
    units_delivered  BIGINT NOT NULL,
    PRIMARY KEY (site, day)
);
CREATE INDEX kpi_daily_week ON kpi_daily (week_start, site);

-- KPI definitions shown on every card.
CREATE TABLE metric_definitions (
    metric           TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    definition       TEXT NOT NULL,
    unit             TEXT NOT NULL,          -- 'pct' or 'count'
    higher_is_better BIGINT NOT NULL,        -- 1 or 0
    sort_order       BIGINT NOT NULL
);

-- Targets per metric; site '*' is the network default, a site code overrides it.
CREATE TABLE targets (
    metric  TEXT NOT NULL REFERENCES metric_definitions(metric),
    site    TEXT NOT NULL,
    target  DOUBLE PRECISION NOT NULL,       -- ratio 0..1 for pct metrics, lines for count
    PRIMARY KEY (metric, site)
);

-- Business rules: status thresholds, triggers and KPI parameters, one table, keyed by name.
CREATE TABLE business_rules (
    rule_key     TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,              -- 'threshold' | 'trigger' | 'parameter'
    metric       TEXT,                       -- NULL: applies to all metrics
    value        DOUBLE PRECISION NOT NULL,
    description  TEXT NOT NULL
);

-- Playbooks: a diagnosed cause -> a suggested next action and its owner.
CREATE TABLE playbooks (
    playbook_key TEXT PRIMARY KEY,
    cause        TEXT NOT NULL,              -- e.g. 'reason:carrier_late', 'dimension:carrier', 'data'
    action       TEXT NOT NULL,
    owner        TEXT NOT NULL,
    priority     TEXT NOT NULL               -- 'high' | 'medium' | 'low'
);

-- Key/value settings, e.g. the rules version.
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- Every insight attempt: successful ones carry the contract, failed ones a safe error.
CREATE TABLE insights (
    id              TEXT PRIMARY KEY,
    site            TEXT NOT NULL,           -- a site code or 'network'
    metric          TEXT NOT NULL,
    period_start    TEXT NOT NULL,           -- Monday of the ISO week explained
    created_at      TEXT NOT NULL,
    status          TEXT NOT NULL,           -- 'ok' | 'error'
    agent           TEXT NOT NULL,           -- agent name / endpoint label
    value           DOUBLE PRECISION,        -- KPI value the insight explained
    headline        TEXT NOT NULL,
    narrative       TEXT NOT NULL,
    insight_json    TEXT,                    -- the insight contract, JSON
    evidence_hash   TEXT NOT NULL,
    rules_version   BIGINT NOT NULL,
    error           TEXT,                    -- safe, user-facing error for status 'error'
    latency_ms      BIGINT NOT NULL
);
CREATE INDEX insights_card ON insights (site, metric, created_at);
