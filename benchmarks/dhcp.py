"""DHCP throughput, latency and memory: `vmnet dhcp` against dnsmasq.

Rules:
1. One topology for both servers: a CNI pod plugged by vmnet (bridge
   binding), and a load-generator namespace whose veth is a port of the
   pod's bridge `k6t-eth0`, with the VM's MAC. The DISCOVERs cross the veth
   and the bridge exactly as a guest's would cross the tap.
2. vmnet is the real `vmnet dhcp` command (a separate process), reading
   phase 1's cache. dnsmasq (dnsmasq-base) serves the same interface for the
   same single static lease; it needs an in-subnet address there
   added only while it runs. `--quiet-dhcp` since vmnet
   logs nothing per transaction either.
3. The servers run one after the other, never at once; each is stopped and
   waited for, whatever happens.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import yaml

from benchmarks import loadgen, plug
from vmnet.protocols.dhcp4.config import DhcpConfig
from vmnet.testing import namespaces as ns
from vmnet.testing.cni import Node
from vmnet.testing.wait import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DNSMASQ_ADDR = "254"
PR_SET_PDEATHSIG = 1


@dataclass
class Setup:
    """The plugged pod, the generator's namespace and the lease."""

    pod: plug.Pod
    workdir: str
    vmi_path: str
    cache_dir: str
    client_ns: str
    vm_mac: str
    lease: str


@contextmanager
def topology(node: Node) -> Iterator[Setup]:
    """Rule 1; everything is removed on exit."""
    pod = plug.make_pod(node, 1)
    workdir = tempfile.mkdtemp(prefix="vmnet-bench-dhcp-", dir=plug.TMPFS)
    client = ns.create_netns()
    try:
        vm = plug.vm_manifest("bridge", 1)
        vmi_path = os.path.join(workdir, "vm.yaml")
        with open(vmi_path, "w") as f:
            yaml.safe_dump(vm, f)
        run = plug.VmnetPlug(pod, "bridge", workdir)
        run()
        config = run.cache.load("dhcp", "default", DhcpConfig)
        assert config.client_mac is not None
        vm_mac, lease = str(config.client_mac), str(config.address)
        ns.create_veth(
            ns.VethEnd(client, "cli0", mac=config.client_mac), ns.VethEnd(pod.netns, "lgp0")
        )
        ns.ip_batch(pod.netns, ["link set lgp0 master k6t-eth0"])
        yield Setup(pod, workdir, vmi_path, run.cache.root, client, vm_mac, lease)
    finally:
        ns.remove_netns(client)
        plug.drop_pod(node, pod)
        shutil.rmtree(workdir, ignore_errors=True)


def generator(setup: Setup, *, dora: bool = False) -> loadgen.Generator:
    sock = loadgen.open_socket(setup.client_ns, "cli0")
    return loadgen.Generator(sock, bytes.fromhex(setup.vm_mac.replace(":", "")), dora=dora)


def _dora(gen: loadgen.Generator, seconds: float, who: str, out: dict[str, float]) -> None:
    """Full DISCOVER-OFFER-REQUEST-ACK transactions: max rate, then p99 at half of it."""
    gen.dora, gen.request = True, None  # the REQUEST names this server's identifier
    try:
        best = gen.closed_loop(seconds)
        if not best.done:
            raise RuntimeError(f"{who}: no full DORA transaction in {seconds:g}s")
        out[f"dhcp_{who}_dora_rps"] = best.rps
        out[f"dhcp_{who}_dora_lost"] = best.lost
        paced = gen.open_loop(best.rps / 2, max(500, int(best.rps * seconds / 2)))
        out[f"dhcp_{who}_dora_p99_ms"] = loadgen_pct(paced, 99)
    finally:
        gen.dora = False


@contextmanager
def vmnet_server(setup: Setup) -> Iterator[subprocess.Popen[bytes]]:
    resolv = os.path.join(setup.workdir, "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver 10.96.0.10\nsearch default.svc.cluster.local\n")
    argv = [
        sys.executable,
        "-m",
        "vmnet",
        "dhcp",
        "--netns",
        setup.pod.netns,
        "--vmi",
        setup.vmi_path,
        "--cache-dir",
        setup.cache_dir,
        "--resolv-conf",
        resolv,
    ]
    with _running(argv, cwd=ROOT) as proc:
        yield proc


