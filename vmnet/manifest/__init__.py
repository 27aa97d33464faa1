"""KubeVirt VirtualMachine / VirtualMachineInstance manifests, parsed and validated.

Input is untrusted. Any problem, whatever the input (text, nesting, types),
is a `ConfigError` whose field is the path of the offending value, e.g.
`spec.template.spec.domain.devices.interfaces[1].macAddress`. No other
exception escapes `parse`, `parse_text` or `load`.

Only the network part is strict: unknown keys inside `interfaces[]`,
`networks[]`, `ports[]`, `dhcpOptions` and the binding and network source
objects are errors (KubeVirt's OpenAPI schema rejects them); unknown keys
elsewhere are ignored, since the rest of a VM spec is large and not ours.

A `null` is the same as an absent key (Go pointers with `omitempty`),
except for a binding or a network source (`bridge:`, `pod:`), which must be
a mapping: a bare `bridge:` would otherwise silently pick the default binding.

Defaults follow KubeVirt (`pkg/network/vmispec/defaults.go`): no interfaces
and no networks give one masquerade interface on a pod network, both named
`default`; an interface without a binding on the pod network is masquerade.

Interface and network names are DNS-1123 labels (RFC 1123, 2.1). They end up
in link and cache file names, so nothing that could traverse a path (`/`,
`..`, NUL, a leading dot) can pass.

`to_json(vmi)` gives a plain manifest dict that `parse` maps back to an
equal `Vmi`; the cache relies on it.

The rule catalogue, with the source of each rule, is in docs/manifest.md.

Modules: `model` (the frozen values and constants), `nodes` (the `Node` path
tracker), `document`, `networks` and `interfaces` (validation, top-down), `text`
(YAML/JSON), `serialize` (`to_json`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmnet.core.lazy import exports

if TYPE_CHECKING:
    from vmnet.manifest.document import parse
    from vmnet.manifest.serialize import to_json
    from vmnet.manifest.text import load, parse_text
    from vmnet.manifest.vmi import (
        KINDS,
        MASQUERADE_BRIDGE_MAC,
        MAX_CPUS,
        MAX_TEXT,
        MODELS,
        STATES,
        Annotations,
        Binding,
        DhcpOptions,
        Interface,
        Network,
        PciAddress,
        Port,
        Vmi,
    )

__getattr__, __dir__ = exports(
    __name__,
    {
        "parse": ".document",
        "to_json": ".serialize",
        "load": ".text",
        "parse_text": ".text",
        "KINDS": ".vmi",
        "MASQUERADE_BRIDGE_MAC": ".vmi",
        "MAX_CPUS": ".vmi",
        "MAX_TEXT": ".vmi",
        "MODELS": ".vmi",
        "STATES": ".vmi",
        "Annotations": ".vmi",
        "Binding": ".vmi",
        "DhcpOptions": ".vmi",
        "Interface": ".vmi",
        "Network": ".vmi",
        "PciAddress": ".vmi",
        "Port": ".vmi",
        "Vmi": ".vmi",
    },
)

__all__ = [
    "KINDS",
    "MASQUERADE_BRIDGE_MAC",
    "MAX_CPUS",
    "MAX_TEXT",
    "MODELS",
    "STATES",
    "Annotations",
    "Binding",
    "DhcpOptions",
    "Interface",
    "Network",
    "PciAddress",
    "Port",
    "Vmi",
    "load",
    "parse",
    "parse_text",
    "to_json",
]
