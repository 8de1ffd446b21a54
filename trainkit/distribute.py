"""Training under ``tf.distribute``: strategies by name, data split across replicas, reduced steps.

Everything specific to replication lives here, so the single-device path of
:class:`~trainkit.trainer.Trainer` and :class:`~trainkit.loop.CompiledLoop` stays exactly what it
was (no strategy, or the default strategy, never reaches this module's graph code).

How a replicated step works:

* Numpy data runs through a ``tf.data`` pipeline built from the very row order the in-memory path
  uses (stateless shuffle of ``(seed, epoch)``, batches of ``batch_size``, partial last batch
  included), distributed with ``strategy.experimental_distribute_dataset``: each global batch is
  split across the replicas.
* Each replica's loss is the mean over its own rows; its gradients are scaled by
  ``local_rows / global_rows`` (:func:`scale_gradients`) so that the optimizer's all-reduce, which
  *sums* gradients across replicas (Keras 3's TF optimizer does exactly that), yields the gradient
  of the global-batch mean, the same gradient one device computes. A Keras loss reduced otherwise
  (``"sum"``, ``"mean_with_sample_weight"``) is first scaled so that this holds for its global value
  (:func:`unscale_keras_loss`).
* Each step's scalars are reduced across replicas with ``strategy.reduce``
  (:func:`reduce_step_outputs`):

  ========================================  ===================================================
  ``loss``, user scalars (``log_scalar``)   row-weighted mean over replicas: exactly the value
                                            over the global batch
  ``grad_norm/*``, ``grad_nonfinite/*``     computed on the all-reduced (summed, scaled)
                                            gradient, identical on every replica: MEAN
  ``weight_norm/*``, ``update_ratio/*``,    mirrored variables, identical on every replica: MEAN
  ``learning_rate``
  ``activation/*/mean``, ``.../*_fraction``  row-weighted mean: exactly the global-batch value
  (except ``dead_fraction``)
  ``activation/*/std``                      pooled from per-replica means and stds: exactly the
                                            global-batch value
  ``activation/*/nonfinite``                SUM of the per-replica counts
  ``activation/*/dead_fraction``            each replica counts a unit dead only when it was
                                            active on no replica's rows (its per-unit counts
                                            are all-reduced), identical on every replica: MEAN
  ========================================  ===================================================
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from trainkit import stats
from trainkit.errors import ArgumentError

DISTRIBUTE_NAMES: tuple[str, ...] = ("none", "mirrored", "multi_worker")
# Name of the per-replica row count a replicated step adds to its outputs (removed by the reduce).
_ROWS = "_replica_rows"


def strategy_from_name(name: str) -> tf.distribute.Strategy | None:
    """The strategy a recipe's ``training.distribute`` names; ``None`` for ``"none"``.

    ``"multi_worker"`` reads the cluster from the ``TF_CONFIG`` environment variable (see the
    README); it must be created before any other TensorFlow op runs in the process.
    """
    if name == "none":
        return None
    if name == "mirrored":
        return _mirrored_strategy()
    if name == "multi_worker":
        tf_config()  # its errors in a line, before TensorFlow's resolver fails with a traceback
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except (ValueError, TypeError) as err:
            # Valid JSON that names no place in its cluster (a task index past the workers listed,
            # a task type the cluster lacks, a job that is not a list): TensorFlow's traceback.
            raise ArgumentError("bad-tf-config", f"TF_CONFIG does not describe a cluster this process is part of: {str(err).strip().rstrip('.')}. "
                                                 "It should look like {\"cluster\": {\"worker\": [\"host-a:12345\", \"host-b:12345\"]}, "
                                                 "\"task\": {\"type\": \"worker\", \"index\": 0}}, the task one of the cluster's.") from None
    raise ValueError(f"distribute must be one of {DISTRIBUTE_NAMES}, got {name!r}.")


# One for every recipe of the process (trainkit compare runs several): each new MirroredStrategy
# numbers its collective ops from the same keys as the first (group 1, instances from 100), and
# TensorFlow keeps the shape each key first had, so a second recipe whose model had other sizes
# failed its first step (model.fit too): "Shape mismatch in the collective instance 100 ... expected
# shape [49] but another member in the group expected shape [25]" (a 4-unit MLP, then an 8-unit one).
# One strategy goes on numbering where the last run stopped. Its devices are the machine's, fixed
# once TensorFlow has started.
@functools.cache
def _mirrored_strategy() -> tf.distribute.Strategy:
    return tf.distribute.MirroredStrategy()


_COLLECTIVE_SHAPES = re.compile(r"Shape mismatch in the collective instance \d+\. .*?expected shape (\[[^\]]*\]) but another member in the group expected shape (\[[^\]]*\])")


def collective_shape_error(strategy: tf.distribute.Strategy | None, err: Exception) -> ArgumentError | None:
    """The coded error for TensorFlow's collective shape mismatch under a ``MirroredStrategy``, else ``None``.

    A second ``MirroredStrategy`` made in the process reuses the first one's collective keys, and
    a model of other sizes then fails its first replicated step with TensorFlow's
    ``InvalidArgumentError`` (``model.fit`` does too). Once it has happened, every later strategy
    of the process fails the same way.
    """
    found = _COLLECTIVE_SHAPES.search(str(err))
    if found is None or not type(strategy).__name__.startswith("MirroredStrategy"):
        return None
    return ArgumentError(
        "strategy-collective-mismatch",
        f"The replicated step failed: one replica all-reduced a tensor of shape {found.group(1)} where another had {found.group(2)}. "
        "A second tf.distribute.MirroredStrategy made in this process numbers its collective ops from the first one's keys, "
        "and TensorFlow keeps the shapes the first one's model gave them (model.fit fails the same way). Create one "
        "MirroredStrategy and pass it to every Trainer of the process (recipes with distribute: mirrored share one), "
        "or train each in its own process; this process's later strategies fail the same way.",
    )


def tf_config() -> dict[str, Any]:
    """The ``TF_CONFIG`` environment variable, parsed (``{}`` when it is unset or empty).

    Raises:
        ArgumentError: ``bad-tf-config`` when it is not a JSON object.
    """
    text = os.environ.get("TF_CONFIG", "") or "{}"
    try:
        config = json.loads(text)
    except ValueError as err:
        raise ArgumentError("bad-tf-config", f"TF_CONFIG is not valid JSON ({err}); it should look like "
                                             '{"cluster": {"worker": ["host-a:12345", "host-b:12345"]}, "task": {"type": "worker", "index": 0}}.') from None
    if not isinstance(config, dict) or not isinstance(config.get("task", {}), dict) or not isinstance(config.get("cluster", {}), dict):
        raise ArgumentError("bad-tf-config", f"TF_CONFIG must be a JSON object with a \"cluster\" and a \"task\" mapping, got {text[:80]!r}.")
    return config


def is_distributed(strategy: tf.distribute.Strategy | None) -> bool:
    """True for a real strategy; ``None`` and the default strategy keep the single-device path."""
    # The default strategy's class is private; its name is the stable way to recognise it.
    return strategy is not None and type(strategy).__name__ != "_DefaultDistributionStrategy"


def scope(strategy: tf.distribute.Strategy | None) -> contextlib.AbstractContextManager[Any]:
    """``strategy.scope()``, or a no-op context without a strategy."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the run's files (events, reports, checkpoints).

    One process per run writes: the ``chief`` task, or worker 0 when the cluster has no chief,
    or the only process when there is no multi-worker cluster.
    """
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is not None and getattr(resolver, "task_type", None) is not None:
        task_type, task_id = resolver.task_type, resolver.task_id
        cluster = resolver.cluster_spec().as_dict()
    else:
        config = tf_config()
        task = config.get("task") or {}
        task_type, task_id, cluster = task.get("type"), task.get("index", 0), config.get("cluster", {})
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and int(task_id or 0) == 0 and "chief" not in cluster


def _made_outside(strategy: tf.distribute.Strategy, variables: Sequence[Any]) -> str | None:
    """The name of the first of ``variables`` created outside ``strategy.scope()``, or ``None``."""
    outside = [v for v in variables if not strategy.extended.variable_created_in_scope(getattr(v, "value", v))]
    return getattr(outside[0], "path", getattr(outside[0], "name", "?")) if outside else None


def check_variables_in_scope(strategy: tf.distribute.Strategy, variables: Sequence[Any]) -> None:
    """Refuses a model whose variables were created outside ``strategy.scope()``.

    Raises:
        ArgumentError: ``model-outside-strategy-scope``, with the fix (build the model inside the scope).
    """
    name = _made_outside(strategy, variables)
    if name is not None:
        raise ArgumentError(
            "model-outside-strategy-scope",
            f"The model's variable {name!r} was created outside the strategy's scope, so it is not "
            "replicated. Build the model inside `with strategy.scope():` (or trainkit.distribute.scope(strategy))."
        )


def check_optimizer_in_scope(strategy: tf.distribute.Strategy, optimizer: Any) -> None:
    """Refuses an optimizer instance whose variables were created outside ``strategy.scope()``.

    A Keras optimizer creates its iteration counter when it is made, so one made outside the scope
    fails when it builds its slots (TensorFlow's ``RuntimeError: Mixing different
    tf.distribute.Strategy objects`` at the first ``fit``).

    Raises:
        ArgumentError: ``optimizer-outside-strategy-scope``, with the fix.
    """
    name = _made_outside(strategy, optimizer.variables)
    if name is not None:
        raise ArgumentError(
            "optimizer-outside-strategy-scope",
            f"The optimizer's variable {name!r} was created outside the strategy's scope, so it is not replicated. "
            "Create the optimizer inside `with strategy.scope():`, or pass it by name or as a dict "
            "(optimizer=\"adam\", {\"name\": \"adam\", \"learning_rate\": 0.001}) and the Trainer creates it there."
        )


# -- data -----------------------------------------------------------------------------------------
def array_dataset(data: Sequence[tf.Tensor], order: np.ndarray, batch_size: int, skip_batches: int = 0) -> tf.data.Dataset:
    """Batches of ``data`` in ``order``: the same batches, in the same order, as the in-memory path.

    The last batch is the partial one (``drop_remainder=False``), so every row is seen once.
    """
    rows = tf.constant(np.asarray(order, dtype=np.int32))
    dataset = tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(lambda t: tf.gather(t, rows), tuple(data))).batch(batch_size)
    if skip_batches:
        dataset = dataset.skip(skip_batches)
    return dataset


def distribute_dataset(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset) -> Any:
    """Splits each global batch of ``dataset`` across the strategy's replicas.

    In-memory data is sharded by DATA (each worker keeps its part of every global batch): there
    are no files to shard, and every worker builds the same dataset.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


