"""Renders run on bounded workers with a per-key cap: one key cannot take every worker."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

import httpx
import pytest

from promptory.exceptions import RenderError
from promptory.server.keys import KeyRecord, generate_key
from promptory.server.render import RenderJob
from promptory.server.renderpool import Busy, Gone, RenderCapacity, RenderPool
from support.gitrepo import PromptRepo
from support.servers import RunningServer

# Runs until the render budget stops it (0.5 s by default): a render at the time limit.
SLOW = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x"
# Outruns a budget that is only checked between loop items: each item sorts 2,500 strings.
RUNAWAY = (
    "{% set l = range(2500)|map('string')|list %}{% set seq = 'x' * 63 %}"
    "{% for a in seq %}{% for b in seq %}{% for c in seq %}{% set _ = l|sort %}"
    "{% endfor %}{% endfor %}{% endfor %}done"
)


def _repo(prompt_repo: PromptRepo) -> dict[str, str]:
    ids = {
        "slow": "00000000-0000-4000-8000-00000000005a",
        "fast": "00000000-0000-4000-8000-00000000005b",
        "runaway": "00000000-0000-4000-8000-00000000005c",
    }
    prompt_repo.write_prompt("myorg", "myapp", "slow", SLOW, id=ids["slow"])
    prompt_repo.write_prompt("myorg", "myapp", "fast", "Hi {{ who }}\n", id=ids["fast"])
    prompt_repo.write_prompt("myorg", "myapp", "runaway", RUNAWAY, id=ids["runaway"])
    prompt_repo.commit()
    return ids


def _render(server: RunningServer, key: str, prompt_id: str) -> httpx.Response:
    with server.client(key) as client:
        return client.post(f"/api/v1/prompts/{prompt_id}/render", json={"variables": {}})


@pytest.mark.parametrize("processes", [True, False], ids=["processes", "threads"])
def test_renders_beyond_a_keys_cap_get_429_while_another_key_renders(
    prompt_repo: PromptRepo,
    start_server: Callable[..., RunningServer],
    api_key: str,
    processes: bool,
) -> None:
    ids = _repo(prompt_repo)
    other = generate_key(test=True)
    capacity = RenderCapacity(workers=2, per_key=1, queue_per_key=1, processes=processes)
    server = start_server(prompt_repo, keys=[KeyRecord.for_key(other)], render=capacity)
    # Start the workers, so the first slow render is not also the one that waits for them.
    assert _render(server, other, ids["fast"]).status_code == 200

    first_429 = threading.Event()
    answers: list[httpx.Response] = []

    def noisy() -> None:
        answer = _render(server, api_key, ids["slow"])
        answers.append(answer)
        if answer.status_code == 429:
            first_429.set()

    with ThreadPoolExecutor(8) as pool:
        for _ in range(8):
            pool.submit(noisy)
        assert first_429.wait(30), "no render of the noisy key was refused"
        # The noisy key is at its cap right now; another key's render is served.
        started = time.monotonic()
        quiet = _render(server, other, ids["fast"])
        quiet_seconds = time.monotonic() - started
    assert quiet.status_code == 200, quiet.text
    assert quiet.json()["rendered_body"] == "Hi \n"
    # Far less than the noisy key's queue (2 renders of 0.5 s each) would make it wait.
    assert quiet_seconds < 5.0

    statuses = sorted(answer.status_code for answer in answers)
    assert len(statuses) == 8
    assert set(statuses) <= {400, 429}
    assert statuses.count(400) >= 1  # ran until the time limit stopped it
    refused = [answer for answer in answers if answer.status_code == 429]
    assert refused
    for answer in refused:
        assert answer.headers["Retry-After"] == "1"
        error = answer.json()["error"]
        assert error["code"] == "RATE_LIMITED"
        assert "1 render(s) running and 1 waiting" in error["message"]


def test_a_render_past_the_hard_timeout_is_stopped_and_its_worker_replaced(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer], api_key: str
) -> None:
    ids = _repo(prompt_repo)
    capacity = RenderCapacity(workers=1, per_key=1, hard_timeout=1.0)
    server = start_server(prompt_repo, render=capacity)
    started = time.monotonic()
    answer = _render(server, api_key, ids["runaway"])
    elapsed = time.monotonic() - started
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "RENDER_ERROR"
    assert elapsed < 10.0  # the budget or the hard timeout stopped it, whichever came first
    # The one worker was replaced: renders go on.
    again = _render(server, api_key, ids["fast"])
    assert again.status_code == 200


def test_a_render_whose_client_left_while_queued_is_dropped_and_frees_its_place() -> None:
    slow = RenderJob("slow", {"slow": SLOW}, {}, "o/a/slow")
    fast = RenderJob("fast", {"fast": "fast"}, {}, "o/a/fast")

    async def scenario() -> None:
        pool = RenderPool(RenderCapacity(workers=2, per_key=1, queue_per_key=1, processes=False))
        pool.start()
        try:
            running = asyncio.ensure_future(pool.render("key", slow, {}))
            await _until(lambda: "key" in pool._slots and pool._slots["key"].running.locked())
            gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queued = asyncio.ensure_future(pool.render("key", slow, {}, gone))
            await _until(lambda: pool._slots["key"].admitted == 2)
            gone.set_result(None)  # the client of the queued render hangs up
            with pytest.raises(Gone):
                await queued
            # Its place in the queue is free again: the next render waits, then runs.
            assert await pool.render("key", fast, {}) == "fast"
            with pytest.raises(RenderError):
                await running  # the running render was not disturbed: it ran to its limit
        finally:
            pool.stop()

    asyncio.run(scenario())


def test_a_cancelled_render_keeps_its_keys_place_until_its_thread_finishes() -> None:
    """A request cancelled mid-render (its client left) leaves the thread rendering: the key
    may not start another render beyond its cap until that thread is done."""
    slow = RenderJob("slow", {"slow": SLOW}, {}, "o/a/slow")
    fast = RenderJob("fast", {"fast": "fast"}, {}, "o/a/fast")

    async def scenario() -> None:
        pool = RenderPool(RenderCapacity(workers=4, per_key=1, queue_per_key=0, processes=False))
        pool.start()
        try:
            running = asyncio.ensure_future(pool.render("key", slow, {}))
            await _until(lambda: "key" in pool._slots and pool._slots["key"].running.locked())
            await _until_threads(lambda: _rendering_threads() == 1)
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
            # The slow render still runs in its thread (up to its 0.5 s budget): the key
            # is at its cap of one running render.
            with pytest.raises(Busy):
                await pool.render("key", fast, {})
            # Once that thread is done the key's place is back.
            deadline = time.monotonic() + 30
            while "key" in pool._slots:
                assert time.monotonic() < deadline, "the key's place never came back"
                await asyncio.sleep(0.01)
            assert await pool.render("key", fast, {}) == "fast"
        finally:
            pool.stop()

    asyncio.run(scenario())


def _rendering_threads() -> int:
    """Threads of this process inside a render job right now."""
    count = 0
    for frame in sys._current_frames().values():
        walked: FrameType | None = frame
        while walked is not None and walked.f_code.co_name != "render_job":
            walked = walked.f_back
        count += walked is not None
    return count


async def _until_threads(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.001)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):  # bounded: yields to the event loop, no waiting on the clock
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")
