"""The whole product, as a user runs it: a webhook becomes a ringing phone, a key stops the
chain. ``voipalert serve`` runs as a real process against the testbed's Kamailio and
baresip bots; alerts come in over real HTTP; the API and the bots' own logs are read back.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from testbed import BotSpec, Testbed

from tests.conftest import TestbedFactory
from tests.e2e.server import Server, rota_yaml, running_server, team_rota
from tests.net.sip_harness import free_port


async def post_alert(server: Server, summary: str = "Disk full on SRV-DB-01") -> int:
    status, body = await server.request(
        "POST", "/api/v1/alerts", {"summary": summary, "severity": "critical"}
    )
    assert status == 202, body
    return int(body["id"])


def attempts_by_person(alert: dict[str, Any]) -> list[tuple[str, str]]:
    """(person, outcome) per attempt in order; an attempt without outcome gives its state
    (``interrupted`` after a crash, ``pending`` or ``in_flight`` while it runs)."""
    ordered = sorted(alert["attempts"], key=lambda a: a["id"])
    return [(a["person"], a["outcome"] or a["state"]) for a in ordered]


def invites(testbed: Testbed, bot: str, since: int = 0) -> int:
    return sum(1 for e in testbed.events(bot)[since:] if e.get("type") == "CALL_INCOMING")


async def test_rfc4733_key_from_the_first_person_acknowledges(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    async with running_server(testbed, rota_yaml(testbed, "ack", "busy"), tmp_path, cache) as s:
        alert_id = await post_alert(s)
        alert = await s.wait_alert(alert_id, "acknowledged", 60)
        assert alert["acknowledged_by"] == "ack-person"
        (attempt,) = alert["attempts"]
        assert attempt["outcome"] == "acknowledged"
        assert attempt["digit"] == "1"
        assert attempt["sip_status"] == 200
        assert attempt["contact"] == {"kind": "sip", "address": testbed.uri("ack")}


async def test_inband_key_acknowledges_through_the_goertzel_path(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    async with running_server(testbed, rota_yaml(testbed, "inband", "busy"), tmp_path, cache) as s:
        alert = await s.wait_alert(await post_alert(s), "acknowledged", 60)
        assert alert["acknowledged_by"] == "inband-person"
        assert attempts_by_person(alert) == [("inband-person", "acknowledged")]
        assert "inband" in (alert["attempts"][0].get("detail") or "")


async def test_no_answer_then_the_next_person_acknowledges(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    rota = rota_yaml(testbed, "noanswer", "ack", ring=5)
    async with running_server(testbed, rota, tmp_path, cache) as s:
        alert = await s.wait_alert(await post_alert(s), "acknowledged", 90)
        assert attempts_by_person(alert) == [
            ("noanswer-person", "no_answer"),
            ("ack-person", "acknowledged"),
        ]
        assert alert["attempts"][0]["sip_status"] == 487  # CANCELled at the ring timeout


async def test_voicemail_is_not_an_acknowledgement(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    rota = rota_yaml(testbed, "voicemail", "ack")
    async with running_server(testbed, rota, tmp_path, cache) as s:
        alert = await s.wait_alert(await post_alert(s), "acknowledged", 120)
        assert attempts_by_person(alert) == [
            ("voicemail-person", "answered_no_ack"),
            ("ack-person", "acknowledged"),
        ]
        # The mailbox beeped and got the message (docs/dtmf.md §4); escalation went on.
        assert "message left on voicemail" in alert["attempts"][0]["detail"]
        # Each answered call keeps its audio quality (RTCP, docs/realtime.md §7): loopback
        # loses nothing.
        for attempt in alert["attempts"]:
            quality = attempt["quality"]
            assert quality is not None, attempt
            assert quality["packets_expected"] > 50 and quality["loss_percent"] == 0.0
            assert quality["mos"] > 4.0 and quality["reports_sent"] >= 1


async def test_busy_moves_on_at_once(testbed: Testbed, tmp_path: Path, cache: Path) -> None:
    async with running_server(testbed, rota_yaml(testbed, "busy", "ack"), tmp_path, cache) as s:
        alert = await s.wait_alert(await post_alert(s), "acknowledged", 60)
        assert attempts_by_person(alert) == [
            ("busy-person", "busy"),
            ("ack-person", "acknowledged"),
        ]
        assert alert["attempts"][0]["sip_status"] == 486


async def test_alertmanager_resolved_while_ringing_cancels_and_calls_nobody_else(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    rota = rota_yaml(testbed, "noanswer", "ack", ring=30)
    async with running_server(testbed, rota, tmp_path, cache) as s:
        ack_invites = invites(testbed, "ack")
        since = len(testbed.events("noanswer"))
        payload = alertmanager_payload("firing")
        status, body = await s.request("POST", "/api/v1/hooks/alertmanager", payload)
        assert status == 202, body
        assert testbed.wait_event("noanswer", "CALL_INCOMING", since, timeout=20)
        status, body = await s.request("POST", "/api/v1/hooks/alertmanager",
                                       alertmanager_payload("resolved"))  # fmt: skip
        assert status == 202, body
        closed = testbed.wait_event("noanswer", "CALL_CLOSED", since, timeout=10)
        assert closed is not None, "the ringing call was not cancelled"
        await asyncio.sleep(3)
        listing_status, listing = await s.request("GET", "/api/v1/alerts")
        assert listing_status == 200
        (alert,) = listing["alerts"]
        alert = await s.alert(alert["id"])
        assert alert["status"] == "resolved"
        assert attempts_by_person(alert) == [("noanswer-person", "cancelled")]
        assert invites(testbed, "ack", ack_invites) == 0


def alertmanager_payload(status: str) -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {"alertname": "DiskFull", "instance": "srv-db-01", "severity": "critical"},
        "annotations": {"summary": "Disk full on SRV-DB-01"},
        "startsAt": "2026-11-27T20:00:00Z",
        "endsAt": "2026-11-27T20:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example/graph",
        "fingerprint": "c0ffee0123456789",
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="DiskFull"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "voipalert",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager.example",
        "alerts": [alert],
    }


async def test_mass_alert_reports_each_persons_outcome(
    testbed_factory: TestbedFactory, tmp_path: Path, cache: Path
) -> None:
    tb = testbed_factory([BotSpec("ack", "dtmf"), BotSpec("ack2", "dtmf", "1", 2.0),
                          BotSpec("busy", "busy")])  # fmt: skip
    rota = team_rota(tb, ["ack", "ack2", "busy"])
    async with running_server(tb, rota, tmp_path, cache) as s:
        status, body = await s.request(
            "POST", "/api/v1/alerts",
            {"summary": "Evacuate hall B", "kind": "mass", "team": "everyone"},
        )  # fmt: skip
        assert status == 202, body
        alert_id = int(body["id"])
        async with asyncio.timeout(90):
            while True:
                alert = await s.alert(alert_id)
                outcomes = dict(attempts_by_person(alert))
                if len(outcomes) == 3 and all(a["ended_at"] for a in alert["attempts"]):
                    break
                await asyncio.sleep(0.5)
        assert outcomes == {
            "ack-person": "acknowledged",
            "ack2-person": "acknowledged",
            "busy-person": "busy",
        }


async def test_sigkill_mid_escalation_resumes_without_calling_an_attempt_twice(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    # The rota's shortest ring: the kill lands within milliseconds of the first ring, and
    # the restarted serve rings the same person again (a new attempt) for this long.
    rota = rota_yaml(testbed, "noanswer", "ack", ring=5)
    async with running_server(testbed, rota, tmp_path, cache) as s:
        since = len(testbed.events("noanswer"))
        alert_id = await post_alert(s)
        assert testbed.wait_event("noanswer", "CALL_INCOMING", since, timeout=20)
        s.stop(signal.SIGKILL)  # mid-ring: no goodbye, no un-REGISTER, no database close
        await s.start()
        alert = await s.wait_alert(alert_id, "acknowledged", 90)
        keys = [(a["person"], a["step"], a["repeat"], a["number"]) for a in alert["attempts"]]
        assert len(keys) == len(set(keys)), keys
        people = attempts_by_person(alert)
        assert people[0] == ("noanswer-person", "interrupted")
        assert people[-1] == ("ack-person", "acknowledged")
        assert alert["acknowledged_by"] == "ack-person"


async def test_sigterm_exits_0_and_says_goodbye_to_a_call_in_progress(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    rota = rota_yaml(testbed, "voicemail", "ack")
    async with running_server(testbed, rota, tmp_path, cache) as s:
        since = len(testbed.events("voicemail"))
        await post_alert(s)
        assert testbed.wait_event("voicemail", "CALL_ESTABLISHED", since, timeout=20)
        assert s.stop(signal.SIGTERM) == 0
        assert testbed.wait_event("voicemail", "CALL_CLOSED", since, timeout=5)
        assert "stopped" in s.log.read_text()


async def test_a_taken_http_port_is_reported_clearly(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    async with running_server(testbed, rota_yaml(testbed, "ack", "busy"), tmp_path, cache) as s:
        other_sip = str(free_port())
        # Its own database (one engine per database is refused first: test_engine_lock),
        # the same HTTP port.
        other = tmp_path / "second"
        other.mkdir()
        env = {
            **s.env, "VOIPALERT_SIP__LOCAL_PORT": other_sip,
            "VOIPALERT_DATABASE__PATH": str(other / "voipalert.db"),
        }  # fmt: skip
        second = Server(other, env, s.http_port)
        assert second.cli("rota", "import", str(s.directory / "rota.yaml")).returncode == 0
        result = second.cli("serve")
        assert result.returncode == 1
        assert "cannot start: cannot listen for HTTP" in result.stderr
