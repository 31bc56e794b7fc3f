"""Every row of the four transaction tables, then the timer schedules they produce."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import pytest

from tests.sip import rfc_transactions as rfc
from voipalert.sip.errors import LocalProtocolError
from voipalert.sip.timers import TimerConfig
from voipalert.sip.transaction import (
    NETWORK_INPUTS,
    TABLES,
    TU_INPUTS,
    Timer,
    Transaction,
    TxAction,
    TxInput,
    TxKind,
    TxState,
    response_input,
    tu_response_input,
)

TIMERS = TimerConfig()
ALL_ROWS = [
    (kind, state, event, row)
    for kind, table in TABLES.items()
    for (state, event), row in table.items()
]


class Expected(NamedTuple):
    next: TxState
    actions: tuple[TxAction, ...]
    start: frozenset[Timer]
    stop: frozenset[Timer]


def _expected(spec: str) -> dict[tuple[TxState, TxInput], Expected]:
    """Parse one machine of tests/sip/rfc_transactions.py."""
    rows: dict[tuple[TxState, TxInput], Expected] = {}
    for line in spec.strip().splitlines():
        body = line.split("#", 1)[0]
        where, actions, start, stop = _cells(body)
        state_text, event_text = where
        key = (TxState(state_text), TxInput(event_text))
        assert key not in rows, f"duplicate line {line!r}"
        rows[key] = Expected(
            TxState(actions[0]),
            tuple(TxAction[name] for a in actions[1] if (name := rfc.ACTIONS[a]) is not None),
            frozenset(Timer[t] for t in start),
            frozenset(Timer[t] for t in stop),
        )
    return rows


def _cells(body: str) -> tuple[tuple[str, str], tuple[str, list[str]], list[str], list[str]]:
    state, rest, actions, start, stop = (cell.strip() for cell in body.split("|"))
    event, next_state = (part.strip() for part in rest.split("->"))
    names = [a.strip() for a in actions.split(",") if a.strip()]
    return (state, event), (next_state, names), start.split(), stop.split()


EXPECTED: dict[TxKind, dict[tuple[TxState, TxInput], Expected]] = {
    TxKind.CLIENT_INVITE: _expected(rfc.CLIENT_INVITE),
    TxKind.CLIENT_NON_INVITE: _expected(rfc.CLIENT_NON_INVITE),
    TxKind.SERVER_INVITE: _expected(rfc.SERVER_INVITE),
    TxKind.SERVER_NON_INVITE: _expected(rfc.SERVER_NON_INVITE),
}
EXPECTED_ROWS = [
    (kind, state, event, expected)
    for kind, rows in EXPECTED.items()
    for (state, event), expected in rows.items()
]


@pytest.mark.parametrize("kind", list(TxKind))
def test_the_table_has_exactly_the_rows_of_the_rfc_transcription(kind: TxKind) -> None:
    assert set(TABLES[kind]) == set(EXPECTED[kind])


def at_state(kind: TxKind, state: TxState, reliable: bool = False) -> Transaction:
    tx = Transaction(kind, reliable=reliable, timers=TIMERS, now=0.0)
    tx.state = state
    return tx


@pytest.mark.parametrize(
    ("kind", "state", "event", "expected"),
    EXPECTED_ROWS,
    ids=[f"{k.name}-{s.name}-{e.name}" for k, s, e, _ in EXPECTED_ROWS],
)
def test_every_row(kind: TxKind, state: TxState, event: TxInput, expected: Expected) -> None:
    """Each transition as the RFC figure draws it (tests/sip/rfc_transactions.py), run
    on a live transaction: the table is only what produces the behaviour."""
    tx = at_state(kind, state)
    actions = tx.handle(event, now=10.0)
    assert tx.state is expected.next
    assert actions == expected.actions
    if expected.next is TxState.TERMINATED:
        assert tx.next_deadline() is None
        return
    for timer in expected.start:
        assert timer in tx._deadlines, f"{timer} not started"
        assert tx._deadlines[timer] >= 10.0
    for timer in expected.stop:
        assert timer not in tx._deadlines, f"{timer} still running"


@pytest.mark.parametrize("kind", list(TxKind))
def test_network_and_transport_inputs_never_raise(kind: TxKind) -> None:
    # Rule 2: every state accepts every network input (absorbed where it has no row).
    for state in TxState:
        for event in NETWORK_INPUTS | {TxInput.TRANSPORT_ERROR}:
            tx = at_state(kind, state)
            tx.handle(event, now=1.0)


@pytest.mark.parametrize("kind", [TxKind.SERVER_INVITE, TxKind.SERVER_NON_INVITE])
def test_tu_sending_after_completion_is_a_local_error(kind: TxKind) -> None:
    tx = at_state(kind, TxState.COMPLETED)
    with pytest.raises(LocalProtocolError, match="can't handle TU sends 2xx"):
        tx.handle(TxInput.SEND_SUCCESS, now=1.0)


def test_every_state_of_each_table_has_rows_for_its_responses() -> None:
    # A client transaction answers 1xx/2xx/final in every live state; a server one
    # absorbs retransmitted requests in every live state.
    for kind, table in TABLES.items():
        states = {s for s, _ in table}
        wanted = (
            {TxInput.PROVISIONAL, TxInput.SUCCESS, TxInput.FAILURE}
            if kind in (TxKind.CLIENT_INVITE, TxKind.CLIENT_NON_INVITE)
            else {TxInput.REQUEST, TxInput.ACK}
        )
        for state in states:
            missing = {e for e in wanted if (state, e) not in table}
            assert not missing, f"{kind} {state} lacks {missing}"


def test_status_classification() -> None:
    assert response_input(100) is TxInput.PROVISIONAL
    assert response_input(183) is TxInput.PROVISIONAL
    assert response_input(200) is TxInput.SUCCESS
    assert response_input(299) is TxInput.SUCCESS
    assert response_input(302) is TxInput.FAILURE
    assert response_input(699) is TxInput.FAILURE
    assert tu_response_input(486) is TxInput.SEND_FAILURE
    assert tu_response_input(180) is TxInput.SEND_PROVISIONAL
    assert not (TU_INPUTS & NETWORK_INPUTS)


def run_timers(tx: Transaction, until: float) -> list[tuple[float, TxInput, tuple[TxAction, ...]]]:
    """Advance time deadline by deadline, as the asyncio adapter would."""
    fired = []
    while (deadline := tx.next_deadline()) is not None and deadline <= until:
        for event, actions in tx.handle_timer(deadline):
            fired.append((deadline, event, actions))
    return fired


def test_invite_over_udp_retransmits_then_times_out_with_timer_b() -> None:
    tx = Transaction(TxKind.CLIENT_INVITE, reliable=False, timers=TIMERS, now=0.0)
    fired = run_timers(tx, until=100.0)
    resend_times = [t for t, e, _ in fired if e is TxInput.TIMER_A]
    # §17.1.1.2: T1, then doubling: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s after sending.
    assert resend_times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert fired[-1] == (32.0, TxInput.TIMER_B, (TxAction.TIMEOUT,))
    assert tx.terminated


def test_invite_over_tcp_never_retransmits() -> None:
    tx = Transaction(TxKind.CLIENT_INVITE, reliable=True, timers=TIMERS, now=0.0)
    fired = run_timers(tx, until=100.0)
    assert fired == [(32.0, TxInput.TIMER_B, (TxAction.TIMEOUT,))]


def test_provisional_stops_invite_retransmission_and_timer_b() -> None:
    tx = Transaction(TxKind.CLIENT_INVITE, reliable=False, timers=TIMERS, now=0.0)
    run_timers(tx, until=0.6)
    assert tx.handle(TxInput.PROVISIONAL, 0.7) == (TxAction.PASS_UP,)
    assert tx.next_deadline() is None  # rings until the TU sends CANCEL
    assert run_timers(tx, until=1000.0) == []


def test_non_2xx_final_is_acked_again_on_each_retransmission_until_timer_d() -> None:
    tx = Transaction(TxKind.CLIENT_INVITE, reliable=False, timers=TIMERS, now=0.0)
    assert tx.handle(TxInput.FAILURE, 1.0) == (TxAction.SEND_ACK, TxAction.PASS_UP)
    assert tx.handle(TxInput.FAILURE, 2.0) == (TxAction.SEND_ACK,)
    assert tx.next_deadline() == 33.0  # Timer D: 32 s on UDP
    run_timers(tx, until=40.0)
    assert tx.terminated
    tcp = Transaction(TxKind.CLIENT_INVITE, reliable=True, timers=TIMERS, now=0.0)
    tcp.handle(TxInput.FAILURE, 1.0)
    assert tcp.next_deadline() == 1.0  # Timer D: zero on TCP


def test_every_2xx_retransmission_goes_up_during_timer_m() -> None:
    tx = Transaction(TxKind.CLIENT_INVITE, reliable=False, timers=TIMERS, now=0.0)
    assert tx.handle(TxInput.SUCCESS, 1.0) == (TxAction.PASS_UP,)
    assert tx.handle(TxInput.SUCCESS, 1.5) == (TxAction.PASS_UP,)
    assert tx.handle(TxInput.SUCCESS, 2.5) == (TxAction.PASS_UP,)
    assert tx.next_deadline() == 33.0  # Timer M = 64 T1
    run_timers(tx, until=40.0)
    assert tx.terminated
    assert tx.handle(TxInput.SUCCESS, 41.0) == ()


def test_non_invite_over_udp_backs_off_to_t2_then_times_out() -> None:
    tx = Transaction(TxKind.CLIENT_NON_INVITE, reliable=False, timers=TIMERS, now=0.0)
    fired = run_timers(tx, until=100.0)
    resend = [t for t, e, _ in fired if e is TxInput.TIMER_E]
    # §17.1.2.2: 0.5, 1, 2, 4, 4, 4 ... s apart.
    assert resend[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert all(b - a == 4.0 for a, b in itertools.pairwise(resend[3:]))
    assert fired[-1] == (32.0, TxInput.TIMER_F, (TxAction.TIMEOUT,))


def test_non_invite_proceeding_retransmits_every_t2() -> None:
    tx = Transaction(TxKind.CLIENT_NON_INVITE, reliable=False, timers=TIMERS, now=0.0)
    run_timers(tx, until=0.5)  # first retransmission at 0.5, next due at 1.5
    tx.handle(TxInput.PROVISIONAL, 0.6)
    fired = run_timers(tx, until=12.0)
    assert [t for t, e, _ in fired if e is TxInput.TIMER_E] == [1.5, 5.5, 9.5]


def test_non_invite_completed_absorbs_for_t4_on_udp_only() -> None:
    udp = Transaction(TxKind.CLIENT_NON_INVITE, reliable=False, timers=TIMERS, now=0.0)
    assert udp.handle(TxInput.SUCCESS, 1.0) == (TxAction.PASS_UP,)
    assert udp.handle(TxInput.SUCCESS, 1.2) == ()
    assert udp.next_deadline() == 6.0  # Timer K = T4
    tcp = Transaction(TxKind.CLIENT_NON_INVITE, reliable=True, timers=TIMERS, now=0.0)
    assert tcp.next_deadline() == 32.0  # only Timer F: no retransmission on TCP
    tcp.handle(TxInput.SUCCESS, 1.0)
    assert tcp.next_deadline() == 1.0


def test_server_invite_failure_retransmits_until_ack() -> None:
    tx = Transaction(TxKind.SERVER_INVITE, reliable=False, timers=TIMERS, now=0.0)
    assert tx.handle(TxInput.SEND_FAILURE, 0.0) == (TxAction.SEND_RESPONSE,)
    fired = run_timers(tx, until=8.0)
    # Timer G: 0.5, then doubling up to T2.
    assert [t for t, e, _ in fired if e is TxInput.TIMER_G] == [0.5, 1.5, 3.5, 7.5]
    assert tx.handle(TxInput.REQUEST, 8.1) == (TxAction.SEND_RESPONSE,)
    assert tx.handle(TxInput.ACK, 8.2) == ()
    assert tx.state is TxState.CONFIRMED
    assert tx.handle(TxInput.ACK, 8.3) == ()  # absorbed
    run_timers(tx, until=20.0)  # Timer I = T4
    assert tx.terminated


def test_server_invite_without_ack_times_out_with_timer_h() -> None:
    tx = Transaction(TxKind.SERVER_INVITE, reliable=True, timers=TIMERS, now=0.0)
    tx.handle(TxInput.SEND_FAILURE, 0.0)
    fired = run_timers(tx, until=100.0)
    assert fired == [(32.0, TxInput.TIMER_H, (TxAction.TIMEOUT,))]


def test_server_non_invite_resends_final_on_retransmitted_request() -> None:
    tx = Transaction(TxKind.SERVER_NON_INVITE, reliable=False, timers=TIMERS, now=0.0)
    assert tx.handle(TxInput.REQUEST, 0.1) == ()  # nothing sent yet: absorbed
    assert tx.handle(TxInput.SEND_SUCCESS, 0.2) == (TxAction.SEND_RESPONSE,)
    assert tx.handle(TxInput.REQUEST, 0.3) == (TxAction.SEND_RESPONSE,)
    assert tx.next_deadline() == pytest.approx(32.2)  # Timer J = 64 T1 on UDP
    tcp = Transaction(TxKind.SERVER_NON_INVITE, reliable=True, timers=TIMERS, now=0.0)
    tcp.handle(TxInput.SEND_SUCCESS, 0.2)
    assert tcp.next_deadline() == 0.2


def test_timers_fire_late_and_all_due_ones_are_handled() -> None:
    # Pitfall 1: the adapter's timer may fire late; everything due is processed.
    tx = Transaction(TxKind.CLIENT_INVITE, reliable=False, timers=TIMERS, now=0.0)
    fired = tx.handle_timer(40.0)
    assert [e for e, _ in fired] == [TxInput.TIMER_A, TxInput.TIMER_B]
    assert tx.terminated


def test_timer_config_validation() -> None:
    assert TimerConfig(t1=0.1).b == pytest.approx(6.4)
    with pytest.raises(ValueError, match="T1"):
        TimerConfig(t1=5.0, t2=4.0)
    assert Timer.A.value is TxInput.TIMER_A
