"""`vmnet sidecar`, the hook sidecar, as KubeVirt runs it and as virt-launcher calls it.

The sidecar runs inside a real pod's network namespace as UID 107 with every
capability dropped (`setpriv`), from Debian's python. A real gRPC client
(grpcio) plays virt-launcher: Info with its 1 s deadline, OnDefineDomain
with a domain shaped like KubeVirt's (tab-indented, `qemu` and `kubevirt.io`
namespaces, no `<interface>`) and the VMI as JSON, and Shutdown.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from lxml import etree

from tests.integration.conftest import BRIDGE_VM, as_user, needs_cni, needs_root, vmnet
from vmnet.plan.bindings import stable_mac
from vmnet.protocols import hooks
from vmnet.testing.wait import wait_until

pytestmark = [pytest.mark.netns, needs_root, needs_cni]

KUBEVIRT_DOMAIN = b"""<domain type="kvm" xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0">
\t<name>tenant1_testvm</name>
\t<memory unit="b">134217728</memory>
\t<os>
\t\t<type arch="x86_64" machine="q35">hvm</type>
\t</os>
\t<sysinfo type="smbios">
\t\t<system>
\t\t\t<entry name="uuid">5d307ca9-b3ef-428c-8861-06e72d69f223</entry>
\t\t</system>
\t</sysinfo>
\t<devices>
\t\t<emulator>/usr/bin/qemu-system-x86_64</emulator>
\t\t<console type="pty">
\t\t\t<target type="serial" port="0"></target>
\t\t</console>
\t</devices>
\t<metadata>
\t\t<kubevirt xmlns="http://kubevirt.io">
\t\t\t<uid>5d307ca9-b3ef-428c-8861-06e72d69f223</uid>
\t\t</kubevirt>
\t</metadata>
\t<vcpu placement="static">1</vcpu>
</domain>"""

VMI = {
    "apiVersion": "kubevirt.io/v1",
    "kind": "VirtualMachineInstance",
    "metadata": {
        "name": "testvm",
        "namespace": "tenant1",
        "uid": "5d307ca9-b3ef-428c-8861-06e72d69f223",
        "annotations": {"kubevirt.io/latest-observed-api-version": "v1"},
    },
    "spec": {
        "domain": {
            "devices": {
                "interfaces": [{"name": "default", "binding": {"name": "mynet"}}],
                "disks": [{"name": "rootdisk", "disk": {"bus": "virtio"}}],
            },
            "resources": {"requests": {"memory": "128Mi"}},
            "machine": {"type": "q35"},
        },
        "networks": [{"name": "default", "pod": {}}],
        "volumes": [{"name": "rootdisk", "containerDisk": {"image": "x"}}],
    },
    "status": {"interfaces": [{"name": "default", "podInterfaceName": "eth0"}]},
}


@pytest.fixture
def sidecar(cni_pod, readable: Path, tmp_path: Path) -> Iterator[dict[str, object]]:
    """The sidecar serving in the pod (plugged first, so tap0 exists), as UID 107."""
    vm = tmp_path / "vm.yaml"
    vm.write_text(BRIDGE_VM)
    cache = str(tmp_path / "cache")
    res = vmnet("plug", "--netns", cni_pod.netns, "--vmi", str(vm), "--cache-dir", cache)
    assert res.returncode == 0, res.stderr
    sockets = Path(tempfile.mkdtemp(prefix="vmnet-hooks-"))
    os.chown(sockets, 107, 107)
    argv = ["ip", "netns", "exec", cni_pod.netns, *as_user(readable)]
    env = {**os.environ, "NETWORK_BINDING_PLUGIN_NAME": "mynet", "CONTAINER_NAME": "hook-sidecar-0"}
    proc = subprocess.Popen(
        [*argv, "sidecar", "--socket-dir", str(sockets)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert "serving KubeVirt hooks" in proc.stdout.readline(), proc.stderr
        socket = sockets / "vmnet-mynet.sock"
        wait_until(socket.exists, timeout=10, what="the hooks socket")
        yield {"proc": proc, "socket": socket, "pod": cni_pod}
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        subprocess.run(["rm", "-rf", str(sockets)], check=True)
        vmnet("unplug", "--netns", cni_pod.netns, "--vmi", str(vm), "--cache-dir", cache)


def _call(socket: Path, path: str, request: bytes, timeout: float = 1.0) -> bytes:
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        return channel.unary_unary(path)(request, timeout=timeout)  # type: ignore[no-any-return]


def _define(socket: Path, domain: bytes, vmi: dict[str, object]) -> bytes:
    params = hooks.OnDefineDomainParams(domain, json.dumps(vmi).encode())
    path = hooks.callbacks_path("v1alpha3", hooks.ON_DEFINE_DOMAIN)
    reply = _call(socket, path, hooks.encode_on_define_domain_params(params), timeout=60)
    return hooks.decode_on_define_domain_result(reply).domain_xml


def _canonical(xml: bytes, drop_interfaces: bool = False) -> bytes:
    root = etree.fromstring(xml)
    for element in root.iter():
        if element.text is not None and not element.text.strip():
            element.text = None
        if element.tail is not None and not element.tail.strip():
            element.tail = None
    if drop_interfaces:
        for iface in root.findall("devices/interface"):
            iface.getparent().remove(iface)
    return etree.tostring(root, method="c14n2")


def test_info_is_what_virt_launcher_expects(sidecar) -> None:  # type: ignore[no-untyped-def]
    info = hooks.decode_info_result(_call(sidecar["socket"], hooks.INFO_PATH, b"", timeout=1.0))
    assert info.name == "mynet"
    assert info.versions[0] == "v1alpha3" and set(info.versions) == {
        "v1alpha1",
        "v1alpha2",
        "v1alpha3",
    }
    assert {p.name for p in info.hook_points} == {hooks.ON_DEFINE_DOMAIN, hooks.SHUTDOWN}
    status = Path(f"/proc/{sidecar['proc'].pid}/status").read_text()
    assert re.search(r"^Uid:\s+107\s", status, re.M) and "CapEff:\t0000000000000000" in status


def test_on_define_domain_adds_the_interface_and_nothing_else(sidecar, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = _define(sidecar["socket"], KUBEVIRT_DOMAIN, VMI)
    root = etree.fromstring(out)
    (iface,) = root.findall("devices/interface")
    assert iface.get("type") == "ethernet"
    assert iface.find("alias").get("name") == "ua-default"
    assert iface.find("target").get("dev") == "tap0" and iface.find("target").get("managed") == "no"
    assert iface.find("mac").get("address") == str(stable_mac("tenant1", "testvm", "default"))
    assert iface.find("mtu").get("size") == str(sidecar["pod"].mtu)
    assert iface.find("model").get("type") == "virtio-non-transitional"  # as KubeVirt on q35
    assert _canonical(out, drop_interfaces=True) == _canonical(KUBEVIRT_DOMAIN)
    assert _define(sidecar["socket"], out, VMI) == out  # KubeVirt may call it again
    path = tmp_path / "domain.xml"
    path.write_bytes(out)
    valid = subprocess.run(
        ["virt-xml-validate", str(path), "domain"], capture_output=True, text=True
    )
    assert valid.returncode == 0, valid.stdout + valid.stderr


def test_interfaces_of_other_bindings_are_left_alone(sidecar) -> None:  # type: ignore[no-untyped-def]
    vmi = json.loads(json.dumps(VMI))
    vmi["spec"]["domain"]["devices"]["interfaces"] = [{"name": "default", "masquerade": {}}]
    out = _define(sidecar["socket"], KUBEVIRT_DOMAIN, vmi)
    assert _canonical(out) == _canonical(KUBEVIRT_DOMAIN)


def test_a_bad_vmi_is_invalid_argument_and_the_sidecar_keeps_serving(sidecar) -> None:  # type: ignore[no-untyped-def]
    params = hooks.encode_on_define_domain_params(hooks.OnDefineDomainParams(KUBEVIRT_DOMAIN, b"{"))
    with pytest.raises(grpc.RpcError) as info:
        _call(sidecar["socket"], hooks.callbacks_path("v1alpha2", hooks.ON_DEFINE_DOMAIN), params)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not JSON" in info.value.details()
    assert _define(sidecar["socket"], KUBEVIRT_DOMAIN, VMI)


def test_shutdown_ends_it_with_exit_0(sidecar) -> None:  # type: ignore[no-untyped-def]
    _call(sidecar["socket"], hooks.callbacks_path("v1alpha3", hooks.SHUTDOWN), b"")
    assert sidecar["proc"].wait(10) == 0
    assert not sidecar["socket"].exists()


def test_sigterm_ends_it_with_exit_0(sidecar) -> None:  # type: ignore[no-untyped-def]
    os.kill(sidecar["proc"].pid, signal.SIGTERM)
    assert sidecar["proc"].wait(10) == 0
