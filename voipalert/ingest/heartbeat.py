"""Heartbeat monitors (dead man's switches): the beat endpoint and the watch that opens an
alert for a heartbeat that stopped.

``POST`` or ``GET /api/v1/heartbeat/{token}`` records a beat: ``curl -fsS URL`` from cron,
or an Alertmanager webhook receiver for the always-firing Watchdog alert. The token in the
URL is the credential. It is looked up by its SHA-256 (``store.heartbeat``), so a wrong
token costs the same as a right one and reveals nothing of the stored ones; an unknown
token is a plain 404. Requests are rate limited per client address.

The watch runs every ``check_seconds``: a heartbeat silent past its period plus grace opens
an alert (dedup key ``heartbeat:NAME``, source ``heartbeat``), routed like any other alert;
the next beat resolves it. An Alertmanager notification whose status is "resolved" (the
Watchdog stopped firing: Prometheus is gone) is not a beat.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Final

from aiohttp import web

from voipalert.clock import Clock
from voipalert.domain.alert import NewAlert
from voipalert.domain.rota import PolicyName, TeamName
from voipalert.ingest.app_keys import CLOCK, CONFIG, INTAKE, STORE
from voipalert.ingest.convert import Resolve
from voipalert.ingest.http_errors import ApiError
from voipalert.ingest.intake import Intake
from voipalert.ingest.json_http import json_response
from voipalert.ingest.schemas import BeatOut
from voipalert.logs import log_context
from voipalert.store.heartbeat import Heartbeat
from voipalert.store.ports import HeartbeatWatchStore

log = logging.getLogger("voipalert.heartbeat")

SOURCE: Final = "heartbeat"
MAX_TOKEN_CHARS: Final = 100
BEAT_BODY_BYTES: Final = 65_536  # an Alertmanager notification of a Watchdog fits easily
RATE_WINDOW_SECONDS: Final = 60.0
MAX_TRACKED_CLIENTS: Final = 10_000


def dedup_key(name: str) -> str:
    return f"{SOURCE}:{name}"


def _spoken_duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hours" if seconds != 3600 else "1 hour"
    if seconds % 60 == 0:
        return f"{seconds // 60} minutes" if seconds != 60 else "1 minute"
    return f"{seconds} seconds"


def missed_alert(heartbeat: Heartbeat) -> NewAlert:
    silent = heartbeat.every_seconds + heartbeat.grace_seconds
    return NewAlert(
        summary=f"Heartbeat {heartbeat.name} missed: nothing for {_spoken_duration(silent)}",
        severity=heartbeat.severity,
        source=SOURCE,
        dedup_key=dedup_key(heartbeat.name),
        fields={
            "heartbeat": heartbeat.name,
            "every_seconds": heartbeat.every_seconds,
            "grace_seconds": heartbeat.grace_seconds,
            "last_beat_at": heartbeat.last_beat_at.isoformat() if heartbeat.last_beat_at else None,
        },
        labels={"heartbeat": heartbeat.name},
        team=TeamName(heartbeat.team) if heartbeat.team else None,
        policy=PolicyName(heartbeat.policy) if heartbeat.policy else None,
    )


class RateLimit:
    """At most ``per_minute`` requests per client in any 60-second window (in memory)."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def allow(self, client: str) -> bool:
        now = self._clock.monotonic()
        if client not in self._seen and len(self._seen) >= MAX_TRACKED_CLIENTS:
            self._forget(now)
        times = self._seen.setdefault(client, deque())
        while times and times[0] <= now - RATE_WINDOW_SECONDS:
            times.popleft()
        if len(times) >= self._per_minute:
            return False
        times.append(now)
        return True

    def _forget(self, now: float) -> None:
        stale = [k for k, v in self._seen.items() if not v or v[-1] <= now - RATE_WINDOW_SECONDS]
        for key in stale:
            del self._seen[key]
        if len(self._seen) >= MAX_TRACKED_CLIENTS:
            self._seen.clear()  # a flood of addresses: start over rather than grow


