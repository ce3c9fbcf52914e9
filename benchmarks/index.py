"""Figure 7: indexing a repository of 10,000 prompts, cold, and after a one-file commit.

The repository (built once per run, in the run's temporary folder) holds 10,000 prompt files
of about 1.3 KB — realistic front matter and a 1 KB body — in 4 orgs x 5 apps, in
sub-folders.

* Cold: ``PromptStore(path, prepare_in_background=False)`` until its snapshot is ready,
  against the floor of reading the same commit with the same library: open the repository
  with pygit2, walk HEAD's tree recursively and read every blob's data. Rounds interleaved.
  ``git ls-tree -r HEAD`` (the command line, when installed) is timed for reference.
  Target: at most 3x.
* Re-index: a one-file commit (a changed body), then ``store.refresh()``, against the cold
  time. Target: at most 1/20 of it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import pygit2

from promptory.server.store import PromptStore

from .measure import Figure, interleave, median, no_gc
from .repos import commit_file, create_repo
from .session import Session

__all__ = ["run"]

PROMPTS = 10_000
ORGS = 4
APPS = 5
ROUNDS = 5
COMMITS = 7
_ENVIRONMENTS = ("production", "staging", "development")
_SENTENCE = (
    "You are a careful assistant for {{ user.name | default('the user') }}. Keep answers "
    "short, cite the source document when you use one, and ask before acting. "
)


def _prompt(index: int, org: str, app: str, edit: int = 0) -> bytes:
    environment = _ENVIRONMENTS[index % 3]
    body = f"{{# prompt {index} edit {edit} #}}\n" + _SENTENCE * 6
    body += "{% if context %}\nContext:\n{{ context }}\n{% endif %}\n"
    return (
        f"---\nversion: 1.{index % 10}.{edit}\ntype: chat\nrole: system\n"
        f"environment: {environment}\ndomain: area{index % 10}\n"
        f"description: Prompt {index} of {org}/{app}, used by the {app} assistant.\n"
        f"model:\n  default: gemini-2.0-flash\n  temperature: 0.{index % 10}\n"
        f"  max_tokens: {500 + index % 7 * 100}\n"
        f"tags: [{app}, area{index % 10}, v{index % 3}]\n---\n{body}"
    ).encode()


def _path(index: int) -> tuple[str, str, str]:
    org = f"org{index % ORGS}"
    app = f"app{index // ORGS % APPS}"
    return org, app, f"{org}/{app}/area{index % 10}/prompt_{index:05d}.md"


def build_large_repo(path: Path) -> None:
    """The 10,000-prompt repository at `path`."""
    files: dict[str, bytes] = {}
    for index in range(PROMPTS):
        org, app, file_path = _path(index)
        files[file_path] = _prompt(index, org, app)
    create_repo(path, files)


def read_everything(path: Path) -> int:
    """The floor: open the repository, walk HEAD's tree, read every blob. Returns bytes."""
    repo = pygit2.Repository(str(path))
    total = 0
    stack: list[Any] = [repo.head.peel(pygit2.Commit).tree]
    while stack:
        for entry in stack.pop():
            if entry.type_str == "tree":
                stack.append(entry)
            else:
                total += len(entry.data)
    return total


def _timed(action: Any) -> float:
    with no_gc():
        started = perf_counter_ns()
        action()
        return (perf_counter_ns() - started) / 1e9


def run(session: Session) -> list[Figure]:
    """Figure 7 (cold index and one-file re-index)."""
    path = session.root / "large.git"
    session.log(f"index: building a repository of {PROMPTS:,} prompts")
    started = perf_counter_ns()
    build_large_repo(path)
    build_seconds = (perf_counter_ns() - started) / 1e9
    assert read_everything(path) > PROMPTS * 1000

    stores: list[PromptStore] = []

    def ours() -> float:
        stores[:] = []
        return _timed(lambda: stores.append(PromptStore(str(path), prepare_in_background=False)))

    session.log("index: cold PromptStore vs tree walk + every blob read")
    cold, floor = interleave(ours, lambda: _timed(lambda: read_everything(path)), rounds=ROUNDS)
    store = stores[0]
    assert store.snapshot.file_count == PROMPTS, store.snapshot.file_count

    git_note = "git not installed"
    if shutil.which("git"):
        command = ["git", "-C", str(path), "ls-tree", "-r", "HEAD"]
        git = [_timed(lambda: subprocess.run(command, check=True, capture_output=True))]
        git += [_timed(lambda: subprocess.run(command, check=True, capture_output=True))]
        git_note = f"git ls-tree -r HEAD (command line, listing only): {median(git):.3f} s"

    session.log(f"index: {COMMITS} one-file commits, each followed by store.refresh()")
    repo = pygit2.Repository(str(path))
    refreshes: list[float] = []
    for commit in range(COMMITS):
        index = commit * 997 % PROMPTS
        org, app, file_path = _path(index)
        commit_file(repo, file_path, _prompt(index, org, app, edit=commit + 1), f"edit {index}")
        refreshes.append(_timed(lambda: store.refresh()))
        served = store.snapshot.find_by_name(org, app, f"prompt_{index:05d}")
        assert served is not None
        assert f"edit {commit + 1} " in served.served().data["body"]
    return [
        Figure.from_samples(
            "index.cold",
            f"cold index of {PROMPTS:,} prompts",
            "s",
            cold,
            floor,
            baseline_label="pygit2: open, walk HEAD's tree, read every blob",
            op="<=",
            target=3.0,
            notes=[f"repository built in {build_seconds:.1f} s; {git_note}"],
            extra={"prompts": PROMPTS, "build_seconds": build_seconds},
        ),
        Figure.from_samples(
            "index.one_file_commit",
            "re-index after a one-file commit (store.refresh)",
            "s",
            refreshes,
            cold,
            baseline_label="our cold index of the same repository",
            op="<=",
            target=0.05,
            notes=[f"{COMMITS} commits, each changing one prompt's body; the change is served"],
            extra={"commits": COMMITS},
        ),
    ]
