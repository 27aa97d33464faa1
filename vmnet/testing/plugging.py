"""A pod with a vmnet binding applied and its DHCP responder serving.

`Plugged` runs vmnet the way a launcher does: phase 1 against the pod
namespace, then phase 2 (the DHCP responder) on a thread of the test
process, its sockets opened inside the pod namespace.

`.address`, `.gateway` and `.mac` are what the guest must end up with (the
first network's lease and VM MAC), read from vmnet's own cache; the pod's
own view stays on `.pod`.

`close()` stops the responder, unplugs, and checks that the pod namespace
is exactly as the CNI plugin left it; it may be called more than once.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from typing import Any

import yaml

from vmnet import manifest
from vmnet.core.addr import IPAddress, IPInterface, MacAddress
from vmnet.phases import phase1, phase2
from vmnet.protocols import resolvconf
from vmnet.serve.service import Service
from vmnet.store.cache import Cache
from vmnet.testing.cni import CniPod
from vmnet.testing.snapshots import snapshot

RESOLV = (
    "nameserver 10.96.0.10\nnameserver fd00:10:96::a\n"
    "search default.svc.cluster.local svc.cluster.local cluster.local\n"
)


def bridge_manifest(binding: str = "bridge", name: str = "testvm") -> dict[str, Any]:
    """A one-NIC VMI on the pod network with `binding` ("bridge", "masquerade", ...)."""
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "domain": {"devices": {"interfaces": [{"name": "default", binding: {}}]}},
            "networks": [{"name": "default", "pod": {}}],
        },
    }


class Plugged:
    """`pod` plugged with the VM of `spec` (a manifest dict or YAML text)."""

    def __init__(
        self,
        pod: CniPod,
        spec: dict[str, Any] | str | None = None,
        resolv: str = RESOLV,
        options: phase1.PlugOptions | None = None,
        lease_time: int | None = None,
    ) -> None:
        """`lease_time`: serve leases of that many seconds (DHCPv4 and DHCPv6)
        instead of phase 1's, so a test sees renewals at T1 (half of it)."""
        self.pod = pod
        self.netns = pod.netns
        text = spec if isinstance(spec, str) else yaml.safe_dump(spec or bridge_manifest())
        self.vmi = manifest.parse_text(text)
        self.workdir = tempfile.mkdtemp(prefix="vmt-plugged-")
        self.cache = Cache(os.path.join(self.workdir, "cache"))
        self._before = snapshot(self.netns)
        self.service: Service | None = None
        self.result = phase1.plug(self.vmi, self.netns, self.cache, options)
        try:
            self.interfaces = phase2.domain_interfaces(self.vmi, self.cache)
            parsed = resolvconf.parse(resolv)
            self.configs = phase2.dhcp_configs(self.vmi, self.cache, parsed)
            self.configs6 = phase2.dhcp6_configs(self.vmi, self.cache, parsed)
            if lease_time is not None:
                self.configs = [(b, replace(c, lease_time=lease_time)) for b, c in self.configs]
                self.configs6 = [(b, replace(c, lease_time=lease_time)) for b, c in self.configs6]
            self.service = Service(self.netns, self.configs, self.configs6, ra_interval=1.0)
            self.responders = self.service.responders
            self.responders6 = self.service.responders6
        except BaseException:
            self.close()
            raise

    @property
    def mac(self) -> MacAddress:
        return self.interfaces[0].mac

    @property
    def tap(self) -> str:
        return self.interfaces[0].target or ""

    @property
    def address(self) -> IPInterface:
        return self.configs[0][1].address

    @property
    def gateway(self) -> IPAddress | None:
        return self.configs[0][1].router

    def stop_serving(self) -> None:
        """Stop phase 2's responders (the pod stays plugged)."""
        if self.service is not None:
            self.service.stop()
            self.service = None

    def close(self, check_restored: bool = True) -> None:
        """Stop serving, unplug, and check the pod is back as the CNI made it.
        A pod already deleted (its namespace gone) is only stopped serving."""
        self.stop_serving()
        if self.pod.closed:
            return
        if self.cache.networks():
            phase1.unplug(self.vmi, self.netns, self.cache)
            after = snapshot(self.netns)
            if check_restored and after != self._before:
                raise AssertionError(
                    "unplug did not restore the pod: " + "; ".join(after.diff(self._before))
                )

    def __repr__(self) -> str:
        return f"Plugged({self.netns} {[i.alias for i in self.interfaces]})"
