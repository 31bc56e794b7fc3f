"""The SIP UDP socket asks for a receive buffer big enough for a burst of answers
(docs/capacity.md §3): the kernel grants up to net.core.rmem_max, doubled (socket(7))."""

from __future__ import annotations

import asyncio
import random
import socket
import sys
from pathlib import Path

import pytest

from voipalert.net.sip_transport import (
    SIP_UDP_RECEIVE_BUFFER_BYTES,
    SipEndpoint,
    _udp_socket,
)
from voipalert.sip.agent import UserAgent
from voipalert.sip.config import UAConfig
from voipalert.sip.dialog import Address


@pytest.mark.skipif(sys.platform != "linux", reason="reads net.core.rmem_max")
def test_the_sip_socket_gets_the_largest_receive_buffer_the_kernel_allows() -> None:
    cap = int(Path("/proc/sys/net/core/rmem_max").read_text())
    sock = _udp_socket("127.0.0.1", 0)
    try:
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    finally:
        sock.close()
    assert granted >= 2 * min(SIP_UDP_RECEIVE_BUFFER_BYTES, cap)


async def test_a_burst_of_datagrams_is_read_in_a_few_turns_of_the_loop() -> None:
    """asyncio reads one datagram per socket per turn; a turn carrying hundreds of calls'
    audio takes tens of milliseconds, so 200 answers arriving together took seconds to read
    (docs/capacity.md §5). The endpoint reads what is queued, up to SIP_READS_PER_TURN
    datagrams and SIP_READ_BUDGET_SECONDS a turn."""
    seen: list[bytes] = []

    def trace(direction: str, data: bytes, peer: Address) -> None:
        if direction == "recv":
            seen.append(data)

    config = UAConfig(user="u", domain="127.0.0.1", local_host="127.0.0.1", local_port=0)
    agent = UserAgent(config, rng=random.Random(1))
    endpoint = SipEndpoint(agent, ("127.0.0.1", 0), lambda _: None, trace)
    await endpoint.start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert endpoint._udp_sock is not None
        target = endpoint._udp_sock.getsockname()
        for n in range(200):  # queued while the loop does not run: stray answers, dropped
            sender.sendto(
                f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK{n}\r\n"
                f"Call-ID: {n}\r\nCSeq: 1 BYE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n"
                "Content-Length: 0\r\n\r\n".encode(),
                target,
            )
        turns = 0
        while len(seen) < 200 and turns < 200:
            await asyncio.sleep(0)
            turns += 1
        assert len(seen) == 200
        # One a turn would take 200; a slow machine may hit the time budget of a turn.
        assert turns < 100, f"{turns} turns for 200 datagrams"
    finally:
        sender.close()
        await endpoint.close()
