"""What an operator meets on the first day, with real CNI pods and real clients.

- Phase 2 as the launcher user: phase 1 (root) hands the cache to UID 107;
  `status`, `domain` and `dhcp` then run as UID 107 through `setpriv`, with
  only the capabilities README.md documents, from a virtualenv of Debian's
  own python that UID 107 can run (`make venv` builds it). A missing
  capability is one line naming it, exit 2.
- The DNS a guest gets is the pod's, whether `vmnet dhcp` runs inside the pod
  (no `--netns`) or from the node against /proc/PID/ns/net.
- Concurrent plugs on one pod serialise and all succeed.
- A manifest and a cache of different VMs are refused before anything
  changes; a pod plugged under another cache directory is recognised.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    BRIDGE_VM,
    as_user,
    lease_through_tap,
    needs_cni,
    needs_root,
    vmnet,
)
from vmnet.testing import namespaces as ns
from vmnet.testing.snapshots import snapshot

pytestmark = [pytest.mark.netns, needs_root, needs_cni]

POD_RESOLV = "nameserver 10.96.0.10\nsearch tenant1.svc.cluster.local svc.cluster.local\n"
NODE_RESOLV_MARK = "nameserver 10.96.0.10"  # the node's own file must not say this


def run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/")


def plug(pod_netns: str, vm: Path, cache: Path, *extra: str) -> None:
    res = vmnet("plug", "--netns", pod_netns, "--vmi", str(vm), "--cache-dir", str(cache), *extra)
    assert res.returncode == 0, res.stderr


def test_phase2_runs_as_uid_107_with_the_documented_capabilities(
    cni_pod, readable, tmp_path
) -> None:
    vm, cache = readable / "vm.yaml", readable / "cache"
    plug(cni_pod.netns, vm, cache, "--tap-owner", "107")
    assert (os.stat(cache).st_uid, stat.S_IMODE(os.stat(cache).st_mode)) == (107, 0o700)
    for record in cache.glob("*.json"):
        st = os.stat(record)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (107, 107, 0o600), record

    status = run([*as_user(readable), "status", "--cache-dir", str(cache)])
    assert status.returncode == 0 and "finished" in status.stdout, status.stderr
    domain = run([*as_user(readable), "domain", "--vmi", str(vm), "--cache-dir", str(cache)])
    assert domain.returncode == 0 and '<target dev="tap0"' in domain.stdout, domain.stderr
    other = run([*as_user(readable, uid=108), "status", "--cache-dir", str(cache)])
    assert other.returncode == 2 and "Permission denied" in other.stderr, other.stderr

    # inside the pod, as `ip netns exec` puts a process there (its /etc/netns files included)
    (Path("/etc/netns") / cni_pod.netns / "resolv.conf").write_text(POD_RESOLV)
    in_pod = ["ip", "netns", "exec", cni_pod.netns]
    dhcp = ["dhcp", "--vmi", str(vm), "--cache-dir", str(cache)]
    for caps, missing in (
        ((), "CAP_NET_BIND_SERVICE"),
        (("net_bind_service",), "CAP_NET_RAW"),
    ):
        res = run([*in_pod, *as_user(readable, caps), *dhcp])
        assert res.returncode == 2, res.stderr
        assert len(res.stderr.splitlines()) == 1 and f"needs {missing}" in res.stderr

    with serving([*in_pod, *as_user(readable, ("net_bind_service", "net_raw")), *dhcp]):
        lease_through_tap(cni_pod, cache, tmp_path)


@contextlib.contextmanager
def serving(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    """`vmnet dhcp` running until the block ends; it must stop with exit 0."""
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "serving" in server.stdout.readline(), server.stderr
        yield server
    finally:
        server.terminate()
        assert server.wait(10) == 0, server.stderr.read()


def test_dhcp_from_the_node_serves_the_pods_dns(cni_pod, vm_file, tmp_path) -> None:
    """`--netns /proc/PID/ns/net` takes resolv.conf from that process's root."""
    assert NODE_RESOLV_MARK not in Path("/etc/resolv.conf").read_text()
    cache = tmp_path / "cache"
    plug(cni_pod.netns, vm_file, cache)
    named = Path("/etc/netns") / cni_pod.netns / "resolv.conf"
    named.write_text(POD_RESOLV)
    # a pod process: its own mount namespace shows the pod's resolv.conf at /etc
    pod_process = subprocess.Popen(["ip", "netns", "exec", cni_pod.netns, "sleep", "600"])
    try:
        _wait_for_pod_process(pod_process.pid)
        # from now on only the pod process's root has the pod's file (its mount
        # holds the old inode); the node's copy says something else
        other = named.with_name("resolv.conf.new")
        other.write_text("nameserver 192.0.2.53\n")
        os.replace(other, named)
        netns = f"/proc/{pod_process.pid}/ns/net"
        argv = [sys.executable, "-m", "vmnet", "dhcp", "--netns", netns]
        with serving([*argv, "--vmi", str(vm_file), "--cache-dir", str(cache)]):
            lease_through_tap(cni_pod, cache, tmp_path)
    finally:
        pod_process.kill()
        pod_process.wait()


