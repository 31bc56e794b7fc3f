"""Calls started together do not all send their INVITE in one turn of the loop
(calls.DIALS_PER_WINDOW, docs/capacity.md §5): the turns in between carry the audio."""

from __future__ import annotations

import asyncio

from voipalert.calls import DIALS_PER_WINDOW, MediaConfig, Phone
from voipalert.sip.config import UAConfig


async def test_calls_started_together_dial_a_few_per_turn() -> None:
    config = UAConfig(user="u", domain="127.0.0.1", local_host="127.0.0.1", local_port=5997)
    phone = Phone(config, ("127.0.0.1", 5997), MediaConfig("127.0.0.1", "127.0.0.1", 46000, 46099))
    dialled: list[int] = []

    async def dial(n: int) -> None:
        await phone._dial_turn()
        dialled.append(n)

    async with asyncio.TaskGroup() as group:
        for n in range(5 * DIALS_PER_WINDOW):
            group.create_task(dial(n))
        await asyncio.sleep(0)  # one turn: the tasks start, a window's worth dials
        first_turn = len(dialled)
    # A slow machine may open a second window within the turn; never all of them.
    assert DIALS_PER_WINDOW <= first_turn <= 2 * DIALS_PER_WINDOW
    assert sorted(dialled) == list(range(5 * DIALS_PER_WINDOW))
