"""Bodies of the override endpoints (``ingest.overrides_api``), for the handlers and the
OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from pydantic import Field

from voipalert.domain.override_edit import MAX_NOTE_CHARS, MAX_TIME_CHARS, OverrideRecord
from voipalert.ingest.schemas import NO_CONTROL, Name, _In, _Out

LOCAL_TIME: Final = (
    "a date and time: with an offset ('2026-03-28T17:00:00Z', '...+01:00') that instant; "
    "without one ('2026-03-28 18:00', '2026-03-28T18:00') wall time in the schedule's zone, "
    "the first of two when the clocks go back, refused when it does not exist"
)
Time = Annotated[str, Field(min_length=1, max_length=MAX_TIME_CHARS, description=LOCAL_TIME)]


class OverrideIn(_In):
    person: Name = Field(description="who is on call (a rota name)")
    start: Time
    end: Time
    replaces: Name | None = Field(
        default=None,
        description="only instead of this person; without it, instead of whoever is on call",
    )
    note: str = Field(default="", max_length=MAX_NOTE_CHARS, pattern=NO_CONTROL)


class OverrideOut(_Out):
    id: int
    schedule: str
    person: str
    replaces: str | None
    start: datetime = Field(description="UTC")
    end: datetime = Field(description="UTC")
    origin: str = Field(description="file, cli, api, csv or console")
    note: str
    made_by: str | None = Field(description="token, OS user or console user; null: the file")
    made_at: datetime | None


class OverrideListOut(_Out):
    overrides: list[OverrideOut]


class OverrideAddedOut(_Out):
    created: bool = Field(description="false: the same override was already there")
    override: OverrideOut
    overlaps: list[int] = Field(
        description="ids of overrides of the schedule whose period meets this one's "
        "(where they overlap, the one that starts last wins)"
    )


def override_out(record: OverrideRecord) -> OverrideOut:
    o = record.override
    return OverrideOut(
        id=record.id, schedule=o.schedule, person=o.person, replaces=o.replaces, start=o.start,
        end=o.end, origin=record.origin, note=record.note, made_by=record.made_by,
        made_at=record.made_at,
    )  # fmt: skip
