"""Plug latency: vmnet phase 1 + phase 2 against the raw-netlink floor and `ip`.

Rules:
1. Every sample gets a fresh pod made by a real CNI plugin (`bridge` on a
   throwaway node); making and deleting the pod is outside the timed region.
2. vmnet is timed the way a launcher runs it: open the drivers on the pod
   netns, phase 1 (discover, plan, apply, cache), phase 2 (domain XML and
   DHCP configurations), close. The cache lives on tmpfs, as /run does in a
   pod.
3. The floor issues the bridge binding's mutations back to back as raw
   rtnetlink requests (vmnet's own codec, `RtnlNetlink`, called directly:
   no plan, no cache, no reads but the index lookups it needs); the
   pyroute2 floor issues them as raw pyroute2 calls, to compare the codecs;
   the `ip` path issues them one process each, as a shell script does. All
   do exactly what vmnet's journal shows for a
   binding that needs no dummy (this kernel has none).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import yaml
from pyroute2 import IPRoute
from pyroute2.netlink import NETLINK_ROUTE

from vmnet import manifest
from vmnet.apply.drivers import real
from vmnet.apply.drivers.rtnl import RtnlNetlink
from vmnet.apply.drivers.tap import _create as create_tap
from vmnet.core.addr import MacAddress
from vmnet.core.names import LinkNames, hashed_pod_iface
from vmnet.core.netns import check_netns, run_in
from vmnet.phases import phase1, phase2
from vmnet.plan.state import TapSpec
from vmnet.protocols import resolvconf
from vmnet.store.cache import Cache
from vmnet.testing.cni import CniPod, Node, bridge_config, host_local
from vmnet.testing.cnidata import CniIP

RESOLV = resolvconf.parse("nameserver 10.96.0.10\nsearch default.svc.cluster.local\n")
TMPFS = "/dev/shm"


def vm_manifest(binding: str, nics: int) -> dict[str, Any]:
    """A VMI with `nics` interfaces of `binding`: the pod network, then Multus ones."""
    ifaces = [{"name": "default", binding: {}}]
    nets: list[dict[str, Any]] = [{"name": "default", "pod": {}}]
    for i in range(1, nics):
        ifaces.append({"name": f"net{i}", binding: {}})
        nets.append({"name": f"net{i}", "multus": {"networkName": f"default/net{i}"}})
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "benchvm", "namespace": "default"},
        "spec": {"domain": {"devices": {"interfaces": ifaces}}, "networks": nets},
    }


def secondary_config(i: int) -> dict[str, Any]:
    return {
        "name": f"bench-net{i}",
        "type": "bridge",
        "bridge": f"cbr{i}",
        "isGateway": True,
        "ipMasq": False,
        "ipam": host_local(f"10.40.{i}.0/24", default_route=False),
    }


@dataclass
class Pod:
    """A CNI pod with `nics` NICs, and what vmnet will call them."""

    cni: CniPod
    nics: list[tuple[str, bool]]  # (pod interface, primary)

    @property
    def netns(self) -> str:
        return self.cni.netns


def make_pod(node: Node, nics: int = 1) -> Pod:
    pod = node.add_pod(bridge_config())
    names = [("eth0", True)]
    try:
        for i in range(1, nics):
            ifname = hashed_pod_iface(f"net{i}")
            node.add_pod(secondary_config(i), ifname=ifname, netns=pod.netns)
            names.append((ifname, False))
    except BaseException:
        drop_pod(node, Pod(pod, names))
        raise
    return Pod(pod, names)


def drop_pod(node: Node, pod: Pod) -> None:
    """Delete every NIC of the pod (CNI DEL), newest first, then its netns."""
    mine = [p for p in node.pods if p.netns == pod.netns]
    for p in reversed(mine):
        node.pods.remove(p)
        p.close()


class VmnetPlug:
    """One timed vmnet plug (phase 1 + phase 2) of a prepared pod."""

    def __init__(self, pod: Pod, binding: str, workdir: str | None = None) -> None:
        self.pod = pod
        self.vmi = manifest.parse_text(yaml.safe_dump(vm_manifest(binding, len(pod.nics))))
        self.owned = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="vmnet-bench-", dir=TMPFS)
        self.cache = Cache(os.path.join(self.workdir, "cache"))

    def __call__(self) -> None:
        check_netns(self.pod.netns)
        drivers = real(self.pod.netns)
        try:
            phase1.plug(self.vmi, self.pod.netns, self.cache, drivers=drivers)
        finally:
            drivers.close()
        phase2.decorate(self.vmi, self.cache, None)
        phase2.dhcp_configs(self.vmi, self.cache, RESOLV)

    def close(self) -> None:
        if self.owned:
            shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass(frozen=True)
class NicSteps:
    """The values the bridge binding's mutations need for one pod NIC."""

    names: LinkNames
    address: tuple[CniIP, ...]
    server_ip: str
    bridge_mac: str
    nic_mac: str


