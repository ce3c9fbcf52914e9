"""The git-native prompt store: what a commit holds, indexed, and kept in step with a ref.

Rules of this module:

* Only committed content is read, at a ref (default ``HEAD``), never the working tree.
* Layout. In a multi-app repository a prompt is ``<org>/<app>/**/<name>.md``; other files
  (a root ``README.md``, ``org/notes.md``) are not prompts and are ignored. In single-app
  mode (org and app given) every ``**/*.md`` but the root ``README.md`` is a prompt of
  that app. Paths with a part that starts with a dot (``.github/``) are ignored in both
  modes.
* A `Snapshot` is what one commit holds, and never changes once built. The store swaps in a
  new one atomically when the ref moves; readers keep the one they took.
* Indexing is cheap; parsing is lazy. Building a snapshot reads every prompt blob and scans
  the few keys it is indexed by (`files.scan_index_keys`); the full parse, the body check
  and the JSON happen per record on first use (`records.PromptRecord`), and a background
  pass prepares the rest between polls. Parsed texts are shared by blob id.
* Re-indexing is incremental when the new commit has the old one among its first parents:
  only the paths changed on the way are read again, and every other record (with its
  prepared JSON) is kept. Otherwise the snapshot is rebuilt, reusing parsed texts by blob id.
* Bad files never take the others down: a file that cannot be read or parsed is skipped and
  listed in `Snapshot.problems()`.
* Duplicates. Of the valid files sharing (org, app, name, environment), the first by path
  order is served. Who holds an id that several files claim is `claims`' rule: a derived id
  belongs to its own app; among explicit claims from several apps, the longest-running
  claim (first-parent commits) holds it and a tie leaves it to none; within the holding app
  the first valid file by path order. Every file that loses is reported and not served at
  all (not even by its own id); a file that keeps an id another app also claims is reported
  too, so both apps see the conflict.
* Lookup by name without an environment gives the most promoted active variant:
  production, else staging, else development. With an environment, exactly that variant,
  if active. Inactive prompts are served by id only.
* All access to the pygit2 repository holds the store's lock.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Final

import pygit2

from .._controls import escape_controls
from .._protocol import PROMOTION_ORDER
from .claims import ClaimHistory
from .files import MAX_FILE_BYTES, PromptFileError, PromptText, canonical_id, is_valid_name
from .history import Change, History, LastChange, change_of, changes_since
from .objects import object_size
from .records import PromptRecord

__all__ = [
    "Layout",
    "MIN_SHA_LENGTH",
    "PENDING",
    "Pending",
    "Problem",
    "PromptStore",
    "RefNotFoundError",
    "ResolvedRef",
    "Snapshot",
    "StoreError",
    "TreeFile",
    "index_files",
]

logger = logging.getLogger("promptory.server")

_MODE_TREE = 0o040000
_MODE_LINK = 0o120000
_MODE_COMMIT = 0o160000

# A ref a client may ask for: branch and tag names and hex ids, none of git's rev syntax
# (`~`, `^`, `@{}`, `:`), which could search history or name a file.
_CLIENT_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]{0,199}")
#: The fewest hex digits a commit id given as ``?ref=`` may have.
MIN_SHA_LENGTH = 7
_COMMIT_ID = re.compile(rf"[0-9a-fA-F]{{{MIN_SHA_LENGTH},40}}")
# How many (served commit, asked commit) reachability answers are kept.
_REACHABILITY_CACHE = 1024
# How many first parents an incremental re-index follows to find the old commit.
_INCREMENTAL_LIMIT = 256
# The longest wait between checks of the ref while they fail.
_MAX_BACKOFF = 5.0
_NO_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


def _out_of_descriptors(exc: BaseException) -> bool:
    """Whether `exc` says the process (or system) has no file descriptor left. libgit2's
    errors carry no errno: their message holds the system's text."""
    if isinstance(exc, OSError) and exc.errno in _NO_DESCRIPTORS:
        return True
    text = str(exc)
    return any(os.strerror(code) in text for code in _NO_DESCRIPTORS)


def _failure(exc: BaseException) -> str:
    """A failed check, said once per kind: running out of descriptors is one failure,
    whichever file it was opening."""
    if _out_of_descriptors(exc):
        return (
            "out of file descriptors (too many open files); raise `ulimit -n` or lower "
            "--max-connections"
        )
    return f"{type(exc).__name__}: {exc}"


class StoreError(Exception):
    """The repository cannot be opened or read."""


class RefNotFoundError(LookupError):
    """A ref (branch, tag or commit id) that does not name a commit of the repository."""

    def __init__(self, ref: str, reason: str = "no such branch, tag or commit") -> None:
        self.ref = ref
        self.reason = reason
        super().__init__(f"ref {ref!r}: {reason}")


@dataclass(frozen=True)
class Problem:
    """A file that is not served (or served with a problem: `served`), and why.

    Attributes:
        path: the file's path in the repository.
        message: what is wrong.
        line: the file line the problem is on, when known.
        served: True for a file that is served all the same (an id another app also
            claims, includes that fail every render).
        severity: ``"error"``, or ``"warning"`` when nothing fails (a served file keeping
            an id another app also claims).
    """

    path: str
    message: str
    line: int | None = field(default=None, compare=False)
    served: bool = field(default=False, compare=False)
    severity: str = field(default="error", compare=False)


