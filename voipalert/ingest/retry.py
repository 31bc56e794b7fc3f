"""What the outboxes' workers share: when an HTTP request failed for good. When to try
again is ``config.RetryPolicy`` (pure). Used by the Alertmanager silencer
(``ingest.silencer``) and the status webhook sender (``ingest.status_hooks``);
docs/outbound.md §Retries.
"""

from __future__ import annotations

from typing import Final

import aiohttp

ERROR_CHARS: Final = 300
# RFC 9110 §15.5.9 (408), RFC 8470 §5.2 (425), RFC 6585 §4 (429): the request may succeed
# when repeated later. Every other 4xx says the request itself is wrong: repeating it is
# pointless.
RETRYABLE_4XX: Final = frozenset({408, 425, 429})


class RequestFailed(Exception):
    """One try failed; ``permanent``: trying again cannot help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason[:ERROR_CHARS])
        self.permanent = permanent


def is_permanent(status: int) -> bool:
    return 400 <= status < 500 and status not in RETRYABLE_4XX


async def check_response(response: aiohttp.ClientResponse, text: str | None = None) -> None:
    """Raise ``RequestFailed`` for a 4xx or 5xx answer, quoting the start of its body
    (``text`` when the caller has read it already; else at most 200 bytes are read)."""
    if response.status < 400:
        return
    if text is None:
        text = (await response.content.read(200)).decode("utf-8", "replace")
    text = text[:200]
    raise RequestFailed(f"HTTP {response.status}: {text}", permanent=is_permanent(response.status))
