"""The cluster, on real parts: three ``promptory serve --pull-from`` replicas of one bare
remote, HAProxy in front of them, a real redis-server sharing the rate limit, and SDK
clients with ``watch=True`` under steady load through HAProxy.

While the clients run, commits are pushed (two of them with a bad file), each announced by
a signed webhook through HAProxy; one replica is killed and later restarted; Redis is
stopped and started. Afterwards it checks: no error reached a client; every client saw
every commit within 2 s of its push (p99 printed); the replicas agree on ETags; the rate
limit counts one key's requests across replicas; nothing was served from a commit that was
never pushed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from promptory import AsyncPromptClient, PromptClient
from promptory.server.keys import generate_key
from support.remote import Remote
from support.services import RedisServer, need_binary

from .parts import HAProxy, Replica

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"
COMMITS = 8
SYNC_CLIENTS = 4
LIMIT = 300  # requests per key per minute: far above what a watching client sends
SECRET = "cluster-webhook-secret"
BAD_COMMITS = {3, 6}
KILL_AT, RESTART_AT = 2, 4
REDIS_STOP_AT, REDIS_START_AT = 5, 6
DEADLINE = 2.0  # seconds from a push to every client seeing it


def marker(number: int) -> str:
    return f"version {number}\n"


def version_of(body: str) -> int:
    return int(body.split()[1]) if body.startswith("version ") else 0


class Observer:
    """What one client saw: the first time it got each version, the commits named by the
    prompts it was given, and any error that reached it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.first_seen: dict[int, float] = {}
        self.shas: set[str] = set()
        self.errors: list[str] = []
        self.calls = 0

    def saw(self, body: str, sha: str) -> None:
        self.calls += 1
        self.shas.add(sha)
        version = version_of(body)
        if version not in self.first_seen:
            now = time.monotonic()
            for earlier in range(version + 1):
                self.first_seen.setdefault(earlier, now)

    def seen(self, number: int) -> bool:
        return number in self.first_seen


def sync_load(client: PromptClient, observer: Observer, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            prompt = client.get(MEDITATION_ID)
            observer.saw(prompt.body, prompt.git_sha)
            by_name = client.get_by_name("myorg", "myapp", "meditation_script_relax")
            observer.shas.add(by_name.git_sha)
        except Exception as exc:  # any error reaching a caller fails the test
            observer.errors.append(f"{type(exc).__name__}: {exc}")
        stop.wait(0.002)


def async_load(url: str, key: str, observer: Observer, stop: threading.Event) -> None:
    async def run() -> None:
        async with AsyncPromptClient(url, key, watch=True) as client:
            while not stop.is_set():
                try:
                    prompt = await client.get(MEDITATION_ID)
                    observer.saw(prompt.body, prompt.git_sha)
                except Exception as exc:
                    observer.errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.002)

    asyncio.run(run())


def signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def metric(url: str, line_start: str) -> str | None:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(line_start):
            return line
    return None


