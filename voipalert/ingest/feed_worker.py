"""Expanding a source's body into shifts in a child process with a deadline.

Expanding recurring events is CPU work whose cost the feed's author chooses: a rule that
never matches inside the window makes the recurrence library walk years of candidates
(seconds each), so it never runs on the event loop, nor in a thread we could not stop. A
child process (``python -m voipalert.ingest.feed_worker``) reads the request as JSON on
stdin and answers on stdout; past ``timeout`` it is killed, and it limits its own CPU time
and memory as well (docs/rota-sources.md).
"""

from __future__ import annotations

import asyncio
import base64
import json
import resource
import sys
from datetime import datetime
from typing import Final

from voipalert.domain.rota import Feed, ScheduleSource, SourceKind
from voipalert.ingest.feed_parse import SourceError, caldav_to_ical, parse_ical, parse_json
from voipalert.store.feeds import feed_from_json, feed_to_json
from voipalert.store.rota_sql import source_from_json, source_to_json

DEFAULT_TIMEOUT_SECONDS: Final = 15.0
CHILD_MEMORY_BYTES: Final = 1024 * 1024 * 1024
MAX_ANSWER_BYTES: Final = 64 * 1024 * 1024


def expand_here(
    body: bytes,
    source: ScheduleSource,
    people: frozenset[str],
    zone: str,
    now: datetime,
    window: tuple[datetime, datetime],
) -> Feed:
    """The expansion itself, in this process (the child's work; the CLI calls it too)."""
    if source.kind is SourceKind.JSON:
        return parse_json(body, source, people, zone, now, window)
    if source.kind is SourceKind.CALDAV:
        body = caldav_to_ical(body)
    return parse_ical(body, source, people, zone, window)


def child_request(
    body: bytes,
    source: ScheduleSource,
    people: frozenset[str],
    zone: str,
    now: datetime,
    window: tuple[datetime, datetime],
    deadline_seconds: float,
) -> bytes:
    """What the child reads on stdin."""
    return json.dumps(
        {
            "body": base64.b64encode(body).decode("ascii"),
            "source": source_to_json(source),
            "people": sorted(people),
            "zone": zone,
            "now": now.isoformat(),
            "window": [window[0].isoformat(), window[1].isoformat()],
            "cpu_seconds": max(1, int(deadline_seconds) + 1),
        }
    ).encode()


async def expand(
    body: bytes,
    source: ScheduleSource,
    people: frozenset[str],
    zone: str,
    now: datetime,
    window: tuple[datetime, datetime],
    deadline_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> Feed:
    """``expand_here`` in a child process; ``SourceError`` on bad data or past the deadline."""
    request = child_request(body, source, people, zone, now, window, deadline_seconds)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voipalert.ingest.feed_worker",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(deadline_seconds):
            out, _ = await child.communicate(request)
    except TimeoutError:
        raise SourceError(
            f"expanding the events took over {deadline_seconds:g} s; refused"
        ) from None
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    try:
        answer = json.loads(out[:MAX_ANSWER_BYTES])
    except ValueError:
        raise SourceError(f"expanding the events failed (exit status {child.returncode})") from None
    if "error" in answer:
        raise SourceError(str(answer["error"]))
    return feed_from_json(answer["shifts"], answer["window"][0], answer["window"][1])


def _child() -> None:
    request = json.loads(sys.stdin.buffer.read())
    cpu = int(request["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    try:
        feed = expand_here(
            base64.b64decode(request["body"]),
            source_from_json(request["source"]),
            frozenset(request["people"]),
            request["zone"],
            datetime.fromisoformat(request["now"]),
            (
                datetime.fromisoformat(request["window"][0]),
                datetime.fromisoformat(request["window"][1]),
            ),
        )
    except SourceError as exc:
        answer: dict[str, object] = {"error": str(exc)}
    except MemoryError:
        answer = {"error": "expanding the events needed too much memory; refused"}
    except Exception as exc:  # a library's surprise on hostile input: still an answer
        answer = {"error": f"cannot read the calendar: {type(exc).__name__}: {exc}"[:300]}
    else:
        answer = {
            "shifts": feed_to_json(feed),
            "window": [feed.window_start.isoformat(), feed.window_end.isoformat()],
        }
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    _child()
