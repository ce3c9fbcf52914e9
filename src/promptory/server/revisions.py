"""A prompt's history and the differences between two of its commits, read from git.

Rules of this module:

* The history of a prompt is the history of its file's path (renames are not followed),
  along first parents from the commit served (what ``git log --first-parent -- PATH``
  lists): a commit belongs to it when the path's blob differs from its first parent's. A
  commit that deleted the file is listed, with version None.
* Bounded: at most `MAX_HISTORY` entries are returned, and at most `MAX_WALK` commits are
  examined per history (the answer then says ``truncated``). Histories are kept in a small
  LRU by (commit, path), so paging through the UI does not walk again.
* A diff compares the file at two commits: the front matter's fields (as the server reads
  them), the front matter's text and the body, as unified diffs. Sides of more than
  `MAX_DIFF_LINES` lines are refused (`DiffTooLarge`): ``difflib`` is quadratic at worst.
* Refs follow the rules of ``?ref=``: branch and tag names and hex ids only, none of git's
  revision syntax.
* This module opens the repository itself and holds its own lock: libgit2 objects are not
  used from two threads at once, and the store's lock is never held by a slow walk.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pygit2

from .files import PromptFileError, PromptText

__all__ = [
    "DEFAULT_HISTORY",
    "DiffTooLarge",
    "FileDiff",
    "MAX_DIFF_LINES",
    "MAX_HISTORY",
    "MAX_WALK",
    "Revision",
    "Revisions",
    "parse_limit",
    "shared_revisions",
]

#: Entries of a history answer when no limit is asked for.
DEFAULT_HISTORY = 50
#: The most entries one history answer holds.
MAX_HISTORY = 200
#: The most commits examined for one history.
MAX_WALK = 10_000
#: The most lines a side of a diff may have.
MAX_DIFF_LINES = 3_000
#: The longest commit message returned, in characters.
MAX_MESSAGE = 4_000


def parse_limit(raw: str) -> int | None:
    """The history limit `raw` asks for, or None unless it is ASCII digits from 1 to
    `MAX_HISTORY` (``str.isdigit`` also takes digits such as "²" that ``int`` refuses)."""
    if not raw or len(raw) > 10 or not raw.isascii() or not raw.isdigit():
        return None
    limit = int(raw)
    return limit if 1 <= limit <= MAX_HISTORY else None


class DiffTooLarge(ValueError):
    """A side of a diff has more than `MAX_DIFF_LINES` lines."""


@dataclass(frozen=True)
class Revision:
    """A commit that changed a prompt's file.

    Attributes:
        sha: the commit's full hex id.
        author: the author's name.
        email: the author's email.
        date: the author's time, ISO 8601 UTC.
        message: the commit message (at most `MAX_MESSAGE` characters).
        version: the prompt's version after the commit; None when the commit deleted the
            file or its front matter gives no readable version.
    """

    sha: str
    author: str
    email: str
    date: str
    message: str
    version: str | None

    def to_json(self) -> dict[str, str | None]:
        """The revision as the history route sends it."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class History:
    """The revisions of one path, newest first; `truncated` when more may exist."""

    revisions: tuple[Revision, ...]
    truncated: bool


@dataclass(frozen=True)
class FileDiff:
    """How a prompt file differs between two commits.

    Attributes:
        path: the file.
        before, after: (sha, version or None, whether the file exists) of each side.
        fields: the front matter fields that differ: (field, before, after).
        front_matter_diff: the front matter texts as a unified diff ("" when equal).
        body_diff: the bodies as a unified diff ("" when equal).
    """

    path: str
    before: tuple[str, str | None, bool]
    after: tuple[str, str | None, bool]
    fields: tuple[tuple[str, Any, Any], ...]
    front_matter_diff: str
    body_diff: str

    def to_json(self) -> dict[str, Any]:
        """The diff as the diff route sends it."""

        def side(value: tuple[str, str | None, bool]) -> dict[str, Any]:
            return {"sha": value[0], "version": value[1], "exists": value[2]}

        return {
            "path": self.path,
            "from": side(self.before),
            "to": side(self.after),
            "fields": [{"field": f, "from": a, "to": b} for f, a, b in self.fields],
            "front_matter_diff": self.front_matter_diff,
            "body_diff": self.body_diff,
        }


_FIELD_NAMES = (
    "id",
    "name",
    "version",
    "type",
    "role",
    "environment",
    "active",
    "domain",
    "description",
    "model",
    "modality",
    "tts",
    "audio",
    "tags",
    "includes",
)


def _text(data: bytes | None) -> PromptText | None:
    if data is None:
        return None
    try:
        return PromptText(data)
    except PromptFileError:
        return None


def _version(text: PromptText | None) -> str | None:
    if text is None:
        return None
    try:
        return text.front_matter().version
    except PromptFileError:
        return None


