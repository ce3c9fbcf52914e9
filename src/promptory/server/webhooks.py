"""Checking push webhooks from git forges, in constant time.

Rules of this module:

* GitHub signs the raw body: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256>``.
  Gitea and Forgejo sign it too: ``X-Gitea-Signature: <hex HMAC-SHA256>`` (Forgejo also
  sends ``X-Forgejo-Signature``, the same value). GitLab sends the secret itself:
  ``X-Gitlab-Token: <secret>``.
* Every comparison is `hmac.compare_digest`. The secret is never logged or echoed.
* Bodies are read only when a secret is configured and a signature header is present, at
  most `MAX_WEBHOOK_READS` at once: unauthenticated senders hold at most that many bodies
  of `MAX_WEBHOOK_BODY` bytes in memory, not one per open connection.
* A request is accepted when any one header it carries checks out; a request with none of
  them, or with a wrong one, is refused. Without a configured secret nothing is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

__all__ = [
    "MAX_WEBHOOK_BODY",
    "MAX_WEBHOOK_READS",
    "SIGNATURE_HEADERS",
    "WEBHOOK_SECRET_ENV",
    "verify_webhook",
]

#: Largest webhook body read, in bytes (GitHub caps its payloads at 25 MB; a push of a few
#: commits is a few kilobytes, and the body is only hashed, never parsed).
MAX_WEBHOOK_BODY = 5 * 1024 * 1024
#: Webhook bodies read at once (per process): the body comes before its signature can be
#: checked, so anyone may send one; beyond this many a request is answered 429 unread.
MAX_WEBHOOK_READS = 8
#: The headers that carry a signature or token; a request with none is refused unread.
SIGNATURE_HEADERS = frozenset(
    (b"x-hub-signature-256", b"x-gitea-signature", b"x-forgejo-signature", b"x-gitlab-token")
)
#: The environment variable that holds the secret when ``--webhook-secret`` is not given.
WEBHOOK_SECRET_ENV = "PROMPTORY_WEBHOOK_SECRET"


def _hmac_hex(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).hexdigest().encode("ascii")


def verify_webhook(
    secret: str | None, headers: Iterable[tuple[bytes, bytes]], body: bytes
) -> str | None:
    """The forge whose signature over `body` checks out (``github``, ``gitlab``, ``gitea``),
    or None when the request is unsigned or wrongly signed.

    Args:
        secret: the shared secret; None or empty accepts nothing.
        headers: the raw request headers, names in lower case (ASGI).
        body: the raw request body.
    """
    if not secret:
        return None
    key = secret.encode("utf-8")
    expected: bytes | None = None
    for name, value in headers:
        if name == b"x-hub-signature-256":
            expected = expected or _hmac_hex(key, body)
            scheme, _, digest = value.strip().partition(b"=")
            if scheme.lower() == b"sha256" and hmac.compare_digest(digest.lower(), expected):
                return "github"
        elif name in (b"x-gitea-signature", b"x-forgejo-signature"):
            expected = expected or _hmac_hex(key, body)
            if hmac.compare_digest(value.strip().lower(), expected):
                return "gitea"
        elif name == b"x-gitlab-token" and hmac.compare_digest(value, key):
            return "gitlab"
    return None
