"""``promptory demo``: the whole product on this machine, with nothing to set up.

It builds a git repository from the example prompts shipped in the package, starts a real
server on a free loopback port, mints an API key, and walks through the SDK: fetch by id and
by name, environments, a local render, a server render that resolves an include, a commit
going live without a restart, and the cache statistics. Then it stops everything — or,
with ``--serve``, keeps the server running (printing the web UI's address and an admin key)
until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from ._common import MissingExtra, Subcommands, fail, import_extra

__all__ = ["add_demo", "cmd_demo", "run_demo"]

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"
_WIDTH = 88


def _title(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, _WIDTH - len(text) - 4))


def _show(label: str, value: Any) -> None:
    print(f"  {label:<22} {value}")


def _block(text: str) -> None:
    for line in text.rstrip("\n").splitlines() or [""]:
        wrapped = textwrap.wrap(line, _WIDTH - 6) or [""]
        for piece in wrapped:
            print(f"    | {piece}")


def run_demo(workdir: Path, *, serve: bool = False, port: int = 0) -> int:
    """Run the walk-through with its repository in `workdir`; return the exit status.

    Args:
        serve: keep the server running after the walk-through, until Ctrl-C.
        port: the port to serve on (0: a free one).
    """
    commits = import_extra("promptory.server.commits")
    app_module = import_extra("promptory.server.app")
    keys = import_extra("promptory.server.keys")
    runner = import_extra("promptory.server.runner")
    from .. import AsyncPromptClient, PromptClient

    repo_path = workdir / "prompts"
    repo = commits.init_repository(repo_path)
    first = commits.commit_files(repo, commits.example_prompts(), "Example prompts")
    # An admin key in a keys file of this run: the web UI's keys page can then mint more.
    keys_file = workdir / "keys.json"
    api_key, _ = keys.add_key(keys_file, test=True, label="demo", admin=True)
    settings = app_module.ServerSettings(
        repo=str(repo_path),
        keyring=keys.KeyRing.from_sources(keys_file=keys_file, environ={}),
        poll_interval=0.2,
    )

    _title("A prompt repository and a server")
    _show("repository", repo_path)
    _show("commit", first[:12])
    for path in sorted(commits.example_prompts()):
        print(f"    {path}")

    with runner.BackgroundServer(app_module.create_app(settings), port=port) as server:
        _show("server", server.url)
        _show("API key", api_key[:12] + "…  (minted for this run)")

        with PromptClient(server.url, api_key, cache_ttl=0.5) as client:
            _title("Fetch by id")
            prompt = client.get(MEDITATION_ID)
            print(f'  client.get("{MEDITATION_ID}")')
            _show("name", prompt.name)
            _show("version", prompt.version)
            _show("model", dict(prompt.model))
            _show("git_sha", (prompt.git_sha or "")[:12])

            _title("Fetch by name, with and without an environment")
            best = client.get_by_name("myorg", "myapp", "greeting")
            dev = client.get_by_name("myorg", "myapp", "greeting", environment="development")
            print('  client.get_by_name("myorg", "myapp", "greeting")')
            _show("-> environment", f"{best.environment} (the most promoted)")
            print('  client.get_by_name("myorg", "myapp", "greeting", environment="development")')
            _show("-> environment", dev.environment)

            _title("Render locally (sandboxed Jinja2)")
            variables = {
                "user": {"display_name": "Alice", "elevenlabs_voice_id": "abc123"},
                "vision": {"identity_statement": "I am calm and confident"},
                "duration_minutes": 5,
            }
            print(f"  prompt.render({variables})")
            _block(prompt.render(variables))
            print(f"  prompt.variables = {prompt.variables}")

            _title("Render on the server: an {% include %} resolved there")
            coach = client.get_by_name("myorg", "myapp", "coach_checkin")
            print(f"  {coach.qualified_name} includes {list(coach.includes)}")
            rendered = client.render(coach.id, {"user_name": "Alice", "goal": "a 10 minute walk"})
            print(f'  client.render("{coach.id[:8]}…", {{"user_name": "Alice", ...}})')
            _block(rendered)

            _title("A commit goes live without a restart")
            print("  before:")
            _block(best.render({"user_name": "Alice"}))
            greeting_path = "myorg/myapp/greeting.md"
            old = (repo_path / greeting_path).read_text(encoding="utf-8")
            new = old.replace("welcome back to MyApp.", "good to see you again!").replace(
                "version: 2.0.0", "version: 2.1.0"
            )
            sha = commits.commit_files(repo, {greeting_path: new.encode()}, "Warmer greeting")
            _show("committed", f"{sha[:12]} (greeting v2.1.0)")
            changed = _wait_for_version(client, "2.1.0")
            print("  after (served stale at once, refreshed in the background):")
            _block(changed.render({"user_name": "Alice"}))

            _title("The cache")
            for _ in range(1000):
                client.get_by_name("myorg", "myapp", "greeting")
            started = time.perf_counter()
            for _ in range(10_000):
                client.get_by_name("myorg", "myapp", "greeting")
            per_hit = (time.perf_counter() - started) / 10_000 * 1e9
            _show("a cached get_by_name", f"{per_hit:.0f} ns")
            for key, value in client.cache_stats().items():
                _show(key, value)

        _title("The async client")
        name = asyncio.run(_async_fetch(AsyncPromptClient, server.url, api_key))
        print('  await client.get_by_name("futureself", "meditate", "meditation_script_relax")')
        _show("-> name", name)

        if serve:
            _explore(server.url, api_key, repo_path)

    _title("Done: the server is stopped and the repository removed")
    return 0


def _explore(url: str, api_key: str, repo_path: Path) -> None:
    """Print where to look, then wait for Ctrl-C."""
    _title("Explore: the server keeps running until Ctrl-C")
    _show("web UI", f"{url}/ui/login")
    _show("API key", f"{api_key}  (admin; sign in with it)")
    _show("repository", f"{repo_path}  (commit to it: changes are live within a second)")
    print("  from another terminal:")
    print(f"    export PROMPTORY_BASE_URL={url} PROMPTORY_API_KEY={api_key}")
    print("    promptory list myorg/myapp; promptory log myorg/myapp/greeting")
    print("  Press Ctrl-C to stop.")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print()


def _wait_for_version(client: Any, version: str, timeout: float = 10.0) -> Any:
    """Call get_by_name until the new version is served (bounded in time)."""
    deadline = time.monotonic() + timeout
    while True:
        prompt = client.get_by_name("myorg", "myapp", "greeting")
        if prompt.version == version or time.monotonic() > deadline:
            return prompt
        time.sleep(0.1)


async def _async_fetch(cls: Any, url: str, api_key: str) -> str:
    async with cls(url, api_key) as client:
        prompt = await client.get_by_name("futureself", "meditate", "meditation_script_relax")
        return str(prompt.qualified_name)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo in a temporary directory."""
    try:
        with tempfile.TemporaryDirectory(prefix="promptory-demo-") as workdir:
            return run_demo(Path(workdir), serve=args.serve, port=args.port)
    except MissingExtra as exc:
        return fail(str(exc), 2)


def add_demo(commands: Subcommands[argparse.ArgumentParser]) -> None:
    """Register demo."""
    demo = commands.add_parser(
        "demo",
        help="run a real server over example prompts and walk through the SDK",
        description="Build a git repository of example prompts, serve it on a free loopback "
        "port, and show the SDK at work. Nothing to configure; everything is removed after.",
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="keep the server running after the walk-through, with the web UI's address and "
        "an admin key printed, until Ctrl-C",
    )
    demo.add_argument(
        "--port", type=int, default=0, help="with --serve: the port (default: a free one)"
    )
    demo.set_defaults(handler=cmd_demo)
