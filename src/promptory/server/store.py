"""The git-native prompt store: what a commit holds, indexed, and kept in step with a ref.

Rules of this module:

* Only committed content is read, at a ref (default ``HEAD``), never the working tree.
* Layout. In a multi-app repository a prompt is ``<org>/<app>/**/<name>.md``; other files
  (a root ``README.md``, ``org/notes.md``) are not prompts and are ignored. In single-app
  mode (org and app given) every ``**/*.md`` is a prompt of that app. Paths with a part that
  starts with a dot (``.github/``) are ignored in both modes.
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
* Duplicates. Of the valid files sharing an id, or sharing (org, app, name, environment),
  the first by path order is served and each later one is reported as a duplicate and not
  served at all (not even by its own id).
* Lookup by name without an environment gives the most promoted active variant:
  production, else staging, else development. With an environment, exactly that variant,
  if active. Inactive prompts are served by id only.
* All access to the pygit2 repository holds the store's lock.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final

import pygit2

from ..prompt import ENVIRONMENTS
from .files import PromptFileError, PromptText, canonical_id, is_valid_name
from .history import History, change_of, changes_since
from .records import PromptRecord

__all__ = [
    "Layout",
    "PENDING",
    "PROMOTION_ORDER",
    "Pending",
    "Problem",
    "PromptStore",
    "RefNotFoundError",
    "ResolvedRef",
    "Snapshot",
    "StoreError",
]

logger = logging.getLogger("promptory.server")

#: Environments from most to least promoted: the order of by-name lookups.
PROMOTION_ORDER: tuple[str, ...] = tuple(reversed(ENVIRONMENTS))

_MODE_TREE = 0o040000
_MODE_LINK = 0o120000
_MODE_COMMIT = 0o160000

# A ref a client may ask for: branch and tag names and hex ids, none of git's rev syntax
# (`~`, `^`, `@{}`, `:`), which could search history or name a file.
_CLIENT_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]{0,199}")
# How many first parents an incremental re-index follows to find the old commit.
_INCREMENTAL_LIMIT = 256


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
    """A file that is not served, and why."""

    path: str
    message: str


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
        if record.valid:
            return record
    return None


def _finished(result: PromptRecord | Pending | None) -> PromptRecord | None:
    assert not isinstance(result, Pending)  # lookups that may parse never answer PENDING
    return result


_NameKey = tuple[str, str, str, str]
# A file skipped while indexing: its org, its app, and why.
_Skipped = tuple[str, str, str]


class Snapshot:
    """The prompts of one commit, indexed. Immutable: build a new one for a new commit.

    Attributes:
        commit: the commit's full hex id, or None for a repository without commits.
        ref: the ref the snapshot was taken from.
        committed_at: the commit's time (ISO 8601 UTC), or None.
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
    ) -> None:
        self.commit = commit
        self.ref = ref
        self.committed_at = committed_at
        self._records = records
        self._skipped = skipped
        self._by_id = by_id
        self._by_key = by_key
        self._apps = apps

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
        by_id = _winner(self._by_id[record.id], work)
        if by_id is not record:
            return by_id if by_id is PENDING else None
        return record

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
            candidates = self._by_id.get(canonical) if canonical else None
            if candidates is None:
                return None
        return self._pick(candidates, work, active_only=False)

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
            Problem(path, message)
            for path, (org, app, message) in self._skipped.items()
            if allow is None or allow(org, app)
        ]
        for record in self._records.values():
            if allow is not None and not allow(record.org, record.app):
                continue
            try:
                record.served()
            except PromptFileError as exc:
                problems.append(Problem(record.path, exc.message))
                continue
            if self._served(record, True) is record:
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
                by_id = _winner(self._by_id[record.id], True)
                assert isinstance(by_id, PromptRecord)
                message = f"duplicate id {record.id}: {by_id.path} is served instead"
            problems.append(Problem(record.path, message))
        problems.sort(key=attrgetter("path"))
        return problems

    def skipped_problems(self) -> list[Problem]:
        """The files skipped while indexing (unreadable), without parsing any more."""
        problems = (Problem(path, skipped[2]) for path, skipped in self._skipped.items())
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
        else:
            self.records = dict(base._records)
            self.skipped = dict(base._skipped)
            self.by_id = dict(base._by_id)
            self.by_key = dict(base._by_key)
            self.apps = dict(base._apps)

    def add(self, record: PromptRecord) -> None:
        self.records[record.path] = record
        key = (record.org, record.app, record.name, record.environment)
        present = self.by_id.get(record.id)
        self.by_id[record.id] = _by_path((*present, record)) if present else (record,)
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

    def snapshot(self, commit: Any, ref: str) -> Snapshot:
        change = change_of(commit)
        return Snapshot(
            commit=change.sha,
            ref=ref,
            committed_at=change.time,
            records=self.records,
            skipped=self.skipped,
            by_id=self.by_id,
            by_key=self.by_key,
            apps=self.apps,
        )


