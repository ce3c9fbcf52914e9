"""The soak's summary, added to the terminal summary at the end of the run."""

from __future__ import annotations

from support.summaries import SOAK

#: The summary lines of each soak run in this session (`SUMMARIES.append(lines)`).
SUMMARIES = SOAK
