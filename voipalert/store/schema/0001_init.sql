-- voipalert schema 1: rota, alerts, call attempts, audit log, API tokens.
-- Times are UTC ISO-8601 text with microseconds ('2026-03-29T01:00:00.000000+00:00'), so
-- text order is time order. Rota rows are replaced by `rota import`; alerts, attempts and
-- the audit log are history and are never deleted.

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
INSERT INTO meta (key, value) VALUES ('rota_version', '0');

-- ------------------------------------------------------------------ rota
-- people, teams, schedules and policies keep their ids across imports (upsert by name).
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    position INTEGER NOT NULL DEFAULT 0,  -- order in the rota file
    language TEXT NOT NULL
) STRICT;

CREATE TABLE contacts (
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('sip', 'extension', 'number')),
    address TEXT NOT NULL,
    PRIMARY KEY (person_id, position)
) STRICT;

CREATE TABLE teams (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    position INTEGER NOT NULL DEFAULT 0  -- order in the rota file
) STRICT;

CREATE TABLE team_members (
    team_id INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, position),
    UNIQUE (team_id, person_id)
) STRICT;

CREATE TABLE schedules (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    position INTEGER NOT NULL DEFAULT 0,  -- order in the rota file
    time_zone TEXT NOT NULL
) STRICT;

-- One rotation per layer; position 0 is the lowest priority.
CREATE TABLE layers (
    id INTEGER PRIMARY KEY,
    schedule_id INTEGER NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    shift_length INTEGER NOT NULL CHECK (shift_length >= 1),
    shift_unit TEXT NOT NULL CHECK (shift_unit IN ('hours', 'days', 'weeks')),
    start_date TEXT NOT NULL,    -- local date of the first hand-off
    handoff_time TEXT NOT NULL,  -- local wall time, HH:MM:SS
    UNIQUE (schedule_id, position),
    UNIQUE (schedule_id, name)
) STRICT;

CREATE TABLE layer_members (
    layer_id INTEGER NOT NULL REFERENCES layers(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    PRIMARY KEY (layer_id, position)
) STRICT;

CREATE TABLE layer_windows (
    layer_id INTEGER NOT NULL REFERENCES layers(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    days TEXT NOT NULL,          -- ISO weekdays the window starts on, e.g. '5,6,7'
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,      -- end <= start: the window runs past midnight
    PRIMARY KEY (layer_id, position)
) STRICT;

CREATE TABLE overrides (
    id INTEGER PRIMARY KEY,
    schedule_id INTEGER NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    replaces_person_id INTEGER REFERENCES people(id) ON DELETE CASCADE,
    start_at TEXT NOT NULL,
    end_at TEXT NOT NULL,
    CHECK (end_at > start_at)
) STRICT;

CREATE TABLE policies (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    position INTEGER NOT NULL DEFAULT 0,  -- order in the rota file
    repeat_count INTEGER NOT NULL DEFAULT 0 CHECK (repeat_count >= 0),
    repeat_delay_seconds INTEGER NOT NULL DEFAULT 0 CHECK (repeat_delay_seconds >= 0)
) STRICT;

CREATE TABLE policy_steps (
    id INTEGER PRIMARY KEY,
    policy_id INTEGER NOT NULL REFERENCES policies(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    timeout_seconds INTEGER NOT NULL CHECK (timeout_seconds >= 1),
    ring_timeout_seconds INTEGER NOT NULL CHECK (ring_timeout_seconds >= 1),
    UNIQUE (policy_id, position)
) STRICT;

CREATE TABLE step_targets (
    step_id INTEGER NOT NULL REFERENCES policy_steps(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    schedule_id INTEGER REFERENCES schedules(id) ON DELETE CASCADE,
    person_id INTEGER REFERENCES people(id) ON DELETE CASCADE,
    team_id INTEGER REFERENCES teams(id) ON DELETE CASCADE,
    PRIMARY KEY (step_id, position),
    CHECK ((schedule_id IS NOT NULL) + (person_id IS NOT NULL) + (team_id IS NOT NULL) = 1)
) STRICT;

CREATE TABLE routes (
    id INTEGER PRIMARY KEY,
    position INTEGER NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    policy_id INTEGER REFERENCES policies(id) ON DELETE CASCADE,
    team_id INTEGER REFERENCES teams(id) ON DELETE CASCADE,
    match_source TEXT,
    match_severity TEXT,
    match_subject TEXT,
    match_labels TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(match_labels)),
    is_default INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    CHECK (policy_id IS NOT NULL OR team_id IS NOT NULL)
) STRICT;

-- ------------------------------------------------------------------ alerts
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('escalation', 'mass')),
    status TEXT NOT NULL
        CHECK (status IN ('triggered', 'acknowledged', 'resolved', 'closed_unacknowledged')),
    severity TEXT NOT NULL CHECK (severity IN ('critical', 'error', 'warning', 'info')),
    summary TEXT NOT NULL,
    source TEXT NOT NULL,
    dedup_key TEXT,
    fields TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fields)),
    labels TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
    policy_id INTEGER REFERENCES policies(id) ON DELETE SET NULL,
    team_id INTEGER REFERENCES teams(id) ON DELETE SET NULL,
    occurrences INTEGER NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    -- escalation position: pass, step, and when that step started (or will start)
    esc_repeat INTEGER NOT NULL DEFAULT 0,
    esc_step INTEGER NOT NULL DEFAULT 0,
    esc_since TEXT NOT NULL,
    acked_by TEXT,
    acked_via TEXT,
    acked_at TEXT,
    ack_attempt_id INTEGER REFERENCES attempts(id),
    resolved_by TEXT,
    resolved_at TEXT,
    closed_at TEXT,
    close_reason TEXT,
    -- 1 while the engine still has something to do (calls to place or to cancel)
    engine_active INTEGER NOT NULL DEFAULT 1 CHECK (engine_active IN (0, 1))
) STRICT;

