"""The real processes of the cluster test: `Replica` (``promptory serve --pull-from`` as a
child process) and `HAProxy` (the haproxy binary with ``haproxy.cfg`` beside this file).

Every start waits, bounded, until the process answers; every stop is SIGTERM then SIGKILL,
bounded too. Logs go to files in the test's temporary folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from support.services import free_port, need_binary

__all__ = ["HAProxy", "Replica"]

CONFIG = Path(__file__).with_name("haproxy.cfg")


def _wait(check: object, process: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not up within {timeout} s")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


class Replica:
    """``promptory serve --pull-from`` on a port of its own, restartable on that port with
    the same data directory."""

    def __init__(self, name: str, workdir: Path, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.workdir = workdir
        self.args = args
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Replica:
        """Start and wait until /ready answers 200."""
        command = [
            sys.executable,
            "-m",
            "promptory",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.workdir / "mirror"),
            *self.args,
        ]
        log = (self.workdir / "server.log").open("ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        log.close()
        _wait(
            lambda: httpx.get(f"{self.url}/ready", timeout=2).status_code == 200,
            self.process,
            timeout,
            f"replica {self.name}",
        )
        return self

    def kill(self) -> None:
        """SIGKILL: a crash, no graceful anything."""
        _stop(self.process, signal.SIGKILL)
        self.process = None

    def stop(self) -> None:
        _stop(self.process)
        self.process = None

    def log(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


class HAProxy:
    """HAProxy on a free loopback port in front of `replicas`."""

    def __init__(self, workdir: Path, replicas: list[Replica]) -> None:
        self.binary = need_binary("haproxy")
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port} check" for r in replicas)
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(
            CONFIG.read_text()
            .replace("{bind}", f"127.0.0.1:{self.port}")
            .replace("{servers}", servers)
        )
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> HAProxy:
        """Start (foreground mode) and wait until a request through it reaches a replica."""
        log = (self.workdir / "haproxy.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "-f", str(self.config), "-db"], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        _wait(
            lambda: httpx.get(f"{self.url}/ready", timeout=2).status_code == 200,
            self.process,
            timeout,
            "haproxy",
        )
        return self

    def stop(self) -> None:
        _stop(self.process)
        self.process = None
