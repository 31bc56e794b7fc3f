"""One call's analysis of the audio it receives (sans-IO): the echo line, the in-band key
detector and the mailbox-beep detector, fed decoded frames, returning rare events.

The same object runs on the event loop (``[media] analysis_workers = 0``) or in a worker
process (``net.rx_pool``, ``net.rx_worker``): what a call sees does not depend on where
it ran (docs/rx-workers.md). The session tells it what we sent (``sent``, the echo
canceller's reference) and each frame that came back (``received``); it answers with
``KeyHeard`` when the in-band detector recognised a key and ``BeepHeard`` when a mailbox
beeped, and says when it needs no more of what we sent (``wants_sent``: the line has no
echo, or no canceller runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.beep import BeepDetector
from voipalert.media.echo_line import EchoLine, EchoState
from voipalert.media.goertzel import DetectorConfig, DtmfDetector, ToneStarted

# The detectors run on this many packets at a time: numpy's per-call cost dominates at 160
# samples (0.13 % of a core per call at 20 ms, 0.065 % at 60 ms), and 40 ms more latency
# does not matter for a key press, nor for starting to speak into a mailbox.
DETECTOR_FRAMES: Final = 3
BEEP_FRAMES: Final = DETECTOR_FRAMES


@dataclass(frozen=True, slots=True)
class AnalysisSpec:
    """What one call's analysis runs: fixed when the call's media starts."""

    codec: Codec
    samples_per_slot: int = 160
    inband: bool = True
    """The in-band key detector (``[media] inband_dtmf``)."""
    echo_canceller: bool = True
    """The echo line in front of the key detector (only with ``inband``)."""
    beeps: bool = False
    """Someone acts on a mailbox beep: the beep detector may be switched on."""
    detector: DetectorConfig | None = None


@dataclass(frozen=True, slots=True)
class KeyHeard:
    """The in-band detector recognised a key press (its tone started)."""

    char: str


@dataclass(frozen=True, slots=True)
class BeepHeard:
    """A mailbox beep at ``hz``, sounding since sample ``start`` of what was analysed."""

    hz: float
    start: int


@dataclass(frozen=True, slots=True)
class EchoSettled:
    """The echo line's verdict: an echo ``delay_samples`` late being cancelled, or none
    (``delay_samples`` None): what we send is no longer needed."""

    delay_samples: int | None


AnalysisEvent = KeyHeard | BeepHeard | EchoSettled


class CallAnalysis:
    """The analysis of one call's received audio."""

    def __init__(self, spec: AnalysisSpec) -> None:
        self.spec = spec
        self.echo = (
            EchoLine(spec.codec, samples_per_slot=spec.samples_per_slot)
            if spec.inband and spec.echo_canceller
            else None
        )
        self._keys = DtmfDetector(spec.detector) if spec.inband else None
        self._key_frames: list[NDArray[np.int16]] = []
        self._beeps: BeepDetector | None = None
        self._beep_frames: list[NDArray[np.int16]] = []
        self._echo_state = self.echo.state if self.echo is not None else None

    @property
    def wants_sent(self) -> bool:
        """Whether ``sent`` still matters (an echo line that has not given up)."""
        return self.echo is not None and self.echo.state is not EchoState.NO_ECHO

    @property
    def idle(self) -> bool:
        """Nothing would look at a received frame."""
        return self._keys is None and self._beeps is None

    def sent(self, slot: int, left_at: float, payload: bytes | None) -> None:
        """Slot ``slot`` left at ``left_at`` with ``payload`` (G.711) or no audio (None)."""
        if self.echo is not None:
            self.echo.sent(slot, left_at, payload)

    def heard(self, payload: bytes, ssrc: int, timestamp: int, now: float) -> list[AnalysisEvent]:
        """One frame of the far end's audio as it came (G.711 in the call's codec): decoded
        here, so that with the analysis in a worker the loop never decodes."""
        return self.received(g711.decode(self.spec.codec, payload), ssrc, timestamp, now)

    def received(
        self, pcm: NDArray[np.int16], ssrc: int, timestamp: int, now: float
    ) -> list[AnalysisEvent]:
        """One decoded frame of the far end's audio, arrived at ``now``."""
        events: list[AnalysisEvent] = []
        echo = self.echo
        if echo is not None:
            # Our own prompt's echo out first, so a key pressed under it is heard.
            pcm = echo.received(pcm, ssrc, timestamp, now)
            if echo.state is not self._echo_state:
                self._echo_state = echo.state
                if echo.state is not EchoState.SEARCHING:
                    events.append(EchoSettled(echo.stats.delay_samples))
        if self._keys is not None:
            self._key_frames.append(pcm)
            if len(self._key_frames) >= DETECTOR_FRAMES:
                chunk = np.concatenate(self._key_frames)
                self._key_frames.clear()
                for tone in self._keys.feed(chunk):
                    if isinstance(tone, ToneStarted):
                        events.append(KeyHeard(tone.char))
        if self._beeps is not None:
            self._beep_frames.append(pcm)
            if len(self._beep_frames) >= BEEP_FRAMES:
                chunk = np.concatenate(self._beep_frames)
                self._beep_frames.clear()
                events.extend(BeepHeard(beep.hz, beep.start) for beep in self._beeps.feed(chunk))
        return events

    def listen_for_beeps(self, enabled: bool) -> None:
        """Run the beep detector only while a beep would change what the call does (it
        costs more than the key detector: docs/capacity.md §4). A beep heard again later
        starts from scratch."""
        if not self.spec.beeps or enabled == (self._beeps is not None):
            return
        self._beeps = BeepDetector() if enabled else None
        self._beep_frames.clear()
