"""The phase-1 cache: typed, versioned JSON records on disk.

Every file is one JSON object `{"schema": N, "kind": K, "data": ...}`, where
`data` is the record in the one form `vmnet.store.codec` gives every cached
type (camelCase keys). A reader checks kind and schema and raises
`CacheError`, never a traceback, on a missing, truncated, corrupted or
foreign file; records of schema 1 (vmnet 0.1, snake_case DHCP keys) are
migrated as they are read. Writes are atomic and durable (a temporary file
in the same directory, mode 0600, fsync, `os.replace`, fsync of the
directory), and names used in file names cannot climb out of the root. The
per-network record is written before the first mutation and carries the pod
NIC as discovered, so an interrupted phase 1 and unplug work from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
from collections.abc import Iterator
from typing import Any, TypeVar

from vmnet.core.errors import CacheError, DriverError
from vmnet.plan.state import NetworkRecord
from vmnet.store import codec

SCHEMA = 2
T = TypeVar("T")
_SAFE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def safe_name(name: str) -> str:
    if not isinstance(name, str) or not _SAFE.match(name) or ".." in name or len(name) > 253:
        raise CacheError(f"cache name {name!r}: not a safe file name")
    return name


class Cache:
    """Records of one VM, under one directory (injectable for tests)."""

    owner: tuple[int, int] | None = None

    def __init__(self, root: str) -> None:
        self.root = root
        self._decoded: dict[str, tuple[tuple[Any, ...], Any]] = {}

    def hand_to(self, uid: int, gid: int) -> None:
        """Make the directory and its records the phase-2 user's: readable by
        that user (and root) and nobody else. Records written later get the
        same owner."""
        self.owner = (uid, gid)
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            os.chown(self.root, uid, gid)
            os.chmod(self.root, 0o700)
            for entry in os.listdir(self.root):
                if entry.endswith(".json"):
                    os.chown(os.path.join(self.root, entry), uid, gid)
        except OSError as err:
            raise DriverError("chown cache", self.root, err.errno or errno.EIO) from err

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive flock on the cache directory until the block ends
        (on its nearest existing parent while it does not exist yet, so that
        taking the lock creates nothing): a plug or unplug holds it from its
        first read to its last write, so concurrent runs on one cache
        serialise."""
        path = os.path.abspath(self.root)
        while not os.path.isdir(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise CacheError(f"lock cache {path}: {err.strerror}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def path(self, kind: str, name: str | None = None) -> str:
        base = kind if name is None else f"{kind}-{safe_name(name)}"
        return os.path.join(self.root, f"{base}.json")

    def exists(self, kind: str, name: str | None = None) -> bool:
        return os.path.exists(self.path(kind, name))

    def read(self, kind: str, name: str | None = None) -> dict[str, Any] | None:
        """The record's body, or None when there is no such file."""
        path = self.path(kind, name)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise CacheError(f"read cache {path}: {err.strerror}") from err
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise CacheError(f"read cache {path}: corrupted or truncated JSON ({err})") from err
        if not isinstance(obj, dict) or obj.get("kind") != kind:
            raise CacheError(f"read cache {path}: not a vmnet {kind} record")
        schema = obj.get("schema")
        if schema not in (1, SCHEMA) or isinstance(schema, bool):
            raise CacheError(
                f"read cache {path}: schema {schema!r}, this vmnet reads 1 to {SCHEMA}"
            )
        body = obj.get("data")
        if not isinstance(body, dict):
            raise CacheError(f"read cache {path}: record has no data")
        return _from_schema1(kind, body) if schema == 1 else body

    def load(self, kind: str, name: str | None, tp: type[T] | Any) -> T | None:
        """The record decoded as `tp`, or None when there is no such file.

        A frozen dataclass decoded once is remembered for as long as its file
        is the same file (inode, size and modification time): one plug reads
        each record several times, and a record is only ever replaced whole.
        """
        path = self.path(kind, name)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise CacheError(f"read cache {path}: {err.strerror}") from err
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns, tp)
        known = self._decoded.get(path)
        if known is not None and known[0] == stamp:
            return known[1]  # type: ignore[no-any-return]
        body = self.read(kind, name)
        if body is None:
            return None
        try:
            value = codec.decode(tp, body)
        except CacheError as err:
            raise CacheError(f"read cache {path}: {err}") from err
        if dataclasses.is_dataclass(value):  # frozen: safe to hand out again
            self._decoded[path] = (stamp, value)
        return value  # type: ignore[no-any-return]

    def save(self, kind: str, name: str | None, value: object) -> None:
        self.write(kind, name, codec.encode(value))

    def write(self, kind: str, name: str | None, data: dict[str, Any]) -> None:
        path = self.path(kind, name)
        text = json.dumps({"schema": SCHEMA, "kind": kind, "data": data}, indent=2, sort_keys=True)
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            fd, tmp = _exclusive(self.root)
            try:
                with os.fdopen(fd, "w") as f:
                    os.fchmod(f.fileno(), 0o600)
                    if self.owner is not None:
                        os.fchown(f.fileno(), *self.owner)
                    f.write(text + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            _fsync_dir(self.root)
        except PermissionError as err:  # refused before anything was written
            raise CacheError(f"write cache {path}: {err.strerror}") from err
        except OSError as err:
            raise DriverError("write cache", path, err.errno or errno.EIO) from err

    def remove(self, kind: str, name: str | None = None) -> None:
        path = self.path(kind, name)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise DriverError("remove cache", path, err.errno or errno.EIO) from err

    def network(self, name: str) -> NetworkRecord | None:
        record: NetworkRecord | None = self.load("network", name, NetworkRecord)
        if record is not None and record.network != name:
            raise CacheError(
                f"read cache {self.path('network', name)}: record is for network {record.network!r}"
            )
        return record

    def put_network(self, record: NetworkRecord) -> None:
        self.save("network", record.network, record)

    def networks(self) -> list[NetworkRecord]:
        out = []
        try:
            entries = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        except OSError as err:
            raise CacheError(f"read cache {self.root}: {err.strerror}") from err
        for entry in entries:
            m = re.match(r"^network-(.+)\.json$", entry)
            if m:
                record = self.network(m.group(1))
                if record is not None:
                    out.append(record)
        return out


def _from_schema1(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 body in schema 2's form: the DHCP records had snake_case
    keys, and an address of the pod NIC was keyed `address`, not `interface`."""
    if kind in ("dhcp", "dhcp6"):
        return {codec.camel(key): value for key, value in body.items()}
    if kind == "network":
        nic = body.get("podNic")
        link = nic.get("link") if isinstance(nic, dict) else None
        addresses = link.get("addresses") if isinstance(link, dict) else None
        if isinstance(link, dict) and isinstance(addresses, list):
            link["addresses"] = [
                {("interface" if k == "address" else k): v for k, v in a.items()}
                if isinstance(a, dict)
                else a
                for a in addresses
            ]
    return body


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exclusive(directory: str) -> tuple[int, str]:
    """A new file of our own in `directory` (mode 0600), for writing then
    renaming; as tempfile.mkstemp, without the imports it costs a process."""
    for _ in range(100):
        path = os.path.join(directory, f".tmp-{os.getpid()}-{os.urandom(6).hex()}")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name", directory)
