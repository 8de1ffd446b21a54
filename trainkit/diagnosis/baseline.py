"""The chance level of a task: the loss of the best prediction that ignores the inputs.

For cross-entropy that is the entropy of the label prior (a model that always predicts the class
frequencies); for mean squared error it is the variance of the targets (always predicting their
mean; for absolute error their median; for Huber, log-cosh, MAPE, MSLE and binary and categorical
focal cross-entropy the constant a search finds; for Poisson the target mean, where its floor is 0 or more). The rules compare losses with it: far below it at the
first step means leakage or a wrong loss, staying at it means nothing was learned. It is computed with the run's own loss function on
the constant prediction, so label smoothing, ``from_logits`` and per-output averaging are handled
the way training handles them.

Weighted rows (``sample_weight``, and ``class_weight`` which fit turns into row weights) change
both: the best constant is the weighted one (the weighted label prior, the weighted target mean),
and its loss is taken with the same weights and the same reduction as training (Keras'
``sum_over_batch_size``: sum(w * loss) / rows, so weights with mean 5 make every loss 5x larger).

The validation loss has a chance level of its own, computed the same way on the validation rows
with their own weights only: ``class_weight`` weighs the training rows alone (as in ``model.fit``),
and the validation rows may hold another class mix. No prediction that ignores the inputs gets a
lower validation loss, so one clearly below it shows the model learned something that carries
over, and one never clearly below it shows nothing did. (Balanced class weights on 90/10 random
labels: training chance 1.31, validation chance 0.37; the validation loss, 0.60-0.71, was compared
with 1.31 and read as learned, the run as overfitting. What the training rows' prior scores on the
validation rows, 0.71 there, was tried as the bar for "nothing carried over" and dropped: random
labels' validation losses land between the two, 108-117% of the validation rows' own level and
89-92% of the training prior's, where the recipes' random-label runs read as overfitting.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

#: Rows used to compute the chance level (a strided sample of larger training sets).
MAX_ROWS = 100_000
#: Label values read at most (fewer rows of wide targets): a segmentation's 2000 64x64 masks, 8M
#: pixels, took 2.9 s of each fit's start for a level that 1M of them give to the third digit.
MAX_VALUES = 1_000_000
_EPS = 1e-7
#: Regression targets with |mean| or std at or above this are unscaled: the ``unscaled-targets``
#: check warns, and the advice of the findings tells to standardise them only then.
UNSCALED_TARGET = 10.0


@dataclasses.dataclass(frozen=True)
class TargetScale:
    """The mean and standard deviation of the regression target column farthest from unit scale.

    Attributes:
        mean: That column's mean.
        std: Its standard deviation.
        column: Its index among the flattened target columns.
    """

    mean: float
    std: float
    column: int

    @property
    def scaled(self) -> bool:
        """Whether every column is within the scale that trains well (|mean| and std < 10)."""
        return abs(self.mean) < UNSCALED_TARGET and self.std < UNSCALED_TARGET

    @property
    def tiny(self) -> bool:
        """Whether the targets spread as far below unit scale as unscaled ones spread above it
        (std under 1/10): a fresh model's outputs spread ~1 unit, far wider than they do."""
        return self.std < 1.0 / UNSCALED_TARGET


def target_scale(y: Any) -> TargetScale | None:
    """The :class:`TargetScale` of regression targets ``[rows, ...]``; ``None`` unless numeric and finite."""
    try:
        y = np.asarray(y)
    except (TypeError, ValueError):
        return None
    if y.size == 0 or not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
        return None
    if len(y) > MAX_ROWS:
        y = y[:: math.ceil(len(y) / MAX_ROWS)]
    y = y.astype(np.float64).reshape(len(y), -1)
    if not np.isfinite(y).all():
        return None
    mean, std = y.mean(axis=0), y.std(axis=0)
    j = int(np.argmax(np.maximum(np.abs(mean), std)))
    return TargetScale(float(mean[j]), float(std[j]), j)


@dataclasses.dataclass(frozen=True)
class Baseline:
    """The chance level and how it was obtained.

    Attributes:
        loss: The loss of the best constant prediction.
        detail: How it was computed, for messages (``"entropy of the label prior, p(1)=0.50"``).
        uninformed: A classifier's loss when it predicts every class alike (p = 0.5 per sigmoid
            unit, 1/K per softmax class): where a freshly initialised output with small logits
            starts, above the chance level when the classes are imbalanced; a regression's loss
            when it predicts 0 (where a fresh linear output starts); ``None`` otherwise.
        first_steps: The lowest plausible loss on the first steps' batches (the highest of
            :data:`FIRST_STEPS` of them) while the model predicts a constant (a classifier's
            prior; a regression's best constant, or 0, where a fresh output starts): below the
            chance level where a batch may hold few or none of a rare class's rows, or of a
            regression's few far targets (see :func:`first_steps_level`); ``None`` when unknown.
        floor: The loss of a perfect prediction, the lowest the loss can get: 0 but for
            cross-entropy with ``label_smoothing``, whose smoothed labels' own entropy it never
            goes below (see :func:`smoothed_floor`), and Poisson, ``mean(y - y * log(y))``.
        constant: A one-column regression's best constant prediction (the mean for MSE, the
            median for MAE, the searched one for Huber, log-cosh, MAPE and MSLE), where an
            output bias best starts; ``None`` otherwise.
        worst_batch: The highest loss one batch can read while the model predicts the constants
            of :attr:`first_steps` (see :func:`worst_batch_level`): a batch's loss above it is the
            model's doing, not its rows'; ``None`` when unknown.
    """

    loss: float
    detail: str
    uninformed: float | None = None
    first_steps: float | None = None
    floor: float = 0.0
    constant: float | None = None
    worst_batch: float | None = None


