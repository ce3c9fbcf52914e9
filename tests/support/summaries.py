"""What the tests record for the terminal summary: the security tally, the fault matrix, the
soak's figures. Each is filled in by the process that runs the tests, and printed once.

With pytest-xdist the tests run in worker processes while the controlling process prints the
summary. So each summary can hand its state over as plain data (`export`), which the
controller folds into its own copy (`merge`) when a worker finishes; ``tests/conftest.py``
does the handing over (`hand_over`, `take_over`) and the printing (`report`). Without xdist
the same process records and prints, and nothing is handed over.

* `TALLY`: what the security tests tried, counted by kind.
* `MATRIX`: the fault matrix, one `Cell` per (fault, cache state, client kind).
* `SOAK`: the lines of each soak run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

__all__ = [
    "MATRIX",
    "SOAK",
    "TALLY",
    "Cell",
    "Matrix",
    "Sections",
    "Tally",
    "hand_over",
    "report",
    "take_over",
]

#: The key of `config.workeroutput` (pytest-xdist) the summaries travel under.
_KEY = "promptory_summaries"


class Summary(Protocol):
    """A summary that can travel from a worker process to the one that prints it."""

    title: str

    def export(self) -> Any:
        """The state as lists, dicts, strings and numbers (what a worker can send)."""

    def merge(self, data: Any) -> None:
        """Fold in what another process exported."""

    def lines(self) -> list[str]:
        """The section's lines; none when there is nothing to print."""


@dataclass
class Tally:
    """What the security tests tried, by kind."""

    title: str = "security tally"
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, count: int = 1) -> None:
        self.counts[kind] += count

    def export(self) -> Any:
        return dict(self.counts)

    def merge(self, data: Any) -> None:
        self.counts.update(data)

    def lines(self) -> list[str]:
        if not self.counts:
            return []
        width = max(map(len, self.counts))
        return [f"{kind.ljust(width)}  {count:>7,}" for kind, count in sorted(self.counts.items())]


@dataclass
class Cell:
    """One cell of the matrix: what a client did with one fault in one cache state."""

    outcome: str
    attempts: int
    seconds: float
    passed: bool = False

    def text(self) -> str:
        mark = "" if self.passed else " FAILED"
        return f"{self.outcome} {self.attempts}x {self.seconds:.2f}s{mark}"


@dataclass
class Matrix:
    """The cells recorded by the matrix tests, by (fault, state, client kind)."""

    title: str = "fault matrix"
    cells: dict[tuple[str, str, str], Cell] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)

    STATES = ("cold", "fresh", "stale")
    KINDS = ("sync", "async")

    def record(self, fault: str, state: str, kind: str, cell: Cell) -> Cell:
        if fault not in self.faults:
            self.faults.append(fault)
        self.cells[fault, state, kind] = cell
        return cell

    def export(self) -> Any:
        return [
            [*key, cell.outcome, cell.attempts, cell.seconds, cell.passed]
            for key, cell in self.cells.items()
        ]

    def merge(self, data: Any) -> None:
        for fault, state, kind, outcome, attempts, seconds, passed in data:
            self.record(fault, state, kind, Cell(outcome, attempts, seconds, passed))

    def lines(self) -> list[str]:
        if not self.cells:
            return []
        columns = [(s, k) for s in self.STATES for k in self.KINDS]
        header = ["fault", *(f"{s}/{k}" for s, k in columns)]
        rows = [header]
        for fault in self.faults:
            row = [fault]
            for state, kind in columns:
                cell = self.cells.get((fault, state, kind))
                row.append(cell.text() if cell is not None else "-")
            rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        out = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)) for row in rows]
        out.insert(1, "  ".join("-" * w for w in widths))
        return [
            "cell: outcome, attempts the proxy saw, seconds of the caller's call "
            "(stale: the background revalidation's attempts)",
            *out,
        ]


@dataclass
class Sections:
    """Whole blocks of lines (one per run of a test), printed one after the other."""

    title: str
    blocks: list[list[str]] = field(default_factory=list)

    def append(self, lines: list[str]) -> None:
        self.blocks.append(list(lines))

    def export(self) -> Any:
        return self.blocks

    def merge(self, data: Any) -> None:
        self.blocks.extend(data)

    def lines(self) -> list[str]:
        return [line for block in self.blocks for line in block]


TALLY = Tally()
MATRIX = Matrix()
SOAK = Sections("soak")

_SUMMARIES: tuple[Summary, ...] = (MATRIX, TALLY, SOAK)


def hand_over(config: pytest.Config) -> None:
    """On a pytest-xdist worker, put every summary's state where the controller reads it."""
    output = getattr(config, "workeroutput", None)
    if output is not None:
        output[_KEY] = {summary.title: summary.export() for summary in _SUMMARIES}


def take_over(worker_output: dict[str, Any]) -> None:
    """On the controller, fold in what a finished worker handed over."""
    handed = worker_output.get(_KEY, {})
    for summary in _SUMMARIES:
        if summary.title in handed:
            summary.merge(handed[summary.title])


def report(terminalreporter: Any) -> None:
    """Print each summary that holds something, in a section of its own."""
    for summary in _SUMMARIES:
        lines = summary.lines()
        if lines:
            terminalreporter.section(summary.title)
            for line in lines:
                terminalreporter.write_line(line)
