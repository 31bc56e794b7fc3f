"""Live schedule sources' copies and the calendars-out generations (docs/rota-sources.md).

A source's row keeps its last good body with its validators (for conditional requests and
for expanding its events again as time moves on) and the shifts expanded from it, plus how
the latest tries went: ``failing_since`` and ``error`` say it is down, ``alerted`` that its
alert is open. ``feeds_version`` (in ``meta``) goes up whenever the shifts change, so the
engine reloads its rota only then.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, replace
from datetime import datetime

from voipalert.domain.rota import Feed, FeedShift, PersonName, Rota
from voipalert.store import rota_sql
from voipalert.store.db import from_db, from_db_opt, to_db
from voipalert.store.sql import Conn, Database, Row


class CopyState(enum.StrEnum):
    LIVE = "live"  # the last check succeeded (200 or 304)
    CACHED = "cached"  # the source is failing: its last good copy answers
    NONE = "none"  # never fetched successfully: nothing answers for it


@dataclass(frozen=True, slots=True)
class SourceCopy:
    schedule: str
    url: str
    body: bytes | None = None
    spec: str | None = None  # the source's settings it was read with (rota_sql JSON)
    etag: str | None = None
    last_modified: str | None = None
    feed: Feed | None = None
    good_at: datetime | None = None
    checked_at: datetime | None = None
    failing_since: datetime | None = None
    error: str | None = None
    alerted: bool = False

    @property
    def state(self) -> CopyState:
        if self.feed is None:
            return CopyState.NONE
        return CopyState.CACHED if self.failing_since is not None else CopyState.LIVE

    def describe(self) -> str:
        """What answered, as ``voipalert oncall`` and ``/readyz`` say it."""
        if self.state is CopyState.LIVE:
            return "live"
        if self.state is CopyState.CACHED:
            assert self.good_at is not None
            return f"cached since {self.good_at.isoformat()} ({self.error})"
        return f"none ({self.error})" if self.error else "none (not fetched yet)"


def feed_to_json(feed: Feed) -> str:
    return json.dumps(
        [[s.person, to_db(s.start), to_db(s.end) if s.end else None] for s in feed.shifts]
    )


def feed_from_json(text: str, start: str, end: str) -> Feed:
    shifts = tuple(
        FeedShift(PersonName(p), from_db(a), from_db(b) if b else None)
        for p, a, b in json.loads(text)
    )
    return Feed(shifts, from_db(start), from_db(end))


def _copy(row: Row) -> SourceCopy:
    feed = None
    if row["shifts"] is not None and row["window_start"] and row["window_end"]:
        feed = feed_from_json(row["shifts"], row["window_start"], row["window_end"])
    return SourceCopy(
        schedule=row["schedule"],
        url=row["url"],
        body=row["body"],
        spec=row["spec"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        feed=feed,
        good_at=from_db_opt(row["good_at"]),
        checked_at=from_db_opt(row["checked_at"]),
        failing_since=from_db_opt(row["failing_since"]),
        error=row["error"],
        alerted=bool(row["alerted"]),
    )


async def _bump(conn: Conn) -> None:
    await conn.execute(
        "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
        "WHERE key = 'feeds_version'"
    )


_REPLACE_COPY = ", ".join(
    f"{column} = excluded.{column}"
    for column in (
        "url", "spec", "body", "etag", "last_modified", "shifts", "window_start", "window_end",
        "good_at", "checked_at", "failing_since", "error", "alerted",
    )
)  # fmt: skip


def attach_feeds(rota: Rota, copies: dict[str, SourceCopy]) -> Rota:
    """``rota`` with each sourced schedule's last good copy attached (a copy of another
    url, left from before the source changed, is not used)."""
    schedules = []
    for schedule in rota.schedules:
        copy = copies.get(schedule.name)
        if schedule.source is not None and copy is not None and copy.url == schedule.source.url:
            schedule = replace(schedule, feed=copy.feed)
        schedules.append(schedule)
    return replace(rota, schedules=tuple(schedules))


class FeedStore:
    """Mixed into ``Store``."""

    _db: Database

    async def source_copies(self) -> dict[str, SourceCopy]:
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall("SELECT * FROM source_copies")
        return {row["schedule"]: _copy(row) for row in rows}

    async def source_copy(self, schedule: str) -> SourceCopy | None:
        async with self._db.transaction(write=False) as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT * FROM source_copies WHERE schedule = ?", (schedule,)
                )
            )
        return _copy(rows[0]) if rows else None

    async def save_source_copy(self, copy: SourceCopy, *, changed: bool) -> None:
        """Write ``copy`` whole; ``changed``: its shifts differ from the stored ones."""
        feed = copy.feed
        async with self._db.transaction(write=True, what="save source copy") as conn:
            await conn.execute(
                # The whole row, written over the old one (what SQLite's INSERT OR REPLACE
                # did; ON CONFLICT is the form both backends take).
                "INSERT INTO source_copies (schedule, url, spec, body, etag, "
                "last_modified, shifts, window_start, window_end, good_at, checked_at, "
                "failing_since, error, alerted) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                f"ON CONFLICT (schedule) DO UPDATE SET {_REPLACE_COPY}",
                (
                    copy.schedule,
                    copy.url,
                    copy.spec,
                    copy.body,
                    copy.etag,
                    copy.last_modified,
                    feed_to_json(feed) if feed else None,
                    to_db(feed.window_start) if feed else None,
                    to_db(feed.window_end) if feed else None,
                    to_db(copy.good_at) if copy.good_at else None,
                    to_db(copy.checked_at) if copy.checked_at else None,
                    to_db(copy.failing_since) if copy.failing_since else None,
                    copy.error,
                    int(copy.alerted),
                ),
            )
            if changed:
                await _bump(conn)

    async def source_states(self) -> dict[str, SourceCopy | None]:
        """Each schedule that has a source now: its copy (None: none of its url)."""
        async with self._db.transaction(write=False, what="read source states") as conn:
            rows = await conn.execute_fetchall(
                # The source's url is read from its spec here rather than with the
                # dialects' different JSON functions.
                "SELECT s.name AS name, ss.spec AS source_spec, c.* "
                "FROM schedule_sources ss JOIN schedules s ON s.id = ss.schedule_id "
                "LEFT JOIN source_copies c ON c.schedule = s.name ORDER BY s.position, s.id"
            )
        return {
            row["name"]: _copy(row)
            if row["url"] == json.loads(row["source_spec"]).get("url")
            else None
            for row in rows
        }

    async def feeds_version(self) -> int:
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall("SELECT value FROM meta WHERE key = 'feeds_version'")
        return int(next(iter(rows))["value"])

    async def rota_key(self) -> tuple[int, int]:
        """(rota_version, feeds_version) in one read: what the engine's cached rota
        depends on."""
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT key, value FROM meta WHERE key IN ('rota_version', 'feeds_version')"
            )
        values = {row["key"]: int(row["value"]) for row in rows}
        return values["rota_version"], values.get("feeds_version", 0)

    async def load_rota_with_feeds(self) -> tuple[Rota, dict[str, SourceCopy]]:
        """The stored rota with the sources' last good copies attached, in one read."""
        async with self._db.transaction(write=False) as conn:
            rota = await rota_sql.load_rota(conn)
            rows = await conn.execute_fetchall("SELECT * FROM source_copies")
        copies = {row["schedule"]: _copy(row) for row in rows}
        return attach_feeds(rota, copies), copies

    # ------------------------------------------------------------ calendars out

    async def calendar_generation(self, kind: str, name: str) -> int:
        async with self._db.transaction(write=False) as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT generation FROM calendar_feeds WHERE kind = ? AND name = ?",
                    (kind, name),
                )
            )
        return int(rows[0]["generation"]) if rows else 1

    async def rotate_calendar(self, kind: str, name: str) -> int:
        """Invalidate the current URL of that calendar; the new generation."""
        async with self._db.transaction(write=True, what="rotate calendar token") as conn:
            await conn.execute(
                "INSERT INTO calendar_feeds (kind, name, generation) VALUES (?, ?, 2) "
                "ON CONFLICT (kind, name) DO UPDATE SET generation = calendar_feeds.generation + 1",
                (kind, name),
            )
            rows = list(
                await conn.execute_fetchall(
                    "SELECT generation FROM calendar_feeds WHERE kind = ? AND name = ?",
                    (kind, name),
                )
            )
        return int(rows[0]["generation"])

    @property
    def server_key(self) -> bytes:
        return self._db.server_key