def chance_loss(task: str, loss: Any, y: Any, sample_weight: Any = None, batch_size: int | None = None,
                units: int | None = None, prior_rows: Any = None, in_order: bool = False, last_batch: int = 0) -> Baseline | None:
    """The loss a model would get by predicting the label prior / the best constant target for every row.

    Args:
        task: ``binary``, ``multiclass``, ``multilabel`` or ``regression``.
        loss: The run's loss (a Keras loss object, or a name Keras resolves).
        y: The training targets (numpy-like), in the layout the loss receives.
        sample_weight: The training rows' weights (sample weight times class weight), one per
            row of ``y``, or ``None`` for unweighted rows.
        batch_size: Rows per training batch, for :attr:`Baseline.first_steps`; ``None``: not computed.
        units: The output's units (its last axis), when known: a sparse cross-entropy's
            :attr:`Baseline.uninformed` spreads over all of them, not only the classes the labels hold.
        prior_rows: Other labels of the same classes (the training labels, for the validation
            level): pooled with ``y`` for the prior of a sparse or categorical cross-entropy on
            unweighted rows too few for their classes (see :data:`OWN_PRIOR_ROWS_PER_CLASS`).
        in_order: The training batches are ``y``'s rows in their own order (see :func:`first_steps_level`).
        last_batch: The rows of each epoch's short last batch (the training rows modulo
            ``batch_size``), 0 when none or unknown: :attr:`Baseline.worst_batch` reads it too.

    Returns:
        The :class:`Baseline`, or ``None`` when it is unknown: a custom or hinge-type loss, a
        loss not averaged over the batch's rows (``reduction="sum"``), several outputs, targets
        that are not a plain numeric array, cross-entropy on targets other than 0 and 1 (soft
        labels, whose own entropy the loss never goes below), or weights that are not one
        finite, non-negative number per row (a wrong chance level is worse than none).
    """
    from trainkit.checks.compatibility import describe_loss
    from trainkit.resolve import get_loss

    rows = _usable_rows(y, sample_weight)
    if rows is None:
        return None
    y, w = rows
    info = describe_loss(loss)
    if info.kind in ("binary", "categorical") and not np.isin(y, (0.0, 1.0)).all():
        # Targets that are probabilities (an autoencoder's pixels in [0, 1], a teacher's soft
        # labels) put the cross-entropy's floor at their own entropy, not at 0: an autoencoder
        # reconstructing pixels in [0.3, 0.7] well (MSE 0.0012 against a variance of 0.022) ended
        # at 94% of the prior's loss and was told loss-at-chance. (KL divergence subtracts that
        # entropy: its floor is 0, and its chance level stays.)
        return None
    config = _loss_config(loss)
    if config.get("reduction", "sum_over_batch_size") not in _ROW_MEAN_REDUCTIONS:
        # A loss summed over its batch is the batch's rows times their mean loss: its level grows
        # with the batch size (and a smaller last batch's is lower), so no one number is its chance
        # level. Summed over all 320 training rows it read 221 where a fresh model's first losses
        # at batch 32 were ~22, and a healthy run was told initial-loss-too-low (a leak).
        return None
    prior_y, pooled = _prior_labels(info, y, w, prior_rows, units)
    constant = _best_constant(task, info.kind, info.from_logits, info.name, prior_y, w,
                              ignore_class=config.get("ignore_class"),
                              label_smoothing=float(config.get("label_smoothing") or 0.0))
    if constant is None:
        return None
    prediction, detail = constant
    if pooled:
        detail += ", pooled with the training labels (few validation rows a class)"
    if y.ndim == 1 and info.kind != "sparse":
        # One label per row is one column to the loss, as the model's (rows, 1) output makes it in
        # training: Keras losses average over the last axis, so a 1-D y was averaged over all the
        # rows before the weights applied (weights 10 and 1 on ~50/50 labels read 6.7 for 1.7).
        y = y[:, None]
    try:
        # Resolved even when callable: a plain function (keras.losses.binary_crossentropy) returns
        # one loss per row and takes no sample_weight, so it gave no chance level at all.
        fn = get_loss(loss)
        if info.kind == "regression" and info.name not in _CLOSED_FORM:
            searched = _searched_constant(fn, y, w)
            if searched is not None:
                prediction, detail = searched, "loss of the best constant prediction"
        elif info.name in _BINARY_FOCAL:
            # The focal term weighs the rare class's rows up and the common one's down (and class
            # balancing by alpha), so the prior is not the minimiser: on 90:10 labels it read 0.187
            # where p = 0.31 gets 0.088, and random labels settling there were not at chance.
            link = _logit if info.from_logits else None
            searched = _searched_constant(fn, y, w, bounds=(_EPS, 1 - _EPS), link=link)
            if searched is not None:
                prediction = link(searched) if link is not None else searched
                # One constant a label column: their mean ("p(1)=0.46") read as one label's share.
                detail = ("loss of the best constant prediction, " + (
                    f"p(1)={_share(float(np.mean(searched)))}" if np.size(searched) == 1 else
                    f"one a label, p(1) from {_share(float(np.min(searched)))} to {_share(float(np.max(searched)))}"))
        elif info.name in _CATEGORICAL_FOCAL and np.ndim(prediction) == 1:
            # As for the binary one: on 94/2/2/2 labels the prior scored 0.056 where the best
            # constant scores 0.036. The loss is linear in the (smoothed) labels, so its best
            # constant depends on their prior only.
            prior = np.exp(prediction) if info.from_logits else prediction
            best = _focal_simplex_minimiser(prior, float(config.get("gamma", 2.0)))
            prediction = np.log(best) if info.from_logits else best
            detail = "loss of the best constant prediction"
        pred = np.broadcast_to(prediction, _pred_shape(info.kind, y, prediction)).astype(np.float32)
        # A row's weight weighs each of its positions, as training weighs them (per_position_weights):
        # (n,) weights against a segmentation's (n, H, W) losses made the loss fail (no level).
        weights = {} if w is None else {"sample_weight": w.astype(np.float32).reshape(len(w), *[1] * max(0, pred.ndim - 2))}
        value = float(np.asarray(fn(y.astype(np.float32), pred, **weights)))
    except Exception:  # a loss that cannot take numpy arrays gets no chance level
        return None
    if not math.isfinite(value):
        return None
    if w is not None:
        detail += f", with the rows' weights (mean {float(np.mean(w)):.3g})"
    uninformed = None
    if info.kind in ("binary", "categorical", "sparse"):
        shape = np.shape(prediction)
        if info.kind == "sparse" and units and units > shape[-1]:
            # A fresh softmax spreads over every unit, not only the classes the labels hold: 1000
            # units for 5 classes start at ln 1000 = 6.9, and were told initial-loss-too-high
            # ("4.3x the chance level 1.609 ... far from a sensible prediction") against ln 5.
            shape = (*shape[:-1], units)
        uniform = np.full(shape, 1.0 / (2 if info.kind == "binary" else max(1, shape[-1])))
        try:
            flat = np.zeros_like(uniform) if info.from_logits else uniform
            pred = np.broadcast_to(flat, _pred_shape(info.kind, y, uniform)).astype(np.float32)
            uninformed = float(np.asarray(fn(y.astype(np.float32), pred, **weights)))
        except Exception:
            uninformed = None
        uninformed = uninformed if uninformed is not None and math.isfinite(uninformed) else None
    elif info.kind == "regression":
        uninformed = zero_prediction_loss(loss, y, w)
    first = worst = None
    starts: list[np.ndarray] | None = None  # the constants whose batches are read (see first_steps_level)
    if batch_size and info.kind in ("binary", "categorical", "sparse") and config.get("ignore_class") is None:
        # The constants a fresh output starts near: the (weighted) prior, the unweighted prior
        # (an output bias at log(p / (1 - p)), as class-imbalance advises, beside class_weight)
        # and every class alike.
        starts = [prediction, np.zeros_like(uniform) if info.from_logits else uniform]
        if w is not None:
            plain = _best_constant(task, info.kind, info.from_logits, info.name, y, None,
                                   label_smoothing=float(config.get("label_smoothing") or 0.0))
            starts += [plain[0]] if plain is not None else []
        starts = [np.broadcast_to(c, _pred_shape(info.kind, y, np.asarray(c))) for c in starts]
    elif batch_size and info.kind == "regression":
        # Targets with a few far rows (1% at 1000 among values ~1): most batches of 32 hold none,
        # and a fresh output near 0 read 0.57-1.25 over its first 3 steps against a Huber or MAE
        # chance level of 11-13 those rows make, told initial-loss-too-low (a leak) in 7 of 12
        # runs. The best constant and 0 (where a fresh output starts) are read per batch too.
        starts = [np.broadcast_to(np.asarray(prediction, np.float64), y.shape), np.zeros_like(y)]
    if starts is not None:
        first, worst = _constant_batch_levels(fn, y, w, starts, batch_size, by_weight=config.get("reduction") == "mean_with_sample_weight",
                                              in_order=in_order, last_batch=last_batch)
    floor = smoothed_floor(fn, info, y, weights, float(config.get("label_smoothing") or 0.0))
    if info.kind == "poisson":
        floor = _poisson_floor(fn, y, weights)
        if floor is None or floor < 0:
            # The rules read a loss by its ratio to the chance level, from a floor of 0; Poisson's
            # floor, a perfect prediction's mean(y - y * log(y)), is below 0 for counts from a mean of
            # about 2 on (Poisson counts of mean 10: floor -13.8, chance level -13.2), where no ratio says anything.
            return None
    constant = float(np.ravel(prediction)[0]) if info.kind == "regression" and np.size(prediction) == 1 else None
    return Baseline(value, detail, uninformed, first, floor if floor is not None and floor < value else 0.0, constant, worst)


