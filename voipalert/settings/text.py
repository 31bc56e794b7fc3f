"""The ``[text]`` section: texts by SIP MESSAGE for notification rules with method
``message`` and the replies that acknowledge (docs/text-channels.md)."""

from __future__ import annotations

from pydantic import Field

from voipalert.settings.sections import _Section


class TextSettings(_Section):
    sip_messages: bool = Field(
        default=True,
        description="send SIP MESSAGE texts through the PBX for rules with method message "
        "(off: such rules fail with 'no message channel is configured')",
    )
    reply_window_seconds: int = Field(
        default=3600,
        ge=60,
        le=7 * 86400,
        description="how long after a text a reply from its contact may acknowledge; other "
        "senders' texts get 403",
    )
    replies_per_minute: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="replies looked at per minute from one sender (beyond: ignored)",
    )
