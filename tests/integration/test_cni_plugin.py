"""`vmnet-cni` invoked exactly as Multus invokes a KubeVirt binding-plugin attachment.

The pod's own network comes from the real CNI bridge plugin (a secondary
from a second real attachment); vmnet-cni then runs as a separate attachment:
its config on stdin with `args.cni.logicNetworkName`, `CNI_IFNAME=net1`, the
pod's identity in `CNI_ARGS`, no prevResult.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import needs_cni, needs_root
from vmnet.core.names import hashed_pod_iface
from vmnet.testing import namespaces as ns
from vmnet.testing.cni import bridge_config, host_local
from vmnet.testing.snapshots import snapshot

pytestmark = [pytest.mark.netns, needs_root, needs_cni]


def conf(network: str = "default", cache: Path | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "netbindingvmnet",
        "type": "vmnet-cni",
        "args": {"cni": {"logicNetworkName": network}},
        **extra,
    }
    if cache is not None:
        out["cacheDir"] = str(cache)
    return out


def cni(command: str, pod, config: dict[str, Any], ifname: str = "net1", **env: str):  # type: ignore[no-untyped-def]
    container = f"c{pod.netns}"
    base = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": f"/run/netns/{pod.netns}",
        "CNI_IFNAME": ifname,
        "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
        "CNI_ARGS": (
            f"IgnoreUnknown=true;K8S_POD_NAMESPACE=tenant1;K8S_POD_NAME=virt-launcher-testvm-x7k2p;"
            f"K8S_POD_INFRA_CONTAINER_ID={container};K8S_POD_UID=0b5c6f4e-1111-2222-3333-444455556666"
        ),
        "PATH": os.environ["PATH"],
    }
    base.update(env)
    res = subprocess.run(
        [sys.executable, "-m", "vmnet.cni"],
        input=json.dumps(config),
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = json.loads(res.stdout) if res.stdout.strip() else None
    return res.returncode, out, res.stderr


def test_add_check_del_as_multus_runs_it(cni_pod, tmp_path) -> None:
    config = conf(cache=tmp_path / "cni")
    before = snapshot(cni_pod.netns)
    rc, out, err = cni("ADD", cni_pod, config)
    assert rc == 0, (out, err)
    assert out == {"cniVersion": "1.0.0", "interfaces": [], "ips": [], "dns": {}}
    links = {link.name: link for link in snapshot(cni_pod.netns).links}
    assert {"k6t-eth0", "eth0-nic", "tap0"} <= set(links) and "net1" not in links
    tap_owner = ns.exec_in(cni_pod.netns, ["cat", "/sys/class/net/tap0/owner"]).stdout.strip()
    assert tap_owner == "107"
    plugged = snapshot(cni_pod.netns)
    assert cni("ADD", cni_pod, config)[0] == 0 and snapshot(cni_pod.netns) == plugged
    assert cni("CHECK", cni_pod, config)[:2] == (0, None)

    ns.exec_in(cni_pod.netns, ["ip", "link", "set", "tap0", "nomaster"])
    rc, out, _ = cni("CHECK", cni_pod, config)
    assert rc == 1 and out["code"] == 100 and "link set tap0 master" in out["details"]
    assert cni("ADD", cni_pod, config)[0] == 0  # converges again
    assert cni("CHECK", cni_pod, config)[0] == 0

    rc, out, err = cni("DEL", cni_pod, config)
    assert (rc, out) == (0, None), err
    assert snapshot(cni_pod.netns) == before
    assert not any((tmp_path / "cni").iterdir())
    assert cni("DEL", cni_pod, config)[0] == 0  # nothing left to undo
    assert cni("DEL", cni_pod, config, CNI_NETNS="")[0] == 0


def test_a_secondary_network_binds_its_own_pod_nic(node, tmp_path) -> None:
    pod = node.add_pod(bridge_config())
    blue = hashed_pod_iface("blue")
    node.add_pod(
        bridge_config(bridge="cbr-blue", ipam=host_local("10.40.0.0/24", default_route=False)),
        ifname=blue,
        netns=pod.netns,
    )
    before = snapshot(pod.netns)
    config = conf("blue", cache=tmp_path / "cni")
    rc, out, err = cni("ADD", pod, config, ifname="net2")
    assert rc == 0, (out, err)
    names = {link.name for link in snapshot(pod.netns).links}
    stem = blue[3:]
    assert {f"k6t-{stem}", f"{stem}-nic", f"tap{stem}"} <= names and "k6t-eth0" not in names
    assert cni("DEL", pod, config, ifname="net2")[0] == 0
    after = snapshot(pod.netns)
    assert after == before, after.diff(before)


def test_version_status_gc_and_bad_input(cni_pod, tmp_path) -> None:
    rc, out, _ = cni("VERSION", cni_pod, {})
    assert rc == 0 and out["supportedVersions"] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    assert cni("STATUS", cni_pod, conf(cniVersion="1.1.0"))[0] == 0
    before = snapshot(cni_pod.netns)
    cases = [
        (conf(cniVersion="9.9.9"), {}, 1, "cniVersion"),
        ({**conf(), "args": {}}, {}, 7, "logicNetworkName"),
        (conf(binding="masquerade"), {}, 7, "binding"),
        (conf(cacheDir="relative"), {}, 7, "cacheDir"),
        (conf(), {"CNI_NETNS": ""}, 4, "CNI_NETNS"),
        (conf("nosuchnet", cache=tmp_path / "cni"), {}, 7, "pod link (eth0)"),
    ]
    for config, env, code, named in cases[:-1]:
        rc, out, err = cni("ADD", cni_pod, config, **env)
        assert rc == 1 and out["code"] == code and named in out["msg"], (config, out, err)
        assert "Traceback" not in err
    assert snapshot(cni_pod.netns) == before

    gc_root = tmp_path / "gc"
    for name in ("keep-default", "gone-default"):
        (gc_root / name).mkdir(parents=True)
    valid = [{"containerID": "keep", "ifname": "net1"}]
    config = conf(cniVersion="1.1.0", cacheDir=str(gc_root), **{"cni.dev/valid-attachments": valid})
    assert cni("GC", cni_pod, config)[0] == 0
    assert sorted(p.name for p in gc_root.iterdir()) == ["keep-default"]


def test_twenty_pods_plugged_by_concurrent_adds(node, tmp_path) -> None:
    pods = [node.add_pod(bridge_config()) for _ in range(20)]
    config = json.dumps(conf(cache=tmp_path / "cni"))
    procs = []
    for pod in pods:
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": f"c{pod.netns}",
            "CNI_NETNS": f"/run/netns/{pod.netns}",
            "CNI_IFNAME": "net1",
            "CNI_ARGS": f"K8S_POD_NAMESPACE=tenant1;K8S_POD_NAME=virt-launcher-v{len(procs)}-abcde",
            "PATH": os.environ["PATH"],
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmnet.cni"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        proc.stdin.write(config)
        proc.stdin.close()
        procs.append(proc)
    results = [(p.wait(120), p.stdout.read(), p.stderr.read()) for p in procs]
    assert [rc for rc, _, _ in results] == [0] * 20, results
    for i, pod in enumerate(pods):
        assert "k6t-eth0" in {link.name for link in snapshot(pod.netns).links}
        same = f"K8S_POD_NAMESPACE=tenant1;K8S_POD_NAME=virt-launcher-v{i}-abcde"
        assert cni("DEL", pod, conf(cache=tmp_path / "cni"), CNI_ARGS=same)[0] == 0


@pytest.mark.parametrize("client", ["udhcpc", "dhclient", "dhcpcd"])
def test_vmnet_cni_and_the_sidecar_give_a_guest_its_pod_address(
    cni_pod, readable, tmp_path, client: str
) -> None:
    """The whole binding plugin: vmnet-cni ADD as Multus runs it, the sidecar as
    KubeVirt runs it (UID 107, no capabilities, in the pod), OnDefineDomain,
    then a real DHCP client behind the tap, then Shutdown and CNI DEL."""
    lease, log = _whole_plugin(cni_pod, readable, tmp_path, client)
    assert lease.address == cni_pod.address
    assert lease.router == cni_pod.gateway
    assert [str(d) for d in lease.dns] == ["10.96.0.10"]
    assert lease.mtu in (None, cni_pod.mtu)
    assert "IPv6" not in log


DUAL_STACK = bridge_config(
    ipam={
        "type": "host-local",
        "ranges": [[{"subnet": "10.24.0.0/24"}], [{"subnet": "fd00:24::/64"}]],
    }
)


def test_a_dual_stack_pod_gets_ipv4_and_one_line_about_ipv6(node, readable, tmp_path) -> None:
    """Plugin mode serves no IPv6 (router advertisements need a raw socket): the
    guest still gets its IPv4 lease, and the sidecar says so once, naming the
    address, however often KubeVirt defines the domain."""
    pod = node.add_pod(DUAL_STACK)
    v6 = next(str(ip.address.ip) for ip in pod.result.ips if ip.address.version == 6)
    lease, log = _whole_plugin(pod, readable, tmp_path, "udhcpc", defines=3)
    assert lease.address == pod.address
    lines = [line for line in log.splitlines() if "IPv6" in line]
    assert len(lines) == 1 and v6 in lines[0], log


@pytest.mark.qemu
def test_a_qemu_guest_gets_its_pod_address_through_the_plugin(cni_pod, readable, tmp_path) -> None:
    """The same, with a real VM: a kernel and busybox guest under qemu on the
    tap vmnet-cni made (owned by UID 107), with the MAC the sidecar put in the
    domain, leases the pod's address, gateway, DNS and MTU with udhcpc."""
    lease, log = _whole_plugin(cni_pod, readable, tmp_path, "qemu")
    assert "Traceback" not in log and "IPv6" not in log
    assert lease.address == cni_pod.address
    assert lease.router == cni_pod.gateway
    assert [str(d) for d in lease.dns] == ["10.96.0.10"]
    assert lease.mtu in (None, cni_pod.mtu)
    assert lease.search == ("tenant1.svc.cluster.local", "cluster.local")