class Pending:
    """The type of `PENDING`."""

    def __repr__(self) -> str:
        return "PENDING"


#: What a `peek_*` lookup answers when it would have to parse a file first.
PENDING: Final = Pending()


def _by_path(records: Iterable[PromptRecord]) -> tuple[PromptRecord, ...]:
    return tuple(sorted(records, key=attrgetter("path")))


def _winner(candidates: tuple[PromptRecord, ...], work: bool) -> PromptRecord | Pending | None:
    """The first valid record of `candidates` (path order), or PENDING if that would take
    parsing and `work` is false."""
    for record in candidates:
        if not work and not record.prepared:
            return PENDING
        if record.parse():
            return record
    return None


def _kept_message(prompt_id: str) -> str:
    return (
        f"id {prompt_id} is also claimed by a file of another app; this file keeps it and "
        "is served (the other is not)"
    )


def _eligible(claims: tuple[PromptRecord, ...], holder: _Holder) -> tuple[PromptRecord, ...]:
    """The claims of one id that may hold it (see `claims` for the rule)."""
    derived = tuple(record for record in claims if record.text.keys.id is None)
    if derived:
        return derived
    places = sorted({(record.org, record.app) for record in claims})
    if len(places) == 1:
        return claims
    won = holder(claims[0].id, places)
    return tuple(record for record in claims if (record.org, record.app) == won)


def _finished(result: PromptRecord | Pending | None) -> PromptRecord | None:
    assert not isinstance(result, Pending)  # lookups that may parse never answer PENDING
    return result


_NameKey = tuple[str, str, str, str]
_Place = tuple[str, str]
# Who holds an id claimed by files of several apps: (id, the claiming apps) -> holder or None.
_Holder = Callable[[str, list[_Place]], _Place | None]
# A file skipped while indexing: its org, its app, why, and the line (or None).
_Skipped = tuple[str, str, str, int | None]


