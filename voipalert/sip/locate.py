"""Locating SIP servers (RFC 3263 §4) as pure functions over DNS records.

What a request is sent to is a ``Hop``: the host of the URI it goes to (the outbound
proxy, the first Route, the Request-URI; ``maddr`` wins), its port if the URI gave one,
and our transport. ``Resolution`` turns a hop into the ordered list of addresses to try,
one DNS question at a time, without doing any I/O: the asyncio side
(``voipalert.net.sip_dns``) asks the questions it names and feeds back the records.

The rules (RFC 3263 §4.1, §4.2; docs/sip.md "DNS"):

1. A numeric host is used as is, on the URI's port or the transport's default.
2. A name with an explicit port: A (or AAAA) of the name, on that port. No SRV.
3. Otherwise NAPTR of the name. Only records for *our* transport count (we run one
   transport per endpoint: UDP ``SIP+D2U``, TCP ``SIP+D2T``, TLS ``SIPS+D2T``), with
   flag ``s``, in (order, preference) order; each replacement is an SRV name, tried in
   turn until one has SRV records.
4. No usable NAPTR: SRV of ``_sip._udp``, ``_sip._tcp`` or ``_sips._tcp`` + the name.
5. SRV records are ordered by priority, then within one priority by weighted random
   selection (RFC 2782). Each target's A (or AAAA) records, in the order DNS gave them,
   become addresses on the SRV port. A single SRV record with target "." means the
   service is decidedly not offered there: no addresses.
6. Nothing from NAPTR or SRV: A (or AAAA) of the name, on the default port.

The list is tried in order: a transaction that times out, fails at the transport or gets
a 503 moves on to the next address (RFC 3263 §4.3; the agent does that). The list lives
as long as the shortest TTL of the records it came from.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from voipalert.sip.config import DEFAULT_PORTS
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.uri import SipUri, Uri

Address = tuple[str, int]

NAPTR_SERVICES: Final[dict[str, str]] = {"udp": "SIP+D2U", "tcp": "SIP+D2T", "tls": "SIPS+D2T"}
SRV_PREFIXES: Final[dict[str, str]] = {
    "udp": "_sip._udp.",
    "tcp": "_sip._tcp.",
    "tls": "_sips._tcp.",
}
MAX_TARGETS: Final = 16
"""Addresses kept per hop: a failover that has tried this many has tried enough."""
MAX_SRV_NAMES: Final = 4
"""NAPTR replacements followed per hop (a hostile zone could list hundreds)."""
MAX_ADDRESS_NAMES: Final = 8
"""SRV targets whose addresses are looked up per hop."""


@dataclass(frozen=True, slots=True)
class Hop:
    """Where a request goes before DNS: a host (name or IP literal, lower case, no
    brackets), the URI's port if it gave one, and the transport."""

    host: str
    port: int | None
    transport: str

    @property
    def numeric(self) -> bool:
        return is_ip(self.host)

    @property
    def default_port(self) -> int:
        return DEFAULT_PORTS[self.transport]

    def address(self) -> Address:
        """The address of a numeric hop (rule 1)."""
        return (self.host, self.port if self.port is not None else self.default_port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"{host}{port};transport={self.transport}"


def hop_of(uri: Uri, transport: str) -> Hop:
    """The hop for a request sent to ``uri`` over ``transport``."""
    if not isinstance(uri, SipUri) or uri.scheme == "tel":
        raise RemoteProtocolError(f"cannot route to {uri.format()}")
    maddr = uri.get_param("maddr")
    host = (maddr if maddr else uri.host).strip("[]").lower().rstrip(".")
    if not host:
        raise RemoteProtocolError(f"no host to route to in {uri.format()}")
    if is_ip(host):
        host = str(ipaddress.ip_address(host))
    return Hop(host, uri.port, transport)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str
    """A domain name; "." (or empty) when the record uses a regexp instead."""


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


class RecordType(Enum):
    NAPTR = "NAPTR"
    SRV = "SRV"
    A = "A"
    AAAA = "AAAA"


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    rdtype: RecordType


Record = Naptr | Srv | str
"""A NAPTR or SRV record, or an address (A/AAAA) as text."""


def naptr_srv_names(records: Sequence[Naptr], transport: str) -> list[str]:
    """The SRV names the NAPTR records offer for ``transport``, best first (rule 3)."""
    wanted = NAPTR_SERVICES[transport].lower()
    usable = [
        r
        for r in records
        if r.service.lower() == wanted and r.flags.lower() == "s" and r.replacement.strip(".")
    ]
    usable.sort(key=lambda r: (r.order, r.preference))
    names: list[str] = []
    for record in usable:
        name = _name(record.replacement)
        if name not in names:
            names.append(name)
    return names[:MAX_SRV_NAMES]


def srv_name(hop: Hop) -> str:
    return SRV_PREFIXES[hop.transport] + hop.host


def order_srv(records: Sequence[Srv], rng: random.Random) -> list[Srv]:
    """RFC 2782 order: ascending priority; inside one priority, repeatedly pick one of
    the records left with probability proportional to its weight (weight 0 records are
    put first so they get a small chance, as the RFC says; among zero weights alone,
    each is as likely). Records with target "." are dropped."""
    live = [r for r in records if r.target.strip(".")]
    ordered: list[Srv] = []
    for priority in sorted({r.priority for r in live}):
        group = [r for r in live if r.priority == priority]
        group.sort(key=lambda r: r.weight != 0)  # zero weights first, else stable
        while group:
            total = sum(r.weight for r in group)
            if total == 0:  # only zero weights left: none is preferred
                ordered.append(group.pop(rng.randrange(len(group))))
                continue
            pick = rng.randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    ordered.append(group.pop(index))
                    break
    return ordered


def parse_hosts(text: str) -> dict[str, tuple[str, ...]]:
    """/etc/hosts: name (lower case) → addresses in file order. dnspython does not read
    the file, and a registrar named there must still resolve."""
    table: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or not is_ip(fields[0]):
            continue
        for name in fields[1:]:
            addresses = table.setdefault(_name(name), [])
            if fields[0] not in addresses:
                addresses.append(fields[0])
    return {name: tuple(addresses) for name, addresses in table.items()}


def parse_name_server(text: str) -> Address:
    """``"192.0.2.53"``, ``"127.0.0.1:5353"``, ``"2001:db8::53"`` or ``"[2001:db8::53]:5353"``
    as (IP, port); ValueError for anything else (no names: a name server named by a name
    would need DNS to be found)."""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected [IPv6]:port")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, text)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address (with an optional :port)") from None
    return (str(ip), port)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{whole!r}: the port must be 1-65535")
    return int(text)


