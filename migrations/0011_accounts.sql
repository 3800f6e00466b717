-- Issue 6: accounts, sessions, API tokens and the audit log.
-- Secrets are stored only as hashes: passwords as Argon2id PHC strings, session ids and API
-- tokens (256 random bits each, so a fast hash is enough) as SHA-256 hex.
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,      -- lower case
    password_hash  TEXT,                      -- NULL: signs in only through the proxy
    role           TEXT NOT NULL,             -- 'viewer' | 'editor' | 'admin'
    disabled       BIGINT NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

CREATE TABLE sessions (
    id_hash       TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id),
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,             -- the first characters, to tell tokens apart
    role          TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);

-- Who changed what: rules, schedules, agents, users and tokens.
CREATE TABLE audit_log (
    id       TEXT PRIMARY KEY,
    at       TEXT NOT NULL,
    actor    TEXT NOT NULL,                  -- 'user:NAME', 'token:NAME', 'cli', 'system'
    action   TEXT NOT NULL,                  -- e.g. 'rules.edit', 'schedule.create'
    target   TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
