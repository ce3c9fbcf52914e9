"""Following a git remote: a bare mirror in a data directory, fetched on an interval and on
demand, whose new commits the store indexes aside and swaps in whole.

Rules of this module:

* The mirror is a bare repository that only this server writes. Its ``HEAD`` points at
  ``refs/heads/<branch>``, which the store serves; ``refs/heads/*`` and ``refs/tags/*`` are
  fetched (forced, pruned) so ``?ref=`` can name any branch or tag of the remote.
* The remote is never written into the mirror's config: every fetch uses an anonymous
  remote, so a token in the URL never lands on disk. URLs are shown only through `redact`,
  which drops the user information and any ``token=``-like query value.
* Credentials come from the URL (``https://user:token@host/...``), from
  ``PROMPTORY_GIT_USERNAME``/``PROMPTORY_GIT_PASSWORD``, or, for ssh, from
  ``PROMPTORY_GIT_SSH_KEY`` (a private key file) or the ssh agent.
* One thread fetches. A trigger (a webhook) wakes it at once; a burst of triggers (each
  within `COALESCE_WINDOW` of the last, for at most `COALESCE_LIMIT`) makes one fetch, and
  triggers arriving while a fetch runs make one more, not one each.
* A fetch is bounded: connecting by `CONNECT_TIMEOUT`, and every read or write of the
  remote by `FETCH_TIMEOUT` (libgit2's process-wide settings, for http(s) and ssh), so a
  remote that accepts and never answers fails the fetch instead of wedging the thread.
* A fetch or an index that fails leaves the last good commit served; the failure is kept in
  `FollowStatus` (for ``/api/v1/status``, ``/ready`` and the metrics) and logged once until
  it changes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

import pygit2

__all__ = [
    "COALESCE_LIMIT",
    "COALESCE_WINDOW",
    "CONNECT_TIMEOUT",
    "FETCH_TIMEOUT",
    "FollowStatus",
    "Follower",
    "Mirror",
    "MirrorError",
    "default_data_dir",
    "redact",
]

logger = logging.getLogger("promptory.server")

#: A trigger's fetch starts once this many seconds pass without another trigger...
COALESCE_WINDOW = 0.25
#: ...or this many seconds after the first, during a steady stream of triggers.
COALESCE_LIMIT = 1.0

#: Seconds a fetch waits to connect to the remote.
CONNECT_TIMEOUT = 15.0
#: Seconds a fetch waits on one read or write of the remote (a silent remote fails then).
FETCH_TIMEOUT = 60.0

_SECRET_QUERY = re.compile(r"(token|key|secret|password|pass|auth|sig)", re.IGNORECASE)
_USERNAME_ENV = "PROMPTORY_GIT_USERNAME"
_PASSWORD_ENV = "PROMPTORY_GIT_PASSWORD"
_SSH_KEY_ENV = "PROMPTORY_GIT_SSH_KEY"


class MirrorError(Exception):
    """The remote cannot be fetched, or the mirror cannot be read."""


def redact(url: str) -> str:
    """`url` safe to log or show: no user information, no secret-looking query values."""
    if "://" not in url:
        # scp-like ssh (git@host:path) names only a user; a local path has nothing to hide.
        return url
    try:
        parts = urlsplit(url)
        # A password holding an unescaped '#', '?' or '/' is read as part of the port: the
        # error would quote it.
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.hostname or ""
    if port is not None:
        netloc = f"{netloc}:{port}"
    if parts.username or parts.password:
        netloc = f"***@{netloc}"
    query = parts.query
    if query:
        query = urlencode(
            [
                (name, "***" if _SECRET_QUERY.search(name) else value)
                for name, value in parse_qsl(query, keep_blank_values=True)
            ]
        )
    return SplitResult(parts.scheme, netloc, parts.path, query, "").geturl()


def default_data_dir(url: str) -> Path:
    """Where the mirror of `url` lives unless ``--data-dir`` says otherwise:
    ``$XDG_CACHE_HOME/promptory/mirrors/<16 hex of the URL's SHA-256>``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return Path(base) / "promptory" / "mirrors" / digest


def _bound_network(timeout: float) -> None:
    """Bound libgit2's connects and socket reads and writes (process-wide settings: every
    mirror of a process uses the same `timeout` in practice)."""
    milliseconds = max(1, int(timeout * 1000))
    pygit2.settings.server_connect_timeout = min(milliseconds, int(CONNECT_TIMEOUT * 1000))
    pygit2.settings.server_timeout = milliseconds


def _local_path(url: str) -> bool:
    return "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url)


