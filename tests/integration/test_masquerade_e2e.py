"""Masquerade end to end: real CNI pod, vmnet commands, udhcpc behind the tap, real NAT."""

import json

import pytest

from tests.integration import tcp
from tests.integration.conftest import (
    guest_wire,
    needs_cni,
    needs_root,
    unplug_restores,
    vmnet,
    vmnet_dhcp,
)
from vmnet.testing import namespaces as ns
from vmnet.testing.dhcpclients import run_client
from vmnet.testing.relay import TapRelay
from vmnet.testing.snapshots import snapshot

pytestmark = [pytest.mark.netns, needs_root, needs_cni]

MASQ_VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: masqvm
  namespace: tenant1
spec:
  domain:
    devices:
      interfaces:
      - name: default
        masquerade: {}
        ports:
        - name: http
          port: 80
  networks:
  - name: default
    pod: {}
"""


@pytest.fixture
def remote(node):
    """A namespace outside the pod, routed through the node: 192.0.2.2."""
    name = ns.create_netns()
    ns.create_veth(ns.VethEnd(node.netns, "toremote"), ns.VethEnd(name, "eth0"))
    ns.ip_batch(node.netns, ["addr add 192.0.2.1/24 dev toremote"])
    ns.ip_batch(name, ["addr add 192.0.2.2/24 dev eth0", "route add default via 192.0.2.1"])
    yield name
    ns.remove_netns(name)


@pytest.fixture
def guest_ns():
    name = ns.create_netns()
    yield name
    ns.remove_netns(name)


def test_masquerade_nat_and_port_forwarding(node, cni_pod, remote, guest_ns, tmp_path):
    vm = tmp_path / "vm.yaml"
    vm.write_text(MASQ_VM)
    cache = str(tmp_path / "cache")
    before = snapshot(cni_pod.netns)
    res = vmnet("plug", "--netns", cni_pod.netns, "--vmi", str(vm), "--cache-dir", cache)
    assert res.returncode == 0, res.stderr
    again = vmnet("plug", "--netns", cni_pod.netns, "--vmi", str(vm), "--cache-dir", cache)
    assert "(0 changes" in again.stdout, again.stdout + again.stderr
    listeners = []
    with vmnet_dhcp(cni_pod.netns, vm, cache):
        status = json.loads(vmnet("status", "--cache-dir", cache, "--json", check=True).stdout)
        guest_wire(guest_ns, status["networks"][0]["vmMac"])
        with TapRelay(cni_pod.netns, "tap0", guest_ns, "wire0"):
            lease = run_client("udhcpc", guest_ns, "eth0", workdir=str(tmp_path))
            assert str(lease.address) == "10.0.2.2/24"
            assert str(lease.router) == "10.0.2.1"
            # egress: the CNI gateway and a remote host see the pod IP, not 10.0.2.2
            assert (
                ns.exec_in(
                    guest_ns, ["ping", "-c", "1", "-W", "2", str(cni_pod.gateway)], check=False
                ).returncode
                == 0
            )
            listeners.append(tcp.listen(remote, 7000))
            assert tcp.connect(guest_ns, "192.0.2.2", 7000) == str(cni_pod.address.ip)
            # ingress: port 80 is forwarded to the guest, 8080 is not in `ports`
            listeners.append(tcp.listen(guest_ns, 80))
            listeners.append(tcp.listen(guest_ns, 8080))
            seen = tcp.connect(node.netns, cni_pod.address.ip, 80)
            assert seen is not None and seen != "ERROR"
            assert tcp.connect(node.netns, cni_pod.address.ip, 8080) is None
        for proc in listeners:
            tcp.stop(proc)
    unplug_restores(cni_pod.netns, vm, cache, before)
    tables = ns.exec_in(cni_pod.netns, ["nft", "list", "tables"]).stdout
    assert "vmnet_nat" not in tables