class Snapshot:
    """The prompts of one commit, indexed. Immutable: build a new one for a new commit.

    Attributes:
        commit: the commit's full hex id, or None for a repository without commits.
        ref: the ref the snapshot was taken from.
        committed_at: the commit's time (ISO 8601 UTC), or None.
        indexed_at: when this server read the commit (seconds since the epoch).
    """

    def __init__(
        self,
        *,
        commit: str | None,
        ref: str,
        committed_at: str | None,
        records: dict[str, PromptRecord],
        skipped: dict[str, _Skipped],
        by_id: dict[str, tuple[PromptRecord, ...]],
        by_key: dict[_NameKey, tuple[PromptRecord, ...]],
        apps: dict[tuple[str, str], int],
        eligible: dict[str, tuple[PromptRecord, ...]] | None = None,
    ) -> None:
        self.commit = commit
        self.ref = ref
        self.committed_at = committed_at
        self.indexed_at = time.time()
        self._records = records
        self._skipped = skipped
        self._by_id = by_id
        self._by_key = by_key
        self._apps = apps
        # For each id claimed by more than one file: the claims that may hold it.
        self._eligible = eligible or {}

    @classmethod
    def empty(cls, ref: str) -> Snapshot:
        """The snapshot of a repository with no commit yet."""
        return cls(
            commit=None,
            ref=ref,
            committed_at=None,
            records={},
            skipped={},
            by_id={},
            by_key={},
            apps={},
        )

    def __repr__(self) -> str:
        return f"<Snapshot {self.commit} {len(self._records)} files>"

    # --- counts and listing ----------------------------------------------------------------

    @property
    def file_count(self) -> int:
        """Prompt files indexed (before any lazy parse found some of them bad)."""
        return len(self._records)

    def records(self) -> Iterator[PromptRecord]:
        """Every indexed record, served or not, in no particular order."""
        return iter(self._records.values())

    def has_app(self, org: str, app: str) -> bool:
        """Whether any prompt file lives in `org`/`app`."""
        return (org, app) in self._apps

    # --- lookups ---------------------------------------------------------------------------

    def _served(self, record: PromptRecord, work: bool) -> PromptRecord | Pending | None:
        """`record` if it wins both its id and its name key, else None (or PENDING)."""
        key = (record.org, record.app, record.name, record.environment)
        by_name = _winner(self._by_key[key], work)
        if by_name is not record:
            return by_name if by_name is PENDING else None
        by_id = _winner(self._id_claims(record.id), work)
        if by_id is not record:
            return by_id if by_id is PENDING else None
        return record

    def _id_claims(self, prompt_id: str) -> tuple[PromptRecord, ...]:
        """The records that may hold `prompt_id`, in path order."""
        eligible = self._eligible.get(prompt_id)
        return self._by_id[prompt_id] if eligible is None else eligible

    def peek_by_id(self, prompt_id: str) -> PromptRecord | Pending | None:
        """The prompt with this id, None, or PENDING when finding out needs a parse."""
        return self._by_id_lookup(prompt_id, False)

    def peek_by_name(
        self, org: str, app: str, name: str, environment: str | None = None
    ) -> PromptRecord | Pending | None:
        """The active prompt `org/app/name` (most promoted variant unless `environment`),
        None, or PENDING when finding out needs a parse."""
        return self._by_name_lookup(org, app, name, environment, False)

    def find_by_id(self, prompt_id: str) -> PromptRecord | None:
        """The prompt with this id, active or not, parsing files as needed."""
        return _finished(self._by_id_lookup(prompt_id, True))

    def find_by_name(
        self, org: str, app: str, name: str, environment: str | None = None
    ) -> PromptRecord | None:
        """The active prompt `org/app/name`, parsing files as needed: exactly `environment`
        if given, else the most promoted variant (production, staging, development)."""
        return _finished(self._by_name_lookup(org, app, name, environment, True))

    def variant(self, org: str, app: str, name: str, environment: str) -> PromptRecord | None:
        """The served record for exactly (org, app, name, environment), active or not."""
        candidates = self._by_key.get((org, app, name, environment))
        if candidates is None:
            return None
        return _finished(self._pick(candidates, True, active_only=False))

    def _pick(
        self, candidates: tuple[PromptRecord, ...], work: bool, *, active_only: bool
    ) -> PromptRecord | Pending | None:
        """The served record among `candidates` (one index key's records)."""
        record = _winner(candidates, work)
        if not isinstance(record, PromptRecord):
            return record
        if active_only and not record.active:
            return None
        return self._served(record, work)

    def _by_id_lookup(self, prompt_id: str, work: bool) -> PromptRecord | Pending | None:
        candidates = self._by_id.get(prompt_id)
        if candidates is None:
            canonical = canonical_id(prompt_id)
            if canonical is None or canonical not in self._by_id:
                return None
            prompt_id = canonical
        return self._pick(self._id_claims(prompt_id), work, active_only=False)

    def _by_name_lookup(
        self, org: str, app: str, name: str, environment: str | None, work: bool
    ) -> PromptRecord | Pending | None:
        environments = PROMOTION_ORDER if environment is None else (environment,)
        by_key = self._by_key
        for env in environments:
            candidates = by_key.get((org, app, name, env))
            if candidates is not None:
                record = self._pick(candidates, work, active_only=True)
                if record is not None:
                    return record
        return None

    def prompts(
        self,
        *,
        org: str | None = None,
        app: str | None = None,
        environment: str | None = None,
        tag: str | None = None,
        allow: Callable[[str, str], bool] | None = None,
    ) -> list[PromptRecord]:
        """The served prompts (active or not) matching every filter given, sorted by org,
        app, name and environment. `allow(org, app)` filters by a key's scope."""
        found = []
        for record in self._records.values():
            if org is not None and record.org != org:
                continue
            if app is not None and record.app != app:
                continue
            if environment is not None and record.environment != environment:
                continue
            if allow is not None and not allow(record.org, record.app):
                continue
            if self._served(record, True) is not record:
                continue
            if tag is not None:
                served = record.ready
                if served is None or tag not in served.file.tags:
                    continue
            found.append(record)
        found.sort(key=lambda r: (r.org, r.app, r.name, r.environment))
        return found

    # --- problems --------------------------------------------------------------------------

    def problems(self, allow: Callable[[str, str], bool] | None = None) -> list[Problem]:
        """Every file that is not served, and why, sorted by path. Parses what is left to
        parse. `allow(org, app)` keeps only the problems of files in a key's scope."""
        problems = [
            Problem(path, message, line=line)
            for path, (org, app, message, line) in self._skipped.items()
            if allow is None or allow(org, app)
        ]
        for record in self._records.values():
            if allow is not None and not allow(record.org, record.app):
                continue
            try:
                record.served()
            except PromptFileError as exc:
                problems.append(Problem(record.path, exc.message, line=exc.line))
                continue
            if self._served(record, True) is record:
                if record.id in self._eligible and self._shared_across_apps(record.id):
                    problems.append(
                        Problem(
                            record.path, _kept_message(record.id), served=True, severity="warning"
                        )
                    )
                continue
            key = (record.org, record.app, record.name, record.environment)
            by_name = _winner(self._by_key[key], True)
            if by_name is not record:
                assert isinstance(by_name, PromptRecord)
                message = (
                    f"duplicate prompt {record.qualified_name} ({record.environment}): "
                    f"{by_name.path} is served instead"
                )
            else:
                message = self._id_loss(record)
            problems.append(Problem(record.path, message))
        problems.sort(key=attrgetter("path"))
        return problems

    def _shared_across_apps(self, prompt_id: str) -> bool:
        claims = self._by_id[prompt_id]
        first = claims[0]
        return any((r.org, r.app) != (first.org, first.app) for r in claims)

    def _id_loss(self, record: PromptRecord) -> str:
        """Why `record`, valid and first for its name, does not hold its id."""
        prompt_id = record.id
        eligible = self._id_claims(prompt_id)
        if record in eligible:
            holder = _winner(eligible, True)
            assert isinstance(holder, PromptRecord)
            return f"duplicate id {prompt_id}: {holder.path} is served instead"
        new_id = "give this file a new UUID (or remove 'id:' to derive one from its name)"
        if not eligible:
            return (
                f"id {prompt_id} is claimed by files of more than one app since the same "
                f"commit, so none of them is served; {new_id}"
            )
        if eligible[0].text.keys.id is None:
            where = (
                eligible[0].path
                if (eligible[0].org, eligible[0].app) == (record.org, record.app)
                else "a prompt of another app"
            )
            return (
                f"id {prompt_id} is the id {where} derives from its name; an 'id:' cannot "
                f"take it: {new_id}"
            )
        return (
            f"id {prompt_id} is held by another app, which claimed it first; this file is "
            f"not served: {new_id}"
        )

    def skipped_problems(self) -> list[Problem]:
        """The files skipped while indexing (unreadable), without parsing any more."""
        problems = (
            Problem(path, skipped[2], line=skipped[3]) for path, skipped in self._skipped.items()
        )
        return sorted(problems, key=attrgetter("path"))

    def unprepared(self) -> Iterator[PromptRecord]:
        """The records no request has prepared yet."""
        return (record for record in self._records.values() if not record.prepared)


