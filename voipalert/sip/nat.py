"""NAT traversal without STUN or outbound (docs/sip.md §4.8): RFC 3581 ``rport``, a Contact
fixed from what the registrar saw, and keep-alives that hold the NAT binding between calls.

* Every request carries an empty ``rport`` in its Via (``dialog.our_via``); the server
  answers to the packet's source and writes that source into the Via as ``received`` (the
  address, only when it differs from the sent-by host) and ``rport=`` (the port)
  (RFC 3581 §4). That pair is our address as seen from the far side of the NAT.
* When a response from the registrar (to our REGISTER or a keep-alive OPTIONS) shows a
  mapped address other than our Contact's, the Contact moves to the mapped address and we
  register again at once, removing the old binding in the same REGISTER (``expires=0``).
  That is what RFC 5626 §4.4 does when a flow's mapped address changes, without the rest
  of outbound (no ``reg-id``/``+sip.instance``): the PBX then sends INVITEs for us to the
  NAT's public side. At most one move per ``MIN_CONTACT_REWRITE_SECONDS`` (keepalive.py).
  UDP only: on TCP/TLS the source port is the connection's ephemeral port, reachable only
  through that connection (outbound or a PBX alias), so the Contact keeps our listening
  address there.
* Keep-alives, every ``keepalive_seconds`` (0 = none), to the registrar:
  UDP — an OPTIONS request (any answer refreshes the binding, and its Via shows the mapped
  address, so a NAT that rebinds is noticed at the next one); RFC 5626 §4.4.2's UDP
  keep-alive is STUN, which needs a STUN server on the registrar's port that PBXs rarely
  run. TCP/TLS — a CRLFCRLF ping on the connection (RFC 5626 §4.4.1, §3.5.1); the server
  answers with a CRLF pong, and a ping without a pong in 10 s means the flow is dead:
  we register again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from voipalert.sip.fields import Via

Address = tuple[str, int]
PING: Final = b"\r\n\r\n"
PONG_TIMEOUT_SECONDS: Final = 10.0
"""RFC 5626 §4.4.1: no pong within 10 s of a ping, the flow has failed."""


def mapped_address(via: Via) -> Address | None:
    """Our address as the server saw it (RFC 3581 §4): ``received`` (else the sent-by
    host) and ``rport=``; None when the server did not fill in ``rport`` (it does not
    support RFC 3581, so the Via tells us nothing about the port)."""
    port = via.rport
    if port is None:
        return None
    return (via.received or via.host, port)


@dataclass(slots=True)
class KeepAliveSchedule:
    """When the next keep-alive is due, and the pong a TCP/TLS ping still waits for."""

    interval: float
    next_at: float | None = None
    pong_due: float | None = None
    pinged: Address | None = None

    def start(self, now: float) -> None:
        if self.interval > 0 and self.next_at is None:
            self.next_at = now + self.interval

    def stop(self) -> None:
        self.next_at = self.pong_due = None
        self.pinged = None

    def due(self, now: float) -> bool:
        if self.next_at is None or now < self.next_at:
            return False
        self.next_at = now + self.interval
        return True

    def pinged_at(self, destination: Address, now: float) -> None:
        if self.pong_due is None:
            self.pong_due = now + PONG_TIMEOUT_SECONDS
            self.pinged = destination

    def pong(self, source: Address) -> bool:
        """A pong from ``source``: True when it answers the ping we wait on."""
        if self.pinged is not None and source == self.pinged:
            self.pong_due = None
            self.pinged = None
            return True
        return False

    def pong_overdue(self, now: float) -> Address | None:
        """The destination whose ping went unanswered for 10 s (once), or None."""
        if self.pong_due is not None and now >= self.pong_due:
            dead, self.pinged, self.pong_due = self.pinged, None, None
            return dead
        return None

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.next_at, self.pong_due) if d is not None]
        return min(deadlines, default=None)
