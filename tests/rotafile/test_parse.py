"""Rota files: the example parses, TOML and YAML agree, export round-trips, and broken files
are rejected with the line and the reason of every problem."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from voipalert.domain.errors import RotaError
from voipalert.domain.rota import ContactKind, NotifyMethod, NotifyRule, ShiftUnit, TargetKind
from voipalert.rotafile.dump import dump_rota
from voipalert.rotafile.parse import parse_rota

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "rota.example.yaml"

TOML = """
version = 1

[[people]]
name = "alice"
language = "en"
contacts = [{ extension = "201" }, { number = "+33 6 12 34 56 78" }]

[[people]]
name = "bob"
language = "fr"
contacts = [{ sip = "sip:bob@pbx.example.com" }]
shift_notice = { contact = 1, before = "1h" }

[[people]]
name = "carol"
contacts = [
  { extension = "203", name = "desk" },
  { number = "+33 6 98 76 54 32", name = "mobile" },
  { email = "carol@example.com", name = "mail" },
]
rules = [
  { contact = "desk", method = "message", after = "0m" },
  { contact = "desk", method = "call", after = 0 },
  { contact = "mobile", method = "call", after = "2m" },
  { contact = "mail", method = "email", after = "5m" },
]

[[people]]
name = "dave"
contacts = [{ extension = "204" }]

[[teams]]
name = "ops"
members = ["alice", "bob", "carol", "dave"]

[[schedules]]
name = "ops-primary"
time_zone = "Europe/Paris"

[[schedules.layers]]
name = "weekly"
members = ["alice", "bob", "carol"]
shift_length = 1
shift_unit = "weeks"
start = 2026-01-05
handoff = 09:00:00

[[schedules.layers]]
name = "weekend-nights"
members = ["dave"]
shift_length = 1
shift_unit = "days"
start = 2026-01-03
handoff = "18:00"
windows = [{ days = ["fri", "sat", "sun"], from = "20:00", to = "08:00" }]

[[overrides]]
schedule = "ops-primary"
person = "carol"
replaces = "alice"
start = 2026-08-01T09:00:00+02:00
end = 2026-08-15T09:00:00+02:00

[[policies]]
name = "ops-default"
repeat = 2
repeat_delay = "2m"

[[policies.steps]]
targets = [{ schedule = "ops-primary" }]
timeout = "5m"
ring_timeout = "30s"

[[policies.steps]]
targets = [{ person = "dave" }]
timeout = 300

[[policies.steps]]
targets = [{ team = "ops" }]
timeout = "10m"

[[routes]]
name = "database"
policy = "ops-default"
team = "ops"
match = { severity = "critical", subject = "(?i)database|db", labels = { team = "dba" } }

[[routes]]
name = "everything-else"
default = true
policy = "ops-default"
team = "ops"
"""


def test_example_rota_parses() -> None:
    rota = parse_rota(EXAMPLE.read_text(), "yaml", "rota.example.yaml")
    alice = rota.person("alice")
    assert alice is not None and alice.contacts[1].kind is ContactKind.NUMBER
    assert alice.contacts[1].address == "+33612345678"  # spaces dropped
    schedule = rota.schedule("ops-primary")
    assert schedule is not None
    weekly, nights = schedule.layers
    assert (weekly.shift_unit, weekly.start_date, weekly.handoff) == (
        ShiftUnit.WEEKS,
        date(2026, 1, 5),
        time(9),
    )
    assert nights.handoff == time(18)  # unquoted 18:00 would be YAML's 1080; quoted or not, a time
    assert nights.windows[0].days == frozenset({5, 6, 7})
    assert rota.overrides[0].start == datetime(2026, 8, 1, 7, tzinfo=UTC)
    policy = rota.policy("ops-default")
    assert policy is not None and policy.repeat_delay_seconds == 120
    assert [s.timeout_seconds for s in policy.steps] == [300, 300, 600]
    assert policy.steps[2].targets[0].kind is TargetKind.TEAM
    assert rota.routes[0].labels == (("team", "dba"),) and rota.routes[1].default
    carol = rota.person("carol")
    assert carol is not None and [c.name for c in carol.contacts] == ["desk", "mobile", "mail"]
    assert carol.rules == (
        NotifyRule(0, NotifyMethod.MESSAGE, 0),
        NotifyRule(0, NotifyMethod.CALL, 0),
        NotifyRule(1, NotifyMethod.CALL, 120),
        NotifyRule(2, NotifyMethod.EMAIL, 300),
    )


def test_toml_and_yaml_describe_the_same_rota() -> None:
    yaml_rota = parse_rota(EXAMPLE.read_text(), "yaml")
    toml_rota = parse_rota(TOML, "toml")
    # The TOML file leaves carol's and dave's language at its default, "en", as the YAML says.
    assert toml_rota == yaml_rota


def test_export_round_trips() -> None:
    rota = parse_rota(EXAMPLE.read_text(), "yaml")
    text = dump_rota(rota)
    assert parse_rota(text, "yaml") == rota
    assert dump_rota(parse_rota(text, "yaml")) == text


def test_unquoted_yaml_times_and_numbers_keep_their_text() -> None:
    rota = parse_rota(
        """