@dataclass(frozen=True)
class ResolvedRef:
    """A snapshot for a ref a client asked for.

    Attributes:
        snapshot: what the ref's commit holds.
        pinned: True when the ref names a commit that will not change (a commit id or a
            tag), so answers may be cached for good; False for a branch.
    """

    snapshot: Snapshot
    pinned: bool


def _is_readme(name: str) -> bool:
    """A repository's own README at its root: documentation, not a prompt."""
    return name.lower() == "readme.md"


class Layout:
    """Where prompts are in the tree: multi-app (``org/app/**``) or single-app.

    Shared with `promptory lint`, so it finds exactly the files the server serves."""

    def __init__(self, org: str | None, app: str | None) -> None:
        self.single: tuple[str, str] | None = (org, app) if org and app else None

    def place(self, path: str) -> tuple[str, str, str] | None:
        """(org, app, stem) of a prompt path, or None when the path holds no prompt."""
        if not path.endswith(".md"):
            return None
        parts = path.split("/")
        if any(part.startswith(".") for part in parts):
            return None
        stem = parts[-1][:-3]
        if self.single is not None:
            if len(parts) == 1 and _is_readme(parts[0]):
                return None
            return self.single[0], self.single[1], stem
        if len(parts) < 3 or not is_valid_name(parts[0]) or not is_valid_name(parts[1]):
            return None
        return parts[0], parts[1], stem


class _Index:
    """The mutable dicts a snapshot is built from."""

    def __init__(self, base: Snapshot | None = None) -> None:
        if base is None:
            self.records: dict[str, PromptRecord] = {}
            self.skipped: dict[str, _Skipped] = {}
            self.by_id: dict[str, tuple[PromptRecord, ...]] = {}
            self.by_key: dict[_NameKey, tuple[PromptRecord, ...]] = {}
            self.apps: dict[tuple[str, str], int] = {}
            self.contested: set[str] = set()
        else:
            self.records = dict(base._records)
            self.skipped = dict(base._skipped)
            self.by_id = dict(base._by_id)
            self.by_key = dict(base._by_key)
            self.apps = dict(base._apps)
            self.contested = set(base._eligible)

    def add(self, record: PromptRecord) -> None:
        self.records[record.path] = record
        key = (record.org, record.app, record.name, record.environment)
        present = self.by_id.get(record.id)
        if present:
            self.by_id[record.id] = _by_path((*present, record))
            self.contested.add(record.id)
        else:
            self.by_id[record.id] = (record,)
        present = self.by_key.get(key)
        self.by_key[key] = _by_path((*present, record)) if present else (record,)
        place = (record.org, record.app)
        self.apps[place] = self.apps.get(place, 0) + 1

    def add_all(self, records: list[PromptRecord]) -> None:
        """Add the records of a full build at once (to an empty index)."""
        by_id: dict[str, list[PromptRecord]] = {}
        by_key: dict[_NameKey, list[PromptRecord]] = {}
        apps = self.apps
        for record in records:
            self.records[record.path] = record
            by_id.setdefault(record.id, []).append(record)
            by_key.setdefault((record.org, record.app, record.name, record.environment), []).append(
                record
            )
            place = (record.org, record.app)
            apps[place] = apps.get(place, 0) + 1
        # Groups of one (nearly all) need no sorting.
        self.by_id = {k: _by_path(g) if len(g) > 1 else (g[0],) for k, g in by_id.items()}
        self.contested = {k for k, g in by_id.items() if len(g) > 1}
        self.by_key = {k: _by_path(g) if len(g) > 1 else (g[0],) for k, g in by_key.items()}

    def remove(self, path: str) -> None:
        self.skipped.pop(path, None)
        record = self.records.pop(path, None)
        if record is None:
            return
        rest = tuple(r for r in self.by_id[record.id] if r is not record)
        if rest:
            self.by_id[record.id] = rest
        else:
            del self.by_id[record.id]
        if len(rest) < 2:
            self.contested.discard(record.id)
        key = (record.org, record.app, record.name, record.environment)
        others = tuple(r for r in self.by_key[key] if r is not record)
        if others:
            self.by_key[key] = others
        else:
            del self.by_key[key]
        place = (record.org, record.app)
        if self.apps[place] == 1:
            del self.apps[place]
        else:
            self.apps[place] -= 1

    def snapshot(self, commit: Any | None, ref: str, holder: _Holder) -> Snapshot:
        """The snapshot of what is indexed, as of `commit` (None: a working tree)."""
        eligible = {key: _eligible(self.by_id[key], holder) for key in self.contested}
        change = None if commit is None else change_of(commit)
        return Snapshot(
            commit=None if change is None else change.sha,
            ref=ref,
            committed_at=None if change is None else change.time,
            records=self.records,
            skipped=self.skipped,
            by_id=self.by_id,
            by_key=self.by_key,
            apps=self.apps,
            eligible=eligible,
        )


