"""Building requests: out-of-dialog requests, ACK and CANCEL, and dialogs (RFC 3261 §8.1, §12).

Identifiers come from ``voipalert.sip.ids`` with the caller's RNG: a new branch for every
transaction, the authenticated retry and the 2xx ACK included (RFC 3261 §8.1.1.7; a fixed
or counter-based branch is what broke pyVoIP on Fritz!Box, #167).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from voipalert.sip.address import NameAddr
from voipalert.sip.config import UAConfig
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.fields import CSeq, Via
from voipalert.sip.headers import HeaderInput
from voipalert.sip.locate import Hop, hop_of
from voipalert.sip.message import Request, Response
from voipalert.sip.uri import SipUri, Uri

Address = tuple[str, int]
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, MESSAGE, UPDATE"
MAX_FORWARDS = "70"
AUTH_HEADERS = ("authorization", "proxy-authorization")


def new_cseq(rng: random.Random) -> int:
    # Below 2**31 with room for a long dialog's increments (§8.1.1.5).
    return rng.randint(1, 2**20)


def our_via(config: UAConfig, branch: str) -> Via:
    # RFC 3581 §3: an empty rport asks the server to answer to the source port.
    return Via(
        host=config.local_host,
        port=config.local_port,
        transport=config.via_transport,
        params=(("branch", branch), ("rport", None)),
    )


def our_contact(config: UAConfig, expires: int | None = None) -> NameAddr:
    params: tuple[tuple[str, str | None], ...] = ()
    if config.transport != "udp":
        params = (("transport", config.transport),)
    # sip: with ;transport=tls rather than sips: (RFC 5630 prefers sips:, but a sips:
    # Contact obliges every hop to TLS, which PBXs with a plain-UDP phone side refuse).
    # Behind a NAT, the address the registrar saw (RFC 3581 received/rport, sip/nat.py).
    uri = SipUri(
        user=config.user,
        host=config.public_host or config.local_host,
        port=config.public_port or config.local_port,
        params=params,
    )
    header_params = () if expires is None else (("expires", str(expires)),)
    return NameAddr(uri=uri, params=header_params)


def our_aor(config: UAConfig) -> SipUri:
    return SipUri(user=config.user, host=config.domain)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The headers that place a request in its transaction and dialog."""

    from_: NameAddr
    to: NameAddr
    call_id: str
    cseq: int
    branch: str
    route: tuple[NameAddr, ...] = ()


