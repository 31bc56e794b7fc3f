"""The registration log line says what the registrar answered, never "(None )"."""

from __future__ import annotations

import pytest

from voipalert.calls import _last_answer
from voipalert.sip.events import RegistrationState, RegistrationStatus


@pytest.mark.parametrize(
    ("status", "reason", "said"),
    [
        (None, "", ""),
        (None, "timeout", " (timeout)"),
        (401, "Unauthorized", " (401 Unauthorized)"),
        (200, "", " (200)"),
    ],
)
def test_the_last_answer_is_said_plainly(status: int | None, reason: str, said: str) -> None:
    registering = RegistrationStatus(
        RegistrationState.REGISTERING, 0.0, last_status=status, last_reason=reason
    )
    assert _last_answer(registering) == said
    assert "None" not in _last_answer(registering)
