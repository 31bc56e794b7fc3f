"""SDES-SRTP over SIP/TLS against the testbed: voipalert → Kamailio (TLS module) → a
baresip bot registered over TLS whose account requires SRTP (``mediaenc=srtp-mand``).
The bot presses 1 as RFC 4733 inside SRTP; the call is acknowledged only if our session
decrypted and authenticated it (docs/security.md §SRTP)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from testbed import BotSpec, Testbed

from tests.conftest import TestbedFactory
from tests.net.sip_harness import free_port
from tests.requires import need, need_program
from voipalert.calls import CallReport, MediaConfig, Phone
from voipalert.callscript import ScriptConfig
from voipalert.domain.alert import AttemptOutcome
from voipalert.net.sip_transport import client_tls_context
from voipalert.sip.config import UAConfig
from voipalert.sip.sdes import SrtpPolicy
from voipalert.sip.uri import SipUri

HOST = "127.0.0.1"
TONE: NDArray[np.int16] = (3000 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.int16)


@pytest.fixture(autouse=True)
def _tls_programs() -> None:
    need_program("openssl", "apt-get install openssl")
    need(
        any(Path("/usr/lib").glob("*/kamailio/modules/tls.so")),
        "Kamailio's TLS module is missing: apt-get install kamailio-tls-modules",
    )


async def prompts(key: str) -> NDArray[np.int16]:
    await asyncio.sleep(0)
    return TONE


async def _call(testbed: Testbed, policy: SrtpPolicy, bot: str) -> CallReport:
    sip_port, rtp = free_port(), free_port(even=True)
    config = UAConfig(
        user="voipalert", domain=HOST, local_host=HOST, local_port=sip_port, transport="tls",
        registrar=SipUri(host=HOST, port=testbed.tls_port),
        password=testbed.users["voipalert"],
    )  # fmt: skip
    phone = Phone(
        config, (HOST, sip_port), MediaConfig(HOST, HOST, rtp, rtp + 20, srtp=policy),
        tls=client_tls_context(Path(testbed.tls_ca)), script=ScriptConfig(repetitions=3),
        rng=random.Random(5),
    )  # fmt: skip
    await phone.start(register=False)
    try:
        target = SipUri.parse(testbed.uri(bot, "tls"))
        report = await asyncio.wait_for(phone.call(target, prompts, ring_timeout=10), 40)
    finally:
        await phone.stop()
    return report


async def test_srtp_call_over_tls_through_kamailio_is_acknowledged(
    testbed_factory: TestbedFactory,
) -> None:
    testbed = testbed_factory([BotSpec("ack", "dtmf", "1", 1.5, "tls")])
    report = await _call(testbed, SrtpPolicy.REQUIRED, "ack")
    assert report.outcome is AttemptOutcome.ACKNOWLEDGED, report
    assert report.digit == "1" and report.digit_source == "rfc4733"
    # Our RTP/SAVP offer and the bot's answer each carried an a=crypto (its SIP trace).
    trace = testbed.sip_trace("ack")
    assert trace.count("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:") >= 2
    assert "m=audio" in trace and "RTP/SAVP" in trace
    # Our session was SRTP both ways: a plain RTP key press would have been dropped
    # (tests/net/test_rtp_srtp.py), so the acknowledgement came through SRTP.
