"""Call-in (docs/call-in.md): INVITEs someone sends us, from the 180 to the owner's answer.

An INVITE that passed admission (trusted hosts, the token bucket, the per-source
transaction bound) is checked (``incoming.py``), answered 180 and announced
(``IncomingCall``); its owner then answers it (200 with our SDP, resent until the ACK,
§13.3.1.4) or refuses it. At most ``max_incoming_calls`` are ringing or answered at once
(486 beyond); one not answered in ``incoming_answer_seconds`` is refused 480, and one the
caller cancels ends ``CANCELLED``.
"""

from __future__ import annotations

from dataclasses import dataclass

from voipalert.sip import incoming, uas
from voipalert.sip.admission import canonical
from voipalert.sip.agent_core import AgentCore
from voipalert.sip.agent_services import AgentServices
from voipalert.sip.call import Call, CallState
from voipalert.sip.call_upkeep import CallUpkeep
from voipalert.sip.dialog import Address, new_cseq, our_contact
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.events import CallEnded, CallId, CallOutcome, IncomingCall
from voipalert.sip.headers import HeaderInput
from voipalert.sip.ids import new_tag
from voipalert.sip.message import Request, Response, response_to
from voipalert.sip.sdp import LocalMedia, MediaParams, answer_offer
from voipalert.sip.server_tx import ServerKey, ServerTransactions, ServerTx
from voipalert.sip.transaction import TxState
from voipalert.sip.uri import SipUri


@dataclass(slots=True)
class _Incoming:
    """An INVITE someone sent us, answered 180, waiting for its owner (call-in)."""

    key: ServerKey
    request: Request
    to_tag: str
    give_up_at: float


class IncomingCalls:
    """The INVITEs ringing here until answered, refused, cancelled or timed out."""

    def __init__(
        self,
        core: AgentCore,
        services: AgentServices,
        servers: ServerTransactions,
        upkeep: CallUpkeep,
    ) -> None:
        self._core = core
        self._services = services
        self._servers = servers
        self._upkeep = upkeep
        self._ringing: dict[CallId, _Incoming] = {}
        self._answered: set[CallId] = set()
        """Answered incoming calls, until forgotten: with ``_ringing``, what
        ``max_incoming_calls`` bounds."""

    def invite(self, request: Request, source: Address, now: float) -> Response:
        """The answer to a new INVITE outside our dialogs: 180, or a refusal."""
        core = self._core
        stats = core.stats
        to_tag = new_tag(core.rng)
        call_id = CallId(request.call_id)
        busy = len(self._ringing) + sum(
            1 for c in self._answered if (call := core.calls.get(c)) and not call.ended
        )
        if call_id in self._ringing or call_id in core.calls:
            # The same call again on another branch (a fork merged back, §8.2.2.2), or a
            # Call-ID we already use: never a second call under one id.
            stats["incoming_merged"] += 1
            return response_to(request, 482, to_tag=to_tag)
        if busy >= core.config.max_incoming_calls:
            stats["incoming_busy"] += 1
            return response_to(request, 486, to_tag=to_tag)
        if problem := incoming.offer_problem(request):
            stats["incoming_488"] += 1
            return response_to(request, 488, f"Not Acceptable Here ({problem[:60]})", to_tag=to_tag)
        try:
            incoming.uas_dialog(request, to_tag, 1)  # a Contact and a From tag to answer to
        except RemoteProtocolError as exc:
            stats["malformed"] += 1
            return response_to(request, 400, f"Bad Request ({str(exc)[:60]})")
        trusted = core.config.trusted_hosts
        host = canonical(source[0])
        asserted = incoming.asserted_of(request) if trusted and host in trusted else None
        via = request.via
        self._ringing[call_id] = _Incoming(
            (via.branch or "", via.sent_by, "INVITE"), request, to_tag,
            now + core.config.incoming_answer_seconds,
        )  # fmt: skip
        stats["incoming_invite"] += 1
        core.emit(IncomingCall(call_id, incoming.caller_of(request), asserted, source))
        return response_to(request, 180, headers=record_route(request), to_tag=to_tag)

    def cancelled(self, invite: ServerTx) -> str | None:
        """The caller cancelled ``invite``: if it is still ringing, its owner learns it.
        Returns the To-tag its 180 carried (for the 487), if it was one of ours."""
        call_id = CallId(invite.request.call_id)
        pending = self._ringing.get(call_id)
        if pending is None or pending.request is not invite.request:
            return None
        del self._ringing[call_id]
        self._core.emit(CallEnded(call_id, CallOutcome.CANCELLED, 487, "caller cancelled"))
        return pending.to_tag

    def answer(self, call_id: CallId, media: LocalMedia, now: float) -> MediaParams | None:
        """See ``UserAgent.answer_call``."""
        core = self._core
        pending = self._ringing.pop(call_id, None)
        ctx = None if pending is None else self._servers.get(pending.key)
        if pending is None or ctx is None or ctx.tx.state is not TxState.PROCEEDING:
            return None
        request = pending.request
        try:
            answer = answer_offer(media, request.body)
            dialog = incoming.uas_dialog(request, pending.to_tag, new_cseq(core.rng))
            target = dialog.remote_target
            if not isinstance(target, SipUri):
                raise RemoteProtocolError("Contact is not a SIP URI")
        except RemoteProtocolError:
            core.stats["incoming_488"] += 1
            self._servers.respond(ctx, response_to(request, 488, to_tag=pending.to_tag), now)
            return None
        call = Call(
            self._services, call_id, target, answer.local, ring_timeout=0.0, setup_deadline=now
        )
        call.dialog = dialog
        call.state = CallState.CONFIRMED
        call.set_media(answer.remote)
        core.calls[call_id] = call
        self._answered.add(call_id)
        headers = (
            *record_route(request), ("Contact", our_contact(core.config)),
            *uas.allow_headers(), ("Content-Type", "application/sdp"),
        )  # fmt: skip
        response = response_to(
            request, 200, headers=headers, body=answer.body, to_tag=pending.to_tag
        )
        self._servers.respond(ctx, response, now)
        if not core.config.reliable:
            # §13.3.1.4: the UAS core resends its 2xx until the ACK comes; no ACK within
            # 64*T1 ends the call with BYE (``call_upkeep.py``).
            self._upkeep.resend_until_ack(call_id, response.serialize(), ctx.source, now)
        core.stats["incoming_answered"] += 1
        return answer.remote

    def reject(self, call_id: CallId, status: int, now: float) -> None:
        """See ``UserAgent.reject_call``."""
        pending = self._ringing.pop(call_id, None)
        ctx = None if pending is None else self._servers.get(pending.key)
        if pending is not None and ctx is not None and ctx.tx.state is TxState.PROCEEDING:
            response = response_to(pending.request, status, to_tag=pending.to_tag)
            self._servers.respond(ctx, response, now)

    def handle_timer(self, now: float) -> None:
        for call_id, pending in list(self._ringing.items()):
            if now >= pending.give_up_at:
                self._core.stats["incoming_unanswered"] += 1
                self.reject(call_id, 480, now)
                self._core.emit(
                    CallEnded(call_id, CallOutcome.NO_ANSWER, 480, "not answered in time")
                )

    def deadlines(self) -> list[float | None]:
        return [pending.give_up_at for pending in self._ringing.values()]

    def forget_call(self, call_id: CallId) -> None:
        self._answered.discard(call_id)


def record_route(request: Request) -> tuple[HeaderInput, ...]:
    """§12.1.1: a UAS copies every Record-Route into its responses that make a dialog."""
    return tuple(("Record-Route", value) for value in request.headers.get_all("Record-Route"))
