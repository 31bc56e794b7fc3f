"""Admission of requests from peers: who may send what, how often, and how many at once.

Without TLS, Call-ID and tags are visible to anyone who can see the traffic, so they
prove nothing about the sender (docs/sip.md, "Admission"):

* A request inside one of our dialogs is accepted only from the dialog's peers: the hosts
  of its route set (RFC 3261 §12.1.2), of its remote target and of the first hop we sent
  the INVITE to, or a configured trusted PBX host.
* Any other request goes through the trusted-host check and a token bucket, one for the
  peers and one for strangers.
* Server transactions are bounded per source: a stranger holds at most
  ``max_server_transactions_per_source`` and all strangers together half the table, so a
  flood can never take the slot the PBX's BYE needs.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from voipalert.sip.agent_core import AgentCore
from voipalert.sip.call import Call
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.events import CallId
from voipalert.sip.locate import hop_of, is_ip
from voipalert.sip.routing import ClientTransactions
from voipalert.sip.uri import Uri


@dataclass(slots=True)
class _Bucket:
    """Token bucket for out-of-dialog requests (scanners flood the SIP port)."""

    rate: float
    tokens: float
    at: float = 0.0
    burst: float = field(default=0.0)

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Admission:
    """Decides, before any state is kept, whether a peer's request is let in."""

    def __init__(self, core: AgentCore, clients: ClientTransactions) -> None:
        self._core = core
        self._clients = clients
        self._server_by_host: Counter[str] = Counter()
        self._hosts_cache: dict[CallId, tuple[object, int, frozenset[str]]] = {}
        rate = core.config.unsolicited_per_second
        burst = max(1.0, 5 * rate)
        self._bucket = _Bucket(rate, burst, burst=burst)
        self._peer_bucket = _Bucket(rate, burst, burst=burst)

    def admit(self, host: str, now: float) -> bool:
        """Out-of-dialog requests (and tags matching no dialog): trusted hosts only, if
        configured; then a token bucket, the peers' apart from the strangers'."""
        trusted = self._core.config.trusted_hosts
        if trusted is not None and host not in trusted:
            self._core.stats["untrusted"] += 1
            return False
        bucket = self._peer_bucket if host in self.peer_hosts() else self._bucket
        if not bucket.take(now):
            self._core.stats["rate_limited"] += 1
            return False
        return True

    def room_for(self, host: str, *, in_dialog: bool, open_transactions: int) -> bool:
        """Server transaction slots: the PBX, our dialogs' peers and requests admitted
        into a dialog may use the whole table; one stranger a few, all strangers together
        half (so the other half is always there for them)."""
        config = self._core.config
        if open_transactions >= config.max_server_transactions:
            return False
        if in_dialog:
            return True
        peers = self.peer_hosts()
        if host in peers:
            return True
        if self._server_by_host[host] >= config.max_server_transactions_per_source:
            return False
        strangers = sum(n for h, n in self._server_by_host.items() if h not in peers)
        return strangers < config.max_server_transactions // 2

    def opened(self, host: str) -> None:
        """A server transaction from ``host`` was created."""
        self._server_by_host[host] += 1

    def closed(self, host: str) -> None:
        """A server transaction from ``host`` was forgotten."""
        self._server_by_host[host] -= 1
        if self._server_by_host[host] <= 0:
            del self._server_by_host[host]

    def forget_call(self, call_id: CallId) -> None:
        self._hosts_cache.pop(call_id, None)

    def peer_hosts(self) -> frozenset[str]:
        """The trusted hosts, the registrar and outbound proxy, the peers of every live
        dialog: the hosts whose requests the table always has room for."""
        config = self._core.config
        peers = set(config.trusted_hosts or ())
        for uri in (config.registrar, config.outbound_proxy):
            if uri is not None:
                peers |= self._hosts_of(uri)
        for call in self._core.calls.values():
            if not call.ended:
                peers |= self._dialog_hosts(call)
        return frozenset(peers)

    def from_dialog_peer(self, call: Call, host: str) -> bool:
        """Whether ``host`` may send requests inside ``call``'s dialog."""
        trusted = self._core.config.trusted_hosts
        if trusted is not None and host in trusted:
            return True
        peers = self._dialog_hosts(call)
        if host in peers:
            return True
        if trusted is None and not any(is_ip(peer) for peer in peers):
            # Every peer is a DNS name (the core resolves nothing) and no trusted host is
            # configured: nothing to compare with. Accepted, and counted so it shows.
            self._core.stats["in_dialog_unverified"] += 1
            return True
        return False

    def _dialog_hosts(self, call: Call) -> frozenset[str]:
        """Who may send requests inside ``call``'s dialog: the first hop of the INVITE,
        the route set and the remote target (RFC 3261 §12.1.2, §12.2.1.1)."""
        dialog = call.dialog
        version = self._clients.routes_version
        cached = self._hosts_cache.get(call.call_id)
        if cached is not None and cached[0] is dialog and cached[1] == version:
            return cached[2]
        hosts = self._peers_of(call)
        self._hosts_cache[call.call_id] = (dialog, version, hosts)
        return hosts

    def _peers_of(self, call: Call) -> frozenset[str]:
        uris: list[Uri] = [self._core.config.outbound_proxy or call.target]
        if call.dialog is not None:
            uris += [hop.uri for hop in call.dialog.route_set]
            uris.append(call.dialog.remote_target)
        hosts: set[str] = set()
        for uri in uris:
            hosts |= self._hosts_of(uri)
        return frozenset(hosts)

    def _hosts_of(self, uri: Uri) -> frozenset[str]:
        """The host of ``uri`` and, for a name, the addresses DNS gave for it."""
        try:
            hop = hop_of(uri, self._core.config.transport)
        except RemoteProtocolError:
            return frozenset()  # a tel: or otherwise unroutable URI names no host
        hosts = {canonical(hop.host)}
        if not hop.numeric:
            for known, route in self._clients.routes.items():
                if known.host == hop.host:
                    hosts.update(canonical(ip) for ip, _ in route.targets)
        return frozenset(hosts)


def canonical(host: str) -> str:
    """An IP literal in one spelling (``::ffff:...`` and ``[...]`` forms compared as one)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)
