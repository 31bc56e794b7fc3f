"""Rota rows: write a whole ``Rota`` (inside the caller's transaction) and read it back.

People, teams, schedules and policies keep their row ids across imports (upsert by name),
so alerts keep pointing at their policy and attempts at their person; everything under them
(contacts, members, layers, steps, targets) and the overrides and routes are replaced.
A name that left the rota loses its row (history keeps the names it recorded).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, time

from voipalert.domain.rota import (
    Contact,
    ContactKind,
    EscalationPolicy,
    Layer,
    NotifyMethod,
    NotifyRule,
    Override,
    Person,
    PersonName,
    PolicyName,
    Rota,
    Route,
    Schedule,
    ScheduleName,
    ScheduleSource,
    ShiftNotice,
    ShiftUnit,
    SourceKind,
    Step,
    Target,
    TargetKind,
    Team,
    TeamName,
    Window,
)
from voipalert.store.db import from_db, to_db
from voipalert.store.sql import Conn, Row

Ids = dict[str, int]


async def _replace_named(
    conn: Conn, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> Ids:
    names = json.dumps([row[0] for row in rows])
    await conn.execute(f"DELETE FROM {table} WHERE name NOT IN {conn.dialect.json_texts}", (names,))
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    await conn.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT (name) DO UPDATE SET {updates}",
        rows,
    )
    return {
        row["name"]: row["id"]
        for row in await conn.execute_fetchall(f"SELECT id, name FROM {table}")
    }


async def _insert_id(conn: Conn, sql: str, params: tuple[object, ...]) -> int:
    rows = await conn.execute_fetchall(f"{sql} RETURNING id", params)
    return int(rows[0]["id"])


async def _save_schedules(conn: Conn, rota: Rota, people: Ids, keep_edits: bool) -> Ids:
    rows = [(s.name, i, s.time_zone) for i, s in enumerate(rota.schedules)]
    schedules = await _replace_named(conn, "schedules", ("name", "position", "time_zone"), rows)
    await conn.execute("DELETE FROM layers")
    for schedule in rota.schedules:
        for position, layer in enumerate(schedule.layers):
            layer_id = await _insert_id(
                conn,
                "INSERT INTO layers (schedule_id, position, name, shift_length, shift_unit, "
                "start_date, handoff_time) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    schedules[schedule.name],
                    position,
                    layer.name,
                    layer.shift_length,
                    layer.shift_unit.value,
                    layer.start_date.isoformat(),
                    layer.handoff.isoformat(),
                ),
            )
            await conn.executemany(
                "INSERT INTO layer_members (layer_id, position, person_id) VALUES (?, ?, ?)",
                [(layer_id, i, people[m]) for i, m in enumerate(layer.members)],
            )
            await conn.executemany(
                "INSERT INTO layer_windows (layer_id, position, days, start_time, end_time) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        layer_id,
                        i,
                        ",".join(map(str, sorted(w.days))),
                        w.start.isoformat(),
                        w.end.isoformat(),
                    )
                    for i, w in enumerate(layer.windows)
                ],
            )
    await conn.execute("DELETE FROM schedule_sources")
    await conn.executemany(
        "INSERT INTO schedule_sources (schedule_id, spec) VALUES (?, ?)",
        [
            (schedules[s.name], source_to_json(s.source))
            for s in rota.schedules
            if s.source is not None
        ],
    )
    # The file's overrides are replaced; overrides made one at a time (migration 0007) go
    # too, unless the import keeps them (docs/rota-edits.md).
    await conn.execute("DELETE FROM overrides" + (" WHERE origin = 'file'" if keep_edits else ""))
    await conn.executemany(
        "INSERT INTO overrides (schedule_id, person_id, replaces_person_id, start_at, end_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            (
                schedules[o.schedule],
                people[o.person],
                people[o.replaces] if o.replaces else None,
                to_db(o.start),
                to_db(o.end),
            )
            for o in rota.overrides
        ],
    )
    return schedules


def source_to_json(source: ScheduleSource) -> str:
    fields = {k: getattr(source, k) for k in ScheduleSource.__slots__}
    fields["kind"] = source.kind.value
    fields["aliases"] = [list(pair) for pair in source.aliases]
    return json.dumps(fields, sort_keys=True)


def source_from_json(text: str) -> ScheduleSource:
    fields = json.loads(text)
    fields["kind"] = SourceKind(fields["kind"])
    fields["aliases"] = tuple((k, PersonName(v)) for k, v in fields["aliases"])
    return ScheduleSource(**fields)


async def _save_policies(conn: Conn, rota: Rota, people: Ids, teams: Ids, schedules: Ids) -> Ids:
    rows = [
        (p.name, i, p.repeat_count, p.repeat_delay_seconds) for i, p in enumerate(rota.policies)
    ]
    policies = await _replace_named(
        conn, "policies", ("name", "position", "repeat_count", "repeat_delay_seconds"), rows
    )
    await conn.execute("DELETE FROM policy_steps")
    column = {TargetKind.SCHEDULE: schedules, TargetKind.PERSON: people, TargetKind.TEAM: teams}
    for policy in rota.policies:
        for position, step in enumerate(policy.steps):
            step_id = await _insert_id(
                conn,
                "INSERT INTO policy_steps (policy_id, position, timeout_seconds, "
                "ring_timeout_seconds) VALUES (?, ?, ?, ?)",
                (policies[policy.name], position, step.timeout_seconds, step.ring_timeout_seconds),
            )
            for i, target in enumerate(step.targets):
                ids = {k: column[k][target.name] if k is target.kind else None for k in TargetKind}
                await conn.execute(
                    "INSERT INTO step_targets (step_id, position, schedule_id, person_id, team_id) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        step_id,
                        i,
                        ids[TargetKind.SCHEDULE],
                        ids[TargetKind.PERSON],
                        ids[TargetKind.TEAM],
                    ),
                )
    return policies


async def _save_routes(conn: Conn, rota: Rota, teams: Ids, policies: Ids) -> None:
    await conn.execute("DELETE FROM routes")
    await conn.executemany(
        "INSERT INTO routes (position, name, policy_id, team_id, match_source, match_severity, "
        "match_subject, match_labels, is_default) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                i,
                r.name,
                policies[r.policy] if r.policy else None,
                teams[r.team] if r.team else None,
                r.source,
                r.severity,
                r.subject,
                json.dumps([list(pair) for pair in r.labels]),
                int(r.default),
            )
            for i, r in enumerate(rota.routes)
        ],
    )


async def save_rota(conn: Conn, rota: Rota, *, keep_edits: bool = False) -> None:
    """Replace the stored rota with ``rota``, inside the caller's write transaction.
    ``keep_edits``: keep the overrides not made by a rota file (the caller has checked that
    their schedules and people are still there: a dropped one would cascade them away)."""
    rows = [
        (
            p.name, i, p.language,
            p.shift_notice.contact if p.shift_notice else None,
            p.shift_notice.before_seconds if p.shift_notice else None,
        )
        for i, p in enumerate(rota.people)
    ]  # fmt: skip
    columns = (
        "name", "position", "language", "shift_notice_contact", "shift_notice_before_seconds"
    )  # fmt: skip
    people = await _replace_named(conn, "people", columns, rows)
    await conn.execute("DELETE FROM contacts")
    await conn.executemany(
        "INSERT INTO contacts (person_id, position, kind, address, name) VALUES (?, ?, ?, ?, ?)",
        [
            (people[p.name], i, c.kind.value, c.address, c.name)
            for p in rota.people
            for i, c in enumerate(p.contacts)
        ],
    )
    await conn.execute("DELETE FROM notify_rules")
    await conn.executemany(
        "INSERT INTO notify_rules (person_id, position, contact_position, method, after_seconds) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            (people[p.name], i, r.contact, r.method.value, r.after_seconds)
            for p in rota.people
            for i, r in enumerate(p.rules)
        ],
    )
    team_rows = [(t.name, i) for i, t in enumerate(rota.teams)]
    teams = await _replace_named(conn, "teams", ("name", "position"), team_rows)
    await conn.execute("DELETE FROM team_members")
    await conn.executemany(
        "INSERT INTO team_members (team_id, position, person_id) VALUES (?, ?, ?)",
        [(teams[t.name], i, people[m]) for t in rota.teams for i, m in enumerate(t.members)],
    )
    schedules = await _save_schedules(conn, rota, people, keep_edits)
    policies = await _save_policies(conn, rota, people, teams, schedules)
    await _save_routes(conn, rota, teams, policies)
    await conn.execute(
        "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
        "WHERE key = 'rota_version'"
    )


async def rota_version(conn: Conn) -> int:
    rows = await conn.execute_fetchall("SELECT value FROM meta WHERE key = 'rota_version'")
    return int(next(iter(rows))["value"])


def _grouped(rows: Iterable[Row], key: str) -> dict[int, list[Row]]:
    groups: dict[int, list[Row]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    return groups


async def _load_people(conn: Conn) -> tuple[list[Person], dict[int, str]]:
    people = await conn.execute_fetchall(
        "SELECT id, name, language, shift_notice_contact, shift_notice_before_seconds "
        "FROM people ORDER BY position, id"
    )
    contacts = _grouped(
        await conn.execute_fetchall("SELECT * FROM contacts ORDER BY person_id, position"),
        "person_id",
    )
    rules = _grouped(
        await conn.execute_fetchall("SELECT * FROM notify_rules ORDER BY person_id, position"),
        "person_id",
    )
    loaded = [
        Person(
            PersonName(p["name"]),
            p["language"],
            tuple(
                Contact(ContactKind(c["kind"]), c["address"], c["name"])
                for c in contacts.get(p["id"], [])
            ),
            tuple(
                NotifyRule(r["contact_position"], NotifyMethod(r["method"]), r["after_seconds"])
                for r in rules.get(p["id"], [])
            ),
            (
                ShiftNotice(p["shift_notice_contact"], p["shift_notice_before_seconds"])
                if p["shift_notice_contact"] is not None
                else None
            ),
        )
        for p in people
    ]
    return loaded, {p["id"]: p["name"] for p in people}


async def _load_schedules(conn: Conn, names: dict[int, str]) -> list[Schedule]:
    members = _grouped(
        await conn.execute_fetchall("SELECT * FROM layer_members ORDER BY layer_id, position"),
        "layer_id",
    )
    windows = _grouped(
        await conn.execute_fetchall("SELECT * FROM layer_windows ORDER BY layer_id, position"),
        "layer_id",
    )
    layers = _grouped(
        await conn.execute_fetchall("SELECT * FROM layers ORDER BY schedule_id, position"),
        "schedule_id",
    )
    sources = {
        row["schedule_id"]: source_from_json(row["spec"])
        for row in await conn.execute_fetchall("SELECT * FROM schedule_sources")
    }
    return [
        Schedule(
            ScheduleName(s["name"]),
            s["time_zone"],
            tuple(
                Layer(
                    name=layer["name"],
                    members=tuple(
                        PersonName(names[m["person_id"]]) for m in members.get(layer["id"], [])
                    ),
                    shift_length=layer["shift_length"],
                    shift_unit=ShiftUnit(layer["shift_unit"]),
                    start_date=date.fromisoformat(layer["start_date"]),
                    handoff=time.fromisoformat(layer["handoff_time"]),
                    windows=tuple(
                        Window(
                            frozenset(int(d) for d in w["days"].split(",")),
                            time.fromisoformat(w["start_time"]),
                            time.fromisoformat(w["end_time"]),
                        )
                        for w in windows.get(layer["id"], [])
                    ),
                )
                for layer in layers.get(s["id"], [])
            ),
            sources.get(s["id"]),
        )
        for s in await conn.execute_fetchall("SELECT * FROM schedules ORDER BY position, id")
    ]


async def _load_policies(conn: Conn) -> list[EscalationPolicy]:
    targets = _grouped(
        await conn.execute_fetchall(
            "SELECT t.step_id, s.name AS schedule, p.name AS person, m.name AS team "
            "FROM step_targets t LEFT JOIN schedules s ON s.id = t.schedule_id "
            "LEFT JOIN people p ON p.id = t.person_id LEFT JOIN teams m ON m.id = t.team_id "
            "ORDER BY t.step_id, t.position"
        ),
        "step_id",
    )
    steps = _grouped(
        await conn.execute_fetchall("SELECT * FROM policy_steps ORDER BY policy_id, position"),
        "policy_id",
    )

    def target(row: Row) -> Target:
        kind = next(k for k in TargetKind if row[k.value] is not None)
        return Target(kind, row[kind.value])

    return [
        EscalationPolicy(
            PolicyName(p["name"]),
            tuple(
                Step(
                    tuple(target(t) for t in targets.get(s["id"], [])),
                    s["timeout_seconds"],
                    s["ring_timeout_seconds"],
                )
                for s in steps.get(p["id"], [])
            ),
            p["repeat_count"],
            p["repeat_delay_seconds"],
        )
        for p in await conn.execute_fetchall("SELECT * FROM policies ORDER BY position, id")
    ]


async def load_routes(conn: Conn) -> list[Route]:
    rows = await conn.execute_fetchall(
        "SELECT r.*, p.name AS policy, t.name AS team FROM routes r "
        "LEFT JOIN policies p ON p.id = r.policy_id LEFT JOIN teams t ON t.id = r.team_id "
        "ORDER BY r.position"
    )
    return [
        Route(
            name=r["name"],
            policy=PolicyName(r["policy"]) if r["policy"] else None,
            team=TeamName(r["team"]) if r["team"] else None,
            source=r["match_source"],
            severity=r["match_severity"],
            subject=r["match_subject"],
            labels=tuple((k, v) for k, v in json.loads(r["match_labels"])),
            default=bool(r["is_default"]),
        )
        for r in rows
    ]


async def load_rota(conn: Conn) -> Rota:
    """The stored rota, inside the caller's transaction."""
    people, names = await _load_people(conn)
    team_rows = await conn.execute_fetchall("SELECT id, name FROM teams ORDER BY position, id")
    members = _grouped(
        await conn.execute_fetchall("SELECT * FROM team_members ORDER BY team_id, position"),
        "team_id",
    )
    teams = [
        Team(
            TeamName(t["name"]),
            tuple(PersonName(names[m["person_id"]]) for m in members.get(t["id"], [])),
        )
        for t in team_rows
    ]
    overrides = [
        Override(
            ScheduleName(o["schedule"]),
            PersonName(o["person"]),
            from_db(o["start_at"]),
            from_db(o["end_at"]),
            PersonName(o["replaces"]) if o["replaces"] else None,
        )
        for o in await conn.execute_fetchall(
            "SELECT s.name AS schedule, p.name AS person, r.name AS replaces, o.start_at, o.end_at "
            "FROM overrides o JOIN schedules s ON s.id = o.schedule_id "
            "JOIN people p ON p.id = o.person_id LEFT JOIN people r ON r.id = o.replaces_person_id "
            # The file's first, then the edits in the order they were made: on a tie in
            # who_is_on_call, the later one in this order wins (docs/rota-edits.md).
            "ORDER BY o.origin <> 'file', o.id"
        )
    ]
    return Rota(
        people=tuple(people),
        teams=tuple(teams),
        schedules=tuple(await _load_schedules(conn, names)),
        overrides=tuple(overrides),
        policies=tuple(await _load_policies(conn)),
        routes=tuple(await load_routes(conn)),
    )
