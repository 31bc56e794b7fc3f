"""An INVITE someone sends us (call-in, docs/call-in.md): what we check before answering,
the dialog it creates on our side, and who it claims to come from. Pure functions.

* The offer must be in the INVITE (RFC 3261 §13.3.1: we answer it in the 2xx). An INVITE
  without SDP (a delayed offer, §13.2.1) is refused 488 rather than offered our media in
  the 2xx: the call-in menu is for phones and PBXs, which all send offers, and refusing
  keeps the state we hold for an unknown caller to one transaction. An offer with no codec
  in common, or SRTP (call-in answers plain RTP only), gets 488 too (RFC 3261 §13.3.1.3).
* The dialog (§12.1.1): route set = the Record-Route values in order, remote target = the
  Contact, remote tag = the From tag, local tag = the To tag of our responses.
* Identity: the From URI is whatever the sender wrote. ``P-Asserted-Identity`` (RFC 3325
  §9.1) is believed only from a trusted host (the PBX that authenticated the caller).
"""

from __future__ import annotations

from typing import Final

from voipalert.codec import Codec
from voipalert.sip.address import NameAddr
from voipalert.sip.dialog import Dialog
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.message import Request
from voipalert.sip.sdp import LocalMedia, answer_offer
from voipalert.sip.uri import SipUri

SDP: Final = "application/sdp"


def offer_problem(
    request: Request, codecs: tuple[Codec, ...] = (Codec.PCMU, Codec.PCMA)
) -> str | None:
    """Why the INVITE's offer cannot be answered (488), or None."""
    if not request.body or request.content_type != SDP:
        return "no SDP offer in the INVITE"
    probe = LocalMedia(address="127.0.0.1", port=2, session_id=0, codecs=codecs)
    try:
        answer_offer(probe, request.body)
    except RemoteProtocolError as exc:
        return str(exc)
    return None


def uas_dialog(request: Request, local_tag: str, local_cseq: int) -> Dialog:
    """Our side of the dialog an INVITE creates (§12.1.1). Raises ``RemoteProtocolError``
    when the INVITE has no usable Contact or From tag."""
    contacts = request.contacts
    if len(contacts) != 1:
        raise RemoteProtocolError("INVITE must carry exactly one Contact (§8.1.1.8)")
    remote = request.from_
    if remote.tag is None:
        raise RemoteProtocolError("INVITE without a From tag")
    return Dialog(
        call_id=request.call_id,
        local=request.to.with_tag(local_tag),
        remote=remote,
        remote_target=contacts[0].uri,
        route_set=request.record_route,
        local_cseq=local_cseq,
        remote_cseq=request.cseq.seq,
    )


def caller_of(request: Request) -> SipUri | None:
    uri = request.from_.uri
    return uri if isinstance(uri, SipUri) else None


def asserted_of(request: Request) -> SipUri | None:
    """The first SIP or tel URI of ``P-Asserted-Identity`` (RFC 3325 §9.1); the caller
    decides whether the sender may assert anything."""
    for value in request.headers.values("P-Asserted-Identity"):
        try:
            uri = NameAddr.parse(value, "P-Asserted-Identity").uri
        except RemoteProtocolError:
            continue
        if isinstance(uri, SipUri):
            return uri
    return None
