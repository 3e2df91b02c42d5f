"""Suite-wide rule: in CI (CI=true) nothing may be skipped, since `make test` installs every
tool the suites need; a skip there means an install step is missing. Locally, suites whose tool
is absent skip with the reason printed (pytest -ra). FARM_ALLOW_SKIPS=1 relaxes the rule.
"""

from __future__ import annotations

import os

import pytest

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    strict = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if not strict or os.environ.get("FARM_ALLOW_SKIPS") or not _skipped:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"CI: {len(_skipped)} test(s) skipped; in CI every suite must run:", red=True
        )
        for line in _skipped[:20]:
            reporter.write_line(f"  {line}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
