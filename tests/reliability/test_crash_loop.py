"""Phase 1 killed (SIGKILL) after every one of its mutations, on a real CNI pod.

For the bridge and the masquerade binding, with a pod whose eth0 the real CNI
bridge plugin made, and for every k from 1 to N (N: the mutations of a full
`vmnet plug`):

1. `VMNET_CRASH_AT=k vmnet plug` dies by SIGKILL right after mutation k;
2. `vmnet plug` again exits 0 having done exactly the N - k mutations left;
3. a third `vmnet plug` reports 0 changes;
4. a guest behind the tap (relay + real udhcpc) gets its lease from the
   phase-2 responder built from the cache;
5. `VMNET_CRASH_AT=k vmnet unplug` dies after unplug's mutation k (or, past
   the end of unplug, finishes), and `vmnet unplug` again exits 0;
6. the pod's full picture (netlink, /proc/sys/net, nftables) is exactly what
   the CNI plugin left, and the cache directory holds no file.

No index exists where phase 1 cannot converge (exit 3): if one appeared, step
2 fails with the message vmnet printed.
"""

from __future__ import annotations

import os
import threading

import pytest

from tests.reliability.conftest import assert_same, changes, picture, vmnet
from vmnet import manifest
from vmnet.phases import phase2
from vmnet.protocols import resolvconf
from vmnet.protocols.dhcp4.responder import SingleLeaseResponder
from vmnet.serve import dhcp4 as server
from vmnet.store.cache import Cache
from vmnet.testing.cni import bridge_config

pytestmark = [pytest.mark.netns, pytest.mark.cni("bridge", "host-local")]
RESOLV = resolvconf.parse("nameserver 10.96.0.10\n")
SIGKILL = -9


class Responder:
    """The phase-2 DHCP responder of one cache, served on a thread of this process."""

    def __init__(self, netns: str, vmi_path: str, cache_dir: str) -> None:
        vmi = manifest.load(vmi_path)
        ((bridge, self.config),) = phase2.dhcp_configs(vmi, Cache(cache_dir), RESOLV)
        self.endpoint = server.open_endpoint(netns, bridge)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=server.serve,
            args=([(self.endpoint, SingleLeaseResponder(self.config))], self.stop),
            daemon=True,
        )
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.endpoint.close()


def lease_through_tap(guest_factory, netns: str, vmi: str, cache: str, tmp: str) -> str:
    """Serve DHCP from `cache`, lease with udhcpc behind tap0; return the address."""
    responder = Responder(netns, vmi, cache)
    try:
        guest = guest_factory(netns, "tap0", responder.config.client_mac)
        try:
            lease = guest.dhcp("udhcpc", timeout=10, workdir=tmp)
        finally:
            guest.close()
    finally:
        responder.close()
    assert lease.address == responder.config.address
    return str(lease.address)


@pytest.mark.parametrize("binding", ["bridge", "masquerade"])
def test_crash_after_every_mutation_converges(binding, node, vm_files, tmp_path, guest_factory):
    pod = node.add_pod(bridge_config())
    vmi = vm_files[binding]

    def run(command: str, cache: str, crash_at: int | None = None):
        env = {"VMNET_CRASH_AT": str(crash_at)} if crash_at else None
        return vmnet(command, "--netns", pod.netns, "--vmi", vmi, "--cache-dir", cache, env=env)

    before = picture(pod.netns)
    ref = str(tmp_path / "ref")
    total = changes(run("plug", ref))
    undo = changes(run("unplug", ref))
    assert_same(before, picture(pod.netns), "reference unplug")
    assert total >= 5 and undo >= 3, (total, undo)

    for k in range(1, total + 1):
        cache = str(tmp_path / f"k{k}")
        crashed = run("plug", cache, crash_at=k)
        assert crashed.returncode == SIGKILL, (k, crashed.stdout, crashed.stderr)
        rerun = run("plug", cache)
        assert rerun.returncode == 0, (k, rerun.stderr)
        assert changes(rerun) == total - k, (k, rerun.stdout)
        again = run("plug", cache)
        assert again.returncode == 0 and changes(again) == 0, (k, again.stdout, again.stderr)

        workdir = tmp_path / f"dhcp{k}"
        workdir.mkdir()
        lease_through_tap(guest_factory, pod.netns, vmi, cache, str(workdir))

        crashed = run("unplug", cache, crash_at=k)
        assert crashed.returncode == (SIGKILL if k <= undo else 0), (k, crashed.stderr)
        rerun = run("unplug", cache)
        assert rerun.returncode == 0, (k, rerun.stderr)
        if k > undo:
            assert changes(rerun) == 0, (k, rerun.stdout)
        assert_same(before, picture(pod.netns), f"crash at {k}")
        assert not os.path.exists(cache) or os.listdir(cache) == [], (k, os.listdir(cache))
