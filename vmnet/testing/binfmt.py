"""Two binary formats, byte by byte: the cpio "newc" archive and ELF's PT_INTERP.

`encode_newc` writes what the kernel unpacks as an initramfs (kernel
Documentation/driver-api/early-userspace/buffer-format.rst): mtime, uid
and gid are 0, so equal entries give equal bytes, and device nodes exist
only inside the archive.

`elf_interpreter` reads only 64-bit little-endian ELF (System V gABI,
program header table) and raises ConfigError for anything else.
"""

from __future__ import annotations

import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from vmnet.core.errors import ConfigError

_NEWC_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"
PT_INTERP = 3


@dataclass(frozen=True, slots=True)
class CpioEntry:
    """One archive member: a file, directory, symlink (data = target) or node."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def encode_newc(entries: Iterable[CpioEntry]) -> bytes:
    """Encode entries (parents before children) as an uncompressed newc archive.

    Each member is a 110-byte ASCII header (magic then 13 8-digit hex fields),
    the NUL-terminated name padded to 4 bytes, then the data padded to 4 bytes.
    Example: a directory "bin" with inode 1 starts
    `b"07070100000001000041ed"` (inode 1, mode 040755).
    """
    out = bytearray()
    ino = 0
    for ino, entry in enumerate(entries, start=1):
        out += _member(entry, ino)
    out += _member(CpioEntry(_TRAILER, 0), 0)
    out += bytes(-len(out) % 512)
    return bytes(out)


def _member(entry: CpioEntry, ino: int) -> bytes:
    name = entry.name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (
        ino,
        entry.mode,
        0,
        0,
        nlink,
        0,
        len(entry.data),
        0,
        0,
        entry.rdev[0],
        entry.rdev[1],
        len(name),
        0,
    )
    head = _NEWC_MAGIC + b"".join(b"%08x" % f for f in fields) + name
    head += bytes(-len(head) % 4)
    return head + entry.data + bytes(-len(entry.data) % 4)


def elf_interpreter(data: bytes) -> str | None:
    """The PT_INTERP path of a 64-bit little-endian ELF, or None if static."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ConfigError("elf", "not a 64-bit little-endian ELF file")
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        off = phoff + i * phentsize
        (p_type,) = struct.unpack_from("<I", data, off)
        if p_type == PT_INTERP:
            (p_offset,) = struct.unpack_from("<Q", data, off + 8)
            (p_filesz,) = struct.unpack_from("<Q", data, off + 32)
            return data[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
    return None
