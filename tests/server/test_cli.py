"""The ``promptory`` command: ``serve`` and ``keys``, and what any command does.

`run` calls the command in this process (`promptory_in_process`); with ``child=True``, and
for ``serve`` that starts, it runs for real as a child process (``python -m promptory``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import promptory
from support.cli import promptory_command, promptory_in_process
from support.gitrepo import PromptRepo

SRC = str(Path(promptory.__file__).resolve().parents[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PROMPTORY_API_KEYS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    env["HOME"] = str(tmp_path / "home")  # the default keys file lands in the test's tree
    env.update(extra)
    return env


def run(
    tmp_path: Path, *args: str, child: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    if child:
        return promptory_command(*args, env=_env(tmp_path, **env))
    return promptory_in_process(*args, env=_env(tmp_path, **env))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_keys_create_prints_the_key_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    result = run(
        tmp_path, "keys", "create", "--keys-file", str(keys_file), "--scope", "myorg", child=True
    )
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("pm_live_")
    assert key not in result.stderr
    assert key not in keys_file.read_text()
    [entry] = json.loads(keys_file.read_text())["keys"]
    assert entry["scope"] == "myorg"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600


def test_keys_create_defaults_to_the_user_config_file(tmp_path: Path) -> None:
    result = run(tmp_path, "keys", "create", "--test", "--label", "laptop")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pm_test_")
    default = tmp_path / "home" / ".config" / "promptory" / "keys.json"
    assert json.loads(default.read_text())["keys"][0]["label"] == "laptop"


def test_keys_create_refuses_a_malformed_scope(tmp_path: Path) -> None:
    result = run(
        tmp_path, "keys", "create", "--keys-file", str(tmp_path / "k.json"), "--scope", "a/b/c"
    )
    assert result.returncode == 2
    assert "scope" in result.stderr


def test_serve_refuses_to_start_without_keys_and_says_how_to_make_one(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("o", "a", "p")
    repo.commit()
    result = run(
        tmp_path, "serve", str(repo.path), "--keys-file", str(tmp_path / "none.json"), child=True
    )
    assert result.returncode == 1
    assert "no API keys" in result.stderr
    assert "promptory keys create" in result.stderr


def test_serve_refuses_a_path_that_is_not_a_repository(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", str(tmp_path), PROMPTORY_API_KEYS="pm_live_" + "k" * 43)
    assert result.returncode == 1
    assert "not a git repository" in result.stderr


def test_org_without_app_is_a_usage_error(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", str(tmp_path), "--org", "acme")
    assert result.returncode == 2
    assert "--org and --app go together" in result.stderr


def test_version_is_printed(tmp_path: Path) -> None:
    result = run(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"promptory {promptory.__version__}"


@pytest.mark.parametrize("keys_from", ["file", "environment"])
def test_serve_answers_health_and_prompts_then_stops_cleanly(
    tmp_path: Path, keys_from: str
) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("myorg", "myapp", "greeting", "Hey {{ name }}\n", environment="production")
    sha = repo.commit()
    keys_file = tmp_path / "keys.json"
    env: dict[str, str] = {}
    if keys_from == "file":
        key = run(tmp_path, "keys", "create", "--keys-file", str(keys_file)).stdout.strip()
    else:
        key = "pm_live_" + "e" * 43
        env["PROMPTORY_API_KEYS"] = key
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "promptory",
            "serve",
            str(repo.path),
            "--port",
            str(port),
            "--keys-file",
            str(keys_file),
            "--poll-interval",
            "0.1",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path, **env),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert health is not None, "the server did not answer /health"
        assert health.json() == {"status": "ok", "commit": sha, "prompts": 1}
        prompt = httpx.get(
            f"{url}/api/v1/prompts/by-name/myorg/myapp/greeting",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert prompt.status_code == 200
        assert prompt.json()["body"] == "Hey {{ name }}\n"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal, as servers should.
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr
    assert key not in stderr


def test_server_command_without_the_server_extra_says_what_to_install(tmp_path: Path) -> None:
    # A Python where pygit2 cannot be imported, as without the server extra.
    code = (
        "import sys; sys.modules['pygit2'] = None\n"
        "from promptory.cli import main\n"
        "raise SystemExit(main(['serve', '.']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(tmp_path),
        check=False,
    )
    assert result.returncode == 2
    assert "pip install '.[server]'" in result.stderr
