"""Read the pod's resolv.conf the way KubeVirt does (docs/kubevirt.md, resolv.conf).

Nameservers: lines starting with `nameserver` that have exactly two
fields and a parsable address; order kept; other lines are skipped (and
logged). With no nameserver of either family the list is `8.8.8.8`.

Search: every `search` line, all following fields lowercased, accumulated
in order. With none the list is `cluster.local`. `domain` and `options`
lines are ignored.

Subdomain: the longest search entry containing `.svc.` (first on ties)
gets `<subdomain>.` prepended, and that name is put first, unless the
entry already starts with `<subdomain>.`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from vmnet.core.errors import ConfigError

FALLBACK_NAMESERVER = IPv4Address("8.8.8.8")
FALLBACK_SEARCH = "cluster.local"

log = logging.getLogger("vmnet.protocols.dhcp4")


@dataclass(frozen=True)
class ResolvConf:
    """What DHCP options 6, 15 and 119 are built from."""

    nameservers: tuple[IPv4Address | IPv6Address, ...]
    search: tuple[str, ...]

    @property
    def ipv4_nameservers(self) -> tuple[IPv4Address, ...]:
        return tuple(a for a in self.nameservers if isinstance(a, IPv4Address))


def parse(text: str) -> ResolvConf:
    """Parse resolv.conf text."""
    servers: list[IPv4Address | IPv6Address] = []
    search: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if line.startswith("nameserver"):
            if len(fields) != 2:
                log.warning("resolv.conf: skipping %r", line)
                continue
            try:
                servers.append(ip_address(fields[1]))
            except ValueError:
                log.warning("resolv.conf: skipping nameserver %r", fields[1])
        elif line.startswith("search"):
            search.extend(f.lower() for f in fields[1:])
    return ResolvConf(
        nameservers=tuple(servers) or (FALLBACK_NAMESERVER,),
        search=tuple(search) or (FALLBACK_SEARCH,),
    )


def load(path: str = "/etc/resolv.conf") -> ResolvConf:
    """Read and parse `path`.

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse(f.read())
    except OSError as err:
        raise ConfigError(path, err.strerror or str(err)) from err


def with_subdomain(search: tuple[str, ...], subdomain: str | None) -> tuple[str, ...]:
    """Prepend `<subdomain>.<longest .svc. entry>`."""
    if not subdomain:
        return search
    longest = ""
    for domain in search:
        if ".svc." in domain and len(domain) > len(longest):
            longest = domain
    if not longest or longest.startswith(f"{subdomain}."):
        return search
    return (f"{subdomain}.{longest}", *search)
