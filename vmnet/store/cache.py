"""The phase-1 cache: typed, versioned JSON records on disk.

Rules:
1. Every file is one JSON object `{"schema": N, "kind": K, ...}`; a reader
   checks both and raises CacheError (never a traceback) on a missing,
   truncated, corrupted or foreign file.
2. Writes are atomic and durable: a temporary file in the same directory,
   mode 0600, fsync, `os.replace`, fsync of the directory.
3. Names used in file names are checked: nothing can climb out of the root.
4. The per-network record is written *before* the first mutation and carries
   the pod NIC as discovered: an interrupted phase 1 and unplug work from it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from typing import Any

from vmnet.core.errors import CacheError, DriverError
from vmnet.plan.state import NetworkRecord

SCHEMA = 1
_SAFE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def safe_name(name: str) -> str:
    if not isinstance(name, str) or not _SAFE.match(name) or ".." in name or len(name) > 253:
        raise CacheError(f"cache name {name!r}: not a safe file name")
    return name


class Cache:
    """Records of one VM, under one directory (injectable for tests)."""

    def __init__(self, root: str) -> None:
        self.root = root

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
        if obj.get("schema") != SCHEMA:
            raise CacheError(
                f"read cache {path}: schema {obj.get('schema')!r}, this vmnet reads {SCHEMA}"
            )
        body = obj.get("data")
        if not isinstance(body, dict):
            raise CacheError(f"read cache {path}: record has no data")
        return body

    def write(self, kind: str, name: str | None, data: dict[str, Any]) -> None:
        path = self.path(kind, name)
        text = json.dumps({"schema": SCHEMA, "kind": kind, "data": data}, indent=2, sort_keys=True)
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.root)
            try:
                with os.fdopen(fd, "w") as f:
                    os.fchmod(f.fileno(), 0o600)
                    f.write(text + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            _fsync_dir(self.root)
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
        body = self.read("network", name)
        if body is None:
            return None
        path = self.path("network", name)
        try:
            record = NetworkRecord.from_json(body)
        except KeyError as err:
            raise CacheError(f"read cache {path}: bad record (missing key {err})") from err
        except (TypeError, ValueError, AttributeError) as err:
            raise CacheError(f"read cache {path}: bad record ({err})") from err
        if record.network != name:
            raise CacheError(f"read cache {path}: record is for network {record.network!r}")
        return record

    def put_network(self, record: NetworkRecord) -> None:
        self.write("network", record.network, record.to_json())

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


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
