"""Typed values of the headers the user agent acts on (RFC 3261 §20, RFC 3326, RFC 3581).

Public API (all frozen; ``parse`` raises ``RemoteProtocolError``, ``format`` raises
``LocalProtocolError``):

* ``Via(host=..., port=None, transport="UDP", params=(), protocol="SIP/2.0")`` with
  ``branch``, ``received``, ``rport`` (the number a server filled in), ``has_rport``
  (the bare ``;rport`` flag or a value), ``maddr``, ``sent_by``, ``has_rfc3261_branch``,
  ``get_param``/``has_param``/``with_param``/``without_param``.
* ``CSeq(seq, method)`` — ``seq`` below 2**31 (RFC 3261 §8.1.1.5).
* ``Reason(protocol, cause=None, text=None, params=())`` — RFC 3326 (``Q.850;cause=16``).
* ``parse_retry_after(text) -> int`` — the delta-seconds of a Retry-After value.
* ``BRANCH_MAGIC_COOKIE`` = ``"z9hG4bK"``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from voipalert.sip.errors import LocalProtocolError, RemoteProtocolError
from voipalert.sip.grammar import (
    Params,
    Scanner,
    check_token,
    find_param,
    format_params,
    get_param,
    parse_delta_seconds,
    quote,
    with_param,
    without_param,
)
from voipalert.sip.uri import HOSTNAME_CHARS, MAX_PORT, parse_host, parse_port

BRANCH_MAGIC_COOKIE: Final = "z9hG4bK"
MAX_CSEQ: Final = 2**31 - 1
_HOST_CHARS: Final = HOSTNAME_CHARS | frozenset("[]:")


@dataclass(frozen=True, slots=True, kw_only=True)
class Via:
    """One via-parm: ``SIP/2.0/UDP host:port;branch=z9hG4bK...;rport``."""

    host: str
    port: int | None = None
    transport: str = "UDP"
    params: Params = ()
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        scanner = Scanner(text, "Via")
        scanner.skip_ws()
        parts = [scanner.token("protocol name")]
        for what in ("protocol version", "transport"):
            scanner.skip_ws()
            scanner.expect("/")
            scanner.skip_ws()
            parts.append(scanner.token(what))
        before = scanner.pos
        scanner.skip_ws()
        if scanner.pos == before:
            raise scanner.error("expected whitespace before sent-by")
        host, port = _sent_by(scanner)
        params = scanner.params()
        scanner.skip_ws()
        if not scanner.at_end():
            raise scanner.error("unexpected text")
        protocol = f"{parts[0].upper()}/{parts[1]}"
        return cls(
            host=host, port=port, transport=parts[2].upper(), params=params, protocol=protocol
        )

    def format(self) -> str:
        name, _, version = self.protocol.partition("/")
        check_token(name, "Via protocol name")
        check_token(version, "Via protocol version")
        check_token(self.transport, "Via transport")
        try:
            parse_host(self.host, "Via host")
        except RemoteProtocolError as exc:
            raise LocalProtocolError(str(exc)) from None
        if self.port is not None and not 0 < self.port <= MAX_PORT:
            raise LocalProtocolError(f"Via port {self.port} out of range")
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params, 'Via')}"

    def __str__(self) -> str:
        return self.format()

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def branch(self) -> str | None:
        return get_param(self.params, "branch")

    @property
    def has_rfc3261_branch(self) -> bool:
        """The branch carries the magic cookie *and* an identifier (RFC 4475 §3.2.1)."""
        branch = self.branch
        return (
            branch is not None
            and len(branch) > len(BRANCH_MAGIC_COOKIE)
            and (branch.startswith(BRANCH_MAGIC_COOKIE))
        )

    @property
    def received(self) -> str | None:
        return get_param(self.params, "received")

    @property
    def maddr(self) -> str | None:
        return get_param(self.params, "maddr")

    @property
    def has_rport(self) -> bool:
        return find_param(self.params, "rport") is not None

    @property
    def rport(self) -> int | None:
        """The port a server wrote into ``rport=`` (RFC 3581 §4); None for the bare flag."""
        value = get_param(self.params, "rport")
        return None if value is None else parse_port(value, "Via rport")

    def has_param(self, name: str) -> bool:
        return find_param(self.params, name) is not None

    def get_param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> Via:
        return replace(self, params=with_param(self.params, name, value))

    def without_param(self, name: str) -> Via:
        return replace(self, params=without_param(self.params, name))


def _sent_by(scanner: Scanner) -> tuple[str, int | None]:
    if scanner.peek() == "[":
        end = scanner.text.find("]", scanner.pos)
        if end < 0:
            raise scanner.error("unterminated IPv6 reference")
        host = scanner.text[scanner.pos : end + 1]
        scanner.pos = end + 1
    else:
        host = scanner.take_while(HOSTNAME_CHARS)
    parse_host(host, "Via sent-by")
    scanner.skip_ws()
    port = None
    if scanner.peek() == ":":
        scanner.pos += 1
        scanner.skip_ws()
        port = parse_port(scanner.take_while(frozenset("0123456789")), "Via sent-by")
    return host, port


@dataclass(frozen=True, slots=True)
class CSeq:
    """``CSeq: 4711 INVITE``."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        scanner = Scanner(text, "CSeq")
        scanner.skip_ws()
        digits = scanner.take_while(frozenset("0123456789"))
        if not digits:
            raise scanner.error("expected a sequence number")
        if len(digits.lstrip("0")) > 10 or int(digits) > MAX_CSEQ:
            raise RemoteProtocolError(f"CSeq: {digits} is not below 2**31 (RFC 3261 §8.1.1.5)")
        before = scanner.pos
        scanner.skip_ws()
        if scanner.pos == before:
            raise scanner.error("expected whitespace after the sequence number")
        method = scanner.token("method")
        scanner.skip_ws()
        if not scanner.at_end():
            raise scanner.error("unexpected text after the method")
        return cls(int(digits), method)

    def format(self) -> str:
        if not 0 <= self.seq <= MAX_CSEQ:
            raise LocalProtocolError(f"CSeq {self.seq} out of range")
        check_token(self.method, "CSeq method")
        return f"{self.seq} {self.method}"

    def __str__(self) -> str:
        return self.format()


