"""Server transactions: the table of requests we are answering, and their retransmissions.

A request is matched to its transaction by top Via branch, sent-by and method, an ACK
to its INVITE (RFC 3261 §17.2.3). Responses go back where the request came from:
RFC 3581 §4 (rport) on UDP, the same connection on TCP/TLS (§18.2.2). The table counts
its transactions per source host for the admission's bounds (``admission.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from voipalert.sip.admission import Admission, canonical
from voipalert.sip.agent_core import AgentCore
from voipalert.sip.dialog import Address
from voipalert.sip.message import Request, Response
from voipalert.sip.transaction import Transaction, TxAction, TxInput, TxKind, tu_response_input

ServerKey = tuple[str, str, str]


@dataclass(slots=True)
class ServerTx:
    tx: Transaction
    request: Request
    source: Address
    response: bytes | None = None


def server_key(request: Request) -> ServerKey:
    """§17.2.3: branch, sent-by and method; an ACK matches its INVITE's transaction."""
    via = request.via
    method = "INVITE" if request.method == "ACK" else request.method
    return (via.branch or "", via.sent_by, method)


class ServerTransactions:
    """The server transactions we hold, each answering one request from one source."""

    def __init__(self, core: AgentCore, admission: Admission) -> None:
        self._core = core
        self._admission = admission
        self._table: dict[ServerKey, ServerTx] = {}

    def __len__(self) -> int:
        return len(self._table)

    def get(self, key: ServerKey) -> ServerTx | None:
        return self._table.get(key)

    def open(self, key: ServerKey, request: Request, source: Address, now: float) -> ServerTx:
        config = self._core.config
        kind = TxKind.SERVER_INVITE if request.method == "INVITE" else TxKind.SERVER_NON_INVITE
        tx = Transaction(kind, reliable=config.reliable, timers=config.timers, now=now)
        ctx = ServerTx(tx, request, source)
        self._table[key] = ctx
        self._admission.opened(canonical(source[0]))
        return ctx

    def retransmitted(self, ctx: ServerTx, request: Request, now: float) -> None:
        """The request (or the ACK of a non-2xx final response) came again."""
        event = TxInput.ACK if request.method == "ACK" else TxInput.REQUEST
        self._actions(ctx, ctx.tx.handle(event, now))

    def respond(self, ctx: ServerTx, response: Response, now: float) -> None:
        ctx.response = response.serialize()
        self._actions(ctx, ctx.tx.handle(tu_response_input(response.status), now))

    def transport_failed(self, destination: Address, now: float) -> None:
        for key, ctx in list(self._table.items()):
            if ctx.source == destination:
                ctx.tx.handle(TxInput.TRANSPORT_ERROR, now)
                if ctx.tx.terminated:
                    self._forget(key)

    def handle_timer(self, now: float) -> None:
        for key, ctx in list(self._table.items()):
            for _, actions in ctx.tx.handle_timer(now):
                self._actions(ctx, actions)
            if ctx.tx.terminated:
                self._forget(key)

    def deadlines(self) -> list[float | None]:
        return [ctx.tx.next_deadline() for ctx in self._table.values()]

    def _actions(self, ctx: ServerTx, actions: tuple[TxAction, ...]) -> None:
        for action in actions:
            if action is TxAction.SEND_RESPONSE and ctx.response is not None:
                self._core.send(ctx.response, ctx.source)

    def _forget(self, key: ServerKey) -> None:
        ctx = self._table.pop(key, None)
        if ctx is not None:
            self._admission.closed(canonical(ctx.source[0]))
