"""Strict clean-audio measures: every 20 ms slot of a prompt accounted for, in order.

Two views of one prompt (docs/realtime.md §3):

* ``audit_stream``, what we sent, from a wire capture (``tests.rtp_capture``): slot ``i`` of
  the prompt must leave as the packet with timestamp ``ts0 + i * samples``, carrying exactly
  the G.711 bytes of frame ``i``, its sequence number one after the previous slot's, and no
  later than ``late_s`` after its place in the schedule. A slot with no packet was skipped
  by the sender (nothing is lost on loopback); a packet with other bytes is wrong. One
  skipped 200 ms is ten bad slots: the prompt is not clean.
* ``audit_heard``, what the callee recorded: the whole prompt is aligned once, at its best
  lag, and then each voiced slot must match at that one alignment. A hole or an inserted gap
  shifts what follows, and every shifted slot fails: damage cannot hide behind a median of
  windows each searched for anywhere.

Neither takes a median: the counts are the result.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tests.rtp_capture import RtpPacket
from voipalert.codec import Codec
from voipalert.media import g711

SAMPLES = 160  # 20 ms at 8 kHz
PTIME = 0.02
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
PAYLOAD_TYPES: dict[int, Codec] = {0: Codec.PCMU, 8: Codec.PCMA}
ANCHOR_TRIES = 50  # a prompt none of whose first 50 voiced frames left was not sent


def prompt_frames(pcm: NDArray[np.int16], codec: Codec, samples: int = SAMPLES) -> list[bytes]:
    """The G.711 payload of each slot of ``pcm``, the last one padded with silence, exactly
    as the play queue sends it."""
    encoded = g711.encode(codec, np.asarray(pcm, dtype=np.int16))
    encoded += bytes([g711.SILENCE_BYTE[codec]]) * (-len(encoded) % samples)
    return [encoded[i : i + samples] for i in range(0, len(encoded), samples)]


@dataclass(frozen=True, slots=True)
class StreamAudit:
    """One prompt's slots on the wire."""

    slots: int
    found: bool  # the prompt's first voiced frame was sent at all
    skipped: int = 0  # slots that left no packet
    wrong: int = 0  # packets whose bytes are not the prompt's frame for that slot
    out_of_order: int = 0  # consecutive slots sent backwards, or not one sequence number on
    late: int = 0  # packets that left more than ``late_s`` after their slot
    max_late: float = 0.0  # seconds, against the least delayed packet of the prompt

    @property
    def bad(self) -> int:
        return self.skipped + self.wrong + self.out_of_order + self.late

    @property
    def clean(self) -> bool:
        return self.found and self.bad == 0

    def describe(self) -> str:
        if not self.found:
            return f"prompt of {self.slots} slots not found on the wire"
        return (
            f"{self.slots} slots: {self.skipped} skipped, {self.wrong} wrong, "
            f"{self.out_of_order} out of order, {self.late} late "
            f"(latest {self.max_late * 1000:.1f} ms)"
        )


