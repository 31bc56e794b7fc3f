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

Admission (every request, before any state is kept). Without TLS, Call-ID and tags are
visible to anyone who can see the traffic, so they prove nothing about the sender:

* A request inside one of our dialogs (BYE, INFO digits, re-INVITE, ACK with an SDP
  answer) is accepted only from the dialog's peers: the hosts of its route set (RFC 3261
  §12.1.2), of its remote target and of the first hop we sent the INVITE to, or a
  configured trusted PBX host. From anywhere else it is dropped silently and counted
  (``untrusted_in_dialog``): a sniffed-Call-ID INFO from another host acknowledges nothing,
  a forged BYE ends nothing, a forged re-INVITE moves no media.
* Any other request (no To-tag, or tags that match no dialog of ours) goes through the
  trusted-host check and a token bucket, one for the peers and one for strangers.
* Server transactions are bounded per source: a stranger holds at most
  ``max_server_transactions_per_source`` and all strangers together half the table, so a
  flood can never take the slot the PBX's BYE needs.
* A retransmission matches its transaction only from the transaction's own source: a
  stranger cannot make us resend responses to the PBX.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field, replace

from voipalert.sip import incoming, uas
from voipalert.sip.address import NameAddr
from voipalert.sip.agent_services import TxFailure, TxUser
from voipalert.sip.call import Call, CallState
from voipalert.sip.config import UAConfig
from voipalert.sip.dialog import (
    Address,
    Envelope,
    ack_for_failure,
    build_request,
    new_cseq,
    our_aor,
    our_contact,
)
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.events import (
    CallEnded,
    CallId,
    CallMediaChanged,
    CallOutcome,
    DigitReceived,
    IncomingCall,
    RegistrationState,
    RegistrationStatus,
    SipEvent,
    TextId,
)
from voipalert.sip.fields import Via
from voipalert.sip.headers import HeaderInput
from voipalert.sip.ids import new_branch, new_call_id, new_tag
from voipalert.sip.locate import Hop, hop_of, is_ip
from voipalert.sip.message import Request, Response, response_to
from voipalert.sip.nat import PING, KeepAliveSchedule, mapped_address
from voipalert.sip.parser import parse_message
from voipalert.sip.registration import Registration
from voipalert.sip.sdp import LocalMedia, MediaParams, answer_offer, parse_answer
from voipalert.sip.sessiontimer import MIN_SE, parse_session_expires, tokens
from voipalert.sip.text import ExpectedSenders, OutgoingText, answer_text
from voipalert.sip.transaction import (
    Transaction,
    TxAction,
    TxInput,
    TxKind,
    TxState,
    response_input,
    tu_response_input,
)
from voipalert.sip.uri import SipUri, Uri

ClientKey = tuple[str, str]
ServerKey = tuple[str, str, str]
MAX_ROUTES = 256
"""Hops whose DNS answer (RFC 3263 target list) is remembered; the oldest go first."""
MAX_WAITING = 256
"""Requests held while their hop is looked up; beyond that they fail at once."""
MIN_CONTACT_REWRITE_SECONDS = 5.0
"""A NAT that gives every packet a new port would otherwise have us re-register on every
answer: the Contact moves at most this often (a later keep-alive catches up)."""


@dataclass(frozen=True, slots=True)
class Outbound:
    data: bytes
    destination: Address
    """Always an IP address and port: names are resolved before anything is sent."""
    transport: str
    server_name: str | None = None
    """The host name the destination was found for (TLS: the name the certificate must
    carry, RFC 5922 §4); None for numeric hops and responses."""


@dataclass(slots=True)
class _ClientTx:
    tx: Transaction
    request: Request
    data: bytes
    destination: Address
    user: TxUser | None
    hop: Hop | None = None
    targets: tuple[Address, ...] = ()
    index: int = 0

    @property
    def server_name(self) -> str | None:
        return None if self.hop is None or self.hop.numeric else self.hop.host


@dataclass(slots=True)
class _Route:
    """A hop's addresses in RFC 3263 order, and the one in use: requests follow the
    last address that did not fail, until the DNS answer expires."""

    targets: tuple[Address, ...]
    expires_at: float
    index: int = 0


@dataclass(slots=True)
class _Waiting:
    request: Request
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
class _Incoming:
    """An INVITE someone sent us, answered 180, waiting for its owner (call-in)."""

    key: ServerKey
    request: Request
    to_tag: str
    give_up_at: float


