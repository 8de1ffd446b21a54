"""Keras-style metrics that a step of its own keeps, and the values it returns that are their results.

The Keras guide's custom ``train_step`` keeps metrics of its own (``self.loss_tracker =
keras.metrics.Mean(name="loss")``) and returns ``{"loss": self.loss_tracker.result()}``: a running
value over the epoch so far, which Keras resets at each epoch's start and logs as it stands at the
epoch's end. trainkit takes the epoch value of what a step returns as the mean over the epoch's
rows, the right value of a batch's loss; a mean of running means weighs the first batches many
times over (and without the resets, the epochs before too). So the trainer finds the metrics its
subclass holds, notes which returned values are their ``result()`` while the step is traced, and
for those values resets the metrics at the epoch's start and logs their results at its end, as
Keras does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import keras
import tensorflow as tf

#: A step's returned value, by the identity of its tensor, -> the metric whose ``result()`` it is.
Produced = dict[Any, keras.metrics.Metric]


def attribute_items(owner: object) -> Iterator[Any]:
    """What ``owner`` holds as attributes, by attribute name: each value, and the items of a list,
    tuple or dict value (a subclass's ``self.trackers = [...]``)."""
    for _, item in named_attribute_items(owner):
        yield item


def named_attribute_items(owner: object) -> Iterator[tuple[str, Any]]:
    """:func:`attribute_items`, each with its path from ``owner``: ``name``, or ``name[0]`` for a
    list or tuple's item and ``name['key']`` for a dict's (a checkpoint keys a subclass's own
    state by these)."""
    for name, value in sorted(vars(owner).items()):
        if isinstance(value, Mapping):
            yield from ((f"{name}[{key!r}]", item) for key, item in value.items())
        elif isinstance(value, list | tuple):
            yield from ((f"{name}[{i}]", item) for i, item in enumerate(value))
        else:
            yield name, value


def held_metrics(owner: object) -> list[keras.metrics.Metric]:
    """The metrics held as attributes of ``owner`` (:func:`attribute_items`), each once."""
    found: dict[int, keras.metrics.Metric] = {}
    for item in attribute_items(owner):
        if isinstance(item, keras.metrics.Metric):
            found.setdefault(id(item), item)
    return list(found.values())


@contextlib.contextmanager
def results_noted(metrics: Iterable[keras.metrics.Metric]) -> Iterator[Produced]:
    """Notes the tensors the ``result()`` of each of ``metrics`` returns while the block runs.

    Meant around the trace of a step: ``result`` is shadowed on each metric object for the
    block, and the class's method is back afterwards.
    """
    produced: Produced = {}
    patched = []
    for metric in metrics:
        if "result" in vars(metric):  # shadowed already (by its owner): not ours to touch
            continue

        def noted(original: Any = metric.result, metric: keras.metrics.Metric = metric) -> Any:
            value = original()
            if isinstance(value, tf.Tensor):
                produced[value.ref()] = metric
            return value

        metric.result = noted
        patched.append(metric)
    try:
        yield produced
    finally:
        for metric in patched:
            del metric.result


def running_values(logs: Any, produced: Produced) -> dict[str, keras.metrics.Metric]:
    """The keys of a step's returned ``logs`` whose values are a metric's ``result()``, with it."""
    if not isinstance(logs, Mapping):
        return {}
    return {name: produced[value.ref()] for name, value in logs.items() if isinstance(value, tf.Tensor) and value.ref() in produced}


@contextlib.contextmanager
def updates_noted(metrics: Iterable[keras.metrics.Metric]) -> Iterator[set[int]]:
    """Notes (by ``id``) which of ``metrics`` have ``update_state`` called while the block runs.

    Meant around an ``update_metrics`` of a subclass's own that feeds the trainer's metrics
    itself; ``update_state`` is shadowed on each metric object for the block, as in
    :func:`results_noted`.
    """
    updated: set[int] = set()
    patched = []
    for metric in metrics:
        if "update_state" in vars(metric):  # shadowed already: not ours to touch
            continue

        def noted(*args: Any, original: Any = metric.update_state, metric: keras.metrics.Metric = metric, **kwargs: Any) -> Any:
            updated.add(id(metric))
            return original(*args, **kwargs)

        metric.update_state = noted
        patched.append(metric)
    try:
        yield updated
    finally:
        for metric in patched:
            del metric.update_state
