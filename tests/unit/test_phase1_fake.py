"""Phase 1 over the stateful fake drivers: plans, idempotence, crash convergence."""

import ipaddress
import signal

import pytest

from tests.unit.conftest import POD_MAC, cni_pod_nic
from vmnet import manifest
from vmnet.apply.drivers.fake import fake_drivers
from vmnet.core.addr import MacAddress
from vmnet.core.errors import DiscoveryError, DriverError
from vmnet.phases import phase1
from vmnet.plan.bindings import MacSource, stable_mac
from vmnet.plan.state import LinkState, NetworkState, RouteState
from vmnet.protocols.dhcp4.config import DhcpConfig, Route
from vmnet.store.cache import Cache

BRIDGE_VM = {
    "apiVersion": "kubevirt.io/v1",
    "kind": "VirtualMachineInstance",
    "metadata": {"name": "vm1", "namespace": "ns1"},
    "spec": {
        "domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}}]}},
        "networks": [{"name": "default", "pod": {}}],
    },
}


def view(d):
    """What a user would compare: links by name and their state, routes."""
    links = {
        x.name: (
            x.kind,
            str(x.mac),
            x.mtu,
            x.up,
            x.master,
            sorted(str(a.interface) for a in x.addresses),
        )
        for x in d.netlink.links()
    }
    routes = sorted((str(r.destination), str(r.gateway), r.oif) for r in d.netlink.routes())
    return links, routes, dict(d.sysctl.values)


@pytest.fixture
def vmi():
    return manifest.parse(BRIDGE_VM)


def test_bridge_plug_builds_the_kubevirt_topology(drivers, vmi, tmp_path):
    cache = Cache(str(tmp_path))
    phase1.plug(vmi, None, cache, drivers=drivers)
    nl = drivers.netlink
    bridge, nic, tap = nl.link(name="k6t-eth0"), nl.link(name="eth0-nic"), nl.link(name="tap0")
    assert [str(a.interface) for a in bridge.addresses] == ["169.254.75.10/32"]
    assert bridge.up and nic.up and tap.up
    assert nic.master == bridge.index and tap.master == bridge.index
    assert nic.mac != POD_MAC and nic.addresses == ()
    assert nl.learning(nic.index) is False
    assert tap.mtu == 1500
    assert nl.link(name="eth0") is None  # no dummy driver: degraded with a warning
    assert drivers.sysctl.values["net/ipv4/conf/all/arp_ignore"] == "1"
    record = cache.network("default")
    assert record.state == NetworkState.FINISHED
    assert any("dummy" in w for w in record.warnings)
    config = cache.load("dhcp", "default", DhcpConfig)
    assert config.client_mac == stable_mac("ns1", "vm1", "default") != POD_MAC
    assert config.address == ipaddress.ip_interface("10.222.222.1/30")
    assert config.server_id == ipaddress.ip_address("169.254.75.10")
    assert config.router == ipaddress.ip_address("10.222.222.254")
    assert config.routes == (
        Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.222.222.254")),
    )
    assert config.mtu == 1500


def test_dummy_keeps_pod_addresses_when_the_kernel_has_it(vmi, tmp_path):
    d = fake_drivers(kinds=frozenset({"bridge", "veth", "tun", "dummy"}))
    link, routes = cni_pod_nic()
    d.netlink.add_existing(link, routes)
    phase1.plug(vmi, None, Cache(str(tmp_path)), drivers=d)
    dummy = d.netlink.link(name="eth0")
    assert dummy.kind == "dummy" and dummy.mac == POD_MAC and not dummy.up
    assert sorted(str(a.interface) for a in dummy.addresses) == ["10.222.222.1/30", "2001::1/64"]


def test_second_plug_changes_nothing(drivers, vmi, tmp_path):
    cache = Cache(str(tmp_path))
    first = phase1.plug(vmi, None, cache, drivers=drivers)
    assert first.mutations
    journal = list(drivers.netlink.journal)
    second = phase1.plug(vmi, None, cache, drivers=drivers)
    assert second.mutations == []
    assert drivers.netlink.journal == journal


def test_unplug_restores_the_pod_exactly(drivers, vmi, tmp_path):
    before = view(drivers)
    cache = Cache(str(tmp_path))
    phase1.plug(vmi, None, cache, drivers=drivers)
    assert view(drivers) != before
    phase1.unplug(vmi, None, cache, drivers=drivers)
    assert view(drivers) == before
    assert cache.networks() == [] and not cache.exists("sysctl")


