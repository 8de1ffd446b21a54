"""Models with several outputs: a loss, a loss weight and metrics per output, paired as
``model.compile`` pairs them.

A model's outputs are named by ``model.output_names`` (Functional models) or ``output_0``,
``output_1``... (subclassed models, whose outputs have no names). Like ``model.compile``:

* ``loss`` is one loss for every output, a list (by position) or a dict (by output name; an
  output left out is not trained on); the total is the weighted sum of the per-output losses,
  each reported as ``<output>_loss``;
* ``loss_weights`` is a list or dict of floats (1.0 where not given).

Unlike ``model.compile``, a flat list of metrics applies each metric to every output (``compile``
wants one entry per output there); a list of lists (by position) or a dict (by output name)
picks metrics per output. Every metric of a model with several outputs is named
``<output>_<metric>`` (``a_accuracy``).

Nothing here runs in the graph but :func:`targets_per_output` and :func:`flat_outputs`, which
only rearrange structures while a step is traced.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainkit.errors import ArgumentError, UnknownNameError
from trainkit.resolve import clone_metric, closest, get_loss, get_metric
from trainkit.seed_states import seed_states_kept


@dataclasses.dataclass(frozen=True)
class Head:
    """One output of a model as training sees it.

    Attributes:
        name: The output's name (see :func:`output_names`).
        task: ``binary``, ``multiclass``, ``multilabel`` or ``regression``.
        loss: Its resolved loss, ``None`` for an output that is not trained on.
        weight: Its weight in the total loss.
    """

    name: str
    task: str | None
    loss: Any
    weight: float = 1.0


def heads(names: Sequence[str], loss: Any, task: Any, weights: Any = None) -> list[Head]:
    """Pairs a resolved loss spec, a task spec and loss weights with the outputs ``names``.

    Raises:
        ArgumentError: ``bad-argument`` for lists of another length, keys that name no output,
            no output with a loss (or every one weighing 0), or an output with a loss but no task.
    """
    losses = per_output(loss, names, "loss")
    tasks = per_output(task, names, "task")
    out = [Head(n, t, fn, w) for n, t, fn, w in zip(names, tasks, losses, loss_weights(weights, names), strict=True)]
    if not any(h.loss is not None for h in out):
        raise ArgumentError("bad-argument", f"No output of the model has a loss (outputs: {', '.join(names)}). Give at least one output a loss.")
    if not any(h.weight for h in out if h.loss is not None):
        # The loss would be 0 at every step: nothing trains, and the diagnosis read the 0 as a collapse.
        raise ArgumentError("bad-argument", f"loss_weights gives every output with a loss weight 0 (outputs: {', '.join(names)}): the total loss "
                                            f"would be 0 at every step and nothing would be learned. Give at least one trained output a weight > 0.")
    missing = [h.name for h in out if h.loss is not None and h.task is None]
    if missing:
        raise ArgumentError("bad-argument", f"Output {missing[0]} has a loss but no task: give task a value for every output that is trained on.")
    return out


def is_per_output(spec: Any) -> bool:
    """Whether a loss (or loss-weight) spec gives one entry per output: a list or a dict by name.

    A ``{"name": ..., ...}`` mapping is one loss with its arguments, not a dict by output.
    """
    return isinstance(spec, list | tuple) or (isinstance(spec, Mapping) and "name" not in spec)


def resolve_losses(spec: Any) -> Any:
    """The loss spec with every loss resolved (:func:`trainkit.resolve.get_loss`), same structure.

    ``None`` entries (outputs not trained on) stay ``None``.
    """
    if isinstance(spec, list | tuple):
        return [None if s is None else get_loss(s) for s in spec]
    if is_per_output(spec):
        return {str(k): None if s is None else get_loss(s) for k, s in spec.items()}
    return get_loss(spec)


def output_names(model: keras.Model, count: int, by_name: Any = None) -> tuple[str, ...]:
    """Names of a model's ``count`` outputs, in the order of :func:`flat_outputs`.

    The keys of a model whose outputs are a dict (sorted, as Keras flattens a dict), else
    ``model.output_names``, else (a subclassed model, not called yet) the keys of ``by_name``, a
    per-output spec such as the loss dict, which its first call then confirms (see
    :func:`called_output_names`), else ``output_<i>``.
    """
    struct = getattr(model, "_outputs_struct", None)
    if isinstance(struct, Mapping) and len(struct) == count:
        return tuple(sorted(str(k) for k in struct))
    names = tuple(getattr(model, "output_names", None) or ())
    if len(names) == count:
        return names
    if isinstance(by_name, Mapping) and len(by_name) == count:
        return tuple(sorted(str(k) for k in by_name))
    return tuple(f"output_{i}" for i in range(count))


def called_output_names(model: keras.Model, inputs: Any, rows: int = 1) -> tuple[str, ...] | None:
    """A subclassed model's output names, read from a call on the first row of ``inputs``: the
    sorted keys when it returns a dict, else ``None`` (a Functional model's are known already);
    on its first ``rows`` where a ``stateful=True`` layer's states hold as many."""
    if getattr(model, "_outputs_struct", None) is not None or inputs is None:
        return None
    try:
        with seed_states_kept(model):  # a call model.fit does not make
            outputs = model(tf.nest.map_structure(lambda a: a[:rows], inputs), training=False)
    except Exception:  # inputs that do not fit are reported by the checks and the build
        return None
    return tuple(sorted(str(k) for k in outputs)) if isinstance(outputs, Mapping) else None


def per_output(spec: Any, names: Sequence[str], what: str, default: Any = None) -> list[Any]:
    """``spec`` (one value, a list by position or a dict by output name) as one value per output.

    Raises:
        ArgumentError: ``bad-argument`` for a list of another length or a key that names no
            output.
    """
    if isinstance(spec, list | tuple):
        if len(spec) != len(names):
            raise ArgumentError("bad-argument", f"{what} is a list of {len(spec)} but the model has {len(names)} outputs ({', '.join(names)}): "
                                f"give one per output, in order, or a dict by output name.")
        return list(spec)
    if is_per_output(spec):
        unknown = [str(k) for k in spec if k not in names]
        if unknown:
            raise ArgumentError("bad-argument", f'{what} names "{unknown[0]}", which is not an output of the model.{closest(unknown[0], names)} '
                                f"Its outputs: {', '.join(names)}.")
        return [spec.get(name, default) for name in names]
    return [spec] * len(names)


def loss_weights(spec: Any, names: Sequence[str]) -> list[float]:
    """One float weight per output (1.0 where not given)."""
    if spec is None:
        return [1.0] * len(names)
    weights = per_output(spec, names, "loss_weights", 1.0)
    for name, weight in zip(names, weights, strict=True):
        # numpy's numbers too, as model.compile takes them (np.float32(0.5) was refused as "not a number >= 0").
        if isinstance(weight, bool | np.bool_) or not isinstance(weight, numbers.Real) or not (math.isfinite(weight) and weight >= 0):
            # A negative weight makes descent raise that output's loss (and the total can go below 0).
            raise ArgumentError("bad-argument", f"loss_weights: the weight of output {name} must be a finite number >= 0, got {weight!r}.")
    return [float(w) for w in weights]


def output_metrics(specs: Any, outputs: Sequence[Head]) -> list[tuple[int, keras.metrics.Metric]]:
    """``(output index, metric)`` for each metric of each output, named ``<output>_<metric>``.

    Args:
        specs: A flat list (every output with a task), a list of lists (by position) or a dict
            by output name whose values are a spec or a list of specs.
        outputs: The outputs; each one's task and loss pick the accuracy variant.
    """
    names = [h.name for h in outputs]
    flat = False
    if isinstance(specs, Mapping):
        chosen = per_output(specs, names, "metrics", ())
    elif isinstance(specs, list | tuple) and specs and all(isinstance(s, list | tuple) for s in specs):
        chosen = per_output(specs, names, "metrics")
    else:
        flat = True
        chosen = [list(specs) if h.task is not None else [] for h in outputs]
    out = []
    for index, (head, output_specs) in enumerate(zip(outputs, chosen, strict=True)):
        one = isinstance(output_specs, str | Mapping | keras.metrics.Metric) or callable(output_specs)
        for spec in [output_specs] if one else list(output_specs):
            try:
                metric = get_metric(spec, head.task or "regression", head.loss)
            except UnknownNameError as err:  # which output: "accuracy" fits one output and not another
                hint = (f" A flat list of metrics is computed for every output; pick them per output with a dict: "
                        f"metrics={{{', '.join(repr(h.name) + ': [...]' for h in outputs)}}}.") if flat else ""
                raise UnknownNameError(err.code, f"The metrics of output {head.name} ({head.task or 'regression'}): {err.message}{hint}") from None
            # A fresh metric per output, even from a metric object: each keeps its own totals.
            out.append((index, clone_metric(metric, f"{head.name}_{metric.name}")))
    return out


def like_outputs(y: Any, y_pred: Any, output_names: Sequence[str] = ()) -> Any:
    """Several targets as the same kind of structure as the outputs they go with.

    ``tf.data`` and :func:`~trainkit.sources.in_memory_parts` give tuples, Functional models return lists, and
    Keras losses and metrics refuse to pair a tuple with a list; a dict of targets by output
    name becomes a sequence in the outputs' order (as ``model.fit`` reads it).
    """
    if isinstance(y, Mapping) and isinstance(y_pred, list | tuple) and output_names and all(n in y for n in output_names):
        y = tuple(y[name] for name in output_names)
    if isinstance(y, Mapping) and len(y) == 1 and tf.is_tensor(y_pred):
        return next(iter(y.values()))  # a one-output dict model's targets by its key: {"out": y}, as model.fit takes them
    if isinstance(y, list | tuple) and len(y) == 1 and tf.is_tensor(y_pred):
        return y[0]  # (y,) for one output, as model.fit takes it
    if isinstance(y_pred, list) and isinstance(y, tuple):
        return list(y)
    if isinstance(y_pred, tuple) and isinstance(y, list):
        return tuple(y)
    return y


def flat_outputs(y_pred: Any) -> list[Any]:
    """The outputs of a step as a list, in the order of :func:`output_names`."""
    return keras.tree.flatten(y_pred)


def targets_per_output(y: Any, y_pred: Any, names: Sequence[str]) -> list[Any]:
    """The targets of a batch as a list lined up with :func:`flat_outputs` of ``y_pred``.

    ``y`` may be a list or tuple (by position) or a dict (by output name, or by the keys of a
    model whose outputs are a dict; ``None`` for an output it leaves out).
    """
    if isinstance(y, Mapping):
        keys = sorted(y_pred) if isinstance(y_pred, Mapping) and any(k in y for k in y_pred) else names
        return [y.get(key) for key in keys]
    return list(y) if isinstance(y, list | tuple) else [y]


def per_position_weights(sample_weight: Any, y_pred: Any) -> Any:
    """One weight per row, ``[batch]``, shaped ``[batch, 1, ...]`` to weigh each position of a
    prediction with positions (``[batch, T, k]``: a sequence's per-timestep loss).

    Keras multiplies the ``[batch, T]`` per-position losses (and metric values) by the weights
    as they are, which fails for ``[batch]``; the row's weight applies to every one of its
    positions. Other weights, and predictions of rank 2 or less, are returned as they are.
    """
    rank = getattr(getattr(y_pred, "shape", None), "rank", None)
    if sample_weight is None or rank is None or rank <= 2 or getattr(sample_weight.shape, "rank", None) != 1:
        return sample_weight
    return tf.reshape(sample_weight, [-1] + [1] * (rank - 2))