def _read_file(
    index: _Index,
    path: str,
    place: tuple[str, str, str],
    blob_id: str,
    size: Callable[[], int],
    load: Callable[[], bytes],
    history: LastChange,
    texts: dict[str, PromptText],
) -> PromptRecord | None:
    """The record of a regular file, or None when it is not served (`index.skipped` says
    why). `size` is asked before `load`, which is never called for a file over the limit."""
    org, app, stem = place
    text = texts.get(blob_id)
    if text is None:
        try:
            length = size()
            if length > MAX_FILE_BYTES:
                index.skipped[path] = (
                    org,
                    app,
                    f"file is {length:,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes",
                    None,
                )
                return None
            text = PromptText(load())
        except PromptFileError as exc:
            index.skipped[path] = (org, app, exc.message, exc.line)
            return None
        except OSError as exc:  # a work tree file (lint) that cannot be read
            index.skipped[path] = (org, app, f"cannot read: {exc.strerror or exc}", None)
            return None
        texts[blob_id] = text
    if text.keys.name is None and not is_valid_name(stem):
        index.skipped[path] = (
            org,
            app,
            f"file name {stem!r} is not a valid prompt name; rename the file or set "
            "'name' in the front matter",
            None,
        )
        return None
    return PromptRecord(
        path=path, org=org, app=app, stem=stem, text=text, blob_id=blob_id, history=history
    )


@dataclass(frozen=True)
class TreeFile:
    """A file of a tree that is not a commit (a work tree, a git index), for `index_files`.

    Attributes:
        path: its path from the root of the prompt tree, with ``/``.
        kind: ``"file"``, ``"symlink"``, or ``"other"`` (a FIFO, socket or device, which is
            never opened).
        blob_id: anything that differs when the content differs (the git blob id).
        size: its size in bytes, asked before `load`.
        load: its bytes.
    """

    path: str
    kind: str
    blob_id: str
    size: Callable[[], int]
    load: Callable[[], bytes]


class _Uncommitted:
    """The history of files no commit holds yet (`index_files`)."""

    def last_change(self, path: str) -> Change:
        return Change("", "")


def index_files(
    files: Iterable[TreeFile],
    *,
    org: str | None = None,
    app: str | None = None,
    holder: _Holder | None = None,
) -> Snapshot:
    """A snapshot of files that are not a commit, indexed exactly as the server indexes a
    commit (what ``promptory lint`` checks). `holder` decides an id claimed by several apps
    (default: none holds it, as for claims made in the same commit)."""
    layout = Layout(org, app)
    index = _Index()
    history = _Uncommitted()
    texts: dict[str, PromptText] = {}
    records = []
    for file in sorted(files, key=attrgetter("path")):
        place = layout.place(file.path)
        if place is None:
            continue
        if file.kind == "symlink":
            index.skipped[file.path] = (*place[:2], _SYMLINK, None)
            continue
        if file.kind != "file":
            index.skipped[file.path] = (
                *place[:2],
                "not a regular file (a FIFO, socket or device); it is not read",
                None,
            )
            continue
        record = _read_file(
            index, file.path, place, file.blob_id, file.size, file.load, history, texts
        )
        if record is not None:
            records.append(record)
    index.add_all(records)

    def no_holder(prompt_id: str, places: list[_Place]) -> _Place | None:
        return None

    return index.snapshot(None, "", holder or no_holder)


_SYMLINK = "symbolic links are not served; commit the file"