def test_replicas_behind_haproxy_keep_every_client_current(tmp_path: Path) -> None:
    need_binary("haproxy")
    need_binary("redis-server")
    remote = Remote(tmp_path / "git")
    load_keys = [generate_key(test=True) for _ in range(SYNC_CLIENTS + 1)]
    probe_key = generate_key(test=True)
    limit_key = generate_key(test=True)  # used only to count against the shared limit
    redis = RedisServer(tmp_path / "redis").start()
    env = {
        "PROMPTORY_API_KEYS": ",".join([*load_keys, probe_key, limit_key]),
        "PROMPTORY_WEBHOOK_SECRET": SECRET,
        "HOME": str(tmp_path / "home"),  # no keys file of the machine's user
    }
    args = [
        "--pull-from",
        remote.url,
        "--pull-interval",
        "0.5",
        "--redis-url",
        redis.url,
        "--rate-limit",
        str(LIMIT),
        "--log-level",
        "info",
    ]
    replicas = [Replica(name, tmp_path / name, args, env) for name in ("a", "b", "c")]
    haproxy: HAProxy | None = None
    stop = threading.Event()
    threads: list[threading.Thread] = []
    clients: list[PromptClient] = []
    served_commits: set[str] = set()
    try:
        for replica in replicas:
            replica.start()
        haproxy = HAProxy(tmp_path / "haproxy", replicas).start()

        # --- steady load through HAProxy ---------------------------------------------------
        observers = [Observer(f"sync-{i}") for i in range(SYNC_CLIENTS)] + [Observer("async")]
        for key, observer in zip(load_keys[:SYNC_CLIENTS], observers, strict=False):
            client = PromptClient(haproxy.url, key, watch=True)
            clients.append(client)
            threads.append(
                threading.Thread(target=sync_load, args=(client, observer, stop), daemon=True)
            )
        threads.append(
            threading.Thread(
                target=async_load,
                args=(haproxy.url, load_keys[-1], observers[-1], stop),
                daemon=True,
            )
        )

        def sample_replicas() -> None:  # which commits the replicas serve, all along
            with httpx.Client(timeout=2) as http:
                while not stop.is_set():
                    for replica in replicas:
                        try:
                            answer = http.get(f"{replica.url}/ready")
                        except httpx.HTTPError:
                            continue  # killed on purpose
                        if answer.status_code == 200:
                            served_commits.add(answer.json()["commit"])
                    stop.wait(0.05)

        threads.append(threading.Thread(target=sample_replicas, daemon=True))
        for thread in threads:
            thread.start()
        wait_until(lambda: all(o.seen(0) for o in observers), 20, "every client started")
        for client in clients:
            assert client._watch is not None
            wait_until(client._watch.connected.is_set, 20, "every stream open")

        # --- commits, webhooks and faults -----------------------------------------------------
        pushed_at: dict[int, float] = {}
        with httpx.Client(timeout=10) as http:
            for number in range(1, COMMITS + 1):
                if number == KILL_AT:
                    replicas[2].kill()
                if number == RESTART_AT:
                    replicas[2].start()
                if number == REDIS_STOP_AT:
                    redis.stop()
                if number == REDIS_START_AT:
                    redis.start()
                remote.write_prompt(
                    "myorg",
                    "myapp",
                    "meditation_script_relax",
                    marker(number),
                    id=MEDITATION_ID,
                    version=f"2.0.{number}",
                )
                if number in BAD_COMMITS:
                    remote.write(f"myorg/myapp/broken{number}.md", "---\nversion: [\n---\nx\n")
                sha = remote.push(f"version {number}")
                pushed_at[number] = time.monotonic()
                body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
                hook = http.post(
                    f"{haproxy.url}/api/v1/webhooks/git", content=body, headers=signed(body)
                )
                assert hook.status_code == 202, hook.text
                wait_until(
                    lambda n=number: all(o.seen(n) for o in observers),
                    15,
                    f"every client seeing version {number}",
                )
        stop.set()
        for thread in threads:
            thread.join(15)

        # --- no error reached a client; every commit within 2 s -------------------------------
        errors = [f"{o.name}: {e}" for o in observers for e in o.errors]
        assert errors == [], errors[:5]
        latencies = sorted(
            o.first_seen[n] - pushed_at[n] for o in observers for n in range(1, COMMITS + 1)
        )
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[max(0, math.ceil(0.99 * len(latencies)) - 1)]
        calls = sum(o.calls for o in observers)
        print(
            f"\ncluster: {len(observers)} clients, {calls} calls, {COMMITS} commits: "
            f"push-to-client p50 {p50:.3f} s, p99 {p99:.3f} s, max {latencies[-1]:.3f} s"
        )
        assert p99 <= DEADLINE, latencies

        # --- nothing from a commit never pushed -----------------------------------------------
        pushed = set(remote.pushed)
        assert served_commits <= pushed, served_commits - pushed
        seen_shas = set().union(*(o.shas for o in observers))
        assert seen_shas <= pushed, seen_shas - pushed

        # --- the replicas agree -----------------------------------------------------------------
        head = remote.pushed[-1]
        with httpx.Client(timeout=5, headers={"Authorization": f"Bearer {probe_key}"}) as http:
            for replica in replicas:
                wait_until(
                    lambda r=replica: http.get(f"{r.url}/ready").json()["commit"] == head,
                    15,
                    f"replica {replica.name} at the last commit",
                )
            answers = [
                http.get(f"{r.url}/api/v1/prompts/by-name/myorg/myapp/meditation_script_relax")
                for r in replicas
            ]
            assert {a.headers["etag"] for a in answers} == {answers[0].headers["etag"]}
            assert {a.content for a in answers} == {answers[0].content}
            etag = answers[0].headers["etag"]
            for replica in replicas:  # a 304 stays a 304 whichever replica answers
                again = http.get(
                    f"{replica.url}/api/v1/prompts/{MEDITATION_ID}", headers={"If-None-Match": etag}
                )
                assert again.status_code == 304
                problems = http.get(f"{replica.url}/api/v1/status").json()["problems"]
                assert {p["path"] for p in problems} >= {
                    f"myorg/myapp/broken{n}.md" for n in BAD_COMMITS
                }

            # --- the limit counts one key across the replicas ---------------------------------
            for replica in replicas:
                wait_until(
                    lambda r=replica: (
                        metric(r.url, "promptory_rate_limit_shared ")
                        == "promptory_rate_limit_shared 1.0"
                    ),
                    15,
                    f"replica {replica.name} counting in Redis again",
                )
            limited = {"Authorization": f"Bearer {limit_key}"}
            statuses = [
                http.get(
                    f"{replicas[i % 3].url}/api/v1/prompts/{MEDITATION_ID}", headers=limited
                ).status_code
                for i in range(LIMIT)
            ]
            assert statuses == [200] * LIMIT  # a third on each replica: none alone at LIMIT
            for replica in replicas:
                refused = http.get(f"{replica.url}/api/v1/prompts/{MEDITATION_ID}", headers=limited)
                assert refused.status_code == 429, replica.name
        assert "Redis at" in "".join(r.log() for r in replicas)  # the outage was logged
        # Through the balancer, metrics are refused: they are read per replica.
        assert httpx.get(f"{haproxy.url}/metrics").status_code == 403
    finally:
        stop.set()
        for client in clients:
            client.close()
        for thread in threads:
            thread.join(10)
        if haproxy is not None:
            haproxy.stop()
        for replica in replicas:
            replica.stop()
        redis.stop()
