-- Issue 5: the rules and playbooks editor. Every row can be disabled (kept for the editor,
-- not in force); triggers get their own table with a condition and a streak length; every
-- change bumps settings.rules_version and leaves a row in rule_changes.
ALTER TABLE business_rules ADD COLUMN enabled BIGINT NOT NULL DEFAULT 1;
ALTER TABLE targets ADD COLUMN enabled BIGINT NOT NULL DEFAULT 1;
ALTER TABLE playbooks ADD COLUMN enabled BIGINT NOT NULL DEFAULT 1;

UPDATE business_rules SET kind = 'sensitivity' WHERE rule_key LIKE 'anomaly%';

CREATE TABLE triggers (
    trigger_key  TEXT PRIMARY KEY,
    metric       TEXT NOT NULL REFERENCES metric_definitions(metric),
    condition    TEXT NOT NULL,              -- 'drop' | 'rise' | 'move' | 'below' | 'above' | 'below_target'
    value        DOUBLE PRECISION NOT NULL,  -- points (percent change for volumes), or a level
    periods      BIGINT NOT NULL,            -- consecutive weeks the condition must hold
    description  TEXT NOT NULL,
    enabled      BIGINT NOT NULL DEFAULT 1
);

INSERT INTO triggers (trigger_key, metric, condition, value, periods, description, enabled)
SELECT rule_key, metric, 'drop', value, 1, description, 1 FROM business_rules WHERE kind = 'trigger';
DELETE FROM business_rules WHERE kind = 'trigger';

-- One row per rules version from 2 on: what changed and the whole rule book after it.
CREATE TABLE rule_changes (
    version     BIGINT PRIMARY KEY,
    changed_at  TEXT NOT NULL,
    changed_by  TEXT,                        -- the user, once there are users
    summary     TEXT NOT NULL,
    rules_json  TEXT NOT NULL
);
