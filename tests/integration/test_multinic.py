"""Several NICs per VM: Multus secondaries made by real CNI plugins, one bridge and tap each."""

import contextlib
import json

import pytest
import yaml
from lxml import etree

from tests.integration.conftest import (
    guest_wire,
    needs_cni,
    needs_root,
    unplug_restores,
    vmnet,
    vmnet_dhcp,
)
from vmnet.core.names import hashed_pod_iface
from vmnet.testing import namespaces as ns
from vmnet.testing.cni import host_local
from vmnet.testing.dhcpclients import run_client
from vmnet.testing.relay import TapRelay
from vmnet.testing.snapshots import snapshot

pytestmark = [pytest.mark.netns, needs_root, needs_cni]


def manifest(secondaries):
    interfaces = [{"name": "default", "bridge": {}}]
    networks = [{"name": "default", "pod": {}}]
    for i, name in enumerate(secondaries):
        interfaces.append({"name": name, "bridge": {}, "macAddress": f"02:aa:00:00:00:{i + 1:02x}"})
        networks.append({"name": name, "multus": {"networkName": f"tenant1/{name}"}})
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "multi", "namespace": "tenant1"},
        "spec": {"domain": {"devices": {"interfaces": interfaces}}, "networks": networks},
    }


def secondary_bridge(bridge, subnet, mtu=None):
    conf = {
        "name": f"vmt-{bridge}",
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": False,
        "ipam": host_local(subnet, default_route=False),
    }
    if mtu:
        conf["mtu"] = mtu
    return conf


SECONDARY = {
    "blue": lambda: secondary_bridge("cbr1", "10.30.0.0/24", mtu=1400),
    "green": lambda: {
        "name": "vmt-ptp",
        "type": "ptp",
        "ipMasq": False,
        "ipam": host_local("10.31.0.0/24", default_route=False),
    },
    "red": lambda: {
        "name": "vmt-macvlan",
        "type": "macvlan",
        "master": "uplink0",
        "mode": "bridge",
        "ipam": host_local("10.32.0.0/24", default_route=False),
    },
}


def plug_pod(node, tmp_path, names):
    pod = node.add_pod()
    pods = {"default": pod}
    for name in names:
        pods[name] = node.add_pod(SECONDARY[name](), ifname=hashed_pod_iface(name), netns=pod.netns)
    vm = tmp_path / "vm.yaml"
    vm.write_text(yaml.safe_dump(manifest(names)))
    return pod, pods, vm


@pytest.mark.parametrize("names", [["blue"], ["blue", "green", "red"]], ids=["2nics", "4nics"])
def test_every_nic_leases_its_own_pod_ip_through_its_own_tap(node, tmp_path, names):
    pod, pods, vm = plug_pod(node, tmp_path, names)
    cache = str(tmp_path / "cache")
    before = snapshot(pod.netns)
    res = vmnet("plug", "--netns", pod.netns, "--vmi", str(vm), "--cache-dir", cache)
    assert res.returncode == 0, res.stderr
    domain = etree.fromstring(
        vmnet("domain", "--vmi", str(vm), "--cache-dir", cache, check=True).stdout.encode()
    )
    taps = {"default": "tap0", **{n: "tap" + hashed_pod_iface(n)[3:] for n in names}}
    for net, tap in taps.items():
        iface = domain.find(f".//interface/alias[@name='ua-{net}']/..")
        assert iface.find("target").get("dev") == tap
        assert int(iface.find("mtu").get("size")) == pods[net].mtu
    servers = {ln.name: ln for ln in snapshot(pod.netns).links if ln.name.startswith("k6t-")}
    assert len(servers) == len(taps)

    with vmnet_dhcp(pod.netns, vm, cache, expect=len(taps)), contextlib.ExitStack() as stack:
        for net, tap in taps.items():
            guest = ns.create_netns()
            stack.callback(ns.remove_netns, guest)
            mac = domain.find(f".//interface/alias[@name='ua-{net}']/../mac").get("address")
            guest_wire(guest, mac)
            stack.enter_context(TapRelay(pod.netns, tap, guest, "wire0"))
            workdir = tmp_path / f"client-{net}"
            workdir.mkdir()
            lease = run_client("udhcpc", guest, "eth0", workdir=str(workdir))
            assert lease.address == pods[net].address, net
            assert lease.mtu == pods[net].mtu, net
            if net != "red":  # macvlan: the VM MAC is not the macvlan's, see docs/bridge.md
                gw = pods[net].gateway
                assert (
                    ns.exec_in(
                        guest, ["ping", "-c", "1", "-W", "2", str(gw)], check=False
                    ).returncode
                    == 0
                ), net
    unplug_restores(pod.netns, vm, cache, before)


