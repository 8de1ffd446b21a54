"""What every data rule reads: the data as arrays with the model's facts (:class:`DataContext`),
one :class:`Target` per model output, and the small numeric and wording helpers that several rule
modules share (kept here, once, so that no rule module copies another's).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from trainkit.checks.compatibility import Issue, LossInfo
from trainkit.checks.model_inspect import OutputInfo

#: Rows read by the sampled checks (scale statistics, overlap, leakage).
DEFAULT_SAMPLE_ROWS = 100_000
#: Values (rows x features) read by the sampled checks on wide inputs such as images. A million
#: values pin down per-channel scales well (>= 10k values per feature up to 100 features) and
#: keep the checks at ~30 ms, which every fit pays: 5M took 160 ms on 2000 32x32x3 images.
_SAMPLE_VALUES = 1_000_000


@dataclasses.dataclass
class Target:
    """One model output with its loss and labels (``y`` is ``None`` when there are no labels)."""

    output: OutputInfo | None
    loss: LossInfo
    y: np.ndarray | None
    y_val: np.ndarray | None = None
    name: str = "y"
    task: str | None = None  # None: an output without a task is not checked
    # Where a dataset element's targets hold these: a key of a dict of targets, an index of a
    # tuple of them, None where the targets are this output's alone.
    entry: str | int | None = None

    @property
    def units(self) -> int | None:
        return None if self.output is None else self.output.units


@dataclasses.dataclass
class DataContext:
    """The data, the model facts and the task, as every data rule sees them.

    Attributes:
        xs: The inputs, one array per model input (sampled batches for a dataset).
        x_val: The validation inputs, or ``None``.
        targets: One :class:`Target` per model output (each with its task).
        input_shapes: The model's input shapes, when known.
        scales_inputs: For each input, whether the model scales it itself (Normalization first)
            or reads it as indices (Embedding): its scale is not the data's problem then.
        where: ``""`` for arrays, ``" in the first N batches"`` for a sampled dataset.
        sample_rows: Row budget for the sampled checks.
        unmatched_targets: How ``y`` fails to give one target per output of a model with several
            (``"one array of shape (64, 1)"``), or ``None`` when it does.
    """

    xs: list[np.ndarray]
    x_val: list[np.ndarray] | None
    targets: list[Target]
    input_shapes: list[tuple[int | None, ...]] | None = None
    scales_inputs: Sequence[bool] = ()
    #: For each input, the ``Normalization`` or ``Rescaling`` layer that scales it (see ``input_normalizers``), or ``None``.
    normalizers: Sequence[Any] = ()
    #: For each input, the layer that normalises each of its samples first (``LayerNormalization``; see
    #: ``input_row_normalizers``), or ``None``.
    row_normalizers: Sequence[Any] = ()
    where: str = ""
    sample_rows: int = DEFAULT_SAMPLE_ROWS
    #: Layers whose outputs keep a sample's positions (see ``position_keeping_layers``).
    position_layers: Sequence[str] = ()
    #: How x's inputs fail to match the model's (missing keys, too few arrays), or ``None``.
    unmatched_inputs: Issue | None = None
    unmatched_targets: str | None = None
    #: Which targets ``unmatched_targets`` describes: ``"y"`` or ``"y_val"``.
    unmatched_targets_name: str = "y"
    #: The columns of a single 2-D input (a csv header), or ``None``.
    feature_names: Sequence[str] | None = None
    #: The keys of ``xs`` (and of ``x_val``) when they came as a dict, in ``xs``'s order, or ``None``.
    input_keys: Sequence[str] | None = None
    x_val_keys: Sequence[str] | None = None
    #: The training rows' weights (sample weight times class weight), one per row, or ``None``.
    sample_weight: np.ndarray | None = None
    #: The validation rows' weights (given with arrays, or a validation dataset's sampled ones), or ``None``.
    val_sample_weight: np.ndarray | None = None
    #: ``""`` for validation arrays, ``" in the first N batches"`` for a sampled validation dataset.
    val_where: str = ""
    #: Rows per batch the training will use (numpy data), or ``None`` when unknown or batched.
    batch_size: int | None = None
    #: ``fit(shuffle=...)`` of the numpy training rows (``True``, ``"batch"`` or ``False``), or ``None`` when unknown.
    shuffle: bool | str | None = None
    #: The names of the model's ``stateful=True`` recurrent layers (see ``stateful_recurrent_layers``).
    stateful_layers: Sequence[str] = ()
    #: ``(input index, layer name, ids, layer class)`` of each Embedding or CategoryEncoding an input feeds directly.
    embeddings: Sequence[tuple[int, str, int, str]] = ()
    #: The names of the Embedding layers among :attr:`embeddings` built with ``mask_zero=True``.
    masked_embeddings: Sequence[str] = ()
    #: ``{Embedding name: pooling layer name}`` of the unmasked Embeddings among :attr:`embeddings`
    #: whose vectors a ``GlobalAveragePooling1D`` averages (see ``averaged_embeddings``).
    averaged_embeddings: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: The same for the Embeddings among :attr:`masked_embeddings` (``mask_zero=True``).
    masked_averaged_embeddings: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: The model's lookup layers that turn tokens into ids, with the Embeddings that read them (see ``lookup_layers``).
    lookups: Sequence[Any] = ()
    #: ``[rows, T]``: the positions of the training rows the loss reads, where the one output keeps
    #: the mask of the one input (an ``Embedding(mask_zero=True)``'s ids != 0, a ``Masking``
    #: layer's steps not all ``mask_value``: a masked tagger), or ``None``.
    loss_positions: Any = None
    #: For each input, the ``mask_value`` of a ``Masking`` layer reading it first (see ``input_masking``), or ``None``.
    masking_values: Sequence[float | None] = ()
    #: For each input, the layer that first reads its layout (see ``layout_readers``), or ``None``.
    layout_readers: Sequence[Any] = ()
    #: The starting bias of each output's unit layer, one value a unit, by the layer's name.
    output_bias_values: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    #: The validation arrays are the caller's x and y from this row on (``validation_split``), or ``None``.
    split_at: int | None = None
    #: Rows of each sampled batch of a dataset, in order (``()`` for arrays): which rows shared a batch.
    batch_rows: Sequence[int] = ()
    #: The BatchNormalization layers that normalise over the batch's rows alone (see ``batch_only_batchnorms``).
    batch_norms: Sequence[str] = ()
    #: Whether the training dataset's pipeline shuffles, ``None`` for arrays or when unknown.
    dataset_shuffled: bool | None = None
    #: Whether its first batches are a random draw of its rows: a shuffle whose buffer holds them
    #: all (see ``draws_rows``), ``None`` for arrays or when unknown.
    dataset_drawn: bool | None = None
    #: Whether it shuffles its rows only in buffers known to hold fewer than they read (see
    #: ``shuffle_short``): its first batches are drawn from its first rows alone.
    dataset_shuffle_short: bool = False
    #: Batches in one pass through the training dataset, ``None`` for arrays or when unknown.
    dataset_batches: int | None = None
    #: The class name of the ``keras.utils.PyDataset`` the training batches come from, ``None`` otherwise.
    pydataset: str | None = None
    #: Reads the labels of the training dataset's batches past those sampled, one array per
    #: target as :attr:`targets` (see :meth:`~trainkit.checks.data_sampling.FurtherRows.labels`), ``None`` for arrays.
    further_labels: Callable[[], Any] | None = None
    #: Whether the training dataset's inputs past the batches sampled differ from theirs (see
    #: :meth:`~trainkit.checks.data_sampling.FurtherRows.inputs_vary`), ``None`` for arrays or a dataset that shuffles.
    further_inputs_vary: Callable[[], bool | None] | None = None
    #: The datasets (``"x"``, ``"validation_data"``) whose pipelines zip a shuffled dataset with an unshuffled one (see ``shuffled_apart``).
    shuffled_apart: Sequence[str] = ()
    #: Those of :attr:`shuffled_apart` whose shuffling side Keras's ``image_dataset_from_directory``
    #: (``text_``, ``audio_``) made, which shuffles its files by default (see ``shuffled_apart_by_directory``).
    shuffled_apart_files: Sequence[str] = ()
    #: The random ops the validation dataset's map functions run (see ``random_ops``), ``()`` for none or arrays.
    val_random_ops: Sequence[str] = ()
    #: Whether a validation dataset's sampled first batches stand for its rows (``True`` for
    #: arrays): all of them, a shuffling pipeline's random draw, or at least half its batches.
    val_rows_stand_for_all: bool = True
    #: Whether they are a random draw of its rows (``True`` for arrays): all of them, or a
    #: shuffling pipeline's. Not half of a never-shuffled dataset's batches, which stand for its
    #: range but not for its class mix (sorted by label, they hold its first classes alone).
    val_rows_drawn: bool = True
    #: Whether they are all its rows (``True`` for arrays): what they lack, it lacks.
    val_rows_all: bool = True
    #: For each input, a layer reading it that computes in float16 (see ``float16_readers``), or ``None``.
    float16_readers: Sequence[str | None] = ()
    #: A ``keras.applications`` base that wants its own ``preprocess_input`` (see ``application_base``), or ``None``.
    application_base: Any = None
    #: The files the training and the validation dataset read (see ``file_paths``), each ``None`` where unknown.
    file_paths: tuple[Sequence[str] | None, Sequence[str] | None] = (None, None)
    #: Samples several rules read (``label-leakage``, ``one-feature-separates``), drawn once.
    memo: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def output_biases(self) -> dict[str, float]:
        """The mean starting bias of each output's unit layer, by the layer's name (where it has one)."""
        return {name: float(np.mean(values)) for name, values in self.output_bias_values.items()}


def training_rows_stand_for_all(ctx: DataContext) -> bool:
    """Whether the training rows the checks read stand for all of them: arrays, a dataset's first
    batches that are all its batches, or those of a dataset whose pipeline shuffles its rows in a
    buffer that holds them all (a random draw of them: :attr:`DataContext.dataset_drawn`). Not a never-shuffled dataset's or a PyDataset's first batches: its first rows,
    which for rows sorted by target hold its lowest ones, no sample of its range."""
    if not ctx.where:
        return True
    if ctx.dataset_batches is not None and ctx.dataset_batches <= len(ctx.batch_rows):
        return True
    return ctx.dataset_drawn is True and ctx.pydataset is None


def validation_rows_stand_for_all(ctx: DataContext) -> bool:
    """:func:`training_rows_stand_for_all` for the validation rows: arrays, or a validation
    dataset's first batches where they stand for its rows (:attr:`DataContext.val_rows_stand_for_all`)."""
    return not ctx.val_where or ctx.val_rows_stand_for_all


