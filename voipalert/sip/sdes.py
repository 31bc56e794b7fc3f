"""SDES key exchange for SRTP in SDP (RFC 4568), one suite: AES_CM_128_HMAC_SHA1_80.

Public API:

* ``SrtpPolicy`` (``OFF``, ``OPTIONAL``, ``REQUIRED``): the ``[media] srtp`` setting.
* ``SdesOffer(key, mandatory, tag=1)`` — what we offer: ``transport`` is ``RTP/SAVP``
  when SRTP is mandatory, ``RTP/AVP`` for best-effort SRTP (RFC 4568 §1 leaves that
  combination to the answerer: one that does not know ``a=crypto`` ignores it and answers
  plain RTP); ``attribute()`` is the ``crypto:`` attribute value. The key (30 bytes: the
  16-byte master key and the 14-byte master salt, RFC 4568 §6.2.1) is fresh per call;
  the caller draws it from ``secrets``.
* ``negotiate(offer, transport, crypto) -> SrtpKeys | None`` — checks the answer's
  ``a=crypto`` lines against our offer: ``None`` when the answer is plain RTP without
  one; ``SrtpKeys(local, remote)`` for an acceptable one; ``RemoteProtocolError`` with the
  reason for anything else (see docs/security.md §SRTP for what is refused and why).

Pure: no I/O. Keys are never put into an exception message or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from voipalert.sip.errors import LocalProtocolError, RemoteProtocolError

SUITE: Final = "AES_CM_128_HMAC_SHA1_80"
KEY_SALT_BYTES: Final = 30
"""128-bit master key + 112-bit master salt (RFC 4568 §6.2.1)."""
MAX_CRYPTO_LINES: Final = 16
MAX_CRYPTO_CHARS: Final = 512
MAX_LIFETIME: Final = 2**48
"""§6.2.1: the largest SRTP lifetime of this suite (libsrtp rekeys nothing by itself)."""
MIN_LIFETIME: Final = 2**24
"""Below this we refuse: we cannot rekey in a call, and 2**24 packets are 93 hours at 50
packets a second — longer than any alert call lasts, so the key never runs out."""
SAVP: Final = "RTP/SAVP"
AVP: Final = "RTP/AVP"

_TAG: Final = re.compile(r"[0-9]{1,9}")
_LIFETIME: Final = re.compile(r"(?:2\^([0-9]{1,2})|([0-9]{1,20}))")
# §6.3: session parameters that weaken protection we never accept; the others we know.
_WEAKENING: Final = frozenset({"UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP", "UNAUTHENTICATED_SRTP"})


class SrtpPolicy(Enum):
    OFF = "off"
    OPTIONAL = "optional"
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class SdesOffer:
    key: bytes = field(repr=False)
    mandatory: bool
    tag: int = 1

    def __post_init__(self) -> None:
        if len(self.key) != KEY_SALT_BYTES:
            raise LocalProtocolError(f"an SRTP master key and salt are {KEY_SALT_BYTES} bytes")
        if not 0 <= self.tag <= 999_999_999:
            raise LocalProtocolError(f"crypto tag {self.tag} is not 1-9 digits")

    @property
    def transport(self) -> str:
        return SAVP if self.mandatory else AVP

    def attribute(self) -> str:
        inline = base64.b64encode(self.key).decode("ascii")
        return f"crypto:{self.tag} {SUITE} inline:{inline}"


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """Master key||salt for each direction: ``local`` protects what we send (our offer's
    key), ``remote`` unprotects what we receive (the answer's key, RFC 4568 §6.1)."""

    local: bytes = field(repr=False)
    remote: bytes = field(repr=False)


def negotiate(offer: SdesOffer, transport: str, crypto: Sequence[str]) -> SrtpKeys | None:
    """The keys of an answer to ``offer`` (RFC 4568 §7.1.3/§7.1.4), or ``None`` for a
    plain-RTP answer. Raises ``RemoteProtocolError`` when the answer cannot be used."""
    secure = transport.upper() == SAVP
    if not crypto:
        if secure:
            raise RemoteProtocolError("SRTP: the answer is RTP/SAVP without a=crypto")
        return None
    if len(crypto) > 1:
        raise RemoteProtocolError(
            f"SRTP: the answer has {len(crypto)} a=crypto lines; §7.1.2 allows exactly one"
        )
    if secure != offer.mandatory:
        # An RTP/AVP offer answered RTP/SAVP (or the reverse): the profiles must match (§5.1).
        raise RemoteProtocolError(f"SRTP: we offered {offer.transport}, the answer is {transport}")
    key = _parse_crypto(crypto[0], offer)
    if key == offer.key:
        # Our own key reflected: both directions under one key and salt would let the
        # keystreams of the two SSRCs be compared; no honest answerer does this.
        raise RemoteProtocolError("SRTP: the answer's key is the one we offered")
    return SrtpKeys(local=offer.key, remote=key)


def _parse_crypto(value: str, offer: SdesOffer) -> bytes:
    if len(value) > MAX_CRYPTO_CHARS:
        raise RemoteProtocolError(f"SRTP: a=crypto of {len(value)} characters")
    fields = value.split()
    if len(fields) < 3:
        raise RemoteProtocolError("SRTP: a=crypto needs a tag, a suite and key parameters")
    tag, suite, key_params, *session_params = fields
    if not _TAG.fullmatch(tag) or int(tag) != offer.tag:
        # §7.1.3: the answer names the offered attribute it accepts by its tag.
        raise RemoteProtocolError(f"SRTP: crypto tag {tag[:12]!r} was not offered")
    if suite != SUITE:
        raise RemoteProtocolError(f"SRTP: crypto suite {suite[:40]!r} was not offered")
    key = _key_params(key_params)
    for param in session_params:
        _check_session_param(param)
    return key


def _key_params(key_params: str) -> bytes:
    if ";" in key_params:
        # §6.1: several keys need an MKI each; we offered one key without MKI.
        raise RemoteProtocolError("SRTP: several keys (with MKI) are not supported")
    method, _, info = key_params.partition(":")
    if method != "inline":
        raise RemoteProtocolError(f"SRTP: key method {method[:20]!r} is not 'inline'")
    key_salt, *rest = info.split("|")
    key = _key(key_salt)
    lifetime = mki = None
    if len(rest) > 2:
        raise RemoteProtocolError("SRTP: too many '|' parts in the inline key")
    for part in rest:
        if ":" in part:
            mki = part
        elif lifetime is None and mki is None:
            lifetime = part
        else:
            raise RemoteProtocolError("SRTP: bad lifetime/MKI in the inline key")
    if lifetime is not None:
        _check_lifetime(lifetime)
    if mki is not None:
        # §6.1: an MKI field means every packet carries it; libsrtp as we set it up takes
        # none, and we offered none.
        raise RemoteProtocolError("SRTP: the answer's key has an MKI; we offered none")
    return key


def _key(text: str) -> bytes:
    # 30 bytes are exactly 40 base64 characters, no padding (§6.2.1: "exactly 40 chars").
    if len(text) != 40:
        raise RemoteProtocolError(f"SRTP: the inline key is {len(text)} characters, not 40")
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise RemoteProtocolError("SRTP: the inline key is not base64") from None
    if len(key) != KEY_SALT_BYTES:  # 40 characters with '=' padding are fewer bytes
        raise RemoteProtocolError("SRTP: the inline key is not 30 bytes")
    return key


def _check_lifetime(text: str) -> None:
    match = _LIFETIME.fullmatch(text)
    if match is None:
        raise RemoteProtocolError(f"SRTP: key lifetime {text[:24]!r} is not a number or 2^n")
    value = 2 ** int(match[1]) if match[1] is not None else int(match[2])
    if value > MAX_LIFETIME:
        raise RemoteProtocolError(f"SRTP: key lifetime {text} exceeds the suite's 2^48")
    if value < MIN_LIFETIME:
        raise RemoteProtocolError(
            f"SRTP: key lifetime {text} is too short (we cannot rekey; at least 2^24)"
        )


def _check_session_param(param: str) -> None:
    name, _, value = param.partition("=")
    if name in _WEAKENING:
        raise RemoteProtocolError(f"SRTP: {name} would weaken the protection; refused")
    if name == "KDR" and value == "0":
        return  # §6.3.1: 0 is the default, no key derivation during the session
    if name == "FEC_ORDER" and value == "FEC_SRTP":
        return  # §6.3.5: the default order
    if name == "WSH" and _TAG.fullmatch(value) and 64 <= int(value) < 2**15:
        return  # §6.3.7: a replay window hint; libsrtp's own window (128) applies
    # §6.3: a session parameter we do not implement makes the attribute unusable.
    raise RemoteProtocolError(f"SRTP: session parameter {param[:40]!r} is not supported")
