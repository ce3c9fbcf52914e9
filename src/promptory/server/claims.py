"""Who holds an id that files of more than one app claim.

An id is a promise to the app that owns it: nothing committed in one app may change what
another app's ids return. The rules (the README's "Ids" section says the same):

* A derived id (a file without ``id:``) is UUIDv5 of ``org/app/name/environment``: it belongs
  to that app. A file of another app that writes it as its ``id:`` never takes it.
* Explicit ids claimed by files of several apps: the app that has claimed the id without a
  break for the most first-parent commits, counting back from the commit indexed, holds it.
  An id is claimed by an app at a commit when any prompt file of the app's tree names it as
  its ``id:``; moving the file inside the app keeps the claim going. A newcomer can never
  out-wait the holder: the holder's run grows with every commit as fast as the newcomer's.
* Equal runs (claims that began in the same commit, or runs longer than
  `CLAIM_HISTORY_LIMIT` commits) leave the id to no app: every claim is reported and none is
  served, until one of them is given a new UUID.
* Within one app the first path in byte order wins (the store decides that; both files are
  the app's own).

Cost: nothing unless an id is claimed across apps. Then each claiming app's history is walked
once (an app's subtree that did not change between two commits is not read again), and the
run found for a commit is kept, so the next commit's build takes one step.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from .files import MAX_FILE_BYTES, PromptFileError, PromptText, is_valid_name
from .objects import object_size

__all__ = ["CLAIM_HISTORY_LIMIT", "ClaimHistory"]

#: How many first-parent commits a claim's run is counted over, at most.
CLAIM_HISTORY_LIMIT = 10_000

_MODE_TREE = 0o040000
_REGULAR_MODES = frozenset({0o100644, 0o100755})
_MEMO_SIZE = 4096

Place = tuple[str, str]


class ClaimHistory:
    """Counts how long each app has claimed an id, over one repository's history.

    Args:
        repo: the pygit2 repository.
        lock: the store's repository lock (held by callers of `holder`).
        limit: the most commits a run is counted over.
        prefix: where the prompt tree is in the repository (``""``: its root; ``"p/"``
            for prompts kept in the folder ``p``).
    """

    def __init__(
        self,
        repo: Any,
        lock: threading.RLock,
        *,
        limit: int = CLAIM_HISTORY_LIMIT,
        prefix: str = "",
    ) -> None:
        self._repo = repo
        self._prefix = prefix
        self._lock = lock
        self._limit = limit
        self._runs: OrderedDict[tuple[str, Place, str], int] = OrderedDict()
        self._claims: OrderedDict[tuple[str, str], bool] = OrderedDict()
        #: Commits stepped over while counting runs (what a test counts instead of time).
        self.steps = 0

    def holder(self, commit: Any, claimed_id: str, places: Sequence[Place]) -> Place | None:
        """The app of `places` that has claimed `claimed_id` the longest at `commit`, or
        None on a tie (or when `commit` is None: a tree with no history)."""
        if commit is None:
            return None
        with self._lock:
            runs = {place: self.run(commit, place, claimed_id) for place in places}
        longest = max(runs.values())
        leaders = [place for place, run in runs.items() if run == longest]
        return leaders[0] if len(leaders) == 1 else None

    def run(self, commit: Any, place: Place, claimed_id: str) -> int:
        """How many first-parent commits, from `commit` back, `place` has claimed the id."""
        memo = self._runs
        key = (str(commit.id), place, claimed_id)
        known = memo.get(key)
        if known is not None:
            memo.move_to_end(key)
            return known
        run = 0
        current: Any = commit
        last_tree: str | None = ""
        claims = False
        while current is not None and run < self._limit:
            self.steps += 1
            earlier = memo.get((str(current.id), place, claimed_id))
            if earlier is not None:
                run += earlier
                break
            tree = _subtree(current.tree, f"{self._prefix}{place[0]}/{place[1]}")
            if tree != last_tree:
                claims = tree is not None and self._tree_claims(tree, claimed_id)
                last_tree = tree
            if not claims:
                break
            run += 1
            current = current.parents[0] if current.parent_ids else None
        run = min(run, self._limit)
        memo[key] = run
        if len(memo) > _MEMO_SIZE:
            memo.popitem(last=False)
        return run

    def _tree_claims(self, tree_id: str, claimed_id: str) -> bool:
        memo = self._claims
        key = (tree_id, claimed_id)
        known = memo.get(key)
        if known is None:
            known = _claims_in(self._repo, self._repo[tree_id], claimed_id)
            memo[key] = known
            if len(memo) > _MEMO_SIZE:
                memo.popitem(last=False)
        return known


def _subtree(tree: Any, path: str) -> str | None:
    """The hex id of the tree at `path` in a commit's root `tree`, or None."""
    try:
        entry = tree[path]
    except KeyError:
        return None
    return str(entry.id) if entry.filemode == _MODE_TREE else None


def _claims_in(repo: Any, tree: Any, claimed_id: str) -> bool:
    """Whether a prompt file under `tree` names `claimed_id` as its ``id:``."""
    odb = repo.odb
    stack = [tree]
    while stack:
        for entry in stack.pop():
            name = entry.name
            if name.startswith("."):
                continue
            mode = entry.filemode
            if mode == _MODE_TREE:
                stack.append(entry)
            elif mode in _REGULAR_MODES and name.endswith(".md"):
                if object_size(odb, entry.id) > MAX_FILE_BYTES:
                    continue
                try:
                    keys = PromptText(entry.data).keys
                except PromptFileError:
                    continue
                # A file the store skips for its name claims nothing there either.
                if keys.id == claimed_id and (keys.name is not None or is_valid_name(name[:-3])):
                    return True
    return False