# -- inside a replica -----------------------------------------------------------------------------
def in_replica() -> bool:
    """True while tracing a replica's step under a real strategy (``strategy.run``)."""
    return tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context()


def replica_rows(y_pred: Any) -> tf.Tensor:
    """This replica's number of rows in the batch, as float32."""
    return tf.cast(tf.shape(tf.nest.flatten(y_pred)[0])[0], tf.float32)


def _global_rows(rows: tf.Tensor) -> tf.Tensor:
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, rows)


def unscale_keras_loss(loss_fn: Any, value: tf.Tensor, y_pred: Any = None, sample_weight: Any = None) -> tf.Tensor:
    """A replica's Keras loss as the value whose row-weighted mean over the replicas is the global loss.

    trainkit combines the replicas by their rows (:func:`scale_gradients`, :func:`global_mean`,
    the epoch's loss mean). Keras 3 losses with a mean reduction divide by the replica count inside
    ``strategy.run`` (assuming equal local batches): undone, which leaves the replica's true mean.
    Other reductions are not a mean over rows: ``"sum"``'s global loss is the sum of the replicas'
    sums, ``"mean_with_sample_weight"``'s divides by the global batch's sum of weights, and a mean
    over the positions a mask leaves (``Masking``, ``mask_zero=True``) by the global count of them;
    their replica values are scaled to that (combined by rows as they were, ``"sum"`` came out halved
    over two replicas, and weighted means weighed each replica by its rows, not its weights).

    Args:
        loss_fn: The Keras loss object (its ``reduction`` decides).
        value: Its value on this replica's batch.
        y_pred: This replica's predictions (for its row count).
        sample_weight: The weights the loss was given, if any.
    """
    reduction = getattr(loss_fn, "reduction", None)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas <= 1:
        return value
    if reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight"):
        value = value * tf.cast(replicas, value.dtype)
    weighted_mean = reduction == "mean_with_sample_weight" and sample_weight is not None
    # A mean over the unmasked positions (Masking, mask_zero=True) divides by the replica's count
    # of them, which differs from replica to replica. (Keras keeps a graph tensor's mask as this
    # attribute; keras.backend has no public reader.)
    mask = getattr(y_pred, "_keras_mask", None) if y_pred is not None and reduction in ("sum_over_batch_size", "mean") else None
    if (reduction == "sum" or weighted_mean or mask is not None) and y_pred is not None:
        rows = replica_rows(y_pred)
        share = tf.math.divide_no_nan(_global_rows(rows), rows)  # 0 on a replica without rows (its value is 0)
        if weighted_mean or mask is not None:
            weight = tf.reduce_sum(tf.cast(sample_weight if weighted_mean else mask, tf.float32))
            share = share * tf.math.divide_no_nan(weight, _global_rows(weight))
        value = value * tf.cast(share, value.dtype)
    return value


