"""Every code example of the SDK's specification, run as written against promptory's server.

The examples are copied verbatim from the specification (the SDK README). Only the server's
URL and the API key are replaced, and the id abbreviated as "550e8400-..." is spelled out.
The repository holds prompts with the names the examples use, including the placeholders
``org_name/app_name/prompt_name``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.gitrepo import PromptRepo
from support.servers import copy_examples

QUICK_START = """
from promptory import PromptClient

client = PromptClient(
    base_url="http://localhost:8000",
    api_key="pm_live_...",
)

# Fetch a prompt by UUID
prompt = client.get("550e8400-e29b-41d4-a716-446655440000")
print(prompt.name)   # "meditation_script_relax"
print(prompt.body)   # Raw Jinja2 template

# Fetch by fully qualified name
prompt = client.get_by_name("myorg", "myapp", "meditation_script_relax")

# Render with variables
rendered = prompt.render(variables={
    "user": {"display_name": "Alice", "elevenlabs_voice_id": "abc123"},
    "vision": {"identity_statement": "I am confident"},
})
# rendered is a string ready to send to an LLM

client.close()
"""

CONTEXT_MANAGER = """
with PromptClient(base_url="http://localhost:8000", api_key="pm_live_...") as client:
    prompt = client.get_by_name("myorg", "myapp", "greeting")
    print(prompt.render({"user_name": "Alice"}))
"""

ASYNC_CLIENT = """
import asyncio
from promptory import AsyncPromptClient

async def main():
    async with AsyncPromptClient(
        base_url="http://localhost:8000",
        api_key="pm_live_...",
    ) as client:
        prompt = await client.get_by_name("myorg", "myapp", "greeting")
        rendered = prompt.render(variables={"name": "Alice"})
        print(rendered)

asyncio.run(main())
"""

CLIENT_OPTIONS = """
client = PromptClient(
    base_url="http://localhost:8000",  # Promptory server URL
    api_key="pm_live_...",              # API key (generate in Promptory web UI)
    cache_ttl=300,          # Cache TTL in seconds (default: 300)
    cache_max_size=1000,    # Max cached prompts (default: 1000)
    timeout=10.0,           # Request timeout in seconds (default: 10.0)
    retry_count=3,          # Retry attempts on transport failure (default: 3)
)
"""

FETCHING = """
prompt = client.get("550e8400-e29b-41d4-a716-446655440000")
prompt = client.get_by_name("org_name", "app_name", "prompt_name")
prompt = client.get_by_name(
    "myorg", "myapp", "greeting",
    environment="production"
)
# Fetch + render in one call
rendered = client.render("550e8400-e29b-41d4-a716-446655440000", variables={"name": "Alice"})
"""

PROMPT_OBJECT = """
# Render with Jinja2 (sandboxed environment)
rendered = prompt.render(variables={
    "user": {"display_name": "Alice"},
    "items": ["focus", "calm", "gratitude"],
})
model_name = prompt.model.get("default")         # "gemini-2.0-flash"
temperature = prompt.model.get("temperature", 0.7)
max_tokens = prompt.model.get("max_tokens", 4000)
fallbacks = prompt.model.get("fallback", [])
"""

CACHE_MANAGEMENT = """
# View cache stats
stats = client.cache_stats()
# {
#   "total_entries": 42,
#   "fresh_entries": 38,
#   "stale_entries": 4,
#   "max_size": 1000,
#   "ttl": 300,
#   "oldest_age_seconds": 287.5
# }

# Invalidate entries matching a prompt name
removed = client.cache_invalidate("meditation_script_relax")

# Clear entire cache
removed = client.cache_invalidate_all()
"""

ERROR_HANDLING = """
from promptory import PromptoryError, NotFoundError, AuthenticationError
from promptory.exceptions import RateLimitError

try:
    prompt = client.get("missing-id")
except NotFoundError:
    print("Prompt not found")
except AuthenticationError:
    print("Invalid or expired API key")
except RateLimitError as e:
    print(f"Rate limited. Retry after {e.retry_after}s")
except PromptoryError as e:
    print(f"API error (HTTP {e.status_code}): {e}")
"""

INTEGRATION = """
from promptory import AsyncPromptClient

prompt_client = AsyncPromptClient(
    base_url="https://prompts.example.com",
    api_key="pm_live_...",
    cache_ttl=300,
)

async def generate_meditation(user, vision):
    # Fetch prompt — cached after first call
    prompt = await prompt_client.get_by_name(
        "futureself", "meditate", "meditation_script_relax"
    )

    # Render Jinja2 template with user context
    rendered = prompt.render(variables={
        "user": {"display_name": user.name, "elevenlabs_voice_id": user.voice_id},
        "vision": {"identity_statement": vision.statement, "deep_why": vision.why},
        "duration_minutes": 10,
    })

    # Send to LLM with model config from prompt metadata
    response = await llm.chat(
        messages=[{"role": prompt.role or "system", "content": rendered}],
        model=prompt.model["default"],
        temperature=prompt.model.get("temperature", 0.7),
        max_tokens=prompt.model.get("max_tokens", 4000),
    )

    return response.text
