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