def _wait_for_pod_process(pid: int) -> None:
    """Until `ip netns exec` has exec'd sleep (its mounts are then in place)."""
    from vmnet.testing.wait import wait_until

    wait_until(
        lambda: Path(f"/proc/{pid}/comm").read_text().strip() == "sleep",
        timeout=10,
        what="the pod process to start",
    )


def test_concurrent_plugs_on_one_pod_serialise(cni_pod, vm_file, tmp_path) -> None:
    """5 plugs at once (a controller retrying), 20 rounds: every one succeeds."""
    cache = tmp_path / "cache"
    argv = [sys.executable, "-m", "vmnet", "plug", "--netns", cni_pod.netns]
    argv += ["--vmi", str(vm_file), "--cache-dir", str(cache)]
    before = snapshot(cni_pod.netns)
    for round_ in range(20):
        procs = [
            subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(5)
        ]
        results = [(p.wait(60), *p.communicate()) for p in procs]
        assert [rc for rc, _, _ in results] == [0] * 5, (round_, results)
        changed = [out for _, out, _ in results if "(0 changes" not in out]
        assert len(changed) == 1, (round_, results)  # one did the work, four found it done
        res = vmnet(
            "unplug", "--netns", cni_pod.netns, "--vmi", str(vm_file), "--cache-dir", str(cache)
        )
        assert res.returncode == 0, res.stderr
    assert snapshot(cni_pod.netns) == before


def test_another_vms_cache_is_refused_before_anything_changes(cni_pod, vm_file, tmp_path) -> None:
    cache = tmp_path / "cache"
    plug(cni_pod.netns, vm_file, cache)
    other = tmp_path / "vm2.yaml"
    other.write_text(BRIDGE_VM.replace("name: testvm", "name: vm2"))
    before = snapshot(cni_pod.netns)
    files = {p.name: p.read_bytes() for p in cache.glob("*.json")}
    for argv in (
        ["unplug", "--netns", cni_pod.netns],
        ["plug", "--netns", cni_pod.netns],
        ["domain"],
        ["dhcp", "--netns", cni_pod.netns],
    ):
        res = vmnet(*argv, "--vmi", str(other), "--cache-dir", str(cache))
        assert res.returncode == 2, (argv, res.stderr)
        assert len(res.stderr.splitlines()) == 1, res.stderr
        assert "the manifest is VMI tenant1/vm2, but cache" in res.stderr
        assert "tenant1/testvm" in res.stderr
    assert snapshot(cni_pod.netns) == before
    assert {p.name: p.read_bytes() for p in cache.glob("*.json")} == files


