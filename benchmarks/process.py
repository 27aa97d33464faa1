"""vmnet as users run it: whole processes, from spawn to exit, as installed.

A launcher runs `vmnet plug` as a process per pod, Multus runs `vmnet-cni`
as a process per attachment: what a user waits for is the whole process,
interpreter start and imports included. So vmnet is measured here as a
node or a launcher installs it (docs/performance.md, "Installing for
speed"): a wheel of this tree installed, byte-compiled, into a fresh
virtualenv, not the developer's editable checkout. Its dependencies come
from the running interpreter's own site-packages (a .pth file), unchanged.

Interleaved, each sample on a fresh pod from the real CNI bridge plugin:
- `cli_plug`: `vmnet plug` (bridge binding, one NIC, a YAML manifest);
- `cni_add`: `vmnet-cni` ADD as Multus runs a binding-plugin attachment;
- `cni_bridge_ref_add`: the reference CNI bridge plugin's own ADD of a
  second attachment (host-local IPAM), a Go process;
- `ip_batch`: the bridge binding's mutations as one `ip -batch` process,
  the practical floor (without the arp_ignore sysctl, which `ip` cannot set).
Peak RSS is each process's own, as GNU time reads it. Also `vmnet --version`,
`vmnet status` and `dhcp_ready`: from spawning `vmnet dhcp` to its first
OFFER to a DISCOVER sent every 2 ms.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import yaml

from benchmarks import binding, dhcp, plug, stats
from vmnet.testing.cni import Node, bridge_config, host_local

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def install(scratch: str) -> str:
    """A virtualenv holding a wheel of this tree; returns its bin directory."""
    wheels = os.path.join(scratch, "wheels")
    venv = os.path.join(scratch, "venv")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT])
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = os.path.join(venv, "bin", "python")
    (wheel,) = glob.glob(os.path.join(wheels, "vmnet-*.whl"))
    _run([*pip, "--python", python, "install", "--no-deps", wheel])
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with open(os.path.join(purelib, "vmnet-bench-deps.pth"), "w") as f:
        f.write("\n".join(site.getsitepackages()) + "\n")
    return os.path.join(venv, "bin")


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}: {done.stderr.strip()[-500:]}")


def env() -> dict[str, str]:
    """The environment a launcher gives: no bytecode-writing switch, no PYTHONPATH."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out["PATH"] = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    return out


def timed(
    argv: list[str], *, stdin: str = "", extra: dict[str, str] | None = None
) -> tuple[float, float]:
    """(wall ms, peak RSS MB) of one process from spawn to exit; raises on failure.

    The peak RSS is GNU time's reading (`%M`): a child forked from this
    benchmark would report this process's own RSS as its peak (Linux keeps
    the pre-exec high-water mark), so the process is started by `time`, a
    small program, instead."""
    environ = {**env(), **(extra or {})}
    with tempfile.NamedTemporaryFile("r", prefix="vmnet-bench-rss-") as report:
        start = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", report.name, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            env=environ,
            cwd="/",
        )
        wall = (time.perf_counter() - start) * 1000
        peak_kb = report.read().strip().splitlines()[-1]
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:3])}: exit {done.returncode}: {done.stdout or done.stderr}"
        )
    return wall, int(peak_kb) / 1024


def _ip_batch(netns: str, steps: list[plug.NicSteps]) -> str:
    lines = []
    for argv in plug.ip_cli_commands(netns, steps):
        if argv[:3] == ["ip", "-n", netns]:
            lines.append(" ".join(argv[3:]))
        elif argv[0] == "bridge":  # bridge -n NS link set dev X learning off
            lines.append(f"link set dev {argv[6]} type bridge_slave learning off")
    return "\n".join(lines) + "\n"


