"""How one training epoch of a :class:`~trainkit.trainer.Trainer` is cut into compiled calls.

Each data path yields the outputs of its compiled calls in turn: in-memory arrays (a seeded
in-graph shuffle, slices of the epoch's batch index matrix, the partial last batch riding along
with the last call), a ``tf.data`` dataset (streamed, stacked under XLA), and either under a
``tf.distribute`` strategy. With ``steps_per_execution="auto"`` each call is sized from how long
the last one took, to about :data:`_TARGET_CALL_SECONDS`; a call ends where histograms are due.

:class:`EpochCalls` is a mixin rather than an object of its own: it runs the trainer's compiled
loop and carries its call sizing from epoch to epoch on the trainer.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from trainkit import distribute
from trainkit.loop import CompiledLoop, StepOutputs, epoch_batches
from trainkit.sources import ArraySource, DatasetSource, nothing_left, streamed

if TYPE_CHECKING:
    from trainkit.fit_data import Shuffle

# Target wall time of one compiled call with steps_per_execution="auto": long enough that the
# per-call overhead vanishes, short enough for a live progress bar and live diagnosis.
_TARGET_CALL_SECONDS = 0.5
_MAX_STEPS_PER_CALL = 1024
#: Batches a streaming call runs without XLA, or under a strategy, with ``steps_per_execution="auto"``
#: (and evaluation's streaming calls): one step launch each, so the calls need no timing.
STREAMING_STEPS_PER_CALL = 32


class EpochCalls:
    """The compiled calls of one training epoch, per data path, mixed into the Trainer.

    Calls the trainer's ``_wants_histograms`` and reads its ``step``.
    """

    seed: int
    strategy: tf.distribute.Strategy | None
    steps_per_execution: int | str
    histograms_every: int | str | None
    _train_loop: CompiledLoop | None
    #: steps_per_execution="auto": the size of the next call, learnt across epochs.
    _auto_call_steps: int
    _epochs_skipped: int

    def _in_memory_calls(self, train: ArraySource, batch_size: int, shuffle: Shuffle, epoch: int, start_batch: int = 0) -> Iterable[StepOutputs]:
        """Yields the outputs of each compiled call of one in-memory epoch."""
        assert self._train_loop is not None
        full, partial = epoch_batches(self._epoch_order(train.rows, shuffle, epoch, batch_size), batch_size)
        batches = full.shape[0]
        tail_ran = False
        if batches:
            indices = tf.constant(full)
            fixed = self.steps_per_execution != "auto"
            capacity = min(batches, int(self.steps_per_execution) if fixed else _MAX_STEPS_PER_CALL)
            start = start_batch
            # The partial last batch rides along with the call that ends the epoch.
            tail = tf.constant(partial) if partial is not None else None
            while start < batches:
                # "auto" starts small (the first call also compiles) and keeps what it learnt
                # across epochs, so later epochs run in as few calls as the target allows.
                requested = capacity if fixed else min(capacity, self._auto_call_steps)
                until_histogram = self._steps_until_histogram()
                steps = min(requested, batches - start, until_histogram)
                # Not when histograms are due right after the last full batch: they come first.
                with_tail = start + steps == batches and steps != until_histogram
                began = time.perf_counter()
                # Every call of an epoch that has a partial batch takes the tail's function (one
                # compile), and runs the tail only at the end.
                outputs = self._train_loop.run_in_memory(train.data, indices, start, steps, capacity, tail, run_tail=with_tail)
                seconds = time.perf_counter() - began  # the call alone, not the callbacks after it
                yield outputs
                start += steps
                tail_ran = with_tail
                if not fixed:
                    estimate = _next_call_steps(steps, seconds, capacity)
                    # A call cut short by the epoch's end can grow the estimate only 8x its own
                    # size: keep the larger of the two then.
                    self._auto_call_steps = estimate if steps == requested else max(self._auto_call_steps, estimate)
        if partial is not None and not tail_ran and start_batch <= batches:
            if batches and start_batch < batches:
                # Histograms were due after the last full batch: the tail alone, in the same
                # function as the epoch's other calls (no full batch, then the tail).
                yield self._train_loop.run_in_memory(train.data, indices, batches, 0, capacity, tf.constant(partial))
            else:
                # No full batch to ride along with (fewer rows than a batch, or resumed right here).
                yield self._train_loop.run_in_memory(train.data, tf.constant(partial), 0, 1, 1)

    def _epoch_order(self, rows: int, shuffle: Shuffle, epoch: int, batch_size: int) -> np.ndarray:
        # Stateless: the order depends only on (seed, epoch), so a resumed run sees the same.
        if shuffle == "batch":
            # model.fit's "batch": the batches hold the same consecutive rows every epoch, in the
            # same order, each batch's rows shuffled among themselves.
            keys = np.random.default_rng([self.seed, epoch]).random(rows)
            return np.lexsort((keys, np.arange(rows) // batch_size))
        if shuffle:
            return tf.random.experimental.stateless_shuffle(tf.range(rows), seed=[self.seed, epoch]).numpy()
        return np.arange(rows)

    def _distributed_iterator(self, source: Any, batch_size: int, order: np.ndarray | None, start_batch: int = 0, epoch: int = 0) -> Any:
        """An iterator over global batches split across the strategy's replicas.

        Numpy data is batched in ``order`` exactly as the in-memory path batches it (partial last
        batch included), so the epoch's batches, and so its losses, match one device.
        """
        assert self.strategy is not None
        if isinstance(source, ArraySource):
            dataset = distribute.array_dataset(source.data, np.arange(source.rows) if order is None else order, batch_size, start_batch)
            return iter(distribute.distribute_dataset(self.strategy, dataset))
        return source.epoch_iterator(lambda dataset: iter(distribute.distribute_dataset(self.strategy, dataset)), epoch, start_batch)

    def _distributed_calls(self, train: Any, batch_size: int, shuffle: Shuffle, epoch: int, start_batch: int = 0) -> Iterable[StepOutputs]:
        """Yields the outputs of each compiled call of one epoch under a strategy."""
        assert self._train_loop is not None
        if nothing_left(train, batch_size, start_batch):
            return
        order = self._epoch_order(train.rows, shuffle, epoch, batch_size) if isinstance(train, ArraySource) else None
        def make() -> Any:
            return self._distributed_iterator(train, batch_size, order, start_batch, epoch - self._epochs_skipped)

        yield from streamed(self._train_loop, make(), self._call_capacity(), train, start_batch, self._steps_until_histogram, again=make)

    def _streaming_calls(self, train: DatasetSource, epoch: int, start_batch: int = 0) -> Iterable[StepOutputs]:
        assert self._train_loop is not None
        if nothing_left(train, 0, start_batch):
            return
        if self.steps_per_execution != "auto" or not self._train_loop.jit_compile:
            yield from streamed(self._train_loop, train.epoch_iterator(iter, epoch, start_batch), self._call_capacity(), train, start_batch,
                                 self._steps_until_histogram, again=lambda: train.epoch_iterator(iter, epoch, start_batch))
            return
        # An XLA step runs stacks of batches per launch (CompiledLoop._build_chunked_streaming):
        # calls are sized as in-memory ones are, to about _TARGET_CALL_SECONDS each (asked before
        # each call: the first one may find that XLA cannot compile the step and turn it off).
        loop = self._train_loop
        yield from streamed(loop, train.epoch_iterator(iter, epoch, start_batch), lambda: self._auto_call_steps if loop.jit_compile else self._call_capacity(),
                             train, start_batch, self._steps_until_histogram, self._streaming_call_timed,
                             lambda: train.epoch_iterator(iter, epoch, start_batch))

    def _streaming_call_timed(self, steps: int, capacity: int, seconds: float) -> None:
        """Sizes the next streaming call from how long this one took (see _in_memory_calls)."""
        if not steps:
            return
        estimate = _next_call_steps(steps, seconds, _MAX_STEPS_PER_CALL)
        # A call cut short (histograms due, the epoch's end, the data ran dry) only grows it, and
        # so does one that compiled its function: the first call of 8 steps took 11.3 s (an MLP
        # with statistics), which sized the next call at 1 step, and a stack of one batch runs
        # a single-step XLA function of its own: a second compile, 4.8 s more before the epoch went on.
        built = self._train_loop is not None and self._train_loop.last_call_built
        self._auto_call_steps = estimate if steps == capacity and not built else max(self._auto_call_steps, estimate)

    def _call_capacity(self) -> int:
        return STREAMING_STEPS_PER_CALL if self.steps_per_execution == "auto" else int(self.steps_per_execution)

    def _steps_until_histogram(self) -> int:
        """Steps left before the next histograms every ``histograms_every`` steps (a large number
        when they are written per epoch or not at all).

        Histograms are computed between compiled calls, so a call must end where one is due.
        """
        every = self.histograms_every
        # Not whether this process writes them: every worker of a multi-worker run ends its calls
        # at the same steps.
        if not isinstance(every, int) or not self._wants_histograms():
            return sys.maxsize
        return every - self.step % every


def in_memory_batches(source: Any, batch_size: int) -> dict[str, int]:
    """The batch shapes of an in-memory epoch, for :meth:`CompiledLoop.discover_names`: the full
    batches' rows and the partial last batch's, or the lone partial batch of data smaller than
    one batch (``{"streaming": True}`` for a dataset, whose batches are streamed)."""
    if isinstance(source, DatasetSource):
        return {"streaming": True}
    if not isinstance(source, ArraySource) or not source.rows:
        return {}
    full, partial = divmod(source.rows, batch_size)
    return {"batch_rows": batch_size, "tail_rows": partial} if full else {"batch_rows": partial, "tail_rows": 0}


def _next_call_steps(steps: int, seconds: float, capacity: int) -> int:
    """Steps for the next call so it takes about ``_TARGET_CALL_SECONDS`` (growing at most 8x)."""
    if seconds <= 0:
        return capacity
    return max(1, min(capacity, steps * 8, int(steps * _TARGET_CALL_SECONDS / seconds)))
