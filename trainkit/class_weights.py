"""``fit(class_weight=...)``: per-class weights turned into per-row sample weights, as ``model.fit``
turns them.

A row's class is its integer label, or the index of the largest entry of a one-hot (or
probability) label; a class the mapping leaves out weighs 1. The weights multiply any
``sample_weight`` given with the rows, and apply to the training data only (not to validation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from trainkit.errors import ArgumentError
from trainkit.trainer_arguments import is_whole_number


def weights_table(class_weight: Mapping[Any, Any]) -> np.ndarray:
    """The weight of each class id ``0..max id`` (1.0 for ids the mapping leaves out).

    Raises:
        ArgumentError: ``bad-argument`` for keys that are not class ids or weights that are not
            finite non-negative numbers.
    """
    if not isinstance(class_weight, Mapping) or not class_weight:
        raise ArgumentError("bad-argument", f"class_weight must be a non-empty dict of class id -> weight, such as {{0: 1.0, 1: 5.0}}; got {class_weight!r}.")
    for key, weight in class_weight.items():
        if not _is_class_id(key):
            raise ArgumentError("bad-argument", f"class_weight keys are class ids (integers >= 0); got {key!r}.")
        if isinstance(weight, bool) or not isinstance(weight, int | float | np.number) or not math.isfinite(float(weight)) or weight < 0:
            raise ArgumentError("bad-argument", f"class_weight[{key}] must be a finite number >= 0; got {weight!r}.")
    table = np.ones(int(max(class_weight)) + 1, np.float32)
    for key, weight in class_weight.items():
        table[int(key)] = float(weight)
    return table


def _is_class_id(key: Any) -> bool:
    """A class id: a whole number >= 0, written as a float too (``0.0``, ``np.float32(1)``), as
    ``dict(zip(np.unique(y), weights))`` writes the keys of float labels, and ``model.fit`` takes."""
    if is_whole_number(key):
        return key >= 0
    return isinstance(key, float | np.floating) and math.isfinite(key) and float(key).is_integer() and key >= 0


def row_weights(class_weight: Mapping[Any, Any], y: np.ndarray, sample_weight: np.ndarray | None = None,
                y_val: Any = None) -> np.ndarray:
    """The weight of each row of ``y``: its class's weight times its ``sample_weight``.

    ``y_val``, the validation labels when known, holds classes too: a weight for one of them is
    no typo (see :func:`check_against_labels`).

    Raises:
        ArgumentError: ``bad-argument`` as :func:`weights_table`; ``class-weight-unknown-class``
            for a class id none of the labels hold, ``class-weight-all-zero`` when every class
            of the labels weighs 0 (see :func:`check_against_labels`).
    """
    table = weights_table(class_weight)
    ids = _class_ids(np.asarray(y))
    if ids.size and ids.min() < 0:  # they would index the table from its end
        raise ArgumentError("bad-argument", f"class_weight needs class ids >= 0, but the labels hold {int(ids.min())}: encode the classes as 0..K-1 first.")
    check_against_labels(class_weight, ids, _validation_ids(y_val))
    weights = np.where(ids < len(table), table[np.minimum(ids, len(table) - 1)], np.float32(1.0)).astype(np.float32)
    if sample_weight is not None:
        weights = weights * np.asarray(sample_weight, np.float32).reshape(len(weights))
    return weights


def check_against_labels(class_weight: Mapping[Any, Any], ids: np.ndarray, val_ids: np.ndarray | None = None) -> None:
    """Refuses class weights that cannot mean what was meant, given the rows' class ids.

    A class no label holds weighs no row, so its weight is a typo or a wrong encoding that
    would otherwise pass in silence; and with every class of the labels at 0 each row weighs 0,
    the loss is 0 from the first step and nothing is learned (the loss curve then looks like a
    leak, not like a setting). A class only the validation labels hold is neither: balanced
    weights computed over all the labels (sklearn's ``compute_class_weight``) name every class,
    and with many rare classes ``validation_split`` leaves some of them out of the training rows.

    Args:
        class_weight: Class id -> weight, already validated by :func:`weights_table`.
        ids: The class id of every training row.
        val_ids: The class id of every validation row, ``None`` when unknown.

    Raises:
        ArgumentError: ``class-weight-unknown-class`` or ``class-weight-all-zero``.
    """
    if ids.size == 0:  # no rows: the data's own check (empty-data) says so
        return
    present = np.unique(ids)
    labels = _listing(present)
    held = set(present.tolist()) | (set(np.unique(val_ids).tolist()) if val_ids is not None else set())
    unknown = sorted(int(key) for key in class_weight if int(key) not in held)
    if unknown:
        which = f"class {unknown[0]}, which is" if len(unknown) == 1 else f"classes {', '.join(map(str, unknown))}, which are"
        raise ArgumentError(
            "class-weight-unknown-class",
            f"class_weight gives a weight to {which} not among the training labels {labels}"
            f"{' nor the validation labels' if val_ids is not None else ''}: such a weight "
            f"applies to no row. Weigh the classes the labels hold (training.class_weight in a recipe), "
            f"or check how the labels are encoded (class ids 0..K-1; one-hot rows count by their 1).")
    if all(float(class_weight.get(int(c), 1.0)) == 0.0 for c in present):
        raise ArgumentError(
            "class-weight-all-zero",
            f"class_weight gives every class of the training labels {labels} weight 0: every row would "
            f"weigh 0, the loss would be 0 from the first step and nothing would be learned. Give each "
            f"class to train on a weight > 0, e.g. {{{', '.join(f'{int(c)}: 1.0' for c in present[:3])}"
            f"{', ...' if len(present) > 3 else ''}}} (training.class_weight in a recipe); 0 leaves a class out.")


def _listing(ids: np.ndarray, limit: int = 10) -> str:
    """``{0, 1, 2}``, the first ``limit`` ids then ``...``."""
    shown = ", ".join(str(int(i)) for i in ids[:limit])
    return "{" + shown + (", ..." if len(ids) > limit else "") + "}"


def weighted_dataset(dataset: tf.data.Dataset, class_weight: Mapping[Any, Any]) -> tf.data.Dataset:
    """``dataset`` with each batch's rows weighted by their class (``(x, y, weight)`` batches)."""
    table = tf.constant(weights_table(class_weight))

    def add_weights(x: Any, y: Any, sample_weight: Any = None) -> tuple[Any, Any, tf.Tensor]:
        ids = _class_ids_in_graph(y)
        known = (ids >= 0) & (ids < tf.size(table, out_type=ids.dtype))  # other ids (-1...) weigh 1, as unknown classes
        weights = tf.where(known, tf.gather(table, tf.clip_by_value(ids, 0, tf.size(table, out_type=ids.dtype) - 1)), 1.0)
        if sample_weight is not None:
            weights = weights * tf.reshape(tf.cast(sample_weight, tf.float32), tf.shape(weights))
        return x, y, weights

    return dataset.map(add_weights, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _validation_ids(y_val: Any) -> np.ndarray | None:
    """The class ids of validation labels given as one numeric array, else ``None``."""
    if y_val is None or isinstance(y_val, Mapping | list | tuple | tf.data.Dataset):
        return None
    try:
        y_val = np.asarray(y_val)
    except (TypeError, ValueError):
        return None
    if y_val.ndim == 0 or not len(y_val) or y_val.dtype.kind not in "biuf" or not np.isfinite(y_val).all():
        return None
    return _class_ids(y_val)


def _class_ids(y: np.ndarray) -> np.ndarray:
    if y.ndim >= 2 and y.shape[-1] > 1:
        return np.argmax(y.reshape(len(y), -1), axis=1).astype(np.int64)
    return np.rint(y.reshape(len(y))).astype(np.int64)


def _class_ids_in_graph(y: tf.Tensor) -> tf.Tensor:
    def rounded() -> tf.Tensor:
        return tf.cast(tf.round(tf.reshape(tf.cast(y, tf.float32), [-1])), tf.int64)

    if y.shape.rank is not None and y.shape.rank >= 2 and y.shape[-1] is None:
        # A width known only per batch (from_generator's TensorSpec((None, None))): one-hot rows
        # read as class ids by the reshape gave each row one weight per class.
        return tf.cond(tf.shape(y)[-1] > 1, lambda: tf.argmax(y, axis=-1, output_type=tf.int64), rounded)
    if y.shape.rank is not None and y.shape.rank >= 2 and y.shape[-1] > 1:
        return tf.argmax(y, axis=-1, output_type=tf.int64)
    return rounded()
