"""`python -m vmnet.testing.demo` (`make demo`): the whole job on an embedded default, step by step.

A throwaway node and pod (eth0 from the real CNI bridge plugin with
host-local IPAM when the CNI search path has them, else a veth vmnet makes itself),
phase 1 with the bridge binding, phase 2 (domain XML and the DHCP responder),
a guest namespace behind the tap running busybox udhcpc, a ping to the CNI
gateway, then unplug and a check that the pod is exactly as the CNI left it.
Everything is removed at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterator

from vmnet import manifest
from vmnet.core.errors import VmnetError
from vmnet.phases import phase1, phase2
from vmnet.serve.service import Service
from vmnet.store.cache import Cache
from vmnet.testing import cni
from vmnet.testing.cni import CniPod, Node
from vmnet.testing.guest import Guest
from vmnet.testing.snapshots import snapshot

MANIFEST = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: demo-vm
  namespace: default
spec:
  template:
    spec:
      domain:
        devices:
          interfaces:
          - name: default
            bridge: {}
      networks:
      - name: default
        pod: {}
"""


def _say(step: str, detail: str = "") -> None:
    print(f"==> {step}" + (f"\n    {detail}" if detail else ""), flush=True)


@contextlib.contextmanager
def _serving(vmi: manifest.Vmi, cache: Cache, netns: str) -> Iterator[Service]:
    from vmnet.protocols import resolvconf

    resolv = resolvconf.parse(
        "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n"
    )
    service = Service(
        netns, phase2.dhcp_configs(vmi, cache, resolv), phase2.dhcp6_configs(vmi, cache, resolv)
    )
    try:
        yield service
    finally:
        service.stop()


def _make_pod(node: Node) -> CniPod:
    if cni.find_plugin("bridge") and cni.find_plugin("host-local"):
        pod = node.add_pod(cni.bridge_config())
        _say("pod made by the real CNI bridge plugin (host-local IPAM)", repr(pod))
    else:
        pod = node.veth_pod()
        _say(
            f"no CNI plugins in {':'.join(cni.search_path())}: pod made from a plain veth",
            repr(pod),
        )
    return pod


def _show_domain(vmi: manifest.Vmi, cache: Cache) -> None:
    xml = phase2.decorate(vmi, cache, None).decode()
    start = xml.find("<interface")
    block = xml[xml.rfind("\n", 0, start) + 1 : xml.find("</interface>") + 12]
    _say("phase 2: domain interface", textwrap.dedent(block).replace("\n", "\n    "))


def _lease_and_ping(pod: CniPod, vmi: manifest.Vmi, cache: Cache, workdir: str) -> bool:
    vm_mac = phase2.domain_interfaces(vmi, cache)[0].mac
    with _serving(vmi, cache, pod.netns), Guest(pod.netns, "tap0", vm_mac) as guest:
        _say("phase 2: DHCP responder serving on k6t-eth0")
        _say("guest namespace behind tap0", f"eth0 with the VM MAC {vm_mac}")
        lease = guest.dhcp("udhcpc", workdir=workdir)
        _say(
            "udhcpc got its lease",
            f"address {lease.address}, router {lease.router}, "
            f"dns {', '.join(map(str, lease.dns))}, mtu {lease.mtu}, "
            f"hostname {lease.hostname}, search {' '.join(lease.search)}",
        )
        if lease.address != pod.address:
            _say(f"FAILED: the guest got {lease.address}, the pod has {pod.address}")
            return False
        ok = guest.ping(pod.gateway)
        _say(f"guest pings the CNI gateway {pod.gateway}: {'ok' if ok else 'FAILED'}")
        return ok


def _run() -> int:
    workdir = tempfile.mkdtemp(prefix="vmnet-demo-")
    node = Node()
    try:
        pod = _make_pod(node)
        path = os.path.join(workdir, "vm.yaml")
        with open(path, "w") as f:
            f.write(MANIFEST)
        vmi = manifest.load(path)
        _say("manifest: VirtualMachine demo-vm, interface 'default' with bridge binding")
        before = snapshot(pod.netns)
        cache = Cache(os.path.join(workdir, "cache"))
        result = phase1.plug(vmi, pod.netns, cache)
        _say(f"phase 1: plugged ({len(result.mutations)} changes)", "\n    ".join(result.mutations))
        for warning in result.warnings:
            _say("warning", warning)
        _show_domain(vmi, cache)
        if not _lease_and_ping(pod, vmi, cache, workdir):
            return 1
        phase1.unplug(vmi, pod.netns, cache)
        after = snapshot(pod.netns)
        _say(
            f"unplug: pod netns restored exactly as the CNI left it: "
            f"{'yes' if after == before else 'NO'}"
        )
        if after != before:
            print("\n".join(after.diff(before)))
            return 1
        _say("demo succeeded: the guest got the pod's IP through vmnet")
        return 0
    finally:
        node.close()
        shutil.rmtree(workdir, ignore_errors=True)


def run() -> int:
    if os.geteuid() != 0:
        print("vmnet demo: needs root (network namespaces); run `sudo make demo`", file=sys.stderr)
        return 2
    try:
        return _run()
    except VmnetError as err:
        print(f"vmnet demo: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    raise SystemExit(run())
