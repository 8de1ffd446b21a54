"""Per-step training statistics, computed in the graph (their names: :mod:`trainkit.stat_names`).

Every function here is pure TensorFlow (optax style): it takes tensors and returns a flat
``dict[str, tf.Tensor]`` of float32 scalars, and never syncs with the host or formats strings from
tensor values, so it can run inside the compiled, possibly XLA-compiled, training step. Names are
built from Python strings once, while the step is traced. Logging the values is somebody else's
job (:mod:`trainkit.writers.tensorboard`, callbacks, the diagnosis rules). The names are
re-exported here (``stats.LOSS``, ``stats.grad_norm_name``...), where the step's code reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

# The names, re-exported: the step's code and its readers use stats.LOSS and the rest.
from trainkit.stat_names import (
    ACTIVATION as ACTIVATION,
)
from trainkit.stat_names import (
    ACTIVATION_KINDS as ACTIVATION_KINDS,
)
from trainkit.stat_names import (
    ACTIVATION_STATS as ACTIVATION_STATS,
)
from trainkit.stat_names import (
    BASE_ACTIVATION_STATS as BASE_ACTIVATION_STATS,
)
from trainkit.stat_names import (
    DEAD_FRACTION as DEAD_FRACTION,
)
from trainkit.stat_names import (
    GLOBAL_GRAD_NORM as GLOBAL_GRAD_NORM,
)
from trainkit.stat_names import (
    GRAD_NONFINITE as GRAD_NONFINITE,
)
from trainkit.stat_names import (
    GRAD_NORM as GRAD_NORM,
)
from trainkit.stat_names import (
    LEARNING_RATE as LEARNING_RATE,
)
from trainkit.stat_names import (
    LOSS as LOSS,
)
from trainkit.stat_names import (
    MEAN as MEAN,
)
from trainkit.stat_names import (
    NEAR_ZERO as NEAR_ZERO,
)
from trainkit.stat_names import (
    NONFINITE as NONFINITE,
)
from trainkit.stat_names import (
    NONPOSITIVE_FRACTION as NONPOSITIVE_FRACTION,
)
from trainkit.stat_names import (
    OUTPUT as OUTPUT,
)
from trainkit.stat_names import (
    SATURATED_FRACTION as SATURATED_FRACTION,
)
from trainkit.stat_names import (
    SATURATION_THRESHOLD as SATURATION_THRESHOLD,
)
from trainkit.stat_names import (
    SMOOTH_RELU as SMOOTH_RELU,
)
from trainkit.stat_names import (
    STD as STD,
)
from trainkit.stat_names import (
    SYMMETRIC_SATURATING as SYMMETRIC_SATURATING,
)
from trainkit.stat_names import (
    UPDATE_RATIO as UPDATE_RATIO,
)
from trainkit.stat_names import (
    VARIABLE_STATS as VARIABLE_STATS,
)
from trainkit.stat_names import (
    WEIGHT_NORM as WEIGHT_NORM,
)
from trainkit.stat_names import (
    StatName as StatName,
)
from trainkit.stat_names import (
    activation_kind as activation_kind,
)
from trainkit.stat_names import (
    activation_stat_name as activation_stat_name,
)
from trainkit.stat_names import (
    activation_stat_names as activation_stat_names,
)
from trainkit.stat_names import (
    grad_nonfinite_name as grad_nonfinite_name,
)
from trainkit.stat_names import (
    grad_norm_name as grad_norm_name,
)
from trainkit.stat_names import (
    is_output_name as is_output_name,
)
from trainkit.stat_names import (
    is_statistic as is_statistic,
)
from trainkit.stat_names import (
    numbered as numbered,
)
from trainkit.stat_names import (
    output_names as output_names,
)
from trainkit.stat_names import (
    parse_stat_name as parse_stat_name,
)
from trainkit.stat_names import (
    relu_layer_activation as relu_layer_activation,
)
from trainkit.stat_names import (
    update_ratio_name as update_ratio_name,
)
from trainkit.stat_names import (
    variable_name as variable_name,
)
from trainkit.stat_names import (
    variable_names as variable_names,
)
from trainkit.stat_names import (
    variable_stat_names as variable_stat_names,
)
from trainkit.stat_names import (
    weight_norm_name as weight_norm_name,
)

# -- in-graph statistics --------------------------------------------------------------------------
# How tensors are summed depends on who runs the step (``xla``); measured on CPU:
# * TensorFlow kernels (``xla=False``): every op is dispatched on its own and writes its whole
#   output, so each tensor is reduced by single kernels that make no temporaries (``l2_loss``,
#   ``reduce_sum``), and the per-tensor scalars are stacked into vectors so that the remaining
#   arithmetic is a handful of ops whatever the number of variables or layers.
# * XLA (``xla=True``): every reduction becomes its own kernel, split in two by the CPU backend's
#   tree-reduction rewrite and run as a scalar loop (~0.4 ns an element, 20-40x slower than
#   TensorFlow's kernel). A matrix-vector product with a vector of ones is emitted as one
#   vectorised kernel into which the stacking and element-wise work fuse, so all of a tensor's
#   sums (a variable's gradient, weight and update; a layer's values and squares) are one product.
#   (Also tried and measured slower in the step: packing small tensors into one matrix summed by
#   a product with a constant indicator, run on Eigen's thread pool; reductions per tensor.)
# Either way one guarded branch counts the NaN/inf entries, only on steps that have some.
_MATVEC_COLUMNS = (256, 128, 64)  # narrower pieces measured slower than none (see _dot_sums)
_LONG_ROW = 4096  # entries; longer rows are summed in c-wide pieces first (see _dot_sums)


def _float32(tensor: Any) -> tf.Tensor:
    tensor = tf.convert_to_tensor(tensor)
    return tensor if tensor.dtype == tf.float32 else tf.cast(tensor, tf.float32)


def _dense_values(gradient: Any) -> tf.Tensor:
    # Sparse (embedding) gradients: the rows of the table they change, without densifying it.
    if isinstance(gradient, tf.IndexedSlices):
        return _float32(_merged_rows(gradient))
    return _float32(gradient)


def _merged_rows(gradient: tf.IndexedSlices) -> tf.Tensor:
    """A sparse gradient's rows with repeated indices summed: the dense gradient's nonzero rows.

    An embedding's gradient holds one row per id occurrence in the batch; the dense gradient
    adds the rows of a repeated id, so norms and NaN counts taken over the occurrences were
    wrong (the norm 3x too small for 8-token rows of a 3-word vocabulary). Sorted and summed by
    segment: static shapes for XLA (``tf.unique`` has none), zero rows padding the end, and the
    work grows with the batch's ids, not with the table.
    """
    return _merged_rows_and_count(gradient)[0]


def _merged_rows_and_count(gradient: tf.IndexedSlices) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`_merged_rows`, and how many of them are not padding (the distinct ids)."""
    indices = gradient.indices
    order = tf.argsort(indices, stable=True)
    ordered = tf.gather(indices, order)
    # A new segment wherever the sorted id changes (the first id always starts one).
    starts = tf.not_equal(ordered, tf.concat([ordered[:1] - 1, ordered[:-1]], 0))
    segments = tf.cumsum(tf.cast(starts, tf.int32)) - 1
    rows = tf.math.unsorted_segment_sum(tf.gather(gradient.values, order), segments, tf.size(indices))
    return rows, tf.reduce_sum(tf.cast(starts, tf.int32))


