"""Renders on a fixed set of workers, with a cap per API key.

Rules of this module:

* Renders never run on the event loop, nor in its thread pool: they run on `workers`
  worker processes (``RenderCapacity.processes``, the default) or threads. A CPU-bound
  render in a thread holds the GIL against the event loop, and every GET waits for it; in
  another process it only competes for a core.
* Per API key, at most `per_key` renders run at once and at most `queue_per_key` more wait
  for their turn; a render beyond that is refused (`Busy`, answered ``429`` with
  ``Retry-After``), so one key cannot fill the workers nor hold more than its share of
  memory, and every other key finds a worker free as long as ``workers > per_key``.
* A render whose client goes away while it waits for its turn is dropped: a client that
  queues renders and hangs up leaves no work behind (a render already running finishes,
  and holds its key's place until it does: a key that hangs up mid-render cannot run more
  than its cap).
* A refusal comes after `REFUSAL_DELAY` seconds, not at once: a client that sends again as
  soon as it is refused would otherwise turn refusals into a flood the event loop spends
  itself on. The waiting request costs a timer, and its connection is under the cap.
* Worker processes run at a lower CPU priority (``RenderCapacity.niceness``): when the
  cores are busy, the event loop answering GETs is scheduled before a render; renders of
  all keys share the same priority.
* A worker process whose render runs `hard_timeout` seconds (well past the render budget,
  which stops a render from inside) is stopped and replaced; the render answers 400.
* Worker processes start by ``forkserver`` where there is one (never a plain ``fork`` of a
  threaded server), with the rendering modules loaded once in the fork server. `start()`
  starts them and waits for a first render, so the first request does not pay for it;
  where processes cannot start, renders run on threads and a warning says so.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from ..exceptions import RenderError
from .render import RenderJob, render_job

__all__ = [
    "REFUSAL_DELAY",
    "Busy",
    "Gone",
    "RenderCapacity",
    "RenderPool",
    "default_workers",
]

logger = logging.getLogger("promptory.server")

#: Seconds a render refused for its key's cap waits before the 429 (its Retry-After too).
REFUSAL_DELAY = 1


def _lower_priority(niceness: int) -> None:
    """Run in each worker process as it starts."""
    if niceness <= 0:
        return
    try:
        os.nice(niceness)
    except (AttributeError, OSError):  # no nice() here, or not allowed: same priority
        pass


def default_workers() -> int:
    """Render workers by default: the cores this process may use, at least 2 (so a key at
    its cap of 1 leaves a worker to the others)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(2, cores)


