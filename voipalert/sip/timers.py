"""SIP timer values (RFC 3261 §17.1.1.1, Table 4 of Appendix A; RFC 6026 §8.4).

T1 is the round-trip estimate, T2 the cap on non-INVITE retransmission intervals, T4 the
longest time a message stays in the network. Every other timer derives from them, and
several collapse to zero on a reliable transport (TCP/TLS), where the transport itself
retransmits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

T1_SECONDS: Final = 0.5
T2_SECONDS: Final = 4.0
T4_SECONDS: Final = 5.0


@dataclass(frozen=True, slots=True)
class TimerConfig:
    t1: float = T1_SECONDS
    t2: float = T2_SECONDS
    t4: float = T4_SECONDS

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError("SIP timers need 0 < T1 <= T2")
        if self.t4 <= 0:
            raise ValueError("SIP timer T4 must be positive")

    # Client INVITE (§17.1.1.2, RFC 6026 §7.2)
    @property
    def a(self) -> float:
        """First INVITE retransmission interval; doubles each time, no cap."""
        return self.t1

    @property
    def b(self) -> float:
        """INVITE transaction timeout."""
        return 64 * self.t1

    def d(self, reliable: bool) -> float:
        """Wait for final-response retransmissions after ACKing a non-2xx: at least 32 s
        on an unreliable transport, zero on a reliable one."""
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    @property
    def m(self) -> float:
        """RFC 6026: how long the Accepted state passes 2xx retransmissions up."""
        return 64 * self.t1

    # Client non-INVITE (§17.1.2.2)
    @property
    def e(self) -> float:
        """First non-INVITE retransmission interval; doubles up to T2."""
        return self.t1

    @property
    def f(self) -> float:
        return 64 * self.t1

    def k(self, reliable: bool) -> float:
        return 0.0 if reliable else self.t4

    # Server INVITE (§17.2.1, RFC 6026 §8.7)
    @property
    def g(self) -> float:
        """First retransmission interval of a non-2xx final response to INVITE."""
        return self.t1

    @property
    def h(self) -> float:
        """How long to wait for the ACK of a non-2xx final response."""
        return 64 * self.t1

    def i(self, reliable: bool) -> float:
        return 0.0 if reliable else self.t4

    @property
    def l(self) -> float:  # noqa: E743 - the RFC's name for the timer
        return 64 * self.t1

    # Server non-INVITE (§17.2.2)
    def j(self, reliable: bool) -> float:
        return 0.0 if reliable else 64 * self.t1
