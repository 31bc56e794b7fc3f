"""SRTP/SRTCP protection of one call's packets (RFC 3711) with libsrtp, via pylibsrtp.

``SrtpContext(keys)`` holds two libsrtp sessions: one with our key for what we send (any
outbound SSRC), one with the far end's key for what we receive (any inbound SSRC; libsrtp
binds the stream to the first SSRC that authenticates and keeps a 128-packet replay window
per stream). ``unprotect``/``unprotect_rtcp`` return ``None`` for a packet that fails
authentication or replays an old index: the caller counts and drops it — a forged or
replayed key press never reaches the receiver. The suite is AES_CM_128_HMAC_SHA1_80
(docs/security.md §SRTP).
"""

from __future__ import annotations

from typing import Final

import pylibsrtp

from voipalert.sip.sdes import SrtpKeys

AUTH_TAG_BYTES: Final = 10
"""HMAC-SHA1-80: the 80-bit tag each SRTP packet carries (RFC 3711 §4.2)."""


class SrtpContext:
    __slots__ = ("_rx", "_tx")

    def __init__(self, keys: SrtpKeys) -> None:
        profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
        self._tx = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=keys.local, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile
            )
        )
        self._rx = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=keys.remote, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile
            )
        )

    def protect(self, packet: bytes) -> bytes:
        return self._tx.protect(packet)

    def protect_rtcp(self, packet: bytes) -> bytes:
        return self._tx.protect_rtcp(packet)

    def unprotect(self, packet: bytes) -> bytes | None:
        try:
            return self._rx.unprotect(packet)
        except (pylibsrtp.Error, ValueError):
            return None  # authentication failure, replay, not SRTP, or over 1500 bytes

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        try:
            return self._rx.unprotect_rtcp(packet)
        except (pylibsrtp.Error, ValueError):
            return None
