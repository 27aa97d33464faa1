"""`make demo` (the README's first command; it runs `python -m vmnet.testing.demo`)
works end to end and leaves nothing behind."""

import subprocess
from pathlib import Path

import pytest

from vmnet.testing.leaks import current, new_since

pytestmark = [pytest.mark.netns, pytest.mark.cni("bridge", "host-local")]


def test_demo_leases_the_pod_ip_to_udhcpc_and_restores_the_pod():
    before = current()
    run = subprocess.run(
        ["make", "-s", "demo"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "pod made by the real CNI bridge plugin" in run.stdout
    assert "udhcpc got its lease" in run.stdout
    assert "guest pings the CNI gateway 10.22.0.1: ok" in run.stdout
    assert "restored exactly as the CNI left it: yes" in run.stdout
    assert "demo succeeded" in run.stdout
    assert new_since(before) == []


@pytest.mark.qemu
@pytest.mark.cni("bridge", "host-local", "static")
def test_demo_migration_moves_a_running_vm_and_prints_the_downtime():
    before = current()
    run = subprocess.run(
        ["make", "-s", "demo-migration"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for binding in ("bridge", "masquerade"):
        assert f"== live migration, {binding} binding" in run.stdout
    assert run.stdout.count("renewal ACKed by pod B") == 2
    assert "binding      qemu downtime  longest ping gap  TCP stall" in run.stdout
    assert "demo-migration succeeded" in run.stdout
    assert new_since(before) == []
