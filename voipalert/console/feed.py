"""One watcher of the store's change version for all the open live-update streams.

Every change to alerts, calls, the rota or users writes an audit entry, so the newest audit
id is a change counter (``UserTables.change_version``). Rather than each open browser
polling it, one task (owned by the HTTP app: started with it, cancelled at its cleanup)
polls it every ``interval`` seconds while at least one stream listens, and wakes every
stream when it moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

from voipalert.store import StoreError
from voipalert.store.users import UserTables

log = logging.getLogger("voipalert.console")


class ChangeFeed:
    def __init__(self, users: UserTables, interval: float) -> None:
        self._users = users
        self._interval = interval
        self.version = -1
        self._changed = asyncio.Event()  # replaced by a fresh one at each change
        self._listeners = 0
        self._wanted = asyncio.Event()  # set while a stream listens
        self.closed = False

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            try:
                version = await self._users.change_version()
            except StoreError as exc:
                log.warning("live updates: cannot read the change version: %s", exc)
                version = self.version
            if version != self.version:
                self.version = version
                self.wake()
            await asyncio.sleep(self._interval)

    def wake(self) -> None:
        """Wake every waiting stream."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def close(self) -> None:
        """Shutdown: every stream wakes now, and any later ``wait`` returns at once."""
        self.closed = True
        self.wake()

    async def current(self) -> int:
        """The version now (read from the store when the feed has not polled yet)."""
        if self.version < 0:
            self.version = await self._users.change_version()
        return self.version

    @contextlib.contextmanager
    def listening(self) -> Iterator[None]:
        self._listeners += 1
        self._wanted.set()
        try:
            yield
        finally:
            self._listeners -= 1
            if self._listeners == 0:
                self._wanted.clear()

    async def wait(self, seen: int, timeout: float) -> int:  # noqa: ASYNC109 (a poll period)
        """The version, once it differs from ``seen`` or ``timeout`` seconds have passed
        (at once after ``close``)."""
        if self.version == seen and not self.closed:
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await changed.wait()
        return self.version


async def run_feed(feed: ChangeFeed) -> AsyncIterator[None]:
    """For ``app.cleanup_ctx``: the feed's task lives exactly as long as the app."""
    task = asyncio.get_running_loop().create_task(feed.run(), name="console-feed")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
