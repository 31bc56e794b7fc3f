"""One ``Codec`` from the settings file to the RTP session (issue 19, item 6)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from voipalert.app.config import media_config
from voipalert.codec import Codec
from voipalert.errors import ConfigError
from voipalert.media import g711
from voipalert.settings import load_settings, masked_dump
from voipalert.sip.sdp import new_local_media, parse_answer


def test_payload_types_and_names_are_rfc_3551() -> None:
    # RFC 3551 §6, table 4: PCMU is static payload type 0, PCMA 8, both at 8000 Hz.
    assert [(c.encoding, c.payload_type) for c in Codec] == [("PCMU", 0), ("PCMA", 8)]


def test_the_settings_file_is_read_into_the_codec_type(tmp_path: Path) -> None:
    path = tmp_path / "voipalert.toml"
    path.write_text('[media]\ncodecs = ["PCMA", "PCMU"]\n')
    settings = load_settings(path, environ={})
    codecs = media_config(settings).codecs
    assert codecs == (Codec.PCMA, Codec.PCMU)
    assert all(type(codec) is Codec for codec in codecs)
    # Written back (``config show``) in the file's own spelling.
    assert masked_dump(settings)["media"]["codecs"] == ["PCMA", "PCMU"]


def test_an_unknown_codec_in_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "voipalert.toml"
    path.write_text('[media]\ncodecs = ["G729"]\n')
    with pytest.raises(ConfigError, match=r"media\.codecs"):
        load_settings(path, environ={})


def test_the_codec_the_answer_chose_is_the_one_g711_encodes_with() -> None:
    local = new_local_media("192.0.2.1", 40000, rng=random.Random(1))
    answer = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n"
        b"m=audio 5000 RTP/AVP 8\r\n"
    )
    chosen = parse_answer(answer, codecs=local.codecs).codec
    assert chosen is Codec.PCMA
    # A-law's code for a zero sample, not μ-law's (0xFF): the type reached g711 unchanged.
    assert g711.encode(chosen, np.zeros(2, np.int16)) == b"\xd5\xd5"
