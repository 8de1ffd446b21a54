"""The epoch's loss and metric bookkeeping of a :class:`~trainkit.trainer.Trainer`.

A trainer keeps, per split (``train`` while fitting, ``eval`` for validation and
:meth:`~trainkit.trainer.Trainer.evaluate`), a loss tracker, one loss tracker per trained output
and its metrics. :class:`EpochMetrics` feeds them from a traced step, resets and reads them in one
compiled call each, and names what an epoch's logs will hold. The scalars a step returns besides
the trackers' (its :meth:`~trainkit.trainer.Trainer.log_scalar` values) get their epoch means from
the per-step values instead: :func:`row_means`.

:class:`EpochMetrics` is a mixin rather than an object of its own: the trackers are made when the
trainer pairs its losses and metrics with the model's outputs, and are read by name all over
``fit`` and by the steps users override.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainkit import distribute, multioutput, stats
from trainkit.activity_penalty import ACTIVITY_PENALTY
from trainkit.errors import ArgumentError
from trainkit.loop import CompiledLoop, StepOutputs, compile_function
from trainkit.resolve import same_rank
from trainkit.sources import unpack_batch


class EpochMetrics:
    """The loss and metric trackers of the training and evaluation splits, mixed into the Trainer.

    The trainer sets these attributes (in ``__init__`` and ``_pair_outputs``) before anything here
    runs, and hands the per-output losses of the step being traced over in ``_tracing()``.
    """

    heads: list[multioutput.Head]
    _metrics: list[keras.metrics.Metric]
    strategy: tf.distribute.Strategy | None
    report_last_batch_loss: bool
    _loss_tracker: keras.metrics.Mean
    _eval_loss_tracker: keras.metrics.Mean
    _output_loss_trackers: list[keras.metrics.Mean]
    _eval_output_loss_trackers: list[keras.metrics.Metric]
    _eval_metrics: list[keras.metrics.Metric]
    #: The output each metric measures (``None`` with one output).
    _metric_outputs: list[int | None]
    _output_names: tuple[str, ...]
    #: Splits whose steps gave per-output losses (an overridden compute_loss may not).
    _output_losses_seen: set[str]
    #: Compiled reset and read of the trackers, by split.
    _metric_fns: dict[str, Any]
    #: Whether the traced train/eval step fed the trackers (an overridden step may not).
    _tracked: dict[str, bool]
    #: By split, the values a step of its own returned that are the ``result()`` of metrics it
    #: keeps itself (:mod:`trainkit.running_metrics`): reset with the trackers, read at the end.
    _running: dict[str, dict[str, keras.metrics.Metric]]
    _train_loop: CompiledLoop | None
    _eval_loop: CompiledLoop | None
    #: By split, the tracker of the activity penalties' epoch mean (none without such penalties).
    _penalty_trackers: dict[str, keras.metrics.Mean]
    #: Splits whose steps measured the activity penalties.
    _penalties_seen: set[str]
    #: By split, the activity penalties' mean over the epoch (or evaluation) just read.
    epoch_activity_penalties: dict[str, float]

    def _update_output_losses(self, split: str, trackers: Sequence[keras.metrics.Metric], rows: tf.Tensor) -> None:
        """Adds the per-output losses :meth:`compute_loss` just computed to their epoch means."""
        values = self._tracing().pop("output_losses", None)
        if values is None or not trackers:
            return  # an overridden compute_loss that did not call the default one
        self._output_losses_seen.add(split)
        for tracker, value in zip(trackers, values, strict=True):
            tracker.update_state(value, sample_weight=rows)

    def _update_activity_penalty(self, split: str, rows: tf.Tensor) -> None:
        """Adds the activity penalties :meth:`compute_loss` just summed to ``split``'s epoch mean
        (:mod:`trainkit.activity_penalty`); nothing for a model without any, or for an
        overridden compute_loss that did not call the default one."""
        value = self._tracing().pop(ACTIVITY_PENALTY, None)
        tracker = self._penalty_trackers.get(split)
        if value is None or tracker is None:
            return
        self._penalties_seen.add(split)
        tracker.update_state(value, sample_weight=rows)

    def _update_metrics(self, metrics: Sequence[keras.metrics.Metric], y: Any, y_pred: Any, sample_weight: Any) -> None:
        if not metrics:
            return
        if len(self.heads) > 1:
            targets = multioutput.targets_per_output(y, y_pred, [h.name for h in self.heads])
            predictions = multioutput.flat_outputs(y_pred)
            for metric, index in zip(metrics, self._metric_outputs, strict=True):
                if targets[index] is not None:  # an output without targets (and loss) is not measured
                    metric.update_state(*same_rank(targets[index], predictions[index]),
                                        sample_weight=multioutput.per_position_weights(sample_weight, predictions[index]))
            return
        # Ranks lined up, as for a loss: 1-D targets against a [batch, 1] output broadcast to
        # [batch, batch] in a metric function's ``y_true - y_pred`` (a mean over every pair of
        # rows, rising as the model learnt), and F1Score refused them.
        if isinstance(y_pred, Mapping):  # one output, returned in a dict: its tensor
            y_pred = multioutput.flat_outputs(y_pred)[0]
        y, y_pred = same_rank(multioutput.like_outputs(y, y_pred, self._output_names), y_pred)
        sample_weight = multioutput.per_position_weights(sample_weight, y_pred)
        for metric in metrics:
            metric.update_state(y, y_pred, sample_weight=sample_weight)

    def _build_metrics(self, batch_spec: Any) -> None:
        """Makes the variables of the training metrics that make them at their first update
        (``F1Score``, ``R2Score``, a multi-label ``AUC``), by tracing one update on ``batch_spec``.

        A resume reads its checkpoint before any step is traced: the checkpoint's metric
        variables then outnumbered the run's, and the resume was refused (``resume-mismatch``).
        Traced, never run: the accumulators are left as they are, and the steps are unchanged.
        """
        # Keras's metrics that build themselves at their first update hold ``_built = False`` until then.
        if not any(getattr(metric, "_built", True) is False for metric in self._metrics):
            return
        x, y, sample_weight = unpack_batch(batch_spec)
        if y is None:  # no targets to measure (a step of its own reads them elsewhere): left to its trace
            return

        def update(x: Any, y: Any, sample_weight: Any) -> None:
            self._update_metrics(self._metrics, y, self.model(x, training=False), sample_weight)

        with distribute.scope(self.strategy):
            tf.function(update, autograph=False).get_concrete_function(x, y, sample_weight)

    def _reset_metrics(self, split: str = "train") -> None:
        """Zeroes the loss and metric accumulators of ``split`` (``train``/``eval``) in one call.

        Eagerly, every metric variable is its own assign op (~1 ms an epoch for a loss and two
        metrics); a strategy's replicated variables keep the eager path.
        """
        for metric in {id(m): m for m in self._running.get(split, {}).values()}.values():
            metric.reset_state()  # a step's own metrics: Keras resets them at each epoch's start
        metrics = self._split_metrics(split)
        if self.strategy is not None:
            for metric in metrics:
                metric.reset_state()
            return
        reset = self._metric_fns.get(split)
        if reset is None:

            def reset_all() -> None:
                for metric in metrics:
                    metric.reset_state()

            reset = self._metric_fns[split] = compile_function(reset_all)
        reset()

    def _check_metric_results(self, split: str = "train") -> None:
        """Refuses a metric of ``split`` whose result is more than one number, once its step is traced.

        An epoch logs one number per metric (History, console, TensorBoard); ``F1Score()``'s
        per-class scores and ``Precision(thresholds=[0.3, 0.5])``'s per-threshold ones otherwise
        failed in TensorFlow's reshape at the first epoch's end, after the epoch had trained.
        One eager ``result()`` per metric: the trace built them.

        Raises:
            ArgumentError: ``metric-not-scalar``, naming the metric and what to pass instead.
        """
        if not self._tracked.get(split):
            return  # a step of its own that never fed the metrics
        for metric in self._metrics if split == "train" else self._eval_metrics:
            try:
                count = metric.result().shape.num_elements()
            except AttributeError:
                continue  # never updated (an output without targets): Keras builds some at their first update
            if count == 1:
                continue
            config = metric.get_config()
            fix = ('average="macro" (or "micro", "weighted")' if "average" in config
                   else "one threshold (a metric for each)" if "thresholds" in config else "a metric giving one number")
            raise ArgumentError("metric-not-scalar", f'The metric "{metric.name}" ({type(metric).__name__}) gives {count} numbers (one per class or '
                                                     f"threshold), and an epoch logs one number per metric: give it {fix}.")

    def epoch_log_names(self, validation: bool) -> list[str]:
        """The names each epoch's logs (and the History) will hold.

        The loss, each output's loss, the metrics, the scalars the step logs with
        :meth:`log_scalar` (known once the loop is built), with ``val_`` twins when there is
        validation data.
        """
        names = self._logged_names("train")
        if self._train_loop is not None and self._train_loop.names is not None:
            names += [name for _, name in user_scalar_columns(self._train_loop.names) if name not in names]
        if validation:
            names += [f"val_{name}" for name in self._logged_names("eval")]
            if self._eval_loop is not None and self._eval_loop.names is not None:  # a test_step's own values
                names += [f"val_{name}" for _, name in user_scalar_columns(self._eval_loop.names) if f"val_{name}" not in names]
        if self.report_last_batch_loss:
            names.append("last_batch_loss")
        return names

    def _logged_names(self, split: str) -> list[str]:
        """The names the trackers of ``split`` give the logs, as far as the traced steps show.

        A step that never fed the trackers logs only its loss; per-output losses appear only when
        the default compute_loss made them.
        """
        if self._tracked.get(split) is False:
            return ["loss"]
        trackers = self._split_metrics(split)
        if split in self._tracked and split not in self._output_losses_seen:
            skipped = {m.name for m in self._output_loss_trackers}
            trackers = [m for m in trackers if m.name not in skipped]
        return [m.name for m in trackers if m.name != ACTIVITY_PENALTY]

    def _split_metrics(self, split: str) -> list[keras.metrics.Metric]:
        """The loss tracker, per-output loss trackers and metrics of ``split`` (train/eval)."""
        penalty = [self._penalty_trackers[split]] if split in self._penalty_trackers else []
        if split == "train":
            return [self._loss_tracker, *self._output_loss_trackers, *self._metrics, *penalty]
        return [self._eval_loss_tracker, *self._eval_output_loss_trackers, *self._eval_metrics, *penalty]

    def _metric_results(self, split: str = "train") -> dict[str, float]:
        """The loss and metric values of ``split`` (``train``/``eval``), read in one call.

        Eagerly, each ``result()`` is a few ops (~0.1 ms each); a strategy's replicated
        variables keep the eager path.
        """
        if self._tracked.get(split) is False:
            return {}  # the step never fed the trackers: they hold nothing
        metrics = self._split_metrics(split)
        if self.strategy is not None:
            values = {m.name: float(m.result()) for m in metrics}
            if split not in self._output_losses_seen:
                for tracker in self._output_loss_trackers:
                    values.pop(tracker.name)
            return self._without_activity_penalty(split, values)
        key = f"results/{split}"
        results = self._metric_fns.get(key)
        if results is None:

            def read_all() -> tf.Tensor:
                # float64: a float64 model's loss and metrics keep their digits (float32 cut 2e-8).
                return tf.stack([tf.cast(tf.reshape(m.result(), []), tf.float64) for m in metrics])

            results = self._metric_fns[key] = compile_function(read_all)
        values = {m.name: float(v) for m, v in zip(metrics, results().numpy(), strict=True)}
        if split not in self._output_losses_seen:  # never computed: an overridden compute_loss
            for tracker in self._output_loss_trackers:
                values.pop(tracker.name)
        return self._without_activity_penalty(split, values)

    def _without_activity_penalty(self, split: str, values: dict[str, float]) -> dict[str, float]:
        """``values`` less the activity penalty's epoch mean, which goes to
        :attr:`epoch_activity_penalties` (NaN where no step of ``split`` measured it)."""
        if ACTIVITY_PENALTY in values:
            penalty = values.pop(ACTIVITY_PENALTY)
            self.epoch_activity_penalties[split] = penalty if split in self._penalties_seen else math.nan
        return values


    def _running_results(self, split: str) -> dict[str, float]:
        """The values of ``split``'s step that are running results of its own metrics, as they
        stand at the end (see :mod:`trainkit.running_metrics`)."""
        return {name: float(metric.result()) for name, metric in self._running.get(split, {}).items()}


def add_row_sums(sums: list[float], values: np.ndarray, rows: np.ndarray) -> None:
    """Adds per-step ``values`` weighted by their batches' ``rows`` to ``sums``: ``[sum of value *
    rows, rows]``, the running form of :func:`row_mean` (a checkpoint can carry it)."""
    weights = np.asarray(rows, dtype=np.float64)
    sums[0] += float(np.sum(np.asarray(values, dtype=np.float64) * weights))
    sums[1] += float(np.sum(weights))


def row_mean(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """The mean of per-step values weighted by their batches' rows: ``(values, rows)`` pairs."""
    sums = [0.0, 0.0]
    for values, rows in parts:
        add_row_sums(sums, values, rows)
    return sums[0] / sums[1]


def row_means(calls: Sequence[StepOutputs], names: Sequence[str]) -> dict[str, float]:
    """:func:`row_mean` of each of ``names`` over the steps of ``calls``."""
    if not calls:
        return {}
    return {name: row_mean([(c.values[:, c.names.index(name)], c.batch_sizes) for c in calls]) for name in names}


@functools.lru_cache(maxsize=64)
def user_scalar_columns(names: tuple[str, ...], untracked_loss: bool = False) -> tuple[tuple[int, str], ...]:
    """``(column, name)`` of the scalars a step logged besides the statistics, whose epoch means
    come from the steps' values: not ``loss`` unless the step did not feed the loss tracker."""
    return tuple((i, name) for i, name in enumerate(names) if (name != "loss" or untracked_loss) and not stats.is_statistic(name))
