"""SIP transactions as transition tables (RFC 3261 §17, as amended by RFC 6026).

Rules of this module (h11's ``_state.py`` is the model):

1. A transaction is one of four kinds — client INVITE, client non-INVITE, server INVITE,
   server non-INVITE — each with its own table mapping ``(state, input)`` to a ``Row``: the
   next state, what to do (``TxAction``s), and which timers to start or stop.
2. Inputs come from the network (responses, retransmitted requests, ACK), from our
   transaction user (the responses we send as a server), from timers, and from the
   transport (a send that failed). Every network and transport input has a row in every
   state — a peer can send anything at any time, and it is absorbed, never an exception.
   A transaction-user input with no row is a bug on our side: ``LocalProtocolError``.
3. The transaction holds no message: it says *what* to do (resend the request, ACK the
   response just received, pass it up) and the agent does it with the message in hand.
4. No clock is read: every input carries ``now``; ``next_deadline()`` tells the adapter
   when to call ``handle_timer(now)``, which fires every timer due at ``now`` (timers
   fire late, so all that is due is handled — docs/architecture.md §6).
5. Retransmission timers (A, E, G) run only on unreliable transports (§17.1.1.2:
   "If an unreliable transport is being used..."); the wait timers D, I, J and K are
   zero on reliable ones. Nothing here retransmits over TCP (sipexer #6).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

from voipalert.sip.errors import LocalProtocolError
from voipalert.sip.timers import TimerConfig


class TxKind(Enum):
    CLIENT_INVITE = "client INVITE"
    CLIENT_NON_INVITE = "client non-INVITE"
    SERVER_INVITE = "server INVITE"
    SERVER_NON_INVITE = "server non-INVITE"


class TxState(Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"  # RFC 6026
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class TxInput(Enum):
    # from the network
    PROVISIONAL = "1xx response"
    SUCCESS = "2xx response"
    FAILURE = "3xx-6xx response"
    REQUEST = "request retransmission"
    ACK = "ACK"
    # from the transport
    TRANSPORT_ERROR = "transport error"
    # from our transaction user (server transactions)
    SEND_PROVISIONAL = "TU sends 1xx"
    SEND_SUCCESS = "TU sends 2xx"
    SEND_FAILURE = "TU sends 3xx-6xx"
    # timers
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"


class TxAction(Enum):
    SEND_REQUEST = "send the request again"
    SEND_ACK = "send an ACK for the response just received"
    SEND_RESPONSE = "send the last response again"
    PASS_UP = "pass the response (or ACK) to the transaction user"
    TIMEOUT = "tell the transaction user it timed out"
    TRANSPORT_FAILED = "tell the transaction user the transport failed"


class Timer(Enum):
    A = TxInput.TIMER_A
    B = TxInput.TIMER_B
    D = TxInput.TIMER_D
    E = TxInput.TIMER_E
    F = TxInput.TIMER_F
    G = TxInput.TIMER_G
    H = TxInput.TIMER_H
    I = TxInput.TIMER_I  # noqa: E741 - the RFC's name for the timer
    J = TxInput.TIMER_J
    K = TxInput.TIMER_K
    L = TxInput.TIMER_L
    M = TxInput.TIMER_M


NETWORK_INPUTS: Final = frozenset(
    {TxInput.PROVISIONAL, TxInput.SUCCESS, TxInput.FAILURE, TxInput.REQUEST, TxInput.ACK}
)
TU_INPUTS: Final = frozenset({TxInput.SEND_PROVISIONAL, TxInput.SEND_SUCCESS, TxInput.SEND_FAILURE})
RETRANSMIT_TIMERS: Final = frozenset({Timer.A, Timer.E, Timer.G})


@dataclass(frozen=True, slots=True)
class Row:
    next: TxState
    actions: tuple[TxAction, ...] = ()
    start: tuple[Timer, ...] = ()
    stop: tuple[Timer, ...] = ()


Table = Mapping[tuple[TxState, TxInput], Row]

# RFC 3261 §17.1.1.2 with RFC 6026 §7.2 (Figure 5 of RFC 6026).
CLIENT_INVITE: Final[Table] = {
    (TxState.CALLING, TxInput.TIMER_A): Row(
        TxState.CALLING, (TxAction.SEND_REQUEST,), start=(Timer.A,)
    ),
    (TxState.CALLING, TxInput.TIMER_B): Row(TxState.TERMINATED, (TxAction.TIMEOUT,)),
    (TxState.CALLING, TxInput.PROVISIONAL): Row(
        TxState.PROCEEDING, (TxAction.PASS_UP,), stop=(Timer.A, Timer.B)
    ),
    (TxState.CALLING, TxInput.SUCCESS): Row(
        TxState.ACCEPTED, (TxAction.PASS_UP,), start=(Timer.M,), stop=(Timer.A, Timer.B)
    ),
    (TxState.CALLING, TxInput.FAILURE): Row(
        TxState.COMPLETED,
        (TxAction.SEND_ACK, TxAction.PASS_UP),
        start=(Timer.D,),
        stop=(Timer.A, Timer.B),
    ),
    (TxState.CALLING, TxInput.TRANSPORT_ERROR): Row(
        TxState.TERMINATED, (TxAction.TRANSPORT_FAILED,)
    ),
    (TxState.PROCEEDING, TxInput.PROVISIONAL): Row(TxState.PROCEEDING, (TxAction.PASS_UP,)),
    (TxState.PROCEEDING, TxInput.SUCCESS): Row(
        TxState.ACCEPTED, (TxAction.PASS_UP,), start=(Timer.M,)
    ),
    (TxState.PROCEEDING, TxInput.FAILURE): Row(
        TxState.COMPLETED, (TxAction.SEND_ACK, TxAction.PASS_UP), start=(Timer.D,)
    ),
    (TxState.PROCEEDING, TxInput.TRANSPORT_ERROR): Row(
        TxState.TERMINATED, (TxAction.TRANSPORT_FAILED,)
    ),
    # RFC 6026 §7.2: every 2xx retransmission (or a 2xx from another fork) goes up, so
    # the TU ACKs each one (§13.2.2.4); a late 1xx or non-2xx means nothing any more.
    (TxState.ACCEPTED, TxInput.SUCCESS): Row(TxState.ACCEPTED, (TxAction.PASS_UP,)),
    (TxState.ACCEPTED, TxInput.PROVISIONAL): Row(TxState.ACCEPTED),
    (TxState.ACCEPTED, TxInput.FAILURE): Row(TxState.ACCEPTED),
    (TxState.ACCEPTED, TxInput.TRANSPORT_ERROR): Row(TxState.ACCEPTED),
    (TxState.ACCEPTED, TxInput.TIMER_M): Row(TxState.TERMINATED),
    # §17.1.1.2: a retransmitted final response is ACKed again, not passed up.
    (TxState.COMPLETED, TxInput.FAILURE): Row(TxState.COMPLETED, (TxAction.SEND_ACK,)),
    (TxState.COMPLETED, TxInput.PROVISIONAL): Row(TxState.COMPLETED),
    (TxState.COMPLETED, TxInput.SUCCESS): Row(TxState.COMPLETED),
    (TxState.COMPLETED, TxInput.TRANSPORT_ERROR): Row(TxState.TERMINATED),
    (TxState.COMPLETED, TxInput.TIMER_D): Row(TxState.TERMINATED),
}

# RFC 3261 §17.1.2.2 (Figure 6).
CLIENT_NON_INVITE: Final[Table] = {
    (TxState.TRYING, TxInput.TIMER_E): Row(
        TxState.TRYING, (TxAction.SEND_REQUEST,), start=(Timer.E,)
    ),
    (TxState.TRYING, TxInput.TIMER_F): Row(TxState.TERMINATED, (TxAction.TIMEOUT,)),
    (TxState.TRYING, TxInput.PROVISIONAL): Row(TxState.PROCEEDING, (TxAction.PASS_UP,)),
    (TxState.TRYING, TxInput.SUCCESS): Row(
        TxState.COMPLETED, (TxAction.PASS_UP,), start=(Timer.K,), stop=(Timer.E, Timer.F)
    ),
    (TxState.TRYING, TxInput.FAILURE): Row(
        TxState.COMPLETED, (TxAction.PASS_UP,), start=(Timer.K,), stop=(Timer.E, Timer.F)
    ),
    (TxState.TRYING, TxInput.TRANSPORT_ERROR): Row(
        TxState.TERMINATED, (TxAction.TRANSPORT_FAILED,)
    ),
    # In Proceeding Timer E keeps retransmitting, every T2 (§17.1.2.2).
    (TxState.PROCEEDING, TxInput.TIMER_E): Row(
        TxState.PROCEEDING, (TxAction.SEND_REQUEST,), start=(Timer.E,)
    ),
    (TxState.PROCEEDING, TxInput.TIMER_F): Row(TxState.TERMINATED, (TxAction.TIMEOUT,)),
    (TxState.PROCEEDING, TxInput.PROVISIONAL): Row(TxState.PROCEEDING, (TxAction.PASS_UP,)),
    (TxState.PROCEEDING, TxInput.SUCCESS): Row(
        TxState.COMPLETED, (TxAction.PASS_UP,), start=(Timer.K,), stop=(Timer.E, Timer.F)
    ),
    (TxState.PROCEEDING, TxInput.FAILURE): Row(
        TxState.COMPLETED, (TxAction.PASS_UP,), start=(Timer.K,), stop=(Timer.E, Timer.F)
    ),
    (TxState.PROCEEDING, TxInput.TRANSPORT_ERROR): Row(
        TxState.TERMINATED, (TxAction.TRANSPORT_FAILED,)
    ),
    (TxState.COMPLETED, TxInput.PROVISIONAL): Row(TxState.COMPLETED),
    (TxState.COMPLETED, TxInput.SUCCESS): Row(TxState.COMPLETED),
    (TxState.COMPLETED, TxInput.FAILURE): Row(TxState.COMPLETED),
    (TxState.COMPLETED, TxInput.TRANSPORT_ERROR): Row(TxState.COMPLETED),
    (TxState.COMPLETED, TxInput.TIMER_K): Row(TxState.TERMINATED),
}

# RFC 3261 §17.2.1 with RFC 6026 §7.1 (Figure 7 of RFC 6026). We answer at once (re-INVITE
# refresh, a refusal of an unsolicited INVITE) or, for a call-in, 180 at once and the 2xx
# once the media is ready (docs/call-in.md), so the TU sends no 100.
SERVER_INVITE: Final[Table] = {
    (TxState.PROCEEDING, TxInput.REQUEST): Row(TxState.PROCEEDING, (TxAction.SEND_RESPONSE,)),
    (TxState.PROCEEDING, TxInput.ACK): Row(TxState.PROCEEDING),
    (TxState.PROCEEDING, TxInput.SEND_PROVISIONAL): Row(
        TxState.PROCEEDING, (TxAction.SEND_RESPONSE,)
    ),
    (TxState.PROCEEDING, TxInput.SEND_SUCCESS): Row(
        TxState.ACCEPTED, (TxAction.SEND_RESPONSE,), start=(Timer.L,)
    ),
    (TxState.PROCEEDING, TxInput.SEND_FAILURE): Row(
        TxState.COMPLETED, (TxAction.SEND_RESPONSE,), start=(Timer.G, Timer.H)
    ),
    (TxState.PROCEEDING, TxInput.TRANSPORT_ERROR): Row(
        TxState.TERMINATED, (TxAction.TRANSPORT_FAILED,)
    ),
    (TxState.COMPLETED, TxInput.REQUEST): Row(TxState.COMPLETED, (TxAction.SEND_RESPONSE,)),
    (TxState.COMPLETED, TxInput.ACK): Row(
        TxState.CONFIRMED, start=(Timer.I,), stop=(Timer.G, Timer.H)
    ),
    (TxState.COMPLETED, TxInput.TIMER_G): Row(
        TxState.COMPLETED, (TxAction.SEND_RESPONSE,), start=(Timer.G,)
    ),
    (TxState.COMPLETED, TxInput.TIMER_H): Row(TxState.TERMINATED, (TxAction.TIMEOUT,)),
    (TxState.COMPLETED, TxInput.TRANSPORT_ERROR): Row(
        TxState.TERMINATED, (TxAction.TRANSPORT_FAILED,)
    ),
    (TxState.CONFIRMED, TxInput.REQUEST): Row(TxState.CONFIRMED),
    (TxState.CONFIRMED, TxInput.ACK): Row(TxState.CONFIRMED),
    (TxState.CONFIRMED, TxInput.TRANSPORT_ERROR): Row(TxState.CONFIRMED),
    (TxState.CONFIRMED, TxInput.TIMER_I): Row(TxState.TERMINATED),
    # RFC 6026 §8.7: retransmitted INVITEs are absorbed; the 2xx is retransmitted by the
    # TU (§13.3.1.4) through SEND_SUCCESS; the ACK of a 2xx belongs to the TU.
    (TxState.ACCEPTED, TxInput.REQUEST): Row(TxState.ACCEPTED),
    (TxState.ACCEPTED, TxInput.ACK): Row(TxState.ACCEPTED, (TxAction.PASS_UP,)),
    (TxState.ACCEPTED, TxInput.SEND_SUCCESS): Row(TxState.ACCEPTED, (TxAction.SEND_RESPONSE,)),
    (TxState.ACCEPTED, TxInput.TRANSPORT_ERROR): Row(
        TxState.ACCEPTED, (TxAction.TRANSPORT_FAILED,)
    ),
    (TxState.ACCEPTED, TxInput.TIMER_L): Row(TxState.TERMINATED),
}

# RFC 3261 §17.2.2 (Figure 8).
SERVER_NON_INVITE: Final[Table] = {
    (TxState.TRYING, TxInput.REQUEST): Row(TxState.TRYING),
    (TxState.TRYING, TxInput.ACK): Row(TxState.TRYING),
    (TxState.TRYING, TxInput.SEND_PROVISIONAL): Row(TxState.PROCEEDING, (TxAction.SEND_RESPONSE,)),
    (TxState.TRYING, TxInput.SEND_SUCCESS): Row(
        TxState.COMPLETED, (TxAction.SEND_RESPONSE,), start=(Timer.J,)
    ),
    (TxState.TRYING, TxInput.SEND_FAILURE): Row(
        TxState.COMPLETED, (TxAction.SEND_RESPONSE,), start=(Timer.J,)
    ),
    (TxState.TRYING, TxInput.TRANSPORT_ERROR): Row(
        TxState.TERMINATED, (TxAction.TRANSPORT_FAILED,)
    ),
    (TxState.PROCEEDING, TxInput.REQUEST): Row(TxState.PROCEEDING, (TxAction.SEND_RESPONSE,)),
    (TxState.PROCEEDING, TxInput.ACK): Row(TxState.PROCEEDING),
    (TxState.PROCEEDING, TxInput.SEND_PROVISIONAL): Row(
        TxState.PROCEEDING, (TxAction.SEND_RESPONSE,)
    ),
    (TxState.PROCEEDING, TxInput.SEND_SUCCESS): Row(
        TxState.COMPLETED, (TxAction.SEND_RESPONSE,), start=(Timer.J,)
    ),
    (TxState.PROCEEDING, TxInput.SEND_FAILURE): Row(
        TxState.COMPLETED, (TxAction.SEND_RESPONSE,), start=(Timer.J,)
    ),
    (TxState.PROCEEDING, TxInput.TRANSPORT_ERROR): Row(
        TxState.TERMINATED, (TxAction.TRANSPORT_FAILED,)
    ),
    (TxState.COMPLETED, TxInput.REQUEST): Row(TxState.COMPLETED, (TxAction.SEND_RESPONSE,)),
    (TxState.COMPLETED, TxInput.ACK): Row(TxState.COMPLETED),
    (TxState.COMPLETED, TxInput.TRANSPORT_ERROR): Row(
        TxState.TERMINATED, (TxAction.TRANSPORT_FAILED,)
    ),
    (TxState.COMPLETED, TxInput.TIMER_J): Row(TxState.TERMINATED),
}

TABLES: Final[Mapping[TxKind, Table]] = {
    TxKind.CLIENT_INVITE: CLIENT_INVITE,
    TxKind.CLIENT_NON_INVITE: CLIENT_NON_INVITE,
    TxKind.SERVER_INVITE: SERVER_INVITE,
    TxKind.SERVER_NON_INVITE: SERVER_NON_INVITE,
}

# State and timers a transaction starts with (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2).
_INITIAL: Final[Mapping[TxKind, tuple[TxState, tuple[Timer, ...]]]] = {
    TxKind.CLIENT_INVITE: (TxState.CALLING, (Timer.A, Timer.B)),
    TxKind.CLIENT_NON_INVITE: (TxState.TRYING, (Timer.E, Timer.F)),
    TxKind.SERVER_INVITE: (TxState.PROCEEDING, ()),
    TxKind.SERVER_NON_INVITE: (TxState.TRYING, ()),
}


def response_input(status: int) -> TxInput:
    """The table input for a response status code."""
    if 100 <= status < 200:
        return TxInput.PROVISIONAL
    if 200 <= status < 300:
        return TxInput.SUCCESS
    return TxInput.FAILURE


def tu_response_input(status: int) -> TxInput:
    """The table input for a response our transaction user sends."""
    return {
        TxInput.PROVISIONAL: TxInput.SEND_PROVISIONAL,
        TxInput.SUCCESS: TxInput.SEND_SUCCESS,
        TxInput.FAILURE: TxInput.SEND_FAILURE,
    }[response_input(status)]


class Transaction:
    """One transaction's state and timers. The agent owns the messages."""

    def __init__(self, kind: TxKind, *, reliable: bool, timers: TimerConfig, now: float) -> None:
        self.kind = kind
        self.reliable = reliable
        self._timers = timers
        self._table = TABLES[kind]
        self._deadlines: dict[Timer, float] = {}
        self._intervals: dict[Timer, float] = {}
        self.state, initial_timers = _INITIAL[kind]
        for timer in initial_timers:
            self._start(timer, now, backoff=False)

    @property
    def terminated(self) -> bool:
        return self.state is TxState.TERMINATED

    def handle(self, event: TxInput, now: float) -> tuple[TxAction, ...]:
        """Apply one input; returns what the agent must do."""
        row = self._table.get((self.state, event))
        if row is None:
            if event in TU_INPUTS:
                raise LocalProtocolError(
                    f"can't handle {event.value} in {self.kind.value} {self.state.value}"
                )
            # Rule 2: whatever the network sends once the transaction is over is ignored.
            return ()
        for timer in row.stop:
            self._deadlines.pop(timer, None)
        self.state = row.next
        if row.next is TxState.TERMINATED:
            self._deadlines.clear()
        else:
            fired = _timer_of(event)
            for timer in row.start:
                self._start(timer, now, backoff=timer is fired)
        return row.actions

    def next_deadline(self) -> float | None:
        return min(self._deadlines.values(), default=None)

    def handle_timer(self, now: float) -> list[tuple[TxInput, tuple[TxAction, ...]]]:
        """Fire every timer due at ``now``, earliest first."""
        fired: list[tuple[TxInput, tuple[TxAction, ...]]] = []
        while True:
            due = [(at, timer) for timer, at in self._deadlines.items() if at <= now]
            if not due:
                return fired
            _, timer = min(due, key=lambda item: item[0])
            del self._deadlines[timer]
            fired.append((timer.value, self.handle(timer.value, now)))

    def _start(self, timer: Timer, now: float, *, backoff: bool) -> None:
        if timer in RETRANSMIT_TIMERS and self.reliable:
            return
        interval = self._interval(timer, backoff)
        self._intervals[timer] = interval
        self._deadlines[timer] = now + interval

    def _interval(self, timer: Timer, backoff: bool) -> float:
        t = self._timers
        previous = self._intervals.get(timer)
        if timer is Timer.A:
            # §17.1.1.2: A doubles after each retransmission, with no cap (B ends it).
            return 2 * previous if backoff and previous else t.a
        if timer is Timer.E:
            # §17.1.2.2: doubles up to T2 in Trying; T2 flat once Proceeding.
            if self.state is TxState.PROCEEDING and backoff:
                return t.t2
            return min(2 * previous, t.t2) if backoff and previous else t.e
        if timer is Timer.G:
            return min(2 * previous, t.t2) if backoff and previous else t.g
        return {
            Timer.B: t.b,
            Timer.D: t.d(self.reliable),
            Timer.F: t.f,
            Timer.H: t.h,
            Timer.I: t.i(self.reliable),
            Timer.J: t.j(self.reliable),
            Timer.K: t.k(self.reliable),
            Timer.L: t.l,
            Timer.M: t.m,
        }[timer]


def _timer_of(event: TxInput) -> Timer | None:
    try:
        return Timer(event)
    except ValueError:
        return None
