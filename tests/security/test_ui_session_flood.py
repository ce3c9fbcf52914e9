"""One tenant's key cannot sign every other tenant out of the web UI.

The session table holds at most 10,000 sessions for the whole server and, when full,
ends the least recently used: any valid key (a reader scoped to one app) signing in
10,000 times ended every other tenant's session. Each key now holds at most
`MAX_PER_KEY` sessions: its own oldest ends first, never another key's.
"""

from __future__ import annotations

from ui.conftest import UIServer, csrf_of, ui_server  # noqa: F401 (the fixture)

MAX_PER_KEY = 100  # SessionTable's documented default


def test_sign_ins_by_one_key_end_its_own_oldest_session_only(
    ui_server: UIServer,  # noqa: F811 (the fixture imported above)
) -> None:
    victim, _ = ui_server.sign_in(ui_server.reader_key)
    first, _ = ui_server.sign_in(ui_server.scoped_key)
    with ui_server.browser() as attacker:
        token = csrf_of(attacker.get("/ui/login").text)
        login_cookie = attacker.cookies.get("promptory_signin")
        assert login_cookie
        for _ in range(MAX_PER_KEY + 5):
            attacker.cookies.clear()
            attacker.cookies.set("promptory_signin", login_cookie, path="/ui/login")
            answer = attacker.post(
                "/ui/login",
                data={"api_key": ui_server.scoped_key, "csrf_token": token, "next": ""},
            )
            assert answer.status_code == 303
    try:
        # The flooding key's own first session made way...
        assert first.get("/ui/apps").status_code == 303, "one key held unbounded sessions"
        # ...and another tenant's session lives on.
        assert victim.get("/ui/apps").status_code == 200
    finally:
        first.close()
        victim.close()
