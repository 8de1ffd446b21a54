"""The positions a masked sequence model's loss reads, for its chance level.

An ``Embedding(mask_zero=True)`` whose mask reaches the output (a tagger: ``LSTM(...,
return_sequences=True)`` then ``Dense``) makes Keras losses average over the unmasked positions
only: the padding's labels, whatever they are, weigh nothing. A label prior taken over every
position counts them: 77% padding labelled 0 put a random-label tagger's chance level at 0.75
where its loss, over the real tokens, could not go below 1.61 (ln 5), and no ``loss-at-chance``
was told. A ``Masking`` layer on padded features (``[rows, T, F]``, padding steps all
``mask_value``) does the same, and its tagger's chance level counted the padding too: 0.84 for
random tags whose loss sat at ln 5 = 1.61, and no ``loss-at-chance``.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

import keras
import numpy as np

from trainkit.checks.model_inspect import iter_layers, masked_embeddings
from trainkit.seed_states import seed_states_kept, stateful_recurrent_layers

#: Rows the model is called on to see whether (and how) its output is masked.
_SAMPLE_ROWS = 32


def loss_positions(model: Any, inputs: Any) -> tuple[bool, np.ndarray | None]:
    """Which of the targets' positions the loss reads, from the model's output mask.

    Args:
        model: The Keras model.
        inputs: Its training (or validation) inputs, row-aligned with the targets; ``None`` if unknown.

    Returns:
        ``(known, positions)``: ``(True, None)`` when the output carries no mask (every position
        counts; so too for a model of several inputs or stateful layers other than recurrent ones,
        or an unbuilt subclassed one with a stateful recurrent layer, which is not called),
        ``(True, ids != 0)`` (``[rows, T]``) when it carries the mask of an
        ``Embedding(mask_zero=True)`` reading the one input (of a ``Masking`` layer reading it:
        ``(True, any(x != mask_value, axis=-1))``, see :func:`input_positions`), and ``(False, None)`` when it is
        masked some other way, or the rows are unknown (a chance level over every position would
        be wrong: none is better).
    """
    if not masks_inputs(model):
        return True, None
    shape = _input_shape(model) or _subclass_input_shape(model, inputs)
    if shape is None or any(getattr(layer, "stateful", False) and not isinstance(layer, keras.layers.RNN) for layer in iter_layers(model)):
        # Several inputs (no one batch to call it on), or a call that would move a stateful
        # layer's carried state (a recurrent layer's, seed_states_kept puts back): every position
        # counts, as it did before masks were read.
        return True, None
    if _subclassed(model) and not (model.built and model.variables) and stateful_recurrent_layers(model):
        # The call would build it, and a stateful layer's states would take this call's rows (32)
        # for their batch: the fit's batches of 16 then failed ("Expected batch size: 32"). Its
        # fit builds it on a batch of its own; every position counts, as before masks were read.
        return True, None
    rows = _id_rows(inputs)
    mask = _output_mask(model, shape, rows)
    if mask == "none":
        return True, None
    return (True, input_positions(model, rows)) if mask == "inputs" and rows is not None else (False, None)


def masks_inputs(model: Any) -> bool:
    """Whether ``model`` masks positions of its inputs: an ``Embedding(mask_zero=True)`` an input
    feeds directly (any of a subclassed model's, whose inputs are not traced: its call tells), or
    a ``Masking`` layer."""
    if masked_embeddings(model) or any(isinstance(layer, keras.layers.Masking) for layer in iter_layers(model)):
        return True
    return _subclassed(model) and any(isinstance(layer, keras.layers.Embedding) and layer.mask_zero is True for layer in iter_layers(model))


def _subclassed(model: Any) -> bool:
    """Whether ``model`` is a subclassed one, neither ``Sequential`` nor Functional: its inputs are
    known only from the data it is called on."""
    return isinstance(model, keras.Model) and not isinstance(model, keras.Sequential) and not getattr(model, "inputs", None)


def _subclass_input_shape(model: Any, inputs: Any) -> tuple[int | None, ...] | None:
    """A subclassed model's one input's shape a row, read from ``inputs`` (``None``: not a
    subclassed model, or not one in-memory array)."""
    rows = _id_rows(inputs) if _subclassed(model) else None
    return tuple(rows.shape[1:]) if rows is not None else None


def input_positions(model: Any, rows: np.ndarray) -> np.ndarray:
    """The positions of ``rows`` (one input's) its mask keeps, as Keras computes the mask: ids
    ``!= 0`` for an ``Embedding(mask_zero=True)``'s ``[rows, T]`` ids, else a ``Masking`` layer's
    ``any(rows != mask_value, axis=-1)``."""
    value = _masking_value(model)
    if rows.ndim == 2 and (masked_embeddings(model) or value is None):
        return rows != 0
    return np.any(rows != (0.0 if value is None else value), axis=-1)


def _masking_value(model: Any) -> float | None:
    """The ``mask_value`` of the model's ``Masking`` layers (``None``: none, or several values)."""
    values = {float(layer.mask_value) for layer in iter_layers(model) if isinstance(layer, keras.layers.Masking)}
    return values.pop() if len(values) == 1 else None


#: Each model's output mask, once read (a fit asks for its training rows, its validation rows and
#: the data checks': each eager call of an LSTM tagger cost ~0.1-0.2 s).
_OUTPUT_MASKS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _output_mask(model: Any, shape: tuple[int | None, ...], rows: np.ndarray | None) -> str:
    """What masks the model's output: ``"none"`` (no mask reaches it), ``"inputs"`` (the one
    input's own mask, :func:`input_positions`) or ``"other"``; ``"unknown"`` (not kept) without rows to tell the last two apart."""
    known = _OUTPUT_MASKS.get(model)
    if known is not None:
        return known
    # On real rows where there are some, else on ids 1 (a row in every table): a pooled
    # classifier's mask does not reach the output, and its rows count whole whatever its inputs
    # (padded_batch's batches of several lengths, which do not join into one array).
    # As many rows as an input of a fixed batch size takes (a stateful layer's, whose states have its rows).
    count = _fixed_rows(model)
    sample = rows[:count or _SAMPLE_ROWS] if rows is not None else np.ones((count or 2, *(3 if d is None else d for d in shape)), np.int32)
    masks = _output_masks(model, sample)
    if masks is None and rows is not None:
        masks = _output_masks(model, np.ones((count or 2, *(3 if d is None else d for d in shape)), np.int32))
        sample = None  # the real rows could not be read: whether their mask is ids != 0 is unknown
    if masks is None or all(m is None for m in masks):
        mask = "none"
    elif sample is None or rows is None:
        return "unknown"
    elif len(masks) == 1 and masks[0] is not None and _same(np.asarray(masks[0]), input_positions(model, sample)):
        mask = "inputs"
    else:
        mask = "other"
    _OUTPUT_MASKS[model] = mask
    return mask


def _same(mask: np.ndarray, positions: np.ndarray) -> bool:
    return mask.shape == positions.shape and bool(np.array_equal(mask, positions))


def _id_rows(inputs: Any) -> np.ndarray | None:
    """In-memory numeric ``[rows, T]`` ids or ``[rows, T, ...]`` features, else ``None`` (unknown,
    a dataset, several inputs)."""
    if inputs is None or isinstance(inputs, dict | list | tuple):
        return None
    rows = np.asarray(inputs)  # in-memory rows are a tensor
    if rows.ndim < 2 or not (np.issubdtype(rows.dtype, np.integer) or np.issubdtype(rows.dtype, np.floating)):
        return None
    return rows


def _input_shape(model: Any) -> tuple[int | None, ...] | None:
    """The one input's shape a row (``(T,)``), or ``None`` for several inputs or unknown ones."""
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1 or inputs[0].shape is None:
        return None
    return tuple(inputs[0].shape[1:])


def _fixed_rows(model: Any) -> int | None:
    """The one input's fixed batch size (``keras.Input(batch_shape=(8, ...))``), else ``None``."""
    inputs = getattr(model, "inputs", None)
    return inputs[0].shape[0] if inputs and len(inputs) == 1 and inputs[0].shape is not None and inputs[0].shape else None


def _output_masks(model: Any, rows: np.ndarray) -> list[Any] | None:
    """The mask of each of the model's outputs on ``rows`` (``None`` for an unmasked one), or
    ``None`` when the model cannot be called on them here."""
    # In the scope of the strategy the model was made under (Keras keeps it): an unbuilt subclassed
    # model is built by this call, and its variables made outside that scope were no mirrored ones
    # (its fit failed: "colocate_vars_with must only be passed a variable created in this
    # tf.distribute.Strategy.scope()").
    strategy = getattr(model, "_distribute_strategy", None)
    try:
        with (strategy.scope() if strategy is not None else contextlib.nullcontext()), seed_states_kept(model):
            # A call model.fit does not make (a sampling layer draws in it).
            outputs = model(rows, training=False)
    except Exception:
        return None
    outputs = list(outputs.values()) if isinstance(outputs, dict) else outputs if isinstance(outputs, list | tuple) else [outputs]
    # Keras keeps a tensor's mask as this attribute (keras.backend has no public reader).
    return [getattr(o, "_keras_mask", None) for o in outputs]


def at_positions(targets: Any, weights: Any, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The targets of the ``positions`` the loss reads, one row each, with their rows' weights.

    ``[rows, T, ...]`` targets become ``[kept, ...]``; ``weights`` (one per row, or ``None``) are
    repeated over each row's positions, as training weighs them. ``None`` when the targets do not
    line up with the positions.
    """
    y = np.asarray(targets)
    if y.ndim < 2 or y.shape[:2] != positions.shape:
        return None
    if weights is None:
        return y[positions], None
    w = np.asarray(weights)
    if w.size != len(w):
        return None
    return y[positions], np.broadcast_to(w.reshape(len(w), 1), positions.shape)[positions]
