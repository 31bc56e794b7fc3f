"""The escalation planner: from stored state and ``now`` to what the engine does next.

``plan`` is pure and level-triggered: it looks only at the alert, the rota, the attempts so
far and the time, so running it twice gives the same answer, and running it after a crash
picks up where the dead process stopped. Rules:

- Only a key press acknowledges. An alert that is acknowledged, resolved or closed gets its
  live calls cancelled, then nothing more (a mass alert keeps calling after a key press;
  only a resolve stops it).
- A step calls each of its people (schedule on-call person resolved when the step starts,
  named person, every team member; each person once) on their contacts in order: a call that
  ends without a key press (answered without a key, no answer after the ring timeout, busy,
  declined, unreachable, failed) moves to that person's next contact at once.
- The step ends when every one of its people has run out of contacts, or when its timeout
  passes (calls still in flight go on and may still acknowledge; calls still waiting for a
  free line are cancelled). Then the next step starts at
  once; after the last step the policy repeats ``repeat_count`` times, each pass starting
  ``repeat_delay_seconds`` later; after that the alert is closed unacknowledged (once its last
  calls have ended).
- A person with notification rules (``Person.rules``) is not called contact after contact:
  each rule (a contact, a method, a delay) runs once, at its delay after the step started,
  until the alert is acknowledged or resolved; such a step lasts until its timeout (a text
  is answered by a reply, later), and a rule due after the timeout does not run in it.
  Only a key press (or a reply to a text) acknowledges.
- An attempt interrupted by a crash is retried on the same contact under a new attempt number,
  once; a second interruption on that contact moves on. No attempt key is ever reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from voipalert.domain.alert import (
    Alert,
    AlertKind,
    AlertStatus,
    Attempt,
    AttemptId,
    AttemptKey,
    AttemptOutcome,
    AttemptState,
    Position,
)
from voipalert.domain.oncall import who_is_on_call
from voipalert.domain.rota import (
    CALL_CONTACT_KINDS,
    Contact,
    EscalationPolicy,
    NotifyMethod,
    Person,
    Rota,
    Step,
    TargetKind,
)

MAX_INTERRUPTED_RETRIES: Final = 1
DEFAULT_MASS_RING_TIMEOUT_SECONDS: Final = 45


@dataclass(frozen=True, slots=True)
class PlaceCall:
    key: AttemptKey
    person: Person
    contact_index: int
    contact: Contact
    ring_timeout_seconds: int
    method: NotifyMethod = NotifyMethod.CALL
    rule: int | None = None


@dataclass(frozen=True, slots=True)
class CancelCalls:
    attempts: tuple[AttemptId, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class AdvanceStep:
    position: Position
    reason: str


@dataclass(frozen=True, slots=True)
class WaitUntil:
    at: datetime


@dataclass(frozen=True, slots=True)
class AwaitCalls:
    """Nothing to do until one of these live calls ends."""

    attempts: tuple[AttemptId, ...]


@dataclass(frozen=True, slots=True)
class CloseUnacknowledged:
    reason: str


@dataclass(frozen=True, slots=True)
class Settled:
    """Nothing left to do for this alert, ever."""

    reason: str


Action = (
    PlaceCall | CancelCalls | AdvanceStep | WaitUntil | AwaitCalls | CloseUnacknowledged | Settled
)


@dataclass(frozen=True, slots=True)
class _Progress:
    live: bool = False
    acknowledged: bool = False
    next_contact: int | None = None  # None with live False: this person is finished
    next_number: int = 1


def step_targets(step: Step, rota: Rota, at: datetime) -> tuple[Person, ...]:
    """The people a step calls if it starts at ``at``, each once, in target order."""
    names: list[str] = []
    for target in step.targets:
        if target.kind is TargetKind.SCHEDULE:
            schedule = rota.schedule(target.name)
            if schedule is not None:
                on_call = who_is_on_call(schedule, rota.overrides_for(schedule.name), at)
                names.extend([on_call.person] if on_call.person else [])
        elif target.kind is TargetKind.PERSON:
            names.append(target.name)
        else:
            team = rota.team(target.name)
            names.extend(team.members if team else ())
    people = (rota.person(name) for name in dict.fromkeys(names))
    return tuple(p for p in people if p is not None)


def _progress(person: Person, attempts: Sequence[Attempt], *, answered_finishes: bool) -> _Progress:
    mine = sorted((a for a in attempts if a.key.person == person.name), key=lambda a: a.key.number)
    if any(a.state.is_live for a in mine):
        return _Progress(live=True)
    heard = {AttemptOutcome.ACKNOWLEDGED}
    if answered_finishes:
        heard.add(AttemptOutcome.ANSWERED_NO_ACK)
    if any(a.outcome is AttemptOutcome.ACKNOWLEDGED for a in mine):
        return _Progress(acknowledged=True)
    if any(a.outcome in heard for a in mine):
        return _Progress()
    if not mine:
        return _Progress(next_contact=_callable(person, 0))
    last = mine[-1]
    index = last.contact_index + 1
    if last.state is AttemptState.INTERRUPTED:
        tries = sum(
            1
            for a in mine
            if a.state is AttemptState.INTERRUPTED and a.contact_index == last.contact_index
        )
        if tries <= MAX_INTERRUPTED_RETRIES:
            index = last.contact_index
    found = index if index == last.contact_index else _callable(person, index)
    if found is None or found >= len(person.contacts):
        return _Progress()
    return _Progress(next_contact=found, next_number=last.key.number + 1)


def _callable(person: Person, start: int) -> int | None:
    """The first contact from ``start`` on that a call can reach (not an e-mail address)."""
    for index in range(start, len(person.contacts)):
        if person.contacts[index].kind in CALL_CONTACT_KINDS:
            return index
    return None


@dataclass(slots=True)
class _Calls:
    calls: list[PlaceCall]
    live: list[AttemptId]
    next_due: datetime | None = None  # the earliest notification rule not yet due
    # Someone with rules was notified: the step waits for a reply until its timeout.
    hold: bool = False


def _rule_calls(
    alert: Alert,
    position: Position,
    person: Person,
    mine: Sequence[Attempt],
    ring_timeout_seconds: int,
    now: datetime,
) -> tuple[list[PlaceCall], datetime | None]:
    """A person with notification rules: every rule once, at its delay after the step
    started, each one independent of the others (a rule whose attempt was interrupted by
    a crash is retried once, like a contact)."""
    if any(a.outcome is AttemptOutcome.ACKNOWLEDGED for a in mine):
        return [], None
    number = max((a.key.number for a in mine), default=0) + 1
    calls: list[PlaceCall] = []
    next_due: datetime | None = None
    for index, rule in enumerate(person.rules):
        made = [a for a in mine if a.rule == index]
        if any(a.state.is_live for a in made):
            continue
        interrupted = sum(1 for a in made if a.state is AttemptState.INTERRUPTED)
        if made and (made[-1].state is not AttemptState.INTERRUPTED
                     or interrupted > MAX_INTERRUPTED_RETRIES):  # fmt: skip
            continue
        due = position.since + timedelta(seconds=rule.after_seconds)
        if due > now:
            next_due = due if next_due is None else min(next_due, due)
            continue
        key = AttemptKey(alert.id, position.repeat, position.step, person.name, number)
        number += 1
        contact = person.contacts[rule.contact]
        calls.append(
            PlaceCall(key, person, rule.contact, contact, ring_timeout_seconds, rule.method, index)
        )
    return calls, next_due


def _calls_for(
    alert: Alert,
    position: Position,
    people: Sequence[Person],
    attempts: Sequence[Attempt],
    ring_timeout_seconds: int,
    now: datetime,
    *,
    answered_finishes: bool,
) -> _Calls:
    here = [a for a in attempts if _at(a, position)]
    found = _Calls([], [a.id for a in here if a.state.is_live])
    # Each person's attempts, found once: a mass alert to N people plans after every call
    # that ends, and filtering all attempts per person made each plan O(N^2) (38 ms of
    # event loop at N = 1,000, stalling the calls' audio; docs/capacity.md).
    by_person: dict[str, list[Attempt]] = {}
    for a in here:
        by_person.setdefault(a.key.person, []).append(a)
    for person in people:
        mine = by_person.get(person.name, [])
        if person.rules:
            calls, due = _rule_calls(alert, position, person, mine, ring_timeout_seconds, now)
            found.calls.extend(calls)
            found.hold = True
            if due is not None and (found.next_due is None or due < found.next_due):
                found.next_due = due
            continue
        progress = _progress(person, mine, answered_finishes=answered_finishes)
        if progress.next_contact is None:
            continue
        key = AttemptKey(
            alert.id, position.repeat, position.step, person.name, progress.next_number
        )
        contact = person.contacts[progress.next_contact]
        found.calls.append(
            PlaceCall(key, person, progress.next_contact, contact, ring_timeout_seconds)
        )
    return found


def _at(attempt: Attempt, position: Position) -> bool:
    return (attempt.key.repeat, attempt.key.step) == (position.repeat, position.step)


def _wind_down(alert: Alert, attempts: Sequence[Attempt]) -> tuple[Action, ...]:
    live = tuple(a.id for a in attempts if a.state.is_live)
    if live:
        return (CancelCalls(live, reason=f"alert {alert.status.value}"),)
    return (Settled(reason=f"alert {alert.status.value}"),)


def _next_position(policy: EscalationPolicy, position: Position, now: datetime) -> Position | None:
    if position.step + 1 < len(policy.steps):
        return Position(position.repeat, position.step + 1, now)
    if position.repeat < policy.repeat_count:
        delay = timedelta(seconds=policy.repeat_delay_seconds)
        return Position(position.repeat + 1, 0, now + delay)
    return None


def _plan_escalation(
    alert: Alert, policy: EscalationPolicy, rota: Rota, attempts: Sequence[Attempt], now: datetime
) -> tuple[Action, ...]:
    actions: list[Action] = []
    position = alert.position
    for _ in range(len(policy.steps) * (policy.repeat_count + 1) + 1):
        if position.step >= len(policy.steps):  # the policy lost steps since: start over
            position = Position(position.repeat, 0, now)
            actions.append(AdvanceStep(position, "policy changed"))
        if position.since > now:
            return (*actions, WaitUntil(position.since))
        step = policy.steps[position.step]
        deadline = position.since + timedelta(seconds=step.timeout_seconds)
        people = step_targets(step, rota, position.since)
        found = _calls_for(
            alert,
            position,
            people,
            attempts,
            step.ring_timeout_seconds,
            now,
            answered_finishes=False,
        )
        # A rule due after the step's deadline never runs in this step.
        rule_due = found.next_due if found.next_due and found.next_due < deadline else None
        busy = bool(found.calls or found.live or rule_due)
        if now < deadline and (busy or found.hold):
            wake = min(deadline, rule_due) if rule_due else deadline
            return (*actions, *found.calls, WaitUntil(wake))
        reason = (
            "nobody to call"
            if not people
            else "step timed out"
            if now >= deadline and busy
            else "no acknowledgement"
        )
        # Calls of this step still waiting for a free line are pointless now.
        stale = tuple(
            a.id for a in attempts if _at(a, position) and a.state is AttemptState.PENDING
        )
        if stale:
            actions.append(CancelCalls(stale, "the step ended before a line was free"))
        following = _next_position(policy, position, now)
        if following is None:
            break
        actions.append(AdvanceStep(following, reason))
        position = following
    cancelled = {i for a in actions if isinstance(a, CancelCalls) for i in a.attempts}
    still_live = tuple(a.id for a in attempts if a.state.is_live and a.id not in cancelled)
    if still_live:
        return (*actions, AwaitCalls(still_live))
    return (*actions, CloseUnacknowledged("escalation policy exhausted"))


def _plan_mass(
    alert: Alert,
    rota: Rota,
    attempts: Sequence[Attempt],
    ring_timeout_seconds: int,
    now: datetime,
) -> tuple[Action, ...]:
    team = rota.team(alert.team) if alert.team else None
    members = (rota.person(name) for name in dict.fromkeys(team.members if team else ()))
    people = [p for p in members if p is not None]
    found = _calls_for(
        alert, alert.position, people, attempts, ring_timeout_seconds, now, answered_finishes=True
    )
    if found.next_due is not None:
        return (*found.calls, WaitUntil(found.next_due))
    if found.calls or found.live:
        return (*found.calls, AwaitCalls(tuple(found.live)))
    if alert.status is AlertStatus.ACKNOWLEDGED:
        return (Settled("mass alert: everyone called"),)
    return (CloseUnacknowledged("mass alert: everyone called, nobody acknowledged"),)


def plan(
    alert: Alert,
    rota: Rota,
    attempts: Sequence[Attempt],
    now: datetime,
    *,
    mass_ring_timeout_seconds: int = DEFAULT_MASS_RING_TIMEOUT_SECONDS,
) -> tuple[Action, ...]:
    """What to do next for ``alert`` at ``now``, given every attempt made for it so far.

    Actions come in the order the engine applies them: ``AdvanceStep`` (persist the new
    position), ``PlaceCall`` (commit the intent, then dial), then one of ``WaitUntil``,
    ``AwaitCalls``, ``CloseUnacknowledged``, ``CancelCalls`` or ``Settled``.
    """
    if alert.kind is AlertKind.MASS:
        if alert.status in (AlertStatus.RESOLVED, AlertStatus.CLOSED_UNACKNOWLEDGED):
            return _wind_down(alert, attempts)
        return _plan_mass(alert, rota, attempts, mass_ring_timeout_seconds, now)
    if alert.status is not AlertStatus.TRIGGERED:
        return _wind_down(alert, attempts)
    policy = rota.policy(alert.policy) if alert.policy else None
    if policy is None or not policy.steps:
        return (CloseUnacknowledged("no escalation policy"),)
    return _plan_escalation(alert, policy, rota, attempts, now)
