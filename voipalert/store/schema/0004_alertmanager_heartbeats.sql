-- voipalert schema 4: Alertmanager silences (an outbox the silencer drains) and heartbeat
-- monitors. Independent of every table but alerts.

-- ------------------------------------------------------------------ Alertmanager
-- Which Alertmanager an alert came from and what a silence for it matches. Written with
-- the alert, from the hook's configuration (never from the payload alone).
CREATE TABLE am_links (
    alert_id INTEGER PRIMARY KEY REFERENCES alerts(id),
    hook TEXT NOT NULL,
    url TEXT NOT NULL,                -- the Alertmanager's base URL
    matchers TEXT NOT NULL CHECK (json_valid(matchers)),  -- {"label": "value", ...}
    silence_seconds INTEGER NOT NULL CHECK (silence_seconds >= 60),
    comment_url TEXT                  -- where the silence's comment points (the alert)
) STRICT;

-- Work for the silencer: one row per request to make. Rows are kept (history).
CREATE TABLE am_outbox (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    action TEXT NOT NULL CHECK (action IN ('silence', 'expire')),
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'cancelled')),
    tries INTEGER NOT NULL DEFAULT 0,
    due_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    silence_id TEXT,
    last_error TEXT
) STRICT;
CREATE INDEX am_outbox_due ON am_outbox (due_at, id) WHERE state = 'pending';
CREATE INDEX am_outbox_alert ON am_outbox (alert_id, action);

-- Every path that acknowledges (a key press, the API, e-mail...) goes through this one
-- UPDATE of alerts.status, so the request is queued in the ack's own transaction: an ack
-- never waits for the Alertmanager, and a crash after it cannot lose the silence.
CREATE TRIGGER am_silence_on_ack AFTER UPDATE OF status ON alerts
WHEN NEW.status = 'acknowledged' AND OLD.status = 'triggered'
BEGIN
    INSERT INTO am_outbox (alert_id, action, state, due_at, created_at)
    SELECT NEW.id, 'silence', 'pending', NEW.acked_at, NEW.acked_at
    FROM am_links WHERE alert_id = NEW.id;
END;

CREATE TRIGGER am_expire_on_close AFTER UPDATE OF status ON alerts
WHEN NEW.status IN ('resolved', 'closed_unacknowledged')
    AND OLD.status IN ('triggered', 'acknowledged')
BEGIN
    INSERT INTO am_outbox (alert_id, action, state, due_at, created_at)
    SELECT NEW.id, 'expire', 'pending', COALESCE(NEW.resolved_at, NEW.closed_at),
        COALESCE(NEW.resolved_at, NEW.closed_at)
    FROM am_links WHERE alert_id = NEW.id
        AND EXISTS (SELECT 1 FROM am_outbox o WHERE o.alert_id = NEW.id
                    AND o.action = 'silence' AND o.state IN ('pending', 'done'));
END;

-- ------------------------------------------------------------------ heartbeats
-- A dead man's switch: no beat within every_seconds + grace_seconds opens an alert.
CREATE TABLE heartbeats (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,  -- the URL's secret is never stored
    every_seconds INTEGER NOT NULL CHECK (every_seconds >= 1),
    grace_seconds INTEGER NOT NULL DEFAULT 0 CHECK (grace_seconds >= 0),
    team TEXT,
    policy TEXT,
    severity TEXT NOT NULL DEFAULT 'critical'
        CHECK (severity IN ('critical', 'error', 'warning', 'info')),
    created_at TEXT NOT NULL,
    last_beat_at TEXT,
    beats INTEGER NOT NULL DEFAULT 0,
    down INTEGER NOT NULL DEFAULT 0 CHECK (down IN (0, 1))  -- its alert has been opened
) STRICT;
