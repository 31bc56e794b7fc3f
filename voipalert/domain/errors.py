"""Errors of the pure domain layer."""

from __future__ import annotations

from dataclasses import dataclass

from voipalert.errors import VoipAlertError


@dataclass(frozen=True, slots=True)
class RotaProblem:
    """One thing wrong in a rota file: where (1-based line, when known; key path) and why."""

    line: int | None
    path: str
    message: str

    def describe(self, filename: str) -> str:
        where = f"{filename}:{self.line}" if self.line is not None else filename
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class RotaError(VoipAlertError, ValueError):
    """A rota file is unusable; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: list[RotaProblem], filename: str = "rota") -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.path))
        self.filename = filename
        super().__init__("; ".join(p.describe(filename) for p in self.problems))