def test_sixteen_nics_plug_and_unplug_cleanly(node, tmp_path):
    pod = node.add_pod()
    names = [f"net-{i:02d}" for i in range(15)]
    for name in names:
        node.add_pod(
            secondary_bridge("cbr1", "10.30.0.0/24"), ifname=hashed_pod_iface(name), netns=pod.netns
        )
    vm = tmp_path / "vm.yaml"
    doc = manifest([])
    for _i, name in enumerate(names):
        doc["spec"]["domain"]["devices"]["interfaces"].append({"name": name, "bridge": {}})
        doc["spec"]["networks"].append({"name": name, "multus": {"networkName": name}})
    vm.write_text(yaml.safe_dump(doc))
    cache = str(tmp_path / "cache")
    before = snapshot(pod.netns)
    res = vmnet("plug", "--netns", pod.netns, "--vmi", str(vm), "--cache-dir", cache)
    assert res.returncode == 0, res.stderr
    links = {ln.name for ln in snapshot(pod.netns).links}
    assert sum(1 for n in links if n.startswith("k6t-")) == 16
    assert sum(1 for n in links if n.startswith("tap")) == 16
    again = vmnet("plug", "--netns", pod.netns, "--vmi", str(vm), "--cache-dir", cache)
    assert "(0 changes" in again.stdout
    status = vmnet("status", "--cache-dir", cache, "--json", check=True).stdout
    servers = {n["dhcp"]["serverId"] for n in json.loads(status)["networks"]}
    assert len(servers) == 16
    unplug_restores(pod.netns, vm, cache, before)


def test_hot_unplug_gives_the_secondary_back_to_its_cni(node, tmp_path):
    """`state: absent` on a plugged secondary: vmnet undoes it alone, the pod NIC
    gets its name back (so the CNI's DEL finds it), the primary keeps working."""
    pod, pods, vm = plug_pod(node, tmp_path, ["blue"])
    cache = str(tmp_path / "cache")
    before = snapshot(pod.netns)
    res = vmnet("plug", "--netns", pod.netns, "--vmi", str(vm), "--cache-dir", cache)
    assert res.returncode == 0, res.stderr
    doc = manifest(["blue"])
    doc["spec"]["domain"]["devices"]["interfaces"][1]["state"] = "absent"
    vm.write_text(yaml.safe_dump(doc))
    res = vmnet("plug", "--netns", pod.netns, "--vmi", str(vm), "--cache-dir", cache)
    assert res.returncode == 0 and "unplugged blue" in res.stdout, res.stdout + res.stderr
    links = {ln.name: ln for ln in snapshot(pod.netns).links}
    blue = hashed_pod_iface("blue")
    assert blue in links and "k6t-" + blue[3:] not in links and "tap" + blue[3:] not in links
    assert "k6t-eth0" in links and "tap0" in links
    assert links[blue] == next(ln for ln in before.links if ln.name == blue)
    status = json.loads(vmnet("status", "--cache-dir", cache, "--json", check=True).stdout)
    assert [n["network"] for n in status["networks"]] == ["default"]
    pods["blue"].close()  # CNI DEL of the secondary must succeed on the restored NIC
    unplug = vmnet("unplug", "--netns", pod.netns, "--vmi", str(vm), "--cache-dir", cache)
    assert unplug.returncode == 0, unplug.stderr
