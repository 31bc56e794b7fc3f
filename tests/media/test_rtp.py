from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voipalert.media.errors import LocalProtocolError, RemoteProtocolError
from voipalert.media.rtp import (
    RtpExtension,
    RtpPacket,
    seq_add,
    seq_diff,
    ts_add,
    ts_diff,
)

DATA = Path(__file__).parent.parent / "data" / "rtp"


def _load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_pcmu_golden_packet() -> None:
    data = _load("pcmu_marker.bin")
    packet = RtpPacket.parse(data)
    assert packet.payload_type == 0
    assert packet.marker is True
    assert packet.sequence_number == 0x1234
    assert packet.timestamp == 0xA00
    assert packet.ssrc == 0xDEADBEEF
    assert packet.payload == b"\xff" * 160
    assert packet.csrc == ()
    assert packet.extension is None
    assert packet.padding == 0
    assert packet.serialize() == data


def test_pcma_packet_at_the_wrap() -> None:
    data = _load("pcma_wrap.bin")
    packet = RtpPacket.parse(data)
    assert (packet.payload_type, packet.marker) == (8, False)
    assert packet.sequence_number == 0xFFFF
    assert packet.timestamp == 0xFFFFFF60
    assert packet.serialize() == data


def test_csrc_extension_and_padding_are_parsed_and_stripped() -> None:
    data = _load("csrc_ext_padding.bin")
    packet = RtpPacket.parse(data)
    assert packet.csrc == (0x0A, 0x0B)
    assert packet.extension == RtpExtension(0xBEDE, bytes.fromhex("10ff0000"))
    assert packet.payload == bytes([1, 2, 3, 4])
    assert packet.padding == 4
    assert packet.serialize() == data


@pytest.mark.parametrize(
    ("name", "event", "end", "duration"),
    [("telephone_event_start.bin", 1, False, 160), ("telephone_event_end.bin", 1, True, 1440)],
)
def test_telephone_event_golden_packets(name: str, event: int, end: bool, duration: int) -> None:
    data = _load(name)
    packet = RtpPacket.parse(data)
    assert packet.payload_type == 101
    assert packet.payload[0] == event
    assert bool(packet.payload[1] & 0x80) is end
    assert int.from_bytes(packet.payload[2:4], "big") == duration
    assert packet.serialize() == data


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("truncated_header_invalid.bin", "shorter than 12"),
        ("version1_invalid.bin", "version 1"),
        ("csrc_truncated_invalid.bin", "CSRC"),
        ("extension_truncated_invalid.bin", "extension longer"),
        ("extension_header_truncated_invalid.bin", "extension truncated"),
        ("padding_zero_invalid.bin", "padding count 0"),
        ("padding_too_long_invalid.bin", "padding count 9"),
    ],
)
def test_malformed_packets_raise_remote_protocol_error(name: str, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message) as info:
        RtpPacket.parse(_load(name))
    assert isinstance(info.value, ValueError)


def test_padding_may_fill_the_whole_payload() -> None:
    packet = RtpPacket.parse(bytes.fromhex("a0001234000000010000000100000004"))
    assert packet.payload == b""
    assert packet.padding == 4


@given(st.binary(max_size=80))
def test_parse_never_raises_anything_but_remote_protocol_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RemoteProtocolError:
        return
    assert RtpPacket.parse(packet.serialize()) == packet


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        RtpExtension,
        profile=st.integers(0, 0xFFFF),
        data=st.integers(0, 8).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
    ),
    padding=st.integers(0, 255),
)


@given(packets)
def test_round_trip(packet: RtpPacket) -> None:
    assert RtpPacket.parse(packet.serialize()) == packet


@pytest.mark.parametrize(
    "bad",
    [
        RtpPacket(payload_type=128, sequence_number=0, timestamp=0, ssrc=0),
        RtpPacket(payload_type=0, sequence_number=65536, timestamp=0, ssrc=0),
        RtpPacket(payload_type=0, sequence_number=0, timestamp=1 << 32, ssrc=0),
        RtpPacket(payload_type=0, sequence_number=0, timestamp=0, ssrc=-1),
        RtpPacket(payload_type=0, sequence_number=0, timestamp=0, ssrc=0, csrc=(0,) * 16),
        RtpPacket(
            payload_type=0,
            sequence_number=0,
            timestamp=0,
            ssrc=0,
            extension=RtpExtension(1, b"abc"),
        ),
        RtpPacket(payload_type=0, sequence_number=0, timestamp=0, ssrc=0, padding=256),
    ],
)
def test_serialize_refuses_fields_out_of_range(bad: RtpPacket) -> None:
    with pytest.raises(LocalProtocolError):
        bad.serialize()


def test_sequence_arithmetic_wraps() -> None:
    assert seq_add(0xFFFF, 1) == 0
    assert seq_add(0, -1) == 0xFFFF
    assert seq_diff(0, 0xFFFF) == 1
    assert seq_diff(0xFFFF, 0) == -1
    assert seq_diff(100, 100) == 0
    assert seq_diff(0x8000 + 5, 5) == -0x8000
    assert seq_diff(0x7FFF + 5, 5) == 0x7FFF


def test_timestamp_arithmetic_wraps() -> None:
    assert ts_add(0xFFFFFF60, 160) == 0
    assert ts_add(0xFFFFFF60, 320) == 160
    assert ts_diff(160, 0xFFFFFF60) == 320
    assert ts_diff(0xFFFFFF60, 160) == -320


@given(st.integers(0, 0xFFFF), st.integers(-0x8000, 0x7FFF))
def test_seq_diff_inverts_seq_add(base: int, delta: int) -> None:
    assert seq_diff(seq_add(base, delta), base) == delta


@given(st.integers(0, 0xFFFFFFFF), st.integers(-(1 << 31), (1 << 31) - 1))
def test_ts_diff_inverts_ts_add(base: int, delta: int) -> None:
    assert ts_diff(ts_add(base, delta), base) == delta