@dataclass(frozen=True, slots=True)
class Reason:
    """``Reason: Q.850;cause=16;text="Normal call clearing"`` (RFC 3326)."""

    protocol: str
    cause: int | None = None
    text: str | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str) -> Reason:
        scanner = Scanner(text, "Reason")
        scanner.skip_ws()
        protocol = scanner.token("protocol")
        params = scanner.params()
        scanner.skip_ws()
        if not scanner.at_end():
            raise scanner.error("unexpected text")
        cause_text = get_param(params, "cause")
        cause = None
        if cause_text is not None:
            if not cause_text.isascii() or not cause_text.isdigit() or len(cause_text) > 9:
                raise RemoteProtocolError(f"Reason: bad cause {cause_text!r}")
            cause = int(cause_text)
        rest = tuple(p for p in params if p[0].lower() not in ("cause", "text"))
        return cls(protocol, cause, get_param(params, "text"), rest)

    def format(self) -> str:
        check_token(self.protocol, "Reason protocol")
        out = self.protocol
        if self.cause is not None:
            if self.cause < 0:
                raise LocalProtocolError(f"Reason cause {self.cause} is negative")
            out += f";cause={self.cause}"
        if self.text is not None:
            out += f";text={quote(self.text, 'Reason text')}"
        return out + format_params(self.params, "Reason")

    def __str__(self) -> str:
        return self.format()


def parse_retry_after(text: str) -> int:
    """``Retry-After: 120 (in a meeting);duration=3600`` → 120 (RFC 3261 §20.33)."""
    seconds = text.split(";", 1)[0].split("(", 1)[0]
    return parse_delta_seconds(seconds, "Retry-After")
