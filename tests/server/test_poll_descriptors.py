"""The commit poller runs out of file descriptors, says so once, and carries on.

The store polls in a child process that then opens files until ``EMFILE``; a commit made
meanwhile cannot be read. Once the files are closed, the commit is served.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import promptory
from support.gitrepo import PromptRepo

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_NOFILE")

SRC = str(Path(promptory.__file__).resolve().parents[1])

CHILD = textwrap.dedent(
    """
    import json, logging, resource, sys, threading, time
    from promptory.server.store import PromptStore

    records = []
    errors = threading.Event()

    class Collect(logging.Handler):
        def emit(self, record):
            records.append((record.levelname, record.getMessage(), record.exc_info is not None))
            if record.levelno >= logging.ERROR:
                errors.set()

    logger = logging.getLogger("promptory.server")
    logger.addHandler(Collect())
    logger.setLevel(logging.INFO)
    store = PromptStore(sys.argv[1], poll_interval=0.05)
    store.start()
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
    held = []
    try:
        while len(held) < 1000:
            held.append(open("/dev/null"))
    except OSError:
        pass
    print("exhausted", flush=True)
    line = sys.stdin.readline()  # the parent has committed
    errors.wait(20)
    # A window of several polls with no descriptor: each fails, and backs off.
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        time.sleep(0.05)
    during = store.snapshot.commit
    for f in held:
        f.close()
    deadline = time.monotonic() + 20
    while store.snapshot.commit == during and time.monotonic() < deadline:
        time.sleep(0.05)
    after = store.snapshot.commit
    alive = store._thread is not None and store._thread.is_alive()
    store.stop()
    print(json.dumps({"during": during, "after": after, "alive": alive, "records": records}))
    """
)


def test_the_poller_survives_running_out_of_descriptors_and_says_it_once(
    tmp_path: Path,
) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("o", "a", "first", "one\n")
    first = repo.commit()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(repo.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "exhausted\n"  # bounded by the test's timeout
        repo.write_prompt("o", "a", "second", "two\n")
        second = repo.commit()
        out, err = child.communicate("committed\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=15)
    assert child.returncode == 0, err
    result = json.loads(out)
    assert result["during"] == first  # unreadable while out of descriptors: the last commit
    assert result["after"] == second  # read once descriptors are back
    assert result["alive"]
    errors = [(message, trace) for level, message, trace in result["records"] if level == "ERROR"]
    assert len(errors) == 1, errors
    message, traceback = errors[0]
    assert "out of file descriptors" in message
    assert "ulimit -n" in message
    assert not traceback
