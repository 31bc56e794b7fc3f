"""The ``[callin]`` section: people who missed a call dial voipalert to hear and handle
their open alerts (docs/call-in.md)."""

from __future__ import annotations

from pydantic import Field

from voipalert.settings.sections import _Section


class CallinSettings(_Section):
    enabled: bool = Field(
        default=False,
        description="answer calls to voipalert's own extension (its SIP user) with the "
        "call-in menu; off: every call to it is refused 486",
    )
    pin_required: bool = Field(
        default=False,
        description="ask every caller for their PIN (voipalert user set-pin), not only "
        "those whose caller ID is unknown; on unless the PBX vouches for caller IDs",
    )
    max_calls: int = Field(default=4, ge=1, le=64, description="call-in calls at once")
    max_pin_attempts: int = Field(default=3, ge=1, le=10, description="wrong PINs per call")
    max_failures_per_hour: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="wrong PINs per caller ID and per person in an hour before their calls "
        "are refused (603) until the hour has passed",
    )
    language: str = Field(
        default="en", description="language before the caller is known", min_length=2
    )
    max_call_seconds: int = Field(default=300, ge=30, le=3600)