class _Builder:
    """Builds snapshots from commits. Callers hold the store's lock."""

    def __init__(self, repo: Any, lock: threading.RLock, layout: Layout) -> None:
        self.lock = lock
        self.layout = layout
        self.odb = repo.odb
        self.claims = ClaimHistory(repo, lock)

    def holder(self, commit: Any) -> _Holder:
        """Who holds an id claimed by several apps at `commit` (see `claims`)."""

        def holder(prompt_id: str, places: list[_Place]) -> _Place | None:
            return self.claims.holder(commit, prompt_id, places)

        return holder

    def read(
        self,
        index: _Index,
        path: str,
        place: tuple[str, str, str],
        entry: Any,
        mode: int,
        history: History,
        texts: dict[str, PromptText],
    ) -> PromptRecord | None:
        """The record for the tree entry at `path` (whose org, app and stem are `place`, and
        file mode `mode`), or None when the file is not served (`index.skipped` says why)."""
        if mode == _MODE_LINK:
            index.skipped[path] = (*place[:2], _SYMLINK, None)
            return None
        if mode in (_MODE_COMMIT, _MODE_TREE):
            return None
        oid = entry.id
        # The size comes from the object header, so an oversized blob is never loaded.
        return _read_file(
            index,
            path,
            place,
            str(oid),
            lambda: object_size(self.odb, oid),
            lambda: entry.data,
            history,
            texts,
        )

    def full(self, commit: Any, ref: str, reuse: Snapshot | None) -> Snapshot:
        """Index every prompt file of `commit`, reusing the parsed texts of `reuse`."""
        texts: dict[str, PromptText] = {}
        if reuse is not None:
            texts = {record.blob_id: record.text for record in reuse.records()}
        history = History(commit, self.lock)
        index = _Index()
        records: list[PromptRecord] = []
        single = self.layout.single
        read = self.read

        # The walk knows each file's org and app from where it is, so it never splits paths;
        # in a multi-app repository the first two levels must be valid org and app names.
        def walk(tree: Any, prefix: str, org: str, app: str, depth: int) -> None:
            for entry in tree:
                name = entry.name
                if name[0] == ".":
                    continue
                mode = entry.filemode
                if mode == _MODE_TREE:
                    if depth >= 2:
                        walk(entry, f"{prefix}{name}/", org, app, depth)
                    elif is_valid_name(name):
                        if depth == 0:
                            walk(entry, f"{name}/", name, app, 1)
                        else:
                            walk(entry, f"{prefix}{name}/", org, name, 2)
                elif depth >= 2 and name.endswith(".md"):
                    if not prefix and _is_readme(name):
                        continue  # single-app mode: the repository's README
                    path = prefix + name
                    place = (org, app, name[:-3])
                    record = read(index, path, place, entry, mode, history, texts)
                    if record is not None:
                        records.append(record)

        if single is None:
            walk(commit.tree, "", "", "", 0)
        else:
            walk(commit.tree, "", single[0], single[1], 2)
        index.add_all(records)
        return index.snapshot(commit, ref, self.holder(commit))

    def incremental(self, commit: Any, ref: str, base: Snapshot, base_commit: Any) -> Snapshot:
        """Re-index only what changed since `base` (whose commit is a first-parent ancestor
        of `commit`); fall back to a full build otherwise."""
        changed = changes_since(commit, base_commit.id, limit=_INCREMENTAL_LIMIT)
        if changed is None:
            logger.info("commit %s does not follow %s: re-indexing in full", commit.id, base.commit)
            return self.full(commit, ref, base)
        history = History(commit, self.lock, seed=changed, resume_at=base_commit)
        index = _Index(base)
        texts: dict[str, PromptText] = {}
        tree = commit.tree
        for path in sorted(changed):
            place = self.layout.place(path)
            if place is None:
                continue
            previous = index.records.get(path)
            if previous is not None:
                texts[previous.blob_id] = previous.text
            index.remove(path)
            try:
                entry = tree[path]
            except KeyError:
                continue  # deleted
            record = self.read(index, path, place, entry, entry.filemode, history, texts)
            if record is not None:
                index.add(record)
        return index.snapshot(commit, ref, self.holder(commit))


def _check_client_ref(ref: str) -> None:
    """Refuse a client's ref that is not a plain tag, branch or commit id (git's revision
    syntax such as ``a..b`` or ``HEAD~1`` never reaches libgit2).

    Raises:
        RefNotFoundError: the ref is malformed.
    """
    if _CLIENT_REF.fullmatch(ref) is None or ".." in ref or "//" in ref:
        raise RefNotFoundError(ref, "not a tag or a commit id")


