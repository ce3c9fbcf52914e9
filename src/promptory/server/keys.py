"""API keys: made here, stored as SHA-256 digests, verified in microseconds.

Rules of this module:

* A key is ``pm_live_`` or ``pm_test_`` followed by 32 random bytes (``secrets.token_urlsafe``).
  It is shown once, when made; only its SHA-256 digest is kept.
* A fast hash is right for keys (unlike passwords): they are long random tokens, so there is
  nothing to guess, and verifying costs one SHA-256 and one dict lookup, not a tenth of a
  second of bcrypt per request.
* The digest is found by dict lookup and then compared with `hmac.compare_digest`; the raw key
  is never compared, stored, logged or put in an error message.
* The keys file is JSON, ``{"keys": [{"id", "sha256", "scope", "created_at", "label",
  "prefix", "admin"}]}``, written atomically with mode 0600 in a directory of mode 0700, at
  most `MAX_KEYS_FILE_BYTES`. It belongs outside the prompt repository. Changes to it
  (create, revoke, rotate) take an exclusive lock on ``<file>.lock`` around the
  read-modify-write, so two writers never lose each other's key.
* ``PROMPTORY_API_KEYS`` holds raw keys, comma-separated; they are unscoped and not admin.
  Each must look like a key (`KEY_PATTERN`): anything else is refused, naming its position,
  never its text.
* A scope is ``None`` (every org and app), ``"org"`` or ``"org/app"``. An admin key may also
  manage the keys within its scope (the web UI's keys page).
* Hot reload. A `KeyRing` made `from_sources` with a keys file checks that file at most once
  per `check_interval` (default 1 s), on the request path: one ``os.stat`` and a comparison
  of (mtime, size, inode). Only when those changed is the file read again; a file that
  cannot be read keeps the keys last read (and logs once), a file that is gone holds no
  keys. So a key made or revoked by another process works, or stops working, within
  `check_interval` seconds, for the price of one ``stat`` a second.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .._protocol import API_KEY_PREFIXES, LIVE_KEY_PREFIX, TEST_KEY_PREFIX
from .files import is_valid_name

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: writers are not serialized there
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_KEYS_FILE",
    "KEYS_ENV_VAR",
    "KEY_PATTERN",
    "KeyRecord",
    "KeyRing",
    "KeySourceError",
    "KeysEnvError",
    "KeysFileError",
    "MAX_KEYS_FILE_BYTES",
    "add_key",
    "find_key",
    "generate_key",
    "hash_key",
    "load_keys_file",
    "parse_scope",
    "revoke_key",
    "rotate_key",
]

logger = logging.getLogger("promptory.server")

#: Where `promptory keys create` and `promptory serve` keep keys unless told otherwise.
DEFAULT_KEYS_FILE = Path("~/.config/promptory/keys.json")
#: The environment variable that may hold raw keys, comma-separated.
KEYS_ENV_VAR = "PROMPTORY_API_KEYS"

#: What a raw key looks like: a prefix, then at least 32 URL-safe characters.
KEY_PATTERN = re.compile(
    "(?:" + "|".join(map(re.escape, API_KEY_PREFIXES)) + ")" + r"[A-Za-z0-9_-]{32,200}"
)

#: The largest keys file read (about 4,000 keys).
MAX_KEYS_FILE_BYTES = 1024 * 1024

# Longer presented keys are refused without hashing: real ones are 51 characters.
_MAX_KEY_LENGTH = 256


class KeySourceError(Exception):
    """Keys that cannot be loaded: a bad keys file or a bad ``PROMPTORY_API_KEYS``."""


class KeysFileError(KeySourceError):
    """A keys file that cannot be read or written; the message names the file."""


class KeysEnvError(KeySourceError):
    """A ``PROMPTORY_API_KEYS`` entry that is not a key; the message names its position."""


def generate_key(test: bool = False) -> str:
    """A new random API key: ``pm_live_...`` (or ``pm_test_...`` when `test`)."""
    return (TEST_KEY_PREFIX if test else LIVE_KEY_PREFIX) + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The SHA-256 hex digest a key is stored and looked up by."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_scope(scope: str | None) -> tuple[str | None, str | None]:
    """(org, app) of a scope string: ``None``, ``"org"`` or ``"org/app"``.

    Raises:
        ValueError: the scope is not one of those forms, or a part is not a valid name.
    """
    if scope is None:
        return None, None
    parts = scope.split("/")
    if len(parts) > 2 or not all(is_valid_name(part) for part in parts):
        raise ValueError(f"scope {scope!r} must be ORG or ORG/APP (letters, digits, '_.-')")
    return parts[0], parts[1] if len(parts) == 2 else None


@dataclass(frozen=True)
class KeyRecord:
    """What is kept of one key.

    Attributes:
        id: the first 12 hex digits of the digest: names the key in logs, in the file and in
            ``promptory keys list`` (its fingerprint).
        sha256: the key's SHA-256 hex digest.
        scope: None (every org and app), ``"org"`` or ``"org/app"``.
        created_at: when the key was made (ISO 8601 UTC), if known.
        label: a note saying what the key is for, if any.
        prefix: ``"pm_live_"`` or ``"pm_test_"``, if known (not secret: every key has one).
        admin: whether the key may also manage keys within its scope.
        source: ``"file"`` for a key of the keys file, ``"env"`` for one of
            ``PROMPTORY_API_KEYS`` (which cannot be revoked from here); not stored.
    """

    id: str
    sha256: str
    scope: str | None = None
    created_at: str | None = None
    label: str | None = None
    prefix: str | None = None
    admin: bool = False
    source: str = field(default="file", compare=False)
    scope_org: str | None = field(init=False, repr=False, compare=False, default=None)
    """The org of the scope, or None when unscoped."""
    scope_app: str | None = field(init=False, repr=False, compare=False, default=None)
    """The app of the scope, or None when the scope is unscoped or a whole org."""

    def __post_init__(self) -> None:
        org, app = parse_scope(self.scope)
        object.__setattr__(self, "scope_org", org)
        object.__setattr__(self, "scope_app", app)

    @classmethod
    def for_key(
        cls,
        key: str,
        *,
        scope: str | None = None,
        label: str | None = None,
        admin: bool = False,
    ) -> KeyRecord:
        """The record of a raw key, dated now."""
        digest = hash_key(key)
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        prefix = next((p for p in API_KEY_PREFIXES if key.startswith(p)), None)
        return cls(
            id=digest[:12],
            sha256=digest,
            scope=scope,
            created_at=now,
            label=label,
            prefix=prefix,
            admin=admin,
        )

    def allows(self, org: str, app: str) -> bool:
        """Whether this key may read prompts of `org`/`app`."""
        scope_org = self.scope_org
        if scope_org is None:
            return True
        return scope_org == org and (self.scope_app is None or self.scope_app == app)

    def covers(self, scope: str | None) -> bool:
        """Whether `scope` lies within this key's scope (what an admin key may manage)."""
        org, app = parse_scope(scope)
        if self.scope_org is None:
            return True
        if org != self.scope_org:
            return False
        return self.scope_app is None or app == self.scope_app

    @property
    def unscoped(self) -> bool:
        """True when the key may read every org and app."""
        return self.scope is None

    def to_json(self) -> dict[str, str | bool | None]:
        """The record as the keys file holds it."""
        return {
            "id": self.id,
            "sha256": self.sha256,
            "scope": self.scope,
            "created_at": self.created_at,
            "label": self.label,
            "prefix": self.prefix,
            "admin": self.admin,
        }


