"""SIP MESSAGE (RFC 3428): pager-mode text out, and the replies we accept.

Out: ``OutgoingText`` sends one MESSAGE outside any dialog (RFC 3428 §4) in a non-INVITE
client transaction, answers one digest challenge (401/407, as for INVITE) and reports its
final answer as ``TextDone``. A 2xx means the text reached a user agent (§4: "delivered",
not "read"). Over UDP the whole request stays under 1300 bytes (§7 and RFC 3261 §18.1.1:
larger requests would have to use a congestion-controlled transport), so the body is cut,
on a character boundary, to fit with room left for the Authorization header.

In: a MESSAGE outside a dialog is accepted only from a sender we are waiting for (one we
texted, for as long as a reply may acknowledge) and answered 200 with a ``TextReceived``
event; anyone else gets 403 and no event. Why 403 rather than 200-and-ignore: §7 makes 200
mean "delivered to the user", which a stranger's text never is; a final answer also stops
an honest sender's retransmissions, and it reveals nothing the 486 to an unsolicited
INVITE does not (docs/text-channels.md). Bodies other than ``text/plain`` get 415 (§7),
bodies longer than ``MAX_REPLY_BYTES`` 413. The From URI is only as trustworthy as the
PBX's identity checks: configure ``trusted_hosts`` so only the PBX can reach us.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from voipalert.sip import digest
from voipalert.sip.address import NameAddr
from voipalert.sip.agent_services import AgentServices, TxFailure
from voipalert.sip.dialog import Address, Envelope, build_request, our_aor
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.events import TextDone, TextId, TextReceived
from voipalert.sip.headers import HeaderInput
from voipalert.sip.ids import new_branch, new_call_id, new_tag
from voipalert.sip.locate import hop_of
from voipalert.sip.message import Request, Response, response_to
from voipalert.sip.uri import SipUri

UDP_REQUEST_LIMIT_BYTES: Final = 1300  # RFC 3428 §7, RFC 3261 §18.1.1
AUTH_HEADROOM_BYTES: Final = 400  # a digest Authorization header with a long nonce and uri
MAX_TEXT_BYTES: Final = 1000  # the body, whatever the transport
MAX_REPLY_BYTES: Final = 1000
MAX_TEXT_AUTH_ROUNDS: Final = 2  # the challenge, then one stale=true renewal
MAX_EXPECTED_SENDERS: Final = 1000
TEXT_PLAIN: Final = "text/plain"
ELLIPSIS: Final = "…"


def sender_key(uri: SipUri) -> str:
    """What identifies a sender: user and host of the address of record (RFC 3261
    §19.1.4 compares hosts case-insensitively; ports and parameters vary by route)."""
    user = uri.unescaped_user if uri.user is not None else ""
    return f"{user}@{uri.host.lower()}"


def fit_body(text: str, budget: int) -> bytes:
    """``text`` in UTF-8, cut on a character boundary to ``budget`` bytes (with "…")."""
    data = text.encode("utf-8")
    if len(data) <= budget:
        return data
    cut = data[: max(0, budget - len(ELLIPSIS.encode()))].decode("utf-8", "ignore")
    return (cut + ELLIPSIS).encode("utf-8")


class OutgoingText:
    """One MESSAGE, sent in its own transaction, Call-ID and From tag (§4: outside any
    dialog, each MESSAGE is a request of its own)."""

    def __init__(self, agent: AgentServices, text_id: TextId, target: SipUri, text: str) -> None:
        self._agent = agent
        self.text_id = text_id
        self.target = target
        config = agent.config
        self._from = NameAddr(uri=our_aor(config), display_name=config.display_name)
        self._from = self._from.with_tag(new_tag(agent.rng))
        self._call_id = new_call_id(agent.rng)
        self._cseq = agent.rng.randint(1, 2**20)
        self._counter = digest.NonceCounter()
        self._auth_rounds = 0
        self._pending: Request | None = None
        self.done: TextDone | None = None
        budget = MAX_TEXT_BYTES
        if not config.reliable:
            bare = self._build(b"x", ())
            budget = min(
                budget, UDP_REQUEST_LIMIT_BYTES - AUTH_HEADROOM_BYTES - len(bare.serialize()) + 1
            )
        self.body = fit_body(text, max(budget, 0))

    def start(self, now: float) -> None:
        self._send(now, ())

    def _build(self, body: bytes, auth: tuple[HeaderInput, ...]) -> Request:
        config = self._agent.config
        route: tuple[NameAddr, ...] = ()
        if config.outbound_proxy is not None:
            route = (NameAddr(uri=config.outbound_proxy.with_param("lr")),)
        envelope = Envelope(
            self._from, NameAddr(uri=self.target), self._call_id, self._cseq,
            new_branch(self._agent.rng), route,
        )  # fmt: skip
        return build_request(
            config, "MESSAGE", self.target, envelope,
            extra=auth, body=body, content_type=f"{TEXT_PLAIN};charset=UTF-8",
        )  # fmt: skip

    def _send(self, now: float, auth: tuple[HeaderInput, ...]) -> None:
        config = self._agent.config
        request = self._build(self.body, auth)
        self._pending = request
        hop = config.outbound_proxy or self.target
        try:
            destination = hop_of(hop, config.transport)
        except RemoteProtocolError as exc:
            self._finish(400, f"unroutable target: {exc}")
            return
        self._agent.send_request(request, destination, self, now)

    # ------------------------------------------------------------ TxUser

    def on_response(self, request: Request, response: Response, now: float) -> None:
        if request is not self._pending or response.status < 200:
            return
        self._pending = None
        if response.status in (401, 407):
            self._challenged(request, response, now)
            return
        self._finish(response.status, response.reason)

    def on_failure(self, request: Request, failure: TxFailure, now: float) -> None:
        if request is self._pending:
            self._pending = None
            self._finish(failure.status, failure.value)

    def retry_elsewhere(self, request: Request, retry: Request) -> bool:
        if request is not self._pending:
            return False
        self._pending = retry
        return True

    def _challenged(self, request: Request, response: Response, now: float) -> None:
        config = self._agent.config
        stale = digest.is_stale(response)
        if (
            config.password is None
            or self._auth_rounds >= MAX_TEXT_AUTH_ROUNDS
            or (self._auth_rounds and not stale)
        ):
            self._finish(response.status, "credentials refused for MESSAGE")
            return
        self._auth_rounds += 1
        credentials = digest.DigestCredentials(config.auth_username or config.user, config.password)
        try:
            auth = digest.authorization_headers(
                response, credentials, method="MESSAGE", uri=request.uri,
                rng=self._agent.rng, counter=self._counter,
            )  # fmt: skip
        except RemoteProtocolError as exc:
            self._finish(response.status, str(exc))
            return
        self._cseq += 1  # the same Call-ID and From tag, CSeq + 1, a new branch (§22.2)
        self._send(now, auth)

    def _finish(self, status: int, reason: str) -> None:
        if self.done is None:
            self.done = TextDone(self.text_id, status, reason)
            self._agent.emit(self.done)


class ExpectedSenders:
    """Who may text us, until when: fed by the owner when it sends a text whose reply may
    acknowledge; bounded (the oldest entry goes first)."""

    def __init__(self, limit: int = MAX_EXPECTED_SENDERS) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()
        self._limit = limit

    def expect(self, sender: SipUri, until: float) -> None:
        key = sender_key(sender)
        self._until[key] = max(until, self._until.get(key, until))
        self._until.move_to_end(key)
        while len(self._until) > self._limit:
            self._until.popitem(last=False)

    def allows(self, sender: SipUri, now: float) -> bool:
        key = sender_key(sender)
        until = self._until.get(key)
        if until is not None and until < now:
            del self._until[key]
            return False
        return until is not None


def answer_text(
    request: Request, senders: ExpectedSenders, source: Address, now: float
) -> tuple[Response, TextReceived | None]:
    """The answer to a MESSAGE outside a dialog, and the event when it is accepted."""
    sender = request.from_.uri
    if not isinstance(sender, SipUri) or not senders.allows(sender, now):
        return response_to(request, 403, "Not Expecting Texts From You"), None
    if request.content_type not in (TEXT_PLAIN, None) and request.body:
        return response_to(request, 415, headers=(("Accept", TEXT_PLAIN),)), None
    if len(request.body) > MAX_REPLY_BYTES:
        return response_to(request, 413), None
    body = request.body.decode("utf-8", "replace")
    return response_to(request, 200), TextReceived(sender, body, source)
