"""`promptory lint` runs the server's own index and include planner: same verdicts, linear."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from promptory.cli.lint import Finding, lint_tree
from promptory.server.files import prompt_uuid
from support.gitrepo import PromptRepo
from support.servers import RunningServer

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"


def lint(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promptory", "lint", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def problems_of(findings: list[Finding]) -> set[tuple[str, str]]:
    """The findings the server reports too (lint's own checks left out)."""
    own = ("unknown front-matter key", "variable", "a file name never sets")
    return {(f.path, f.message) for f in findings if not any(o in f.message for o in own)}


def test_lint_gives_the_verdicts_of_status(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]
) -> None:
    repo = prompt_repo
    repo.write_prompt("myorg", "myapp", "zz", id=MEDITATION_ID)  # duplicate id, same app
    repo.write_prompt("myorg", "myapp", "x", name="greeting", environment="production")
    repo.write("myorg/myapp/bad.md", "---\nversion: [\n---\n")
    repo.write_prompt("myorg", "myapp", "loop", '{% include "loop" %}')
    repo.write_prompt("myorg", "myapp", "lost", '{% include "nowhere" %}')
    repo.write_prompt(
        "aaa", "evil", "squat", id=prompt_uuid("myorg", "myapp", "greeting", "production")
    )
    repo.write_prompt("aaa", "evil", "late", id="11111111-2222-4333-8444-555555555555")
    repo.symlink("myorg/myapp/link.md", "greeting.md")
    repo.commit()
    repo.write_prompt("zzz", "first", "p", id="11111111-2222-4333-8444-555555555555")
    repo.commit()  # zzz's claim is newer: aaa/evil/late keeps the id
    server = start_server(repo)
    with server.client() as client:
        status = client.get("/api/v1/status").json()
    served_verdicts = {(p["path"], p["message"]) for p in status["problems"]}
    assert len(served_verdicts) == 10
    assert problems_of(lint_tree(repo.path)) == served_verdicts


def layered(root: Path, layers: int, width: int) -> None:
    for layer in range(layers):
        for column in range(width):
            below = "".join(
                f'{{% include "p{layer + 1}_{c}" %}}' for c in range(width) if layer + 1 < layers
            )
            target = root / "o" / "a" / f"p{layer}_{column}.md"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"---\nversion: 1\n---\n{below}x\n")


@pytest.mark.timeout(60)  # each include is resolved once; walking every path would take hours
def test_a_layered_include_graph_of_60_files_is_linted_in_linear_work(tmp_path: Path) -> None:
    layered(tmp_path, 10, 6)  # 6 ** 10 paths from each top prompt
    assert lint_tree(tmp_path) == []


def test_a_fifo_named_like_a_prompt_is_reported_not_read(tmp_path: Path) -> None:
    (tmp_path / "o" / "a").mkdir(parents=True)
    (tmp_path / "o" / "a" / "good.md").write_text("---\nversion: 1\n---\nhi\n")
    os.mkfifo(tmp_path / "o" / "a" / "pipe.md")
    result = lint(tmp_path)
    assert result.returncode == 0, result.stdout
    assert "o/a/pipe.md:1: warning: not a regular file" in result.stdout


def test_single_app_mode_ignores_the_root_readme(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# My prompts\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "greeting.md").write_text("---\nversion: 1\n---\nhi\n")
    assert lint_tree(tmp_path, org="acme", app="bot") == []


def test_a_file_name_that_looks_like_an_environment_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "o" / "a").mkdir(parents=True)
    (tmp_path / "o" / "a" / "hello.dev.md").write_text("---\nversion: 1\n---\nhi\n")
    named = "---\nname: hi\nenvironment: staging\nversion: 1\n---\nhi\n"
    (tmp_path / "o" / "a" / "hi.staging.md").write_text(named)
    [finding] = lint_tree(tmp_path)
    assert finding.path == "o/a/hello.dev.md"
    assert finding.severity == "warning"
    assert "add 'name: hello' and 'environment: development'" in finding.message


def test_staged_checks_the_index_not_the_working_tree(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("o", "a", "p")
    repo.commit()
    repo.write("o/a/p.md", "---\nversion: [\n---\n")  # staged: broken
    (repo.path / "o" / "a" / "p.md").write_text("---\nversion: 2\n---\nfixed\n")  # not staged
    staged = lint(repo.path, "--staged")
    assert staged.returncode == 1
    assert "o/a/p.md:" in staged.stdout and "invalid YAML" in staged.stdout
    assert lint(repo.path).returncode == 0


def test_staged_in_a_subfolder_reads_only_that_folder(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write("prompts/o/a/p.md", "---\nversion: [\n---\n")
    repo.write("other/o/a/q.md", "---\nversion: [\n---\n")
    result = lint(repo.path / "prompts", "--staged")
    assert result.returncode == 1
    assert result.stdout.startswith("o/a/p.md:")
    assert "q.md" not in result.stdout


def test_staged_outside_a_repository_is_a_usage_error(tmp_path: Path) -> None:
    result = lint(tmp_path, "--staged")
    assert result.returncode == 2
    assert "not in a git repository" in result.stderr


def test_lint_decides_an_id_conflict_against_the_history_up_to_head(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("zzz", "victim", "p", id=MEDITATION_ID)
    repo.commit()
    repo.write_prompt("aaa", "attacker", "p", id=MEDITATION_ID)  # not committed
    findings = {(f.path, f.severity) for f in lint_tree(repo.path)}
    assert findings == {("aaa/attacker/p.md", "error"), ("zzz/victim/p.md", "warning")}


def test_a_file_skipped_while_indexing_keeps_its_line(tmp_path: Path) -> None:
    (tmp_path / "o" / "a").mkdir(parents=True)
    (tmp_path / "o" / "a" / "bad.md").write_text("---\nversion: [\n---\nbad\n")
    [finding] = lint_tree(tmp_path)
    assert (finding.path, finding.line, finding.severity) == ("o/a/bad.md", 3, "error")
