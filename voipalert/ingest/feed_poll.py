"""Polling the schedules' live sources in ``voipalert serve`` (docs/rota-sources.md).

Each schedule with a ``source`` is checked every ``poll`` seconds: a conditional request
(``feed_fetch``), then the body (new, or the stored one after a 304) expanded over the
window from a day back to ``horizon_days`` ahead, in a child process (``feed_worker``).
A good result replaces the stored copy; anything else (the source down, a timeout, a body
too big, not iCalendar, a person the rota does not know) keeps the last good copy in use
and records why. Once a source has failed for its ``alert_after`` seconds, an alert about
the source is opened (source ``rota-source``, dedup key ``rota-source:SCHEDULE``, label
``schedule``), routed like any other; the next good check resolves it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

import aiohttp

from voipalert.clock import Clock
from voipalert.domain.alert import NewAlert, Severity
from voipalert.domain.rota import Rota, Schedule, ScheduleSource
from voipalert.ingest.convert import Resolve
from voipalert.ingest.feed_fetch import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT_SECONDS,
    Fetcher,
    Validators,
)
from voipalert.ingest.feed_parse import SourceError
from voipalert.ingest.feed_worker import expand
from voipalert.ingest.intake import Intake
from voipalert.store import Store
from voipalert.store.feeds import SourceCopy
from voipalert.store.rota_sql import source_to_json

log = logging.getLogger("voipalert.rota_sources")

SOURCE: Final = "rota-source"
IDLE_SECONDS: Final = 5.0  # how often the rota is looked at for new or changed sources
MAX_ERROR_CHARS: Final = 300
# An unchanged body is expanded again once its window has moved this much (the horizon
# moves on; expanding costs a child process).
REEXPAND_AFTER: Final = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class SourcesConfig:
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    expand_seconds: float = 15.0
    horizon_days: int = 62
    severity: Severity = Severity.ERROR


def dedup_key(schedule: str) -> str:
    return f"{SOURCE}:{schedule}"


def window_at(now: datetime, horizon_days: int) -> tuple[datetime, datetime]:
    return now - timedelta(days=1), now + timedelta(days=horizon_days)


def failing_alert(copy: SourceCopy, severity: Severity) -> NewAlert:
    kept = f"its copy of {copy.good_at:%Y-%m-%d %H:%M} UTC" if copy.good_at else "no copy"
    return NewAlert(
        summary=f"Rota source of schedule {copy.schedule} failing; using {kept}",
        severity=severity,
        source=SOURCE,
        dedup_key=dedup_key(copy.schedule),
        fields={
            "schedule": copy.schedule,
            "url": copy.url,
            "error": copy.error,
            "failing_since": copy.failing_since.isoformat() if copy.failing_since else None,
            "good_copy_at": copy.good_at.isoformat() if copy.good_at else None,
        },
        labels={"schedule": copy.schedule},
    )


async def refresh_copy(
    fetcher: Fetcher,
    schedule: Schedule,
    source: ScheduleSource,
    rota: Rota,
    stored: SourceCopy | None,
    now: datetime,
    config: SourcesConfig,
    at: datetime | None = None,
) -> SourceCopy:
    """One check of ``schedule``'s source: the new copy, or ``SourceError`` and friends."""
    if stored is not None and stored.url != source.url:
        stored = None  # a copy of another url
    validators = Validators(
        stored.etag if stored and stored.body is not None else None,
        stored.last_modified if stored and stored.body is not None else None,
    )
    window = window_at(at or now, config.horizon_days)
    fetched = await fetcher.fetch(source, validators, at or now, window)
    body = fetched.body if fetched.body is not None else (stored.body if stored else None)
    if body is None:
        raise SourceError("not modified, but no copy is stored")
    people = frozenset(p.name for p in rota.people)
    if (
        fetched.body is None
        and stored is not None
        and stored.feed is not None
        and stored.spec == source_to_json(source)
        and all(s.person in people for s in stored.feed.shifts)
        and timedelta(0) <= window[0] - stored.feed.window_start < REEXPAND_AFTER
    ):
        feed = stored.feed  # not modified, read alike, window moved little: as it was
    else:
        feed = await expand(
            body, source, people, schedule.time_zone, at or now, window, config.expand_seconds
        )
    good_at = now if fetched.body is not None or stored is None else stored.good_at
    return SourceCopy(
        schedule=schedule.name,
        url=source.url,
        body=body,
        etag=fetched.etag,
        last_modified=fetched.last_modified,
        feed=feed,
        good_at=good_at,
        checked_at=now,
        alerted=stored.alerted if stored else False,
        spec=source_to_json(source),
    )


