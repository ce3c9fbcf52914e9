"""The web UI's pages: server-rendered HTML over the same store, keys and renderer as the API.

Rules of this module:

* A page shows exactly what the signed-in key may read through the API: every lookup passes
  the key's scope, and a prompt or app outside it answers the same 404 page as one that
  does not exist. The keys page exists only for admin keys (404 for the others).
* Every page is built from one Jinja2 environment with autoescape on (separate from the
  prompt sandbox): repository text (names, tags, bodies, messages, problems) is escaped
  wherever it lands. Bodies and diffs are escaped by `markup` before they are marked up.
* Every POST needs the session's CSRF token, and (when the browser sends one) an ``Origin``
  of this server; sign in uses a double-submit token in a cookie of its own. The session
  cookie is ``HttpOnly``, ``SameSite=Strict``, ``Path=/ui`` and ``Secure`` over TLS.
* Each request re-checks the session's key in the key ring, so a revoked key's sessions end
  at once; UI requests count against the key's rate limit like API requests.
* Helpers raise `PageError` (or `SignInNeeded`); one handler turns it into a page.
* Pages are ``Cache-Control: no-store`` and carry a strict Content-Security-Policy: scripts
  and styles only from ``/ui/static``, no inline script.
"""

from __future__ import annotations

import json
import os
import secrets
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..._protocol import ENVIRONMENTS
from ..._version import __version__
from ...exceptions import RenderError
from ...rendering import compile_body
from ..files import is_valid_name
from ..keys import KeyRecord, KeysFileError, parse_scope
from ..records import PromptRecord
from ..render import IncludeError, plan
from ..renderpool import Busy
from ..revisions import DEFAULT_HISTORY, DiffTooLarge, parse_limit, shared_revisions
from ..store import RefNotFoundError, Snapshot
from .markup import PromptRows, body_lines, diff_lines, error_line
from .sessions import Session, SessionTable

if TYPE_CHECKING:
    from ..app import _Server

__all__ = ["COOKIE", "PageError", "SignInNeeded", "WebUI"]

#: The session cookie's name.
COOKIE = "promptory_session"
_LOGIN_COOKIE = "promptory_signin"
_MAX_QUERY = 200  # characters of a search or filter value kept
_HERE = Path(str(files("promptory.server.ui")))

