"""The web UI over HTTP: sessions, CSRF, scopes, escaping, keys, preview, filters, weight."""

from __future__ import annotations

import asyncio
import html as html_module
import re
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from promptory import PromptClient
from promptory.exceptions import AuthenticationError
from promptory.server.app import ServerSettings, create_app
from promptory.server.keys import KeyRing, add_key
from promptory.server.runner import BackgroundServer
from support.gitrepo import PromptRepo

from .conftest import UIServer, csrf_of

GREETING = "/ui/apps/myorg/myapp/greeting/production"
MEDITATION = "/ui/apps/myorg/myapp/meditation_script_relax/production"


def _main(html: str) -> str:
    """The page's <main> element (what differs between pages, without the header)."""
    return html[html.index("<main") : html.index("</main>")]


# --- sessions ------------------------------------------------------------------------------------


def test_pages_without_a_session_send_to_sign_in_and_come_back(ui_server: UIServer) -> None:
    with ui_server.browser() as browser:
        answer = browser.get("/ui/apps/myorg/myapp?tag=greeting")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/login?next=")
        form = browser.get(answer.headers["location"])
        assert 'name="api_key"' in form.text
        signed_in = browser.post(
            "/ui/login",
            data={
                "api_key": ui_server.reader_key,
                "csrf_token": csrf_of(form.text),
                "next": "/ui/apps/myorg/myapp?tag=greeting",
            },
        )
        assert signed_in.headers["location"] == "/ui/apps/myorg/myapp?tag=greeting"


def test_forms_that_change_something_are_refused_without_a_session(ui_server: UIServer) -> None:
    with ui_server.browser() as browser:
        for path in ("/ui/keys", "/ui/logout", f"{GREETING}/preview"):
            answer = browser.post(path, data={"csrf_token": "x"})
            assert answer.status_code == 403, path
            assert "sign in" in answer.text


def test_session_cookie_is_httponly_strict_and_scoped_to_the_ui(ui_server: UIServer) -> None:
    with ui_server.browser() as browser:
        form = browser.get("/ui/login")
        answer = browser.post(
            "/ui/login", data={"api_key": ui_server.reader_key, "csrf_token": csrf_of(form.text)}
        )
        cookie = next(
            v for k, v in answer.headers.multi_items() if k == "set-cookie" and "session" in v
        )
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Path=/ui" in cookie
        assert "Secure" not in cookie  # plain HTTP on loopback
        assert ui_server.reader_key not in cookie


