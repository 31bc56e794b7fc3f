"""SIP over TLS with certificate verification against a private CA.

The peer is a minimal TLS registrar written here (Kamailio's TLS module is a separate
Debian package): it frames with the project's StreamFramer and answers REGISTER 200 with
the real message layer. Certificates come from the openssl command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.net.sip_harness import free_port
from tests.requires import need_program
from voipalert.net.sip_transport import SipEndpoint, client_tls_context
from voipalert.sip.agent import UserAgent
from voipalert.sip.config import UAConfig
from voipalert.sip.events import RegistrationChanged, RegistrationState, SipEvent
from voipalert.sip.framing import StreamFramer
from voipalert.sip.message import Request, response_to
from voipalert.sip.uri import SipUri


@pytest.fixture(autouse=True)
def _openssl_installed() -> None:
    need_program("openssl", "apt-get install openssl")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    directory.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN={name} test CA", "-keyout", "ca.key", "-out", "ca.pem",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign", cwd=directory)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=directory)  # fmt: skip
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem",
             cwd=directory)  # fmt: skip
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


async def tls_registrar(cert: Path, key: Path, port: int) -> asyncio.Server:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer()
        while data := await reader.read(65536):
            framer.feed(data)
            while (message := framer.next_event()) is not None:
                if isinstance(message, Request) and message.method == "REGISTER":
                    contact = message.headers.get("Contact") or ""
                    reply = response_to(message, 200, headers=[("Contact", contact)], to_tag="r1")
                    writer.write(reply.serialize())
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", port, ssl=context)


@pytest.fixture
async def registrar(tmp_path: Path) -> AsyncIterator[tuple[int, Path, Path]]:
    ca, cert, key = make_pki(tmp_path / "pki", "voipalert")
    other_ca, _, _ = make_pki(tmp_path / "other", "untrusted")
    port = free_port(kind=1)  # SOCK_STREAM
    server = await tls_registrar(cert, key, port)
    try:
        yield port, ca, other_ca
    finally:
        server.close()
        await server.wait_closed()


async def register_over_tls(port: int, ca: Path) -> tuple[RegistrationChanged, list[str]]:
    config = UAConfig(
        user="voipalert", domain="127.0.0.1", local_host="127.0.0.1", local_port=free_port(),
        transport="tls", registrar=SipUri(host="127.0.0.1", port=port),
    )  # fmt: skip
    events: asyncio.Queue[SipEvent] = asyncio.Queue()
    sent: list[str] = []
    endpoint = SipEndpoint(
        UserAgent(config, rng=random.Random()), ("127.0.0.1", config.local_port),
        events.put_nowait, lambda d, data, _: sent.append(data.decode()) if d == "send" else None,
        tls=client_tls_context(ca),
    )  # fmt: skip
    await endpoint.start()
    try:
        endpoint.act(endpoint.agent.register)
        async with asyncio.timeout(10):
            while True:
                event = await events.get()
                if isinstance(event, RegistrationChanged) and event.status.state in (
                    RegistrationState.REGISTERED, RegistrationState.FAILING,
                ):  # fmt: skip
                    return event, sent
    finally:
        await endpoint.close()


async def test_register_over_tls_with_a_private_ca(registrar: tuple[int, Path, Path]) -> None:
    port, ca, _ = registrar
    event, sent = await register_over_tls(port, ca)
    assert event.status.state is RegistrationState.REGISTERED
    assert "Via: SIP/2.0/TLS 127.0.0.1:" in sent[0]
    assert ";transport=tls>" in sent[0]


async def test_a_certificate_from_another_ca_is_refused(registrar: tuple[int, Path, Path]) -> None:
    port, _, other_ca = registrar
    event, _ = await register_over_tls(port, other_ca)
    assert event.status.state is RegistrationState.FAILING
    assert event.status.last_status == 503
    assert "transport error" in event.status.last_reason


class _SilentAtClose:
    """A TLS registrar on a thread that answers REGISTER, then ignores our close_notify
    (Python's ssl reports it as b"" and sends none back), and records when the TCP
    connection itself is closed."""

    def __init__(self, cert: Path, key: Path) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(20)
        self.port: int = self._listener.getsockname()[1]
        self.close_notify = threading.Event()
        self.tcp_closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError), self._listener:
            raw, _ = self._listener.accept()
            raw.settimeout(20)
            # A duplicate of the descriptor reads the TCP stream under the TLS layer.
            watcher = socket.socket(fileno=os.dup(raw.fileno()))
            watcher.settimeout(20)
            with watcher, self._context.wrap_socket(raw, server_side=True) as tls:
                framer = StreamFramer()
                while data := tls.recv(65536):
                    framer.feed(data)
                    while (message := framer.next_event()) is not None:
                        if isinstance(message, Request) and message.method == "REGISTER":
                            contact = message.headers.get("Contact") or ""
                            reply = response_to(
                                message, 200, headers=[("Contact", contact)], to_tag="r1"
                            )
                            tls.sendall(reply.serialize())
                self.close_notify.set()
                while watcher.recv(65536):  # until the client's FIN or RST
                    pass
                self.tcp_closed.set()

    def stop(self) -> None:
        self._listener.close()
        self._thread.join(timeout=25)


async def test_close_releases_a_tls_connection_whose_peer_never_answers_close_notify(
    tmp_path: Path,
) -> None:
    # asyncio waits up to 30 s for the peer's close_notify after close(); a loop that stops
    # meanwhile leaves the socket open (a ResourceWarning at collection). close() must
    # return with the connection released.
    ca, cert, key = make_pki(tmp_path / "pki", "voipalert")
    peer = _SilentAtClose(cert, key)
    try:
        event, _ = await register_over_tls(peer.port, ca)  # ends with endpoint.close()
        assert event.status.state is RegistrationState.REGISTERED
        assert peer.close_notify.is_set() or await asyncio.to_thread(peer.close_notify.wait, 5)
        # No waiting here beyond the thread's own observation: close() has returned, so
        # the socket must already be closed and the FIN on its way.
        assert await asyncio.to_thread(peer.tcp_closed.wait, 5), "socket still open"
    finally:
        await asyncio.to_thread(peer.stop)
