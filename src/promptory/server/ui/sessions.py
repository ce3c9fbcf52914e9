"""Web UI sessions: a bounded table in memory, keyed by a random token the cookie carries.

Rules of this module:

* A session holds the digest of the API key that signed in (never the key), a CSRF token,
  and two times. The cookie holds only the session token; the table keeps its SHA-256, so
  the table itself holds nothing a client could present.
* A session ends on sign out, after `idle_seconds` without a request, `lifetime_seconds`
  after sign in, or as soon as its key is revoked (checked on every request by the pages).
* At most `max_per_key` sessions per API key: a key signing in beyond that ends its own
  session used least recently, so one tenant's sign ins never push out another's. At most
  `max_sessions` live at once; signing in beyond that ends the session used least
  recently. Expired sessions are dropped as they are met and by a sweep on every sign in.
* Sessions live in one process: replicas behind a load balancer need sticky sessions (or a
  sign in per replica). A restart signs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Session", "SessionTable"]


@dataclass
class Session:
    """One signed-in browser.

    Attributes:
        key_sha256: the digest of the API key it signed in with.
        csrf: the token every form of this session carries.
        created: when it signed in (the table's clock).
        last_seen: its last request (the table's clock).
    """

    key_sha256: str
    csrf: str
    created: float
    last_seen: float

    def csrf_matches(self, presented: str | None) -> bool:
        """Whether a form's token is this session's (compared in constant time)."""
        if not presented:
            return False
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self.csrf.encode())


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


class SessionTable:
    """The live sessions of one server (thread-safe).

    Args:
        max_sessions: the most sessions kept at once.
        max_per_key: the most sessions kept for one API key.
        idle_seconds: a session unused this long has ended.
        lifetime_seconds: a session this old has ended, used or not.
        clock: seconds, monotonic (injected by tests).
    """

    def __init__(
        self,
        *,
        max_sessions: int = 10_000,
        max_per_key: int = 100,
        idle_seconds: float = 8 * 3600,
        lifetime_seconds: float = 24 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        self.max_per_key = max(1, max_per_key)
        self.idle_seconds = idle_seconds
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def _expired(self, session: Session, now: float) -> bool:
        return (
            now - session.last_seen > self.idle_seconds
            or now - session.created > self.lifetime_seconds
        )

    def create(self, key_sha256: str) -> tuple[str, Session]:
        """Start a session for a key; returns (token for the cookie, session)."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(key_sha256, secrets.token_urlsafe(32), now, now)
        with self._lock:
            for digest in [d for d, s in self._sessions.items() if self._expired(s, now)]:
                del self._sessions[digest]
            # Least recently used first (the table's order): the key's own oldest go first.
            mine = [d for d, s in self._sessions.items() if s.key_sha256 == key_sha256]
            for digest in mine[: max(0, len(mine) - self.max_per_key + 1)]:
                del self._sessions[digest]
            while len(self._sessions) >= self.max_sessions:
                self._sessions.popitem(last=False)
            self._sessions[_digest(token)] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie's token, marked as used now; None if none."""
        if not token or len(token) > 100:
            return None
        digest = _digest(token)
        now = self._clock()
        with self._lock:
            session = self._sessions.get(digest)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[digest]
                return None
            session.last_seen = now
            self._sessions.move_to_end(digest)
            return session

    def drop(self, token: str | None) -> None:
        """End the session of a token (sign out); nothing if there is none."""
        if token:
            with self._lock:
                self._sessions.pop(_digest(token), None)

    def drop_key(self, key_sha256: str) -> int:
        """End every session of a key (revoked); returns how many."""
        with self._lock:
            doomed = [d for d, s in self._sessions.items() if s.key_sha256 == key_sha256]
            for digest in doomed:
                del self._sessions[digest]
        return len(doomed)