def _name(name: str) -> str:
    return name.lower().rstrip(".")


class _Phase(Enum):
    NAPTR = "naptr"
    SRV = "srv"
    ADDRESS = "address"
    DONE = "done"


@dataclass(slots=True)
class Resolution:
    """One hop's RFC 3263 lookup as a machine: ask ``next_query()``, answer it with
    ``answer(records, ttl)`` (no records for NXDOMAIN, no data or a failed query), until
    ``next_query()`` is None; then ``targets`` is the ordered list and ``ttl`` how long
    it may be kept."""

    hop: Hop
    rng: random.Random
    ipv6: bool = False
    max_ttl: float = 3600.0
    targets: list[Address] = field(default_factory=list)
    ttl: float = field(init=False)
    _phase: _Phase = field(init=False)
    _srv_names: list[str] = field(init=False, default_factory=list)
    _tried_standard_srv: bool = field(init=False, default=False)
    _names: list[Address] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.ttl = self.max_ttl
        hop = self.hop
        if hop.numeric:
            self.targets = [hop.address()]
            self._phase = _Phase.DONE
        elif hop.port is not None:
            self._names = [(hop.host, hop.port)]
            self._phase = _Phase.ADDRESS
        else:
            self._phase = _Phase.NAPTR

    @property
    def done(self) -> bool:
        return self._phase is _Phase.DONE

    def next_query(self) -> Query | None:
        match self._phase:
            case _Phase.NAPTR:
                return Query(self.hop.host, RecordType.NAPTR)
            case _Phase.SRV:
                return Query(self._srv_names[0], RecordType.SRV)
            case _Phase.ADDRESS:
                rdtype = RecordType.AAAA if self.ipv6 else RecordType.A
                return Query(self._names[0][0], rdtype)
        return None

    def answer(self, records: Sequence[Record], ttl: float | None = None) -> None:
        if records and ttl is not None:
            self.ttl = min(self.ttl, max(0.0, ttl))
        match self._phase:
            case _Phase.NAPTR:
                naptrs = [r for r in records if isinstance(r, Naptr)]
                self._srv_names = naptr_srv_names(naptrs, self.hop.transport)
                if not self._srv_names:
                    self._srv_names = [srv_name(self.hop)]
                    self._tried_standard_srv = True
                self._phase = _Phase.SRV
            case _Phase.SRV:
                self._on_srv([r for r in records if isinstance(r, Srv)])
            case _Phase.ADDRESS:
                self._on_addresses([r for r in records if isinstance(r, str)])
            case _Phase.DONE:
                raise ValueError("the resolution is finished")

    def _on_srv(self, records: list[Srv]) -> None:
        self._srv_names.pop(0)
        if len(records) == 1 and not records[0].target.strip("."):
            # RFC 2782: "." alone means the service is decidedly not available.
            self._phase = _Phase.DONE
            return
        ordered = order_srv(records, self.rng)
        if ordered:
            self._names = [(_name(r.target), r.port) for r in ordered][:MAX_ADDRESS_NAMES]
            self._phase = _Phase.ADDRESS
            return
        if not self._srv_names and not self._tried_standard_srv:
            # The NAPTR replacements led nowhere: the standard SRV name before A.
            self._srv_names = [srv_name(self.hop)]
            self._tried_standard_srv = True
        if not self._srv_names:
            self._fall_back()

    def _on_addresses(self, records: list[str]) -> None:
        _, port = self._names.pop(0)
        for address in records:
            if not is_ip(address):
                continue
            target = (str(ipaddress.ip_address(address)), port)
            if target not in self.targets and len(self.targets) < MAX_TARGETS:
                self.targets.append(target)
        if not self._names:
            self._phase = _Phase.DONE

    def _fall_back(self) -> None:
        self._names = [(self.hop.host, self.hop.default_port)]
        self._phase = _Phase.ADDRESS
