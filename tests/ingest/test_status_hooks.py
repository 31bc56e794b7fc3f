"""Outgoing status webhooks against real receivers on loopback: signed JSON a receiver can
verify, the chat format, order per alert, retries after 500s, dead after the last try or a
4xx, a hanging receiver that holds up only itself, redirects not followed, and a sender
restarted mid-retry (a new store connection to the same file) that delivers what was
pending."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.ingest.conftest import sample_rota
from tests.ingest.status_receiver import HANG, Receiver, receiving
from voipalert.clock import SystemClock
from voipalert.domain.alert import NewAlert
from voipalert.ingest import status_format, tokens
from voipalert.ingest.config import OutboundConfig, RetryPolicy, StatusTarget
from voipalert.ingest.health import SipState
from voipalert.ingest.metrics import IngestMetrics
from voipalert.ingest.status_hooks import StatusSender
from voipalert.store import Store
from voipalert.store.api_reads import ApiReads

SECRET = b"0123456789abcdef-receiver-key"
FAST = RetryPolicy(max_tries=4, first_seconds=0.05, max_seconds=0.2, jitter=0.5)


async def eventually(check: Callable[[], Awaitable[Any]], what: str, seconds: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for: {what}")


@asynccontextmanager
async def sending(
    db: Path, *targets: StatusTarget, retry: RetryPolicy = FAST, request_seconds: float = 2.0
) -> AsyncIterator[tuple[Store, StatusSender, list[tuple[str, str]]]]:
    """A store on ``db`` and a running sender, as ``serve`` wires them."""
    store = await Store.open(db, SystemClock())
    seen: list[tuple[str, str]] = []
    config = OutboundConfig(
        targets=targets, retry=retry, timeout_seconds=request_seconds, poll_seconds=0.05,
        alert_url="http://voipalert.example.org/alerts",
    )  # fmt: skip
    sender = StatusSender(store, SystemClock(), config, observe=lambda t, r: seen.append((t, r)))
    await sender.start()
    task = asyncio.create_task(sender.run())
    try:
        yield store, sender, seen
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await store.close()


async def _alert(store: Store, summary: str = "disk full on db1", key: str = "k1") -> int:
    alert, _ = await store.create_or_join_alert(NewAlert(summary, dedup_key=key))
    return alert.id


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "voipalert.db"
    store = await Store.open(path, SystemClock())
    await store.replace_rota(sample_rota())
    await store.close()
    return path


async def test_signed_json_in_order_per_alert(db: Path) -> None:
    async with receiving(Receiver()) as receiver:
        target = StatusTarget("siem", receiver.url, "json", secret=SECRET)
        async with sending(db, target) as (store, sender, seen):
            alert_id = await _alert(store)
            await store.ack_alert(alert_id, by="bob", via="api")
            await store.resolve_alert(alert_id, by="api")
            sender.wake()
            await eventually(lambda: _states(store, alert_id, {"done"}), "all delivered")
    events = [body["event"] for body in receiver.bodies()]
    assert events == ["created", "acknowledged", "resolved"]
    for got in receiver.got:
        timestamp = int(got.headers[status_format.TIMESTAMP_HEADER])
        signature = got.headers[status_format.SIGNATURE_HEADER]
        assert status_format.verify(SECRET, timestamp, got.body, signature)
        assert not status_format.verify(b"another-key-of-16+", timestamp, got.body, signature)
        assert not status_format.verify(SECRET, timestamp + 1, got.body, signature), (
            "the timestamp is signed: it cannot be moved to replay the body later"
        )
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["User-Agent"].startswith("voipalert/")
    first = receiver.bodies()[0]
    assert first["alert"]["id"] == alert_id and first["alert"]["summary"] == "disk full on db1"
    assert first["url"] == f"http://voipalert.example.org/alerts/{alert_id}"
    assert receiver.got[0].headers[status_format.EVENT_ID_HEADER] == str(first["event_id"])
    assert seen == [("siem", "ok")] * 3
    assert receiver.most_in_flight == 1


async def test_chat_format_and_no_mentions_from_alert_text(db: Path) -> None:
    async with receiving(Receiver()) as receiver:
        target = StatusTarget("chat", receiver.url, "slack", events=frozenset({"created"}))
        async with sending(db, target) as (store, _sender, _seen):
            alert_id = await _alert(store, "@channel <!here> db&1 is down @all")
            await eventually(lambda: _states(store, alert_id, {"done"}), "delivered")
    [message] = receiver.bodies()
    assert status_format.SIGNATURE_HEADER not in receiver.got[0].headers, "no secret, no sign"
    text = message["text"]
    assert "@channel" not in text and "@all" not in text and "<!here>" not in text
    assert "&lt;!here&gt; db&amp;1" in text
    [attachment] = message["attachments"]
    assert attachment["color"] == "#d00000"  # critical
    assert attachment["title_link"].startswith("http://voipalert.example.org/alerts/")
    assert {f["title"] for f in attachment["fields"]} == {"Severity", "Status", "Source"}


async def test_retries_after_500s_keep_the_order(db: Path) -> None:
    async with receiving(Receiver(script=[500, 503])) as receiver:
        target = StatusTarget("siem", receiver.url)
        async with sending(db, target) as (store, _sender, seen):
            alert_id = await _alert(store)
            await receiver.wait_for(1)
            await store.resolve_alert(alert_id, by="api")  # queued while "created" retries
            await receiver.wait_for(4)
            await eventually(lambda: _states(store, alert_id, {"done"}), "both delivered")
            rows = await store.deliveries_of(alert_id)
    assert [b["event"] for b in receiver.bodies()] == ["created"] * 3 + ["resolved"]
    assert [r.tries for r in rows] == [3, 1]
    assert seen == [("siem", "retry"), ("siem", "retry"), ("siem", "ok"), ("siem", "ok")]


async def _states(store: Store, alert_id: int, states: set[str]) -> bool:
    return {r.state for r in await store.deliveries_of(alert_id)} == states


async def _true(value: object) -> bool:
    return bool(value)


async def _done(store: Store, target: str, count: int) -> bool:
    return (await store.delivery_counts()).get((target, "done"), 0) == count


async def test_dead_after_the_last_try_or_a_4xx(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "voipalert.outbound")
    metrics = IngestMetrics(SystemClock())
    async with (
        receiving(Receiver(default=500)) as down,
        receiving(Receiver(default=410)) as gone,
    ):
        targets = (StatusTarget("down", down.url), StatusTarget("gone", gone.url))
        async with sending(db, *targets) as (store, sender, _seen):
            sender.observe = metrics.observe_status_webhook
            alert_id = await _alert(store)
            await eventually(lambda: _states(store, alert_id, {"dead"}), "both dead")
            rows = await store.deliveries_of(alert_id)
            await metrics.refresh(ApiReads(store, SystemClock()), SipState.REGISTERED)
    assert {r.target: r.tries for r in rows} == {"down": FAST.max_tries, "gone": 1}
    assert len(down.got) == FAST.max_tries and len(gone.got) == 1
    assert all(r.last_error and len(r.last_error) <= 300 for r in rows)
    text = metrics.render().decode()
    assert 'voipalert_status_webhooks_total{result="dead",target="down"} 1.0' in text
    assert 'voipalert_status_webhooks_total{result="retry",target="down"} 3.0' in text
    assert 'voipalert_status_webhooks_total{result="dead",target="gone"} 1.0' in text
    assert 'voipalert_status_webhooks_queued{state="dead",target="gone"} 1.0' in text
    dead = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert {r.getMessage().split(":")[0] for r in dead} == {
        "status webhook down",
        "status webhook gone",
    }


async def test_a_hanging_receiver_holds_up_only_itself(db: Path) -> None:
    async with (
        receiving(Receiver(default=HANG)) as hanging,
        receiving(Receiver()) as healthy,
    ):
        targets = (StatusTarget("hangs", hanging.url), StatusTarget("fine", healthy.url))
        async with sending(db, *targets, request_seconds=0.3) as (store, _sender, seen):
            loop = asyncio.get_running_loop()
            started = loop.time()
            for n in range(5):
                await _alert(store, f"alert {n}", key=f"k{n}")
            await healthy.wait_for(5, seconds=5)
            took = loop.time() - started
            await eventually(lambda: _done(store, "fine", 5), "recorded")
            await hanging.wait_for(2)
    assert took < 2.0, "the healthy target is not held up by the hanging one"
    assert hanging.most_in_flight == 1, "one request in flight per target"
    assert ("hangs", "retry") in seen


async def test_redirects_are_not_followed(db: Path) -> None:
    async with receiving(Receiver()) as elsewhere:
        async with receiving(Receiver(default=302, redirect_to=elsewhere.url)) as redirecting:
            target = StatusTarget("siem", redirecting.url)
            async with sending(db, target) as (store, _sender, seen):
                alert_id = await _alert(store)
                await eventually(lambda: _states(store, alert_id, {"dead"}), "dead")
    assert elsewhere.got == [] and seen == [("siem", "dead")]


async def test_a_restart_mid_retry_delivers_what_was_pending(db: Path) -> None:
    async with receiving(Receiver(default=500)) as receiver:
        target = StatusTarget("siem", receiver.url, secret=SECRET)
        slow = RetryPolicy(max_tries=5, first_seconds=0.2, max_seconds=0.2)
        async with sending(db, target, retry=slow) as (store, _sender, seen):
            alert_id = await _alert(store)
            await store.resolve_alert(alert_id, by="api")
            await receiver.wait_for(1)
            await eventually(lambda: _true(seen), "the first try recorded")
            assert seen == [("siem", "retry")]
        # The sender and its store are gone (as with serve stopped); the rows are on disk.
        receiver.default = 200
        async with sending(db, target) as (store, _sender, seen):
            await eventually(lambda: _states(store, alert_id, {"done"}), "delivered")
    assert [b["event"] for b in receiver.bodies()][-2:] == ["created", "resolved"]
    assert seen == [("siem", "ok"), ("siem", "ok")]


def test_targets_refuse_other_schemes() -> None:
    for url in ("file:///etc/passwd", "gopher://127.0.0.1/", "ftp://x/", "unix:/run/x"):
        with pytest.raises(ValueError, match="http"):
            StatusTarget("x", url)
    with pytest.raises(ValueError, match="format"):
        StatusTarget("x", "http://127.0.0.1/", "xml")


def test_the_signature_is_the_one_our_intake_checks() -> None:
    body = b'{"event":"created"}'
    signed = status_format.sign(SECRET, 1767225600, body)
    assert signed == "sha256=" + tokens.sign(SECRET.decode(), body, "1767225600")
    given = tokens.normalize_signature(signed)
    assert given is not None
    assert tokens.signature_matches(SECRET.decode(), body, given, "1767225600")


async def test_a_row_no_body_can_be_made_of_is_dead_not_retried(db: Path) -> None:
    store = await Store.open(db, SystemClock())
    target = StatusTarget("siem", "http://127.0.0.1:9/never", "slack")
    seen: list[tuple[str, str]] = []
    sender = StatusSender(store, SystemClock(), OutboundConfig(targets=(target,)),
                          observe=lambda t, r: seen.append((t, r)))  # fmt: skip
    try:
        await sender.start()
        alert_id = await _alert(store)
        delivery = await store.next_delivery("siem")
        assert delivery is not None
        bad = replace(delivery, event="escalated", payload={"detail": {"step": "two"}})
        async with aiohttp.ClientSession() as session:
            assert not await sender.send(session, target, bad)
        [row] = await store.deliveries_of(alert_id)
        assert (row.state, row.tries) == ("dead", 1)
        assert row.last_error is not None and "cannot build the body" in row.last_error
        assert seen == [("siem", "dead")]
    finally:
        await store.close()
