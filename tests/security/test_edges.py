"""The server at its edges: traversal, query values, bodies, the keys file, scopes, keys.

What `tests/server` already covers is not repeated here (bad JSON bodies, 413 with and
without Content-Length, `..%2F` in a few places, 403 on each route, unknown refs). This file
adds what an attacker tries next:

* traversal in every path parameter, sent byte for byte on a raw socket (no client
  normalisation): ``..``, ``%2e%2e``, ``%2F``, double encoding, backslashes, NUL, very long
  segments; never a 500, never a byte of a file outside the repository;
* unknown query parameters are ignored on every route; unknown values of known ones are a
  400 or 404 in the error envelope, and a ``ref`` naming a blob or a tree reads nothing;
* bodies at the size limit, numbers and strings JSON allows but Python or UTF-8 do not;
* keys made by the CLI never appear in the keys file;
* scopes hold against ``If-None-Match``, ``?ref=`` and includes in every form;
* key verification compares SHA-256 digests with `hmac.compare_digest`, so a key sharing all
  but one character with a real one gets nothing (nothing here measures time).
"""

from __future__ import annotations

import hmac
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptory.server.keys import KeyRecord, KeyRing, generate_key, load_keys_file
from support.cli import promptory_in_process
from support.gitrepo import PromptRepo
from support.servers import RunningServer, copy_examples, running_server

from .conftest import Tally

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"
CANARY = "CANARY-7f3a1c-outside-the-repository"
ERROR_CODES_404 = {"NOT_FOUND", "PROMPT_NOT_FOUND", "APP_NOT_FOUND", "REF_NOT_FOUND"}


# --- a raw HTTP/1.1 client ----------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    server: RunningServer,
    method: str,
    target: bytes | str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    send_body: bool = True,
    timeout: float = 10.0,
) -> RawResponse:
    """Send one request exactly as given (request target byte for byte) and read the answer
    until the server closes the connection."""
    if isinstance(target, str):
        target = target.encode("latin-1")
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    every = {"Authorization": f"Bearer {server.api_key}", "Connection": "close", **(headers or {})}
    if body and "Content-Length" not in every:
        every["Content-Length"] = str(len(body))
    lines.extend(f"{name}: {value}".encode("latin-1") for name, value in every.items())
    request = b"\r\n".join(lines) + b"\r\n\r\n" + (body if send_body else b"")
    with socket.create_connection(("127.0.0.1", server.background.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break  # the answer came before the reset; it is in `chunks`
            if not chunk:
                break
            chunks.append(chunk)
    head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), parsed, payload)


# --- the server ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def edge_repo(tmp_path_factory: pytest.TempPathFactory) -> PromptRepo:
    """The examples, two echo prompts, and a canary prompt file *outside* the repository (a
    sibling directory laid out like a prompt repository)."""
    root = tmp_path_factory.mktemp("edges")
    outside = root / "outside" / "myorg" / "myapp"
    outside.mkdir(parents=True)
    (outside / "secret.md").write_text(f"---\nversion: 1\n---\n{CANARY}\n")
    (root / "secret.md").write_text(f"---\nversion: 1\n---\n{CANARY}\n")
    repo = PromptRepo(root / "repo")
    copy_examples(repo)
    repo.write_prompt("o", "a", "echo", "{{ v }}")
    repo.write_prompt("o", "a", "length", "{{ v | length }}")
    repo.commit("examples and echo prompts")
    return repo


@pytest.fixture(scope="module")
def edge_server(edge_repo: PromptRepo, api_key: str) -> Iterator[RunningServer]:
    with running_server(edge_repo, api_key, rate_limit=0) as running:
        yield running


def _id(server: RunningServer, org: str, app: str, name: str) -> str:
    with server.client() as http:
        return str(http.get(f"/api/v1/prompts/by-name/{org}/{app}/{name}").json()["id"])


