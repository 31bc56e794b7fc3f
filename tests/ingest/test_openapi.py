"""The OpenAPI document against the live server: schemathesis (property-based, from PyPI)
generates valid and invalid requests for every operation from the document and checks every
response — no 5xx, no status, header, content type or body the document does not describe,
invalid input refused, valid input accepted, authentication enforced."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.ingest.conftest import ApiFactory
from voipalert.ingest.config import HttpConfig, IngestConfig
from voipalert.ingest.mapping import GenericMapping, document_schema, map_document

UPTIME = GenericMapping(
    summary="monitor.name",
    dedup_key="monitor.id",
    resolved="heartbeat.status",
    resolved_values=("1", "up"),
    labels="monitor.tags",
)
CONFIG = IngestConfig(
    http=HttpConfig(generic_hooks={"uptime": UPTIME, "plain": GenericMapping(summary="text")})
)
MAX_EXAMPLES = os.environ.get("VOIPALERT_SCHEMATHESIS_EXAMPLES", "25")
SEED = os.environ.get("VOIPALERT_SCHEMATHESIS_SEED", "20261127")


def test_a_configured_hook_has_its_own_body_schema() -> None:
    schema = document_schema(UPTIME)
    assert schema["properties"]["monitor"]["anyOf"][1]["properties"]["id"]["type"] == [
        "string",
        "number",
        "null",
    ]
    resolved, firing = schema["anyOf"]
    assert resolved["required"] == ["heartbeat"]
    assert firing["properties"]["monitor"]["required"] == ["name"]
    # What the schema calls resolved, the mapping resolves, even without a key.
    event = map_document({"heartbeat": {"status": "up"}}, UPTIME)
    assert event.dedup_key == ""


async def test_document_lists_the_rotas_targets(make_api: ApiFactory) -> None:
    api = await make_api(CONFIG)
    _, doc, _ = await api.call("GET", "/api/v1/openapi.json", token=None)
    alert_in = doc["components"]["schemas"]["AlertIn"]
    assert alert_in["properties"]["team"]["anyOf"][0]["enum"] == ["dba", "ops"]
    assert alert_in["properties"]["policy"]["anyOf"][0]["enum"] == ["dba-default", "ops-default"]
    assert alert_in["then"]["required"] == ["team"]
    assert "/api/v1/hooks/generic/uptime" in doc["paths"]
    assert "/api/v1/hooks/generic/plain" in doc["paths"]


@pytest.mark.slow
async def test_schemathesis_finds_nothing_against_the_live_server(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    st = Path(sys.executable).with_name("st")
    assert st.exists(), "schemathesis is in the test extra: pip install -e '.[test]'"
    api = await make_api(CONFIG)
    process = await asyncio.create_subprocess_exec(
        str(st),
        "run",
        f"{api.base}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {api.tokens['admin']}",
        "--checks",
        "all",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--no-color",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"},
    )
    async with asyncio.timeout(600):
        output, _ = await process.communicate()
    report = output.decode(errors="replace")
    assert process.returncode == 0, report
    assert "passed" in report and "failed" not in report.split("SUMMARY")[-1], report
    # It really exercised the API: alerts were created through it.
    assert (await api.store.list_alerts()).alerts


def test_signatures_can_be_switched_off() -> None:
    from voipalert.ingest.openapi import build_openapi

    doc = build_openapi(HttpConfig(signature_headers=()))
    assert "signature" not in doc["components"]["securitySchemes"]
    assert doc["paths"]["/api/v1/hooks/grafana"]["post"]["security"] == [{"bearer": []}]
    signed = build_openapi(HttpConfig())
    assert {"signature": []} in signed["paths"]["/api/v1/hooks/grafana"]["post"]["security"]
