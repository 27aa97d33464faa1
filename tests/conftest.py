"""vmnet's own suite uses its plugin the way users do.

`make test` sets VMNET_NO_SKIP=1: there a skipped test is a missing component,
and the run fails naming it (a quick local run may leave things out).
"""

import os

import pytest

pytest_plugins = ["vmnet.testing"]

_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(f"{report.nodeid}: {report.longrepr}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("VMNET_NO_SKIP") == "1" and _SKIPPED:
        session.config.get_terminal_writer().line(
            "VMNET_NO_SKIP: skipped tests are failures here:\n  " + "\n  ".join(_SKIPPED),
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