class Crash(Exception):
    pass


def test_plug_interrupted_after_every_mutation_converges(vmi, tmp_path):
    reference = fake_drivers()
    link, routes = cni_pod_nic()
    reference.netlink.add_existing(link, routes)
    total = len(phase1.plug(vmi, None, Cache(str(tmp_path / "ref")), drivers=reference).mutations)
    assert total >= 10
    for crash_at in range(1, total + 1):
        d = fake_drivers()
        d.netlink.add_existing(link, routes)
        before = view(d)
        cache = Cache(str(tmp_path / f"c{crash_at}"))
        count = 0

        def hook(_what, crash_at=crash_at):
            nonlocal count
            count += 1
            if count == crash_at:
                raise Crash

        with pytest.raises(Crash):
            phase1.plug(vmi, None, cache, drivers=d, on_mutation=hook)
        phase1.plug(vmi, None, cache, drivers=d)
        links, _, _ = view(d)
        ref_links, _, _ = view(reference)
        assert {k: v[:1] + v[2:] for k, v in links.items()} == {
            k: v[:1] + v[2:] for k, v in ref_links.items()
        }, crash_at
        assert phase1.plug(vmi, None, cache, drivers=d).mutations == []
        phase1.unplug(vmi, None, cache, drivers=d)
        assert view(d) == before, crash_at


def test_missing_pod_nic_changes_nothing(vmi, tmp_path):
    d = fake_drivers()
    d.netlink.add_existing(LinkState(0, "other0", "veth", POD_MAC, 1500, True))
    with pytest.raises(DiscoveryError, match=r"pod link \(eth0\) is missing"):
        phase1.plug(vmi, None, Cache(str(tmp_path)), drivers=d)
    assert d.netlink.journal == [] and d.sysctl.journal == []


def test_pod_without_routes_is_an_error_before_any_change(vmi, tmp_path):
    d = fake_drivers()
    link, _ = cni_pod_nic()
    d.netlink.add_existing(link, ())
    with pytest.raises(DiscoveryError, match="no gateway address found"):
        phase1.plug(vmi, None, Cache(str(tmp_path)), drivers=d)
    assert d.netlink.journal == []


def test_pod_without_ipv4_gets_plain_l2(vmi, tmp_path):
    d = fake_drivers()
    link, _ = cni_pod_nic(addresses=("fe80::1/64",), routes=())
    d.netlink.add_existing(link, ())
    cache = Cache(str(tmp_path))
    phase1.plug(vmi, None, cache, drivers=d)
    assert d.netlink.link(name="k6t-eth0").addresses == ()
    assert cache.read("dhcp", "default") is None
    assert d.sysctl.journal == []


def test_driver_failure_is_critical_and_rerun_converges(drivers, vmi, tmp_path):
    cache = Cache(str(tmp_path))
    drivers.netlink.fail_on["set_learning"] = 1
    with pytest.raises(DriverError, match="set_learning eth0-nic"):
        phase1.plug(vmi, None, cache, drivers=drivers)
    assert cache.network("default").state == NetworkState.STARTED
    del drivers.netlink.fail_on["set_learning"]
    phase1.plug(vmi, None, cache, drivers=drivers)
    assert cache.network("default").state == NetworkState.FINISHED
    assert drivers.netlink.learning(drivers.netlink.link(name="eth0-nic").index) is False


def test_crash_hook_kills_the_process_at_the_nth_mutation(monkeypatch):
    from vmnet.core import faults

    killed = []
    monkeypatch.setattr(faults.os, "kill", lambda pid, sig: killed.append(sig))
    hook = faults.crash_hook({"VMNET_CRASH_AT": "2"})
    hook("a")
    assert killed == []
    hook("b")
    assert killed == [signal.SIGKILL]
    assert faults.crash_hook({}) is None and faults.crash_hook({"VMNET_CRASH_AT": "x"}) is None


def test_kubevirt_mac_source_gives_the_vm_the_pod_mac(drivers, vmi, tmp_path):
    cache = Cache(str(tmp_path))
    phase1.plug(vmi, None, cache, phase1.PlugOptions(mac_source=MacSource.POD), drivers=drivers)
    assert cache.load("dhcp", "default", DhcpConfig).client_mac == POD_MAC
    assert cache.network("default").vm_mac == POD_MAC


