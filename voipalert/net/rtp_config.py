"""The plain values of an RTP session: its configuration and counters (its error is in
``net.errors``)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from voipalert.codec import Codec
from voipalert.media.receiver import Address
from voipalert.sip.sdes import SrtpKeys


@dataclass(frozen=True, slots=True)
class RtpSessionConfig:
    """What the SDP exchange decided (the SIP layer maps its ``MediaParams`` onto this)."""

    local_port: int
    remote_addr: Address
    codec: Codec
    payload_type: int
    telephone_event_pt: int | None
    ptime_ms: int = 20
    local_host: str = "127.0.0.1"
    latching: bool = True
    inband_dtmf: bool = True
    echo_canceller: bool = True
    """Find an echo of our audio and cancel it before the in-band detector (media.echo_line)."""
    dtmf_window_s: float = 0.5
    rtcp_interval_s: float = 5.0
    """Mean interval between our RTCP reports (RFC 3550 §6.2's minimum; randomised)."""
    latch_hosts: frozenset[str] = frozenset()
    """Hosts besides the SDP host a far end behind NAT may latch from: the host the
    call's SIP signalling came from (see ``media.receiver``)."""
    srtp: SrtpKeys | None = None
    """SDES keys (RFC 4568): every RTP and RTCP packet is SRTP/SRTCP both ways."""


@dataclass(slots=True)
class SenderStats:
    packets: int = 0
    octets: int = 0
    skipped_slots: int = 0
    events_sent: int = 0
    send_dropped: int = 0
    bad_info_digits: int = 0
    transport_errors: int = 0
    rtcp_packets_received: int = 0
    rtcp_refused: int = 0
    """RTCP from a host other than the call's media peer."""
    rtcp_malformed: int = 0
    drained_before_answer: int = 0
    srtp_rejected: int = 0
    """SRTP packets that failed authentication or replayed (dropped before the receiver)."""
    srtcp_rejected: int = 0
    """Datagrams queued on the ports before the call was answered, discarded unread."""


def normalise_address(addr: tuple[object, ...]) -> Address:
    host, port = str(addr[0]), int(str(addr[1]))
    try:
        host = ipaddress.ip_address(host).compressed
    except ValueError:
        pass  # a name from the SDP: compared as written
    return host, port
