"""The console's /oncall page answers from a schedule's live-source copy, like
``voipalert oncall`` does."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from tests.console.conftest import Console
from tests.console.test_pages import _cli_oncall
from voipalert.domain.rota import Feed, FeedShift, PersonName, ScheduleSource, SourceKind
from voipalert.store.feeds import SourceCopy

URL = "http://127.0.0.1:9/primary.ics"


async def test_oncall_page_shows_the_source_copy(console: Console, tmp_path: Path) -> None:
    rota = await console.store.load_rota()
    primary = replace(rota.schedules[0], source=ScheduleSource(SourceKind.ICAL, URL))
    await console.store.replace_rota(replace(rota, schedules=(primary,)))
    start = datetime(2030, 1, 5, 19, 0, tzinfo=UTC)
    feed = Feed(
        (FeedShift(PersonName("bob"), start, datetime(2030, 1, 6, 7, 0, tzinfo=UTC)),),
        datetime(2030, 1, 1, tzinfo=UTC),
        datetime(2030, 2, 1, tzinfo=UTC),
    )
    # A copy as the poller stores it (its source is unreachable here: nothing polls).
    copy = SourceCopy("primary", URL, body=b"", feed=feed, good_at=start, checked_at=start)
    await console.store.save_source_copy(copy, changed=True)
    client = await console.login("viewer")
    at = "2030-01-05T22:00"
    status, page, _ = await console.get(client, f"/oncall?at={quote(at)}")
    assert status == 200
    expected = (await asyncio.to_thread(_cli_oncall, tmp_path / "console0.db", at)).splitlines()
    assert expected[0].startswith("primary: at 2030-01-05 22:00 CET: bob (live source")
    assert f"<code>{expected[0]}</code>" in page
