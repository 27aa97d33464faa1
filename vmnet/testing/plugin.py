"""The vmnet pytest plugin: namespaces, real CNI pods and tap-attached guests.

Loaded only when a suite asks for it: `pytest -p vmnet.testing` or
`pytest_plugins = ["vmnet.testing"]` (docs/testing.md). What it guarantees:

- fixtures are function-scoped, built with `yield`, and clean up what they
  made even when the test fails; teardown ignores only "already gone";
- a test marked `netns`, `cni`, `qemu` or `libvirt`, or using a fixture that
  needs one of those, is skipped with a reason naming the missing piece
  (root, a CNI plugin on the search path, qemu, libvirtd), or fails it with
  `--vmnet-strict` (ini `vmnet_strict = true`), which vmnet's own `make test`
  uses; `--cni-path` (ini `vmnet_cni_path`, else $CNI_PATH, else
  /opt/cni/bin:/usr/lib/cni) says where a CNI project's own plugin build is;
- with `--vmnet-leak-check` (or ini `vmnet_leak_check = true`), the session
  errors if a namespace made by vmnet.testing, a relay or a child process is
  left behind, and lists them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from vmnet.core.addr import MacAddress
from vmnet.core.errors import ConfigError
from vmnet.testing import cni, relay
from vmnet.testing import namespaces as ns
from vmnet.testing.guest import Guest

MARKERS = (
    "netns: needs root and network namespaces",
    "cni(*plugins): needs the CNI plugins on the search path, --cni-path (default: bridge, "
    "host-local)",
    "qemu: needs qemu-system-x86_64 and a Debian cloud kernel",
    "libvirt: needs libvirtd and virsh",
)
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
MANUAL_PODS = ("veth", "calico")
_settings: dict[str, bool] = {}  # from the command line and ini, at configure time


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "vmnet_leak_check",
        "fail the session if vmnet.testing leaves namespaces, relays or child processes behind",
        type="bool",
        default=False,
    )
    parser.addini(
        "vmnet_cni_path",
        "where CNI plugins are looked for, colon-separated (default: $CNI_PATH, else "
        "/opt/cni/bin:/usr/lib/cni)",
        default="",
    )
    parser.addini(
        "vmnet_strict",
        "a missing component (root, a CNI plugin, qemu, libvirt) fails the test instead of "
        "skipping it",
        type="bool",
        default=False,
    )
    group = parser.getgroup("vmnet")
    group.addoption(
        "--cni-path",
        metavar="DIRS",
        help="where CNI plugins are looked for, colon-separated, first match wins "
        "(ini: vmnet_cni_path; default: $CNI_PATH, else /opt/cni/bin:/usr/lib/cni)",
    )
    group.addoption(
        "--vmnet-strict",
        action="store_true",
        default=False,
        help="a missing component fails the test instead of skipping it (ini: vmnet_strict)",
    )
    parser.getgroup("vmnet").addoption(
        "--vmnet-leak-check",
        action="store_true",
        default=False,
        help="fail the session if vmnet.testing leaves namespaces, relays or child processes "
        "behind (ini: vmnet_leak_check = true)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    cni.set_search_path(config.getoption("--cni-path") or config.getini("vmnet_cni_path") or None)
    _settings["strict"] = bool(config.getoption("--vmnet-strict") or config.getini("vmnet_strict"))


def _unmet(reason: str) -> None:
    """Skip for a missing component, or fail in strict mode."""
    if _settings.get("strict"):
        pytest.fail(f"missing component (--vmnet-strict): {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers():
        reason = missing(marker.name, *marker.args)
        if reason:
            _unmet(reason)


def missing(need: str, *args: Any) -> str | None:
    """Why a requirement (`netns`, `cni`, `qemu`, `libvirt`) is unmet, or None."""
    if need in ("netns", "cni", "qemu", "libvirt") and (why := _no_netns()):
        return why
    if need == "cni":
        for plugin in args or ("bridge", "host-local"):
            if cni.find_plugin(plugin) is None:
                where = ":".join(cni.search_path())
                return f"needs CNI plugin {plugin!r} in {where} (--cni-path, ini vmnet_cni_path)"
    if need == "qemu":
        return _no_qemu()
    if need == "libvirt":
        for tool in ("libvirtd", "virsh"):
            if shutil.which(tool) is None:
                return f"needs {tool} (libvirt-daemon, libvirt-clients)"
    return None


def _no_netns() -> str | None:
    with open("/proc/self/status", encoding="ascii") as f:
        caps = next((int(line.split()[1], 16) for line in f if line.startswith("CapEff:")), 0)
    for bit, name in ((CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN")):
        if not caps >> bit & 1:
            return f"needs root ({name}) for network namespaces"
    return None


def _no_qemu() -> str | None:
    try:
        from vmnet.testing.qemu import available
    except ImportError:
        return None if shutil.which("qemu-system-x86_64") else "needs qemu-system-x86_64"
    return available()


def _require(need: str, *args: str) -> None:
    reason = missing(need, *args)
    if reason:
        _unmet(reason)


@pytest.fixture(scope="session", autouse=True)
def vmnet_leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """Name: vmnet_leak_check
    Scope: session (autouse)
    Depends: -
    Provides: nothing; after the session, errors listing every namespace,
        relay or child process vmnet.testing left behind.
    """
    yield
    config = request.config
    if not (config.getoption("--vmnet-leak-check") or config.getini("vmnet_leak_check")):
        return
    leaked = ns.leaks() + [f"relay {r}" for r in relay.live_relays()]
    if leaked:
        pytest.fail("vmnet.testing leaked:\n  " + "\n  ".join(leaked), pytrace=False)


@pytest.fixture
def netns() -> Iterator[str]:
    """Name: netns
    Scope: function
    Depends: root (skips without CAP_NET_ADMIN/CAP_SYS_ADMIN)
    Provides: the name of a fresh namespace `vmt-xxxxxxxx` with lo up and
        its own /etc/netns/<name>/resolv.conf; removed afterwards.
    """
    _require("netns")
    with ns.temp_netns() as name:
        yield name


@pytest.fixture
def node() -> Iterator[cni.Node]:
    """Name: node
    Scope: function
    Depends: root
    Provides: a `cni.Node`: a node namespace (uplink0 192.168.255.1/24 with a
        default route, ip_forward on) that runs CNI plugins and hosts pods.
        Its pods get CNI DEL, then the node namespace and IPAM store go.
    """
    _require("netns")
    made = cni.Node()
    try:
        yield made
    finally:
        made.close()


def _make_pod(
    node: cni.Node, spec: Any = None, ifname: str = "eth0", netns: str | None = None
) -> cni.CniPod:
    if spec == "veth":
        return node.veth_pod(ifname=ifname)
    if spec == "calico":
        return node.calico_pod(ifname=ifname)
    if spec is None or isinstance(spec, str):
        kind = spec or "bridge"
        if kind not in cni.CONFIGS:
            known = sorted(cni.CONFIGS) + list(MANUAL_PODS)
            raise ConfigError("pod", f"unknown pod kind {kind!r}; use a config dict or {known}")
        spec = cni.CONFIGS[kind]()
    if isinstance(spec, Mapping) and isinstance(spec.get("type"), str):
        ipam = (spec.get("ipam") or {}).get("type")
        _require("cni", spec["type"], *([ipam] if isinstance(ipam, str) else []))
    return node.add_pod(spec, ifname=ifname, netns=netns)


@pytest.fixture
def pod(request: pytest.FixtureRequest, node: cni.Node) -> cni.CniPod:
    """Name: pod
    Scope: function
    Depends: node; the CNI plugins the config names (skips if missing)
    Provides: a `cni.CniPod` (.netns, .ifname, .result, .address, .gateway,
        .mac, .mtu) whose eth0 a real CNI plugin made. Parametrize
        indirectly with a config dict or "bridge" (default, host-local),
        "ptp", "macvlan", "static", "veth" (no CNI) or "calico".
        Torn down by `node` (CNI DEL, namespace removed).
    """
    return _make_pod(node, getattr(request, "param", None))


@pytest.fixture
def pod_factory(node: cni.Node) -> Callable[..., cni.CniPod]:
    """Name: pod_factory
    Scope: function
    Depends: node
    Provides: `make(spec=None, *, ifname="eth0", netns=None) -> CniPod`, with
        `spec` as for `pod`; `netns=` adds a second NIC to an existing pod
        (e.g. ifname "pod914f438d88d"). All are torn down by `node`.
    """

    def make(spec: Any = None, *, ifname: str = "eth0", netns: str | None = None) -> cni.CniPod:
        return _make_pod(node, spec, ifname, netns)

    return make


@pytest.fixture
def calico_pod(node: cni.Node) -> cni.CniPod:
    """Name: calico_pod
    Scope: function
    Depends: node
    Provides: a Calico-shaped pod: eth0 with a /32 address, `169.254.1.1 dev
        eth0 scope link` and `default via 169.254.1.1`; the node answers ARP
        for 169.254.1.1 by proxy ARP.
    """
    return node.calico_pod()


@pytest.fixture
def guest_factory() -> Iterator[Callable[..., Guest]]:
    """Name: guest_factory
    Scope: function
    Depends: root; a tap that exists when the factory is called
    Provides: `attach(pod, tap="tap0", mac=None, *, ifname="eth0", mtu=None)
        -> Guest`, where `pod` is a namespace name or anything with `.netns`
        (a CniPod) and `mac` a MacAddress or string (default: random).
        Guests are closed (relay stopped, namespaces removed) at teardown,
        newest first.
    """
    _require("netns")
    guests: list[Guest] = []

    def attach(
        pod: Any, tap: str = "tap0", mac: MacAddress | str | None = None, **kw: Any
    ) -> Guest:
        pod_ns = pod if isinstance(pod, str) else pod.netns
        try:
            parsed = MacAddress.parse(mac) if isinstance(mac, str) else mac
        except ValueError as err:
            raise ConfigError("guest mac", str(err)) from err
        guest = Guest(pod_ns, tap, parsed, **kw)
        guests.append(guest)
        return guest

    try:
        yield attach
    finally:
        while guests:
            guests.pop().close()


# ---- extension points: `plugged` (lead), `vm` (qemu) go here ----


@pytest.fixture
def plugged(request: pytest.FixtureRequest, node: cni.Node) -> Iterator[Any]:
    """Name: plugged
    Scope: function
    Depends: node, root, the CNI plugins of the pod (skips if missing)
    Provides: a `vmnet.testing.plugging.Plugged`: a pod (default: CNI bridge +
        host-local) with vmnet phase 1 applied from a manifest and phase 2's
        DHCP responder serving. `.netns`, `.tap`, `.mac` (the VM MAC),
        `.address`/`.gateway` (the lease the guest must get), `.pod`, `.vmi`,
        `.cache`, `.responders`. Parametrize indirectly with a binding name
        ("bridge", "masquerade"), a manifest dict or YAML text, or a dict
        {"manifest": ..., "pod": <as for `pod`>}. Teardown unplugs and fails
        the test if the pod netns is not exactly as the CNI left it.
    """
    from vmnet.testing.plugging import Plugged, bridge_manifest

    param = getattr(request, "param", None)
    pod_spec: Any = None
    if isinstance(param, str) and param.isidentifier():
        param = bridge_manifest(param)
    elif isinstance(param, dict) and "manifest" in param:
        pod_spec, param = param.get("pod"), param["manifest"]
    pod = _make_pod(node, pod_spec)
    result = Plugged(pod, param)
    try:
        yield result
    finally:
        result.close()


@pytest.fixture
def vm(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Name: vm
    Scope: function
    Depends: root, qemu-system-x86_64, a Debian cloud kernel, busybox-static,
        klibc-utils (skips naming what is missing)
    Provides: `boot(target, tap=None, mac=None, **kw) -> QemuGuest`: a real
        guest booted under TCG on the tap, driven over its serial console
        (`.console`, `.run(cmd)`, `.dhcp("udhcpc"|"ipconfig")`, `.ip_addr()`,
        `.ip_route()`, `.mtu()`, `.ping(addr)`). `target` is a namespace name
        or a `plugged` pod (then tap and MAC default to the VM's). Guests
        are powered off (killed after a deadline) at teardown.
    """
    import contextlib

    from vmnet.testing import qemu

    why = qemu.available()
    if why:
        _unmet(why)
    with contextlib.ExitStack() as stack:

        def boot(target: Any, tap: str | None = None, mac: Any = None, **kw: Any) -> Any:
            netns = target if isinstance(target, str) else target.netns
            tap = tap or getattr(target, "tap", None) or "tap0"
            mac = mac or getattr(target, "mac", None)
            return stack.enter_context(qemu.QemuGuest(netns, tap, str(mac), **kw))

        yield boot
