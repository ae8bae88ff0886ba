"""Dynamic batching: concurrent requests for the same model call are merged into one.

The semantics are TF Serving's shared batch scheduler (``batching/README.md``): one queue per
servable and signature; a task joins the open batch if it fits, else opens a new one; a queue
holds at most ``max_enqueued_batches`` batches (more → UNAVAILABLE, HTTP 503); a batch runs when
it is full, when its oldest task has waited ``batch_timeout_micros``, or at once with a timeout of
0 and a free thread; ``num_batch_threads`` batches run at a time, queues taken round-robin;
batches are padded up to the next ``allowed_batch_sizes`` entry by repeating the first row.

One difference, on purpose: when a merged batch fails with INVALID_ARGUMENT (one client's bad
image), its tasks are re-run one by one so only the bad request fails, not its neighbours.

Example:
    >>> scheduler = BatchScheduler(BatchingParameters(max_batch_size=32), metrics)
    >>> future = scheduler.submit(("cats_dogs", 3, "serving_default"), run, {"image_bytes": batch})
    >>> future.result()["scores"]
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future

import numpy as np

from imgclf.errors import ServingError
from imgclf.serving.metrics import ServingMetrics
from imgclf.serving.options import BatchingParameters

log = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]
RunFunction = Callable[[Tensors], Tensors]
QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


class _Task:
    __slots__ = ("inputs", "size", "future", "enqueued")

    def __init__(self, inputs: Tensors, size: int) -> None:
        self.inputs = inputs
        self.size = size
        self.future: Future[Tensors] = Future()
        self.enqueued = time.perf_counter()


class _Batch:
    __slots__ = ("tasks", "size", "created", "closed")

    def __init__(self) -> None:
        self.tasks: list[_Task] = []
        self.size = 0
        self.created = time.perf_counter()
        self.closed = False


class _Queue:
    def __init__(self, key: Hashable, run: RunFunction, model_name: str) -> None:
        self.key = key
        self.run = run
        self.model_name = model_name
        self.batches: deque[_Batch] = deque()
        self.tasks = 0
        self.retired = False  # its version was unloaded: drop the queue once it is empty


def task_size(inputs: Tensors) -> int:
    sizes = {value.shape[0] if value.ndim else -1 for value in inputs.values()}
    if len(sizes) != 1 or -1 in sizes:
        raise ServingError(
            "INVALID_ARGUMENT", "Batching session Run() input tensors must have equal 0th-dimension size"
        )
    return sizes.pop()


class BatchScheduler:
    """A pool of ``num_batch_threads`` threads serving per-servable batching queues."""

    def __init__(self, params: BatchingParameters, metrics: ServingMetrics) -> None:
        self.params = params
        self.metrics = metrics
        self._timeout = params.batch_timeout_micros / 1e6
        self._condition = threading.Condition()
        self._queues: dict[Hashable, _Queue] = {}
        self._round_robin = itertools.count()
        self._stopping = False
        self._wait: float | None = None  # how long an idle worker sleeps; set by _next_batch
        self._threads = [
            threading.Thread(target=self._work, name=f"{params.thread_pool_name}-{index}", daemon=True)
            for index in range(params.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, key: Hashable, run: RunFunction, inputs: Tensors, model_name: str = "") -> Future[Tensors]:
        """Queue one request's inputs; the future resolves to that request's rows of the outputs."""
        size = task_size(inputs)
        limit = self.params.max_batch_size
        if size > limit:
            raise ServingError("INVALID_ARGUMENT", f"Task size {size} is larger than maximum input batch size {limit}")
        task = _Task(inputs, size)
        with self._condition:
            if self._stopping:
                raise ServingError("UNAVAILABLE", "The model server is shutting down")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(key, run, model_name)
            batch = queue.batches[-1] if queue.batches else None
            if batch is None or batch.closed or batch.size + size > limit:
                if batch is not None:
                    batch.closed = True
                if len(queue.batches) >= self.params.max_enqueued_batches:
                    raise ServingError(
                        "UNAVAILABLE", "The batch scheduling queue to which this task was submitted is full"
                    )
                batch = _Batch()
                queue.batches.append(batch)
            batch.tasks.append(task)
            batch.size += size
            batch.closed = batch.size >= limit
            queue.tasks += 1
            self.metrics.queue_depth.labels(model_name).set(queue.tasks)
            self._condition.notify()
        return task.future

    def remove(self, predicate: Callable[[Hashable], bool]) -> None:
        """Forget the queues whose key matches (their version was unloaded), once they are empty.

        A queue's run function holds its model version, so a queue left behind would keep an
        unloaded version in memory.
        """
        with self._condition:
            for key, queue in list(self._queues.items()):
                if predicate(key):
                    queue.retired = True
                    if not queue.batches:
                        del self._queues[key]

    def stop(self, timeout: float = 30) -> None:
        """Run what is queued, then stop the threads."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    # ------------------------------------------------------------ worker side

    def _next_batch(self) -> tuple[_Queue, _Batch] | None:
        """Under the lock: the next ready batch, or None; sets ``self._wait`` to the time to sleep."""
        queues = list(self._queues.values())
        if not queues:
            self._wait = None
            return None
        start = next(self._round_robin) % len(queues)
        now = time.perf_counter()
        wait: float | None = None
        for queue in queues[start:] + queues[:start]:
            if not queue.batches:
                continue
            batch = queue.batches[0]
            due = batch.created + self._timeout
            if batch.closed or len(queue.batches) > 1 or now >= due or self._stopping:
                queue.batches.popleft()
                queue.tasks -= len(batch.tasks)
                if queue.retired and not queue.batches:
                    del self._queues[queue.key]
                self.metrics.queue_depth.labels(queue.model_name).set(queue.tasks)
                return queue, batch
            wait = due - now if wait is None else min(wait, due - now)
        self._wait = wait
        return None

    def _work(self) -> None:
        while True:
            with self._condition:
                picked = self._next_batch()
                while picked is None:
                    if self._stopping and not any(q.batches for q in self._queues.values()):
                        return
                    self._condition.wait(self._wait)
                    picked = self._next_batch()
            self._process(*picked)

    def _process(self, queue: _Queue, batch: _Batch) -> None:
        started = time.perf_counter()
        for task in batch.tasks:
            self.metrics.queuing_latency.labels(self.params.thread_pool_name).observe((started - task.enqueued) * 1e6)
        self.metrics.wrapped_run_count.inc()
        try:
            outputs = self._run_merged(queue, batch)
        except ServingError as error:
            if error.code == "INVALID_ARGUMENT" and len(batch.tasks) > 1:
                for task in batch.tasks:  # isolate the bad request from its neighbours
                    self._run_alone(queue, task)
                return
            for task in batch.tasks:
                task.future.set_exception(error)
            return
        except Exception as error:  # a bug or a TF failure: every waiting request gets an INTERNAL error
            log.exception("batch failed")
            for task in batch.tasks:
                task.future.set_exception(ServingError("INTERNAL", f"{type(error).__name__}: {error}"))
            return
        offset = 0
        for task in batch.tasks:
            task.future.set_result({alias: value[offset : offset + task.size] for alias, value in outputs.items()})
            offset += task.size

    def _run_merged(self, queue: _Queue, batch: _Batch) -> Tensors:
        first = batch.tasks[0].inputs
        if len(batch.tasks) == 1:
            merged = first
        else:
            merged = {alias: np.concatenate([t.inputs[alias] for t in batch.tasks]) for alias in first}
        padded = self._padded_size(batch.size)
        if padded > batch.size:
            merged = {
                alias: np.concatenate([value, np.repeat(value[:1], padded - batch.size, axis=0)])
                for alias, value in merged.items()
            }
        self.metrics.batch_size.labels(queue.model_name).observe(padded)
        outputs = queue.run(merged)
        for alias, value in outputs.items():
            if value.ndim == 0 or value.shape[0] != padded:
                raise ServingError(
                    "FAILED_PRECONDITION",
                    f"Batched output tensor {alias} has 0th dimension {value.shape[:1]}, expected {padded}",
                )
        return outputs

    def _run_alone(self, queue: _Queue, task: _Task) -> None:
        try:
            task.future.set_result(queue.run(task.inputs))
        except Exception as error:
            task.future.set_exception(
                error if isinstance(error, ServingError) else ServingError("INTERNAL", str(error))
            )

    def _padded_size(self, size: int) -> int:
        for allowed in self.params.allowed_batch_sizes:
            if allowed >= size:
                return allowed
        return size