def _assert_refused_without_leaking(response: RawResponse, *, allowed: set[int]) -> None:
    assert response.status != 500, response.body[:300]
    assert response.status in allowed, (response.status, response.body[:300])
    assert CANARY.encode() not in response.body
    if response.headers.get("content-type") == "application/json":
        error = response.json()["error"]
        assert set(error) == {"code", "message"}
        assert len(error["message"]) < 600  # client input is echoed shortened


# --- traversal ------------------------------------------------------------------------------------

#: Path segments that try to climb out, hide, or overflow; sent as written.
TRAVERSALS = {
    "dot-dot": "..",
    "encoded dot-dot": "%2e%2e",
    "upper-case encoded dot-dot": "%2E%2E",
    "half-encoded dot-dot": ".%2e",
    "encoded slashes": "..%2F..%2F..%2Fsecret.md",
    "fully encoded": "%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.md",
    "double encoded": "%252e%252e%252f%252e%252e%252fsecret.md",
    "backslashes": "..\\..\\..\\secret.md",
    "encoded backslashes": "..%5c..%5c..%5csecret.md",
    "encoded NUL": "greeting%00.md",
    "encoded NUL alone": "%00",
    "absolute path": "%2Fetc%2Fpasswd",
    "into outside": "..%2F..%2Foutside%2Fmyorg%2Fmyapp%2Fsecret",
    "git directory": ".git",
    "git config": ".git%2Fconfig",
    "file name with extension": "greeting.md",
    "home": "~root",
    "invalid UTF-8": "%ff%fe%fd",
    "8 KB segment": "a" * 8_000,
    "64 KB segment": "b" * 64_000,
}

#: Where a segment goes: the request target for each path parameter.
PLACES: dict[str, tuple[str, Callable[[str], str]]] = {
    "id": ("GET", lambda s: f"/api/v1/prompts/{s}"),
    "id of render": ("POST", lambda s: f"/api/v1/prompts/{s}/render"),
    "org": ("GET", lambda s: f"/api/v1/prompts/by-name/{s}/myapp/greeting"),
    "app": ("GET", lambda s: f"/api/v1/prompts/by-name/myorg/{s}/greeting"),
    "name": ("GET", lambda s: f"/api/v1/prompts/by-name/myorg/myapp/{s}"),
}


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("attack", list(TRAVERSALS))
def test_traversal_in_a_path_parameter_is_404_and_reads_nothing_outside(
    edge_server: RunningServer, tally: Tally, place: str, attack: str
) -> None:
    tally.add("edge requests: traversal")
    method, target = PLACES[place]
    response = raw_request(edge_server, method, target(TRAVERSALS[attack]))
    _assert_refused_without_leaking(response, allowed={404})
    assert response.json()["error"]["code"] in ERROR_CODES_404


@pytest.mark.parametrize("target", [b"/api/v1/prompts/a\x00b", b"/api/v1/prompts/\xff\xfe"])
def test_raw_control_or_non_ascii_bytes_in_the_request_line_are_400(
    edge_server: RunningServer, tally: Tally, target: bytes
) -> None:
    # Refused by the HTTP layer (uvicorn) before the app sees the request: a 400 in plain text.
    tally.add("edge requests: raw bytes")
    response = raw_request(edge_server, "GET", target)
    _assert_refused_without_leaking(response, allowed={400, 404})


def test_a_megabyte_request_target_is_refused_with_4xx(
    edge_server: RunningServer, tally: Tally
) -> None:
    tally.add("edge requests: raw bytes")
    response = raw_request(edge_server, "GET", "/api/v1/prompts/" + "c" * 1_000_000)
    # 431: the request line counts against the 64 KiB bound on the request head.
    _assert_refused_without_leaking(response, allowed={400, 414, 431})


# --- query values --------------------------------------------------------------------------------

UNKNOWN_PARAMETERS = "unknown=1&flag&__proto__=x&environment_=bogus&Environment=bogus&REF=nope"

