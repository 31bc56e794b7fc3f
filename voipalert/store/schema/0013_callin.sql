-- voipalert schema 13: call-in acknowledgement (docs/call-in.md). Who may use the call-in
-- menu with which PIN, and the failed PIN attempts the hourly limit counts. Keyed by the
-- person's name, independent of every other table: a rota reload that drops and re-adds a
-- person keeps their PIN.
CREATE TABLE callin_people (
    person_name TEXT PRIMARY KEY,
    -- HMAC-SHA256 of the PIN under the server key (store.secret, never in the database):
    -- a copy of the database alone does not give the PINs away (a 4-8 digit PIN with a
    -- plain hash would be found by trying them all). NULL: no PIN set.
    pin_digest TEXT,
    may_resolve INTEGER NOT NULL DEFAULT 0 CHECK (may_resolve IN (0, 1)),
    updated_at TEXT NOT NULL
) STRICT;
CREATE INDEX callin_people_pin ON callin_people (pin_digest);

-- One row per wrong PIN: subject is "caller:<From/asserted URI>" or "person:<name>".
CREATE TABLE callin_pin_failures (
    id INTEGER PRIMARY KEY,
    subject TEXT NOT NULL,
    at TEXT NOT NULL
) STRICT;
CREATE INDEX callin_pin_failures_subject ON callin_pin_failures (subject, at);
