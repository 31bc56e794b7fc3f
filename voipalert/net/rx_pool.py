"""The analysis of received audio in worker processes (docs/rx-workers.md).

The event loop keeps everything that decides what a packet is (admission, latching, SRTP,
sequence checks, RFC 4733 keys: ``net.rtp_inbound``); the costly part, the echo line and
the in-band key and beep detectors (``media.rx_analysis``), runs in ``[media]
analysis_workers`` processes (``net.rx_worker``). Per call the session hands its
``AnalysisHandle`` what we sent and each decoded frame; the handle appends a record to its
worker's buffer (a few microseconds, no system call), and every ``FLUSH_SECONDS`` one
``send`` per worker carries the records of all its calls (several when they exceed
``MAX_MESSAGE``). The worker's events (a key, a beep, the echo line's verdict) come back on
the same ``SOCK_SEQPACKET`` pair, watched with ``loop.add_reader``, and the handle turns
them into what the session would have done in-process.

Bounded everywhere, since what is analysed comes from the far end:

* per call, a token bucket lets through the frames of one stream and a burst
  (``FRAME_RATE_FACTOR``, ``FRAME_BURST``): a flood of packets is dropped at the handle,
  counted in its ``stats.flood_dropped``;
* per worker, at most ``MAX_PENDING_BYTES`` wait for the socket; beyond it frames and our
  slots are dropped (``stats.queue_dropped``). The kernel's socket buffer is the queue in
  front of the worker: when it is full the send fails (``EAGAIN``) and the message waits
  for the next flush, never the loop;
* the worker's own state is bounded per call (``media.echo_line`` restarts its window on
  a timestamp leap).

A worker that dies (its end of the pair closes) is restarted; its calls' analysis starts
afresh in the new process and, meanwhile, their in-band keys and beeps are not heard (RFC
4733 and SIP INFO keys are handled on the loop and still are). Each such call is told
(``on_lost``), which the call's progress records. Processes are started with
``subprocess`` in a thread: a start from the loop blocked it for 190 ms
(docs/capacity.md §4).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from voipalert.media.rx_analysis import (
    AnalysisEvent,
    AnalysisSpec,
    CallAnalysis,
    EchoSettled,
)
from voipalert.media.rx_wire import (
    EVENT_SIZE,
    beeps_record,
    close_record,
    decode_events,
    heard_record,
    open_record,
    sent_record,
)

log = logging.getLogger("voipalert.net.rx_pool")

FLUSH_SECONDS: Final = 0.04
MAX_MESSAGE: Final = 60_000
MAX_PENDING_BYTES: Final = 4 << 20
SOCKET_BUFFER_BYTES: Final = 4 << 20  # asked for; the kernel grants up to wmem_max, doubled
FRAME_BURST: Final = 50
FRAME_RATE_FACTOR: Final = 1.5
STOP_SECONDS: Final = 3.0
RESTART_BACKOFF_SECONDS: Final = (0.0, 0.5, 2.0, 10.0)
MAX_WORKERS: Final = 64


class Analysis(Protocol):
    """One call's analysis, where it runs: the session's view."""

    @property
    def wants_sent(self) -> bool: ...

    def sent(self, slot: int, left_at: float, payload: bytes | None) -> None: ...

    def received(self, payload: bytes, ssrc: int, timestamp: int, now: float) -> None:
        """One frame as it came (G.711 in the call's codec), arrived at ``now``."""

    def listen_for_beeps(self, enabled: bool) -> None: ...

    def close(self) -> None: ...


EventSink = Callable[[AnalysisEvent], None]


class LocalAnalysis:
    """The analysis on the event loop (``analysis_workers = 0``): events at once."""

    def __init__(self, spec: AnalysisSpec, on_event: EventSink) -> None:
        self.analysis = CallAnalysis(spec)
        self._on_event = on_event

    @property
    def wants_sent(self) -> bool:
        return self.analysis.wants_sent

    def sent(self, slot: int, left_at: float, payload: bytes | None) -> None:
        self.analysis.sent(slot, left_at, payload)

    def received(self, payload: bytes, ssrc: int, timestamp: int, now: float) -> None:
        for event in self.analysis.heard(payload, ssrc, timestamp, now):
            self._on_event(event)

    def listen_for_beeps(self, enabled: bool) -> None:
        self.analysis.listen_for_beeps(enabled)

    def close(self) -> None:
        pass


@dataclass(slots=True)
class HandleStats:
    frames: int = 0
    """Frames handed to the worker's buffer."""
    flood_dropped: int = 0
    """Frames over the call's rate (a flood from the far end)."""
    queue_dropped: int = 0
    """Frames and slots dropped because the worker was behind, or being restarted."""
    outages: int = 0
    """Times the call's worker died under it."""


class AnalysisHandle:
    """One call's analysis in a worker process."""

    def __init__(
        self,
        pool: AnalysisPool,
        call: int,
        spec: AnalysisSpec,
        on_event: EventSink,
        on_lost: Callable[[], None] | None,
    ) -> None:
        self._pool = pool
        self.call = call
        self.spec = spec
        self._on_event = on_event
        self._on_lost = on_lost
        self.worker: _Worker | None = None
        self.beeps = False
        self.echo_settled: EchoSettled | None = None
        self.stats = HandleStats()
        self._rate = FRAME_RATE_FACTOR * 8000 / spec.samples_per_slot
        self._tokens = float(FRAME_BURST)
        self._tokens_at: float | None = None
        self.closed = False

    @property
    def wants_sent(self) -> bool:
        # What we send matters until the line is found echo-free (then never again).
        settled = self.echo_settled
        no_echo = settled is not None and settled.delay_samples is None
        return self.spec.inband and self.spec.echo_canceller and not no_echo

    def sent(self, slot: int, left_at: float, payload: bytes | None) -> None:
        self._pool._put(self, sent_record(self.call, slot, left_at, payload), data=True)

    def received(self, payload: bytes, ssrc: int, timestamp: int, now: float) -> None:
        if not self.spec.inband and not self.beeps:
            return  # nothing in the worker would look at it
        # A token bucket: one stream's frames and a burst pass; a flood does not reach the
        # worker (docs/rx-workers.md §3).
        last, self._tokens_at = self._tokens_at, now
        if last is not None:
            self._tokens = min(float(FRAME_BURST), self._tokens + (now - last) * self._rate)
        if self._tokens < 1.0:
            self.stats.flood_dropped += 1
            return
        self._tokens -= 1.0
        if self._pool._put(self, heard_record(self.call, ssrc, timestamp, now, payload), data=True):
            self.stats.frames += 1

    def listen_for_beeps(self, enabled: bool) -> None:
        if not self.spec.beeps or enabled == self.beeps or self.closed:
            return
        self.beeps = enabled
        self._pool._put(self, beeps_record(self.call, enabled), data=False)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._pool._detach(self)

    def _event(self, event: AnalysisEvent) -> None:
        if isinstance(event, EchoSettled):
            self.echo_settled = event
        self._on_event(event)

    def _lost(self) -> None:
        self.stats.outages += 1
        if self._on_lost is not None:
            self._on_lost()


@dataclass(slots=True)
class PoolStats:
    workers_started: int = 0
    restarts: int = 0
    messages: int = 0
    send_retries: int = 0
    """Sends that found the worker's socket full (the message waited for a later flush)."""
    queue_dropped: int = 0
    bad_events: int = 0


@dataclass(slots=True)
class _Worker:
    index: int
    sock: socket.socket | None = None
    process: subprocess.Popen[bytes] | None = None
    calls: dict[int, AnalysisHandle] = field(default_factory=dict)
    ready: list[bytes] = field(default_factory=list)  # whole messages waiting to be sent
    buffer: bytearray = field(default_factory=bytearray)
    pending: int = 0  # bytes in ready and buffer
    deaths: list[float] = field(default_factory=list)


def _start_process() -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """A worker and the loop's end of its socket pair (run in a thread: fork+exec)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        for sock in (ours, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        # numpy's BLAS threads spin while they wait for a core (docs/capacity.md §4).
        env = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
        process = subprocess.Popen(
            [sys.executable, "-m", "voipalert.net.rx_worker", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()  # the worker's copy is its own: end of file reaches it when ours closes
    ours.setblocking(False)
    return ours, process


class AnalysisPool:
    """``workers`` analysis processes for every call of the process. ``await start()`` in
    the running loop, ``await close()`` at the end."""

    def __init__(self, workers: int) -> None:
        if not 1 <= workers <= MAX_WORKERS:
            raise ValueError(f"an analysis pool needs 1 to {MAX_WORKERS} workers, not {workers}")
        self._workers = [_Worker(i) for i in range(workers)]
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._restarting: set[asyncio.Task[None]] = set()
        self._closed = False
        self.stats = PoolStats()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process is not None]

    @property
    def pending_bytes(self) -> int:
        return sum(w.pending for w in self._workers)

    @property
    def calls(self) -> int:
        return sum(len(w.calls) for w in self._workers)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.gather(*(self._spawn(w) for w in self._workers))

    async def _spawn(self, worker: _Worker) -> None:
        sock, process = await asyncio.to_thread(_start_process)
        if self._closed:
            sock.close()
            await asyncio.to_thread(_reap, process)
            return
        assert self._loop is not None
        worker.sock, worker.process = sock, process
        self.stats.workers_started += 1
        self._loop.add_reader(sock.fileno(), self._readable, worker)
        for handle in worker.calls.values():
            self._queue(worker, open_record(handle.call, handle.spec))
            if handle.beeps:
                self._queue(worker, beeps_record(handle.call, True))
        log.info("analysis worker %d started (pid %d)", worker.index, process.pid)

    def attach(
        self,
        spec: AnalysisSpec,
        on_event: EventSink,
        on_lost: Callable[[], None] | None = None,
    ) -> AnalysisHandle:
        """A call's analysis on the least busy worker."""
        if self._closed:
            raise RuntimeError("the analysis pool is closed")
        worker = min(self._workers, key=lambda w: len(w.calls))
        handle = AnalysisHandle(self, next(self._ids) & 0xFFFFFFFF, spec, on_event, on_lost)
        handle.worker = worker
        worker.calls[handle.call] = handle
        if worker.sock is not None:
            self._queue(worker, open_record(handle.call, spec))
        return handle

    def _detach(self, handle: AnalysisHandle) -> None:
        worker = handle.worker
        if worker is None or worker.calls.pop(handle.call, None) is None:
            return
        if worker.sock is not None:
            self._queue(worker, close_record(handle.call))

    def _put(self, handle: AnalysisHandle, record: bytes, *, data: bool) -> bool:
        """Queue ``record`` for the handle's worker; False when it was dropped."""
        worker = handle.worker
        if worker is None or handle.closed:
            return False
        if worker.sock is None or (data and worker.pending >= MAX_PENDING_BYTES):
            # Restarting, or behind: the records of calls' audio are dropped, never the
            # records that keep the worker's state right (open, close, beeps).
            handle.stats.queue_dropped += 1
            self.stats.queue_dropped += 1
            return False
        self._queue(worker, record)
        return True

    def _queue(self, worker: _Worker, record: bytes) -> None:
        if len(worker.buffer) + len(record) > MAX_MESSAGE:
            worker.ready.append(bytes(worker.buffer))
            worker.buffer.clear()
        worker.buffer += record
        worker.pending += len(record)
        if self._flush_handle is None and self._loop is not None and not self._closed:
            self._flush_handle = self._loop.call_later(FLUSH_SECONDS, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        behind = False
        for worker in self._workers:
            if worker.sock is None:
                continue
            if worker.buffer:
                worker.ready.append(bytes(worker.buffer))
                worker.buffer.clear()
            sent = 0
            for message in worker.ready:
                try:
                    worker.sock.send(message)
                except BlockingIOError:
                    # The worker is behind: what is queued waits for the next flush, and
                    # new audio is dropped once MAX_PENDING_BYTES wait.
                    self.stats.send_retries += 1
                    behind = True
                    break
                except OSError:
                    break  # the worker died: its reader sees the end and restarts it
                sent += 1
                worker.pending -= len(message)
                self.stats.messages += 1
            del worker.ready[:sent]
        if behind and self._loop is not None and not self._closed:
            self._flush_handle = self._loop.call_later(FLUSH_SECONDS, self._flush)

    def _readable(self, worker: _Worker) -> None:
        sock = worker.sock
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(EVENT_SIZE * 4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._died(worker)
                return
            try:
                for call, event in decode_events(data):
                    handle = worker.calls.get(call)
                    if handle is not None:
                        handle._event(event)
            except ValueError as exc:
                self.stats.bad_events += 1
                log.error("analysis worker %d sent a malformed event: %s", worker.index, exc)

    def _died(self, worker: _Worker) -> None:
        """The worker's end closed: it exited or was killed."""
        assert self._loop is not None
        sock, process = worker.sock, worker.process
        worker.sock, worker.process = None, None
        if sock is not None:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        dropped = sum(1 for _ in worker.ready) + bool(worker.buffer)
        worker.ready.clear()
        worker.buffer.clear()
        worker.pending = 0
        if self._closed:
            return
        code = process.poll() if process is not None else None
        log.error(
            "analysis worker %d (pid %s) ended (exit status %s) under %d calls; %d messages "
            "lost; restarting it: meanwhile their in-band keys and beeps are not heard",
            worker.index, process.pid if process else "?", code, len(worker.calls), dropped,
        )  # fmt: skip
        for handle in list(worker.calls.values()):
            handle._lost()
        now = self._loop.time()
        worker.deaths = [t for t in worker.deaths if now - t < 60.0] + [now]
        backoff = RESTART_BACKOFF_SECONDS[min(len(worker.deaths), len(RESTART_BACKOFF_SECONDS)) - 1]
        task = self._loop.create_task(self._restart(worker, process, backoff))
        self._restarting.add(task)
        task.add_done_callback(self._restarting.discard)

    async def _restart(
        self, worker: _Worker, process: subprocess.Popen[bytes] | None, backoff: float
    ) -> None:
        if process is not None:
            await asyncio.to_thread(_reap, process)
        if backoff:
            await asyncio.sleep(backoff)  # a worker dying at once again must not spin
        if self._closed:
            return
        self.stats.restarts += 1
        try:
            await self._spawn(worker)
        except OSError as exc:
            log.error("analysis worker %d could not be restarted: %s", worker.index, exc)

    async def close(self) -> None:
        """Stop every worker (end of file on its socket; killed after ``STOP_SECONDS``)
        and wait for it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for task in list(self._restarting):
            task.cancel()
        for task in list(self._restarting):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        processes = []
        for worker in self._workers:
            if worker.sock is not None:
                if self._loop is not None:
                    self._loop.remove_reader(worker.sock.fileno())
                worker.sock.close()
                worker.sock = None
            if worker.process is not None:
                processes.append(worker.process)
            for handle in worker.calls.values():
                handle.closed = True
            worker.calls.clear()
        await asyncio.gather(*(asyncio.to_thread(_reap, p) for p in processes))


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Wait for ``process`` to end, killing it if it does not within ``STOP_SECONDS``."""
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
