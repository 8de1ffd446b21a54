"""Data sources: what ``fit``, ``evaluate`` and ``predict`` turn their inputs into.

This module owns the step from user data to batches: splitting a batch into
``(x, y, sample_weight)`` (:func:`unpack_batch`), numpy inputs held in memory as tensors
(:func:`in_memory_parts`, :class:`ArraySource`), a batched ``tf.data.Dataset`` streamed epoch by
epoch (:class:`DatasetSource`), and the compiled calls that run one epoch of a streamed source
(:func:`streamed`). The :class:`~trainkit.trainer.Trainer` decides which source to build and what
to do with each step's outputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context as tf_context
from tensorflow.python.framework import ops as tf_ops

from trainkit.checks.data_arrays import rank_change
from trainkit.checks.data_sampling import (
    DatasetSample,
    FurtherRows,
    draws_rows,
    further_rows,
    shuffle_short,
    shuffles,
)
from trainkit.checks.model_inspect import input_names, input_shapes
from trainkit.errors import ArgumentError, DataError
from trainkit.inputs import (
    as_array,
    epoch_hooks,
    narrows_to_float32,
    paired_inputs,
    peek_batches,
    refuse_mismatched_kinds,
    takes_text,
)
from trainkit.loop import CompiledLoop, StepOutputs
from trainkit.seed_states import seed_states_kept
from trainkit.trainer_arguments import is_whole_number


def unpack_batch(batch: Any) -> tuple[Any, Any, Any]:
    """Splits a batch into ``(x, y, sample_weight)``; missing parts are ``None``."""
    if isinstance(batch, tuple | list):
        if len(batch) == 1:
            return batch[0], None, None
        if len(batch) == 2:
            return batch[0], batch[1], None
        if len(batch) == 3:
            return batch[0], batch[1], batch[2]
    return batch, None, None


_ALIGNMENT = 64  # bytes: TensorFlow's CPU tensors' alignment (EIGEN_MAX_ALIGN_BYTES)


def _as_tensor(array: Any) -> tf.Tensor:
    """Numpy -> tensor, with float64 narrowed to float32 as Keras does (unless float64 is
    ``keras.backend.floatx()``: Keras narrows to floatx, and a float64 model fed float32 inputs
    trained off ``model.fit`` by 2e-8 in the loss)."""
    array = np.asarray(array)
    narrowed = narrows_to_float32(array.dtype)  # any byte order
    dtype = np.dtype(np.float32) if narrowed else array.dtype
    tensor = _one_copy(array, dtype) if array.dtype.kind in "biuf" else None
    if tensor is not None:
        return tensor
    if narrowed:
        with np.errstate(over="ignore"):  # values beyond float32's range: the data checks name them
            array = array.astype(np.float32)
    tensor = tf.convert_to_tensor(array)
    if tf.DeviceSpec.from_string(tensor.device).device_type != "CPU":
        return tensor
    # On a CPU the converted tensor holds two buffers of the array's size as long as it lives
    # (measured: 488 MB of rows kept 976 MB, through the whole fit); an identity of it holds one,
    # and the other goes with the converted tensor.
    with tf.device(tensor.device):
        return tf.identity(tensor)


def _one_copy(array: np.ndarray, dtype: np.dtype) -> tf.Tensor | None:
    """A CPU tensor of ``array``'s values as ``dtype`` made with one copy of it, or ``None`` off a
    CPU (or where a GPU would take a tensor made without a device scope: the copy made here would
    be thrown away).

    ``tf.convert_to_tensor`` copies a numpy array with numpy first (so the tensor cannot alias
    it), and TensorFlow copies that copy again into a buffer aligned as it wants (numpy's large
    allocations are not): two copies alive at once, 2.4 GB more for 1.2 GB of rows, in 6.7 s.
    Copied here into an aligned buffer of its own, which the tensor then holds without copying,
    the array takes 1.2 GB more, in ~2 s; the tensor shares no memory with the caller's array.
    float64 rows are narrowed as they are copied: 480 MB of them took 469 MB more through a
    float32 copy first, 240 MB more so.
    """
    ctx = tf_context.context()
    ctx.ensure_initialized()
    device = tf.DeviceSpec.from_string(ctx.device_name or "").device_type
    if device not in ("CPU", None) or (device is None and tf.config.list_logical_devices("GPU")):
        return None
    buffer = np.empty(array.size * dtype.itemsize + _ALIGNMENT, np.uint8)
    own = np.ndarray(array.shape, dtype, buffer=buffer, offset=-buffer.ctypes.data % _ALIGNMENT)
    with np.errstate(over="ignore"):  # values beyond float32's range: the data checks name them
        own[...] = array
    tensor = tf_ops.EagerTensor(own, ctx.device_name, None)
    if tf.DeviceSpec.from_string(tensor.device).device_type != "CPU":
        return None
    return tensor


def io_count(model: keras.Model, kind: str, inputs: Any = None, rows: int = 1) -> int:
    """How many inputs (``kind="inputs"``) or outputs a model has; 1 when it cannot tell.

    A subclassed model has no inputs or outputs to read before (or after) it is called: its
    outputs are counted by calling it on the first row of ``inputs`` when they are given (the
    first ``rows``: a ``stateful=True`` layer that call builds takes its states' rows from it).
    """
    try:
        tensors = getattr(model, kind)
    except (AttributeError, ValueError):
        if kind != "outputs" or inputs is None:
            return 1
        try:
            first_row = tf.nest.map_structure(lambda a: a[:rows], inputs)
            with seed_states_kept(model):  # a call model.fit does not make
                return len(tf.nest.flatten(model(first_row, training=False)))
        except Exception:  # inputs that do not fit are reported by the checks and the build
            return 1
    return len(tf.nest.flatten(tensors)) if tensors else 1


def read_keys(model: keras.Model, keys: Iterable[Any]) -> list[Any] | None:
    """The keys of a dict of inputs that ``model`` reads, in the dict's order, when the dict also
    holds others (an ``id`` or a text column beside the features); ``None`` otherwise.

    A functional model reads its inputs by name and ignores the rest, as ``model.fit`` does for a
    dataset; unread text columns were refused here ("the model takes numbers"), and would reach
    an XLA step, which takes no strings.
    """
    try:
        struct = model.input
    except (AttributeError, ValueError):  # a subclassed model: what it reads is unknown
        return None
    wanted = set(struct) if isinstance(struct, Mapping) else {getattr(t, "name", None) for t in tf.nest.flatten(struct)}
    keys = list(keys)
    if None in wanted or not wanted < set(keys):
        return None
    return [k for k in keys if k in wanted]


def only_read_inputs(dataset: tf.data.Dataset, model: keras.Model) -> tf.data.Dataset:
    """``dataset`` without the dict-input entries ``model`` does not read (see :func:`read_keys`),
    its inputs at the model's rank (see :func:`at_model_rank`)."""
    spec = dataset.element_spec
    x_spec = spec[0] if isinstance(spec, tuple) else spec
    keep = read_keys(model, x_spec) if isinstance(x_spec, Mapping) else None
    if keep is not None:
        def select(*element: Any) -> Any:
            if not isinstance(spec, tuple):
                return {k: element[0][k] for k in keep}
            return ({k: element[0][k] for k in keep}, *element[1:])

        dataset = dataset.map(select)
        spec = dataset.element_spec
        x_spec = spec[0] if isinstance(spec, tuple) else spec
    changes = _rank_changes(x_spec, model)
    if changes is None or not any(tf.nest.flatten(changes)):
        return dataset

    def ranked(*element: Any) -> Any:
        x = tf.nest.map_structure(lambda t, c: tf.expand_dims(t, -1) if c > 0 else tf.squeeze(t, -1) if c < 0 else t, element[0], changes)
        return x if not isinstance(spec, tuple) else (x, *element[1:])

    return dataset.map(ranked)


def _rank_changes(x: Any, model: keras.Model) -> Any:
    """For each part of ``x`` (arrays or ``tf.TensorSpec`` s) a model input reads, the
    :func:`rank_change` that gives it the input's rank (0 for the others); ``None`` where the
    model's inputs are unknown (a subclassed model, which gets its inputs as they are)."""
    shapes = input_shapes(model)
    if not shapes:
        return None

    def change(part: Any, shape: Sequence[int | None]) -> int:
        got = getattr(part, "shape", None)
        if got is None or (isinstance(got, tf.TensorShape) and got.rank is None):
            return 0
        if isinstance(part, tf.TensorSpec) and got.rank == len(shape) - 1 and got[0] is not None and got.is_compatible_with(shape[1:]):
            # a dataset's single examples, (1,) for keras.Input((1,)): dataset-unbatched, not rows of a
            # column; a batch itself of one row, (1,) too, is a column (a generator's last of 65 rows)
            return 0
        return rank_change(tuple(got), shape)

    if isinstance(x, Mapping):
        by_name = dict(zip(input_names(model), shapes, strict=True))
        return {k: change(v, by_name[k]) if k in by_name else 0 for k, v in x.items()}
    if isinstance(x, list | tuple) and len(shapes) > 1:
        return type(x)(change(v, s) for v, s in zip(x, shapes, strict=False)) + type(x)(0 for _ in x[len(shapes):])
    if len(shapes) == 1 and not isinstance(x, Mapping | list | tuple):
        return change(x, shapes[0])
    return None


def at_model_rank(x: Any, model: keras.Model) -> Any:
    """``x``'s arrays at the rank of the model inputs that read them, as Keras's Functional call
    gives them (see :func:`~trainkit.checks.data_arrays.keras_rank`): ``(n,)`` columns for
    ``keras.Input((1,))`` inputs as ``(n, 1)``, so that every call traces the model's shapes
    (a fit on ``(n,)`` then a predict on ``(n, 1)`` relaxed the traced shape to an unknown rank,
    and the model's call failed on it, as after ``model.fit``)."""
    changes = _rank_changes(x, model)
    if changes is None or not any(tf.nest.flatten(changes)):
        return x
    return tf.nest.map_structure(lambda a, c: a[..., None] if c > 0 else a[..., 0] if c < 0 else a, x, changes)


def in_memory_parts(model: keras.Model, x: Any, y: Any = None, sample_weight: Any = None, only_read: bool = True,
                    names: tuple[str, str, str] = ("x", "y", "sample_weight"), call_rows: int = 1) -> list[Any]:
    """``[x, y, sample_weight]`` (the given ones) as numpy arrays or structures of them.

    A list or tuple stays a structure only for a model with several inputs (``x``) or outputs
    (``y``), one array each, as with ``model.fit``; otherwise it is one array (rows of values). A
    dict is always a structure (arrays by input or output name), without the entries ``model``
    does not read (see :func:`read_keys`) unless ``only_read`` is ``False`` (a step of its own
    may read them). ``names``: what errors call the three (``x_val``... for validation data).
    ``call_rows``: the rows a subclassed model is called on to count its outputs (see :func:`io_count`).
    """

    def part(value: Any, several: bool, what: str, numbers: bool, rows: int | None = None) -> Any:
        # [x] for a model with one input, [y] for one output, as model.fit takes them (a list of
        # one array, not one row): an array of rows, or of one label for each of x's rows.
        if (not several and isinstance(value, list | tuple) and len(value) == 1 and hasattr(value[0], "shape")
                and (np.ndim(value[0]) >= 2 or (np.ndim(value[0]) == 1 and len(value[0]) == rows))):
            value = value[0]
        if isinstance(value, Mapping):
            return {k: as_array(v, f"{what}[{k!r}]", numbers=numbers) for k, v in value.items()}
        if several and isinstance(value, list | tuple):
            return tuple(as_array(v, f"{what}[{i}]", numbers=numbers) for i, v in enumerate(value))
        return as_array(value, what, numbers=numbers)

    keep = read_keys(model, x) if isinstance(x, Mapping) and only_read else None
    if keep is not None:
        x = {k: x[k] for k in keep}
    text = takes_text(model)
    x_name, y_name, weight_name = names
    parts = [part(x, io_count(model, "inputs") > 1, x_name, not text)]
    if text:  # each input's kind against the array given for it (numbers=False let text through to every input)
        refuse_mismatched_kinds(parts[0], model, x_name)
    parts[0] = at_model_rank(parts[0], model)
    first = tf.nest.flatten(parts[0])[0] if tf.nest.flatten(parts[0]) else np.zeros(0)
    rows = len(first) if np.ndim(first) else 0
    if y is not None:
        several = isinstance(y, list | tuple) and io_count(model, "outputs", parts[0], call_rows) > 1
        parts.append(part(y, several, y_name, False, rows))
    if sample_weight is not None:
        outputs = io_count(model, "outputs", parts[0], call_rows)
        # A list of one array per output; a list of [w] per row ((n, 1) weights) is not.
        per_output = (isinstance(sample_weight, list | tuple) and len(sample_weight) == outputs > 1 and outputs != rows
                      and all(np.ndim(w) >= 1 for w in sample_weight))
        if isinstance(sample_weight, Mapping) or per_output:
            raise DataError("unsupported-input", "sample_weight must be one weight per row, which weighs every output's loss; trainkit takes no "
                                                 "weights per output. Weigh whole outputs with loss_weights, or train on one output's rows at a time.")
        parts.append(part(sample_weight, False, weight_name, True, rows))
    return parts


def refuse_unbatched(dataset: tf.data.Dataset, model: keras.Model | None = None) -> None:
    """Raises ``DataError(dataset-unbatched)`` for a dataset of single examples.

    Args:
        dataset: The dataset.
        model: The model its elements feed: single examples whose input and target have the
            same first size (3 features, 3 labels), or a dataset of inputs alone
            (``predict``'s), look like a batch of them, unless the input's rank is one less
            than the model's input (else ``shape-mismatch`` told to pass ``x[None]``).
    """
    if _looks_unbatched(dataset.element_spec) or (model is not None and _one_rank_short(dataset.element_spec, model)):
        shapes = ", ".join(str(tuple(s.shape)) for s in tf.nest.flatten(dataset.element_spec) if isinstance(s, tf.TensorSpec))
        raise DataError("dataset-unbatched", f"The tf.data.Dataset yields single examples, not batches (element shapes {shapes}). Batch it first: dataset.batch(32).")


def _one_rank_short(spec: Any, model: keras.Model) -> bool:
    """Whether a single-input model's input has one dimension more than a dataset element's input."""
    try:
        inputs = tf.nest.flatten(model.inputs)
    except (AttributeError, ValueError):  # a subclassed model: no inputs to compare with
        return False
    tensors = tf.nest.flatten(unpack_batch(spec)[0])
    if len(inputs) != 1 or len(tensors) != 1 or not isinstance(tensors[0], tf.TensorSpec) or tensors[0].shape.rank is None:
        return False
    if isinstance(spec, tuple | list) and tensors[0].shape.rank and tensors[0].shape[0] is None:
        return False  # inputs and targets batched to an unknown size: too few axes is a shape-mismatch
    return len(inputs[0].shape) == tensors[0].shape.rank + 1


def refuse_text(spec: Any, model: keras.Model, what: str = "The tf.data.Dataset") -> None:
    """Raises ``DataError(unsupported-input)`` for string inputs to a model that takes numbers, or
    to one of its inputs that takes numbers, and numbers to one that takes strings (TensorFlow's
    cast of them fails in the first step)."""
    if not takes_text(model) and any(isinstance(s, tf.TensorSpec) and s.dtype == tf.string for s in tf.nest.flatten(spec)):
        raise DataError("unsupported-input", f"{what} yields text (tf.string) inputs, but the model takes numbers: convert them first "
                                             "(tf.strings.to_number, or a TextVectorization/StringLookup layer as the model's first layer).")
    for name, s, text in paired_inputs(spec, model, "x"):
        # A model with text and number inputs: each input's own kind (TensorFlow's cast fails in the first step).
        if isinstance(s, tf.TensorSpec) and (s.dtype == tf.string) != text:
            given, wanted = ("text (tf.string)", "numbers") if not text else (f"numbers ({s.dtype.name})", "text (dtype string)")
            raise DataError("unsupported-input", f"{what} yields {given} for {name}, but the model's input for it takes {wanted}: convert them "
                                                 "in the pipeline first (dataset.map with tf.strings.to_number or tf.strings.as_string).")


def _named_shapes(parts: Sequence[Any], names: Sequence[str]) -> str:
    """Each array of ``parts`` with its shape, named as the caller wrote it: ``x['num'] (300, 3), y (300, 1)``."""
    listed = []
    for name, part in zip(names, parts, strict=False):
        for path, tensor in keras.tree.flatten_with_path(part):
            keys = "".join(f"[{key!r}]" for key in path)
            listed.append(f"{name}{keys} {tuple(tensor.shape)}")
    return ", ".join(listed)


def _for_checks(array: np.ndarray, tensor: tf.Tensor) -> np.ndarray:
    """What the data checks read of one array: ``array`` itself when ``tensor`` holds it
    unchanged, else the tensor's values, except where float64 values beyond float32's range
    became Inf in them: then the caller's array, whose values ``non-finite-data`` names as
    overflowing float32 (it called them "Inf" data, which ``np.isfinite`` found none of)."""
    if array.dtype == tensor.dtype.as_numpy_dtype:
        return array
    narrowed = tensor.numpy()
    with np.errstate(invalid="ignore"):  # Inf - Inf in the sum: NaN, which is what it asks
        clean = narrowed.dtype.kind != "f" or np.isfinite(narrowed.sum(dtype=np.float64))
    if not clean:
        inf = np.isinf(narrowed)
        if np.isfinite(array[inf]).any():
            return array
    return narrowed


class ArraySource:
    """Training data held in memory: tensors (or structures of them) plus the row count.

    Args:
        parts: ``[x, y, sample_weight]`` (the given ones), each an array or a structure of
            arrays (see :func:`in_memory_parts`).
        empty_is: What the data is called in the error raised when it has no rows (``"x"``,
            ``"validation_data"``...); ``None`` accepts empty data.
    """

    def __init__(self, parts: Sequence[Any], empty_is: str | None = None) -> None:
        # The caller's arrays too (they hold them anyway): numpy() hands them to the data checks
        # instead of copying every tensor back (a 2M x 50 float32 set: 381 MB more at the start).
        self._arrays = tuple(tf.nest.map_structure(np.asarray, part) for part in parts)
        self.data = tuple(tf.nest.map_structure(_as_tensor, part) for part in self._arrays)
        if any(not tf.nest.flatten(part) for part in self.data):
            raise DataError("shape-mismatch", "x, y or sample_weight holds no arrays (an empty dict or list). Pass an array, or one array per model input or output.")
        tensors = tf.nest.flatten(self.data)
        self.rows = int(tensors[0].shape[0]) if tensors[0].shape.rank else 0
        if any(t.shape.rank == 0 or int(t.shape[0]) != self.rows for t in tensors):
            whose = "" if empty_is in (None, "x", "the training data") else f" of {empty_is}"
            if not tensors[0].shape.rank:  # fit(None, y), fit(3.0, y): no rows at all
                raise DataError("shape-mismatch", f"x{whose} is a single value (shape ()), not rows of examples: pass an array with one row per example.")
            given = ("x", "y", "sample_weight")[: len(self.data)]
            together = given[0] if len(given) == 1 else f"{', '.join(given[:-1])} and {given[-1]}"
            raise DataError("shape-mismatch", f"{together}{whose} must have the same number of rows; got {_named_shapes(self.data, given)}. "
                                              "Pass arrays with one entry per example.")
        if empty_is is not None and self.rows == 0:
            # An empty epoch's loss would read 0.0: a perfect model, not a missing one.
            raise DataError("empty-data", f"{empty_is} has no rows. Pass at least one example (check the split or the filter that made it).")

    def batch_spec(self) -> tuple[Any, ...]:
        """The ``tf.TensorSpec`` structure of one batch (any number of rows)."""
        return tf.nest.map_structure(lambda t: tf.TensorSpec((None, *t.shape[1:]), t.dtype), self.data)

    @property
    def arrays(self) -> tuple[Any, ...]:
        """The caller's arrays (``x, y[, sample_weight]``) as given: float64 not narrowed, no copy."""
        return self._arrays

    def numpy(self) -> tuple[Any, ...]:
        """The data as numpy arrays, in the structure of :attr:`data`: the caller's own arrays where
        the tensors hold them unchanged (no copy), else the tensors' values (float64 narrowed),
        unless narrowing made Inf of finite values (see :func:`_for_checks`)."""
        return tf.nest.map_structure(_for_checks, self._arrays, self.data)

    def head(self, rows: int) -> tuple[Any, ...]:
        """The first ``rows`` rows of every tensor."""
        return tf.nest.map_structure(lambda t: t[:rows], self.data)


def _looks_unbatched(spec: Any) -> bool:
    """Whether a dataset's elements lack the batch dimension every batched tensor starts with.

    A batched element's tensors all have rank >= 1 and share their first dimension; single
    examples usually have a scalar label, or an input and a label of different first sizes.
    """
    tensors = [s for s in tf.nest.flatten(spec) if isinstance(s, tf.TensorSpec)]
    if any(s.shape.rank == 0 for s in tensors):
        return True
    leading = {s.shape[0] for s in tensors if s.shape.rank and s.shape[0] is not None}
    return len(leading) > 1


#: Batches :meth:`DatasetSource.sample` reads in its one pass (the data checks read 8, the
#: chance level 16, the probe batch 1), and the bytes of batches after which it stops early.
SAMPLE_BATCHES = 16
SAMPLE_BYTES = 256 << 20


def nbytes(batch: Any) -> int:
    """Bytes of a batch's dense tensors (strings count 0)."""
    return sum(int(tf.size(t)) * t.dtype.size for t in tf.nest.flatten(batch))


class DatasetSource:
    """Data streamed from a batched ``tf.data.Dataset``.

    Args:
        dataset: The dataset.
        steps: Batches per epoch (``steps_per_epoch``...); ``None`` runs the dataset to its end.
        steps_argument: The argument that sets ``steps``, for the message about an endless
            dataset.
        carry_on: With ``steps``, whether each epoch goes on from where the last one stopped
            (training, as ``model.fit``) instead of starting again (evaluation).
        model: The model the batches feed, to tell single examples from batches by its input's
            rank (see :func:`refuse_unbatched`).
    """

    def __init__(self, dataset: tf.data.Dataset, steps: int | None = None, steps_argument: str = "steps_per_epoch", carry_on: bool = False,
                 model: keras.Model | None = None) -> None:
        refuse_unbatched(dataset, model)
        spec = dataset.element_spec
        if not isinstance(spec, tuple | list) or len(spec) < 2:
            raise DataError("missing-targets", "The tf.data.Dataset yields inputs only; training and evaluation need (x, y) or (x, y, sample_weight) "
                            "batches: zip the inputs with their targets, tf.data.Dataset.zip((x_dataset, y_dataset)).")
        if len(spec) > 3:
            raise DataError("shape-mismatch", f"The tf.data.Dataset yields {len(spec)} parts a batch; training and evaluation take (x, y) or "
                            "(x, y, sample_weight). Put several inputs or targets in a tuple or dict of their own: ((x_a, x_b), y).")
        if len(spec) == 3 and not isinstance(spec[2], tf.TensorSpec):
            # Weights per output (a tuple or dict of them): refused as with numpy, where they
            # would otherwise be broadcast against one output's loss (wrong numbers) or fail in
            # the first step with a TensorFlow traceback.
            raise DataError("unsupported-input", "The tf.data.Dataset yields sample weights per output (a tuple or dict of them); trainkit takes one "
                            "weight per row, which weighs every output's loss. Yield one weight tensor a batch, weigh whole outputs "
                            "with loss_weights, or train on one output's rows at a time.")
        unsupported = sorted({type(s).__name__ for s in tf.nest.flatten(spec) if not isinstance(s, tf.TensorSpec)})
        if unsupported:
            # Each kind its own fix: sparse batches were told to pad them (padded_batch), which they need not.
            fixes = []
            if "SparseTensorSpec" in unsupported:
                fixes.append("Make sparse ones dense: .map(lambda x, y: (tf.sparse.to_dense(x), y)).")
            if "RaggedTensorSpec" in unsupported or not fixes:
                fixes.append("Pad ragged ones: dataset.padded_batch(...) instead of .batch(...), or .map(lambda x, y: (x.to_tensor(), y)); "
                             "for ids (from 1), Embedding(mask_zero=True) leaves the zeros out, as model.fit leaves out a ragged row's missing steps.")
            raise DataError("unsupported-input", f"The tf.data.Dataset yields {', '.join(unsupported)} values; trainkit trains on dense tensors. "
                            + " ".join(fixes))
        cardinality = int(dataset.cardinality())
        if cardinality == 0:
            raise DataError("empty-data", "The tf.data.Dataset has no batches. Pass one with at least one example (check the filter or the take/skip that made it).")
        if cardinality == tf.data.INFINITE_CARDINALITY and steps is None:
            raise DataError("dataset-infinite", f"The tf.data.Dataset repeats forever (.repeat() without a count), so an epoch would never end. "
                            f"Pass {steps_argument}=N (batches an epoch), or repeat it a fixed number of times.")
        if steps is not None and (not is_whole_number(steps) or steps < 1):
            raise ArgumentError("bad-argument", f"{steps_argument} must be a positive integer or None, got {steps!r}.")
        self.dataset = dataset
        self.steps = None if steps is None else int(steps)
        self.batches = self.steps if self.steps is not None else (cardinality if cardinality >= 0 else None)
        self._cardinality = cardinality  # batches in one pass; < 0 when infinite or unknown
        self._carry_on = carry_on and self.steps is not None
        # With steps an epoch (an evaluation) is no pass of a PyDataset's: carrying on, passes span
        # epochs; otherwise a pass is left after `steps` batches, before its on_epoch_end(). The
        # epochs call its hooks (begin_epoch, end_epoch) instead.
        self._epoch_hooks = epoch_hooks(dataset) if self.steps is not None else None
        self._iterator: Any = None
        self._ran_dry = False
        self._went_on = False  # whether the last epoch_iterator is one an earlier epoch pulled from
        self._kept: list[Any] = []  # the first batches, see sample()
        self._kept_all = False
        self._ended = False
        self._further: FurtherRows | None = None
        #: The class name of the keras.utils.PyDataset this dataset reads (set by fit), ``None`` for another dataset.
        self.pydataset: str | None = None

    def sample(self, batches: int = SAMPLE_BATCHES) -> list[Any]:
        """The dataset's first ``batches`` batches, read once and kept.

        Each read of a dataset starts a pass through its pipeline: a shuffle buffer fills again,
        files are opened again. So a call that needs more than is kept reads up to
        :data:`SAMPLE_BATCHES` batches (stopping after :data:`SAMPLE_BYTES` of them) in one
        pass, and everything that samples the data before training shares them (the data
        checks, the chance level, the histograms' probe batch, a stack's size); a caller gets
        fewer batches than it asks for when the dataset or that budget has fewer.
        """
        if batches > len(self._kept) and not self._kept_all:
            self._read(SAMPLE_BATCHES)
        return self._kept[:batches]

    def first_batch(self) -> Any:
        """The dataset's first batch (``None`` for an empty dataset): the kept one, or one read
        alone when nothing sampled the dataset first."""
        if not self._kept and not self._kept_all:
            self._read(1)
        return self._kept[0] if self._kept else None

    def _read(self, batches: int) -> None:
        """Keeps the first ``batches`` batches, read in one pass (see :meth:`sample`)."""
        self._kept, size, ended = [], 0, True
        # Read as a peek: a PyDataset's epoch hooks are training's alone (see peek_batches).
        for batch in peek_batches(self.dataset, count=batches):
            self._kept.append(batch)
            size += nbytes(batch)
            if size >= SAMPLE_BYTES:
                ended = False
                break
        # Fewer batches than asked for because the dataset ended, not because they reached the
        # bytes: the first 14 of 19 MB image batches were taken for every batch of the dataset.
        # Or as many as its known length: a dataset of exactly 16 batches, read in full, was taken
        # for a longer one, and the rows past the sample (:class:`FurtherRows`, a never-shuffled
        # dataset's) were looked for in a pass that mapped its 16 batches again to find none
        # (1,536 rows mapped before and during one epoch of 512, where 1,024 do). A dataset of
        # unknown length (a generator's) shows its end only to a read past it.
        self._ended = (ended and len(self._kept) < batches) or 0 <= self._cardinality <= len(self._kept)
        self._kept_all = self._ended or len(self._kept) < batches  # reading again would give no more

    def held(self) -> list[Any]:
        """The batches :meth:`sample` has kept so far, reading none: ``[]`` before any sample (the
        data checks skipped) and once :meth:`release_sample` let them go."""
        return list(self._kept)

    @property
    def sampled_all(self) -> bool:
        """Whether :meth:`sample`'s batches are every batch of the dataset (it ended before them)."""
        return self._ended

    def sample_for_checks(self, batches: int) -> DatasetSample:
        """:meth:`sample`'s batches for :func:`~trainkit.checks.check_data` (reads no more)."""
        return DatasetSample(self.sample(batches), self.dataset.element_spec, shuffled=shuffles(self.dataset), drawn=draws_rows(self.dataset),
                             shuffle_short=shuffle_short(self.dataset),
                             cardinality=self._cardinality if self._cardinality >= 0 else None, dataset=self.dataset,
                             further=self.shared_further_rows, pydataset=self.pydataset)

    def shared_further_rows(self, skip_batches: int, sampled_inputs: Any) -> FurtherRows | None:
        """The one :class:`~trainkit.checks.data_sampling.FurtherRows` of this dataset, past its
        first ``skip_batches`` (``sampled_inputs``: those batches' inputs): made at the first call
        (the data checks', past the batches they sampled), that one at every later call (the chance
        level's), so the batches past the sample are read once at most and no further than its budget."""
        if self._further is None:
            # From the kept batches past those sampled first: the pipeline is read past them only.
            self._further = further_rows(self.dataset, skip_batches, sampled_inputs, self._kept[skip_batches:], self._ended, reader=peek_batches)
        return self._further

    def release_sample(self, keep: int) -> None:
        """Lets go of the kept batches but the first ``keep`` (training needs at most one), and of
        the rows read past them (:meth:`shared_further_rows`)."""
        del self._kept[keep:]
        self._further = None

    def batch_bytes(self) -> int:
        """Bytes of one batch: from the element spec when its shapes are all known, else from
        :meth:`first_batch`."""
        specs = tf.nest.flatten(self.dataset.element_spec)
        if all(isinstance(s, tf.TensorSpec) and s.shape.is_fully_defined() for s in specs):
            return sum(s.shape.num_elements() * s.dtype.size for s in specs)
        first = self.first_batch()
        return 0 if first is None else nbytes(first)

    def epoch_iterator(self, make: Callable[[tf.data.Dataset], Any], epoch: int, start_batch: int) -> Any:
        """The iterator an epoch pulls its batches from (``make`` turns a dataset into one).

        Carrying on, one iterator serves every epoch of a fit, each taking ``steps`` batches, and
        a finite dataset starts again once it ends, as with ``model.fit``: 10 batches and
        ``steps=4`` give epochs of 4, 4 and 2 batches, then 4 from the start again. A resumed
        fit starts where that pattern puts ``epoch`` (plus ``start_batch``). Otherwise each epoch
        starts at the dataset's beginning (plus ``start_batch``).
        """
        if not self._carry_on:
            return make(self.dataset.skip(start_batch) if start_batch else self.dataset)
        first = self._first_batch(epoch)
        if self._iterator is None or (first == 0 and epoch > 0):
            skip = first + start_batch
            self._iterator = make(self.dataset.skip(skip) if skip else self.dataset)
            self._ran_dry = False
            self._went_on = False
        else:
            self._went_on = True
        return self._iterator

    def begin_epoch(self) -> None:
        """Calls a PyDataset's ``on_epoch_begin()`` at the start of an epoch (or an evaluation) of
        ``steps`` batches, as ``model.fit`` and ``model.evaluate`` call it; nothing for another
        dataset, or one read whole, whose passes call it (each epoch a pass of its own)."""
        if self._epoch_hooks is not None:
            self._epoch_hooks.begin_epoch()

    def end_epoch(self) -> None:
        """Calls a PyDataset's ``on_epoch_end()`` at the end of such an epoch (see :meth:`begin_epoch`)."""
        if self._epoch_hooks is not None:
            self._epoch_hooks.end_epoch()

    def _first_batch(self, epoch: int) -> int:
        """Where in the dataset ``epoch`` starts, carrying on (see :meth:`epoch_iterator`)."""
        assert self.steps is not None
        if self._cardinality > 0:  # ceil(cardinality / steps) epochs make one pass
            return (epoch % -(-self._cardinality // self.steps)) * self.steps
        # An endless dataset never ends; one of unknown size starts again after it ran dry (a
        # resumed fit cannot know where such a dataset ended, and counts as if it never did).
        return 0 if self._ran_dry else epoch * self.steps

    def ran_dry(self) -> bool:
        """The iterator ended before the epoch's steps: the next epoch starts the dataset again.

        Returns:
            Whether the iterator was one an earlier epoch had pulled from: one that ends before
            the epoch's first batch then ended with that epoch (a dataset of unknown size, a
            multiple of ``steps`` batches long), and the epoch may start the dataset again.
        """
        went_on, self._went_on = self._went_on, False
        self._iterator = None
        self._ran_dry = True
        return went_on

    def release(self) -> None:
        """Drops the iterator carried from epoch to epoch, at the fit's end.

        The source lives on in a reference cycle (until Python's collector runs) or in an error's
        traceback, and the iterator with it: a PyDataset's read-ahead threads and queued batches
        outlived a fit with ``steps_per_epoch``.
        """
        self._iterator = None

    def batch_spec(self) -> Any:
        """The ``tf.TensorSpec`` structure of one batch: the dataset's element spec."""
        return self.dataset.element_spec


def first_inputs(source: ArraySource | DatasetSource, rows: int = 32) -> Any:
    """The inputs of a data source's first batch (the training data is not consumed): numpy data's
    first ``rows`` (the batch size where a ``stateful=True`` layer sets its states' rows by it)."""
    if isinstance(source, ArraySource):
        return unpack_batch(source.head(rows))[0]
    return unpack_batch(source.first_batch())[0]


def nothing_left(source: ArraySource | DatasetSource, batch_size: int, start_batch: int) -> bool:
    """Whether an epoch resumed after ``start_batch`` batches has none left to run.

    Such an epoch must make no call: an iterator over a dataset known to be empty can trace the
    streaming loop as one that never gets a batch, and that trace then served every later epoch
    (under a strategy, resumed exactly at an epoch's end: every later epoch ran 0 steps).
    """
    if not start_batch:
        return False
    total = math.ceil(source.rows / batch_size) if isinstance(source, ArraySource) else source.batches
    return total is not None and start_batch >= total


def streamed(loop: CompiledLoop, iterator: Any, capacity: int | Callable[[], int], source: ArraySource | DatasetSource, start_batch: int = 0,
             until_histogram: Callable[[], int] | None = None, timed: Callable[[int, int, float], None] | None = None,
             again: Callable[[], Any] | None = None) -> Iterable[StepOutputs]:
    """The outputs of the compiled calls that run one epoch of ``source`` from ``iterator``.

    Calls of up to ``capacity`` steps (or ``capacity()``, asked before each call) until the
    iterator runs dry or, for a source with a number of steps per epoch, that many steps have run.
    ``until_histogram()``, when given, caps each call at the steps left before the next histogram
    is due. ``timed(steps, capacity, seconds)``, when given, hears how long each call took.
    ``again()``, when given, makes the epoch's iterator anew after the one it went on with from
    the last epoch had no batch left (see :meth:`DatasetSource.ran_dry`).
    """
    steps = getattr(source, "steps", None)
    remaining = None if steps is None else steps - start_batch
    ran = 0
    while remaining is None or remaining > 0:
        call_capacity = capacity() if callable(capacity) else capacity
        wanted = call_capacity if remaining is None else min(call_capacity, remaining)
        if until_histogram is not None:
            wanted = min(wanted, until_histogram())
        began = time.perf_counter()
        outputs = loop.run_streaming(iterator, wanted, source.batch_bytes if isinstance(source, DatasetSource) else None)
        if timed is not None:
            timed(outputs.steps, call_capacity, time.perf_counter() - began)
        yield outputs
        ran += outputs.steps
        if outputs.steps < wanted:
            # A dataset of unknown size that ended exactly with the last epoch: this epoch starts
            # it again, as one that ended within an epoch starts the next (its empty epoch was
            # refused as an empty dataset, and model.fit logs a loss of 0.0 for it).
            if steps is not None and source.ran_dry() and not ran and again is not None:
                iterator = again()
                continue
            return
        if remaining is not None:
            remaining -= outputs.steps
