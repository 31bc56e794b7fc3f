"""``voipalert heartbeat add|list|remove``: dead man's switches.

``add NAME --every 5m [--grace 1m]`` prints the heartbeat's URL once (its secret token is
stored only as a SHA-256, like API tokens). Call it from the monitored job (``curl -fsS
URL`` in cron) or point an Alertmanager receiver for the Watchdog alert at it; a running
``serve`` opens an alert when it stays silent longer than the period plus the grace, routed
by ``--team``/``--policy``/``--route`` or, without them, by the routes like any other alert
(source ``heartbeat``, label ``heartbeat=NAME``). Exit status: 0 done, 1 refused (name
taken, no such heartbeat), 2 a wrong argument.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import Final

from voipalert.app.store_config import public_url, store_config
from voipalert.cli.with_store import with_store
from voipalert.domain.alert import Severity
from voipalert.domain.rota import Rota
from voipalert.settings import load_settings
from voipalert.store.heartbeat import Heartbeat, HeartbeatExists
from voipalert.store.ports import CliStore

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DURATION: Final = re.compile(r"^(\d{1,7})([smhd]?)$")
_UNIT_SECONDS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_PERIOD_SECONDS: Final = 90 * 86400


def parse_duration(text: str) -> int:
    """``90``, ``30s``, ``5m``, ``2h``, ``1d`` in seconds."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration like 30s, 5m, 2h, 1d")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_PERIOD_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r}: at most 90 days")
    return seconds


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    heartbeat = subparsers.add_parser("heartbeat", help="dead man's switches: add, list, remove")
    actions = heartbeat.add_subparsers(dest="heartbeat_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a heartbeat; prints its URL (shown once)")
    add.add_argument("name", metavar="NAME", help="1-64 letters, digits, '.', '_' or '-'")
    add.add_argument("--every", type=parse_duration, required=True, help="expected period")
    add.add_argument(
        "--grace", type=parse_duration, default=0, help="extra time before alerting (0)"
    )
    add.add_argument("--team", help="the team its alert goes to")
    add.add_argument("--policy", help="the escalation policy its alert follows")
    add.add_argument("--route", help="a route of the rota whose team and policy to use")
    add.add_argument(
        "--severity", choices=[s.value for s in Severity], default=Severity.CRITICAL.value
    )
    add.add_argument("--json", action="store_true", help="print one JSON object")
    add.set_defaults(func=run_add)
    listing = actions.add_parser("list", help="list heartbeats and their last beat")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(func=run_list)
    remove = actions.add_parser(
        "remove", help="remove a heartbeat (its URL stops working, its open alert is resolved)"
    )
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(func=run_remove)


def _targets(args: argparse.Namespace, rota: Rota) -> tuple[str | None, str | None, str]:
    """(team, policy, problem): from --team/--policy, or from --route; problem is '' when
    they all exist."""
    team, policy = args.team, args.policy
    if args.route:
        route = next((r for r in rota.routes if r.name == args.route), None)
        if route is None:
            return None, None, f"no route named {args.route!r} in the rota"
        team, policy = team or route.team, policy or route.policy
    if team is not None and team not in {t.name for t in rota.teams}:
        return None, None, f"no team named {team!r} in the rota"
    if policy is not None and policy not in {p.name for p in rota.policies}:
        return None, None, f"no escalation policy named {policy!r} in the rota"
    return team, policy, ""


def run_add(args: argparse.Namespace) -> int:
    if NAME.match(args.name) is None:
        reason = "use 1-64 letters, digits, '.', '_' or '-'"
        print(f"voipalert: heartbeat name {args.name!r}: {reason}", file=sys.stderr)
        return EXIT_USAGE
    if args.every < 10:
        print("voipalert: --every: at least 10 seconds", file=sys.stderr)
        return EXIT_USAGE
    settings = load_settings(args.config)

    async def action(store: CliStore) -> tuple[Heartbeat, str] | str:
        team, policy, problem = _targets(args, await store.load_rota())
        if problem:
            return problem
        try:
            return await store.add_heartbeat(
                args.name, args.every, args.grace, team=team, policy=policy,
                severity=Severity(args.severity),
            )  # fmt: skip
        except HeartbeatExists as exc:
            return f"{exc}"

    result = asyncio.run(with_store((settings.database.location, store_config(settings)), action))
    if isinstance(result, str):
        print(f"voipalert: {result}", file=sys.stderr)
        return EXIT_USAGE if result.startswith("no ") else EXIT_REFUSED
    heartbeat, token = result
    url = f"{public_url(settings)}/api/v1/heartbeat/{token}"
    if args.json:
        print(json.dumps({**_record_json(heartbeat), "url": url}))
    else:
        print(url)
        print(
            f"heartbeat {heartbeat.name}: expects a beat every {heartbeat.every_seconds} s "
            f"(+{heartbeat.grace_seconds} s grace); the URL is shown only now "
            "(GET or POST it: curl -fsS URL)",
            file=sys.stderr,
        )
    return EXIT_OK


def _record_json(heartbeat: Heartbeat) -> dict[str, object]:
    return {
        "name": heartbeat.name,
        "every_seconds": heartbeat.every_seconds,
        "grace_seconds": heartbeat.grace_seconds,
        "team": heartbeat.team,
        "policy": heartbeat.policy,
        "severity": heartbeat.severity.value,
        "created_at": heartbeat.created_at.isoformat(),
        "last_beat_at": heartbeat.last_beat_at.isoformat() if heartbeat.last_beat_at else None,
        "beats": heartbeat.beats,
        "down": heartbeat.down,
    }


def run_list(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = (settings.database.location, store_config(settings))
    heartbeats = asyncio.run(with_store(database, lambda store: store.list_heartbeats()))
    if args.json:
        print(json.dumps([_record_json(h) for h in heartbeats]))
        return EXIT_OK
    for h in heartbeats:
        last = h.last_beat_at.isoformat(timespec="seconds") if h.last_beat_at else "never"
        state = "DOWN" if h.down else "ok"
        print(f"{h.name}\tevery {h.every_seconds}s +{h.grace_seconds}s\t{state}\tlast beat {last}")
    return EXIT_OK


def run_remove(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = (settings.database.location, store_config(settings))

    async def action(store: CliStore) -> bool:
        if not await store.remove_heartbeat(args.name):
            return False
        # Its missed-beat alert, if open, would never be resolved by a beat now.
        await store.resolve_by_dedup_key(f"heartbeat:{args.name}", "cli")
        return True

    removed = asyncio.run(with_store(database, action))
    if not removed:
        print(f"voipalert: no heartbeat named {args.name!r}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"heartbeat {args.name} removed")
    return EXIT_OK
