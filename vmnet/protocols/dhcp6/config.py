"""What the DHCPv6 responder and the router advertiser hand out.

A `Dhcp6Config` is validated when it is built (`ConfigError(field, cause)`),
so a config that exists can always be encoded and served. `address` is the
one IA_NA address (RFC 8415 §21.6); its network is the prefix the RA
advertises on-link (RFC 4861 §4.6.2). `router_lifetime` is 0 (not a default
router) or 4..9000 s, and the RA MTU is at least IPv6's minimum of 1280
(RFC 4861 §6.2.1, RFC 8200 §5). Its cached form is `vmnet.store.codec`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface
from typing import Any

from vmnet.core import checks
from vmnet.core.addr import MacAddress
from vmnet.core.errors import ConfigError
from vmnet.protocols.dhcp6.options import domain_list

DEFAULT_LEASE_TIME = 86313600  # 999 days, KubeVirt's v6 lifetimes (docs/kubevirt.md, Constants)
DEFAULT_ROUTER_LIFETIME = 1800  # RFC 4861 §6.2.1: 3 * MaxRtrAdvInterval (600 s)
MIN_MTU = 1280  # RFC 8200 §5
MAX_ROUTER_LIFETIME = 9000  # RFC 4861 §6.2.1


@dataclass(frozen=True, slots=True)
class Dhcp6Config:
    """The one IPv6 lease, its options, and the router advertisement contents."""

    client_mac: MacAddress | None
    address: IPv6Interface
    server_mac: MacAddress
    dns: tuple[IPv6Address, ...] = ()
    search: tuple[str, ...] = ()
    lease_time: int = DEFAULT_LEASE_TIME
    mtu: int | None = None
    router_lifetime: int = DEFAULT_ROUTER_LIFETIME
    # The bridge binding: RAs come from the pod's router (its link-local
    # address and MAC) instead of the serving link's own address, and
    # everything is written to the VM's tap for `client_mac` alone.
    router: IPv6Address | None = None
    router_mac: MacAddress | None = None
    tap_only: bool = False

    def __post_init__(self) -> None:
        checks.check_fields(self, _CHECKS)
        if self.tap_only and self.client_mac is None:
            raise ConfigError("client_mac", "tap_only serves one VM: its MAC is needed")


def _mac(*, optional: bool) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        checks.typed(MacAddress, optional=optional)(name, value)
        if value is not None and (value.is_multicast or value.is_zero):
            raise ConfigError(name, f"{value} is not a unicast MAC address")
        return value

    return check


def _check_address(name: str, value: Any) -> IPv6Interface:
    checks.typed(IPv6Interface)(name, value)
    ip = value.ip
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local:
        raise ConfigError(name, f"{ip} is not a global or unique-local unicast address")
    return value  # type: ignore[no-any-return]


def _check_search(name: str, value: Any) -> tuple[str, ...]:
    domains = checks.tuple_of(str)(name, value)
    if len(domain_list(domains)) > 0xFFFF:
        raise ConfigError(name, "the encoded search list is longer than 65535 bytes")
    return domains


def _check_router_lifetime(name: str, value: Any) -> int:
    checks.ranged(0, MAX_ROUTER_LIFETIME)(name, value)
    if 0 < value < 4:
        raise ConfigError(name, f"must be 0 or at least 4 (RFC 4861 §6.2.1), not {value}")
    return value  # type: ignore[no-any-return]


def _check_router(name: str, value: Any) -> Any:
    checks.typed(IPv6Address, optional=True)(name, value)
    if value is not None and not value.is_link_local:
        raise ConfigError(name, f"{value} is not a link-local address (RFC 4861 §6.1.2)")
    return value


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "client_mac": _mac(optional=True),
    "address": _check_address,
    "server_mac": _mac(optional=False),
    "dns": checks.tuple_of(IPv6Address),
    "search": _check_search,
    "lease_time": checks.ranged(1, 0xFFFFFFFF),
    "mtu": checks.ranged(MIN_MTU, 0xFFFFFFFF, optional=True),
    "router_lifetime": _check_router_lifetime,
    "router": _check_router,
    "router_mac": _mac(optional=True),
    "tap_only": checks.boolean,
}
