"""NIC hot-plug and hot-unplug into a running libvirt domain, as KubeVirt does it.

The pod has its CNI eth0 and a Multus secondary (`blue`, a second real CNI
bridge attachment). The VM starts with the pod network only; then the
manifest gains `blue`: vmnet plugs the new network (the plugged one
converges with no change), its decorated `<interface>` is attached to the
running domain through libvirt's attach-device API, the guest sees a new
NIC and leases the secondary's IP from vmnet's responder. Then the
interface is marked `state: absent`: it is detached from the domain, vmnet
unplugs the network alone and the secondary's pod NIC is exactly as its CNI
plugin made it.
"""

from __future__ import annotations

import copy
import tempfile

import pytest
from lxml import etree

from vmnet import manifest
from vmnet.core.names import hashed_pod_iface
from vmnet.phases import leases, phase1, phase2
from vmnet.protocols import resolvconf
from vmnet.serve.service import Service
from vmnet.store.cache import Cache
from vmnet.testing.cni import bridge_config, host_local
from vmnet.testing.libvirt import Libvirtd, LibvirtGuest, libvirt_available
from vmnet.testing.snapshots import snapshot

pytestmark = [
    pytest.mark.netns,
    pytest.mark.qemu,
    pytest.mark.libvirt,
    pytest.mark.cni("bridge", "host-local"),
    pytest.mark.skipif(libvirt_available() is not None, reason=str(libvirt_available())),
]
RESOLV = resolvconf.parse("nameserver 10.96.0.10\nsearch tenant1.svc.cluster.local\n")
BLUE = {
    "name": "vmt-cbr1",
    "type": "bridge",
    "bridge": "cbr1",
    "isGateway": True,
    "ipam": host_local("10.31.0.0/24", default_route=False),
}


def vmi(blue: str | None) -> manifest.Vmi:
    interfaces = [{"name": "default", "bridge": {}}]
    networks = [{"name": "default", "pod": {}}]
    if blue is not None:
        interface = {"name": "blue", "bridge": {}, "macAddress": "02:aa:00:00:00:01"}
        if blue == "absent":
            interface["state"] = "absent"
        interfaces.append(interface)
        networks.append({"name": "blue", "multus": {"networkName": "tenant1/blue"}})
    return manifest.parse(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "hotvm", "namespace": "tenant1"},
            "spec": {"domain": {"devices": {"interfaces": interfaces}}, "networks": networks},
        }
    )


def _interface(domain_xml: bytes, alias: str) -> str:
    root = etree.fromstring(domain_xml)
    found = root.find(f"devices/interface/alias[@name='{alias}']/..")
    assert found is not None, alias
    return etree.tostring(copy.deepcopy(found)).decode()


def test_a_nic_hot_plugged_into_the_running_domain_leases_and_goes_away(node, tmp_path) -> None:
    pod = node.add_pod(bridge_config())
    blue_pod = node.add_pod(BLUE, ifname=hashed_pod_iface("blue"), netns=pod.netns)
    blue_nic = hashed_pod_iface("blue")
    before_blue = next(ln for ln in snapshot(pod.netns).links if ln.name == blue_nic)
    cache = Cache(str(tmp_path / "cache"))
    netns = f"/run/netns/{pod.netns}"
    one, two = vmi(None), vmi("blue")
    services: list[Service] = []
    try:
        phase1.plug(one, netns, cache)
        services.append(Service(pod.netns, leases.dhcp_configs(one, cache, RESOLV)))
        with (
            tempfile.TemporaryDirectory(prefix="vmlv-") as root,
            Libvirtd(pod.netns, root) as libvirtd,
        ):
            mac = str(phase2.domain_interfaces(one, cache)[0].mac)

            def decorate(xml: str) -> str:
                return phase2.decorate(one, cache, xml.encode()).decode()

            with LibvirtGuest(libvirtd, "tap0", mac, decorate=decorate) as guest:
                assert guest.dhcp("udhcpc").address == pod.address

                result = phase1.plug(two, netns, cache)  # hot-plug: only blue changes
                assert result.networks == ["default", "blue"] and result.mutations
                added = [c for c in leases.dhcp_configs(two, cache, RESOLV) if c[0] != "k6t-eth0"]
                assert len(added) == 1  # the new network's bridge
                services.append(Service(pod.netns, added))
                domain = phase2.decorate(two, cache, guest.domain_xml().encode())
                xml = _interface(domain, "ua-blue")
                guest.attach(xml)
                guest.check(
                    "i=0; until ip link show eth1 >/dev/null 2>&1; do i=$((i+1)); "
                    "[ $i -gt 200 ] && exit 1; sleep 0.1; done",
                    timeout=40,
                )
                mac1 = guest.check("cat /sys/class/net/eth1/address").strip()
                assert mac1 == "02:aa:00:00:00:01"
                lease = guest.dhcp("udhcpc", ifname="eth1")
                assert lease.address == blue_pod.address
                assert "ua-blue" in guest.dom.XMLDesc(0)

                guest.detach(xml)
                guest.check(
                    "i=0; while ip link show eth1 >/dev/null 2>&1; do i=$((i+1)); "
                    "[ $i -gt 300 ] && exit 1; sleep 0.1; done",
                    timeout=40,
                )
                assert "ua-blue" not in guest.dom.XMLDesc(0)
                services.pop().stop()
                gone = phase1.plug(vmi("absent"), netns, cache)
                assert gone.unplugged == ["blue"]
                assert guest.ping(str(pod.gateway))  # the pod network never stopped
        after_blue = next(ln for ln in snapshot(pod.netns).links if ln.name == blue_nic)
        assert after_blue == before_blue  # the secondary's NIC is the CNI's again
    finally:
        for service in services:
            service.stop()
        if cache.networks():
            phase1.unplug(vmi("blue"), netns, cache)
