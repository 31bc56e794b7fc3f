-- voipalert schema 3: people who log in to the web console, and their sessions.
--
-- A user's name is what the audit log records for everything done from the console (when
-- it is also a person of the rota, "ack" from the console reads like an ack by phone).
-- password_hash is a self-describing scrypt string (voipalert.console.passwords): the
-- parameters travel with the hash, so they can be raised later without a migration.
-- failed_logins counts consecutive failures; at the limit locked_until is set and every
-- login is refused until then, right password or not.
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'responder', 'manager', 'admin')),
    password_hash TEXT NOT NULL,
    language TEXT,               -- 'en', 'fr', or NULL: the browser's choice
    created_at TEXT NOT NULL,
    password_changed_at TEXT NOT NULL,
    failed_logins INTEGER NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until TEXT,
    last_login_at TEXT
) STRICT;

-- Only a SHA-256 of each session id is kept: the cookie carries 32 random bytes, so a copy
-- of the database lets nobody in. A login always makes a new row (session fixation), a
-- logout, a password change or a removal deletes the user's rows. A session lasts a fixed
-- time from the log-in (no sliding expiry: nothing is written per request).
CREATE TABLE sessions (
    id_sha256 TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
) STRICT;

CREATE INDEX sessions_by_user ON sessions (user_id);

-- An invitation: a one-time link that lets its holder choose the password of a new account
-- (name and role chosen by the admin who made it). Only a SHA-256 of the link's token is
-- kept; used_at is set once, when the account is created.
CREATE TABLE invitations (
    token_sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'responder', 'manager', 'admin')),
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
) STRICT;
