"""The shipped pre-commit hook, run by pre-commit itself (``pre-commit try-repo``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.gitrepo import PromptRepo

CHECKOUT = Path(__file__).resolve().parents[2]


def try_hook(repo: PromptRepo, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(CHECKOUT), "promptory-lint"],
        cwd=repo.path,
        capture_output=True,
        text=True,
        env=env,
        timeout=540,
        check=False,
    )


@pytest.mark.timeout(600)  # the first run builds the hook's environment
@pytest.mark.skipif(shutil.which("git") is None, reason="pre-commit needs the git command")
def test_the_hook_fails_a_commit_of_a_bad_prompt_and_passes_a_good_one(tmp_path: Path) -> None:
    if not (CHECKOUT / ".git").exists():
        pytest.skip("the hook is tried from a git checkout of promptory")
    repo = PromptRepo(tmp_path / "prompts")
    repo.write("o/a/good.md", "---\nversion: 1\n---\nfine\n")
    repo.write("o/a/bad.md", "---\nversion: [\n---\nbad\n")  # staged, as a commit would hold
    failed = try_hook(repo, tmp_path / "cache")
    assert failed.returncode == 1, failed.stdout[-3000:]
    assert "o/a/bad.md:3: error: invalid YAML in front matter" in failed.stdout
    repo.write("o/a/bad.md", "---\nversion: 2\n---\nfixed\n")
    passed = try_hook(repo, tmp_path / "cache")
    assert passed.returncode == 0, passed.stdout[-3000:]