ROUTES = {
    "prompt by id": ("GET", f"/api/v1/prompts/{MEDITATION_ID}"),
    "prompt by name": ("GET", "/api/v1/prompts/by-name/myorg/myapp/greeting"),
    "render": ("POST", f"/api/v1/prompts/{MEDITATION_ID}/render"),
    "list": ("GET", "/api/v1/prompts"),
    "status": ("GET", "/api/v1/status"),
    "health": ("GET", "/health"),
    "openapi": ("GET", "/openapi.json"),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_unknown_query_parameters_are_ignored(
    edge_server: RunningServer, tally: Tally, route: str
) -> None:
    tally.add("edge requests: query values", 2)
    method, path = ROUTES[route]
    with edge_server.client() as http:
        plain = http.request(method, path, json={} if method == "POST" else None)
        extra = http.request(
            method, f"{path}?{UNKNOWN_PARAMETERS}", json={} if method == "POST" else None
        )
    assert plain.status_code == 200
    assert extra.status_code == 200
    assert extra.content == plain.content


@pytest.mark.parametrize(
    "value",
    ["prod", "PRODUCTION", "production ", " production", "production%00", "%2A", "dev,prod"],
)
@pytest.mark.parametrize(
    "path", ["/api/v1/prompts", "/api/v1/prompts/by-name/myorg/myapp/greeting"]
)
def test_unknown_environment_is_400_naming_it(
    edge_server: RunningServer, tally: Tally, path: str, value: str
) -> None:
    tally.add("edge requests: query values")
    response = raw_request(edge_server, "GET", f"{path}?environment={value.replace(' ', '%20')}")
    assert response.status == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_ENVIRONMENT"
    assert "is not one of development, staging, production" in error["message"]


def test_a_very_long_environment_value_is_echoed_shortened(
    edge_server: RunningServer, tally: Tally
) -> None:
    tally.add("edge requests: query values")
    response = raw_request(edge_server, "GET", "/api/v1/prompts?environment=" + "x" * 50_000)
    assert response.status == 400
    assert len(response.json()["error"]["message"]) < 400


#: ``ref`` values that try git's revision syntax, options, paths or other object kinds.
BAD_REFS = [
    "../..",
    "refs/../../etc",
    "-h",
    "--upload-pack=touch",
    "main:myorg/myapp/greeting.md",
    "HEAD^{tree}",
    "main^{/greeting}",
    "@",
    "main@{0}",
    "r" * 300,
]

REF_ROUTES = {
    "prompt by id": ("GET", f"/api/v1/prompts/{MEDITATION_ID}"),
    "prompt by name": ("GET", "/api/v1/prompts/by-name/myorg/myapp/greeting"),
    "render": ("POST", f"/api/v1/prompts/{MEDITATION_ID}/render"),
    "list": ("GET", "/api/v1/prompts"),
}


@pytest.mark.parametrize("route", list(REF_ROUTES))
@pytest.mark.parametrize("ref", BAD_REFS)
def test_ref_outside_branches_tags_and_commit_ids_is_404(
    edge_server: RunningServer, tally: Tally, route: str, ref: str
) -> None:
    tally.add("edge requests: query values")
    method, path = REF_ROUTES[route]
    with edge_server.client() as http:
        response = http.request(method, path, params={"ref": ref})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "REF_NOT_FOUND"


@pytest.mark.parametrize("kind", ["blob", "tree"])
@pytest.mark.parametrize("route", list(REF_ROUTES))
def test_ref_naming_a_blob_or_a_tree_reads_nothing(
    edge_server: RunningServer, edge_repo: PromptRepo, tally: Tally, kind: str, route: str
) -> None:
    tally.add("edge requests: query values")
    spec = "HEAD:myorg/myapp/greeting.md" if kind == "blob" else "HEAD:myorg/myapp"
    sha = str(edge_repo.repo.revparse_single(spec).id)
    method, path = REF_ROUTES[route]
    with edge_server.client() as http:
        response = http.request(method, path, params={"ref": sha})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "REF_NOT_FOUND",
        "message": f"ref {sha!r}: does not name a commit",
    }


