-- voipalert schema 7 (PostgreSQL, the same as schema/0007_override_edits.sql for SQLite):
-- overrides made one at a time (CLI, API, CSV import) next to the ones
-- of the rota file. Only the existing `overrides` table changes (docs/rota-edits.md).
--
-- origin 'file' rows come from `rota import` and are replaced by every import; the others
-- are kept by `rota import --keep-overrides`. made_by is the token's name, the OS user of
-- the CLI, or the console user; made_at is when (UTC text, like every time here).

ALTER TABLE overrides ADD COLUMN origin TEXT NOT NULL DEFAULT 'file'
    CHECK (origin IN ('file', 'cli', 'api', 'csv', 'console'));
ALTER TABLE overrides ADD COLUMN note TEXT NOT NULL DEFAULT '';
ALTER TABLE overrides ADD COLUMN made_by TEXT;
ALTER TABLE overrides ADD COLUMN made_at TEXT;

-- Adding the same override twice (a retried request, a CSV imported again) is a no-op: the
-- edit is found by what it says, not by a client-chosen id.
CREATE UNIQUE INDEX overrides_edit_once ON overrides
    (schedule_id, person_id, coalesce(replaces_person_id, 0), start_at, end_at)
    WHERE origin <> 'file';
CREATE INDEX overrides_by_end ON overrides (end_at);
