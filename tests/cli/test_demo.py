"""`promptory demo` runs the whole product to a clean exit."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_to_a_clean_exit_and_shows_each_step() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "promptory", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in (
        "Fetch by id",
        "Fetch by name",
        "Render locally",
        "Render on the server",
        "A commit goes live without a restart",
        "The cache",
        "The async client",
        "Done",
    ):
        assert step in out
    assert "Hey Alice, good to see you again!" in out
    assert "Stay supportive and practical." in out
    assert "Traceback" not in result.stderr
