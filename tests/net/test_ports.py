from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.requires import need
from voipalert.calls import MediaConfig, Phone
from voipalert.net.errors import PortRangeExhaustedError
from voipalert.net.ports import RtpPortAllocator, RtpPorts
from voipalert.sip.config import UAConfig
from voipalert.sip.uri import SipUri


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


def test_threads_allocating_at_once_never_share_a_port(base: int, held: list[RtpPorts]) -> None:
    """Calls bind their pairs in worker threads: a port is claimed before it is bound."""
    width = 40
    start = _free_even_range(width)
    alloc = RtpPortAllocator("127.0.0.1", start, start + width - 1)
    with ThreadPoolExecutor(max_workers=8) as pool:
        pairs = list(pool.map(lambda _: alloc.allocate(), range(width // 2)))
    held.extend(pairs)
    assert len({pair.port for pair in pairs}) == width // 2
    assert alloc.in_use == width // 2
    with pytest.raises(PortRangeExhaustedError):
        alloc.allocate()
    for pair in pairs:
        alloc.release(pair)
    assert alloc.in_use == 0


def test_a_port_another_process_holds_is_given_back_to_the_search(base: int) -> None:
    """A pair that fails to bind (EADDRINUSE) is not left marked as held."""
    blocker = _blocker(base + 1)  # the RTCP port of the first pair
    try:
        alloc = RtpPortAllocator("127.0.0.1", base, base + 3)
        pair = alloc.allocate()
        assert pair.port == base + 2
        assert alloc.in_use == 1
        with pytest.raises(PortRangeExhaustedError):
            alloc.allocate()
        assert alloc.in_use == 1
        alloc.release(pair)
    finally:
        blocker.close()


async def test_a_call_cancelled_while_its_ports_are_bound_gives_them_back(
    base: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The phone binds a call's pair in a worker thread; a shutdown that cancels the call
    meanwhile must not lose the pair the thread then returns."""
    config = UAConfig(
        user="u", domain="127.0.0.1", local_host="127.0.0.1", local_port=5999,
        password="p", registrar=SipUri(host="127.0.0.1", port=5998),
    )  # fmt: skip
    phone = Phone(
        config, ("127.0.0.1", 5999), MediaConfig("127.0.0.1", "127.0.0.1", base, base + 9)
    )
    entered, go_on, returned = threading.Event(), threading.Event(), threading.Event()
    allocate = phone._ports.allocate

    def held_back() -> RtpPorts:
        entered.set()
        go_on.wait(10)
        try:
            return allocate()
        finally:
            returned.set()

    monkeypatch.setattr(phone._ports, "allocate", held_back)
    task = asyncio.create_task(phone._allocate_ports())
    assert await asyncio.to_thread(entered.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert phone.rtp_ports_in_use == 0  # not bound yet
    go_on.set()
    assert await asyncio.to_thread(returned.wait, 10)
    for _ in range(200):  # the pair comes back through the loop (call_soon_threadsafe)
        await asyncio.sleep(0.01)
        if phone.rtp_ports_in_use == 0:
            break
    assert phone.rtp_ports_in_use == 0
    assert _bindable(base), "the pair bound for the cancelled call is still open"


def _bindable(port: int) -> bool:
    try:
        _blocker(port).close()
    except OSError:
        return False
    return True