def _poisson_floor(fn: Any, y: np.ndarray, weights: dict[str, np.ndarray]) -> float | None:
    """A Poisson loss's lowest value on targets ``y``: that of predicting every target itself
    (``y - y * log(y)`` a value, 0 where ``y`` is 0, not 0 as other losses' floor is)."""
    try:
        value = float(np.asarray(fn(y.astype(np.float32), y.astype(np.float32), **weights)))
    except Exception:
        return None
    return value if math.isfinite(value) else None


def zero_prediction_loss(loss: Any, y: Any, sample_weight: Any = None) -> float | None:
    """The loss of predicting 0 for every row of regression targets ``y``: where a freshly
    initialised linear output starts (its outputs near 0), reduced as :func:`chance_loss` reduces
    the loss (which gives it as a regression's :attr:`Baseline.uninformed`). ``None`` when it
    cannot be computed."""
    usable = _usable_rows(y, sample_weight)
    if usable is None:
        return None
    y, w = usable
    # One target per row is one column to the loss, as in chance_loss: a 1-D y was averaged over
    # all its rows before the weights applied (weights 10 and 1 read 204 where the rows make 324).
    y = y[:, None] if y.ndim == 1 else y
    return _loss_value(loss, y, np.zeros_like(y), w)


#: Rows a class, at least, whose own label prior is the chance level of a sparse or categorical
#: cross-entropy; fewer, and the prior fitted on the rows it scores reads far below what a
#: constant not fitted on them gets.
OWN_PRIOR_ROWS_PER_CLASS = 10


def _prior_labels(info: Any, y: np.ndarray, w: np.ndarray | None, prior_rows: Any, units: int | None) -> tuple[np.ndarray, bool]:
    """The labels whose prior is the best constant for ``y`` (see :func:`chance_loss`'s
    ``prior_rows``), and whether ``prior_rows`` were pooled in.

    The prior of the rows themselves is the lowest any constant gets on them, but on few rows a
    class it is fitted to their noise: 800 validation rows of 1000 classes read 6.23 where a
    prior from the 8,000 training rows gets 6.9, and a model at 6.38 (31x chance accuracy) was
    told loss-at-chance, "it memorises the training rows ... (e.g. random labels)". Pooled with
    the training labels the prior is the one the model could know; a class absent from the
    training rows still gets its validation share, not the clipped 1e-7 of a training prior alone.
    """
    if prior_rows is None or w is not None or info.kind not in ("sparse", "categorical"):
        return y, False
    classes = max(units or 0, int(y.max()) + 1 if info.kind == "sparse" else y.shape[-1])
    if len(y) >= OWN_PRIOR_ROWS_PER_CLASS * classes:
        return y, False
    rows = _usable_rows(prior_rows, None)
    if rows is None or rows[0].shape[1:] != y.shape[1:] or (info.kind == "categorical" and not np.isin(rows[0], (0.0, 1.0)).all()):
        return y, False
    return np.concatenate([rows[0], y]), True


def smoothed_floor(fn: Any, info: Any, y: np.ndarray, weights: dict[str, np.ndarray], label_smoothing: float) -> float | None:
    """The loss of predicting label-smoothed cross-entropy's smoothed labels exactly: its floor.

    Smoothing 0/1 labels to ``s / 2`` and ``1 - s / 2`` (``s / K`` per class) puts the loss's
    minimum at their entropy, not at 0: 0.50 for ``BinaryCrossentropy(label_smoothing=0.4)``,
    72% of the chance level ln 2, so a model at that floor after 13% of improvement was told
    its training was stuck (plateau). ``None`` without smoothing, for a focal loss (whose
    minimiser is not the smoothed label) or a loss that cannot take numpy arrays.
    """
    if label_smoothing <= 0 or info.kind not in ("binary", "categorical") or info.name in _BINARY_FOCAL | _CATEGORICAL_FOCAL:
        return None
    k = 2 if info.kind == "binary" else y.shape[-1]
    prediction = _as_prediction(y * (1 - label_smoothing) + label_smoothing / k, info)
    try:
        value = float(np.asarray(fn(y.astype(np.float32), prediction.astype(np.float32), **weights)))
    except Exception:  # a loss that cannot take numpy arrays: no floor
        return None
    return value if math.isfinite(value) and value > 0 else None


@dataclasses.dataclass(frozen=True)
class SoftTargetLevels:
    """Where cross-entropy on soft targets (probabilities, not 0/1 labels) starts and ends.

    Attributes:
        constant: The loss of predicting the targets' (weighted) mean for every row.
        floor: The loss of predicting every target exactly: their own entropy, the lowest the
            loss can get.
    """

    constant: float
    floor: float


def soft_target_levels(loss: Any, y: Any, sample_weight: Any = None) -> SoftTargetLevels | None:
    """The :class:`SoftTargetLevels` of binary or categorical cross-entropy on targets in [0, 1]
    that are not all 0 and 1 (an autoencoder's pixels, a teacher's probabilities); ``None`` for
    any other loss or targets, a smoothed, focal or summed loss, or one that cannot take numpy arrays.

    No chance level is given for such targets (see :func:`chance_loss`): the loss of an
    autoencoder that reconstructs well ends near the targets' entropy, far above 0, and was read
    as "at chance". These two numbers let the run's note say how far the loss got between them.
    """
    from trainkit.checks.compatibility import describe_loss
    from trainkit.resolve import get_loss

    rows = _usable_rows(y, sample_weight)
    info = describe_loss(loss)
    config = _loss_config(loss)
    if (rows is None or info.kind not in ("binary", "categorical") or info.name in _BINARY_FOCAL | _CATEGORICAL_FOCAL
            or config.get("label_smoothing") or config.get("reduction", "sum_over_batch_size") not in _ROW_MEAN_REDUCTIONS):
        return None
    y, w = rows
    if y.min() < 0 or y.max() > 1 or np.isin(y, (0.0, 1.0)).all():
        return None
    y = y[:, None] if y.ndim == 1 else y
    weights = {} if w is None else {"sample_weight": w.astype(np.float32).reshape(len(w), *[1] * (y.ndim - 1))}

    def score(p: np.ndarray) -> float:
        prediction = _as_prediction(np.broadcast_to(p, y.shape), info)
        return float(np.asarray(get_loss(loss)(y.astype(np.float32), prediction.astype(np.float32), **weights)))

    try:
        levels = SoftTargetLevels(score(_mean(y, w)), score(y))
    except Exception:  # a loss that cannot take numpy arrays: no levels
        return None
    if not (math.isfinite(levels.constant) and math.isfinite(levels.floor)) or levels.constant <= levels.floor:
        return None
    return levels


