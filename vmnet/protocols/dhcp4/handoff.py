"""The lease, as one short line that phase 1 leaves on the bridge for the sidecar.

In KubeVirt's binding-plugin mode phase 1 (`vmnet-cni`) runs on the node and
phase 2 (`vmnet sidecar`) in its own container as UID 107: they share only
the pod's network namespace. So vmnet-cni writes the lease into the bridge's
interface alias (IFLA_IFALIAS), which anyone in the namespace can read from
/sys/class/net/<bridge>/ifalias, and the sidecar reads it back. The alias
holds at most 255 bytes:

    vmnet1 a=10.22.0.2/24 s=169.254.75.10 g=10.22.0.1 m=1500 r=0.0.0.0/0@10.22.0.1,10.9.0.0/16@-

(`a` address, `s` server id, `g` router, `m` MTU, `r` option-121 routes with
`-` for on-link; `6` the VM's IPv6 address on a dual-stack pod, which the
sidecar cannot serve, so that it can say so). The client MAC, DNS, search list and host name are the
sidecar's to add: it knows the VMI and the pod's resolv.conf.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface

from vmnet.core.errors import ConfigError
from vmnet.protocols.dhcp4.config import DhcpConfig, Route

MAGIC = "vmnet1"
MAX_ALIAS = 255  # IFALIASZ - 1


def to_alias(config: DhcpConfig, ipv6: IPv6Interface | None = None) -> str:
    """The one-line form; ConfigError when it does not fit an alias."""
    parts = [MAGIC, f"a={config.address}", f"s={config.server_id}"]
    if ipv6 is not None:
        parts.append(f"6={ipv6}")
    if config.router is not None:
        parts.append(f"g={config.router}")
    if config.mtu is not None:
        parts.append(f"m={config.mtu}")
    if config.routes:
        routes = ",".join(f"{r.destination}@{r.gateway or '-'}" for r in config.routes)
        parts.append(f"r={routes}")
    text = " ".join(parts)
    if len(text.encode()) > MAX_ALIAS:
        raise ConfigError(
            "lease", f"{len(config.routes)} routes do not fit the {MAX_ALIAS}-byte hand-off"
        )
    return text


def ipv6_of(text: str) -> str | None:
    """The IPv6 address a `to_alias` line names, if any (not parsed further)."""
    for word in text.strip().split(" ")[1:]:
        if word.startswith("6="):
            return word[2:]
    return None


def from_alias(text: str) -> DhcpConfig:
    """The lease back from `to_alias`'s line (client MAC unset).

    Raises:
        ConfigError: ("lease", ...) when the line is not one vmnet wrote.
    """
    words = text.strip().split(" ")
    if not words or words[0] != MAGIC:
        raise ConfigError("lease", f"the bridge alias {text.strip()[:40]!r} is not vmnet's lease")
    fields = dict(word.partition("=")[::2] for word in words[1:])
    try:
        routes = tuple(
            Route(IPv4Network(dst), None if gw == "-" else IPv4Address(gw))
            for dst, _, gw in (
                item.partition("@") for item in fields.get("r", "").split(",") if item
            )
        )
        return DhcpConfig(
            client_mac=None,
            address=IPv4Interface(fields["a"]),
            server_id=IPv4Address(fields["s"]),
            router=IPv4Address(fields["g"]) if "g" in fields else None,
            routes=routes,
            mtu=int(fields["m"]) if "m" in fields else None,
        )
    except (KeyError, ValueError) as err:
        raise ConfigError("lease", f"the bridge alias is not a whole lease ({err})") from err
