"""`Remote`: a bare git repository that commits are pushed to, as a forge would hold it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pygit2

from .gitrepo import PromptRepo
from .servers import copy_examples

__all__ = ["Remote"]


class Remote:
    """A bare remote (``main``) and a work repository that pushes to it."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "remote.git"
        pygit2.init_repository(str(self.bare), bare=True, initial_head="main")
        self.work = PromptRepo(root / "work")
        self.work.repo.remotes.create("origin", str(self.bare))
        copy_examples(self.work)
        self.pushed: list[str] = []
        self.push("example prompts")

    @property
    def url(self) -> str:
        """The remote as a ``file://`` URL."""
        return self.bare.as_uri()

    def write_prompt(self, *args: Any, **kwargs: Any) -> str:
        """`PromptRepo.write_prompt` in the work repository (staged, not yet pushed)."""
        return self.work.write_prompt(*args, **kwargs)

    def write(self, path: str, text: str | bytes) -> Path:
        """`PromptRepo.write` in the work repository (staged, not yet pushed)."""
        return self.work.write(path, text)

    def push(self, message: str = "update prompts") -> str:
        """Commit what is staged and push ``main``; return the new commit's sha."""
        sha = self.work.commit(message)
        self.work.repo.remotes["origin"].push(["+refs/heads/main:refs/heads/main"])
        self.pushed.append(sha)
        return sha
