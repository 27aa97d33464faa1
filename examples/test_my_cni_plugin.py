"""How a CNI project checks its own network configuration with vmnet.testing.

Only the pytest plugin is used: no Kubernetes, no KubeVirt. The `node`
fixture plays the node, `pod`/`pod_factory` run the real plugin binary from
the CNI search path (`--cni-path`, else $CNI_PATH, else
/opt/cni/bin:/usr/lib/cni) with CNI ADD (and DEL at the end), and
`guest_factory` wires a guest namespace to the VM's tap the way qemu would.

Run it as root (`--vmnet-strict`: a missing plugin fails instead of skipping):

    pytest -p vmnet.testing --vmnet-strict examples/test_my_cni_plugin.py

or put `pytest_plugins = ["vmnet.testing"]` in the project's conftest.py.
"""

from __future__ import annotations

import ipaddress
import json

import pytest

from vmnet.testing import namespaces as ns
from vmnet.testing.cni import CniPod, bridge_config, host_local
from vmnet.testing.plugging import bridge_manifest

MY_SUBNET = "10.244.1.0/24"
MY_CONFIG = bridge_config(
    bridge="mybr0", mtu=1450, ipam=host_local(MY_SUBNET, gateway="10.244.1.1", default_route=False)
)

pytestmark = [pytest.mark.netns, pytest.mark.cni("bridge", "host-local")]


@pytest.mark.parametrize("pod", [MY_CONFIG], indirect=True, ids=["my-config"])
def test_pod_gets_an_address_mtu_and_default_route(pod: CniPod) -> None:
    assert pod.address in ipaddress.ip_network(MY_SUBNET)
    assert str(pod.gateway) == "10.244.1.1"
    assert pod.mtu == 1450
    routes = json.loads(
        ns.exec_in(pod.netns, ["ip", "-j", "-4", "route", "show", "default"]).stdout
    )
    assert routes == [{"dst": "default", "gateway": "10.244.1.1", "dev": "eth0", "flags": []}]


def test_two_pods_on_one_node_reach_each_other(pod_factory) -> None:
    first, second = pod_factory(MY_CONFIG), pod_factory(MY_CONFIG)
    assert first.address != second.address
    ns.exec_in(first.netns, ["ping", "-c1", "-W5", str(second.address.ip)])


@pytest.mark.parametrize(
    "plugged",
    [
        {"manifest": bridge_manifest("bridge"), "pod": MY_CONFIG},
        {"manifest": bridge_manifest("masquerade"), "pod": MY_CONFIG},
    ],
    indirect=True,
    ids=["bridge", "masquerade"],
)
def test_vm_behind_my_pod_gets_its_lease_and_reaches_my_gateway(plugged, guest_factory) -> None:
    """vmnet's bridge and masquerade bindings on a pod made with my config."""
    guest = guest_factory(plugged, plugged.tap, plugged.mac)
    lease = guest.dhcp("udhcpc", timeout=20)
    assert lease.address == plugged.address
    assert guest.ping(plugged.gateway)
    assert guest.ping("10.244.1.1")  # my node-side gateway, directly or through NAT
