"""vmnet's single-lease DHCPv4 responder (see docs/dhcp.md).

`config` (what is handed out) -> `options` (pure encoders) -> `codec`
(bytes <-> DhcpMessage) -> `responder` (the lease policy) -> `exchange` (one
datagram in, one framed reply out). The sockets are `vmnet.serve.dhcp4`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmnet.core.lazy import exports

if TYPE_CHECKING:
    from vmnet.protocols.dhcp4.codec import DhcpMessage, decode, encode
    from vmnet.protocols.dhcp4.config import DhcpConfig, Route
    from vmnet.protocols.dhcp4.responder import Reply, SingleLeaseResponder, Stats, effective_routes

__getattr__, __dir__ = exports(
    __name__,
    {
        "DhcpMessage": ".codec",
        "decode": ".codec",
        "encode": ".codec",
        "DhcpConfig": ".config",
        "Route": ".config",
        "Reply": ".responder",
        "SingleLeaseResponder": ".responder",
        "Stats": ".responder",
        "effective_routes": ".responder",
    },
)

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
