"""Timing and result records shared by every benchmark: interleaved repeats, medians, ratios.

Rules of this module:

* Ours and the baseline are measured in the same run, interleaved: one sample of each per
  round, the order swapped every round (ABBA...), so a noisy neighbour or a frequency change
  lands on both alike.
* A sample of a nanosecond-scale operation is a batch of calls lasting at least
  `MIN_SAMPLE_NS`; the batch size is calibrated once, on the baseline (the faster one), and
  then used for both, so both are called the same number of times the same way.
* The garbage collector is off while a sample runs (as `timeit` does): a collection
  triggered by earlier work would otherwise land on whichever sample happens to be running.
* A figure is the median of its samples; its ratio is median(ours) / median(baseline). The
  median of the per-round ratios is recorded too, as a check that the two agree.
* Every loop here is bounded in count and in time.
"""

from __future__ import annotations

import gc
import math
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "MIN_SAMPLE_NS",
    "ROUNDS",
    "Figure",
    "calibrate",
    "interleave",
    "median",
    "no_gc",
    "per_op",
]

#: Shortest sample of a nanosecond-scale operation: long enough that the clock's resolution,
#: one scheduler tick and one-off costs are small next to it.
MIN_SAMPLE_NS = 20_000_000
#: Rounds of (ours, baseline) samples for the fast figures.
ROUNDS = 15
# Calibration doubles the batch at most this many times (2**26 calls), and stops after this
# much time in any case.
_MAX_DOUBLINGS = 26
_CALIBRATION_BUDGET_NS = 2_000_000_000


def median(values: list[float]) -> float:
    """The median of `values` (which must not be empty)."""
    return float(statistics.median(values))


@contextmanager
def no_gc() -> Iterator[None]:
    """Keep the cyclic garbage collector off inside the block (restored after)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def calibrate(run: Callable[[int], int], min_ns: int = MIN_SAMPLE_NS) -> int:
    """How many calls make one sample last at least `min_ns`.

    `run(n)` makes `n` calls and returns the nanoseconds they took.
    """
    n = 1
    spent = 0
    for _ in range(_MAX_DOUBLINGS):
        elapsed = run(n)
        spent += elapsed
        if elapsed >= min_ns // 4 or spent > _CALIBRATION_BUDGET_NS:
            break
        n *= 2
    # The fastest of three runs: calibration must not be thrown off by one noisy run.
    elapsed = max(min(run(n) for _ in range(3)), 1)
    return max(1, math.ceil(n * min_ns / elapsed))


def interleave(
    ours: Callable[[], float],
    baseline: Callable[[], float],
    *,
    rounds: int = ROUNDS,
    warmup: int = 1,
) -> tuple[list[float], list[float]]:
    """Take `rounds` samples of each, alternating which goes first; `warmup` rounds first
    are run and thrown away. Each callable takes one sample and returns its value."""
    for _ in range(warmup):
        ours()
        baseline()
    ours_samples: list[float] = []
    baseline_samples: list[float] = []
    for index in range(rounds):
        if index % 2 == 0:
            ours_samples.append(ours())
            baseline_samples.append(baseline())
        else:
            baseline_samples.append(baseline())
            ours_samples.append(ours())
    return ours_samples, baseline_samples


def per_op(run: Callable[[int], int], n: int) -> Callable[[], float]:
    """A sampler: `run(n)` with the collector off, as nanoseconds per call."""

    def sample() -> float:
        with no_gc():
            elapsed = run(n)
        return elapsed / n

    return sample


@dataclass
class Figure:
    """One measured figure: ours against its baseline, and the target on their ratio.

    Attributes:
        name: a stable identifier, ``group.figure``.
        title: what is measured, for the table.
        unit: the unit of `ours` and `baseline` (``ns/op``, ``req/s``, ``s``, ``bytes``...).
        ours, baseline: the medians.
        baseline_label: what the baseline is.
        op: ``"<="`` when the ratio must be at most `target`, ``">="`` at least.
        target: the bound on the ratio.
        ours_samples, baseline_samples: every sample, in the order taken.
        notes: what a reader needs to read the figure (set-up, secondary numbers).
        extra: secondary numbers for the JSON.
    """

    name: str
    title: str
    unit: str
    ours: float
    baseline: float
    baseline_label: str
    op: Literal["<=", ">="]
    target: float
    ours_samples: list[float] = field(default_factory=list)
    baseline_samples: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_samples(
        cls,
        name: str,
        title: str,
        unit: str,
        ours: list[float],
        baseline: list[float],
        *,
        baseline_label: str,
        op: Literal["<=", ">="],
        target: float,
        notes: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Figure:
        """A figure whose values are the medians of `ours` and `baseline`."""
        return cls(
            name=name,
            title=title,
            unit=unit,
            ours=median(ours),
            baseline=median(baseline),
            baseline_label=baseline_label,
            op=op,
            target=target,
            ours_samples=list(ours),
            baseline_samples=list(baseline),
            notes=list(notes or []),
            extra=dict(extra or {}),
        )

    @property
    def ratio(self) -> float:
        """median(ours) / median(baseline)."""
        if self.baseline == 0:
            return math.inf if self.ours else 1.0
        return self.ours / self.baseline

    @property
    def paired_ratio(self) -> float | None:
        """The median of the per-round ratios, when the samples were taken in pairs."""
        pairs = [
            (a, b) for a, b in zip(self.ours_samples, self.baseline_samples, strict=False) if b != 0
        ]
        if len(pairs) != len(self.ours_samples) or not pairs:
            return None
        return median([a / b for a, b in pairs])

    @property
    def met(self) -> bool:
        """Whether the ratio is within the target."""
        if self.op == "<=":
            return self.ratio <= self.target
        return self.ratio >= self.target

    @property
    def target_text(self) -> str:
        """The target as the table shows it, e.g. ``<= 5x``."""
        sign = "≤" if self.op == "<=" else "≥"
        return f"{sign} {self.target:g}x"

    def to_json(self) -> dict[str, Any]:
        """The figure as `results.json` holds it."""
        paired = self.paired_ratio
        return {
            "name": self.name,
            "title": self.title,
            "unit": self.unit,
            "ours_median": self.ours,
            "baseline_median": self.baseline,
            "baseline": self.baseline_label,
            "ratio": self.ratio,
            "paired_ratio_median": paired,
            "target": {"op": self.op, "ratio": self.target},
            "met": self.met,
            "samples": {"ours": self.ours_samples, "baseline": self.baseline_samples},
            "notes": self.notes,
            "extra": self.extra,
        }
