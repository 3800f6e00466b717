-- Issue 5: digests and alerts. A notification is stored once (its digest, the generic
-- form); each channel gets a delivery, rendered at send time, retried with backoff.
-- Channel addresses (webhook URLs are credentials) stay in the configuration.
CREATE TABLE notifications (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,            -- 'digest' | 'alert'
    created_at     TEXT NOT NULL,
    title          TEXT NOT NULL,
    schedule_id    TEXT,                     -- the digest schedule that fired it
    site           TEXT,                     -- alerts: the card and the notice
    metric         TEXT,
    notice         TEXT,                     -- 'fired' | 'resolved' | 'flapping'
    items          BIGINT NOT NULL,
    generation_ms  DOUBLE PRECISION,
    body_json      TEXT NOT NULL
);
CREATE INDEX notifications_created ON notifications (created_at);

CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    notification_id  TEXT NOT NULL REFERENCES notifications(id),
    channel          TEXT NOT NULL,
    format           TEXT NOT NULL,          -- 'slack' | 'json' | 'email'
    status           TEXT NOT NULL,          -- 'pending' | 'sending' | 'sent' | 'failed'
    attempts         BIGINT NOT NULL,
    next_attempt_at  TEXT NOT NULL,
    claimed_by       TEXT,
    lease_until      TEXT,
    http_status      BIGINT,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    sent_at          TEXT
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_notification ON deliveries (notification_id);

-- One row per card: its trigger state as last observed, and what people were told.
CREATE TABLE alert_states (
    site         TEXT NOT NULL,
    metric       TEXT NOT NULL,
    firing       BIGINT NOT NULL,
    history      TEXT NOT NULL,              -- last observations, oldest first: '0' / '1'
    flapping     BIGINT NOT NULL,
    notified     BIGINT,                     -- NULL: never; 1: told it fired; 0: told it resolved
    trigger_key  TEXT,
    fingerprint  TEXT NOT NULL,              -- week | value | rules version | trigger
    revision     BIGINT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (site, metric)
);
