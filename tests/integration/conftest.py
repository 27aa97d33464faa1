import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from vmnet.testing.cni import bridge_config

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
needs_cni = pytest.mark.skipif(
    not os.path.exists("/usr/lib/cni/bridge"),
    reason="needs the CNI bridge plugin (containernetworking-plugins)",
)

BRIDGE_VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: testvm
  namespace: tenant1
spec:
  template:
    spec:
      hostname: testvm
      domain:
        devices:
          interfaces:
          - name: default
            bridge: {}
      networks:
      - name: default
        pod: {}
"""


def guest_wire(guest_ns, mac):
    """The guest's NIC `eth0` (with the VM MAC) and `wire0`, the relay's end.

    TX checksum offload is turned off on eth0: the relay reads frames from a
    packet socket, where an offloaded TCP checksum is still incomplete, and
    writes them to a tap that has no vnet header to say so (qemu's virtio NIC
    would carry that header).
    """
    from vmnet.testing import namespaces as ns

    ns.create_veth(ns.VethEnd(guest_ns, "wire0"), ns.VethEnd(guest_ns, "eth0", mac))
    ns.exec_in(guest_ns, ["ethtool", "-K", "eth0", "tx", "off"])


@contextlib.contextmanager
def vmnet_dhcp(netns, vm, cache, resolv_text="nameserver 10.96.0.10\n", *, expect=1):
    """`vmnet dhcp` as its own process; waits for `expect` "serving" lines.

    On exit it sends SIGTERM and checks the server exits 0.
    """
    resolv = pathlib.Path(cache).with_name("resolv.conf")
    resolv.write_text(resolv_text)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vmnet",
            "dhcp",
            "--netns",
            netns,
            "--vmi",
            str(vm),
            "--cache-dir",
            str(cache),
            "--resolv-conf",
            str(resolv),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(expect):
            assert "serving" in server.stdout.readline()
        yield server
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0, server.stderr.read()


def unplug_restores(netns, vm, cache, before):
    """`vmnet unplug` succeeds and the pod netns equals the snapshot `before`."""
    from vmnet.testing.snapshots import snapshot

    res = vmnet("unplug", "--netns", netns, "--vmi", str(vm), "--cache-dir", str(cache))
    assert res.returncode == 0, res.stderr
    after = snapshot(netns)
    assert after == before, after.diff(before)


def vmnet(*args, check=False, timeout=60):
    """Run the vmnet command as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "vmnet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


@pytest.fixture
def cni_pod(node):
    """A pod whose eth0 comes from the real CNI bridge plugin with host-local IPAM."""
    return node.add_pod(bridge_config())


@pytest.fixture
def vm_file(tmp_path):
    path = tmp_path / "vm.yaml"
    path.write_text(BRIDGE_VM)
    return path


def lease_through_tap(pod, cache, workdir, dns=("10.96.0.10",), search="tenant1.svc.cluster.local"):
    """A real udhcpc behind the pod's tap0 gets the pod's address and the pod's DNS."""
    import json

    from vmnet.testing import namespaces as ns
    from vmnet.testing.dhcpclients import run_client
    from vmnet.testing.relay import TapRelay

    status = vmnet("status", "--cache-dir", str(cache), "--json", check=True)
    vm_mac = json.loads(status.stdout)["networks"][0]["vmMac"]
    guest = ns.create_netns()
    try:
        guest_wire(guest, vm_mac)
        with TapRelay(pod.netns, "tap0", guest, "wire0"):
            lease = run_client("udhcpc", guest, "eth0", workdir=str(workdir))
        assert lease.address == pod.address
        assert [str(d) for d in lease.dns] == list(dns)
        assert search in lease.search
        return lease
    finally:
        ns.remove_netns(guest)


PHASE2_PYTHON = pathlib.Path(os.environ.get("VMNET_PHASE2_VENV", "/var/cache/vmnet/phase2-venv"))


@pytest.fixture
def readable():
    """A directory every user can read, holding a copy of the vmnet package
    (as a node would install it) and the manifest."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="vmnet-u107-"))
    os.chmod(root, 0o755)
    shutil.copytree(pathlib.Path(__file__).resolve().parents[2] / "vmnet", root / "vmnet")
    (root / "vm.yaml").write_text(BRIDGE_VM)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    yield root
    shutil.rmtree(root)


def as_user(readable, caps: tuple[str, ...] = (), uid: int = 107) -> list:
    """argv prefix: `python -m vmnet` as `uid` with exactly `caps`, as KubeVirt runs it."""
    python = PHASE2_PYTHON / "bin" / "python"
    assert python.exists(), f"{python} is missing: `make venv` builds it"
    spec = ",".join(["-all", *(f"+{c}" for c in caps)])
    return [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        f"--inh-caps={spec}",
        f"--ambient-caps={spec}",
        f"--bounding-set={spec}",
        "env",
        f"PYTHONPATH={readable}",
        str(python),
        "-m",
        "vmnet",
    ]
