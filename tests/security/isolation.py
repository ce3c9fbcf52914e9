"""Hostile input handled in a child process, so a regression cannot take the test run down.

A template or front matter that escapes the render limits may compute ``9 ** 99999999`` while
holding the GIL, or allocate gigabytes. Done in the pytest process, that would hang the run or
exhaust a shared machine's memory. Here it happens in a child with an address-space cap
(`MEMORY_LIMIT`), which the parent kills after a bounded wait and starts again, so the test
that found the problem fails in seconds and the next one starts from a fresh child.

The children run promptory's real code:

* `IsolatedServer`: ``create_app`` served by uvicorn (``BackgroundServer``) over a
  repository; the parent talks to it over HTTP on 127.0.0.1.
* `AnalysisWorker`: the SDK's local path for one body (`Prompt.needs_server_render()`,
  `Prompt.variables`, `Prompt.render()`), one JSON request and answer per line.

* `run_module`: a command (``promptory lint``) run to its end or killed.

Run as a script, this module is the child: ``python isolation.py serve REPO prepare|lazy``,
``python isolation.py analyse`` or ``python isolation.py module NAME ARGS...``.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import httpx

__all__ = ["MEMORY_LIMIT", "AnalysisWorker", "ChildTimeout", "IsolatedServer", "run_module"]

#: The address space a child may map. Generous for a server (threads reserve stacks and
#: malloc arenas), small next to what `[1] * 10**9` (8 GB) or its repr would take.
MEMORY_LIMIT = 4 * 1024**3

_STOP_WAIT = 2.0  # seconds a child gets to exit on its own before it is killed


class ChildTimeout(AssertionError):
    """The child did not answer in time (it was killed and will be started again)."""


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PROMPTORY_API_KEYS", None)
    env["MALLOC_ARENA_MAX"] = "2"  # fewer per-thread arenas: less address space reserved
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _read_line(stream: IO[bytes], timeout: float) -> bytes | None:
    """One line from a child's pipe, or None if none came within `timeout` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return None
    line = stream.readline()
    return line or None


def _why(process: subprocess.Popen[bytes], log: IO[bytes], waited: float) -> str:
    """Why a child gave no answer: still running after `waited` seconds, or exited (with
    the end of what it wrote to stderr)."""
    code = process.poll()
    if code is None:
        return f"no answer within {waited:g} s"
    log.seek(0)
    tail = log.read()[-1500:].decode("utf-8", "replace").strip()
    return f"exited with code {code}: ...{tail}"


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    """Close the child's stdin (its signal to exit), wait a little, kill it if need be."""
    if process is None:
        return
    try:
        if process.stdin is not None:
            process.stdin.close()
        process.wait(_STOP_WAIT)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait(_STOP_WAIT)
    if process.stdout is not None:
        process.stdout.close()


