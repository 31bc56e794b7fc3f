"""A load far end that is not the bottleneck: SIPp (Debian's ``sip-tester``) as the phones.

    python -m benchmarks.sipp_far_end [--port 5090] [--ring-ms 2000] [--key-ms 4000]
                                      [--seconds 60]

Starts four SIPp UAS instances on 127.0.0.1, one per kind of phone, each its own process
(stopped by pid):

======  =====================  ================================================================
port    scenario               the phone
======  =====================  ================================================================
P       answer.xml             rings ``ring_ms``, answers (PCMU + RFC 4733), talks back (a pcap
                               of G.711 RTP), presses 1 (RFC 4733 events in the same RTP
                               stream) ``key_ms`` after the answer, waits for our BYE
P+1     answer.xml             the same, but never presses a key (answered, no acknowledgement)
P+2     noanswer.xml           rings until the caller sends CANCEL (unreachable: ring timeout)
P+3     busy.xml               486 Busy Here at once
======  =====================  ================================================================

voipalert calls them directly (no registrar: a contact ``sip:anyone@127.0.0.1:P`` is dialled
as is), so the rota decides the shares: ``benchmarks.mass_alert`` gives each person one of
the four addresses. Run alone, this command keeps the phones up for ``--seconds`` and prints
their addresses. The audio the phones send is generated here (``talk_pcap``): speech-like
noise bursts at about -25 dBm0, no steady tone, so neither our key detector nor our
voicemail-beep detector hears anything in it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import struct
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "sipp"
PTIME_SAMPLES = 160  # 20 ms of 8 kHz G.711 (RFC 3551 §4.5.14)


@dataclass(frozen=True, slots=True)
class Phones:
    """Where each kind of SIPp phone listens."""

    host: str
    port: int

    @property
    def acks(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def silent(self) -> str:
        return f"{self.host}:{self.port + 1}"

    @property
    def unanswered(self) -> str:
        return f"{self.host}:{self.port + 2}"

    @property
    def busy(self) -> str:
        return f"{self.host}:{self.port + 3}"


def _ulaw(pcm: np.ndarray) -> bytes:
    """G.711 mu-law (ITU-T G.711 §2), vectorised."""
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    x = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(x)).astype(np.int32) - 7
    mantissa = (x >> (exponent + 3)) & 0x0F
    coded: bytes = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()
    return coded


def talk_pcap(path: Path, seconds: float = 60.0, key_at: float | None = None) -> Path:
    """A pcap (Ethernet, IPv4, UDP) of PCMU RTP, 20 ms a packet: noise shaped into
    syllable-long bursts. With ``key_at``, the key 1 is pressed at that second as RFC 4733
    events in the same stream (same SSRC, sequence and clock: RFC 4733 §2.1; a phone does
    not switch source for a key), 200 ms long, its end sent three times (§2.5.1.4). SIPp
    rewrites the addresses and ports when it plays it."""
    rng = np.random.default_rng(20)
    samples = int(seconds * 8000)
    t = np.arange(samples) / 8000
    envelope = np.clip(np.sin(2 * math.pi * 3.1 * t) + 0.3, 0, None)
    noise = np.convolve(rng.standard_normal(samples), np.ones(4) / 4, mode="same")
    payload = _ulaw((noise * envelope * 1200).astype(np.int16))
    packets: list[tuple[int, int, bytes]] = []  # (marker | payload type, timestamp, payload)
    key_packet = None if key_at is None else int(key_at / 0.02)
    for n in range(samples // PTIME_SAMPLES):
        stamp = n * PTIME_SAMPLES
        if key_packet is not None and key_packet <= n < key_packet + 13:
            # Event 1, volume 10; the duration grows by a packet's worth each 20 ms.
            held = min(n - key_packet + 1, 10) * PTIME_SAMPLES
            end = 0x80 if n >= key_packet + 10 else 0
            marker = 0x80 if n == key_packet else 0
            event = struct.pack("!BBH", 1, end | 10, held)
            packets.append((marker | 101, key_packet * PTIME_SAMPLES, event))
            continue
        packets.append((0, stamp, payload[stamp : stamp + PTIME_SAMPLES]))
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    ssrc = 0x5EED0001
    for n, (kind, stamp, body) in enumerate(packets):
        rtp = struct.pack("!BBHII", 0x80, kind, n & 0xFFFF, stamp, ssrc) + body
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp  # fmt: skip
        frame = b"\x00" * 12 + b"\x08\x00" + ip
        at = n * 0.02
        out.append(struct.pack("<IIII", int(at), int((at % 1) * 1e6), len(frame), len(frame)))
        out.append(frame)
    path.write_bytes(b"".join(out))
    return path


def sipp_program() -> str:
    found = shutil.which("sipp")
    if found is None:
        raise SystemExit("sipp is not installed (Debian package sip-tester)")
    return found


@asynccontextmanager
async def phones(
    directory: Path,
    *,
    port: int = 5090,
    ring_ms: int = 2000,
    key_ms: int = 4000,
    trace: bool = False,
) -> AsyncIterator[Phones]:
    """The four SIPp phones, up while the block runs; each stopped by its pid."""
    sipp = sipp_program()
    audio = talk_pcap(directory / "talk.pcap")
    keyed = talk_pcap(directory / "talk-key1.pcap", key_at=key_ms / 1000)
    common = ["-i", "127.0.0.1", "-nostdin", "-max_socket", "4096", "-l", "5000",
              "-deadcall_wait", "2000", "-trace_err"]  # fmt: skip
    if trace:  # every SIP message SIPp sends and receives, with its time
        common.append("-trace_msg")
    runs = [
        ("acks", "answer.xml", port, {"ring_ms": str(ring_ms), "audio_pcap": str(keyed)}),
        ("silent", "answer.xml", port + 1, {"ring_ms": str(ring_ms), "audio_pcap": str(audio)}),
        ("unanswered", "noanswer.xml", port + 2, {}),
        ("busy", "busy.xml", port + 3, {}),
    ]
    started: list[subprocess.Popen[bytes]] = []
    try:
        for n, (name, template, sip_port, values) in enumerate(runs):
            media = 40000 + 10 * n + (port % 1000) * 40
            scenario = directory / f"{name}.xml"
            scenario.write_text(_fill(template, values))
            command = [sipp, "-sf", str(scenario), "-p", str(sip_port),
                       "-mi", "127.0.0.1", "-mp", str(media), *common]  # fmt: skip
            started.append(_spawn(command, directory, directory / f"sipp-{name}.log"))
        await _wait_listening([port + n for n in range(len(runs))], started)
        yield Phones("127.0.0.1", port)
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _fill(template: str, values: dict[str, str]) -> str:
    """The scenario with our own ``{{name}}`` placeholders filled in (SIPp's ``-key``
    keywords are not substituted in attributes such as a pause's milliseconds)."""
    text = (HERE / template).read_text()
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    return text


def _spawn(command: list[str], directory: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=directory, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            start_new_session=True,
        )  # fmt: skip


def _udp_bound() -> set[str]:
    """Every bound IPv4 UDP address, as /proc/net/udp writes it (hex address:port)."""
    return {line.split()[1] for line in Path("/proc/net/udp").read_text().splitlines()[1:]}


async def _wait_listening(ports: list[int], processes: list[subprocess.Popen[bytes]]) -> None:
    """Until each SIPp has bound its UDP port (read from /proc/net/udp), at most 10 s."""
    wanted = {f"0100007F:{p:04X}" for p in ports}
    for _ in range(200):
        for process in processes:
            if process.poll() is not None:
                raise SystemExit(f"sipp exited with {process.returncode} (see its log)")
        if wanted <= _udp_bound():
            return
        await asyncio.sleep(0.05)
    raise SystemExit("sipp did not start listening within 10 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=5090)
    parser.add_argument("--ring-ms", type=int, default=2000)
    parser.add_argument("--key-ms", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--dir", type=Path, help="for the logs and pcaps (default: a new temp)")
    args = parser.parse_args()
    if args.dir is None:
        args.dir = Path(tempfile.mkdtemp(prefix="sipp-phones-"))
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"logs and pcaps in {args.dir}")
    asyncio.run(_serve_phones(args))


async def _serve_phones(args: argparse.Namespace) -> None:
    async with phones(args.dir, port=args.port, ring_ms=args.ring_ms, key_ms=args.key_ms) as at:
        print(f"SIPp phones, {os.cpu_count()} cores: acks sip:x@{at.acks}, "
              f"silent sip:x@{at.silent}, unanswered sip:x@{at.unanswered}, "
              f"busy sip:x@{at.busy}; up for {args.seconds:.0f} s", flush=True)  # fmt: skip
        await asyncio.sleep(args.seconds)


if __name__ == "__main__":
    main()
