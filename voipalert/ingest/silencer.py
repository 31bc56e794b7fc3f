"""Acknowledge in voipalert, silence in Alertmanager; resolve, and the silence is expired.

The requests wait in the store's outbox (queued by the ack's or the resolve's own
transaction, ``store.am_outbox``), so an ack never waits for an Alertmanager and a restart
loses none. One task drains the outbox in order: a failure is retried with exponential
backoff up to ``max_tries`` (a 4xx other than 408/429 is not retried: the request itself is
wrong), each try is logged, counted (``voipalert_alertmanager_silence_requests``) and
written on the alert's audit trail.

Alertmanager API v2: ``POST /api/v2/silences`` answers ``{"silenceID": ...}``;
``DELETE /api/v2/silence/{id}`` expires one. The base URL comes from the hook's settings
(``AmLink.url``), never from a payload unless the settings allow that URL.

Alertmanager notifies nothing about silenced alerts, not even their resolution (measured
with 0.25: a group resolved under a silence never sends "resolved", before or after the
silence ends). So every ``reconcile_seconds`` the silencer asks each Alertmanager whether an
acknowledged, silenced alert still has active alerts matching its silence
(``GET /api/v2/alerts?filter=...``); when none is left the alert is resolved (by
"alertmanager"), which expires the silence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from voipalert.clock import Clock
from voipalert.ingest.config import RetryPolicy, SilencerConfig
from voipalert.ingest.retry import RequestFailed, check_response
from voipalert.logs import log_context
from voipalert.store.am_outbox import OutboxItem, SilencedAlert
from voipalert.store.ports import SilencerStore

log = logging.getLogger("voipalert.alertmanager")

COMMENT_CHARS: Final = 300
OUTBOX_BATCH: Final = 50


def silence_body(item: OutboxItem, now: datetime) -> dict[str, Any]:
    """The silence an acknowledgement makes (Alertmanager's ``PostableSilence``)."""
    by = item.acked_by or "voipalert"
    base = item.link.comment_url
    link = f" {base.rstrip('/')}/api/v1/alerts/{item.alert_id}" if base else ""
    comment = f"Acknowledged in voipalert by {by}: alert {item.alert_id}{link} ({item.summary})"
    if len(comment) > COMMENT_CHARS:
        comment = comment[: COMMENT_CHARS - 1] + "…"
    return {
        "matchers": [
            {"name": name, "value": value, "isRegex": False, "isEqual": True}
            for name, value in sorted(item.link.matchers.items())
        ],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(seconds=item.link.silence_seconds)).isoformat(),
        "createdBy": by,
        "comment": comment,
    }


