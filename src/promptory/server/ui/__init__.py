"""The web UI under ``/ui``: server-rendered pages over the same store and keys as the API.

`WebUI(server).app()` is the ASGI app the server mounts at ``/ui``. Modules: `pages` (the
routes), `sessions` (sign-in sessions), `markup` (escaped, highlighted bodies and diffs);
``templates/`` (Jinja2, autoescaped) and ``static/`` (simple.css, MIT — see
``static/LICENSE-simple.css.txt`` — and a little plain JavaScript).
"""

from __future__ import annotations

from .pages import COOKIE, PageError, SignInNeeded, WebUI
from .sessions import Session, SessionTable

__all__ = ["COOKIE", "PageError", "Session", "SessionTable", "SignInNeeded", "WebUI"]
