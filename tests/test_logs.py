from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from voipalert.logs import log_context, setup_logging


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
