"""fit's ``x``, ``y`` and ``sample_weight`` as numpy arrays: one per model input, one per model
output, one weight per row; and how ``y`` fails to give each output its target.

Apart from the rules: this is how :func:`~trainkit.checks.data_checks.check_data` builds their
:class:`~trainkit.checks.data_context.DataContext` (and how ``check_input_shapes`` lists the
inputs), so that no rule deals with lists, dicts or per-output specs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trainkit.checks.data_context import format_shape
from trainkit.checks.model_inspect import OutputInfo


def keras_rank(a: Any, shape: Sequence[int | None]) -> Any:
    """``a`` with the rank a Functional (or Sequential) model gives an input when called, as
    Keras's ``Functional._adjust_input_rank`` does: an axis of 1 added where the input's
    ``shape`` (batch axis included) ends in 1 and ``a`` has one axis less, ``(n,)`` for a
    ``keras.Input((1,))``; a last axis of 1 dropped where ``a`` has one axis more, ``(n, 1)``
    for a ``keras.Input(())``. Any other array as it is, and one that is a single sample of
    the input's shape, ``(8, 8, 1)`` for ``keras.Input((None, None, 1))`` (``shape-mismatch``
    tells it to add the batch axis, not to be read as 8 rows).

    ``model.fit`` trains on such inputs (a dict of 1-D columns for ``keras.Input((1,))`` ones,
    as Keras's structured-data examples feed them); they were refused as ``shape-mismatch``.
    """
    if not isinstance(a, np.ndarray):
        return a
    change = rank_change(a.shape, shape)
    return a[..., None] if change > 0 else a[..., 0] if change < 0 else a


def rank_change(got: Sequence[int | None], shape: Sequence[int | None]) -> int:
    """What :func:`keras_rank` does to an array (or a dataset's batches) of shape ``got`` for an
    input of ``shape``: 1 adds the last axis, -1 drops it, 0 leaves it (``None`` in ``got``, a
    batch of unknown size, fits only ``None`` where a sample's shape is compared)."""
    if not len(got) or not len(shape):
        return 0
    if len(got) >= 2 and len(got) == len(shape) - 1 and all(d is None or d == g for g, d in zip(got, shape[1:], strict=True)):
        return 0  # one sample without its batch axis
    if len(got) == len(shape) - 1 and shape[-1] == 1:
        return 1
    if len(got) == len(shape) + 1 and got[-1] == 1:
        return -1
    return 0


def input_keys(x: Any, names: list[str]) -> list[str] | None:
    """The keys :func:`input_arrays` reads a dict ``x`` by, in its order; ``None`` for other ``x``."""
    if not isinstance(x, Mapping):
        return None
    return [str(k) for k in (names if names and all(n in x for n in names) else list(x))]


def input_arrays(x: Any, names: list[str]) -> list[np.ndarray]:
    """``x`` as one array per model input (a dict by the inputs' names, a list or tuple in order)."""
    if isinstance(x, Mapping):
        keys = names if names and all(n in x for n in names) else list(x)
        return [np.asarray(x[k]) for k in keys]
    if isinstance(x, list | tuple):
        return [np.asarray(v) for v in x]
    return [np.asarray(x)]


def label_arrays(y: Any, outputs: list[OutputInfo]) -> list[np.ndarray | None]:
    """``y`` as one array per model output (``None`` where an output has no targets); booleans as integers."""
    if y is None:
        return [None] * max(1, len(outputs))
    if len(outputs) > 1:
        if isinstance(y, Mapping):
            return [_bool_to_int(np.asarray(y[o.key])) if o.key in y else
                    _bool_to_int(np.asarray(y[o.name])) if o.name in y else None for o in outputs]
        if isinstance(y, list | tuple) and len(y) == len(outputs):
            return [_bool_to_int(np.asarray(v)) for v in y]
        return [None] * len(outputs)
    if not outputs and _several_arrays(y):  # a subclassed model's outputs: one array each
        return [_bool_to_int(np.asarray(v)) for v in y]
    if not outputs and isinstance(y, Mapping) and len(y) > 1:  # ... by name, sorted as Keras flattens
        return [_bool_to_int(np.asarray(y[k])) for k in sorted(y)]
    if isinstance(y, Mapping) and len(y) == 1:
        y = next(iter(y.values()))
    if isinstance(y, list | tuple) and len(y) == 1 and not np.isscalar(y[0]):
        y = y[0]
    return [_bool_to_int(np.asarray(y))]


def unnamed_per_output(spec: Any, count: int, keys: Sequence[str] | None = None) -> list[Any]:
    """A loss or task spec as one entry per output of a model whose outputs have no names yet:
    a list by position, a dict by the targets' ``keys`` (a dict of targets) or ``output_<i>``,
    anything else the same for every output."""
    if isinstance(spec, list | tuple):
        return [spec[i] if i < len(spec) else None for i in range(count)]
    if isinstance(spec, Mapping) and "name" not in spec:
        return [spec.get(keys[i] if keys else f"output_{i}") for i in range(count)]
    return [spec] * count


def _several_arrays(y: Any) -> bool:
    """A list/tuple of several arrays (one per output), not a list of rows of numbers."""
    return isinstance(y, list | tuple) and len(y) > 1 and all(isinstance(v, np.ndarray) for v in y)


def targets_without_output(y: Any, outputs: list[OutputInfo], ys: list[np.ndarray | None]) -> str | None:
    """How ``y`` fails to give each of several outputs a target (see :func:`label_arrays`), or
    the one output of a model a target by its name."""
    if len(outputs) == 1 and isinstance(y, Mapping):  # the loss would compare a dict with one tensor
        if len(y) == 1 and outputs[0].key is not None and outputs[0].key in y:
            return None  # a model returning {"out": ...}: its targets by the same key, as model.fit takes them
        return f"a dict with keys {sorted(map(str, y))}"
    if y is None or len(outputs) < 2 or any(v is not None for v in ys):
        return None
    if isinstance(y, Mapping):
        return f"a dict with keys {sorted(map(str, y))}, none an output's name"
    if isinstance(y, list | tuple):
        return f"a {type(y).__name__} of {len(y)}"
    return f"one array of shape {format_shape(np.shape(y))}"


def row_weight_array(sample_weight: Any) -> np.ndarray | None:
    """One float per row, or ``None`` when absent or not a single array (per-output weights)."""
    if sample_weight is None or isinstance(sample_weight, Mapping | list | tuple):
        return None
    try:
        weights = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    # (n, 1) is one weight per row; other shapes stay as they are for shape-mismatch to name.
    return weights.reshape(-1) if weights.ndim == 2 and weights.shape[1] == 1 else weights


def numpy_floats(a: np.ndarray | None) -> np.ndarray | None:
    """``a`` with a float type numpy has no kind for as float32 (an exact copy): ``bfloat16``
    (ml_dtypes', what TensorFlow's bfloat16 tensors give), whose kind ``"V"`` the rules read as
    no numbers (bfloat16 labels were refused as "not numbers", NaN in bfloat16 inputs passed)."""
    if a is None or a.dtype.kind != "V" or a.dtype.names is not None:
        return a
    try:
        return a.astype(np.float32)
    except (TypeError, ValueError):  # raw bytes (np.void), not a float type
        return a


def _bool_to_int(a: np.ndarray) -> np.ndarray:
    return a.astype(np.int8) if a.dtype == bool else a