class _Builder:
    """Builds snapshots from commits. Callers hold the store's lock."""

    def __init__(self, lock: threading.RLock, layout: Layout) -> None:
        self.lock = lock
        self.layout = layout

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
            index.skipped[path] = (*place[:2], "symbolic links are not served; commit the file")
            return None
        if mode in (_MODE_COMMIT, _MODE_TREE):
            return None
        org, app, stem = place
        blob_id = str(entry.id)
        text = texts.get(blob_id)
        if text is None:
            # Reading `entry.size` first would load the blob twice; PromptText refuses
            # oversized data before decoding it.
            try:
                text = PromptText(entry.data)
            except PromptFileError as exc:
                index.skipped[path] = (org, app, exc.message)
                return None
            texts[blob_id] = text
        if text.keys.name is None and not is_valid_name(stem):
            index.skipped[path] = (
                org,
                app,
                f"file name {stem!r} is not a valid prompt name; rename the file or set "
                "'name' in the front matter",
            )
            return None
        return PromptRecord(
            path=path, org=org, app=app, stem=stem, text=text, blob_id=blob_id, history=history
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
        return index.snapshot(commit, ref)

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
        return index.snapshot(commit, ref)


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
        self._builder = _Builder(self._lock, Layout(org, app))
        try:
            self._repo = pygit2.Repository(path)
        except (pygit2.GitError, KeyError, ValueError) as exc:
            raise StoreError(f"{path} is not a git repository ({exc})") from None
        self._cache: OrderedDict[str, Snapshot] = OrderedDict()
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
        """The snapshot of the commit a client's ref (commit id, tag or branch) names.

        Snapshots of other commits are built on demand and a few are kept (LRU).

        Raises:
            RefNotFoundError: the ref is malformed or names no commit.
        """
        if _CLIENT_REF.fullmatch(ref) is None or ".." in ref or "//" in ref:
            raise RefNotFoundError(ref, "not a branch, tag or commit id")
        with self._lock:
            try:
                target, reference = self._repo.revparse_ext(ref)
            except (KeyError, ValueError, pygit2.GitError) as exc:
                reason = "ambiguous" if "ambiguous" in str(exc) else "no such branch, tag or commit"
                raise RefNotFoundError(ref, reason) from None
            try:
                commit = target.peel(pygit2.Commit)
            except (pygit2.GitError, ValueError, TypeError):
                raise RefNotFoundError(ref, "does not name a commit") from None
            pinned = reference is None or reference.name.startswith("refs/tags/")
            sha = str(commit.id)
            current = self._snapshot
            if current.commit == sha:
                return ResolvedRef(current, pinned)
            snapshot = self._cache.get(sha)
            if snapshot is None:
                snapshot = self._builder.full(commit, ref, current)
                self._cache[sha] = snapshot
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(sha)
            return ResolvedRef(snapshot, pinned)

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
        while not self._stop.wait(self.poll_interval):
            try:
                self.refresh()
            except Exception as exc:  # keep serving the last good snapshot
                message = f"{type(exc).__name__}: {exc}"
                if message != self._last_error:
                    logger.error("cannot read %s at %s: %s", self.path, self.ref, message)
                    self._last_error = message
            else:
                if self._last_error is not None:
                    logger.info("reading %s at %s again", self.path, self.ref)
                    self._last_error = None
            if self.prepare_in_background:
                try:
                    self._prepare_some(min(0.1, self.poll_interval * 0.2))
                except Exception:  # one bad record must not stop the polling
                    logger.exception("preparing prompts of %s failed", self.path)
                    self._warm = None

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
            record.valid  # noqa: B018 - preparing is the point
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
            logger.warning("not served: %s: %s", problem.path, problem.message)
        self._reported.update(fresh)
