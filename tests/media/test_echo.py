"""The line echo canceller (media.echo): it takes our own prompt back out of what the far end
returns, and leaves the far end's key in (docs/dtmf.md §2)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.media.dtmf_signals import dtmf, through_g711
from tests.media.echo_signals import FS, echo_of, echo_path, speechlike
from voipalert.codec import Codec
from voipalert.media.dtmf_spectrum import dbm0_to_power
from voipalert.media.echo import BLOCK, EchoCanceller, EchoConfig
from voipalert.media.goertzel import DtmfDetector, ToneStarted


def _keys(pcm: NDArray[np.int16]) -> str:
    detector = DtmfDetector()
    return "".join(
        e.char for e in detector.feed(pcm) + detector.flush() if isinstance(e, ToneStarted)
    )


def _line(
    rng: np.random.Generator, erl_db: float, seconds: float = 4.0, delay: int = 120
) -> tuple[NDArray[np.int16], NDArray[np.float64]]:
    sent = through_g711(speechlike(rng, seconds), Codec.PCMU)
    return sent, echo_of(sent, echo_path(rng, delay), erl_db)


def _erle_db(echo: NDArray[np.float64], residual: NDArray[np.int16]) -> float:
    r = residual.astype(np.float64)
    return float(10 * np.log10(np.mean(echo[: r.size] ** 2) / (np.mean(r**2) + 1e-9)))


# At 6 dB of ERL (G.168's worst line) the echo's peaks reach the Geigel threshold in part of
# the blocks (181 of 400 here), which then do not adapt: less cancellation, but never a
# filter trained on the far party.
@pytest.mark.parametrize(("erl_db", "erle_db"), [(6.0, 8.0), (12.0, 18.0), (20.0, 18.0)])
def test_the_echo_of_our_prompt_is_taken_out(erl_db: float, erle_db: float) -> None:
    rng = np.random.default_rng(int(erl_db))
    sent, echo = _line(rng, erl_db)
    residual = EchoCanceller().process(sent, through_g711(echo, Codec.PCMU))
    last = slice(2 * FS, None)  # converged after two seconds of speech
    assert _erle_db(echo[last], residual[last]) >= erle_db


def test_a_key_under_our_echo_is_heard_only_after_the_canceller() -> None:
    rng = np.random.default_rng(7)
    sent, echo = _line(rng, 6.0)
    start = int(2.5 * FS)
    tone = dtmf("5", 0.06, row_dbm0=-25.0, rng=rng)
    span = slice(start, start + tone.size)
    # The echo over the key is 3 dB weaker than the key.
    echo *= np.sqrt(2 * dbm0_to_power(-25.0) / 2 / np.mean(echo[span] ** 2))
    received = echo.copy()
    received[span] += tone
    line = through_g711(received, Codec.PCMU)
    window = slice(2 * FS, 3 * FS)
    assert _keys(line[window]) == "", "the key should be lost under the raw echo"
    assert _keys(EchoCanceller().process(sent, line)[window]) == "5"


def test_the_canceller_never_makes_a_key_of_the_echo_alone() -> None:
    rng = np.random.default_rng(11)
    for erl in (6.0, 12.0, 20.0):
        sent, echo = _line(rng, erl, seconds=6.0)
        assert _keys(EchoCanceller().process(sent, through_g711(echo, Codec.PCMU))) == ""


def test_chunks_of_any_size_give_the_same_residual() -> None:
    rng = np.random.default_rng(3)
    sent, echo = _line(rng, 12.0, seconds=2.0)
    received = through_g711(echo, Codec.PCMU)
    whole = EchoCanceller().process(sent, received)
    canceller, parts, i = EchoCanceller(), [], 0
    for size in [160, 7, 333, 80, 1] * 100:
        parts.append(canceller.process(sent[i : i + size], received[i : i + size]))
        i += size
        if i >= sent.size:
            break
    chunked = np.concatenate(parts)
    assert chunked.size == whole.size == sent.size // BLOCK * BLOCK
    np.testing.assert_array_equal(chunked, whole)


def test_near_end_speech_freezes_adaptation() -> None:
    """A far party louder than our echo could be is double talk (Geigel): the filter does
    not learn from it, so it cannot learn to cancel them."""
    rng = np.random.default_rng(5)
    sent, echo = _line(rng, 12.0, seconds=3.0)
    loud = np.asarray(echo + 4 * speechlike(rng, 3.0), dtype=np.float64)
    canceller = EchoCanceller()
    canceller.process(sent, through_g711(loud, Codec.PCMU))
    assert canceller.double_talk_blocks > 0.8 * canceller.blocks


def test_silence_in_silence_out() -> None:
    quiet = np.zeros(FS, dtype=np.int16)
    residual = EchoCanceller().process(quiet, quiet)
    assert not residual.any()


@pytest.mark.parametrize("codec", [Codec.PCMU, Codec.PCMA])
def test_while_we_listen_the_far_end_passes_untouched_and_the_filter_is_kept(
    codec: Codec,
) -> None:
    """A pause in our prompt (the script listening for a key): once the whole tail is
    G.711 silence the received audio passes as it came (the idle path,
    docs/capacity.md §4), and the echo path learned before is cancelled after the pause at
    least as well as before it."""
    rng = np.random.default_rng(11)
    talk = speechlike(rng, 3.0)
    pause = np.zeros(2 * FS)
    sent = through_g711(np.concatenate((talk, pause, talk)), codec)
    echo = echo_of(sent, echo_path(rng, 120), 12.0)
    far = speechlike(rng, 2.0, dbm0=-35.0, f0_hz=210.0)  # the person murmurs in the pause
    received = through_g711(echo + np.concatenate((np.zeros(3 * FS), far, np.zeros(3 * FS))), codec)
    canceller = EchoCanceller()
    residual = canceller.process(sent, received)
    quiet = slice(3 * FS + 480 + BLOCK, 5 * FS)  # the tail has gone quiet
    np.testing.assert_array_equal(residual[quiet], received[quiet])
    before, after = slice(2 * FS, 3 * FS), slice(6 * FS, None)
    assert _erle_db(echo[after], residual[after]) >= _erle_db(echo[before], residual[before])


@pytest.mark.parametrize(
    "config", [EchoConfig(taps=0), EchoConfig(taps=100), EchoConfig(step=0.0), EchoConfig(step=2.0)]
)
def test_bad_settings_are_refused(config: EchoConfig) -> None:
    with pytest.raises(ValueError):
        EchoCanceller(config)


def test_streams_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same samples"):
        EchoCanceller().process(np.zeros(160, np.int16), np.zeros(80, np.int16))
