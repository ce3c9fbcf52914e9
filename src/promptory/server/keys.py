"""API keys: made here, stored as SHA-256 digests, verified in microseconds.

Rules of this module:

* A key is ``pm_live_`` or ``pm_test_`` followed by 32 random bytes (``secrets.token_urlsafe``).
  It is shown once, when made; only its SHA-256 digest is kept.
* A fast hash is right for keys (unlike passwords): they are long random tokens, so there is
  nothing to guess, and verifying costs one SHA-256 and one dict lookup, not a tenth of a
  second of bcrypt per request.
* The digest is found by dict lookup and then compared with `hmac.compare_digest`; the raw key
  is never compared, stored, logged or put in an error message.
* The keys file is JSON, ``{"keys": [{"id", "sha256", "scope", "created_at", "label"}]}``,
  written atomically with mode 0600 in a directory of mode 0700. It belongs outside the
  prompt repository.
* ``PROMPTORY_API_KEYS`` holds raw keys, comma-separated; they are unscoped. Each must look
  like a key (`KEY_PATTERN`): anything else is refused, naming its position, never its text.
* A scope is ``None`` (every org and app), ``"org"`` or ``"org/app"``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .files import is_valid_name

__all__ = [
    "DEFAULT_KEYS_FILE",
    "KEYS_ENV_VAR",
    "KEY_PATTERN",
    "KEY_PREFIXES",
    "KeyRecord",
    "KeyRing",
    "KeySourceError",
    "KeysEnvError",
    "KeysFileError",
    "add_key",
    "generate_key",
    "hash_key",
    "load_keys_file",
    "parse_scope",
]

#: What every key starts with: live keys and test keys.
KEY_PREFIXES: tuple[str, ...] = ("pm_live_", "pm_test_")
#: Where `promptory keys create` and `promptory serve` keep keys unless told otherwise.
DEFAULT_KEYS_FILE = Path("~/.config/promptory/keys.json")
#: The environment variable that may hold raw keys, comma-separated.
KEYS_ENV_VAR = "PROMPTORY_API_KEYS"

#: What a raw key looks like: a prefix, then at least 32 URL-safe characters.
KEY_PATTERN = re.compile(r"pm_(?:live|test)_[A-Za-z0-9_-]{32,200}")

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
    return ("pm_test_" if test else "pm_live_") + secrets.token_urlsafe(32)


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
        id: the first 12 hex digits of the digest: names the key in logs and in the file.
        sha256: the key's SHA-256 hex digest.
        scope: None (every org and app), ``"org"`` or ``"org/app"``.
        created_at: when the key was made (ISO 8601 UTC), if known.
        label: a note saying what the key is for, if any.
    """

    id: str
    sha256: str
    scope: str | None = None
    created_at: str | None = None
    label: str | None = None
    scope_org: str | None = field(init=False, repr=False, compare=False, default=None)
    """The org of the scope, or None when unscoped."""
    scope_app: str | None = field(init=False, repr=False, compare=False, default=None)
    """The app of the scope, or None when the scope is unscoped or a whole org."""

    def __post_init__(self) -> None:
        org, app = parse_scope(self.scope)
        object.__setattr__(self, "scope_org", org)
        object.__setattr__(self, "scope_app", app)

    @classmethod
    def for_key(cls, key: str, *, scope: str | None = None, label: str | None = None) -> KeyRecord:
        """The record of a raw key, dated now."""
        digest = hash_key(key)
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(id=digest[:12], sha256=digest, scope=scope, created_at=now, label=label)

    def allows(self, org: str, app: str) -> bool:
        """Whether this key may read prompts of `org`/`app`."""
        scope_org = self.scope_org
        if scope_org is None:
            return True
        return scope_org == org and (self.scope_app is None or self.scope_app == app)

    @property
    def unscoped(self) -> bool:
        """True when the key may read every org and app."""
        return self.scope is None

    def to_json(self) -> dict[str, str | None]:
        """The record as the keys file holds it."""
        return {
            "id": self.id,
            "sha256": self.sha256,
            "scope": self.scope,
            "created_at": self.created_at,
            "label": self.label,
        }


class KeyRing:
    """The keys a server accepts.

    Args:
        records: the keys, by their records (from a keys file or `KeyRecord.for_key`).
    """

    def __init__(self, records: Iterable[KeyRecord] = ()) -> None:
        self._by_digest: dict[bytes, KeyRecord] = {}
        for record in records:
            self._by_digest[bytes.fromhex(record.sha256)] = record

    @classmethod
    def from_sources(
        cls,
        *,
        keys_file: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> KeyRing:
        """Keys from a keys file (if given and present) and from ``PROMPTORY_API_KEYS``.

        Raises:
            KeysFileError: the keys file exists but cannot be read.
            KeysEnvError: an entry of ``PROMPTORY_API_KEYS`` is not a key.
        """
        records = list(load_keys_file(keys_file)) if keys_file is not None else []
        raw = (os.environ if environ is None else environ).get(KEYS_ENV_VAR, "")
        entries = [entry.strip() for entry in raw.split(",")]
        for position, key in enumerate(entries, start=1):
            if not key:
                continue
            if KEY_PATTERN.fullmatch(key) is None:
                raise KeysEnvError(
                    f"{KEYS_ENV_VAR}: entry {position} of {len(entries)} is not an API key "
                    f"({' or '.join(KEY_PREFIXES)} and at least 32 characters of letters, "
                    "digits, '_' and '-'); make one with: promptory keys create"
                )
            records.append(KeyRecord.for_key(key))
        return cls(records)

    def __len__(self) -> int:
        return len(self._by_digest)

    def __repr__(self) -> str:
        return f"<KeyRing of {len(self)} keys>"

    def verify(self, presented: str) -> KeyRecord | None:
        """The record of a presented key, or None when it is not one of ours."""
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


def load_keys_file(path: str | os.PathLike[str]) -> list[KeyRecord]:
    """The key records of a keys file; none when the file does not exist.

    Raises:
        KeysFileError: the file is not a valid keys file; the message names it.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeysFileError(f"cannot read keys file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
        entries = data["keys"]
        if not isinstance(entries, list):
            raise TypeError("'keys' is not a list")
        records = []
        for entry in entries:
            digest = entry["sha256"]
            if not isinstance(digest, str) or len(digest) != 64:
                raise ValueError("a 'sha256' is not a SHA-256 hex digest")
            bytes.fromhex(digest)
            records.append(
                KeyRecord(
                    id=entry.get("id") or digest[:12],
                    sha256=digest,
                    scope=entry.get("scope"),
                    created_at=entry.get("created_at"),
                    label=entry.get("label"),
                )
            )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeysFileError(f"keys file {path} is not valid: {exc}") from None
    return records


def add_key(
    path: str | os.PathLike[str],
    *,
    scope: str | None = None,
    test: bool = False,
    label: str | None = None,
) -> tuple[str, KeyRecord]:
    """Make a key, add its record to the keys file (creating it) and return both.

    The raw key is returned once and never written anywhere.

    Raises:
        ValueError: a bad scope.
        KeysFileError: the file cannot be read or written.
    """
    parse_scope(scope)
    path = Path(path).expanduser()
    records = load_keys_file(path)
    key = generate_key(test)
    record = KeyRecord.for_key(key, scope=scope, label=label)
    records.append(record)
    _write_private(path, {"keys": [r.to_json() for r in records]})
    return key, record


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