def scale_gradients(gradients: Sequence[Any], rows: tf.Tensor) -> list[Any]:
    """Scales a replica's gradients by ``local_rows / global_rows``.

    The optimizer sums the gradients of all replicas; summing these gives the gradient of the
    mean loss over the global batch. ``multiply_no_nan``: a replica handed no rows (a last batch
    smaller than the replica count) has NaN gradients and contributes zero.
    """
    fraction = rows / _global_rows(rows)
    return [None if g is None else tf.math.multiply_no_nan(g, tf.cast(fraction, g.dtype)) for g in gradients]


def all_reduce_gradients(gradients: Sequence[Any]) -> list[Any]:
    """The summed (global) gradients of scaled per-replica gradients, for the statistics only."""
    present = [g for g in gradients if g is not None]
    reduced = iter(tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, present)) if present else iter(())
    return [None if g is None else next(reduced) for g in gradients]


def global_mean(value: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """The row-weighted mean of a per-replica batch mean over the global batch."""
    total = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.stack([tf.math.multiply_no_nan(tf.cast(value, tf.float32), rows), rows]))
    return total[0] / total[1]


def replica_states(model: Any) -> list[Any]:
    """The model's float non-trainable variables (``BatchNormalization``'s moving mean and variance),
    which a step may update on each replica separately (see :func:`average_replica_states`).

    A frozen layer's weights (created trainable, ``layer.trainable = False``) are left out: no
    step changes them, and a frozen backbone's would be all-reduced every step for nothing (two
    frozen 1024-unit layers under two replicas: 3 epochs 0.86 s -> 1.19 s).
    """
    flatten = getattr(model, "_flatten_layers", None)
    layers = flatten(include_self=True) if flatten is not None else [model]
    frozen = {id(v) for layer in layers for v in getattr(layer, "_trainable_variables", ())}
    return [v for v in model.non_trainable_variables if tf.as_dtype(v.dtype).is_floating and id(v) not in frozen]


