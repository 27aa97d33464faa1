"""vmnet.testing: a pytest plugin for VM networking tests, and its types.

Opt in from a test suite with `pytest -p vmnet.testing`, or with
`pytest_plugins = ["vmnet.testing"]` in its conftest.py: installing vmnet
changes no other project's test run (no autoloaded plugin, no markers, no
leak check). docs/testing.md lists every fixture and type below.

`from vmnet.testing import *` gives the fixtures and the types they hand
out, for annotations and for code that builds the same things by hand.
"""

from vmnet.testing.cni import CniError, CniPod, Node
from vmnet.testing.guest import Guest
from vmnet.testing.lease import Lease
from vmnet.testing.libvirt import Libvirtd, LibvirtGuest
from vmnet.testing.plugging import Plugged, bridge_manifest
from vmnet.testing.plugin import (
    calico_pod,
    guest_factory,
    netns,
    node,
    plugged,
    pod,
    pod_factory,
    pytest_addoption,
    pytest_configure,
    pytest_runtest_setup,
    vm,
    vmnet_leak_check,
)
from vmnet.testing.qemu import QemuGuest
from vmnet.testing.shell import CommandResult, GuestShell
from vmnet.testing.snapshots import NetSnapshot, snapshot
from vmnet.testing.wait import wait_until

# The hooks and the session's leak check are this package's own when pytest
# loads it as a plugin; they are left out of `*` so that a conftest importing
# the fixtures does not register them a second time.
_HOOKS = (pytest_addoption, pytest_configure, pytest_runtest_setup, vmnet_leak_check)

__all__ = [
    "CniError",
    "CniPod",
    "CommandResult",
    "Guest",
    "GuestShell",
    "Lease",
    "LibvirtGuest",
    "Libvirtd",
    "NetSnapshot",
    "Node",
    "Plugged",
    "QemuGuest",
    "bridge_manifest",
    "calico_pod",
    "guest_factory",
    "netns",
    "node",
    "plugged",
    "pod",
    "pod_factory",
    "snapshot",
    "vm",
    "wait_until",
]
