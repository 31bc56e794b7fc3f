"""The console's pages answer, logged in, with the alert fired through the webhook."""

from __future__ import annotations

from tests.console.conftest import Console


async def test_board_alert_and_oncall_pages(console: Console) -> None:
    alert_id = await console.fire("Disk full on SRV-DB-01", instance="srv-db-01")
    client = await console.login("admin")
    status, page, _ = await console.get(client, "/")
    assert status == 200
    assert "Disk full on SRV-DB-01" in page
    status, page, _ = await console.get(client, f"/alerts/{alert_id}")
    assert status == 200, page
    assert "srv-db-01" in page
    status, page, _ = await console.get(client, "/oncall?at=2026-03-29T02:45")
    assert status == 200, page
    assert "primary: at 2026-03-29 03:00 CEST" in page or "primary: at" in page
