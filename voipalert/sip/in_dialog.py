"""Answers to the requests the far end sends inside one of our dialogs (already admitted).

BYE ends the call (200); INFO carries digits (RFC 6086, ``uas.parse_info_digit``); a
re-INVITE (RFC 3261 §14.2) or UPDATE (RFC 3311) is answered with the current session:
hold, direct-media moves, session refreshes (RFC 4028 §9, §10). The 2xx to a re-INVITE is
resent until its ACK (``call_upkeep.py``); an ACK may carry the answer to the offer we put
in that 2xx when the re-INVITE had no body (a delayed offer, §14.2).
"""

from __future__ import annotations

from voipalert.sip import uas
from voipalert.sip.agent_core import AgentCore
from voipalert.sip.call import Call
from voipalert.sip.call_upkeep import CallUpkeep
from voipalert.sip.dialog import Address, our_contact
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.events import CallMediaChanged, DigitReceived
from voipalert.sip.headers import HeaderInput
from voipalert.sip.message import Request, Response, response_to
from voipalert.sip.sdp import answer_offer, parse_answer
from voipalert.sip.sessiontimer import MIN_SE, parse_session_expires, tokens


class DialogAnswers:
    """Answers BYE, INFO, re-INVITE and UPDATE in a dialog, and takes its ACKs."""

    def __init__(self, core: AgentCore, upkeep: CallUpkeep) -> None:
        self._core = core
        self._upkeep = upkeep

    def answer(self, request: Request, call: Call, source: Address, now: float) -> Response:
        match request.method:
            case "BYE":
                call.remote_bye(request)
                return response_to(request, 200)
            case "INFO":
                return self._answer_info(request, call)
            case "INVITE":
                return self._answer_reinvite(request, call, source, now)
            case "UPDATE":
                return self._answer_update(request, call, now)
        return uas.unsupported_method(request, self._core.config.user_agent)

    def ack(self, request: Request, call: Call | None) -> None:
        """An ACK outside any transaction: the one of a 2xx we sent (§13.3.1.4)."""
        if call is None:
            self._core.stats["stray_ack"] += 1
            return
        self._upkeep.acked(call.call_id)
        if request.body and request.content_type == "application/sdp":
            # The answer to the offer we put in our 2xx to a body-less re-INVITE.
            try:
                media = parse_answer(request.body, codecs=call.local_media.codecs)
            except RemoteProtocolError:
                self._core.stats["bad_sdp"] += 1
                return
            call.set_media(media)
            self._core.emit(CallMediaChanged(call.call_id, media))

    def _interval_too_small(self, request: Request) -> Response | None:
        """RFC 4028 §9: a re-INVITE or UPDATE asking for less than 90 s gets 422 with our
        ``Min-SE``: a tiny interval would have us refreshing (or expiring) every few
        seconds."""
        if not self._core.config.session_timers:
            return None
        asked = parse_session_expires(request)
        if asked is not None and asked.seconds < MIN_SE:
            return response_to(request, 422, headers=(("Min-SE", str(MIN_SE)),))
        return None

    def _session_headers(self, request: Request, call: Call, now: float) -> tuple[HeaderInput, ...]:
        """A re-INVITE or UPDATE from the far end that we answer 2xx refreshes the session
        (RFC 4028 §9, §10): our 2xx repeats the interval it asked for, with
        ``Require: timer`` when it is the refresher."""
        answer = call.remote_refresh(request, now)
        if answer is None:
            return ()
        headers: list[HeaderInput] = [("Session-Expires", answer.format())]
        if answer.refresher == "uac" and "timer" in tokens(request, "Supported"):
            headers.append(("Require", "timer"))
        return tuple(headers)

    def _answer_update(self, request: Request, call: Call, now: float) -> Response:
        """UPDATE (RFC 3311) in our dialog: a session refresh without SDP (200), or an
        offer answered like a re-INVITE's, without the 2xx retransmissions of INVITE."""
        if too_small := self._interval_too_small(request):
            return too_small
        contact = (("Contact", our_contact(self._core.config)),)
        if not request.body:
            session = self._session_headers(request, call, now)
            return response_to(request, 200, headers=(*contact, *session))
        try:
            answer = answer_offer(call.local_media, request.body)
        except RemoteProtocolError:
            return response_to(request, 488)
        session = self._session_headers(request, call, now)
        call.local_media = answer.local
        call.set_media(answer.remote)
        self._core.emit(CallMediaChanged(call.call_id, answer.remote))
        sdp = (("Content-Type", "application/sdp"),)
        return response_to(request, 200, headers=(*contact, *session, *sdp), body=answer.body)

    def _answer_info(self, request: Request, call: Call) -> Response:
        digit = uas.parse_info_digit(request)
        if digit is not None:
            self._core.emit(DigitReceived(call.call_id, digit.digit, digit.duration_ms))
        status = uas.info_status(request)
        headers = (("Accept", "application/dtmf-relay, application/dtmf"),) if status == 415 else ()
        return response_to(request, status, headers=headers)

    def _answer_reinvite(
        self, request: Request, call: Call, source: Address, now: float
    ) -> Response:
        """Answer with the current session: hold, direct-media moves, session refreshes."""
        if too_small := self._interval_too_small(request):
            return too_small
        config = self._core.config
        sdp = (("Content-Type", "application/sdp"),)
        if request.body:
            try:
                answer = answer_offer(call.local_media, request.body)
            except RemoteProtocolError:
                return response_to(request, 488)  # a failed re-INVITE refreshes nothing
            call.local_media = answer.local
            call.set_media(answer.remote)
            self._core.emit(CallMediaChanged(call.call_id, answer.remote))
            body = answer.body
        else:
            body = call.local_media.sdp()  # delayed offer: their answer comes in the ACK
        contact = (("Contact", our_contact(config)), *self._session_headers(request, call, now))
        response = response_to(request, 200, headers=(*contact, *sdp), body=body)
        if not config.reliable and call.dialog is not None:
            hop = call.dialog.next_hop(config.transport)
            # A named next hop: the address the re-INVITE came from (no DNS here).
            destination = hop.address() if hop.numeric else source
            self._upkeep.resend_until_ack(call.call_id, response.serialize(), destination, now)
        return response
