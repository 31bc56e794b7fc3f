"""SDP offer/answer for one G.711 audio stream (RFC 3264, RFC 8866, RFC 3551, RFC 4733).

Public API:

* ``Direction`` (``SENDRECV``, ``SENDONLY``, ``RECVONLY``, ``INACTIVE``).
* ``LocalMedia(address=..., port=..., session_id=..., session_version=1,
  codecs=(PCMU, PCMA), dtmf_payload_type=101, ptime_ms=20, direction=SENDRECV)`` — what we
  offer; ``sdp()`` renders it exactly as docs/sip.md §4.6 shows (``c=`` is never
  0.0.0.0: an unspecified address raises ``LocalProtocolError``).
  ``new_local_media(address, port, *, rng, codecs=...)`` draws the random 62-bit session id.
* ``parse_answer(body, *, codecs=(PCMU, PCMA)) -> MediaParams`` — the remote side of the
  first audio stream: address (media-level ``c=`` over session-level), port, the first codec
  of *their* list that we support with *their* payload type, their telephone-event payload
  type at 8000 Hz, ptime/maxptime, direction. Port 0 (rejected), no common codec, another
  transport (DTLS, AVPF) and malformed SDP raise ``RemoteProtocolError``. RTP/SAVP is
  read, with the stream's ``a=crypto`` values in ``crypto`` for ``sdes.negotiate``. LF-only lines,
  static payload types without ``a=rtpmap`` and unknown attributes are fine.
* ``answer_offer(local, offer) -> SdpAnswer(body, local, remote)`` — our answer to a
  re-INVITE's offer: same session id, the offered codecs we support, the offerer's
  telephone-event number, the mirrored direction; ``o=`` version + 1 only when the SDP differs
  from the one ``local`` describes (RFC 3264 §8). An unusable offer (port 0, no common codec)
  raises ``RemoteProtocolError``: answer the re-INVITE with 488. So does any SRTP in a
  re-offer or a call that offered SRTP: keys are not renegotiated within a call.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Final

from voipalert.codec import Codec
from voipalert.sip.errors import LocalProtocolError, RemoteProtocolError
from voipalert.sip.sdes import AVP, MAX_CRYPTO_LINES, SAVP, SdesOffer

CLOCK_RATE_HZ: Final = 8000
TELEPHONE_EVENT: Final = "telephone-event"
MAX_SDP_BYTES: Final = 16_384
_MAX_SESSION_ID: Final = 2**63 - 1


class Direction(Enum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    def mirrored(self) -> Direction:
        """The direction an answer gives to an offer with this one (RFC 3264 §6.1)."""
        return _MIRROR[self]


_MIRROR: Final = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}
_HOST_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
_STATIC_TYPES: Final = {codec.payload_type: (codec.encoding, CLOCK_RATE_HZ) for codec in Codec}


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalMedia:
    """Our side of the session: what ``sdp()`` offers or answers."""

    address: str
    port: int
    session_id: int
    session_version: int = 1
    codecs: tuple[Codec, ...] = (Codec.PCMU, Codec.PCMA)
    dtmf_payload_type: int | None = 101
    ptime_ms: int = 20
    direction: Direction = Direction.SENDRECV
    sdes: SdesOffer | None = None
    """SRTP keys offered in ``a=crypto`` (RFC 4568); ``None`` for plain RTP."""

    def sdp(self) -> bytes:
        ip = _local_address(self.address)
        family = "IP4" if ip.version == 4 else "IP6"
        if not 0 < self.port <= 65535 or self.port % 2:
            raise LocalProtocolError(f"RTP port {self.port} must be even and 2-65534")
        for value in (self.session_id, self.session_version):
            if not 0 <= value <= _MAX_SESSION_ID:
                raise LocalProtocolError(f"o= field {value} out of range")
        if not self.codecs or not 0 < self.ptime_ms <= 1000:
            raise LocalProtocolError("an offer needs at least one codec and a sane ptime")
        pts = [codec.payload_type for codec in self.codecs]
        lines = [
            "v=0",
            f"o=- {self.session_id} {self.session_version} IN {family} {ip}",
            "s=-",
            f"c=IN {family} {ip}",
            "t=0 0",
        ]
        lines += [f"a=rtpmap:{c.payload_type} {c.encoding}/{CLOCK_RATE_HZ}" for c in self.codecs]
        dtmf = self.dtmf_payload_type
        if dtmf is not None:
            if not 96 <= dtmf <= 127:
                raise LocalProtocolError(f"telephone-event payload type {dtmf} is not 96-127")
            pts.append(dtmf)
            lines += [f"a=rtpmap:{dtmf} {TELEPHONE_EVENT}/{CLOCK_RATE_HZ}", f"a=fmtp:{dtmf} 0-16"]
        transport = AVP if self.sdes is None else self.sdes.transport
        lines.insert(5, f"m=audio {self.port} {transport} {' '.join(map(str, pts))}")
        if self.sdes is not None:
            lines.append(f"a={self.sdes.attribute()}")
        lines += [f"a=ptime:{self.ptime_ms}", f"a={self.direction.value}", ""]
        return "\r\n".join(lines).encode()


def _local_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise LocalProtocolError(f"media address {address!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        # ipaddress accepts any text after '%', CR and LF included: never let it through.
        raise LocalProtocolError(f"media address {address!r} has an IPv6 zone")
    if ip.is_unspecified:
        raise LocalProtocolError(f"refusing to advertise the unspecified address {address}")
    return ip


def new_local_media(
    address: str,
    port: int,
    *,
    rng: random.Random,
    codecs: tuple[Codec, ...] = (Codec.PCMU, Codec.PCMA),
    dtmf_payload_type: int | None = 101,
    ptime_ms: int = 20,
    sdes: SdesOffer | None = None,
) -> LocalMedia:
    """A new session with a random 62-bit id (fits the signed 64-bit some parsers use)."""
    return LocalMedia(
        address=address,
        port=port,
        session_id=rng.getrandbits(62),
        codecs=codecs,
        dtmf_payload_type=dtmf_payload_type,
        ptime_ms=ptime_ms,
        sdes=sdes,
    )


@dataclass(frozen=True, slots=True)
class MediaParams:
    """What the remote side of the audio stream wants: where to send and how."""

    address: str
    port: int
    codec: Codec
    payload_type: int
    telephone_event_pt: int | None
    ptime_ms: int | None
    maxptime_ms: int | None
    direction: Direction
    session_id: str
    session_version: int
    transport: str = AVP
    crypto: tuple[str, ...] = ()
    """The stream's ``a=crypto`` values as written; ``sdes.negotiate`` judges them."""

    @property
    def remote_receives(self) -> bool:
        """False when we must not send: the remote is sendonly/inactive or on old-style hold
        (``c=0.0.0.0``, RFC 3264 §8.4)."""
        if self.direction in (Direction.SENDONLY, Direction.INACTIVE):
            return False
        return self.address not in ("0.0.0.0", "::")

    @property
    def remote_sends(self) -> bool:
        return self.direction in (Direction.SENDRECV, Direction.SENDONLY)


