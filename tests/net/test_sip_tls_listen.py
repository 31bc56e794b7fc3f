"""The TLS listener (``[sip] tls_listen``): the PBX's requests to our ``;transport=tls``
Contact over TLS, with the TCP listener's limits. A raw TLS client on loopback (the
openssl-made PKI of test_sip_tls) sends OPTIONS and an unsolicited INVITE; hostile
clients: plain text on the TLS port, a stalled handshake, an oversized message, a
connection flood from one host."""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.net.sip_harness import free_port
from tests.net.test_sip_tls import make_pki
from tests.requires import need_program
from voipalert.net.sip_transport import ConnectionLimits, SipEndpoint, server_tls_context
from voipalert.sip.agent import UserAgent
from voipalert.sip.config import UAConfig
from voipalert.sip.parser import MAX_MESSAGE_BYTES

HOST = "127.0.0.1"


@pytest.fixture(autouse=True)
def _openssl_installed() -> None:
    need_program("openssl", "apt-get install openssl")


@pytest.fixture
def pki(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_pki(tmp_path / "pki", "voipalert")


@asynccontextmanager
async def listener(
    pki: tuple[Path, Path, Path], limits: ConnectionLimits | None = None
) -> AsyncIterator[SipEndpoint]:
    _, cert, key = pki
    port = free_port(socket.SOCK_STREAM)
    config = UAConfig(
        user="voipalert", domain=HOST, local_host=HOST, local_port=port, transport="tls",
        unsolicited_per_second=1000.0,
    )  # fmt: skip
    endpoint = SipEndpoint(
        UserAgent(config, rng=random.Random()), (HOST, port), lambda _: None,
        tls=ssl.create_default_context(), limits=limits,
        tls_server=server_tls_context(cert, key),
    )  # fmt: skip
    await endpoint.start()
    try:
        yield endpoint
    finally:
        await endpoint.close()


def request(method: str, n: int, body: bytes = b"") -> bytes:
    return (
        f"{method} sip:voipalert@{HOST};transport=tls SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS {HOST}:5999;branch=z9hG4bKtls{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:pbx@{HOST}>;tag=p{n}\r\n"
        f"To: <sip:voipalert@{HOST}>\r\nCall-ID: tls{n}@pbx\r\nCSeq: 1 {method}\r\n"
        f"Contact: <sip:pbx@{HOST}:5999;transport=tls>\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def connect(port: int, ca: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = ssl.create_default_context(cafile=str(ca))
    return await asyncio.open_connection(HOST, port, ssl=context, server_hostname=HOST)


async def status(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(5):
        line = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        return line


async def test_options_and_an_invite_over_tls(pki: tuple[Path, Path, Path]) -> None:
    ca = pki[0]
    async with listener(pki) as endpoint:
        reader, writer = await connect(endpoint.agent.config.local_port, ca)
        try:
            writer.write(request("OPTIONS", 1))
            assert (await status(reader)).startswith(b"SIP/2.0 200")
            sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            writer.write(request("INVITE", 2, sdp + b"m=audio 4000 RTP/AVP 0\r\n"))
            # An unsolicited call to the alerting engine: refused, nothing rings.
            first = await status(reader)
            while first.startswith(b"SIP/2.0 100"):
                first = await status(reader)
            assert first.startswith(b"SIP/2.0 486")
        finally:
            writer.close()
        assert endpoint.stats["tcp_accepted"] == 1


async def test_a_certificate_the_client_does_not_trust_fails_the_handshake(
    pki: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    other_ca, _, _ = make_pki(tmp_path / "other", "untrusted")
    async with listener(pki) as endpoint:
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(endpoint.agent.config.local_port, other_ca)


async def test_plain_text_and_a_stalled_handshake_are_dropped(
    pki: tuple[Path, Path, Path],
) -> None:
    async with listener(pki, ConnectionLimits(tls_handshake_timeout=0.5)) as endpoint:
        port = endpoint.agent.config.local_port
        plain_reader, plain = await asyncio.open_connection(HOST, port)
        plain.write(request("OPTIONS", 3))  # SIP in clear on the TLS port
        stalled_reader, stalled = await asyncio.open_connection(HOST, port)  # says nothing
        async with asyncio.timeout(5):
            assert await plain_reader.read() == b""  # closed, nothing answered
            assert await stalled_reader.read() == b""  # closed at the handshake timeout
        plain.close()
        stalled.close()
        assert endpoint.inbound_connections == 0
        # The listener still serves the PBX.
        reader, writer = await connect(port, pki[0])
        writer.write(request("OPTIONS", 4))
        assert (await status(reader)).startswith(b"SIP/2.0 200")
        writer.close()


async def test_an_oversized_message_closes_the_connection(pki: tuple[Path, Path, Path]) -> None:
    async with listener(pki) as endpoint:
        reader, writer = await connect(endpoint.agent.config.local_port, pki[0])
        writer.write(
            request("OPTIONS", 5).replace(
                b"Max-Forwards", b"X: " + b"a" * MAX_MESSAGE_BYTES + b"\r\nMax-Forwards"
            )
        )
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()


async def test_connections_per_host_are_capped(pki: tuple[Path, Path, Path]) -> None:
    async with listener(pki, ConnectionLimits(per_peer=4)) as endpoint:
        port = endpoint.agent.config.local_port
        reader, writer = await connect(port, pki[0])
        writer.write(request("OPTIONS", 6))
        assert (await status(reader)).startswith(b"SIP/2.0 200")
        flood = [(await connect(port, pki[0]))[1] for _ in range(12)]
        try:
            for _ in range(300):
                if endpoint.stats["tcp_accepted"] >= 13:
                    break
                await asyncio.sleep(0.01)
            assert endpoint.inbound_connections == 4
            assert endpoint.stats["tcp_evicted"] == 13 - 4
            # The PBX's connection (it carried a message) survived the idle flood.
            writer.write(request("OPTIONS", 7))
            assert (await status(reader)).startswith(b"SIP/2.0 200")
        finally:
            for w in [*flood, writer]:
                w.close()
