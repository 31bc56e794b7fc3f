"""Keys pressed while we speak, on a line that echoes our prompt: ours against spandsp.

    python -m benchmarks.dtmf_echo [--trials 24] [--echo-minutes 60] [--no-spandsp]

The far end hears our prompt, its hybrid returns part of it (echo return loss, ERL, 6, 12 or
20 dB, through a random dispersive echo path of 8 ms after a bulk delay of 0-30 ms), and a
key (40, 60 or 100 ms, -10, -20 or -30 dBm0 per tone) is pressed in the middle of it. The
echo over the key's span is -10, -6 or -3 dB relative to the key's power. Combinations
that would need our prompt above 0 dBm0 (ERL 20 dB under a loud key) cannot happen and are
left out. Everything goes through G.711 as it would on the wire.

Four detectors hear each signal: ours (``media.goertzel``), ours after the echo canceller
(``media.echo``, which is given what we sent), and spandsp's ``dtmf_rx`` (the detector of
Asterisk's and FreeSWITCH's soft DSPs; libspandsp2, loaded with ctypes) with and without
the canceller in front. Then the echo alone: at least ``--echo-minutes`` of our own Piper
prompts through those echo paths, and every key any detector reports there is false.

Our speech comes from the talk-off corpus's Piper renders (``tests/media``), shared with
the test suite's cache in ``.pytest_cache/``.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr
from numpy.typing import NDArray

from tests.media.dtmf_signals import dtmf, through_g711
from tests.media.talkoff_corpus import RENDER_RATE, cached_renders
from voipalert.codec import Codec
from voipalert.media.dtmf_spectrum import dbm0_to_power
from voipalert.media.echo import EchoCanceller
from voipalert.media.goertzel import DtmfDetector, ToneStarted

FS = 8000
KEYS = "0123456789*#ABCD"
CACHE = Path(".pytest_cache/d/voipalert-talkoff")
ERLS = (6.0, 12.0, 20.0)
RELATIVE_DB = (-10.0, -6.0, -3.0)
LEVELS_DBM0 = (-10.0, -20.0, -30.0)
DURATIONS_S = (0.040, 0.060, 0.100)
LEAD_S = 1.5  # the key falls at least this far into the prompt

Detector = Callable[[NDArray[np.int16]], str]


def ours(pcm: NDArray[np.int16]) -> str:
    detector = DtmfDetector()
    events = detector.feed(pcm) + detector.flush()
    return "".join(e.char for e in events if isinstance(e, ToneStarted))


class Spandsp:
    """spandsp's DTMF receiver with its default settings, fed 20 ms frames."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("spandsp") or "libspandsp.so.2"
        lib = ctypes.CDLL(name)
        lib.dtmf_rx_init.restype = ctypes.c_void_p
        lib.dtmf_rx_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.dtmf_rx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        lib.dtmf_rx_get.restype = ctypes.c_size_t
        lib.dtmf_rx_get.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.dtmf_rx_free.argtypes = [ctypes.c_void_p]
        self._lib = lib

    def __call__(self, pcm: NDArray[np.int16]) -> str:
        lib = self._lib
        state = lib.dtmf_rx_init(None, None, None)
        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        digits = []
        buffer = ctypes.create_string_buffer(128)
        try:
            for i in range(0, pcm.size, 160):
                frame = pcm[i : i + 160]
                lib.dtmf_rx(state, frame.ctypes.data, frame.size)
                if lib.dtmf_rx_get(state, buffer, 127):
                    digits.append(buffer.value.decode())
        finally:
            lib.dtmf_rx_free(state)
        return "".join(digits)


def echo_path(rng: np.random.Generator) -> NDArray[np.float64]:
    """A bulk delay and 8 ms of decaying, dispersive hybrid response (unit energy)."""
    taps = np.arange(64)
    response = rng.normal(size=64) * np.exp(-taps / rng.uniform(4.0, 12.0))
    response -= response.mean() / 4  # a hybrid passes little DC
    path = np.concatenate((np.zeros(int(rng.integers(0, 240))), response))
    return np.asarray(path / np.sqrt(np.sum(path**2)), dtype=np.float64)


def _power(x: NDArray[np.float64]) -> float:
    return float(np.mean(x**2)) + 1e-9


def line(
    speech: NDArray[np.float64], path: NDArray[np.float64], erl_db: float, echo_gain: float
) -> tuple[NDArray[np.int16], NDArray[np.float64]]:
    """What we send (G.711) and its echo, ``erl_db`` below it, before G.711 back."""
    sent = through_g711(speech * echo_gain, Codec.PCMU)
    echo = np.convolve(sent.astype(np.float64), path)[: sent.size]
    echo *= np.sqrt(_power(sent.astype(np.float64)) / _power(echo) / 10 ** (erl_db / 10))
    return sent, echo


