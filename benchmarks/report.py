"""The report of a run: one table on stdout, and the same figures as JSON."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .measure import Figure

__all__ = ["format_table", "format_value", "write_json"]


def format_value(value: float, unit: str) -> str:
    """A median as the table shows it, with its unit."""
    if unit == "bytes":
        return f"{value:,.0f} B"
    if unit == "s":
        return f"{value:.3f} s" if value >= 0.01 else f"{value * 1000:.2f} ms"
    if unit in ("req/s", "hits/s"):
        return f"{value:,.0f} {unit}"
    if unit == "requests":
        return f"{value:g}"
    if value < 10:
        return f"{value:.2f} {unit}"
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def format_table(figures: Sequence[Figure]) -> str:
    """figure | ours median | baseline median | ratio | target | met?"""
    header = ("figure", "ours (median)", "baseline (median)", "ratio", "target", "met?")
    rows = [
        (
            f"{figure.name}: {figure.title}",
            format_value(figure.ours, figure.unit),
            format_value(figure.baseline, figure.unit),
            f"{figure.ratio:.3g}x",
            figure.target_text,
            "yes" if figure.met else "MISSED",
        )
        for figure in figures
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        cells_out = [first.ljust(widths[0])]
        cells_out += [cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True)]
        return " | ".join(cells_out)

    out = [line(header), "-+-".join("-" * w for w in widths)]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def write_json(
    path: Path, figures: Sequence[Figure], *, seconds: float, groups: Sequence[str]
) -> None:
    """Write the figures and the run's context to `path`."""
    data: dict[str, Any] = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "groups": list(groups),
        "seconds": round(seconds, 1),
        "met": sum(f.met for f in figures),
        "missed": [f.name for f in figures if not f.met],
        "figures": [f.to_json() for f in figures],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
