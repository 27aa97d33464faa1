"""passt and managed-tap bindings over the fake drivers, through phase 2."""

import pytest
from lxml import etree

from tests.unit.conftest import POD_MAC
from vmnet import manifest
from vmnet.apply.drivers.fake import fake_drivers
from vmnet.core.errors import DiscoveryError
from vmnet.phases import phase1, phase2
from vmnet.plan.bindings import stable_mac
from vmnet.plan.state import LinkState
from vmnet.store.cache import Cache


def vmi_with(iface):
    return manifest.parse(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm1", "namespace": "ns1"},
            "spec": {
                "domain": {"devices": {"interfaces": [dict(name="default", **iface)]}},
                "networks": [{"name": "default", "pod": {}}],
            },
        }
    )


def test_passt_sets_only_sysctls_and_writes_a_user_interface(drivers, tmp_path):
    vmi = vmi_with({"passtBinding": {}, "ports": [{"port": 22}, {"port": 53, "protocol": "UDP"}]})
    links = drivers.netlink.links()
    cache = Cache(str(tmp_path))
    phase1.plug(vmi, None, cache, drivers=drivers)
    assert drivers.netlink.links() == links
    assert drivers.sysctl.values["net/ipv4/ping_group_range"] == "107 107"
    assert drivers.sysctl.values["net/ipv4/ip_unprivileged_port_start"] == "0"
    assert cache.read("dhcp", "default") is None
    xml = etree.fromstring(phase2.decorate(vmi, cache, None))
    iface = xml.find(".//interface")
    assert iface.get("type") == "user"
    assert iface.find("backend").get("type") == "passt"
    assert iface.find("source").get("dev") == "eth0"
    assert iface.find("mac").get("address") == str(stable_mac("ns1", "vm1", "default"))
    forwards = {
        pf.get("proto"): [r.get("start") for r in pf] for pf in iface.findall("portForward")
    }
    assert forwards == {"tcp": ["22"], "udp": ["53"]}
    assert iface.find("target") is None
    phase1.unplug(vmi, None, cache, drivers=drivers)
    assert drivers.sysctl.values["net/ipv4/ping_group_range"] == "1 0"
    assert drivers.sysctl.values["net/ipv4/ip_unprivileged_port_start"] == "1024"


def test_managed_tap_changes_nothing_and_targets_the_cni_tap(tmp_path):
    d = fake_drivers()
    d.netlink.add_existing(LinkState(0, "eth0", "tun", POD_MAC, 1400, True))
    vmi = vmi_with({"binding": {"name": "managed-tap"}})
    cache = Cache(str(tmp_path))
    result = phase1.plug(vmi, None, cache, drivers=d)
    assert result.mutations == [] and d.netlink.journal == []
    iface = etree.fromstring(phase2.decorate(vmi, cache, None)).find(".//interface")
    assert iface.get("type") == "ethernet"
    assert iface.find("target").get("dev") == "eth0"
    assert iface.find("target").get("managed") == "no"
    assert iface.find("mtu").get("size") == "1400"
    assert cache.read("dhcp", "default") is None


def test_managed_tap_on_a_veth_is_refused_before_any_change(drivers, tmp_path):
    vmi = vmi_with({"binding": {"name": "managed-tap"}})
    with pytest.raises(DiscoveryError, match="needs the pod interface to be a tap"):
        phase1.plug(vmi, None, Cache(str(tmp_path)), drivers=drivers)
    assert drivers.netlink.journal == []


@pytest.mark.parametrize(
    "plugin,binding", [("passt", "passt"), ("macvtap", "managedTap"), ("Managed-Tap", "managedTap")]
)
def test_kubevirt_binding_plugins_map_to_vmnet_bindings(plugin, binding):
    assert vmi_with({"binding": {"name": plugin}}).interfaces[0].binding.value == binding


def test_macvtap_made_by_the_cni_is_a_managed_tap(tmp_path):
    d = fake_drivers()
    d.netlink.add_existing(LinkState(0, "eth0", "macvtap", POD_MAC, 1500, True))
    vmi = vmi_with({"binding": {"name": "macvtap"}})
    cache = Cache(str(tmp_path))
    assert phase1.plug(vmi, None, cache, drivers=d).mutations == []
    iface = etree.fromstring(phase2.decorate(vmi, cache, None)).find(".//interface")
    assert iface.find("target").get("dev") == "eth0"
    assert iface.find("mac").get("address") == str(POD_MAC)