class PromptStore:
    """The prompts of a git repository at a ref, kept current by polling.

    Usage::

        store = PromptStore("/srv/prompts")        # indexes HEAD now
        store.start()                              # follow new commits
        record = store.snapshot.find_by_name("myorg", "myapp", "greeting")
        store.stop()

    Args:
        path: the repository (a work tree or a bare repository).
        ref: the branch, tag, commit or ``HEAD`` to serve; followed as it moves.
        org, app: serve a single-app repository as this org and app.
        poll_interval: seconds between checks of the ref.
        snapshot_cache: how many snapshots of other commits `snapshot_at` keeps.
        prepare_in_background: prepare not-yet-requested records between polls, so bad files
            show in the log and first requests are fast.

    Raises:
        StoreError: `path` is not a git repository, or cannot be read.
        RefNotFoundError: `ref` does not name a commit (an empty repository at ``HEAD`` is
            fine: it serves nothing until the first commit).
    """

    def __init__(
        self,
        path: str,
        *,
        ref: str = "HEAD",
        org: str | None = None,
        app: str | None = None,
        poll_interval: float = 0.5,
        snapshot_cache: int = 8,
        prepare_in_background: bool = True,
    ) -> None:
        if (org is None) != (app is None):
            raise ValueError("single-app mode needs both org and app")
        for label, value in (("org", org), ("app", app)):
            if value is not None and not is_valid_name(value):
                raise ValueError(f"{label} {value!r} is not a valid name")
        self.path = path
        self.ref = ref
        self.poll_interval = poll_interval
        self.prepare_in_background = prepare_in_background
        self._lock = threading.RLock()
        try:
            self._repo = pygit2.Repository(path)
        except (pygit2.GitError, KeyError, ValueError) as exc:
            raise StoreError(f"{path} is not a git repository ({exc})") from None
        self._builder = _Builder(self._repo, self._lock, Layout(org, app))
        self._cache: OrderedDict[str, Snapshot] = OrderedDict()
        self._reachability: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._cache_size = snapshot_cache
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_error: str | None = None
        self._reported: set[Problem] = set()
        self._warm: Iterator[PromptRecord] | None = None
        self._warm_snapshot: Snapshot | None = None
        self._listeners: list[Callable[[Snapshot, Snapshot], None]] = []
        with self._lock:
            commit = self._resolve(ref, unborn_ok=True)
            if commit is None:
                self._snapshot = Snapshot.empty(ref)
            else:
                self._snapshot = self._builder.full(commit, ref, None)
        self._log_snapshot(self._snapshot)

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot of the ref's current commit (take it once per request)."""
        return self._snapshot

    def on_swap(self, listener: Callable[[Snapshot, Snapshot], None]) -> None:
        """Call `listener(before, after)` each time a new snapshot is swapped in (on the
        thread that swapped it, holding the store's lock)."""
        self._listeners.append(listener)

    # --- resolving refs --------------------------------------------------------------------

    def _resolve(self, ref: str, *, unborn_ok: bool = False) -> Any:
        repo = self._repo
        try:
            target = repo.revparse_single(ref)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            if unborn_ok and ref == "HEAD" and repo.head_is_unborn:
                return None
            reason = "ambiguous" if "ambiguous" in str(exc) else "no such branch, tag or commit"
            raise RefNotFoundError(ref, reason) from None
        try:
            return target.peel(pygit2.Commit)
        except (pygit2.GitError, ValueError, TypeError):
            raise RefNotFoundError(ref, "does not name a commit") from None

    def refresh(self) -> bool:
        """Check the ref now and swap in a snapshot of its commit if it moved.

        Returns:
            True when a new snapshot was swapped in.

        Raises:
            RefNotFoundError, StoreError, pygit2.GitError: the ref or repository could not
                be read; the current snapshot stays.
        """
        with self._lock:
            current = self._snapshot
            commit = self._resolve(self.ref, unborn_ok=current.commit is None)
            if commit is None or str(commit.id) == current.commit:
                return False
            started = time.perf_counter()
            if current.commit is None:
                snapshot = self._builder.full(commit, self.ref, None)
            else:
                base_commit = self._repo[current.commit]
                snapshot = self._builder.incremental(commit, self.ref, current, base_commit)
            self._snapshot = snapshot
            # Under the lock, so listeners see the swaps in the order they happened.
            for listener in self._listeners:
                try:
                    listener(current, snapshot)
                except Exception:  # a listener's bug must not undo or stop the swap
                    logger.exception("a listener of %s failed on %s", self.path, snapshot.commit)
        logger.debug("indexed %s in %.3f s", snapshot.commit, time.perf_counter() - started)
        self._log_snapshot(snapshot)
        return True

    def snapshot_at(self, ref: str) -> ResolvedRef:
        """The snapshot a client's ``?ref=`` names: the served ref itself (by its name), a
        tag, or a commit id of at least `MIN_SHA_LENGTH` hex digits, whose commit is the
        served commit or one of its ancestors. Never another branch, a stash, a remote or
        a commit the served history does not hold (an unknown and an unreachable commit get
        the same answer).

        Snapshots of other commits are built on demand and a few are kept (LRU).

        Raises:
            RefNotFoundError: the ref is malformed, names no commit, or one that is not
                readable by that rule.
        """
        _check_client_ref(ref)
        with self._lock:
            current = self._snapshot
            if ref in self._served_names():
                return ResolvedRef(current, False)
            commit = self._readable_commit(ref, current.commit)
            sha = str(commit.id)
            if current.commit == sha:
                return ResolvedRef(current, True)
            snapshot = self._cache.get(sha)
            if snapshot is None:
                snapshot = self._builder.full(commit, ref, current)
                self._cache[sha] = snapshot
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(sha)
            return ResolvedRef(snapshot, True)

    def readable_sha(self, ref: str) -> str:
        """The full id of the commit a client's ref names, by the rule of `snapshot_at`
        (the served ref by its name, or a tag or commit id the served history holds),
        without building its snapshot.

        Raises:
            RefNotFoundError: the ref is malformed, names no commit, or one that is not
                readable by that rule.
        """
        _check_client_ref(ref)
        with self._lock:
            current = self._snapshot
            if ref in self._served_names() and current.commit is not None:
                return current.commit
            return str(self._readable_commit(ref, current.commit).id)

    def _served_names(self) -> set[str]:
        """The names a client may give the served ref by: as configured, and the branch
        it resolves to (``main`` and ``refs/heads/main`` when serving ``HEAD`` on main)."""
        names = {self.ref}
        try:
            reference = self._repo.lookup_reference_dwim(self.ref).resolve()
        except (KeyError, ValueError, pygit2.GitError):
            return names
        names.add(reference.name)
        names.add(reference.shorthand)
        return names

    def _readable_commit(self, ref: str, served: str | None) -> Any:
        """The commit of a tag or commit id that the served commit holds in its history."""
        not_readable = (
            f"not a tag or a commit id ({MIN_SHA_LENGTH} to 40 hex digits) that the served "
            f"ref {self.ref} holds in its history"
        )
        repo = self._repo
        target: Any
        try:
            # A name git refuses (``W/``, ``a.lock``...) is no tag: libgit2 says so by raising.
            tag = repo.references.get(f"refs/tags/{ref}")
            if tag is not None:
                target = tag.peel(pygit2.Commit)
            elif _COMMIT_ID.fullmatch(ref):
                target = repo[ref.lower()]
            else:
                raise RefNotFoundError(ref, not_readable)
        except (KeyError, TypeError) as exc:
            raise RefNotFoundError(ref, not_readable) from exc
        except (ValueError, pygit2.GitError) as exc:
            reason = "ambiguous: give more hex digits" if "ambiguous" in str(exc) else not_readable
            raise RefNotFoundError(ref, reason) from None
        try:
            commit = target.peel(pygit2.Commit)
        except (pygit2.GitError, ValueError, TypeError):
            raise RefNotFoundError(ref, "does not name a commit") from None
        if served is None or not self._reachable(served, str(commit.id)):
            raise RefNotFoundError(ref, not_readable)
        return commit

    def _reachable(self, served: str, sha: str) -> bool:
        """Whether commit `sha` is `served` or one of its ancestors (cached per pair:
        libgit2 finds it by a merge-base walk, which a repeated request must not redo)."""
        if sha == served:
            return True
        key = (served, sha)
        known = self._reachability.get(key)
        if known is None:
            known = bool(self._repo.descendant_of(served, sha))
            self._reachability[key] = known
            if len(self._reachability) > _REACHABILITY_CACHE:
                self._reachability.popitem(last=False)
        else:
            self._reachability.move_to_end(key)
        return known

    # --- polling ---------------------------------------------------------------------------

    def start(self) -> None:
        """Poll the ref every `poll_interval` seconds in a daemon thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="promptory-poll", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling; waits at most `timeout` seconds for the thread."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> PromptStore:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _poll(self) -> None:
        failures = 0
        starved = False  # preparing ran out of descriptors, and said so
        while not self._stop.wait(self._backoff(failures)):
            try:
                self.refresh()
            except Exception as exc:  # keep serving the last good snapshot
                failures += 1
                message = _failure(exc)
                if message != self._last_error:
                    logger.error(
                        "cannot read %s at %s: %s; serving the last commit read and retrying",
                        self.path,
                        self.ref,
                        escape_controls(message),
                    )
                    self._last_error = message
            else:
                if self._last_error is not None:
                    logger.info(
                        "reading %s at %s again after %d failed checks",
                        self.path,
                        self.ref,
                        failures,
                    )
                    self._last_error = None
                failures = 0
            if self.prepare_in_background and not failures:
                try:
                    self._prepare_some(min(0.1, self.poll_interval * 0.2))
                    starved = False
                except Exception as exc:  # one bad record must not stop the polling
                    self._warm = None
                    if _out_of_descriptors(exc):
                        failures += 1  # said once, like a failed check; retried with backoff
                        if not starved:
                            starved = True
                            logger.error(
                                "cannot prepare prompts of %s: %s", self.path, _failure(exc)
                            )
                    else:
                        logger.exception("preparing prompts of %s failed", self.path)

    def _backoff(self, failures: int) -> float:
        """Seconds until the next check: the poll interval, doubled per failed check in a
        row up to `_MAX_BACKOFF` (or the interval, if longer)."""
        if not failures:
            return self.poll_interval
        return max(self.poll_interval, min(self.poll_interval * 2.0**failures, _MAX_BACKOFF))

    def _prepare_some(self, budget: float) -> None:
        """Prepare unrequested records of the current snapshot for about `budget` seconds;
        log its problems once all are prepared."""
        snapshot = self._snapshot
        if self._warm_snapshot is not snapshot:
            self._warm_snapshot = snapshot
            self._warm = snapshot.unprepared()
        if self._warm is None:
            return
        deadline = time.monotonic() + budget
        for record in self._warm:
            record.parse()
            if time.monotonic() > deadline or self._stop.is_set():
                return
        self._warm = None
        problems = snapshot.problems()
        self._report(problems)
        # Remember only what is still wrong, so a file broken again is reported again.
        self._reported = set(problems)

    def _log_snapshot(self, snapshot: Snapshot) -> None:
        logger.info(
            "serving %s at %s: %d prompt files",
            self.path,
            snapshot.commit or "(no commits yet)",
            snapshot.file_count,
        )
        self._report(snapshot.skipped_problems())

    def _report(self, problems: list[Problem]) -> None:
        fresh = [problem for problem in problems if problem not in self._reported]
        for problem in fresh:
            # Paths and messages are repository text: a newline must not forge a log line.
            logger.warning(
                "served, with a problem: %s: %s" if problem.served else "not served: %s: %s",
                escape_controls(problem.path),
                escape_controls(problem.message),
            )
        self._reported.update(fresh)