def test_session_cookie_is_secure_behind_tls(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("o", "a", "p")
    repo.commit()
    keys_file = tmp_path / "keys.json"
    key, _ = add_key(keys_file)
    app = create_app(
        ServerSettings(repo=repo.path, keyring=KeyRing.from_sources(keys_file=keys_file))
    )

    async def sign_in() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://ui.test") as client:
            form = await client.get("/ui/login")
            answer = await client.post(
                "/ui/login", data={"api_key": key, "csrf_token": csrf_of(form.text)}
            )
            return next(
                v for k, v in answer.headers.multi_items() if k == "set-cookie" and "session" in v
            )

    assert "Secure" in asyncio.run(sign_in())


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/ui/",
        "/ui/\\evil",
        "/ui/apps\r\nX-Evil: 1",
        "/api/v1/status",
    ],
)
def test_sign_in_returns_only_to_a_page_of_the_ui(ui_server: UIServer, target: str) -> None:
    with ui_server.browser() as browser:
        form = browser.get("/ui/login")
        answer = browser.post(
            "/ui/login",
            data={
                "api_key": ui_server.reader_key,
                "csrf_token": csrf_of(form.text),
                "next": target,
            },
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/apps"
        assert "x-evil" not in answer.headers


def test_a_wrong_key_is_refused_with_a_hint(ui_server: UIServer) -> None:
    with ui_server.browser() as browser:
        form = browser.get("/ui/login")
        answer = browser.post(
            "/ui/login", data={"api_key": "pm_live_nope", "csrf_token": csrf_of(form.text)}
        )
        assert answer.status_code == 401
        assert "unknown or revoked" in answer.text
        assert "pm_live_nope" not in answer.text


def test_sign_in_needs_its_own_fresh_token(ui_server: UIServer) -> None:
    with ui_server.browser() as browser:
        answer = browser.post(
            "/ui/login", data={"api_key": ui_server.reader_key, "csrf_token": "forged"}
        )
        assert answer.status_code == 403
        cookies = answer.headers.get_list("set-cookie")
        assert not any(cookie.startswith("promptory_session=") for cookie in cookies)


def test_sign_out_ends_the_session_and_a_stale_token_is_refused(ui_server: UIServer) -> None:
    browser, old_csrf = ui_server.sign_in(ui_server.admin_key)
    with closing(browser):
        assert browser.post("/ui/logout", data={"csrf_token": old_csrf}).status_code == 303
        assert browser.get("/ui/apps").status_code == 303  # to sign in
        form = browser.get("/ui/login")
        browser.post(
            "/ui/login", data={"api_key": ui_server.admin_key, "csrf_token": csrf_of(form.text)}
        )
        assert browser.get("/ui/apps").status_code == 200
        stale = browser.post("/ui/keys", data={"csrf_token": old_csrf, "label": "x"})
        assert stale.status_code == 403
        assert "out of date" in stale.text
        missing = browser.post("/ui/keys", data={"label": "x"})
        assert missing.status_code == 403


def test_a_form_from_another_origin_is_refused(ui_server: UIServer) -> None:
    browser, csrf = ui_server.sign_in(ui_server.admin_key)
    with closing(browser):
        answer = browser.post(
            "/ui/keys", data={"csrf_token": csrf}, headers={"Origin": "https://evil.example"}
        )
        assert answer.status_code == 403
        assert "another site" in answer.text


def test_pages_carry_a_strict_content_security_policy(ui_server: UIServer) -> None:
    browser, _ = ui_server.sign_in(ui_server.reader_key)
    with closing(browser):
        for path in ("/ui/login", "/ui/apps", GREETING, "/ui/nope"):
            headers = browser.get(path).headers
            assert "script-src 'self'" in headers["content-security-policy"], path
            assert headers["cache-control"] == "no-store"
            assert headers["x-frame-options"] == "DENY"


# --- what a key may see ----------------------------------------------------------------------


def test_a_scoped_key_sees_its_scope_and_the_rest_looks_missing(ui_server: UIServer) -> None:
    browser, _ = ui_server.sign_in(ui_server.scoped_key)
    with closing(browser):
        apps = browser.get("/ui/apps").text
        assert "futureself" in apps
        assert "myorg" not in _main(apps)
        out_of_scope = browser.get(GREETING)
        absent = browser.get("/ui/apps/futureself/meditate/nope/production")
        assert out_of_scope.status_code == absent.status_code == 404
        assert _main(out_of_scope.text) == _main(absent.text)
        assert browser.get("/ui/apps/myorg/myapp").status_code == 404
        assert browser.get(f"{GREETING}/history").status_code == 404
        by_id = browser.get("/ui/prompts/550e8400-e29b-41d4-a716-446655440000")
        assert by_id.status_code == 404
        status = browser.get("/ui/status").text
        assert "myorg/" not in status
        assert browser.get("/ui/keys").status_code == 404  # not an admin key


def test_the_keys_page_is_for_admin_keys_only(ui_server: UIServer) -> None:
    browser, _ = ui_server.sign_in(ui_server.reader_key)
    with closing(browser):
        page = browser.get("/ui/apps").text
        assert 'href="/ui/keys"' not in page
        assert browser.get("/ui/keys").status_code == 404


def test_a_revoked_key_ends_its_sessions_at_once(ui_server: UIServer) -> None:
    admin, csrf = ui_server.sign_in(ui_server.admin_key)
    reader, _ = ui_server.sign_in(ui_server.reader_key)
    with closing(admin), closing(reader):
        reader_id = KeyRing.from_sources(keys_file=ui_server.keys_file, environ={}).verify(
            ui_server.reader_key
        )
        assert reader_id is not None
        answer = admin.post(f"/ui/keys/{reader_id.id}/revoke", data={"csrf_token": csrf})
        assert answer.status_code == 303
        assert reader.get("/ui/apps").status_code == 303


# --- escaping ------------------------------------------------------------------------------------

HOSTILE = '<script>alert("x")</script>\x1b[31m<img src=x onerror=alert(1)>'


def test_repository_text_is_escaped_on_every_page(ui_server: UIServer) -> None:
    repo = ui_server.repo
    repo.write_prompt(
        "myorg",
        "myapp",
        "hostile",
        f"Hello {HOSTILE} {{{{ name }}}}\n",
        tags=["<b>bold</b>", "ok"],
        description=HOSTILE,
        model={"default": HOSTILE},
    )
    repo.write("myorg/myapp/broken.md", f"---\nversion: [\n---\n{HOSTILE}\n")
    first = repo.commit(f"Hostile {HOSTILE}")
    repo.write_prompt("myorg", "myapp", "hostile", "Changed\n", version="2.0.0", tags=["ok"])
    second = repo.commit("second")
    browser, _ = ui_server.sign_in(ui_server.admin_key)
    url = "/ui/apps/myorg/myapp/hostile/development"
    with closing(browser):
        pages = [
            "/ui/apps",
            "/ui/apps/myorg/myapp",
            f"{url}",
            f"{url}/history",
            f"{url}/diff?from={first}&to={second}",
            f"{url}/preview",
            "/ui/status",
        ]
        deadline = time.monotonic() + 10
        while "hostile" not in browser.get("/ui/apps/myorg/myapp").text:
            assert time.monotonic() < deadline, "the commit was not served in time"
            time.sleep(0.05)
        for path in pages:
            html = browser.get(path).text
            assert "<script>alert" not in html, path
            assert "<img src=x" not in html, path
            assert "<b>bold" not in html, path
        history = browser.get(f"{url}/history").text
        assert "Hostile &lt;script&gt;" in history
        diff = browser.get(f"{url}/diff?from={first}&to={second}").text
        assert "&lt;script&gt;alert" in diff
        status = browser.get("/ui/status").text
        assert "broken.md" in status


# --- preview -------------------------------------------------------------------------------------


def test_preview_renders_exactly_as_the_render_route(ui_server: UIServer) -> None:
    browser, csrf = ui_server.sign_in(ui_server.reader_key)
    variables = '{"user_name": "Ada <3", "goal": "a walk"}'
    url = "/ui/apps/myorg/myapp/coach_checkin/production"
    with closing(browser):
        page = browser.post(f"{url}/preview", data={"csrf_token": csrf, "variables": variables})
        assert page.status_code == 200
        shown = re.search(r'<pre id="rendered">(.*?)</pre>', page.text, re.S)
        assert shown is not None
        with PromptClient(ui_server.url, ui_server.reader_key) as client:
            prompt = client.get_by_name("myorg", "myapp", "coach_checkin")
        api = httpx.post(
            f"{ui_server.url}/api/v1/prompts/{prompt.id}/render",
            json={"variables": {"user_name": "Ada <3", "goal": "a walk"}},
            headers={"Authorization": f"Bearer {ui_server.reader_key}"},
        ).json()["rendered_body"]
        assert html_module.unescape(shown.group(1)) == api
        assert "Ada &lt;3" in shown.group(1)


def test_preview_shows_a_render_error_with_its_line(ui_server: UIServer) -> None:
    repo = ui_server.repo
    repo.write_prompt("myorg", "myapp", "divides", "one\ntwo\n{{ 1 // zero }}\n")
    sha = repo.commit()
    browser, csrf = ui_server.sign_in(ui_server.reader_key)
    url = "/ui/apps/myorg/myapp/divides/development"
    with closing(browser):
        deadline = time.monotonic() + 10
        while browser.get(url).status_code != 200:
            assert time.monotonic() < deadline, f"{sha} not served"
            time.sleep(0.05)
        page = browser.post(f"{url}/preview", data={"csrf_token": csrf, "variables": '{"zero": 0}'})
        assert page.status_code == 400
        assert "on line 3" in page.text
        assert 'class="l bad" id="L3"' in page.text
        bad_json = browser.post(f"{url}/preview", data={"csrf_token": csrf, "variables": "{"})
        assert bad_json.status_code == 400
        assert "not valid JSON" in bad_json.text


# --- keys ----------------------------------------------------------------------------------------


def test_a_key_minted_in_the_ui_works_at_once_and_stops_when_revoked(ui_server: UIServer) -> None:
    browser, csrf = ui_server.sign_in(ui_server.admin_key)
    with closing(browser):
        page = browser.post(
            "/ui/keys", data={"csrf_token": csrf, "scope": "myorg/myapp", "label": "new"}
        )
        assert page.status_code == 200
        secret = re.search(r'id="secret" readonly value="(pm_live_[^"]+)"', page.text)
        assert secret is not None
        key = secret.group(1)
        assert browser.get("/ui/keys").text.count(key) == 0  # shown once
        with PromptClient(ui_server.url, key, cache_ttl=0) as client:
            assert client.get_by_name("myorg", "myapp", "greeting").name == "greeting"
            record = KeyRing.from_sources(keys_file=ui_server.keys_file, environ={}).verify(key)
            assert record is not None
            assert record.scope == "myorg/myapp"
            answer = browser.post(f"/ui/keys/{record.id}/revoke", data={"csrf_token": csrf})
            assert answer.status_code == 303
            assert f"Key {record.id} is revoked" in browser.get(answer.headers["location"]).text
            with pytest.raises(AuthenticationError):
                client.get_by_name("myorg", "myapp", "greeting")


def test_a_scoped_admin_manages_keys_within_its_scope_only(ui_server: UIServer) -> None:
    scoped_admin, _ = add_key(ui_server.keys_file, scope="myorg", admin=True)
    browser, csrf = ui_server.sign_in(scoped_admin)
    with closing(browser):
        page = browser.get("/ui/keys").text
        assert "futureself" not in page  # the futureself key is not listed
        wider = browser.post("/ui/keys", data={"csrf_token": csrf, "scope": ""})
        assert wider.status_code == 403
        other = browser.post("/ui/keys", data={"csrf_token": csrf, "scope": "futureself"})
        assert other.status_code == 403
        bad = browser.post("/ui/keys", data={"csrf_token": csrf, "scope": "a/b/c"})
        assert bad.status_code == 400
        inside = browser.post("/ui/keys", data={"csrf_token": csrf, "scope": "myorg/myapp"})
        assert inside.status_code == 200
        assert 'id="secret"' in inside.text


# --- browsing ------------------------------------------------------------------------------------


def test_filters_narrow_the_prompts_of_an_app(ui_server: UIServer) -> None:
    browser, _ = ui_server.sign_in(ui_server.reader_key)
    with closing(browser):

        def names(query: str) -> list[str]:
            html = browser.get(f"/ui/apps/myorg/myapp?{query}").text
            return re.findall(r'<tr><td><a href="myapp/([^/"]+)/', html)

        everything = names("")
        assert {"greeting", "coach_checkin", "safety_preamble"} <= set(everything)
        assert names("environment=development") == ["greeting"]
        assert names("tag=greeting") == ["greeting", "greeting"]
        assert names("q=welcome+back") == ["greeting"]  # a body match (production only)
        assert names("q=good+to+see") == ["greeting"]  # the development variant
        assert names("q=COACH") == ["coach_checkin"]  # a name match, any case
        assert names("active=no") == []


def test_a_prompt_page_shows_its_fields_body_variables_and_links(ui_server: UIServer) -> None:
    browser, _ = ui_server.sign_in(ui_server.reader_key)
    with closing(browser):
        html = browser.get("/ui/apps/myorg/myapp/coach_checkin/production").text
        assert 'href="/ui/apps/myorg/myapp/safety_preamble/production"' in html
        assert 'id="L1"' in html
        assert '<span class="jt">{% include &#34;safety_preamble&#34; %}</span>' in html
        assert "<code>user_name</code>" in html
        assert "<summary>Front matter as written</summary>" in html
        assert "includes: [safety_preamble]" in html
        greeting = browser.get(GREETING).text
        assert 'href="/ui/apps/myorg/myapp/greeting/development"' in greeting
        assert "ETag" in greeting
        by_id = browser.get("/ui/prompts/550e8400-e29b-41d4-a716-446655440000")
        assert by_id.headers["location"] == MEDITATION


def test_history_and_diff_pages(ui_server: UIServer) -> None:
    repo = ui_server.repo
    first = repo.head
    path = "myorg/myapp/greeting.md"
    text = (repo.path / path).read_text()
    repo.write(path, text.replace("2.0.0", "2.1.0").replace("Hey", "Hello"))
    second = repo.commit("Warmer greeting")
    browser, _ = ui_server.sign_in(ui_server.reader_key)
    with closing(browser):
        deadline = time.monotonic() + 10
        while "2.1.0" not in browser.get(GREETING).text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        history = browser.get(f"{GREETING}/history").text
        assert second[:12] in history and first[:12] in history
        assert "Warmer greeting" in history
        diff = browser.get(f"{GREETING}/diff?from={first}&to={second}").text
        assert '<span class="add">+version: 2.1.0</span>' in diff
        assert '<span class="del">-version: 2.0.0</span>' in diff
        assert browser.get(f"{GREETING}/diff?from=nope").status_code == 404
        assert browser.get(f"{GREETING}/diff").status_code == 400


def test_an_app_of_1000_prompts_weighs_under_150_kb(tmp_path: Path) -> None:
    """What a browser downloads for the page: the HTML (compressed, as browsers ask for it)
    and its stylesheets and script."""
    repo = PromptRepo(tmp_path / "repo")
    for index in range(1000):
        repo.write_prompt(
            "acme",
            "assistant",
            f"prompt_{index:04d}_customer_support_reply",
            f"You help {{{{ customer.name }}}} with order {index}.\n" * 20,
            environment=("development", "staging", "production")[index % 3],
            tags=["support", f"team-{index % 7}"],
            version=f"1.{index % 10}.{index % 3}",
        )
    repo.commit("a thousand prompts")
    keys_file = tmp_path / "keys.json"
    key, _ = add_key(keys_file)
    app = create_app(
        ServerSettings(repo=repo.path, keyring=KeyRing.from_sources(keys_file=keys_file))
    )
    with BackgroundServer(app) as server:
        ui = UIServer(server.url, repo, keys_file, key, key, key, app)
        browser, _ = ui.sign_in(key)
        with closing(browser):
            gzip = {"Accept-Encoding": "gzip"}
            page = browser.get("/ui/apps/acme/assistant", headers=gzip)
            assert page.status_code == 200
            assert page.headers["content-encoding"] == "gzip"
            assert page.text.count("<tr><td>") == 1000
            assets = [
                browser.get(path, headers=gzip)
                for path in re.findall(r'(?:href|src)="(/ui/static/[^"?]+)', page.text)
            ]
            assert len(assets) == 3
            weight = page.num_bytes_downloaded + sum(a.num_bytes_downloaded for a in assets)
            assert weight < 150 * 1024, weight
            # Uncompressed it stays within a few bytes a row of what it shows.
            assert len(page.content) < 200 * 1024, len(page.content)


def test_status_shows_the_commit_when_it_was_read_and_each_file_not_served(
    ui_server: UIServer,
) -> None:
    repo = ui_server.repo
    repo.write("myorg/myapp/broken.md", "---\nversion: [\n---\nbody\n")
    sha = repo.commit("a broken file")
    browser, _ = ui_server.sign_in(ui_server.reader_key)
    with closing(browser):
        deadline = time.monotonic() + 10
        while sha not in (page := browser.get("/ui/status").text):
            assert time.monotonic() < deadline, "the commit was not served in time"
            time.sleep(0.05)
        assert "Read by this server at" in page
        assert "myorg/myapp/broken.md" in page
        assert "invalid YAML in front matter on line 3" in page
        assert "1 file not served" in browser.get("/ui/apps").text


def test_a_prompt_under_a_folder_whose_name_is_not_utf8_has_its_pages(
    ui_server: UIServer,
) -> None:
    import pygit2

    git = ui_server.repo.repo
    head = git.head.peel(pygit2.Commit)

    def tree_of(entries: list[tuple[bytes, int, bytes]]) -> pygit2.Oid:
        # Written by hand: pygit2's tree builder takes names as str only.
        raw = b"".join(b"%o %s\x00%s" % (m, n, oid) for n, m, oid in sorted(entries))
        return git.odb.write(pygit2.enums.ObjectType.TREE, raw)

    blob = git.create_blob(b"---\nversion: 1.0.0\n---\nhello\n")
    folder = tree_of([(b"p.md", 0o100644, blob.raw)])
    app = tree_of([(b"caf\xe9", 0o40000, folder.raw)])
    org = tree_of([(b"a", 0o40000, app.raw)])
    top = [(e.raw_name, int(e.filemode), e.id.raw) for e in head.tree]
    root = tree_of([*top, (b"o", 0o40000, org.raw)])
    signature = ui_server.repo.signature()
    git.create_commit("HEAD", signature, signature, "raw", root, [head.id])
    browser, _ = ui_server.sign_in(ui_server.reader_key)
    url = "/ui/apps/o/a/p/development"
    with closing(browser):
        deadline = time.monotonic() + 10
        while browser.get(url).status_code == 404:
            assert time.monotonic() < deadline, "the commit was not served in time"
            time.sleep(0.05)
        for path in (url, f"{url}/history", f"{url}/preview", "/ui/apps/o/a"):
            page = browser.get(path)
            assert page.status_code == 200, path
        assert "o/a/caf\\xe9/p.md" in browser.get(url).text


def test_a_form_over_the_body_limit_is_refused(ui_server: UIServer) -> None:
    browser, csrf = ui_server.sign_in(ui_server.reader_key)
    with closing(browser):
        answer = browser.post(
            f"{GREETING}/preview",
            data={"csrf_token": csrf, "variables": "x" * (1024 * 1024 + 1)},
        )
        assert answer.status_code == 413
        assert "over 1,048,576 bytes" in answer.text


def test_history_page_with_a_non_ascii_digit_limit_shows_the_default(
    ui_server: UIServer,
) -> None:
    browser, _ = ui_server.sign_in(ui_server.reader_key)
    with closing(browser):
        for bad in ("%C2%B2", "%D9%A3", "0"):
            answer = browser.get(f"{GREETING}/history?limit={bad}")
            assert answer.status_code == 200, bad
            assert ui_server.repo.head[:12] in answer.text


def _routed(routes: list[object], path: str) -> object:
    """The endpoint of the route at `path` (mounts included)."""
    for route in routes:
        if getattr(route, "path", None) == path:
            return route.endpoint  # type: ignore[attr-defined]
        inner = getattr(route, "routes", None)
        if inner and path.startswith(getattr(route, "path", "")):
            found = _routed(inner, path[len(route.path) :])  # type: ignore[attr-defined]
            if found is not None:
                return found
    return None


def test_the_api_and_the_pages_read_histories_through_one_cache(ui_server: UIServer) -> None:
    routes = ui_server.app.routes  # type: ignore[attr-defined]
    api = _routed(routes, "/api/v1/prompts/{id}/history")
    page = _routed(routes, "/ui/apps/{org}/{app}/{name}/{environment}/history")
    assert api is not None and page is not None
    assert api.handler.__self__.revisions is page.__self__.revisions  # type: ignore[attr-defined]
