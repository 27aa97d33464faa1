"""Libvirt domain XML for vmnet interfaces: build, decorate, parse and print.

Pure lxml. No file, socket or libvirt I/O here; the CLI reads and writes.

An interface is found by its user alias `ua-<name>` (KubeVirt
`api/schema.go`). No other interface is touched; outside `<devices>` only
`<memoryBacking>` changes, when a vhost-user interface needs shared memory.

On a matched interface vmnet owns the `type` attribute, `<mac>`, `<target>`,
`<backend>`, `<portForward>` and, for passt, `<source>`: they are replaced.
`<address>`, `<mtu>`, `<boot>`, `<link>` and `<driver>` are replaced only when
the spec sets them. `<model>` and an empty ethernet `<source>` are added only
if absent, `<rom enabled='no'>` only if there is no `<boot>`. Any other child
is kept where it is.

A child that vmnet adds goes where KubeVirt's struct order puts it
(docs/kubevirt.md, Domain XML), so decorating twice gives the same tree
as decorating once.

Domain XML is untrusted input: no DTD, no entity expansion, no network
access (XXE and "billion laughs", OWASP XML External Entity Prevention).

Modules: `interface` (the `DomainInterface` spec, port rules, a new
`<interface>`), `decoration` (`decorate`), `xmlio` (skeleton, parse, print).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmnet.core.lazy import exports

if TYPE_CHECKING:
    from vmnet.domain.decoration import decorate
    from vmnet.domain.interface import (
        ISTIO_RESERVED_PORTS,
        MAX_QUEUES,
        TYPES,
        VIRTIO_MODELS,
        DomainInterface,
        PortForward,
        interface_element,
        passt_port_forwards,
    )
    from vmnet.domain.xmlio import canonical, parse_domain, skeleton, to_bytes

__getattr__, __dir__ = exports(
    __name__,
    {
        "decorate": ".decoration",
        "ISTIO_RESERVED_PORTS": ".interface",
        "MAX_QUEUES": ".interface",
        "TYPES": ".interface",
        "VIRTIO_MODELS": ".interface",
        "DomainInterface": ".interface",
        "PortForward": ".interface",
        "interface_element": ".interface",
        "passt_port_forwards": ".interface",
        "canonical": ".xmlio",
        "parse_domain": ".xmlio",
        "skeleton": ".xmlio",
        "to_bytes": ".xmlio",
    },
)

__all__ = [
    "ISTIO_RESERVED_PORTS",
    "MAX_QUEUES",
    "TYPES",
    "VIRTIO_MODELS",
    "DomainInterface",
    "PortForward",
    "canonical",
    "decorate",
    "interface_element",
    "parse_domain",
    "passt_port_forwards",
    "skeleton",
    "to_bytes",
]