@contextmanager
def dnsmasq_server(setup: Setup) -> Iterator[subprocess.Popen[bytes]]:
    lease = setup.lease.split("/")[0]
    prefix = setup.lease.split("/")[1]
    net = ".".join(lease.split(".")[:3])
    extra = f"{net}.{DNSMASQ_ADDR}/{prefix}"
    gateway = setup.pod.cni.gateway
    argv = [
        "ip",
        "netns",
        "exec",
        setup.pod.netns,
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--port=0",
        "--interface=k6t-eth0",
        "--bind-interfaces",
        f"--dhcp-range={net}.0,static,255.255.255.0",
        f"--dhcp-host={setup.vm_mac},{lease}",
        f"--dhcp-option=3,{gateway}",
        "--dhcp-option=6,10.96.0.10",
        "--dhcp-option=119,default.svc.cluster.local",
        "--dhcp-option=26,1500",
        "--dhcp-authoritative",
        "--leasefile-ro",
        "--quiet-dhcp",
        "--pid-file=",
        "--log-facility=-",
        "--user=root",
    ]
    ns.ip_batch(setup.pod.netns, [f"addr add {extra} dev k6t-eth0"])
    try:
        with _running(argv) as proc:
            yield proc
    finally:
        ns.ip_batch(setup.pod.netns, [f"addr del {extra} dev k6t-eth0"])


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextmanager
def _running(argv: list[str], **kw: object) -> Iterator[subprocess.Popen[bytes]]:
    """A server process; it gets SIGTERM if this process dies first (prctl(2))."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # type: ignore[call-overload]
        preexec_fn=_die_with_parent,
        **kw,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for {pid}")


def measure(node: Node, seconds: float, rss_transactions: int) -> dict[str, float]:
    """Every DHCP number of the report, from one topology."""
    out: dict[str, float] = {}
    with topology(node) as setup:
        gen = generator(setup)
        try:
            with vmnet_server(setup) as proc:
                wait_ready(gen, proc, "vmnet dhcp")
                best = gen.closed_loop(seconds)
                out["dhcp_vmnet_rps"] = best.rps
                out["dhcp_vmnet_lost"] = best.lost
                out["dhcp_loadgen_busy_vmnet"] = best.busy
                paced = gen.open_loop(best.rps / 2, max(1000, int(best.rps * seconds / 2)))
                out["dhcp_vmnet_p50_ms"] = loadgen_pct(paced, 50)
                out["dhcp_vmnet_p99_ms"] = loadgen_pct(paced, 99)
                out["dhcp_vmnet_p99_rate"] = best.rps / 2
                served = best.done + paced.done
                if served < rss_transactions:
                    top = gen.closed_loop(600, limit=rss_transactions - served)
                    served += top.done
                out["dhcp_rss_transactions"] = served
                out["dhcp_rss_mb"] = rss_mb(proc.pid)
                _dora(gen, seconds, "vmnet", out)
            with dnsmasq_server(setup) as proc:
                wait_ready(gen, proc, "dnsmasq")
                theirs = gen.closed_loop(seconds)
                out["dhcp_dnsmasq_rps"] = theirs.rps
                out["dhcp_dnsmasq_lost"] = theirs.lost
                out["dhcp_loadgen_busy_dnsmasq"] = theirs.busy
                paced = gen.open_loop(theirs.rps / 2, max(1000, int(theirs.rps * seconds / 2)))
                out["dhcp_dnsmasq_p99_ms"] = loadgen_pct(paced, 99)
                out["dhcp_dnsmasq_p99_rate"] = theirs.rps / 2
                _dora(gen, seconds, "dnsmasq", out)
        finally:
            gen.sock.close()
    return out


def loadgen_pct(run: loadgen.Run, q: float) -> float:
    from benchmarks.stats import percentile

    return percentile(run.latencies_ms, q)


def wait_ready(gen: loadgen.Generator, proc: subprocess.Popen[bytes], what: str) -> None:
    wait_until(
        lambda: gen.first_offer(0.5) or proc.poll() is not None,
        15.0,
        what=f"{what} to answer a DISCOVER",
    )
    if proc.poll() is not None:
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        raise RuntimeError(f"{what} exited {proc.returncode}: {err}")
