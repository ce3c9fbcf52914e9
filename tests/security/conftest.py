"""The tally of what the security tests tried, printed at the end of the run.

* `tally` -> `Tally`: tests add what they tried (payloads, fuzz cases, edge requests, bad
  files); the counts are printed in a "security tally" section of the terminal summary.

Hostile input runs in memory-capped child processes: see `isolation.py`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class Tally:
    """What the security tests tried, by kind."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, count: int = 1) -> None:
        self.counts[kind] += count


TALLY = Tally()


@pytest.fixture
def tally() -> Tally:
    """Where tests count what they tried (printed at the end of the run)."""
    return TALLY


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY.counts:
        return
    terminalreporter.section("security tally")
    width = max(map(len, TALLY.counts))
    for kind, count in sorted(TALLY.counts.items()):
        terminalreporter.write_line(f"{kind.ljust(width)}  {count:>7,}")
