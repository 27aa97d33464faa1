"""Masquerade binding over the fake drivers."""

import ipaddress

from tests.unit.test_phase1_fake import view
from vmnet import manifest
from vmnet.phases import phase1
from vmnet.plan.bindings import stable_mac
from vmnet.protocols.dhcp4.config import DhcpConfig
from vmnet.store.cache import Cache

MASQ_VM = {
    "apiVersion": "kubevirt.io/v1",
    "kind": "VirtualMachineInstance",
    "metadata": {"name": "vm1", "namespace": "ns1"},
    "spec": {
        "domain": {
            "devices": {
                "interfaces": [
                    {
                        "name": "default",
                        "masquerade": {},
                        "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
                    },
                ]
            }
        },
        "networks": [{"name": "default", "pod": {"vmNetworkCIDR": "10.11.12.0/28"}}],
    },
}


def test_masquerade_plug_leaves_the_pod_nic_alone(drivers, tmp_path):
    vmi = manifest.parse(MASQ_VM)
    nic_before = drivers.netlink.link(name="eth0")
    cache = Cache(str(tmp_path))
    phase1.plug(vmi, None, cache, drivers=drivers)
    nl = drivers.netlink
    assert nl.link(name="eth0") == nic_before
    bridge = nl.link(name="k6t-eth0")
    assert str(bridge.mac) == "02:00:00:00:00:00"
    assert sorted(str(a.interface) for a in bridge.addresses) == [
        "10.11.12.1/28",
        "fd10:0:2::1/120",
    ]
    assert nl.link(name="tap0").master == bridge.index
    assert drivers.sysctl.values["net/ipv4/ip_forward"] == "1"
    assert drivers.sysctl.values["net/ipv6/conf/all/forwarding"] == "1"
    assert drivers.sysctl.values["net/ipv4/conf/k6t-eth0/route_localnet"] == "1"
    assert set(drivers.nft.tables) == {("ip", "vmnet_nat"), ("ip6", "vmnet_nat")}
    ruleset = drivers.nft.applied[-1]
    assert "tcp dport { 80 } counter dnat to 10.11.12.2" in ruleset
    assert "udp dport { 53 } counter dnat to 10.11.12.2" in ruleset
    assert "tcp dport { 80 } counter dnat to fd10:0:2::2" in ruleset
    config = cache.load("dhcp", "default", DhcpConfig)
    assert config.address == ipaddress.ip_interface("10.11.12.2/28")
    assert config.server_id == config.router == ipaddress.ip_address("10.11.12.1")
    assert config.client_mac == stable_mac("ns1", "vm1", "default")


def test_masquerade_twice_then_unplug(drivers, tmp_path):
    vmi = manifest.parse(MASQ_VM)
    before = view(drivers)
    cache = Cache(str(tmp_path))
    phase1.plug(vmi, None, cache, drivers=drivers)
    assert phase1.plug(vmi, None, cache, drivers=drivers).mutations == []
    phase1.unplug(vmi, None, cache, drivers=drivers)
    after = view(drivers)
    assert after[0] == before[0] and after[1] == before[1]
    assert {k: drivers.sysctl.get(k) for k in after[2]} == {k: before[2].get(k) for k in after[2]}
    assert drivers.nft.tables == {}


def test_sriov_interfaces_are_left_to_kubevirt(drivers, tmp_path):
    doc = {
        **MASQ_VM,
        "spec": {
            "domain": {
                "devices": {
                    "interfaces": [
                        {"name": "default", "masquerade": {}},
                        {"name": "fast", "sriov": {}},
                    ]
                }
            },
            "networks": [
                {"name": "default", "pod": {}},
                {"name": "fast", "multus": {"networkName": "sriov-net"}},
            ],
        },
    }
    vmi = manifest.parse(doc)
    cache = Cache(str(tmp_path))
    result = phase1.plug(vmi, None, cache, drivers=drivers)
    assert result.networks == ["default"]
    from vmnet.phases import phase2

    assert [i.alias for i in phase2.domain_interfaces(vmi, cache)] == ["default"]
    assert phase1.unplug(vmi, None, cache, drivers=drivers).networks == ["default"]
