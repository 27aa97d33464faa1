"""CNI network configurations and ADD results as plain data (no I/O).

Config builders return the JSON-ready dict a runtime would pass on stdin
(CNI spec 1.0 "Network configuration"); `Node.add_pod` fills in
cniVersion, name and the host-local dataDir.

Parsing follows the CNI spec's "Success" result (versions 0.3.x, 0.4.0
and 1.0.0 share it): `interfaces` (name, mac, sandbox), `ips` (address in
CIDR form, optional gateway, optional index into `interfaces`), `routes`
(dst, optional gw) and `dns`. Unknown keys are kept only in `raw`.

A result that does not have that shape raises ConfigError naming the key.

`raw` is the JSON as the plugin printed it; DEL sends it back as
`prevResult`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vmnet.core.addr import IPAddress, IPInterface, IPNetwork, MacAddress
from vmnet.core.errors import ConfigError
from vmnet.core.netns import netns_path

UPLINK = "uplink0"


def host_local(
    subnet: str, *, gateway: str | None = None, default_route: bool = True
) -> dict[str, Any]:
    """A host-local IPAM section; the node fills in its private dataDir."""
    ipam: dict[str, Any] = {"type": "host-local", "subnet": subnet}
    if gateway:
        ipam["gateway"] = gateway
    if default_route:
        ipam["routes"] = [{"dst": "0.0.0.0/0"}]
    return ipam


def static_ipam(address: str, gateway: str | None = None) -> dict[str, Any]:
    """A `static` IPAM section for a fixed address (and default route)."""
    entry: dict[str, Any] = {"address": address}
    if gateway:
        entry["gateway"] = gateway
    ipam: dict[str, Any] = {"type": "static", "addresses": [entry]}
    if gateway:
        ipam["routes"] = [{"dst": "0.0.0.0/0", "gw": gateway}]
    return ipam


def bridge_config(
    subnet: str = "10.22.0.0/24",
    *,
    bridge: str = "cbr0",
    ipam: dict[str, Any] | None = None,
    mtu: int | None = None,
) -> dict[str, Any]:
    """The `bridge` plugin as a kubenet-style node uses it (the gateway, .1 or
    the IPAM's `gateway`, on cbr0). The plugin adds the default route itself
    (`isDefaultGateway`) unless the IPAM section already routes 0.0.0.0/0 or
    ::/0: the plugin would then add it twice and fail with "file exists"."""
    ipam = ipam or host_local(subnet, default_route=False)
    routes = ipam.get("routes", [])
    ipam_default = any(r.get("dst") in ("0.0.0.0/0", "::/0") for r in routes)
    conf: dict[str, Any] = {
        "name": "vmt-bridge",
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "isDefaultGateway": not ipam_default,
        "ipMasq": False,
        "ipam": ipam,
    }
    if mtu:
        conf["mtu"] = mtu
    return conf


def ptp_config(
    subnet: str = "10.23.0.0/24", *, ipam: dict[str, Any] | None = None, mtu: int | None = None
) -> dict[str, Any]:
    """The `ptp` plugin: a veth per pod, routed by the node."""
    conf: dict[str, Any] = {
        "name": "vmt-ptp",
        "type": "ptp",
        "ipMasq": False,
        "ipam": ipam or host_local(subnet),
    }
    if mtu:
        conf["mtu"] = mtu
    return conf


def macvlan_config(
    subnet: str = "10.25.0.0/24",
    *,
    master: str = UPLINK,
    ipam: dict[str, Any] | None = None,
    mode: str = "bridge",
) -> dict[str, Any]:
    """The `macvlan` plugin on the node's uplink (a veth: no dummy module here)."""
    gateway = str(next(ipaddress.ip_network(subnet).hosts()))
    return {
        "name": "vmt-macvlan",
        "type": "macvlan",
        "master": master,
        "mode": mode,
        "ipam": ipam or host_local(subnet, gateway=gateway),
    }


CONFIGS: dict[str, Callable[[], dict[str, Any]]] = {
    "bridge": bridge_config,
    "ptp": ptp_config,
    "macvlan": macvlan_config,
    "static": lambda: bridge_config(ipam=static_ipam("10.22.0.50/24", "10.22.0.1")),
}


@dataclass(frozen=True, slots=True)
class CniInterface:
    name: str
    mac: MacAddress | None = None
    sandbox: str = ""


@dataclass(frozen=True, slots=True)
class CniIP:
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None


@dataclass(frozen=True, slots=True)
class CniRoute:
    dst: IPNetwork
    gw: IPAddress | None = None


@dataclass(frozen=True, slots=True)
class CniDns:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CniResult:
    """A parsed CNI result."""

    cni_version: str
    interfaces: tuple[CniInterface, ...]
    ips: tuple[CniIP, ...]
    routes: tuple[CniRoute, ...]
    dns: CniDns
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CniResult:
        """Parse a plugin's stdout JSON."""
        if not isinstance(data, Mapping):
            raise ConfigError("cni result", "not a JSON object")
        try:
            return cls(
                cni_version=str(data.get("cniVersion", "")),
                interfaces=tuple(_iface(i) for i in data.get("interfaces") or ()),
                ips=tuple(_ip(i) for i in data.get("ips") or ()),
                routes=tuple(_route(r) for r in data.get("routes") or ()),
                dns=_dns(data.get("dns") or {}),
                raw=data,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError("cni result", f"malformed: {err!r}") from err

    @classmethod
    def manual(cls, pod_ns: str, ifname: str, mac: MacAddress, ip: CniIP) -> CniResult:
        """The result a plugin would have printed for a hand-made pod NIC."""
        data = {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": ifname, "mac": str(mac), "sandbox": netns_path(pod_ns)}],
            "ips": [
                {"address": str(ip.address), "interface": 0}
                | ({"gateway": str(ip.gateway)} if ip.gateway else {})
            ],
            "routes": [{"dst": "0.0.0.0/0"} | ({"gw": str(ip.gateway)} if ip.gateway else {})],
            "dns": {},
        }
        return cls.from_json(data)

    def interface(self, ifname: str) -> CniInterface | None:
        """The interface named `ifname`, preferring the one inside the sandbox."""
        found = [i for i in self.interfaces if i.name == ifname]
        found.sort(key=lambda i: not i.sandbox)
        return found[0] if found else None

    def ips_of(self, ifname: str) -> tuple[CniIP, ...]:
        """IPs whose `interface` index names `ifname` (all IPs if none has an index)."""
        if all(ip.interface is None for ip in self.ips):
            return self.ips
        return tuple(
            ip
            for ip in self.ips
            if ip.interface is not None
            and ip.interface < len(self.interfaces)
            and self.interfaces[ip.interface].name == ifname
        )

    def summary(self) -> str:
        ips = ", ".join(f"{ip.address} gw {ip.gateway}" for ip in self.ips)
        return f"ips [{ips}] routes {[str(r.dst) for r in self.routes]}"


def _iface(item: Mapping[str, Any]) -> CniInterface:
    mac = item.get("mac")
    return CniInterface(
        str(item["name"]), MacAddress.parse(mac) if mac else None, str(item.get("sandbox", ""))
    )


def _ip(item: Mapping[str, Any]) -> CniIP:
    gateway = item.get("gateway")
    index = item.get("interface")
    return CniIP(
        ipaddress.ip_interface(item["address"]),
        ipaddress.ip_address(gateway) if gateway else None,
        int(index) if index is not None else None,
    )


def _route(item: Mapping[str, Any]) -> CniRoute:
    gw = item.get("gw")
    return CniRoute(
        ipaddress.ip_network(item["dst"], strict=False), ipaddress.ip_address(gw) if gw else None
    )


def _dns(item: Mapping[str, Any]) -> CniDns:
    return CniDns(
        tuple(item.get("nameservers") or ()),
        str(item.get("domain", "")),
        tuple(item.get("search") or ()),
        tuple(item.get("options") or ()),
    )
