"""What the client commands say when they fail, against a real server on 127.0.0.1: each
error names what the user typed (``ORG/APP/NAME``, an id, the scope of ``list``) and says
what to do next; a reader that closes the pipe early ends the command quietly.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from promptory.cli import SIGPIPE_STATUS
from promptory.server.keys import KeyRecord, generate_key
from support.cli import promptory_in_process
from support.gitrepo import PromptRepo
from support.refused import refused_address
from support.servers import RunningServer

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"
UNKNOWN_ID = "550e8400-e29b-41d4-a716-4466554400ff"
SCOPED_KEY = generate_key(test=True)  # may read futureself only


def environment(url: str, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTORY_")}
    env.update(PROMPTORY_BASE_URL=url, PROMPTORY_API_KEY=key)
    return env


@pytest.fixture
def served(prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]) -> RunningServer:
    """The examples, one prompt whose include is missing, and a key scoped to futureself."""
    prompt_repo.write_prompt("myorg", "myapp", "broken", 'Hi {% include "nowhere" %}\n')
    prompt_repo.commit()
    return start_server(prompt_repo, keys=[KeyRecord.for_key(SCOPED_KEY, scope="futureself")])


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback URL where nothing listens: connections are refused at once."""
    with refused_address() as url:
        yield url


def run(server: RunningServer | str, *args: str, key: str | None = None) -> Any:
    url = server if isinstance(server, str) else server.url
    api_key = key or (server.api_key if isinstance(server, RunningServer) else generate_key())
    return promptory_in_process(*args, env=environment(url, api_key))


def lines_of(stderr: str) -> list[str]:
    return stderr.rstrip("\n").split("\n")


def test_a_render_by_name_that_fails_on_the_server_names_the_name_typed(
    served: RunningServer,
) -> None:
    # The render itself is asked by id: the error used to name that id.
    result = run(served, "render", "myorg/myapp/broken")
    assert result.returncode == 1
    first, hint = lines_of(result.stderr)
    assert first.startswith("promptory: myorg/myapp/broken: ")
    assert "nowhere" in first
    assert "id" not in first.split(":")[1]
    assert "promptory lint" in hint


def test_a_403_on_list_names_the_scope_and_the_keys_to_check(served: RunningServer) -> None:
    for command in (("list", "myorg"), ("pull", "myorg", "--out", os.devnull)):
        result = run(served, *command, key=SCOPED_KEY)
        assert result.returncode == 1
        first, hint = lines_of(result.stderr)
        assert first.startswith("promptory: myorg: the API key may not list these prompts")
        assert "this prompt" not in result.stderr
        assert "promptory keys list" in hint
        assert "--scope myorg" in hint


def test_a_403_on_a_prompt_names_it_and_the_scope_a_key_needs(served: RunningServer) -> None:
    for command in ("get", "render", "log"):
        result = run(served, command, "myorg/myapp/greeting", key=SCOPED_KEY)
        assert result.returncode == 1, command
        first, hint = lines_of(result.stderr)
        assert first.startswith("promptory: myorg/myapp/greeting: "), command
        assert "promptory keys list" in hint
        assert "--scope myorg/myapp" in hint


def test_an_unknown_name_or_id_says_where_to_look(served: RunningServer) -> None:
    for command in ("get", "render", "log"):
        by_name = run(served, command, "myorg/myapp/nope")
        assert by_name.returncode == 1
        first, hint = lines_of(by_name.stderr)
        assert first.startswith("promptory: myorg/myapp/nope: not found")
        assert "promptory list myorg/myapp" in hint
        by_id = run(served, command, UNKNOWN_ID)
        first, hint = lines_of(by_id.stderr)
        assert first.startswith(f"promptory: {UNKNOWN_ID}: not found")
        assert "promptory list" in hint


def test_a_refused_key_says_to_check_or_make_one(served: RunningServer) -> None:
    unknown = generate_key()
    for args in (("get", "myorg/myapp/greeting"), ("list",), ("diff", MEDITATION_ID, "HEAD")):
        result = run(served, *args, key=unknown)
        assert result.returncode == 1
        first, hint = lines_of(result.stderr)
        assert first.startswith(f"promptory: {args[1] if len(args) > 1 else 'every org'}")
        assert "PROMPTORY_API_KEY" in hint and "promptory keys create" in hint
        assert unknown not in result.stderr


