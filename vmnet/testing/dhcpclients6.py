"""DHCPv6 clients for tests: unmodified dhclient -6 and dhcpcd -6, run once.

As `vmnet.testing.dhcpclients`, whose helpers this reuses, the client
runs in the namespace with its own work directory and the namespace's own
resolv.conf; the lease is what the client's hook environment reported.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from ipaddress import IPv6Address

from vmnet.core.errors import ConfigError
from vmnet.core.netns import check_netns
from vmnet.testing.dhcpclients import (
    DHCLIENT_SCRIPT,
    DHCPCD_SCRIPT,
    POLL,
    ClientError,
    client_script,
    ensure_resolv_conf,
    read_env,
    remove_resolv_conf,
    write_file,
)

CLIENTS6 = ("dhclient", "dhcpcd")


@dataclass(frozen=True)
class Lease6:
    """What one DHCPv6 client received, as its own hook environment reported it."""

    client: str
    address: IPv6Address
    dns: tuple[IPv6Address, ...]
    search: tuple[str, ...]
    preferred_lifetime: int | None
    valid_lifetime: int | None
    server_id: bytes | None
    raw: dict[str, str] = field(repr=False)


_DHCLIENT6_CONF = """timeout {timeout}; retry 1; initial-interval 1;
request dhcp6.name-servers, dhcp6.domain-search;
"""
_DHCPCD6_CONF = "option dhcp6_name_servers, dhcp6_domain_search\n"
_REASONS6 = ("BOUND6", "REBOOT6")


def run_client6(
    client: str,
    netns: str,
    ifname: str,
    *,
    timeout: float = 30.0,
    workdir: str | None = None,
    lease_file_text: str | None = None,
) -> Lease6:
    """Run dhclient -6 or dhcpcd -6 once in `netns` on `ifname`; return the lease it took.

    Raises:
        ConfigError: unknown client or namespace.
        ClientError: no lease within `timeout` (message has the output).
    """
    if client not in CLIENTS6:
        raise ConfigError("client", f"unknown DHCPv6 client {client!r}; one of {CLIENTS6}")
    check_netns(netns)
    wd = workdir or tempfile.mkdtemp(prefix=f"vmnet-{client}6-")
    created = ensure_resolv_conf(netns)
    argv = _argv6(client, ifname, wd, timeout, lease_file_text)
    log_path = os.path.join(wd, "client.log")
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", netns, "unshare", "--uts", *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                start_new_session=True,
            )
            try:
                return _parse6(client, read_env(_wait6(proc, wd, timeout, log_path)))
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    finally:
        remove_resolv_conf(created)
        if workdir is None:
            shutil.rmtree(wd, ignore_errors=True)


def _argv6(client: str, ifname: str, wd: str, timeout: float, lease_text: str | None) -> list[str]:
    tries = str(max(1, int(timeout)))
    if client == "dhclient":
        script = client_script(wd, "dhclient.sh", DHCLIENT_SCRIPT)
        conf = write_file(os.path.join(wd, "dhclient.conf"), _DHCLIENT6_CONF.format(timeout=tries))
        lease = write_file(os.path.join(wd, "dhclient6.leases"), lease_text or "")
        return [
            "dhclient",
            "-6",
            "-d",
            "-1",
            "-v",
            "-cf",
            conf,
            "-lf",
            lease,
            "-pf",
            os.path.join(wd, "dhclient6.pid"),
            "-sf",
            script,
            ifname,
        ]
    script = client_script(wd, "dhcpcd.sh", DHCPCD_SCRIPT)
    conf = write_file(os.path.join(wd, "dhcpcd.conf"), _DHCPCD6_CONF)
    for sub in ("lib", "run"):
        os.makedirs(os.path.join(wd, sub), exist_ok=True)
    os.makedirs("/run/dhcpcd", exist_ok=True)
    inner = (
        f"mount --bind {wd}/lib /var/lib/dhcpcd && mount --bind {wd}/run /run/dhcpcd && "
        f"exec dhcpcd -f {conf} -c {script} --oneshot --nobackground -6 -t {tries} {ifname}"
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner]


def _wait6(proc: subprocess.Popen[bytes], wd: str, timeout: float, log_path: str) -> str:
    deadline = time.monotonic() + timeout
    while True:
        exited = proc.poll() is not None
        for reason in _REASONS6:
            path = os.path.join(wd, f"{reason}.env")
            if os.path.exists(path):
                return path
        if exited or time.monotonic() > deadline:
            break
        time.sleep(POLL)
    with open(log_path, errors="replace") as f:
        output = f.read()
    raise ClientError(
        f"no DHCPv6 lease within {timeout:g}s (exit {proc.poll()}): {output[-2000:]!r}"
    )


def _parse6(client: str, env: dict[str, str]) -> Lease6:
    try:
        if client == "dhclient":
            address, pl, vl = (
                env["new_ip6_address"],
                env.get("new_preferred_life"),
                env.get("new_max_life"),
            )
            sid = bytes(int(x, 16) for x in env.get("new_dhcp6_server_id", "").split(":") if x)
        else:
            address, pl, vl = (
                env["new_dhcp6_ia_na1_ia_addr1"],
                env.get("new_dhcp6_ia_na1_ia_addr1_pltime"),
                env.get("new_dhcp6_ia_na1_ia_addr1_vltime"),
            )
            sid = bytes.fromhex(env.get("new_dhcp6_server_id", ""))
        return Lease6(
            client,
            IPv6Address(address),
            tuple(IPv6Address(a) for a in env.get("new_dhcp6_name_servers", "").split()),
            tuple(d.rstrip(".") for d in env.get("new_dhcp6_domain_search", "").split()),
            int(pl) if pl else None,
            int(vl) if vl else None,
            sid or None,
            env,
        )
    except (KeyError, ValueError) as err:
        raise ClientError(f"{client}: cannot parse DHCPv6 lease ({err}): {env}") from err
