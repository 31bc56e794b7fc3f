"""How fast the sans-IO SIP message layer parses and serializes.

Run from the repository root: /tmp/venv/bin/python -m benchmarks.sip_message
Prints messages per second for parse_message (with its header validation) and serialize()
on the golden INVITE-with-SDP and its 200 OK, a stream framer pass, and the cost of a peer
trickling a 60 KB message one byte per TCP segment.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from voipalert.sip import parse_message
from voipalert.sip.framing import StreamFramer

DATA = Path(__file__).parent.parent / "tests" / "data" / "sip"
ROUNDS = 20_000


def rate(label: str, count: int, seconds: float) -> None:
    print(f"{label:<38} {count / seconds:>10,.0f} msg/s  ({seconds * 1e6 / count:.1f} µs each)")


def main() -> None:
    invite = (DATA / "invite_offer.sip").read_bytes()
    ok = (DATA / "asterisk_200_invite.sip").read_bytes()
    print(f"cpu_count={os.cpu_count()} rounds={ROUNDS}")
    for label, data in (("parse INVITE+SDP (694 B)", invite), ("parse 200 OK+SDP (955 B)", ok)):
        start = time.perf_counter()
        for _ in range(ROUNDS):
            parse_message(data)
        rate(label, ROUNDS, time.perf_counter() - start)
    message = parse_message(invite)
    start = time.perf_counter()
    for _ in range(ROUNDS):
        message.serialize()
    rate("serialize INVITE+SDP", ROUNDS, time.perf_counter() - start)
    framer = StreamFramer()
    stream = (invite + ok) * 100
    start = time.perf_counter()
    for _ in range(ROUNDS // 200):
        for offset in range(0, len(stream), 1400):  # TCP segments of one MTU
            framer.feed(stream[offset : offset + 1400])
            while framer.next_event() is not None:
                pass
    rate("StreamFramer, 1400-byte segments", ROUNDS, time.perf_counter() - start)
    # A peer trickling one byte per segment must cost linear, not quadratic, CPU.
    big = invite.replace(b"Content-Length: 234", b"Content-Length: 60234") + b"x" * 60_000
    start = time.perf_counter()
    for byte in range(len(big)):
        framer.feed(big[byte : byte + 1])
        framer.next_event()
    elapsed = time.perf_counter() - start
    print(f"{'StreamFramer, 60 KB one byte at a time':<38} {elapsed * 1e3:>10,.1f} ms total")


if __name__ == "__main__":
    main()