def test_a_server_out_of_reach_says_to_start_one(refused_url: str) -> None:
    for args in (("get", "myorg/myapp/greeting"), ("list", "myorg"), ("log", MEDITATION_ID)):
        result = run(refused_url, *args)
        assert result.returncode == 1
        first, hint = lines_of(result.stderr)
        assert first.startswith(f"promptory: {args[1]}: could not get an answer")
        assert "promptory serve" in hint and "PROMPTORY_BASE_URL" in hint


def test_an_unknown_ref_names_the_option_and_how_to_find_one(served: RunningServer) -> None:
    result = run(served, "get", "myorg/myapp/greeting", "--env", "production", "--ref", "nope")
    first, hint = lines_of(result.stderr)
    assert first.startswith("promptory: myorg/myapp/greeting --env production --ref nope: ")
    assert "promptory log myorg/myapp/greeting" in hint
    diff = run(served, "diff", "myorg/myapp/greeting", "nope")
    assert diff.returncode == 1
    first, hint = lines_of(diff.stderr)
    assert first.startswith("promptory: myorg/myapp/greeting: ")
    assert "nope" in first
    assert "promptory log myorg/myapp/greeting" in hint


def test_missing_variables_say_how_to_give_them(served: RunningServer) -> None:
    result = run(served, "render", "futureself/meditate/meditation_script_relax", "--strict")
    first, hint = lines_of(result.stderr)
    assert first == (
        "promptory: futureself/meditate/meditation_script_relax: missing variables user, vision"
    )
    assert "-v NAME=VALUE" in hint


def test_a_malformed_key_or_url_names_the_setting(served: RunningServer) -> None:
    bad_key = run(served, "list", key="not-a-key")
    assert bad_key.returncode == 2
    assert bad_key.stderr.startswith("promptory: PROMPTORY_API_KEY: ")
    assert "promptory keys create" in bad_key.stderr
    assert "not-a-key" not in bad_key.stderr
    bad_url = run("ftp://127.0.0.1", "get", "myorg/myapp/greeting", key=served.api_key)
    assert bad_url.returncode == 2
    assert "PROMPTORY_BASE_URL" in bad_url.stderr


def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]
) -> None:
    # 1,500 rows (about 150 KB) are far more than a pipe holds (64 KiB): the command is still
    # writing, a row at a time, when `head` exits.
    for n in range(1_500):
        prompt_repo.write_prompt("myorg", "bulk", f"prompt_{n:04d}", "Hi\n")
    prompt_repo.commit()
    server = start_server(prompt_repo)
    command = subprocess.Popen(
        [sys.executable, "-m", "promptory", "list", "myorg/bulk"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=environment(server.url, server.api_key),
    )
    assert command.stdout is not None
    head = subprocess.Popen(["head", "-n", "1"], stdin=command.stdout, stdout=subprocess.PIPE)
    command.stdout.close()  # as in a shell pipeline: only `head` reads the pipe
    first_line, _ = head.communicate(timeout=60)
    _, stderr = command.communicate(timeout=60)
    assert stderr == b""  # no BrokenPipeError traceback, no "Exception ignored" at exit
    assert command.returncode == SIGPIPE_STATUS  # what the shell shows for `yes | head`
    assert head.returncode == 0 and first_line.startswith(b"PROMPT")


class _OldServer(http.server.BaseHTTPRequestHandler):
    """Answers as the existing Promptory server does a route it lacks."""

    def do_GET(self) -> None:
        body = b'{"detail": "Not Found"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server_without_our_routes() -> Iterator[str]:
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OldServer) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()
            thread.join(timeout=10)


def test_list_and_log_on_a_server_without_those_routes_say_ours_is_needed(
    server_without_our_routes: str,
) -> None:
    for args in (("list", "myorg"), ("pull", "myorg", "--out", os.devnull)):
        result = run(server_without_our_routes, *args)
        assert result.returncode == 1
        first, hint = lines_of(result.stderr)
        assert first.startswith("promptory: myorg: not found (HTTP 404)")
        assert "promptory server" in hint and "promptory serve" in hint
    log = run(server_without_our_routes, "log", MEDITATION_ID)
    assert log.returncode == 1
    assert log.stderr.startswith(f"promptory: {MEDITATION_ID}: this server has no history route")