people:
  - {name: ann, contacts: [{number: +4915112345678}, {extension: 0201}]}
schedules:
  - name: s
    time_zone: UTC
    layers:
      - {name: l, members: [ann], shift_length: 8, shift_unit: hours, start: 2026-01-01,
         handoff: 18:00}
""",
        "yaml",
    )
    assert [c.address for c in rota.people[0].contacts] == ["+4915112345678", "0201"]
    assert rota.schedules[0].layers[0].handoff == time(18)


BROKEN = """\
people:
  - name: alice
    contacts:
      - extension: "201"
  - name: bob
    contacts:
      - phone: "202"
  - name: alice
    contacts: []
schedules:
  - name: primary
    time_zone: Europe/Pariss
    layers:
      - name: main
        members: [alice, zoe]
        shift_length: 0
        shift_unit: fortnights
        start: 2026-13-01
        handoff: "25:00"
policies:
  - name: default
    steps:
      - targets: [{team: nobody}]
        timeout: soon
routes:
  - name: r
    policy: default
    match: {subject: "(unclosed"}
"""


def test_broken_rota_reports_every_problem_with_its_line() -> None:
    with pytest.raises(RotaError) as caught:
        parse_rota(BROKEN, "yaml", "broken.yaml")
    lines = [p.describe("broken.yaml") for p in caught.value.problems]
    assert lines == [
        "broken.yaml:7: people[1].contacts[0].phone: unknown key "
        "(expected one of: email, extension, name, number, sip)",
        "broken.yaml:8: people[2].name: duplicate name 'alice'",
        "broken.yaml:9: people[2].contacts: a person needs at least one contact",
        "broken.yaml:12: schedules[0].time_zone: unknown time zone 'Europe/Pariss' "
        "(expected an IANA name like Europe/Paris)",
        "broken.yaml:15: schedules[0].layers[0].members[1]: no person named 'zoe'",
        "broken.yaml:16: schedules[0].layers[0].shift_length: must be at least 1",
        "broken.yaml:17: schedules[0].layers[0].shift_unit: expected hours, days or weeks",
        "broken.yaml:18: schedules[0].layers[0].start: expected a date like 2026-03-29",
        "broken.yaml:19: schedules[0].layers[0].handoff: "
        "expected a time of day like '09:00' (24-hour, local)",
        "broken.yaml:23: policies[0].steps[0].targets[0].team: no team named 'nobody'",
        "broken.yaml:24: policies[0].steps[0].timeout: expected a duration like 300, 30s, 5m or 2h",
        "broken.yaml:28: routes[0].match.subject: not a valid regular expression: "
        "missing ), unterminated subpattern at position 0",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "people: [\n",
            "rota:2: not valid YAML: expected the node content, but found '<stream end>'",
        ),
        ("", "rota:1: the rota file is empty"),
        ("people:\n  - name: a\n    name: b\n", "rota:3: name: duplicate key"),
        ("- just a list\n", "rota:1: expected a mapping of keys to values"),
        ("teams: []\n", "rota:1: people: missing"),
        ("people: []\nversion: 2\n", "rota:2: version: this voipalert reads rota format version 1"),
        (
            'people:\n  - {name: a, contacts: [{sip: "sip:a@b\\r\\nVia: x"}]}\n',
            "rota:2: people[0].contacts[0].sip: 'sip:a@b\\r\\nVia: x' "
            "is not a SIP URI like sip:alice@pbx.example.com",
        ),
        (
            "people:\n  - {name: a, language: klingon!, contacts: [{extension: '1'}]}\n",
            "rota:2: people[0].language: 'klingon!' is not a language code like en or fr",
        ),
    ],
)
def test_yaml_edge_cases(text: str, expected: str) -> None:
    with pytest.raises(RotaError) as caught:
        parse_rota(text, "yaml")
    assert caught.value.problems[0].describe("rota") == expected


def test_toml_problems_are_located_on_their_line() -> None:
    broken = (
        TOML.replace('time_zone = "Europe/Paris"', 'time_zone = "Mars/Olympus"')
        .replace('members = ["dave"]', 'members = ["dave", "eve"]')
        .replace("timeout = 300", 'timeout = "forever"')
    )
    with pytest.raises(RotaError) as caught:
        parse_rota(broken, "toml", "rota.toml")
    text_lines = broken.splitlines()
    found = {p.path: p.line or 0 for p in caught.value.problems}
    assert set(found) == {
        "schedules[0].time_zone",
        "schedules[0].layers[1].members[1]",
        "policies[0].steps[1].timeout",
    }
    assert text_lines[found["schedules[0].time_zone"] - 1].startswith('time_zone = "Mars')
    assert "eve" in text_lines[found["schedules[0].layers[1].members[1]"] - 1]
    assert text_lines[found["policies[0].steps[1].timeout"] - 1] == 'timeout = "forever"'


def test_toml_syntax_error_has_its_line() -> None:
    with pytest.raises(RotaError) as caught:
        parse_rota('[[people]]\nname = "a"\ncontacts = [\n', "toml")
    assert caught.value.problems[0].line is not None
    assert "not valid TOML" in caught.value.problems[0].message


def test_override_without_offset_is_local_to_its_schedule() -> None:
    text = """
