"""What the single-lease DHCPv4 responder hands out, and its JSON form.

Rules:
1. A `DhcpConfig` is validated when it is built: a bad value raises
   `ConfigError(field, cause)` naming the field, so a config that exists can
   always be encoded (no error at serve time, unlike KubeVirt (docs/kubevirt.md, DHCPv4), where an
   invalid search domain panics virt-launcher).
2. Sequences are stored as tuples; any iterable is accepted and converted.
3. `to_json` gives plain JSON types with stable keys; `from_json` accepts only
   those keys and raises `CacheError` naming the first bad key.
4. Option 121 entries are `Route`s; a gateway of None means on-link and is
   written as 0.0.0.0 (RFC 3442 §3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from vmnet.core import checks as jsonrec
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
        jsonrec.check_fields(self, _CHECKS)

    @property
    def domain(self) -> str | None:
        """Option 15: `domain_name`, else the longest search entry."""
        return self.domain_name or options.longest_domain(self.search)

    def to_json(self) -> dict[str, object]:
        """Plain JSON types; keys are the field names."""
        return {
            "client_mac": None if self.client_mac is None else str(self.client_mac),
            "address": str(self.address),
            "server_id": str(self.server_id),
            "router": None if self.router is None else str(self.router),
            "routes": [
                {"destination": str(r.destination), "gateway": _str_or_none(r.gateway)}
                for r in self.routes
            ],
            "dns": [str(a) for a in self.dns],
            "search": list(self.search),
            "hostname": self.hostname,
            "domain_name": self.domain_name,
            "mtu": self.mtu,
            "lease_time": self.lease_time,
            "ntp": [str(a) for a in self.ntp],
            "tftp_server": self.tftp_server,
            "boot_file": self.boot_file,
            "private_options": [[code, value.hex()] for code, value in self.private_options],
        }

    @classmethod
    def from_json(cls, obj: object) -> DhcpConfig:
        """Rebuild a config from `to_json` output.

        Raises:
            CacheError: `obj` is not such a dict; the message names the key.
        """
        return jsonrec.from_json(
            cls, obj, "dhcp config", ("client_mac", "address", "server_id"), _FROM_JSON
        )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _check_mac(name: str, value: Any) -> MacAddress | None:
    jsonrec.typed(MacAddress, optional=True)(name, value)
    if value is not None and (value.is_multicast or value.is_zero):
        raise ConfigError(name, f"{value} is not a unicast MAC address")
    return value  # type: ignore[no-any-return]


def _check_unicast(name: str, value: Any, *, optional: bool = False) -> Any:
    jsonrec.typed(IPv4Address, optional=optional)(name, value)
    ip = value.ip if isinstance(value, IPv4Interface) else value
    if ip is not None and (ip.is_unspecified or ip.is_multicast or int(ip) == 0xFFFFFFFF):
        raise ConfigError(name, f"{ip} is not a unicast address")
    return value


def _check_address(name: str, value: Any) -> IPv4Interface:
    jsonrec.typed(IPv4Interface)(name, value)
    return _check_unicast(name, value)  # type: ignore[no-any-return]


def _check_search(name: str, value: Any) -> tuple[str, ...]:
    domains = jsonrec.tuple_of(str)(name, value)
    options.domain_search(domains)
    return domains


def _check_text(name: str, value: Any) -> str | None:
    if value is not None:
        options.text(value, name)
    return value  # type: ignore[no-any-return]


def _check_private(name: str, value: Any) -> tuple[tuple[int, bytes], ...]:
    items = jsonrec.tuple_of(tuple)(name, value)
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
    "routes": jsonrec.tuple_of(Route),
    "dns": jsonrec.tuple_of(IPv4Address),
    "search": _check_search,
    "hostname": _check_text,
    "domain_name": _check_text,
    "mtu": jsonrec.ranged(68, 65535, optional=True),
    "lease_time": jsonrec.ranged(1, 0xFFFFFFFF),
    "ntp": jsonrec.tuple_of(IPv4Address),
    "tftp_server": _check_text,
    "boot_file": _check_text,
    "private_options": _check_private,
}


def _route_from_json(obj: Any) -> Route:
    if not isinstance(obj, dict) or set(obj) != {"destination", "gateway"}:
        raise ValueError(f"expected {{destination, gateway}}, got {obj!r}")
    gw = obj["gateway"]
    return Route(IPv4Network(obj["destination"]), None if gw is None else IPv4Address(gw))


def _private_from_json(item: Any) -> tuple[int, bytes]:
    if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], str):
        raise ValueError(f"expected [code, hex], got {item!r}")
    return item[0], bytes.fromhex(item[1])


def _str_ip(value: Any) -> IPv4Address:
    if not isinstance(value, str):
        raise ValueError(f"expected a dotted-quad string, got {value!r}")
    return IPv4Address(value)


def _opt(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else conv(value)


def _iface(value: Any) -> IPv4Interface:
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(f"expected 'a.b.c.d/len', got {value!r}")
    return IPv4Interface(value)


_FROM_JSON: dict[str, Callable[[Any], Any]] = {
    "client_mac": _opt(MacAddress.parse),
    "address": _iface,
    "server_id": _str_ip,
    "router": _opt(_str_ip),
    "routes": jsonrec.list_of(_route_from_json),
    "dns": jsonrec.list_of(_str_ip),
    "search": jsonrec.list_of(lambda v: v),
    "hostname": lambda v: v,
    "domain_name": lambda v: v,
    "mtu": lambda v: v,
    "lease_time": lambda v: v,
    "ntp": jsonrec.list_of(_str_ip),
    "tftp_server": lambda v: v,
    "boot_file": lambda v: v,
    "private_options": jsonrec.list_of(_private_from_json),
}