def validation_rows_all(ctx: DataContext) -> bool:
    """Whether the validation rows the checks read are all of them: arrays, or a validation
    dataset whose batches were all read (:attr:`DataContext.val_rows_all`)."""
    return not ctx.val_where or ctx.val_rows_all


def validation_rows_drawn(ctx: DataContext) -> bool:
    """Whether the validation rows the checks read are a random draw of them (arrays, a validation
    dataset's batches all read, or a shuffling pipeline's first ones: :attr:`DataContext.val_rows_drawn`),
    as the chance of a split of them assumes."""
    return not ctx.val_where or ctx.val_rows_drawn


def channels_first(ctx: DataContext, index: int) -> bool:
    """Whether the layer that first reads model input ``index`` (:attr:`DataContext.layout_readers`)
    has ``data_format="channels_first"``: its channels are axis 1, not the last axis."""
    reader = ctx.layout_readers[index] if index < len(ctx.layout_readers) else None
    return getattr(reader, "data_format", None) == "channels_first"


#: The convolutions that read a rank-4 input as an image: its last axis (axis 1 channels-first) its channels.
_IMAGE_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D, keras.layers.Conv2DTranspose)


def reads_image(ctx: DataContext, index: int, a: np.ndarray) -> bool:
    """Whether ``a``, values of model input ``index``, is an image: rank 4, and first read by a 2-D
    convolution (:attr:`DataContext.layout_readers`), whose channels are not a table's features."""
    reader = ctx.layout_readers[index] if index < len(ctx.layout_readers) else None
    return a.ndim == 4 and isinstance(reader, _IMAGE_CONVOLUTIONS)