# --- bodies ---------------------------------------------------------------------------------------


def _render_raw(server: RunningServer, pid: str, body: bytes) -> httpx.Response:
    with server.client() as http:
        return http.post(
            f"/api/v1/prompts/{pid}/render",
            content=body,
            headers={"Content-Type": "application/json"},
        )


def test_body_of_exactly_the_limit_is_accepted(edge_server: RunningServer, tally: Tally) -> None:
    tally.add("edge requests: bodies")
    limit = 1024 * 1024
    head, tail = b'{"variables": {"v": "', b'"}}'
    body = head + b"x" * (limit - len(head) - len(tail)) + tail
    assert len(body) == limit
    response = _render_raw(edge_server, _id(edge_server, "o", "a", "length"), body)
    assert response.status_code == 200
    assert response.json()["rendered_body"] == str(limit - len(head) - len(tail))


def test_body_one_byte_over_the_limit_is_413(edge_server: RunningServer, tally: Tally) -> None:
    tally.add("edge requests: bodies")
    head, tail = b'{"variables": {"v": "', b'"}}'
    body = head + b"x" * (1024 * 1024 + 1 - len(head) - len(tail)) + tail
    response = _render_raw(edge_server, _id(edge_server, "o", "a", "length"), body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_content_length_over_the_limit_is_413_before_the_body_is_sent(
    edge_server: RunningServer, tally: Tally
) -> None:
    tally.add("edge requests: bodies")
    response = raw_request(
        edge_server,
        "POST",
        f"/api/v1/prompts/{MEDITATION_ID}/render",
        headers={"Content-Length": str(10**12), "Content-Type": "application/json"},
        body=b"{}",
        send_body=False,
        timeout=5.0,
    )
    assert response.status == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", "0x10", ""])
def test_malformed_content_length_is_400(
    edge_server: RunningServer, tally: Tally, length: str
) -> None:
    tally.add("edge requests: bodies")
    response = raw_request(
        edge_server,
        "POST",
        f"/api/v1/prompts/{MEDITATION_ID}/render",
        headers={"Content-Length": length},
        body=b"{}",
    )
    _assert_refused_without_leaking(response, allowed={400})


def test_a_number_with_half_a_million_digits_is_400_invalid_body(
    edge_server: RunningServer, tally: Tally
) -> None:
    tally.add("edge requests: bodies")
    body = b'{"variables": {"v": 1' + b"0" * 500_000 + b"}}"
    response = _render_raw(edge_server, _id(edge_server, "o", "a", "echo"), body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_BODY"


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udfff", b"a\\udc80b"])
def test_a_lone_surrogate_in_variables_is_refused_or_echoed_never_a_500(
    edge_server: RunningServer, tally: Tally, escape: bytes
) -> None:
    # JSON allows "\ud800"; UTF-8 cannot hold it. Either answer is fine: a 400 saying so, or
    # the text with the escape kept. A 500 (and a dropped connection) is not.
    tally.add("edge requests: bodies")
    body = b'{"variables": {"v": "' + escape + b'"}}'
    response = _render_raw(edge_server, _id(edge_server, "o", "a", "echo"), body)
    assert response.status_code in (200, 400), response.text[:300]
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "INVALID_BODY"
    else:
        assert response.json()["rendered_body"] == json.loads(b'"' + escape + b'"')


@pytest.mark.parametrize(
    ("literal", "rendered"), [(b"NaN", "nan"), (b"Infinity", "inf"), (b"-Infinity", "-inf")]
)
def test_non_finite_numbers_in_variables_render_as_text(
    edge_server: RunningServer, tally: Tally, literal: bytes, rendered: str
) -> None:
    tally.add("edge requests: bodies")
    body = b'{"variables": {"v": ' + literal + b"}}"
    response = _render_raw(edge_server, _id(edge_server, "o", "a", "echo"), body)
    assert response.status_code == 200
    assert response.json()["rendered_body"] == rendered


# --- the keys file -------------------------------------------------------------------------------


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PROMPTORY_API_KEYS"}
    env["HOME"] = str(tmp_path / "home")
    return promptory_in_process(*args, env=env)


KEY_OPTIONS = [
    [],
    ["--test"],
    ["--scope", "myorg"],
    ["--scope", "myorg/myapp", "--label", "ci"],
    ["--test", "--scope", "futureself", "--label", "laptop"],
]


def test_keys_file_never_holds_a_raw_key_made_by_the_cli(tmp_path: Path, tally: Tally) -> None:
    keys_file = tmp_path / "keys.json"
    keys = []
    for options in KEY_OPTIONS:
        result = _cli(tmp_path, "keys", "create", "--keys-file", str(keys_file), *options)
        assert result.returncode == 0, result.stderr
        key = result.stdout.strip()
        assert result.stdout.count(key) == 1
        assert key not in result.stderr
        keys.append(key)
    tally.add("keys made by the CLI and searched for", len(keys))
    text = keys_file.read_text()
    for key in keys:
        secret = key.split("_", 2)[2]
        windows = {secret[i : i + 12] for i in range(len(secret) - 11)}
        assert not any(window in text for window in windows), "part of a raw key is in the file"
    assert len(json.loads(text)["keys"]) == len(KEY_OPTIONS)


def test_keys_from_the_cli_file_are_each_accepted_by_a_server(
    tmp_path: Path, edge_repo: PromptRepo, api_key: str
) -> None:
    keys_file = tmp_path / "keys.json"
    keys = [
        _cli(tmp_path, "keys", "create", "--keys-file", str(keys_file)).stdout.strip()
        for _ in range(3)
    ]
    with running_server(edge_repo, api_key, keys=load_keys_file(keys_file)) as server:
        statuses = {}
        for key in keys:
            with server.client(key) as http:
                statuses[key] = http.get("/api/v1/status").status_code
    assert set(statuses.values()) == {200}


# --- scopes ---------------------------------------------------------------------------------------

MOVED_ID = "0badc0de-0000-4000-8000-00000000beef"


@dataclass
class ScopedServer:
    server: RunningServer
    keys: dict[str, str]  # scope -> key
    before_move: str  # the commit where o/a/moved lived in o/a


@pytest.fixture(scope="module")
def scoped(tmp_path_factory: pytest.TempPathFactory, api_key: str) -> Iterator[ScopedServer]:
    """A server over the examples plus ``o/a`` and ``o/b`` (whose ``secret`` holds the
    canary), with keys scoped to ``o/a``, ``o/b``, ``futureself`` and ``myorg/myapp``. The
    prompt with id `MOVED_ID` lived in ``o/a`` at `before_move` and lives in ``o/b`` now."""
    repo = PromptRepo(tmp_path_factory.mktemp("scoped") / "repo")
    copy_examples(repo)
    repo.write_prompt("o", "a", "moved", "in a\n", id=MOVED_ID)
    repo.write_prompt("o", "b", "secret", f"{CANARY}\n")
    repo.write_prompt("o", "b", "shared", "from b\n")
    before = repo.commit("o/a and o/b")
    repo.remove("o/a/moved.md")
    repo.write_prompt("o", "b", "moved", "in b\n", id=MOVED_ID)
    for name, body in INCLUDE_FORMS.items():
        repo.write_prompt("o", "a", name, body)
    repo.commit("move o/a/moved to o/b; reference o/b from o/a")
    keys = {scope: generate_key() for scope in ("o/a", "o/b", "futureself", "myorg/myapp")}
    records = [KeyRecord.for_key(key, scope=scope) for scope, key in keys.items()]
    with running_server(repo, api_key, keys=records, rate_limit=0) as server:
        yield ScopedServer(server, keys, before)


#: Ways a prompt of o/a may name a prompt of o/b (or a cached template of it).
INCLUDE_FORMS = {
    "include_only_other_app_has": '{% include "secret" %}',
    "include_qualified": '{% include "o/b/secret" %}',
    "include_internal_name": '{% include "o/b/development/secret@0123456789abcdef" %}',
    "include_list": '{% include ["missing", "../b/secret"] %}',
    "include_ignore_missing": '{% include "../b/secret" ignore missing %}',
    "import_as": '{% import "../b/secret" as s %}{{ s }}',
    "from_import": '{% from "o/b/secret" import x %}{{ x }}',
    "extends": '{% extends "../b/secret" %}',
    "include_computed": '{% include "sec" ~ "ret" %}',
}


@pytest.mark.parametrize("form", list(INCLUDE_FORMS))
def test_an_include_cannot_read_another_apps_prompt_in_any_form(
    scoped: ScopedServer, tally: Tally, form: str
) -> None:
    tally.add("edge requests: scopes")
    server = scoped.server
    pid = _id(server, "o", "a", form)
    with server.client(scoped.keys["o/a"]) as http:
        response = http.post(f"/api/v1/prompts/{pid}/render", json={})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "RENDER_ERROR"
    assert CANARY not in response.text


@pytest.mark.parametrize("route", ["by id", "by name"])
def test_out_of_scope_prompt_is_refused_even_when_if_none_match_matches(
    scoped: ScopedServer, tally: Tally, route: str
) -> None:
    tally.add("edge requests: scopes")
    path = (
        f"/api/v1/prompts/{MEDITATION_ID}"
        if route == "by id"
        else "/api/v1/prompts/by-name/myorg/myapp/meditation_script_relax"
    )
    with scoped.server.client() as http:
        etag = http.get(path).headers["etag"]
    with scoped.server.client(scoped.keys["futureself"]) as http:
        for if_none_match in (etag, "*"):
            response = http.get(path, headers={"If-None-Match": if_none_match})
            # By id it is an unknown id (404); by name the path itself is out of scope.
            assert response.status_code == (404 if route == "by id" else 403), if_none_match
            assert "etag" not in response.headers


@pytest.mark.parametrize(
    ("scope", "ref", "expected"),
    [
        ("o/b", None, 200),
        ("o/b", "before", 404),
        ("o/a", None, 404),
        ("o/a", "before", 200),
    ],
)
@pytest.mark.parametrize("route", ["get", "render"])
def test_scope_is_checked_against_the_prompt_as_it_was_at_the_ref(
    scoped: ScopedServer,
    tally: Tally,
    route: str,
    scope: str,
    ref: str | None,
    expected: int,
) -> None:
    tally.add("edge requests: scopes")
    params = {"ref": scoped.before_move} if ref else {}
    with scoped.server.client(scoped.keys[scope]) as http:
        if route == "get":
            response = http.get(f"/api/v1/prompts/{MOVED_ID}", params=params)
        else:
            response = http.post(f"/api/v1/prompts/{MOVED_ID}/render", params=params, json={})
    assert response.status_code == expected
    if expected == 404:
        assert response.json()["error"]["code"] == "PROMPT_NOT_FOUND"
        assert "in a" not in response.text
        assert "in b" not in response.text


def test_scoped_list_at_an_old_ref_holds_only_the_scope(scoped: ScopedServer, tally: Tally) -> None:
    tally.add("edge requests: scopes")
    with scoped.server.client(scoped.keys["o/b"]) as http:
        listed = http.get("/api/v1/prompts", params={"ref": scoped.before_move}).json()
    assert {(p["org"], p["app"]) for p in listed["prompts"]} == {("o", "b")}
    assert CANARY in json.dumps(listed)  # o/b's own secret is its to read


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/prompts?app=a",
        "/api/v1/prompts?org=o&app=a",
        "/api/v1/prompts?org=myorg",
        "/api/v1/prompts/by-name/o/a/moved",
        "/api/v1/prompts/by-name/o/zzz/none",
    ],
)
def test_app_scoped_key_is_403_on_filters_and_names_of_other_apps(
    scoped: ScopedServer, tally: Tally, path: str
) -> None:
    tally.add("edge requests: scopes")
    with scoped.server.client(scoped.keys["o/b"]) as http:
        response = http.get(path)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"