def detection(
    speech: list[NDArray[np.float64]], detectors: dict[str, Detector], trials: int
) -> None:
    rng = np.random.default_rng(4733)
    print(f"\nkeys under the echo of our prompt ({trials} per row, keys cycled, G.711 mu-law)")
    names = list(detectors)
    print("| ERL dB | echo vs key dB | key dBm0 | " + " | ".join(names) + " |")
    print("| --- | --- | --- |" + " --- |" * len(names))
    totals = dict.fromkeys(names, 0)
    count = 0
    for erl in ERLS:
        for relative in RELATIVE_DB:
            for level in LEVELS_DBM0:
                # Our prompt's level over the key: echo level + ERL; above 0 dBm0 it is not
                # a prompt we send.
                if level + 3.0 + relative + erl > 0.0:
                    continue
                hits = dict.fromkeys(names, 0)
                for t in range(trials):
                    key, seconds = KEYS[t % 16], DURATIONS_S[t % 3]
                    clip = speech[int(rng.integers(len(speech)))]
                    received, sent, start = _keyed(rng, clip, key, seconds, erl, relative, level)
                    window = slice(max(0, start - int(LEAD_S * FS)), start + FS)
                    for name, detect in detectors.items():
                        heard = (
                            detect(EchoCanceller().process(sent, received)[window])
                            if name.endswith("+EC")
                            else detect(received[window])
                        )
                        hits[name] += heard == key
                count += trials
                for name in names:
                    totals[name] += hits[name]
                cells = " | ".join(f"{hits[n] / trials:.0%}" for n in names)
                print(f"| {erl:.0f} | {relative:.0f} | {level:.0f} | {cells} |", flush=True)
    cells = " | ".join(f"{totals[n] / count:.1%}" for n in names)
    print(f"| all | | | {cells} |")


def _keyed(
    rng: np.random.Generator,
    clip: NDArray[np.float64],
    key: str,
    seconds: float,
    erl: float,
    relative: float,
    level: float,
) -> tuple[NDArray[np.int16], NDArray[np.int16], int]:
    path = echo_path(rng)
    tone = dtmf(key, seconds, row_dbm0=level, rng=rng)
    lead = int(LEAD_S * FS)
    start = int(rng.integers(lead, max(lead + 1, clip.size - tone.size - FS // 2)))
    # Scale our prompt so that its echo over the key's span is `relative` dB from the key.
    _, probe = line(clip, path, erl, 1.0)
    span = slice(start, start + tone.size)
    gain = np.sqrt(2 * dbm0_to_power(level) * 10 ** (relative / 10) / _power(probe[span]))
    sent, echo = line(clip, path, erl, float(gain))
    received = echo.copy()
    received[span] += tone[: received[span].size]
    return through_g711(received, Codec.PCMU), sent, start


def echo_only(
    speech: list[NDArray[np.float64]], detectors: dict[str, Detector], minutes: float
) -> None:
    rng = np.random.default_rng(5545)
    false = dict.fromkeys(detectors, 0)
    seconds = 0.0
    cancel_cpu = 0.0
    while seconds < minutes * 60:
        for clip in speech:
            erl = float(rng.choice(ERLS))
            # Our prompts leave at -20 to -10 dBm0 of active speech level.
            target = dbm0_to_power(float(rng.uniform(-20.0, -10.0)))
            gain = np.sqrt(target / _power(clip[np.abs(clip) > 100]))
            sent, echo = line(clip, echo_path(rng), erl, float(gain))
            received = through_g711(echo, Codec.PCMU)
            started = time.process_time()
            residual = EchoCanceller().process(sent, received)
            cancel_cpu += time.process_time() - started
            for name, detect in detectors.items():
                false[name] += len(detect(residual if name.endswith("+EC") else received))
            seconds += clip.size / FS
    hours = seconds / 3600
    print(f"\nthe echo alone: {seconds / 60:.1f} min of our prompts, ERL 6/12/20 dB")
    for name, n in false.items():
        print(f"  {name}: {n} false keys ({n / hours:.1f} per hour)")
    print(f"echo canceller CPU: {100 * cancel_cpu / seconds:.2f} % of a core per call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=24, help="keys per row of the table")
    parser.add_argument("--echo-minutes", type=float, default=60.0)
    parser.add_argument("--no-spandsp", action="store_true")
    args = parser.parse_args()
    print(f"cpu_count {os.cpu_count()}")
    renders = cached_renders(CACHE)
    speech = [soxr.resample(r.astype(np.float64), RENDER_RATE, FS) for r in renders]
    speech = [s for s in speech if s.size > (LEAD_S + 1.5) * FS]
    detectors: dict[str, Detector] = {"ours": ours, "ours+EC": ours}
    if not args.no_spandsp:
        try:
            spandsp = Spandsp()
        except OSError as exc:
            raise SystemExit(f"spandsp not found ({exc}): apt-get install libspandsp2") from exc
        detectors |= {"spandsp": spandsp, "spandsp+EC": spandsp}
    detection(speech, detectors, args.trials)
    echo_only(speech, detectors, args.echo_minutes)


if __name__ == "__main__":
    main()