_Stamp = tuple[int, int, int]


class KeyRing:
    """The keys a server accepts.

    Args:
        records: the keys, by their records (from a keys file or `KeyRecord.for_key`).
        keys_file: the keys file the records came from, if any: it is then watched (see the
            module's rules) and `create`, `revoke` and `rotate` change it.
        extra: keys that do not come from the file (``PROMPTORY_API_KEYS``); kept across
            reloads.
        check_interval: seconds between two checks of the keys file.
    """

    def __init__(
        self,
        records: Iterable[KeyRecord] = (),
        *,
        keys_file: str | os.PathLike[str] | None = None,
        extra: Iterable[KeyRecord] = (),
        check_interval: float = 1.0,
    ) -> None:
        self.keys_file = Path(keys_file).expanduser() if keys_file is not None else None
        self.check_interval = check_interval
        self._extra = tuple(extra)
        self._lock = threading.Lock()
        self._stamp: _Stamp | None = _stamp(self.keys_file) if self.keys_file else None
        self._next_check = time.monotonic() + check_interval
        self._failed: _Stamp | None = None
        self._by_digest = self._index(records)

    def _index(self, records: Iterable[KeyRecord]) -> dict[bytes, KeyRecord]:
        by_digest: dict[bytes, KeyRecord] = {}
        for record in (*records, *self._extra):
            by_digest[bytes.fromhex(record.sha256)] = record
        return by_digest

    @classmethod
    def from_sources(
        cls,
        *,
        keys_file: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        check_interval: float = 1.0,
    ) -> KeyRing:
        """Keys from a keys file (if given and present; watched for changes) and from
        ``PROMPTORY_API_KEYS``.

        Raises:
            KeysFileError: the keys file exists but cannot be read.
            KeysEnvError: an entry of ``PROMPTORY_API_KEYS`` is not a key.
        """
        records = list(load_keys_file(keys_file)) if keys_file is not None else []
        raw = (os.environ if environ is None else environ).get(KEYS_ENV_VAR, "")
        entries = [entry.strip() for entry in raw.split(",")]
        extra: list[KeyRecord] = []
        for position, key in enumerate(entries, start=1):
            if not key:
                continue
            if KEY_PATTERN.fullmatch(key) is None:
                raise KeysEnvError(
                    f"{KEYS_ENV_VAR}: entry {position} of {len(entries)} is not an API key "
                    f"({' or '.join(API_KEY_PREFIXES)} and at least 32 characters of letters, "
                    "digits, '_' and '-'); make one with: promptory keys create"
                )
            extra.append(replace(KeyRecord.for_key(key), created_at=None, source="env"))
        return cls(records, keys_file=keys_file, extra=extra, check_interval=check_interval)

    def __len__(self) -> int:
        return len(self._by_digest)

    def __repr__(self) -> str:
        return f"<KeyRing of {len(self)} keys>"

    def records(self) -> list[KeyRecord]:
        """Every key accepted now, oldest first (keys of the environment last)."""
        self._check()
        return list(self._by_digest.values())

    def verify(self, presented: str) -> KeyRecord | None:
        """The record of a presented key, or None when it is not one of ours."""
        self._check_if_due()
        if not presented or len(presented) > _MAX_KEY_LENGTH:
            return None
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        record = self._by_digest.get(digest)
        if record is None:
            return None
        # The lookup found the digest already; comparing again in constant time keeps the
        # decision itself free of timing differences.
        if not hmac.compare_digest(digest, bytes.fromhex(record.sha256)):
            return None
        return record

    def by_digest(self, sha256: str) -> KeyRecord | None:
        """The record of a key still accepted, by its digest (a session's key)."""
        self._check_if_due()
        try:
            return self._by_digest.get(bytes.fromhex(sha256))
        except ValueError:
            return None

    # --- following the keys file ---------------------------------------------------------

    def _check_if_due(self) -> None:
        """Re-read the keys file if it is followed and `check_interval` has passed."""
        if self.keys_file is not None and time.monotonic() >= self._next_check:
            self._check()

    def _check(self, force: bool = False) -> None:
        """Re-read the keys file if its stamp changed (or `force`)."""
        path = self.keys_file
        if path is None:
            return
        with self._lock:
            self._next_check = time.monotonic() + self.check_interval
            stamp = _stamp(path)
            if not force and stamp == self._stamp:
                return
            try:
                records = load_keys_file(path)
            except KeysFileError as exc:
                if stamp != self._failed:
                    logger.error("keeping the keys read before: %s", exc)
                    self._failed = stamp
                return
            if stamp is None and self._stamp is not None:
                logger.warning("keys file %s is gone: only keys of the environment remain", path)
            self._by_digest = self._index(records)
            self._stamp = stamp
            self._failed = None
            logger.info("keys file %s read again: %d keys", path, len(records))

    def reload(self) -> None:
        """Read the keys file again now, whether or not it looks changed."""
        self._check(force=True)

    # --- changing the keys file ----------------------------------------------------------

    def _file(self) -> Path:
        if self.keys_file is None:
            raise KeysFileError(
                f"this server has no keys file (keys come from ${KEYS_ENV_VAR} only): "
                "start it with --keys-file to manage keys"
            )
        return self.keys_file

    def create(
        self,
        *,
        scope: str | None = None,
        test: bool = False,
        label: str | None = None,
        admin: bool = False,
    ) -> tuple[str, KeyRecord]:
        """Make a key, add it to the keys file and accept it at once; see `add_key`."""
        created = add_key(self._file(), scope=scope, test=test, label=label, admin=admin)
        self.reload()
        return created

    def revoke(self, key_id: str) -> KeyRecord:
        """Remove a key from the keys file and refuse it at once; see `revoke_key`."""
        for record in self._extra:
            if record.id == key_id:
                raise KeysFileError(
                    f"key {key_id} comes from ${KEYS_ENV_VAR}; remove it there and restart"
                )
        removed = revoke_key(self._file(), key_id)
        self.reload()
        return removed


