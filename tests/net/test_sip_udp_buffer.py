"""The SIP UDP socket asks for a receive buffer big enough for a burst of answers
(docs/capacity.md §3): the kernel grants up to net.core.rmem_max, doubled (socket(7))."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from voipalert.net.sip_transport import SIP_UDP_RECEIVE_BUFFER_BYTES, _udp_socket


@pytest.mark.skipif(sys.platform != "linux", reason="reads net.core.rmem_max")
def test_the_sip_socket_gets_the_largest_receive_buffer_the_kernel_allows() -> None:
    cap = int(Path("/proc/sys/net/core/rmem_max").read_text())
    sock = _udp_socket("127.0.0.1", 0)
    try:
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    finally:
        sock.close()
    assert granted >= 2 * min(SIP_UDP_RECEIVE_BUFFER_BYTES, cap)
