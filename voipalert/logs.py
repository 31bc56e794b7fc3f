"""Logging, set up once per process.

Records carry the alert and call they belong to. The ids live in context variables, so a
task started for a call (and every task it starts) stamps its records without passing a
logger around: asyncio copies the context into each new task.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import queue
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Final, Literal, TextIO

LogFormat = Literal["text", "json"]

_alert_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("alert_id", default=None)
_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_id", default=None)
_person: contextvars.ContextVar[str | None] = contextvars.ContextVar("person", default=None)
# Fields other code passes with ``extra=`` under these names, so that log shippers can
# filter on them: sip_status (int), registration_state, outcome, token.

# LogRecord attributes that are not "extra" fields given by the caller.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "alert_id", "call_id", "person", "taskName"}
)


@contextmanager
def log_context(
    *, alert_id: str | int | None = None, call_id: str | None = None, person: str | None = None
) -> Iterator[None]:
    """Stamp every record logged inside the block (and in tasks started from it)."""
    tokens: list[tuple[contextvars.ContextVar[str | None], contextvars.Token[str | None]]] = []
    if alert_id is not None:
        tokens.append((_alert_id, _alert_id.set(str(alert_id))))
    if call_id is not None:
        tokens.append((_call_id, _call_id.set(call_id)))
    if person is not None:
        tokens.append((_person, _person.set(person)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # The context fills what the call did not say itself: an ``extra={"person": ...}``
        # (an ack through the API names its person) is kept.
        for name, var in (("alert_id", _alert_id), ("call_id", _call_id), ("person", _person)):
            value = var.get()
            if value is not None or getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


# Every character that a terminal, a log viewer or a line-based shipper may act on: C0
# controls (CR, LF, ESC, BEL...), DEL, C1 controls (U+009B is a one-byte CSI on some
# terminals), and the Unicode line and paragraph separators, which JSON allows raw but
# JavaScript and many viewers treat as line ends. Values in log lines come from outside
# (alert text, e-mail subjects, SIP headers): none of them may forge or recolour a line.
_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT: Final = {"\r": "\\r", "\n": "\\n", "\t": "\\t", "\x00": "\\0"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def _printable(value: object) -> str:
    """``value`` as text with every control character escaped (one log line stays one)."""
    return _UNSAFE.sub(_escape, str(value))


def _json_safe(text: str) -> str:
    # json.dumps escapes C0 controls; with ensure_ascii=False it leaves DEL, C1 and
    # U+2028/U+2029 raw. Escape those too, as \uXXXX (still valid JSON, same value).
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _traceback(text: str) -> str:
    # A traceback is several lines by design; only what is inside each line is escaped.
    return "\n".join(_printable(line) for line in text.split("\n"))


class TextFormatter(logging.Formatter):
    """``2026-11-27 20:41:07.123 INFO  voipalert.sip [alert=12 call=ab3f] message key=value``"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%d %H:%M:%S")
        ids = []
        alert_id = getattr(record, "alert_id", None)
        call_id = getattr(record, "call_id", None)
        if alert_id:
            ids.append(f"alert={alert_id}")
        if call_id:
            ids.append(f"call={call_id}")
        person = getattr(record, "person", None)
        if person:
            ids.append(f"person={_printable(person)}")
        context = f" [{' '.join(ids)}]" if ids else ""
        extras = "".join(
            f" {key}={_printable(value)}"
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRS
        )
        line = (
            f"{stamp}.{int(record.msecs):03d} {record.levelname:<5} {record.name}{context} "
            f"{_printable(record.getMessage())}{extras}"
        )
        if record.exc_info:
            line += "\n" + _traceback(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("alert_id", "call_id", "person"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS:
                entry[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _json_safe(json.dumps(entry, ensure_ascii=False))


def setup_logging(
    fmt: LogFormat = "text", level: str | int = "INFO", stream: TextIO | None = None
) -> None:
    """Install one handler on the root logger, replacing any earlier one of ours."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    handler.set_name("voipalert")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "voipalert"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiosmtpd logs about ten INFO lines per delivered mail on "mail.log" (connection, each
    # SMTP verb, the peer): noise beside our own one line per alert. Its warnings still
    # show; at DEBUG everything does.
    chatty = logging.getLogger("mail.log")
    chatty.setLevel(logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING)


# Records waiting for the writer thread; past this the newest are dropped and counted.
BACKGROUND_QUEUE_RECORDS: Final = 10_000


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Formats on the caller's thread (the context filter needs the caller's context
    variables), queues the finished line, and drops rather than blocks when the writer
    is that far behind; the next line that gets through says how many were dropped."""

    def __init__(self, records: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(records)
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        records = self.queue
        assert isinstance(records, queue.Queue)
        try:
            if self.dropped:
                records.put_nowait(self.drop_note())
                self.dropped = 0
            records.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def drop_note(self) -> logging.LogRecord:
        note = logging.makeLogRecord(
            {"name": "voipalert.logs", "levelno": logging.WARNING, "levelname": "WARNING",
             "msg": f"{self.dropped} log records dropped: the log output could not keep up"}
        )  # fmt: skip
        prepared: logging.LogRecord = self.prepare(note)
        return prepared


class _Writer(logging.handlers.QueueListener):
    def enqueue_sentinel(self) -> None:
        # Blocking: the queue may be full, and the writer is draining it.
        self.queue.put(self._sentinel)  # type: ignore[attr-defined]


@contextmanager
def written_in_background() -> Iterator[None]:
    """While inside, our log handler only formats and queues; a thread writes.

    ``serve`` logs from the event loop that paces every call's audio. A write to a file or
    a pipe can block: a full pipe to a slow reader, or a disk busy enough that the kernel
    throttles writers of dirty pages (seen: 25-46 ms blocked stalls of the loop during
    another process's heavy writes, docs/realtime.md §4). Leaving flushes every queued
    record."""
    root = logging.getLogger()
    ours = next((h for h in root.handlers if h.get_name() == "voipalert"), None)
    if ours is None:
        yield
        return
    records: queue.Queue[logging.LogRecord] = queue.Queue(BACKGROUND_QUEUE_RECORDS)
    front = _DroppingQueueHandler(records)
    front.setFormatter(ours.formatter)
    for f in ours.filters:
        front.addFilter(f)
    front.set_name("voipalert")
    front.setLevel(ours.level)
    writer_format = logging.Formatter("%(message)s")
    old_format, old_filters = ours.formatter, list(ours.filters)
    ours.setFormatter(writer_format)
    for f in old_filters:
        ours.removeFilter(f)
    listener = _Writer(records, ours)
    listener.start()
    root.removeHandler(ours)
    root.addHandler(front)
    try:
        yield
    finally:
        root.removeHandler(front)
        if front.dropped:
            records.put(front.drop_note())
        listener.stop()  # writes what is queued, then joins the thread
        ours.setFormatter(old_format)
        for f in old_filters:
            ours.addFilter(f)
        root.addHandler(ours)
