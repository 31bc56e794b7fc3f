"""The user agent façade: bytes and time in, bytes, timers and events out (STYLE.md §3.1).

The asyncio adapter (``voipalert.net``) calls ``receive``/``handle_timer``/
``transport_failed`` and after each one drains ``messages_to_send()`` and ``next_event()``
and re-arms one timer at ``get_timer()``. Nothing here raises on what the network sends:
malformed datagrams are dropped and counted, malformed requests answered 400 when they
have a usable Via (STYLE.md pitfall 11).

Matching (RFC 3261 §17.1.3, §17.2.3): a response goes to the client transaction with its
top Via branch and CSeq method, after checking the Via is ours (§18.1.2); a request to the
server transaction with its branch, sent-by and method (ACK matching INVITE); requests
inside a dialog to the call whose Call-ID and tags they carry.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field

from voipalert.sip import uas
from voipalert.sip.call import Call, CallState
from voipalert.sip.config import UAConfig
from voipalert.sip.core import TxFailure, TxUser
from voipalert.sip.dialog import Address, ack_for_failure, our_contact
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.events import (
    CallId,
    CallMediaChanged,
    DigitReceived,
    RegistrationStatus,
    SipEvent,
)
from voipalert.sip.ids import new_call_id, new_tag
from voipalert.sip.message import Request, Response, response_to
from voipalert.sip.parser import parse_message
from voipalert.sip.registration import Registration
from voipalert.sip.sdp import LocalMedia, answer_offer, parse_answer
from voipalert.sip.transaction import (
    Transaction,
    TxAction,
    TxInput,
    TxKind,
    TxState,
    response_input,
    tu_response_input,
)
from voipalert.sip.uri import SipUri

ClientKey = tuple[str, str]
ServerKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Outbound:
    data: bytes
    destination: Address
    transport: str


@dataclass(slots=True)
class _ClientTx:
    tx: Transaction
    request: Request
    data: bytes
    destination: Address
    user: TxUser | None


@dataclass(slots=True)
class _ServerTx:
    tx: Transaction
    request: Request
    source: Address
    response: bytes | None = None


@dataclass(slots=True)
class _Retransmit2xx:
    """§13.3.1.4: the UAS core resends a 2xx to INVITE until the ACK arrives."""

    data: bytes
    destination: Address
    interval: float
    next_at: float
    give_up_at: float


@dataclass(slots=True)
class _Bucket:
    """Token bucket for out-of-dialog requests (scanners flood; SIP-CHECKLIST §4.14)."""

    rate: float
    tokens: float
    at: float = 0.0
    burst: float = field(default=0.0)

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class UserAgent:
    def __init__(self, config: UAConfig, *, rng: random.Random) -> None:
        self._config = config
        self._rng = rng
        self._client: dict[ClientKey, _ClientTx] = {}
        self._server: dict[ServerKey, _ServerTx] = {}
        self._calls: dict[CallId, Call] = {}
        self._ended: dict[CallId, float] = {}
        self._retransmit: dict[CallId, _Retransmit2xx] = {}
        self._registration: Registration | None = None
        self._out: list[Outbound] = []
        self._events: deque[SipEvent] = deque()
        burst = max(1.0, 5 * config.unsolicited_per_second)
        self._bucket = _Bucket(config.unsolicited_per_second, burst, burst=burst)
        self.stats: Counter[str] = Counter()

    # ------------------------------------------------------------ AgentServices

    @property
    def config(self) -> UAConfig:
        return self._config

    @property
    def rng(self) -> random.Random:
        return self._rng

    def send_request(
        self, request: Request, destination: Address, user: TxUser | None, now: float
    ) -> None:
        data = request.serialize()
        self._out.append(Outbound(data, destination, self._config.transport))
        if request.method == "ACK":
            return  # a 2xx ACK is not a transaction (§17.1.1.3)
        kind = TxKind.CLIENT_INVITE if request.method == "INVITE" else TxKind.CLIENT_NON_INVITE
        tx = Transaction(kind, reliable=self._config.reliable, timers=self._config.timers, now=now)
        key = (request.via.branch or "", request.method)
        self._client[key] = _ClientTx(tx, request, data, destination, user)

    def emit(self, event: SipEvent) -> None:
        self._events.append(event)

    # ------------------------------------------------------------ commands

    def register(self, now: float) -> None:
        registrar = self._config.registrar
        if registrar is None:
            return  # registration-less: IP-authenticated trunks, direct SIP URIs
        if self._registration is None:
            self._registration = Registration(self, registrar, now)
        self._registration.start(now)

    def unregister(self, now: float) -> None:
        if self._registration is not None:
            self._registration.stop(now)

    @property
    def registration(self) -> RegistrationStatus | None:
        return None if self._registration is None else self._registration.status

    def invite(
        self, target: SipUri, media: LocalMedia, now: float, *, ring_timeout: float
    ) -> CallId:
        call_id = CallId(new_call_id(self._rng))
        call = Call(self, call_id, target, media, ring_deadline=now + ring_timeout)
        self._calls[call_id] = call
        call.start(now)
        self._note_ended(now)
        return call_id

    def hang_up(self, call_id: CallId, now: float) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            call.hang_up(now)
            self._note_ended(now)

    def call_state(self, call_id: CallId) -> CallState | None:
        call = self._calls.get(call_id)
        return None if call is None else call.state

    @property
    def active_calls(self) -> int:
        return sum(1 for call in self._calls.values() if not call.ended)

    # ------------------------------------------------------------ inputs

    def receive(self, data: bytes, source: Address, now: float) -> None:
        """One datagram (or one framed stream message) from ``source``."""
        try:
            message = parse_message(data)
        except RemoteProtocolError as exc:
            self.stats["malformed"] += 1
            if isinstance(exc.partial, Request) and exc.partial.method != "ACK":
                self._answer_malformed(exc.partial, exc.status_hint, str(exc), source)
            return
        self.receive_message(message, source, now)

    def receive_message(self, message: Request | Response, source: Address, now: float) -> None:
        try:
            if isinstance(message, Response):
                self._on_response(message, now)
            else:
                self._on_request(message, source, now)
        except RemoteProtocolError as exc:
            # A header the matching needed was malformed (the parser checks framing only).
            self.stats["malformed"] += 1
            if isinstance(message, Request) and message.method != "ACK":
                self._answer_malformed(message, 400, str(exc), source)
        self._note_ended(now)

    def transport_failed(self, destination: Address, now: float) -> None:
        """Sending to ``destination`` failed (ICMP unreachable, TCP reset or refused)."""
        for key, ctx in list(self._client.items()):
            if ctx.destination == destination:
                self._client_input(key, ctx, TxInput.TRANSPORT_ERROR, None, now)
        for skey, sctx in list(self._server.items()):
            if sctx.source == destination:
                sctx.tx.handle(TxInput.TRANSPORT_ERROR, now)
                if sctx.tx.terminated:
                    del self._server[skey]
        if self._registration is not None:
            self._registration.transport_failed(now)
        self._note_ended(now)

    def handle_timer(self, now: float) -> None:
        for key, ctx in list(self._client.items()):
            for event, actions in ctx.tx.handle_timer(now):
                self._client_actions(ctx, actions, None, now, event)
            if ctx.tx.terminated:
                self._client.pop(key, None)
        for skey, sctx in list(self._server.items()):
            for _, actions in sctx.tx.handle_timer(now):
                self._server_actions(sctx, actions)
            if sctx.tx.terminated:
                del self._server[skey]
        if self._registration is not None:
            self._registration.handle_timer(now)
        for call in list(self._calls.values()):
            call.handle_timer(now)
        self._retransmit_2xx(now)
        self._note_ended(now)
        self._forget_ended_calls(now)

    # ------------------------------------------------------------ outputs

    def messages_to_send(self) -> list[Outbound]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> SipEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [ctx.tx.next_deadline() for ctx in self._client.values()]
        deadlines += [ctx.tx.next_deadline() for ctx in self._server.values()]
        deadlines += [call.next_deadline() for call in self._calls.values()]
        deadlines += [r.next_at for r in self._retransmit.values()]
        if self._registration is not None:
            deadlines.append(self._registration.next_deadline())
        if self._ended:
            deadlines.append(min(self._ended.values()))
        return min((d for d in deadlines if d is not None), default=None)

    # ------------------------------------------------------------ responses

    def _on_response(self, response: Response, now: float) -> None:
        via = response.via
        config = self._config
        if via.host != config.local_host or (via.port or 5060) != config.local_port:
            self.stats["stray_response"] += 1  # §18.1.2: not sent by us
            return
        key = (via.branch or "", response.cseq.method)
        ctx = self._client.get(key)
        if ctx is None:
            self.stats["stray_response"] += 1
            return
        self._client_input(key, ctx, response_input(response.status), response, now)

    def _client_input(
        self, key: ClientKey, ctx: _ClientTx, event: TxInput, response: Response | None,
        now: float,
    ) -> None:  # fmt: skip
        actions = ctx.tx.handle(event, now)
        self._client_actions(ctx, actions, response, now, event)
        if ctx.tx.terminated:
            self._client.pop(key, None)

    def _client_actions(
        self, ctx: _ClientTx, actions: tuple[TxAction, ...], response: Response | None,
        now: float, event: TxInput,
    ) -> None:  # fmt: skip
        for action in actions:
            if action is TxAction.SEND_REQUEST:
                self._out.append(Outbound(ctx.data, ctx.destination, self._config.transport))
            elif action is TxAction.SEND_ACK and response is not None:
                ack = ack_for_failure(ctx.request, response)
                self._out.append(Outbound(ack.serialize(), ctx.destination, self._config.transport))
            elif action is TxAction.PASS_UP and response is not None and ctx.user is not None:
                ctx.user.on_response(ctx.request, response, now)
            elif action in (TxAction.TIMEOUT, TxAction.TRANSPORT_FAILED) and ctx.user:
                failure = TxFailure.TIMEOUT if action is TxAction.TIMEOUT else TxFailure.TRANSPORT
                ctx.user.on_failure(ctx.request, failure, now)

    # ------------------------------------------------------------ requests

    def _on_request(self, request: Request, source: Address, now: float) -> None:
        via = request.via
        if request.cseq.method != request.method:
            raise RemoteProtocolError(
                f"CSeq method {request.cseq.method} differs from {request.method}"
            )
        method = "INVITE" if request.method == "ACK" else request.method
        key = (via.branch or "", via.sent_by, method)
        existing = self._server.get(key)
        if existing is not None:
            event = TxInput.ACK if request.method == "ACK" else TxInput.REQUEST
            self._server_actions(existing, existing.tx.handle(event, now))
            return
        if request.method == "ACK":
            self._dialog_ack(request, now)
            return
        call = self._call_in_dialog(request)
        if call is None and request.to.tag is None and not self._admit(source, now):
            return
        if len(self._server) >= self._config.max_server_transactions:
            self.stats["overload"] += 1
            return
        kind = TxKind.SERVER_INVITE if request.method == "INVITE" else TxKind.SERVER_NON_INVITE
        tx = Transaction(kind, reliable=self._config.reliable, timers=self._config.timers, now=now)
        ctx = _ServerTx(tx, request, source)
        self._server[key] = ctx
        self._respond(ctx, self._answer(request, call, source, now), now)

    def _admit(self, source: Address, now: float) -> bool:
        trusted = self._config.trusted_hosts
        if trusted is not None and source[0] not in trusted:
            self.stats["untrusted"] += 1
            return False
        if not self._bucket.take(now):
            self.stats["rate_limited"] += 1
            return False
        return True

    def _answer(self, request: Request, call: Call | None, source: Address, now: float) -> Response:
        if unsupported := uas.unsupported_extensions(request):
            return response_to(request, 420, headers=(("Unsupported", ", ".join(unsupported)),))
        method = request.method
        if method == "OPTIONS":
            return uas.options_response(request, self._config.user_agent)
        if method == "CANCEL":
            return self._answer_cancel(request, now)
        if method == "NOTIFY":
            return response_to(request, uas.notify_status(request))
        if call is None:
            return self._answer_outside_dialogs(request)
        return self._answer_in_dialog(request, call, now)

    def _answer_in_dialog(self, request: Request, call: Call, now: float) -> Response:
        match request.method:
            case "BYE":
                call.remote_bye(request)
                return response_to(request, 200)
            case "INFO":
                return self._answer_info(request, call)
            case "INVITE":
                return self._answer_reinvite(request, call, now)
        return uas.unsupported_method(request, self._config.user_agent)

    def _answer_outside_dialogs(self, request: Request) -> Response:
        in_dialog = request.to.tag is not None
        if request.method == "INVITE" and not in_dialog:
            # Someone calls the alerting engine (or a scanner probes it): refuse at once,
            # ring nothing, keep no state beyond this transaction.
            self.stats["unsolicited_invite"] += 1
            return response_to(request, 486, to_tag=new_tag(self._rng))
        if request.method in ("BYE", "INFO", "INVITE") or in_dialog:
            return response_to(request, 481)
        return uas.unsupported_method(request, self._config.user_agent)

    def _answer_cancel(self, request: Request, now: float) -> Response:
        via = request.via
        invite = self._server.get((via.branch or "", via.sent_by, "INVITE"))
        if invite is None or invite.tx.state is not TxState.PROCEEDING:
            return response_to(request, 481)
        terminated = response_to(invite.request, 487, to_tag=new_tag(self._rng))
        self._respond(invite, terminated, now)
        return response_to(request, 200)

    def _answer_info(self, request: Request, call: Call) -> Response:
        digit = uas.parse_info_digit(request)
        if digit is not None:
            self.emit(DigitReceived(call.call_id, digit.digit, digit.duration_ms))
        status = uas.info_status(request)
        headers = (("Accept", "application/dtmf-relay, application/dtmf"),) if status == 415 else ()
        return response_to(request, status, headers=headers)

    def _answer_reinvite(self, request: Request, call: Call, now: float) -> Response:
        """Answer with the current session: hold, direct-media moves, session refreshes."""
        contact = (("Contact", our_contact(self._config)),)
        sdp = (("Content-Type", "application/sdp"),)
        if request.body:
            try:
                answer = answer_offer(call.local_media, request.body)
            except RemoteProtocolError:
                return response_to(request, 488)
            call.local_media = answer.local
            call.set_media(answer.remote)
            self.emit(CallMediaChanged(call.call_id, answer.remote))
            body = answer.body
        else:
            body = call.local_media.sdp()  # delayed offer: their answer comes in the ACK
        response = response_to(request, 200, headers=(*contact, *sdp), body=body)
        if not self._config.reliable and call.dialog is not None:
            timers = self._config.timers
            self._retransmit[call.call_id] = _Retransmit2xx(
                response.serialize(), call.dialog.next_hop(self._config.transport),
                timers.t1, now + timers.t1, now + 64 * timers.t1,
            )  # fmt: skip
        return response

    def _dialog_ack(self, request: Request, now: float) -> None:
        call = self._call_in_dialog(request)
        if call is None:
            self.stats["stray_ack"] += 1
            return
        self._retransmit.pop(call.call_id, None)
        if request.body and request.content_type == "application/sdp":
            # The answer to the offer we put in our 2xx to a body-less re-INVITE.
            try:
                media = parse_answer(request.body, codecs=call.local_media.codecs)
            except RemoteProtocolError:
                self.stats["bad_sdp"] += 1
                return
            call.set_media(media)
            self.emit(CallMediaChanged(call.call_id, media))

    def _call_in_dialog(self, request: Request) -> Call | None:
        call_id = request.call_id
        call = self._calls.get(CallId(call_id))
        if call is None or call.dialog is None:
            return None
        # Our tag is in their To; theirs in their From (§12.2.2).
        if call.dialog.matches(call_id, request.to.tag, request.from_.tag):
            return call
        return None

    def _respond(self, ctx: _ServerTx, response: Response, now: float) -> None:
        ctx.response = response.serialize()
        actions = ctx.tx.handle(tu_response_input(response.status), now)
        self._server_actions(ctx, actions)

    def _server_actions(self, ctx: _ServerTx, actions: tuple[TxAction, ...]) -> None:
        for action in actions:
            if action is TxAction.SEND_RESPONSE and ctx.response is not None:
                # Responses go back where the request came from: RFC 3581 §4 (rport) on
                # UDP, the same connection on TCP/TLS (§18.2.2).
                self._out.append(Outbound(ctx.response, ctx.source, self._config.transport))

    def _answer_malformed(self, request: Request, status: int, why: str, source: Address) -> None:
        try:
            reason = f"Bad Request ({why[:80]})" if status == 400 else None
            response = response_to(request, status, reason)
            self._out.append(Outbound(response.serialize(), source, self._config.transport))
        except (RemoteProtocolError, ValueError):
            pass  # not even enough to answer: dropped (and already counted)

    # ------------------------------------------------------------ housekeeping

    def _retransmit_2xx(self, now: float) -> None:
        for call_id, pending in list(self._retransmit.items()):
            if now >= pending.give_up_at:
                # §13.3.1.4: no ACK within 64*T1: the dialog is dead, end it with BYE.
                del self._retransmit[call_id]
                self.hang_up(call_id, now)
            elif now >= pending.next_at:
                self._out.append(
                    Outbound(pending.data, pending.destination, self._config.transport)
                )
                pending.interval = min(2 * pending.interval, self._config.timers.t2)
                pending.next_at = now + pending.interval

    def _note_ended(self, now: float) -> None:
        # An ended call is kept for 64*T1 so a late 2xx retransmission is still ACKed.
        for call_id, call in self._calls.items():
            if call.ended and call_id not in self._ended:
                self._ended[call_id] = now + 64 * self._config.timers.t1

    def _forget_ended_calls(self, now: float) -> None:
        for call_id, forget_at in list(self._ended.items()):
            if now >= forget_at:
                del self._ended[call_id]
                self._calls.pop(call_id, None)
                self._retransmit.pop(call_id, None)
