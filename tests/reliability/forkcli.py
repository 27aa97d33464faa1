"""Many `python -m vmnet` runs for the price of one interpreter start.

How these tests work:
1. A helper process imports vmnet once, then forks one child per request.
   The child is exactly `python -m vmnet ARGV`: `sys.argv` is set and the
   `vmnet` package runs as `__main__` (runpy), with its own stdout, stderr,
   environment additions and exit status; only the imports are inherited.
2. The helper has no threads, so forking it is safe, and it serves one
   request at a time; results come back as JSON lines, the status encoded
   as `subprocess` does (negative: killed by that signal).
3. Closing the runner ends the helper; it exits when its stdin closes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Self

HELPER = r"""
import json, os, runpy, sys, tempfile
import vmnet.cli, vmnet.phases.phase1, vmnet.phases.phase2  # warm
import vmnet.manifest, vmnet.apply.drivers.netlink  # warm
for line in sys.stdin:
    req = json.loads(line)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            os.environ.update(req["env"])
            sys.argv = ["vmnet", *req["argv"]]
            code = 1
            try:
                runpy.run_module("vmnet", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        out.seek(0)
        err.seek(0)
        reply = {"rc": rc, "stdout": out.read().decode("utf-8", "replace"),
                 "stderr": err.read().decode("utf-8", "replace")}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
"""


class ForkCli:
    """Run vmnet command lines through one warm helper (rule 1)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def run(
        self,
        *argv: str,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Like `subprocess.run([python, -m, vmnet, *argv])`, output captured."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"argv": list(argv), "env": env or {}}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"forkcli helper died (exit {self.proc.wait()})")
        reply = json.loads(line)
        return subprocess.CompletedProcess(
            ["vmnet", *argv], reply["rc"], reply["stdout"], reply["stderr"]
        )

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
