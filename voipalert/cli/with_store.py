"""Run one action on the database for a command that needs nothing else (token,
heartbeat): open the store, act, close it, whatever happens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from voipalert.clock import SystemClock
from voipalert.store import Store, StoreConfig

T = TypeVar("T")


async def with_store(
    database: tuple[Path | str, StoreConfig], action: Callable[[Store], Awaitable[T]]
) -> T:
    store = await Store.open(database[0], SystemClock(), database[1])
    try:
        return await action(store)
    finally:
        await store.close()
