"""Status webhooks in the real ``voipalert serve``: a receiver on loopback that fails gets
the notification retried; serve is stopped (SIGTERM) with it still pending and started
again, and the restarted serve delivers it, signed, followed by the call's and the
acknowledgement's notifications in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

from testbed import Testbed

from tests.e2e.server import rota_yaml, running_server
from tests.ingest.status_receiver import Receiver, receiving
from voipalert.ingest import status_format

SECRET = "e2e-outbound-signing-key"


async def test_a_notification_pending_across_a_restart_is_delivered(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    receiver = Receiver(default=500)
    async with receiving(receiver):
        rota = rota_yaml(testbed, "ack", "noanswer", ring=20)
        async with running_server(
            testbed, rota, tmp_path, cache,
            outbound__targets__siem__url=receiver.url,
            outbound__targets__siem__secret=SECRET,
            outbound__backoff_first_seconds="0.5",
            outbound__backoff_max_seconds="1",
            outbound__poll_seconds="0.2",
        ) as server:  # fmt: skip
            status, body = await server.request("POST", "/api/v1/alerts", {"summary": "db1 down"})
            assert status == 202, body
            alert_id = body["id"]
            await receiver.wait_for(2, seconds=20)  # "created", tried and retried
            # In a thread: the receiver, on this loop, keeps answering while serve stops.
            assert await asyncio.to_thread(server.stop) == 0
            await asyncio.sleep(0.3)  # a request serve sent before it exited is read now
            tries_before = len(receiver.got)
            receiver.default = 200
            await asyncio.sleep(1.5)  # past the retry's due time: nothing sends it now
            assert len(receiver.got) == tries_before, "serve is stopped"
            await server.start()
            await server.wait_alert(alert_id, "acknowledged", 60)
            await receiver.wait_until(lambda: "acknowledged" in _events(receiver), 20)
    delivered = receiver.got[tries_before:]
    events = [got.json["event"] for got in delivered]
    assert events[0] == "created"
    assert events.index("call") < events.index("acknowledged")
    for got in delivered:
        timestamp = int(got.headers[status_format.TIMESTAMP_HEADER])
        signature = got.headers[status_format.SIGNATURE_HEADER]
        assert status_format.verify(SECRET.encode(), timestamp, got.body, signature)
    assert {got.json["alert"]["id"] for got in delivered} == {alert_id}
    call = next(got.json["call"] for got in delivered if got.json["event"] == "call")
    assert call["person"] == "ack-person" and call["outcome"] == "acknowledged"


def _events(receiver: Receiver) -> list[str]:
    return [got.json["event"] for got in receiver.got]
