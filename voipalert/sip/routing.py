"""Client transactions and where their requests go: RFC 3263 routing with DNS failover.

A request to a numeric hop is sent at once. A request to a host name waits until the
adapter has looked the name up (``lookups_to_do`` / ``resolved``); it then goes to the
first address of the answer, and the hop's later requests follow the last address that
did not fail until the answer expires. A transaction that times out, fails at the
transport or gets a 503 is retried on the hop's next address with a new branch
(RFC 3263 §4.3). Responses are matched to their transaction by the top Via branch and
the CSeq method (RFC 3261 §17.1.3).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from voipalert.sip.agent_core import AgentCore
from voipalert.sip.agent_services import TxFailure, TxUser
from voipalert.sip.dialog import Address, ack_for_failure
from voipalert.sip.ids import new_branch
from voipalert.sip.locate import Hop
from voipalert.sip.message import Request, Response
from voipalert.sip.transaction import Transaction, TxAction, TxInput, TxKind, response_input

ClientKey = tuple[str, str]
MAX_ROUTES = 256
"""Hops whose DNS answer (RFC 3263 target list) is remembered; the oldest go first."""
MAX_WAITING = 256
"""Requests held while their hop is looked up; beyond that they fail at once."""


@dataclass(slots=True)
class ClientTx:
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
class Route:
    """A hop's addresses in RFC 3263 order, and the one in use: requests follow the
    last address that did not fail, until the DNS answer expires."""

    targets: tuple[Address, ...]
    expires_at: float
    index: int = 0


@dataclass(slots=True)
class _Waiting:
    request: Request
    user: TxUser | None


class ClientTransactions:
    """Our client transactions, the DNS answers they are routed by, and failover."""

    def __init__(self, core: AgentCore) -> None:
        self._core = core
        self._table: dict[ClientKey, ClientTx] = {}
        self.routes: OrderedDict[Hop, Route] = OrderedDict()
        self.routes_version = 0
        """Bumped on every new DNS answer: the admission's cached peer hosts follow it."""
        self._waiting: dict[Hop, list[_Waiting]] = {}
        self._lookups: list[Hop] = []
        self.registrar_at: tuple[Address, str | None] | None = None
        """Where the last REGISTER went (and the name it was found for): TCP/TLS pings go
        there, on the registration's connection."""

    def send_request(
        self, request: Request, destination: Hop | Address, user: TxUser | None, now: float
    ) -> None:
        """Send ``request`` to ``destination``: an address as is; a hop with a host name
        once DNS has answered for it (RFC 3263, ``lookups_to_do``/``resolved``)."""
        if request.method == "CANCEL":
            # RFC 3263 §4 / RFC 3261 §9.1: a CANCEL goes where its INVITE went.
            invite = self._table.get((request.via.branch or "", "INVITE"))
            if invite is not None:
                self._start(
                    request, invite.destination, user, now, invite.hop, invite.targets,
                    invite.index,
                )  # fmt: skip
                return
        if not isinstance(destination, Hop):
            self._start(request, destination, user, now)
            return
        if destination.numeric:
            self._start(request, destination.address(), user, now, destination)
            return
        route = self._route(destination, now)
        if route is None:
            self._wait(destination, request, user, now)
            return
        self._start(
            request, route.targets[route.index], user, now, destination, route.targets,
            route.index,
        )  # fmt: skip

    def _start(
        self, request: Request, destination: Address, user: TxUser | None, now: float,
        hop: Hop | None = None, targets: tuple[Address, ...] = (), index: int = 0,
    ) -> None:  # fmt: skip
        config = self._core.config
        data = request.serialize()
        server_name = None if hop is None or hop.numeric else hop.host
        if request.method == "REGISTER":
            self.registrar_at = (destination, server_name)
        self._core.send(data, destination, server_name)
        if request.method == "ACK":
            return  # a 2xx ACK is not a transaction (§17.1.1.3)
        kind = TxKind.CLIENT_INVITE if request.method == "INVITE" else TxKind.CLIENT_NON_INVITE
        tx = Transaction(kind, reliable=config.reliable, timers=config.timers, now=now)
        key = (request.via.branch or "", request.method)
        self._table[key] = ClientTx(tx, request, data, destination, user, hop, targets, index)

    # ------------------------------------------------------------ DNS (RFC 3263)

    def _route(self, hop: Hop, now: float) -> Route | None:
        route = self.routes.get(hop)
        if route is None or now >= route.expires_at:
            return None
        return route

    def _wait(self, hop: Hop, request: Request, user: TxUser | None, now: float) -> None:
        if sum(len(w) for w in self._waiting.values()) >= MAX_WAITING:
            self._core.stats["dns_queue_full"] += 1
            if user is not None and request.method != "ACK":
                user.on_failure(request, TxFailure.OVERLOAD, now)
            return
        if hop not in self._waiting:
            self._waiting[hop] = []
            self._lookups.append(hop)
        self._waiting[hop].append(_Waiting(request, user))

    def lookups_to_do(self) -> list[Hop]:
        lookups, self._lookups = self._lookups, []
        return lookups

    def resolved(self, hop: Hop, targets: list[Address], ttl: float, now: float) -> None:
        """See ``UserAgent.resolved``."""
        waiting = self._waiting.pop(hop, [])
        if targets:
            self.routes.pop(hop, None)
            self.routes[hop] = Route(tuple(targets), now + max(ttl, 0.0))
            while len(self.routes) > MAX_ROUTES:
                self.routes.popitem(last=False)
            self.routes_version += 1
        else:
            self._core.stats["dns_no_target"] += 1
        for item in waiting:
            if targets:
                route = self.routes[hop]
                self._start(
                    item.request, route.targets[route.index], item.user, now, hop,
                    route.targets, route.index,
                )  # fmt: skip
            elif item.user is not None and item.request.method != "ACK":
                item.user.on_failure(item.request, TxFailure.NO_ADDRESS, now)

    def _fail_over(self, ctx: ClientTx, now: float) -> bool:
        """RFC 3263 §4.3: the transaction timed out, failed at the transport or got a
        503; try the hop's next address in a new transaction (a new branch), if there is
        one and the transaction user still wants it."""
        hop = ctx.hop
        next_index = ctx.index + 1
        if hop is None or ctx.request.method == "CANCEL" or next_index >= len(ctx.targets):
            return False
        retry = ctx.request.with_top_via_param("branch", new_branch(self._core.rng))
        if ctx.user is not None and not ctx.user.retry_elsewhere(ctx.request, retry):
            return False
        route = self.routes.get(hop)
        if route is not None and route.targets == ctx.targets and route.index == ctx.index:
            route.index = next_index  # the next requests go where this one goes now
        self._core.stats["dns_failover"] += 1
        self._start(retry, ctx.targets[next_index], ctx.user, now, hop, ctx.targets, next_index)
        return True

    # ------------------------------------------------------------ transaction inputs

    def matching(self, response: Response) -> ClientTx | None:
        """The transaction ``response`` answers (§17.1.3: top Via branch, CSeq method)."""
        return self._table.get((response.via.branch or "", response.cseq.method))

    def on_response(self, ctx: ClientTx, response: Response, now: float) -> None:
        self._input(ctx, response_input(response.status), response, now)

    def transport_failed(self, destination: Address, now: float) -> None:
        for ctx in list(self._table.values()):
            if ctx.destination == destination:
                self._input(ctx, TxInput.TRANSPORT_ERROR, None, now)

    def handle_timer(self, now: float) -> None:
        for key, ctx in list(self._table.items()):
            for event, actions in ctx.tx.handle_timer(now):
                self._actions(ctx, actions, None, now, event)
            if ctx.tx.terminated:
                self._table.pop(key, None)

    def deadlines(self) -> list[float | None]:
        return [ctx.tx.next_deadline() for ctx in self._table.values()]

    def _input(self, ctx: ClientTx, event: TxInput, response: Response | None, now: float) -> None:
        actions = ctx.tx.handle(event, now)
        self._actions(ctx, actions, response, now, event)
        if ctx.tx.terminated:
            self._table.pop((ctx.request.via.branch or "", ctx.request.method), None)

    def _actions(
        self, ctx: ClientTx, actions: tuple[TxAction, ...], response: Response | None,
        now: float, event: TxInput,
    ) -> None:  # fmt: skip
        server_name = ctx.server_name
        for action in actions:
            if action is TxAction.SEND_REQUEST:
                self._core.send(ctx.data, ctx.destination, server_name)
            elif action is TxAction.SEND_ACK and response is not None:
                ack = ack_for_failure(ctx.request, response).serialize()
                self._core.send(ack, ctx.destination, server_name)
            elif action is TxAction.PASS_UP and response is not None and ctx.user is not None:
                if response.status == 503 and self._fail_over(ctx, now):
                    continue
                ctx.user.on_response(ctx.request, response, now)
            elif action in (TxAction.TIMEOUT, TxAction.TRANSPORT_FAILED) and ctx.user:
                if self._fail_over(ctx, now):
                    continue
                failure = TxFailure.TIMEOUT if action is TxAction.TIMEOUT else TxFailure.TRANSPORT
                ctx.user.on_failure(ctx.request, failure, now)
