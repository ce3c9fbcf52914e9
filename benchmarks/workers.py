"""``python -m benchmarks.workers``: server throughput with ``--workers 2`` against
``--workers 1``, measured in the same run (interleaved rounds, medians).

Each round starts ``promptory serve --workers N`` on a small repository (no rate limit),
waits for ``/ready``, and drives the by-name route with ``benchmarks.loadgen`` (a separate
process, keep-alive connections). The load generator takes a core of its own on this
2-core machine, so the ratio shows what a second worker adds next to it, not the ideal 2x.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from promptory.server.keys import generate_key

from .repos import small_repo

ROUNDS = 5
SECONDS = 3.0
CONNECTIONS = 32


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu(pid: int) -> float:
    """CPU seconds used so far by the server process `pid` and its workers."""
    parent = psutil.Process(pid)
    total = 0.0
    for process in [parent, *parent.children(recursive=True)]:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def _listening(pid: int, port: int) -> int:
    """How many of the server's processes listen on `port`."""
    parent = psutil.Process(pid)
    count = 0
    for process in [parent, *parent.children(recursive=True)]:
        for connection in process.net_connections():
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                count += 1
                break
    return count


def _throughput(repo: Path, workers: int, key: str, home: Path) -> tuple[float, float]:
    """(requests a second, server CPU microseconds a request)."""
    port = _free_port()
    env = {**os.environ, "PROMPTORY_API_KEYS": key, "HOME": str(home)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "promptory",
            "serve",
            str(repo),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--rate-limit",
            "0",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"server with {workers} workers did not start")
            time.sleep(0.05)
        while _listening(server.pid, port) < workers:  # every worker, not just the first
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all {workers} workers listen")
            time.sleep(0.05)
        cpu_before = _cpu(server.pid)
        load = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.loadgen",
                f"{url}/api/v1/prompts/by-name/myorg/myapp/greeting",
                f"--seconds={SECONDS}",
                "--warmup=1.0",
                f"--connections={CONNECTIONS}",
                "--header",
                f"Authorization: Bearer {key}",
            ],
            capture_output=True,
            text=True,
            timeout=SECONDS + 60,
            check=True,
        )
        cpu = _cpu(server.pid) - cpu_before
        result = json.loads(load.stdout.strip().splitlines()[-1])
        requests = float(result["requests"])
        # The CPU figure spans the warm-up too: a bound, the same for both.
        return requests / float(result["seconds"]), cpu / max(requests, 1.0) * 1e6
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def main() -> int:
    """Print requests/s for 1 and 2 workers and their ratio."""
    key = generate_key(test=True)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        small_repo(root / "repo")
        rates: dict[int, list[float]] = {1: [], 2: []}
        costs: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(ROUNDS):
            for workers in (1, 2):
                rate, cost = _throughput(root / "repo", workers, key, root / "home")
                rates[workers].append(rate)
                costs[workers].append(cost)
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    for workers, rate in ((1, one), (2, two)):
        print(
            f"--workers {workers}: {rate:,.0f} requests/s, "
            f"{statistics.median(costs[workers]):.0f} us of server CPU a request "
            f"(medians of {ROUNDS})"
        )
    print(f"2 workers vs 1: {two / one:.2f}x the throughput")
    print(f"load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