class Silencer:
    def __init__(
        self,
        store: SilencerStore,
        clock: Clock,
        config: SilencerConfig | None = None,
        observe: Callable[[str, str], None] | None = None,
        on_resolved: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self.on_resolved = on_resolved or (lambda: None)
        self._reconciled_at: float | None = None
        self._clock = clock
        self._config = config or SilencerConfig()
        self._retry = RetryPolicy(
            self._config.max_tries,
            self._config.backoff_first_seconds,
            self._config.backoff_max_seconds,
        )
        self.observe = observe or (lambda action, result: None)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._config.request_timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                self._wake.clear()  # before reading: a wake-up during the pass is kept
                try:
                    while await self.drain(session) == OUTBOX_BATCH:
                        pass  # a full batch: more may be due
                    if self._reconcile_due():
                        await self.reconcile(session)
                except Exception:
                    log.exception("the silencer failed to read its outbox; retrying")
                try:
                    async with asyncio.timeout(self._config.poll_seconds):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def drain(self, session: aiohttp.ClientSession) -> int:
        """Make every request that is due; how many were handled."""
        items = await self._store.due_outbox(OUTBOX_BATCH)
        for item in items:
            with log_context(alert_id=item.alert_id):
                await self._handle(session, item)
        return len(items)

    def _reconcile_due(self) -> bool:
        now = self._clock.monotonic()
        if self._reconciled_at is not None and (
            now - self._reconciled_at < self._config.reconcile_seconds
        ):
            return False
        self._reconciled_at = now
        return True

    async def reconcile(self, session: aiohttp.ClientSession) -> list[int]:
        """Resolve the silenced alerts whose Alertmanager alerts are all gone; their ids."""
        resolved: list[int] = []
        for silenced in await self._store.silenced_alerts():
            try:
                firing = await _still_firing(session, silenced)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning(
                    "cannot ask Alertmanager whether alert %s still fires: %s",
                    silenced.alert_id, exc, extra={"url": silenced.link.url},
                )  # fmt: skip
                continue
            if firing:
                continue
            transition = await self._store.resolve_alert(silenced.alert_id, by="alertmanager")
            if transition.changed:
                with log_context(alert_id=silenced.alert_id):
                    log.info("resolved: its silenced alerts are gone from Alertmanager")
                resolved.append(silenced.alert_id)
        if resolved:
            self.on_resolved()
            self.wake()  # the expiries just queued
        return resolved

    async def _handle(self, session: aiohttp.ClientSession, item: OutboxItem) -> None:
        if item.action == "expire" and item.silence_state == "pending":
            await self._store.outbox_cancel_silence(item)  # closed before it was silenced
            self.observe("silence", "skipped")
            return
        if item.action == "expire" and not item.silence_id:
            await self._store.outbox_done(item, "alertmanager.expire_skipped")
            self.observe("expire", "skipped")
            return
        try:
            silence_id = await self._request(session, item)
        except RequestFailed as exc:
            await self._failed(item, str(exc), exc.permanent)
            return
        event = "alertmanager.silenced" if item.action == "silence" else "alertmanager.expired"
        if not await self._store.outbox_done(item, event, silence_id):
            # Another node took the job over meanwhile (docs/multi-node.md).
            log.warning("Alertmanager %s made, but the row changed meanwhile", item.action)
            return
        log.info(
            "Alertmanager silence %s: %s", "made" if item.action == "silence" else "expired",
            silence_id, extra={"hook": item.link.hook},
        )  # fmt: skip
        self.observe(item.action, "ok")

    async def _failed(self, item: OutboxItem, reason: str, permanent: bool) -> None:
        tries = item.tries + 1
        due = self._retry.next_due(tries, permanent, self._clock.now_utc())
        give_up = due is None
        await self._store.outbox_retry(item, reason, due)
        log.warning(
            "Alertmanager %s request failed (try %d): %s%s", item.action, tries, reason,
            "; giving up" if give_up else "; will retry",
            extra={"hook": item.link.hook, "url": item.link.url},
        )  # fmt: skip
        self.observe(item.action, "failed" if give_up else "retry")

    async def _request(self, session: aiohttp.ClientSession, item: OutboxItem) -> str:
        base = item.link.url.rstrip("/")
        try:
            if item.action == "silence":
                body = silence_body(item, self._clock.now_utc())
                async with session.post(f"{base}/api/v2/silences", json=body) as response:
                    await check_response(response)
                    reply = await response.json(content_type=None)
                silence_id = reply.get("silenceID") if isinstance(reply, dict) else None
                if not isinstance(silence_id, str) or not silence_id:
                    raise RequestFailed("the answer has no silenceID", permanent=True)
                return silence_id
            assert item.silence_id is not None
            url = f"{base}/api/v2/silence/{quote(item.silence_id, safe='')}"
            async with session.delete(url) as response:
                if response.status == 404:
                    return item.silence_id  # gone already (expired, or deleted by hand)
                text = await response.text()
                if response.status >= 400 and "already expired" in text:
                    return item.silence_id
                await check_response(response, text)
                return item.silence_id
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RequestFailed(f"{type(exc).__name__}: {exc}") from None


def _matcher(name: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{escaped}"'


async def _still_firing(session: aiohttp.ClientSession, silenced: SilencedAlert) -> bool:
    """Whether Alertmanager still has an active (silenced or not) alert the silence
    matches."""
    params = [("filter", _matcher(k, v)) for k, v in sorted(silenced.link.matchers.items())]
    params += [(flag, "true") for flag in ("active", "silenced", "inhibited", "unprocessed")]
    url = f"{silenced.link.url.rstrip('/')}/api/v2/alerts"
    async with session.get(url, params=params) as response:
        await check_response(response)
        alerts = await response.json(content_type=None)
    if not isinstance(alerts, list):
        raise ValueError("Alertmanager's alert list is not a list")
    return len(alerts) > 0
