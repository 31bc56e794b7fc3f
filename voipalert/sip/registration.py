"""REGISTER lifecycle (RFC 3261 §10.2, docs/sip.md §4.4).

* One Call-ID and From tag for the binding's lifetime, CSeq + 1 on every REGISTER (§10.2.4).
* 401/407 → one retry with credentials; ``stale=true`` retries with the new nonce without
  counting a failure; a second challenge after our credentials is a failure (wrong
  password) — never a loop (baresip re-sent 16 REGISTERs in milliseconds, docs/testbed.md §2.6).
* 423 → retry with the registrar's ``Min-Expires``.
* 2xx → the granted expiry is our Contact's ``expires`` in the response, else ``Expires``;
  refresh well before it (half-way at least, ``expires - 32 s`` at most on a long binding).
* 403/404 and other refusals are "fatal" (a configuration error for the health endpoint)
  but still retried slowly; 408, 5xx, timeouts and transport errors back off from 30 s,
  doubling to a 30-minute cap with ±20 % jitter, and honour ``Retry-After``.
* The state says what is true: a binding that expired unrefreshed is not "registered".
* Behind a NAT (sip/nat.py): when the agent learns a new public address for our Contact,
  we register again at once with the new Contact and the old one with ``expires=0`` in
  the same REGISTER (§10.2.2), so the PBX stops sending to an address nobody listens on.
"""

from __future__ import annotations

from typing import Final

from voipalert.sip import digest
from voipalert.sip.address import NameAddr
from voipalert.sip.agent_services import AgentServices, TxFailure
from voipalert.sip.dialog import (
    Envelope,
    build_request,
    new_cseq,
    our_aor,
    our_contact,
)
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.events import RegistrationChanged, RegistrationState, RegistrationStatus
from voipalert.sip.headers import HeaderInput
from voipalert.sip.ids import new_branch, new_call_id, new_tag
from voipalert.sip.locate import hop_of
from voipalert.sip.message import Request, Response
from voipalert.sip.uri import SipUri

BACKOFF_BASE_SECONDS: Final = 30.0
BACKOFF_CAP_SECONDS: Final = 1800.0
MAX_AUTH_ROUNDS: Final = 2  # the challenge, then one stale=true renewal
FATAL_STATUSES: Final = frozenset({401, 403, 404, 407})

RS = RegistrationState


def refresh_delay(granted: int) -> float:
    """When to refresh a binding granted for ``granted`` seconds."""
    return max(granted / 2, min(0.8 * granted, granted - 32.0))


