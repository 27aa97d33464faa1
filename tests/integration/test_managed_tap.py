"""managed-tap: the CNI made the tap (as Kube-OVN does); vmnet only points the domain at it."""

import pytest
from lxml import etree

from vmnet.phases import phase1, phase2
from vmnet.store.cache import Cache
from vmnet.testing import namespaces as ns
from vmnet.testing.plugging import bridge_manifest
from vmnet.testing.snapshots import snapshot

pytestmark = [pytest.mark.netns, pytest.mark.qemu]


def test_managed_tap_changes_nothing_and_a_real_guest_uses_the_tap(netns, vm, tmp_path):
    # the "CNI": a tap as the pod interface, its SDN side at 10.50.0.1/24
    ns.ip_batch(
        netns,
        ["tuntap add dev eth0 mode tap", "addr add 10.50.0.1/24 dev eth0", "link set eth0 up"],
    )
    doc = bridge_manifest("bridge")
    doc["spec"]["domain"]["devices"]["interfaces"][0] = {
        "name": "default",
        "binding": {"name": "managed-tap"},
    }
    from vmnet import manifest
    from vmnet.protocols import resolvconf

    vmi = manifest.parse(doc)
    cache = Cache(str(tmp_path / "cache"))
    ns.wait_operstate(netns, "eth0", "DOWN")  # a tap nobody reads has no carrier
    before = snapshot(netns)
    assert phase1.plug(vmi, netns, cache).mutations == []
    assert snapshot(netns) == before
    iface = etree.fromstring(phase2.decorate(vmi, cache, None)).find(".//interface")
    assert iface.find("target").get("dev") == "eth0"
    mac = iface.find("mac").get("address")
    tap_mac = next(ln.mac for ln in before.links if ln.name == "eth0")
    assert mac == tap_mac
    assert phase2.dhcp_configs(vmi, cache, resolvconf.parse("")) == []
    phase1.unplug(vmi, netns, cache)
    assert snapshot(netns) == before
    # the data path: qemu opens the CNI's tap, as libvirt does with managed='no'
    guest = vm(netns, "eth0", mac)
    guest.check("ip addr add 10.50.0.2/24 dev eth0")
    assert guest.ping("10.50.0.1")
