"""Commit an event, then wake the engine: the step every trigger edge shares.

Routing: an alert that names its team or policy goes there. Otherwise the routes of the
configuration (``[[routes]]``) are tried first; when none of them (and no default among them)
matches, the alert is stored without a target and the store applies the rota's own routes.

An alert is never lost to a routing mistake of the configuration: when a configured route or
e-mail rule names a team or policy the rota does not have, the error is logged and the alert
is stored for the rota's routes to place. Only a sender that named a missing target itself
(the REST API) is refused, with ``UnknownReference``.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from voipalert.domain.alert import Alert, NewAlert
from voipalert.domain.rota import Route
from voipalert.domain.routing import route
from voipalert.ingest.convert import Event, Resolve
from voipalert.ingest.mail_reply import mail_reply
from voipalert.logs import log_context
from voipalert.store import UnknownReference
from voipalert.store.am_outbox import AmLink
from voipalert.store.ports import IntakeStore
from voipalert.store.texts import ReplyResult

log = logging.getLogger("voipalert.ingest")


class Outcome(enum.StrEnum):
    CREATED = "created"
    JOINED = "joined"  # a repeat of an open alert's dedup key, counted on it
    RESOLVED = "resolved"
    NOT_OPEN = "not_open"  # a resolve for a key with no open alert: nothing to do


@dataclass(frozen=True, slots=True)
class Committed:
    outcome: Outcome
    dedup_key: str | None
    alert: Alert | None


Observer = Callable[[str, Outcome], None]


class Intake:
    def __init__(
        self,
        store: IntakeStore,
        wake: Callable[[], None],
        routes: Sequence[Route] = (),
        observe: Observer | None = None,
        ack_digit: str = "1",
    ) -> None:
        self._store = store
        self._wake = wake
        self._routes = tuple(routes)
        self._observe = observe
        self._ack_digit = ack_digit

    async def take_mail_reply(self, message: EmailMessage) -> ReplyResult | None:
        """When ``message`` answers one of our alert e-mails, record it (acknowledging when
        it says the ack digit, from the address it went to) and say what it did; None when
        it is not such a reply (then it may be an alert)."""
        reply = mail_reply(message, self._ack_digit)
        if reply is None:
            return None
        result = await self._store.ack_by_mail_reply(
            reply.sender, nonce=reply.nonce, alert_id=reply.alert_id,
            acknowledge=reply.acknowledge, first_line=reply.first_line,
        )  # fmt: skip
        log.info("e-mail reply from %s: %s", reply.sender[:100], result)
        if result == "acknowledged":
            self._wake()
        return result

    def _routed(self, new: NewAlert) -> NewAlert:
        if new.policy is not None or new.team is not None or not self._routes:
            return new
        chosen = route(
            self._routes,
            source=new.source,
            severity=new.severity.value,
            summary=new.summary,
            labels=new.labels,
        )
        if chosen is None:
            return new
        return dataclasses.replace(new, policy=chosen.policy, team=chosen.team)

    async def _create(
        self, new: NewAlert, sender_chose_target: bool, link: AmLink | None
    ) -> tuple[Alert, bool]:
        routed = self._routed(new)
        try:
            return await self._store.create_or_join_alert(routed, link)
        except UnknownReference:
            if sender_chose_target or (routed.policy is None and routed.team is None):
                raise
            log.error(
                "configured target does not exist in the rota; storing the alert for the "
                "rota's routes",
                extra={"team": routed.team, "policy": routed.policy, "source": new.source},
            )
            return await self._store.create_or_join_alert(
                dataclasses.replace(new, policy=None, team=None), link
            )

    async def submit(
        self, event: Event, *, sender_chose_target: bool = False, link: AmLink | None = None
    ) -> Committed:
        """Commit ``event``; when this returns it is on disk and the engine is woken.
        ``link``: the Alertmanager that silences the alert when it is acknowledged."""
        if isinstance(event, Resolve):
            transition = await self._store.resolve_by_dedup_key(event.dedup_key, event.source)
            if transition is None:
                committed = Committed(Outcome.NOT_OPEN, event.dedup_key, None)
            else:
                committed = Committed(Outcome.RESOLVED, event.dedup_key, transition.alert)
                self._wake()
            source = event.source
        else:
            alert, created = await self._create(event, sender_chose_target, link)
            committed = Committed(
                Outcome.CREATED if created else Outcome.JOINED, event.dedup_key, alert
            )
            if created:
                self._wake()
            source = event.source
        if committed.alert is not None:
            with log_context(alert_id=committed.alert.id):
                log.info("alert %s", committed.outcome.value, extra={"source": source})
        if self._observe is not None:
            self._observe(source, committed.outcome)
        return committed
