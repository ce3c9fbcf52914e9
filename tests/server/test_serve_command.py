"""``promptory serve`` as an operator meets it: bind errors, environment variables, TLS."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

import promptory
from promptory.cli.server import EXIT_CANNOT_BIND, SERVE_OPTIONS, is_loopback
from support.gitrepo import PromptRepo

SRC = str(Path(promptory.__file__).resolve().parents[1])
KEY = "pm_live_" + "s" * 43


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTORY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    env["HOME"] = str(tmp_path / "home")
    env["PROMPTORY_API_KEYS"] = KEY
    env.update(extra)
    return env


def _repo(tmp_path: Path) -> PromptRepo:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("myorg", "myapp", "greeting", "Hey {{ name }}\n")
    repo.commit()
    return repo


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promptory", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(tmp_path, **env),
        check=False,
    )


@contextmanager
def _running(tmp_path: Path, *args: str, **env: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "promptory", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path, **env),
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=15)


def _wait_until_up(url: str, process: subprocess.Popen[str], **options: object) -> httpx.Response:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            return httpx.get(f"{url}/health", timeout=1, **options)  # type: ignore[arg-type]
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("the server did not answer /health")


def test_a_port_in_use_is_one_line_naming_the_port_and_the_flag(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(tmp_path, str(repo.path), "--port", str(port))
    assert result.returncode == EXIT_CANNOT_BIND == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0]
    assert "--port" in lines[0]
    assert "startup complete" not in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_every_serve_option_reads_its_environment_variable_and_help_names_it(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "promptory", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(tmp_path, COLUMNS="200"),
        check=False,
    )
    assert result.returncode == 0
    for option in SERVE_OPTIONS:
        assert option.env.startswith("PROMPTORY_")
        assert f"env {option.env}" in result.stdout, option.name
    assert len({option.env for option in SERVE_OPTIONS}) == len(SERVE_OPTIONS)


def test_serve_takes_repository_port_and_options_from_the_environment(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    port = _free_port()
    env = {
        "PROMPTORY_REPO": str(repo.path),
        "PROMPTORY_PORT": str(port),
        "PROMPTORY_HOST": "127.0.0.1",
        "PROMPTORY_ORG": "acme",
        "PROMPTORY_APP": "single",
        "PROMPTORY_LOG_LEVEL": "warning",
        "PROMPTORY_RATE_LIMIT": "1",
    }
    with _running(tmp_path, **env) as process:
        url = f"http://127.0.0.1:{port}"
        assert _wait_until_up(url, process).status_code == 200
        headers = {"Authorization": f"Bearer {KEY}"}
        # Single-app mode from PROMPTORY_ORG/PROMPTORY_APP: the file is acme/single's.
        first = httpx.get(f"{url}/api/v1/prompts/by-name/acme/single/greeting", headers=headers)
        assert first.status_code == 200, first.text
        # PROMPTORY_RATE_LIMIT=1: the second request of the minute is refused.
        assert httpx.get(f"{url}/api/v1/prompts", headers=headers).status_code == 429


def test_the_command_line_wins_over_the_environment(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    port = _free_port()
    with _running(
        tmp_path, str(repo.path), "--port", str(port), PROMPTORY_PORT="1", PROMPTORY_REPO="/nope"
    ) as process:
        assert _wait_until_up(f"http://127.0.0.1:{port}", process).status_code == 200


def test_a_bad_environment_value_is_a_usage_error_naming_the_variable(tmp_path: Path) -> None:
    result = _serve(tmp_path, str(tmp_path), PROMPTORY_PORT="eighty")
    assert result.returncode == 2
    assert "$PROMPTORY_PORT='eighty': not a number" in result.stderr
    # Another command does not care about serve's variables.
    other = subprocess.run(
        [sys.executable, "-m", "promptory", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(tmp_path, PROMPTORY_PORT="eighty"),
        check=False,
    )
    assert other.returncode == 0


def test_serve_without_a_repository_says_how_to_give_one(tmp_path: Path) -> None:
    result = _serve(tmp_path)
    assert result.returncode == 2
    assert "give the repository PATH or --pull-from URL" in result.stderr
    assert "PROMPTORY_REPO" in result.stderr


def test_serve_speaks_tls_with_the_certificate_given(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = (tmp_path / n for n in ("cert.pem", "key.pem", "ca.pem"))
    certificate.cert_chain_pems[0].write_to_path(str(certfile))
    certificate.private_key_pem.write_to_path(str(keyfile))
    authority.cert_pem.write_to_path(str(cafile))
    repo = _repo(tmp_path)
    port = _free_port()
    with _running(
        tmp_path,
        str(repo.path),
        "--port",
        str(port),
        "--ssl-certfile",
        str(certfile),
        PROMPTORY_SSL_KEYFILE=str(keyfile),
    ) as process:
        context = ssl.create_default_context(cafile=str(cafile))
        health = _wait_until_up(f"https://127.0.0.1:{port}", process, verify=context)
        assert health.status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)


def test_a_certificate_that_cannot_be_read_is_one_clear_error(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate\n")
    result = _serve(tmp_path, str(repo.path), "--port", "0", "--ssl-certfile", str(bad))
    assert result.returncode == 1
    assert f"cannot use the TLS certificate {bad}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_key_file_without_a_certificate_is_a_usage_error(tmp_path: Path) -> None:
    result = _serve(tmp_path, str(tmp_path), "--ssl-keyfile", "k.pem")
    assert result.returncode == 2
    assert "--ssl-keyfile needs --ssl-certfile" in result.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("prompts.example.com", False),
    ],
)
def test_only_loopback_addresses_are_served_without_a_tls_warning(
    host: str, loopback: bool
) -> None:
    assert is_loopback(host) is loopback
