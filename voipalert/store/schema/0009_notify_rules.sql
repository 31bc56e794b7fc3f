-- voipalert schema 9: per-person notification rules and text channels
-- (docs/text-channels.md). Independent of every table but people, contacts and attempts.

-- A contact may be named, so that rules can point at it ("mobile", "desk").
ALTER TABLE contacts ADD COLUMN name TEXT;

-- Without rules a step calls a person's contacts in order; with them, every rule runs at
-- its delay after the step starts notifying the person.
CREATE TABLE notify_rules (
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    contact_position INTEGER NOT NULL CHECK (contact_position >= 0),
    method TEXT NOT NULL CHECK (method IN ('call', 'message')),
    after_seconds INTEGER NOT NULL CHECK (after_seconds BETWEEN 0 AND 86400),
    PRIMARY KEY (person_id, position)
) STRICT;

-- What an attempt does (a call or a text) and which rule made it (NULL: no rules, the
-- contacts in order). A text "answered_no_ack" means delivered and not yet answered.
ALTER TABLE attempts ADD COLUMN method TEXT NOT NULL DEFAULT 'call'
    CHECK (method IN ('call', 'message'));
ALTER TABLE attempts ADD COLUMN rule_index INTEGER CHECK (rule_index >= 0);

-- Replies to texts: which text (attempt) a reply may acknowledge, by its sender, and the
-- log of every reply received (acknowledging or not).
CREATE TABLE text_replies (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('message')),
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    alert_id INTEGER REFERENCES alerts(id),
    attempt_id INTEGER REFERENCES attempts(id),
    result TEXT NOT NULL CHECK (result IN ('acknowledged', 'already_handled', 'not_understood',
                                           'no_open_text'))
) STRICT;
CREATE INDEX text_replies_by_alert ON text_replies (alert_id, id);
