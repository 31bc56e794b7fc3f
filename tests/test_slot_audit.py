"""The strict clean-audio measures catch what the window median let through (issue: a run
lost 5 of 11 greeting windows and still scored 1.000)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.audio_match import window_correlations
from tests.rtp_capture import RtpPacket
from tests.slot_audit import SAMPLES, audit_heard, audit_stream, prompt_frames
from voipalert.codec import Codec
from voipalert.media import g711


def _speech(seconds: float = 2.0, seed: int = 1) -> NDArray[np.int16]:
    """Speech-like test audio: a wandering tone in bursts, never the same twice."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 8000)
    t = np.arange(n) / 8000
    pitch = 150 + 80 * np.sin(2 * np.pi * 0.7 * t) + 30 * rng.standard_normal(n).cumsum() / n
    voice = np.sin(2 * np.pi * np.cumsum(pitch) / 8000) + 0.4 * np.sin(2 * np.pi * 3.1 * t)
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 2.3 * t)
    noise = 0.05 * rng.standard_normal(n)
    return np.asarray(8000 * (voice * envelope + noise), dtype=np.int16)


def _stream(pcm: NDArray[np.int16], *, start_ts: int = 4_294_960_000) -> list[RtpPacket]:
    """The packets a clean sender emits for ``pcm``: 200 ms of silence, then the prompt,
    one per 20 ms, timestamps wrapping past 2^32 on the way."""
    frames = [b"\xff" * SAMPLES] * 10 + prompt_frames(pcm, Codec.PCMU)
    return [
        RtpPacket(1000.0 + 0.02 * i, 20000, 30000, 0, i == 0, (65530 + i) % 65536,
                  (start_ts + SAMPLES * i) % (1 << 32), 0x1234, frame)
        for i, frame in enumerate(frames)
    ]  # fmt: skip


def test_a_clean_stream_is_clean() -> None:
    pcm = _speech()
    audit = audit_stream(_stream(pcm), pcm)
    assert audit.found and audit.clean, audit.describe()
    assert audit.slots == 100 and audit.max_late < 1e-6


def test_a_stall_that_skips_ten_slots_fails_the_prompt() -> None:
    pcm = _speech()
    packets = _stream(pcm)
    # The pacer skipped 10 slots (200 ms): no packets, then the rest on schedule with the
    # sequence going on from where it was (as Packetizer.skip does).
    kept = packets[:40] + [
        RtpPacket(p.at, p.sport, p.dport, p.payload_type, p.marker, (p.seq - 10) % 65536,
                  p.timestamp, p.ssrc, p.payload)
        for p in packets[50:]
    ]  # fmt: skip
    audit = audit_stream(kept, pcm)
    assert (audit.skipped, audit.wrong, audit.out_of_order, audit.late) == (10, 0, 0, 0)
    assert not audit.clean


def test_late_wrong_and_reordered_packets_are_each_counted() -> None:
    pcm = _speech()
    packets = _stream(pcm)
    late = packets[30]
    packets[30] = RtpPacket(late.at + 0.08, *_rest(late))
    wrong = packets[31]
    packets[31] = RtpPacket(wrong.at, *_rest(wrong)[:-1], b"\x00" * SAMPLES)
    packets[40], packets[41] = packets[41], packets[40]
    audit = audit_stream(packets, pcm)
    assert audit.late == 1 and audit.wrong == 1 and audit.out_of_order >= 1
    assert audit.max_late == pytest.approx(0.08)


def _rest(p: RtpPacket) -> tuple[int, int, int, bool, int, int, int, bytes]:
    return (p.sport, p.dport, p.payload_type, p.marker, p.seq, p.timestamp, p.ssrc, p.payload)


def test_a_prompt_never_sent_is_not_found() -> None:
    audit = audit_stream(_stream(_speech(seed=2)), _speech(seed=3))
    assert not audit.found and not audit.clean


def _heard(pcm: NDArray[np.int16]) -> NDArray[np.int16]:
    """What a callee records: the prompt through G.711, after some silence."""
    through = g711.decode(Codec.PCMU, g711.encode(Codec.PCMU, pcm))
    return np.concatenate([np.zeros(1234, np.int16), through, np.zeros(4000, np.int16)])


def test_a_recording_of_the_whole_prompt_is_clean() -> None:
    pcm = _speech()
    audit = audit_heard(_heard(pcm), pcm)
    assert audit.clean and audit.alignment > 0.99, audit.describe()


def test_a_hole_of_200_ms_fails_where_the_window_median_passed() -> None:
    pcm = _speech(3.0)
    heard = _heard(pcm)
    # 200 ms of the prompt lost at the callee, the rest shifted earlier (a jitter buffer
    # that skipped ahead), plus 100 ms inserted later (one that stretched).
    hole = 1234 + 8000
    heard = np.concatenate([heard[:hole], heard[hole + 1600 :]])
    stretch = 1234 + 16000
    heard = np.concatenate([heard[:stretch], np.zeros(800, np.int16), heard[stretch:]])
    windows = window_correlations(heard, pcm)
    assert float(np.median(windows)) > 0.95  # the old measure: "clean"
    audit = audit_heard(heard, pcm)
    assert not audit.clean
    assert audit.bad >= 20, audit.describe()
