"""What the user agent tells its owner: past-tense facts, one small frozen value each."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NewType

from voipalert.sip.sdp import MediaParams

CallId = NewType("CallId", str)


class CallOutcome(Enum):
    """How an outbound call ended, as escalation sees it. Never an exception."""

    ANSWERED = "answered"
    NO_ANSWER = "no answer"
    BUSY = "busy"
    DECLINED = "declined"
    UNREACHABLE = "unreachable"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    FAILED = "failed"


class RegistrationState(Enum):
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILING = "failing"
    UNREGISTERING = "unregistering"


@dataclass(frozen=True, slots=True)
class RegistrationStatus:
    """A snapshot for the health endpoint: state, since when, and the last answer."""

    state: RegistrationState
    since: float
    last_status: int | None = None
    last_reason: str = ""
    expires_at: float | None = None
    retry_at: float | None = None
    fatal: bool = False
    """The registrar refused us in a way retrying will not fix (credentials, 403, 404)."""


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    status: RegistrationStatus


@dataclass(frozen=True, slots=True)
class CallRinging:
    """A provisional response: 180/183 ring, or 183 with SDP (early media, not answered)."""

    call_id: CallId
    status: int
    reason: str
    early_media: bool


@dataclass(frozen=True, slots=True)
class CallAnswered:
    call_id: CallId
    media: MediaParams


@dataclass(frozen=True, slots=True)
class CallMediaChanged:
    """A re-INVITE moved the far end's media (hold, direct media, session refresh)."""

    call_id: CallId
    media: MediaParams


@dataclass(frozen=True, slots=True)
class DigitReceived:
    """A key sent as SIP INFO (application/dtmf-relay or application/dtmf)."""

    call_id: CallId
    digit: str
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class CallEnded:
    call_id: CallId
    outcome: CallOutcome
    status: int | None
    """The SIP status that decided the outcome (None when no response ever came)."""
    reason: str
    """Reason phrase or a description of what happened."""
    reason_header: str | None = None
    """The peer's ``Reason`` header (RFC 3326, Q.850 cause), when it sent one."""
    answered: bool = False
    hung_up_by: str | None = None
    """``local`` or ``remote`` for an answered call."""


SipEvent = (
    RegistrationChanged | CallRinging | CallAnswered | CallMediaChanged | DigitReceived | CallEnded
)
