"""``voipalert rota import|export`` and ``voipalert oncall`` through the real command line,
on a real database file."""

from __future__ import annotations

from pathlib import Path

import pytest

from voipalert.cli import main
from voipalert.rotafile.parse import parse_rota

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "rota.example.yaml"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "voipalert.toml"
    path.write_text(f'[database]\npath = "{tmp_path / "voipalert.db"}"\n')
    return path


def run(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


def test_import_export_round_trip(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "rota", "import", str(EXAMPLE)) == 0
    assert "imported" in capsys.readouterr().out
    out = tmp_path / "exported.yaml"
    assert run(config, "rota", "export", "-o", str(out)) == 0
    assert parse_rota(out.read_text()) == parse_rota(EXAMPLE.read_text())
    # Importing the export changes nothing.
    assert run(config, "rota", "import", str(out)) == 0
    assert run(config, "rota", "export") == 0
    assert capsys.readouterr().out.endswith(out.read_text())


def test_broken_rota_is_rejected_with_lines_and_the_database_is_unchanged(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "rota", "import", str(EXAMPLE)) == 0
    capsys.readouterr()
    assert run(config, "rota", "export") == 0
    before = capsys.readouterr().out
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        EXAMPLE.read_text()
        .replace("time_zone: Europe/Paris", "time_zone: Europe/Lutece")
        .replace("- person: dave", "- person: davide")
    )
    assert run(config, "rota", "import", str(broken)) == 1
    err = capsys.readouterr().err.splitlines()
    lines = broken.read_text().splitlines()
    zone_line = next(i for i, text in enumerate(lines, 1) if "Lutece" in text)
    person_line = next(i for i, text in enumerate(lines, 1) if "davide" in text)
    assert err[0] == (
        f"{broken}:{zone_line}: schedules[0].time_zone: unknown time zone 'Europe/Lutece' "
        "(expected an IANA name like Europe/Paris)"
    )
    where = f"{broken}:{person_line}: policies[0].steps[1].targets[0].person"
    assert err[1] == f"{where}: no person named 'davide'"
    assert "rota rejected (2 problems); the database is unchanged" in err[2]
    assert run(config, "rota", "export") == 0
    assert capsys.readouterr().out == before


def test_dry_run_leaves_the_database_alone(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "rota", "import", "--dry-run", str(EXAMPLE)) == 0
    assert "valid (4 people" in capsys.readouterr().out
    assert run(config, "rota", "export") == 0
    assert "people: []" in capsys.readouterr().out


def test_toml_rota_file(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rota = tmp_path / "rota.toml"
    rota.write_text(
        '[[people]]\nname = "ann"\ncontacts = [{ extension = "1" }]\n\n[[people]]\nname = ["x"]\n'
    )
    assert run(config, "rota", "import", str(rota)) == 1
    err = capsys.readouterr().err
    assert f"{rota}:6: people[1].name: expected text" in err
    assert f"{rota}:5: people[1].contacts: missing" in err


def test_oncall_what_if_on_the_spring_forward_night(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "rota", "import", str(EXAMPLE)) == 0
    capsys.readouterr()
    # 02:45 does not exist that night in Paris: asked as the first instant after it, 03:00 CEST.
    assert run(config, "oncall", "--at", "2026-03-29T02:45") == 0
    assert capsys.readouterr().out == (
        "ops-primary: at 2026-03-29 03:00 CEST: dave "
        "(layer weekend-nights, 2026-03-28 18:00 CET → 2026-03-29 18:00 CEST)\n"
    )
    assert (
        run(config, "oncall", "--at", "2026-08-03T12:00:00+02:00", "--schedule", "ops-primary") == 0
    )
    assert "carol (override of alice" in capsys.readouterr().out


def test_oncall_reports_gaps_and_unknown_schedules(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "rota", "import", str(EXAMPLE)) == 0
    capsys.readouterr()
    assert run(config, "oncall", "--at", "2025-12-01T12:00Z") == 1  # before any rotation starts
    assert "nobody on call (gap)" in capsys.readouterr().out
    assert run(config, "oncall", "--schedule", "nope") == 2
    assert "no schedule named 'nope'" in capsys.readouterr().err
    assert run(config, "oncall", "--at", "yesterday") == 2