def nic_steps(pod: Pod) -> list[NicSteps]:
    out = []
    for i, (ifname, primary) in enumerate(pod.nics):
        ips = tuple(pod.cni.result.ips_of(ifname)) if primary else _pod_ips(pod, ifname)
        out.append(
            NicSteps(
                LinkNames.derive(ifname, primary=primary),
                ips,
                str(ipaddress.IPv4Address("169.254.75.10") + i),
                str(MacAddress.random_local()),
                str(MacAddress.random_local()),
            )
        )
    return out


def _pod_ips(pod: Pod, ifname: str) -> tuple[CniIP, ...]:
    for p in pod.cni.node.pods:
        if p.netns == pod.netns and p.ifname == ifname:
            return tuple(p.result.ips_of(ifname))
    raise LookupError(ifname)


def _netlink_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)


def floor_plug(netns: str, steps: list[NicSteps]) -> None:
    """The bridge binding's mutations as raw rtnetlink requests (rule 3)."""
    nl = RtnlNetlink(netns)
    try:
        for s in steps:
            n = s.names
            nic = _index(nl, n.pod_iface)
            nl.link_add(n.bridge, "bridge", mac=MacAddress.parse(s.bridge_mac))
            br = _index(nl, n.bridge)
            nl.addr_add(br, ipaddress.ip_interface(f"{s.server_ip}/32"))
            nl.link_set(br, up=True)
            nl.link_set(nic, up=False)
            nl.link_set(nic, name=n.nic)
            nl.link_set(nic, mac=MacAddress.parse(s.nic_mac))
            nl.link_set(nic, master=br)
            for ip in s.address:
                nl.addr_del(nic, ip.address)
            nl.link_set(nic, up=True)
            nl.set_learning(nic, False)
            run_in(netns, partial(create_tap, n.tap, TapSpec(0, 0, 1)))
            tap = _index(nl, n.tap)
            nl.link_set(tap, master=br)
            nl.link_set(tap, up=True)
        run_in(netns, _arp_ignore)
    finally:
        nl.close()


def _index(nl: RtnlNetlink, name: str) -> int:
    link = nl.link(name=name, addresses=False)
    assert link is not None, name
    return link.index