def test_scoped_status_names_no_file_of_another_app(scoped: ScopedServer, tally: Tally) -> None:
    tally.add("edge requests: scopes")
    with scoped.server.client(scoped.keys["futureself"]) as http:
        status = http.get("/api/v1/status").json()
    assert status["files"] == status["prompts"] == 1
    assert "o/" not in json.dumps(status["problems"])


# --- key verification ---------------------------------------------------------------------------


def _other_character(char: str) -> str:
    return "A" if char != "A" else "B"


#: Keys that differ from a real one by as little as possible.
NEAR_MISSES: dict[str, Callable[[str], str]] = {
    "last character changed": lambda key: key[:-1] + _other_character(key[-1]),
    "middle character changed": lambda key: (
        key[: len(key) // 2] + _other_character(key[len(key) // 2]) + key[len(key) // 2 + 1 :]
    ),
    "first random character changed": lambda key: key[:8] + _other_character(key[8]) + key[9:],
    "one character short": lambda key: key[:-1],
    "one character more": lambda key: key + "A",
    "other prefix": lambda key: (
        ("pm_live_" if key.startswith("pm_test_") else "pm_test_") + key[8:]
    ),
    "upper case": lambda key: key.upper(),
    "key twice": lambda key: key + key,
}


@pytest.mark.parametrize("variant", list(NEAR_MISSES))
def test_a_key_sharing_all_but_one_character_with_a_real_one_is_401(
    shared_server: RunningServer, tally: Tally, variant: str
) -> None:
    tally.add("edge requests: near-miss keys")
    wrong = NEAR_MISSES[variant](shared_server.api_key)
    assert wrong != shared_server.api_key
    with httpx.Client(base_url=shared_server.url, timeout=10) as http:
        response = http.get("/api/v1/status", headers={"Authorization": f"Bearer {wrong}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


def _holds(value: Any, needle: str, depth: int = 0) -> bool:
    """Whether `needle` is anywhere in `value`'s attributes, items or text."""
    if depth > 6:
        return False
    if isinstance(value, (str, bytes)):
        text = value if isinstance(value, str) else value.hex()
        return needle in text
    if isinstance(value, dict):
        return any(
            _holds(k, needle, depth + 1) or _holds(v, needle, depth + 1) for k, v in value.items()
        )
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds(item, needle, depth + 1) for item in value)
    slots = getattr(type(value), "__slots__", ())
    attributes = dict(getattr(value, "__dict__", {}))
    attributes.update({name: getattr(value, name) for name in slots if hasattr(value, name)})
    return any(_holds(item, needle, depth + 1) for item in attributes.values())


def test_the_keyring_holds_digests_never_the_key() -> None:
    key = generate_key()
    ring = KeyRing([KeyRecord.for_key(key, scope="myorg")])
    assert ring.verify(key) is not None
    assert not _holds(ring, key)
    assert not _holds(ring, key[len("pm_live_") :])


def test_verification_compares_sha256_digests_with_compare_digest() -> None:
    key = generate_key()
    ring = KeyRing([KeyRecord.for_key(key)])
    called: list[object] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call":
            called.append(arg)

    sys.setprofile(profile)
    try:
        found = ring.verify(key)
    finally:
        sys.setprofile(None)
    assert found is not None
    assert hmac.compare_digest in called
    names = [getattr(function, "__name__", "") for function in called]
    assert "openssl_sha256" in names or "sha256" in names
