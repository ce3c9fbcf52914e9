"""`PromptRepo`: a git repository of prompt files, built with pygit2 in a temporary directory.

No git command line and no global git configuration are needed: commits carry an explicit
signature, and their times advance by one minute per commit from a fixed start, so
`updated_at` values are predictable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pygit2
import yaml

__all__ = ["PromptRepo", "front_matter"]

_START = 1_790_000_000  # 2026-09-21T14:13:20Z


def front_matter(**fields: Any) -> str:
    """YAML front matter lines (without the ``---`` lines) for `fields`, in order."""
    if not fields:
        return ""
    return yaml.safe_dump(fields, sort_keys=False, default_flow_style=False, allow_unicode=True)


class PromptRepo:
    """A non-bare git repository whose commits are made from files written into its work tree.

    Only what `commit()` records is visible to a server: writing a file changes the work
    tree and nothing else.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.repo = pygit2.init_repository(str(self.path), bare=False, initial_head="main")
        self._commits = 0

    def __repr__(self) -> str:
        return f"<PromptRepo {self.path}>"

    # --- the work tree ------------------------------------------------------------------------

    def write(self, path: str, text: str | bytes) -> Path:
        """Write a file (str as UTF-8, bytes as given) into the work tree and stage it."""
        target = self.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        if isinstance(text, str):
            target.write_bytes(text.encode("utf-8"))
        else:
            target.write_bytes(text)
        self._stage(path)
        return target

    def write_prompt(
        self,
        org: str,
        app: str,
        name: str,
        body: str = "Hello {{ user_name }}\n",
        /,
        *,
        path: str | None = None,
        **fields: Any,
    ) -> str:
        """Write ``org/app/<name>.md`` (or `path`) with `fields` as front matter.

        The first four arguments are positional, so `fields` may hold a ``name`` key too.

        `version` defaults to ``1.0.0``; pass ``version=None`` to leave it out. Returns the
        file's path in the repository.
        """
        fields.setdefault("version", "1.0.0")
        fields = {key: value for key, value in fields.items() if value is not None}
        where = path or f"{org}/{app}/{name}.md"
        self.write(where, f"---\n{front_matter(**fields)}---\n{body}")
        return where

    def symlink(self, path: str, target: str) -> None:
        """Create a symbolic link at `path` pointing to `target` and stage it."""
        link = self.path / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        os.symlink(target, link)
        self._stage(path)

    def remove(self, path: str) -> None:
        """Delete a file from the work tree and the index."""
        (self.path / path).unlink()
        self.repo.index.remove(path)
        self.repo.index.write()

    def _stage(self, path: str) -> None:
        index = self.repo.index
        index.add(path)
        index.write()

    # --- history --------------------------------------------------------------------------------

    def signature(self) -> pygit2.Signature:
        """The signature of the next commit (a minute after the previous one)."""
        return pygit2.Signature(
            "Prompt Author", "author@example.com", _START + 60 * self._commits, 0
        )

    def commit(self, message: str = "update prompts") -> str:
        """Commit the index on the current branch; returns the new commit's hex id."""
        index = self.repo.index
        tree = index.write_tree()
        parents = [] if self.repo.head_is_unborn else [self.repo.head.target]
        signature = self.signature()
        self._commits += 1
        oid = self.repo.create_commit("HEAD", signature, signature, message, tree, parents)
        return str(oid)

    def tag(self, name: str, *, annotated: bool = False) -> None:
        """Tag the current commit (lightweight unless `annotated`)."""
        target = self.repo.head.target
        if annotated:
            self.repo.create_tag(
                name, target, pygit2.enums.ObjectType.COMMIT, self.signature(), f"tag {name}"
            )
        else:
            self.repo.references.create(f"refs/tags/{name}", target)

    def branch(self, name: str, at: str | None = None) -> None:
        """Create (or move) branch `name` at commit `at` (default: the current commit)."""
        commit = (self.repo.revparse_single(at) if at else self.repo.head).peel(pygit2.Commit)
        self.repo.branches.local.create(name, commit, force=True)

    def reset_hard(self, sha: str) -> None:
        """Point the current branch at `sha` (a history rewrite, like a force-push)."""
        self.repo.reset(pygit2.Oid(hex=sha), pygit2.enums.ResetMode.HARD)

    @property
    def head(self) -> str:
        """The current commit's hex id."""
        return str(self.repo.head.target)
