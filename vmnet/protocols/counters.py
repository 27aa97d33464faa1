"""What both single-client responders count, whatever the protocol.

`Counters` is the base of the DHCPv4 and the DHCPv6 responders' statistics:
every message received, and every one left unanswered because it came from
another client, named another server, was of a kind the responder does not
serve, or could not be decoded at all. Each protocol adds its own counters.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class Counters:
    """Counters shared by the v4 and v6 responders."""

    received: int = 0
    ignored_foreign: int = 0
    ignored_other_server: int = 0
    ignored_other: int = 0
    dropped_malformed: int = 0

    def nonzero(self) -> dict[str, int]:
        """The counters that are not zero, by name (for logs and status)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value:
                out[f.name] = value
        return out
