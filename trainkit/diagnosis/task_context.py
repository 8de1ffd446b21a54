"""What a run's context tells the rules about its task: the chance-level loss they compare losses
with, and whether the inputs and targets are on a unit scale already (so that no advice tells the user
to standardise what is standardised).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from trainkit.diagnosis.baseline import TargetScale
from trainkit.diagnosis.number_text import format_number

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser


def _comparable(c: float | None) -> float | None:
    """``c`` when it is a chance level losses can be compared with: known, finite and not ~0."""
    return c if c is not None and math.isfinite(c) and c > 1e-8 else None


def chance_level(view: Diagnoser) -> float | None:
    """The loss of predicting the label prior / target mean; ``None`` when unknown or ~0 (nothing to compare with)."""
    return _comparable(view.context.chance_loss)


def constant_prediction(view: Diagnoser) -> str:
    """What a model that ignores its inputs predicts, for messages: the label prior of a classifier,
    the target mean of a regression (both for a model with outputs of each kind, or no task), or
    the best constant its loss has where that is not the mean (MAE's median, MAPE's, MSLE's).

    "The label prior / the target mean" told a binary classifier about a target mean, and a
    regression about a label prior.
    """
    task = view.context.task
    if task == "regression":
        best = _best_constant(view)
        return "the target mean" if best is None else f"the loss's best constant {format_number(best)}"
    if task in ("binary", "multiclass", "multilabel"):
        return "the label prior"
    return "the label prior / the target mean"


def _best_constant(view: Diagnoser) -> float | None:
    """A one-column regression's best constant prediction where its loss has one other than the
    target mean (more than 1% of the targets' std away from it), else ``None``.

    On log-normal prices (mean 1.4e4, median 7.3e3) predicting the mean scores MAPE 287, far worse
    than the 100 of a fresh output near 0 and 4x the best constant's 72: a MAPE run stuck at 95 was
    told "predicting the target mean for every row would do better" and to start its bias there.
    """
    best, mean, std = view.context.target_constant, view.context.target_mean, view.context.target_std
    if best is None or not math.isfinite(best) or mean is None or std is None or (view.context.target_columns or 1) > 1:
        return None
    return best if abs(best - mean) > 0.01 * std else None


def mean_bias_text(view: Diagnoser) -> str:
    """``bias_initializer: {name: constant, value: 1035}``: the output bias at the target mean (at
    the loss's best constant where that is another: see :func:`constant_prediction`), the
    run's own when known (a recipe refuses the placeholder ``MEAN`` the advice wrote); for a Python
    fit ``bias_initializer=keras.initializers.Constant(1035)``, which its model takes.

    With several target columns the mean known is one column's (the one farthest from unit
    scale): a constant at it would start every other column's unit that far off, so each column's
    own mean is named instead.
    """
    axes = view.context.target_axes
    if axes is not None:
        # An output per position (a conv's image) has one bias a channel: y_train.mean(0), a mean
        # per pixel, fits no bias of it.
        return (f"the output layer's bias at the targets' mean, one a channel: model.layers[-1].bias.assign(y_train.mean("
                f"{f'axis={tuple(axes)}' if axes else ''}){'' if axes else '[None]'}) after building the model")
    if (view.context.target_columns or 1) > 1:
        return "each output unit's bias at its column's mean: model.layers[-1].bias.assign(y_train.mean(0)) after building the model"
    best = _best_constant(view)
    mean = view.context.target_mean if best is None else best
    known = mean is not None and math.isfinite(mean)
    if not view.context.recipe:  # a Python fit's model takes the Keras initializer itself
        return f"bias_initializer=keras.initializers.Constant({format_number(mean) if known else 'y_train.mean()'}) on the output layer"
    value = format_number(mean) if known else "MEAN"
    return f"bias_initializer: {{name: constant, value: {value}}}"


def val_chance_level(view: Diagnoser) -> float | None:
    """The chance level of the validation loss (no prediction that ignores the inputs gets
    lower): its own where known, else the training one."""
    own = _comparable(view.context.val_chance_loss)
    return own if own is not None else chance_level(view)


def val_chance_text(view: Diagnoser) -> str:
    """``the validation chance level 0.6931 (...)`` (or :func:`chance_text` when it is not known)."""
    if _comparable(view.context.val_chance_loss) is None:
        return chance_text(view)
    detail = f" ({view.context.val_chance_detail})" if view.context.val_chance_detail else ""
    return f"the validation chance level {format_number(view.context.val_chance_loss)}{detail}"


def chance_text(view: Diagnoser) -> str:
    """``the chance level 0.6931 (...)`` for messages, with how it was computed when known."""
    detail = f" ({view.context.chance_detail})" if view.context.chance_detail else ""
    return f"the chance level {format_number(view.context.chance_loss)}{detail}"


def targets_scaled(view: Diagnoser) -> bool:
    """Whether the run is a regression whose targets are known to be on a unit scale already."""
    mean, std = view.context.target_mean, view.context.target_std
    return mean is not None and std is not None and TargetScale(mean, std, 0).scaled


def targets_tiny(view: Diagnoser) -> bool:
    """Whether the run is a regression whose targets are known to spread far below unit scale."""
    mean, std = view.context.target_mean, view.context.target_std
    return mean is not None and std is not None and TargetScale(mean, std, 0).tiny


def targets_text(view: Diagnoser) -> str:
    """``mean M, std S`` of a regression's targets, for messages."""
    return f"mean {format_number(view.context.target_mean)}, std {format_number(view.context.target_std)}"


def inputs_scaled(view: Diagnoser) -> bool:
    """Whether the run's data checks ran and found the inputs scaled (no ``unscaled-inputs``)."""
    codes = view.context.check_codes
    # data-not-inspectable: the checks ran but could not read the inputs (an iterator).
    return codes is not None and "unscaled-inputs" not in codes and "data-not-inspectable" not in codes


def far_values_only(view: Diagnoser, what: str) -> bool:
    """Whether the data checks found ``what`` (``"inputs"`` or ``"targets"``) on a normal scale but
    for a few far rows (see :attr:`~trainkit.diagnosis.engine.Context.far_value_checks`): those
    rows are to be checked, and standardising them would squash every other row."""
    return f"unscaled-{what}" in view.context.far_value_checks


#: What to do about targets unscaled only by a few far rows, as a sentence of advice (what
#: ``unscaled-targets`` says of them).
FAR_TARGETS = ("Check the few far targets unscaled-targets names (a unit error, or a sentinel to drop or weight 0) "
               "rather than standardising the targets, which would squash every other row; if they are real, keep the "
               "targets as they are under a loss those rows do not rule (loss='huber' or 'mae')")
#: The same for inputs unscaled only by a few far values (what ``unscaled-inputs`` says of them).
FAR_INPUTS = ("check the few far input values unscaled-inputs names (clip them, or scale that feature by its median and "
              "interquartile range, not by the std they make)")


#: How a regression's targets are brought to a unit scale, as a sentence of advice.
STANDARDISE_TARGETS = ("Standardise the targets with training-split statistics (preprocessing."
                       "standardize_targets: true, or y = (y - y_train.mean()) / y_train.std())")
#: The same for a Python fit, which has no recipe key to set.
_STANDARDISE_TARGETS_PYTHON = "Standardise the targets with training-split statistics (y = (y - y_train.mean()) / y_train.std())"
#: The same for a loss of ratios or logarithms of the targets (MAPE, MSLE; see Context.relative_loss).
SCALE_RELATIVE_TARGETS = ("Scale the targets without centring them (the loss reads ratios or logarithms of them, which "
                          "standardised targets, centred on 0, break): y_scale = np.abs(y_train).mean(0); fit on "
                          "y / y_scale and predict with model(x) * y_scale")


def non_negative_output(view: Diagnoser) -> str | None:
    """The activation of a regression's output that never goes below 0 and has no upper bound
    (relu, softplus, exponential), or ``None``: its targets are scaled, not centred, since
    standardised targets are negative for half the rows, which such an output cannot produce
    (``labels-out-of-range`` refuses them)."""
    bounded = view.context.bounded_output
    if view.context.task != "regression" or not bounded or bounded.get("low") != 0 or bounded.get("high") is not None:
        return None
    return str(bounded.get("activation"))


def targets_scaled_not_centred(view: Diagnoser) -> bool:
    """Whether this run's regression targets are brought to a unit scale without centring them:
    for a loss of ratios or logarithms (MAPE, MSLE) or a non-negative output (relu, softplus)."""
    return view.context.relative_loss or non_negative_output(view) is not None


def targets_scaling_advice(view: Diagnoser) -> str:
    """How to bring this run's regression targets to a unit scale, as the loss allows (a sentence
    without its full stop): MSLE and MAPE runs were told to standardise, which breaks both, and
    so were relu outputs, whose standardised targets the data checks then refuse.

    A recipe scales its targets with ``data.target_scale``: MSLE targets ~5e4 were told only
    ``y_scale = ...; fit on y / y_scale``, code on a y a recipe's user never holds. A Python fit's
    gets the Python alone: it holds no recipe key (see :mod:`trainkit.diagnosis.setting_text`)."""
    if far_values_only(view, "targets"):
        # Targets ~1 but for 1% at 1000 (std ~100): standardised, the other rows lay in a band
        # ~0.02 wide and their validation R2 under Huber fell from 0.90-0.97 to below 0.
        return FAR_TARGETS
    act = non_negative_output(view)
    if not view.context.relative_loss and act is not None:
        # Prices ~1.4e4 through a relu output stayed at 1.5x their variance and were told to
        # standardise them: the next run's data checks refuse those targets (labels-out-of-range).
        std = view.context.target_std
        advice = (f"Scale the targets without centring them, keeping them >= 0 for the {act} output: y_scale = "
                  "y_train.std(); fit on y / y_scale and predict with model(x) * y_scale (or make the output linear and "
                  "standardise them)")
        if view.context.recipe and std is not None and math.isfinite(std) and std > 0 and (view.context.target_columns or 1) == 1:
            advice += f" (in a recipe, multiply data.target_scale by {1 / std:.3g}; see unscaled-targets)"
        return advice
    if not view.context.relative_loss:
        return STANDARDISE_TARGETS if view.context.recipe else _STANDARDISE_TARGETS_PYTHON
    mean = view.context.target_mean
    if not view.context.recipe or mean is None or not math.isfinite(mean) or mean == 0 or (view.context.target_columns or 1) > 1:
        return SCALE_RELATIVE_TARGETS
    return f"{SCALE_RELATIVE_TARGETS} (in a recipe, multiply data.target_scale by {1 / abs(mean):.3g}; see unscaled-targets)"


def standardise_advice(view: Diagnoser) -> str | None:
    """What is left to bring to a unit scale, as advice (``"standardise the inputs and the
    targets"``), ``None`` when nothing is.

    A classifier's targets are labels, and data that is scaled already (standardised regression
    targets, a recipe's ``standardize_inputs: true``) was told to be standardised again. The
    targets of a loss of ratios or logarithms (MAPE, MSLE) are scaled, not centred.
    """
    inputs = not inputs_scaled(view) and not far_values_only(view, "inputs")
    targets = view.context.task == "regression" and not targets_scaled(view) and not far_values_only(view, "targets")
    # Data unscaled only by a few far rows is told to check those rows, as its data check says:
    # "standardise the targets" squashed the other rows into a band ~0.02 wide.
    far = ([FAR_INPUTS] if far_values_only(view, "inputs") else []) + (
        ["check the few far targets unscaled-targets names (rather than standardising the targets, which would squash every other row)"]
        if view.context.task == "regression" and far_values_only(view, "targets") else [])
    if targets and view.context.relative_loss:
        scale = "scale the targets without centring them (the loss reads ratios or logarithms of them)"
    elif targets and (act := non_negative_output(view)) is not None:
        scale = f"scale the targets without centring them (the {act} output cannot produce values below 0)"
    else:
        scale = "standardise the targets" if targets else None
    if inputs:
        scale = "standardise the inputs" + (" and the targets" if scale == "standardise the targets" else f" and {scale}" if scale else "")
    parts = ([scale] if scale else []) + far
    return " and ".join(parts) if parts else None


def standardise_inputs_advice(view: Diagnoser, text: str = "standardise the inputs, ") -> str:
    """``text`` unless the data checks found the inputs scaled already, or unscaled only by a few
    far values, which standardising would not fix (then nothing)."""
    return "" if inputs_scaled(view) or far_values_only(view, "inputs") else text
