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
    method TEXT NOT NULL CHECK (method IN ('call', 'message', 'email')),
    after_seconds INTEGER NOT NULL CHECK (after_seconds BETWEEN 0 AND 86400),
    PRIMARY KEY (person_id, position)
) STRICT;

-- What an attempt does (a call or a text) and which rule made it (NULL: no rules, the
-- contacts in order). A text "answered_no_ack" means delivered and not yet answered.
ALTER TABLE attempts ADD COLUMN method TEXT NOT NULL DEFAULT 'call'
    CHECK (method IN ('call', 'message', 'email'));
ALTER TABLE attempts ADD COLUMN rule_index INTEGER CHECK (rule_index >= 0);

-- Replies to texts: which text (attempt) a reply may acknowledge, by its sender, and the
-- log of every reply received (acknowledging or not).
CREATE TABLE text_replies (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('message', 'email')),
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    alert_id INTEGER REFERENCES alerts(id),
    attempt_id INTEGER REFERENCES attempts(id),
    result TEXT NOT NULL CHECK (result IN ('acknowledged', 'already_handled', 'not_understood',
                                           'no_open_text'))
) STRICT;
CREATE INDEX text_replies_by_alert ON text_replies (alert_id, id);

-- Acknowledgement links sent by e-mail: signed (HMAC with the server key), expiring, and
-- used once: the row is the proof the link was issued and whether it was used.
CREATE TABLE ack_links (
    nonce TEXT PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    attempt_id INTEGER REFERENCES attempts(id),
    person_name TEXT NOT NULL,
    sent_to TEXT NOT NULL,            -- the address the e-mail went to: a reply must come from it
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT,
    used_result TEXT
) STRICT;

-- A contact may be an e-mail address, and so may an attempt's. SQLite cannot alter a CHECK
-- constraint; its documentation (ALTER TABLE, "making other kinds of table schema
-- changes") allows editing the stored CREATE TABLE text under writable_schema when the
-- change does not touch the data's format: here a CHECK only gains a value, which every
-- existing row satisfies. Editing the text in place, rather than rebuilding the tables,
-- keeps any column another migration has added. It comes last: an ALTER TABLE after it
-- would work from the schema as parsed before the edit. The runner bumps schema_version after a
-- migration that does this, so the open connection re-reads the schema (store/db.py).
PRAGMA writable_schema = ON;
UPDATE sqlite_master
SET sql = replace(sql, 'kind IN (''sip'', ''extension'', ''number'')',
                  'kind IN (''sip'', ''extension'', ''number'', ''email'')')
WHERE type = 'table' AND name IN ('contacts', 'attempts');
PRAGMA writable_schema = OFF;
