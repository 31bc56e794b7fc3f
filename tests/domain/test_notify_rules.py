"""Per-person notification rules in the planner: every rule once, at its delay, until the
alert is handled."""

from __future__ import annotations

from dataclasses import replace

from tests.domain.test_policy import (
    ROTA,
    alert,
    at,
)
from voipalert.domain.alert import (
    AlertId,
    AlertKind,
    AlertStatus,
    Attempt,
    AttemptId,
    AttemptKey,
    AttemptOutcome,
    AttemptState,
    Position,
)
from voipalert.domain.policy import (
    AdvanceStep,
    CancelCalls,
    PlaceCall,
    WaitUntil,
    plan,
)
from voipalert.domain.rota import (
    Contact,
    ContactKind,
    NotifyMethod,
    NotifyRule,
    Person,
    PersonName,
)

CALL, MESSAGE = NotifyMethod.CALL, NotifyMethod.MESSAGE
DANA = Person(
    PersonName("alice"),  # replaces alice, the schedule's on-call person
    "en",
    (
        Contact(ContactKind.NUMBER, "+33612345678", "mobile"),
        Contact(ContactKind.EXTENSION, "201", "desk"),
    ),
    (NotifyRule(0, CALL, 0), NotifyRule(1, MESSAGE, 0), NotifyRule(0, CALL, 120)),
)
RULED = replace(ROTA, people=(DANA, *ROTA.people[1:]))
_ids = iter(range(1, 10_000))


def made(call: PlaceCall, state: AttemptState, outcome: AttemptOutcome | None) -> Attempt:
    return Attempt(
        id=AttemptId(next(_ids)),
        key=call.key,
        contact_index=call.contact_index,
        contact=call.contact,
        language="en",
        ring_timeout_seconds=call.ring_timeout_seconds,
        state=state,
        created_at=at(0),
        outcome=outcome,
        method=call.method,
        rule=call.rule,
    )


def places(actions: tuple[object, ...]) -> list[tuple[int, NotifyMethod, int | None, str]]:
    return [
        (a.key.number, a.method, a.rule, a.contact.address)
        for a in actions
        if isinstance(a, PlaceCall)
    ]


def test_rules_due_at_once_run_together_and_the_later_one_waits() -> None:
    actions = plan(alert(), RULED, [], at(0))
    assert places(actions) == [
        (1, CALL, 0, "+33612345678"),
        (2, MESSAGE, 1, "201"),
    ]
    assert actions[-1] == WaitUntil(at(120))


def test_a_rule_runs_at_its_delay_even_while_others_are_live() -> None:
    first = [a for a in plan(alert(), RULED, [], at(0)) if isinstance(a, PlaceCall)]
    attempts = [
        made(first[0], AttemptState.IN_FLIGHT, None),
        made(first[1], AttemptState.DONE, AttemptOutcome.ANSWERED_NO_ACK),
    ]
    assert places(plan(alert(), RULED, attempts, at(60))) == []
    later = plan(alert(), RULED, attempts, at(120))
    assert places(later) == [(3, CALL, 2, "+33612345678")]
    assert later[-1] == WaitUntil(at(300))  # the step's timeout


def test_every_rule_ran_without_ack_moves_to_the_next_step() -> None:
    calls = [a for a in plan(alert(), RULED, [], at(0)) if isinstance(a, PlaceCall)]
    calls += [a for a in plan(alert(), RULED, [], at(120)) if isinstance(a, PlaceCall)][2:]
    attempts = [made(c, AttemptState.DONE, AttemptOutcome.NO_ANSWER) for c in calls]
    # The step waits for a reply to the text until its timeout, then moves on.
    assert plan(alert(), RULED, attempts, at(150)) == (WaitUntil(at(300)),)
    actions = plan(alert(), RULED, attempts, at(300))
    assert isinstance(actions[0], AdvanceStep)
    assert actions[0].reason == "no acknowledgement"
    assert actions[0].position.step == 1


def test_an_ack_stops_the_rules_not_yet_due() -> None:
    calls = [a for a in plan(alert(), RULED, [], at(0)) if isinstance(a, PlaceCall)]
    attempts = [
        made(calls[0], AttemptState.DONE, AttemptOutcome.ACKNOWLEDGED),
        made(calls[1], AttemptState.IN_FLIGHT, None),
    ]
    acked = alert(status=AlertStatus.ACKNOWLEDGED)
    actions = plan(acked, RULED, attempts, at(130))
    assert places(actions) == []
    assert actions == (CancelCalls((attempts[1].id,), "alert acknowledged"),)


def test_an_interrupted_rule_is_retried_once_under_a_new_number() -> None:
    calls = [a for a in plan(alert(), RULED, [], at(0)) if isinstance(a, PlaceCall)]
    attempts = [
        made(calls[0], AttemptState.INTERRUPTED, None),
        made(calls[1], AttemptState.DONE, AttemptOutcome.ANSWERED_NO_ACK),
    ]
    assert places(plan(alert(), RULED, attempts, at(10))) == [(3, CALL, 0, "+33612345678")]
    retry = replace(calls[0], key=replace(calls[0].key, number=3))
    attempts.append(made(retry, AttemptState.INTERRUPTED, None))
    assert places(plan(alert(), RULED, attempts, at(20))) == []


def test_a_rule_due_after_the_step_timeout_never_runs_in_that_step() -> None:
    slow = replace(DANA, rules=(NotifyRule(0, CALL, 0), NotifyRule(1, MESSAGE, 600)))
    rota = replace(ROTA, people=(slow, *ROTA.people[1:]))
    calls = [a for a in plan(alert(), rota, [], at(0)) if isinstance(a, PlaceCall)]
    assert len(calls) == 1
    attempts = [made(calls[0], AttemptState.DONE, AttemptOutcome.NO_ANSWER)]
    assert plan(alert(), rota, attempts, at(40)) == (WaitUntil(at(300)),)
    actions = plan(alert(), rota, attempts, at(300))
    assert isinstance(actions[0], AdvanceStep)
    assert not [a for a in actions if isinstance(a, PlaceCall) and a.key.person == "alice"]


def test_without_rules_the_contacts_are_called_in_order_as_before() -> None:
    actions = plan(alert(), ROTA, [], at(0))
    assert places(actions) == [(1, CALL, None, "201")]


def test_mass_alert_runs_each_members_rules_at_their_delays() -> None:
    mass = alert(kind=AlertKind.MASS, position=Position(0, 0, at(0)))
    actions = plan(mass, RULED, [], at(0))
    assert (1, MESSAGE, 1, "201") not in places(actions)  # alice's numbers: 1 call, 2 message
    assert [p for p in places(actions) if p[3] in ("+33612345678", "201")] == [
        (1, CALL, 0, "+33612345678"),
        (2, MESSAGE, 1, "201"),
    ]
    assert actions[-1] == WaitUntil(at(120))


def test_attempt_keys_stay_unique_per_person() -> None:
    key = AttemptKey(AlertId(7), 0, 0, DANA.name, 1)
    calls = [a for a in plan(alert(), RULED, [], at(0)) if isinstance(a, PlaceCall)]
    assert calls[0].key == key
    assert len({c.key for c in calls}) == len(calls)
