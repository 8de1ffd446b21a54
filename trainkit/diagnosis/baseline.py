"""The chance level of a task: the loss of the best prediction that ignores the inputs.

For cross-entropy that is the entropy of the label prior (a model that always predicts the class
frequencies); for mean squared error it is the variance of the targets (always predicting their
mean). The rules compare losses with it: far below it at the first step means leakage or a wrong
loss, staying at it means nothing was learned. It is computed with the run's own loss function on
the constant prediction, so label smoothing, ``from_logits`` and per-output averaging are handled
the way training handles them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

#: Rows used to compute the chance level (a strided sample of larger training sets).
MAX_ROWS = 100_000
_EPS = 1e-7


@dataclasses.dataclass(frozen=True)
class Baseline:
    """The chance level and how it was obtained.

    Attributes:
        loss: The loss of the best constant prediction.
        detail: How it was computed, for messages (``"entropy of the label prior, p(1)=0.50"``).
    """

    loss: float
    detail: str


def chance_loss(task: str, loss: Any, y: Any) -> Baseline | None:
    """The loss a model would get by predicting the label prior / the target mean for every row.

    Args:
        task: ``binary``, ``multiclass``, ``multilabel`` or ``regression``.
        loss: The run's loss (a Keras loss object, or a name Keras resolves).
        y: The training targets (numpy-like), in the layout the loss receives.

    Returns:
        The :class:`Baseline`, or ``None`` when it is unknown: a custom or hinge-type loss,
        several outputs, or targets that are not a plain numeric array.
    """
    from trainkit.checks.compatibility import describe_loss
    from trainkit.resolve import get_loss

    try:
        y = np.asarray(y)
    except (TypeError, ValueError):
        return None
    if y.size == 0 or not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        return None
    if len(y) > MAX_ROWS:
        y = y[:: math.ceil(len(y) / MAX_ROWS)]
    y = y.astype(np.float64)
    if not np.isfinite(y).all():
        return None
    info = describe_loss(loss)
    constant = _best_constant(task, info.kind, info.from_logits, info.name, y)
    if constant is None:
        return None
    prediction, detail = constant
    try:
        fn = get_loss(loss) if not callable(loss) else loss
        value = float(np.asarray(fn(y.astype(np.float32), np.broadcast_to(prediction, _pred_shape(info.kind, y, prediction)).astype(np.float32))))
    except Exception:  # a loss that cannot take numpy arrays gets no chance level
        return None
    if not math.isfinite(value):
        return None
    return Baseline(value, detail)


def _pred_shape(kind: str | None, y: np.ndarray, prediction: np.ndarray) -> tuple[int, ...]:
    if kind == "sparse":
        return (len(y), prediction.shape[-1])
    return y.shape if y.ndim > 1 else (len(y),)


def _best_constant(task: str, kind: str | None, from_logits: bool, name: str, y: np.ndarray) -> tuple[np.ndarray, str] | None:
    """The constant prediction with the lowest loss for this loss family, and its description."""
    if kind == "sparse":
        ids = y.reshape(-1).astype(np.int64)
        if ids.min() < 0:
            return None
        prior = np.bincount(ids) / len(ids)
        probs = np.clip(prior, _EPS, 1.0)
        return (np.log(probs) if from_logits else probs), f"entropy of the label prior over {len(prior)} classes"
    if kind == "categorical":
        prior = np.clip(y.reshape(len(y), -1).mean(axis=0), _EPS, 1.0)
        prior = prior / prior.sum()
        return (np.log(prior) if from_logits else prior), f"entropy of the label prior over {len(prior)} classes"
    if kind == "binary":
        p = np.clip(y.mean(axis=0), _EPS, 1 - _EPS)
        shown = f"p(1)={float(np.mean(p)):.2f}"
        return (np.log(p / (1 - p)) if from_logits else p), f"entropy of the label prior, {shown}"
    if kind == "regression":
        if name in ("MeanAbsoluteError", "mean_absolute_error"):
            return np.median(y, axis=0), "mean absolute deviation of the targets from their median"
        what = "variance of the targets" if task == "regression" else "variance of the labels (MSE of predicting their mean)"
        if name in ("MeanSquaredError", "mean_squared_error"):
            return y.mean(axis=0), what
        return y.mean(axis=0), "loss of predicting the target mean"
    return None