#: The first steps whose highest loss ``initial-loss-too-low`` judges (as
#: :attr:`~trainkit.diagnosis.rule_types.Thresholds.initial_steps`).
FIRST_STEPS = 3
#: Draws of :data:`FIRST_STEPS` batches that :func:`first_steps_level` takes the lowest of.
_FIRST_STEPS_DRAWS = 1000


def first_steps_level(fn: Any, y: np.ndarray, w: np.ndarray | None, predictions: list[np.ndarray], batch_size: int,
                      *, by_weight: bool = False, in_order: bool = False) -> float | None:
    """The lowest loss a constant prediction plausibly reads as the highest of the first steps.

    A batch's loss is its own rows' mean, not the training set's: on 5% positives a batch of 32
    holds none 19% of the time, and a model at the prior (its output bias at log(p / (1 - p)),
    as class-imbalance advises) read 0.098 over its first 3 steps against a chance level of 0.22,
    so it was told initial-loss-too-low (a leak). With class_weight {0: 1, 1: 19} such a batch's
    rows weigh 1 against a mean of 2: a fresh model's ln 2 read under half the chance level 1.39.
    The lowest over :data:`_FIRST_STEPS_DRAWS` seeded draws of :data:`FIRST_STEPS` batches (rows
    drawn with replacement), of the highest of their losses, for each of ``predictions``. With
    ``in_order`` (batches in the rows' own order: ``shuffle=False``, a dataset with no shuffle)
    the first steps are the first rows, read as one more draw: a series whose first 800 steps
    are 0 read a first loss of 0 there, told initial-loss-too-low (a leak) against its variance.

    Returns:
        That loss, or ``None`` when the loss gives no per-row values.
    """
    rows = _row_losses(fn, y, predictions)
    return None if rows is None else _first_steps_of(rows, w, batch_size, by_weight=by_weight, in_order=in_order)


