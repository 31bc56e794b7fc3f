"""The store's half of texts and e-mail, on both backends: which texts a reply may
acknowledge, the reply log, and the acknowledgement links (issued, checked without use,
used once, replayed, forged, expired) and e-mail replies (only from the address the
e-mail went to, before the link expired)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.store.conftest import Raw
from tests.stores import opened_store
from voipalert.clock import FakeClock
from voipalert.domain.alert import AlertStatus, AttemptOutcome, AttemptResult, NewAlert
from voipalert.domain.policy import PlaceCall, plan
from voipalert.store import Store

START = datetime(2026, 3, 2, 10, tzinfo=UTC)
ROTA = """
people:
  - name: carol
    contacts: [{extension: "203", name: desk}, {email: carol@example.com, name: mail}]
    rules: [{contact: desk, method: message}, {contact: mail, method: email}]
policies:
  - name: default
    steps: [{targets: [{person: carol}], timeout: 300}]
routes:
  - {name: rest, default: true, policy: default}
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def store(database: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    async with opened_store(database, clock, ROTA, tmp_path / "store.secret") as opened:
        yield opened


async def _notified(store: Store) -> tuple[int, dict[str, int]]:
    """An alert whose text was delivered and whose e-mail went out: attempt id by method."""
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    fresh = await store.get_alert(alert.id)
    assert fresh is not None
    ids: dict[str, int] = {}
    for action in plan(fresh, await store.load_rota(), [], START):
        if isinstance(action, PlaceCall):
            attempt = await store.record_intent(action)
            assert attempt is not None and await store.start_attempt(attempt.id)
            sent = AttemptResult(AttemptOutcome.ANSWERED_NO_ACK, START, 200, "OK")
            await store.finish_attempt(attempt.id, sent)
            ids[action.method.value] = attempt.id
    return alert.id, ids


async def _status(store: Store, alert_id: int) -> AlertStatus:
    alert = await store.get_alert(alert_id)
    assert alert is not None
    return alert.status


async def test_recent_texts_and_the_reply_log(store: Store, raw: Raw) -> None:
    alert_id, ids = await _notified(store)
    [text] = await store.recent_texts(START - timedelta(minutes=1))
    assert (text.attempt.id, text.alert_status) == (ids["message"], AlertStatus.TRIGGERED)
    assert await store.recent_texts(START + timedelta(minutes=1)) == []
    await store.log_text_reply("203@pbx", "1", "acknowledged", alert_id=alert_id,
                               attempt_id=ids["message"])  # fmt: skip
    await store.log_text_reply("mallory@pbx", "1", "no_open_text")
    rows = await raw.execute(
        "SELECT channel, sender, result, alert_id FROM text_replies ORDER BY id"
    )
    assert rows == [
        ("message", "203@pbx", "acknowledged", alert_id),
        ("message", "mallory@pbx", "no_open_text", None),
    ]


async def test_a_link_is_checked_without_use_then_used_once(store: Store, clock: FakeClock) -> None:
    alert_id, ids = await _notified(store)
    link = await store.issue_ack_link(alert_id, "carol", "Carol@Example.com", 600, ids["email"])
    assert (await store.check_ack_link(link.token))[0] == "ok"
    assert await _status(store, alert_id) is AlertStatus.TRIGGERED
    result, used = await store.use_ack_link(link.token)
    assert result == "acknowledged" and used is not None and used.person == "carol"
    alert = await store.get_alert(alert_id)
    assert alert is not None and (alert.acked_by, alert.acked_via) == ("carol", "email")
    assert (await store.use_ack_link(link.token))[0] == "used"
    assert (await store.check_ack_link(link.token))[0] == "used"


async def test_forged_and_expired_links_do_nothing(store: Store, clock: FakeClock) -> None:
    alert_id, _ = await _notified(store)
    link = await store.issue_ack_link(alert_id, "carol", "carol@example.com", 600)
    nonce, alert, expiry, signature = link.token.split(".")
    for bad in (
        f"{nonce}.{alert_id + 1}.{expiry}.{signature}",
        f"{nonce}.{alert}.{int(expiry) + 86400}.{signature}",
        "nonsense",
        "A" * 5000,
    ):
        assert (await store.use_ack_link(bad))[0] == "invalid", bad
    clock.advance(601)
    assert (await store.use_ack_link(link.token))[0] == "expired"
    assert await _status(store, alert_id) is AlertStatus.TRIGGERED


async def test_an_email_reply_acknowledges_only_from_its_address(
    store: Store, clock: FakeClock, raw: Raw
) -> None:
    alert_id, ids = await _notified(store)
    link = await store.issue_ack_link(alert_id, "carol", "carol@example.com", 600, ids["email"])

    async def reply(sender: str, first_line: str = "1") -> str:
        return await store.ack_by_mail_reply(
            sender, nonce=link.nonce, alert_id=None, acknowledge=first_line == "1",
            first_line=first_line,
        )  # fmt: skip

    assert await reply("mallory@example.net") == "no_open_text"
    by_subject = await store.ack_by_mail_reply(
        "carol@example.com", nonce=None, alert_id=alert_id, acknowledge=False, first_line="ok?"
    )
    assert by_subject == "not_understood"
    assert await _status(store, alert_id) is AlertStatus.TRIGGERED
    assert await reply("CAROL@example.com") == "acknowledged"
    assert await reply("carol@example.com") == "already_handled"
    clock.advance(601)
    assert await reply("carol@example.com") == "no_open_text"
    rows = await raw.execute("SELECT channel, result FROM text_replies ORDER BY id")
    assert rows == [
        ("email", "no_open_text"), ("email", "not_understood"), ("email", "acknowledged"),
        ("email", "already_handled"), ("email", "no_open_text"),
    ]  # fmt: skip
