"""``python -m benchmarks [GROUP ...] [--json PATH]``: run the benchmarks, print the table,
write the JSON. Exits 0 even when a target is missed (it is a report)."""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .measure import Figure
from .report import format_table, write_json
from .session import Session

#: Group name -> module; each module has ``run(session) -> list[Figure]``.
GROUPS: dict[str, str] = {
    "hot": "client_hot",
    "render": "render",
    "cold": "cold_fetch",
    "stale": "stale",
    "threads": "threads",
    "server": "server_load",
    "index": "index",
    "memory": "memory",
    "noisy": "noisy_tenant",
    "ui": "ui_page",
}

DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the groups asked for (all by default), print the table, write the JSON; 0."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Each figure against a baseline measured in the same run.",
    )
    parser.add_argument(
        "groups",
        nargs="*",
        metavar="GROUP",
        help=f"groups to run (default: all): {', '.join(GROUPS)}",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="where to write the JSON report"
    )
    parser.add_argument(
        "--load",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load process of the server figures (default: wrk when installed, else python)",
    )
    args = parser.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}")
    groups = list(args.groups) or list(GROUPS)

    figures: list[Figure] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="promptory-bench-") as root:
        session = Session(Path(root), load_tool=args.load)
        session.log(f"Python {sys.version.split()[0]}; groups: {', '.join(groups)}")
        for group in groups:
            module = importlib.import_module(f".{GROUPS[group]}", __package__)
            run: Callable[[Session], list[Figure]] = module.run
            figures.extend(run(session))
    seconds = time.monotonic() - started

    print(format_table(figures))
    notes = [(f.name, note) for f in figures for note in f.notes]
    if notes:
        print("\nnotes:")
        for name, note in notes:
            print(f"  {name}: {note}")
    missed = [f for f in figures if not f.met]
    print(
        f"\n{len(figures) - len(missed)} of {len(figures)} targets met in {seconds:.0f} s "
        f"(Python {sys.version.split()[0]})."
    )
    if missed:
        print(
            "MISSED: "
            + ", ".join(f"{f.name} ({f.ratio:.3g}x, target {f.target_text})" for f in missed)
        )
    write_json(args.json, figures, seconds=seconds, groups=groups)
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
