"""The hook sidecar's gRPC server on a unix socket, as virt-launcher dials it.

virt-launcher finds the socket in its hooks directory, calls
`/kubevirt.hooks.info.Info/Info` (1 s deadline; an error there is fatal to
the VM), picks the newest callbacks version listed, and later calls
`OnDefineDomain` and, for v1alpha3, `Shutdown` on that version's service.
The server answers Info with the plugin's name, the versions v1alpha3,
v1alpha2 and v1alpha1, and the hook points OnDefineDomain and Shutdown
(not PreCloudInitIso: its answer would replace the VM's cloud-init data).
The messages are `vmnet.protocols.hooks`'; grpcio carries them, with no
generated code. A callback that raises a `VmnetError` is answered with
INVALID_ARGUMENT and its one-line message, and logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

from vmnet.core.errors import VmnetError
from vmnet.protocols import hooks

log = logging.getLogger(__name__)


class HookServer:
    """Serves Info, OnDefineDomain and Shutdown on `socket_path` until stopped."""

    def __init__(
        self,
        socket_path: str,
        name: str,
        on_define_domain: Callable[[bytes, bytes], bytes],
    ) -> None:
        self.socket_path = socket_path
        self.name = name
        self.on_define_domain = on_define_domain
        self.shutdown = threading.Event()  # set by the Shutdown hook
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self._server.add_generic_rpc_handlers((_Handler(self),))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        if not self._server.add_insecure_port(f"unix:{socket_path}"):
            raise VmnetError(f"hooks socket {socket_path}: cannot listen")

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=1).wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def info(self) -> hooks.InfoResult:
        points = (hooks.HookPoint(hooks.ON_DEFINE_DOMAIN), hooks.HookPoint(hooks.SHUTDOWN))
        return hooks.InfoResult(self.name, points, hooks.VERSIONS)


class _Handler:
    """A grpc generic handler: `service()` routes a method path to its callback."""

    def __init__(self, server: HookServer) -> None:
        self.server = server
        self.routes: dict[str, Callable[[bytes, Any], bytes]] = {hooks.INFO_PATH: self._info}
        for version in hooks.VERSIONS:
            self.routes[hooks.callbacks_path(version, hooks.ON_DEFINE_DOMAIN)] = self._define
        self.routes[hooks.callbacks_path("v1alpha3", hooks.SHUTDOWN)] = self._shutdown

    def service(self, handler_call_details: Any) -> Any:
        route = self.routes.get(handler_call_details.method)
        if route is None:
            return None
        return grpc.unary_unary_rpc_method_handler(route)  # raw bytes in and out

    def _info(self, request: bytes, context: Any) -> bytes:
        hooks.decode_empty(request)
        return hooks.encode_info_result(self.server.info())

    def _define(self, request: bytes, context: Any) -> bytes:
        try:
            params = hooks.decode_on_define_domain_params(request)
            xml = self.server.on_define_domain(params.domain_xml, params.vmi)
        except VmnetError as err:
            log.error("OnDefineDomain: %s", err)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        log.info("OnDefineDomain: decorated the domain (%d bytes)", len(xml))
        return hooks.encode_on_define_domain_result(hooks.OnDefineDomainResult(xml))

    def _shutdown(self, request: bytes, context: Any) -> bytes:
        hooks.decode_empty(request)
        log.info("Shutdown: the VM is gone")
        self.server.shutdown.set()
        return hooks.encode_empty()
