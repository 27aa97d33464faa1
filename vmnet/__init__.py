"""vmnet: connect a virtual machine to its Kubernetes pod's network.

The public API. Names are imported when first used (PEP 562), so that
`vmnet dhcp`, which runs for the VM's whole life, loads only what serving
needs; type checkers and `help()` see the real objects and signatures.

- manifests: `load`, `parse`, `parse_text`, `Vmi`;
- phase 1: `plug`, `unplug`, `PlugOptions`, `PlugResult`, `MacSource`;
- phase 2: `decorate`, `domain_interfaces` (domain XML), `dhcp_configs`,
  `dhcp6_configs`, `resolv_conf`, `Service` (DHCP);
- the cache both phases share: `Cache`;
- the error tree rooted at `VmnetError`.
"""

from __future__ import annotations

import importlib

from vmnet.core.errors import (
    CacheError,
    ConfigError,
    CriticalNetworkError,
    DhcpDecodeError,
    DiscoveryError,
    DriverError,
    VmnetError,
)

TYPE_CHECKING = False  # typing is not imported at run time: every command starts here
if TYPE_CHECKING:
    from typing import Any

    from vmnet.manifest import Vmi, load, parse, parse_text
    from vmnet.phases.leases import dhcp6_configs, dhcp_configs
    from vmnet.phases.phase1 import PlugOptions, PlugResult, plug, unplug
    from vmnet.phases.phase2 import decorate, domain_interfaces
    from vmnet.plan.bindings import MacSource
    from vmnet.protocols.resolvconf import load as resolv_conf
    from vmnet.serve.service import Service
    from vmnet.store.cache import Cache

__version__ = "0.1.0"

_LAZY = {
    "load": ("vmnet.manifest", "load"),
    "parse": ("vmnet.manifest", "parse"),
    "parse_text": ("vmnet.manifest", "parse_text"),
    "Vmi": ("vmnet.manifest", "Vmi"),
    "plug": ("vmnet.phases.phase1", "plug"),
    "unplug": ("vmnet.phases.phase1", "unplug"),
    "PlugOptions": ("vmnet.phases.phase1", "PlugOptions"),
    "PlugResult": ("vmnet.phases.phase1", "PlugResult"),
    "MacSource": ("vmnet.plan.bindings", "MacSource"),
    "decorate": ("vmnet.phases.phase2", "decorate"),
    "domain_interfaces": ("vmnet.phases.phase2", "domain_interfaces"),
    "dhcp_configs": ("vmnet.phases.leases", "dhcp_configs"),
    "dhcp6_configs": ("vmnet.phases.leases", "dhcp6_configs"),
    "resolv_conf": ("vmnet.protocols.resolvconf", "load"),
    "Service": ("vmnet.serve.service", "Service"),
    "Cache": ("vmnet.store.cache", "Cache"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'vmnet' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Cache",
    "CacheError",
    "ConfigError",
    "CriticalNetworkError",
    "DhcpDecodeError",
    "DiscoveryError",
    "DriverError",
    "MacSource",
    "PlugOptions",
    "PlugResult",
    "Service",
    "Vmi",
    "VmnetError",
    "__version__",
    "decorate",
    "dhcp6_configs",
    "dhcp_configs",
    "domain_interfaces",
    "load",
    "parse",
    "parse_text",
    "plug",
    "resolv_conf",
    "unplug",
]
