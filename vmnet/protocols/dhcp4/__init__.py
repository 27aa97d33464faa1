"""vmnet's single-lease DHCPv4 responder (see docs/dhcp.md).

`config` (what is handed out) -> `options` (pure encoders) -> `codec`
(bytes <-> DhcpMessage) -> `responder` (the lease policy) -> `exchange` (one
datagram in, one framed reply out). The sockets are `vmnet.serve.dhcp4`.
"""

from vmnet.protocols.dhcp4.codec import DhcpMessage, decode, encode
from vmnet.protocols.dhcp4.config import DhcpConfig, Route
from vmnet.protocols.dhcp4.responder import Reply, SingleLeaseResponder, Stats, effective_routes

__all__ = [
    "DhcpConfig",
    "DhcpMessage",
    "Reply",
    "Route",
    "SingleLeaseResponder",
    "Stats",
    "decode",
    "effective_routes",
    "encode",
]
