"""Phase 2's DHCP service: DHCPv4, DHCPv6 and router advertisements for a VM.

One `Service` per VM: it opens every endpoint inside the pod namespace
first (a bind failure is reported before anything serves), then runs the
DHCPv4 loop and, when a network has IPv6, the DHCPv6 + RA loop, each on
its own thread.

DHCPv4 receive sockets are watched by a `vmnet.serve.shield.Shield`: one
that overflows under a flood keeps only the VM's requests from then on.

`stop()` ends both loops within a fraction of a second and closes every
socket; it may be called more than once. `vmnet dhcp`, `vmnet demo` and
the `plugged` test fixture all serve through this class.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

from vmnet.core.errors import ConfigError
from vmnet.core.netns import run_in
from vmnet.protocols.dhcp4.config import DhcpConfig
from vmnet.protocols.dhcp4.responder import SingleLeaseResponder
from vmnet.serve import dhcp4 as server4
from vmnet.serve.shield import Shield

if TYPE_CHECKING:  # DHCPv6 is loaded only for a pod that has IPv6 to serve
    from vmnet.protocols.dhcp6.config import Dhcp6Config
    from vmnet.protocols.dhcp6.responder import Responder6
    from vmnet.serve.endpoint6 import Endpoint6
    from vmnet.serve.tap6 import TapEndpoint6


class _Closable(Protocol):
    def close(self) -> None: ...


E = TypeVar("E", bound=_Closable)


class Service:
    """Serves the given configurations in `netns` until `stop()`."""

    def __init__(
        self,
        netns: str | None,
        v4: Sequence[tuple[str, DhcpConfig]],
        v6: Sequence[tuple[str, Dhcp6Config]] = (),
        *,
        ra_interval: float = 10.0,
        raw: bool = True,
    ) -> None:
        """`raw=False`: DHCPv4 without a packet socket (no CAP_NET_RAW, as an
        unprivileged sidecar runs); DHCPv6 and RAs need one, so `v6` must then
        be empty."""
        if not raw and v6:
            raise ConfigError("dhcp6", "DHCPv6 and router advertisements need CAP_NET_RAW")
        self._stop = threading.Event()
        self._netns = netns
        self._bridges = sorted({bridge for bridge, _ in (*v4, *v6)})
        self.lost: list[str] = []
        self._threads: list[threading.Thread] = []
        self._endpoints: list[_Closable] = []
        self.responders: list[SingleLeaseResponder] = []
        self.responders6: list[Responder6] = []
        try:
            pairs4 = [
                (self._open(server4.open_endpoint(netns, bridge, raw=raw)), SingleLeaseResponder(c))
                for bridge, c in v4
            ]
            pairs6 = self._open6(netns, v6)
        except BaseException:
            self.stop()
            raise
        self.responders = [r for _, r in pairs4]
        self.responders6 = [r for _, r in pairs6]
        if pairs4:
            self._start("dhcp4", server4.serve, pairs4, self._stop)
            rx = [(e.rx, r.config.client_mac) for e, r in pairs4]
            self.shield = Shield(rx)
            self._start("dhcp4-shield", self.shield.run, self._stop)
        if pairs6:
            from vmnet.serve import dhcp6 as server6

            self._start(
                "dhcp6",
                lambda p, s: server6.serve6(p, s, ra_interval=ra_interval),
                pairs6,
                self._stop,
            )

    def _open6(
        self, netns: str | None, v6: Sequence[tuple[str, Dhcp6Config]]
    ) -> list[tuple[Endpoint6 | TapEndpoint6, Responder6]]:
        if not v6:
            return []
        from vmnet.protocols.dhcp6.responder import Responder6
        from vmnet.serve import dhcp6 as server6

        pairs: list[tuple[Endpoint6 | TapEndpoint6, Responder6]] = []
        for link, config in v6:
            endpoint = (
                server6.open_tap_endpoint6(netns, link, config)
                if config.tap_only
                else server6.open_endpoint6(netns, link)
            )
            pairs.append((self._open(endpoint), Responder6(config)))
        return pairs

    def _open(self, endpoint: E) -> E:
        self._endpoints.append(endpoint)
        return endpoint

    def _start(self, name: str, target: Callable[..., object], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=f"vmnet-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def wait(self, stop: threading.Event, check_every: float = 1.0) -> None:
        """Block until `stop` is set (signal handlers set it), a loop ends, or
        an interface it serves is gone (then `lost` names them)."""
        checked = time.monotonic()
        while not stop.wait(0.2):
            if self._threads and not self.running:
                break
            if time.monotonic() - checked >= check_every:
                checked = time.monotonic()
                self.lost = self._missing()
                if self.lost:
                    break

    def _missing(self) -> list[str]:
        names = self._bridges

        def probe() -> list[str]:
            gone = []
            for name in names:
                try:
                    socket.if_nametoindex(name)
                except OSError:
                    gone.append(name)
            return gone

        return run_in(self._netns, probe)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._threads.clear()
        while self._endpoints:
            self._endpoints.pop().close()
