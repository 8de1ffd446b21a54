"""The positions a masked sequence model's loss reads, for its chance level.

An ``Embedding(mask_zero=True)`` whose mask reaches the output (a tagger: ``LSTM(...,
return_sequences=True)`` then ``Dense``) makes Keras losses average over the unmasked positions
only: the padding's labels, whatever they are, weigh nothing. A label prior taken over every
position counts them: 77% padding labelled 0 put a random-label tagger's chance level at 0.75
where its loss, over the real tokens, could not go below 1.61 (ln 5), and no ``loss-at-chance``
was told.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainkit.checks.model_inspect import iter_layers, masked_embeddings

#: Rows the model is called on to see whether (and how) its output is masked.
_SAMPLE_ROWS = 32


def loss_positions(model: Any, inputs: Any) -> tuple[bool, np.ndarray | None]:
    """Which of the targets' positions the loss reads, from the model's output mask.

    Args:
        model: The Keras model.
        inputs: Its training (or validation) inputs, row-aligned with the targets; ``None`` if unknown.

    Returns:
        ``(known, positions)``: ``(True, None)`` when the output carries no mask (every position
        counts; so too for a model of several inputs or stateful layers, which is not called),
        ``(True, ids != 0)`` (``[rows, T]``) when it carries the mask of an
        ``Embedding(mask_zero=True)`` reading the one input, and ``(False, None)`` when it is
        masked some other way, or the rows are unknown (a chance level over every position would
        be wrong: none is better).
    """
    if not masked_embeddings(model):
        return True, None
    shape = _input_shape(model)
    if shape is None or any(getattr(layer, "stateful", False) for layer in iter_layers(model)):
        # Several inputs (no one batch to call it on), or a call that would move a stateful
        # layer's carried state: every position counts, as it did before masks were read.
        return True, None
    # Whether the mask reaches the output at all, on ids 1 (a row in every table): a pooled
    # classifier's does not, and its rows count whole whatever its inputs (padded_batch's batches
    # of several lengths, which do not join into one array, gave no chance level at all).
    masks = _output_masks(model, np.ones((2, *(3 if d is None else d for d in shape)), np.int32))
    if masks is None or all(m is None for m in masks):
        return True, None
    if inputs is None or isinstance(inputs, dict | list | tuple):
        return False, None  # a masked output, and no rows to rebuild its mask from
    inputs = np.asarray(inputs)  # in-memory rows are a tensor
    if inputs.ndim != 2 or not (np.issubdtype(inputs.dtype, np.integer) or np.issubdtype(inputs.dtype, np.floating)):
        return False, None
    sample = inputs[:_SAMPLE_ROWS]
    masks = _output_masks(model, sample)
    if masks is None or len(masks) != 1 or masks[0] is None or np.shape(masks[0]) != sample.shape:
        return False, None
    if not np.array_equal(np.asarray(masks[0]), sample != 0):
        return False, None
    return True, inputs != 0


def _input_shape(model: Any) -> tuple[int | None, ...] | None:
    """The one input's shape a row (``(T,)``), or ``None`` for several inputs or unknown ones."""
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1 or inputs[0].shape is None:
        return None
    return tuple(inputs[0].shape[1:])


def _output_masks(model: Any, rows: np.ndarray) -> list[Any] | None:
    """The mask of each of the model's outputs on ``rows`` (``None`` for an unmasked one), or
    ``None`` when the model cannot be called on them here."""
    try:
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
