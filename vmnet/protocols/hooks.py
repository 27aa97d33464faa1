"""KubeVirt's hook sidecar messages, on the protobuf wire, without protobuf.

The messages of `kubevirt.hooks.info` and `kubevirt.hooks.v1alpha{1,2,3}`
(KubeVirt's `pkg/hooks/info/api_info.proto`, `pkg/hooks/v1alpha*/api_*.proto`;
the field numbers are in docs/kubevirt.md, Binding plugins): a handful of
strings, byte strings and one repeated message, so proto3's wire format
(varints and length-delimited fields) is written here directly and no
generated code or protoc run is needed. Decoding skips fields it does not
know, as proto3 does, and raises `HookDecodeError` on bytes that are not a
message of that shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from vmnet.core.errors import VmnetError

INFO_PATH = "/kubevirt.hooks.info.Info/Info"
VERSIONS = ("v1alpha3", "v1alpha2", "v1alpha1")  # newest first, as virt-launcher picks
ON_DEFINE_DOMAIN = "OnDefineDomain"
PRE_CLOUD_INIT_ISO = "PreCloudInitIso"
SHUTDOWN = "Shutdown"

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class HookDecodeError(VmnetError):
    """Bytes that are not the expected hooks message."""


def callbacks_path(version: str, method: str) -> str:
    """`/kubevirt.hooks.v1alpha3.Callbacks/OnDefineDomain` and the like."""
    return f"/kubevirt.hooks.{version}.Callbacks/{method}"


@dataclass(frozen=True, slots=True)
class HookPoint:
    name: str
    priority: int = 0


@dataclass(frozen=True, slots=True)
class InfoResult:
    name: str
    hook_points: tuple[HookPoint, ...] = ()
    versions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OnDefineDomainParams:
    domain_xml: bytes = b""
    vmi: bytes = b""


@dataclass(frozen=True, slots=True)
class OnDefineDomainResult:
    domain_xml: bytes = b""


# ---- the wire ----


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32s are ten-byte varints, as in protobuf
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _key(number, _LEN) + _varint(len(payload)) + payload


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise HookDecodeError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for every field of a message."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise HookDecodeError("field number 0")
        if wire == _VARINT:
            value, pos = _read_varint(data, pos)
            yield number, wire, value
        elif wire == _LEN:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise HookDecodeError("a length-delimited field runs past the end")
            yield number, wire, data[pos : pos + size]
            pos += size
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            if pos + size > len(data):
                raise HookDecodeError("a fixed-size field runs past the end")
            yield number, wire, data[pos : pos + size]
            pos += size
        else:
            raise HookDecodeError(f"wire type {wire} is not supported")


def _bytes_of(fields: list[tuple[int, int, int | bytes]], number: int) -> bytes:
    out = b""
    for n, wire, value in fields:
        if n == number:
            if wire != _LEN or not isinstance(value, bytes):
                raise HookDecodeError(f"field {number} is not length-delimited")
            out = value  # proto3: the last one wins
    return out


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as err:
        raise HookDecodeError(f"{what} is not UTF-8") from err


def _singular(number: int, payload: bytes) -> bytes:
    """proto3 leaves a singular field at its default (empty) off the wire."""
    return _len_field(number, payload) if payload else b""


def encode_info_result(info: InfoResult) -> bytes:
    out = _singular(1, info.name.encode())
    for point in info.hook_points:
        body = _singular(1, point.name.encode())
        if point.priority:
            body += _key(2, _VARINT) + _varint(point.priority)
        out += _len_field(3, body)
    for version in info.versions:
        out += _len_field(4, version.encode())
    return out


def decode_info_result(data: bytes) -> InfoResult:
    fields = list(_fields(data))
    points = []
    for number, wire, value in fields:
        if number == 3 and wire == _LEN and isinstance(value, bytes):
            inner = list(_fields(value))
            priority = 0
            for n, w, v in inner:
                if n == 2 and w == _VARINT and isinstance(v, int):
                    priority = v - (1 << 64) if v >= 1 << 63 else v
            points.append(HookPoint(_text(_bytes_of(inner, 1), "hook point name"), priority))
    versions = tuple(
        _text(v, "version") for n, w, v in fields if n == 4 and w == _LEN and isinstance(v, bytes)
    )
    return InfoResult(_text(_bytes_of(fields, 1), "name"), tuple(points), versions)


def encode_on_define_domain_params(params: OnDefineDomainParams) -> bytes:
    return _singular(1, params.domain_xml) + _singular(2, params.vmi)


def decode_on_define_domain_params(data: bytes) -> OnDefineDomainParams:
    fields = list(_fields(data))
    return OnDefineDomainParams(_bytes_of(fields, 1), _bytes_of(fields, 2))


def encode_on_define_domain_result(result: OnDefineDomainResult) -> bytes:
    return _singular(1, result.domain_xml)


def decode_on_define_domain_result(data: bytes) -> OnDefineDomainResult:
    return OnDefineDomainResult(_bytes_of(list(_fields(data)), 1))


def decode_empty(data: bytes) -> None:
    """InfoParams, ShutdownParams: no fields vmnet reads; unknown ones are skipped."""
    for _ in _fields(data):
        pass


def encode_empty(_: object = None) -> bytes:
    return b""