def test_a_new_vmi_of_the_same_name_is_told_the_cache_is_stale(cni_pod, tmp_path) -> None:
    vm = tmp_path / "vm.yaml"
    vm.write_text(BRIDGE_VM.replace("namespace: tenant1", "namespace: tenant1\n  uid: aaaa-1"))
    cache = tmp_path / "cache"
    plug(cni_pod.netns, vm, cache)
    vm.write_text(BRIDGE_VM.replace("namespace: tenant1", "namespace: tenant1\n  uid: bbbb-2"))
    res = vmnet("unplug", "--netns", cni_pod.netns, "--vmi", str(vm), "--cache-dir", str(cache))
    assert res.returncode == 2 and "uid bbbb-2" in res.stderr and "uid aaaa-1" in res.stderr


def test_a_pod_plugged_under_another_cache_dir_is_recognised(cni_pod, vm_file, tmp_path) -> None:
    plug(cni_pod.netns, vm_file, tmp_path / "first")
    before = snapshot(cni_pod.netns)
    res = vmnet(
        "plug", "--netns", cni_pod.netns, "--vmi", str(vm_file), "--cache-dir", str(tmp_path / "x")
    )
    assert res.returncode == 2, res.stderr
    assert "already bound by vmnet" in res.stderr and "another --cache-dir" in res.stderr
    assert "is missing" not in res.stderr
    assert snapshot(cni_pod.netns) == before


def test_dhcp_logs_lease_activity_and_stops_when_its_bridge_is_gone(
    cni_pod, vm_file, tmp_path
) -> None:
    cache = tmp_path / "cache"
    plug(cni_pod.netns, vm_file, cache)
    # a named namespace's resolv.conf is the one `ip netns exec` would show
    (Path("/etc/netns") / cni_pod.netns / "resolv.conf").write_text(POD_RESOLV)
    argv = [sys.executable, "-m", "vmnet", "dhcp", "-v", "--netns", cni_pod.netns]
    server = subprocess.Popen(
        [*argv, "--vmi", str(vm_file), "--cache-dir", str(cache)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "serving" in server.stdout.readline()
        lease_through_tap(cni_pod, cache, tmp_path)
        ns.exec_in(cni_pod.netns, ["ip", "link", "del", "k6t-eth0"])
        assert server.wait(10) == 3
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    log = server.stderr.read()
    assert f"OFFER {cni_pod.address.ip}" in log and f"ACK {cni_pod.address.ip}" in log, log
    assert "k6t-eth0 is gone" in log.splitlines()[-1], log


@pytest.mark.parametrize("binding", ["bridge", "masquerade"])
def test_dry_run_lists_exactly_what_plug_then_does_and_check_compares(
    node, tmp_path, binding: str
) -> None:
    import json

    from vmnet.testing.cni import bridge_config

    pod = node.add_pod(bridge_config())
    vm = tmp_path / "vm.yaml"
    vm.write_text(BRIDGE_VM.replace("bridge: {}", f"{binding}: {{}}"))
    cache = tmp_path / "cache"
    common = ["--netns", pod.netns, "--vmi", str(vm), "--cache-dir", str(cache)]
    before = snapshot(pod.netns)

    check = vmnet("check", *common)
    assert check.returncode == 1 and "not plugged" in check.stdout, check.stdout + check.stderr
    dry = vmnet("plug", "--dry-run", "--json", *common)
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["dryRun"] and len(planned["changes"]) >= 5
    assert snapshot(pod.netns) == before and not cache.exists()

    real = vmnet("plug", "--json", *common)
    assert real.returncode == 0, real.stderr
    done = json.loads(real.stdout)
    assert done["changes"] == planned["changes"] and done["networks"] == ["default"]

    check = vmnet("check", "--json", *common)
    assert check.returncode == 0 and json.loads(check.stdout)["inSync"], check.stdout
    again = vmnet("plug", "--dry-run", *common)
    assert "(0 changes" in again.stdout, again.stdout

    ns.exec_in(pod.netns, ["ip", "link", "set", "tap0", "nomaster"])  # someone tampers
    check = vmnet("check", *common)
    assert check.returncode == 1 and "link set tap0 master" in check.stdout, check.stdout
    assert snapshot(pod.netns) != before
    res = vmnet("unplug", *common)
    assert res.returncode == 0, res.stderr
