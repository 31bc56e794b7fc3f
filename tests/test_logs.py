from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from voipalert import logs
from voipalert.logs import log_context, setup_logging, written_in_background


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield buffer
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_json_lines_carry_alert_and_call_ids(stream: io.StringIO) -> None:
    setup_logging("json", "DEBUG", stream)
    log = logging.getLogger("voipalert.test")
    with log_context(alert_id=42, call_id="c-1"):
        log.info("calling %s", "alice", extra={"attempt": 3})
    log.info("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "calling alice"
    assert first["alert_id"] == "42"
    assert first["call_id"] == "c-1"
    assert first["attempt"] == 3
    assert first["level"] == "INFO"
    assert "alert_id" not in second


def test_text_format_is_one_line_even_for_hostile_text(stream: io.StringIO) -> None:
    setup_logging("text", "INFO", stream)
    with log_context(alert_id=7):
        logging.getLogger("voipalert.test").warning("summary %s", "disk full\r\nFAKE LINE")
    output = stream.getvalue()
    assert output.count("\n") == 1
    assert "[alert=7]" in output
    assert "disk full\\r\\nFAKE LINE" in output


async def test_ids_follow_tasks_started_inside_the_context(stream: io.StringIO) -> None:
    setup_logging("json", "INFO", stream)

    async def call() -> None:
        logging.getLogger("voipalert.test").info("in task")

    with log_context(alert_id=9, call_id="x"):
        async with asyncio.TaskGroup() as group:
            group.create_task(call())
    record = json.loads(stream.getvalue())
    assert (record["alert_id"], record["call_id"]) == ("9", "x")


def test_setup_twice_keeps_one_handler(stream: io.StringIO) -> None:
    setup_logging("text", "INFO", stream)
    setup_logging("json", "INFO", stream)
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "voipalert"]
    assert len(ours) == 1


HOSTILE = "disk\x1b[31m red\x07 bell\u2028sep\u2029para\x85nel\x9bcsi\x7fdel\r\nFAKE\x00nul"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_control_character_is_escaped(stream: io.StringIO, fmt: str) -> None:
    setup_logging(fmt, "INFO", stream)  # type: ignore[arg-type]
    logging.getLogger("voipalert.test").warning("subject %s", HOSTILE, extra={"subject": HOSTILE})
    output = stream.getvalue()
    assert output.endswith("\n") and output.count("\n") == 1
    for char in "\x1b\x07\u2028\u2029\x85\x9b\x7f\r\x00":
        assert char not in output, repr(char)
    if fmt == "json":
        record = json.loads(output)  # still valid JSON, carrying the exact text
        assert record["msg"] == f"subject {HOSTILE}" and record["subject"] == HOSTILE
    else:
        assert "\\x1b[31m" in output and "\\u2028" in output and "\\r\\nFAKE" in output


def test_a_traceback_keeps_its_lines_but_not_forged_ones(stream: io.StringIO) -> None:
    setup_logging("text", "INFO", stream)
    try:
        raise ValueError("bad\x1b]0;owned\x07 value")
    except ValueError:
        logging.getLogger("voipalert.test").exception("failed")
    output = stream.getvalue()
    assert "Traceback" in output and "\x1b" not in output and "\\x1b]0;owned\\x07" in output


class _GatedStream(io.StringIO):
    """A log output whose writes wait for the gate: a full pipe, a throttled disk."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.timed_out = False

    def write(self, text: str) -> int:
        if not self.gate.wait(10):
            self.timed_out = True
        return super().write(text)


def test_in_the_background_a_blocked_output_never_blocks_the_logger(
    stream: io.StringIO,
) -> None:
    gated = _GatedStream()
    setup_logging("json", "INFO", gated)
    log = logging.getLogger("voipalert.test")
    with written_in_background():
        with log_context(alert_id=7, call_id="c-7"):
            log.info("first %s", "line", extra={"attempt": 2})
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("second")
        log.info("third")
        gated.gate.set()  # with a synchronous handler the first call would still be waiting
    assert not gated.timed_out, "a log call waited for the output"
    first, second, third = (json.loads(line) for line in gated.getvalue().splitlines())
    assert (first["msg"], first["alert_id"], first["call_id"], first["attempt"]) == (
        "first line", "7", "c-7", 2,
    )  # fmt: skip
    assert second["alert_id"] == "7" and "ValueError: boom" in second["exc"]
    assert third["msg"] == "third" and "alert_id" not in third
    # Back to writing directly afterwards.
    log.info("after")
    assert json.loads(gated.getvalue().splitlines()[-1])["msg"] == "after"


def test_a_writer_that_far_behind_drops_and_says_how_many(
    stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "BACKGROUND_QUEUE_RECORDS", 3)
    gated = _GatedStream()
    setup_logging("text", "INFO", gated)
    log = logging.getLogger("voipalert.test")
    with written_in_background():
        for i in range(10):
            log.info("record %d", i)
        gated.gate.set()
    lines = gated.getvalue().splitlines()
    kept = [line for line in lines if "record " in line and "dropped" not in line]
    notes = [line for line in lines if "log records dropped" in line]
    assert len(notes) == 1
    dropped = int(notes[0].split(" log records dropped")[0].rsplit(" ", 1)[1])
    assert dropped > 0 and len(kept) + dropped == 10
    assert "log records dropped" in lines[-1]
