"""Who is on call in a schedule at an instant: rotations, layers, overrides, gaps.

Rules (the ones a team lead asks about before a daylight-saving night):

- Hand-offs are wall-clock times in the schedule's IANA zone. When a hand-off's wall time
  does not exist (the spring-forward gap, e.g. 02:30 on 2026-03-29 in Europe/Paris), the
  hand-off happens at the first instant whose wall time is at or after it, i.e. when the gap
  ends (03:00 local). When it exists twice (fall-back, 02:30 on 2026-10-25 in Paris), the
  hand-off happens at its first occurrence. ``resolve_local`` implements both.
- A shift of N *hours* lasts N real elapsed hours from the first hand-off, so across a DST
  change its local hand-off time moves by the change. A shift of N *days* or *weeks* counts
  calendar days in the zone: each hand-off is at the same wall time, so the shift that spans
  the change lasts 23 or 25 real hours.
- A higher layer wins wherever it has someone (its rotation has started and the instant is
  inside one of its windows, if it has windows).
- An override without ``replaces`` takes the whole schedule over for its period (when several
  overlap, the one that started last wins, then the later one in the rota); an override with
  ``replaces`` swaps that person out only while they would have been on call.
- A schedule with a live source: the source's shifts form a layer above all the others
  (``layer == "source"``), inside the window the source's copy covers; when two of its
  shifts overlap, the one that started last wins (a swap entered as a short event on top
  of a weekly one). Outside that window, or where the source has nobody, the layers answer.
- Nobody from any layer and no override: a gap, reported as ``OnCall.person is None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from voipalert.domain.rota import (
    Feed,
    Layer,
    Override,
    PersonName,
    Schedule,
    ShiftUnit,
    Window,
)

SOURCE_LAYER = "source"


@dataclass(frozen=True, slots=True)
class OnCall:
    """The answer for one schedule at ``at``. ``since``/``until`` bound the winning shift or
    override (a window or a higher layer may still cut a shift short)."""

    person: PersonName | None
    layer: str | None = None
    override: Override | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def gap(self) -> bool:
        return self.person is None


@dataclass(frozen=True, slots=True)
class Shift:
    index: int
    person: PersonName
    start: datetime
    end: datetime


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def resolve_local(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall time ``wall`` on ``day`` in ``zone``: the first occurrence
    when it is ambiguous, the end of the gap when it does not exist."""
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(first, zone) == naive:
        return first
    # In a gap, fold=0 and fold=1 map to instants on either side of the transition; the
    # wall clock is monotonic between them, so bisect for the first instant at or after.
    other = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo, hi = sorted((int(first.timestamp()), int(other.timestamp())))
    while lo < hi:
        mid = (lo + hi) // 2
        if _wall(datetime.fromtimestamp(mid, UTC), zone) >= naive:
            hi = mid
        else:
            lo = mid + 1
    return datetime.fromtimestamp(lo, UTC)


def _handoff(layer: Layer, zone: ZoneInfo, index: int) -> datetime:
    if layer.shift_unit is ShiftUnit.HOURS:
        anchor = resolve_local(layer.start_date, layer.handoff, zone)
        return anchor + timedelta(hours=layer.shift_length * index)
    days = layer.shift_length * (7 if layer.shift_unit is ShiftUnit.WEEKS else 1)
    return resolve_local(layer.start_date + timedelta(days=days * index), layer.handoff, zone)


def shift_at(layer: Layer, zone: ZoneInfo, at: datetime) -> Shift | None:
    """The layer's shift containing ``at``, or None before the rotation starts."""
    if not layer.members or at < _handoff(layer, zone, 0):
        return None
    if layer.shift_unit is ShiftUnit.HOURS:
        index = (at - _handoff(layer, zone, 0)) // timedelta(hours=layer.shift_length)
    else:
        days = layer.shift_length * (7 if layer.shift_unit is ShiftUnit.WEEKS else 1)
        index = max(0, (at.astimezone(zone).date() - layer.start_date).days // days)
        # The calendar guess is off by one around a hand-off; the instants decide.
        while _handoff(layer, zone, index + 1) <= at:
            index += 1
        while index > 0 and _handoff(layer, zone, index) > at:
            index -= 1
    return Shift(
        index=index,
        person=layer.members[index % len(layer.members)],
        start=_handoff(layer, zone, index),
        end=_handoff(layer, zone, index + 1),
    )


def in_windows(windows: Sequence[Window], zone: ZoneInfo, at: datetime) -> bool:
    """Whether ``at`` falls in one of the weekly windows (no windows: always)."""
    if not windows:
        return True
    local = _wall(at, zone)
    clock, weekday = local.time(), local.isoweekday()
    yesterday = 7 if weekday == 1 else weekday - 1
    for window in windows:
        if window.start < window.end:
            if weekday in window.days and window.start <= clock < window.end:
                return True
            continue
        if (weekday in window.days and clock >= window.start) or (
            yesterday in window.days and clock < window.end
        ):
            return True
    return False


def feed_at(feed: Feed, at: datetime) -> OnCall | None:
    """The source's shift at ``at`` (the latest-starting one when they overlap), or None
    when the source has nobody then or its copy does not cover ``at``."""
    if not feed.covers(at):
        return None
    best = None
    for shift in feed.shifts:
        if shift.start > at:
            break  # sorted by start
        if (shift.end is None or at < shift.end) and (best is None or shift.start >= best.start):
            best = shift
    if best is None:
        return None
    return OnCall(person=best.person, layer=SOURCE_LAYER, since=best.start, until=best.end)


def _from_layers(schedule: Schedule, zone: ZoneInfo, at: datetime) -> OnCall:
    if schedule.feed is not None:
        from_feed = feed_at(schedule.feed, at)
        if from_feed is not None:
            return from_feed
    for layer in reversed(schedule.layers):
        shift = shift_at(layer, zone, at)
        if shift is not None and in_windows(layer.windows, zone, at):
            return OnCall(person=shift.person, layer=layer.name, since=shift.start, until=shift.end)
    return OnCall(person=None)


def who_is_on_call(schedule: Schedule, overrides: Sequence[Override], at: datetime) -> OnCall:
    """Who ``schedule`` says is on call at the aware instant ``at``."""
    if at.tzinfo is None:
        raise ValueError("who_is_on_call needs an aware datetime")
    zone = ZoneInfo(schedule.time_zone)
    active = [o for o in overrides if o.schedule == schedule.name and o.start <= at < o.end]
    takeovers = [o for o in active if o.replaces is None]
    if takeovers:
        # max() keeps the first of equal keys; reversing makes "later in the rota" win ties.
        chosen = max(reversed(takeovers), key=lambda o: o.start)
        return OnCall(person=chosen.person, override=chosen, since=chosen.start, until=chosen.end)
    base = _from_layers(schedule, zone, at)
    for override in active:
        if override.replaces == base.person:
            return OnCall(
                person=override.person,
                layer=base.layer,
                override=override,
                since=max(override.start, base.since) if base.since else override.start,
                until=min(override.end, base.until) if base.until else override.end,
            )
    return base
