"""The plot of docs/performance.md: plug latency against NIC count."""

from __future__ import annotations

from typing import Any


def plot_sweep(res: dict[str, Any], path: str) -> None:
    """Write a PNG of p50 plug latency (vmnet, floor, linear from 1 NIC)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = res["nic_sweep_ms_p50"]
    nics = [int(n) for n in sweep]
    vmnet = [sweep[str(n)]["vmnet"] for n in nics]
    floor = [sweep[str(n)]["floor"] for n in nics]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(nics, vmnet, "o-", label="vmnet phase 1 + phase 2")
    ax.plot(nics, floor, "s--", label="floor: same mutations, raw pyroute2")
    ax.plot(
        nics, [vmnet[0] * n for n in nics], ":", color="grey", label="16x line (linear in NICs)"
    )
    ax.set_xlabel("NICs in the pod")
    ax.set_ylabel("plug latency, p50 (ms)")
    ax.set_xticks(nics)
    m = res["machine"]
    ax.set_title(f"Plug latency vs NIC count ({m['nproc']} x {m['cpu']})", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
