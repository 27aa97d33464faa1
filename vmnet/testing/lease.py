"""What a guest DHCP client leased, read from the file the client itself wrote.

The parsers read only what the client wrote (busybox udhcpc through
`vmnet.testing.initramfs.UDHCPC_SCRIPT`, klibc ipconfig's
/run/net-IFACE.conf): they report the guest's view, not the server's.

An address of 0.0.0.0 or an empty value reads as absent.

Text that is not a lease raises DriverError("parse lease", <client>, ...).
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

from vmnet.core.errors import DriverError


@dataclass(frozen=True, slots=True)
class Lease:
    """What a guest DHCP client got, as the client itself reported it.

    The one lease type of vmnet.testing: namespace guests (udhcpc, dhclient,
    dhcpcd through `vmnet.testing.dhcpclients`) and serial-console guests
    (udhcpc, klibc ipconfig) report the same fields. `raw` holds every
    name=value pair the client wrote, sorted."""

    client: str
    address: ipaddress.IPv4Interface
    router: ipaddress.IPv4Address | None = None
    dns: tuple[ipaddress.IPv4Address, ...] = ()
    mtu: int | None = None
    hostname: str | None = None
    domain: str | None = None
    search: tuple[str, ...] = ()
    routes: tuple[tuple[ipaddress.IPv4Network, ipaddress.IPv4Address], ...] = ()
    lease_time: int | None = None
    server_id: ipaddress.IPv4Address | None = None
    raw: tuple[tuple[str, str], ...] = ()


def parse_udhcpc(text: str) -> Lease:
    """Parse the `name=value` lines UDHCPC_SCRIPT writes on `bound`."""
    kv = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        words = kv.get("staticroutes", "").split()
        return Lease(
            "udhcpc",
            ipaddress.IPv4Interface(f"{kv['ip']}/{kv['mask']}"),
            router=_ip4(kv.get("router", "").split()[:1]),
            dns=_ip4s(kv.get("dns", "")),
            mtu=_int(kv.get("mtu")),
            hostname=kv.get("hostname") or None,
            domain=kv.get("domain") or None,
            search=tuple(kv.get("search", "").split()),
            routes=tuple(
                (ipaddress.IPv4Network(n), ipaddress.IPv4Address(g))
                for n, g in zip(words[::2], words[1::2], strict=False)
            ),
            lease_time=_int(kv.get("lease")),
            server_id=_ip4([kv.get("serverid", "")]),
            raw=tuple(sorted(kv.items())),
        )
    except (KeyError, ValueError) as err:
        raise DriverError("parse lease", "udhcpc", f"{err}: {text[:200]!r}") from err


def parse_ipconfig(text: str) -> Lease:
    """Parse the /run/net-IFACE.conf klibc ipconfig writes (shell syntax).

    ipconfig applies option 26 (MTU) but does not write it, so `mtu` is None.
    With option 121 it writes IPV4ROUTE<n>SUBNET/GATEWAY and, as RFC 3442
    says, ignores option 3, so `router` is None and `routes` holds them.
    search domains lose the root dot ipconfig prints ("svc.test." -> "svc.test").
    """
    kv = {}
    for line in text.splitlines():
        for word in shlex.split(line):
            if "=" in word:
                key, value = word.split("=", 1)
                kv[key] = value
    try:
        return Lease(
            "ipconfig",
            ipaddress.IPv4Interface(f"{kv['IPV4ADDR']}/{kv['IPV4NETMASK']}"),
            router=_ip4([kv.get("IPV4GATEWAY", "")]),
            dns=_ip4s(" ".join(kv.get(f"IPV4DNS{i}", "") for i in range(2))),
            mtu=_int(kv.get("MTU")),
            hostname=kv.get("HOSTNAME") or None,
            domain=kv.get("DNSDOMAIN") or None,
            search=tuple(d.rstrip(".") for d in kv.get("DOMAINSEARCH", "").split()),
            lease_time=_int(kv.get("DHCPLEASETIME")),
            server_id=_ip4([kv.get("ROOTSERVER", "")]),
            routes=tuple(
                (
                    ipaddress.IPv4Network(kv[f"IPV4ROUTE{i}SUBNET"]),
                    ipaddress.IPv4Address(kv[f"IPV4ROUTE{i}GATEWAY"]),
                )
                for i in range(len(kv))
                if f"IPV4ROUTE{i}SUBNET" in kv
            ),
            raw=tuple(sorted(kv.items())),
        )
    except (KeyError, ValueError) as err:
        raise DriverError("parse lease", "ipconfig", f"{err}: {text[:200]!r}") from err


def _ip4(words: list[str]) -> ipaddress.IPv4Address | None:
    word = words[0] if words else ""
    return ipaddress.IPv4Address(word) if word and word != "0.0.0.0" else None


def _ip4s(text: str) -> tuple[ipaddress.IPv4Address, ...]:
    return tuple(ipaddress.IPv4Address(w) for w in text.split() if w != "0.0.0.0")


def _int(text: str | None) -> int | None:
    return int(text) if text else None
