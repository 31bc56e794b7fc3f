"""deploy/Containerfile, parsed: no container builder can run here (the base image's registry
is out of reach), so its promises are checked against the code and the unit instead."""

from __future__ import annotations

import configparser
import json
import re
import shlex
from pathlib import Path

from voipalert.cli import build_parser
from voipalert.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


def containerfile() -> list[tuple[str, str]]:
    return instructions((DEPLOY / "Containerfile").read_text())


def one(name: str) -> str:
    (value,) = [rest for keyword, rest in containerfile() if keyword == name]
    return value


def env() -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, rest in containerfile():
        if keyword == "ENV":
            values |= dict(item.split("=", 1) for item in shlex.split(rest))
    return values


def unit_service() -> configparser.SectionProxy:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(DEPLOY / "voipalert.service")
    return unit["Service"]


def test_the_api_listens_on_loopback_unless_published() -> None:
    host = env().get("VOIPALERT_HTTP__HOST", str(Settings().http.host))
    assert host == "127.0.0.1"
    comments = (DEPLOY / "Containerfile").read_text()
    # The documented way to publish it binds the host side to loopback too.
    assert "-p 127.0.0.1:8080:8080" in comments


def test_expose_lists_sip_rtp_smtp_and_http_as_configured_by_default() -> None:
    defaults = Settings()
    exposed = set(one("EXPOSE").split())
    assert f"{defaults.http.port}/tcp" in exposed
    assert {f"{defaults.sip.local_port}/udp", f"{defaults.sip.local_port}/tcp"} <= exposed
    assert f"{defaults.media.rtp_port_min}-{defaults.media.rtp_port_max}/udp" in exposed
    assert f"{defaults.smtp.port}/tcp" in exposed


def test_healthcheck_asks_readyz_through_an_existing_command() -> None:
    check = one("HEALTHCHECK")
    options, _, command = check.partition("CMD")
    argv = json.loads(command)
    assert argv[0] == "/opt/voipalert/.venv/bin/voipalert"
    # The command exists and parses (log level in lower case included).
    args = build_parser().parse_args(argv[1:])
    assert args.command == "ready"
    assert "/readyz" in (DEPLOY.parent / "voipalert" / "cli" / "serve_cmd.py").read_text()
    timings = dict(re.findall(r"--([a-z-]+)=(\S+)", options))
    assert set(timings) == {"interval", "timeout", "start-period", "retries"}


def test_stop_signal_and_timeout_match_the_unit() -> None:
    service = unit_service()
    assert one("STOPSIGNAL") == service["KillSignal"] == "SIGTERM"
    text = (DEPLOY / "Containerfile").read_text()
    timeouts = set(re.findall(r"--stop-timeout (\d+)", text))
    assert timeouts == {service["TimeoutStopSec"]}, timeouts
    readme = (DEPLOY / "README.md").read_text()
    assert f"--stop-timeout {service['TimeoutStopSec']}" in readme


def test_runs_serve_as_an_unprivileged_user_with_json_logs() -> None:
    assert one("USER") == "voipalert"
    assert json.loads(one("ENTRYPOINT"))[1:] == ["--log-format", "json"]
    assert json.loads(one("CMD")) == ["serve"]


def test_the_parser_sees_continuations_and_comments() -> None:
    parsed = instructions("# c\nFROM x\nRUN a \\\n && b\n\n# d\nEXPOSE 1/tcp\n")
    assert parsed == [("FROM", "x"), ("RUN", "a  && b"), ("EXPOSE", "1/tcp")]
