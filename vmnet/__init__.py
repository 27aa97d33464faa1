"""vmnet: connect a virtual machine to its Kubernetes pod's network.

The public API, loaded lazily (PEP 562) so that `vmnet dhcp`, which runs for
the VM's whole life, imports only what serving needs:

- `load`, `parse`, `parse_text`, `Vmi`: KubeVirt VM/VMI manifests (`vmnet.manifest`);
- `plug`, `unplug`, `PlugOptions`, `MacSource`: phase 1 (`vmnet.phases.phase1`);
- `decorate`, `domain_interfaces`: phase 2 domain XML (`vmnet.phases.phase2`);
- `dhcp_configs`, `dhcp6_configs`, `Service`: phase 2 DHCP (`vmnet.phases.leases`, `vmnet.serve.service`);
- `Cache`: the phase-1 cache (`vmnet.store.cache`);
- the error tree (`vmnet.core.errors`).
"""

from __future__ import annotations

import importlib
from typing import Any

from vmnet.core.errors import (
    CacheError,
    ConfigError,
    CriticalNetworkError,
    DhcpDecodeError,
    DiscoveryError,
    DriverError,
    VmnetError,
)

__version__ = "0.1.0"

_LAZY = {
    "load": "vmnet.manifest",
    "parse": "vmnet.manifest",
    "parse_text": "vmnet.manifest",
    "Vmi": "vmnet.manifest",
    "plug": "vmnet.phases.phase1",
    "unplug": "vmnet.phases.phase1",
    "PlugOptions": "vmnet.phases.phase1",
    "MacSource": "vmnet.plan.bindings",
    "decorate": "vmnet.phases.phase2",
    "domain_interfaces": "vmnet.phases.phase2",
    "dhcp_configs": "vmnet.phases.leases",
    "dhcp6_configs": "vmnet.phases.leases",
    "Service": "vmnet.serve.service",
    "Cache": "vmnet.store.cache",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vmnet' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
    "unplug",
]