def average_replica_states(variables: Sequence[Any], before: Sequence[tf.Tensor], rows: tf.Tensor) -> None:
    """Sets each of ``variables`` on every replica to ``before`` plus the replicas' changes
    averaged by their rows.

    Keras creates ``BatchNormalization``'s moving statistics with no aggregation, so each replica
    updated its own copy from its own rows: the copies drifted apart (which one evaluates depends
    on the replica), and a replica handed no rows (a last batch smaller than the replica count)
    set its copy to NaN: every later validation loss read NaN. Averaged by rows (a replica without
    rows weighs nothing), the moving mean is one device's; the moving variance pools the
    replicas' variances. A variable the step left alone keeps its value exactly.
    """
    total = _global_rows(rows)
    changes = [tf.math.multiply_no_nan(tf.convert_to_tensor(v) - b, tf.cast(rows, b.dtype)) for v, b in zip(variables, before, strict=True)]
    summed = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, changes)
    for variable, old, change in zip(variables, before, summed, strict=True):
        variable.assign(old + change / tf.cast(total, old.dtype))


def tag_rows(logs: Mapping[str, tf.Tensor], rows: tf.Tensor) -> dict[str, tf.Tensor]:
    """Adds the replica's row count to a step's outputs, for :func:`reduce_step_outputs`."""
    return {**logs, _ROWS: rows}


