"""The SIP branch of the exception tree (docs/architecture.md §4, h11's local/remote split).

* ``LocalProtocolError``: *we* were about to build or send something that is not valid SIP
  (a control character in a header value, a bad method token). It is a bug or hostile text
  reaching the serializer, never the peer's fault.
* ``RemoteProtocolError``: the peer sent something malformed. It subclasses ``ValueError``;
  ``status_hint`` is the response a UAS should answer a request with (400, 505, 513, ...),
  and ``partial`` is the message as far as it could be parsed — set when the framing and the
  start line were fine but a header failed validation, so the layer above can still answer
  that request with ``response_to(exc.partial, exc.status_hint)``.
* ``TransactionTimeout`` and ``TransportError`` are raised by the layers above the message
  layer; they live here so the whole tree is in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voipalert.errors import VoipAlertError

if TYPE_CHECKING:
    from voipalert.sip.message import Request, Response


class SipError(VoipAlertError):
    """Base class of every SIP error."""


class LocalProtocolError(SipError):
    """We tried to build or serialize something that is not valid SIP."""


class RemoteProtocolError(SipError, ValueError):
    """The peer sent malformed SIP (or SDP). The message says exactly what was wrong."""

    def __init__(
        self,
        message: str,
        *,
        status_hint: int = 400,
        partial: Request | Response | None = None,
    ) -> None:
        super().__init__(message)
        self.status_hint = status_hint
        self.partial = partial


class TransactionTimeout(SipError):
    """A client transaction ended with Timer B or Timer F (RFC 3261 §17.1)."""


class TransportError(SipError, ConnectionError):
    """The transport under a transaction failed (ICMP unreachable, connection reset)."""
