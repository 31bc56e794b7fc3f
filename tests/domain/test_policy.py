"""The escalation planner, case by case: given the alert, its attempts and now, what next."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import pytest

from voipalert.domain.alert import (
    Alert,
    AlertId,
    AlertKind,
    AlertStatus,
    Attempt,
    AttemptId,
    AttemptKey,
    AttemptOutcome,
    AttemptState,
    Position,
    Severity,
)
from voipalert.domain.policy import (
    Action,
    AdvanceStep,
    AwaitCalls,
    CancelCalls,
    CloseUnacknowledged,
    PlaceCall,
    Settled,
    WaitUntil,
    plan,
    step_targets,
)
from voipalert.domain.rota import (
    Contact,
    ContactKind,
    EscalationPolicy,
    Layer,
    Person,
    PersonName,
    PolicyName,
    Rota,
    Schedule,
    ScheduleName,
    ShiftUnit,
    Step,
    Target,
    TargetKind,
    Team,
    TeamName,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ALICE = Person(
    PersonName("alice"),
    "en",
    (Contact(ContactKind.EXTENSION, "201"), Contact(ContactKind.NUMBER, "+33612345678")),
)
BOB = Person(PersonName("bob"), "fr", (Contact(ContactKind.SIP, "sip:bob@pbx"),))
CAROL = Person(PersonName("carol"), "en", (Contact(ContactKind.EXTENSION, "203"),))
ON_CALL = Layer("main", (ALICE.name,), 1, ShiftUnit.WEEKS, date(2026, 1, 5), time(9))
# The "night" schedule has nobody before 2027: a gap.
GAP = Layer("later", (CAROL.name,), 1, ShiftUnit.WEEKS, date(2027, 1, 4), time(9))
POLICY = EscalationPolicy(
    PolicyName("default"),
    (
        Step((Target(TargetKind.SCHEDULE, "primary"),), 300, 30),
        Step((Target(TargetKind.PERSON, "bob"),), 300, 25),
    ),
    repeat_count=1,
    repeat_delay_seconds=60,
)
ROTA = Rota(
    people=(ALICE, BOB, CAROL),
    teams=(Team(TeamName("ops"), (ALICE.name, BOB.name, CAROL.name)),),
    schedules=(
        Schedule(ScheduleName("primary"), "Europe/Paris", (ON_CALL,)),
        Schedule(ScheduleName("night"), "Europe/Paris", (GAP,)),
    ),
    policies=(POLICY,),
)


FIRST_STEP = Position(0, 0, T0)


def alert(
    status: AlertStatus = AlertStatus.TRIGGERED,
    position: Position = FIRST_STEP,
    kind: AlertKind = AlertKind.ESCALATION,
    policy: str | None = "default",
) -> Alert:
    return Alert(
        id=AlertId(7),
        kind=kind,
        status=status,
        severity=Severity.CRITICAL,
        summary="database down",
        source="api",
        dedup_key=None,
        fields={},
        labels={},
        policy=PolicyName(policy) if policy else None,
        team=TeamName("ops"),
        occurrences=1,
        created_at=T0,
        last_seen_at=T0,
        position=position,
    )


_ids = iter(range(1, 10_000))


def attempt(
    person: Person,
    number: int = 1,
    state: AttemptState = AttemptState.DONE,
    outcome: AttemptOutcome | None = AttemptOutcome.NO_ANSWER,
    step: int = 0,
    repeat: int = 0,
    contact_index: int = 0,
) -> Attempt:
    live = state in (AttemptState.PENDING, AttemptState.IN_FLIGHT)
    return Attempt(
        id=AttemptId(next(_ids)),
        key=AttemptKey(AlertId(7), repeat, step, person.name, number),
        contact_index=contact_index,
        contact=person.contacts[contact_index],
        language=person.language,
        ring_timeout_seconds=30,
        state=state,
        created_at=T0,
        outcome=None if live or state is AttemptState.INTERRUPTED else outcome,
    )


def call(
    person: Person,
    number: int = 1,
    contact: int = 0,
    step: int = 0,
    repeat: int = 0,
    ring: int = 30,
) -> PlaceCall:
    return PlaceCall(
        AttemptKey(AlertId(7), repeat, step, person.name, number),
        person,
        contact,
        person.contacts[contact],
        ring,
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


IN_FLIGHT = AttemptState.IN_FLIGHT
Out = AttemptOutcome

CASES: list[tuple[str, Alert, list[Attempt], float, list[Action]]] = [
    (
        "new alert: call the on-call person's first contact",
        alert(),
        [],
        0,
        [call(ALICE), WaitUntil(at(300))],
    ),
    (
        "call in flight: wait for it or the step timeout",
        alert(),
        [attempt(ALICE, state=IN_FLIGHT)],
        10,
        [WaitUntil(at(300))],
    ),
    (
        "intent committed, not dialled: wait",
        alert(),
        [attempt(ALICE, state=AttemptState.PENDING)],
        1,
        [WaitUntil(at(300))],
    ),
    (
        "no answer: the same person's next contact at once",
        alert(),
        [attempt(ALICE)],
        31,
        [call(ALICE, 2, contact=1), WaitUntil(at(300))],
    ),
    (
        "answered without a key is no ack: next contact",
        alert(),
        [attempt(ALICE, outcome=Out.ANSWERED_NO_ACK)],
        50,
        [call(ALICE, 2, contact=1), WaitUntil(at(300))],
    ),
    (
        "busy on the last contact: next step at once",
        alert(),
        [attempt(ALICE), attempt(ALICE, 2, outcome=Out.BUSY, contact_index=1)],
        40,
        [
            AdvanceStep(Position(0, 1, at(40)), "no acknowledgement"),
            call(BOB, step=1, ring=25),
            WaitUntil(at(340)),
        ],
    ),
    (
        "declined and unreachable move on too",
        alert(),
        [
            attempt(ALICE, outcome=Out.DECLINED),
            attempt(ALICE, 2, outcome=Out.UNREACHABLE, contact_index=1),
        ],
        5,
        [
            AdvanceStep(Position(0, 1, at(5)), "no acknowledgement"),
            call(BOB, step=1, ring=25),
            WaitUntil(at(305)),
        ],
    ),
    (
        "step timeout with the phone still ringing: next step, the call goes on",
        alert(),
        [attempt(ALICE, state=IN_FLIGHT)],
        300,
        [
            AdvanceStep(Position(0, 1, at(300)), "step timed out"),
            call(BOB, step=1, ring=25),
            WaitUntil(at(600)),
        ],
    ),
    (
        "step timeout while a call still waits for a line: cancel it, move on",
        alert(),
        [attempt(ALICE, state=AttemptState.PENDING, number=1)],
        300,
        [
            CancelCalls((), "the step ended before a line was free"),
            AdvanceStep(Position(0, 1, at(300)), "step timed out"),
            call(BOB, step=1, ring=25),
            WaitUntil(at(600)),
        ],
    ),
    (
        "interrupted by a crash: same contact again, new attempt number",
        alert(),
        [attempt(ALICE, state=AttemptState.INTERRUPTED)],
        60,
        [call(ALICE, 2, contact=0), WaitUntil(at(300))],
    ),
    (
        "interrupted twice on one contact: move on",
        alert(),
        [
            attempt(ALICE, state=AttemptState.INTERRUPTED),
            attempt(ALICE, 2, state=AttemptState.INTERRUPTED),
        ],
        60,
        [call(ALICE, 3, contact=1), WaitUntil(at(300))],
    ),
    (
        "last step done: the policy repeats after its delay",
        alert(position=Position(0, 1, at(100))),
        [attempt(BOB, step=1)],
        130,
        [AdvanceStep(Position(1, 0, at(190)), "no acknowledgement"), WaitUntil(at(190))],
    ),
    (
        "repeat pass due: call again under new keys",
        alert(position=Position(1, 0, at(190))),
        [attempt(ALICE), attempt(ALICE, 2, contact_index=1), attempt(BOB, step=1)],
        190,
        [call(ALICE, repeat=1), WaitUntil(at(490))],
    ),
    (
        "every pass done: close unacknowledged",
        alert(position=Position(1, 1, at(400))),
        [attempt(BOB, step=1, repeat=1)],
        420,
        [CloseUnacknowledged("escalation policy exhausted")],
    ),
    (
        "exhausted but a call still rings: wait for it",
        alert(position=Position(1, 1, at(400))),
        [attempt(BOB, step=1, repeat=1, state=IN_FLIGHT)],
        700,
        [AwaitCalls(())],
    ),
    (
        "no policy: nobody to call",
        alert(policy=None),
        [],
        0,
        [CloseUnacknowledged("no escalation policy")],
    ),
]


@pytest.mark.parametrize(
    ("name", "subject", "attempts", "now", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_escalation_plan(
    name: str, subject: Alert, attempts: list[Attempt], now: float, expected: list[Action]
) -> None:
    # The table cannot know attempt ids: AwaitCalls and CancelCalls name the live ones.
    live = tuple(a.id for a in attempts if a.state.is_live)
    expected = [
        replace(e, attempts=live) if isinstance(e, AwaitCalls | CancelCalls) else e
        for e in expected
    ]
    assert list(plan(subject, ROTA, attempts, at(now))) == expected
    # Pure: the same inputs, the same answer.
    assert plan(subject, ROTA, attempts, at(now)) == plan(subject, ROTA, attempts, at(now))


@pytest.mark.parametrize(
    "status", [AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED, AlertStatus.CLOSED_UNACKNOWLEDGED]
)
def test_handled_alert_cancels_live_calls_then_settles(status: AlertStatus) -> None:
    live = [attempt(ALICE, state=IN_FLIGHT), attempt(BOB, step=1, state=AttemptState.PENDING)]
    done = [attempt(ALICE, 3, outcome=Out.ACKNOWLEDGED)]
    assert plan(alert(status), ROTA, live + done, at(10)) == (
        CancelCalls((live[0].id, live[1].id), f"alert {status.value}"),
    )
    assert plan(alert(status), ROTA, done, at(10)) == (Settled(f"alert {status.value}"),)


def test_a_gap_in_the_schedule_moves_to_the_next_step() -> None:
    gap_policy = replace(
        POLICY, steps=(Step((Target(TargetKind.SCHEDULE, "night"),), 300, 30), *POLICY.steps[1:])
    )
    rota = replace(ROTA, policies=(gap_policy,))
    assert plan(alert(), rota, [], at(0)) == (
        AdvanceStep(Position(0, 1, at(0)), "nobody to call"),
        call(BOB, step=1, ring=25),
        WaitUntil(at(300)),
    )


def test_step_targets_resolve_each_person_once_in_order() -> None:
    step = Step(
        (
            Target(TargetKind.SCHEDULE, "primary"),
            Target(TargetKind.TEAM, "ops"),
            Target(TargetKind.PERSON, "bob"),
            Target(TargetKind.SCHEDULE, "night"),
        ),
        300,
        30,
    )
    assert step_targets(step, ROTA, at(0)) == (ALICE, BOB, CAROL)


def test_team_step_calls_everyone_at_once_and_the_first_key_stops_the_rest() -> None:
    team_policy = replace(POLICY, steps=(Step((Target(TargetKind.TEAM, "ops"),), 300, 30),))
    rota = replace(ROTA, policies=(team_policy,))
    assert plan(alert(), rota, [], at(0)) == (
        call(ALICE),
        call(BOB),
        call(CAROL),
        WaitUntil(at(300)),
    )
    ringing = [attempt(ALICE, state=IN_FLIGHT), attempt(CAROL, state=IN_FLIGHT)]
    acked = [*ringing, attempt(BOB, outcome=Out.ACKNOWLEDGED)]
    assert plan(alert(AlertStatus.ACKNOWLEDGED), rota, acked, at(20)) == (
        CancelCalls((ringing[0].id, ringing[1].id), "alert acknowledged"),
    )


def test_step_lost_from_an_edited_policy_restarts_the_pass() -> None:
    actions = plan(alert(position=Position(0, 5, at(0))), ROTA, [], at(10))
    assert actions[0] == AdvanceStep(Position(0, 0, at(10)), "policy changed")
    assert actions[1] == call(ALICE)


MASS = AlertKind.MASS


def test_mass_alert_calls_the_whole_team_at_once() -> None:
    assert plan(alert(kind=MASS, policy=None), ROTA, [], at(0)) == (
        call(ALICE, ring=45),
        call(BOB, ring=45),
        call(CAROL, ring=45),
        AwaitCalls(()),
    )


def test_mass_alert_goes_on_after_a_key_press_and_counts_answered_as_heard() -> None:
    attempts = [
        attempt(ALICE, outcome=Out.ACKNOWLEDGED),
        attempt(BOB, outcome=Out.ANSWERED_NO_ACK),
        attempt(CAROL, state=IN_FLIGHT),
    ]
    acked = alert(AlertStatus.ACKNOWLEDGED, kind=MASS)
    assert plan(acked, ROTA, attempts, at(20)) == (AwaitCalls((attempts[2].id,)),)
    finished = [*attempts[:2], attempt(CAROL, outcome=Out.BUSY)]
    assert plan(acked, ROTA, finished, at(40)) == (Settled("mass alert: everyone called"),)


def test_mass_alert_tries_further_contacts_then_closes_when_nobody_acked() -> None:
    attempts = [attempt(ALICE), attempt(BOB, outcome=Out.BUSY), attempt(CAROL, outcome=Out.FAILED)]
    assert plan(alert(kind=MASS), ROTA, attempts, at(40)) == (
        call(ALICE, 2, contact=1, ring=45),
        AwaitCalls(()),
    )
    attempts.append(attempt(ALICE, 2, contact_index=1))
    assert plan(alert(kind=MASS), ROTA, attempts, at(80)) == (
        CloseUnacknowledged("mass alert: everyone called, nobody acknowledged"),
    )


def test_resolved_mass_alert_cancels_its_calls() -> None:
    live = [attempt(ALICE, state=IN_FLIGHT)]
    assert plan(alert(AlertStatus.RESOLVED, kind=MASS), ROTA, live, at(5)) == (
        CancelCalls((live[0].id,), "alert resolved"),
    )


def test_mass_alert_of_thousands_finds_each_persons_own_attempts() -> None:
    # Attempts are grouped by person once per plan (linear, not people x attempts):
    # every person's next step still comes from their own attempts only.
    people = tuple(
        Person(PersonName(f"p{n:04d}"), "en", (Contact(ContactKind.EXTENSION, f"{n}"),
                                               Contact(ContactKind.NUMBER, f"+3361{n:07d}")))
        for n in range(2000)
    )  # fmt: skip
    rota = Rota(people=people, teams=(Team(TeamName("ops"), tuple(p.name for p in people)),))
    outcomes = (Out.ACKNOWLEDGED, Out.ANSWERED_NO_ACK, Out.NO_ANSWER)
    attempts = [
        attempt(p, state=IN_FLIGHT) if n % 4 == 3 else attempt(p, outcome=outcomes[n % 4])
        for n, p in enumerate(people)
    ]
    actions = plan(alert(kind=MASS, policy=None), rota, attempts, at(60))
    expected_calls = [call(p, 2, contact=1, ring=45) for n, p in enumerate(people) if n % 4 == 2]
    live = tuple(a.id for n, a in enumerate(attempts) if n % 4 == 3)
    assert actions == (*expected_calls, AwaitCalls(live))
