"""One notifier per method: the engine's attempts go to the voice notifier (a call) or to
a text channel (a SIP MESSAGE), by ``Notification.method``. A method nobody configured
fails the attempt with a clear detail, so the person's other rules still run
(docs/text-channels.md)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from voipalert.domain.alert import AttemptOutcome
from voipalert.domain.rota import NotifyMethod
from voipalert.notify import Notification, Notifier, NotifyResult, StopRequest

log = logging.getLogger("voipalert.notify")


class ChannelNotifier:
    def __init__(self, notifiers: Mapping[NotifyMethod, Notifier]) -> None:
        self._notifiers = dict(notifiers)

    async def notify(self, notification: Notification, stop: StopRequest) -> NotifyResult:
        notifier = self._notifiers.get(notification.method)
        if notifier is None:
            log.warning("no %s channel is configured", notification.method.value)
            return NotifyResult(
                AttemptOutcome.FAILED,
                detail=f"no {notification.method.value} channel is configured",
            )
        return await notifier.notify(notification, stop)
