"""What the user agent tells its owner: past-tense facts, one small frozen value each."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NewType

from voipalert.sip.sdp import MediaParams
from voipalert.sip.uri import SipUri

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
class CallProgress:
    """What the network said before the final answer (RFC 3261 §13.2.2.1, RFC 3960):
    whether the callee's phone rang, whether early media (a provisional with SDP: an
    announcement or a ringback tone) came, and a Q.850 cause if one was given."""

    first_at: float
    """When the first provisional other than 100 arrived (the ring clock starts here)."""
    status: int
    """The last provisional's status (180, 183...)."""
    reason: str
    ringing: bool = False
    """A 180/181/182 or a 183 without SDP: the phone (or the network for it) is alerting."""
    early_media: bool = False
    """A provisional carried SDP: audio before any answer (RFC 3960), never the callee."""
    cause: int | None = None
    """A Q.850 cause from a ``Reason`` header (RFC 3326) on a provisional or the final."""

    def describe(self) -> str:
        what = "early media" if self.early_media else "ringing" if self.ringing else "progress"
        if self.early_media and not self.ringing:
            what = "early media only, no ringing"
        cause = f", Q.850 cause {self.cause}" if self.cause is not None else ""
        return f"{self.status} {self.reason} ({what}{cause})"


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
    progress: CallProgress | None = None
    """The call progress before the final answer (None: no provisional beyond 100)."""
    classified_by: str = "status"
    """What decided ``outcome``: ``status`` (the final SIP status), ``cause`` (a Q.850
    cause), ``ring timeout``, ``setup timeout``, ``no response`` or ``local``."""
    retry_after: int | None = None
    """The final failure's ``Retry-After`` seconds (RFC 3261 §20.33), e.g. on a 503: how long
    the server asks not to be tried (docs/sip-failover.md)."""


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """Someone called us (call-in, docs/call-in.md): the INVITE had an SDP offer we can
    answer and has been answered 180. The owner answers it (``UserAgent.answer_call``) or
    refuses it (``reject_call``); until then a CANCEL ends it with ``CallEnded``."""

    call_id: CallId
    caller: SipUri | None
    """The From URI: anyone can write anything there."""
    asserted: SipUri | None
    """The first ``P-Asserted-Identity`` (RFC 3325 §9.1), only when the INVITE came from a
    trusted host (``UAConfig.trusted_hosts``); None otherwise, whatever it said."""
    source: tuple[str, int]


TextId = NewType("TextId", str)


@dataclass(frozen=True, slots=True)
class TextDone:
    """The final answer to a MESSAGE we sent (or the failure standing for one: 408, 503)."""

    text_id: TextId
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class TextReceived:
    """A MESSAGE from a sender we were waiting for, already answered 200 (sip/text.py)."""

    sender: SipUri
    body: str
    source: tuple[str, int]


SipEvent = (
    IncomingCall
    | RegistrationChanged
    | CallRinging
    | CallAnswered
    | CallMediaChanged
    | DigitReceived
    | CallEnded
    | TextDone
    | TextReceived
)
