"""The command line behaves the same way on every command (real pods, real processes)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.conftest import BRIDGE_VM, needs_cni, needs_root, vmnet

pytestmark = [pytest.mark.netns, needs_root, needs_cni]


def test_every_command_defaults_the_cache_dir_from_the_manifest(cni_pod, tmp_path) -> None:
    vm = tmp_path / "vm.yaml"
    vm.write_text(BRIDGE_VM.replace("name: testvm", "name: cli-default-vm"))
    try:
        plug = vmnet("plug", "--netns", cni_pod.netns, "--vmi", str(vm))
        assert plug.returncode == 0 and "/run/vmnet/tenant1/cli-default-vm" in plug.stdout
        for argv in (["status"], ["domain"], ["check", "--netns", cni_pod.netns]):
            res = vmnet(*argv, "--vmi", str(vm))
            assert res.returncode == 0, (argv, res.stderr)
        assert vmnet("unplug", "--netns", cni_pod.netns, "--vmi", str(vm)).returncode == 0
    finally:
        subprocess.run(["rm", "-rf", "/run/vmnet/tenant1/cli-default-vm"], check=True)
        for parent in ("/run/vmnet/tenant1", "/run/vmnet"):  # only if nothing else is there
            subprocess.run(["rmdir", "--ignore-fail-on-non-empty", parent], check=False)


def test_status_of_a_missing_cache_is_an_error_not_nothing_plugged(tmp_path) -> None:
    res = vmnet("status", "--cache-dir", str(tmp_path / "typo"))
    assert res.returncode == 2 and "no vmnet cache at" in res.stderr
    res = vmnet("status")
    assert res.returncode == 2 and "--cache-dir" in res.stderr


def test_verbose_goes_anywhere_and_abbreviations_are_refused(cni_pod, vm_file, tmp_path) -> None:
    cache = str(tmp_path / "cache")
    plug = vmnet(
        "plug", "--netns", cni_pod.netns, "--vmi", str(vm_file), "--cache-dir", cache, "-v"
    )
    assert plug.returncode == 0 and "INFO: changed: link add bridge k6t-eth0" in plug.stderr
    res = vmnet("status", "--cach", cache)
    assert res.returncode == 2 and "unrecognized arguments: --cach" in res.stderr


def test_a_warning_is_printed_once(cni_pod, vm_file, tmp_path) -> None:
    """This kernel has no dummy driver: plug warns, once."""
    plug = vmnet(
        "plug", "--netns", cni_pod.netns, "--vmi", str(vm_file), "--cache-dir", str(tmp_path / "c")
    )
    assert plug.returncode == 0
    warnings = [line for line in plug.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "no dummy driver" in warnings[0], plug.stderr


def test_the_manifest_can_come_from_standard_input(cni_pod, tmp_path) -> None:
    cache = str(tmp_path / "cache")
    argv = [sys.executable, "-m", "vmnet", "plug", "--netns", cni_pod.netns, "--vmi", "-"]
    res = subprocess.run(
        [*argv, "--cache-dir", cache], input=BRIDGE_VM, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "vmnet", "status", "--vmi", "-", "--cache-dir", cache],
        input=BRIDGE_VM,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0 and "tenant1/testvm default: bridge" in res.stdout


def test_a_missing_privilege_is_exit_2_naming_it_and_changes_nothing(cni_pod, vm_file) -> None:
    """Phase 1 without CAP_SYS_ADMIN (setns) or CAP_NET_ADMIN (the first change)."""
    from pathlib import Path

    from vmnet.testing.snapshots import snapshot

    before = snapshot(cni_pod.netns)
    drop = ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]
    python = [sys.executable, "-m", "vmnet", "plug", "--vmi", str(vm_file)]
    python += ["--cache-dir", "/tmp/vmnet-priv-cache"]
    outside = subprocess.run(
        [*drop, *python, "--netns", cni_pod.netns],
        capture_output=True,
        text=True,
    )
    assert outside.returncode == 2 and "needs CAP_SYS_ADMIN" in outside.stderr, outside.stderr
    inside = subprocess.run(
        ["ip", "netns", "exec", cni_pod.netns, *drop, *python, "--netns", cni_pod.netns],
        capture_output=True,
        text=True,
    )
    assert inside.returncode == 2 and "needs CAP_NET_ADMIN" in inside.stderr, inside.stderr
    assert len(inside.stderr.strip().splitlines()) == 1
    assert snapshot(cni_pod.netns) == before
    subprocess.run(["rm", "-rf", "/tmp/vmnet-priv-cache"], check=True)
    assert not Path("/tmp/vmnet-priv-cache").exists()


def test_dhcp_in_the_wrong_namespace_says_so(cni_pod, vm_file, tmp_path) -> None:
    cache = str(tmp_path / "cache")
    plug = vmnet("plug", "--netns", cni_pod.netns, "--vmi", str(vm_file), "--cache-dir", cache)
    assert plug.returncode == 0, plug.stderr
    res = vmnet("dhcp", "--vmi", str(vm_file), "--cache-dir", cache)  # on the node, no --netns
    assert res.returncode == 2, res.stderr
    assert "k6t-eth0 is not in this network namespace: run vmnet dhcp inside the pod" in res.stderr
