"""The soak's summary, added to the terminal summary at the end of the run."""

from __future__ import annotations

from typing import Any

#: The summary lines of each soak run in this session.
SUMMARIES: list[list[str]] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for lines in SUMMARIES:
        terminalreporter.section("soak")
        for line in lines:
            terminalreporter.write_line(line)
