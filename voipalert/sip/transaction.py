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


S = TxState
I = TxInput  # noqa: E741
A = TxAction
T = Timer
Table = Mapping[tuple[TxState, TxInput], Row]

# RFC 3261 §17.1.1.2 with RFC 6026 §7.2 (Figure 5 of RFC 6026).
CLIENT_INVITE: Final[Table] = {
    (S.CALLING, I.TIMER_A): Row(S.CALLING, (A.SEND_REQUEST,), start=(T.A,)),
    (S.CALLING, I.TIMER_B): Row(S.TERMINATED, (A.TIMEOUT,)),
    (S.CALLING, I.PROVISIONAL): Row(S.PROCEEDING, (A.PASS_UP,), stop=(T.A, T.B)),
    (S.CALLING, I.SUCCESS): Row(S.ACCEPTED, (A.PASS_UP,), start=(T.M,), stop=(T.A, T.B)),
    (S.CALLING, I.FAILURE): Row(
        S.COMPLETED, (A.SEND_ACK, A.PASS_UP), start=(T.D,), stop=(T.A, T.B)
    ),
    (S.CALLING, I.TRANSPORT_ERROR): Row(S.TERMINATED, (A.TRANSPORT_FAILED,)),
    (S.PROCEEDING, I.PROVISIONAL): Row(S.PROCEEDING, (A.PASS_UP,)),
    (S.PROCEEDING, I.SUCCESS): Row(S.ACCEPTED, (A.PASS_UP,), start=(T.M,)),
    (S.PROCEEDING, I.FAILURE): Row(S.COMPLETED, (A.SEND_ACK, A.PASS_UP), start=(T.D,)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): Row(S.TERMINATED, (A.TRANSPORT_FAILED,)),
    # RFC 6026 §7.2: every 2xx retransmission (or a 2xx from another fork) goes up, so
    # the TU ACKs each one (§13.2.2.4); a late 1xx or non-2xx means nothing any more.
    (S.ACCEPTED, I.SUCCESS): Row(S.ACCEPTED, (A.PASS_UP,)),
    (S.ACCEPTED, I.PROVISIONAL): Row(S.ACCEPTED),
    (S.ACCEPTED, I.FAILURE): Row(S.ACCEPTED),
    (S.ACCEPTED, I.TRANSPORT_ERROR): Row(S.ACCEPTED),
    (S.ACCEPTED, I.TIMER_M): Row(S.TERMINATED),
    # §17.1.1.2: a retransmitted final response is ACKed again, not passed up.
    (S.COMPLETED, I.FAILURE): Row(S.COMPLETED, (A.SEND_ACK,)),
    (S.COMPLETED, I.PROVISIONAL): Row(S.COMPLETED),
    (S.COMPLETED, I.SUCCESS): Row(S.COMPLETED),
    (S.COMPLETED, I.TRANSPORT_ERROR): Row(S.TERMINATED),
    (S.COMPLETED, I.TIMER_D): Row(S.TERMINATED),
}

# RFC 3261 §17.1.2.2 (Figure 6).
CLIENT_NON_INVITE: Final[Table] = {
    (S.TRYING, I.TIMER_E): Row(S.TRYING, (A.SEND_REQUEST,), start=(T.E,)),
    (S.TRYING, I.TIMER_F): Row(S.TERMINATED, (A.TIMEOUT,)),
    (S.TRYING, I.PROVISIONAL): Row(S.PROCEEDING, (A.PASS_UP,)),
    (S.TRYING, I.SUCCESS): Row(S.COMPLETED, (A.PASS_UP,), start=(T.K,), stop=(T.E, T.F)),
    (S.TRYING, I.FAILURE): Row(S.COMPLETED, (A.PASS_UP,), start=(T.K,), stop=(T.E, T.F)),
    (S.TRYING, I.TRANSPORT_ERROR): Row(S.TERMINATED, (A.TRANSPORT_FAILED,)),
    # In Proceeding Timer E keeps retransmitting, every T2 (§17.1.2.2).
    (S.PROCEEDING, I.TIMER_E): Row(S.PROCEEDING, (A.SEND_REQUEST,), start=(T.E,)),
    (S.PROCEEDING, I.TIMER_F): Row(S.TERMINATED, (A.TIMEOUT,)),
    (S.PROCEEDING, I.PROVISIONAL): Row(S.PROCEEDING, (A.PASS_UP,)),
    (S.PROCEEDING, I.SUCCESS): Row(S.COMPLETED, (A.PASS_UP,), start=(T.K,), stop=(T.E, T.F)),
    (S.PROCEEDING, I.FAILURE): Row(S.COMPLETED, (A.PASS_UP,), start=(T.K,), stop=(T.E, T.F)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): Row(S.TERMINATED, (A.TRANSPORT_FAILED,)),
    (S.COMPLETED, I.PROVISIONAL): Row(S.COMPLETED),
    (S.COMPLETED, I.SUCCESS): Row(S.COMPLETED),
    (S.COMPLETED, I.FAILURE): Row(S.COMPLETED),
    (S.COMPLETED, I.TRANSPORT_ERROR): Row(S.COMPLETED),
    (S.COMPLETED, I.TIMER_K): Row(S.TERMINATED),
}

