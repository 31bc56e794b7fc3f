"""The override endpoints on the real server and a real SQLite file: scopes, validation
with a detail per problem, idempotent adds, removal, and the abuse cases (bodies too big,
overlong or control-character fields, unknown schedules in the path, bad query times)."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta

import pytest

from tests.ingest.conftest import Api
from voipalert.clock import SystemClock
from voipalert.domain.oncall import who_is_on_call
from voipalert.rotafile.parse import parse_rota

YEAR = SystemClock().now_utc().year + 1
ROTA = """
people:
  - {name: alice, contacts: [{extension: "201"}]}
  - {name: bob, contacts: [{extension: "202"}]}
schedules:
  - name: ops primary
    time_zone: Europe/Paris
    layers:
      - {name: main, members: [alice], shift_length: 1, shift_unit: weeks,
         start: 2026-01-05, handoff: "09:00"}
"""
PATH = "/api/v1/schedules/ops%20primary/overrides"
BODY = {"person": "bob", "start": f"{YEAR}-06-10 18:00", "end": f"{YEAR}-06-11T07:00Z"}


def gap_day() -> date:
    day = date(YEAR, 3, 31)
    return day - timedelta(days=day.isoweekday() % 7)


@pytest.fixture
async def rota_api(api: Api) -> Api:
    await api.store.replace_rota(parse_rota(ROTA))
    return api


async def test_add_list_remove(rota_api: Api) -> None:
    api = rota_api
    status, body, response = await api.call("POST", PATH, json={**BODY, "note": "swap"})
    assert status == 201, body
    override = body["override"]
    assert response.headers["Location"] == f"{PATH}/{override['id']}"
    assert (override["person"], override["origin"], override["made_by"], override["note"]) == (
        "bob", "api", "admin", "swap",
    )  # fmt: skip
    assert override["start"] == f"{YEAR}-06-10T16:00:00Z"  # 18:00 in Paris, summer time
    assert body["created"] is True and body["overlaps"] == []
    assert api.woken
    # The rota the engine reloads has it.
    rota = await api.store.load_rota()
    at = rota.overrides[0].start + timedelta(hours=1)
    assert who_is_on_call(rota.schedules[0], rota.overrides, at).person == "bob"
    # The same request again adds nothing.
    status, again, _ = await api.call("POST", PATH, json={**BODY, "note": "swap"})
    assert status == 200 and again["created"] is False
    assert again["override"]["id"] == override["id"]
    for path in (PATH, "/api/v1/overrides"):
        status, listed, _ = await api.call("GET", path, token="reader")
        assert status == 200
        assert [o["id"] for o in listed["overrides"]] == [override["id"]]
    status, listed, _ = await api.call(
        "GET", PATH, token="reader", params={"from": f"{YEAR}-06-11T07:00:00+00:00"}
    )
    assert listed["overrides"] == []
    status, gone, _ = await api.call("DELETE", f"{PATH}/{override['id']}")
    assert status == 200 and gone["id"] == override["id"]
    status, _, _ = await api.call("DELETE", f"{PATH}/{override['id']}")
    assert status == 404
    trail = [(e.actor, e.action) for e in await api.store.audit_trail()]
    assert trail[-2:] == [("admin", "override.added"), ("admin", "override.removed")]


async def test_scopes(rota_api: Api) -> None:
    api = rota_api
    assert (await api.call("POST", PATH, token="reader", json=BODY))[0] == 403
    assert (await api.call("POST", PATH, token="trigger", json=BODY))[0] == 403
    assert (await api.call("GET", PATH, token="trigger"))[0] == 403
    assert (await api.call("POST", PATH, token=None, json=BODY))[0] == 401
    status, body, _ = await api.call("POST", PATH, json=BODY)
    assert status == 201
    delete = f"{PATH}/{body['override']['id']}"
    assert (await api.call("DELETE", delete, token="monitor"))[0] == 403
    assert (await api.call("DELETE", delete, token=None))[0] == 401
    assert len(await api.store.list_overrides()) == 1


async def test_every_problem_is_named(rota_api: Api) -> None:
    day = gap_day()
    body = {"person": "zed", "start": f"{day} 02:30", "end": f"{day} 01:00", "replaces": "eve"}
    status, answer, _ = await rota_api.call("POST", PATH, json=body)
    assert status == 422
    fields = {d["field"]: d["reason"] for d in answer["details"]}
    assert fields["person"] == "no person named 'zed'"
    assert fields["replaces"] == "no person named 'eve'"
    assert fields["start"].startswith(f"{day} 02:30 does not exist in Europe/Paris")
    status, answer, _ = await rota_api.call(
        "POST", PATH, json={**BODY, "end": f"{YEAR}-06-10T10:00Z"}
    )
    assert status == 422 and answer["details"] == [
        {"field": "end", "reason": "must be after start"}
    ]
    status, answer, _ = await rota_api.call(
        "POST", PATH, json={**BODY, "end": f"{YEAR + 1}-06-10 18:00"}
    )
    assert status == 422 and "at most 92 days" in answer["details"][0]["reason"]
    assert await rota_api.store.list_overrides() == []


async def test_abuse(rota_api: Api) -> None:
    api = rota_api
    status, answer, _ = await api.call("POST", "/api/v1/schedules/nope/overrides", json=BODY)
    assert status == 404 and answer["message"] == "no schedule named 'nope'"
    status, answer, _ = await api.call("GET", "/api/v1/schedules/" + "s" * 5000 + "/overrides")
    assert status == 404 and len(answer["message"]) < 100
    json_type = {"Content-Type": "application/json"}
    assert (await api.call("POST", PATH, data=b"{not json", headers=json_type))[0] == 400
    for bad in (
        {**BODY, "note": "n" * 201},
        {**BODY, "note": "bell\x07"},
        {**BODY, "person": "p" * 101},
        {**BODY, "start": "9" * 41},
        {**BODY, "schedule": "other"},
        {"person": "bob"},
        {**BODY, "start": 5},
    ):
        status, answer, _ = await api.call("POST", PATH, json=bad)
        assert status == 422, (bad, answer)
    big_body = io.BytesIO(json.dumps({**BODY, "note": "x" * 1_100_000}).encode())
    headers = {"Content-Type": "application/json"}
    assert (await api.call("POST", PATH, data=big_body, headers=headers))[0] == 413
    status, answer, _ = await api.call("POST", PATH, json={**BODY, "person": "=cmd|' /C calc'!A0"})
    assert status == 422 and answer["details"][0]["field"] == "person"
    for query in ({"from": "yesterday"}, {"from": f"{YEAR}-06-10T18:00"}, {"to": "1" * 500}):
        status, answer, _ = await api.call("GET", PATH, params=query)
        assert status == 422, query
    big = "9" * 30
    assert (await api.call("DELETE", f"{PATH}/{big}"))[0] == 404
    assert await api.store.list_overrides() == []


async def test_the_document_lists_the_override_operations(api: Api) -> None:
    _, doc, _ = await api.call("GET", "/api/v1/openapi.json", token=None)
    assert set(doc["paths"]["/api/v1/schedules/{name}/overrides"]) == {"get", "post"}
    assert "delete" in doc["paths"]["/api/v1/schedules/{name}/overrides/{id}"]
    assert "OverrideIn" in doc["components"]["schemas"]
