"""GET /api/v1/alerts/{id} lists what was sent about the alert: its texts and e-mails (also
attempts) and its status webhook deliveries, with state, tries and the last error."""

from __future__ import annotations

from tests.ingest.conftest import Api
from voipalert.domain.alert import AttemptOutcome, AttemptResult, NewAlert
from voipalert.domain.policy import PlaceCall, plan
from voipalert.rotafile.parse import parse_rota

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


async def test_texts_emails_and_webhooks_are_listed(api: Api) -> None:
    store = api.store
    await store.replace_rota(parse_rota(ROTA))
    await store.set_status_targets({"chat": ["created"], "siem": ["created"]})
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    fresh = await store.get_alert(alert.id)
    assert fresh is not None
    for action in plan(fresh, await store.load_rota(), [], fresh.created_at):
        if isinstance(action, PlaceCall):
            attempt = await store.record_intent(action)
            assert attempt is not None and await store.start_attempt(attempt.id)
            if action.method.value == "message":
                sent = AttemptResult(AttemptOutcome.ANSWERED_NO_ACK, fresh.created_at, 200, "OK")
                await store.finish_attempt(attempt.id, sent)
    chat = await store.next_delivery("chat")
    assert chat is not None
    await store.delivery_done(chat)
    siem = await store.next_delivery("siem")
    assert siem is not None
    await store.delivery_failed(siem, "HTTP 503 from the receiver", None)

    status, detail, _ = await api.call("GET", f"/api/v1/alerts/{alert.id}")
    assert status == 200, detail
    by_channel = {(d["channel"], d["target"]): d for d in detail["deliveries"]}
    assert set(by_channel) == {
        ("message", "203"), ("email", "carol@example.com"),
        ("webhook", "chat"), ("webhook", "siem"),
    }  # fmt: skip
    text = by_channel[("message", "203")]
    assert text["person"] == "carol" and text["state"] == "done" and text["sent_at"]
    assert by_channel[("email", "carol@example.com")]["state"] == "in_flight"
    webhook = by_channel[("webhook", "chat")]
    assert (webhook["event"], webhook["state"], webhook["tries"]) == ("created", "done", 1)
    assert webhook["sent_at"] is not None
    dead = by_channel[("webhook", "siem")]
    assert (dead["state"], dead["detail"]) == ("dead", "HTTP 503 from the receiver")


async def test_an_alert_without_anything_sent_lists_no_deliveries(api: Api) -> None:
    alert, _ = await api.store.create_or_join_alert(NewAlert("quiet"))
    _, detail, _ = await api.call("GET", f"/api/v1/alerts/{alert.id}")
    assert detail["deliveries"] == []