@dataclass(frozen=True, slots=True)
class SdpAnswer:
    body: bytes
    local: LocalMedia
    remote: MediaParams


@dataclass(slots=True)
class _Section:
    """The attributes of the session or of one m= section."""

    connection: str | None = None
    direction: Direction | None = None
    ptime: int | None = None
    maxptime: int | None = None
    media: tuple[str, int, str, tuple[int, ...]] | None = None
    rtpmap: dict[int, tuple[str, int]] | None = None
    crypto: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Audio:
    session: _Section
    media: _Section
    origin: tuple[str, int]

    @property
    def formats(self) -> list[tuple[int, str, int]]:
        """(payload type, encoding upper-case, clock rate) in the remote's order."""
        assert self.media.media is not None
        rtpmap = self.media.rtpmap or {}
        out = []
        for pt in self.media.media[3]:
            name, rate = rtpmap.get(pt) or _STATIC_TYPES.get(pt, ("", 0))
            out.append((pt, name.upper(), rate))
        return out

    def telephone_event_pt(self) -> int | None:
        return next(
            (
                pt
                for pt, name, rate in self.formats
                if name == TELEPHONE_EVENT.upper() and rate == CLOCK_RATE_HZ
            ),
            None,
        )


def parse_answer(body: bytes, *, codecs: Sequence[Codec] = (Codec.PCMU, Codec.PCMA)) -> MediaParams:
    """The remote parameters of the first audio stream of an SDP answer (or offer)."""
    audio = _parse_audio(body)
    return _media_params(audio, codecs)


