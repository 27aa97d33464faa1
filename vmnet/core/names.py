"""Link names, as KubeVirt derives them (docs/kubevirt.md, Names).

The primary network's pod interface is `eth0`. A secondary Multus network's
pod interface is `pod` + the first 11 hex digits of SHA-256(network name)
(hashed scheme), or `netN` numbered over the secondary networks in spec
order (ordinal scheme, used when the pod already has a `net<N>` link).

From a pod interface name P (a leading `pod` removed: S):
bridge `k6t-S`, renamed pod NIC `S-nic`, tap `tap0` for the primary network
else `tap` + P[3:] for KubeVirt's own names (`pod<hash>`, `net<N>`) and
`tap` + P for any other name (`--iface red=sec0` -> `tapsec0`: KubeVirt's
P[3:] would make `tap0`, the primary's tap), dummy P.

Every name fits IFNAMSIZ-1 = 15 characters; a longer one is a ConfigError
(KubeVirt does not check custom primary names; vmnet does).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from vmnet.core.errors import ConfigError

IFNAMSIZ = 16
PRIMARY_POD_IFACE = "eth0"
HASH_PREFIX = "pod"
HASH_LEN = 11
_ORDINAL = re.compile(r"^net\d+$")
_VALID = re.compile(r"^[^\s/:%]+$")


def hashed_pod_iface(network_name: str) -> str:
    """`pod` + 11 hex chars of SHA-256: `secondnetwork` -> `pod914f438d88d`."""
    digest = hashlib.sha256(network_name.encode()).hexdigest()
    return HASH_PREFIX + digest[:HASH_LEN]


def ordinal_pod_iface(position: int) -> str:
    """`net1`, `net2`, ... for the 1-based position among secondary networks."""
    return f"net{position}"


def uses_ordinal_scheme(link_names: list[str]) -> bool:
    """True when the pod already has a legacy `net<N>` link."""
    return any(_ORDINAL.match(name) for name in link_names)


def check_ifname(name: str, what: str = "interface name") -> str:
    if not name or len(name) >= IFNAMSIZ or not _VALID.match(name) or name in (".", ".."):
        raise ConfigError(what, f"{name!r} is not a valid Linux interface name (1-15 chars)")
    return name


def _stem(pod_iface: str) -> str:
    return pod_iface.removeprefix(HASH_PREFIX)


def _tap(pod_iface: str) -> str:
    if pod_iface.startswith(HASH_PREFIX) or _ORDINAL.match(pod_iface):
        return f"tap{pod_iface[3:]}"
    return f"tap{pod_iface}"


@dataclass(frozen=True, slots=True)
class LinkNames:
    """The links phase 1 makes or renames for one pod interface."""

    pod_iface: str
    bridge: str
    nic: str
    tap: str
    dummy: str

    @classmethod
    def derive(cls, pod_iface: str, *, primary: bool) -> LinkNames:
        stem = _stem(pod_iface)
        names = cls(
            pod_iface=pod_iface,
            bridge=f"k6t-{stem}",
            nic=f"{stem}-nic",
            tap="tap0" if primary else _tap(pod_iface),
            dummy=pod_iface,
        )
        for field_name in ("pod_iface", "bridge", "nic", "tap", "dummy"):
            check_ifname(getattr(names, field_name), f"derived {field_name} name")
        return names
