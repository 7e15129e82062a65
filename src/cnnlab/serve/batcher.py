"""Group concurrent requests into one forward pass: an asyncio micro-batcher, one worker thread.

A CNN on a CPU does far more images per second in a batch of 16 than one at a time, so
requests that arrive together are run together. The batcher waits a few milliseconds for
company only while other requests are on their way (decoding); a lone request runs at once.
While the worker runs one batch, the next one gathers in the queue: throughput grows with load.
The queue is bounded in images and in time: the pace of recent batches says how long a new
request would wait, and one that would wait past its time budget is refused at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.serve.limits import ServeLimits

log = logging.getLogger("cnnlab")


class Overloaded(Exception):
    """The request cannot be answered in time (queue full, or its wait would run past the time
    budget): the caller should retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass
class _Job:
    images: torch.Tensor
    names: list[str]
    future: asyncio.Future


class MicroBatcher:
    """`await submit(images, names)` returns those images' items of `infer(batch, names)`, one
    per image in order (in the API: `cnnlab.predict.predict_images`, the CLI's own path)."""

    def __init__(
        self,
        infer: Callable[[torch.Tensor, list[str]], Sequence[Any]],
        max_batch: int = ServeLimits.max_batch,
        max_wait_ms: float = ServeLimits.max_wait_ms,
        max_queue: int = ServeLimits.max_queue,
    ) -> None:
        self.infer, self.max_batch, self.max_wait = infer, max(1, max_batch), max_wait_ms / 1000
        self.max_queue = max_queue
        self.queued = 0  # images waiting or running
        self.arriving = 0  # requests admitted but still decoding: worth waiting for
        self.batches = 0  # statistics, for /healthz and tests
        self.images_done = 0
        self.per_image: float | None = None  # seconds per image in a batch (moving average)
        self._executor: ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._carry: _Job | None = None

    # -- life cycle (bound to one event loop; restarted if a new loop calls it, or after stop)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._task is not None and not self._task.done():
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="cnnlab-infer")
        self._loop, self._queue, self._carry = loop, asyncio.Queue(), None
        self._task = loop.create_task(self._run(), name="cnnlab-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- requests

    @contextlib.contextmanager
    def arriving_request(self):
        """Mark a request as on its way, so the batcher waits for it rather than run alone."""
        self.arriving += 1
        try:
            yield
        finally:
            self.arriving -= 1

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def expected_wait(self, n: int = 0) -> float:
        """Seconds until `n` more images would be answered, at the measured pace (0 before
        the first batch has been timed)."""
        return (self.queued + n) * (self.per_image or 0.0)

    async def submit(
        self, images: torch.Tensor, names: list[str], deadline: float | None = None
    ) -> Sequence[Any]:
        """The answers for `images`, named `names`; Overloaded at once when the queue is full or the wait would
        run past `deadline` (the event loop's clock), and when the deadline passes waiting."""
        self.start()
        assert self._queue is not None and self._loop is not None
        n = len(images)
        if self.queued + n > self.max_queue:
            raise Overloaded(f"{self.queued} images are already waiting (limit {self.max_queue})",
                             self.expected_wait())  # fmt: skip
        now = self._loop.time()
        # with nothing queued a request always runs (the deadline still holds): one slow batch
        # must not leave a pace that refuses every request, and so is never measured again
        wait = self.expected_wait(n) if self.queued else 0.0
        if deadline is not None and now + wait > deadline:
            raise Overloaded(f"the queue would take about {wait:.1f} s, over this request's time "
                             f"budget", self.expected_wait())  # fmt: skip
        job = _Job(images, list(names), self._loop.create_future())
        self.queued += n
        try:
            self._queue.put_nowait(job)
            if deadline is None:
                return await job.future
            try:
                return await asyncio.wait_for(job.future, max(0.0, deadline - now))
            except TimeoutError:  # the job is dropped if it has not started; its result if so
                raise Overloaded(
                    "the time budget ran out while waiting", self.expected_wait()
                ) from None
        finally:
            self.queued -= n

    # -- the loop

    async def _next_batch(self) -> list[_Job]:
        assert self._queue is not None and self._loop is not None
        first = self._carry or await self._queue.get()
        self._carry = None
        jobs, n = [first], len(first.images)
        deadline = self._loop.time() + self.max_wait
        while n < self.max_batch:
            if self._queue.empty():
                remaining = deadline - self._loop.time()
                if remaining <= 0 or not self.arriving:
                    break  # nobody else on the way: do not make a lone request wait
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                job = self._queue.get_nowait()
            if n + len(job.images) > self.max_batch:
                self._carry = job  # first in line for the next batch
                break
            jobs.append(job)
            n += len(job.images)
        return jobs

    async def _run(self) -> None:
        assert self._loop is not None
        while True:
            jobs = await self._next_batch()
            live = [j for j in jobs if not j.future.done()]  # drop requests whose client left
            if not live:
                continue
            batch = torch.cat([j.images for j in live])
            names = [name for j in live for name in j.names]
            started = self._loop.time()
            try:
                out = await self._loop.run_in_executor(self._executor, self.infer, batch, names)
            except Exception as e:  # noqa: BLE001 - handed to each waiting request
                log.exception("inference failed on a batch of %d images", len(batch))
                for j in live:
                    if not j.future.done():
                        j.future.set_exception(e)
                continue
            self.batches += 1
            self.images_done += len(batch)
            pace = (self._loop.time() - started) / len(batch)
            self.per_image = pace if self.per_image is None else 0.8 * self.per_image + 0.2 * pace
            start = 0
            for j in live:
                rows = out[start : start + len(j.images)]
                start += len(j.images)
                if not j.future.done():
                    j.future.set_result(rows)