def _media_params(audio: _Audio, codecs: Sequence[Codec]) -> MediaParams:
    assert audio.media.media is not None
    _, port, _, _ = audio.media.media
    wanted = {codec.encoding: codec for codec in codecs}
    chosen = next(
        (
            (pt, wanted[name])
            for pt, name, rate in audio.formats
            if name in wanted and rate == CLOCK_RATE_HZ
        ),
        None,
    )
    if chosen is None:
        offered = " ".join(str(pt) for pt in audio.media.media[3])
        raise RemoteProtocolError(f"SDP: no common codec (offered payload types {offered})")
    address = audio.media.connection or audio.session.connection
    if address is None:
        raise RemoteProtocolError("SDP: no c= line for the audio stream")
    return MediaParams(
        address=address,
        port=port,
        codec=chosen[1],
        payload_type=chosen[0],
        telephone_event_pt=audio.telephone_event_pt(),
        ptime_ms=audio.media.ptime or audio.session.ptime,
        maxptime_ms=audio.media.maxptime or audio.session.maxptime,
        direction=audio.media.direction or audio.session.direction or Direction.SENDRECV,
        session_id=audio.origin[0],
        session_version=audio.origin[1],
        transport=audio.media.media[2].upper(),
        crypto=tuple(audio.media.crypto),
    )


def answer_offer(local: LocalMedia, offer: bytes) -> SdpAnswer:
    """Answer a (re-)INVITE offer with our current session (RFC 3264 §6.1, §8)."""
    audio = _parse_audio(offer)
    remote = _media_params(audio, local.codecs)
    if local.sdes is not None or remote.transport == SAVP or remote.crypto:
        # Keys are set once per call: a re-offer would have to re-key the running session
        # (RFC 4568 §7.1.4). A 488 leaves the session as it was (RFC 3261 §14.2).
        raise RemoteProtocolError("SDP: SRTP re-negotiation in a re-INVITE is not supported")
    offered = {name for _, name, rate in audio.formats if rate == CLOCK_RATE_HZ}
    candidate = replace(
        local,
        codecs=tuple(codec for codec in local.codecs if codec.encoding in offered),
        dtmf_payload_type=audio.telephone_event_pt(),
        direction=remote.direction.mirrored(),
    )
    if candidate.sdp() != local.sdp():
        candidate = replace(candidate, session_version=local.session_version + 1)
    return SdpAnswer(candidate.sdp(), candidate, remote)


def _parse_audio(body: bytes) -> _Audio:
    if len(body) > MAX_SDP_BYTES:
        raise RemoteProtocolError(f"SDP of {len(body)} bytes exceeds {MAX_SDP_BYTES}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"SDP is not UTF-8 (byte {exc.start})") from None
    # RFC 8866 §5 wants CRLF; LF alone is common enough to accept.
    lines = [line.rstrip("\r") for line in text.split("\n")]
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line]
    if not numbered or numbered[0][1] != "v=0":
        raise RemoteProtocolError("SDP must start with v=0")
    session = current = _Section()
    origin: tuple[str, int] | None = None
    audio: _Section | None = None
    for number, line in numbered[1:]:
        kind, value = _split_line(line, number)
        if kind == "m":
            current = _Section(media=_parse_m(value, number), rtpmap={})
            if audio is None and current.media is not None and current.media[0] == "audio":
                audio = current
        elif kind == "o" and current is session:
            origin = _parse_o(value, number)
        elif kind == "c":
            current.connection = _parse_c(value, number)
        elif kind == "a":
            _parse_attribute(current, value, number)
    return _check_audio(session, audio, origin)


def _split_line(line: str, number: int) -> tuple[str, str]:
    if len(line) < 2 or line[1] != "=" or not "a" <= line[0] <= "z":
        raise RemoteProtocolError(f"SDP line {number}: {line[:40]!r} is not 'x=value'")
    return line[0], line[2:]


