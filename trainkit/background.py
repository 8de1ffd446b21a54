"""A worker thread that runs jobs one after another, so host-side work overlaps training.

The compiled training call releases the GIL while it runs, so Python and numpy work handed to a
worker (encoding TensorBoard events, the live diagnosis) runs on the other core meanwhile instead
of between calls. Jobs run in the order they were submitted; a job that fails stops the rest,
and the failure is raised on the submitting thread at its next :meth:`SerialWorker.submit`,
:meth:`~SerialWorker.wait` or :meth:`~SerialWorker.close`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class WorkerClosedError(RuntimeError):
    """A job was submitted to a :class:`SerialWorker` after :meth:`SerialWorker.close`."""


class SerialWorker:
    """Runs submitted jobs in order on one daemon thread.

    Args:
        name: The thread's name (shows in profilers and thread dumps).
        maxsize: Jobs that may wait; :meth:`submit` blocks beyond that, so a producer faster
            than the worker cannot pile up unbounded memory.
    """

    def __init__(self, name: str, *, maxsize: int = 256) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=maxsize)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Queues ``job``; raises the failure of an earlier job, if one failed."""
        self.raise_if_failed()
        if self._closed:
            raise WorkerClosedError(f"The worker {self._thread.name!r} is closed.")
        self._queue.put(job)

    def wait(self) -> None:
        """Blocks until every job submitted so far has run; raises a failure among them."""
        if self._closed:
            self.raise_if_failed()
            return
        done = threading.Event()
        self.submit(done.set)
        while not done.wait(0.05):
            if self._error is not None or not self._thread.is_alive():
                break
        self.raise_if_failed()

    def close(self) -> None:
        """Runs the jobs still queued, stops the thread, and raises a failure among them."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        """Raises (once) the exception of the job that failed, if any."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._error is not None:
                continue  # a job failed: the rest are skipped until the failure is raised
            try:
                job()
            except BaseException as err:  # raised on the submitting thread, not lost here
                self._error = err
