"""The nftables driver: one `nft -f -` transaction per ruleset.

Rule: the nft process enters the namespace between fork and exec; vmnet
itself never moves. Failures carry nft's own first error line.
"""

from __future__ import annotations

import errno

from vmnet.core.errors import DriverError
from vmnet.core.netns import preexec
from vmnet.plan.nat import NatTable, script


class NftCli:
    """`vmnet.apply.drivers.Nft` over the nft command."""

    def __init__(self, netns: str | None = None, binary: str = "nft") -> None:
        self.netns = netns
        self.binary = binary

    def _run(self, args: list[str], stdin: str | None, op: str, target: str) -> str:
        import shutil  # only a binding with NAT runs nft: the bridge plug never loads these
        import subprocess

        exe = shutil.which(self.binary)
        if exe is None:
            raise DriverError(op, target, "nft not found (install the nftables package)")
        proc = subprocess.run(
            [exe, *args],
            input=stdin,
            capture_output=True,
            text=True,
            preexec_fn=preexec(self.netns),
            check=False,
        )
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[0]
            raise DriverError(op, target, first)
        return proc.stdout

    def apply(self, nat: tuple[NatTable, ...]) -> None:
        self._run(["-f", "-"], script(nat), "nft apply", "ruleset")

    def check(self, ruleset: str) -> None:
        self._run(["-c", "-f", "-"], ruleset, "nft check", "ruleset")

    def has_table(self, family: str, table: str) -> bool:
        try:
            self._run(["list", "table", family, table], None, "nft list", f"{family} {table}")
        except DriverError as err:
            if "No such file" in str(err) or err.errno == errno.ENOENT:
                return False
            raise
        return True

    def table_comment(self, family: str, table: str) -> str | None:
        """The table's comment, or None when the table is absent or has none."""
        try:
            text = self._run(
                ["list", "table", family, table], None, "nft list", f"{family} {table}"
            )
        except DriverError as err:
            if "No such file" in str(err):
                return None
            raise
        for line in text.splitlines()[1:3]:
            line = line.strip()
            if line.startswith('comment "') and line.endswith('"'):
                return line[len('comment "') : -1]
        return None

    def delete_table(self, family: str, table: str) -> None:
        if self.has_table(family, table):
            self._run(["delete", "table", family, table], None, "nft delete", f"{family} {table}")