def build_request(
    config: UAConfig,
    method: str,
    uri: Uri,
    envelope: Envelope,
    *,
    contact: NameAddr | None = None,
    extra: Sequence[HeaderInput] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    headers: list[HeaderInput] = [
        ("Via", our_via(config, envelope.branch)),
        ("Max-Forwards", MAX_FORWARDS),
    ]
    headers += [("Route", hop) for hop in envelope.route]
    headers += [
        ("From", envelope.from_),
        ("To", envelope.to),
        ("Call-ID", envelope.call_id),
        ("CSeq", CSeq(envelope.cseq, method)),
    ]
    if contact is not None:
        headers.append(("Contact", contact))
    headers += [("User-Agent", config.user_agent)]
    if method in ("INVITE", "OPTIONS", "REGISTER"):
        headers.append(("Allow", ALLOW))
    headers += list(extra)
    if body and content_type:
        headers.append(("Content-Type", content_type))
    return Request.build(method, uri, headers=headers, body=body)


def ack_for_failure(invite: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 300-699 (RFC 3261 §17.1.1.3): same
    Request-URI, Call-ID, From, top Via and Route; To with the response's tag; CSeq number
    of the INVITE with method ACK."""
    headers: list[HeaderInput] = [("Via", invite.via), ("Max-Forwards", MAX_FORWARDS)]
    headers += [("Route", value) for value in invite.headers.get_all("Route")]
    headers += [
        ("From", invite.headers.get("From") or ""),
        ("To", response.headers.get("To") or ""),
        ("Call-ID", invite.call_id),
        ("CSeq", CSeq(invite.cseq.seq, "ACK")),
    ]
    headers += [(n, v) for n, v in invite.headers if n.lower() in AUTH_HEADERS]
    return Request.build("ACK", invite.uri, headers=headers)


def cancel_for(invite: Request) -> Request:
    """CANCEL for a pending INVITE (§9.1): the INVITE's single top Via (same branch),
    Request-URI, Call-ID, From, To (no tag) and Route; CSeq number with method CANCEL."""
    headers: list[HeaderInput] = [("Via", invite.via), ("Max-Forwards", MAX_FORWARDS)]
    headers += [("Route", value) for value in invite.headers.get_all("Route")]
    headers += [
        ("From", invite.headers.get("From") or ""),
        ("To", invite.headers.get("To") or ""),
        ("Call-ID", invite.call_id),
        ("CSeq", CSeq(invite.cseq.seq, "CANCEL")),
    ]
    return Request.build("CANCEL", invite.uri, headers=headers)


@dataclass(slots=True)
class Dialog:
    """The state of one dialog we created with an INVITE (UAC side, RFC 3261 §12.1.2)."""

    call_id: str
    local: NameAddr
    """Our From, with our tag."""
    remote: NameAddr
    """Their To, with their tag."""
    remote_target: Uri
    route_set: tuple[NameAddr, ...]
    local_cseq: int
    remote_cseq: int | None = None

    @property
    def local_tag(self) -> str:
        return self.local.tag or ""

    @property
    def remote_tag(self) -> str:
        return self.remote.tag or ""

    @classmethod
    def from_2xx(cls, invite: Request, response: Response) -> Dialog:
        """§12.1.2: route set = Record-Route reversed; remote target = the 2xx's Contact;
        remote tag from its To (pyVoIP #272/#297: getting these wrong drops the call at
        32 s because the ACK never reaches the callee)."""
        contacts = response.contacts
        if not contacts:
            raise RemoteProtocolError("2xx to INVITE without a Contact")
        to = response.to
        if to.tag is None:
            raise RemoteProtocolError("2xx to INVITE without a To tag")
        return cls(
            call_id=invite.call_id,
            local=invite.from_,
            remote=to,
            remote_target=contacts[0].uri,
            route_set=tuple(reversed(response.record_route)),
            local_cseq=invite.cseq.seq,
        )

    @classmethod
    def early(cls, invite: Request, response: Response) -> Dialog:
        """The early dialog a reliable 1xx creates (RFC 3261 §12.1.2, RFC 3262 §4): like a
        2xx's, but a 1xx without Contact keeps the INVITE's Request-URI as remote target."""
        to = response.to
        if to.tag is None:
            raise RemoteProtocolError("provisional without a To tag creates no dialog")
        contacts = response.contacts
        return cls(
            call_id=invite.call_id,
            local=invite.from_,
            remote=to,
            remote_target=contacts[0].uri if contacts else invite.uri,
            route_set=tuple(reversed(response.record_route)),
            local_cseq=invite.cseq.seq,
        )

    def request(
        self,
        config: UAConfig,
        method: str,
        branch: str,
        *,
        cseq: int | None = None,
        extra: Sequence[HeaderInput] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """An in-dialog request (§12.2.1.1). ACK reuses the INVITE's CSeq number; any
        other method takes the next local CSeq."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        uri, route = self._routing()
        envelope = Envelope(self.local, self.remote, self.call_id, cseq, branch, route)
        return build_request(
            config, method, uri, envelope, extra=extra, body=body, content_type=content_type,
            contact=our_contact(config) if method in ("INVITE", "UPDATE") else None,
        )  # fmt: skip

    def _routing(self) -> tuple[Uri, tuple[NameAddr, ...]]:
        if not self.route_set:
            return self.remote_target, ()
        first = self.route_set[0]
        if isinstance(first.uri, SipUri) and first.uri.has_param("lr"):
            return self.remote_target, self.route_set  # loose routing
        # Strict router (RFC 2543): it becomes the Request-URI, the target the last Route.
        last = NameAddr(uri=self.remote_target)
        return first.uri, (*self.route_set[1:], last)

    def next_hop(self, transport: str) -> Hop:
        """Where in-dialog requests go: the first Route, else the remote target (a host
        name in it is resolved by RFC 3263 like any other hop)."""
        uri, route = self._routing()
        return hop_of(route[0].uri if route else uri, transport)

    def matches(self, call_id: str, local_tag: str | None, remote_tag: str | None) -> bool:
        return (
            call_id == self.call_id
            and local_tag == self.local_tag
            and remote_tag == self.remote_tag
        )

    def with_remote_target(self, target: Uri) -> Dialog:
        return replace(self, remote_target=target)
