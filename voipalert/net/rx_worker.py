"""An analysis worker process: ``python -m voipalert.net.rx_worker FD`` (docs/rx-workers.md).

Started by ``net.rx_pool`` with one end of a ``SOCK_SEQPACKET`` socket pair as file
descriptor ``FD``. It reads messages of records (``media.rx_wire``), runs each call's
``CallAnalysis`` on them and writes back the events found, one message per message read
that found any. It ends when the loop's end closes (end of file): the serving process
ended, or is shutting the pool down. SIGINT and SIGTERM are ignored so that a Ctrl-C or a
service manager's stop, which reach the whole process group, leave the order of shutdown
to the serving process (the worker must not die first and be restarted).
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from typing import Final

from voipalert.media.rx_analysis import CallAnalysis
from voipalert.media.rx_wire import (
    Closed,
    Heard,
    Opened,
    Record,
    Sent,
    decode_records,
    encode_event,
)

log = logging.getLogger("voipalert.net.rx_worker")

RECEIVE_BYTES: Final = 1 << 17  # above the pool's largest message
MAX_CALLS: Final = 4096  # a bound on what a confused loop could make it hold


def serve(sock: socket.socket) -> None:
    """Run until the other end closes."""
    calls: dict[int, CallAnalysis] = {}
    while True:
        try:
            data = sock.recv(RECEIVE_BYTES)
        except InterruptedError:
            continue
        except ConnectionResetError:
            return
        if not data:
            return
        out = bytearray()
        try:
            for record in decode_records(data):
                out += _handle(calls, record)
        except ValueError as exc:
            # The loop wrote something this worker cannot read: a bug, not an attack (the
            # loop is the only peer). The rest of the message is lost; the calls go on.
            log.error("analysis worker: malformed message skipped: %s", exc)
        if out:
            try:
                sock.sendall(out)
            except (BrokenPipeError, ConnectionResetError):
                return


def _handle(calls: dict[int, CallAnalysis], record: Record) -> bytes:
    """Apply one record; the events it produced, encoded."""
    if isinstance(record, Opened):
        if len(calls) < MAX_CALLS or record.call in calls:
            calls[record.call] = CallAnalysis(record.spec)
        return b""
    if isinstance(record, Closed):
        calls.pop(record.call, None)
        return b""
    analysis = calls.get(record.call)
    if analysis is None:
        return b""  # opened before this worker started, or closed: nothing to do
    if isinstance(record, Heard):
        events = analysis.heard(record.payload, record.ssrc, record.timestamp, record.arrived)
        return b"".join(encode_event(record.call, event) for event in events)
    if isinstance(record, Sent):
        analysis.sent(record.slot, record.left_at, record.payload)
    else:
        analysis.listen_for_beeps(record.enabled)
    return b""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m voipalert.net.rx_worker FD", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    with socket.socket(fileno=int(args[0])) as sock:
        sock.setblocking(True)
        serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
