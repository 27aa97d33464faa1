"""Coverage-guided fuzzing of the DHCPv4 path with atheris (run by `tox -e fuzz`).

    python tests/reliability/fuzz_atheris.py -max_total_time=300 [CORPUS_DIR]

The first input byte picks the configuration; the rest is the datagram.
The invariants are those of tests/reliability/dhcpfuzz.py; a violation or
any exception but DhcpDecodeError is a crash atheris reports with the input
that caused it. Seeds: the real client captures in tests/unit/dhcp/captures.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from tests.reliability.dhcpfuzz import CONFIGS, VM_MAC, handle
    from vmnet.protocols.dhcp4.responder import SingleLeaseResponder

_NAMES = sorted(CONFIGS)


def one_input(data: bytes) -> None:
    if not data:
        return
    config = CONFIGS[_NAMES[data[0] % len(_NAMES)]]
    handle(data[1:], SingleLeaseResponder(config))


def seed_corpus() -> str:
    """A directory with every capture, chaddr set to the VM MAC, once per config."""
    out = tempfile.mkdtemp(prefix="vmnet-fuzz-corpus-")
    captures = Path(__file__).resolve().parents[1] / "unit" / "dhcp" / "captures"
    for n, capture in enumerate(sorted(captures.glob("*/*.bin"))):
        data = bytearray(capture.read_bytes())
        data[28:34] = VM_MAC.packed
        for i in range(len(_NAMES)):
            Path(out, f"seed-{n}-{i}").write_bytes(bytes([i]) + bytes(data))
    return out


def main() -> None:
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        argv.append(seed_corpus())
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
