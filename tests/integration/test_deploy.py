"""deploy/: the files an admin applies, checked against each other and against vmnet.

There is no cluster here, so the `kubectl` and `podman` commands of
docs/kubevirt-plugin.md cannot run; instead every file they name must
exist and say what the others expect: the NAD is the minimal vmnet-cni
config and the KubeVirt CR patch names it; the example VM parses with
vmnet's own manifest parser and selects the binding the patch registers;
the images copy what the repository has (the bundle after `make
cni-bundle`); the DaemonSet mounts where deploy/install-cni.sh writes.
The bundle itself is built, installed and run in test_cni_bundle.py.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from vmnet import manifest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# the admin's commands in docs/kubevirt-plugin.md, in order
COMMANDS = [
    "make cni-bundle",
    "podman build -f deploy/Containerfile.cni -t REGISTRY/vmnet-cni:0.1.0 .",
    "podman build -f deploy/Containerfile.sidecar -t REGISTRY/vmnet-sidecar:0.1.0 .",
    "podman push REGISTRY/vmnet-cni:0.1.0",
    "podman push REGISTRY/vmnet-sidecar:0.1.0",
    "kubectl apply -f deploy/cni-daemonset.yaml",
    "kubectl apply -f deploy/netattachdef.yaml",
    "kubectl patch kubevirts -n kubevirt kubevirt --type merge --patch-file "
    "deploy/kubevirt-cr-patch.yaml",
    "kubectl patch kubevirts -n kubevirt kubevirt --type json --patch-file "
    "deploy/kubevirt-featuregate-patch.json",
    "kubectl apply -f deploy/vm-example.yaml",
]


def _load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


def test_every_file_the_commands_name_exists() -> None:
    doc = (ROOT / "docs" / "kubevirt-plugin.md").read_text()
    for command in COMMANDS:
        assert command in doc, command
        words = shlex.split(command)
        for word in words:
            if word.startswith("deploy/"):
                assert (ROOT / word).is_file(), word
    named = set(re.findall(r"deploy/[\w.-]+", doc))
    assert named and all((ROOT / n).exists() for n in named), named
    assert {p.name for p in DEPLOY.iterdir()} >= {n.split("/")[1] for n in named}


def test_the_nad_is_the_minimal_vmnet_cni_config_the_patch_names() -> None:
    nad = _load("netattachdef.yaml")
    assert nad["kind"] == "NetworkAttachmentDefinition"
    assert nad["apiVersion"] == "k8s.cni.cncf.io/v1"
    config = json.loads(nad["spec"]["config"])
    assert config == {
        "cniVersion": "1.0.0",
        "name": "netbindingvmnet",
        "plugins": [{"type": "vmnet-cni"}],
    }
    patch = _load("kubevirt-cr-patch.yaml")
    binding = patch["spec"]["configuration"]["network"]["binding"]
    assert list(binding) == ["vmnet"]
    meta = nad["metadata"]
    assert binding["vmnet"]["networkAttachmentDefinition"] == f"{meta['namespace']}/{meta['name']}"
    assert binding["vmnet"]["sidecarImage"] == "REGISTRY/vmnet-sidecar:0.1.0"
    assert "domainAttachmentType" not in binding["vmnet"]  # the sidecar adds the <interface>
    (gate,) = json.loads((DEPLOY / "kubevirt-featuregate-patch.json").read_text())
    assert gate["op"] == "add" and gate["value"] == "NetworkBindingPlugins"
    assert gate["path"].endswith("/developerConfiguration/featureGates/-")


def test_the_example_vm_selects_the_registered_binding() -> None:
    vmi = manifest.load(str(DEPLOY / "vm-example.yaml"))
    (iface,) = vmi.interfaces
    (network,) = vmi.networks
    patch = _load("kubevirt-cr-patch.yaml")
    assert iface.binding_plugin in patch["spec"]["configuration"]["network"]["binding"]
    assert (iface.name, network.name, network.kind) == ("default", "default", "pod")


def test_the_images_copy_what_the_repository_has() -> None:
    cni = (DEPLOY / "Containerfile.cni").read_text()
    assert "COPY dist/vmnet-cni /opt/vmnet-cni" in cni
    assert "COPY deploy/install-cni.sh /install-cni.sh" in cni
    assert (ROOT / "deploy" / "bundle.py").is_file()
    sidecar = (DEPLOY / "Containerfile.sidecar").read_text()
    assert "USER 107:107" in sidecar
    assert '"sidecar"]' in sidecar and "[sidecar]" in sidecar  # grpcio comes with the extra
    assert "FROM ${BASE}" in sidecar and "FROM ${BASE}" in cni


def test_the_daemonset_mounts_where_the_installer_writes() -> None:
    ds = _load("cni-daemonset.yaml")
    spec = ds["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"] == "REGISTRY/vmnet-cni:0.1.0"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    installer = (DEPLOY / "install-cni.sh").read_text()
    assert f"HOST_CNI_BIN:-{mounts['cnibin']}" in installer
    assert f"HOST_OPT:-{mounts['opt']}" in installer
    assert f"NODE_OPT:-{paths['opt']}" in installer
    assert paths["cnibin"] == "/opt/cni/bin"