def measure(node: Node, rounds: int, scratch: str) -> dict[str, Any]:
    bindir = install(scratch)
    state = tempfile.mkdtemp(prefix="vmnet-bench-proc-", dir=plug.TMPFS)
    try:
        return _measure(node, rounds, scratch, bindir, state)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _measure(node: Node, rounds: int, scratch: str, bindir: str, state: str) -> dict[str, Any]:
    """`state` (tmpfs) holds the caches: /run is tmpfs on a node, and the
    in-process plug benchmark keeps its caches there too."""
    vmnet, vmnet_cni = os.path.join(bindir, "vmnet"), os.path.join(bindir, "vmnet-cni")
    vm_path = os.path.join(scratch, "vm.yaml")
    with open(vm_path, "w") as f:
        yaml.safe_dump(plug.vm_manifest("bridge", 1), f)
    conf = {**binding.CONF, "cacheDir": os.path.join(state, "cni")}
    ref = {
        **bridge_config(bridge="cbr-ref", ipam=host_local("10.78.0.0/16", default_route=False)),
        "cniVersion": "1.0.0",
        "name": "ref",
    }
    ref["ipam"]["dataDir"] = os.path.join(state, "host-local")
    caches = os.path.join(state, "caches")

    def cli_plug(pod: plug.Pod) -> tuple[float, float]:
        cache = os.path.join(caches, pod.netns)
        argv = [vmnet, "plug", "--netns", pod.netns, "--vmi", vm_path, "--cache-dir", cache]
        return timed(argv)

    def cni_add(pod: plug.Pod) -> tuple[float, float]:
        cni_env = binding._env("ADD", pod.netns, f"c{pod.netns}", "net1")
        return timed([vmnet_cni], stdin=json.dumps(conf), extra=cni_env)

    def bridge_ref(pod: plug.Pod) -> tuple[float, float]:
        cni_env = binding._env("ADD", pod.netns, f"r{pod.netns}", "net9")
        argv = ["ip", "netns", "exec", node.netns, "/usr/lib/cni/bridge"]
        return timed(argv, stdin=json.dumps(ref), extra=cni_env)

    def ip_batch(pod: plug.Pod) -> tuple[float, float]:
        batch = _ip_batch(pod.netns, plug.nic_steps(pod))
        return timed(["ip", "-n", pod.netns, "-batch", "-"], stdin=batch)

    runs: dict[str, Callable[[plug.Pod], tuple[float, float]]] = {
        "cli_plug": cli_plug,
        "cni_add": cni_add,
        "cni_bridge_ref_add": bridge_ref,
        "ip_batch": ip_batch,
    }
    walls: dict[str, list[float]] = {name: [] for name in runs}
    rss: dict[str, list[float]] = {name: [] for name in runs}
    status: list[float] = []
    for i in range(rounds):
        names = list(runs) if i % 2 == 0 else list(reversed(runs))
        for name in names:
            pod = plug.make_pod(node, 1)
            try:
                wall, peak = runs[name](pod)
                walls[name].append(wall)
                rss[name].append(peak)
                if name == "cli_plug":
                    cache = os.path.join(caches, pod.netns)
                    status.append(timed([vmnet, "status", "--cache-dir", cache])[0])
            finally:
                plug.drop_pod(node, pod)
    out: dict[str, Any] = {f"{name}_ms_p50": stats.p50(walls[name]) for name in runs}
    out["cli_plug_rss_mb"] = max(rss["cli_plug"])
    out["cni_add_rss_mb"] = max(rss["cni_add"])
    out["cni_bridge_ref_rss_mb"] = max(rss["cni_bridge_ref_add"])
    out["ratio_cli_plug_vs_ip_batch"] = stats.ratio(out["cli_plug_ms_p50"], out["ip_batch_ms_p50"])
    out["ratio_cli_plug_vs_cni_bridge_ref"] = stats.ratio(
        out["cli_plug_ms_p50"], out["cni_bridge_ref_add_ms_p50"]
    )
    out["ratio_cni_add_vs_bridge_ref"] = stats.ratio(
        out["cni_add_ms_p50"], out["cni_bridge_ref_add_ms_p50"]
    )
    out["cli_version_ms_p50"] = stats.p50(
        [timed([vmnet, "--version"])[0] for _ in range(max(rounds, 3))]
    )
    out["cli_status_ms_p50"] = stats.p50(status)
    out["dhcp_ready_ms_p50"] = stats.p50(
        [_dhcp_ready(node, vmnet) for _ in range(max(1, rounds // 3))]
    )
    return out


def _dhcp_ready(node: Node, vmnet: str) -> float:
    """ms from spawning `vmnet dhcp` to the first OFFER it sends."""
    with dhcp.topology(node) as setup:
        gen = dhcp.generator(setup)
        argv = [vmnet, "dhcp", "--netns", setup.pod.netns, "--vmi", setup.vmi_path]
        argv += ["--cache-dir", setup.cache_dir, "--resolv-conf", "/dev/null"]
        try:
            start = time.perf_counter()
            proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env()
            )
            try:
                answered = gen.poll_answer(10.0, alive=lambda: proc.poll() is None)
                if answered is None:
                    err = (
                        proc.stderr.read().decode()
                        if proc.poll() is not None and proc.stderr
                        else ""
                    )
                    raise RuntimeError(f"vmnet dhcp never answered: {err.strip()}")
                return (answered - start) * 1000
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
        finally:
            gen.sock.close()
