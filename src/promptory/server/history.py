"""Which commit last changed a file, found by walking first parents on demand.

`git_sha` of a prompt is the last commit that changed its file, following first parents only
(what ``git log --first-parent -1 -- PATH`` prints): a change merged from a branch is dated by
the merge, which is when it reached the served line of history.

Rules of this module:

* The walk is lazy and resumable. Asking for one path walks back only until that path is
  found, remembering every path seen changing on the way, so the whole history is walked at
  most once per `History`, however many paths are asked for.
* Each step diffs a commit's tree with its first parent's (libgit2 skips unchanged
  subtrees); the root commit is the last change of every path not found before it.
* A `History` may start with what an incremental re-index already learnt (`seed`), so a
  one-file commit never walks the old history again.
* All repository access goes through the store's lock: libgit2 objects are not meant to be
  used from two threads at once.
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Change", "History", "LastChange", "change_of", "changes_since"]


@dataclass(frozen=True)
class Change:
    """A commit, as a prompt's `git_sha` and `updated_at` show it.

    Attributes:
        sha: the commit's full hex id.
        time: its committer time, ISO 8601 in UTC (``2026-11-24T21:46:51Z``).
    """

    sha: str
    time: str


class LastChange(Protocol):
    """Where a record learns the last change of its file (`History`, or none for files
    that are not committed)."""

    def last_change(self, path: str) -> Change:
        """The last commit that changed `path`."""
        ...


def change_of(commit: Any) -> Change:
    """The `Change` for a pygit2 commit."""
    when = datetime.datetime.fromtimestamp(commit.commit_time, tz=datetime.timezone.utc)
    return Change(str(commit.id), when.strftime("%Y-%m-%dT%H:%M:%SZ"))


class History:
    """The last change of each path along the first-parent history of one commit."""

    def __init__(
        self,
        commit: Any,
        lock: threading.RLock,
        *,
        seed: dict[str, Change] | None = None,
        resume_at: Any = None,
    ) -> None:
        """Start at `commit` (a pygit2 commit).

        Args:
            lock: the store's repository lock, held while walking.
            seed: last changes already known, newest first; the walk continues from
                `resume_at` (the commit below those already diffed) for the others.
        """
        self._lock = lock
        self._known: dict[str, Change] = dict(seed or {})
        self._next: Any = commit if seed is None else resume_at
        self._root: Change | None = None

    def last_change(self, path: str) -> Change:
        """The last commit that changed `path` (which exists at the starting commit)."""
        change = self._known.get(path)
        if change is not None:
            return change
        with self._lock:
            while True:
                change = self._known.get(path)
                if change is not None:
                    return change
                if self._root is not None:
                    return self._root
                self._step()

    def _step(self) -> None:
        commit = self._next
        if commit is None:
            raise LookupError("history walked to its end without finding the path")
        parents = commit.parent_ids
        if not parents:
            self._root = change_of(commit)
            self._next = None
            return
        parent = commit.parents[0]
        change = change_of(commit)
        known = self._known
        for delta in parent.tree.diff_to_tree(commit.tree).deltas:
            # A path added or deleted shows on one side only; both sides cover renames,
            # which libgit2 reports as a deletion and an addition anyway.
            known.setdefault(_path(delta.new_file), change)
            known.setdefault(_path(delta.old_file), change)
        self._next = parent


def _path(diff_file: Any) -> str:
    """A diff side's path as tree entries name it: bytes that are not UTF-8 kept as
    surrogate escapes (older pygit2 raises on them in `DiffFile.path`)."""
    raw: bytes = diff_file.raw_path
    return raw.decode("utf-8", "surrogateescape")


def changes_since(commit: Any, ancestor_id: Any, *, limit: int) -> dict[str, Change] | None:
    """Every path changed between `ancestor_id` and `commit`, with its last change.

    Follows first parents from `commit`; returns None when `ancestor_id` is not among the
    first `limit` of them (a force-push, a switch to another branch, a long jump), which
    tells the caller to re-index in full. The commits are found first and diffed after, so
    a full re-index never pays for diffs it throws away.
    """
    chain: list[tuple[Any, Any]] = []
    current = commit
    while current.id != ancestor_id:
        if len(chain) >= limit or not current.parent_ids:
            return None
        parent = current.parents[0]
        chain.append((current, parent))
        current = parent
    known: dict[str, Change] = {}
    for child, parent in chain:
        change = change_of(child)
        for delta in parent.tree.diff_to_tree(child.tree).deltas:
            known.setdefault(_path(delta.new_file), change)
            known.setdefault(_path(delta.old_file), change)
    return known
