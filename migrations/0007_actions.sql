-- Issue 5: closing the loop on next actions. One row per action someone acted on (an
-- action nobody touched has no row: it is "open").
CREATE TABLE action_items (
    id              TEXT PRIMARY KEY,
    insight_id      TEXT NOT NULL,
    site            TEXT NOT NULL,
    metric          TEXT NOT NULL,
    period_start    TEXT NOT NULL,           -- the week the insight explained
    position        BIGINT NOT NULL,         -- index in the insight's next_actions
    action          TEXT NOT NULL,
    owner           TEXT NOT NULL,
    state           TEXT NOT NULL,           -- 'acknowledged' | 'assigned' | 'done' | 'dismissed'
    assignee        TEXT,
    reason          TEXT,                    -- why it was dismissed
    done_on         TEXT,                    -- the day it was marked done (YYYY-MM-DD)
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (insight_id, position)
);
CREATE INDEX action_items_card ON action_items (site, metric, state);
