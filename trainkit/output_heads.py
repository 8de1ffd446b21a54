"""A :class:`~trainkit.trainer.Trainer`'s outputs paired with their losses, tasks and metrics.

The trainer pairs its ``loss``, ``task``, ``loss_weights`` and ``metrics`` arguments with the
model's outputs (:mod:`trainkit.multioutput` says how) when it is made, as far as the model's
structure tells how many outputs it has; a subclassed model's are counted, and paired again, when
it first sees data. Pairing makes the heads, the metrics (uniquely named) and the per-output loss
trackers of both splits (:mod:`trainkit.epoch_metrics` feeds and reads them).

:class:`OutputHeads` is a mixin rather than an object of its own: ``heads`` and ``metrics`` are
the trainer's public attributes, set again whenever the outputs are paired again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from trainkit import distribute, multioutput, stats
from trainkit.resolve import clone_metric, get_metrics
from trainkit.sources import io_count


class OutputHeads:
    """Pairs the trainer's per-output arguments with the model's outputs, mixed into the Trainer."""

    model: keras.Model
    loss: Any
    task: Any
    strategy: tf.distribute.Strategy | None
    #: One per output: its name, task, loss and loss weight.
    heads: list[multioutput.Head]
    _metrics: list[keras.metrics.Metric]
    _metric_specs: Any
    _loss_weight_spec: Any
    #: Whether the outputs were counted (from the model's structure, or a call).
    _outputs_counted: bool

    def _pair_outputs(self, count: int, names: Sequence[str] | None = None) -> None:
        """Pairs the losses, tasks, loss weights and metrics with the model's ``count`` outputs.

        Args:
            count: How many outputs.
            names: Their names, when a call told them (a subclassed model returning a dict).

        Raises:
            ArgumentError: ``bad-argument`` for per-output specs that do not match the outputs.
        """
        names = tuple(names) if names else multioutput.output_names(self.model, count, by_name=self.loss)
        self.heads = multioutput.heads(names, self.loss, self.task, self._loss_weight_spec)
        specs = self._metric_specs
        if count > 1 or isinstance(specs, Mapping) or (specs and all(isinstance(s, list | tuple) for s in specs)):
            paired = multioutput.output_metrics(specs, self.heads)
            if count == 1:  # a single output's metrics keep their own names
                paired = [(i, clone_metric(m, m.name[len(self.heads[0].name) + 1 :])) for i, m in paired]
        else:
            paired = [(None, m) for m in get_metrics(specs, self.heads[0].task, self.heads[0].loss)]
        self._metrics = _uniquely_named([m for _, m in paired])
        self._metric_outputs = [None if count == 1 else i for i, _ in paired]
        self._eval_metrics = [clone_metric(m) for m in self._metrics]
        trained = [h for h in self.heads if h.loss is not None] if count > 1 else []
        self._output_loss_trackers = [keras.metrics.Mean(name=f"{h.name}_loss") for h in trained]
        self._eval_output_loss_trackers = [clone_metric(m) for m in self._output_loss_trackers]
        self._output_losses_seen: set[str] = set()  # splits whose steps gave per-output losses
        self._metric_fns = {}

    def _count_outputs(self, inputs: Callable[[], Any], rows: int = 1) -> None:
        """Pairs a subclassed model's outputs once it can be called (``inputs()``: a batch; called on
        its first ``rows``, a stateful layer's states' rows)."""
        if self._outputs_counted:
            return
        self._outputs_counted = True
        batch = inputs()
        count = io_count(self.model, "outputs", batch, rows)
        called = multioutput.called_output_names(self.model, batch, rows) if count > 1 else None
        if count != len(self.heads) or (called is not None and called != tuple(h.name for h in self.heads)):
            with distribute.scope(self.strategy):
                self._pair_outputs(count, called)


def known_output_count(model: keras.Model) -> int | None:
    """How many outputs a model has when its structure says (``None`` for a subclassed model)."""
    if isinstance(model, keras.Sequential):
        return 1
    try:
        tensors = model.outputs
    except (AttributeError, ValueError):
        return None
    return len(tf.nest.flatten(tensors)) if tensors else None


def _uniquely_named(metrics: Sequence[keras.metrics.Metric]) -> list[keras.metrics.Metric]:
    """The metrics, a repeated name numbered as Keras numbers it (``auc``, ``auc_1``): two metrics
    of one name would share one History key, and one would be lost."""
    names = stats.numbered(m.name for m in metrics)
    return [metric if name == metric.name else clone_metric(metric, name) for metric, name in zip(metrics, names, strict=True)]


def listed_outputs(*specs: Any) -> int:
    """How many outputs the first per-output argument (a list, or a dict by name) lists; 1 if none."""
    return next((len(spec) for spec in specs if multioutput.is_per_output(spec)), 1)