class _Credentials(pygit2.RemoteCallbacks):
    """Answers libgit2's credential requests from the URL, the environment or the agent."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._tries = 0
        parts = urlsplit(url) if "://" in url else None
        self._user = (parts.username if parts else None) or os.environ.get(_USERNAME_ENV)
        self._password = (parts.password if parts else None) or os.environ.get(_PASSWORD_ENV)

    def credentials(self, url: str, username_from_url: str | None, allowed_types: Any) -> Any:
        # libgit2 asks again after a refusal; a second ask means the answer was wrong.
        self._tries += 1
        if self._tries > 2:
            raise MirrorError("the remote refused the credentials given")
        user = username_from_url or self._user or "git"
        if allowed_types & pygit2.enums.CredentialType.USERPASS_PLAINTEXT and self._password:
            return pygit2.UserPass(self._user or user, self._password)
        if allowed_types & pygit2.enums.CredentialType.SSH_KEY:
            key = os.environ.get(_SSH_KEY_ENV)
            if key:
                return pygit2.Keypair(user, key + ".pub", key, "")
            return pygit2.KeypairFromAgent(user)
        if allowed_types & pygit2.enums.CredentialType.USERNAME:
            return pygit2.Username(user)
        raise MirrorError(
            f"the remote wants credentials: set {_USERNAME_ENV}/{_PASSWORD_ENV} or {_SSH_KEY_ENV}"
        )


class Mirror:
    """A bare mirror of one remote branch (and the remote's other branches and tags).

    Args:
        url: the remote: https, ssh, ``file://`` or a local path.
        path: the data directory holding the bare repository (created if missing).
        branch: the branch to serve; None takes the remote's default branch at the first
            fetch.
        timeout: seconds a fetch waits on one read or write of the remote (and at most
            that, or `CONNECT_TIMEOUT`, to connect).
    """

    def __init__(
        self,
        url: str,
        path: str | os.PathLike[str],
        branch: str | None = None,
        *,
        timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self.timeout = timeout
        self.url = os.path.abspath(url) if _local_path(url) else url
        self.shown_url = redact(self.url)
        self.path = os.fspath(path)
        self.branch = branch
        try:
            if os.path.exists(os.path.join(self.path, "HEAD")):
                self.repo = pygit2.Repository(self.path)
            elif os.path.isdir(self.path) and os.listdir(self.path):
                raise MirrorError(
                    f"{self.path} is neither empty nor a mirror: give --data-dir an empty or "
                    "new folder"
                )
            else:
                os.makedirs(self.path, exist_ok=True)
                self.repo = pygit2.init_repository(self.path, bare=True)
        except (pygit2.GitError, OSError) as exc:
            raise MirrorError(f"cannot open the mirror in {self.path}: {exc}") from None
        if branch is not None:
            self._point_head(branch)
        elif not self.repo.head_is_unborn:
            self.branch = self.repo.head.shorthand

    def _point_head(self, branch: str) -> None:
        self.repo.references.create("HEAD", f"refs/heads/{branch}", force=True)

    def fetch(self) -> str | None:
        """Fetch the remote; return the served branch's commit id (None if it has none).

        Raises:
            MirrorError: the remote cannot be reached or read; the message names the URL
                redacted.
        """
        _bound_network(self.timeout)
        remote = self.repo.remotes.create_anonymous(self.url)
        try:
            if self.branch is None:
                self.branch = self._default_branch(remote)
                self._point_head(self.branch)
            remote.fetch(
                ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
                callbacks=_Credentials(self.url),
                prune=pygit2.enums.FetchPrune.PRUNE,
            )
        except MirrorError:
            raise
        except (pygit2.GitError, OSError, ValueError, KeyError) as exc:
            message = str(exc).replace(self.url, self.shown_url)
            raise MirrorError(f"cannot fetch {self.shown_url}: {message}") from None
        try:
            return str(self.repo.references[f"refs/heads/{self.branch}"].target)
        except KeyError:
            return None

    def _default_branch(self, remote: Any) -> str:
        heads = remote.list_heads(callbacks=_Credentials(self.url))
        for head in heads:
            if head.name == "HEAD" and head.symref_target:
                return str(head.symref_target).removeprefix("refs/heads/")
        names = {head.name for head in heads}
        for candidate in ("main", "master"):
            if f"refs/heads/{candidate}" in names:
                return candidate
        raise MirrorError(f"{self.shown_url} names no default branch: give --branch")


@dataclass
class FollowStatus:
    """What following the remote has done so far (read without a lock: each field is set
    in one assignment).

    Attributes:
        remote: the remote, redacted.
        branch: the branch served.
        triggers: fetches asked for by webhooks.
        fetches: fetches tried; failures: of those, how many failed.
        last_success: wall time (epoch seconds) of the last successful fetch and index.
        last_error: why the last fetch or index failed, None once one succeeds again.
        remote_commit: the branch's commit at the last successful fetch.
        fetch_seconds, index_seconds: how long the last fetch and index took.
    """

    remote: str
    branch: str | None
    triggers: int = 0
    fetches: int = 0
    failures: int = 0
    last_success: float | None = None
    last_error: str | None = None
    remote_commit: str | None = None
    fetch_seconds: float | None = None
    index_seconds: float | None = None

    def as_json(self, served: str | None, now: float) -> dict[str, Any]:
        """The status as ``/ready`` and ``/api/v1/status`` show it."""
        since = None if self.last_success is None else round(now - self.last_success, 3)
        return {
            "remote": self.remote,
            "branch": self.branch,
            "last_fetch_at": _iso(self.last_success),
            "seconds_since_fetch": since,
            # How far behind the remote the answers may be: 0 while the served commit is the
            # remote's, else the time since the last fetch that saw it.
            "lag_seconds": since,
            "in_sync": served is not None and served == self.remote_commit,
            "remote_commit": self.remote_commit,
            "webhooks": self.triggers,
            "fetches": self.fetches,
            "fetch_failures": self.failures,
            "last_error": self.last_error,
        }


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class Follower:
    """Fetches `mirror` every `interval` seconds or when triggered, then calls `refresh`
    (the store's: index the new commit aside and swap it in).

    Args:
        mirror: the mirror to fetch into.
        refresh: indexes the mirror's new commit; raises when it cannot.
        interval: seconds between fetches.
        observe: called after each attempt with (fetch seconds, index seconds or None, ok).
    """

    def __init__(
        self,
        mirror: Mirror,
        refresh: Callable[[], object],
        interval: float = 30.0,
        observe: Callable[[float, float | None, bool], None] | None = None,
    ) -> None:
        self.mirror = mirror
        self.refresh = refresh
        self.interval = interval
        self.observe = observe
        self.status = FollowStatus(remote=mirror.shown_url, branch=mirror.branch)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged_error: str | None = None

    def trigger(self) -> None:
        """Ask for a fetch now (a push webhook). Never blocks; bursts coalesce."""
        self.status.triggers += 1
        self._wake.set()

    def start(self) -> None:
        """Fetch in a daemon thread: at once, then every `interval` and on `trigger`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="promptory-fetch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop fetching; waits at most `timeout` seconds for a fetch under way."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        self._wake.set()
        thread.join(timeout)
        self._thread = None

    def _loop(self) -> None:
        self.run_once()
        while not self._stop.is_set():
            triggered = self._wake.wait(self.interval)
            if self._stop.is_set():
                return
            if triggered:
                self._settle()
            self._wake.clear()
            self.run_once()

    def _settle(self) -> None:
        """Let the rest of a burst arrive (until `COALESCE_WINDOW` passes without a
        trigger, `COALESCE_LIMIT` at most), so one fetch serves all of it. A trigger
        after that asks for another fetch: its push may come after this fetch has read
        the remote's refs."""
        deadline = time.monotonic() + COALESCE_LIMIT
        while time.monotonic() < deadline and not self._stop.is_set():
            self._wake.clear()
            if not self._wake.wait(COALESCE_WINDOW):
                return

    def run_once(self) -> bool:
        """Fetch and index once; True when both worked. Never raises."""
        status = self.status
        status.fetches += 1
        started = time.perf_counter()
        index_seconds = None
        try:
            remote_commit = self.mirror.fetch()
            status.branch = self.mirror.branch
            fetched = time.perf_counter()
            status.fetch_seconds = fetched - started
            self.refresh()
            index_seconds = time.perf_counter() - fetched
            status.index_seconds = index_seconds
        except Exception as exc:  # anything: the last good commit keeps being served
            status.failures += 1
            message = str(exc) if isinstance(exc, MirrorError) else f"{type(exc).__name__}: {exc}"
            message = message.replace(self.mirror.url, self.mirror.shown_url)
            status.last_error = message
            if message != self._logged_error:
                logger.error("following %s: %s", self.mirror.shown_url, message)
                self._logged_error = message
            self._observe(time.perf_counter() - started, index_seconds, False)
            return False
        status.remote_commit = remote_commit
        status.last_success = time.time()
        if status.last_error is not None:
            logger.info("following %s again", self.mirror.shown_url)
        status.last_error = None
        self._logged_error = None
        self._observe(status.fetch_seconds or 0.0, index_seconds, True)
        return True

    def _observe(self, fetch_seconds: float, index_seconds: float | None, ok: bool) -> None:
        if self.observe is not None:
            try:
                self.observe(fetch_seconds, index_seconds, ok)
            except Exception:  # a metrics bug must not stop the fetching
                logger.exception("recording a fetch failed")
