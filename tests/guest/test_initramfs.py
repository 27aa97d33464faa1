"""The guest initramfs: newc format, ELF interpreter, modules, cache, lease files.

No qemu and no root needed; the archive is checked with busybox's own cpio
reader, not with the code that wrote it.
"""

from __future__ import annotations

import gzip
import lzma
import re
import stat
import subprocess
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from vmnet.core.errors import ConfigError, DriverError
from vmnet.testing import initramfs
from vmnet.testing.initramfs import (
    BUSYBOX,
    IPCONFIG,
    MODULES,
    CpioEntry,
    elf_interpreter,
    encode_newc,
    find_kernel,
    guest_image,
    module_files,
    parse_ipconfig,
    parse_udhcpc,
)

pytestmark = pytest.mark.skipif(
    initramfs.missing_inputs() is not None, reason=str(initramfs.missing_inputs())
)


def cpio_listing(archive: bytes) -> list[str]:
    out = subprocess.run(
        [str(BUSYBOX), "cpio", "-t", "-v"], input=archive, capture_output=True, check=True
    ).stdout.decode()
    return [
        " ".join(line.split()[i] for i in (0, 2, -1))
        if "->" not in line
        else " ".join(line.split()[-3:])
        for line in out.splitlines()
    ]


def test_newc_archive_reads_back_with_busybox_cpio() -> None:
    archive = encode_newc(
        [
            CpioEntry("bin", stat.S_IFDIR | 0o755),
            CpioEntry("bin/hello", stat.S_IFREG | 0o755, b"#!/bin/sh\necho hi\n"),
            CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
            CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        ]
    )
    assert archive.startswith(b"07070100000001000041ed")
    assert len(archive) % 512 == 0
    assert cpio_listing(archive) == [
        "drwxr-xr-x 0 bin",
        "-rwxr-xr-x 18 bin/hello",
        "bin/sh -> busybox",
        "crw------- 0 dev/console",
    ]


def test_elf_interpreter_of_klibc_ipconfig_and_static_busybox() -> None:
    interp = elf_interpreter(IPCONFIG.read_bytes())
    assert interp is not None and re.fullmatch(r"/lib/klibc-[\w-]+\.so", interp)
    assert elf_interpreter(BUSYBOX.read_bytes()) is None
    with pytest.raises(ConfigError, match=r"^elf: not a 64-bit"):
        elf_interpreter(b"#!/bin/sh\n" + bytes(64))


def test_guest_image_is_reproducible_and_cached_by_content(tmp_path: Path) -> None:
    first = guest_image(cache_dir=tmp_path / "a")
    mtime = first.initrd.stat().st_mtime_ns
    again = guest_image(cache_dir=tmp_path / "a")
    elsewhere = guest_image(cache_dir=tmp_path / "b")

    assert again == first and first.initrd.stat().st_mtime_ns == mtime
    assert re.fullmatch(re.escape(first.version) + r"-[0-9a-f]{16}\.cpio\.gz", first.initrd.name)
    assert elsewhere.initrd.name == first.initrd.name
    assert elsewhere.initrd.read_bytes() == first.initrd.read_bytes()
    assert [p.name for p in (tmp_path / "a").iterdir()] == [first.initrd.name]
    listing = cpio_listing(gzip.decompress(first.initrd.read_bytes()))
    assert "-rwxr-xr-x" in next(e for e in listing if e.endswith(" init"))
    assert "crw------- 0 dev/console" in listing and "bin/udhcpc -> busybox" in listing
    for name in MODULES:
        assert any(e.endswith(f"lib/vmnet/{name}.ko") for e in listing)