# -- across replicas ------------------------------------------------------------------------------
def reduce_step_outputs(strategy: tf.distribute.Strategy, per_replica: Mapping[str, Any]) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """Reduces a replicated step's outputs (see the module docstring for which reduction each gets).

    Args:
        strategy: The strategy the step ran under.
        per_replica: What ``strategy.run(step)`` returned, including the row count of
            :func:`tag_rows`.

    Returns:
        ``(scalars, global_rows)``: one value per name, and the global batch's row count.
    """
    rows = per_replica[_ROWS]

    def total(value: Any) -> tf.Tensor:
        return strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)

    global_rows = total(rows)

    def weighted(value: Any) -> tf.Tensor:
        product = strategy.run(lambda v, r: tf.math.multiply_no_nan(tf.cast(v, tf.float32), r), (value, rows))
        return total(product) / global_rows

    out: dict[str, tf.Tensor] = {}
    for name, value in per_replica.items():
        if name == _ROWS:
            continue
        parsed = stats.parse_stat_name(name)
        if name == stats.LEARNING_RATE or (parsed is not None and parsed.kind != stats.ACTIVATION):
            out[name] = strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
        elif parsed is None:  # loss and user scalars: batch means
            out[name] = weighted(value)
        elif parsed.stat == stats.NONFINITE:
            out[name] = total(value)
        elif parsed.stat == stats.DEAD_FRACTION:
            out[name] = strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
        elif parsed.stat == stats.STD:
            mean = per_replica.get(stats.activation_stat_name(parsed.target, stats.MEAN))
            if mean is None:
                out[name] = weighted(value)
                continue
            second = strategy.run(lambda s, m: tf.square(tf.cast(s, tf.float32)) + tf.square(tf.cast(m, tf.float32)), (value, mean))
            variance = weighted(second) - tf.square(weighted(mean))
            out[name] = tf.sqrt(tf.maximum(variance, 0.0))
        else:
            out[name] = weighted(value)
    return out, global_rows


def replicated_step(strategy: tf.distribute.Strategy, step: Callable[[Any], Mapping[str, tf.Tensor]]) -> Callable[[Any], tuple[dict[str, tf.Tensor], tf.Tensor]]:
    """Wraps ``step`` to run on every replica of a distributed batch and reduce its outputs."""

    def run(batch: Any) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        def replica_step(local_batch: Any) -> dict[str, tf.Tensor]:
            from trainkit.loop import step_output_names  # loop imports this module

            outputs = step(local_batch)
            step_output_names(outputs)  # a step of its own that returns no dict of scalars: bad-step-output
            logs = dict(outputs)
            first = tf.nest.flatten(local_batch)[0]
            return tag_rows(logs, tf.cast(tf.shape(first)[0], tf.float32))

        return reduce_step_outputs(strategy, strategy.run(replica_step, args=(batch,)))

    return run