def floor_plug_pyroute2(netns: str, steps: list[NicSteps]) -> None:
    """The same mutations with raw pyroute2 calls: the other codec's floor."""
    ipr = IPRoute(use_socket=run_in(netns, _netlink_socket))
    try:
        for s in steps:
            n = s.names
            nic = ipr.link_lookup(ifname=n.pod_iface)[0]
            ipr.link("add", ifname=n.bridge, kind="bridge", address=s.bridge_mac)
            br = ipr.link_lookup(ifname=n.bridge)[0]
            ipr.addr("add", index=br, address=s.server_ip, prefixlen=32)
            ipr.link("set", index=br, state="up")
            ipr.link("set", index=nic, state="down")
            ipr.link("set", index=nic, ifname=n.nic)
            ipr.link("set", index=nic, address=s.nic_mac)
            ipr.link("set", index=nic, master=br)
            for ip in s.address:
                ipr.addr(
                    "del",
                    index=nic,
                    address=str(ip.address.ip),
                    prefixlen=ip.address.network.prefixlen,
                )
            ipr.link("set", index=nic, state="up")
            ipr.brport("set", index=nic, learning=0)
            run_in(netns, partial(create_tap, n.tap, TapSpec(0, 0, 1)))
            tap = ipr.link_lookup(ifname=n.tap)[0]
            ipr.link("set", index=tap, master=br)
            ipr.link("set", index=tap, state="up")
        run_in(netns, _arp_ignore)
    finally:
        ipr.close()


def _arp_ignore() -> None:
    with open("/proc/sys/net/ipv4/conf/all/arp_ignore", "w") as f:
        f.write("1")


def ip_cli_commands(netns: str, steps: list[NicSteps]) -> list[list[str]]:
    """The same mutations as `ip`/`bridge`/`sysctl` commands, one process each."""
    cmds = []
    for s in steps:
        n = s.names
        ip = ["ip", "-n", netns]
        cmds += [
            [*ip, "link", "add", n.bridge, "address", s.bridge_mac, "type", "bridge"],
            [*ip, "addr", "add", f"{s.server_ip}/32", "dev", n.bridge],
            [*ip, "link", "set", n.bridge, "up"],
            [*ip, "link", "set", n.pod_iface, "down"],
            [*ip, "link", "set", n.pod_iface, "name", n.nic],
            [*ip, "link", "set", n.nic, "address", s.nic_mac],
            [*ip, "link", "set", n.nic, "master", n.bridge],
            *[[*ip, "addr", "del", str(a.address), "dev", n.nic] for a in s.address],
            [*ip, "link", "set", n.nic, "up"],
            ["bridge", "-n", netns, "link", "set", "dev", n.nic, "learning", "off"],
            [*ip, "tuntap", "add", "dev", n.tap, "mode", "tap", "user", "0", "group", "0"],
            [*ip, "link", "set", n.tap, "master", n.bridge],
            [*ip, "link", "set", n.tap, "up"],
        ]
    cmds.append(["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1"])
    return cmds


def ip_cli_plug(netns: str, steps: list[NicSteps]) -> None:
    for argv in ip_cli_commands(netns, steps):
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def variants(
    node: Node, nics: int
) -> dict[str, tuple[Callable[[], Any], Callable[[Any], Callable[[], Any]], Callable[[Any], None]]]:
    """setup/run/teardown triples for `stats.interleaved`."""

    def setup() -> Pod:
        return make_pod(node, nics)

    def teardown(obj: Any) -> None:
        pod = obj[0] if isinstance(obj, tuple) else obj
        if isinstance(obj, tuple) and isinstance(obj[1], VmnetPlug):
            obj[1].close()
        drop_pod(node, pod)

    def vm_setup(binding: str) -> Callable[[], tuple[Pod, VmnetPlug]]:
        def build() -> tuple[Pod, VmnetPlug]:
            pod = setup()
            return pod, VmnetPlug(pod, binding)

        return build

    def steps_setup() -> tuple[Pod, list[NicSteps]]:
        pod = setup()
        return pod, nic_steps(pod)

    return {
        "bridge": (vm_setup("bridge"), lambda o: o[1], teardown),
        "floor": (steps_setup, lambda o: lambda: floor_plug(o[0].netns, o[1]), teardown),
        "ip_cli": (steps_setup, lambda o: lambda: ip_cli_plug(o[0].netns, o[1]), teardown),
        "floor_pyroute2": (
            steps_setup,
            lambda o: lambda: floor_plug_pyroute2(o[0].netns, o[1]),
            teardown,
        ),
        "masquerade": (vm_setup("masquerade"), lambda o: o[1], teardown),
    }