"""


@dataclass
class ServeCommand:
    """`promptory serve` running as its own process: what the examples need of a server."""

    url: str
    api_key: str


@contextlib.contextmanager
def serve_command(repo: PromptRepo, api_key: str) -> Iterator[ServeCommand]:
    """Run ``python -m promptory serve`` over `repo` on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PROMPTORY_API_KEYS": api_key}
    process = subprocess.Popen(
        [sys.executable, "-m", "promptory", "serve", str(repo.path), "--port", str(port),
         "--keys-file", str(repo.path.parent / "no-keys.json"), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("promptory serve did not start") from None
                time.sleep(0.05)
        yield ServeCommand(url, api_key)
    finally:
        process.terminate()
        process.communicate(timeout=10)


@pytest.fixture(scope="module", params=["in-process", "serve-command"])
def spec_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server over the example prompts plus the spec's placeholder org_name/app_name: the
    app in a thread, then the real `promptory serve` command."""
    from promptory.server.keys import generate_key
    from support.servers import running_server

    repo = PromptRepo(tmp_path_factory.mktemp("spec") / "prompts")
    copy_examples(repo)
    repo.write_prompt("org_name", "app_name", "prompt_name", "A prompt named {{ what }}.")
    repo.commit("the spec's prompts")
    key = "pm_live_" + generate_key().removeprefix("pm_live_")
    if request.param == "in-process":
        with running_server(repo, key) as server:
            yield server
    else:
        with serve_command(repo, key) as command:
            yield command


def run_example(code: str, server: Any, namespace: dict[str, Any]) -> str:
    """Execute an example with the server's URL and key; return what it printed."""
    code = (
        code.replace("http://localhost:8000", server.url)
        .replace("https://prompts.example.com", server.url)
        .replace('"pm_live_..."', repr(server.api_key))
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<spec example>", "exec"), namespace)
    return out.getvalue()


def test_quick_start(spec_server: Any) -> None:
    namespace: dict[str, Any] = {}
    printed = run_example(QUICK_START, spec_server, namespace)
    assert printed.startswith("meditation_script_relax\n")
    assert "Alice" in namespace["rendered"]
    assert "I am confident" in namespace["rendered"]


def test_context_manager(spec_server: Any) -> None:
    namespace: dict[str, Any] = {}
    run_example("from promptory import PromptClient\n", spec_server, namespace)
    printed = run_example(CONTEXT_MANAGER, spec_server, namespace)
    assert printed == "Hey Alice, welcome back to MyApp.\n\n"  # the body ends with a newline


def test_async_client(spec_server: Any) -> None:
    assert run_example(ASYNC_CLIENT, spec_server, {}) == "Hey Alice, welcome back to MyApp.\n\n"


def test_options_fetching_prompt_object_cache_and_errors_in_sequence(
    spec_server: Any,
) -> None:
    namespace: dict[str, Any] = {}
    run_example("from promptory import PromptClient\n", spec_server, namespace)
    run_example(CLIENT_OPTIONS, spec_server, namespace)
    run_example(FETCHING, spec_server, namespace)
    assert namespace["prompt"].environment == "production"
    assert namespace["rendered"].startswith("You are a calm, warm meditation guide.")
    run_example(PROMPT_OBJECT, spec_server, namespace)
    assert namespace["model_name"] == "gemini-2.0-flash"
    assert namespace["temperature"] == 0.3
    assert namespace["max_tokens"] == 4000
    assert namespace["fallbacks"] == []
    run_example(CACHE_MANAGEMENT, spec_server, namespace)
    stats = namespace["stats"]
    assert stats["total_entries"] == 3
    assert set(stats) >= {
        "total_entries", "fresh_entries", "stale_entries", "max_size", "ttl", "oldest_age_seconds",
    }  # fmt: skip
    assert namespace["removed"] == 2  # the cache was down to the greeting and the placeholder
    printed = run_example(ERROR_HANDLING, spec_server, namespace)
    assert printed == "Prompt not found\n"
    namespace["client"].close()


def test_cache_invalidate_example_removes_the_prompt_fetched_by_id_and_by_name(
    spec_server: Any,
) -> None:
    namespace: dict[str, Any] = {}
    run_example("from promptory import PromptClient\n", spec_server, namespace)
    run_example(CLIENT_OPTIONS, spec_server, namespace)
    client = namespace["client"]
    client.get("550e8400-e29b-41d4-a716-446655440000")
    client.get_by_name("myorg", "myapp", "meditation_script_relax")
    client.get_by_name("myorg", "myapp", "greeting")
    run_example(
        "removed = client.cache_invalidate('meditation_script_relax')", spec_server, namespace
    )
    assert namespace["removed"] == 2
    assert client.cache_stats()["total_entries"] == 1
    client.close()


class _LLM:
    """A stand-in for the example's LLM client, recording what it is sent."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def chat(self, **request: Any) -> Any:
        self.calls.append(request)
        return type("Response", (), {"text": "a calm script"})()


def test_integration_example(spec_server: Any) -> None:
    llm = _LLM()
    namespace: dict[str, Any] = {"llm": llm}
    run_example(INTEGRATION, spec_server, namespace)
    user = type("User", (), {"name": "Alice", "voice_id": "abc123"})()
    vision = type("Vision", (), {"statement": "I am calm", "why": "my family"})()

    async def main() -> str:
        try:
            return str(await namespace["generate_meditation"](user, vision))
        finally:
            await namespace["prompt_client"].aclose()

    assert asyncio.run(main()) == "a calm script"
    (request,) = llm.calls
    assert request["model"] == "gemini-2.0-flash"
    assert request["messages"][0]["role"] == "system"
    assert "Alice" in request["messages"][0]["content"]
    assert "my family" in request["messages"][0]["content"]


def test_the_spec_examples_are_the_ones_in_this_file() -> None:
    spec = Path(__file__).resolve().parents[3] / "shared" / "spec" / "sdk-readme.md"
    if not spec.exists():
        pytest.skip("the specification is not beside this checkout")
    text = spec.read_text(encoding="utf-8")
    for example in (QUICK_START, CONTEXT_MANAGER, ASYNC_CLIENT, CLIENT_OPTIONS, CACHE_MANAGEMENT,
                    ERROR_HANDLING, INTEGRATION):  # fmt: skip
        assert example.strip() in text
