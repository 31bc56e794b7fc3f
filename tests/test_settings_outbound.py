"""[outbound]: status webhook targets are checked at start-up (http and https only, no
credentials or fragments in the URL, a signing secret long enough) and the URL, which for
chat services carries their token, is masked like a password."""

from __future__ import annotations

import json

import pytest

from voipalert.app.config import outbound_config
from voipalert.settings import Settings, masked_dump


def _settings(**target: object) -> Settings:
    return Settings(outbound={"targets": {"chat": target}})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        "ftp://example.org/",
        "http:///no-host",
        "https://user:pw@example.org/hook",
        "https://example.org/hook#frag",
        "javascript:alert(1)",
    ],
)
def test_only_plain_http_urls(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        _settings(url=url)


def test_a_short_secret_and_unknown_events_are_refused() -> None:
    with pytest.raises(ValueError, match="16 characters"):
        _settings(url="https://example.org/hook", secret="short")
    with pytest.raises(ValueError, match="events"):
        _settings(url="https://example.org/hook", events=["deleted"])
    with pytest.raises(ValueError, match="format"):
        _settings(url="https://example.org/hook", format="xml")


def test_the_url_and_secret_are_masked_and_mapped() -> None:
    settings = _settings(
        url="https://chat.example.org/hooks/TOKEN123?x=1", format="slack",
        events=["created", "resolved"], secret="0123456789abcdefXYZ",
    )  # fmt: skip
    dumped = json.dumps(masked_dump(settings))
    assert "TOKEN123" not in dumped and "0123456789abcdef" not in dumped
    config = outbound_config(settings)
    [target] = config.targets
    assert target.url == "https://chat.example.org/hooks/TOKEN123?x=1"
    assert target.events == frozenset({"created", "resolved"})
    assert target.secret == b"0123456789abcdefXYZ"
    assert config.alert_url == "http://127.0.0.1:8080/alerts"


def test_no_targets_by_default() -> None:
    assert outbound_config(Settings()).targets == ()