def test_module_files_decompress_and_skip_builtin(tmp_path: Path) -> None:
    _, version = find_kernel()
    real = dict(module_files(version))
    tree = tmp_path / version
    tree.mkdir()
    dep: list[str] = []
    packers: list[tuple[str, Callable[[bytes], bytes]]] = [
        (".ko.xz", lzma.compress),
        (".ko.zst", _zstd),
        (".ko", bytes),
    ]
    for i, name in enumerate(MODULES[1:]):
        suffix, pack = packers[i % 3]
        (tree / f"{name}{suffix}").write_bytes(pack(real[name]))
        dep.append(f"{name}{suffix}:")
    (tree / "modules.dep").write_text("\n".join(dep) + "\n")
    (tree / "modules.builtin").write_text(f"kernel/drivers/virtio/{MODULES[0]}.ko\n")

    assert module_files(version, tmp_path) == [(n, real[n]) for n in MODULES[1:]]

    (tree / "modules.dep").write_text("\n".join(dep[:-1]) + "\n")
    with pytest.raises(
        ConfigError, match=f"^guest image: kernel {version} has no module virtio_net$"
    ):
        module_files(version, tmp_path)


def test_find_kernel_rejects_a_file_that_is_not_vmlinuz(tmp_path: Path) -> None:
    path, version = find_kernel()
    assert path.name == f"vmlinuz-{version}" and (Path("/lib/modules") / version).is_dir()
    with pytest.raises(ConfigError, match=r"^kernel: .* is not a readable vmlinuz-<version> file$"):
        find_kernel(tmp_path / "bzImage")


def test_parse_udhcpc_lease_file() -> None:
    lease = parse_udhcpc(
        "ip=10.0.2.2\nmask=24\nrouter=10.0.2.1 10.0.2.9\ndns=10.96.0.10 10.96.0.11\n"
        "domain=ns.svc.cluster.local\nhostname=vm\nmtu=1450\nsearch=a.test b.test\n"
        "staticroutes=10.0.2.1/32 0.0.0.0 0.0.0.0/0 10.0.2.1\nlease=86313600\n"
        "serverid=10.0.2.1\nbroadcast=10.0.2.255\n"
    )
    assert lease.address == IPv4Interface("10.0.2.2/24") and lease.router == IPv4Address("10.0.2.1")
    assert lease.dns == (IPv4Address("10.96.0.10"), IPv4Address("10.96.0.11"))
    assert (lease.mtu, lease.hostname, lease.lease_time) == (1450, "vm", 86313600)
    assert lease.search == ("a.test", "b.test") and lease.domain == "ns.svc.cluster.local"
    assert lease.routes == (
        (IPv4Network("10.0.2.1/32"), IPv4Address("0.0.0.0")),
        (IPv4Network("0.0.0.0/0"), IPv4Address("10.0.2.1")),
    )
    with pytest.raises(DriverError, match=r"^parse lease udhcpc: 'mask'"):
        parse_udhcpc("ip=10.0.2.2\n")


def test_parse_ipconfig_net_conf() -> None:
    lease = parse_ipconfig(
        "DEVICE='eth0'\nPROTO='dhcp'\nIPV4ADDR='10.0.2.2'\nIPV4NETMASK='255.255.255.0'\n"
        "IPV4GATEWAY='10.0.2.1'\nIPV4DNS0='10.96.0.10'\nIPV4DNS1='0.0.0.0'\nHOSTNAME='vm'\n"
        "DNSDOMAIN='ns.svc'\nROOTSERVER='10.0.2.1'\nDHCPLEASETIME='3600'\n"
        "DOMAINSEARCH='a.test. b.test.'\n"
    )
    assert lease.address == IPv4Interface("10.0.2.2/24") and lease.router == IPv4Address("10.0.2.1")
    assert lease.dns == (IPv4Address("10.96.0.10"),) and lease.routes == ()
    assert (lease.hostname, lease.domain, lease.lease_time, lease.mtu) == (
        "vm",
        "ns.svc",
        3600,
        None,
    )
    assert lease.search == ("a.test", "b.test") and dict(lease.raw)["PROTO"] == "dhcp"
    with pytest.raises(DriverError, match=r"^parse lease ipconfig: "):
        parse_ipconfig("IPV4ADDR='10.0.2.2'\nIPV4NETMASK='255.0.0.300'\n")


def _zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-c"], input=data, capture_output=True, check=True).stdout
