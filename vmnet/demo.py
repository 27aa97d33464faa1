"""`vmnet demo`: the whole job on an embedded default, step by step.

A throwaway node and pod (eth0 from the real CNI bridge plugin with
host-local IPAM when /usr/lib/cni has them, else a veth vmnet makes itself),
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

from vmnet import manifest, phase1, phase2
from vmnet.cache import Cache
from vmnet.errors import VmnetError
from vmnet.serve import Service

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
    from vmnet.dhcp import resolvconf

    resolv = resolvconf.parse("nameserver 10.96.0.10\nsearch default.svc.cluster.local "
                              "svc.cluster.local cluster.local\n")
    service = Service(netns, phase2.dhcp_configs(vmi, cache, resolv),
                      phase2.dhcp6_configs(vmi, cache, resolv))
    try:
        yield service
    finally:
        service.stop()


def _make_pod(node: object) -> object:
    from vmnet.testing import cni

    if os.path.exists(os.path.join(cni.CNI_BIN, "bridge")):
        pod = node.add_pod(cni.bridge_config())  # type: ignore[attr-defined]
        _say("pod made by the real CNI bridge plugin (host-local IPAM)", repr(pod))
    else:
        pod = node.veth_pod()  # type: ignore[attr-defined]
        _say("no CNI plugins in /usr/lib/cni: pod made from a plain veth", repr(pod))
    return pod


def _guest(pod: object, vm_mac: str) -> tuple[str, object]:
    from vmnet.testing import netns as ns
    from vmnet.testing.relay import TapRelay

    guest = ns.create_netns()
    ns.create_veth(ns.VethEnd(guest, "wire0"), ns.VethEnd(guest, "eth0", vm_mac))
    relay = TapRelay(pod.netns, "tap0", guest, "wire0")  # type: ignore[attr-defined]
    return guest, relay


def _run() -> int:
    from vmnet.testing import netns as ns
    from vmnet.testing.cni import Node
    from vmnet.testing.dhcpclients import run_client
    from vmnet.testing.snapshot import snapshot

    workdir = tempfile.mkdtemp(prefix="vmnet-demo-")
    node = Node()
    guest: str | None = None
    relay = None
    try:
        pod = _make_pod(node)
        path = os.path.join(workdir, "vm.yaml")
        with open(path, "w") as f:
            f.write(MANIFEST)
        vmi = manifest.load(path)
        _say("manifest: VirtualMachine demo-vm, interface 'default' with bridge binding")
        before = snapshot(pod.netns)  # type: ignore[attr-defined]
        cache = Cache(os.path.join(workdir, "cache"))
        result = phase1.plug(vmi, pod.netns, cache)  # type: ignore[attr-defined]
        _say(f"phase 1: plugged ({len(result.mutations)} changes)", "\n    ".join(result.mutations))
        for warning in result.warnings:
            _say("warning", warning)
        xml = phase2.decorate(vmi, cache, None).decode()
        start = xml.find("<interface")
        block = xml[xml.rfind("\n", 0, start) + 1:xml.find("</interface>") + 12]
        _say("phase 2: domain interface", textwrap.dedent(block).replace("\n", "\n    "))
        vm_mac = str(phase2.domain_interfaces(vmi, cache)[0].mac)
        with _serving(vmi, cache, pod.netns):  # type: ignore[attr-defined]
            _say("phase 2: DHCP responder serving on k6t-eth0")
            guest, relay = _guest(pod, vm_mac)
            _say("guest namespace behind tap0", f"eth0 with the VM MAC {vm_mac}")
            lease = run_client("udhcpc", guest, "eth0", workdir=workdir)
            _say("udhcpc got its lease", f"address {lease.address}, router {lease.router}, "
                 f"dns {', '.join(map(str, lease.dns))}, mtu {lease.mtu}, "
                 f"hostname {lease.hostname}, search {' '.join(lease.search)}")
            expected = pod.address  # type: ignore[attr-defined]
            if lease.address != expected:
                raise SystemExit(f"demo: the guest got {lease.address}, expected {expected}")
            gw = str(pod.gateway)  # type: ignore[attr-defined]
            ok = ns.exec_in(guest, ["ping", "-c", "1", "-W", "2", gw], check=False).returncode == 0
            _say(f"guest pings the CNI gateway {gw}: {'ok' if ok else 'FAILED'}")
            if not ok:
                return 1
        relay.stop()  # type: ignore[attr-defined]
        relay = None
        phase1.unplug(vmi, pod.netns, cache)  # type: ignore[attr-defined]
        same = snapshot(pod.netns) == before  # type: ignore[attr-defined]
        _say(f"unplug: pod netns restored exactly as the CNI left it: {'yes' if same else 'NO'}")
        if not same:
            print(snapshot(pod.netns).diff(before))  # type: ignore[attr-defined]
            return 1
        _say("demo succeeded: the guest got the pod's IP through vmnet")
        return 0
    finally:
        if relay is not None:
            relay.stop()  # type: ignore[attr-defined]
        if guest is not None:
            ns.remove_netns(guest)
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
