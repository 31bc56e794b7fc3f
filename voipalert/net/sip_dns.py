"""DNS for SIP (RFC 3263), asynchronously: dnspython's asyncio resolver asks the questions
``voipalert.sip.locate.Resolution`` names and feeds the records back; the choice of
addresses and their order is made there, in pure code.

* Nothing here blocks the event loop: queries go out on the loop's own sockets
  (``dns.asyncresolver``); reading /etc/resolv.conf and /etc/hosts, once, happens in a
  worker thread before the first query.
* Name servers: ``DnsConfig.servers`` (the ``[sip] dns_servers`` setting), else the
  system's /etc/resolv.conf. With the system resolver, names in /etc/hosts are answered
  from the file (dnspython does not read it), and NAPTR/SRV are not asked for them: a
  registrar named in /etc/hosts keeps working on a machine without a DNS server.
* Answers are cached by their TTL in a bounded LRU cache (``cache_size`` entries), and
  a failed query (time-out, SERVFAIL, no server) counts as an empty answer: the lookup
  goes on to the next step of RFC 3263 and fails only when nothing is left.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.NAPTR
import dns.rdtypes.IN.SRV
import dns.resolver

from voipalert.sip.locate import (
    Address,
    Hop,
    Naptr,
    Query,
    Record,
    RecordType,
    Resolution,
    Srv,
    parse_hosts,
)

log = logging.getLogger("voipalert.sip.dns")
HOSTS_FILE: Final = Path("/etc/hosts")
HOSTS_TTL: Final = 300.0


@dataclass(frozen=True, slots=True)
class DnsConfig:
    servers: tuple[Address, ...] = ()
    """Name servers as (IP, port); empty: the system's /etc/resolv.conf."""
    timeout: float = 2.0
    """Seconds to wait for one server's answer before asking the next."""
    lifetime: float = 4.0
    """Seconds one question may take in all (servers and retries)."""
    cache_size: int = 512
    max_ttl: float = 3600.0
    """Upper bound on how long a hop's address list is kept, whatever the TTLs say."""


class SipResolver:
    """Looks up hops for one endpoint; create anywhere, use inside the running loop."""

    def __init__(self, config: DnsConfig | None = None, *, ipv6: bool = False) -> None:
        self.config = config or DnsConfig()
        self.ipv6 = ipv6
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._hosts: dict[str, tuple[str, ...]] = {}
        self._ready = asyncio.Lock()

    async def resolve(self, hop: Hop, rng: random.Random) -> tuple[list[Address], float]:
        """The addresses for ``hop`` in RFC 3263 order, and how long they may be kept."""
        resolver = await self._get_resolver()
        resolution = Resolution(hop, rng, ipv6=self.ipv6, max_ttl=self.config.max_ttl)
        while (query := resolution.next_query()) is not None:
            records, ttl = await self._ask(resolver, hop, query)
            resolution.answer(records, ttl)
        if resolution.targets:
            log.debug("DNS: %s -> %s (for %.0f s)", hop, resolution.targets, resolution.ttl)
        else:
            log.warning("DNS: no address for SIP hop %s (RFC 3263 NAPTR/SRV/A)", hop)
        return resolution.targets, resolution.ttl

    async def _get_resolver(self) -> dns.asyncresolver.Resolver:
        async with self._ready:
            if self._resolver is None:
                # Files are read in a thread: never a blocking read on the loop.
                built, hosts = await asyncio.to_thread(self._build)
                self._resolver, self._hosts = built, hosts
                return built
            return self._resolver

    def _build(self) -> tuple[dns.asyncresolver.Resolver, dict[str, tuple[str, ...]]]:
        config = self.config
        hosts: dict[str, tuple[str, ...]] = {}
        if config.servers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(ip, port) for ip, port in config.servers
            ]
        else:
            try:
                resolver = dns.asyncresolver.Resolver()
            except dns.exception.DNSException as exc:  # no /etc/resolv.conf
                log.warning("DNS: system resolver configuration unusable (%s)", exc)
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = ["127.0.0.1"]
            try:
                hosts = parse_hosts(HOSTS_FILE.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                hosts = {}
        resolver.timeout = config.timeout
        resolver.lifetime = config.lifetime
        resolver.cache = dns.resolver.LRUCache(config.cache_size)
        return resolver, hosts

    async def _ask(
        self, resolver: dns.asyncresolver.Resolver, hop: Hop, query: Query
    ) -> tuple[list[Record], float | None]:
        if hop.host in self._hosts:
            if query.rdtype in (RecordType.A, RecordType.AAAA) and query.name in self._hosts:
                family = 6 if query.rdtype is RecordType.AAAA else 4
                found = [a for a in self._hosts[query.name] if _version(a) == family]
                return list(found), HOSTS_TTL
            if query.rdtype in (RecordType.NAPTR, RecordType.SRV):
                return [], None  # a name from /etc/hosts: addresses only
        rdtype = dns.rdatatype.from_text(query.rdtype.value)
        try:
            answer = await resolver.resolve(
                query.name, rdtype, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN:
            return [], None
        except dns.exception.DNSException as exc:
            log.warning("DNS: %s %s failed: %s", query.rdtype.value, query.name, exc)
            return [], None
        if answer.rrset is None:
            return [], None
        return [_record(rdata) for rdata in answer.rrset], float(answer.rrset.ttl)


def _version(address: str) -> int:
    return ipaddress.ip_address(address).version


def _name(name: dns.name.Name) -> str:
    return "." if name == dns.name.root else name.to_text(omit_final_dot=True)


def _record(rdata: object) -> Record:
    match rdata:
        case dns.rdtypes.IN.NAPTR.NAPTR():
            return Naptr(
                rdata.order, rdata.preference, rdata.flags.decode("ascii", "replace"),
                rdata.service.decode("ascii", "replace"), _name(rdata.replacement),
            )  # fmt: skip
        case dns.rdtypes.IN.SRV.SRV():
            return Srv(rdata.priority, rdata.weight, rdata.port, _name(rdata.target))
        case dns.rdtypes.IN.A.A() | dns.rdtypes.IN.AAAA.AAAA():
            return str(rdata.address)
    raise TypeError(f"unexpected DNS record {rdata!r}")
