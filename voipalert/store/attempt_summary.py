"""A few figures per alert about its call attempts, for the alert list (``GET /api/v1/alerts``):
an on-call engineer scanning the list wants to see at once who was called, how often, and how
it ended, without opening every alert. One statement per page (the page is at most
``MAX_PAGE_SIZE`` alerts, so the ``IN`` list is bounded)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from voipalert.store.db import from_db
from voipalert.store.repo import Store

_LIVE = ("pending", "in_flight")


@dataclass(slots=True)
class AttemptSummary:
    total: int = 0
    live: int = 0
    """Attempts committed or dialling now."""
    by_outcome: Counter[str] = field(default_factory=Counter)
    last_person: str | None = None
    last_outcome: str | None = None
    """The latest attempt's outcome, or its state while it has none."""
    last_at: datetime | None = None


async def attempt_summaries(store: Store, alert_ids: Sequence[int]) -> dict[int, AttemptSummary]:
    """A summary for every id (an alert without attempts gets an empty one)."""
    summaries = {alert_id: AttemptSummary() for alert_id in alert_ids}
    if not summaries:
        return summaries
    marks = ", ".join("?" for _ in summaries)
    sql = (
        "SELECT alert_id, state, outcome, person_name, "
        "COALESCE(ended_at, started_at, created_at) AS at "
        f"FROM attempts WHERE alert_id IN ({marks}) ORDER BY alert_id, id"
    )
    db = store._db  # same package: the store's one connection
    async with db.transaction(write=False, what="summarise call attempts") as conn:
        rows = await conn.execute_fetchall(sql, list(summaries))
    for row in rows:
        summary = summaries[int(row["alert_id"])]
        summary.total += 1
        if row["state"] in _LIVE:
            summary.live += 1
        if row["outcome"] is not None:
            summary.by_outcome[str(row["outcome"])] += 1
        summary.last_person = str(row["person_name"])
        summary.last_outcome = str(row["outcome"] or row["state"])
        summary.last_at = from_db(str(row["at"]))
    return summaries
