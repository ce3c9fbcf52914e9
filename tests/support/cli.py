"""The ``promptory`` command for tests: run for real in a child process, or in this process.

Both return a `subprocess.CompletedProcess` (``returncode``, ``stdout``, ``stderr`` as text),
so a test reads the same whichever way it ran:

* `promptory_command(*args)`: ``python -m promptory ARGS`` in a child process. Keep one or
  two tests per command on it: they prove the entry point, the exit status the shell sees,
  and what only a real process has (signals, a port held by another process).
* `promptory_in_process(*args)`: ``promptory.cli.main(ARGS)`` with the environment, standard
  streams and root logging swapped for the call, as the child would have them. About a
  hundred times quicker than starting an interpreter, and coverage sees it directly.

`env`, when given, is the whole environment of the call (as `subprocess.run` takes it);
omitted, the command sees this process's environment.
"""

from __future__ import annotations

import gc
import io
import logging
import os
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from promptory.cli import main

__all__ = ["promptory_command", "promptory_in_process"]


def promptory_command(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """``python -m promptory ARGS`` in a child process, killed after `timeout` seconds."""
    return subprocess.run(
        [sys.executable, "-m", "promptory", *args],
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def promptory_in_process(
    *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``promptory ARGS`` through `promptory.cli.main` in this process.

    What the command writes to `sys.stdout` and `sys.stderr` (its logging included) is
    captured; ``SystemExit`` (argparse's usage errors, ``--help``) becomes the return code,
    and an uncaught exception a traceback on stderr with code 1, as in a child process.
    ResourceWarnings of what the command left unclosed are ignored, as Python's default
    filters ignore them in a child, and collected before returning, so they cannot fail a
    later test at random.
    """
    stdout, stderr = _Stream(), _Stream()
    argv = ["promptory", *args]
    with _environment(env), _streams(stdout, stderr), _root_logging(), _unclosed_ignored():
        saved_argv = sys.argv
        sys.argv = argv
        try:
            code = _exit_code(main(list(args)))
        except SystemExit as exc:
            code = _exit_code(exc.code, stderr)
        except Exception:
            traceback.print_exc(file=stderr)
            code = 1
        finally:
            sys.argv = saved_argv
    return subprocess.CompletedProcess(argv, code, stdout.text(), stderr.text())


class _Stream(io.TextIOWrapper):
    """A text stream over bytes, like a child's pipe: UTF-8, no terminal."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", write_through=True)

    def text(self) -> str:
        """What was written, decoded as ``subprocess.run(text=True)`` decodes a pipe."""
        self.flush()
        raw = self.buffer.getvalue()  # type: ignore[attr-defined]
        return io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8").read()


def _exit_code(code: object, stderr: io.TextIOBase | None = None) -> int:
    """The status a process exiting with `code` reports (as `sys.exit` maps it)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    if stderr is not None:
        print(code, file=stderr)
    return 1


@contextmanager
def _environment(env: Mapping[str, str] | None) -> Iterator[None]:
    """`os.environ` is `env` during the block (unchanged when `env` is None)."""
    if env is None:
        yield
        return
    saved = dict(os.environ)
    try:
        for key in saved.keys() - env.keys():
            del os.environ[key]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def _streams(stdout: io.TextIOBase, stderr: io.TextIOBase) -> Iterator[None]:
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.StringIO()  # as subprocess.DEVNULL: an empty standard input
    sys.stdout, sys.stderr = stdout, stderr  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


@contextmanager
def _unclosed_ignored() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()


@contextmanager
def _root_logging() -> Iterator[None]:
    """A root logger without handlers during the block, as in a fresh process, so the
    command's own ``logging.basicConfig`` sends its records to the captured stderr."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
