"""``promptory demo --serve``: the walk-through, then a running server with the web UI's
address and an admin key printed, until Ctrl-C (a clean exit 0)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

import promptory

from .conftest import csrf_of

SRC = str(Path(promptory.__file__).resolve().parents[1])


def test_demo_serve_keeps_the_server_and_the_ui_until_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTORY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "promptory", "demo", "--serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout])
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not any("Press Ctrl-C" in line for line in seen):
            assert process.poll() is None, "".join(seen)
            remaining = deadline - time.monotonic()
            assert remaining > 0, "demo --serve printed no UI address within 120 s"
            try:
                seen.append(lines.get(timeout=min(remaining, 1.0)))
            except queue.Empty:
                continue
        out = "".join(seen)
        url = re.search(r"web UI\s+(http://127\.0\.0\.1:\d+)/ui/login", out)
        key = re.search(r"API key\s+(pm_test_\S+)\s+\(admin", out)
        assert url is not None and key is not None, out
        with httpx.Client(base_url=url.group(1), timeout=10) as browser:
            form = browser.get("/ui/login")
            signed_in = browser.post(
                "/ui/login", data={"api_key": key.group(1), "csrf_token": csrf_of(form.text)}
            )
            assert signed_in.status_code == 303
            assert "myapp" in browser.get("/ui/apps").text
            assert browser.get("/ui/keys").status_code == 200  # the key is an admin key
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        reader.join(10)
        errors = process.stderr.read() if process.stderr is not None else ""
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert "Done: the server is stopped" in "".join(rest)
    assert "Traceback" not in errors
