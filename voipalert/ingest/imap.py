"""The IMAP poller: alerts from an existing mailbox, through the same e-mail rules.

Each poll logs in, selects the mailbox, and takes every UNSEEN message in UID order. A
message is fetched with ``BODY.PEEK[]`` so that reading it does not mark it seen; it is
marked ``\\Seen`` (or moved to ``move_to``) only after its alert is committed. So a crash
between the two re-reads the message at the next poll, and the repeat joins the open alert
through its dedup key instead of being lost.

A message the rules refuse (or from a sender not allowed, or too large) is left unread in
the mailbox for a human to see, and logged with the reason once per UID per process, not at
every poll.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from dataclasses import dataclass
from typing import Any, Final

import aioimaplib

from voipalert.errors import VoipAlertError
from voipalert.ingest.config import ImapConfig
from voipalert.ingest.email_parse import Rejected, parse_mail, read_mail, sender_allowed
from voipalert.ingest.mail_trigger import MailTrigger, parse_bytes

log = logging.getLogger("voipalert.imap")

_SIZE: Final = re.compile(rb"RFC822\.SIZE (\d+)")
_UIDVALIDITY: Final = re.compile(rb"\[UIDVALIDITY (\d+)\]")
MAX_UIDS_PER_POLL: Final = 500
REMEMBERED_REJECTS: Final = 10_000


class ImapError(VoipAlertError):
    """The server refused a command or answered something we cannot read."""


@dataclass(frozen=True, slots=True)
class PollResult:
    committed: int = 0
    rejected: int = 0


def _ok(response: Any, what: str) -> Any:
    if response.result != "OK":
        detail = b" ".join(bytes(line) for line in response.lines)[:200]
        raise ImapError(f"{what}: {response.result} {detail.decode('ascii', 'replace')}")
    return response


class ImapPoller(MailTrigger[ImapConfig]):
    edge = "imap"

    @functools.cached_property
    def _refused(self) -> set[tuple[bytes, str]]:
        """(UIDVALIDITY, UID) of the refusals already logged by this process."""
        return set()

    async def run(self) -> None:
        """Poll every ``poll_interval_seconds`` until cancelled. A failed poll (server down,
        refused login, database busy) is logged and retried at the next interval: the poller
        never takes the application down with it."""
        while True:
            try:
                result = await self.poll_once()
                if result.committed or result.rejected:
                    log.info(
                        "IMAP poll",
                        extra={"committed": result.committed, "rejected": result.rejected},
                    )
            except (ImapError, aioimaplib.AioImapException, OSError, TimeoutError) as exc:
                log.warning("IMAP poll failed: %s", exc, extra={"host": self._config.host})
            except Exception:
                log.exception("IMAP poll failed", extra={"host": self._config.host})
            await asyncio.sleep(self._config.poll_interval_seconds)

    def _client(self) -> Any:
        cls = aioimaplib.IMAP4_SSL if self._config.tls else aioimaplib.IMAP4
        return cls(
            host=self._config.host, port=self._config.port, timeout=self._config.timeout_seconds
        )

    async def poll_once(self) -> PollResult:
        """One pass over the UNSEEN messages."""
        client = self._client()
        async with asyncio.timeout(self._config.timeout_seconds * 20):
            try:
                await client.wait_hello_from_server()
                _ok(await client.login(self._config.username, self._config.password), "LOGIN")
                selected = _ok(await client.select(self._config.mailbox), "SELECT")
                validity = next(
                    (m.group(1) for m in map(_UIDVALIDITY.search, map(bytes, selected.lines)) if m),
                    b"",
                )
                found = _ok(await client.uid_search("UNSEEN"), "SEARCH")
                uids = bytes(found.lines[0]).split()[:MAX_UIDS_PER_POLL] if found.lines else []
                committed = rejected = 0
                for uid in (u.decode("ascii") for u in uids):
                    if await self._one(client, validity, uid):
                        committed += 1
                    else:
                        rejected += 1
                return PollResult(committed, rejected)
            finally:
                await self._logout(client)

    async def _logout(self, client: Any) -> None:
        # aioimaplib connects in a task of its own: never leave it behind, and only say
        # LOGOUT on a connection that is up (else it would wait for its timeout).
        connecting = client._client_task
        if not connecting.done():
            connecting.cancel()
            return
        if connecting.cancelled() or connecting.exception() is not None:
            return
        try:
            if client.protocol.state in ("NONAUTH", "AUTH", "SELECTED"):
                async with asyncio.timeout(5):
                    await client.logout()
        except (aioimaplib.AioImapException, OSError, TimeoutError):
            pass  # the connection is going away either way
        finally:
            connecting.result()[0].close()

    async def _fetch(self, client: Any, uid: str) -> bytes | Rejected:
        """The raw message, or why it is not fetched."""
        sized = _ok(await client.uid("fetch", uid, "(RFC822.SIZE)"), "FETCH size")
        size = next((int(m.group(1)) for m in map(_SIZE.search, map(bytes, sized.lines)) if m), 0)
        if size > self._config.max_message_bytes:
            return Rejected(f"message of {size} bytes is over max_message_bytes")
        fetched = _ok(await client.uid("fetch", uid, "(BODY.PEEK[])"), "FETCH body")
        literal = next((line for line in fetched.lines if isinstance(line, bytearray)), None)
        if literal is None:
            raise ImapError(f"FETCH of UID {uid} returned no message")
        return bytes(literal)

    def _refuse(self, validity: bytes, uid: str, reason: str) -> bool:
        if (validity, uid) not in self._refused:
            if len(self._refused) >= REMEMBERED_REJECTS:
                self._refused.clear()
            self._refused.add((validity, uid))
            log.warning("e-mail refused, left unread: %s", reason, extra={"uid": uid})
            self._count_refusal("refused")
        return False

    async def _one(self, client: Any, validity: bytes, uid: str) -> bool:
        """Commit one message's event, then mark it. False when it is refused."""
        raw = await self._fetch(client, uid)
        if isinstance(raw, Rejected):
            return self._refuse(validity, uid, raw.reason)
        message = parse_bytes(raw)
        if await self._intake.take_mail_reply(message) is not None:
            await self._mark(client, uid)
            return True
        mail = read_mail(message)
        if not sender_allowed(mail.sender, self._config.allowed_senders):
            return self._refuse(validity, uid, f"sender {mail.sender[:100]!r} not allowed")
        result = parse_mail(mail, self._rules, builtin=self._builtin)
        if isinstance(result, Rejected):
            return self._refuse(validity, uid, result.reason)
        await self._intake.submit(result)  # on disk from here on
        await self._mark(client, uid)
        return True

    async def _mark(self, client: Any, uid: str) -> None:
        """Done with a message: moved to ``move_to`` or flagged seen."""
        if self._config.move_to is not None:
            _ok(await client.uid("move", uid, self._config.move_to), "MOVE")
        else:
            _ok(await client.uid("store", uid, "+FLAGS.SILENT", r"(\Seen)"), "STORE")
