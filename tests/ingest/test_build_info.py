"""``voipalert_build_info`` on a real scrape of ``/metrics`` (real HTTP, real SQLite)."""

from __future__ import annotations

import platform

from prometheus_client.parser import text_string_to_metric_families

from tests.ingest.conftest import Api
from voipalert import __version__


async def test_build_info_names_the_version_and_python(api: Api) -> None:
    status, text, _ = await api.call("GET", "/metrics", token=None)
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = families["voipalert_build_info"].samples
    assert sample.name == "voipalert_build_info"
    assert sample.value == 1
    assert sample.labels == {"version": __version__, "python": platform.python_version()}
