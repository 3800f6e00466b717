-- Issue 3: where every insight came from, the grounding check, drill-down conversations
-- and user feedback. Portable SQL (SQLite and PostgreSQL): one column per ALTER.

ALTER TABLE insights ADD COLUMN agent_kind TEXT;
ALTER TABLE insights ADD COLUMN model_version TEXT;      -- registered model version, when known
ALTER TABLE insights ADD COLUMN trace_id TEXT;           -- MLflow trace id, when the agent gave one
ALTER TABLE insights ADD COLUMN grounding_json TEXT;     -- one verdict per root cause, JSON

-- One row per agent call (card refresh or conversation turn), keyed by what it produced.
CREATE TABLE agent_calls (
    id              TEXT PRIMARY KEY,        -- insight id or conversation turn id
    created_at      TEXT NOT NULL,
    agent           TEXT NOT NULL,
    kind            TEXT NOT NULL,           -- mlflow-serve | mlflow-agent-server | databricks | openai-responses | builtin
    endpoint        TEXT NOT NULL,           -- host and path, never credentials
    model           TEXT,                    -- models:/NAME@ALIAS
    model_version   TEXT,
    trace_id        TEXT,
    evidence_hash   TEXT NOT NULL,
    rules_version   BIGINT NOT NULL,
    request_json    TEXT NOT NULL,           -- the body sent (no token: that is a header)
    response_body   TEXT,                    -- the reply as received (JSON or SSE text), <= 1 MB
    status          TEXT NOT NULL,           -- 'ok' | 'error'
    error           TEXT,
    latency_ms      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    input_tokens    BIGINT,
    output_tokens   BIGINT
);

-- A "why is this down?" drill-down: questions and answers about one card's evidence.
CREATE TABLE conversations (
    id              TEXT PRIMARY KEY,
    site            TEXT NOT NULL,
    metric          TEXT NOT NULL,
    period_start    TEXT NOT NULL,
    agent           TEXT NOT NULL,
    title           TEXT NOT NULL,           -- the first question
    created_at      TEXT NOT NULL
);

CREATE TABLE conversation_turns (
    id                  TEXT PRIMARY KEY,
    conversation_id     TEXT NOT NULL REFERENCES conversations (id),
    seq                 BIGINT NOT NULL,     -- 1, 2, ...
    question            TEXT NOT NULL,
    input_items_json    TEXT NOT NULL,       -- input items this turn added (system + user, or user)
    output_items_json   TEXT NOT NULL,       -- the reply's output items ('[]' until done)
    status              TEXT NOT NULL,       -- 'running' | 'ok' | 'error'
    answer              TEXT NOT NULL,
    insight_json        TEXT,
    grounding_json      TEXT,
    error               TEXT,
    created_at          TEXT NOT NULL,
    finished_at         TEXT,
    UNIQUE (conversation_id, seq)
);

-- Thumbs up/down on an insight, and whether it reached MLflow as an assessment.
CREATE TABLE feedback (
    id              TEXT PRIMARY KEY,
    insight_id      TEXT NOT NULL,
    helpful         BIGINT NOT NULL,         -- 1 = thumbs up, 0 = thumbs down
    reason          TEXT,
    user_id         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    mlflow_state    TEXT NOT NULL,           -- 'not_applicable' | 'pending' | 'sent' | 'failed'
    assessment_id   TEXT,
    mlflow_error    TEXT
);
CREATE INDEX feedback_insight ON feedback (insight_id);
