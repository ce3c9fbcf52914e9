"""A ``--pull-from`` URL's password never reaches the output of ``promptory serve``, even
when it holds a character that breaks URL parsing (an unescaped ``#``, ``?`` or ``/``, as
tokens often do): the parser's error quoted it as the port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptory.server.keys import generate_key

SECRET = "hunter2-s3cret"


@pytest.mark.parametrize("separator", ["#", "?", "/"])
def test_a_password_that_breaks_parsing_is_not_printed(tmp_path: Path, separator: str) -> None:
    url = f"https://user:{SECRET}{separator}rest@127.0.0.1:1/prompts.git"
    out = tmp_path / "out.txt"
    env = {**os.environ, "PROMPTORY_API_KEYS": generate_key(test=True)}
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "promptory", "serve", "--pull-from", url),
                *("--data-dir", str(tmp_path / "mirror"), "--host", "127.0.0.1", "--port", "0"),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
        try:
            # Until it exits or has tried (and failed) to fetch: bounded.
            deadline = time.monotonic() + 60
            while process.poll() is None and time.monotonic() < deadline:
                if b"following" in out.read_bytes() or b"cannot fetch" in out.read_bytes():
                    break
                time.sleep(0.05)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    text = out.read_text("utf-8", "replace")
    assert text, "serve printed nothing"
    assert SECRET not in text, text