def test_stable_mac_is_the_same_in_every_pod_and_differs_per_vm(vmi, tmp_path):
    macs = []
    for i in range(2):
        d = fake_drivers()
        link, routes = cni_pod_nic()
        other = LinkState(
            0, "eth0", "veth", MacAddress.random_local(), 1500, True, addresses=link.addresses
        )
        d.netlink.add_existing(other, routes)
        cache = Cache(str(tmp_path / f"pod{i}"))
        phase1.plug(vmi, None, cache, drivers=d)
        macs.append(
            (
                cache.network("default").vm_mac,
                cache.load("dhcp", "default", DhcpConfig).server_id,
                d.netlink.link(name="k6t-eth0").mac,
            )
        )
    assert macs[0] == macs[1]
    other_vm = manifest.parse({**BRIDGE_VM, "metadata": {"name": "vm2", "namespace": "ns1"}})
    assert stable_mac("ns1", "vm2", "default") != macs[0][0]
    assert other_vm.name == "vm2"
    assert macs[0][0].packed[0] & 0x03 == 0x02  # locally administered unicast


def test_migration_target_needs_the_bridge_annotation(vmi, drivers, tmp_path):
    from vmnet.core.errors import ConfigError

    opts = phase1.PlugOptions(migration_target=True)
    with pytest.raises(ConfigError, match="allow-pod-bridge-network-live-migration"):
        phase1.plug(vmi, None, Cache(str(tmp_path / "a")), opts, drivers=drivers)
    assert drivers.netlink.journal == []
    annotated = manifest.parse(
        {
            **BRIDGE_VM,
            "metadata": {
                "name": "vm1",
                "namespace": "ns1",
                "annotations": {"kubevirt.io/allow-pod-bridge-network-live-migration": ""},
            },
        }
    )
    phase1.plug(annotated, None, Cache(str(tmp_path / "b")), opts, drivers=drivers)
    kubevirt_macs = phase1.PlugOptions(migration_target=True, mac_source=MacSource.POD)
    with pytest.raises(ConfigError, match="would get the target pod's MAC"):
        phase1.plug(annotated, None, Cache(str(tmp_path / "c")), kubevirt_macs, drivers=drivers)


def test_hot_plug_and_hot_unplug_of_a_secondary_bridge(drivers, tmp_path):
    """A secondary network added later is plugged; marked `state: absent`, it is
    unplugged and its pod NIC given back, the primary untouched (docs/kubevirt.md, Hot-unplug)."""
    sec_link = LinkState(
        0, "pod7087ef4cd1f", "veth", MacAddress.parse("12:34:56:78:90:cd"), 1500, True
    )
    link_local = RouteState(ipaddress.ip_network("fe80::/64"), None, protocol=2, priority=256)
    drivers.netlink.add_existing(sec_link, (link_local,))
    cache = Cache(str(tmp_path))
    phase1.plug(manifest.parse(BRIDGE_VM), None, cache, drivers=drivers)
    before_secondary = view(drivers)

    def with_secondary(state=None):
        iface = {"name": "testnet1", "bridge": {}, **({"state": state} if state else {})}
        spec = {
            "domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}}, iface]}},
            "networks": [
                {"name": "default", "pod": {}},
                {"name": "testnet1", "multus": {"networkName": "testnet1"}},
            ],
        }
        return manifest.parse({**BRIDGE_VM, "spec": spec})

    plugged = phase1.plug(with_secondary(), None, cache, drivers=drivers)
    assert plugged.networks == ["default", "testnet1"]
    assert drivers.netlink.link(name="k6t-7087ef4cd1f") is not None
    assert drivers.netlink.link(name="7087ef4cd1f-nic") is not None
    unplugged = phase1.plug(with_secondary("absent"), None, cache, drivers=drivers)
    assert unplugged.unplugged == ["testnet1"] and unplugged.networks == ["default"]
    assert view(drivers) == before_secondary
    assert cache.network("testnet1") is None
    again = phase1.plug(with_secondary("absent"), None, cache, drivers=drivers)
    assert again.unplugged == [] and again.mutations == []
