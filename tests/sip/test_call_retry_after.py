"""The final failure's Retry-After reaches the call's end event (RFC 3261 §20.33), for the
trunk cool-down (docs/sip-failover.md); a malformed one is ignored, never an error."""

from __future__ import annotations

import pytest

from tests.sip.peer import Peer
from tests.sip.test_call import ended, start_call


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120), ("300 (maintenance);duration=60", 300), ("soon", None), (None, None)],
)
def test_retry_after_of_a_503(value: str | None, expected: int | None) -> None:
    peer = Peer()
    _, invite = start_call(peer)
    headers = [("Retry-After", value)] if value is not None else []
    peer.reply(invite, 503, headers=headers)
    peer.take()
    event = ended(peer)
    assert event.status == 503 and event.retry_after == expected