def audit_stream(
    packets: Sequence[RtpPacket], pcm: NDArray[np.int16], *, late_s: float = 0.06
) -> StreamAudit:
    """Check the first time ``pcm`` was played in one RTP stream (packets of one SSRC, in the
    order they left). ``late_s`` is how late a packet may leave before a jitter buffer of
    the usual depth would have given up on it (60 ms)."""
    audio = [p for p in packets if p.payload_type in PAYLOAD_TYPES]
    if not audio:
        return StreamAudit(0, found=False)
    frames = prompt_frames(pcm, PAYLOAD_TYPES[audio[0].payload_type])
    silence = frames[-1][-1:] * SAMPLES
    # Anchor on the first voiced frame that was sent (the very first may have been skipped).
    voiced = [i for i, frame in enumerate(frames) if frame != silence][:ANCHOR_TRIES]
    found = ((i, _find(audio, frames[i])) for i in voiced)
    anchor, start = next(((i, p) for i, p in found if p is not None), (0, None))
    if start is None:
        return StreamAudit(len(frames), found=False)
    ts0 = (start.timestamp - anchor * SAMPLES) % TS_MOD
    by_slot: dict[int, RtpPacket] = {}
    for packet in audio:
        offset = (packet.timestamp - ts0) % TS_MOD
        if offset < len(frames) * SAMPLES and offset % SAMPLES == 0:
            by_slot.setdefault(offset // SAMPLES, packet)
    sent = [(i, by_slot[i]) for i in range(len(frames)) if i in by_slot]
    # The schedule: each slot's time less i ptimes is one constant, the least delayed packet
    # shows it; every other packet's excess over it is how late it left.
    base = min(p.at - i * PTIME for i, p in sent)
    lateness = [p.at - i * PTIME - base for i, p in sent]
    # In order: each slot's packet left after the previous slot's, one sequence number on.
    position = {id(p): n for n, p in enumerate(audio)}
    steps = itertools.pairwise(sent)
    return StreamAudit(
        slots=len(frames),
        found=True,
        skipped=len(frames) - len(sent),
        wrong=sum(p.payload != frames[i] for i, p in sent),
        out_of_order=sum(
            (b.seq - a.seq) % SEQ_MOD != 1 or position[id(b)] < position[id(a)]
            for (_, a), (_, b) in steps
        ),
        late=sum(late > late_s for late in lateness),
        max_late=max(lateness),
    )


def _find(packets: Sequence[RtpPacket], frame: bytes) -> RtpPacket | None:
    return next((p for p in packets if p.payload == frame), None)


@dataclass(frozen=True, slots=True)
class HeardAudit:
    """One prompt in a callee's recording, aligned once as a whole."""

    voiced: int  # slots of the prompt with speech in them
    bad: int  # voiced slots that do not match at the prompt's alignment
    longest_gap: int  # the longest run of consecutive bad slots
    alignment: float  # normalised correlation of the whole prompt at its best lag
    lag: int = 0  # where the prompt starts in the recording (samples)

    @property
    def clean(self) -> bool:
        return self.voiced > 0 and self.bad == 0

    def describe(self) -> str:
        return (
            f"{self.voiced} voiced slots: {self.bad} bad (longest run {self.longest_gap}), "
            f"whole-prompt match {self.alignment:.3f}"
        )


def audit_heard(
    heard: NDArray[np.generic],
    pcm: NDArray[np.int16],
    *,
    codec: Codec = Codec.PCMU,
    threshold: float = 0.9,
) -> HeardAudit:
    """Align ``pcm`` (as G.711 carries it) with ``heard`` once, then score each voiced slot
    at that alignment; a slot below ``threshold`` is bad."""
    reference = g711.decode(codec, g711.encode(codec, np.asarray(pcm, dtype=np.int16)))
    ref = reference.astype(np.float64)
    got = np.asarray(heard, dtype=np.float64)
    if len(got) < len(ref):
        got = np.concatenate([got, np.zeros(len(ref) - len(got))])
    lag, alignment = _best_lag(got, ref)
    level = np.sqrt(np.mean(ref**2))
    bad_runs: list[int] = []
    voiced = bad = run = 0
    for start in range(0, len(ref) - SAMPLES + 1, SAMPLES):
        want = ref[start : start + SAMPLES]
        if np.sqrt(np.mean(want**2)) <= 0.1 * level:
            continue  # near-silent slots match anything: not evidence either way
        voiced += 1
        have = got[lag + start : lag + start + SAMPLES]
        score = _ncc(have, want) if len(have) == SAMPLES else 0.0
        if score < threshold:
            bad += 1
            run += 1
        else:
            bad_runs.append(run)
            run = 0
    bad_runs.append(run)
    return HeardAudit(voiced, bad, max(bad_runs), alignment, lag)


def _ncc(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    return float(np.dot(a, b) / (np.sqrt(np.dot(a, a) * np.dot(b, b)) + 1e-9))


def _best_lag(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[int, float]:
    """Where ``y`` fits best inside ``x`` (whole, no shift allowed within it), and how well."""
    size = 1 << (len(x) + len(y) - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(y, size)), size)
    valid = corr[: len(x) - len(y) + 1]
    energy = np.convolve(x**2, np.ones(len(y)), mode="valid")
    score = valid / np.sqrt(energy * np.dot(y, y) + 1e-9)
    lag = int(np.argmax(score))
    return lag, float(score[lag])