def _whole_plugin(pod, readable, tmp_path, client: str, defines: int = 1):  # type: ignore[no-untyped-def]
    """vmnet-cni ADD, the sidecar as UID 107, `defines` OnDefineDomain calls, a
    real client behind the tap (`qemu`: a qemu guest running udhcpc), Shutdown,
    DEL; (the lease, the sidecar's stderr)."""
    import grpc
    from lxml import etree

    from tests.integration.conftest import as_user, guest_wire
    from tests.integration.test_sidecar import KUBEVIRT_DOMAIN, VMI
    from vmnet.protocols import hooks
    from vmnet.testing.dhcpclients import run_client
    from vmnet.testing.relay import TapRelay
    from vmnet.testing.wait import wait_until

    cni_pod = pod
    config = conf(cache=tmp_path / "cni")
    before = snapshot(cni_pod.netns)
    ports = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
    original_ports = ns.exec_in(cni_pod.netns, ["cat", ports]).stdout.strip()
    rc, out, err = cni("ADD", cni_pod, config)
    assert rc == 0, (out, err)
    assert ns.exec_in(cni_pod.netns, ["cat", ports]).stdout.strip() == "0"

    (Path("/etc/netns") / cni_pod.netns / "resolv.conf").write_text(
        "nameserver 10.96.0.10\nsearch tenant1.svc.cluster.local cluster.local\n"
    )
    sockets = Path(tempfile.mkdtemp(prefix="vmnet-hooks-"))  # UID 107 can reach it
    os.chown(sockets, 107, 107)
    env = {**os.environ, "NETWORK_BINDING_PLUGIN_NAME": "mynet"}
    argv = ["ip", "netns", "exec", cni_pod.netns, *as_user(readable), "sidecar"]
    sidecar = subprocess.Popen(
        [*argv, "--socket-dir", str(sockets)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    guest = ns.create_netns()
    try:
        line = sidecar.stdout.readline()
        assert "serving KubeVirt hooks" in line, sidecar.communicate(timeout=10)
        socket = sockets / "vmnet-mynet.sock"
        wait_until(socket.exists, timeout=10, what="the hooks socket")
        params = hooks.OnDefineDomainParams(KUBEVIRT_DOMAIN, json.dumps(VMI).encode())
        with grpc.insecure_channel(f"unix:{socket}") as channel:
            call = channel.unary_unary(hooks.callbacks_path("v1alpha3", hooks.ON_DEFINE_DOMAIN))
            for _ in range(defines):
                reply = call(hooks.encode_on_define_domain_params(params), timeout=60)
        xml = hooks.decode_on_define_domain_result(reply).domain_xml
        mac = etree.fromstring(xml).find("devices/interface/mac").get("address")

        if client == "qemu":
            from vmnet.testing.qemu import QemuGuest

            with QemuGuest(cni_pod.netns, "tap0", mac) as vm:
                lease = vm.dhcp("udhcpc")
        else:
            guest_wire(guest, mac)
            with TapRelay(cni_pod.netns, "tap0", guest, "wire0"):
                lease = run_client(client, guest, "eth0", workdir=str(tmp_path))

        with grpc.insecure_channel(f"unix:{socket}") as channel:
            channel.unary_unary(hooks.callbacks_path("v1alpha3", hooks.SHUTDOWN))(b"", timeout=5)
        assert sidecar.wait(10) == 0, sidecar.stderr.read()
        log = sidecar.stderr.read()
    finally:
        ns.remove_netns(guest)
        subprocess.run(["rm", "-rf", str(sockets)], check=True)
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.wait()
    assert cni("DEL", cni_pod, config)[0] == 0
    assert snapshot(cni_pod.netns) == before
    assert ns.exec_in(cni_pod.netns, ["cat", ports]).stdout.strip() == original_ports
    return lease, log