def channels_last(ctx: DataContext, index: int, a: np.ndarray) -> np.ndarray:
    """``a``, values of model input ``index``, with its channels on the last axis: axis 1 moved
    last (a view) where the layer that first reads the input is channels-first (see
    :func:`channels_first`), else ``a`` as it is. The rules that read an image's channels on its
    last axis read a ``(N, 3, 32, 32)`` image's columns as channels without it."""
    return np.moveaxis(a, 1, -1) if a.ndim > 2 and channels_first(ctx, index) else a


def strided_rows(a: np.ndarray, rows: int) -> np.ndarray:
    """An evenly strided view of at most ``rows`` rows (representative even for sorted data)."""
    step = max(1, math.ceil(len(a) / max(1, rows)))
    return a[::step]


def row_budget(a: np.ndarray, rows: int, values: int = _SAMPLE_VALUES) -> int:
    """How many of ``a``'s rows a sampled check reads: at most ``rows``, fewer for wide rows (``values`` in all), never under 100."""
    width = int(np.prod(a.shape[1:])) if a.ndim > 1 else 1
    return max(100, min(rows, values // max(1, width)))


def is_numeric(a: np.ndarray) -> bool:
    """Whether ``a`` holds booleans, integers or floats."""
    return a.dtype.kind in "biuf"


def format_number(v: float) -> str:
    """``v`` with four significant digits, for messages."""
    return f"{v:.4g}"


def format_shape(shape: Sequence[int | None]) -> str:
    """A shape as Python writes a tuple: ``(32,)``, ``(None, 10)``."""
    dims = ["None" if d is None else str(d) for d in shape]
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


def is_integral(y: np.ndarray) -> bool:
    """Whether every value of ``y`` is a whole number (integer dtypes, or floats without fractions)."""
    if y.dtype.kind in "biu":
        return True
    return bool(np.all(np.equal(np.mod(y, 1), 0)))


def class_ids(target: Target, y: np.ndarray) -> np.ndarray | None:
    """One integer class id per row, or ``None`` when the labels are not single-label classes."""
    kind = target.loss.kind
    if y.dtype.kind not in "biuf":
        return None
    if y.ndim >= 2 and y.shape[-1] > 1:
        if kind in ("categorical", "kl", "categorical_hinge") and y.ndim == 2:
            return np.argmax(y, axis=1)
        return None
    if y.ndim >= 2 and y[0].size != 1:
        # A label per position ((n, H, W, 1) masks for a segmentation, (n, T, 1) for a sequence):
        # no one class a row. Reshaped to one a row, such masks raised a bare numpy ValueError
        # ("cannot reshape array of size 104448 into shape (102,)") before the first step.
        return None
    flat = y.reshape(len(y))
    if not is_integral(flat):
        return None
    if kind == "hinge":
        flat = (flat > 0).astype(np.int64)
    return flat.astype(np.int64, copy=False)


def position_axes(y_ndim: int, output_shape: Sequence[int | None] | None) -> tuple[int, ...] | None:
    """The axes a per-channel statistic of regression targets reduces over when the output predicts
    per position: ``(0, 1, 2)`` for images' ``(n, H, W, C)`` targets, ``()`` (every axis) for
    targets without the output's channel axis (``(n, H, W)`` for ``(H, W, 1)``); ``None`` when the
    output predicts per row (then axis 0: one statistic a column).

    Per-pixel statistics (``y_train.std(0)``) standardise each pixel by its own spread, ~0 where a
    pixel barely varies across the images (a border), and a conv output has one bias a channel.
    """
    if output_shape is None or len(output_shape) < 3 or y_ndim < max(2, len(output_shape) - 1):
        return None
    return tuple(range(y_ndim - 1)) if y_ndim == len(output_shape) else ()


def reduce_text(axes: tuple[int, ...] | None) -> str:
    """The arguments of ``y_train.mean(...)`` over :func:`position_axes`'s axes: ``0``, ``axis=(0, 1, 2)`` or nothing."""
    if axes is None:
        return "0"
    return f"axis={tuple(axes)}" if axes else ""


def input_label(base: str, index: int, count: int, keys: Sequence[str] | None = None) -> str:
    """How messages name input ``index`` of ``count``: ``x``, ``x[1]``, or ``x['num']`` for
    inputs given as a dict (whose position in the model's inputs the caller never wrote)."""
    if keys is not None and index < len(keys):
        return f"{base}[{keys[index]!r}]"
    return f"{base}[{index}]" if count > 1 else base


#: ``y`` as a name in a label map's Python (not the y of ``y_val`` or ``axis``).
_LABELS = re.compile(r"\by\b")


def label_map(t: Target, mapped: str) -> str:
    """``dataset.map(...)`` Python that makes ``t``'s labels over with ``mapped`` (an expression of
    ``y``, its labels), passing the inputs and any sample weights (``*w``) on.

    For one output of several only its own entry of the element's targets is made over: the map
    of the whole ``y`` raised a TypeError on a dict (or tuple) of targets.
    """
    return entry_map(t.entry, mapped)


def entry_map(entry: str | int | None, mapped: str) -> str:
    """:func:`label_map` for the targets at ``entry`` of the element's ``y`` (a key of a dict of
    targets, an index of a tuple of them, ``None`` for the whole ``y``)."""
    if entry is None:
        new = mapped
    elif isinstance(entry, int):
        new = f"tuple({_LABELS.sub('v', mapped)} if k == {entry} else v for k, v in enumerate(y))"
    else:
        new = f"{{**y, {entry!r}: {_LABELS.sub(lambda _: f'y[{entry!r}]', mapped)}}}"
    return f"dataset.map(lambda x, y, *w: (x, {new}, *w))"


def validation_name(name: str) -> str:
    """``y_val`` for ``y``, ``y_val[1]`` for ``y[1]``."""
    return name.replace("y", "y_val", 1)


def feature_label(j: int, names: Sequence[str] | None, *, capital: bool = False) -> str:
    """``feature 3``, or with the columns' names ``feature 3 ('income')`` (its index in x, not in the file)."""
    text = f"feature {j} ('{names[j]}')" if names is not None and j < len(names) else f"feature {j}"
    return "F" + text[1:] if capital else text
