"""Scaling: plug latency against NIC count, and 100 pods plugged by 2 workers.

Rules:
1. NIC counts are timed interleaved (one pod of each count per round), for
   vmnet and for the raw-pyroute2 floor.
2. Pods for the worker run are all made before the clock starts; each worker
   is a process (as each pod has its own launcher), warmed up by importing
   vmnet before the clock starts. The clock stops when the last pod is done.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import yaml

from benchmarks import plug, stats
from vmnet import manifest
from vmnet.apply.drivers import real
from vmnet.phases import phase1, phase2
from vmnet.store.cache import Cache
from vmnet.testing.cni import Node


def nic_sweep(node: Node, counts: list[int], rounds: int) -> dict[int, dict[str, float]]:
    """NIC count -> p50 ms of vmnet ("vmnet") and of the floor ("floor")."""
    variants = {}
    for n in counts:
        v = plug.variants(node, n)
        variants[f"vmnet/{n}"] = v["bridge"]
        variants[f"floor/{n}"] = v["floor"]
    samples = stats.interleaved(variants, rounds)
    return {
        n: {"vmnet": stats.p50(samples[f"vmnet/{n}"]), "floor": stats.p50(samples[f"floor/{n}"])}
        for n in counts
    }


def _warm() -> None:
    """Runs in a worker before the clock starts: importing this module did the work."""


def _plug_one(netns: str, workdir: str) -> float:
    start = time.perf_counter()
    vmi = manifest.parse_text(yaml.safe_dump(plug.vm_manifest("bridge", 1)))
    cache = Cache(os.path.join(workdir, netns))
    drivers = real(netns)
    try:
        phase1.plug(vmi, netns, cache, drivers=drivers)
    finally:
        drivers.close()
    phase2.decorate(vmi, cache, None)
    phase2.dhcp_configs(vmi, cache, plug.RESOLV)
    return time.perf_counter() - start


def pods_parallel(node: Node, pods: int, workers: int = 2) -> float:
    """Seconds for `workers` processes to plug `pods` fresh pods."""
    made = []
    workdir = tempfile.mkdtemp(prefix="vmnet-bench-pods-", dir=plug.TMPFS)
    try:
        for _ in range(pods):
            made.append(plug.make_pod(node, 1))
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for warm in [pool.submit(_warm) for _ in range(workers * 2)]:
                warm.result()
            start = time.perf_counter()
            for done in [pool.submit(_plug_one, p.netns, workdir) for p in made]:
                done.result()
            return time.perf_counter() - start
    finally:
        for p in made:
            plug.drop_pod(node, p)
        shutil.rmtree(workdir, ignore_errors=True)
