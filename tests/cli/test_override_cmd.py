"""``voipalert override add|list|remove|import`` and ``rota import --keep-overrides``
through the real command line, on a real database file. Times are next year's, so the
tests do not age (the commands use the real clock)."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from pathlib import Path

import pytest

from voipalert.cli import main
from voipalert.cli.override_cmd import os_user
from voipalert.clock import SystemClock

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "rota.example.yaml"
YEAR = SystemClock().now_utc().year + 1


def last_sunday_of_march(year: int) -> date:
    day = date(year, 3, 31)
    return day - timedelta(days=(day.isoweekday() % 7))


GAP_DAY = last_sunday_of_march(YEAR)  # Europe/Paris springs forward at 02:00 that night


@pytest.fixture
def config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "voipalert.toml"
    path.write_text(f'[database]\npath = "{tmp_path / "voipalert.db"}"\n')
    assert main(["--config", str(path), "rota", "import", str(EXAMPLE)]) == 0
    capsys.readouterr()
    return path


def run(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


def add(config: Path, person: str, start: str, end: str, *more: str) -> int:
    return run(
        config, "override", "add", "--schedule", "ops-primary", "--person", person,
        "--start", start, "--end", end, *more,
    )  # fmt: skip


def test_add_shows_in_oncall_list_and_remove(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(config, "dave", f"{YEAR}-06-10 18:00", f"{YEAR}-06-11 09:00", "--note", "swap") == 0
    out = capsys.readouterr().out
    assert out.startswith("added #")
    assert f"ops-primary: dave  {YEAR}-06-10 18:00 CEST → {YEAR}-06-11 09:00 CEST" in out
    assert f"(cli by {os_user()})  'swap'" in out
    override_id = out.split("#")[1].split()[0]
    assert run(config, "oncall", "--at", f"{YEAR}-06-10T20:00") == 0
    assert f"dave (override, {YEAR}-06-10 18:00 CEST → {YEAR}-06-11 09:00 CEST)" in (
        capsys.readouterr().out
    )
    assert run(config, "override", "list") == 0
    listed = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"#{override_id}  ops-primary: dave") for line in listed)
    assert run(config, "override", "remove", override_id) == 0
    assert f"removed #{override_id}: dave on ops-primary" in capsys.readouterr().out
    assert run(config, "override", "remove", override_id) == 1
    assert f"no override #{override_id}" in capsys.readouterr().err
    for wild in ("9" * 30, "-1", "0"):
        assert run(config, "override", "remove", wild) == 1
        assert f"no override #{int(wild)}" in capsys.readouterr().err
    assert run(config, "oncall", "--at", f"{YEAR}-06-10T20:00") == 0
    assert "dave (override" not in capsys.readouterr().out


def test_refusals_name_each_problem(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gap = f"{GAP_DAY} 02:30"
    assert add(config, "zed", gap, f"{GAP_DAY} 09:00") == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "override: person: no person named 'zed'",
        f"override: start: {gap} does not exist in Europe/Paris (the clocks jump forward to "
        "03:00 that night); give 03:00 or a time with its UTC offset",
        "voipalert: override refused; nothing changed",
    ]
    assert run(config, "override", "add", "--schedule", "nope", "--person", "dave",
               "--start", f"{YEAR}-06-10T18:00Z", "--end", f"{YEAR}-06-10T17:00Z") == 1  # fmt: skip
    assert capsys.readouterr().err.splitlines()[:2] == [
        "override: end: must be after start",
        "override: schedule: no schedule named 'nope'",
    ]


def test_overlaps_are_pointed_out(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert add(config, "dave", f"{YEAR}-06-10 00:00", f"{YEAR}-06-12 00:00") == 0
    assert add(config, "bob", f"{YEAR}-06-10 18:00", f"{YEAR}-06-10 22:00") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("added #") and "bob" in out[1]
    assert out[2].startswith("  overlaps #") and "dave" in out[2]
    assert "the one that starts last wins" in out[3]
    assert add(config, "bob", f"{YEAR}-06-10 18:00", f"{YEAR}-06-10 22:00") == 0
    assert capsys.readouterr().out.startswith("already there: #")


def test_import_keeps_overrides_only_when_asked(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(config, "dave", f"{YEAR}-06-10 18:00", f"{YEAR}-06-11 09:00") == 0
    assert run(config, "rota", "import", "--keep-overrides", str(EXAMPLE)) == 0
    assert "kept 1 overrides made since" in capsys.readouterr().out
    without_dave = tmp_path / "rota.yaml"
    text = EXAMPLE.read_text()
    without_dave.write_text(
        text.replace(
            '  - name: dave\n    language: en\n    contacts:\n      - extension: "204"\n', ""
        )
        .replace("[alice, bob, carol, dave]", "[alice, bob, carol]")
        .replace("members: [dave]", "members: [carol]")
        .replace("- person: dave", "- person: carol")
    )
    assert run(config, "rota", "import", "--keep-overrides", str(without_dave)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{without_dave}: override #") and err[0].endswith(
        "names person 'dave', which this file does not have"
    )
    assert "the database is unchanged" in err[1]
    assert run(config, "override", "list") == 0
    assert "dave" in capsys.readouterr().out
    # Without --keep-overrides the file is the whole rota, as before.
    assert run(config, "rota", "import", str(without_dave)) == 0
    capsys.readouterr()
    assert run(config, "override", "list", "--from", f"{YEAR}-06-01 00:00") == 0
    assert capsys.readouterr().out == "no overrides\n"


def test_csv_import_twice_and_a_spreadsheet_safe_export(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shifts = tmp_path / "shifts.csv"
    shifts.write_bytes(
        (
            "\ufeffperson;start;end;schedule;note\r\n"
            f'dave;{YEAR}-06-10 18:00;{YEAR}-06-11 09:00;ops-primary;=HYPERLINK("http://x")\r\n'
            f"bob;{YEAR}-06-11 18:00;{YEAR}-06-12 09:00;ops-primary;\r\n"
        ).encode()
    )
    assert run(config, "override", "import", "--dry-run", str(shifts)) == 0
    assert "valid (2 to add, 0 already there)" in capsys.readouterr().out
    assert run(config, "override", "import", str(shifts)) == 0
    assert "2 overrides added, 0 already there" in capsys.readouterr().out
    assert run(config, "override", "import", str(shifts)) == 0
    assert "0 overrides added, 2 already there" in capsys.readouterr().out
    assert run(config, "override", "list", "--csv", "--schedule", "ops-primary",
               "--from", f"{YEAR}-06-01 00:00") == 0  # fmt: skip
    exported = capsys.readouterr().out
    rows = list(csv.reader(io.StringIO(exported)))
    assert rows[0] == ["person", "start", "end", "schedule", "replaces", "note"]
    assert rows[1] == [
        "dave", f"{YEAR}-06-10T18:00:00+02:00", f"{YEAR}-06-11T09:00:00+02:00", "ops-primary",
        "", "'=HYPERLINK(\"http://x\")",
    ]  # fmt: skip
    # The export imports back as the same overrides.
    again = tmp_path / "again.csv"
    again.write_text(exported)
    assert run(config, "override", "import", str(again)) == 0
    assert "0 overrides added, 2 already there" in capsys.readouterr().out


def test_csv_problems_with_lines(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shifts = tmp_path / "shifts.csv"
    shifts.write_text(
        "person,start,end,schedule\n"
        f"dave,{YEAR}-06-10 18:00,{YEAR}-06-11 09:00,ops-primary\n"
        f"=cmd|' /C calc'!A0,{YEAR}-06-10 18:00,{YEAR}-06-11 09:00,ops-primary\n"
        f"dave,{GAP_DAY} 02:00,{GAP_DAY} 09:00,ops-primary\n"
    )
    assert run(config, "override", "import", str(shifts)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{shifts}:3: person: no person named \"=cmd|' /C calc'!A0\""
    assert err[1].startswith(f"{shifts}:4: start: {GAP_DAY} 02:00 does not exist")
    assert "shifts rejected (2 problems); nothing was added" in err[2]
    assert run(config, "override", "list") == 0
    assert "dave" not in capsys.readouterr().out
    huge = tmp_path / "huge.csv"
    huge.write_bytes(b"x" * 4_000_001)
    assert run(config, "override", "import", str(huge)) == 1
    assert "larger than 1,000,000 characters" in capsys.readouterr().err
    assert run(config, "override", "import", "/dev/zero") == 1  # endless, and no size
    assert "larger than 1,000,000 characters" in capsys.readouterr().err
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("person,start,end,schedule\nJérôme,x,y,z\n".encode("latin-1"))
    assert run(config, "override", "import", str(latin1)) == 1
    assert 'not UTF-8 (byte 28); save it from the spreadsheet as "CSV UTF-8"' in (
        capsys.readouterr().err
    )


def test_rota_import_points_a_csv_to_override_import(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shifts = tmp_path / "shifts.CSV"
    shifts.write_text("person,start,end,schedule\n")
    assert run(config, "rota", "import", str(shifts)) == 2
    assert "voipalert override import" in capsys.readouterr().err
