"""The user agent's own configuration (aioquic style: the core owns its config type).

``app.py`` maps the pydantic settings onto this; the core never reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from voipalert.sip.timers import TimerConfig
from voipalert.sip.uri import SipUri

Transport = Literal["udp", "tcp", "tls"]
DEFAULT_PORTS: Final[dict[str, int]] = {"udp": 5060, "tcp": 5060, "tls": 5061}


@dataclass(frozen=True, slots=True, kw_only=True)
class UAConfig:
    user: str
    """The user part of our address-of-record (the From user, the Contact user)."""
    domain: str
    """The domain of our address-of-record (may differ from the proxy host on trunks)."""
    local_host: str
    """The address we advertise in Via and Contact: reachable by the PBX, never 0.0.0.0."""
    local_port: int
    transport: Transport = "udp"
    display_name: str | None = None
    auth_username: str | None = None
    password: str | None = field(default=None, repr=False)
    registrar: SipUri | None = None
    outbound_proxy: SipUri | None = None
    register_expires: int = 600
    user_agent: str = "voipalert"
    timers: TimerConfig = field(default_factory=TimerConfig)
    trusted_hosts: frozenset[str] | None = None
    """Hosts whose out-of-dialog requests we answer; None answers anyone (no registrar)."""
    unsolicited_per_second: float = 10.0
    """Rate limit for out-of-dialog requests (scanners); beyond it they are dropped."""
    setup_timeout: float = 32.0
    """How long an INVITE may go without a provisional other than 100 (no ringing, no
    progress) before it is cancelled as unreachable; the ring timeout starts at that
    provisional (docs/sip.md §4.5.1). 32 s is Timer B's 64*T1."""
    keepalive_seconds: float = 0.0
    """NAT keep-alive interval between calls: an OPTIONS to the registrar on UDP, a
    CRLFCRLF ping on TCP/TLS (RFC 5626 §4.4.1); 0 sends none."""
    public_host: str | None = None
    """Our address as the registrar sees it, learnt from ``received``/``rport`` in the
    Via of its responses (RFC 3581 §4): the Contact carries it instead of ``local_host``."""
    public_port: int | None = None
    reliable_provisionals: bool = True
    """Offer ``Supported: 100rel`` (RFC 3262) on INVITE. A provisional that requires it is
    PRACKed either way (docs/sip.md §4.13)."""
    session_timers: bool = True
    """Offer ``Supported: timer`` (RFC 4028) on INVITE, refresh the session when the 2xx
    makes us the refresher, and BYE a call whose far end stops refreshing."""
    max_incoming_calls: int = 0
    """Calls we answer at once (call-in, docs/call-in.md): 0 refuses every unsolicited
    INVITE with 486, as before call-in existed; beyond the limit a caller gets 486."""
    incoming_answer_seconds: float = 10.0
    """How long an incoming call may wait for its owner's answer before we refuse it 480."""
    max_calls_per_second: float = 0.0
    """New outbound calls started at most this often (a trunk's CPS limit; 0: no limit).
    The phone enforces it before dialling (``sip/call_rate.py``, docs/sip.md §4.14)."""
    max_server_transactions: int = 512
    max_server_transactions_per_source: int = 32
    """Server transactions one host that is neither trusted nor a dialog peer may hold
    (all such hosts together hold at most half of ``max_server_transactions``)."""

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    @property
    def via_transport(self) -> str:
        return self.transport.upper()
