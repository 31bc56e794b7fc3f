from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.requires import need
from voipalert.net.ports import PortRangeExhaustedError, RtpPortAllocator, RtpPorts


def _free_even_range(width: int) -> int:
    """A start port where ``width`` consecutive ports look free right now."""
    for start in range(41000, 60000, 64):
        socks = []
        try:
            for p in range(start, start + width):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return start
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range on 127.0.0.1")


@pytest.fixture
def base() -> int:
    return _free_even_range(10)


@pytest.fixture
def held() -> Iterator[list[RtpPorts]]:
    pairs: list[RtpPorts] = []
    yield pairs
    for pair in pairs:
        pair.close()


def _blocker(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    return s


def test_pairs_are_even_and_bound(base: int, held: list[RtpPorts]) -> None:
    alloc = RtpPortAllocator("127.0.0.1", base, base + 9)
    pair = alloc.allocate()
    held.append(pair)
    assert pair.port == base and pair.port % 2 == 0 and pair.rtcp_port == base + 1
    assert pair.rtp.getsockname() == ("127.0.0.1", base)
    assert pair.rtcp.getsockname() == ("127.0.0.1", base + 1)
    assert pair.rtp.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
    assert alloc.in_use == 1


def test_an_odd_lower_bound_starts_at_the_next_even_port(base: int, held: list[RtpPorts]) -> None:
    pair = RtpPortAllocator("127.0.0.1", base + 1, base + 9).allocate()
    held.append(pair)
    assert pair.port == base + 2


def test_busy_ports_are_skipped_without_reuse(base: int, held: list[RtpPorts]) -> None:
    rtp_blocker = _blocker(base)  # someone else holds the first RTP port
    rtcp_blocker = _blocker(base + 3)  # and the second pair's RTCP port
    try:
        alloc = RtpPortAllocator("127.0.0.1", base, base + 9)
        pair = alloc.allocate()
        held.append(pair)
        assert pair.port == base + 4
    finally:
        rtp_blocker.close()
        rtcp_blocker.close()


def test_exhaustion_is_an_error_and_release_frees(base: int, held: list[RtpPorts]) -> None:
    alloc = RtpPortAllocator("127.0.0.1", base, base + 5)  # pairs at base, base+2, base+4
    pairs = [alloc.allocate() for _ in range(3)]
    held.extend(pairs)
    assert sorted(p.port for p in pairs) == [base, base + 2, base + 4]
    with pytest.raises(PortRangeExhaustedError, match="no free RTP port pair") as info:
        alloc.allocate()
    assert isinstance(info.value, OSError)
    alloc.release(pairs[1])
    alloc.release(pairs[1])  # idempotent
    again = alloc.allocate()
    held.append(again)
    assert again.port == base + 2
    assert alloc.in_use == 3


def test_the_search_rotates_so_a_released_port_waits(base: int, held: list[RtpPorts]) -> None:
    alloc = RtpPortAllocator("127.0.0.1", base, base + 9)
    first = alloc.allocate()
    alloc.release(first)
    second = alloc.allocate()
    held.append(second)
    assert second.port == base + 2


def test_ipv6_loopback(held: list[RtpPorts]) -> None:
    need(socket.has_ipv6, "no IPv6 in this kernel")
    start = 41000
    try:
        pair = RtpPortAllocator("::1", start, start + 99).allocate()
    except OSError as exc:  # ::1 not configured
        need(False, f"::1 unusable here: {exc}")
        raise
    held.append(pair)
    assert pair.rtp.family == socket.AF_INET6


@pytest.mark.parametrize(("low", "high"), [(5000, 5000), (5001, 5002), (0, 10), (60000, 70000)])
def test_ranges_without_a_pair_are_refused(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="no even/odd port pair"):
        RtpPortAllocator("127.0.0.1", low, high)


def test_host_must_be_an_address() -> None:
    with pytest.raises(ValueError):
        RtpPortAllocator("localhost", 5000, 5010)
