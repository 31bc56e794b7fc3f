"""Overrides made one at a time: add, list, remove, a CSV of shifts, and the check an import
that keeps them makes (docs/rota-edits.md).

Each change is one write transaction that validates against the rota read in that same
transaction (so an import cannot slip in between), writes the audit log with who made it,
and bumps ``rota_version``: the engine reloads the rota when that counter moves, so the
next alert sees the change without a restart, even when another process made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from voipalert.clock import Clock
from voipalert.domain.errors import RotaError
from voipalert.domain.override_edit import (
    Origin,
    OverrideRecord,
    OverrideRequest,
    check_override,
    describe_override,
    orphans,
    overlapping,
)
from voipalert.domain.rota import Override, PersonName, Rota, ScheduleName
from voipalert.rotafile.shifts_csv import parse_shifts
from voipalert.store import alert_sql, rota_sql
from voipalert.store.db import from_db, from_db_opt, to_db
from voipalert.store.errors import StoreError
from voipalert.store.sql import Conn, Database, Row

MAX_ROW_ID: Final = 2**63 - 1


class OverridesOrphaned(StoreError):
    """``rota import --keep-overrides`` would keep overrides that name a schedule or person
    the new rota drops; ``reasons`` says which, one line each. Nothing was imported."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True, slots=True)