def _stamp(path: Path) -> _Stamp | None:
    """What tells a changed file: mtime, size and inode (a replaced file is a new inode)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size, info.st_ino


def load_keys_file(path: str | os.PathLike[str]) -> list[KeyRecord]:
    """The key records of a keys file; none when the file does not exist.

    Raises:
        KeysFileError: the file is not a valid keys file, or is over `MAX_KEYS_FILE_BYTES`;
            the message names it.
    """
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_KEYS_FILE_BYTES + 1)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeysFileError(f"cannot read keys file {path}: {exc.strerror}") from None
    if len(data) > MAX_KEYS_FILE_BYTES:
        raise KeysFileError(
            f"keys file {path} is over {MAX_KEYS_FILE_BYTES:,} bytes; revoke unused keys"
        )
    try:
        document = json.loads(data)
        entries = document["keys"]
        if not isinstance(entries, list):
            raise TypeError("'keys' is not a list")
        records = []
        for entry in entries:
            digest = entry["sha256"]
            if not isinstance(digest, str) or len(digest) != 64:
                raise ValueError("a 'sha256' is not a SHA-256 hex digest")
            bytes.fromhex(digest)
            admin = entry.get("admin", False)
            if not isinstance(admin, bool):
                raise TypeError("an 'admin' is not true or false")
            prefix = entry.get("prefix")
            records.append(
                KeyRecord(
                    id=entry.get("id") or digest[:12],
                    sha256=digest,
                    scope=entry.get("scope"),
                    created_at=entry.get("created_at"),
                    label=entry.get("label"),
                    prefix=prefix if prefix in API_KEY_PREFIXES else None,
                    admin=admin,
                )
            )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeysFileError(f"keys file {path} is not valid: {exc}") from None
    return records


@contextlib.contextmanager
def _changing(path: Path) -> Iterator[list[KeyRecord]]:
    """The records of the keys file, under an exclusive lock; written back on exit."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise KeysFileError(f"cannot lock keys file {path}: {exc.strerror or exc}") from None
    try:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        records = load_keys_file(path)
        yield records
        _write_private(path, {"keys": [r.to_json() for r in records]})
    finally:
        os.close(lock)  # closing releases the lock


