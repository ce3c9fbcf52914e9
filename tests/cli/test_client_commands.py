"""`promptory get | render | list | pull` against a real server.

The commands run in this process (`promptory_in_process`); the tests passing ``child=True``
run the real command as a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptory import PromptClient
from support.cli import promptory_command, promptory_in_process
from support.refused import refused_address
from support.servers import RunningServer

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"


def promptory(
    server: RunningServer | None, *args: str, key: str | None = None, child: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the command with the server's URL and key in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTORY_")}
    if server is not None:
        env["PROMPTORY_BASE_URL"] = server.url
        env["PROMPTORY_API_KEY"] = key or server.api_key
    if child:
        return promptory_command(*args, env=env)
    return promptory_in_process(*args, env=env)


def test_get_prints_the_metadata_and_body(shared_server: RunningServer) -> None:
    result = promptory(shared_server, "get", "myorg/myapp/greeting", child=True)
    assert result.returncode == 0, result.stderr
    assert "# myorg/myapp/greeting  v2.0.0  [production]" in result.stdout
    assert "{% if formal %}" in result.stdout


def test_get_with_env_and_json_prints_the_prompt_json(shared_server: RunningServer) -> None:
    result = promptory(
        shared_server, "get", "myorg/myapp/greeting", "--env", "development", "--json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["environment"] == "development"
    assert list(data)[:3] == ["id", "app_id", "name"]


def test_get_by_id(shared_server: RunningServer) -> None:
    result = promptory(shared_server, "get", MEDITATION_ID, "--json")
    assert json.loads(result.stdout)["name"] == "meditation_script_relax"


def test_get_of_a_missing_prompt_fails_with_the_reason(shared_server: RunningServer) -> None:
    result = promptory(shared_server, "get", "myorg/myapp/nope")
    assert result.returncode == 1
    assert "not found" in result.stderr
    assert result.stdout == ""


def test_commands_without_settings_say_which_are_missing() -> None:
    result = promptory(None, "get", "myorg/myapp/greeting", child=True)
    assert result.returncode == 2
    assert "PROMPTORY_BASE_URL" in result.stderr
    assert "PROMPTORY_API_KEY" in result.stderr


def test_render_with_variables_from_flags(shared_server: RunningServer) -> None:
    result = promptory(
        shared_server,
        "render",
        "myorg/myapp/greeting",
        "-v",
        "user_name=Alice",
        "-v",
        "formal=true",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Dear Alice, welcome back to MyApp.\n"


def test_render_resolves_includes_and_reads_a_vars_file(
    shared_server: RunningServer, tmp_path: Path
) -> None:
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps({"user_name": "Bo", "goal": "sleep early"}))
    result = promptory(
        shared_server, "render", "myorg/myapp/coach_checkin", "--vars-file", str(variables)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Stay supportive and practical.")
    assert '"sleep early"' in result.stdout


def test_render_strict_names_the_missing_variables(shared_server: RunningServer) -> None:
    result = promptory(shared_server, "render", MEDITATION_ID, "--strict")
    assert result.returncode == 1
    assert "vision" in result.stderr


def test_render_refuses_a_bad_assignment(shared_server: RunningServer) -> None:
    result = promptory(shared_server, "render", "myorg/myapp/greeting", "-v", "novalue")
    assert result.returncode == 2
    assert "NAME=VALUE" in result.stderr


def test_list_prints_a_table_filtered_by_scope_env_and_tag(shared_server: RunningServer) -> None:
    everything = promptory(shared_server, "list")
    assert everything.returncode == 0, everything.stderr
    assert "futureself/meditate/meditation_script_relax" in everything.stdout
    assert "6 prompts" in everything.stderr
    app = promptory(
        shared_server, "list", "myorg/myapp", "--env", "production", "--tag", "greeting"
    )
    lines = app.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["PROMPT", "ENVIRONMENT"]
    assert [line.split()[0] for line in lines[1:]] == ["myorg/myapp/greeting"]


def test_list_json(shared_server: RunningServer) -> None:
    result = promptory(shared_server, "list", "futureself", "--json")
    names = [p["name"] for p in json.loads(result.stdout)]
    assert names == ["meditation_script_relax"]


def test_pull_writes_a_snapshot_the_client_serves_offline(
    shared_server: RunningServer, tmp_path: Path, refused_url: str
) -> None:
    snapshot = tmp_path / "prompts.json"
    result = promptory(
        shared_server, "pull", "myorg/myapp", "--env", "production", "--out", str(snapshot)
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 4 prompts" in result.stderr
    with PromptClient(
        refused_url, shared_server.api_key, fallback=snapshot, retry_count=0
    ) as client:
        prompt = client.get_by_name("myorg", "myapp", "greeting")
    assert prompt.is_fallback
    assert prompt.version == "2.0.0"


def test_sdk_list_prompts_filters_like_the_command(shared_server: RunningServer) -> None:
    with PromptClient(shared_server.url, shared_server.api_key) as client:
        every = client.list_prompts()
        dev = client.list_prompts("myorg", "myapp", environment="development")
    assert len(every) == 6
    assert [p.qualified_name for p in dev] == ["myorg/myapp/greeting"]


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback URL where nothing listens: connections are refused at once."""
    with refused_address() as url:
        yield url


OSC52 = "\x1b]52;c;aGVsbG8=\x07"  # "write 'hello' to the clipboard", to a terminal


@pytest.fixture
def hostile(server: RunningServer) -> RunningServer:
    """A prompt whose tags and body hold terminal escape sequences."""
    server.repo.write_prompt(
        "myorg", "myapp", "hostile", f"Hi{OSC52}\n", tags=[OSC52, "ok\nforged"]
    )
    server.wait_for_commit(server.repo.commit())
    return server


def test_list_escapes_control_characters_from_the_repository(hostile: RunningServer) -> None:
    for args in (("list", "myorg/myapp"), ("list", "myorg/myapp", "--json")):
        result = promptory(hostile, *args)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
        assert "forged" in result.stdout
        assert "\nforged" not in result.stdout


def test_get_escapes_metadata_always_and_the_body_only_on_a_terminal(
    hostile: RunningServer,
) -> None:
    piped = promptory(hostile, "get", "myorg/myapp/hostile")
    header, _, body = piped.stdout.partition("\n\n")
    assert "\x1b" not in header
    assert "# tags \\x1b]52;c;aGVsbG8=\\x07, ok\\nforged" in header
    assert body == f"Hi{OSC52}\n"  # into a pipe or file, byte for byte
    assert "\\x1b]52" in on_a_terminal(hostile, "get", "myorg/myapp/hostile")


def on_a_terminal(server: RunningServer, *args: str) -> str:
    """What the command writes when its stdout is a terminal (a pseudo-terminal here)."""
    import pty
    import select

    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTORY_")}
    env.update(PROMPTORY_BASE_URL=server.url, PROMPTORY_API_KEY=server.api_key)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "promptory", *args],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(follower)
    chunks: list[bytes] = []
    try:
        for _ in range(10_000):  # bounded: each read waits at most 30 s
            ready, _, _ = select.select([leader], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        process.wait(timeout=60)
    return b"".join(chunks).decode("utf-8", "replace")


def test_an_error_quoting_server_text_escapes_its_control_characters(
    shared_server: RunningServer,
) -> None:
    result = promptory(shared_server, "get", f"myorg/myapp/x{OSC52}")
    assert result.returncode == 1
    assert "\x1b" not in result.stderr
    assert "\\x1b]52" in result.stderr