def _first_steps_of(rows: list[np.ndarray], w: np.ndarray | None, batch_size: int, *, by_weight: bool, in_order: bool) -> float | None:
    """:func:`first_steps_level` from each prediction's per-row losses ``rows``."""
    size = len(rows[0])
    weights = np.ones(size) if w is None else w
    batch = min(batch_size, size)
    # Fewer draws of large batches (their losses vary little): at most ~2M rows drawn.
    draws = max(20, min(_FIRST_STEPS_DRAWS, 2_000_000 // (FIRST_STEPS * batch)))
    picks = np.random.default_rng(0).integers(0, size, size=(draws, FIRST_STEPS, batch))
    if in_order:
        picks = np.concatenate([(np.arange(FIRST_STEPS * batch) % size).reshape(1, FIRST_STEPS, batch), picks])
    totals = weights[picks].sum(axis=-1) if by_weight else batch
    level = min(float(np.min(np.max((weights * r)[picks].sum(axis=-1) / np.maximum(totals, 1e-12), axis=-1))) for r in rows)
    return level if math.isfinite(level) else None


def worst_batch_level(rows: list[np.ndarray], w: np.ndarray | None, batch_size: int, *, by_weight: bool = False,
                      last_batch: int = 0) -> float | None:
    """The highest loss one batch can read while the model predicts a constant, from each
    constant prediction's per-row losses ``rows`` (see :func:`_constant_batch_levels`).

    A batch's loss is its own rows' mean: targets with a few far rows (1% at 1000 among values
    ~1, under Huber) made a batch holding two or three of them read 63-94 against a first loss
    of 0.3-0.75, and a model that learned (validation loss falling) was told diverging-loss, "the
    model is being thrown away". The batch of the rows a constant fits worst (the ``batch_size``
    highest of their losses, weighted as training weighs them) bounds what the rows alone make;
    the highest over the predictions (under ``mean_with_sample_weight``, whose weights divide a
    batch's loss, the worst row's own). An epoch's short last batch of ``last_batch`` rows (the
    training rows modulo ``batch_size``) averages fewer of them, so reads higher: 993 rows in
    batches of 32 end each epoch on a batch of one, which read a far row's whole loss (1000 under
    Huber) against a level of 313 for 32 rows, and a model that learned was told diverging-loss.

    Returns:
        That loss, or ``None`` when it is not finite.
    """
    batch = min(batch_size, len(rows[0]))
    batch = min(batch, last_batch) if last_batch > 0 else batch  # the fewest rows a batch averages
    weights = np.ones(len(rows[0])) if w is None else w
    # Equal weights, none 0, divide a batch's loss as its rows do: a plain batch of rows.
    equal = bool((weights > 0).all()) and float(np.ptp(weights)) == 0.0
    if by_weight and not equal:
        # Under mean_with_sample_weight a batch's weights divide its loss: its weighted mean of
        # rows reaches its worst row's own loss where that row's weight outweighs the rest. The
        # mean of the batch_size worst rows read 32 where a far row of weight 100 among 31 of 1
        # made its batch 763 (Huber), and a model that learned was told diverging-loss.
        counted = [r[weights > 0] for r in rows]
        level = max((float(np.max(r)) for r in counted if r.size), default=math.nan)
    else:
        # The weights scale each row's share of a batch of rows (equal ones under
        # mean_with_sample_weight divide out again: the batch's worst rows' mean).
        level = max(float(np.mean(np.sort(r if by_weight else weights * r)[-batch:])) for r in rows)
    return level if math.isfinite(level) else None


def _constant_batch_levels(fn: Any, y: np.ndarray, w: np.ndarray | None, predictions: list[np.ndarray], batch_size: int,
                           *, by_weight: bool, in_order: bool, last_batch: int = 0) -> tuple[float | None, float | None]:
    """:func:`first_steps_level` and :func:`worst_batch_level`, from one computation of the rows' losses."""
    rows = _row_losses(fn, y, predictions)
    if rows is None:
        return None, None
    return (_first_steps_of(rows, w, batch_size, by_weight=by_weight, in_order=in_order),
            worst_batch_level(rows, w, batch_size, by_weight=by_weight, last_batch=last_batch))


def _row_losses(fn: Any, y: np.ndarray, predictions: list[np.ndarray]) -> list[np.ndarray] | None:
    """Each row's loss (its positions' mean) for each of ``predictions``, ``None`` when the loss
    gives no per-row values (no ``call``, or one that cannot take numpy arrays)."""
    call = getattr(fn, "call", None)
    if call is None:
        return None
    try:
        return [np.asarray(call(y.astype(np.float32), np.asarray(p, np.float32)), np.float64).reshape(len(y), -1).mean(axis=1)
                for p in predictions]
    except Exception:  # a loss that cannot take numpy arrays: no level
        return None


#: Input values a row the linear fit of :func:`linear_fit_level` reads, and rows it reads for each
#: of its coefficients (at least :data:`_LINEAR_MIN_ROWS`): ~20 ms for 256 values a row (see :func:`_least_squares`).
_LINEAR_FEATURES, _LINEAR_ROWS_PER_COEFFICIENT, _LINEAR_MIN_ROWS = 256, 20, 2000
#: Rows the linear fit needs for each of its coefficients.
_FIT_ROWS_PER_COEFFICIENT = 10


def linear_fit_level(loss: Any, x: Any, y: Any, sample_weight: Any = None, batch_size: int | None = None) -> float | None:
    """The lowest loss a fresh regression model plausibly reads on its first steps' batches when
    its inputs explain the targets: that of the least-squares linear fit of the targets on the
    inputs (read as :func:`first_steps_level` reads a constant's).

    A fresh model's output is a random function of its inputs, and where they hold the target's
    recent values (a forecast's window) it often correlates with the target: a GRU on windows of a
    noisy sine started at 0.43 of the target variance (4 in 20 seeds under half of it), and was told
    initial-loss-too-low, "a random model cannot beat chance ... a label leaking". No random
    function of the inputs plausibly gets below half of what their best linear fit gets. ``None``
    for inputs that are not one or several numeric arrays of at most :data:`_LINEAR_FEATURES`
    values a row, or rows that do not match ``y`` (see :func:`linear_fit`).
    """
    fit = linear_fit(x, y, sample_weight)
    return fit.first_steps_level(loss, batch_size) if fit is not None else None


@dataclasses.dataclass(frozen=True)
class LinearFit:
    """The least-squares linear fit of a one-output regression's targets on its inputs, made on a
    strided sample of the training rows (see :func:`linear_fit`).

    Attributes:
        coefficients: ``[features + 1, target columns]``: one per input value, then the intercept.
        features: The sampled training rows' inputs, flattened, with a column of ones.
        target: Their targets, as the loss reads them (``[rows, columns]``).
        weights: Their weights, ``None`` for unweighted rows.
    """

    coefficients: np.ndarray
    features: np.ndarray
    target: np.ndarray
    weights: np.ndarray | None

    def first_steps_level(self, loss: Any, batch_size: int | None) -> float | None:
        """What :func:`linear_fit_level` returns, from this fit."""
        from trainkit.resolve import get_loss

        if not batch_size:
            return None
        return first_steps_level(get_loss(loss), self.target, self.weights, [self.features @ self.coefficients], batch_size)

    def training_loss(self, loss: Any) -> float | None:
        """The run's loss of this fit on the training rows it was made on (their weights as
        training weighs them), ``None`` when the loss cannot be computed on numpy arrays."""
        return _loss_value(loss, self.target, self.features @ self.coefficients, self.weights)

    def loss_on(self, loss: Any, x: Any, y: Any, sample_weight: Any = None) -> float | None:
        """The run's loss of this fit on other rows (the validation rows: a strided sample of
        at most :data:`_LINEAR_EVAL_ROWS`), weighted by ``sample_weight`` as the run weighs
        them; ``None`` when those rows are not numeric inputs of the fit's width and finite
        targets, one per row."""
        sampled = _linear_inputs(x, y, _LINEAR_EVAL_ROWS)
        usable, w = _row_weights(sample_weight, len(np.asarray(y))) if sampled is not None else (False, None)
        if sampled is None or not usable:
            return None
        features, target, stride = sampled
        if features.shape[1] != self.coefficients.shape[0] or target.shape[1] != self.coefficients.shape[1]:
            return None
        return _loss_value(loss, target, features @ self.coefficients, w[::stride] if w is not None else None)


#: Validation rows :meth:`LinearFit.loss_on` reads at most (a strided sample of more).
_LINEAR_EVAL_ROWS = 5000


def _targets_are_inputs(x: Any, y: Any) -> bool:
    """Whether ``y`` holds the same values as the one input array ``x`` (``fit(x, x)``)."""
    if isinstance(x, tuple | list | Mapping) or np.shape(x) != np.shape(y):
        return False
    return bool(np.array_equal(np.asarray(x), np.asarray(y)))


def _shaped_like_inputs(x: Any, y: Any) -> int | None:
    """The values a row of targets ``y`` shaped like the one input array ``x`` hold (more than
    one: a denoising autoencoder's ``fit(x_noisy, x)``); ``None`` for targets of another shape."""
    if isinstance(x, tuple | list | Mapping) or np.shape(x) != np.shape(y) or len(np.shape(y)) < 2:
        return None
    width = math.prod(np.shape(y)[1:])
    return width if width > 1 else None


def linear_fit(x: Any, y: Any, sample_weight: Any = None, narrowest: int | None = None) -> LinearFit | None:
    """The least-squares linear fit of one-output regression targets ``y`` on inputs ``x``.

    Made on a strided sample of the rows, :data:`_LINEAR_ROWS_PER_COEFFICIENT` a coefficient and
    :data:`_LINEAR_MIN_ROWS` at least (~20 ms for 256 values a row, 5,000 rows), weighted by ``sample_weight``
    as training weighs the rows. ``None`` for inputs that are not one or several numeric arrays
    (a tuple, list or dict) of at most :data:`_LINEAR_FEATURES` values a row in all, rows that do
    not match ``y``, values that are not finite, or fewer than :data:`_FIT_ROWS_PER_COEFFICIENT`
    rows a coefficient (the fit then follows the rows' noise, and its loss reads too low), and
    targets that are the inputs themselves (an autoencoder's: the identity fits them exactly, which
    no model with a bottleneck can; a healthy one ended "8e+20x" a fit of 2e-22, worse-than-linear).
    So, for a model whose narrowest layer (``narrowest``: the fewest values a row a layer outputs)
    holds fewer values than its targets, are targets shaped like its inputs: a denoising
    autoencoder's clean rows, whose linear fit (a full-rank shrinkage of the noisy ones) its
    bottleneck cannot reach either (16 independent features, noise 0.3, a 4-unit code: validation
    0.753, about the 12/16 a 4-unit code can reach, read "9.1x" a fit of 0.082, "something in its
    training is off").
    """
    width = _input_width(x)
    if width is None or _targets_are_inputs(x, y):
        return None
    shaped = _shaped_like_inputs(x, y)
    if shaped is not None and narrowest is not None and narrowest < shaped:
        return None
    sampled = _linear_inputs(x, y, max(_LINEAR_MIN_ROWS, _LINEAR_ROWS_PER_COEFFICIENT * (width + 1)))
    usable, w = _row_weights(sample_weight, len(np.asarray(y)))
    if sampled is None or not usable:
        return None
    features, target, stride = sampled
    w = w[::stride] if w is not None else None
    if len(target) < _FIT_ROWS_PER_COEFFICIENT * features.shape[1]:
        return None
    root = np.sqrt(w)[:, None] if w is not None else 1.0
    return LinearFit(_least_squares(features * root, target * root), features, target, w)


def _least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The coefficients ``c`` minimising ``|a c - b|``, from the normal equations.

    ``np.linalg.lstsq``'s SVD took 280 ms for 5,000 rows of 257 columns here, the normal equations
    17 ms. Scaling each column to unit length keeps them well conditioned (raw inputs ~1e3 beside a
    column of ones), and a ridge of 1e-10 of their mean diagonal solves a constant or repeated
    column (which the scaled product makes singular) as the minimum-norm fit does, to the loss.
    """
    norms = np.sqrt(np.einsum("ij,ij->j", a, a))
    norms[norms == 0] = 1.0
    scaled = a / norms
    gram = scaled.T @ scaled
    gram[np.diag_indices_from(gram)] += 1e-10 * max(float(np.trace(gram)) / len(gram), 1e-300)
    return np.linalg.solve(gram, scaled.T @ b) / norms[:, None]


def _input_arrays(x: Any) -> list[Any]:
    """The arrays of a model's inputs: one, or a tuple, list or dict of them."""
    return list(x.values()) if isinstance(x, dict) else list(x) if isinstance(x, tuple | list) else [x]


def _input_width(x: Any) -> int | None:
    """The values a row of inputs ``x`` (one array, or a tuple, list or dict of them) hold in all,
    read from their shapes; ``None`` above :data:`_LINEAR_FEATURES` or without row shapes."""
    arrays = _input_arrays(x)
    shapes = [tuple(getattr(a, "shape", ())) for a in arrays]
    # Read from the shapes: the inputs may be large tensors (images), converted only when read.
    if not arrays or any(not shape or shape[0] is None for shape in shapes):
        return None
    width = sum(int(np.prod(shape[1:])) for shape in shapes)
    return width if width <= _LINEAR_FEATURES else None


def _linear_inputs(x: Any, y: Any, rows: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Inputs ``x`` as float64 features (their values flattened, then a column of ones) and
    targets ``y`` as ``[rows, columns]``, a strided sample of about ``rows`` of them, and the
    stride; ``None`` where :func:`linear_fit` says."""
    if _input_width(x) is None:
        return None
    arrays = _input_arrays(x)
    shapes = [tuple(a.shape) for a in arrays]
    try:
        y = np.asarray(y)
        stride = max(1, math.ceil(len(y) / rows))
        sampled = [np.asarray(a[::stride]) for a in arrays]
    except (TypeError, ValueError):
        return None
    if y.size == 0 or y.dtype.kind not in "biuf" or any(shape[0] != len(y) for shape in shapes):
        return None
    if any(a.dtype.kind not in "biuf" for a in sampled):
        return None
    features = np.concatenate([a.reshape(len(a), -1).astype(np.float64) for a in sampled] + [np.ones((len(sampled[0]), 1))], axis=1)
    # One target a row is one column to the loss, as the model's (rows, 1) output makes it.
    target = y[::stride].astype(np.float64).reshape(len(features), -1)
    if not (np.isfinite(features).all() and np.isfinite(target).all()):
        return None
    return features, target, stride


def _loss_value(loss: Any, target: np.ndarray, prediction: np.ndarray, w: np.ndarray | None) -> float | None:
    """The run's loss of ``prediction`` on ``target``, reduced as training reduces it (with ``w``
    as its rows' weights); ``None`` when it cannot be computed on numpy arrays or is not finite."""
    from trainkit.resolve import get_loss

    if _loss_config(loss).get("reduction", "sum_over_batch_size") not in _ROW_MEAN_REDUCTIONS:
        return None  # summed over a batch: its value depends on the batch's rows, as the chance level's does
    try:
        # A row's weight weighs each of its positions ((n, H, k) targets: (n, 1) weights), as in chance_loss.
        weights = {} if w is None else {"sample_weight": w.astype(np.float32).reshape(len(w), *[1] * max(0, target.ndim - 2))}
        value = float(np.asarray(get_loss(loss)(target.astype(np.float32), prediction.astype(np.float32), **weights)))
    except Exception:  # a loss that cannot take numpy arrays: no level
        return None
    return value if math.isfinite(value) else None


def _loss_config(loss: Any) -> dict[str, Any]:
    """The resolved loss's config (``{}`` when it has none or cannot be resolved)."""
    from trainkit.resolve import get_loss

    try:
        return dict(get_loss(loss).get_config() or {})
    except Exception:  # a custom loss without a config: none of its settings are known
        return {}


def _usable_rows(y: Any, sample_weight: Any) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``y`` as finite float64 rows (a strided sample of at most :data:`MAX_ROWS`, fewer of wide
    rows: :data:`MAX_VALUES` values) and their weights (``None``: unweighted), or ``None`` when
    either is unusable."""
    try:
        y = np.asarray(y)
    except (TypeError, ValueError):
        return None
    if y.size == 0 or not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        return None
    usable, w = _row_weights(sample_weight, len(y))
    if not usable:
        return None
    rows = max(100, min(MAX_ROWS, MAX_VALUES // max(1, int(np.prod(y.shape[1:], dtype=np.int64)))))
    if len(y) > rows:
        stride = math.ceil(len(y) / rows)
        y = y[::stride]
        w = w[::stride] if w is not None else None
    y = y.astype(np.float64)
    if not np.isfinite(y).all():
        return None
    return y, w


def _row_weights(sample_weight: Any, rows: int) -> tuple[bool, np.ndarray | None]:
    """Whether ``sample_weight`` is usable, and it as one float64 per row (``None``: unweighted).

    Weights that are all 1 count as none, so such a run's chance level and its text stay exactly
    those of an unweighted run.
    """
    if sample_weight is None:
        return True, None
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        return False, None
    if w.size != rows or w.ndim > 2 or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        return False, None
    w = w.reshape(rows)
    return True, (None if np.all(w == 1.0) else w)


def _pred_shape(kind: str | None, y: np.ndarray, prediction: np.ndarray) -> tuple[int, ...]:
    if kind == "sparse":
        # A class id per position ((n, H, W) or (n, H, W, 1) masks): a probability row per position,
        # as the model's (n, H, W, k) output gives the loss. (n, k) alone made the loss fail on
        # them, and a segmentation got no chance level.
        positions = y.shape[:-1] if y.ndim > 1 and y.shape[-1] == 1 else y.shape
        return (*positions, prediction.shape[-1])
    return y.shape if y.ndim > 1 else (len(y),)


def _cells(y: np.ndarray, w: np.ndarray | None, columns: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``y`` as rows of ``columns`` values, every position of a row one of them (a segmentation's
    (n, H, W, k) one-hot masks: n * H * W rows of k), with each row's weight repeated over its positions."""
    cells = y.reshape(-1, columns)
    return cells, (None if w is None else np.repeat(w, len(cells) // len(y)))


def _best_constant(task: str, kind: str | None, from_logits: bool, name: str, y: np.ndarray,
                   w: np.ndarray | None = None, *, ignore_class: int | None = None,
                   label_smoothing: float = 0.0) -> tuple[np.ndarray, str] | None:
    """The constant prediction with the lowest (weighted) loss for this loss family, and its description.

    With row weights ``w`` every minimiser is the weighted one: the weighted class frequencies
    for cross-entropy, the weighted mean for squared error, the weighted median for absolute error.
    The labels equal to ``ignore_class`` (sparse cross-entropy's) are left out of the prior, as
    the loss leaves them out of its average; with ``label_smoothing`` the loss reads smoothed
    labels, so the best constant is their prior (the label prior pulled towards uniform).
    """
    if kind == "sparse":
        ids = y.reshape(-1).astype(np.int64)
        id_w = np.repeat(w, len(ids) // len(w)) if w is not None else None
        if ignore_class is not None:
            # Counted, the ignored class took its share of the prior from the classes the loss
            # reads: 70% ignored 0s over 1-3 read 2.33 for a chance level of ln 3 = 1.10.
            kept = ids != ignore_class
            ids, id_w = ids[kept], (id_w[kept] if id_w is not None else None)
        if ids.size == 0 or ids.min() < 0 or (id_w is not None and id_w.sum() <= 0):
            return None
        counts = np.bincount(ids, weights=id_w)
        probs = np.clip(counts / counts.sum(), _EPS, 1.0)
        return (np.log(probs) if from_logits else probs), f"entropy of the label prior over {len(probs)} classes"
    if kind in ("categorical", "kl"):
        # KL(y || p) differs from cross-entropy by the labels' own entropy: the same minimiser.
        # Keras smooths one-hot labels to y * (1 - s) + s / K: the prior of those is the minimiser
        # (the raw prior read 0.49 for 0.43 on 97/1/1/1 labels with s = 0.1).
        # The prior over every position's one-hot row: the flattened (H * W * k) values of a
        # segmentation's masks, normalised as one prior, matched no prediction's shape (no level).
        k = y.shape[-1] if y.ndim > 1 else 1
        prior = _mean(*_cells(y, w, k)) * (1 - label_smoothing) + label_smoothing / k
        prior = np.clip(prior, _EPS, 1.0)
        prior = prior / prior.sum()
        return (np.log(prior) if from_logits else prior), f"entropy of the label prior over {len(prior)} classes"
    if kind == "binary":
        # Keras smooths binary labels to y * (1 - s) + s / 2 (99:1 labels with s = 0.1: the raw
        # prior read 0.28 for 0.22, and random labels settling at 0.24 were not at chance).
        # A binary task's labels per position (a sigmoid segmentation's (n, H, W, 1) masks) share
        # one prior, over every pixel; a multilabel task's columns each have theirs. Per position,
        # each pixel's own prior read a segmentation as 1024 labels.
        if task == "binary":
            shared = _mean(*_cells(y, w, 1))
        else:
            shared = _mean(*_cells(y, w, y.shape[-1])) if y.ndim > 2 else _mean(y, w)
        p = np.clip(shared * (1 - label_smoothing) + label_smoothing / 2, _EPS, 1 - _EPS)
        if np.size(p) > 1:  # multilabel: one prior a label column ("p(1)=0.48" read as one label's)
            return (np.log(p / (1 - p)) if from_logits else p), (f"mean entropy of the {np.size(p)} labels' priors, "
                                                                 f"p(1) from {_share(float(np.min(p)))} to {_share(float(np.max(p)))}")
        return (np.log(p / (1 - p)) if from_logits else p), f"entropy of the label prior, p(1)={_share(float(np.mean(p)))}"
    if kind == "regression":
        if name in ("MeanAbsoluteError", "mean_absolute_error"):
            return _median(y, w), "mean absolute deviation of the targets from their median"
        what = "variance of the targets" if task == "regression" else "variance of the labels (MSE of predicting their mean)"
        if name in ("MeanSquaredError", "mean_squared_error"):
            return _mean(y, w), what
        return _mean(y, w), "loss of predicting the target mean"
    if kind == "poisson":
        # mean(p - y * log(p)) is least where its derivative 1 - mean(y) / p is 0: at the
        # (weighted) target mean, per column.
        return _mean(y, w), "loss of predicting the target mean"
    return None


#: Reductions that average the loss over the batch's rows (weighted or not), as the chance level
#: computed over every training row does.
_ROW_MEAN_REDUCTIONS = frozenset({"sum_over_batch_size", "mean", "mean_with_sample_weight"})


def summed_over_batch(loss: Any, y: Any, output_shape: tuple[int | None, ...] | None = None) -> bool:
    """Whether ``loss`` sums over a batch's rows instead of averaging them: its value grows with
    the batch's rows, so epoch losses of splits read in other batch sizes are not comparable.

    ``reduction="sum"`` says so; a loss of the user's own (``K.sum(bce(y_true, y_pred))``) is
    scored on a few rows of ``y`` and on the same rows twice, at one constant prediction: a mean
    over rows (or a scalar mean) reads the same, a sum twice as much. A loss that cannot be so
    scored is taken for a mean, as before.

    Args:
        loss: The run's loss (a Keras loss object, or a name Keras resolves).
        y: The training targets (numpy-like), in the layout the loss receives.
        output_shape: The output's shape (``(None, k)``), for the constant prediction's; ``y``'s
            (one column for 1-D ``y``) when unknown.
    """
    from trainkit.checks.compatibility import describe_loss
    from trainkit.resolve import get_loss

    if _loss_config(loss).get("reduction", "sum_over_batch_size") == "sum":
        return True
    if describe_loss(loss).kind is not None:
        return False  # Keras's own, averaged over the rows as its reduction says
    try:
        # The 8 rows alone made float32: the whole of y converted first (uint8 masks for a dice loss)
        # held 4x its size at once, 262 MB for 66 MB of masks, to read 8 rows of it.
        rows = np.asarray(np.asarray(y)[:8], dtype=np.float32)
        if not len(rows) or not np.isfinite(rows).all():
            return False
        shape = tuple(output_shape[1:]) if output_shape is not None and None not in output_shape[1:] else rows.shape[1:] or (1,)
        pred = np.full((len(rows), *shape), 0.5, dtype=np.float32)
        fn = get_loss(loss)
        once = float(np.asarray(fn(rows, pred)))
        twice = float(np.asarray(fn(np.concatenate([rows, rows]), np.concatenate([pred, pred]))))
    except Exception:  # a loss that cannot take numpy arrays: nothing known
        return False
    return math.isfinite(once) and math.isfinite(twice) and abs(once) > 1e-12 and abs(twice - 2 * once) <= 1e-3 * abs(once)


#: Regression losses whose best constant :func:`_best_constant` knows exactly (the mean, the median).
_CLOSED_FORM = frozenset({"MeanSquaredError", "mean_squared_error", "MeanAbsoluteError", "mean_absolute_error"})
#: Names describe_loss gives binary focal cross-entropy, whose best constant is searched for.
_BINARY_FOCAL = frozenset({"BinaryFocalCrossentropy", "binary_focal_crossentropy"})
#: Names describe_loss gives categorical focal cross-entropy, whose best constant is solved for.
_CATEGORICAL_FOCAL = frozenset({"CategoricalFocalCrossentropy", "categorical_focal_crossentropy"})
#: Golden-section steps: each keeps 0.618 of the interval, so 60 leave 3e-13 of the targets' range.
_SEARCH_STEPS = 60
#: Rows the search reads at most (a strided sample of larger targets).
_SEARCH_ROWS = 20_000


def _searched_constant(fn: Any, y: np.ndarray, w: np.ndarray | None, *,
                       bounds: tuple[float, float] | None = None,
                       link: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray | None:
    """The constant per target column with the lowest (weighted) loss, by golden-section search
    between the column's smallest and largest target (or ``bounds``); ``None`` when ``fn`` gives no
    per-element loss. ``link`` maps the searched value to the prediction the loss reads (a
    probability to a logit); the searched value is returned.

    Huber, log-cosh, MAPE and MSLE are not minimised by the target mean: on log-normal targets
    the mean's MAPE was 922 where the best constant's is 85, so a fresh model was told
    initial-loss-too-low (a leak), and a Huber run stuck at the best constant ended at 78% of
    "chance" with no loss-at-chance. Each is unimodal in the constant (MSLE is flat below 0), and
    the columns are independent, so every column is searched at once.
    """
    call = getattr(fn, "call", None)
    if call is None:
        return None
    # The constant is found on at most _SEARCH_ROWS evenly strided rows (60 loss evaluations over
    # 200k x 10 targets took 0.8 s); the chance level itself is then the loss over every row.
    step = max(1, math.ceil(len(y) / _SEARCH_ROWS))
    flat = y.reshape(len(y), -1)[::step]
    cells = flat[..., None].astype(np.float32)  # each target its own one-element row: unreduced losses per cell
    row_w = np.ones(len(flat)) if w is None else np.asarray(w)[::step]

    def cost(c: np.ndarray) -> np.ndarray:
        pred = link(c) if link is not None else c
        values = np.asarray(call(cells, np.broadcast_to(pred[None, :, None], cells.shape).astype(np.float32)), dtype=np.float64)
        return (row_w[:, None] * values.reshape(flat.shape)).sum(axis=0)

    if bounds is None:
        lo, hi = flat.min(axis=0), flat.max(axis=0)
    else:
        lo, hi = np.full(flat.shape[1], bounds[0]), np.full(flat.shape[1], bounds[1])
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = cost(a), cost(b)
    for _ in range(_SEARCH_STEPS):
        # The minimum lies in [lo, b] for these columns, in [a, hi] for the others; a tie moves
        # right, off MSLE's flat stretch below 0 (it reads every value below 0 as 0).
        left = fa < fb
        hi, lo = np.where(left, b, hi), np.where(left, lo, a)
        a, b = np.where(left, hi - ratio * (hi - lo), b), np.where(left, a, lo + ratio * (hi - lo))
        moved = np.where(left, a, b)
        fm = cost(moved)
        fa, fb = np.where(left, fm, fb), np.where(left, fa, fm)
    if not (np.isfinite(fa).all() and np.isfinite(fb).all()):
        return None
    return ((a + b) / 2).reshape(y.shape[1:])


def _focal_simplex_minimiser(prior: np.ndarray, gamma: float, steps: int = 60) -> np.ndarray:
    """The class probabilities ``p`` minimising categorical focal cross-entropy's mean over labels
    of class frequencies ``prior``: ``sum_k prior_k (1 - p_k)^gamma (-log p_k)`` over the simplex.

    Each term is convex and decreasing in ``p_k``, so at the minimum every class's marginal gain
    ``prior_k h(p_k)`` (``h = -d/dp``, decreasing) is one value ``mu``. Bisection on ``mu`` until
    the ``p_k`` it gives (each by bisection) sum to 1; gamma 0 gives the prior itself.
    """
    prior = np.asarray(prior, dtype=np.float64)

    def gain(p: np.ndarray) -> np.ndarray:
        return (1 - p) ** gamma / p + gamma * (1 - p) ** (gamma - 1) * -np.log(p)

    def probabilities(mu: float) -> np.ndarray:
        lo, hi = np.full_like(prior, _EPS), np.full_like(prior, 1 - _EPS)
        for _ in range(steps):  # the p_k where prior_k * gain(p_k) = mu
            mid = (lo + hi) / 2
            above = prior * gain(mid) > mu
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return (lo + hi) / 2

    log_lo = math.log(max(float(np.min(prior * gain(np.full_like(prior, 1 - _EPS)))), 1e-300))
    log_hi = math.log(float(np.max(prior * gain(np.full_like(prior, _EPS)))))
    for _ in range(steps):
        log_mu = (log_lo + log_hi) / 2
        if probabilities(math.exp(log_mu)).sum() > 1:
            log_lo = log_mu
        else:
            log_hi = log_mu
    best = probabilities(math.exp((log_lo + log_hi) / 2))
    return best / best.sum()


def _share(p: float) -> str:
    """A class share for messages, with two significant digits of the rarer side: 0.4% positives
    read "p(1)=0.00" (and 99.6% "1.00"), as if the labels held one class; now 0.0040 (0.9960)."""
    rare = min(p, 1 - p)
    decimals = 2 if rare >= 0.01 or rare <= 0 else min(8, 1 - math.floor(math.log10(rare)))
    return f"{p:.{decimals}f}"


def _as_prediction(p: np.ndarray, info: Any) -> np.ndarray:
    """Probabilities ``p``, clipped into (0, 1), as a binary or categorical cross-entropy ``info``
    reads its predictions: logits for ``from_logits`` (log-odds; log-probabilities, which softmax
    takes back to ``p``)."""
    p = np.clip(p, _EPS, 1 - _EPS)
    if not info.from_logits:
        return p
    return _logit(p) if info.kind == "binary" else np.log(p)


def _logit(p: np.ndarray) -> np.ndarray:
    """The logit of probabilities ``p``, the prediction a ``from_logits=True`` loss reads."""
    return np.log(p / (1 - p))


def _mean(y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """The (row-weighted) mean over the rows, per column."""
    return y.mean(axis=0) if w is None else np.average(y, axis=0, weights=w)


def _median(y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """The (row-weighted) median over the rows, per column: the minimiser of the mean absolute error."""
    if w is None:
        return np.median(y, axis=0)
    flat = y.reshape(len(y), -1)
    columns = []
    for j in range(flat.shape[1]):
        order = np.argsort(flat[:, j], kind="stable")
        cumulative = np.cumsum(w[order])
        columns.append(flat[order[np.searchsorted(cumulative, cumulative[-1] / 2)], j])
    return np.asarray(columns).reshape(y.shape[1:])
