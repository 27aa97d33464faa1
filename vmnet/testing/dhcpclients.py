"""Run unmodified DHCP clients (busybox udhcpc, ISC dhclient, dhcpcd) in a netns.

Rules:
1. The client binary is the distribution's own; only its command line,
   config file and hook script are ours. It configures the interface itself
   (udhcpc through the -s script written here, dhclient through Debian's
   dhclient-script and exit hooks, dhcpcd natively).
2. What the client received is parsed from the client's own hook
   environment (udhcpc `-s`, dhclient `-sf`, dhcpcd `-c`), which every hook
   gets on BOUND/REBOOT/RENEW; the raw variables are kept in `Lease.raw`.
3. Each run is `ip netns exec NS unshare --uts ...`: the namespace's
   resolv.conf is bind-mounted (we create /etc/netns/NS/resolv.conf when
   absent and remove only what we created) and a hostname from option 12
   cannot rename the machine. dhcpcd also gets private bind mounts over its
   fixed state directories so runs never share leases or pid files.
4. Failures raise `ClientError` carrying the client's output.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from vmnet.errors import ConfigError, VmnetError

CLIENTS = ("udhcpc", "dhclient", "dhcpcd")
POLL = 0.05

_UDHCPC_SCRIPT = """#!/bin/sh
reason="$1"
case "$reason" in
deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
  ip -4 addr flush dev "$interface"
  ip addr add "$ip/${mask:-32}" dev "$interface"
  [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
  if [ -n "$staticroutes" ]; then
    set -- $staticroutes
    while [ $# -ge 2 ]; do
      if [ "$2" = 0.0.0.0 ]; then ip route replace "$1" dev "$interface"
      else ip route replace "$1" via "$2" dev "$interface"; fi
      shift 2
    done
  elif [ -n "$router" ]; then
    set -- $router; ip route replace default via "$1" dev "$interface"
  fi ;;
esac
env > "{dir}/env.tmp" && mv "{dir}/env.tmp" "{dir}/$reason.env"
"""
_DHCLIENT_SCRIPT = """#!/bin/sh
/sbin/dhclient-script; rc=$?
env > "{dir}/env.tmp" && mv "{dir}/env.tmp" "{dir}/$reason.env"
exit $rc
"""
_DHCLIENT_CONF = """option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
timeout {timeout}; retry 1; initial-interval 1;
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers,
  domain-search, host-name, interface-mtu, rfc3442-classless-static-routes, ntp-servers;
"""
_DHCPCD_SCRIPT = """#!/bin/sh
env > "{dir}/env.tmp" && mv "{dir}/env.tmp" "{dir}/$reason.env"
"""
_DHCPCD_CONF = """option domain_name_servers, domain_name, domain_search, host_name
option classless_static_routes, interface_mtu, ntp_servers
require dhcp_server_identifier
noarp
"""
_LEASE_REASONS = {"udhcpc": ("bound",), "dhclient": ("BOUND", "REBOOT"), "dhcpcd": ("BOUND", "REBOOT")}


class ClientError(VmnetError):
    """A DHCP client got no lease, or its output could not be parsed."""


@dataclass(frozen=True)
class Lease:
    """What one client received, as the client itself reported it."""

    client: str
    address: IPv4Interface
    router: IPv4Address | None
    dns: tuple[IPv4Address, ...]
    search: tuple[str, ...]
    domain: str | None
    hostname: str | None
    mtu: int | None
    routes: tuple[tuple[IPv4Network, IPv4Address], ...]
    server_id: IPv4Address | None
    lease_time: int | None
    raw: dict[str, str] = field(repr=False)


def run_client(
    client: str, netns: str, ifname: str, *, timeout: float = 30.0,
    workdir: str | None = None, lease_file_text: str | None = None,
) -> Lease:
    """Run `client` once in `netns` on `ifname` and return the lease it took.

    Args:
        lease_file_text: dhclient only: seeds its lease file (e.g. an old
            `fixed-address` to make it INIT-REBOOT).

    Raises:
        ConfigError: unknown client.
        ClientError: no lease within `timeout` (message has the output).
    """
    session = ClientSession(client, netns, ifname, timeout=timeout, workdir=workdir,
                            lease_file_text=lease_file_text, oneshot=True)
    try:
        return session.wait_lease(timeout)
    finally:
        session.stop()


class ClientSession:
    """A client running in the background, for renewals (`renew`)."""

    def __init__(
        self, client: str, netns: str, ifname: str, *, timeout: float = 30.0,
        workdir: str | None = None, lease_file_text: str | None = None, oneshot: bool = False,
    ) -> None:
        if client not in CLIENTS:
            raise ConfigError("client", f"unknown DHCP client {client!r}; one of {CLIENTS}")
        self.client, self.netns, self.ifname = client, netns, ifname
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"vmnet-{client}-")
        self._resolv = _ensure_resolv_conf(netns)
        argv = _prepare(client, ifname, self.workdir, timeout, lease_file_text, oneshot)
        self._log = open(os.path.join(self.workdir, "client.log"), "wb")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "unshare", "--uts", *argv],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            start_new_session=True,
        )

    def wait_lease(self, timeout: float) -> Lease:
        """Block until the client reports a lease; parse it."""
        path = self._wait_env(_LEASE_REASONS[self.client], timeout)
        return parse_env(self.client, _read_env(path))

    def renew(self, timeout: float = 10.0) -> Lease:
        """udhcpc only: SIGUSR1 makes it renew (unicast to the server id)."""
        if self.client != "udhcpc":
            raise ConfigError("client", "renew() drives udhcpc's SIGUSR1 only")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.workdir, "renew.env"))
        self.proc.send_signal(signal.SIGUSR1)
        return parse_env(self.client, _read_env(self._wait_env(("renew",), timeout)))

    def output(self) -> str:
        self._log.flush()
        with open(os.path.join(self.workdir, "client.log"), errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        """Kill the client (its configuration stays) and clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()
        _remove_resolv_conf(self._resolv)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _wait_env(self, reasons: tuple[str, ...], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for reason in reasons:
                path = os.path.join(self.workdir, f"{reason}.env")
                if os.path.exists(path):
                    return path
            if self.proc.poll() is not None and not _has_any(self.workdir, reasons):
                break
            time.sleep(POLL)
        raise ClientError(
            f"{self.client} in {self.netns} on {self.ifname}: no lease within {timeout:g}s "
            f"(exit {self.proc.poll()}): {self.output()[-2000:]!r}"
        )


def _has_any(workdir: str, reasons: tuple[str, ...]) -> bool:
    return any(os.path.exists(os.path.join(workdir, f"{r}.env")) for r in reasons)


def _write(path: str, text: str, mode: int = 0o644) -> str:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def _script(wd: str, name: str, template: str) -> str:
    # dhclient runs its script with a fresh environment, so the directory
    # is written into the script rather than passed in $DIR.
    return _write(os.path.join(wd, name), template.replace("{dir}", shlex.quote(wd)), 0o755)


def _prepare(client: str, ifname: str, wd: str, timeout: float,
             lease_text: str | None, oneshot: bool) -> list[str]:
    tries = str(max(1, int(timeout)))
    if client == "udhcpc":
        script = _script(wd, "udhcpc.sh", _UDHCPC_SCRIPT)
        opts = [a for o in ("mtu", "search", "staticroutes", "ntpsrv", "hostname", "domain")
                for a in ("-O", o)]
        once = ["-q", "-n"] if oneshot else []
        return ["busybox", "udhcpc", "-f", *once, "-i", ifname, "-s", script,
                "-t", tries, "-T", "1", "-A", "1", *opts]
    if client == "dhclient":
        script = _script(wd, "dhclient.sh", _DHCLIENT_SCRIPT)
        conf = _write(os.path.join(wd, "dhclient.conf"), _DHCLIENT_CONF.format(timeout=tries))
        lease = _write(os.path.join(wd, "dhclient.leases"), lease_text or "")
        return ["dhclient", "-d", "-1", "-v", "-cf", conf, "-lf", lease,
                "-pf", os.path.join(wd, "dhclient.pid"), "-sf", script, ifname]
    script = _script(wd, "dhcpcd.sh", _DHCPCD_SCRIPT)
    conf = _write(os.path.join(wd, "dhcpcd.conf"), _DHCPCD_CONF)
    for sub in ("lib", "run"):
        os.makedirs(os.path.join(wd, sub), exist_ok=True)
    once = ["--oneshot"] if oneshot else []
    inner = (f"mount --bind {wd}/lib /var/lib/dhcpcd && mount --bind {wd}/run /run/dhcpcd && "
             f"exec dhcpcd -f {conf} -c {script} {' '.join(once)} --nobackground --noipv4ll "
             f"-4 -t {tries} {ifname}")
    os.makedirs("/run/dhcpcd", exist_ok=True)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner]


def _read_env(path: str) -> dict[str, str]:
    env: dict[str, str] = {}
    with open(path, errors="replace") as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep and key.isidentifier():
                env[key] = value
    return env


def parse_env(client: str, env: dict[str, str]) -> Lease:
    """Turn one client's hook environment into a `Lease`."""
    try:
        return _PARSERS[client](env)
    except (KeyError, ValueError) as err:
        raise ClientError(f"{client}: cannot parse lease ({err}): {env}") from err


def _ips(text: str | None) -> tuple[IPv4Address, ...]:
    return tuple(IPv4Address(a) for a in (text or "").split())


def _first(text: str | None) -> IPv4Address | None:
    ips = _ips(text)
    return ips[0] if ips else None


def _int(text: str | None) -> int | None:
    return int(text) if text else None


def _pair_routes(text: str | None) -> tuple[tuple[IPv4Network, IPv4Address], ...]:
    words = (text or "").split()
    return tuple((IPv4Network(d), IPv4Address(g)) for d, g in zip(words[::2], words[1::2]))


def _rfc3442_routes(text: str | None) -> tuple[tuple[IPv4Network, IPv4Address], ...]:
    from vmnet.dhcp.options import parse_classless_routes

    data = bytes(int(x) for x in (text or "").replace(",", " ").split())
    return tuple((d, g or IPv4Address(0)) for d, g in parse_classless_routes(data))


def _udhcpc(env: dict[str, str]) -> Lease:
    return Lease(
        "udhcpc", IPv4Interface(f"{env['ip']}/{env.get('mask') or env['subnet']}"),
        _first(env.get("router")), _ips(env.get("dns")), tuple(env.get("search", "").split()),
        env.get("domain") or None, env.get("hostname") or None, _int(env.get("mtu")),
        _pair_routes(env.get("staticroutes")), _first(env.get("serverid")),
        _int(env.get("lease")), env,
    )


def _isc_style(client: str, env: dict[str, str], routes_key: str, routes_parser) -> Lease:  # type: ignore[no-untyped-def]
    mask = env.get("new_subnet_cidr") or env["new_subnet_mask"]
    return Lease(
        client, IPv4Interface(f"{env['new_ip_address']}/{mask}"),
        _first(env.get("new_routers")), _ips(env.get("new_domain_name_servers")),
        tuple(d.rstrip(".") for d in env.get("new_domain_search", "").split()),
        env.get("new_domain_name") or None,
        env.get("new_host_name") or None, _int(env.get("new_interface_mtu")),
        routes_parser(env.get(routes_key)), _first(env.get("new_dhcp_server_identifier")),
        _int(env.get("new_dhcp_lease_time")), env,
    )


_PARSERS = {
    "udhcpc": _udhcpc,
    "dhclient": lambda env: _isc_style("dhclient", env, "new_rfc3442_classless_static_routes",
                                       _rfc3442_routes),
    "dhcpcd": lambda env: _isc_style("dhcpcd", env, "new_classless_static_routes", _pair_routes),
}


def _ensure_resolv_conf(netns: str) -> list[str]:
    """Create /etc/netns/NS/resolv.conf if missing; return what we created."""
    created: list[str] = []
    directory = os.path.join("/etc/netns", netns)
    if not os.path.isdir(directory):
        os.makedirs(directory)
        created.append(directory)
    path = os.path.join(directory, "resolv.conf")
    if not os.path.exists(path):
        _write(path, "# vmnet test namespace\n")
        created.append(path)
    return created


def _remove_resolv_conf(created: list[str]) -> None:
    for path in reversed(created):
        with contextlib.suppress(OSError):
            os.rmdir(path) if os.path.isdir(path) else os.unlink(path)


@contextlib.contextmanager
def resolv_conf(netns: str) -> Iterator[None]:
    """The namespace has a resolv.conf for the duration (rule 3)."""
    created = _ensure_resolv_conf(netns)
    try:
        yield
    finally:
        _remove_resolv_conf(created)
