"""vmnet: connect a virtual machine to its Kubernetes pod's network."""

from vmnet.errors import (
    CacheError,
    ConfigError,
    CriticalNetworkError,
    DhcpDecodeError,
    DiscoveryError,
    DriverError,
    VmnetError,
)

__version__ = "0.1.0"

__all__ = [
    "CacheError",
    "ConfigError",
    "CriticalNetworkError",
    "DhcpDecodeError",
    "DiscoveryError",
    "DriverError",
    "VmnetError",
    "__version__",
]
