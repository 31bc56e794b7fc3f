"""The user agent façade: bytes and time in, bytes, timers and events out (a sans-IO core).

The asyncio adapter (``voipalert.net``) calls ``receive``/``handle_timer``/
``transport_failed`` and after each one drains ``messages_to_send()`` and ``next_event()``
and re-arms one timer at ``get_timer()``. Nothing here raises on what the network sends:
malformed datagrams are dropped and counted, malformed requests answered 400 when they
have a usable Via.

Matching (RFC 3261 §17.1.3, §17.2.3): a response goes to the client transaction with its
top Via branch and CSeq method, after checking the Via is ours (§18.1.2); a request to the
server transaction with its branch, sent-by and method (ACK matching INVITE); requests
inside a dialog to the call whose Call-ID and tags they carry.

``UserAgent`` routes each input to the part whose job it is (docs/sip.md, "The user
agent's parts"), all sharing one ``AgentCore``:

* ``routing.ClientTransactions``: client transactions, RFC 3263 routing and DNS failover;
* ``admission.Admission``: which peer's request is let in, how often, how many at once;
* ``server_tx.ServerTransactions``: the requests we are answering, and retransmissions;
* ``in_dialog.DialogAnswers``: BYE, INFO, re-INVITE and UPDATE inside our dialogs;
* ``incoming_calls.IncomingCalls``: call-in INVITEs from the 180 to the owner's answer;
* ``keepalive.NatKeepAlive``: the registration's NAT binding and mapped Contact;
* ``call_upkeep.CallUpkeep``: 2xx retransmission and collection of ended calls.
"""

from __future__ import annotations

import random

from voipalert.sip import uas
from voipalert.sip.admission import Admission, canonical
from voipalert.sip.agent_core import AgentCore, Outbound
from voipalert.sip.agent_services import TxUser
from voipalert.sip.call import Call, CallState
from voipalert.sip.call_upkeep import CallUpkeep
from voipalert.sip.config import UAConfig
from voipalert.sip.dialog import Address
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.events import CallId, RegistrationStatus, SipEvent, TextId
from voipalert.sip.ids import new_call_id, new_tag
from voipalert.sip.in_dialog import DialogAnswers
from voipalert.sip.incoming_calls import IncomingCalls
from voipalert.sip.keepalive import NatKeepAlive
from voipalert.sip.locate import Hop
from voipalert.sip.message import Request, Response, response_to
from voipalert.sip.parser import parse_message
from voipalert.sip.registration import Registration
from voipalert.sip.routing import ClientTransactions
from voipalert.sip.sdp import LocalMedia, MediaParams
from voipalert.sip.server_tx import ServerTransactions, server_key
from voipalert.sip.text import ExpectedSenders, OutgoingText, answer_text
from voipalert.sip.transaction import TxState
from voipalert.sip.uri import SipUri

__all__ = ["Outbound", "UserAgent"]