people: [{name: a, contacts: [{extension: "1"}]}]
schedules:
  - {name: s, time_zone: Europe/Paris, layers: []}
overrides:
  - {schedule: s, person: a, start: 2026-03-29T02:30, end: 2026-10-25T02:30}
"""
    override = parse_rota(text).overrides[0]
    assert override.start == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # the gap ends 03:00 CEST
    assert override.end == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # first 02:30


RULES_BASE = """
people:
  - name: erin
    contacts:
      - {extension: "301", name: desk}
      - {number: "+33612345678", name: mobile}
      - {extension: "302"}
      - {email: erin@example.com, name: mail}
"""


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ("[{contact: pager, method: call}]",
         "rota:9: people[0].rules[0].contact: no contact named 'pager' "
         "(name it with name: pager in contacts)"),
        ("[{contact: 5, method: call}]",
         "rota:9: people[0].rules[0].contact: no contact number 5 (this person has 4)"),
        ("[{contact: mail, method: call}]",
         "rota:9: people[0].rules[0].contact: a call goes to a sip, extension or number contact"),
        ("[{contact: desk, method: email}]",
         "rota:9: people[0].rules[0].contact: an email goes to an email contact"),
        ("[{contact: desk, method: fax}]",
         "rota:9: people[0].rules[0].method: expected call, message or email"),
        ("[{contact: mobile, method: message}]",
         "rota:9: people[0].rules[0].contact: a message goes to a sip or extension contact, "
         "not a number"),
        ("[{contact: desk, method: call, after: 2d}]",
         "rota:9: people[0].rules[0].after: must be at most 1d"),
        ("[{contact: desk, method: call, after: soon}]",
         "rota:9: people[0].rules[0].after: expected a duration like 300, 30s, 5m or 2h"),
        ("[{contact: desk, method: call}, {contact: desk, method: call, after: 0}]",
         "rota:9: people[0].rules[1]: the same rule twice"),
        ("[]", "rota:9: people[0].rules: must not be empty "
         "(leave rules out to call the contacts in order)"),
        ("[{contact: desk}]", "rota:9: people[0].rules[0].method: missing"),
        ("[{contact: desk, method: call, when: now}]",
         "rota:9: people[0].rules[0].when: unknown key (expected one of: after, contact, method)"),
    ],
)  # fmt: skip
def test_rule_problems_name_their_line(rules: str, expected: str) -> None:
    with pytest.raises(RotaError) as caught:
        parse_rota(f"{RULES_BASE}    rules: {rules}\n")
    assert [p.describe("rota") for p in caught.value.problems] == [expected]


def test_duplicate_contact_names_are_refused() -> None:
    text = RULES_BASE.replace('{extension: "302"}', '{extension: "302", name: desk}')
    with pytest.raises(RotaError) as caught:
        parse_rota(text)
    assert [p.describe("rota") for p in caught.value.problems] == [
        "rota:7: people[0].contacts[2]: duplicate contact name 'desk'"
    ]


def test_rules_round_trip_by_name_or_position() -> None:
    rules = "[{contact: 3, method: message, after: 90s}, {contact: desk, method: call}]"
    text = f"{RULES_BASE}    rules: {rules}\n"
    rota = parse_rota(text)
    erin = rota.person("erin")
    assert erin is not None
    assert erin.rules == (
        NotifyRule(2, NotifyMethod.MESSAGE, 90),
        NotifyRule(0, NotifyMethod.CALL, 0),
    )
    dumped = dump_rota(rota)
    assert "contact: 3" in dumped and "contact: desk" in dumped
    assert parse_rota(dumped) == rota


@pytest.mark.parametrize("address", ["erin at example.com", "erin@example.com, x@y.z", "<e@x.y>"])
def test_an_email_contact_is_one_plain_address(address: str) -> None:
    text = RULES_BASE.replace("erin@example.com", f'"{address}"')
    with pytest.raises(RotaError) as caught:
        parse_rota(text)
    (problem,) = caught.value.problems
    assert problem.describe("rota").startswith("rota:8: people[0].contacts[3].email: ")
    assert problem.describe("rota").endswith("is not an e-mail address like alice@example.com")