class SourcePoller:
    """Run with ``await poller.run()`` beside the engine; ``check(name)`` is one check, for
    tests and for ``poll_due``."""

    def __init__(
        self,
        store: Store,
        intake: Intake,
        clock: Clock,
        session: aiohttp.ClientSession,
        config: SourcesConfig | None = None,
    ) -> None:
        self._store = store
        self._intake = intake
        self._clock = clock
        self._config = config or SourcesConfig()
        self._fetcher = Fetcher(
            session,
            max_bytes=self._config.max_bytes,
            timeout_seconds=self._config.timeout_seconds,
        )
        self._due: dict[str, float] = {}
        self._rota: tuple[int, Rota] | None = None

    async def run(self) -> None:
        while True:
            try:
                await self.poll_due()
            except Exception:
                log.exception("rota source polling failed; trying again")
            await asyncio.sleep(IDLE_SECONDS)

    async def poll_due(self) -> list[str]:
        """Check every source whose poll time has come; the schedules checked. After a
        rota import every source is checked at once: its people or url may have changed."""
        version = await self._store.rota_version()
        if self._rota is None or self._rota[0] != version:
            self._rota = (version, await self._store.load_rota())
            self._due.clear()
        rota = self._rota[1]
        checked: list[str] = []
        for schedule in rota.schedules:
            if schedule.source is None:
                continue
            if self._clock.monotonic() < self._due.get(schedule.name, 0.0):
                continue
            self._due[schedule.name] = self._clock.monotonic() + schedule.source.poll_seconds
            await self.check(schedule, schedule.source, rota)
            checked.append(schedule.name)
        return checked

    async def check(self, schedule: Schedule, source: ScheduleSource, rota: Rota) -> SourceCopy:
        now = self._clock.now_utc()
        stored = await self._store.source_copy(schedule.name)
        try:
            copy = await refresh_copy(
                self._fetcher, schedule, source, rota, stored, now, self._config
            )
        except (SourceError, aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return await self._failed(schedule.name, source, stored, now, exc)
        if copy.alerted:
            await self._intake.submit(Resolve(dedup_key(schedule.name), SOURCE))
            copy = replace(copy, alerted=False)
            log.info("rota source of %s is back", schedule.name, extra={"schedule": schedule.name})
        changed = stored is None or stored.feed != copy.feed
        await self._store.save_source_copy(copy, changed=changed)
        return copy

    async def _failed(
        self,
        name: str,
        source: ScheduleSource,
        stored: SourceCopy | None,
        now: datetime,
        exc: Exception,
    ) -> SourceCopy:
        error = (str(exc) or type(exc).__name__)[:MAX_ERROR_CHARS]
        if stored is None or stored.url != source.url:
            stored = SourceCopy(name, source.url)
        copy = replace(stored, failing_since=stored.failing_since or now, error=error)
        log.warning(
            "rota source of %s failed (%s): %s", name, copy.describe().split(" (")[0], error,
            extra={"schedule": name},
        )  # fmt: skip
        assert copy.failing_since is not None
        if not copy.alerted and now - copy.failing_since >= timedelta(
            seconds=source.alert_after_seconds
        ):
            await self._intake.submit(failing_alert(copy, self._config.severity))
            copy = replace(copy, alerted=True)
        await self._store.save_source_copy(copy, changed=False)
        return copy


async def feed_at(
    schedule: Schedule,
    rota: Rota,
    copy: SourceCopy | None,
    at: datetime,
    now: datetime,
    *,
    fetch: bool = False,
    config: SourcesConfig | None = None,
) -> tuple[Schedule, str]:
    """``schedule`` with the source's shifts around ``at`` attached, and which copy
    answered: what ``voipalert oncall --at`` asks. From the stored copy (expanded again
    around ``at`` when its window does not reach it), or, with ``fetch``, from the source
    now (a JSON source is asked about ``at``). Nothing is stored."""
    source = schedule.source
    if source is None:
        return schedule, ""
    config = config or SourcesConfig()
    if copy is not None and copy.url != source.url:
        copy = None
    if fetch:
        async with aiohttp.ClientSession() as session:
            fetcher = Fetcher(
                session, max_bytes=config.max_bytes, timeout_seconds=config.timeout_seconds
            )
            try:
                fresh = await refresh_copy(fetcher, schedule, source, rota, None, now, config, at)
            except (SourceError, aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                answer = await feed_at(schedule, rota, copy, at, now, config=config)
                return answer[0], f"fetch failed ({str(exc) or type(exc).__name__}); {answer[1]}"
        return replace(schedule, feed=fresh.feed), "live (fetched now)"
    if copy is None or copy.feed is None:
        return replace(schedule, feed=None), copy.describe() if copy else "none (not fetched yet)"
    feed = copy.feed
    if not feed.covers(at) and copy.body is not None and source.kind.value != "json":
        people = frozenset(p.name for p in rota.people)
        window = window_at(at, config.horizon_days)
        try:
            feed = await expand(
                copy.body, source, people, schedule.time_zone, at, window, config.expand_seconds
            )
        except SourceError as exc:
            return replace(schedule, feed=copy.feed), f"{copy.describe()}; {exc}"
    return replace(schedule, feed=feed), copy.describe()
