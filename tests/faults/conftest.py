"""The fault suite prints what it measured at the end of the run (also in CI's log)."""

from __future__ import annotations

from tests.faults.recovery import MEASURED


def pytest_terminal_summary(terminalreporter) -> None:
    if not MEASURED:
        return
    terminalreporter.section("fault suite: recovery measured")
    for line in MEASURED:
        terminalreporter.write_line(line)
    terminalreporter.write_line(
        "rerun: DATABASE_URL=postgres://postgres@127.0.0.1:5432/comfyweb "
        "make pytest PYTEST_ARGS=tests/faults"
    )
