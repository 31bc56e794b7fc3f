"""/readyz and /metrics with several SIP trunks (docs/sip-failover.md)."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.ingest.conftest import Api
from voipalert.ingest.health import SipState, TrunkHealth

SINCE = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


async def test_one_registered_trunk_is_ready_and_a_failing_one_is_named(api: Api) -> None:
    trunks = [
        TrunkHealth("pbx-a", "failing", False, SINCE, "call: 503 Service Unavailable", 3),
        TrunkHealth("pbx-b", "registered", True, SINCE),
    ]
    api.trunks[:] = trunks
    status, body, _ = await api.call("GET", "/readyz", token=None)
    assert status == 200 and body["ready"] is True
    assert body["status"] == "degraded"
    assert body["degraded"] == [
        "sip trunk pbx-a failing since 2026-12-07T08:00:00+00:00: call: 503 Service Unavailable"
    ]
    assert body["trunks"]["pbx-a"] == {
        "state": "failing", "up": False, "since": "2026-12-07T08:00:00Z",
        "last_error": "call: 503 Service Unavailable", "failovers": 3,
    }  # fmt: skip
    assert body["trunks"]["pbx-b"]["state"] == "registered"
    assert list(body["trunks"]) == ["pbx-a", "pbx-b"]  # the order of preference

    _, text, _ = await api.call("GET", "/metrics", token=None)
    lines = set(text.splitlines())
    assert 'voipalert_sip_trunk_up{trunk="pbx-a"} 0.0' in lines
    assert 'voipalert_sip_trunk_up{trunk="pbx-b"} 1.0' in lines
    assert 'voipalert_sip_trunk_failovers_total{trunk="pbx-a"} 3.0' in lines
    assert 'voipalert_sip_trunk_failovers_total{trunk="pbx-b"} 0.0' in lines


async def test_no_trunk_that_can_call_is_not_ready(api: Api) -> None:
    trunks = [
        TrunkHealth("pbx-a", "failing", False, SINCE, "registration: 403 Forbidden"),
        TrunkHealth("pbx-b", "failing", False, None, ""),
    ]
    api.trunks[:] = trunks
    api.sip.append(SipState.FAILED)  # what app.trunks.trunks_sip_state makes of these
    status, body, _ = await api.call("GET", "/readyz", token=None)
    assert status == 503 and body["status"] == "not ready"
    assert body["degraded"][1] == "sip trunk pbx-b failing: no detail"


async def test_without_trunks_listed_the_metrics_have_no_trunk_series(api: Api) -> None:
    _, text, _ = await api.call("GET", "/metrics", token=None)
    assert "voipalert_sip_trunk_up" not in text
