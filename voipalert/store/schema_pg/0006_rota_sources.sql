-- voipalert schema 6 (PostgreSQL; schema/0006_rota_sources.sql for SQLite): live schedule
-- sources (iCalendar, CalDAV, JSON) and calendars out (docs/rota-sources.md). Depends on
-- schedules only.

-- A schedule's live source, as the rota file gives it (ScheduleSource as JSON). Replaced
-- with the rota.
CREATE TABLE schedule_sources (
    schedule_id BIGINT PRIMARY KEY REFERENCES schedules(id) ON DELETE CASCADE,
    spec TEXT NOT NULL CHECK (CAST(spec AS json) IS NOT NULL)
);

-- The last good copy of each source, and how the latest tries went. Keyed by schedule
-- name (not id) so that a copy survives a rota import that keeps the schedule; a copy
-- whose url differs from the source's current url is ignored.
CREATE TABLE source_copies (
    schedule TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    spec TEXT,                   -- the source's settings the copy was read with (JSON)
    body BYTEA,                  -- the last good body (for 304 and re-expansion)
    etag TEXT,                   -- validators of that body (RFC 9110 §8.8)
    last_modified TEXT,
    shifts TEXT CHECK (shifts IS NULL OR CAST(shifts AS json) IS NOT NULL),  -- expanded shifts
    window_start TEXT,
    window_end TEXT,
    good_at TEXT,                -- when the last good copy was fetched (200)
    checked_at TEXT,             -- last successful check (200 or 304)
    failing_since TEXT,          -- first failure since the last success; NULL when fine
    error TEXT,                  -- the last failure, as operators read it
    alerted INTEGER NOT NULL DEFAULT 0 CHECK (alerted IN (0, 1))  -- 1 while its alert is open
);

-- Calendars out: the per-person and per-schedule feed URLs carry a token derived from the
-- server secret and this generation; rotating bumps the generation (old URLs stop working).
CREATE TABLE calendar_feeds (
    kind TEXT NOT NULL CHECK (kind IN ('person', 'schedule')),
    name TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (kind, name)
);

-- Bumped whenever a source's copy changes, so the engine knows to reload.
INSERT INTO meta (key, value) VALUES ('feeds_version', '0');
