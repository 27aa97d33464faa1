"""vmnet's single-lease DHCPv4 responder (see docs/dhcp.md).

Layers: `config` (what is handed out) -> `options` (pure encoders) ->
`codec` (sans-IO bytes <-> DhcpMessage) -> `responder` (pure policy) ->
`server` (the only module here that touches sockets).
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