def _check_audio(
    session: _Section, audio: _Section | None, origin: tuple[str, int] | None
) -> _Audio:
    if origin is None:
        raise RemoteProtocolError("SDP: no o= line")
    if audio is None or audio.media is None:
        raise RemoteProtocolError("SDP: no audio stream")
    if audio.media[1] == 0:
        raise RemoteProtocolError("SDP: audio stream rejected (port 0)")
    if audio.media[2].upper() not in (AVP, SAVP):
        raise RemoteProtocolError(f"SDP: unsupported media transport {audio.media[2]}")
    return _Audio(session, audio, origin)


def _number(text: str, low: int, high: int, what: str) -> int:
    digits_ok = text.isascii() and text.isdigit() and len(text.lstrip("0")) <= 20
    if not digits_ok or not low <= int(text) <= high:
        raise RemoteProtocolError(f"{what}: {text[:40]!r} is not a number in {low}-{high}")
    return int(text)


def _parse_o(value: str, number: int) -> tuple[str, int]:
    fields = value.split()
    if len(fields) != 6:
        raise RemoteProtocolError(f"SDP line {number}: o= needs 6 fields")
    _number(fields[1], 0, 2**64 - 1, f"SDP line {number}: session id")
    return fields[1], _number(fields[2], 0, 2**64 - 1, f"SDP line {number}: session version")


def _parse_c(value: str, number: int) -> str:
    fields = value.split()
    if len(fields) != 3 or fields[0] != "IN" or fields[1] not in ("IP4", "IP6"):
        raise RemoteProtocolError(f"SDP line {number}: bad c= line {value[:60]!r}")
    address = fields[2].split("/", 1)[0]
    try:
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
            raise ValueError("zone")
    except ValueError:
        # RFC 8866 allows a fully qualified domain name here.
        if not address or set(address) - _HOST_CHARS:
            raise RemoteProtocolError(f"SDP line {number}: bad address {address!r}") from None
        return address
    if (ip.version == 4) != (fields[1] == "IP4"):
        raise RemoteProtocolError(f"SDP line {number}: {address} is not {fields[1]}")
    return str(ip)


def _parse_m(value: str, number: int) -> tuple[str, int, str, tuple[int, ...]]:
    fields = value.split()
    if len(fields) < 3:
        raise RemoteProtocolError(f"SDP line {number}: m= needs media, port and transport")
    what = f"SDP line {number}"
    port = _number(fields[1].split("/", 1)[0], 0, 65535, f"{what}: port")
    formats: tuple[int, ...] = ()
    if "RTP" in fields[2].upper():
        formats = tuple(_number(pt, 0, 127, f"{what}: payload type") for pt in fields[3:])
    return fields[0].lower(), port, fields[2], formats


def _parse_attribute(section: _Section, value: str, number: int) -> None:
    name, _, rest = value.partition(":")
    what = f"SDP line {number}: a={name}"
    if name == "rtpmap" and section.media is not None and section.media[0] == "audio":
        # Only audio rtpmaps are read: RFC 4475's video section has "a=rtpmap:31 LPC".
        assert section.rtpmap is not None
        pt_text, _, encoding = rest.partition(" ")
        parts = encoding.strip().split("/")
        if len(parts) < 2:
            raise RemoteProtocolError(f"{what}: expected 'pt name/rate'")
        pt = _number(pt_text, 0, 127, what)
        section.rtpmap[pt] = (parts[0], _number(parts[1], 1, 10**6, what))
    elif name in ("ptime", "maxptime"):
        whole = rest.strip().split(".", 1)[0]
        setattr(section, name, _number(whole, 1, 1000, what))
    elif name == "crypto" and section.media is not None and section.media[0] == "audio":
        if len(section.crypto) >= MAX_CRYPTO_LINES:
            raise RemoteProtocolError(f"SDP: more than {MAX_CRYPTO_LINES} a=crypto lines")
        section.crypto.append(rest.strip())
    elif name in _DIRECTIONS:
        section.direction = _DIRECTIONS[name]


_DIRECTIONS: Final = {direction.value: direction for direction in Direction}