-- A repeat of an open alert's dedup key joins it; once closed the key is free again.
CREATE UNIQUE INDEX alerts_open_dedup_key ON alerts (dedup_key)
    WHERE dedup_key IS NOT NULL AND status IN ('triggered', 'acknowledged');
CREATE INDEX alerts_engine_active ON alerts (id) WHERE engine_active = 1;
CREATE INDEX alerts_status ON alerts (status, id);
CREATE INDEX alerts_created ON alerts (created_at, id);

-- ------------------------------------------------------------------ call attempts
-- The row is the intent: it is committed (state 'pending') before anything is dialled,
-- under a key no second dial can share.
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    esc_repeat INTEGER NOT NULL,
    esc_step INTEGER NOT NULL,
    person_name TEXT NOT NULL,
    attempt_no INTEGER NOT NULL CHECK (attempt_no >= 1),
    person_id INTEGER REFERENCES people(id) ON DELETE SET NULL,
    contact_index INTEGER NOT NULL,
    contact_kind TEXT NOT NULL CHECK (contact_kind IN ('sip', 'extension', 'number')),
    contact_address TEXT NOT NULL,
    language TEXT NOT NULL,
    ring_timeout_seconds INTEGER NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('pending', 'in_flight', 'done', 'interrupted', 'cancelled')),
    outcome TEXT CHECK (outcome IN ('acknowledged', 'answered_no_ack', 'no_answer', 'busy',
                                    'declined', 'unreachable', 'failed', 'cancelled')),
    sip_status INTEGER,
    sip_reason TEXT,
    digit TEXT,
    detail TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    answered_at TEXT,
    ended_at TEXT,
    UNIQUE (alert_id, esc_repeat, esc_step, person_name, attempt_no)
) STRICT;

CREATE INDEX attempts_by_alert ON attempts (alert_id, id);
CREATE INDEX attempts_live ON attempts (alert_id) WHERE state IN ('pending', 'in_flight');

-- States only move forward: pending -> in_flight | cancelled;
-- in_flight -> done | interrupted | cancelled; the last three are final. So an attempt that
-- was dialled can never be dialled again.
CREATE TRIGGER attempts_state_forward BEFORE UPDATE OF state ON attempts
WHEN NOT (
    (OLD.state = NEW.state AND OLD.state IN ('pending', 'in_flight'))
    OR (OLD.state = 'pending' AND NEW.state IN ('in_flight', 'cancelled'))
    OR (OLD.state = 'in_flight' AND NEW.state IN ('done', 'interrupted', 'cancelled'))
)
BEGIN
    SELECT RAISE(ABORT, 'attempt state may only move forward');
END;

-- ------------------------------------------------------------------ audit log
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    alert_id INTEGER REFERENCES alerts(id),
    attempt_id INTEGER REFERENCES attempts(id),
    detail TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
) STRICT;

CREATE INDEX audit_log_by_alert ON audit_log (alert_id, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- ------------------------------------------------------------------ API tokens
-- Only a SHA-256 of each token is kept (tokens are 32 random bytes: no need for a slow hash).
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,        -- space-separated: trigger read admin
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
) STRICT;