@dataclass(slots=True)
class _Bucket:
    """Token bucket for out-of-dialog requests (scanners flood the SIP port)."""

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
        self._texts: dict[TextId, OutgoingText] = {}
        self._text_senders = ExpectedSenders()
        self._out: list[Outbound] = []
        self._events: deque[SipEvent] = deque()
        self._routes: OrderedDict[Hop, _Route] = OrderedDict()
        self._routes_version = 0
        self._waiting: dict[Hop, list[_Waiting]] = {}
        self._lookups: list[Hop] = []
        self._server_by_host: Counter[str] = Counter()
        self._hosts_cache: dict[CallId, tuple[object, int, frozenset[str]]] = {}
        burst = max(1.0, 5 * config.unsolicited_per_second)
        self._bucket = _Bucket(config.unsolicited_per_second, burst, burst=burst)
        self._peer_bucket = _Bucket(config.unsolicited_per_second, burst, burst=burst)
        self.stats: Counter[str] = Counter()
        self._keepalive = KeepAliveSchedule(config.keepalive_seconds)
        self._keepalive_options: Request | None = None
        self._contact_moved_at: float | None = None
        self._incoming: dict[CallId, _Incoming] = {}
        self._incoming_calls: set[CallId] = set()
        """Answered incoming calls, until forgotten: with ``_incoming``, what
        ``max_incoming_calls`` bounds."""
        self._registrar_at: tuple[Address, str | None] | None = None
        """Where the last REGISTER went (and the name it was found for): TCP/TLS pings go
        there, on the registration's connection."""

    # ------------------------------------------------------------ AgentServices

    @property
    def config(self) -> UAConfig:
        return self._config

    @property
    def rng(self) -> random.Random:
        return self._rng

    def send_request(
        self, request: Request, destination: Hop | Address, user: TxUser | None, now: float
    ) -> None:
        """Send ``request`` to ``destination``: an address as is; a hop with a host name
        once DNS has answered for it (RFC 3263, ``lookups_to_do``/``resolved``)."""
        if request.method == "CANCEL":
            # RFC 3263 §4 / RFC 3261 §9.1: a CANCEL goes where its INVITE went.
            invite = self._client.get((request.via.branch or "", "INVITE"))
            if invite is not None:
                self._start_client(
                    request, invite.destination, user, now, invite.hop, invite.targets,
                    invite.index,
                )  # fmt: skip
                return
        if not isinstance(destination, Hop):
            self._start_client(request, destination, user, now)
            return
        if destination.numeric:
            self._start_client(request, destination.address(), user, now, destination)
            return
        route = self._route(destination, now)
        if route is None:
            self._wait(destination, request, user, now)
            return
        self._start_client(
            request, route.targets[route.index], user, now, destination, route.targets,
            route.index,
        )  # fmt: skip

    def _start_client(
        self, request: Request, destination: Address, user: TxUser | None, now: float,
        hop: Hop | None = None, targets: tuple[Address, ...] = (), index: int = 0,
    ) -> None:  # fmt: skip
        data = request.serialize()
        server_name = None if hop is None or hop.numeric else hop.host
        if request.method == "REGISTER":
            self._registrar_at = (destination, server_name)
        self._out.append(Outbound(data, destination, self._config.transport, server_name))
        if request.method == "ACK":
            return  # a 2xx ACK is not a transaction (§17.1.1.3)
        kind = TxKind.CLIENT_INVITE if request.method == "INVITE" else TxKind.CLIENT_NON_INVITE
        tx = Transaction(kind, reliable=self._config.reliable, timers=self._config.timers, now=now)
        key = (request.via.branch or "", request.method)
        self._client[key] = _ClientTx(tx, request, data, destination, user, hop, targets, index)

    def emit(self, event: SipEvent) -> None:
        self._events.append(event)

    # ------------------------------------------------------------ DNS (RFC 3263)

    def _route(self, hop: Hop, now: float) -> _Route | None:
        route = self._routes.get(hop)
        if route is None or now >= route.expires_at:
            return None
        return route

    def _wait(self, hop: Hop, request: Request, user: TxUser | None, now: float) -> None:
        if sum(len(w) for w in self._waiting.values()) >= MAX_WAITING:
            self.stats["dns_queue_full"] += 1
            if user is not None and request.method != "ACK":
                user.on_failure(request, TxFailure.OVERLOAD, now)
            return
        if hop not in self._waiting:
            self._waiting[hop] = []
            self._lookups.append(hop)
        self._waiting[hop].append(_Waiting(request, user))

    def lookups_to_do(self) -> list[Hop]:
        """Hops the adapter must look up (RFC 3263) and answer with ``resolved``."""
        lookups, self._lookups = self._lookups, []
        return lookups

    def resolved(self, hop: Hop, targets: list[Address], ttl: float, now: float) -> None:
        """DNS answered for ``hop``: its addresses in the order to try them (empty: the
        name does not resolve), valid for ``ttl`` seconds. The requests that waited for
        it are sent; with no address they fail like a transport error (a 503,
        RFC 3261 §8.1.3.1, reason ``NO_ADDRESS``), so a registration backs off and says
        why, and a call ends unreachable."""
        waiting = self._waiting.pop(hop, [])
        if targets:
            self._routes.pop(hop, None)
            self._routes[hop] = _Route(tuple(targets), now + max(ttl, 0.0))
            while len(self._routes) > MAX_ROUTES:
                self._routes.popitem(last=False)
            self._routes_version += 1
        else:
            self.stats["dns_no_target"] += 1
        for item in waiting:
            if targets:
                route = self._routes[hop]
                self._start_client(
                    item.request, route.targets[route.index], item.user, now, hop,
                    route.targets, route.index,
                )  # fmt: skip
            elif item.user is not None and item.request.method != "ACK":
                item.user.on_failure(item.request, TxFailure.NO_ADDRESS, now)
        self._note_ended(now)

    def _fail_over(self, ctx: _ClientTx, now: float) -> bool:
        """RFC 3263 §4.3: the transaction timed out, failed at the transport or got a
        503; try the hop's next address in a new transaction (a new branch), if there is
        one and the transaction user still wants it."""
        hop = ctx.hop
        next_index = ctx.index + 1
        if hop is None or ctx.request.method == "CANCEL" or next_index >= len(ctx.targets):
            return False
        retry = ctx.request.with_top_via_param("branch", new_branch(self._rng))
        if ctx.user is not None and not ctx.user.retry_elsewhere(ctx.request, retry):
            return False
        route = self._routes.get(hop)
        if route is not None and route.targets == ctx.targets and route.index == ctx.index:
            route.index = next_index  # the next requests go where this one goes now
        self.stats["dns_failover"] += 1
        self._start_client(
            retry, ctx.targets[next_index], ctx.user, now, hop, ctx.targets, next_index
        )
        return True

    # ------------------------------------------------------------ commands

    def register(self, now: float) -> None:
        registrar = self._config.registrar
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
        call_id = CallId(new_call_id(self._rng))
        call = Call(
            self, call_id, target, media, ring_timeout=ring_timeout,
            setup_deadline=now + self._config.setup_timeout,
        )  # fmt: skip
        self._calls[call_id] = call
        call.start(now)
        self._note_ended(now)
        return call_id

    def send_text(self, target: SipUri, text: str, now: float) -> TextId:
        """Send ``text`` as a SIP MESSAGE (RFC 3428); ``TextDone`` tells its final answer."""
        text_id = TextId(new_call_id(self._rng))
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
        call = self._calls.get(call_id)
        if call is not None:
            call.hang_up(now)
            self._note_ended(now)

    def answer_call(self, call_id: CallId, media: LocalMedia, now: float) -> MediaParams | None:
        """Answer an ``IncomingCall`` 200 with ``media`` (our RTP port). Returns the far
        end's media, or None when the call is gone (cancelled, timed out) or its offer
        cannot be answered with ``media`` (then refused 488)."""
        pending = self._incoming.pop(call_id, None)
        ctx = None if pending is None else self._server.get(pending.key)
        if pending is None or ctx is None or ctx.tx.state is not TxState.PROCEEDING:
            return None
        request = pending.request
        try:
            answer = answer_offer(media, request.body)
            dialog = incoming.uas_dialog(request, pending.to_tag, new_cseq(self._rng))
            target = dialog.remote_target
            if not isinstance(target, SipUri):
                raise RemoteProtocolError("Contact is not a SIP URI")
        except RemoteProtocolError:
            self.stats["incoming_488"] += 1
            self._respond(ctx, response_to(request, 488, to_tag=pending.to_tag), now)
            return None
        call = Call(self, call_id, target, answer.local, ring_timeout=0.0, setup_deadline=now)
        call.dialog = dialog
        call.state = CallState.CONFIRMED
        call.set_media(answer.remote)
        self._calls[call_id] = call
        self._incoming_calls.add(call_id)
        headers = (
            *_record_route(request), ("Contact", our_contact(self._config)),
            *uas.allow_headers(), ("Content-Type", "application/sdp"),
        )  # fmt: skip
        response = response_to(
            request, 200, headers=headers, body=answer.body, to_tag=pending.to_tag
        )
        self._respond(ctx, response, now)
        if not self._config.reliable:
            # §13.3.1.4: the UAS core resends its 2xx until the ACK comes; no ACK within
            # 64*T1 ends the call with BYE (``_retransmit_2xx``).
            timers = self._config.timers
            self._retransmit[call_id] = _Retransmit2xx(
                response.serialize(), ctx.source, timers.t1, now + timers.t1,
                now + 64 * timers.t1,
            )  # fmt: skip
        self.stats["incoming_answered"] += 1
        return answer.remote

    def reject_call(self, call_id: CallId, status: int, now: float) -> None:
        """Refuse an ``IncomingCall`` not answered yet (486 busy, 480, 603...)."""
        pending = self._incoming.pop(call_id, None)
        ctx = None if pending is None else self._server.get(pending.key)
        if pending is not None and ctx is not None and ctx.tx.state is TxState.PROCEEDING:
            self._respond(ctx, response_to(pending.request, status, to_tag=pending.to_tag), now)

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
                    self._forget_server(skey)
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
                self._forget_server(skey)
        if self._registration is not None:
            self._registration.handle_timer(now)
        self._keep_alive(now)
        for call in list(self._calls.values()):
            call.handle_timer(now)
        self._retransmit_2xx(now)
        self._incoming_timeouts(now)
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
        deadlines += [pending.give_up_at for pending in self._incoming.values()]
        if self._registration is not None:
            deadlines.append(self._registration.next_deadline())
        deadlines.append(self._keepalive.next_deadline())
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
        if response.status >= 200 and self._to_registrar(ctx):
            # Before the registration sees the answer: a 401's authenticated retry then
            # already carries the fixed Contact.
            self._check_mapped(via, now)
        self._client_input(key, ctx, response_input(response.status), response, now)

    # ------------------------------------------------------------ NAT (sip/nat.py)

    def _to_registrar(self, ctx: _ClientTx) -> bool:
        return ctx.request.method == "REGISTER" or isinstance(ctx.user, _KeepAliveUser)

    def _check_mapped(self, via: Via, now: float) -> None:
        """RFC 3581 §4: the registrar saw us at ``received``:``rport``. On UDP, a Contact
        that differs moves there, and the registration follows (RFC 5626 §4.4-style)."""
        config = self._config
        if config.transport != "udp":
            return  # a TCP/TLS source port is the connection's, not a listening port
        mapped = mapped_address(via)
        if mapped is None:
            return
        host = config.public_host or config.local_host
        port = config.public_port or config.local_port
        if _canonical(mapped[0]) == _canonical(host) and mapped[1] == port:
            return
        moved = self._contact_moved_at
        if moved is not None and now - moved < MIN_CONTACT_REWRITE_SECONDS:
            self.stats["contact_rewrite_deferred"] += 1
            return
        self._contact_moved_at = now
        self.stats["contact_rewritten"] += 1
        self._config = replace(config, public_host=mapped[0], public_port=mapped[1])
        if self._registration is not None:
            self._registration.contact_changed(now)

    def _keep_alive(self, now: float) -> None:
        registration = self._registration
        dead = self._keepalive.pong_overdue(now)
        if dead is not None:
            # RFC 5626 §4.4.1: no pong in 10 s, the flow has failed: register again.
            self.stats["keepalive_no_pong"] += 1
            if registration is not None:
                registration.transport_failed(now)
        if not self._keepalive.due(now):
            return
        if registration is None or registration.status.state is not RegistrationState.REGISTERED:
            return  # the registration's own retries keep the binding (or say it failed)
        config = self._config
        if config.reliable:
            if self._registrar_at is not None:
                destination, server_name = self._registrar_at
                self._out.append(Outbound(PING, destination, config.transport, server_name))
                self._keepalive.pinged_at(destination, now)
                self.stats["keepalive_ping"] += 1
            return
        if self._keepalive_options is not None or config.registrar is None:
            return  # the last one is still out: one at a time
        registrar = config.registrar
        route: tuple[NameAddr, ...] = ()
        if config.outbound_proxy is not None:
            route = (NameAddr(uri=config.outbound_proxy.with_param("lr")),)
        envelope = Envelope(
            NameAddr(uri=our_aor(config)).with_tag(new_tag(self._rng)), NameAddr(uri=registrar),
            new_call_id(self._rng), new_cseq(self._rng), new_branch(self._rng), route,
        )  # fmt: skip
        options = build_request(config, "OPTIONS", registrar, envelope)
        self._keepalive_options = options
        self.stats["keepalive_options"] += 1
        hop = hop_of(config.outbound_proxy or registrar, config.transport)
        self.send_request(options, hop, _KeepAliveUser(self), now)

    def pong_received(self, source: Address, now: float) -> None:
        """A CRLF pong arrived on the connection to ``source`` (RFC 5626 §4.4.1)."""
        if self._keepalive.pong(source):
            self.stats["keepalive_pong"] += 1

    def _keepalive_done(self, request: Request, failure: TxFailure | None, now: float) -> None:
        if request is not self._keepalive_options:
            return
        self._keepalive_options = None
        if failure is not None:
            # No answer to the keep-alive: the binding may be gone; register again.
            self.stats["keepalive_failed"] += 1
            if self._registration is not None:
                self._registration.transport_failed(now)

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
        transport, server_name = self._config.transport, ctx.server_name
        for action in actions:
            if action is TxAction.SEND_REQUEST:
                self._out.append(Outbound(ctx.data, ctx.destination, transport, server_name))
            elif action is TxAction.SEND_ACK and response is not None:
                ack = ack_for_failure(ctx.request, response).serialize()
                self._out.append(Outbound(ack, ctx.destination, transport, server_name))
            elif action is TxAction.PASS_UP and response is not None and ctx.user is not None:
                if response.status == 503 and self._fail_over(ctx, now):
                    continue
                ctx.user.on_response(ctx.request, response, now)
            elif action in (TxAction.TIMEOUT, TxAction.TRANSPORT_FAILED) and ctx.user:
                if self._fail_over(ctx, now):
                    continue
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
        host = _canonical(source[0])
        if existing is not None:
            if _canonical(existing.source[0]) != host:
                self.stats["foreign_retransmission"] += 1  # not the transaction's sender
                return
            event = TxInput.ACK if request.method == "ACK" else TxInput.REQUEST
            self._server_actions(existing, existing.tx.handle(event, now))
            return
        call = self._call_in_dialog(request)
        if call is not None and not self._from_dialog_peer(call, host):
            self.stats["untrusted_in_dialog"] += 1
            return
        if request.method == "ACK":
            self._dialog_ack(request, call)
            return
        if call is None and not self._admit(host, now):
            return
        if not self._room_for(host, in_dialog=call is not None):
            self.stats["overload"] += 1
            return
        kind = TxKind.SERVER_INVITE if request.method == "INVITE" else TxKind.SERVER_NON_INVITE
        tx = Transaction(kind, reliable=self._config.reliable, timers=self._config.timers, now=now)
        ctx = _ServerTx(tx, request, source)
        self._server[key] = ctx
        self._server_by_host[host] += 1
        self._respond(ctx, self._answer(request, call, source, now), now)

    def _admit(self, host: str, now: float) -> bool:
        """Out-of-dialog requests (and tags matching no dialog): trusted hosts only, if
        configured; then a token bucket, the peers' apart from the strangers'."""
        trusted = self._config.trusted_hosts
        if trusted is not None and host not in trusted:
            self.stats["untrusted"] += 1
            return False
        bucket = self._peer_bucket if host in self._peer_hosts() else self._bucket
        if not bucket.take(now):
            self.stats["rate_limited"] += 1
            return False
        return True

    def _room_for(self, host: str, *, in_dialog: bool) -> bool:
        """Server transaction slots: the PBX, our dialogs' peers and requests admitted
        into a dialog may use the whole table; one stranger a few, all strangers together
        half (so the other half is always there for them)."""
        config = self._config
        if len(self._server) >= config.max_server_transactions:
            return False
        if in_dialog:
            return True
        peers = self._peer_hosts()
        if host in peers:
            return True
        if self._server_by_host[host] >= config.max_server_transactions_per_source:
            return False
        strangers = sum(n for h, n in self._server_by_host.items() if h not in peers)
        return strangers < config.max_server_transactions // 2

    def _peer_hosts(self) -> frozenset[str]:
        """The trusted hosts, the registrar and outbound proxy, the peers of every live
        dialog: the hosts whose requests the table always has room for."""
        config = self._config
        peers = set(config.trusted_hosts or ())
        for uri in (config.registrar, config.outbound_proxy):
            if uri is not None:
                peers |= self._hosts_of(uri)
        for call in self._calls.values():
            if not call.ended:
                peers |= self._dialog_hosts(call)
        return frozenset(peers)

    def _dialog_hosts(self, call: Call) -> frozenset[str]:
        """Who may send requests inside ``call``'s dialog: the first hop of the INVITE,
        the route set and the remote target (RFC 3261 §12.1.2, §12.2.1.1)."""
        dialog = call.dialog
        cached = self._hosts_cache.get(call.call_id)
        if cached is not None and cached[0] is dialog and cached[1] == self._routes_version:
            return cached[2]
        hosts = self._peers_of(call)
        self._hosts_cache[call.call_id] = (dialog, self._routes_version, hosts)
        return hosts

    def _peers_of(self, call: Call) -> frozenset[str]:
        config = self._config
        uris: list[Uri] = [config.outbound_proxy or call.target]
        if call.dialog is not None:
            uris += [hop.uri for hop in call.dialog.route_set]
            uris.append(call.dialog.remote_target)
        hosts: set[str] = set()
        for uri in uris:
            hosts |= self._hosts_of(uri)
        return frozenset(hosts)

    def _hosts_of(self, uri: Uri) -> frozenset[str]:
        """The host of ``uri`` and, for a name, the addresses DNS gave for it."""
        try:
            hop = hop_of(uri, self._config.transport)
        except RemoteProtocolError:
            return frozenset()  # a tel: or otherwise unroutable URI names no host
        hosts = {_canonical(hop.host)}
        if not hop.numeric:
            for known, route in self._routes.items():
                if known.host == hop.host:
                    hosts.update(_canonical(ip) for ip, _ in route.targets)
        return frozenset(hosts)

    def _from_dialog_peer(self, call: Call, host: str) -> bool:
        trusted = self._config.trusted_hosts
        if trusted is not None and host in trusted:
            return True
        peers = self._dialog_hosts(call)
        if host in peers:
            return True
        if trusted is None and not any(is_ip(peer) for peer in peers):
            # Every peer is a DNS name (the core resolves nothing) and no trusted host is
            # configured: nothing to compare with. Accepted, and counted so it shows.
            self.stats["in_dialog_unverified"] += 1
            return True
        return False

    def _forget_server(self, key: ServerKey) -> None:
        ctx = self._server.pop(key, None)
        if ctx is not None:
            host = _canonical(ctx.source[0])
            self._server_by_host[host] -= 1
            if self._server_by_host[host] <= 0:
                del self._server_by_host[host]

    def _answer(self, request: Request, call: Call | None, source: Address, now: float) -> Response:
        supported = frozenset({"timer"}) if self._config.session_timers else frozenset()
        if unsupported := uas.unsupported_extensions(request, supported):
            return response_to(request, 420, headers=(("Unsupported", ", ".join(unsupported)),))
        method = request.method
        if method == "OPTIONS":
            return uas.options_response(request, self._config.user_agent)
        if method == "CANCEL":
            return self._answer_cancel(request, now)
        if method == "NOTIFY":
            return response_to(request, uas.notify_status(request))
        if call is None:
            return self._answer_outside_dialogs(request, source, now)
        return self._answer_in_dialog(request, call, source, now)

    def _answer_in_dialog(
        self, request: Request, call: Call, source: Address, now: float
    ) -> Response:
        match request.method:
            case "BYE":
                call.remote_bye(request)
                return response_to(request, 200)
            case "INFO":
                return self._answer_info(request, call)
            case "INVITE":
                return self._answer_reinvite(request, call, source, now)
            case "UPDATE":
                return self._answer_update(request, call, now)
        return uas.unsupported_method(request, self._config.user_agent)

    def _interval_too_small(self, request: Request) -> Response | None:
        """RFC 4028 §9: a re-INVITE or UPDATE asking for less than 90 s gets 422 with our
        ``Min-SE``: a tiny interval would have us refreshing (or expiring) every few
        seconds."""
        if not self._config.session_timers:
            return None
        asked = parse_session_expires(request)
        if asked is not None and asked.seconds < MIN_SE:
            return response_to(request, 422, headers=(("Min-SE", str(MIN_SE)),))
        return None

    def _session_headers(self, request: Request, call: Call, now: float) -> tuple[HeaderInput, ...]:
        """A re-INVITE or UPDATE from the far end that we answer 2xx refreshes the session
        (RFC 4028 §9, §10): our 2xx repeats the interval it asked for, with
        ``Require: timer`` when it is the refresher."""
        answer = call.remote_refresh(request, now)
        if answer is None:
            return ()
        headers: list[HeaderInput] = [("Session-Expires", answer.format())]
        if answer.refresher == "uac" and "timer" in tokens(request, "Supported"):
            headers.append(("Require", "timer"))
        return tuple(headers)

    def _answer_update(self, request: Request, call: Call, now: float) -> Response:
        """UPDATE (RFC 3311) in our dialog: a session refresh without SDP (200), or an
        offer answered like a re-INVITE's, without the 2xx retransmissions of INVITE."""
        if too_small := self._interval_too_small(request):
            return too_small
        contact = (("Contact", our_contact(self._config)),)
        if not request.body:
            session = self._session_headers(request, call, now)
            return response_to(request, 200, headers=(*contact, *session))
        try:
            answer = answer_offer(call.local_media, request.body)
        except RemoteProtocolError:
            return response_to(request, 488)
        session = self._session_headers(request, call, now)
        call.local_media = answer.local
        call.set_media(answer.remote)
        self.emit(CallMediaChanged(call.call_id, answer.remote))
        sdp = (("Content-Type", "application/sdp"),)
        return response_to(request, 200, headers=(*contact, *session, *sdp), body=answer.body)

    def _answer_outside_dialogs(self, request: Request, source: Address, now: float) -> Response:
        in_dialog = request.to.tag is not None
        if request.method == "MESSAGE" and not in_dialog:
            response, received = answer_text(request, self._text_senders, source, now)
            self.stats[f"text_{response.status}"] += 1
            if received is not None:
                self.emit(received)
            return response
        if request.method == "INVITE" and not in_dialog:
            if self._config.max_incoming_calls > 0:
                return self._incoming_invite(request, source, now)
            # Someone calls the alerting engine (or a scanner probes it): refuse at once,
            # ring nothing, keep no state beyond this transaction.
            self.stats["unsolicited_invite"] += 1
            return response_to(request, 486, to_tag=new_tag(self._rng))
        if request.method in ("BYE", "INFO", "INVITE") or in_dialog:
            return response_to(request, 481)
        return uas.unsupported_method(request, self._config.user_agent)

    def _incoming_invite(self, request: Request, source: Address, now: float) -> Response:
        """Call-in (docs/call-in.md): an INVITE that passed admission (trusted hosts, the
        token bucket, the per-source transaction bound). At most ``max_incoming_calls``
        at once (486 beyond); the offer must be answerable (488); then 180, and the owner
        is told (``IncomingCall``) and answers or refuses."""
        to_tag = new_tag(self._rng)
        call_id = CallId(request.call_id)
        busy = len(self._incoming) + sum(
            1 for c in self._incoming_calls if (call := self._calls.get(c)) and not call.ended
        )
        if call_id in self._incoming or call_id in self._calls:
            # The same call again on another branch (a fork merged back, §8.2.2.2), or a
            # Call-ID we already use: never a second call under one id.
            self.stats["incoming_merged"] += 1
            return response_to(request, 482, to_tag=to_tag)
        if busy >= self._config.max_incoming_calls:
            self.stats["incoming_busy"] += 1
            return response_to(request, 486, to_tag=to_tag)
        if problem := incoming.offer_problem(request):
            self.stats["incoming_488"] += 1
            return response_to(request, 488, f"Not Acceptable Here ({problem[:60]})", to_tag=to_tag)
        try:
            incoming.uas_dialog(request, to_tag, 1)  # a Contact and a From tag to answer to
        except RemoteProtocolError as exc:
            self.stats["malformed"] += 1
            return response_to(request, 400, f"Bad Request ({str(exc)[:60]})")
        trusted = self._config.trusted_hosts
        host = _canonical(source[0])
        asserted = incoming.asserted_of(request) if trusted and host in trusted else None
        via = request.via
        self._incoming[call_id] = _Incoming(
            (via.branch or "", via.sent_by, "INVITE"), request, to_tag,
            now + self._config.incoming_answer_seconds,
        )  # fmt: skip
        self.stats["incoming_invite"] += 1
        self.emit(IncomingCall(call_id, incoming.caller_of(request), asserted, source))
        return response_to(request, 180, headers=_record_route(request), to_tag=to_tag)

    def _incoming_timeouts(self, now: float) -> None:
        for call_id, pending in list(self._incoming.items()):
            if now >= pending.give_up_at:
                self.stats["incoming_unanswered"] += 1
                self.reject_call(call_id, 480, now)
                self.emit(CallEnded(call_id, CallOutcome.NO_ANSWER, 480, "not answered in time"))

    def _answer_cancel(self, request: Request, now: float) -> Response:
        via = request.via
        invite = self._server.get((via.branch or "", via.sent_by, "INVITE"))
        if invite is None or invite.tx.state is not TxState.PROCEEDING:
            return response_to(request, 481)
        call_id = CallId(invite.request.call_id)
        pending = self._incoming.get(call_id)
        to_tag = new_tag(self._rng)
        if pending is not None and pending.request is invite.request:
            # The caller gave up before we answered (call-in): its owner learns it.
            del self._incoming[call_id]
            to_tag = pending.to_tag
            self.emit(CallEnded(call_id, CallOutcome.CANCELLED, 487, "caller cancelled"))
        terminated = response_to(invite.request, 487, to_tag=to_tag)
        self._respond(invite, terminated, now)
        return response_to(request, 200)

    def _answer_info(self, request: Request, call: Call) -> Response:
        digit = uas.parse_info_digit(request)
        if digit is not None:
            self.emit(DigitReceived(call.call_id, digit.digit, digit.duration_ms))
        status = uas.info_status(request)
        headers = (("Accept", "application/dtmf-relay, application/dtmf"),) if status == 415 else ()
        return response_to(request, status, headers=headers)

    def _answer_reinvite(
        self, request: Request, call: Call, source: Address, now: float
    ) -> Response:
        """Answer with the current session: hold, direct-media moves, session refreshes."""
        if too_small := self._interval_too_small(request):
            return too_small
        sdp = (("Content-Type", "application/sdp"),)
        if request.body:
            try:
                answer = answer_offer(call.local_media, request.body)
            except RemoteProtocolError:
                return response_to(request, 488)  # a failed re-INVITE refreshes nothing
            call.local_media = answer.local
            call.set_media(answer.remote)
            self.emit(CallMediaChanged(call.call_id, answer.remote))
            body = answer.body
        else:
            body = call.local_media.sdp()  # delayed offer: their answer comes in the ACK
        contact = (
            ("Contact", our_contact(self._config)),
            *self._session_headers(request, call, now),
        )
        response = response_to(request, 200, headers=(*contact, *sdp), body=body)
        if not self._config.reliable and call.dialog is not None:
            timers = self._config.timers
            hop = call.dialog.next_hop(self._config.transport)
            # A named next hop: the address the re-INVITE came from (no DNS here).
            destination = hop.address() if hop.numeric else source
            self._retransmit[call.call_id] = _Retransmit2xx(
                response.serialize(), destination, timers.t1, now + timers.t1,
                now + 64 * timers.t1,
            )  # fmt: skip
        return response

    def _dialog_ack(self, request: Request, call: Call | None) -> None:
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
                self._incoming_calls.discard(call_id)
                self._hosts_cache.pop(call_id, None)
                self._retransmit.pop(call_id, None)


class _KeepAliveUser:
    """The transaction user of a keep-alive OPTIONS: any answer will do."""

    def __init__(self, agent: UserAgent) -> None:
        self._agent = agent

    def on_response(self, request: Request, response: Response, now: float) -> None:
        if response.status >= 200:
            self._agent._keepalive_done(request, None, now)

    def on_failure(self, request: Request, failure: TxFailure, now: float) -> None:
        self._agent._keepalive_done(request, failure, now)

    def retry_elsewhere(self, request: Request, retry: Request) -> bool:
        if request is self._agent._keepalive_options:
            self._agent._keepalive_options = retry
            return True
        return False


def _record_route(request: Request) -> tuple[HeaderInput, ...]:
    """§12.1.1: a UAS copies every Record-Route into its responses that make a dialog."""
    return tuple(("Record-Route", value) for value in request.headers.get_all("Record-Route"))


def _canonical(host: str) -> str:
    """An IP literal in one spelling (``::ffff:...`` and ``[...]`` forms compared as one)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)
