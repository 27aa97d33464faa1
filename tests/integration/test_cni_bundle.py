"""The self-contained vmnet-cni a node runs: built, installed, run with nothing else.

`deploy/bundle.py` freezes vmnet-cni with its own Python runtime;
`deploy/install-cni.sh` (the DaemonSet's installer) puts it on the "node"
(a scratch directory standing for /opt/cni/bin and /opt/vmnet). Multus then
runs it with the bare CNI environment: no virtualenv, no PYTHONPATH, no
Python on PATH. It must plug a real CNI pod, pass CHECK, and give the pod
back exactly on DEL.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import needs_cni, needs_root
from vmnet.testing.snapshots import snapshot

pytestmark = [pytest.mark.netns, needs_root, needs_cni]

ROOT = Path(__file__).resolve().parents[2]
BUNDLE_PYTHON = Path("/var/cache/vmnet/bundle-venv/bin/python")  # `make venv` builds it


@pytest.fixture(scope="module")
def node_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/opt/cni/bin of a node where install-cni.sh put a freshly built bundle."""
    if not BUNDLE_PYTHON.exists():
        pytest.skip(f"needs {BUNDLE_PYTHON} with PyInstaller (make venv)")
    work = tmp_path_factory.mktemp("bundle")
    subprocess.run(
        [str(BUNDLE_PYTHON), str(ROOT / "deploy" / "bundle.py"), "--dist", str(work / "dist")],
        check=True,
        capture_output=True,
        cwd="/",
    )
    host = work / "host"
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "SRC": str(work / "dist" / "vmnet-cni"),
        "HOST_CNI_BIN": str(host / "opt/cni/bin"),
        "HOST_OPT": str(host / "opt/vmnet"),
        "NODE_OPT": str(host / "opt/vmnet"),
        "INSTALL_ONLY": "1",
    }
    for _ in range(2):  # an upgrade: the second install replaces the first
        done = subprocess.run(
            ["/bin/sh", str(ROOT / "deploy" / "install-cni.sh")],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert "vmnet-cni 0.1.0 installed" in done.stdout
    assert len(list((host / "opt/vmnet").iterdir())) == 1  # the old bundle is gone
    return host / "opt/cni/bin"


def _run(plugin: Path, command: str, pod: Any, config: dict[str, Any]) -> tuple[int, Any]:
    env = {  # exactly what a container runtime gives a plugin, nothing more
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": f"c{pod.netns}",
        "CNI_NETNS": f"/run/netns/{pod.netns}",
        "CNI_IFNAME": "net1",
        "CNI_PATH": str(plugin.parent),
        "CNI_ARGS": "IgnoreUnknown=true;K8S_POD_NAMESPACE=tenant1;"
        "K8S_POD_NAME=virt-launcher-testvm-x7k2p",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    res = subprocess.run(
        [str(plugin)], input=json.dumps(config), env=env, capture_output=True, text=True, cwd="/"
    )
    return res.returncode, json.loads(res.stdout) if res.stdout.strip() else None


def test_the_bundle_needs_no_python_and_no_third_party_module(node_bin: Path) -> None:
    plugin = node_bin / "vmnet-cni"
    internal = plugin.resolve().parent / "_internal"
    shipped = {p.name for p in internal.iterdir()}
    assert not shipped & {"yaml", "lxml", "pyroute2", "grpc"}
    assert any(name.startswith("libpython3") for name in shipped)  # its own runtime
    res = subprocess.run(
        [str(plugin)], env={"CNI_COMMAND": "VERSION"}, capture_output=True, text=True
    )
    assert json.loads(res.stdout)["supportedVersions"][-1] == "1.1.0"
    res = subprocess.run([str(plugin), "--version"], env={}, capture_output=True, text=True)
    assert res.stdout.strip() == "vmnet-cni 0.1.0"


def test_the_installed_bundle_plugs_and_gives_the_pod_back(node_bin, cni_pod, tmp_path) -> None:
    plugin = node_bin / "vmnet-cni"
    config = {
        "cniVersion": "1.0.0",
        "name": "netbindingvmnet",
        "type": "vmnet-cni",
        "args": {"cni": {"logicNetworkName": "default"}},
        "cacheDir": str(tmp_path / "cni"),
    }
    before = snapshot(cni_pod.netns)
    rc, out = _run(plugin, "ADD", cni_pod, config)
    assert (rc, out) == (0, {"cniVersion": "1.0.0", "interfaces": [], "ips": [], "dns": {}})
    links = {link.name for link in snapshot(cni_pod.netns).links}
    assert {"k6t-eth0", "eth0-nic", "tap0"} <= links
    assert _run(plugin, "CHECK", cni_pod, config) == (0, None)
    assert _run(plugin, "DEL", cni_pod, config) == (0, None)
    assert snapshot(cni_pod.netns) == before
    assert _run(plugin, "DEL", cni_pod, config) == (0, None)  # idempotent
