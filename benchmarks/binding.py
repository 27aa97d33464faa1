"""The binding plugin, whole-process: `vmnet-cni ADD` and the hook sidecar.

- `cni_add_ms_p50`: `python -m vmnet.cni` ADD as Multus runs it, on a fresh
  pod from the real CNI bridge plugin, interleaved with
  `cni_bridge_ref_add_ms_p50`: the reference CNI bridge plugin's own ADD of
  a second attachment into a fresh pod (run through `ip netns exec` into the
  node namespace, as vmnet.testing runs every plugin). Both are processes,
  timed from spawn to exit; pods are made outside the timing.
- `on_define_domain_ms_p50`: a grpcio client's OnDefineDomain round trip to
  `vmnet sidecar` (KubeVirt-shaped domain and VMI), after the first call;
  `sidecar_rss_mb`: the sidecar's VmRSS after those calls, serving DHCP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import stats
from vmnet.testing.cni import Node, bridge_config
from vmnet.testing.wait import wait_until

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = b"""<domain type="kvm" xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0">
\t<name>tenant1_testvm</name>
\t<memory unit="b">134217728</memory>
\t<os>
\t\t<type arch="x86_64" machine="q35">hvm</type>
\t</os>
\t<devices>
\t\t<emulator>/usr/bin/qemu-system-x86_64</emulator>
\t</devices>
</domain>"""
VMI = {
    "metadata": {"name": "testvm", "namespace": "tenant1"},
    "spec": {
        "domain": {"devices": {"interfaces": [{"name": "default", "binding": {"name": "vmnet"}}]}},
        "networks": [{"name": "default", "pod": {}}],
    },
}
CONF = {
    "cniVersion": "1.0.0",
    "name": "netbindingvmnet",
    "type": "vmnet-cni",
    "args": {"cni": {"logicNetworkName": "default"}},
}


def _env(command: str, netns: str, container: str, ifname: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": f"/run/netns/{netns}",
        "CNI_IFNAME": ifname,
        "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": "IgnoreUnknown=true;K8S_POD_NAMESPACE=tenant1;"
        "K8S_POD_NAME=virt-launcher-testvm-abcde",
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    }


def _timed(argv: list[str], stdin: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, cwd=ROOT)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{argv[-1]}: {done.stdout.strip() or done.stderr.strip()}")
    return elapsed


def measure(node: Node, rounds: int, cache_root: str) -> dict[str, Any]:
    """The sidecar's numbers (vmnet-cni ADD is timed by `benchmarks.process`)."""
    conf = {**CONF, "cacheDir": os.path.join(cache_root, "cni-sidecar")}
    return _sidecar(node, max(rounds, 3) * 4, conf)


def _sidecar(node: Node, calls: int, conf: dict[str, Any]) -> dict[str, float]:
    import grpc

    from vmnet.protocols import hooks

    pod = node.add_pod(bridge_config())
    env = _env("ADD", pod.netns, f"c{pod.netns}", "net1")
    _timed([sys.executable, "-m", "vmnet.cni"], json.dumps(conf), env)
    sockets = tempfile.mkdtemp(prefix="vmnet-bench-hooks-")
    argv = ["ip", "netns", "exec", pod.netns, sys.executable, "-m", "vmnet", "sidecar"]
    server = subprocess.Popen(
        [*argv, "--socket-dir", sockets],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        socket = Path(sockets) / "vmnet-vmnet.sock"
        wait_until(socket.exists, timeout=20, what="the sidecar's socket")
        params = hooks.encode_on_define_domain_params(
            hooks.OnDefineDomainParams(DOMAIN, json.dumps(VMI).encode())
        )
        latencies = []
        with grpc.insecure_channel(f"unix:{socket}") as channel:
            call = channel.unary_unary(hooks.callbacks_path("v1alpha3", hooks.ON_DEFINE_DOMAIN))
            call(params, timeout=60)  # the first one also starts DHCP
            for _ in range(calls):
                start = time.perf_counter()
                call(params, timeout=60)
                latencies.append((time.perf_counter() - start) * 1000)
        status = Path(f"/proc/{server.pid}/status").read_text()
        rss_kb = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
        )
        return {"on_define_domain_ms_p50": stats.p50(latencies), "sidecar_rss_mb": rss_kb / 1024}
    finally:
        server.terminate()
        server.wait(10)
        subprocess.run(["rm", "-rf", sockets], check=False)
