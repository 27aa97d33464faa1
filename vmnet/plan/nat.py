"""The masquerade NAT ruleset, rendered from data into one nft script.

Rules (docs/kubevirt.md, Masquerade binding, KubeVirt `masquerade.go`, with vmnet's changes noted):
1. Pure: `tables(specs)` gives the NAT as data (`NatTable`: family, name,
   identifying comment, text); the nft driver applies the text in one
   `nft -f -` transaction, and nothing parses it back.
2. vmnet owns its tables: `table ip vmnet_nat` / `table ip6 vmnet_nat`, never
   the shared `nat` table, and every rule carries `comment "vmnet:<vm>"`.
   The script first declares then deletes the table, then defines it: applying
   it twice gives one copy (KubeVirt's `nft add rule` appends duplicates), and
   unplug deletes exactly what vmnet added.
3. Chains and rules follow KubeVirt in order: masquerade of the guest's
   address; inbound traffic on the pod NIC jumps to KUBEVIRT_PREINBOUND (DNAT
   to the guest, all ports or only `ports`); traffic to the bridge jumps to
   KUBEVIRT_POSTINBOUND (SNAT of loopback-originated traffic to the gateway);
   locally originated traffic to loopback or the pod's own IP is DNATed to the
   guest in `output` (the hairpin; KubeVirt adds the pod IP only with Istio);
   the legacy migration ports 49152-49153 return before any NAT.
4. Istio (`sidecar.istio.io/inject: "true"`): the proxy's ports return
   untouched, only port 22 is DNATed from outside, and traffic from the
   proxy's 127.0.0.6 is SNATed, as KubeVirt does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from vmnet.core.addr import IPAddress

TABLE = "vmnet_nat"
MIGRATION_PORTS = (49152, 49153)
ISTIO_PORTS = (15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053, 15090)
ISTIO_NON_PROXIED = (22,)
ISTIO_LOOPBACK = "127.0.0.6"


@dataclass(frozen=True, slots=True)
class NatSpec:
    """What the NAT of one masquerade interface needs, for one IP family."""

    family: str  # "ip" or "ip6"
    pod_iface: str
    bridge: str
    vm_ip: IPAddress
    gateway: IPAddress
    pod_ip: IPAddress | None = None
    ports: tuple[tuple[str, int], ...] = ()  # (tcp|udp, port); empty: every port
    istio: bool = False
    marker: str = "vmnet"


def marker_for(namespace: str, name: str) -> str:
    """`vmnet:<12 hex>`: stable per VM, free of characters nft would need quoted."""
    return "vmnet:" + hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:12]


def _set(items: list[str]) -> str:
    return "{ " + ", ".join(items) + " }"


@dataclass(frozen=True, slots=True)
class NatTable:
    """One table of the ruleset, as data: where it goes, the comment that
    identifies its exact rules, and the nft text that makes it.

    `comment` is `<marker> ruleset:<digest>`, the digest being that of the
    table's own rules: a table in a namespace whose comment is this one is
    exactly this table, so applying it again would change nothing.
    """

    family: str
    name: str
    comment: str
    script: str


def tables(specs: list[NatSpec]) -> tuple[NatTable, ...]:
    """The tables for every family in `specs`, in order."""
    return tuple(_table(spec) for spec in specs)


def render(specs: list[NatSpec]) -> str:
    """One nft script for every family in `specs` (what the driver applies)."""
    return script(tables(specs))


def script(nat: tuple[NatTable, ...]) -> str:
    """The tables' text as one nft transaction."""
    return "".join(table.script for table in nat)


def _table(s: NatSpec) -> NatTable:
    f = s.family
    loop = "127.0.0.1" if f == "ip" else "::1"
    c = f'comment "{s.marker}"'
    pre, post, out = _inbound(s, loop, c)
    body = [
        "  chain prerouting {",
        "    type nat hook prerouting priority -100; policy accept;",
        f'    iifname "{s.pod_iface}" counter jump KUBEVIRT_PREINBOUND {c}',
        "  }",
        "  chain input {",
        "    type nat hook input priority 100; policy accept;",
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        *out,
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority 100; policy accept;",
        f"    {f} saddr {s.vm_ip} counter masquerade {c}",
        f'    oifname "{s.bridge}" counter jump KUBEVIRT_POSTINBOUND {c}',
        "  }",
        "  chain KUBEVIRT_PREINBOUND {",
        *pre,
        "  }",
        "  chain KUBEVIRT_POSTINBOUND {",
        *post,
        "  }",
    ]
    digest = hashlib.sha256("\n".join(body).encode()).hexdigest()[:16]
    comment = f"{s.marker} ruleset:{digest}"
    lines = [
        f"table {f} {TABLE} {{}}",
        f"delete table {f} {TABLE}",
        f"table {f} {TABLE} {{",
        f'  comment "{comment}"',
        *body,
        "}",
    ]
    return NatTable(f, TABLE, comment, "\n".join(lines) + "\n")


def _inbound(s: NatSpec, loop: str, c: str) -> tuple[list[str], list[str], list[str]]:
    f = s.family
    mig = _set([str(p) for p in MIGRATION_PORTS])
    ret = f"tcp dport {mig} {f} saddr {loop} counter return {c}"
    pre: list[str] = []
    post: list[str] = [f"    {ret}"]
    out: list[str] = [f"    {ret}"]
    snat_from = [loop] + ([ISTIO_LOOPBACK] if s.istio and f == "ip" else [])
    dnat_to = [loop] + ([str(s.pod_ip)] if s.pod_ip is not None else [])
    src, dst = _set(snat_from), _set(dnat_to)
    if not s.ports:
        if s.istio:
            istio = _set([str(p) for p in ISTIO_PORTS])
            out.append(f"    tcp dport {istio} {f} saddr {loop} counter return {c}")
            post.append(f"    tcp dport {istio} {f} saddr {loop} counter return {c}")
            pre.append(
                f"    tcp dport {_set([str(p) for p in ISTIO_NON_PROXIED])} "
                f"counter dnat to {s.vm_ip} {c}"
            )
        else:
            pre.append(f"    counter dnat to {s.vm_ip} {c}")
        post.append(f"    {f} saddr {src} counter snat to {s.gateway} {c}")
        out.append(f"    {f} daddr {dst} counter dnat to {s.vm_ip} {c}")
        return pre, post, out
    for proto, port in s.ports:
        if not s.istio or port in ISTIO_NON_PROXIED:
            pre.append(f"    {proto} dport {{ {port} }} counter dnat to {s.vm_ip} {c}")
        post.append(f"    {proto} dport {port} {f} saddr {src} counter snat to {s.gateway} {c}")
        out.append(f"    {f} daddr {dst} {proto} dport {port} counter dnat to {s.vm_ip} {c}")
    return pre, post, out
