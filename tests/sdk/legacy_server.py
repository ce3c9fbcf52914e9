"""A small real HTTP server that behaves like the existing Promptory server, quirks included.

It shares no code with promptory: it renders with a plain `jinja2.sandbox.SandboxedEnvironment`
and speaks the wire protocol as the existing server does:

- ETags are strong and quoted (``"1.2.0-d38f5806"``); `If-None-Match` is compared by exact
  string equality; the 304 carries no ETag and no Cache-Control.
- 401 and 429 come as ``{"error": {...}}``; 400, 403 and 404 as ``{"detail": {"error": {...}}}``;
  unknown routes as ``{"detail": "Not Found"}``; a render body that is not JSON gets a plain-text
  500.
- Only the capitalised ``Bearer`` scheme is accepted.
- ``updated_at`` looks like ``2026-11-24 21:46:51``.

Tests use it to prove the SDK copes with that server, and to count and shape requests.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from jinja2 import DictLoader
from jinja2.sandbox import SandboxedEnvironment

PROMOTION = ("production", "staging", "development")


@dataclass
class LegacyPrompt:
    """A prompt as the legacy server stores it."""

    name: str
    body: str
    org: str = "myorg"
    app: str = "myapp"
    environment: str = "production"
    version: str = "1.0.0"
    id: str = ""
    role: str | None = "system"
    model: dict[str, Any] = field(default_factory=lambda: {"default": "gemini-2.0-flash"})
    includes: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = str(
                uuid.uuid5(
                    uuid.NAMESPACE_URL, f"{self.org}/{self.app}/{self.name}/{self.environment}"
                )
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "app_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.org}/{self.app}")),
            "name": self.name,
            "version": self.version,
            "org": self.org,
            "app": self.app,
            "domain": None,
            "description": None,
            "type": "chat",
            "role": self.role,
            "model": self.model,
            "modality": None,
            "tts": None,
            "audio": None,
            "environment": self.environment,
            "active": True,
            "tags": self.tags,
            "body": self.body,
            "includes": self.includes,
            "git_sha": "d38f5806aa",
            "updated_at": "2026-11-24 21:46:51",
        }


@dataclass
class SeenRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]


#: The longest a held request waits, so a test that forgets to release cannot hang.
HOLD_LIMIT = 20.0


class LegacyServer:
    """The server's state: prompts, keys, and what it was asked."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.prompts: dict[str, LegacyPrompt] = {}
        self.forbidden_apps: set[str] = set()
        self.rate_limited_retry_after: str | None = None
        self.fail_status: int | None = None
        self.delay = 0.0
        #: When set, every request waits (at most `HOLD_LIMIT` s) for this event before its
        #: answer: a test holds an answer for as long as it checks, without guessing a time.
        self.hold: threading.Event | None = None
        self.requests: list[SeenRequest] = []
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # -- state changes used by tests --

    def add(self, prompt: LegacyPrompt) -> LegacyPrompt:
        with self.lock:
            self.prompts[prompt.id] = prompt
        return prompt

    def remove(self, prompt_id: str) -> None:
        with self.lock:
            self.prompts.pop(prompt_id, None)

    def count(self, path_part: str = "") -> int:
        with self.lock:
            return sum(1 for r in self.requests if path_part in r.path)

    def reset_requests(self) -> None:
        with self.lock:
            self.requests.clear()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- lookups --

    def find_id(self, prompt_id: str) -> LegacyPrompt | None:
        with self.lock:
            return self.prompts.get(prompt_id)

    def find_name(
        self, org: str, app: str, name: str, environment: str | None
    ) -> LegacyPrompt | None:
        with self.lock:
            variants = {
                p.environment: p
                for p in self.prompts.values()
                if (p.org, p.app, p.name) == (org, app, name)
            }
        if environment is not None:
            return variants.get(environment)
        for env in PROMOTION:
            if env in variants:
                return variants[env]
        return None

    def render(self, prompt: LegacyPrompt, variables: dict[str, Any]) -> str:
        with self.lock:
            sources = {
                p.name: p.body
                for p in self.prompts.values()
                if (p.org, p.app) == (prompt.org, prompt.app)
            }
        env = SandboxedEnvironment(
            autoescape=False, keep_trailing_newline=True, loader=DictLoader(sources)
        )
        return env.from_string(prompt.body).render(variables)


