-- voipalert schema 8: outgoing status webhooks (docs/outbound.md). An outbox the sender
-- (ingest.status_hooks) drains. Independent of every table but alerts, attempts and
-- audit_log.

-- The configured targets, copied from [outbound.targets.NAME] when serve starts, so that a
-- trigger can fan an event out to them inside the transaction that made it.
CREATE TABLE status_targets (
    name TEXT PRIMARY KEY,
    events TEXT NOT NULL CHECK (json_valid(events))  -- ["created", "resolved", ...]
) STRICT;

-- One row per event, with a snapshot of the alert as it was at that moment (a later
-- change of summary must not rewrite what an earlier notification said).
CREATE TABLE status_events (
    id INTEGER PRIMARY KEY,
    audit_id INTEGER NOT NULL UNIQUE REFERENCES audit_log(id),
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    event TEXT NOT NULL,
    at TEXT NOT NULL,
    payload TEXT NOT NULL CHECK (json_valid(payload))
) STRICT;

-- One row per (event, target): the work of the sender. Rows are kept (history).
CREATE TABLE status_deliveries (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES status_events(id),
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    target TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead', 'cancelled')),
    tries INTEGER NOT NULL DEFAULT 0,
    due_at TEXT NOT NULL,
    sent_at TEXT,
    last_error TEXT
) STRICT;
CREATE INDEX status_deliveries_due ON status_deliveries (target, due_at, id)
    WHERE state = 'pending';
CREATE INDEX status_deliveries_alert ON status_deliveries (target, alert_id, id)
    WHERE state = 'pending';

-- Every change the webhooks report is already written on the audit trail in the
-- transaction that makes it (a key press, the API, the engine, Alertmanager...), so one
-- trigger there queues the notification in that same transaction: the engine never waits
-- for a receiver, and a crash after the commit cannot lose it. Nothing is written while
-- no target is configured.
CREATE TRIGGER status_event_on_audit AFTER INSERT ON audit_log
WHEN NEW.alert_id IS NOT NULL
    AND NEW.action IN ('alert.created', 'escalation.advanced', 'attempt.ended',
                       'alert.acknowledged', 'alert.resolved', 'alert.closed_unacknowledged')
    AND EXISTS (SELECT 1 FROM status_targets)
BEGIN
    INSERT INTO status_events (audit_id, alert_id, event, at, payload)
    SELECT NEW.id, a.id,
        CASE NEW.action
            WHEN 'alert.created' THEN 'created'
            WHEN 'escalation.advanced' THEN 'escalated'
            WHEN 'attempt.ended' THEN 'call'
            WHEN 'alert.acknowledged' THEN 'acknowledged'
            WHEN 'alert.resolved' THEN 'resolved'
            ELSE 'closed'
        END,
        NEW.at,
        json_object(
            'actor', NEW.actor,
            'detail', json_remove(NEW.detail, '$.token'),
            'alert', json_object(
                'id', a.id, 'kind', a.kind, 'status', a.status, 'severity', a.severity,
                'summary', a.summary, 'source', a.source, 'labels', json(a.labels),
                'created_at', a.created_at, 'acked_by', a.acked_by, 'acked_via', a.acked_via,
                'resolved_by', a.resolved_by, 'escalation_repeat', a.esc_repeat,
                'escalation_step', a.esc_step),
            'call', json((SELECT json_object(
                'attempt_id', t.id, 'person', t.person_name, 'contact_kind', t.contact_kind,
                'outcome', t.outcome, 'sip_status', t.sip_status)
                FROM attempts t WHERE t.id = NEW.attempt_id)))
    FROM alerts a WHERE a.id = NEW.alert_id;
    INSERT INTO status_deliveries (event_id, alert_id, target, state, due_at)
    SELECT e.id, e.alert_id, t.name, 'pending', NEW.at
    FROM status_events e JOIN status_targets t
        ON EXISTS (SELECT 1 FROM json_each(t.events) j WHERE j.value = e.event)
    WHERE e.audit_id = NEW.id
    ORDER BY t.name;
END;
