"""NAT keep-alive of the registration's binding, and the Contact that follows the mapping.

* RFC 3581 §4: the registrar's answers say, in ``received``/``rport``, where it saw us.
  On UDP a Contact that differs moves there and the registration is refreshed (RFC 5626
  §4.4-style), at most every ``MIN_CONTACT_REWRITE_SECONDS``.
* While registered, the binding is kept open: over UDP an OPTIONS to the registrar (any
  answer will do; none means the binding may be gone, so register again); over TCP/TLS a
  CRLF ping on the registration's connection, whose pong must come within 10 s
  (RFC 5626 §4.4.1). The schedule itself is ``nat.KeepAliveSchedule``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from voipalert.sip.address import NameAddr
from voipalert.sip.admission import canonical
from voipalert.sip.agent_core import AgentCore
from voipalert.sip.agent_services import TxFailure
from voipalert.sip.dialog import Address, Envelope, build_request, new_cseq, our_aor
from voipalert.sip.events import RegistrationState
from voipalert.sip.fields import Via
from voipalert.sip.ids import new_branch, new_call_id, new_tag
from voipalert.sip.locate import hop_of
from voipalert.sip.message import Request, Response
from voipalert.sip.nat import PING, KeepAliveSchedule, mapped_address
from voipalert.sip.registration import Registration
from voipalert.sip.routing import ClientTransactions, ClientTx

MIN_CONTACT_REWRITE_SECONDS = 5.0
"""A NAT that gives every packet a new port would otherwise have us re-register on every
answer: the Contact moves at most this often (a later keep-alive catches up)."""


class NatKeepAlive:
    """Keeps the registration's NAT binding open and its Contact on the mapped address."""

    def __init__(
        self,
        core: AgentCore,
        clients: ClientTransactions,
        registration: Callable[[], Registration | None],
    ) -> None:
        self._core = core
        self._clients = clients
        self._registration = registration
        self._schedule = KeepAliveSchedule(core.config.keepalive_seconds)
        self.options: Request | None = None
        """The keep-alive OPTIONS still out (one at a time)."""
        self._contact_moved_at: float | None = None

    def start(self, now: float) -> None:
        self._schedule.start(now)

    def stop(self) -> None:
        self._schedule.stop()

    def next_deadline(self) -> float | None:
        return self._schedule.next_deadline()

    def to_registrar(self, ctx: ClientTx) -> bool:
        """Whether ``ctx`` went to the registrar (its answers tell our mapped address)."""
        return ctx.request.method == "REGISTER" or isinstance(ctx.user, _KeepAliveUser)

    def check_mapped(self, via: Via, now: float) -> None:
        """RFC 3581 §4: the registrar saw us at ``received``:``rport``. On UDP, a Contact
        that differs moves there, and the registration follows (RFC 5626 §4.4-style)."""
        config = self._core.config
        if config.transport != "udp":
            return  # a TCP/TLS source port is the connection's, not a listening port
        mapped = mapped_address(via)
        if mapped is None:
            return
        host = config.public_host or config.local_host
        port = config.public_port or config.local_port
        if canonical(mapped[0]) == canonical(host) and mapped[1] == port:
            return
        moved = self._contact_moved_at
        if moved is not None and now - moved < MIN_CONTACT_REWRITE_SECONDS:
            self._core.stats["contact_rewrite_deferred"] += 1
            return
        self._contact_moved_at = now
        self._core.stats["contact_rewritten"] += 1
        self._core.config = replace(config, public_host=mapped[0], public_port=mapped[1])
        registration = self._registration()
        if registration is not None:
            registration.contact_changed(now)

    def handle_timer(self, now: float) -> None:
        stats = self._core.stats
        registration = self._registration()
        dead = self._schedule.pong_overdue(now)
        if dead is not None:
            # RFC 5626 §4.4.1: no pong in 10 s, the flow has failed: register again.
            stats["keepalive_no_pong"] += 1
            if registration is not None:
                registration.transport_failed(now)
        if not self._schedule.due(now):
            return
        if registration is None or registration.status.state is not RegistrationState.REGISTERED:
            return  # the registration's own retries keep the binding (or say it failed)
        config = self._core.config
        if config.reliable:
            if self._clients.registrar_at is not None:
                destination, server_name = self._clients.registrar_at
                self._core.send(PING, destination, server_name)
                self._schedule.pinged_at(destination, now)
                stats["keepalive_ping"] += 1
            return
        if self.options is not None or config.registrar is None:
            return  # the last one is still out: one at a time
        registrar = config.registrar
        rng = self._core.rng
        route: tuple[NameAddr, ...] = ()
        if config.outbound_proxy is not None:
            route = (NameAddr(uri=config.outbound_proxy.with_param("lr")),)
        envelope = Envelope(
            NameAddr(uri=our_aor(config)).with_tag(new_tag(rng)), NameAddr(uri=registrar),
            new_call_id(rng), new_cseq(rng), new_branch(rng), route,
        )  # fmt: skip
        options = build_request(config, "OPTIONS", registrar, envelope)
        self.options = options
        stats["keepalive_options"] += 1
        hop = hop_of(config.outbound_proxy or registrar, config.transport)
        self._clients.send_request(options, hop, _KeepAliveUser(self), now)

    def pong_received(self, source: Address) -> None:
        if self._schedule.pong(source):
            self._core.stats["keepalive_pong"] += 1

    def done(self, request: Request, failure: TxFailure | None, now: float) -> None:
        if request is not self.options:
            return
        self.options = None
        if failure is not None:
            # No answer to the keep-alive: the binding may be gone; register again.
            self._core.stats["keepalive_failed"] += 1
            registration = self._registration()
            if registration is not None:
                registration.transport_failed(now)


class _KeepAliveUser:
    """The transaction user of a keep-alive OPTIONS: any answer will do."""

    def __init__(self, keepalive: NatKeepAlive) -> None:
        self._keepalive = keepalive

    def on_response(self, request: Request, response: Response, now: float) -> None:
        if response.status >= 200:
            self._keepalive.done(request, None, now)

    def on_failure(self, request: Request, failure: TxFailure, now: float) -> None:
        self._keepalive.done(request, failure, now)

    def retry_elsewhere(self, request: Request, retry: Request) -> bool:
        if request is self._keepalive.options:
            self._keepalive.options = retry
            return True
        return False
