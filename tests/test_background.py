"""The background worker: order, failures, and its turns with the training thread."""

from __future__ import annotations

import threading

import pytest

from trainkit import background
from trainkit.background import SerialWorker, WorkerClosedError


@pytest.fixture
def patient_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers that wait (nearly) forever for their turn, so a missed turn hangs, not passes."""
    monkeypatch.setattr(background, "MAX_HOLD_SECONDS", 60.0)


def _in_thread(fn, timeout: float = 10.0) -> None:
    """Runs ``fn`` on a thread and fails (instead of hanging the suite) if it does not return."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as err:  # re-raised below, on the test's thread
            errors.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{fn.__name__} did not return within {timeout} s"
    if errors:
        raise errors[0]


def test_jobs_run_in_order_and_a_failure_surfaces_on_the_submitting_thread() -> None:
    worker = SerialWorker("test")
    ran: list[int] = []
    for i in range(5):
        worker.submit(lambda i=i: ran.append(i))
    worker.wait()
    assert ran == [0, 1, 2, 3, 4]

    def fail() -> None:
        raise ValueError("disk full")

    worker.submit(fail)
    worker.submit(lambda: ran.append(99))  # skipped: an earlier job failed
    with pytest.raises(ValueError, match="disk full"):
        worker.wait()
    worker.close()
    assert 99 not in ran
    with pytest.raises(WorkerClosedError):
        worker.submit(lambda: None)


@pytest.mark.usefixtures("patient_workers")
def test_while_training_a_worker_runs_only_during_the_training_threads_calls() -> None:
    worker = SerialWorker("test")
    started = threading.Event()
    with background.training():
        worker.submit(started.set)
        # The training thread runs Python here: the worker keeps its job queued.
        assert not started.wait(0.2)
        with background.workers_turn():  # a compiled call: the GIL is free, the worker runs
            assert started.wait(10.0)
    worker.close()


@pytest.mark.usefixtures("patient_workers")
def test_waiting_for_or_closing_a_held_worker_gives_it_its_turn() -> None:
    worker = SerialWorker("test")
    ran: list[str] = []
    with background.training():
        worker.submit(lambda: ran.append("a"))
        _in_thread(worker.wait)
        assert ran == ["a"]
        worker.submit(lambda: ran.append("b"))
        _in_thread(worker.close)
    assert ran == ["a", "b"]


@pytest.mark.usefixtures("patient_workers")
def test_a_full_queue_lets_a_held_worker_catch_up_instead_of_deadlocking() -> None:
    worker = SerialWorker("test", maxsize=1)
    ran: list[int] = []

    def submit_many() -> None:
        for i in range(4):
            worker.submit(lambda i=i: ran.append(i))

    with background.training():
        _in_thread(submit_many)
    worker.close()
    assert ran == [0, 1, 2, 3]


def test_a_worker_that_waits_too_long_for_a_call_runs_anyway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "MAX_HOLD_SECONDS", 0.01)
    worker = SerialWorker("test")
    started = threading.Event()
    with background.training():
        worker.submit(started.set)
        # No call, e.g. a slow callback between calls: the worker does not starve.
        assert started.wait(10.0)
    worker.close()


def test_workers_run_freely_outside_a_fit(patient_workers: None) -> None:
    worker = SerialWorker("test")
    started = threading.Event()
    worker.submit(started.set)
    assert started.wait(10.0)
    worker.close()