def etag_of(prompt: LegacyPrompt, payload: bytes) -> str:
    return f'"{prompt.version}-{hashlib.sha256(payload).hexdigest()[:8]}"'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _send(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        payload = (
            b""
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if status != 304:
            self.wfile.write(payload)

    def _authorized(self) -> bool:
        state = self.server.state
        if self.headers.get("Authorization") != f"Bearer {state.api_key}":
            self._send(
                401, {"error": {"code": "UNAUTHORIZED", "message": "Invalid or missing API key"}}
            )
            return False
        if state.fail_status is not None:
            self._send(state.fail_status, b"Service Unavailable", content_type="text/plain")
            return False
        if state.rate_limited_retry_after is not None:
            self._send(
                429,
                {"error": {"code": "RATE_LIMITED", "message": "Too many requests"}},
                {"Retry-After": state.rate_limited_retry_after},
            )
            return False
        return True

    def _record(self) -> None:
        state = self.server.state
        with state.lock:
            state.requests.append(SeenRequest(self.command, self.path, dict(self.headers.items())))
        if state.delay:
            time.sleep(state.delay)
        hold = state.hold
        if hold is not None:
            hold.wait(HOLD_LIMIT)

    def _serve_prompt(self, prompt: LegacyPrompt | None, what: str) -> None:
        state = self.server.state
        if prompt is None:
            self._send(
                404,
                {
                    "detail": {
                        "error": {"code": "PROMPT_NOT_FOUND", "message": f"Prompt {what} not found"}
                    }
                },
            )
            return
        if prompt.app in state.forbidden_apps:
            self._send(
                403,
                {
                    "detail": {
                        "error": {"code": "FORBIDDEN", "message": "API key not valid for this app"}
                    }
                },
            )
            return
        payload = json.dumps(prompt.to_json()).encode()
        etag = etag_of(prompt, payload)
        if self.headers.get("If-None-Match") == etag:
            self._send(304)
            return
        self._send(
            200,
            payload,
            {"ETag": etag, "Cache-Control": "public, max-age=60, stale-while-revalidate=300"},
        )

    def do_GET(self) -> None:
        self._record()
        parts = urlsplit(self.path)
        segments = [unquote(s) for s in parts.path.split("/")[1:]]
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if segments == ["health"]:
            self._send(200, {"status": "ok"})
            return
        if segments[:3] != ["api", "v1", "prompts"]:
            self._send(404, {"detail": "Not Found"})
            return
        if not self._authorized():
            return
        state = self.server.state
        rest = segments[3:]
        if len(rest) == 1:
            self._serve_prompt(state.find_id(rest[0]), rest[0])
        elif len(rest) == 4 and rest[0] == "by-name":
            org, app, name = rest[1:]
            self._serve_prompt(state.find_name(org, app, name, query.get("environment")), name)
        else:
            self._send(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        self._record()
        segments = [unquote(s) for s in urlsplit(self.path).path.split("/")[1:]]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if (
            len(segments) != 5
            or segments[:3] != ["api", "v1", "prompts"]
            or segments[4] != "render"
        ):
            self._send(404, {"detail": "Not Found"})
            return
        if not self._authorized():
            return
        state = self.server.state
        prompt = state.find_id(segments[3])
        if prompt is None:
            self._send(
                404,
                {"detail": {"error": {"code": "PROMPT_NOT_FOUND", "message": "Prompt not found"}}},
            )
            return
        try:
            body = json.loads(raw or b"{}")
            variables = body.get("variables") or {}
        except (ValueError, AttributeError):
            self._send(500, b"Internal Server Error", content_type="text/plain")
            return
        try:
            rendered = state.render(prompt, variables)
        except Exception as exc:  # the existing server answers 400 for any render failure
            self._send(400, {"detail": {"error": {"code": "RENDER_ERROR", "message": str(exc)}}})
            return
        meta = prompt.to_json()
        meta.pop("body")
        self._send(
            200,
            {
                "id": prompt.id,
                "name": prompt.name,
                "rendered_body": rendered,
                "meta": meta,
                "model": prompt.model,
            },
        )


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    state: LegacyServer


@contextmanager
def running_legacy_server(api_key: str) -> Iterator[LegacyServer]:
    """Start a legacy server on 127.0.0.1 (a free port) for the duration of the block."""
    state = LegacyServer(api_key)
    httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = state
    state._httpd = httpd
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
