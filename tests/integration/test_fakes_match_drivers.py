"""The stateful fakes behave like the real drivers: one scenario, both ways.

A pod NIC from the real CNI bridge plugin is read once; the fakes are seeded
with exactly that NIC and its routes. Then the same plug, a second plug and
an unplug run on the fakes and on the real namespace, and what a user would
compare must agree: the changes made (in order), the links (name, kind, MTU,
up, master, addresses), the routes through them, and the sysctls touched.
"""

from __future__ import annotations

import pytest

from vmnet import manifest
from vmnet.apply.drivers import Drivers, real
from vmnet.apply.drivers.fake import fake_drivers
from vmnet.phases import phase1
from vmnet.plan.state import RT_TABLE_MAIN
from vmnet.store.cache import Cache
from vmnet.testing.cnidata import bridge_config

pytestmark = [pytest.mark.netns, pytest.mark.cni("bridge", "host-local")]

VMS = {
    "bridge": {"bridge": {}},
    "masquerade": {"masquerade": {}},
}
DUAL_STACK = bridge_config(
    ipam={
        "type": "host-local",
        "ranges": [[{"subnet": "10.22.0.0/24"}], [{"subnet": "fd00:22::/64"}]],
    }
)


def _vmi(binding: str) -> manifest.Vmi:
    return manifest.parse(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm1", "namespace": "ns1"},
            "spec": {
                "domain": {"devices": {"interfaces": [{"name": "default", **VMS[binding]}]}},
                "networks": [{"name": "default", "pod": {}}],
            },
        }
    )


def view(drivers: Drivers, keys: list[str]) -> tuple[object, ...]:
    """Links (without the kernel's own lo), routes by link name, sysctls."""
    links = [link for link in drivers.netlink.links() if link.name != "lo"]
    names = {link.index: link.name for link in links}
    shown = sorted(
        (
            link.name,
            link.kind,
            link.mtu,
            link.up,
            names.get(link.master) if link.master else None,
            sorted(str(a.interface) for a in link.addresses if not _kernel_ll(a.interface)),
        )
        for link in links
    )
    routes = sorted(
        (str(r.destination), str(r.gateway), names.get(r.oif or 0))
        for r in drivers.netlink.routes()
        if r.table == RT_TABLE_MAIN and r.oif in names and not r.destination.is_link_local
    )
    return shown, routes, {k: drivers.sysctl.get(k) for k in keys}


def _kernel_ll(interface: object) -> bool:
    return getattr(interface, "version", 4) == 6 and interface.ip.is_link_local  # type: ignore[attr-defined]


@pytest.mark.parametrize("pod", ["bridge", DUAL_STACK], ids=["ipv4", "dual-stack"], indirect=True)
@pytest.mark.parametrize("binding", sorted(VMS))
def test_plug_replug_unplug_agree_on_fakes_and_the_kernel(pod, tmp_path, binding: str) -> None:
    vmi = _vmi(binding)
    kernel = real(pod.netns)
    try:
        nic = kernel.netlink.link(name="eth0")
        routes = tuple(r for r in kernel.netlink.routes() if r.oif == nic.index)
        fakes = fake_drivers()
        fakes.netlink.add_existing(nic, routes)
        keys = ["net/ipv4/conf/all/arp_ignore", "net/ipv4/ip_forward"]
        for key in keys:
            fakes.sysctl.values[key] = kernel.sysctl.get(key)
        assert view(fakes, keys) == view(kernel, keys)

        steps = []
        for drivers, name in ((fakes, "fake"), (kernel, "real")):
            cache = Cache(str(tmp_path / name))
            first = phase1.plug(vmi, None, cache, drivers=drivers).mutations
            plugged = view(drivers, keys)
            again = phase1.plug(vmi, None, cache, drivers=drivers).mutations
            gone = phase1.unplug(vmi, None, cache, drivers=drivers).mutations
            steps.append((first, plugged, again, gone, view(drivers, keys)))
        fake_steps, real_steps = steps
        assert len(real_steps[0]) >= 5 and "k6t-eth0" in str(real_steps[1])
        assert fake_steps[0] == real_steps[0]  # the same changes, in the same order
        assert fake_steps[1] == real_steps[1]  # the same pod, plugged
        assert fake_steps[2] == real_steps[2] == []  # a second plug changes nothing
        assert fake_steps[3] == real_steps[3]  # the same undo
        assert fake_steps[4] == real_steps[4]  # the same pod, given back
    finally:
        kernel.close()
