"""The engine's line queue (engine.CallLines): a counting semaphore whose waiters are
served by priority, then in arrival order, and which never loses a line to a waiter
cancelled while queued or just after it was handed one (docs/multi-node.md, "How work is
claimed": an adopted escalation's call goes first)."""

from __future__ import annotations

import asyncio

from voipalert.engine import CallLines


async def _take(lines: CallLines, name: str, priority: int, order: list[str]) -> None:
    async with lines.line(priority):
        order.append(name)
        await asyncio.sleep(0)


async def test_free_lines_are_taken_at_once() -> None:
    lines = CallLines(2)
    await lines.acquire()
    await lines.acquire(CallLines.ADOPTED)
    assert lines.waiting == 0
    lines.release()
    lines.release()
    await asyncio.wait_for(lines.acquire(), 1)


async def test_adopted_calls_overtake_normal_ones_queued_earlier() -> None:
    lines = CallLines(1)
    await lines.acquire()  # the one line is busy
    order: list[str] = []
    tasks = [
        asyncio.create_task(_take(lines, "normal 1", CallLines.NORMAL, order)),
        asyncio.create_task(_take(lines, "normal 2", CallLines.NORMAL, order)),
        asyncio.create_task(_take(lines, "adopted 1", CallLines.ADOPTED, order)),
        asyncio.create_task(_take(lines, "adopted 2", CallLines.ADOPTED, order)),
    ]
    while lines.waiting < len(tasks):  # noqa: ASYNC110 - the queue is what is awaited
        await asyncio.sleep(0)
    lines.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert order == ["adopted 1", "adopted 2", "normal 1", "normal 2"]


async def test_a_cancelled_waiter_loses_no_line() -> None:
    lines = CallLines(1)
    await lines.acquire()
    queued = asyncio.create_task(lines.acquire(CallLines.ADOPTED))
    order: list[str] = []
    after = asyncio.create_task(_take(lines, "after", CallLines.NORMAL, order))
    while lines.waiting < 2:  # noqa: ASYNC110 - the queue is what is awaited
        await asyncio.sleep(0)
    queued.cancel()  # cancelled while queued: skipped
    lines.release()
    await asyncio.wait_for(after, 1)
    assert order == ["after"]
    # Handed a line and cancelled before it ran: the line goes on to the next waiter.
    await lines.acquire()
    handed = asyncio.create_task(lines.acquire())
    nxt = asyncio.create_task(_take(lines, "next", CallLines.NORMAL, order))
    while lines.waiting < 2:  # noqa: ASYNC110 - the queue is what is awaited
        await asyncio.sleep(0)
    lines.release()  # hands the line to ``handed``, whose task has not run yet
    handed.cancel()
    await asyncio.wait_for(nxt, 1)
    assert order == ["after", "next"]
    await asyncio.wait_for(lines.acquire(), 1)  # and the line is free again afterwards
