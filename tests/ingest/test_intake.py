"""Routing rules in isolation (``domain.routing.route`` as configured) and the intake's
order: the sender's own target, then ``[[routes]]``, then the rota's routes."""

from __future__ import annotations

import logging

import pytest

from voipalert.domain.alert import NewAlert, Severity
from voipalert.domain.rota import PolicyName, Route, TeamName
from voipalert.domain.routing import route
from voipalert.ingest.convert import Resolve
from voipalert.ingest.intake import Intake, Outcome
from voipalert.store import Store, UnknownReference

DB = Route("db", team=TeamName("dba"), policy=PolicyName("dba-default"), subject="(?i)database")
CRIT_PLANT = Route(
    "plant",
    team=TeamName("ops"),
    source="grafana",
    severity="critical",
    labels=(("site", "lyon"),),
)
FALLBACK = Route("fallback", team=TeamName("ops"), policy=PolicyName("ops-default"), default=True)
ROUTES = (DB, CRIT_PLANT, FALLBACK)


@pytest.mark.parametrize(
    ("source", "severity", "summary", "labels", "expected"),
    [
        ("api", "critical", "Database srvdb01 down", {}, "db"),
        ("api", "info", "DATABASE backup late", {}, "db"),
        ("grafana", "critical", "Boiler", {"site": "lyon", "x": "y"}, "plant"),
        ("grafana", "warning", "Boiler", {"site": "lyon"}, "fallback"),
        ("grafana", "critical", "Boiler", {"site": "paris"}, "fallback"),
        ("alertmanager", "critical", "Boiler", {"site": "lyon"}, "fallback"),
        ("api", "critical", "anything", {}, "fallback"),
    ],
)
def test_first_match_wins_else_default(
    source: str, severity: str, summary: str, labels: dict[str, str], expected: str
) -> None:
    chosen = route(ROUTES, source=source, severity=severity, summary=summary, labels=labels)
    assert chosen is not None and chosen.name == expected


def test_no_default_no_route() -> None:
    assert route((DB,), source="api", severity="critical", summary="x", labels={}) is None
    # A default rule never matches as a rule: it is only the fallback.
    assert (
        route((FALLBACK, DB), source="api", severity="critical", summary="database", labels={})
        == DB
    )


async def test_intake_order_of_targets(store: Store) -> None:
    woken: list[int] = []
    seen: list[tuple[str, Outcome]] = []
    intake = Intake(store, lambda: woken.append(1), (DB,), lambda s, o: seen.append((s, o)))
    # Sender's own target first.
    given = await intake.submit(
        NewAlert("database x", team=TeamName("ops")), sender_chose_target=True
    )
    assert given.alert is not None and given.alert.team == "ops" and given.alert.policy is None
    # Then the configured routes.
    configured = await intake.submit(NewAlert("database y"))
    assert configured.alert is not None and configured.alert.team == "dba"
    # Then the rota's routes (its default sends this to ops).
    rota = await intake.submit(NewAlert("pump z"))
    assert (
        rota.alert is not None and rota.alert.team == "ops" and rota.alert.policy == "ops-default"
    )
    assert len(woken) == 3
    assert seen == [("api", Outcome.CREATED)] * 3


async def test_a_configured_route_to_a_missing_team_does_not_lose_the_alert(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Route("broken", team=TeamName("ghosts"), default=True)
    intake = Intake(store, lambda: None, (broken,))
    with caplog.at_level(logging.ERROR, logger="voipalert.ingest"):
        committed = await intake.submit(NewAlert("pump", severity=Severity.WARNING))
    assert committed.outcome is Outcome.CREATED
    assert committed.alert is not None and committed.alert.team == "ops"  # the rota's default
    assert "configured target does not exist" in caplog.text
    # A sender that names a missing team itself is told.
    with pytest.raises(UnknownReference):
        await intake.submit(NewAlert("pump", team=TeamName("ghosts")), sender_chose_target=True)


async def test_resolve_of_nothing_open_wakes_nobody(store: Store) -> None:
    woken: list[int] = []
    intake = Intake(store, lambda: woken.append(1))
    nothing = await intake.submit(Resolve("no-such-key", "api"))
    assert nothing.outcome is Outcome.NOT_OPEN and nothing.alert is None and woken == []
    await intake.submit(NewAlert("x", dedup_key="k"))
    closed = await intake.submit(Resolve("k", "api"))
    assert closed.outcome is Outcome.RESOLVED and closed.alert is not None
    assert closed.alert.resolved_by == "api" and len(woken) == 2