class Registration:
    def __init__(self, agent: AgentServices, registrar: SipUri, now: float) -> None:
        self._agent = agent
        config = agent.config
        self._registrar = registrar
        self._call_id = new_call_id(agent.rng)
        self._cseq = new_cseq(agent.rng)
        self._from = NameAddr(uri=our_aor(config), display_name=config.display_name)
        self._from = self._from.with_tag(new_tag(agent.rng))
        self._expires = config.register_expires
        self._counter = digest.NonceCounter()
        self._auth_rounds = 0
        self._failures = 0
        self._pending: Request | None = None
        self._timer: float | None = None
        self._status = RegistrationStatus(RS.UNREGISTERED, since=now)
        self._stopping = False
        self._bound: SipUri | None = None
        """The Contact of the binding the registrar last accepted."""
        self._stale: SipUri | None = None
        """A Contact to remove (``expires=0``) with the next REGISTER."""

    @property
    def status(self) -> RegistrationStatus:
        return self._status

    def next_deadline(self) -> float | None:
        deadlines = [t for t in (self._timer, self._status.expires_at) if t is not None]
        return min(deadlines, default=None)

    # ---------------------------------------------------------------- commands

    def start(self, now: float) -> None:
        self._stopping = False
        self._auth_rounds = 0
        self._set(RS.REGISTERING, now)
        self._send(now, self._expires)

    def stop(self, now: float) -> None:
        """Remove our binding (Expires: 0) if we have one; otherwise just stop."""
        self._stopping = True
        self._timer = None
        if self._status.state in (RS.REGISTERED, RS.REGISTERING) and self._pending is None:
            self._set(RS.UNREGISTERING, now)
            self._auth_rounds = 0
            self._send(now, 0)
        elif self._pending is None:
            self._set(RS.UNREGISTERED, now)

    def transport_failed(self, now: float) -> None:
        """The connection to the registrar broke (TCP/TLS): register again at once."""
        if self._status.state is RS.REGISTERED and not self._stopping and self._pending is None:
            self.start(now)

    def contact_changed(self, now: float) -> None:
        """Our Contact moved (a NAT's public address learnt from the Via): register the
        new one now, unless a REGISTER is on its way (its answer checks again)."""
        if self._pending is None and not self._stopping and self._status.state is RS.REGISTERED:
            self._refresh_contact(now)

    def _refresh_contact(self, now: float) -> bool:
        current = our_contact(self._agent.config).uri
        if self._bound is None or self._bound.matches(current):
            return False
        self._stale = self._bound
        self._auth_rounds = 0
        self._send(now, self._expires)
        return True

    def handle_timer(self, now: float) -> None:
        expires_at = self._status.expires_at
        if expires_at is not None and now >= expires_at and self._status.state is RS.REGISTERED:
            self._set(RS.FAILING, now, reason="binding expired before it was refreshed")
        if self._timer is not None and now >= self._timer:
            self._timer = None
            if self._pending is None and not self._stopping:
                self._auth_rounds = 0
                if self._status.state is not RS.REGISTERED:
                    self._set(RS.REGISTERING, now)
                self._send(now, self._expires)

    # ---------------------------------------------------------------- TxUser

    def on_response(self, request: Request, response: Response, now: float) -> None:
        if request is not self._pending or response.status < 200:
            return
        self._pending = None
        status = response.status
        expires = self._requested(request)
        try:
            if status in (401, 407):
                self._challenged(request, response, now, expires)
            elif status == 423:
                self._too_brief(response, now)
            elif 200 <= status < 300:
                self._accepted(request, response, now, expires)
            else:
                self._failed(now, status, response.reason, response.retry_after)
        except RemoteProtocolError as exc:
            self._failed(now, status, f"unusable {status} response: {exc}", None)

    def retry_elsewhere(self, request: Request, retry: Request) -> bool:
        """RFC 3263 §4.3 failover: the REGISTER goes to the registrar's next address."""
        if request is not self._pending:
            return False
        self._pending = retry
        return True

    def on_failure(self, request: Request, failure: TxFailure, now: float) -> None:
        if request is not self._pending:
            return
        self._pending = None
        self._failed(now, failure.status, f"no answer from the registrar ({failure.value})", None)

    # ---------------------------------------------------------------- internals

    def _challenged(self, request: Request, response: Response, now: float, expires: int) -> None:
        config = self._agent.config
        stale = digest.is_stale(response)
        if (
            config.password is None
            or self._auth_rounds >= MAX_AUTH_ROUNDS
            or (self._auth_rounds and not stale)
        ):
            reason = (
                "registrar asks for a password but none is configured"
                if config.password is None
                else "credentials refused (check username, auth_username and password)"
            )
            self._failed(now, response.status, reason, None, fatal=True)
            return
        self._auth_rounds += 1
        credentials = digest.DigestCredentials(config.auth_username or config.user, config.password)
        auth = digest.authorization_headers(
            response, credentials, method="REGISTER", uri=request.uri,
            rng=self._agent.rng, counter=self._counter,
        )  # fmt: skip
        self._send(now, expires, auth)

    def _too_brief(self, response: Response, now: float) -> None:
        minimum = response.min_expires
        if minimum is None or minimum <= self._expires:
            self._failed(now, 423, "423 without a usable Min-Expires", None, fatal=True)
            return
        self._expires = minimum
        self._send(now, self._expires)

    def _accepted(self, request: Request, response: Response, now: float, requested: int) -> None:
        self._failures = 0
        if requested == 0:
            self._bound = None
            self._set(RS.UNREGISTERED, now, response.status, response.reason)
            return
        self._stale = None
        bound = request.contacts[0].uri if request.contacts else None
        self._bound = bound if isinstance(bound, SipUri) else None
        granted = self._granted(response, requested)
        if granted <= 0:
            self._failed(now, response.status, "registrar granted no expiry", None)
            return
        self._set(
            RS.REGISTERED, now, response.status, response.reason,
            expires_at=now + granted,
        )  # fmt: skip
        self._timer = now + refresh_delay(granted)
        if not self._stopping:
            self._refresh_contact(now)  # the Contact moved while this REGISTER was out

    def _granted(self, response: Response, requested: int) -> int:
        # §10.2.4: our Contact's expires parameter in the 200 wins over the Expires header.
        ours = our_contact(self._agent.config).uri
        for contact in response.contacts:
            if contact.uri.matches(ours) and contact.expires is not None:
                return contact.expires
        header = response.expires
        return header if header is not None else requested

    def _failed(
        self, now: float, status: int, reason: str, retry_after: int | None, *,
        fatal: bool = False,
    ) -> None:  # fmt: skip
        if self._stopping:
            self._set(RS.UNREGISTERED, now, status, reason)
            return
        self._failures += 1
        fatal = fatal or status in FATAL_STATUSES
        delay = min(BACKOFF_BASE_SECONDS * 2 ** (self._failures - 1), BACKOFF_CAP_SECONDS)
        delay *= self._agent.rng.uniform(0.8, 1.2)
        if retry_after is not None:
            delay = max(delay, float(retry_after))
        self._timer = now + delay
        self._set(RS.FAILING, now, status, reason, retry_at=self._timer, fatal=fatal)

    def _requested(self, request: Request) -> int:
        contacts = request.contacts
        if contacts and contacts[0].expires is not None:
            return contacts[0].expires
        return request.expires if request.expires is not None else self._expires

    def _send(self, now: float, expires: int, auth: tuple[HeaderInput, ...] = ()) -> None:
        config = self._agent.config
        self._cseq += 1
        route: tuple[NameAddr, ...] = ()
        if config.outbound_proxy is not None:
            proxy = config.outbound_proxy.with_param("lr")
            route = (NameAddr(uri=proxy),)
        # §10.2: the Request-URI names the registrar's domain; To and From carry our AoR.
        envelope = Envelope(
            self._from, NameAddr(uri=our_aor(config)), self._call_id, self._cseq,
            new_branch(self._agent.rng), route,
        )  # fmt: skip
        extra: list[HeaderInput] = []
        if self._stale is not None and expires > 0:
            extra.append(("Contact", NameAddr(uri=self._stale, params=(("expires", "0"),))))
        request = build_request(
            config, "REGISTER", self._registrar, envelope,
            contact=our_contact(config, expires),
            extra=(*extra, ("Expires", str(expires)), *auth),
        )  # fmt: skip
        self._pending = request
        hop = config.outbound_proxy or self._registrar
        self._agent.send_request(request, hop_of(hop, config.transport), self, now)

    def _set(
        self, state: RegistrationState, now: float, status: int | None = None,
        reason: str = "", *, expires_at: float | None = None, retry_at: float | None = None,
        fatal: bool = False,
    ) -> None:  # fmt: skip
        previous = self._status
        since = previous.since if previous.state is state else now
        self._status = RegistrationStatus(
            state, since, status if status is not None else previous.last_status,
            reason or previous.last_reason if status is None else reason,
            expires_at, retry_at, fatal,
        )  # fmt: skip
        if self._status != previous:
            self._agent.emit(RegistrationChanged(self._status))