# RFC 3261 §17.2.1 with RFC 6026 §7.1 (Figure 7 of RFC 6026). We answer at once (re-INVITE
# refresh, a refusal of an unsolicited INVITE) or, for a call-in, 180 at once and the 2xx
# once the media is ready (docs/call-in.md), so the TU sends no 100.
SERVER_INVITE: Final[Table] = {
    (S.PROCEEDING, I.REQUEST): Row(S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.ACK): Row(S.PROCEEDING),
    (S.PROCEEDING, I.SEND_PROVISIONAL): Row(S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.SEND_SUCCESS): Row(S.ACCEPTED, (A.SEND_RESPONSE,), start=(T.L,)),
    (S.PROCEEDING, I.SEND_FAILURE): Row(S.COMPLETED, (A.SEND_RESPONSE,), start=(T.G, T.H)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): Row(S.TERMINATED, (A.TRANSPORT_FAILED,)),
    (S.COMPLETED, I.REQUEST): Row(S.COMPLETED, (A.SEND_RESPONSE,)),
    (S.COMPLETED, I.ACK): Row(S.CONFIRMED, start=(T.I,), stop=(T.G, T.H)),
    (S.COMPLETED, I.TIMER_G): Row(S.COMPLETED, (A.SEND_RESPONSE,), start=(T.G,)),
    (S.COMPLETED, I.TIMER_H): Row(S.TERMINATED, (A.TIMEOUT,)),
    (S.COMPLETED, I.TRANSPORT_ERROR): Row(S.TERMINATED, (A.TRANSPORT_FAILED,)),
    (S.CONFIRMED, I.REQUEST): Row(S.CONFIRMED),
    (S.CONFIRMED, I.ACK): Row(S.CONFIRMED),
    (S.CONFIRMED, I.TRANSPORT_ERROR): Row(S.CONFIRMED),
    (S.CONFIRMED, I.TIMER_I): Row(S.TERMINATED),
    # RFC 6026 §8.7: retransmitted INVITEs are absorbed; the 2xx is retransmitted by the
    # TU (§13.3.1.4) through SEND_SUCCESS; the ACK of a 2xx belongs to the TU.
    (S.ACCEPTED, I.REQUEST): Row(S.ACCEPTED),
    (S.ACCEPTED, I.ACK): Row(S.ACCEPTED, (A.PASS_UP,)),
    (S.ACCEPTED, I.SEND_SUCCESS): Row(S.ACCEPTED, (A.SEND_RESPONSE,)),
    (S.ACCEPTED, I.TRANSPORT_ERROR): Row(S.ACCEPTED, (A.TRANSPORT_FAILED,)),
    (S.ACCEPTED, I.TIMER_L): Row(S.TERMINATED),
}

# RFC 3261 §17.2.2 (Figure 8).
SERVER_NON_INVITE: Final[Table] = {
    (S.TRYING, I.REQUEST): Row(S.TRYING),
    (S.TRYING, I.ACK): Row(S.TRYING),
    (S.TRYING, I.SEND_PROVISIONAL): Row(S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.TRYING, I.SEND_SUCCESS): Row(S.COMPLETED, (A.SEND_RESPONSE,), start=(T.J,)),
    (S.TRYING, I.SEND_FAILURE): Row(S.COMPLETED, (A.SEND_RESPONSE,), start=(T.J,)),
    (S.TRYING, I.TRANSPORT_ERROR): Row(S.TERMINATED, (A.TRANSPORT_FAILED,)),
    (S.PROCEEDING, I.REQUEST): Row(S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.ACK): Row(S.PROCEEDING),
    (S.PROCEEDING, I.SEND_PROVISIONAL): Row(S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.SEND_SUCCESS): Row(S.COMPLETED, (A.SEND_RESPONSE,), start=(T.J,)),
    (S.PROCEEDING, I.SEND_FAILURE): Row(S.COMPLETED, (A.SEND_RESPONSE,), start=(T.J,)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): Row(S.TERMINATED, (A.TRANSPORT_FAILED,)),
    (S.COMPLETED, I.REQUEST): Row(S.COMPLETED, (A.SEND_RESPONSE,)),
    (S.COMPLETED, I.ACK): Row(S.COMPLETED),
    (S.COMPLETED, I.TRANSPORT_ERROR): Row(S.TERMINATED, (A.TRANSPORT_FAILED,)),
    (S.COMPLETED, I.TIMER_J): Row(S.TERMINATED),
}

del S, I, A, T  # short names for the tables above only

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