def histogram_entries(gradient: Any) -> tf.Tensor:
    """What :func:`histograms` counts of a gradient: a sparse one's merged rows (the dense
    gradient's nonzero rows, see :func:`_merged_rows`), their padding NaN, which the histograms
    leave out; a dense one as it is.

    Counted one row per id occurrence, the histogram of an embedding's gradient showed values no
    entry of the gradient has wherever a batch repeated an id.
    """
    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    rows, count = _merged_rows_and_count(gradient)
    real = tf.range(tf.shape(rows)[0]) < count
    real = tf.reshape(real, [-1] + [1] * (rows.shape.rank - 1))
    return tf.where(real, _float32(rows), np.nan)


def read_variable(variable: Any) -> tf.Tensor:
    """The value of a Keras 3 variable or ``tf.Variable`` (or a tensor) as a tensor.

    Inside ``tf.function`` the read is ordered after earlier assignments to the variable.
    """
    return tf.convert_to_tensor(variable)


def nonfinite_count(tensor: tf.Tensor) -> tf.Tensor:
    """Number of NaN/inf entries, as float32."""
    return tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(tensor)), tf.float32))


def _dot_sums(rows: tf.Tensor, inner: int | None = None) -> tf.Tensor:
    """Row sums of a ``[F, N]`` matrix as matrix-vector products (``N`` may be dynamic).

    ``inner`` is the innermost axis of the tensors the rows were flattened from. A long row is
    first cut into ``c``-wide pieces (``[F * N / c, c] @ ones([c, 1])``, then a short reduction
    of the pieces) where ``c`` divides ``inner``: XLA vectorises a product with many short rows
    far better than one with a few long ones (31 vs 73 us for three rows of 64k entries; 200 us as
    ``reduce_sum``), but a piece that spans two rows of the tensor costs more than no pieces (in
    isolation, the values and squares of a ``[100, 128]`` tanh layer: 8 us as one product, 25 us
    in 256-wide pieces, 6 us in 128-wide ones; that MLP's statistics on vs off 1.67x -> 1.16x).
    A single row is the exception: ``[1, N] @ [N, 1]`` is a vector dot, which XLA's CPU backend
    runs as a slow loop (13-27 us for 8k-18k entries, 2 us in pieces of any width).
    """
    width = rows.shape[1]
    if width is None:
        ones = tf.ones(tf.stack([tf.shape(rows)[1], 1]), rows.dtype)
        return tf.reshape(tf.matmul(rows, ones), [-1])
    columns = _piece_columns(width, inner, single_row=rows.shape[0] == 1)
    if columns is not None:
        pieces = tf.matmul(tf.reshape(rows, [-1, columns]), tf.ones([columns, 1], rows.dtype))
        return tf.reduce_sum(tf.reshape(pieces, [-1, width // columns]), axis=1)
    return tf.reshape(tf.matmul(rows, tf.ones([width, 1], rows.dtype)), [-1])


def _piece_columns(width: int, inner: int | None, single_row: bool = False) -> int | None:
    """How wide :func:`_dot_sums` cuts a row of ``width`` entries (``None``: not at all)."""
    if width <= _LONG_ROW:
        return None
    if single_row:  # any piece beats a vector dot
        return next((c for c in (*_MATVEC_COLUMNS, 32, 16, 8) if width % c == 0), None)
    return next((c for c in _MATVEC_COLUMNS if inner and inner % c == 0), None)


def _totals(tensors: Sequence[tf.Tensor], xla: bool) -> tf.Tensor:
    """``[len(tensors)]``: the sum of each of several same-shaped tensors (see the note above)."""
    if not xla:
        return tf.stack([tf.reduce_sum(t) for t in tensors])
    shape = tensors[0].shape
    inner = shape[-1] if shape.rank else 1
    return _dot_sums(tf.reshape(tf.stack(list(tensors)), [len(tensors), -1]), inner)


def _squares_per_variable(features: Sequence[Sequence[tf.Tensor]], xla: bool) -> tf.Tensor:
    """``[F, k]``: ``sum(features[f][i] ** 2)`` for F lists of k tensors (same shape per i)."""
    if not xla:
        return 2.0 * tf.stack([tf.stack([tf.nn.l2_loss(t) for t in tensors]) for tensors in features])
    columns = []
    for same_variable in zip(*features, strict=True):
        if all(t.shape == same_variable[0].shape for t in same_variable):
            columns.append(_totals([tf.square(t) for t in same_variable], xla))
        else:  # e.g. a sparse gradient's rows next to the whole table
            columns.append(tf.stack([_totals([tf.square(t)], xla)[0] for t in same_variable]))
    return tf.stack(columns, axis=1)


def _nonfinite_counts(tensors: Sequence[tf.Tensor], finite_if: tf.Tensor) -> tf.Tensor:
    """``[k]`` NaN/inf counts, computed only when the scalar ``finite_if`` is not finite (see
    :func:`_grouped_nonfinite_counts`)."""
    return _grouped_nonfinite_counts([tensors], finite_if)[0]


def _grouped_nonfinite_counts(groups: Sequence[Sequence[tf.Tensor]], finite_if: tf.Tensor) -> list[tf.Tensor]:
    """NaN/inf counts, a vector for each group of tensors, computed only when the scalar
    ``finite_if`` is not finite.

    ``finite_if`` is a sum over every entry (of squares): finite only when every entry is finite,
    or when finite entries overflowed, where the counts are computed and come out 0. So the
    counting passes run only on the rare steps that need them. One branch for all the groups,
    each group an output of its own: slices of one vector were a copying kernel each in the XLA
    step (three in the 10-64-32-1 MLP's).
    """
    sizes = [len(group) for group in groups]
    return list(tf.cond(
        tf.math.is_finite(finite_if),
        lambda: [tf.zeros([k], tf.float32) for k in sizes],
        lambda: [tf.stack([nonfinite_count(t) for t in group]) if group else tf.zeros([0], tf.float32) for group in groups],
    ))


def unscaled_gradients(gradients: Sequence[Any], scale: tf.Tensor) -> list[Any]:
    """Gradients of a scaled loss (a ``LossScaleOptimizer``'s) divided back by the scale.

    Args:
        gradients: One gradient per variable (dense, ``tf.IndexedSlices`` or ``None``).
        scale: The factor the loss was multiplied by (``optimizer.scale_loss(1)``).

    Returns:
        The gradients of the loss itself, in their own dtypes.
    """
    inverse = 1.0 / scale

    def unscale(g: Any) -> Any:
        if isinstance(g, tf.IndexedSlices):
            return tf.IndexedSlices(g.values * tf.cast(inverse, g.values.dtype), g.indices, g.dense_shape)
        return None if g is None else g * tf.cast(inverse, g.dtype)

    return [unscale(g) for g in gradients]


def snapshot(variables: Iterable[Any]) -> list[tf.Tensor]:
    """Reads every variable's value now, for :func:`update_stats` after the update.

    ``tf.identity`` forces a read op: inside ``tf.function`` automatic control dependencies order
    it before any later assignment to the same variable, so it sees the pre-update value.
    """
    return [tf.identity(read_variable(v)) for v in variables]


def _gradient_values(grads: Sequence[Any], like: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    return [tf.zeros_like(v) if g is None else _dense_values(g) for g, v in zip(grads, like, strict=True)]


def _variable_columns(
    names: Sequence[str], grad_sq: tf.Tensor | None, nonfinite: tf.Tensor | None, weight_sq: tf.Tensor | None, update_sq: tf.Tensor | None
) -> dict[str, tf.Tensor]:
    """Per-variable statistics from ``[k]`` vectors, grouped by statistic.

    Grouped by statistic, not by variable: each vector's entries stay contiguous in the step's
    output row, which XLA packs as one slice (interleaving them cost ~5 us a step).
    """
    k = len(names)
    out: dict[str, tf.Tensor] = {}
    if grad_sq is not None:
        out[GLOBAL_GRAD_NORM] = tf.sqrt(tf.reduce_sum(grad_sq))
        out.update(zip(map(grad_norm_name, names), tf.unstack(tf.sqrt(grad_sq), num=k), strict=True))
    if nonfinite is not None:
        out.update(zip(map(grad_nonfinite_name, names), tf.unstack(nonfinite, num=k), strict=True))
    if weight_sq is not None and update_sq is not None:
        weights = tf.sqrt(weight_sq)
        out.update(zip(map(weight_norm_name, names), tf.unstack(weights, num=k), strict=True))
        ratios = tf.math.divide_no_nan(tf.sqrt(update_sq), weights)
        out.update(zip(map(update_ratio_name, names), tf.unstack(ratios, num=k), strict=True))
    return out


def gradient_stats(
    grads: Sequence[Any], variables: Sequence[Any], names: Sequence[str] | None = None, *, xla: bool = False
) -> dict[str, tf.Tensor]:
    """Global and per-variable gradient norms and non-finite counts.

    Args:
        grads: One gradient per variable (a tensor, ``tf.IndexedSlices`` or ``None`` for a
            variable the loss does not depend on, which counts as a zero gradient).
        variables: The variables (their names when ``names`` is not given; their shapes).
        names: ``VAR`` names, one per variable (see :func:`variable_names`).
        xla: Whether the step is XLA-compiled (picks the faster way to sum; same values).

    Returns:
        ``grad_norm/global``, every ``grad_norm/VAR``, then every ``grad_nonfinite/VAR``.
    """
    names = list(names) if names is not None else variable_names(variables)
    if len(names) != len(grads):
        raise ValueError(f"gradient_stats got {len(grads)} gradients for {len(names)} names.")
    if not names:
        return {GLOBAL_GRAD_NORM: tf.constant(0.0)}
    values = [tf.zeros([]) if g is None else _dense_values(g) for g in grads]
    (grad_sq,) = tf.unstack(_squares_per_variable([values], xla), num=1)
    return _variable_columns(names, grad_sq, _nonfinite_counts(values, tf.reduce_sum(grad_sq)), None, None)


def update_stats(before: Sequence[Any], after: Sequence[Any], names: Sequence[str], *, xla: bool = False) -> dict[str, tf.Tensor]:
    """Weight norms and update/weight ratios from the values before and after an update.

    Args:
        before: Variable values read before the optimizer step (see :func:`snapshot`).
        after: The values after it (variables, read here, or tensors read after the update).
        names: ``VAR`` names, one per variable.
        xla: Whether the step is XLA-compiled (picks the faster way to sum; same values).

    Returns:
        ``weight_norm/VAR`` (of the updated weights) and ``update_ratio/VAR`` =
        ``||after - before|| / ||after||`` (0 where the weights are all zero).
    """
    if not len(before) == len(after) == len(names):
        raise ValueError(f"update_stats got {len(before)} old values, {len(after)} new values and {len(names)} names.")
    if not names:
        return {}
    new = [_float32(read_variable(a)) for a in after]
    updates = [n - _float32(b) for n, b in zip(new, before, strict=True)]
    weight_sq, update_sq = tf.unstack(_squares_per_variable([new, updates], xla), num=2)
    return _variable_columns(names, None, None, weight_sq, update_sq)


def activation_stats(name: str, outputs: Any, activation: str = "linear", *, xla: bool = False) -> dict[str, tf.Tensor]:
    """Statistics of one layer's outputs over a batch.

    Args:
        name: The layer name ``L`` (``"output"`` for the model output).
        outputs: The layer's output tensor, batch first, units (features/channels) last.
        activation: The canonical activation the layer applies; picks the extra statistics
            (see :data:`ACTIVATION_KINDS`).
        xla: Whether the step is XLA-compiled (picks the faster way to sum; same values).

    Returns:
        ``activation/L/STAT`` for each statistic of :func:`activation_kind`.
    """
    return layers_activation_stats([(name, outputs, activation)], xla=xla)


def layers_activation_stats(
    items: Sequence[tuple[str, Any, str]], *, xla: bool = False, masks: Sequence[Any] | None = None
) -> dict[str, tf.Tensor]:
    """:func:`activation_stats` of several layers, with the arithmetic vectorised across layers.

    Args:
        items: ``(name, outputs, activation)`` per layer; every output has the batch first.
        xla: Whether the step is XLA-compiled (picks the faster way to sum; same values).
        masks: Per layer, the Keras mask of its output's positions (boolean, its shape less the
            units axis: ``[batch, T]`` for ``[batch, T, units]``) or ``None``; the statistics then
            read the unmasked positions only (see :func:`masked_outputs`). ``None``: no masks.

    Returns:
        ``activation/L/STAT`` for every layer and statistic. ``mean`` and ``std`` come from the
        sums of the values and of their squares (one pass, no temporaries), in float32: ``std``'s
        relative error grows as ``(mean / std) ** 2``, ~0.1-1% where ``std`` is 1% of ``|mean|``
        (a sigmoid output at initialisation reads 0.0022175 or 0.0022209 for 0.0022227, plain and
        XLA). No diagnosis rule reads it. (Summing values shifted by one of them would fix it for
        free under XLA, but costs the CNN's plain step one more pass over its conv output.)
    """
    if not items:
        return {}
    tensors = masked_outputs([_float32(outputs) for _, outputs, _ in items], masks)
    vectors = _layer_vectors(tensors, [a for _, _, a in items], xla, masks)
    return _activation_columns(items, vectors, _nonfinite_counts(tensors, tf.reduce_sum(vectors["sumsq"])))


def step_stats(
    grads: Sequence[Any],
    before: Sequence[Any] | None,
    after: Sequence[Any],
    names: Sequence[str],
    activations: Sequence[tuple[str, Any, str]] = (),
    *,
    xla: bool = False,
    updates: Sequence[Any] | None = None,
    masks: Sequence[Any] | None = None,
) -> dict[str, tf.Tensor]:
    """:func:`gradient_stats`, :func:`update_stats` and :func:`layers_activation_stats` in one.

    The same names and values, with fewer kernels: under XLA a variable's gradient, new value
    and update are summed by one product, and one guarded branch counts every non-finite entry.

    Args:
        grads: One gradient per variable (``None`` counts as zero).
        before: The variables' values before the update (see :func:`snapshot`); ``None`` when
            ``updates`` is given.
        after: The variables (read here, after the update) or their new values.
        names: ``VAR`` names, one per variable.
        activations: ``(name, outputs, activation)`` per tapped layer.
        xla: Whether the step is XLA-compiled (picks the faster way to sum; same values).
        updates: Each variable's update as the optimizer applied it (see
            :mod:`trainkit.updates`), instead of ``after - before``: no copy of the weights.
        masks: Per tapped layer, the Keras mask of its output's positions, or ``None`` (see
            :func:`layers_activation_stats`).

    Returns:
        ``grad_norm/global``; per variable ``grad_norm``, ``grad_nonfinite``, ``weight_norm``,
        ``update_ratio``; then ``activation/L/STAT`` for every layer.
    """
    if (before is None) == (updates is None):
        raise ValueError("step_stats needs either the values before the update or the updates.")
    new = [_float32(read_variable(a)) for a in after]
    if updates is None:
        assert before is not None
        if len(before) != len(new):
            raise ValueError(f"step_stats got {len(before)} old values for {len(new)} new values.")
        updates = [n - _float32(b) for n, b in zip(new, before, strict=True)]
    else:
        updates = [_float32(u) for u in updates]
    if not len(grads) == len(updates) == len(new) == len(names):
        raise ValueError(f"step_stats got {len(grads)} gradients, {len(updates)} updates, {len(new)} new values and {len(names)} names.")
    k = len(names)
    values = _gradient_values(grads, new)
    grad_sq, weight_sq, update_sq = tf.unstack(_squares_per_variable([values, new, updates], xla), num=3) if k else (tf.zeros([0]),) * 3
    tensors = [_float32(outputs) for _, outputs, _ in activations]
    if not xla and tensors:
        tensors = _after_backward([_softmax_again(t) for t in tensors], values)
    tensors = masked_outputs(tensors, masks)
    vectors = _layer_vectors(tensors, [a for _, _, a in activations], xla, masks)
    # One guard for every count: the sums of squares are finite only when every entry is.
    grad_nonfinite, activation_nonfinite = _grouped_nonfinite_counts([values, tensors], tf.reduce_sum(grad_sq) + tf.reduce_sum(vectors["sumsq"]))
    out = _variable_columns(names, grad_sq, grad_nonfinite, weight_sq, update_sq) if k else {GLOBAL_GRAD_NORM: tf.constant(0.0)}
    if activations:
        out.update(_activation_columns(activations, vectors, activation_nonfinite))
    return out


# Raw per-layer quantities, each a vector over layers, from which every statistic is computed.
_QUANTITIES = ("count", "sum", "sumsq", "positive", "dead", "units", "saturated", "saturated_of")
_FILLS = {"count": 1.0, "units": 1.0, "saturated_of": 1.0}  # for layers without the quantity


def _units(x: tf.Tensor) -> tuple[tf.Tensor, int]:
    """``x`` as ``[positions, units]`` (units = last axis; one unit for rank < 2) and the units."""
    if x.shape.rank is not None and x.shape.rank >= 2 and x.shape[-1] is not None:
        return tf.reshape(x, [-1, x.shape[-1]]), int(x.shape[-1])
    return tf.reshape(x, [-1, 1]), 1


def _saturated(x: tf.Tensor, activation: str) -> tf.Tensor:
    """1.0 where an output is saturated: tanh ``|a| > 0.99``; sigmoid ``|a - 0.5| > 0.49``."""
    if activation in SYMMETRIC_SATURATING:
        return tf.cast(tf.abs(x) > SATURATION_THRESHOLD, tf.float32)
    return tf.cast(tf.abs(x - 0.5) > SATURATION_THRESHOLD - 0.5, tf.float32)


def _active(x: tf.Tensor, activation: str) -> tf.Tensor:
    """1.0 where a ReLU-like unit's output is active: > 0, or for a smooth ReLU (gelu, silu...)
    farther than :data:`NEAR_ZERO` from 0 (its negative outputs still pass a gradient)."""
    if activation in ("relu", "relu6"):
        return tf.sign(x)  # relu/relu6 outputs are >= 0: sign() is the 0/1 indicator in one op
    if activation in SMOOTH_RELU:
        return tf.cast(tf.abs(x) > NEAR_ZERO, tf.float32)
    return tf.cast(x > 0.0, tf.float32)


def _softmax_again(x: tf.Tensor) -> tf.Tensor:
    """An unused ``Softmax`` op's output recomputed as ``exp(log_softmax(logits))``, else ``x``.

    The same probabilities (to rounding), for the statistics only: oneDNN's softmax kernel,
    which TensorFlow swaps in, costs ~180 us of CPU a step on the CNN's 32x10 output against
    ~15 us for these two ops, and a softmax output layer's probabilities are otherwise unused
    (the loss reads the logits). A softmax something else already reads (a hidden layer's)
    runs anyway: left as it is. (A metric reading the output, traced after the statistics,
    makes both run: ~15 us.)
    """
    op = getattr(x, "op", None)  # eager tensors have none
    if op is None or op.type != "Softmax" or x.consumers():
        return x
    return tf.exp(tf.nn.log_softmax(op.inputs[0]))


def _after_backward(tensors: Sequence[tf.Tensor], gradients: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """``tensors``, read only once every gradient is computed (for TensorFlow kernels, not XLA).

    TensorFlow's executor runs an op as soon as its inputs are ready, so the passes over a large
    activation would otherwise run beside the backward pass's convolutions, whose oneDNN kernels
    split their work over both cores and wait for the slower thread. The CNN's in-graph
    statistics, A/B in one process: 1.23x -> 1.15x, 1.17x -> 1.13x, 1.16x -> 1.11x its
    statistics-off epoch. (Waiting for the optimizer's update too measured the same.)
    """
    with tf.control_dependencies(list(gradients)):
        return [tf.identity(t) for t in tensors]


def masked_outputs(tensors: Sequence[tf.Tensor], masks: Sequence[Any] | None) -> list[tf.Tensor]:
    """Layer outputs with their masked positions set to 0 (``masks``: see :func:`layers_activation_stats`).

    A 0 adds nothing to any sum the statistics take (values, squares, saturated or active
    outputs, NaN counts), and the counts they divide by are those of the unmasked positions
    (:func:`_layer_quantities`). Padding is no part of what a layer learns: the loss, pooling
    and recurrent layers leave it out. Read with it, 72% padding of a tanh layer saturated at 86%
    of its real positions read 24% (no ``saturated-activations``), its outputs there being
    ``tanh(bias)`` of a zero input. ``tf.where``, not a product: a NaN times 0 is NaN.
    """
    if masks is None:  # decided as the step traces: a model without masks gets no op more
        return list(tensors)
    return [x if m is None else tf.where(tf.expand_dims(tf.cast(m, tf.bool), -1), x, tf.zeros([], x.dtype))
            for x, m in zip(tensors, masks, strict=True)]


def _layer_quantities(x: tf.Tensor, activation: str, xla: bool, mask: Any = None) -> dict[str, tf.Tensor]:
    """Raw sums of one layer's outputs (see the note on summing above); with a ``mask``, of its
    unmasked positions (``x`` already 0 at the others: :func:`masked_outputs`)."""
    kinds = activation_kind(activation)
    replicas = tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context()
    if mask is None:
        count = tf.cast(tf.size(x), tf.float32)
        positions = None
    else:
        positions = tf.reduce_sum(tf.cast(mask, tf.float32))
        count = positions * (tf.cast(tf.size(x), tf.float32) / tf.cast(tf.size(mask), tf.float32))
    if xla and mask is None and DEAD_FRACTION in kinds and x.shape.is_fully_defined() and x.shape.rank == 2 and x.shape.num_elements() <= _LONG_ROW:
        return _small_relu_quantities(x, activation, count)
    band = SATURATED_FRACTION in kinds and activation != "softmax"
    if xla:
        features = [x, tf.square(x)] + ([_saturated(x, activation)] if band else [])
        totals = tf.unstack(_totals(features, xla), num=len(features))
    else:
        totals = [tf.reduce_sum(x), 2.0 * tf.nn.l2_loss(x)] + ([tf.reduce_sum(_saturated(x, activation))] if band else [])
    out = {"count": count, "sum": totals[0], "sumsq": totals[1]}
    if band:
        out["saturated"], out["saturated_of"] = totals[2], count
        if positions is not None and activation not in SYMMETRIC_SATURATING:
            # The padding's outputs, set to 0 (masked_outputs), lie in a sigmoid's saturated band:
            # each counted 1 (a layer 75% saturated at its real positions, 72% padding, read 3.3).
            out["saturated"] = out["saturated"] - (tf.cast(tf.size(x), tf.float32) - count)
    if activation == "softmax":
        top = tf.reduce_max(x, axis=-1)
        out["saturated"] = tf.reduce_sum(tf.cast(top > SATURATION_THRESHOLD, tf.float32))
        out["saturated_of"] = tf.cast(tf.size(top), tf.float32) if positions is None else positions
    if DEAD_FRACTION in kinds:
        grid, units = _units(x)
        active = _active(grid, activation)
        if xla:
            per_unit = tf.reduce_sum(active, axis=0)  # [units]: how often each unit was > 0
        else:  # a product with ones: oneDNN's GEMV beats the column reduction (112 vs 180 us, 28800x32)
            per_unit = tf.reshape(tf.matmul(tf.ones(tf.stack([1, tf.shape(grid)[0]]), grid.dtype), active), [units])
        # A unit is dead when it was active nowhere in the batch (a NaN count is not dead). Under a
        # strategy, nowhere in the global batch: a replica's own rows (half of them, or none in a
        # short last batch) left units dead that other replicas' rows made active, and the mean of
        # the replicas' fractions was far above one device's (35% -> 57% dead: a false dead-relu).
        seen = _all_replicas_sum(per_unit) if replicas else per_unit
        dead = tf.cast(seen <= 0.0, tf.float32)
        out["positive"], out["dead"] = tf.unstack(_totals([per_unit, dead], xla), num=2)
        out["units"] = tf.constant(float(units))
    return out if positions is None else _masked_totals(out, positions, replicas)


def _masked_totals(out: dict[str, tf.Tensor], positions: tf.Tensor, replicas: bool) -> dict[str, tf.Tensor]:
    """A masked layer's quantities (``positions``: its unmasked ones), summed over the replicas
    under a strategy; its counts at least one.

    Each replica's rows hold their own share of the unmasked positions, so a statistic over a
    replica's positions, combined across replicas by their rows (:mod:`trainkit.distribute`),
    was not the global batch's: 6 one-token rows among 12 put a masked ReLU layer's
    nonpositive_fraction at 0.47 against one device's 0.43. Summed here (one all-reduce a masked
    layer; an unmasked layer's counts follow its rows and need none), every replica holds the
    global batch's quantities, which the row-weighted reduction of the step's outputs leaves as
    they are. ``dead`` already counts the units active on no replica's positions.
    """
    if replicas:
        names = [name for name in out if name not in ("dead", "units")]
        summed = tf.unstack(_all_replicas_sum(tf.stack([positions, *(out[name] for name in names)])), num=len(names) + 1)
        positions = summed[0]
        out = {**out, **dict(zip(names, summed[1:], strict=True))}
    if "dead" in out:  # no unmasked position (a batch of rows all padding): no unit was seen, none is dead
        out["dead"] = out["dead"] * tf.cast(positions > 0.0, tf.float32)
    # At least one: a batch of rows all padding reads 0s rather than NaN for its mean.
    return {name: tf.maximum(value, 1.0) if name in ("count", "saturated_of") else value for name, value in out.items()}


def _all_replicas_sum(value: tf.Tensor) -> tf.Tensor:
    """``value`` summed over the replicas of the strategy whose step is being traced."""
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)


def _small_relu_quantities(x: tf.Tensor, activation: str, count: tf.Tensor) -> dict[str, tf.Tensor]:
    """:func:`_layer_quantities` of a small ``[batch, units]`` ReLU-family layer under XLA.

    One product of a row of ones with ``[x, x**2, active]`` gives every unit's three sums, and a
    second product the layer's four: fewer kernels than summing each quantity on its own (the
    10-64-32-1 MLP's epoch 1.7 ms shorter). (Two reductions instead of the second product were
    four kernels for a 64-unit layer, XLA's CPU backend splitting any reduction of more than 32
    entries in two: the MLP's statistics 1.34-1.45x -> 1.30-1.38x its statistics-off epoch,
    three interleaved A/B runs.) Layers over :data:`_LONG_ROW` values keep the general path,
    which measured faster for 32x256 (the 8x256 MLP's epoch 6 ms longer).
    """
    batch, units = int(x.shape[0]), int(x.shape[1])
    active = _active(x, activation)
    # Concatenated, not stacked on a middle axis: XLA fuses a stack into the product, three
    # kernels fewer for the MLP's 32x64 layer, but its fused product is slower than the written
    # concatenation's (in-graph statistics 1.34-1.37x -> 1.48-1.50x the statistics-off epoch).
    per_unit = tf.reshape(tf.matmul(tf.ones([1, batch]), tf.concat([x, tf.square(x), active], axis=1)), [3, units])
    # A unit is dead when it was active nowhere in the batch (a NaN count is not dead).
    per_unit = tf.concat([per_unit, tf.cast(per_unit[2:] <= 0.0, tf.float32)], axis=0)
    total, squares, positive, dead = tf.unstack(tf.reshape(tf.matmul(per_unit, tf.ones([units, 1])), [4]), num=4)
    return {"count": count, "sum": total, "sumsq": squares, "positive": positive, "dead": dead, "units": tf.constant(float(units))}


def _layer_vectors(tensors: Sequence[tf.Tensor], activations: Sequence[str], xla: bool, masks: Sequence[Any] | None = None) -> dict[str, tf.Tensor]:
    """Each raw quantity as a vector over the layers (``masks``: see :func:`layers_activation_stats`)."""
    if not tensors:
        return {q: tf.zeros([0]) for q in _QUANTITIES}
    # Layer by layer. (Concatenating [batch, units] layers to sum them together, with one product
    # by a unit -> layer indicator, measured slower in the XLA-compiled step.)
    masks = list(masks) if masks is not None else [None] * len(tensors)
    layers = [_layer_quantities(x, a, xla, m) for x, a, m in zip(tensors, activations, masks, strict=True)]
    if not xla:
        return {q: tf.stack([layer.get(q, tf.constant(_FILLS.get(q, 0.0))) for layer in layers]) for q in _QUANTITIES}
    # Under XLA each layer's quantities are first one row of a [layers, quantities] matrix: its
    # sums, slices of its products' outputs, are then read inside the fused stacking rather than
    # copied out one by one (a kernel each: the 8x256 MLP's step 38 kernels fewer, its time the
    # same within the noise).
    rows = tf.stack([tf.stack([layer.get(q, tf.constant(_FILLS.get(q, 0.0))) for q in _QUANTITIES]) for layer in layers])
    return dict(zip(_QUANTITIES, tf.unstack(rows, num=len(_QUANTITIES), axis=1), strict=True))


def _activation_columns(items: Sequence[tuple[str, Any, str]], vectors: Mapping[str, tf.Tensor], nonfinite: tf.Tensor) -> dict[str, tf.Tensor]:
    """Every ``activation/L/STAT`` from the per-layer quantity vectors, in vector arithmetic."""
    kinds = [activation_kind(activation) for _, _, activation in items]
    count = vectors["count"]
    mean = vectors["sum"] / count
    columns = {
        MEAN: mean,
        STD: tf.sqrt(tf.maximum(vectors["sumsq"] / count - tf.square(mean), 0.0)),
        NONFINITE: nonfinite,
    }
    if any(DEAD_FRACTION in k for k in kinds):
        columns[NONPOSITIVE_FRACTION] = 1.0 - vectors["positive"] / count
        columns[DEAD_FRACTION] = vectors["dead"] / vectors["units"]
    if any(SATURATED_FRACTION in k for k in kinds):
        columns[SATURATED_FRACTION] = vectors["saturated"] / vectors["saturated_of"]
    out: dict[str, tf.Tensor] = {}
    for stat, vector in columns.items():  # grouped by statistic: contiguous slices (see above)
        for (name, _, _), value, kind in zip(items, tf.unstack(vector, num=len(items)), kinds, strict=True):
            if stat in kind:
                out[activation_stat_name(name, stat)] = value
    return out


# -- histograms -----------------------------------------------------------------------------------
HISTOGRAM_BUCKETS = 30


def histograms(tensors: Sequence[Any], bucket_count: int = HISTOGRAM_BUCKETS, *, xla: bool = False) -> tf.Tensor:
    """Histograms of the finite entries of several tensors, ``[len(tensors), bucket_count, 3]``.

    Each tensor's ``[bucket_count, 3]`` rows are ``(left edge, right edge, count)``, with the
    layout and bucket edges of TensorBoard's histogram plugin: ``bucket_count`` equal-width
    buckets from the minimum to the maximum; one value repeated: every edge at it, all in the last
    bucket; no finite entry: all zeros.

    Counted in the graph, small tensors all together: one concatenation, segment minima and
    maxima, and one segment sum over (tensor, bucket) pairs, a dozen kernels however many
    tensors there are; large ones each by ``histogram_fixed_width``. Only the buckets then leave
    the device. (Counting on the host with the plugin's numpy code builds an ``[entries,
    buckets]`` one-hot matrix: ~30 ms for one 32x30x30x32 convolution output.) With ``xla``
    (shapes must then be static) each tensor's extremes are its own reductions and every entry
    is counted by one segment sum: XLA compiles segment sums, not ``histogram_fixed_width``.
    """
    flats = [tf.reshape(_float32(t), [-1]) for t in tensors]
    if xla:
        return _histograms_static(flats, bucket_count)
    large = [i for i, f in enumerate(flats) if f.shape[0] is not None and f.shape[0] > _LARGE_HISTOGRAM]
    if not large:
        return _histograms_together(flats, bucket_count)
    small = [i for i in range(len(flats)) if i not in large]
    parts = dict(zip(large, (_histogram_alone(flats[i], bucket_count) for i in large), strict=True))
    if small:
        parts.update(zip(small, tf.unstack(_histograms_together([flats[i] for i in small], bucket_count)), strict=True))
    return tf.stack([parts[i] for i in range(len(flats))])


#: Tensors with more entries than this get a histogram of their own: three passes over them
#: (minimum, maximum, ``histogram_fixed_width``) instead of the ten of the shared path.
_LARGE_HISTOGRAM = 1 << 16


def _histogram_alone(flat: tf.Tensor, bucket_count: int) -> tf.Tensor:
    """One tensor's ``[k, 3]`` buckets; falls back to the shared path if it holds NaN or inf."""
    low, high = tf.reduce_min(flat), tf.reduce_max(flat)

    def finite() -> tf.Tensor:
        counts = tf.cast(tf.histogram_fixed_width(flat, tf.stack([low, high]), nbins=bucket_count), tf.float64)
        low64, high64 = tf.cast(low, tf.float64), tf.cast(high, tf.float64)
        edges = low64 + (high64 - low64) * tf.constant(np.arange(bucket_count + 1) / bucket_count, tf.float64)
        edges = tf.concat([edges[:-1], [high64]], 0)
        return tf.stack([edges[:-1], edges[1:], counts], axis=1)

    def other() -> tf.Tensor:  # a non-finite entry, or one value repeated
        return _histograms_together([flat], bucket_count)[0]

    return tf.cond(tf.math.is_finite(low) & tf.math.is_finite(high) & (high > low), finite, other)


def _histograms_together(flats: Sequence[tf.Tensor], bucket_count: int) -> tf.Tensor:
    """:func:`histograms` of flat tensors, counted together (see there)."""
    k = bucket_count
    n = len(flats)
    values = tf.concat(flats, 0)
    # Which tensor each entry comes from (tf.repeat miscounts large inputs under XLA).
    segment = tf.concat([tf.fill(tf.shape(f), i) for i, f in enumerate(flats)], 0)
    finite = tf.math.is_finite(values)
    low = tf.math.unsorted_segment_min(tf.where(finite, values, np.inf), segment, n)
    high = tf.math.unsorted_segment_max(tf.where(finite, values, -np.inf), segment, n)
    width = (high - low) / k  # inf - inf = NaN where a tensor has no finite entry: never used
    spread = width > 0
    # floor((value - min) / width), clamped to the last bucket (which holds the maximum), as
    # the plugin does; a repeated single value goes to the last bucket too.
    offset = tf.math.divide_no_nan(values - tf.gather(low, segment), tf.gather(width, segment))
    bucket = tf.where(tf.gather(spread, segment), tf.clip_by_value(tf.floor(offset), 0.0, k - 1.0), k - 1.0)
    pair = segment * k + tf.cast(tf.where(finite, bucket, 0.0), tf.int32)
    counts = tf.math.unsorted_segment_sum(tf.cast(finite, tf.float64), pair, n * k)  # XLA has no dynamic bincount
    return _bucket_table(low, high, tf.reshape(counts, [n, k]))


def _histograms_static(flats: Sequence[tf.Tensor], bucket_count: int) -> tf.Tensor:
    """:func:`histograms` of flat tensors of static sizes, for XLA (see there).

    Each tensor's minimum and maximum are reductions of its own, which XLA fuses with the
    finiteness test, and its entries' buckets are computed against its own scalars; only the
    counting is shared: one segment sum over (tensor, bucket) pairs. The segment minima and
    maxima of :func:`_histograms_together` are scatters, which XLA runs entry by entry on a CPU:
    the 8x256 MLP's 46 tensors (1.07M entries), counted alone, took ~7.7 ms that way and ~3.2 ms
    this way; its whole histogram call (the probe batch's gradients included) 13.8 -> 5.2 ms. The
    10-64-32-1 MLP's call, of 16 small tensors, stays at ~0.5 ms.
    """
    k = bucket_count
    n = len(flats)
    lows, highs, pairs = [], [], []
    for i, flat in enumerate(flats):
        finite = tf.math.is_finite(flat)
        low, high = tf.reduce_min(tf.where(finite, flat, np.inf)), tf.reduce_max(tf.where(finite, flat, -np.inf))
        width = (high - low) / k  # NaN when the tensor has no finite entry: never used
        offset = tf.math.divide_no_nan(flat - low, width)
        # floor((value - min) / width), clamped to the last bucket; one value repeated: the last.
        bucket = tf.where(width > 0, tf.clip_by_value(tf.floor(offset), 0.0, k - 1.0), k - 1.0)
        # Non-finite entries go to one extra segment past the last, dropped after counting.
        pairs.append(tf.where(finite, i * k + tf.cast(bucket, tf.int32), n * k))
        lows.append(low)
        highs.append(high)
    pair = tf.concat(pairs, 0)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(pair), pair, n * k + 1)[: n * k]
    return _bucket_table(tf.stack(lows), tf.stack(highs), tf.reshape(tf.cast(counts, tf.float64), [n, k]))


def _bucket_table(low: tf.Tensor, high: tf.Tensor, counts: tf.Tensor) -> tf.Tensor:
    """``[n, k, 3]`` rows of (left edge, right edge, count) from each tensor's finite extremes
    and ``[n, k]`` float64 bucket counts, with TensorBoard's plugin's edges (see :func:`histograms`)."""
    k = int(counts.shape[1])
    spread = (high - low) / k > 0
    low64, high64 = tf.cast(low, tf.float64), tf.cast(high, tf.float64)
    fractions = tf.constant(np.arange(k + 1) / k, tf.float64)
    edges = low64[:, None] + (high64 - low64)[:, None] * fractions[None, :]
    edges = tf.concat([edges[:, :-1], high64[:, None]], 1)  # the last edge exactly at the maximum
    edges = tf.where(spread[:, None], edges, high64[:, None])  # one value: every edge at it
    has_any = tf.reduce_sum(counts, axis=1) > 0
    edges = tf.where(has_any[:, None], edges, 0.0)
    return tf.stack([edges[:, :-1], edges[:, 1:], counts], axis=2)
