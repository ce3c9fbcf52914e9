"""Figure 6: the server under keep-alive load from a separate process, and the key check.

Three targets, each served by `BackgroundServer` (the same uvicorn settings) in this
process, each driven in turn by a load process on the other core:

* ours, ``GET /api/v1/prompts/by-name/myorg/myapp/greeting`` answering 200;
* ours, the same with a matching ``If-None-Match``, answering 304;
* a bare Starlette app whose one route returns the same JSON bytes (same size, same
  content type) — the floor of serving those bytes with this framework and server.

The load process is ``wrk`` when it is installed (``apt-get install wrk``), else
``python -m benchmarks.loadgen`` (plain sockets; see there why not an httpx loop); the
figure's notes say which. Rounds are interleaved, the order rotating every round.
Targets: our 200 at least 0.6x the bare route's req/s; our 304 at least as fast as our 200.

Key check: ``KeyRing.verify(key)`` on a ring of 100 keys, against its floor: one SHA-256 of
the key and one dict lookup.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from itertools import repeat
from pathlib import Path
from time import perf_counter_ns

import httpx

from promptory.server.keys import KeyRecord, KeyRing, generate_key

from .measure import Figure, calibrate, interleave, median, per_op
from .servers import bare_app, serve_app, thread_server
from .session import Session

__all__ = ["run"]

PATH = "/api/v1/prompts/by-name/myorg/myapp/greeting"
ROUNDS = 7
SECONDS = 2.0
CONNECTIONS = 8
KEYS = 100


def _wrk(url: str, headers: list[str], seconds: float) -> float:
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s"]
    for header in headers:
        command += ["-H", header]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if bad or errors:
        raise RuntimeError(f"wrk saw failed requests on {url}:\n{out}")
    found = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return float(found.group(1))


def _python_load(url: str, headers: list[str], seconds: float, expect: int) -> float:
    command = [sys.executable, "-m", "benchmarks.loadgen", url, f"--seconds={seconds}"]
    command += [f"--connections={CONNECTIONS}", *(f"--header={h}" for h in headers)]
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    result = json.loads(out)
    if result["errors"] or set(result["statuses"]) != {str(expect)}:
        raise RuntimeError(f"unexpected answers from {url}: {result}")
    return float(result["requests"]) / float(result["seconds"])


def _load_tool(choice: str) -> str:
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    return choice


def _key_check(session: Session) -> Figure:
    keys = [generate_key() for _ in range(KEYS)]
    ring = KeyRing(KeyRecord.for_key(key) for key in keys)
    presented = keys[KEYS // 2]
    assert ring.verify(presented) is not None
    by_digest = {hashlib.sha256(k.encode()).digest(): k for k in keys}
    sha256 = hashlib.sha256

    def ours_run(n: int) -> int:
        verify = ring.verify
        started = perf_counter_ns()
        for _ in repeat(None, n):
            verify(presented)
        return perf_counter_ns() - started

    def floor(key: str) -> object:
        return by_digest.get(sha256(key.encode("utf-8")).digest())

    def base_run(n: int) -> int:
        started = perf_counter_ns()
        for _ in repeat(None, n):
            floor(presented)
        return perf_counter_ns() - started

    session.log("server: KeyRing.verify vs one SHA-256 and a dict lookup")
    n = calibrate(base_run)
    ours, base = interleave(per_op(ours_run, n), per_op(base_run, n))
    if importlib.util.find_spec("bcrypt") is not None:
        import bcrypt  # type: ignore[import-not-found]

        hashed = bcrypt.hashpw(presented.encode(), bcrypt.gensalt(12))
        started = perf_counter_ns()
        bcrypt.checkpw(presented.encode(), hashed)
        took = (perf_counter_ns() - started) / 1e6
        bcrypt_note = f"one bcrypt check at cost 12 took {took:.0f} ms"
    else:
        check_us = median(ours) / 1000
        bcrypt_note = (
            "bcrypt is not installed, so not timed: a cost-12 bcrypt check runs 2^12 "
            f"Blowfish key setups, on the order of 0.2 s, ~{0.2e6 / check_us:,.0f} times this"
        )
    return Figure.from_samples(
        "server.key_check",
        "API key check, KeyRing.verify",
        "µs/op",
        [v / 1000 for v in ours],
        [v / 1000 for v in base],
        baseline_label="SHA-256 of the key + dict lookup",
        op="<=",
        target=3.0,
        notes=[f"ring of {KEYS} keys; {bcrypt_note}"],
        extra={"calls_per_sample": n},
    )


def run(session: Session) -> list[Figure]:
    """Figure 6 (by-name 200 and 304 under load, the key check)."""
    tool = _load_tool(session.load_tool)
    figures = [_key_check(session)]
    with thread_server(
        session.small_repo(), session.api_key, poll_interval=0.5, prepare_in_background=True
    ) as server:
        auth = f"Authorization: Bearer {server.api_key}"
        first = httpx.get(server.url + PATH, headers=server.headers())
        assert first.status_code == 200
        body, etag = first.content, first.headers["etag"]
        again = httpx.get(server.url + PATH, headers={**server.headers(), "If-None-Match": etag})
        assert again.status_code == 304
        with serve_app(bare_app(body)) as bare_url:
            bare = httpx.get(bare_url + "/constant")
            assert bare.content == body
            assert bare.headers["content-type"] == first.headers["content-type"]
            targets: dict[str, tuple[str, list[str], int]] = {
                "200": (server.url + PATH, [auth], 200),
                "304": (server.url + PATH, [auth, f"If-None-Match: {etag}"], 304),
                "bare": (bare_url + "/constant", [], 200),
            }

            def load(name: str, seconds: float) -> float:
                url, headers, expect = targets[name]
                if tool == "wrk":
                    return _wrk(url, headers, seconds)
                return _python_load(url, headers, seconds, expect)

            session.log(f"server: warming up the three targets ({tool})")
            for name in targets:
                load(name, 1.0)
            samples: dict[str, list[float]] = {name: [] for name in targets}
            order = list(targets)
            started = time.monotonic()
            for index in range(ROUNDS):
                session.log(f"server: round {index + 1}/{ROUNDS} ({', '.join(order)})")
                for name in order:
                    samples[name].append(load(name, SECONDS))
                order = order[1:] + order[:1]
            spent = time.monotonic() - started
    common = (
        f"{tool} load process, {CONNECTIONS} keep-alive connections, {ROUNDS} rounds of "
        f"{SECONDS:g} s per target ({spent:.0f} s); {len(body)} B JSON"
    )
    pick: Callable[[str], list[float]] = samples.__getitem__
    figures += [
        Figure.from_samples(
            "server.by_name_200",
            "server by-name 200, keep-alive load",
            "req/s",
            pick("200"),
            pick("bare"),
            baseline_label="bare Starlette route returning the same JSON bytes",
            op=">=",
            target=0.6,
            notes=[common],
            extra={"load_tool": tool, "bare_median": median(pick("bare"))},
        ),
        Figure.from_samples(
            "server.by_name_304",
            "server by-name 304 (If-None-Match) vs 200",
            "req/s",
            pick("304"),
            pick("200"),
            baseline_label="our by-name 200",
            op=">=",
            target=1.0,
            notes=[
                f"same rounds as server.by_name_200; bare route {median(pick('bare')):,.0f} req/s"
            ],
            extra={"load_tool": tool},
        ),
    ]
    return figures