BEAT_LIMIT = web.AppKey("heartbeat_rate_limit", RateLimit)


async def _is_resolved_notification(request: web.Request) -> bool:
    """An Alertmanager notification saying the alert (the Watchdog) resolved."""
    if request.method != "POST" or not request.body_exists:
        return False
    if request.content_length is not None and request.content_length > BEAT_BODY_BYTES:
        raise ApiError(413, f"a beat's body is at most {BEAT_BODY_BYTES} bytes")
    body = await request.content.read(BEAT_BODY_BYTES + 1)
    if len(body) > BEAT_BODY_BYTES:
        raise ApiError(413, f"a beat's body is at most {BEAT_BODY_BYTES} bytes")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False  # any body is fine: only its arrival counts
    return isinstance(document, dict) and document.get("status") == "resolved"


async def beat(request: web.Request) -> web.Response:
    app = request.app
    if not app[BEAT_LIMIT].allow(request.remote or "?"):
        raise ApiError(429, "too many heartbeat requests; slow down", reason="rate_limited")
    token = request.match_info["token"]
    unknown = ApiError(404, "no such heartbeat", reason="no_such_heartbeat")
    if not 1 <= len(token) <= MAX_TOKEN_CHARS:
        raise unknown
    resolved_notification = await _is_resolved_notification(request)
    if resolved_notification:
        known = await app[STORE].find_heartbeat(token)
        if known is None:
            raise unknown
        return json_response(BeatOut(heartbeat=known.name, recorded=False))
    before = await app[STORE].record_beat(token)
    if before is None:
        raise unknown
    closed = None
    if before.down:
        committed = await app[INTAKE].submit(Resolve(dedup_key(before.name), SOURCE))
        closed = committed.alert.id if committed.alert is not None else None
        log.info("heartbeat %s is back", before.name, extra={"heartbeat": before.name})
    return json_response(BeatOut(heartbeat=before.name, recorded=True, resolved_alert=closed))


def add_heartbeat_routes(app: web.Application, api: str) -> None:
    app[BEAT_LIMIT] = RateLimit(app[CONFIG].http.heartbeat_beats_per_minute, app[CLOCK])
    app.add_routes(
        [
            web.post(f"{api}/heartbeat/{{token}}", beat),
            web.get(f"{api}/heartbeat/{{token}}", beat, allow_head=False),
        ]
    )


class HeartbeatWatch:
    """Opens the alert of every heartbeat that went silent (one check every
    ``check_seconds``; ``check()`` is one pass, for tests with a fake clock)."""

    def __init__(
        self, store: HeartbeatWatchStore, intake: Intake, clock: Clock, check_seconds: float = 5.0
    ) -> None:
        self._store = store
        self._intake = intake
        self._clock = clock
        self._check_seconds = check_seconds

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("heartbeat check failed; trying again")
            await asyncio.sleep(self._check_seconds)

    async def check(self) -> list[str]:
        """Open the alerts of the heartbeats overdue now; their names."""
        now = self._clock.now_utc()
        opened = []
        for heartbeat in await self._store.list_heartbeats():
            if heartbeat.down or now < heartbeat.deadline():
                continue
            # The alert first: a crash before the mark only means the next check joins it.
            committed = await self._intake.submit(missed_alert(heartbeat))
            silent_since = heartbeat.last_beat_at or heartbeat.created_at
            if not await self._store.mark_heartbeat_down(heartbeat.name, silent_since):
                # A beat came in meanwhile: it is alive after all.
                await self._intake.submit(Resolve(dedup_key(heartbeat.name), SOURCE))
                continue
            alert_id = committed.alert.id if committed.alert is not None else None
            with log_context(alert_id=alert_id):
                log.warning(
                    "heartbeat %s missed (last beat %s)", heartbeat.name,
                    heartbeat.last_beat_at or "never", extra={"heartbeat": heartbeat.name},
                )  # fmt: skip
            opened.append(heartbeat.name)
        return opened
