"""The sans-IO SIP core: no sockets, no asyncio, no clock reads (docs/architecture.md §3).

The message layer is re-exported here: ``parse_message``, ``Request``, ``Response``,
``response_to``, ``Headers``, ``SipUri``, ``AbsoluteUri``, ``NameAddr``, ``Via``, ``CSeq``,
``Reason`` and the errors. Digest authentication is in ``voipalert.sip.digest``, SDP in
``voipalert.sip.sdp``, TCP/TLS framing in ``voipalert.sip.framing``, branch/tag/Call-ID
minting in ``voipalert.sip.ids`` and reason phrases in ``voipalert.sip.status``.
"""

from voipalert.sip.address import NameAddr
from voipalert.sip.errors import (
    LocalProtocolError,
    RemoteProtocolError,
    SipError,
    TransactionTimeout,
    TransportError,
)
from voipalert.sip.fields import BRANCH_MAGIC_COOKIE, CSeq, Reason, Via
from voipalert.sip.headers import Headers, header_key
from voipalert.sip.message import Message, Request, Response, response_to
from voipalert.sip.parser import parse_message
from voipalert.sip.uri import AbsoluteUri, SipUri, Uri, escape_user, parse_uri

__all__ = [
    "BRANCH_MAGIC_COOKIE",
    "AbsoluteUri",
    "CSeq",
    "Headers",
    "LocalProtocolError",
    "Message",
    "NameAddr",
    "Reason",
    "RemoteProtocolError",
    "Request",
    "Response",
    "SipError",
    "SipUri",
    "TransactionTimeout",
    "TransportError",
    "Uri",
    "Via",
    "escape_user",
    "header_key",
    "parse_message",
    "parse_uri",
    "response_to",
]
