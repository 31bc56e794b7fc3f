"""The audio codecs we speak: one type from the settings file to the RTP payload.

G.711 μ-law (``PCMU``) and A-law (``PCMA``), RFC 3551 §4.5.14. A ``Codec`` is named by
its SDP encoding name (RFC 3551 §6), which is also how the settings file spells it, so
the file's ``codecs = ["PCMU", "PCMA"]`` is read straight into this type; the SDP layer
(``sip.sdp``) offers and picks them, the RTP session (``net.rtp_config``) carries the one
the answer chose, and ``media.g711`` encodes with it. Pure: no I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Codec(StrEnum):
    PCMU = "PCMU"
    PCMA = "PCMA"

    @property
    def payload_type(self) -> int:
        """The static RTP payload type (RFC 3551 §6, table 4)."""
        return _STATIC_PAYLOAD_TYPE[self]

    @property
    def encoding(self) -> str:
        """The encoding name in SDP's ``a=rtpmap`` (RFC 3551 §6)."""
        return self.value


_STATIC_PAYLOAD_TYPE: Final = {Codec.PCMU: 0, Codec.PCMA: 8}