@dataclass(frozen=True)
class RenderCapacity:
    """How many renders run, and how many one key may ask for.

    Attributes:
        workers: renders running at once, over all keys.
        per_key: renders running at once for one API key; 0: half the workers, at least 1.
        queue_per_key: renders of one key waiting for a turn; one more is refused (429).
        processes: render in worker processes (True) or threads (False).
        hard_timeout: seconds after which a worker process still rendering is stopped.
        niceness: how much lower the worker processes' CPU priority is (``nice``).
    """

    workers: int = 0  # 0: `default_workers()`
    per_key: int = 0  # 0: `worker_count // 2`, at least 1
    queue_per_key: int = 32
    processes: bool = True
    hard_timeout: float = 5.0
    niceness: int = 5

    def __post_init__(self) -> None:
        if self.workers < 0 or self.per_key < 0 or self.queue_per_key < 0:
            raise ValueError("render workers, per-key cap and queue cannot be negative")
        if not self.hard_timeout > 0:
            raise ValueError("hard_timeout must be more than 0 seconds")

    @property
    def worker_count(self) -> int:
        """`workers`, or the default when 0."""
        return self.workers or default_workers()

    @property
    def per_key_count(self) -> int:
        """`per_key`, or the default when 0."""
        return self.per_key or max(1, self.worker_count // 2)


class Busy(Exception):
    """A key has as many renders running and waiting as it may."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class Gone(Exception):
    """The client went away while its render waited for a turn; it was not run."""


class _KeySlots:
    """One key's renders: admitted (running or waiting) and the semaphore of running ones."""

    __slots__ = ("admitted", "running")

    def __init__(self, per_key: int) -> None:
        self.admitted = 0
        self.running = asyncio.Semaphore(per_key)


class RenderPool:
    """Runs render jobs on bounded workers with a per-key cap (use from one event loop)."""

    def __init__(self, capacity: RenderCapacity | None = None) -> None:
        self.capacity = capacity or RenderCapacity()
        self._slots: dict[str, _KeySlots] = {}
        self._executor: Any = None
        self._processes = self.capacity.processes

    def start(self, timeout: float = 60.0) -> None:
        """Start the workers and wait (at most `timeout` seconds) until one has rendered."""
        pool = self._pool()
        if not self._processes:
            return
        warm = RenderJob("warm", {"warm": ""}, {}, "warm-up")
        try:
            pool.schedule(render_job, args=(warm, None), timeout=timeout).result()
        except Exception as exc:
            logger.warning(
                "render worker processes cannot start (%s: %s); rendering on threads",
                type(exc).__name__,
                exc,
            )
            self.stop()
            self._processes = False
            self._pool()

    def _pool(self) -> Any:
        if self._executor is None:
            workers = self.capacity.worker_count
            if self._processes:
                from pebble import ProcessPool

                methods = multiprocessing.get_all_start_methods()
                method = "forkserver" if "forkserver" in methods else "spawn"
                context = multiprocessing.get_context(method)
                if method == "forkserver":
                    context.set_forkserver_preload(["promptory.server.render"])
                self._executor = ProcessPool(
                    max_workers=workers,
                    initializer=_lower_priority,
                    initargs=(self.capacity.niceness,),
                    context=context,
                )
            else:
                self._executor = ThreadPoolExecutor(workers, thread_name_prefix="promptory-render")
        return self._executor

    async def render(
        self,
        key_id: str,
        job: RenderJob,
        variables: Mapping[str, Any] | None,
        gone: asyncio.Future[Any] | None = None,
    ) -> str:
        """Render `job` for the key `key_id` on a worker.

        Args:
            gone: done when the client has gone away; the render is dropped if it has not
                started by then.

        Raises:
            Busy: the key has `per_key` renders running and `queue_per_key` waiting.
            Gone: the client went away before the render started.
            RenderError: the template failed, or ran past `hard_timeout`.
        """
        capacity = self.capacity
        slots = self._slots.get(key_id)
        if slots is None:
            slots = self._slots[key_id] = _KeySlots(capacity.per_key_count)
        if slots.admitted >= capacity.per_key_count + capacity.queue_per_key:
            await asyncio.sleep(REFUSAL_DELAY)
            raise Busy(
                f"this API key has {capacity.per_key_count} render(s) running and "
                f"{capacity.queue_per_key} waiting, the most it may; retry in {REFUSAL_DELAY} s",
                retry_after=REFUSAL_DELAY,
            )
        slots.admitted += 1
        handed_over = False
        try:
            await self._turn(slots.running, gone)
            try:
                future = self._submit(job, variables)
            except BaseException:
                slots.running.release()
                raise
            # The key's place is given back when the work ends, not when this request
            # does: a cancelled request (its client left) leaves a thread rendering, and
            # the key must not start another beyond its cap meanwhile. Registered before
            # the await, so the place is back before this request resumes.
            loop = asyncio.get_running_loop()
            future.add_done_callback(lambda _: self._hand_back(loop, key_id, slots))
            handed_over = True
            ok, text = await self._result(future, job)
        finally:
            if not handed_over:
                self._leave(key_id, slots)
        if not ok:
            raise RenderError(text, code="RENDER_ERROR", prompt=job.label)
        return text

    @staticmethod
    async def _turn(running: asyncio.Semaphore, gone: asyncio.Future[Any] | None) -> None:
        """Wait for a running slot of the key, or raise `Gone` if the client leaves first."""
        if gone is None or not running.locked():
            await running.acquire()
            return
        acquire = asyncio.ensure_future(running.acquire())
        await asyncio.wait({acquire, gone}, return_when=asyncio.FIRST_COMPLETED)
        if acquire.done():
            return
        acquire.cancel()
        try:
            await acquire
        except asyncio.CancelledError:
            raise Gone() from None
        running.release()  # acquired as it was being cancelled
        raise Gone()

    def _hand_back(self, loop: asyncio.AbstractEventLoop, key_id: str, slots: _KeySlots) -> None:
        """Give back a key's running place, from whichever thread ends the work."""

        def release() -> None:
            slots.running.release()
            self._leave(key_id, slots)

        try:
            loop.call_soon_threadsafe(release)
        except RuntimeError:  # the loop is closed: the server stopped, nothing to give back
            pass

    def _leave(self, key_id: str, slots: _KeySlots) -> None:
        slots.admitted -= 1
        if slots.admitted == 0 and self._slots.get(key_id) is slots:
            del self._slots[key_id]  # idle keys cost nothing

    def _submit(self, job: RenderJob, variables: Mapping[str, Any] | None) -> Future[Any]:
        pool = self._pool()
        future: Future[tuple[bool, str]]
        if self._processes:
            future = pool.schedule(
                render_job, args=(job, variables), timeout=self.capacity.hard_timeout
            )
        else:
            future = pool.submit(render_job, job, variables)
        return future

    async def _result(self, future: Future[Any], job: RenderJob) -> tuple[bool, str]:
        try:
            return await asyncio.wrap_future(future)
        except FutureTimeout:
            logger.warning(
                "stopped a render of %s still running after %g s",
                job.label,
                self.capacity.hard_timeout,
            )
            return False, (
                f"prompt {job.label}: the render ran over its time limit and was stopped"
            )
        except Exception as exc:  # the job could not reach a worker, or the worker died
            logger.warning("render of %s failed in its worker: %s", job.label, exc)
            return (
                False,
                f"prompt {job.label}: the render failed in its worker ({type(exc).__name__})",
            )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers (renders still running are abandoned)."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if not isinstance(executor, ThreadPoolExecutor):
            executor.stop()
            try:
                executor.join(timeout)
            except TimeoutError:
                logger.warning("render workers did not stop within %g s", timeout)
        else:
            executor.shutdown(wait=False, cancel_futures=True)
