"""`Session`: what the benchmark groups of one run share — a temporary folder, an API key,
the small prompt repository, and progress messages on stderr."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from promptory.server.keys import generate_key

from .repos import small_repo

__all__ = ["Session"]


class Session:
    """State shared by the groups of one run. Repositories are built on first use.

    Args:
        root: a temporary folder, removed by the caller after the run.
        load_tool: the server figures' load process: ``wrk``, ``python`` or ``auto`` (wrk
            when installed).
    """

    def __init__(self, root: Path, *, load_tool: str = "auto") -> None:
        self.root = root
        self.load_tool = load_tool
        self.api_key = generate_key(test=True)
        self.started = time.monotonic()
        self._small: Path | None = None

    def log(self, message: str) -> None:
        """A progress line on stderr, stamped with the seconds since the run started."""
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)

    def small_repo(self) -> Path:
        """A repository of the shipped examples plus the 4 KB support prompt."""
        if self._small is None:
            path = self.root / "small.git"
            small_repo(path)
            self._small = path
        return self._small