def find_key(records: Iterable[KeyRecord], key_id: str) -> KeyRecord:
    """The record named by `key_id`: its id, or a unique start of its digest (6+ hex).

    Raises:
        KeysFileError: no key, or more than one, matches.
    """
    wanted = key_id.strip().lower()
    if len(wanted) < 6:
        raise KeysFileError(f"key id {key_id!r} is too short: give at least 6 hex digits")
    found = [r for r in records if r.id == wanted or r.sha256.startswith(wanted)]
    if not found:
        raise KeysFileError(f"no key {key_id!r} in the keys file (see: promptory keys list)")
    if len(found) > 1:
        raise KeysFileError(f"key id {key_id!r} matches {len(found)} keys; give more digits")
    return found[0]


def add_key(
    path: str | os.PathLike[str],
    *,
    scope: str | None = None,
    test: bool = False,
    label: str | None = None,
    admin: bool = False,
) -> tuple[str, KeyRecord]:
    """Make a key, add its record to the keys file (creating it) and return both.

    The raw key is returned once and never written anywhere.

    Raises:
        ValueError: a bad scope.
        KeysFileError: the file cannot be read or written.
    """
    parse_scope(scope)
    with _changing(Path(path).expanduser()) as records:
        key = generate_key(test)
        record = KeyRecord.for_key(key, scope=scope, label=label, admin=admin)
        records.append(record)
    return key, record


def revoke_key(path: str | os.PathLike[str], key_id: str) -> KeyRecord:
    """Remove the key `key_id` (see `find_key`) from the keys file; returns its record.

    Raises:
        KeysFileError: no such key, or the file cannot be read or written.
    """
    with _changing(Path(path).expanduser()) as records:
        record = find_key(records, key_id)
        records.remove(record)
    return record


def rotate_key(path: str | os.PathLike[str], key_id: str) -> tuple[str, KeyRecord, KeyRecord]:
    """Replace the key `key_id` by a new one with the same scope, label, prefix and admin
    flag, in one change of the file. Returns (new key, new record, old record).

    Raises:
        KeysFileError: no such key, or the file cannot be read or written.
    """
    with _changing(Path(path).expanduser()) as records:
        old = find_key(records, key_id)
        key = generate_key(test=old.prefix == TEST_KEY_PREFIX)
        new = KeyRecord.for_key(key, scope=old.scope, label=old.label, admin=old.admin)
        records[records.index(old)] = new
    return key, new, old


def _write_private(path: Path, data: object) -> None:
    """Write JSON to `path` atomically, readable by its owner only."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file with mode 0600, so the digests are never readable by
        # others, not even for a moment; os.replace then swaps it in whole.
        handle, temporary = tempfile.mkstemp(prefix=".keys-", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(data, stream, indent=2)
                stream.write("\n")
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        raise KeysFileError(f"cannot write keys file {path}: {exc.strerror or exc}") from None
