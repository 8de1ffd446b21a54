"""A worker thread that runs jobs one after another, so host-side work overlaps training.

The compiled training call releases the GIL while it runs, so Python and numpy work handed to a
worker (encoding TensorBoard events, the live diagnosis) runs on the other core meanwhile instead
of between calls. Jobs run in the order they were submitted; a job that fails stops the rest,
and the failure is raised on the submitting thread at its next :meth:`SerialWorker.submit`,
:meth:`~SerialWorker.wait` or :meth:`~SerialWorker.close`.

While a fit runs (:func:`training`), a worker starts its next job only while the training
thread is inside a compiled call (:func:`workers_turn`). A worker's Python holds the GIL, and a
training thread that comes back from a call to its own Python (callbacks, the next call's
dispatch) waits for the GIL up to the interpreter's 5 ms switch interval each time: with the
10-64-32-1 MLP that contention made the host work between calls 2-3x slower. A worker that found
no call in flight for :data:`MAX_HOLD_SECONDS` runs that job anyway, so a training thread busy in
Python for long (a slow callback) slows the workers to a job per :data:`MAX_HOLD_SECONDS` and no
further; its next call or wait lets them catch up.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Longest a worker waits for a compiled call before it runs its next job regardless.
MAX_HOLD_SECONDS = 0.05


class _Turns:
    """Whether workers may run now: no fit holds them, or a held fit is inside a compiled call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holds = 0
        self._calls = 0
        self._open = threading.Event()
        self._open.set()

    def change(self, holds: int = 0, calls: int = 0) -> None:
        with self._lock:
            self._holds += holds
            self._calls += calls
            if self._holds <= 0 or self._calls > 0:
                self._open.set()
            else:
                self._open.clear()

    def wait(self, timeout: float) -> None:
        self._open.wait(timeout)


_TURNS = _Turns()


@contextmanager
def training() -> Iterator[None]:
    """While inside, workers run their jobs during :func:`workers_turn` (see the module docstring)."""
    _TURNS.change(holds=1)
    try:
        yield
    finally:
        _TURNS.change(holds=-1)


@contextmanager
def workers_turn() -> Iterator[None]:
    """Marks the calling thread as running no Python for a while (a compiled call, a wait).

    Workers held by :func:`training` may run meanwhile.
    """
    _TURNS.change(calls=1)
    try:
        yield
    finally:
        _TURNS.change(calls=-1)


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
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with workers_turn():  # blocked until the worker catches up: let it run
                self._queue.put(job)

    def wait(self) -> None:
        """Blocks until every job submitted so far has run; raises a failure among them."""
        if self._closed:
            self.raise_if_failed()
            return
        done = threading.Event()
        self.submit(done.set)
        with workers_turn():  # the waiting thread runs no Python: the worker's turn
            self._wait_for(done)
        self.raise_if_failed()

    def _wait_for(self, done: threading.Event) -> None:
        while not done.wait(0.05):
            if self._error is not None or not self._thread.is_alive():
                break

    def close(self) -> None:
        """Runs the jobs still queued, stops the thread, and raises a failure among them."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            with workers_turn():  # the closing thread runs no Python: the worker's turn
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
            _TURNS.wait(MAX_HOLD_SECONDS)
            try:
                job()
            except BaseException as err:  # raised on the submitting thread, not lost here
                self._error = err
