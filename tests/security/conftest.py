"""The tally of what the security tests tried, printed at the end of the run.

* `tally` -> `Tally`: tests add what they tried (payloads, fuzz cases, edge requests, bad
  files); the counts are printed in a "security tally" section of the terminal summary.

Hostile input runs in memory-capped child processes: see `isolation.py`.
"""

from __future__ import annotations

import pytest

from support.summaries import TALLY, Tally

__all__ = ["Tally"]


@pytest.fixture
def tally() -> Tally:
    """Where tests count what they tried (printed at the end of the run)."""
    return TALLY