_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class PageError(Exception):
    """A request the UI answers with an error page.

    Args:
        status: the HTTP status.
        title: the page's heading.
        message: what went wrong and what to do.
    """

    def __init__(
        self, status: int, title: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.headers = dict(headers or {})


class SignInNeeded(Exception):
    """No live session: a GET goes to the sign-in page, a POST is refused."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


def _missing(what: str = "page") -> PageError:
    return PageError(
        404,
        "Not found",
        f"There is no such {what}, or your key may not read it.",
    )


def _day(timestamp: str | None) -> str:
    return (timestamp or "")[:10]


def _clip(value: str | None) -> str:
    return (value or "")[:_MAX_QUERY]


class WebUI:
    """The pages of one server.

    Args:
        server: the API server whose store, key ring, limiter and renderer the pages use.
        sessions: the session table (a fresh one by default).
    """

    def __init__(self, server: _Server, sessions: SessionTable | None = None) -> None:
        self.server = server
        self.store = server.store
        self.keyring = server.keyring
        self.sessions = sessions or SessionTable()
        self.revisions = shared_revisions(server, os.fspath(server.store.path), server.readable_sha)
        self.rows = PromptRows()
        self.templates = Environment(
            loader=FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.templates.globals.update({"version": __version__, "environments": ENVIRONMENTS})
        self.templates.filters["printable"] = _printable

    # --- the app ------------------------------------------------------------------------

    def app(self) -> Starlette:
        """The UI as an ASGI app, to mount at ``/ui``."""
        get, post = ["GET"], ["POST"]
        prompt = "/apps/{org}/{app}/{name}/{environment}"
        routes = [
            Route("/", self.home, methods=get),
            Route("/login", self.login_form, methods=get),
            Route("/login", self.login, methods=post),
            Route("/logout", self.logout, methods=post),
            Route("/apps", self.apps, methods=get),
            Route("/apps/{org}/{app}", self.prompts, methods=get),
            Route(prompt, self.prompt, methods=get),
            Route(prompt + "/history", self.history, methods=get),
            Route(prompt + "/diff", self.diff, methods=get),
            Route(prompt + "/preview", self.preview_form, methods=get),
            Route(prompt + "/preview", self.preview, methods=post),
            Route("/prompts/{id}", self.by_id, methods=get),
            Route("/status", self.status, methods=get),
            Route("/keys", self.keys, methods=get),
            Route("/keys", self.create_key, methods=post),
            Route("/keys/{key_id}/revoke", self.revoke_key, methods=post),
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ]
        app = Starlette(
            routes=routes,
            # Compressed, a page of 1,000 prompts weighs a tenth as much. BREACH needs the
            # victim's cookie on requests the attacker shapes; SameSite=Strict keeps it off
            # every request another site starts.
            middleware=[Middleware(GZipMiddleware, minimum_size=1024, compresslevel=5)],
            exception_handlers={
                PageError: self._page_error,
                SignInNeeded: self._sign_in_needed,
                404: self._not_found,
                405: self._not_allowed,
            },
        )
        app.router.redirect_slashes = False
        return app

    def routes(self) -> list[BaseRoute]:
        """What the server adds to its routes: ``/ui`` and everything under it."""
        return [Route("/ui", self.home, methods=["GET"]), Mount("/ui", self.app())]

    # --- answering ----------------------------------------------------------------------

    def page(
        self,
        template: str,
        request: Request,
        *,
        status: int = 200,
        who: tuple[Session, KeyRecord] | None = None,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """Render a page with the security headers."""
        session, key = who if who is not None else (None, None)
        html = self.templates.get_template(template).render(
            request_path=request.url.path,
            key=key,
            csrf=session.csrf if session is not None else "",
            commit=self.store.snapshot.commit,
            **context,
        )
        try:
            body = html.encode("utf-8")
        except UnicodeEncodeError:
            # Repository bytes that are not UTF-8 (kept by pygit2 as surrogate escapes) that
            # a page shows without `printable`: written as \udcNN rather than failing.
            body = html.encode("utf-8", "backslashreplace")
        return HTMLResponse(body, status, {**_SECURITY_HEADERS, **(headers or {})})

    async def _page_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        who = self._who(request)
        return self.page(
            "error.html",
            request,
            status=exc.status,
            who=who,
            headers=exc.headers,
            title=exc.title,
            message=exc.message,
        )

    async def _sign_in_needed(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInNeeded)
        if request.method == "GET":
            query = {
                "next": request.url.path + (f"?{request.url.query}" if request.url.query else "")
            }
            if exc.reason:
                query["reason"] = exc.reason
            return RedirectResponse(f"/ui/login?{urlencode(query)}", 303, _SECURITY_HEADERS)
        return self.page(
            "error.html",
            request,
            status=403,
            title="Signed out",
            message="This form needs a session: sign in and try again.",
        )

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return await self._page_error(request, _missing())

    async def _not_allowed(self, request: Request, exc: Exception) -> Response:
        return await self._page_error(
            request,
            PageError(405, "Method not allowed", f"{request.method} is not allowed here."),
        )

    # --- who is asking ------------------------------------------------------------------

    def _who(self, request: Request) -> tuple[Session, KeyRecord] | None:
        token = request.cookies.get(COOKIE)
        session = self.sessions.get(token)
        if session is None:
            return None
        key = self.keyring.by_digest(session.key_sha256)
        if key is None:
            self.sessions.drop(token)
            return None
        return session, key

    async def _signed_in(self, request: Request) -> tuple[Session, KeyRecord]:
        """The session and key of the request (rate limited), or `SignInNeeded`."""
        who = self._who(request)
        if who is None:
            had_cookie = COOKIE in request.cookies
            raise SignInNeeded("expired" if had_cookie else "")
        wait = await self.server.rate_wait(who[1].id)
        if wait:
            raise PageError(
                429,
                "Too many requests",
                f"This key's rate limit is reached; try again in {wait} s.",
                {"Retry-After": str(wait)},
            )
        return who

    async def _form(self, request: Request) -> dict[str, str]:
        """A urlencoded form body (bounded by the server's body limit), first values only."""
        limit = self.server.settings.max_body
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            raise PageError(400, "Bad form", "The form was not sent as a web form.")
        size = 0
        chunks = []
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PageError(413, "Too large", f"The form is over {limit:,} bytes.")
            chunks.append(chunk)
        form: dict[str, str] = {}
        try:
            text = b"".join(chunks).decode("utf-8")
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise PageError(400, "Bad form", "The form could not be read.") from None
        for name, value in pairs:
            form.setdefault(name, value)
        return form

    async def _checked_form(self, request: Request, session: Session) -> dict[str, str]:
        """The form of a POST that changes something: same origin, this session's token."""
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise PageError(403, "Refused", "This form was sent from another site.")
        form = await self._form(request)
        if not session.csrf_matches(form.get("csrf_token")):
            raise PageError(
                403,
                "Stale form",
                "This form is out of date (you signed out or in since it was opened). "
                "Reload the page and send it again.",
            )
        return form

    # --- sign in and out ----------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/ui/apps", 303, _SECURITY_HEADERS)

    def _login_page(self, request: Request, status: int = 200, error: str = "") -> Response:
        token = secrets.token_urlsafe(24)
        reason = request.query_params.get("reason", "")
        notice = "Your session ended; sign in again." if reason == "expired" else ""
        response = self.page(
            "login.html",
            request,
            status=status,
            login_token=token,
            next=_clip(request.query_params.get("next")),
            error=error,
            notice=notice,
        )
        response.set_cookie(
            _LOGIN_COOKIE,
            token,
            path="/ui/login",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def login_form(self, request: Request) -> Response:
        if self._who(request) is not None:
            return RedirectResponse("/ui/apps", 303, _SECURITY_HEADERS)
        return self._login_page(request)

    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        expected = request.cookies.get(_LOGIN_COOKIE, "")
        presented = form.get("csrf_token", "")
        if not expected or not secrets.compare_digest(expected.encode(), presented.encode()):
            return self._login_page(
                request, 403, "The sign-in form was out of date; it is fresh now: try again."
            )
        key = self.keyring.verify(form.get("api_key", "").strip())
        if key is None:
            return self._login_page(
                request,
                401,
                "That key is unknown or revoked. Keys start with pm_live_ or pm_test_; "
                "make one with: promptory keys create",
            )
        token, _ = self.sessions.create(key.sha256)
        target = form.get("next", "")
        if (
            not target.startswith("/ui/")
            or target.startswith("/ui/login")
            or "//" in target
            or "\\" in target
            or not target.isascii()
            or not target.isprintable()
        ):
            target = "/ui/apps"  # only a page of this UI, never a header-breaking value
        response = RedirectResponse(target, 303, _SECURITY_HEADERS)
        response.set_cookie(
            COOKIE,
            token,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.delete_cookie(_LOGIN_COOKIE, path="/ui/login")
        return response

    async def logout(self, request: Request) -> Response:
        session, _ = await self._signed_in(request)
        await self._checked_form(request, session)
        self.sessions.drop(request.cookies.get(COOKIE))
        response = RedirectResponse("/ui/login", 303, _SECURITY_HEADERS)
        response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
        return response

    # --- reading pages ------------------------------------------------------------------

    async def apps(self, request: Request) -> Response:
        who = await self._signed_in(request)
        key = who[1]
        snapshot = self.store.snapshot
        allow = None if key.unscoped else key.allows

        def gather() -> tuple[list[dict[str, Any]], int]:
            files: Counter[tuple[str, str]] = Counter(
                (r.org, r.app) for r in snapshot.records() if allow is None or allow(r.org, r.app)
            )
            served = Counter((r.org, r.app) for r in snapshot.prompts(allow=allow))
            rows = [
                {"org": org, "app": app, "prompts": served[(org, app)], "files": count}
                for (org, app), count in sorted(files.items())
            ]
            return rows, len(snapshot.problems(allow))

        rows, problems = await run_in_threadpool(gather)
        return self.page(
            "apps.html",
            request,
            who=who,
            rows=rows,
            problems=problems,
            snapshot=snapshot,
        )

    def _app_allowed(
        self, key: KeyRecord, snapshot: Snapshot, org: str, app: str, what: str = "app"
    ) -> None:
        if not key.allows(org, app) or not snapshot.has_app(org, app):
            raise _missing(what)

    async def prompts(self, request: Request) -> Response:
        who = await self._signed_in(request)
        key = who[1]
        org, app = request.path_params["org"], request.path_params["app"]
        snapshot = self.store.snapshot
        self._app_allowed(key, snapshot, org, app)
        query = request.query_params
        environment = query.get("environment", "")
        environment = environment if environment in ENVIRONMENTS else ""
        tag = _clip(query.get("tag"))
        active = query.get("active", "")
        active = active if active in ("yes", "no") else ""
        text = _clip(query.get("q")).strip()

        def gather() -> tuple[Markup, int, list[str], int]:
            records = snapshot.prompts(org=org, app=app)
            tags = sorted({t for r in records if r.ready for t in r.ready.file.tags})
            wanted = text.casefold()
            shown = [
                r
                for r in records
                if (not environment or r.environment == environment)
                and (not active or r.active == (active == "yes"))
                and (not tag or (r.ready is not None and tag in r.ready.file.tags))
                and (not wanted or wanted in r.name.casefold() or wanted in r.text.body.casefold())
            ]
            return self.rows.table(shown), len(shown), tags, len(records)

        rows, shown, tags, total = await run_in_threadpool(gather)
        return self.page(
            "prompts.html",
            request,
            who=who,
            org=org,
            app=app,
            rows=rows,
            shown=shown,
            total=total,
            tags=tags,
            filters={"environment": environment, "tag": tag, "active": active, "q": text},
        )

    async def _record(self, request: Request, key: KeyRecord) -> tuple[Snapshot, PromptRecord]:
        params = request.path_params
        org, app, name = params["org"], params["app"], params["name"]
        environment = params["environment"]
        snapshot = self.store.snapshot
        if environment not in ENVIRONMENTS or not is_valid_name(name):
            raise _missing("prompt")
        self._app_allowed(key, snapshot, org, app, "prompt")
        record = await run_in_threadpool(snapshot.variant, org, app, name, environment)
        if record is None:
            raise _missing("prompt")
        return snapshot, record

    async def by_id(self, request: Request) -> Response:
        _, key = await self._signed_in(request)
        record = await run_in_threadpool(self.store.snapshot.find_by_id, request.path_params["id"])
        if record is None or not key.allows(record.org, record.app):
            raise _missing("prompt")
        return RedirectResponse(_prompt_url(record), 303, _SECURITY_HEADERS)

    async def prompt(self, request: Request) -> Response:
        who = await self._signed_in(request)
        snapshot, record = await self._record(request, who[1])
        served = record.served()
        file = served.file

        def links() -> tuple[list[tuple[str, str | None]], list[tuple[str, PromptRecord | None]]]:
            includes = []
            for name in file.includes:
                found = snapshot.find_by_name(record.org, record.app, name, record.environment)
                if found is None:
                    found = snapshot.find_by_name(record.org, record.app, name)
                includes.append((name, _prompt_url(found) if found is not None else None))
            variants = [
                (env, snapshot.variant(record.org, record.app, record.name, env))
                for env in ENVIRONMENTS
            ]
            return includes, variants

        includes, variants = await run_in_threadpool(links)
        try:
            variables: tuple[str, ...] = compile_body(file.body).info.variables
        except RenderError:
            variables = ()
        fields = [
            ("id", file.id),
            ("name", file.name),
            ("version", file.version),
            ("type", file.type),
            ("role", file.role),
            ("environment", file.environment),
            ("active", file.active),
            ("domain", file.domain),
            ("description", file.description),
            ("model", file.model),
            ("modality", file.modality),
            ("tts", file.tts),
            ("audio", file.audio),
            ("tags", list(file.tags)),
            ("includes", list(file.includes)),
        ]
        return self.page(
            "prompt.html",
            request,
            who=who,
            record=record,
            served=served,
            fields=[(name, _shown(value)) for name, value in fields],
            unknown_keys=file.unknown_keys,
            lines=body_lines(file.body),
            variables=variables,
            includes=includes,
            variants=variants,
            url=_prompt_url(record),
        )

    async def history(self, request: Request) -> Response:
        who = await self._signed_in(request)
        snapshot, record = await self._record(request, who[1])
        limit = parse_limit(request.query_params.get("limit", "")) or DEFAULT_HISTORY
        assert snapshot.commit is not None
        found = await run_in_threadpool(self.revisions.history, snapshot.commit, record.path, limit)
        return self.page(
            "history.html",
            request,
            who=who,
            record=record,
            url=_prompt_url(record),
            revisions=found.revisions,
            truncated=found.truncated,
            limit=limit,
        )

    async def diff(self, request: Request) -> Response:
        who = await self._signed_in(request)
        snapshot, record = await self._record(request, who[1])
        query = request.query_params
        before, after = _clip(query.get("from")), _clip(query.get("to"))
        if not before:
            raise PageError(
                400, "Pick two commits", "Choose the commits to compare on the history page."
            )
        try:
            old = await run_in_threadpool(self.revisions.resolve, before)
            new = (
                await run_in_threadpool(self.revisions.resolve, after) if after else snapshot.commit
            )
        except RefNotFoundError as exc:
            raise PageError(404, "No such commit", f"{exc.ref!r}: {exc.reason}.") from None
        assert new is not None
        try:
            found = await run_in_threadpool(self.revisions.diff, record.path, old, new)
        except DiffTooLarge as exc:
            raise PageError(400, "Too large to compare here", str(exc)) from None
        return self.page(
            "diff.html",
            request,
            who=who,
            record=record,
            url=_prompt_url(record),
            diff=found,
            fields=[(f, _shown(a), _shown(b)) for f, a, b in found.fields],
            front_lines=diff_lines(found.front_matter_diff),
            body_lines=diff_lines(found.body_diff),
        )

    async def preview_form(self, request: Request) -> Response:
        who = await self._signed_in(request)
        _, record = await self._record(request, who[1])
        body = record.served().file.body
        try:
            names = compile_body(body).info.variables
        except RenderError:
            names = ()
        skeleton = json.dumps(dict.fromkeys(names, ""), indent=2)
        return self._preview_page(request, who, record, skeleton, None, None)

    async def preview(self, request: Request) -> Response:
        who = await self._signed_in(request)
        form = await self._checked_form(request, who[0])
        snapshot, record = await self._record(request, who[1])
        text = form.get("variables", "")
        try:
            variables = json.loads(text) if text.strip() else {}
        except (ValueError, RecursionError) as exc:
            return self._preview_page(
                request, who, record, text, None, f"The variables are not valid JSON: {exc}", 400
            )
        if not isinstance(variables, dict):
            return self._preview_page(
                request,
                who,
                record,
                text,
                None,
                'The variables must be a JSON object: {"name": ...}',
                400,
            )
        # The same path as POST /render: the include plan, then the render workers under
        # the key's render cap.
        try:
            job = await run_in_threadpool(plan(snapshot, record).job, record.qualified_name)
            rendered = await self.server.renders.render(who[1].id, job, variables)
        except (IncludeError, RenderError) as exc:
            return self._preview_page(request, who, record, text, None, exc.message, 400)
        except Busy as exc:
            return self._preview_page(request, who, record, text, None, exc.message, 429)
        return self._preview_page(request, who, record, text, rendered, None)

    def _preview_page(
        self,
        request: Request,
        who: tuple[Session, KeyRecord],
        record: PromptRecord,
        variables: str,
        rendered: str | None,
        error: str | None,
        status: int = 200,
    ) -> Response:
        body = record.served().file.body
        return self.page(
            "preview.html",
            request,
            status=status,
            who=who,
            record=record,
            url=_prompt_url(record),
            variables=variables,
            rendered=rendered,
            error=error,
            error_line=error_line(error) if error else None,
            lines=body_lines(body),
        )

    async def status(self, request: Request) -> Response:
        who = await self._signed_in(request)
        key = who[1]
        snapshot = self.store.snapshot
        allow = None if key.unscoped else key.allows

        def gather() -> tuple[list[Any], int, int]:
            problems = snapshot.problems(allow)
            served = len(snapshot.prompts(allow=allow))
            files = sum(1 for r in snapshot.records() if allow is None or allow(r.org, r.app))
            return problems, served, files

        problems, served, files = await run_in_threadpool(gather)
        return self.page(
            "status.html",
            request,
            who=who,
            snapshot=snapshot,
            ref=self.store.ref,
            poll_interval=self.store.poll_interval,
            problems=[(_printable(p.path), _printable(p.message)) for p in problems],
            served=served,
            files=files,
            now=_iso(datetime.now(timezone.utc)),
            indexed_at=_iso(datetime.fromtimestamp(snapshot.indexed_at, timezone.utc)),
        )

    # --- keys (admin keys only) ---------------------------------------------------------

    async def _admin(self, request: Request) -> tuple[Session, KeyRecord]:
        who = await self._signed_in(request)
        if not who[1].admin:
            raise _missing()
        return who

    def _keys_page(
        self,
        request: Request,
        who: tuple[Session, KeyRecord],
        *,
        status: int = 200,
        created: tuple[str, KeyRecord] | None = None,
        error: str = "",
        notice: str = "",
    ) -> Response:
        admin = who[1]
        records = [r for r in self.keyring.records() if admin.covers(r.scope)]
        return self.page(
            "keys.html",
            request,
            status=status,
            who=who,
            records=records,
            created=created,
            error=error,
            notice=notice,
            keys_file=self.keyring.keys_file,
        )

    async def keys(self, request: Request) -> Response:
        who = await self._admin(request)
        revoked = _clip(request.query_params.get("revoked"))
        notice = f"Key {revoked} is revoked: it no longer works." if revoked else ""
        return self._keys_page(request, who, notice=notice)

    async def create_key(self, request: Request) -> Response:
        who = await self._admin(request)
        form = await self._checked_form(request, who[0])
        scope = form.get("scope", "").strip().strip("/") or None
        label = form.get("label", "").strip()[:_MAX_QUERY] or None
        try:
            parse_scope(scope)
        except ValueError as exc:
            return self._keys_page(request, who, status=400, error=str(exc))
        if not who[1].covers(scope):
            return self._keys_page(
                request,
                who,
                status=403,
                error=f"Your key is scoped to {who[1].scope}: a new key must stay within it.",
            )
        try:
            created = await run_in_threadpool(
                lambda: self.keyring.create(scope=scope, label=label, test=form.get("test") == "on")
            )
        except KeysFileError as exc:
            return self._keys_page(request, who, status=409, error=str(exc))
        return self._keys_page(request, who, created=created)

    async def revoke_key(self, request: Request) -> Response:
        who = await self._admin(request)
        await self._checked_form(request, who[0])
        key_id = request.path_params["key_id"]
        target = next((r for r in self.keyring.records() if r.id == key_id), None)
        if target is None or not who[1].covers(target.scope):
            raise _missing("key")
        try:
            await run_in_threadpool(self.keyring.revoke, key_id)
        except KeysFileError as exc:
            return self._keys_page(request, who, status=409, error=str(exc))
        self.sessions.drop_key(target.sha256)
        return RedirectResponse(
            f"/ui/keys?{urlencode({'revoked': key_id})}", 303, _SECURITY_HEADERS
        )


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _prompt_url(record: PromptRecord) -> str:
    return f"/ui/apps/{record.org}/{record.app}/{record.name}/{record.environment}"


def _shown(value: Any) -> str:
    """A front matter value as the pages show it: strings as they are, the rest as JSON."""
    if value is None or value == []:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ", ".join(value)
    return json.dumps(value, indent=2 if isinstance(value, dict) else None, ensure_ascii=False)


def _printable(text: str) -> str:
    """`text` with the bytes of a name that is not UTF-8 written as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