class UserAgent:
    def __init__(self, config: UAConfig, *, rng: random.Random) -> None:
        core = AgentCore(config, rng)
        self._core = core
        self.stats = core.stats
        self._registration: Registration | None = None
        self._texts: dict[TextId, OutgoingText] = {}
        self._text_senders = ExpectedSenders()
        self._clients = ClientTransactions(core)
        self._admission = Admission(core, self._clients)
        self._servers = ServerTransactions(core, self._admission)
        self._upkeep = CallUpkeep(core, hang_up=self.hang_up, forget=self._forget_call)
        self._in_dialog = DialogAnswers(core, self._upkeep)
        self._incoming = IncomingCalls(core, self, self._servers, self._upkeep)
        self._keepalive = NatKeepAlive(core, self._clients, lambda: self._registration)

    # ------------------------------------------------------------ AgentServices

    @property
    def config(self) -> UAConfig:
        return self._core.config

    @property
    def rng(self) -> random.Random:
        return self._core.rng

    def send_request(
        self, request: Request, destination: Hop | Address, user: TxUser | None, now: float
    ) -> None:
        """Send ``request`` to ``destination``: an address as is; a hop with a host name
        once DNS has answered for it (RFC 3263, ``lookups_to_do``/``resolved``)."""
        self._clients.send_request(request, destination, user, now)

    def emit(self, event: SipEvent) -> None:
        self._core.emit(event)

    # ------------------------------------------------------------ DNS (RFC 3263)

    def lookups_to_do(self) -> list[Hop]:
        """Hops the adapter must look up (RFC 3263) and answer with ``resolved``."""
        return self._clients.lookups_to_do()

    def resolved(self, hop: Hop, targets: list[Address], ttl: float, now: float) -> None:
        """DNS answered for ``hop``: its addresses in the order to try them (empty: the
        name does not resolve), valid for ``ttl`` seconds. The requests that waited for
        it are sent; with no address they fail like a transport error (a 503,
        RFC 3261 §8.1.3.1, reason ``NO_ADDRESS``), so a registration backs off and says
        why, and a call ends unreachable."""
        self._clients.resolved(hop, targets, ttl, now)
        self._upkeep.note_ended(now)

    # ------------------------------------------------------------ commands

    def register(self, now: float) -> None:
        registrar = self._core.config.registrar
        if registrar is None:
            return  # registration-less: IP-authenticated trunks, direct SIP URIs
        if self._registration is None:
            self._registration = Registration(self, registrar, now)
        self._registration.start(now)
        self._keepalive.start(now)

    def unregister(self, now: float) -> None:
        self._keepalive.stop()
        if self._registration is not None:
            self._registration.stop(now)

    @property
    def registration(self) -> RegistrationStatus | None:
        return None if self._registration is None else self._registration.status

    def invite(
        self, target: SipUri, media: LocalMedia, now: float, *, ring_timeout: float
    ) -> CallId:
        call_id = CallId(new_call_id(self._core.rng))
        call = Call(
            self, call_id, target, media, ring_timeout=ring_timeout,
            setup_deadline=now + self._core.config.setup_timeout,
        )  # fmt: skip
        self._core.calls[call_id] = call
        call.start(now)
        self._upkeep.note_ended(now)
        return call_id

    def send_text(self, target: SipUri, text: str, now: float) -> TextId:
        """Send ``text`` as a SIP MESSAGE (RFC 3428); ``TextDone`` tells its final answer."""
        text_id = TextId(new_call_id(self._core.rng))
        outgoing = OutgoingText(self, text_id, target, text)
        self._texts[text_id] = outgoing
        outgoing.start(now)
        self._forget_texts()
        return text_id

    def expect_texts_from(self, sender: SipUri, until: float) -> None:
        """Accept MESSAGE requests from ``sender`` until ``until``; others get 403."""
        self._text_senders.expect(sender, until)

    def _forget_texts(self) -> None:
        for text_id in [t for t, out in self._texts.items() if out.done is not None]:
            del self._texts[text_id]

    def hang_up(self, call_id: CallId, now: float) -> None:
        call = self._core.calls.get(call_id)
        if call is not None:
            call.hang_up(now)
            self._upkeep.note_ended(now)

    def answer_call(self, call_id: CallId, media: LocalMedia, now: float) -> MediaParams | None:
        """Answer an ``IncomingCall`` 200 with ``media`` (our RTP port). Returns the far
        end's media, or None when the call is gone (cancelled, timed out) or its offer
        cannot be answered with ``media`` (then refused 488)."""
        return self._incoming.answer(call_id, media, now)

    def reject_call(self, call_id: CallId, status: int, now: float) -> None:
        """Refuse an ``IncomingCall`` not answered yet (486 busy, 480, 603...)."""
        self._incoming.reject(call_id, status, now)

    def call_state(self, call_id: CallId) -> CallState | None:
        call = self._core.calls.get(call_id)
        return None if call is None else call.state

    @property
    def active_calls(self) -> int:
        return sum(1 for call in self._core.calls.values() if not call.ended)

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
        self._upkeep.note_ended(now)

    def transport_failed(self, destination: Address, now: float) -> None:
        """Sending to ``destination`` failed (ICMP unreachable, TCP reset or refused)."""
        self._clients.transport_failed(destination, now)
        self._servers.transport_failed(destination, now)
        if self._registration is not None:
            self._registration.transport_failed(now)
        self._upkeep.note_ended(now)

    def handle_timer(self, now: float) -> None:
        self._clients.handle_timer(now)
        self._servers.handle_timer(now)
        if self._registration is not None:
            self._registration.handle_timer(now)
        self._keepalive.handle_timer(now)
        for call in list(self._core.calls.values()):
            call.handle_timer(now)
        self._upkeep.retransmit_2xx(now)
        self._incoming.handle_timer(now)
        self._upkeep.note_ended(now)
        self._upkeep.forget_ended(now)

    def pong_received(self, source: Address, now: float) -> None:
        """A CRLF pong arrived on the connection to ``source`` (RFC 5626 §4.4.1)."""
        self._keepalive.pong_received(source)

    # ------------------------------------------------------------ outputs

    def messages_to_send(self) -> list[Outbound]:
        out, self._core.out = self._core.out, []
        return out

    def next_event(self) -> SipEvent | None:
        events = self._core.events
        return events.popleft() if events else None

    def get_timer(self) -> float | None:
        deadlines = self._clients.deadlines() + self._servers.deadlines()
        deadlines += [call.next_deadline() for call in self._core.calls.values()]
        deadlines += self._upkeep.deadlines() + self._incoming.deadlines()
        if self._registration is not None:
            deadlines.append(self._registration.next_deadline())
        deadlines.append(self._keepalive.next_deadline())
        return min((d for d in deadlines if d is not None), default=None)

    # ------------------------------------------------------------ routing of inputs

    def _on_response(self, response: Response, now: float) -> None:
        via = response.via
        config = self._core.config
        if via.host != config.local_host or (via.port or 5060) != config.local_port:
            self.stats["stray_response"] += 1  # §18.1.2: not sent by us
            return
        ctx = self._clients.matching(response)
        if ctx is None:
            self.stats["stray_response"] += 1
            return
        if response.status >= 200 and self._keepalive.to_registrar(ctx):
            # Before the registration sees the answer: a 401's authenticated retry then
            # already carries the fixed Contact.
            self._keepalive.check_mapped(via, now)
        self._clients.on_response(ctx, response, now)

    def _on_request(self, request: Request, source: Address, now: float) -> None:
        key = server_key(request)  # the Via first: a malformed one is the error reported
        if request.cseq.method != request.method:
            raise RemoteProtocolError(
                f"CSeq method {request.cseq.method} differs from {request.method}"
            )
        existing = self._servers.get(key)
        host = canonical(source[0])
        if existing is not None:
            if canonical(existing.source[0]) != host:
                self.stats["foreign_retransmission"] += 1  # not the transaction's sender
                return
            self._servers.retransmitted(existing, request, now)
            return
        call = self._call_in_dialog(request)
        if call is not None and not self._admission.from_dialog_peer(call, host):
            self.stats["untrusted_in_dialog"] += 1
            return
        if request.method == "ACK":
            self._in_dialog.ack(request, call)
            return
        if call is None and not self._admission.admit(host, now):
            return
        in_dialog = call is not None
        if not self._admission.room_for(
            host, in_dialog=in_dialog, open_transactions=len(self._servers)
        ):
            self.stats["overload"] += 1
            return
        ctx = self._servers.open(key, request, source, now)
        self._servers.respond(ctx, self._answer(request, call, source, now), now)

    def _call_in_dialog(self, request: Request) -> Call | None:
        call_id = request.call_id
        call = self._core.calls.get(CallId(call_id))
        if call is None or call.dialog is None:
            return None
        # Our tag is in their To; theirs in their From (§12.2.2).
        if call.dialog.matches(call_id, request.to.tag, request.from_.tag):
            return call
        return None

    def _answer(self, request: Request, call: Call | None, source: Address, now: float) -> Response:
        config = self._core.config
        supported = frozenset({"timer"}) if config.session_timers else frozenset()
        if unsupported := uas.unsupported_extensions(request, supported):
            return response_to(request, 420, headers=(("Unsupported", ", ".join(unsupported)),))
        method = request.method
        if method == "OPTIONS":
            return uas.options_response(request, config.user_agent)
        if method == "CANCEL":
            return self._answer_cancel(request, now)
        if method == "NOTIFY":
            return response_to(request, uas.notify_status(request))
        if call is None:
            return self._answer_outside_dialogs(request, source, now)
        return self._in_dialog.answer(request, call, source, now)

    def _answer_outside_dialogs(self, request: Request, source: Address, now: float) -> Response:
        in_dialog = request.to.tag is not None
        if request.method == "MESSAGE" and not in_dialog:
            response, received = answer_text(request, self._text_senders, source, now)
            self.stats[f"text_{response.status}"] += 1
            if received is not None:
                self.emit(received)
            return response
        if request.method == "INVITE" and not in_dialog:
            if self._core.config.max_incoming_calls > 0:
                return self._incoming.invite(request, source, now)
            # Someone calls the alerting engine (or a scanner probes it): refuse at once,
            # ring nothing, keep no state beyond this transaction.
            self.stats["unsolicited_invite"] += 1
            return response_to(request, 486, to_tag=new_tag(self._core.rng))
        if request.method in ("BYE", "INFO", "INVITE") or in_dialog:
            return response_to(request, 481)
        return uas.unsupported_method(request, self._core.config.user_agent)

    def _answer_cancel(self, request: Request, now: float) -> Response:
        via = request.via
        invite = self._servers.get((via.branch or "", via.sent_by, "INVITE"))
        if invite is None or invite.tx.state is not TxState.PROCEEDING:
            return response_to(request, 481)
        to_tag = new_tag(self._core.rng)
        # The caller gave up before we answered (call-in): its owner learns it.
        to_tag = self._incoming.cancelled(invite) or to_tag
        terminated = response_to(invite.request, 487, to_tag=to_tag)
        self._servers.respond(invite, terminated, now)
        return response_to(request, 200)

    def _answer_malformed(self, request: Request, status: int, why: str, source: Address) -> None:
        try:
            reason = f"Bad Request ({why[:80]})" if status == 400 else None
            response = response_to(request, status, reason)
            self._core.send(response.serialize(), source)
        except (RemoteProtocolError, ValueError):
            pass  # not even enough to answer: dropped (and already counted)

    # ------------------------------------------------------------ housekeeping

    def _forget_call(self, call_id: CallId) -> None:
        """An ended call is forgotten (``call_upkeep``): its traces elsewhere go too."""
        self._incoming.forget_call(call_id)
        self._admission.forget_call(call_id)
