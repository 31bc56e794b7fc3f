"""One outbound call: INVITE → (digest) → 1xx → 2xx + ACK → BYE, or CANCEL, as one machine.

RFC 3261 §13.2 (UAC INVITE), §9.1 (CANCEL), §15.1.1 (BYE), §12 (dialogs) and §22 (digest),
with the outcome rules of docs/sip.md §4.5. Every call ends with exactly one
``CallEnded`` event carrying a ``CallOutcome`` — never an exception.

States: CALLING (INVITE sent) → RINGING (a provisional arrived, so CANCEL is allowed) →
CONFIRMED (2xx ACKed) → ENDING (our BYE sent) → ENDED. A cancel requested before any
provisional waits for one (or for Timer B): §9.1 forbids CANCEL before a 1xx.

Call progress and early media (docs/sip.md §4.5.1):

* The ring clock starts at the first provisional other than 100 (180 Ringing, 183 Session
  Progress...): 100 Trying is hop-by-hop (§8.2.6, §16.7) and says nothing about the callee,
  and an INVITE can wait seconds in a PBX or a carrier before anything alerts. Before that
  first 18x the setup limit (``UAConfig.setup_timeout``, 32 s like Timer B) applies: a call
  that never gets past 100 Trying is cancelled and ends unreachable.
* A provisional with SDP is early media (RFC 3960 §2, RFC 3261 §13.2.2.1): an announcement
  or a ringback tone. It creates no confirmed dialog, it is never an answer, and nothing
  heard in it counts (the adapter opens no media before ``CallAnswered``).
* The outcome: a final status of the table in ``outcome_for_status`` decides by itself.
  A generic one (5xx, 3xx, an unlisted 4xx), and our own ring timeout, give way to a
  Q.850 cause (RFC 3326 ``Reason``, on a provisional or the final answer) that names
  busy, unreachable, no answer or rejected: gateways put the ISDN cause there, and the
  announcement heard as early media says the same thing. Otherwise our ring timeout is
  "no answer", after ringing or early media alike.

Reliable provisionals (RFC 3262: PRACK in each fork's early dialog) and session timers
(RFC 4028: refresh at N/2 by UPDATE or re-INVITE, BYE when the session lapses) follow
docs/sip.md §4.13.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Final

from voipalert.sip import digest
from voipalert.sip.address import NameAddr
from voipalert.sip.agent_services import AgentServices, TxFailure
from voipalert.sip.dialog import (
    Dialog,
    Envelope,
    build_request,
    cancel_for,
    our_aor,
    our_contact,
)
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.events import (
    CallAnswered,
    CallEnded,
    CallId,
    CallOutcome,
    CallProgress,
    CallRinging,
)
from voipalert.sip.fields import Reason
from voipalert.sip.headers import HeaderInput
from voipalert.sip.ids import new_branch, new_tag
from voipalert.sip.locate import hop_of
from voipalert.sip.message import Request, Response
from voipalert.sip.sdp import LocalMedia, MediaParams, parse_answer
from voipalert.sip.sessiontimer import (
    MIN_SE,
    SessionExpires,
    SessionTimer,
    agreed_as_uac,
    agreed_as_uas,
    parse_min_se,
    parse_rseq,
    tokens,
)
from voipalert.sip.uri import SipUri

MAX_INVITE_AUTH_ROUNDS: Final = 2  # the challenge, then one stale=true renewal
SDP: Final = "application/sdp"
MAX_EARLY_DIALOGS: Final = 16
"""Forks whose reliable provisionals we PRACK; beyond that a flood of To tags is ignored."""
SESSION_EXPIRED: Final = 'SIP;cause=408;text="Session timer expired"'


@dataclass(slots=True)
class _Early:
    """An early dialog created by a reliable provisional (RFC 3262 §4): one per fork."""

    dialog: Dialog
    rseq: int
    """The RSeq of the last reliable provisional we PRACKed on it."""


class CallState(Enum):
    CALLING = "calling"
    RINGING = "ringing"
    CONFIRMED = "confirmed"
    ENDING = "ending"
    ENDED = "ended"


class CancelReason(Enum):
    RING_TIMEOUT = "ring timeout"
    SETUP_TIMEOUT = "setup timeout"
    LOCAL = "cancelled"


Q850_OUTCOMES: Final = {
    # ITU-T Q.850 cause values, as RFC 3398 §7.2.4.1 maps them to SIP statuses.
    **dict.fromkeys((1, 2, 3, 20, 22, 27, 28), CallOutcome.UNREACHABLE),
    17: CallOutcome.BUSY,  # user busy (486)
    **dict.fromkeys((18, 19), CallOutcome.NO_ANSWER),  # no user responding, no answer (408/480)
    21: CallOutcome.DECLINED,  # call rejected (403/603)
}
"""Causes that say what happened to the callee; the others (16 normal clearing, 31, the
network's 34-47...) leave the decision to the SIP status."""


_OUTCOMES: Final = {
    **dict.fromkeys((486, 600), CallOutcome.BUSY),
    **dict.fromkeys((603, 607, 608), CallOutcome.DECLINED),
    **dict.fromkeys((404, 410, 480, 484, 604), CallOutcome.UNREACHABLE),
    **dict.fromkeys((408, 487), CallOutcome.NO_ANSWER),
    **dict.fromkeys((401, 403, 407), CallOutcome.REJECTED),
}


def q850_cause(message: Request | Response) -> int | None:
    """The cause of the first ``Reason: Q.850;cause=N`` header (RFC 3326), if any."""
    for value in message.headers.get_all("Reason"):
        for item in value.split(","):
            try:
                reason = Reason.parse(item)
            except RemoteProtocolError:
                continue
            if reason.protocol.upper() == "Q.850" and reason.cause is not None:
                return reason.cause
    return None


def classify_failure(status: int, cause: int | None) -> tuple[CallOutcome, str]:
    """The outcome of a final non-2xx and what decided it. A status of the table
    (486 busy, 404/480 unreachable, 603 declined...) says it itself; a generic one (5xx,
    3xx, an unlisted 4xx: a gateway's "503" after "the number is not reachable") gives way
    to a telling Q.850 cause, from its own ``Reason`` or from the progress before it."""
    if status not in _OUTCOMES and cause is not None and cause in Q850_OUTCOMES:
        return Q850_OUTCOMES[cause], "cause"
    return outcome_for_status(status), "status"


def outcome_for_status(status: int) -> CallOutcome:
    """The escalation outcome of a final non-2xx (docs/sip.md §4.5 table); codes not in
    the table take their class's meaning (§8.1.3.2): 4xx rejected, 6xx declined, and 3xx
    (redirects are not followed) or 5xx failed."""
    if status in _OUTCOMES:
        return _OUTCOMES[status]
    if 400 <= status < 500:
        return CallOutcome.REJECTED
    if status >= 600:
        return CallOutcome.DECLINED
    return CallOutcome.FAILED


class Call:
    def __init__(
        self,
        agent: AgentServices,
        call_id: CallId,
        target: SipUri,
        media: LocalMedia,
        *,
        ring_timeout: float,
        setup_deadline: float,
    ) -> None:
        self._agent = agent
        config = agent.config
        self.call_id = call_id
        self.target = target
        self.local_media = media
        self.ring_timeout = ring_timeout
        self.setup_deadline = setup_deadline
        self.ring_deadline: float | None = None
        """Set by the first provisional other than 100: the ring clock starts there."""
        self.progress: CallProgress | None = None
        self.state = CallState.CALLING
        self.remote_media: MediaParams | None = None
        self.dialog: Dialog | None = None
        self._from = NameAddr(uri=our_aor(config), display_name=config.display_name)
        self._from = self._from.with_tag(new_tag(agent.rng))
        self._cseq = agent.rng.randint(1, 2**20)
        self._counter = digest.NonceCounter()
        self._auth_rounds = 0
        self._auth: tuple[HeaderInput, ...] = ()
        self._invite: Request | None = None
        self._ack: Request | None = None
        self._cancel: CancelReason | None = None
        self._cancel_sent = False
        self._cancel_deadline: float | None = None
        """64*T1 after our CANCEL: the INVITE then counts as cancelled (RFC 3261 §9.1)."""
        self._bye: Request | None = None
        self._bye_extra: tuple[HeaderInput, ...] = ()
        self._late_answer: CallOutcome | None = None
        self._media_failure: str | None = None
        self._bye_why: str | None = None
        self._early: dict[str, _Early] = {}
        self._pracks = 0
        self._min_se: int | None = None
        """Set by a 422 (RFC 4028 §7.4): the interval our requests ask for from then on."""
        self.session: SessionTimer | None = None
        self._refresh: Request | None = None
        self._refresh_ack: tuple[Request, Request] | None = None
        self._update_allowed = False

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    @property
    def pracks_sent(self) -> int:
        return self._pracks

    def next_deadline(self) -> float | None:
        if self.state in (CallState.CALLING, CallState.RINGING) and self._cancel is None:
            return self.setup_deadline if self.ring_deadline is None else self.ring_deadline
        if self.state in (CallState.CALLING, CallState.RINGING):
            return self._cancel_deadline
        if self.state is CallState.CONFIRMED and self.session is not None:
            # A refresh in flight: only the expiry is left to watch.
            if self._refresh is not None:
                return self.session.expires_at
            return self.session.next_deadline()
        return None

    # ---------------------------------------------------------------- commands

    def start(self, now: float) -> None:
        self._send_invite(now)

    def hang_up(self, now: float, reason: CancelReason = CancelReason.LOCAL) -> None:
        """CANCEL while ringing (as soon as allowed), BYE once answered."""
        if self.state in (CallState.CALLING, CallState.RINGING):
            if self._cancel is None:
                self._cancel = reason
            self._maybe_cancel(now)
        elif self.state is CallState.CONFIRMED:
            self._send_bye(now)

    def handle_timer(self, now: float) -> None:
        if self.state is CallState.CONFIRMED and self.session is not None:
            self._session_timer(now)
            return
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline and self._cancel is not None:
            # RFC 3261 §9.1: no final response to the INVITE 64*T1 after our CANCEL (the PBX
            # answered the CANCEL, or not, and died): the INVITE counts as cancelled.
            # Without this a call whose PBX died while it rang stayed up until the engine
            # gave up on the step (docs/sip-failover.md).
            self._end_cancelled(None)
        elif deadline is not None and now >= deadline:
            ringing = self.ring_deadline is not None
            self.hang_up(now, CancelReason.RING_TIMEOUT if ringing else CancelReason.SETUP_TIMEOUT)

    def remote_bye(self, request: Request) -> None:
        """The callee hung up (their BYE, already answered 200 by the agent)."""
        if self.state in (CallState.CONFIRMED, CallState.ENDING):
            self._end(
                CallOutcome.ANSWERED, None, "callee hung up", _reason_header(request),
                answered=True, by="remote",
            )  # fmt: skip

    def set_media(self, media: MediaParams) -> None:
        self.remote_media = media

    def remote_refresh(self, request: Request, now: float) -> SessionExpires | None:
        """The far end sent a re-INVITE or UPDATE in our dialog: a session refresh
        (RFC 4028 §9, §10). Returns the ``Session-Expires`` our 2xx carries, if any."""
        if not self._agent.config.session_timers or self.state is not CallState.CONFIRMED:
            return None
        agreed = agreed_as_uas(request, now)
        if agreed is None:
            if self.session is not None:
                # Any re-INVITE or UPDATE refreshes the session (§10), even without the
                # header; the agreement stands.
                self.session = replace(self.session, refreshed_at=now)
            return None
        self.session, answer = agreed
        return answer

    # ---------------------------------------------------------------- TxUser

    def on_response(self, request: Request, response: Response, now: float) -> None:
        method = request.method
        if method == "INVITE" and request is self._invite:
            self._invite_response(request, response, now)
        elif request is self._refresh and response.status >= 200:
            self._refresh_answered(request, response, now)
        elif self._refresh_ack is not None and request is self._refresh_ack[0]:
            if 200 <= response.status < 300:
                self._send_ack(self._refresh_ack[1], now)  # a retransmitted 2xx
        elif method == "BYE" and request is self._bye and response.status >= 200:
            if response.status in (401, 407) and self._retry_bye(request, response, now):
                return
            self._end_after_bye()
        # CANCEL responses change nothing: the INVITE's 487 (or 200) decides.

    def retry_elsewhere(self, request: Request, retry: Request) -> bool:
        """RFC 3263 §4.3 failover: the INVITE (or BYE) goes to the hop's next address
        with a new branch. Not for a call already being cancelled: nobody wants it to
        ring somewhere else."""
        if request is self._invite and self._cancel is None:
            self._invite = retry
            return True
        if request is self._refresh:
            self._refresh = retry
            return True
        if request.method == "PRACK":
            return True  # nobody waits for its answer
        if request is self._bye:
            self._bye = retry
            return True
        return False

    def on_failure(self, request: Request, failure: TxFailure, now: float) -> None:
        if request.method == "INVITE" and request is self._invite:
            if self._cancel is not None:
                self._end_cancelled(failure.status)
            else:
                # Timer B with no response at all, or the next hop refused the packet.
                self._end(
                    CallOutcome.UNREACHABLE, failure.status, f"no response ({failure.value})",
                    classified_by="no response",
                )  # fmt: skip
        elif request.method == "CANCEL" and self._cancel is not None:
            # A CANCEL that cannot be sent (the PBX is gone: a transport error, §17.1.4) or
            # gets no answer (its Timer F) will not bring the INVITE's final response
            # either: as at the §9.1 deadline, the INVITE counts as cancelled.
            self._end_cancelled(failure.status)
        elif request.method == "BYE" and request is self._bye:
            self._end_after_bye()  # §15.1.1: a BYE without answer still ends the call
        elif request is self._refresh:
            # RFC 4028 §10: a refresh timed out (a 408) or unreachable: the session is dead.
            self._refresh = None
            if self.state is CallState.CONFIRMED:
                self._bye_why = f"session refresh failed ({failure.value})"
                self._send_bye(now, reason=SESSION_EXPIRED)
        # A PRACK that fails (481, timeout) changes nothing: the INVITE's answer decides.

    # ---------------------------------------------------------------- INVITE

    def _send_invite(self, now: float) -> None:
        config = self._agent.config
        # A new INVITE (after a challenge or a 422): the early dialogs of the last one are
        # gone with it, and a fork may start its RSeq space again.
        self._early.clear()
        self._cseq += 1
        route: tuple[NameAddr, ...] = ()
        if config.outbound_proxy is not None:
            route = (NameAddr(uri=config.outbound_proxy.with_param("lr")),)
        envelope = Envelope(
            self._from, NameAddr(uri=self.target), self.call_id, self._cseq,
            new_branch(self._agent.rng), route,
        )  # fmt: skip
        invite = build_request(
            config, "INVITE", self.target, envelope, contact=our_contact(config),
            extra=(*self._auth, *self._extensions()), body=self.local_media.sdp(),
            content_type=SDP,
        )  # fmt: skip
        self._invite = invite
        hop = config.outbound_proxy or self.target
        self._agent.send_request(invite, hop_of(hop, config.transport), self, now)

    def _extensions(self) -> tuple[HeaderInput, ...]:
        """``Supported`` of our INVITE, and after a 422 the interval it asked for."""
        config = self._agent.config
        wanted = (("100rel", config.reliable_provisionals), ("timer", config.session_timers))
        options = [tag for tag, on in wanted if on]
        extra: list[HeaderInput] = [("Supported", ", ".join(options))] if options else []
        if self._min_se is not None:
            extra += [("Session-Expires", str(self._min_se)), ("Min-SE", str(self._min_se))]
        return tuple(extra)

    def _invite_response(self, invite: Request, response: Response, now: float) -> None:
        status = response.status
        if status < 200:
            self._provisional(response, now)
        elif status < 300:
            self._success(invite, response, now)
        elif status == 422 and self._too_small(response, now):
            return
        elif status in (401, 407) and self._cancel is None:
            self._challenged(invite, response, now)
        elif self.state in (CallState.CALLING, CallState.RINGING):
            if self._cancel is not None and status == 487:
                self._end_cancelled(status)
            else:
                cause = q850_cause(response)
                if cause is None and self.progress is not None:
                    cause = self.progress.cause
                outcome, by = classify_failure(status, cause)
                self._end(
                    outcome, status, response.reason, _reason_header(response),
                    classified_by=by, retry_after=_retry_after(response),
                )  # fmt: skip

    def _too_small(self, response: Response, now: float) -> bool:
        """RFC 4028 §7.4: 422 Session Interval Too Small: once, ask again with its Min-SE
        (same Call-ID and From tag, next CSeq, new branch; the 422 is ACKed by the
        transaction). A second 422, or one without a usable Min-SE, ends the call."""
        min_se = parse_min_se(response)
        if (
            min_se is None
            or self._min_se is not None
            or self._cancel is not None
            or not self._agent.config.session_timers
            or self.state not in (CallState.CALLING, CallState.RINGING)
        ):
            return False
        self._min_se = max(min_se, MIN_SE)
        self.state = CallState.CALLING
        self._send_invite(now)
        return True

    def _provisional(self, response: Response, now: float) -> None:
        if response.status > 100 and not self._reliable(response, now):
            return
        if self.state is CallState.CALLING:
            self.state = CallState.RINGING
        if response.status > 100:
            early = bool(response.body) and response.content_type == SDP
            self._note_progress(response, early, now)
            self._agent.emit(CallRinging(self.call_id, response.status, response.reason, early))
        self._maybe_cancel(now)

    def _reliable(self, response: Response, now: float) -> bool:
        """RFC 3262 §4: a 1xx with ``Require: 100rel`` and an ``RSeq`` is acknowledged with
        PRACK in the early dialog of its To tag. The first one of a fork starts its RSeq
        space; after that only RSeq + 1 is new: a retransmission (already PRACKed) or an
        RSeq out of order is not processed at all (§7.1). False: ignore the response."""
        if "100rel" not in tokens(response, "Require") or self._invite is None:
            return True
        rseq = parse_rseq(response)
        if rseq is None or response.cseq.seq != self._invite.cseq.seq:
            return True  # no usable RSeq: an ordinary, unreliable provisional
        to_tag = response.to.tag
        early = self._early.get(to_tag or "")
        if early is None:
            if len(self._early) >= MAX_EARLY_DIALOGS:
                return False
            try:
                dialog = Dialog.early(self._invite, response)
            except RemoteProtocolError:
                return True  # no To tag or an unreadable Contact: no dialog to PRACK in
            early = _Early(dialog, rseq)
            self._early[dialog.remote_tag] = early
        elif rseq == early.rseq + 1:
            early.rseq = rseq
        else:
            return False
        self._send_prack(early, response, now)
        return True

    def _send_prack(self, early: _Early, response: Response, now: float) -> None:
        """The PRACK (RFC 3262 §7.2): its own non-INVITE transaction, the next local CSeq
        (shared with the INVITE's dialog: the 2xx dialog continues above it)."""
        config = self._agent.config
        self._cseq += 1
        rack = f"{early.rseq} {response.cseq.seq} {response.cseq.method}"
        prack = early.dialog.request(
            config, "PRACK", new_branch(self._agent.rng), cseq=self._cseq,
            extra=(("RAck", rack),),
        )  # fmt: skip
        self._pracks += 1
        self._agent.send_request(prack, early.dialog.next_hop(config.transport), self, now)

    def _note_progress(self, response: Response, early: bool, now: float) -> None:
        previous = self.progress
        if previous is None:
            self.ring_deadline = now + self.ring_timeout
        cause = q850_cause(response)
        ringing = response.status in (180, 181, 182)
        if previous is not None:
            ringing, early = ringing or previous.ringing, early or previous.early_media
            cause = cause if cause is not None else previous.cause
        self.progress = CallProgress(
            first_at=now if previous is None else previous.first_at,
            status=response.status,
            reason=response.reason,
            ringing=ringing,
            early_media=early,
            cause=cause,
        )

    def _challenged(self, invite: Request, response: Response, now: float) -> None:
        config = self._agent.config
        stale = digest.is_stale(response)
        if (
            config.password is None
            or self._auth_rounds >= MAX_INVITE_AUTH_ROUNDS
            or (self._auth_rounds and not stale)
        ):
            self._end(CallOutcome.REJECTED, response.status, "authentication failed")
            return
        self._auth_rounds += 1
        credentials = digest.DigestCredentials(config.auth_username or config.user, config.password)
        try:
            self._auth = digest.authorization_headers(
                response, credentials, method="INVITE", uri=invite.uri,
                rng=self._agent.rng, counter=self._counter,
            )  # fmt: skip
        except RemoteProtocolError as exc:
            self._end(CallOutcome.REJECTED, response.status, str(exc))
            return
        # Same Call-ID and From tag, CSeq + 1, a new branch (pyVoIP #167, #69/#216).
        self.state = CallState.CALLING
        self._send_invite(now)

    def _success(self, invite: Request, response: Response, now: float) -> None:
        to_tag = response.to.tag
        if self.dialog is not None:
            if to_tag == self.dialog.remote_tag and self._ack is not None:
                self._send_ack(self._ack, now)  # §13.2.2.4: ACK every retransmitted 2xx
            else:
                self._ack_and_bye_fork(invite, response, now)
            return
        try:
            self.dialog = Dialog.from_2xx(invite, response)
        except RemoteProtocolError as exc:
            self._end(CallOutcome.FAILED, response.status, f"unusable 2xx: {exc}")
            return
        # PRACKs took CSeq numbers after the INVITE's: the dialog goes on above them.
        self.dialog.local_cseq = max(self.dialog.local_cseq, self._cseq)
        self._ack = self.dialog.request(
            self._agent.config, "ACK", new_branch(self._agent.rng),
            cseq=invite.cseq.seq, extra=self._auth,
        )  # fmt: skip
        self._send_ack(self._ack, now)
        if self._cancel is not None:
            # The 200-after-CANCEL race (§9.1): ACK it, then hang up at once.
            self.state = CallState.CONFIRMED
            self._late_answer = self._cancelled_outcome()[0]
            self._send_bye(now)
            return
        try:
            self.remote_media = parse_answer(response.body, codecs=self.local_media.codecs)
        except RemoteProtocolError as exc:
            self.state = CallState.CONFIRMED
            self._media_failure = f"unusable SDP answer: {exc}"
            self._send_bye(now, reason='SIP;cause=488;text="Not Acceptable Here"')
            return
        self.state = CallState.CONFIRMED
        if self._agent.config.session_timers:
            self.session = agreed_as_uac(response, now)
            self._update_allowed = "update" in tokens(response, "Allow") | tokens(
                response, "Supported"
            )
        self._agent.emit(CallAnswered(self.call_id, self.remote_media))

    # ---------------------------------------------------------------- session timer

    def _session_timer(self, now: float) -> None:
        session = self.session
        assert session is not None
        if now >= session.expires_at:
            # RFC 4028 §10: no refresh by N - min(32, N/3): the far end (or the path to
            # it) is gone; BYE rather than keep a call nobody hears.
            self.session = None
            self._bye_why = "session timer expired (no refresh)"
            self._send_bye(now, reason=SESSION_EXPIRED)
        elif session.we_refresh and self._refresh is None and now >= session.refresh_at:
            self._send_refresh(now)

    def _send_refresh(self, now: float) -> None:
        """RFC 4028 §7.4, §10: UPDATE (RFC 3311) when the far end allows it, else a
        re-INVITE with the SDP we last sent (same o= version: no change of session)."""
        assert self.dialog is not None and self.session is not None
        config = self._agent.config
        extra: list[HeaderInput] = [
            ("Session-Expires", SessionExpires(self.session.interval, "uac").format()),
            ("Supported", "timer"),
        ]
        if self._min_se is not None:
            extra.append(("Min-SE", str(self._min_se)))
        branch = new_branch(self._agent.rng)
        if self._update_allowed:
            refresh = self.dialog.request(config, "UPDATE", branch, extra=extra)
        else:
            refresh = self.dialog.request(
                config, "INVITE", branch, extra=extra, body=self.local_media.sdp(),
                content_type=SDP,
            )  # fmt: skip
        self._refresh = refresh
        self._agent.send_request(refresh, self.dialog.next_hop(config.transport), self, now)

    def _refresh_answered(self, request: Request, response: Response, now: float) -> None:
        assert self.dialog is not None
        self._refresh = None
        status = response.status
        if status < 300:
            if request.method == "INVITE":
                ack = self.dialog.request(
                    self._agent.config, "ACK", new_branch(self._agent.rng),
                    cseq=request.cseq.seq,
                )  # fmt: skip
                self._refresh_ack = (request, ack)
                self._send_ack(ack, now)
            if self.state is CallState.CONFIRMED:
                # §7.2 again: the 2xx says the interval from now on (none: no timer).
                self.session = agreed_as_uac(response, now)
            return
        if self.state is not CallState.CONFIRMED or self.session is None:
            return
        min_se = parse_min_se(response)
        if status == 422 and min_se is not None and min_se > self.session.interval:
            self._min_se = min_se
            self.session = replace(self.session, interval=min_se)
            self._send_refresh(now)
        elif status in (408, 481):
            # RFC 4028 §10: the dialog is gone (481) or the far end silent (408).
            self._bye_why = f"session refresh failed ({status} {response.reason})"
            self._send_bye(now, reason=SESSION_EXPIRED)
        else:
            # Another failure (491 glare, 5xx...): no new refresh; the session lapses at
            # its expiry unless the far end refreshes it meanwhile.
            self.session = replace(self.session, we_refresh=False)

    def _ack_and_bye_fork(self, invite: Request, response: Response, now: float) -> None:
        """A 2xx from a second fork (another To tag): ACK it and BYE it (§13.2.2.4)."""
        try:
            fork = Dialog.from_2xx(invite, response)
        except RemoteProtocolError:
            return
        branch = new_branch(self._agent.rng)
        ack = fork.request(self._agent.config, "ACK", branch, cseq=invite.cseq.seq)
        self._send_ack_via(fork, ack, now)
        bye = fork.request(self._agent.config, "BYE", new_branch(self._agent.rng))
        hop = fork.next_hop(self._agent.config.transport)
        self._agent.send_request(bye, hop, None, now)

    def _send_ack(self, ack: Request, now: float) -> None:
        assert self.dialog is not None
        self._send_ack_via(self.dialog, ack, now)

    def _send_ack_via(self, dialog: Dialog, ack: Request, now: float) -> None:
        self._agent.send_request(ack, dialog.next_hop(self._agent.config.transport), None, now)

    # ---------------------------------------------------------------- CANCEL and BYE

    def _maybe_cancel(self, now: float) -> None:
        if (
            self._cancel is not None
            and not self._cancel_sent
            and self.state is CallState.RINGING
            and self._invite is not None
        ):
            self._cancel_sent = True
            self._cancel_deadline = now + self._agent.config.timers.b
            cancel = cancel_for(self._invite)
            config = self._agent.config
            hop = config.outbound_proxy or self.target
            self._agent.send_request(cancel, hop_of(hop, config.transport), self, now)

    def _cancelled_outcome(self) -> tuple[CallOutcome, str]:
        """What a call we cancelled (or that its CANCEL raced with) counts as."""
        match self._cancel:
            case CancelReason.RING_TIMEOUT:
                cause = self.progress.cause if self.progress is not None else None
                if cause is not None and cause in Q850_OUTCOMES:
                    return Q850_OUTCOMES[cause], "cause"
                return CallOutcome.NO_ANSWER, "ring timeout"
            case CancelReason.SETUP_TIMEOUT:
                return CallOutcome.UNREACHABLE, "setup timeout"
        return CallOutcome.CANCELLED, "local"

    def _end_cancelled(self, status: int | None) -> None:
        assert self._cancel is not None
        outcome, by = self._cancelled_outcome()
        reason = self._cancel.value
        if self._cancel is CancelReason.SETUP_TIMEOUT:
            reason = "no ringing within the setup limit (only 100 Trying, or nothing)"
        self._end(outcome, status, reason, classified_by=by)

    def _send_bye(self, now: float, reason: str | None = None) -> None:
        assert self.dialog is not None
        if self.state is CallState.ENDING:
            return
        self.state = CallState.ENDING
        self._bye_extra = (("Reason", reason),) if reason else ()
        bye = self.dialog.request(
            self._agent.config, "BYE", new_branch(self._agent.rng), extra=self._bye_extra
        )
        self._bye = bye
        self._agent.send_request(bye, self.dialog.next_hop(self._agent.config.transport), self, now)

    def _retry_bye(self, bye: Request, response: Response, now: float) -> bool:
        config = self._agent.config
        if (
            config.password is None
            or bye.headers.get("Authorization")
            or bye.headers.get("Proxy-Authorization")
        ):
            return False
        assert self.dialog is not None
        credentials = digest.DigestCredentials(config.auth_username or config.user, config.password)
        try:
            auth = digest.authorization_headers(
                response, credentials, method="BYE", uri=bye.uri,
                rng=self._agent.rng, counter=self._counter,
            )  # fmt: skip
        except RemoteProtocolError:
            return False
        retry = self.dialog.request(
            config, "BYE", new_branch(self._agent.rng), extra=(*self._bye_extra, *auth)
        )
        self._bye = retry
        self._agent.send_request(retry, self.dialog.next_hop(config.transport), self, now)
        return True

    def _end_after_bye(self) -> None:
        if self._late_answer is not None:
            assert self._cancel is not None
            reason = f"answered after {self._cancel.value}; hung up at once"
            self._end(self._late_answer, 200, reason)
        elif self._media_failure is not None:
            self._end(CallOutcome.FAILED, 488, self._media_failure, answered=True, by="local")
        elif self._bye_why is not None:
            self._end(CallOutcome.ANSWERED, 200, self._bye_why, answered=True, by="local")
        else:
            self._end(CallOutcome.ANSWERED, 200, "we hung up", answered=True, by="local")

    def _end(
        self, outcome: CallOutcome, status: int | None, reason: str,
        reason_header: str | None = None, *, answered: bool = False, by: str | None = None,
        classified_by: str = "status", retry_after: int | None = None,
    ) -> None:  # fmt: skip
        if self.state is CallState.ENDED:
            return
        self.state = CallState.ENDED
        event = CallEnded(
            self.call_id, outcome, status, reason, reason_header, answered, by,
            self.progress, classified_by, retry_after,
        )  # fmt: skip
        self._agent.emit(event)


def _retry_after(response: Response) -> int | None:
    """A malformed Retry-After is ignored: it only tunes how long a trunk rests."""
    try:
        return response.retry_after
    except RemoteProtocolError:
        return None


def _reason_header(message: Request | Response) -> str | None:
    values = message.headers.get_all("Reason")
    return ", ".join(values) if values else None