def _fields(text: PromptText | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        front = text.front_matter()
    except PromptFileError:
        return {}
    values = {name: getattr(front, name) for name in _FIELD_NAMES}
    values["tags"] = list(front.tags)
    values["includes"] = list(front.includes)
    return values


def _lines(text: str, label: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if len(lines) > MAX_DIFF_LINES:
        raise DiffTooLarge(
            f"the {label} has {len(lines):,} lines, over the limit of {MAX_DIFF_LINES:,} for "
            "a diff here; compare the commits with git diff"
        )
    return lines


def _unified(before: str, after: str, label: str, names: tuple[str, str]) -> str:
    if before == after:
        return ""
    diff = difflib.unified_diff(
        _lines(before, label), _lines(after, label), names[0], names[1], n=3
    )
    # A line without its newline (the last one) would run into the next in the output.
    return "".join(line if line.endswith("\n") else line + "\n" for line in diff)


def _when(seconds: int) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _decoded(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class Revisions:
    """Histories and diffs of prompt files of one repository (thread-safe).

    Args:
        path: the repository.
        resolve: a client's ref -> the full sha of a commit the client may read.
        cache_size: how many histories to keep.
    """

    def __init__(self, path: str, *, resolve: Callable[[str], str], cache_size: int = 64) -> None:
        self._path = path
        self._resolve = resolve
        self._repo: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], History] = OrderedDict()
        self._cache_size = cache_size

    def _repository(self) -> Any:
        if self._repo is None:
            self._repo = pygit2.Repository(self._path)
        return self._repo

    def resolve(self, ref: str) -> str:
        """The full sha of the commit a client's ref names, by the server's rule of which
        commits a client may read (`PromptStore.readable_sha`): never another branch, a
        stash or a commit the served history does not hold.

        Raises:
            RefNotFoundError: the ref is malformed, names no commit, or one not readable.
        """
        return self._resolve(ref)

    @staticmethod
    def _blob(commit: Any, path: str) -> Any:
        try:
            entry = commit.tree[path]
        except (KeyError, ValueError):
            return None
        return entry.id if entry.type_str == "blob" else None

    def history(self, sha: str, path: str, limit: int = DEFAULT_HISTORY) -> History:
        """The commits that changed `path`, newest first, from commit `sha` back.

        Args:
            limit: entries wanted, 1 to `MAX_HISTORY`.
        """
        limit = max(1, min(limit, MAX_HISTORY))
        key = (sha, path)
        with self._lock:
            found = self._cache.get(key)
            if found is None:
                found = self._walk(sha, path)
                self._cache[key] = found
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
        if len(found.revisions) > limit:
            return History(found.revisions[:limit], True)
        return found

    def _walk(self, sha: str, path: str) -> History:
        repo = self._repository()
        commit = repo[sha].peel(pygit2.Commit)
        blob = self._blob(commit, path)
        revisions: list[Revision] = []
        texts: dict[Any, PromptText | None] = {}
        for _ in range(MAX_WALK):
            parent = commit.parents[0] if commit.parent_ids else None
            parent_blob = self._blob(parent, path) if parent is not None else None
            if blob != parent_blob:
                if blob is not None and blob not in texts:
                    texts[blob] = _text(repo[blob].data)
                revisions.append(self._revision(commit, _version(texts.get(blob))))
                if len(revisions) >= MAX_HISTORY:
                    return History(tuple(revisions), parent is not None)
            if parent is None:
                return History(tuple(revisions), False)
            commit, blob = parent, parent_blob
        return History(tuple(revisions), True)

    @staticmethod
    def _revision(commit: Any, version: str | None) -> Revision:
        author = commit.author
        message = _decoded(commit.raw_message).strip()
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + "..."
        return Revision(
            sha=str(commit.id),
            author=_decoded(author.raw_name),
            email=_decoded(author.raw_email),
            date=_when(author.time),
            message=message,
            version=version,
        )

    def file_at(self, sha: str, path: str) -> bytes | None:
        """The bytes of `path` at commit `sha`, or None when it is not a file there."""
        with self._lock:
            repo = self._repository()
            blob = self._blob(repo[sha].peel(pygit2.Commit), path)
            return None if blob is None else bytes(repo[blob].data)

    def diff(self, path: str, before: str, after: str) -> FileDiff:
        """How `path` differs between commits `before` and `after` (full shas).

        Raises:
            DiffTooLarge: a side has more than `MAX_DIFF_LINES` lines.
        """
        old_data, new_data = self.file_at(before, path), self.file_at(after, path)
        old, new = _text(old_data), _text(new_data)
        old_fields, new_fields = _fields(old), _fields(new)
        fields = tuple(
            (name, old_fields.get(name), new_fields.get(name))
            for name in _FIELD_NAMES
            if old_fields.get(name) != new_fields.get(name)
        )
        names = (f"{path}@{before[:12]}", f"{path}@{after[:12]}")
        old_front = old.front_text if old is not None else _raw(old_data)
        new_front = new.front_text if new is not None else _raw(new_data)
        return FileDiff(
            path=path,
            before=(before, _version(old), old_data is not None),
            after=(after, _version(new), new_data is not None),
            fields=fields,
            front_matter_diff=_unified(old_front, new_front, "front matter", names),
            body_diff=_unified(
                old.body if old is not None else "",
                new.body if new is not None else "",
                "body",
                names,
            ),
        )


def _raw(data: bytes | None) -> str:
    """The text of a file that does not parse (shown whole in the front matter diff)."""
    if data is None:
        return ""
    return data[: 256 * 1024].decode("utf-8", "replace")


# One `Revisions` per owner (a server), so its API and its pages share one repository handle
# and one cache of histories; weak, so a stopped server's entry goes with it.
_SHARED: weakref.WeakKeyDictionary[object, Revisions] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def shared_revisions(owner: object, path: str, resolve: Callable[[str], str]) -> Revisions:
    """The `Revisions` of `owner` (built at the first call, the same one after): every part
    of one server reads histories through one object and one cache.

    Args:
        owner: the object the revisions belong to (held weakly).
        path, resolve: as `Revisions`, used by the first call only.
    """
    with _SHARED_LOCK:
        found = _SHARED.get(owner)
        if found is None:
            found = _SHARED[owner] = Revisions(path, resolve=resolve)
        return found
