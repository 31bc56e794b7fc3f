"""Outgoing status webhooks: tell other systems what happens to alerts (docs/outbound.md).

The notifications wait in the store's outbox (``store.status_outbox``), queued by a trigger
in the very transaction that creates, escalates, acknowledges or closes an alert or ends a
call, so the engine never waits for a receiver and a restart loses none. This module
drains it: one task per target, so each target has at most one request in flight, and a
receiver that hangs holds up only itself, for at most ``timeout_seconds`` per try.

A failed try (a connection error, a timeout, a 5xx, a 408/425/429) is tried again after an
exponential, jittered wait (``config.RetryPolicy``); another 4xx, a redirect (not
followed: where requests go is the configuration's choice alone), or the last allowed try
makes the delivery ``dead``. Each result is logged and counted in
``voipalert_status_webhooks_total{target, result}``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime
from typing import Final

import aiohttp

from voipalert import __version__
from voipalert.clock import Clock
from voipalert.ingest import status_format
from voipalert.ingest.config import OutboundConfig, StatusTarget
from voipalert.ingest.retry import RequestFailed, check_response
from voipalert.logs import log_context
from voipalert.store import Store
from voipalert.store.status_outbox import Delivery

log = logging.getLogger("voipalert.outbound")
USER_AGENT: Final = f"voipalert/{__version__}"


class StatusSender:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: OutboundConfig,
        observe: Callable[[str, str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._config = config
        self.observe = observe or (lambda target, result: None)
        self._rng = rng or random.SystemRandom()
        self._wakes = {target.name: asyncio.Event() for target in config.targets}

    def wake(self) -> None:
        """Look at the outbox now (something was queued) rather than at the next poll."""
        for event in self._wakes.values():
            event.set()

    async def start(self) -> None:
        """Copy the configured targets into the store: from now on, events are queued for
        them (and a target removed from the configuration gets nothing more)."""
        await self._store.set_status_targets(
            {target.name: sorted(target.events) for target in self._config.targets}
        )

    async def run(self) -> None:
        if not self._config.targets:
            return
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_seconds)
        connector = aiohttp.TCPConnector(limit=len(self._config.targets))
        async with (
            aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
            asyncio.TaskGroup() as group,
        ):
            for target in self._config.targets:
                group.create_task(self._run_target(session, target), name=f"status:{target.name}")

    async def _run_target(self, session: aiohttp.ClientSession, target: StatusTarget) -> None:
        wake = self._wakes[target.name]
        while True:
            wake.clear()  # before reading: a wake-up during the pass is kept
            due: datetime | None = None
            try:
                while (delivery := await self._store.next_delivery(target.name)) is not None:
                    with log_context(alert_id=delivery.alert_id):
                        await self.send(session, target, delivery)
                due = await self._store.next_delivery_due(target.name)
            except Exception:
                log.exception("status webhook %s: cannot read the outbox; retrying", target.name)
            wait = self._config.poll_seconds
            if due is not None:
                wait = min(wait, max(0.0, (due - self._clock.now_utc()).total_seconds()))
            try:
                async with asyncio.timeout(wait):
                    await wake.wait()
            except TimeoutError:
                pass

    def _url(self, delivery: Delivery) -> str | None:
        base = self._config.alert_url
        return f"{base.rstrip('/')}/{delivery.alert_id}" if base else None

    async def send(
        self, session: aiohttp.ClientSession, target: StatusTarget, delivery: Delivery
    ) -> bool:
        """One try of one delivery, recorded; whether it was delivered."""
        try:
            body = status_format.body(
                target.format, delivery.event_id, delivery.event, delivery.at,
                delivery.payload, self._url(delivery),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            # A row no body can be made of would otherwise be retried at every pass.
            await self._failed(target, delivery, f"cannot build the body: {exc!r}", True)
            return False
        timestamp = int(self._clock.now_utc().timestamp())
        headers = status_format.headers(
            delivery.event, delivery.event_id, body, target.secret, timestamp
        )
        headers["User-Agent"] = USER_AGENT
        try:
            async with session.post(
                target.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                if 300 <= response.status < 400:
                    raise RequestFailed(
                        f"HTTP {response.status}: redirects are not followed", permanent=True
                    )
                await check_response(response)
        except RequestFailed as exc:
            await self._failed(target, delivery, str(exc), exc.permanent)
            return False
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            await self._failed(target, delivery, f"{type(exc).__name__}: {exc}", False)
            return False
        if not await self._store.delivery_done(delivery):
            # Another node took the job over while this request was out and recorded the
            # row since (docs/multi-node.md, "Single-writer jobs").
            log.warning(
                "status webhook %s: event %d was sent, but the row changed meanwhile; "
                "its result is not recorded", target.name, delivery.event_id,
            )  # fmt: skip
            return True
        log.info(
            "status webhook %s: %s sent (event %d)", target.name, delivery.event,
            delivery.event_id,
        )  # fmt: skip
        self.observe(target.name, "ok")
        return True

    async def _failed(
        self, target: StatusTarget, delivery: Delivery, reason: str, permanent: bool
    ) -> None:
        tries = delivery.tries + 1
        due = self._config.retry.next_due(tries, permanent, self._clock.now_utc(), self._rng)
        await self._store.delivery_failed(delivery, reason, due)
        if due is None:
            log.error(
                "status webhook %s: %s (event %d) is dead after %d tries: %s", target.name,
                delivery.event, delivery.event_id, tries, reason, extra={"url": target.url},
            )  # fmt: skip
        else:
            log.warning(
                "status webhook %s: %s (event %d) failed (try %d): %s; will retry",
                target.name, delivery.event, delivery.event_id, tries, reason,
                extra={"url": target.url},
            )  # fmt: skip
        self.observe(target.name, "dead" if due is None else "retry")