def run_module(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m module args...`` in a memory-capped child, killed after `timeout` seconds.

    Raises:
        ChildTimeout: the command did not end within `timeout` seconds.
    """
    try:
        return subprocess.run(
            [sys.executable, __file__, "module", module, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_child_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ChildTimeout(
            f"python -m {module} {' '.join(args)}: not done in {timeout} s"
        ) from None


class IsolatedServer:
    """A promptory server over `repo` in a memory-capped child process.

    Args:
        repo: the repository to serve.
        api_key: the (unscoped) key the server accepts.
        other_keys: more (unscoped) keys it accepts.
        prepare_in_background: as `ServerSettings`; off by default, so a hostile file is
            only parsed or compiled when a request needs it and a regression shows up in
            that request.
        start_timeout: seconds to wait for the child to serve.
    """

    def __init__(
        self,
        repo: Path,
        api_key: str,
        *,
        other_keys: tuple[str, ...] = (),
        prepare_in_background: bool = False,
        start_timeout: float = 30.0,
    ) -> None:
        self.repo = repo
        self.api_key = api_key
        self.other_keys = other_keys
        self.prepare_in_background = prepare_in_background
        self.start_timeout = start_timeout
        self.url = ""
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> IsolatedServer:
        """Start the child; returns once it serves `url`.

        Raises:
            ChildTimeout: the child did not serve within `start_timeout` (it is stopped).
        """
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self._process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "serve",
                str(self.repo),
                "prepare" if self.prepare_in_background else "lazy",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=_child_env({"PROMPTORY_API_KEYS": ",".join((self.api_key, *self.other_keys))}),
        )
        assert self._process.stdout is not None
        line = _read_line(self._process.stdout, self.start_timeout)
        if line is None:
            why = _why(self._process, self._log, self.start_timeout)
            self.stop()
            raise ChildTimeout(f"isolated server did not start: {why}")
        self.url = line.decode().strip()
        return self

    def stop(self) -> None:
        """Stop the child (killed if it does not exit within a few seconds)."""
        _stop(self._process)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        """What the child has logged (written to stderr) so far."""
        if self._log is None:
            return ""
        self._log.seek(0)
        data = self._log.read()  # leaves the shared offset at the end, where the child writes
        return data.decode("utf-8", "replace")

    def responsive(self, timeout: float = 2.0) -> bool:
        """Whether the child answers ``/health`` within `timeout` seconds."""
        if self._process is None or self._process.poll() is not None:
            return False
        try:
            return httpx.get(f"{self.url}/health", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def ensure_responsive(self) -> None:
        """Start the child again if it no longer answers (a previous test froze it)."""
        if not self.responsive():
            self.stop()
            self.restarts += 1
            self.start()

    def wait_for_commit(self, sha: str, timeout: float = 5.0) -> None:
        """Wait (bounded) until ``/health`` reports commit `sha`.

        Raises:
            AssertionError: not served within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).json()["commit"] == sha:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"commit {sha} not served within {timeout} s")
            time.sleep(0.05)

    def client(self, timeout: float = 5.0, key: str | None = None) -> httpx.Client:
        """An httpx client for the server, sending `key` (default: `api_key`)."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key or self.api_key}"},
            timeout=timeout,
        )

    def __enter__(self) -> IsolatedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class AnalysisWorker:
    """The SDK's local handling of a prompt body, in a memory-capped child process."""

    def __init__(self, *, start_timeout: float = 30.0) -> None:
        self.start_timeout = start_timeout
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> AnalysisWorker:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "analyse"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_child_env(),
        )
        assert self._process.stdout is not None
        if _read_line(self._process.stdout, self.start_timeout) != b"ready\n":
            _stop(self._process)
            raise ChildTimeout(f"analysis worker did not start within {self.start_timeout} s")
        return self

    def stop(self) -> None:
        _stop(self._process)
        self._process = None

    def run(
        self, name: str, body: str, variables: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        """Build `Prompt` o/a/`name` from `body`, ask whether it needs the server, list its
        variables, then render it with `variables`, plainly and strictly.

        Returns:
            ``{"needs_server", "variables", "seconds", "render", "strict"}``: ``seconds``
            for the first two steps; each render is ``{"text", "seconds"}`` or ``{"error_type",
            "code", "message", "seconds"}``. ``{"crash"}`` instead when a step raised
            something else.

        Raises:
            ChildTimeout: no answer within `timeout` seconds (the child is restarted).
        """
        if self._process is None or self._process.poll() is not None:
            self.start()
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        request = {"name": name, "body": body, "variables": variables}
        process.stdin.write(json.dumps(request).encode() + b"\n")
        process.stdin.flush()
        line = _read_line(process.stdout, timeout)
        if line is None:
            self.stop()
            self.restarts += 1
            raise ChildTimeout(f"{name}: no answer within {timeout} s (the child was stopped)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def __enter__(self) -> AnalysisWorker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- the children -----------------------------------------------------------------------------


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _serve(repo: str, preparation: str) -> None:
    from promptory.server.app import ServerSettings, create_app
    from promptory.server.keys import KeyRing
    from promptory.server.runner import BackgroundServer

    settings = ServerSettings(
        repo=repo,
        keyring=KeyRing.from_sources(),
        rate_limit=0,
        poll_interval=0.05,
        prepare_in_background=preparation == "prepare",
    )
    server = BackgroundServer(create_app(settings)).start()
    print(server.url, flush=True)
    sys.stdin.read()  # until the parent closes the pipe
    server.stop()


def _analyse() -> None:
    from promptory import Prompt, PromptoryError

    def outcome(prompt: Prompt, variables: dict[str, Any], strict: bool) -> dict[str, Any]:
        started = time.monotonic()
        try:
            result: dict[str, Any] = {"text": prompt.render(variables, strict=strict)}
        except PromptoryError as exc:
            result = {"error_type": type(exc).__name__, "code": exc.code, "message": str(exc)}
        result["seconds"] = time.monotonic() - started
        return result

    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        name, variables = request["name"], request["variables"]
        started = time.monotonic()
        answer: dict[str, Any] = {}
        try:
            prompt = Prompt(id=name, name=name, org="o", app="a", body=request["body"])
            answer["needs_server"] = prompt.needs_server_render()
            answer["variables"] = list(prompt.variables)
            answer["seconds"] = time.monotonic() - started
            answer["render"] = outcome(prompt, variables, strict=False)
            answer["strict"] = outcome(prompt, variables, strict=True)
        except Exception as exc:  # reported, so the parent can say what escaped
            answer["crash"] = repr(exc)[:500]
        print(json.dumps(answer), flush=True)


def _run_module(module: str, args: list[str]) -> None:
    import runpy

    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.code if isinstance(exc.code, int) else 1)


if __name__ == "__main__":
    _limit_memory()
    command = sys.argv[1]
    if command == "serve":
        _serve(sys.argv[2], sys.argv[3])
    elif command == "analyse":
        _analyse()
    elif command == "module":
        _run_module(sys.argv[2], sys.argv[3:])
    else:
        raise SystemExit(f"unknown command {command!r}")
    # Threads stuck in a runaway computation must not keep the child alive.
    os._exit(0)
