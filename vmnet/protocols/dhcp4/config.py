"""What the single-lease DHCPv4 responder hands out.

A `DhcpConfig` is validated when it is built: a bad value raises
`ConfigError(field, cause)` naming the field, so a config that exists can
always be encoded, and nothing fails at serve time (in KubeVirt an invalid
search domain panics virt-launcher; docs/kubevirt.md, DHCPv4). Sequences are
stored as tuples; any iterable is accepted. Option 121 entries are `Route`s;
a gateway of None means on-link and goes on the wire as 0.0.0.0 (RFC 3442
§3). Its cached form is `vmnet.store.codec`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from vmnet.core import checks
from vmnet.core.addr import MacAddress
from vmnet.core.errors import ConfigError
from vmnet.protocols.dhcp4 import options

DEFAULT_LEASE_TIME = 86313600  # 999 days, KubeVirt's lease (docs/kubevirt.md, Constants)
MAX_PRIVATE_OPTION = 1024


@dataclass(frozen=True, slots=True)
class Route:
    """One option-121 entry."""

    destination: IPv4Network
    gateway: IPv4Address | None

    def __post_init__(self) -> None:
        if not isinstance(self.destination, IPv4Network):
            raise ConfigError(
                "routes", f"destination must be an IPv4 network: {self.destination!r}"
            )
        if self.gateway is not None and not isinstance(self.gateway, IPv4Address):
            raise ConfigError("routes", f"gateway must be an IPv4 address: {self.gateway!r}")

    @property
    def is_default(self) -> bool:
        return self.destination.prefixlen == 0


@dataclass(frozen=True, slots=True)
class DhcpConfig:
    """The one lease a responder gives, and every option it sends."""

    client_mac: MacAddress | None
    address: IPv4Interface
    server_id: IPv4Address
    router: IPv4Address | None = None
    routes: tuple[Route, ...] = ()
    dns: tuple[IPv4Address, ...] = ()
    search: tuple[str, ...] = ()
    hostname: str | None = None
    domain_name: str | None = None
    mtu: int | None = None
    lease_time: int = DEFAULT_LEASE_TIME
    ntp: tuple[IPv4Address, ...] = ()
    tftp_server: str | None = None
    boot_file: str | None = None
    private_options: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        checks.check_fields(self, _CHECKS)

    @property
    def domain(self) -> str | None:
        """Option 15: `domain_name`, else the longest search entry."""
        return self.domain_name or options.longest_domain(self.search)


def _check_mac(name: str, value: Any) -> MacAddress | None:
    checks.typed(MacAddress, optional=True)(name, value)
    if value is not None and (value.is_multicast or value.is_zero):
        raise ConfigError(name, f"{value} is not a unicast MAC address")
    return value  # type: ignore[no-any-return]


def _check_unicast(name: str, value: Any, *, optional: bool = False) -> Any:
    checks.typed(IPv4Address, optional=optional)(name, value)
    ip = value.ip if isinstance(value, IPv4Interface) else value
    if ip is not None and (ip.is_unspecified or ip.is_multicast or int(ip) == 0xFFFFFFFF):
        raise ConfigError(name, f"{ip} is not a unicast address")
    return value


def _check_address(name: str, value: Any) -> IPv4Interface:
    checks.typed(IPv4Interface)(name, value)
    return _check_unicast(name, value)  # type: ignore[no-any-return]


def _check_search(name: str, value: Any) -> tuple[str, ...]:
    domains = checks.tuple_of(str)(name, value)
    options.domain_search(domains)
    return domains


def _check_text(name: str, value: Any) -> str | None:
    if value is not None:
        options.text(value, name)
    return value  # type: ignore[no-any-return]


def _check_private(name: str, value: Any) -> tuple[tuple[int, bytes], ...]:
    items = checks.tuple_of(tuple)(name, value)
    seen: set[int] = set()
    for item in items:
        if len(item) != 2 or not isinstance(item[0], int) or not isinstance(item[1], bytes):
            raise ConfigError(name, f"expected (code, bytes) pairs, got {item!r}")
        code, data = item
        if code not in options.PRIVATE_CODES or code in seen:
            raise ConfigError(name, f"code {code} is not a unique code in 224-254")
        if len(data) > MAX_PRIVATE_OPTION:
            raise ConfigError(name, f"option {code} is longer than {MAX_PRIVATE_OPTION} bytes")
        seen.add(code)
    return items


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "client_mac": _check_mac,
    "address": _check_address,
    "server_id": _check_unicast,
    "router": lambda n, v: _check_unicast(n, v, optional=True),
    "routes": checks.tuple_of(Route),
    "dns": checks.tuple_of(IPv4Address),
    "search": _check_search,
    "hostname": _check_text,
    "domain_name": _check_text,
    "mtu": checks.ranged(68, 65535, optional=True),
    "lease_time": checks.ranged(1, 0xFFFFFFFF),
    "ntp": checks.tuple_of(IPv4Address),
    "tftp_server": _check_text,
    "boot_file": _check_text,
    "private_options": _check_private,
}
