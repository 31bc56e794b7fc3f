"""Grouping per Alertmanager route: one hook, the grouping chosen by the notification's
``receiver`` (each route of alertmanager.yml names one), the hook's own grouping for the
others; from the settings file through to the alerts made."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tests.ingest.conftest import ApiFactory
from voipalert.app.config import ingest_config
from voipalert.ingest.config import AlertmanagerHook, HttpConfig, IngestConfig
from voipalert.ingest.convert import Grouping
from voipalert.settings import Settings

DATA = Path(__file__).resolve().parents[1] / "data" / "ingest"
AM = "/api/v1/hooks/alertmanager"


def firing(receiver: str) -> Any:
    document = json.loads((DATA / "alertmanager_firing.json").read_text())
    changed = copy.deepcopy(document)
    changed["receiver"] = receiver
    # Another group for each receiver (Alertmanager's groupKey names the route).
    changed["groupKey"] = f'{{}}/{{receiver="{receiver}"}}:{{alertname="PostgresDown"}}'
    return changed


def test_settings_map_receivers_to_groupings() -> None:
    settings = Settings.model_validate(
        {"hooks": {"alertmanager": {"default": {"receiver_grouping": {"db-pager": "alert"}}}}}
    )
    hook = ingest_config(settings).http.alertmanager_hooks["default"]
    assert hook.grouping_for("db-pager") is Grouping.ALERT
    assert hook.grouping_for("web-pager") is Grouping.GROUP
    assert hook.grouping_for(None) is Grouping.GROUP


async def test_one_hook_groups_per_receiver(make_api: ApiFactory) -> None:
    hook = AlertmanagerHook(receiver_grouping=(("db-pager", Grouping.ALERT),))
    api = await make_api(IngestConfig(http=HttpConfig(alertmanager_hooks={"default": hook})))
    _, per_alert, _ = await api.call("POST", AM, token="trigger", json=firing("db-pager"))
    assert [r["action"] for r in per_alert["results"]] == ["created", "created"]
    _, grouped, _ = await api.call("POST", AM, token="trigger", json=firing("web-pager"))
    assert [r["action"] for r in grouped["results"]] == ["created"]