class Added:
    record: OverrideRecord
    created: bool  # False: the same override was already there (nothing changed)
    overlaps: tuple[OverrideRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class CsvImported:
    added: tuple[OverrideRecord, ...]
    already: int  # rows that were already there (an earlier import of the same file)
    would_add: int = 0  # with dry_run: how many rows are new


_SELECT = (
    "SELECT o.id, s.name AS schedule, p.name AS person, r.name AS replaces, o.start_at, "
    "o.end_at, o.origin, o.note, o.made_by, o.made_at FROM overrides o "
    "JOIN schedules s ON s.id = o.schedule_id JOIN people p ON p.id = o.person_id "
    "LEFT JOIN people r ON r.id = o.replaces_person_id"
)


def _record(row: Row) -> OverrideRecord:
    return OverrideRecord(
        id=row["id"],
        override=Override(
            ScheduleName(row["schedule"]),
            PersonName(row["person"]),
            from_db(row["start_at"]),
            from_db(row["end_at"]),
            PersonName(row["replaces"]) if row["replaces"] else None,
        ),
        origin=row["origin"],
        note=row["note"],
        made_by=row["made_by"],
        made_at=from_db_opt(row["made_at"]),
    )


async def select_overrides(
    conn: Conn,
    *,
    schedule: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    edits_only: bool = False,
) -> list[OverrideRecord]:
    """Overrides by start time; ``since``/``until`` keep those whose period meets it."""
    where, params = [], []
    if schedule is not None:
        where.append("s.name = ?")
        params.append(schedule)
    if since is not None:
        where.append("o.end_at > ?")
        params.append(to_db(since))
    if until is not None:
        where.append("o.start_at < ?")
        params.append(to_db(until))
    if edits_only:
        where.append("o.origin <> 'file'")
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
    rows = await conn.execute_fetchall(sql + " ORDER BY o.start_at, o.id", params)
    return [_record(r) for r in rows]


async def _bump_version(conn: Conn) -> None:
    await conn.execute(
        "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
        "WHERE key = 'rota_version'"
    )


async def _insert(
    conn: Conn, o: Override, origin: str, note: str, actor: str, now: datetime
) -> tuple[int, bool]:
    """The row's id and whether it is new (the unique index of migration 0007 makes the
    same override made twice one row)."""
    rows = list(
        await conn.execute_fetchall(
            "INSERT INTO overrides (schedule_id, person_id, replaces_person_id, start_at, "
            "end_at, origin, note, made_by, made_at) "
            # Typed: PostgreSQL cannot infer a bare parameter's type in a SELECT list.
            "SELECT s.id, p.id, r.id, CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), "
            "CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT) FROM schedules s, people p "
            "LEFT JOIN people r ON r.name = ? WHERE s.name = ? AND p.name = ? "
            "ON CONFLICT DO NOTHING RETURNING id",
            (to_db(o.start), to_db(o.end), origin, note, actor, to_db(now), o.replaces,
             o.schedule, o.person),
        )
    )  # fmt: skip
    if rows:
        return int(rows[0]["id"]), True
    same = [
        r
        for r in await select_overrides(conn, schedule=o.schedule, edits_only=True)
        if r.override == o
    ]
    if not same:
        raise StoreError(f"add override {describe_override(o)}: the rota changed meanwhile")
    return same[0].id, False


class OverrideStore:
    _db: Database
    _clock: Clock

    async def list_overrides(
        self,
        *,
        schedule: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[OverrideRecord]:
        async with self._db.transaction(write=False, what="list overrides") as conn:
            return await select_overrides(conn, schedule=schedule, since=since, until=until)

    async def add_override(self, request: OverrideRequest, origin: str, actor: str) -> Added:
        """Validate ``request`` against the stored rota and add it (``RotaError`` with every
        problem, nothing changed). The same override twice is one override."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what="add override") as conn:
            rota = await rota_sql.load_rota(conn)
            override, problems = check_override(rota, request, now)
            if override is None:
                raise RotaError(problems, "override")
            row_id, created = await _insert(
                conn, override, origin, request.note.strip(), actor, now
            )
            records = await select_overrides(conn, schedule=override.schedule)
            record = next(r for r in records if r.id == row_id)
            if created:
                await _bump_version(conn)
                await alert_sql.audit(
                    conn, now, actor, "override.added", id=row_id, origin=origin,
                    schedule=override.schedule, person=override.person,
                    replaces=override.replaces, start=override.start.isoformat(),
                    end=override.end.isoformat(), note=record.note,
                )  # fmt: skip
        return Added(record, created, tuple(overlapping(records, override)))

    async def remove_override(
        self, override_id: int, actor: str, schedule: str | None = None
    ) -> OverrideRecord | None:
        """Remove one override (any origin: a file's comes back with the next import); None
        when there is no such override (in ``schedule``, when given)."""
        if not 1 <= override_id <= MAX_ROW_ID:  # SQLite cannot even bind a bigger int
            return None
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what="remove override") as conn:
            rows = list(await conn.execute_fetchall(_SELECT + " WHERE o.id = ?", (override_id,)))
            if not rows:
                return None
            record = _record(rows[0])
            if schedule is not None and record.override.schedule != schedule:
                return None
            await conn.execute("DELETE FROM overrides WHERE id = ?", (override_id,))
            await _bump_version(conn)
            o = record.override
            await alert_sql.audit(
                conn, now, actor, "override.removed", id=override_id, origin=record.origin,
                schedule=o.schedule, person=o.person, replaces=o.replaces,
                start=o.start.isoformat(), end=o.end.isoformat(), made_by=record.made_by,
            )  # fmt: skip
        return record

    async def import_shifts(
        self, text: str, actor: str, filename: str = "shifts.csv", *, dry_run: bool = False
    ) -> CsvImported:
        """A CSV of shifts, one override per row, all or nothing (``RotaError`` with every
        problem and its line). Rows already stored (an earlier import of the same file) are
        counted, not added again."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=not dry_run, what="import shifts") as conn:
            rota = await rota_sql.load_rota(conn)
            existing = {r.override for r in await select_overrides(conn, edits_only=True)}
            rows = parse_shifts(text, rota, now, existing, filename)
            added: list[int] = []
            already = 0
            for row in rows:
                if row.override in existing or dry_run:
                    already += row.override in existing
                    continue
                row_id, created = await _insert(
                    conn, row.override, Origin.CSV, row.note, actor, now
                )
                if created:
                    added.append(row_id)
                    existing.add(row.override)
                else:
                    already += 1
            if added:
                await _bump_version(conn)
                await alert_sql.audit(
                    conn, now, actor, "overrides.imported", source=filename, added=len(added),
                    already=already, ids=added,
                )  # fmt: skip
            records = {r.id: r for r in await select_overrides(conn, edits_only=True)}
        if dry_run:
            return CsvImported((), already, would_add=len(rows) - already)
        return CsvImported(tuple(records[i] for i in added), already)


async def check_kept_edits(conn: Conn, rota: Rota) -> list[OverrideRecord]:
    """The edits an import with ``--keep-overrides`` keeps, after refusing (``OverridesOrphaned``)
    when any names a schedule or person ``rota`` drops."""
    edits = await select_overrides(conn, edits_only=True)
    reasons = orphans(rota, edits)
    if reasons:
        raise OverridesOrphaned(reasons)
    return edits


async def drop_duplicated_edits(conn: Conn, rota: Rota) -> int:
    """After an import that kept the edits: remove each edit the new file now carries itself
    (an export imported back), so it is not there twice. Returns how many."""
    in_file = set(rota.overrides)
    gone = [r.id for r in await select_overrides(conn, edits_only=True) if r.override in in_file]
    await conn.executemany("DELETE FROM overrides WHERE id = ?", [(i,) for i in gone])
    return len(gone)
