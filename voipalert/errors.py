"""The root of voipalert's exception tree (docs/architecture.md §4).

Each package adds its own branch under :class:`VoipAlertError` (``sip.errors`` adds
``SipError`` and its local/remote split). Expected outcomes — a busy callee, an alert
nobody acknowledged — are values, never exceptions.
"""


class VoipAlertError(Exception):
    """Base class of every error voipalert raises on purpose."""


class ConfigError(VoipAlertError):
    """The configuration is unusable. ``problems`` holds one line per wrong key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))
