"""Which VM a cache belongs to, checked before anything reads it for a manifest.

Every network record carries the VMI it was plugged for (`namespace/name`,
and `metadata.uid` when the manifest had one). A command given a manifest
and a cache of different VMs refuses before it changes or serves anything:
unplugging, decorating or serving with another VM's records would tear down
or hand out that VM's network. A uid is compared only when both sides have
one, so a manifest without `metadata.uid` still matches its own cache.
"""

from __future__ import annotations

from collections.abc import Iterable

from vmnet.core.errors import ConfigError
from vmnet.manifest import Vmi
from vmnet.plan.state import NetworkRecord


def vmi_key(vmi: Vmi) -> str:
    return f"{vmi.namespace}/{vmi.name}"


def check_same_vmi(vmi: Vmi, records: Iterable[NetworkRecord], root: str) -> None:
    """Raise ConfigError if any record in `root` was plugged for another VMI."""
    key, uid = vmi_key(vmi), vmi.uid or ""
    for record in records:
        if record.vmi and record.vmi != key:
            raise ConfigError(
                "--vmi",
                f"the manifest is VMI {key}, but cache {root} is VMI {record.vmi}'s: "
                "give this VM's own --cache-dir",
            )
        if uid and record.vmi_uid and record.vmi_uid != uid:
            raise ConfigError(
                "--vmi",
                f"the manifest is VMI {key} uid {uid}, but cache {root} was written for "
                f"uid {record.vmi_uid} (an earlier VMI of that name; its pod is gone?): "
                "remove that cache or give this VMI's own --cache-dir",
            )
