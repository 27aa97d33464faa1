"""vmnet's hand-written hooks wire codec against Google's protobuf runtime.

The reference messages are built at run time from descriptors written from
the field table of KubeVirt's .proto files (docs/kubevirt.md, Binding
plugins); both directions must agree byte for byte.
"""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from vmnet.protocols import hooks

F = descriptor_pb2.FieldDescriptorProto


def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    info = descriptor_pb2.FileDescriptorProto(
        name="api_info.proto", package="kubevirt.hooks.info", syntax="proto3"
    )
    point = info.message_type.add(name="HookPoint")
    point.field.add(name="name", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    point.field.add(name="priority", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    info.message_type.add(name="InfoParams").field.add(
        name="supportedInfoVersions", number=1, type=F.TYPE_STRING, label=F.LABEL_REPEATED
    )
    result = info.message_type.add(name="InfoResult")
    result.field.add(name="name", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    result.field.add(
        name="hookPoints",
        number=3,
        type=F.TYPE_MESSAGE,
        type_name=".kubevirt.hooks.info.HookPoint",
        label=F.LABEL_REPEATED,
    )
    result.field.add(name="versions", number=4, type=F.TYPE_STRING, label=F.LABEL_REPEATED)
    pool.Add(info)
    v3 = descriptor_pb2.FileDescriptorProto(
        name="api_v1alpha3.proto", package="kubevirt.hooks.v1alpha3", syntax="proto3"
    )
    params = v3.message_type.add(name="OnDefineDomainParams")
    params.field.add(name="domainXML", number=1, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL)
    params.field.add(name="vmi", number=2, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL)
    v3.message_type.add(name="OnDefineDomainResult").field.add(
        name="domainXML", number=1, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL
    )
    pool.Add(v3)
    return pool


POOL = _pool()


def _cls(name: str):  # type: ignore[no-untyped-def]
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(name))


InfoResult = _cls("kubevirt.hooks.info.InfoResult")
InfoParams = _cls("kubevirt.hooks.info.InfoParams")
Params = _cls("kubevirt.hooks.v1alpha3.OnDefineDomainParams")
Result = _cls("kubevirt.hooks.v1alpha3.OnDefineDomainResult")

names = st.text(min_size=0, max_size=40)
points = st.lists(st.builds(hooks.HookPoint, names, st.integers(-(2**31), 2**31 - 1)), max_size=4)


@given(names, points, st.lists(names, max_size=4))
def test_info_result_matches_protobuf_both_ways(name, hook_points, versions) -> None:  # type: ignore[no-untyped-def]
    ours = hooks.InfoResult(name, tuple(hook_points), tuple(versions))
    theirs = InfoResult(
        name=name,
        hookPoints=[{"name": p.name, "priority": p.priority} for p in hook_points],
        versions=versions,
    )
    assert hooks.encode_info_result(ours) == theirs.SerializeToString()
    assert hooks.decode_info_result(theirs.SerializeToString()) == ours
    parsed = InfoResult()
    parsed.ParseFromString(hooks.encode_info_result(ours))
    assert parsed == theirs


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_on_define_domain_matches_protobuf_both_ways(xml: bytes, vmi: bytes) -> None:
    theirs = Params(domainXML=xml, vmi=vmi).SerializeToString()
    assert hooks.encode_on_define_domain_params(hooks.OnDefineDomainParams(xml, vmi)) == theirs
    assert hooks.decode_on_define_domain_params(theirs) == hooks.OnDefineDomainParams(xml, vmi)
    result = hooks.encode_on_define_domain_result(hooks.OnDefineDomainResult(xml))
    assert result == Result(domainXML=xml).SerializeToString()
    assert hooks.decode_on_define_domain_result(result).domain_xml == xml


def test_unknown_fields_are_skipped_and_garbage_is_one_error() -> None:
    hooks.decode_empty(InfoParams(supportedInfoVersions=["v1alpha3"]).SerializeToString())
    with_extra = Params(domainXML=b"<domain/>").SerializeToString() + b"\x28\x07\x35abcd"
    assert hooks.decode_on_define_domain_params(with_extra).domain_xml == b"<domain/>"
    for garbage in (b"\x0a\x05ab", b"\x80", b"\x0f", b"\x00"):
        with pytest.raises(hooks.HookDecodeError):
            hooks.decode_on_define_domain_params(garbage)


def test_method_paths_are_kubevirts() -> None:
    assert hooks.INFO_PATH == "/kubevirt.hooks.info.Info/Info"
    assert (
        hooks.callbacks_path("v1alpha3", hooks.ON_DEFINE_DOMAIN)
        == "/kubevirt.hooks.v1alpha3.Callbacks/OnDefineDomain"
    )
