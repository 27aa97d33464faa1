"""Run vmnet's benchmarks: `python benchmarks/run.py [--quick] [--json] [--plot PNG]`.

Rules:
1. Everything runs inside namespaces made here (a CNI node, its pods, a
   load-generator namespace) and is removed before exit, on error too.
2. Comparisons are measured side by side in the same run (interleaved, see
   `benchmarks.stats`); ratios matter more than absolute times.
3. `--quick` (under a minute) uses fewer rounds, 20 pods instead of 100
   (`pods_100_s` scaled by 5, `pods_measured` says so) and 20k DHCP
   transactions before the RSS reading instead of 100k.
4. `--json` prints one JSON object (every key of docs/performance.md);
   otherwise a table with the targets of issue 8.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import binding, dhcp, leases, migration, plug, process, scale, stats
from vmnet.testing.cni import Node

NIC_COUNTS = [1, 2, 4, 8, 16]
FULL = {
    "rounds": 25,
    "sweep_rounds": 7,
    "pods": 100,
    "dhcp_seconds": 5.0,
    "rss": 100_000,
    "import_runs": 20,
    "lease_rounds": 10,
    "migration_runs": 5,
}
QUICK = {
    "rounds": 5,
    "sweep_rounds": 2,
    "pods": 20,
    "dhcp_seconds": 2.0,
    "rss": 20_000,
    "import_runs": 8,
    "lease_rounds": 3,
    "migration_runs": 1,
}
TINY = {
    "rounds": 1,
    "sweep_rounds": 1,
    "pods": 2,
    "dhcp_seconds": 0.3,
    "rss": 2_000,
    "import_runs": 1,
    "lease_rounds": 1,
    "migration_runs": 1,
}  # --tiny: every key, for the test suite; numbers meaningless
TARGETS = [  # key, comparison, bound, text
    ("ratio_bridge_vs_floor", "<=", 2.0, "plug_bridge within 2x of the floor"),
    ("ratio_ip_cli_vs_bridge", ">=", 5.0, "plug_bridge >= 5x faster than ip CLI"),
    ("cli_plug_ms_p50", "<=", 150.0, "vmnet plug (process, installed) <= 150 ms"),
    ("cli_plug_rss_mb", "<=", 30.0, "vmnet plug peak RSS <= 30 MB"),
    ("cli_version_ms_p50", "<", 60.0, "vmnet --version < 60 ms"),
    ("cli_status_ms_p50", "<", 60.0, "vmnet status < 60 ms"),
    ("dhcp_ready_ms_p50", "<=", 100.0, "vmnet dhcp answers <= 100 ms after start"),
    ("ratio_dhcp_dora_vmnet_vs_dnsmasq", ">=", 1.0, "full DORA rate >= dnsmasq's"),
    ("ratio_dhcp_vmnet_vs_dnsmasq", ">=", 1.0, "cached-retransmission OFFER rate >= dnsmasq's"),
    ("dhcp_vmnet_p99_ms", "<", 2.0, "p99 at 50% load < 2 ms"),
    ("dhcp_rss_mb", "<", 25.0, "RSS of vmnet dhcp < 25 MB"),
    ("import_ms", "<", 150.0, "import vmnet.serve.dhcp4 < 150 ms"),
    ("ratio_16nic_vs_1nic", "<=", 16.0, "16 NICs <= 16x one NIC"),
    ("ratio_cni_add_vs_bridge_ref", "<=", 3.0, "vmnet-cni ADD within 3x of the CNI bridge ADD"),
    ("sidecar_rss_mb", "<", 48.0, "RSS of vmnet sidecar serving < 48 MiB"),
]


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg()[0],
    }


def import_ms(runs: int) -> tuple[float, float]:
    """p50 wall ms of `python -c 'import vmnet.serve.dhcp4'`, and of `python -c pass`."""

    def wall(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=dhcp.ROOT)
        return (time.perf_counter() - start) * 1000

    pairs = [(wall("import vmnet.serve.dhcp4"), wall("pass")) for _ in range(runs)]
    return stats.p50([a for a, _ in pairs]), stats.p50([b for _, b in pairs])


def measure(cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine(), "quick": cfg is not FULL}
    out["import_ms"], out["python_startup_ms"] = import_ms(cfg["import_runs"])
    node = Node()
    try:
        samples = stats.interleaved(plug.variants(node, 1), cfg["rounds"])
        for name, key in (
            ("bridge", "plug_bridge"),
            ("masquerade", "plug_masquerade"),
            ("floor", "plug_floor"),
            ("floor_pyroute2", "plug_floor_pyroute2"),
            ("ip_cli", "plug_ip_cli"),
        ):
            out[f"{key}_ms_p50"] = stats.p50(samples[name])
            out[f"{key}_ms_p90"] = stats.percentile(samples[name], 90)
        sweep = scale.nic_sweep(node, NIC_COUNTS, cfg["sweep_rounds"])
        out["nic_sweep_ms_p50"] = {str(n): v for n, v in sweep.items()}
        out["plug_16nic_ms_p50"] = sweep[16]["vmnet"]
        seconds = scale.pods_parallel(node, cfg["pods"])
        out["pods_measured"] = cfg["pods"]
        out["pods_100_s"] = seconds * 100 / cfg["pods"]
        out.update(dhcp.measure(node, cfg["dhcp_seconds"], cfg["rss"]))
        out.update(leases.measure(node, cfg["lease_rounds"]))
        out.update(migration.measure(cfg["migration_runs"]))
        with tempfile.TemporaryDirectory(prefix="vmnet-bench-") as scratch:
            out.update(process.measure(node, cfg["rounds"], scratch))
            out.update(binding.measure(node, cfg["rounds"], scratch))
    finally:
        node.close()
    out["ratio_bridge_vs_floor"] = stats.ratio(out["plug_bridge_ms_p50"], out["plug_floor_ms_p50"])
    out["ratio_ip_cli_vs_bridge"] = stats.ratio(
        out["plug_ip_cli_ms_p50"], out["plug_bridge_ms_p50"]
    )
    out["ratio_16nic_vs_1nic"] = stats.ratio(sweep[16]["vmnet"], sweep[1]["vmnet"])
    out["ratio_dhcp_vmnet_vs_dnsmasq"] = stats.ratio(out["dhcp_vmnet_rps"], out["dhcp_dnsmasq_rps"])
    out["ratio_dhcp_dora_vmnet_vs_dnsmasq"] = stats.ratio(
        out["dhcp_vmnet_dora_rps"], out["dhcp_dnsmasq_dora_rps"]
    )
    out["targets"] = {text: _meets(out[key], op, bound) for key, op, bound, text in TARGETS}
    return out


def _meets(value: float, op: str, bound: float) -> bool:
    return {"<": value < bound, "<=": value <= bound, ">=": value >= bound}[op]


def table(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"machine: {m['nproc']} x {m['cpu']}, kernel {m['kernel']}, Python {m['python']}, "
        f"load {m['loadavg_start']:.2f}" + ("  [--quick]" if res["quick"] else ""),
        "",
    ]
    rows = [
        ("plug bridge (phase 1+2), p50", res["plug_bridge_ms_p50"], "ms"),
        ("plug masquerade, p50", res["plug_masquerade_ms_p50"], "ms"),
        ("floor: raw rtnetlink requests, p50", res["plug_floor_ms_p50"], "ms"),
        ("floor with pyroute2 calls, p50", res["plug_floor_pyroute2_ms_p50"], "ms"),
        ("ip CLI, one process per command, p50", res["plug_ip_cli_ms_p50"], "ms"),
        ("plug 16 NICs, p50", res["plug_16nic_ms_p50"], "ms"),
        (f"100 pods by 2 workers ({res['pods_measured']} measured)", res["pods_100_s"], "s"),
        ("vmnet plug (process, installed), p50", res["cli_plug_ms_p50"], "ms"),
        ("  peak RSS", res["cli_plug_rss_mb"], "MB"),
        ("ip -batch, same mutations, p50", res["ip_batch_ms_p50"], "ms"),
        ("vmnet --version (process), p50", res["cli_version_ms_p50"], "ms"),
        ("vmnet status (process), p50", res["cli_status_ms_p50"], "ms"),
        ("vmnet dhcp: start to first OFFER, p50", res["dhcp_ready_ms_p50"], "ms"),
        ("DHCP vmnet, full DORA", res["dhcp_vmnet_dora_rps"], "/s"),
        ("DHCP dnsmasq, full DORA", res["dhcp_dnsmasq_dora_rps"], "/s"),
        ("DHCP vmnet DORA p99 at half its rate", res["dhcp_vmnet_dora_p99_ms"], "ms"),
        ("DHCP dnsmasq DORA p99 at half its rate", res["dhcp_dnsmasq_dora_p99_ms"], "ms"),
        ("DHCP vmnet, cached retransmitted DISCOVER", res["dhcp_vmnet_rps"], "/s"),
        ("DHCP dnsmasq, retransmitted DISCOVER", res["dhcp_dnsmasq_rps"], "/s"),
        (f"DHCP vmnet p99 at {res['dhcp_vmnet_p99_rate']:.0f}/s", res["dhcp_vmnet_p99_ms"], "ms"),
        (
            f"DHCP dnsmasq p99 at {res['dhcp_dnsmasq_p99_rate']:.0f}/s",
            res["dhcp_dnsmasq_p99_ms"],
            "ms",
        ),
        (f"RSS after {res['dhcp_rss_transactions']} transactions", res["dhcp_rss_mb"], "MB"),
        ("import vmnet.serve.dhcp4 (process wall)", res["import_ms"], "ms"),
        ("  of which python startup", res["python_startup_ms"], "ms"),
        ("vmnet-cni ADD (process, installed), p50", res["cni_add_ms_p50"], "ms"),
        ("CNI bridge plugin ADD (process), p50", res["cni_bridge_ref_add_ms_p50"], "ms"),
        ("sidecar OnDefineDomain round trip, p50", res["on_define_domain_ms_p50"], "ms"),
        ("sidecar RSS while serving", res["sidecar_rss_mb"], "MiB"),
    ]
    rows += [
        (f"migration {b}: {what}, {q}", res[f"migration_{b}_{key}_ms_{q}"], "ms")
        for b in migration.BINDINGS
        for key, what in (("qemu", "qemu downtime"), ("ping", "ping gap"), ("tcp", "TCP stall"))
        for q in ("p50", "max")
    ]
    rows += [
        (f"lease {client}: {server}, p50", res[f"lease_ms_{client}_{server}"], "ms")
        for client in leases.CLIENTS
        for server in leases.SERVERS
    ]
    lines += [f"{name:<46} {value:>10.2f} {unit}" for name, value, unit in rows]
    lines += ["", "NICs   vmnet ms   floor ms"]
    lines += [
        f"{n:>4} {v['vmnet']:>10.2f} {v['floor']:>10.2f}"
        for n, v in res["nic_sweep_ms_p50"].items()
    ]
    lines += [
        "",
        "ratios: bridge/floor {:.2f}, ip CLI/bridge {:.2f}, 16 NICs/1 NIC {:.2f}, "
        "vmnet/dnsmasq rps {:.2f}, vmnet-cni/CNI bridge ADD {:.2f}".format(
            res["ratio_bridge_vs_floor"],
            res["ratio_ip_cli_vs_bridge"],
            res["ratio_16nic_vs_1nic"],
            res["ratio_dhcp_vmnet_vs_dnsmasq"],
            res["ratio_cni_add_vs_bridge_ref"],
        ),
        "load generator busy: {:.0%} (vmnet), {:.0%} (dnsmasq)".format(
            res["dhcp_loadgen_busy_vmnet"], res["dhcp_loadgen_busy_dnsmasq"]
        ),
        "",
    ]
    lines += [f"{'met ' if ok else 'MISS'} {text}" for text, ok in res["targets"].items()]
    return "\n".join(lines)


def targets_markdown(res: dict[str, Any]) -> str:
    """The targets table of docs/performance.md, from a run's result."""
    lines = ["| target | key | measured | bound | |", "|---|---|---:|---:|---|"]
    for key, op, bound, text in TARGETS:
        value = res[key]
        met = "met" if _meets(value, op, bound) else "**missed**"
        lines.append(f"| {text} | `{key}` | {value:.2f} | {op} {bound:g} | {met} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="under a minute, fewer samples")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="PNG", help="write plug latency against NIC count")
    p.add_argument("--save", metavar="JSON", help="also write the JSON result to a file")
    p.add_argument(
        "--markdown",
        metavar="JSON",
        help="print the targets table of a saved result (docs/performance.md) and exit",
    )
    args = p.parse_args(argv)
    if args.markdown:
        with open(args.markdown) as f:
            print(targets_markdown(json.load(f)), end="")
        return 0
    if os.geteuid() != 0:
        sys.stderr.write("benchmarks/run.py: needs root (network namespaces)\n")
        return 2
    res = measure(TINY if args.tiny else QUICK if args.quick else FULL)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(res, f, indent=2)
    if args.plot:
        from benchmarks.plot import plot_sweep

        plot_sweep(res, args.plot)
    print(json.dumps(res) if args.json else table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
