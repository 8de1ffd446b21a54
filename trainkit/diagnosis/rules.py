"""Diagnosis rules: one small named function per finding code, and the registry :data:`RULES`.

Each rule reads a :class:`~trainkit.diagnosis.engine.Diagnoser` (the bounded summaries of a run) and
returns :class:`Issue` records, or nothing. The thresholds live in :class:`Thresholds`; their
defaults start from the published detectors (``shared/DIAGNOSIS.md``: TheDeepChecker, AUTOTRAINER,
DeepDiagnosis, UMLAUT, SageMaker Debugger) and were calibrated on trainkit's scenario recipes and
on clean runs (``tests/test_scenarios.py``); the comment next to each says where it comes from.

Rules never fire on curve shapes before a run has had time to show them: loss-curve verdicts wait
for :attr:`Thresholds.curve_fraction` of the planned epochs (AUTOTRAINER's false alarms in the first
epochs of healthy models), and activation verdicts need a condition that lasts several epochs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from trainkit.diagnosis.finding_groups import CANNOT_LEARN, OVERSHOOTING, _found, _lr_lowering_found
from trainkit.diagnosis.initial_loss_rules import initial_loss_too_high, initial_loss_too_low
from trainkit.diagnosis.loss_measures import (
    _curves_ready,
    _first_losses,
    _steadily_falling,
    _still_falling,
    _tail_drop,
)
from trainkit.diagnosis.lr_advice import _lowered_lr, _optimizer_name, _raised_lr
from trainkit.diagnosis.lr_rules import lr_too_high, lr_too_low
from trainkit.diagnosis.number_text import _fmt, _times
from trainkit.diagnosis.rule_types import Issue, Rule, Thresholds
from trainkit.diagnosis.stat_reads import (
    _epoch_of,
    _finite_epochs,
    _hidden_activation_stats,
    _kernels,
    _layer_of,
    _sustained_since,
)
from trainkit.diagnosis.task_context import (
    _chance,
    _chance_text,
    _standardise,
    _standardise_inputs,
    _targets_scaled,
    _targets_text,
)
from trainkit.stat_names import (
    GLOBAL_GRAD_NORM,
    GRAD_NONFINITE,
    GRAD_NORM,
    MEAN,
    NONFINITE,
    STD,
    WEIGHT_NORM,
    activation_stat_of,
    is_output_name,
    variable_of,
    weight_norm_name,
)

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser

# Issue, Rule and Thresholds (from rule_types) stay importable from here, where they were defined
# before the rules had modules of their own: they are what a custom rule list, ``rules=[*RULES,
# Rule(...)]``, and its thresholds are written with.
__all__ = ["DIAGNOSIS_CODES", "RULES", "Issue", "Rule", "Thresholds"]


# ---------------------------------------------------------------------------------------------
# Loss level and curve.

def loss_at_chance(view: Diagnoser) -> Issue | None:
    """The training loss (or the validation loss) never leaves the chance level."""
    chance = _chance(view)
    if chance is None or not view.finished or not _curves_ready(view):
        return None
    train = view.epoch_losses(data_only=True)
    train = train[np.isfinite(train)]
    if train.size == 0:
        return None
    tail = train[-max(1, len(train) // 3):]
    final = float(np.min(tail))
    val = view.val_losses(data_only=True)
    val = val[np.isfinite(val)]
    best_val = float(np.min(val)) if val.size else None
    evidence = {"final_train_loss": float(train[-1]), "chance_loss": chance, "best_val_loss": best_val}
    advice = ("Check that the labels can be predicted from the inputs: that x and y rows are aligned "
              "(shuffled together), that the labels are not random or shuffled, and that the model can "
              "learn at all — train on 20 examples until the loss is near 0 (a model that cannot overfit "
              "a tiny set has a bug: a frozen or dead layer, a too small learning rate, a wrong loss).")
    # A validation loss clearly below chance means something generalisable was learned, however
    # slowly: that is not "at chance" (see lr-too-low / underfitting).
    val_learned = best_val is not None and best_val < view.t.at_chance_train * chance
    too_small_steps = lr_too_low(view) is not None
    if final > view.t.at_chance_ceiling * chance:
        # Worse than a constant prediction: not "at chance" (diverging, lr-too-high cover it),
        # unless nothing else explains it.
        return _worse_than_chance(view, train, final, chance, best_val, evidence, too_small_steps)
    # A loss still falling fast towards chance from above (0.918, 0.795, 0.710 with chance 0.693)
    # has not "stayed" there: it has not shown where it settles (underfitting's measure); nor has
    # one falling steadily but slowly, still above it, with steps too small (lr-too-low's case:
    # 1.80 -> 1.53, chance 1.39, was told "the labels are unpredictable").
    slow = final > (1 + view.t.at_chance_band) * chance and _steadily_falling(train) and too_small_steps
    if final >= view.t.at_chance_train * chance and not val_learned and not _still_falling(view, train) and not slow:
        stayed = (f"The training loss stayed at {_chance_text(view)}: its best over the last third of the "
                  f"epochs was {_fmt(final)} ({final / chance:.0%} of chance). The model predicts no better "
                  f"than the label prior / the target mean")
        blockers = _found(view, CANNOT_LEARN)
        if blockers:
            # Next to lr-too-high or dead-relu, "the labels are unpredictable" sent users to their
            # labels first, when the run's own findings say why the model could not learn.
            return Issue(
                f"{stayed}, and this run's other findings ({', '.join(blockers)}) are reasons it cannot learn.",
                f"Fix what {', '.join(blockers)} say{'s' if len(blockers) == 1 else ''} first. If the loss still stays "
                "at chance after that, check that the labels can be predicted from the inputs (x and y rows aligned, "
                "labels not shuffled or random).",
                {**evidence, "explained_by": blockers}, epoch=view.epochs[-1].epoch)
        return Issue(f"{stayed}: the labels are unpredictable from the inputs, or the model cannot learn.", advice, evidence,
                     epoch=view.epochs[-1].epoch)
    if best_val is not None and best_val >= view.t.at_chance_validation * chance and not _still_falling(view, val) and not slow:
        return Issue(
            f"The validation loss never got clearly below {_chance_text(view)}: its best was {_fmt(best_val)} "
            f"({best_val / chance:.0%} of chance) while the training loss fell to {_fmt(float(train[-1]))}. "
            f"Nothing the model learned carries over to new rows: it memorises the training rows, "
            f"which happens when the labels are unpredictable from the inputs (e.g. random labels).",
            advice, evidence, epoch=view.epochs[-1].epoch)
    return None


def _worse_than_chance(view: Diagnoser, train: np.ndarray, final: float, chance: float, best_val: float | None,
                       evidence: dict[str, Any], too_small_steps: bool) -> Issue | None:
    """A regression that ended far worse than predicting the target mean, with nothing else explaining it.

    Raw diabetes targets (mean 152, std 77) ended 40 epochs at 4.5x the target variance with no
    verdict: loss-at-chance stepped aside for diverging-loss / lr-too-high, which never fired.
    Regression only: a classifier's cross-entropy above chance with good accuracy is overconfidence,
    and the learning-rate findings cover the runs measured so far.
    """
    if view.context.task != "regression" or _found(view, OVERSHOOTING) or _still_falling(view, train):
        return None  # still falling fast: underfitting's verdict
    if _steadily_falling(train) and too_small_steps:
        # Falling epoch after epoch from a start above the mean, on steps too small to get
        # there: lr-too-low's case. RMSprop at 1e-6 (3.22 -> 2.62 over 30 epochs, targets
        # standardised) was also told "stuck away from the targets", with a 10x lower rate to try.
        return None
    if best_val is not None and best_val < view.t.at_chance_train * chance:
        return None  # the validation loss beat the mean: something was learned
    ended = (f"The training loss ended at {_fmt(final)} (best over the last third of the epochs), "
             f"{_times(final / chance)} {_chance_text(view)}: predicting the target mean for every row would do "
             f"better, and the loss is no longer falling fast.")
    evidence = {**evidence, "ratio": final / chance}
    if _targets_scaled(view):
        return Issue(
            f"{ended} The targets are on a unit scale ({_targets_text(view)}), so the predictions are stuck away "
            f"from them: an output that cannot reach them, units that stopped passing a signal, or steps that "
            f"do not settle.",
            f"Make sure the output layer can reach the targets (activation: linear for signed targets), read the "
            f"dead-relu and saturation statistics of the hidden layers, {_standardise_inputs(view)}and try the learning "
            f"rate lower ({_lowered_lr(view)}) and higher ({_raised_lr(view)}).",
            evidence, epoch=view.epochs[-1].epoch)
    return Issue(
        f"{ended} The model never reached the scale of the targets: typical of unstandardised targets (a linear "
        f"output starting near 0 for targets far from 0) or updates too small to get there.",
        "Standardise the targets with training-split statistics (preprocessing: {standardize_targets: "
        "true}, or y = (y - y_train.mean()) / y_train.std()) and the inputs, or initialise the output "
        "bias at the target mean (bias_initializer: {name: constant, value: MEAN}); then check the "
        "learning rate and train longer if the loss still falls.",
        evidence, epoch=view.epochs[-1].epoch)


def loss_collapsed(view: Diagnoser) -> Issue | None:
    """The loss is near zero right after the first epoch."""
    if not view.epochs or view.epochs_run > view.t.collapse_epochs:
        return None
    chance = _chance(view)
    loss = float(view.epoch_losses(data_only=True)[-1])
    limit = view.t.collapse_fraction * chance if chance is not None else view.t.collapse_absolute
    if not math.isfinite(loss) or loss >= limit:
        return None
    leaked = [code for code in ("label-leakage", "train-validation-overlap") if code in (view.context.check_codes or ())]
    if leaked:  # the checks already found why: "or the task is easy, which is fine" would hedge against them
        return Issue(
            f"The training loss is {_fmt(loss)} after epoch {view.epochs[-1].epoch + 1}, under "
            f"{view.t.collapse_fraction:.0%} of {_chance_text(view)}: the data checks found why before the first "
            f"step ({', '.join(leaked)}): the inputs give the answer away, so the model learned nothing it can use "
            f"on new rows.",
            "Do what those findings say (drop the leaked column; keep copies of training rows out of the "
            "validation rows), then train again and judge the model by its validation loss.",
            {"epoch_loss": loss, "chance_loss": chance, "data_checks": leaked}, epoch=view.epochs[-1].epoch)
    if view.context.check_codes is not None and view.context.has_validation:
        # The checks looked for a copied or derived target column and for validation rows copied
        # from training, and found neither: what is left is mostly an easy task (separable blobs
        # trained with BatchNorm reached 1% of chance), so this is a note, not an alarm. Without
        # validation rows the overlap check had nothing to compare, and the message would claim
        # a check that never ran.
        return Issue(
            f"The training loss is {_fmt(loss)} after epoch {view.epochs[-1].epoch + 1}, under "
            f"{view.t.collapse_fraction:.0%} of {_chance_text(view)}. The data checks found no input column that gives "
            f"the target away and no validation rows copied from training, so the task is likely (near-)deterministic "
            f"and easy (well separated classes, a smooth function of the inputs with little noise), which is fine.",
            "If the task is not known to be that easy, look for what the checks cannot see: an input computed from "
            "the target through several columns, ids or timestamps that encode it, near-copies of training rows among "
            "the validation rows. Trust the validation loss on rows collected separately, not the training loss.",
            {"epoch_loss": loss, "chance_loss": chance, "data_checks": []}, epoch=view.epochs[-1].epoch, severity="info")
    return Issue(
        f"The training loss is {_fmt(loss)} after epoch {view.epochs[-1].epoch + 1}, under "
        f"{view.t.collapse_fraction:.0%} of {_chance_text(view)}. Few tasks are solved that fast: "
        f"either the inputs contain the answer (a label column or something derived from it, or rows "
        f"repeated across the split), or the task is (near-)deterministic and easy (a smooth "
        f"function of the inputs with little noise, well separated classes), which is fine.",
        "If the task is not known to be that easy: check x for a column equal to or computed from y "
        "(trainkit's label-leakage check lists it) and drop it; make sure the validation rows are not "
        "copies of training rows; check that y is not constant. Trust the validation loss on rows "
        "collected separately, not the training loss.",
        {"epoch_loss": loss, "chance_loss": chance}, epoch=view.epochs[-1].epoch)


def nan_loss(view: Diagnoser) -> Issue | None:
    """A non-finite loss: the step, and the first layer whose activations or gradients broke."""
    nf = view.nonfinite
    if nf is None or nf.loss_step is None:
        return None
    layer, where = _first_nonfinite_layer(view, nf.row)
    if layer:
        origin = f" The first non-finite values appeared at step {nf.step} in {where}."
    elif any(n == GLOBAL_GRAD_NORM or variable_of(n, GRAD_NORM) or activation_stat_of(n) for n in nf.row):
        origin = (" Every layer's activations and gradients were still finite: the loss computation itself "
                  "produced it (log(0), a division by zero, an overflow in a custom loss).")
    else:
        origin = ""
    evidence = {"step": nf.loss_step, "first_nonfinite_step": nf.step, "last_finite_loss": nf.last_finite_loss,
                "grad_norm_global": nf.row.get(GLOBAL_GRAD_NORM)}
    evidence = {k: v for k, v in evidence.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    if nf.last_finite_loss is None:  # no finite loss in the whole run: the weights as they started
        return Issue(
            f"The loss was NaN/inf from the run's first step ({nf.loss_step}), before any update had changed the weights, "
            f"so no learning rate caused it.{origin}",
            "Look at what the first forward pass reads: "
            + (f"standardise {_standardise(view)} (a value over ~1.8e19 overflows float32 when squared: an MSE of targets "
               "near 1e30 is inf), " if _standardise(view) else "")
            + "check the weights the model starts from, and guard custom losses against log(0) and division by zero "
            "(add an epsilon).",
            evidence, step=nf.loss_step, epoch=_epoch_of(view, nf.loss_step), layer=layer)
    return Issue(
        f"The loss became NaN/inf at step {nf.loss_step} (the last finite loss was "
        f"{_fmt(nf.last_finite_loss)}).{origin} Once a weight is NaN every later step is NaN.",
        f"Lower the learning rate ({_lowered_lr(view)}), clip gradients "
        f"(optimizer: {{name: {_optimizer_name(view)}, clipnorm: 1.0}}), "
        + (f"standardise {_standardise(view)}, " if _standardise(view) else "") + "and "
        "guard custom losses against log(0) and division by zero (add an epsilon).",
        evidence, step=nf.loss_step, epoch=_epoch_of(view, nf.loss_step),
        layer=layer)


def nonfinite_weights(row: Mapping[str, float]) -> list[str]:
    """The ``weight_norm/VAR`` statistics of ``row`` that are NaN or infinite.

    An infinite norm may also come from finite weights too large to square in float32 (over
    ~1e19): no better than NaN for training, but not NaN, and the messages say so.
    """
    return [n for n, v in row.items() if variable_of(n, WEIGHT_NORM) is not None and not math.isfinite(v)]


def _first_nonfinite_layer(view: Diagnoser, row: dict[str, float]) -> tuple[str | None, str]:
    """First layer (model order) with non-finite activations, else the last with bad gradients."""
    activations = [n for n, v in row.items() if (activation_stat_of(n, NONFINITE) is not None and v > 0) or (
        activation_stat_of(n, MEAN, STD) is not None and not math.isfinite(v))]
    layers = [layer for layer in view.layer_order(_layer_of(n) for n in activations) if not is_output_name(layer)]
    if layers:
        return layers[0], f"the activations of layer '{layers[0]}'"
    # The counts of NaN/inf entries when the step has them; an infinite norm alone may be finite
    # gradients too large to square in float32.
    counted = any(variable_of(n, GRAD_NONFINITE) for n in row)
    grads = [n for n, v in row.items() if (variable_of(n, GRAD_NONFINITE) and v > 0) or (
        not counted and variable_of(n, GRAD_NORM) and not math.isfinite(v))]
    layers = view.layer_order(_layer_of(n) for n in grads)
    if layers:
        # Back-propagation reaches the last layer first: the origin is the last one in model order.
        return layers[-1], f"the gradients of layer '{layers[-1]}'"
    huge = [n for n, v in row.items() if variable_of(n, GRAD_NORM) and not math.isfinite(v)]
    layers = view.layer_order(_layer_of(n) for n in huge)
    if layers:
        return layers[-1], f"the gradients of layer '{layers[-1]}', finite but too large for float32 to square (norm inf)"
    weights = nonfinite_weights(row)
    layers = view.layer_order(_layer_of(n) for n in weights)
    if layers:
        # Finite gradients, non-finite weights after the update: the update itself overflowed.
        return layers[0], f"the weights of layer '{layers[0]}' after the update, from finite gradients (an update too large to represent or to square, or a NaN/inf learning rate)"
    return None, ""


def diverging_loss(view: Diagnoser) -> Issue | None:
    """The loss grows: an epoch loss 2x the best so far and still rising, or a 100x step spike."""
    first = _first_losses(view)
    if view.max_loss is not None and first.size:
        step, peak = view.max_loss
        start = float(first[0])
        if start > 0 and peak > view.t.diverge_step_factor * start:
            return Issue(
                f"The loss jumped to {_fmt(peak)} at step {step}, {_times(peak / start)} the first loss "
                f"({_fmt(start)}): the updates overshoot and the model is being thrown away.",
                f"Lower the learning rate ({_lowered_lr(view)}) and clip gradients (clipnorm: 1.0).",
                {"peak_loss": peak, "initial_loss": start, "ratio": peak / start}, step=step, epoch=_epoch_of(view, step))
    losses = view.epoch_losses()
    if len(losses) < 3 or not np.isfinite(losses).all():
        return None
    best = float(np.min(losses[:-1]))
    last = float(losses[-1])
    rising = losses[-1] > losses[-2] > losses[-3]
    # "2x the best" means nothing for a best of 0 or below (a cosine-similarity loss is negative):
    # every rise would pass, and a best of 0 divided by zero below.
    if rising and best > 0 and last > view.t.diverge_factor * best and last > losses[0]:
        return Issue(
            f"The training loss is rising: {_fmt(last)} in epoch {view.epochs[-1].epoch + 1}, "
            f"{_times(last / best)} its best ({_fmt(best)}) and above the first epoch's ({_fmt(float(losses[0]))}).",
            f"Lower the learning rate ({_lowered_lr(view)}), add gradient clipping (clipnorm: 1.0), or "
            f"use a decaying schedule.",
            {"epoch_loss": last, "best_loss": best, "first_epoch_loss": float(losses[0])}, epoch=view.epochs[-1].epoch)
    return None


def oscillating_loss(view: Diagnoser) -> Issue | None:
    """The epoch loss jumps up and down by large amounts instead of falling."""
    losses = view.epoch_losses()
    if len(losses) < view.t.oscillation_min_epochs or not _curves_ready(view):
        return None
    window = losses[-view.t.oscillation_window:]
    if not np.isfinite(window).all():
        return None
    moves = np.diff(window)
    signs = np.sign(moves[moves != 0])
    if len(signs) < 3:
        return None
    changes = float(np.mean(signs[1:] != signs[:-1]))
    # Relative to the loss scale of the task (chance, or the first epoch's loss), not to the current
    # level: dropout noise of 0.01 on a loss of 0.05 is no oscillation.
    scale = max(float(np.mean(window)), _chance(view) or float(losses[0]))
    amplitude = float(np.mean(np.abs(moves)) / max(scale, 1e-12))
    # A zig-zag that still makes progress (a falling trend) is not an oscillation.
    trend = abs(float(window[-1] - window[0])) / max(float(np.sum(np.abs(moves))), 1e-12)
    if changes < view.t.oscillation_sign_fraction or amplitude < view.t.oscillation_amplitude or trend > view.t.oscillation_max_trend:
        return None
    return Issue(
        f"Over the last {len(window)} epochs the training loss changed direction in {changes:.0%} of the "
        f"epochs, moving by {amplitude:.0%} of the loss scale each time ({_fmt(float(window.min()))} to "
        f"{_fmt(float(window.max()))}): the updates overshoot the minimum back and forth.",
        f"Lower the learning rate ({_lowered_lr(view)}) or use a decaying schedule; larger batches "
        f"(training.batch_size) also smooth the updates.",
        {"sign_change_fraction": changes, "relative_amplitude": amplitude, "net_trend": trend, "window_epochs": len(window)},
        epoch=view.epochs[-1].epoch)


def plateau(view: Diagnoser) -> Issue | None:
    """The loss stopped improving early, at a level far above where it started to fall."""
    if not view.finished or not _curves_ready(view) or view.epochs_run < 6:
        return None
    losses = view.epoch_losses(data_only=True)
    if not np.isfinite(losses).all():
        return None
    chance = _chance(view)
    half = len(losses) // 2
    start, middle, last = float(losses[0]), float(losses[half]), float(losses[-1])
    if start <= 0 or chance is None or last >= view.t.at_chance_train * chance:
        return None
    recent = (middle - last) / max(abs(middle), 1e-12)
    total = (start - last) / start
    if recent >= view.t.plateau_improvement or total >= view.t.plateau_total_improvement:
        return None
    lowering = _lr_lowering_found(view)
    rate = (f"lower the learning rate (see {', '.join(lowering)})" if lowering
            else f"try a larger learning rate ({_raised_lr(view)})")
    return Issue(
        f"The training loss has been flat at {_fmt(last)} since about epoch {view.epochs[half].epoch + 1} "
        f"(it improved {recent:.1%} over the second half of the run and {total:.0%} in all): training is "
        f"stuck, typically behind dead or saturated units or a learning rate that is too small.",
        f"Look at the dead-relu / saturated-activations findings; {rate}, he_normal initialisation with "
        f"relu, or a learning-rate schedule that restarts.",
        {"first_epoch_loss": start, "mid_loss": middle, "final_loss": last, "recent_improvement": recent},
        epoch=view.epochs[half].epoch)


# ---------------------------------------------------------------------------------------------
# Gradients.

def vanishing_gradients(view: Diagnoser) -> Issue | None:
    """The first weight layer gets a gradient 1000x smaller (relative to its weights) than the last."""
    kernels = _kernels(view, GRAD_NORM)
    if len(kernels) < 2 or view.epochs_run < view.t.sustained_epochs:
        return None
    chance = _chance(view)
    losses = view.epoch_losses(data_only=True)
    if chance is not None and np.isfinite(losses[-1]) and losses[-1] < view.t.solved_fraction * chance:
        return None  # a solved task has tiny gradients everywhere
    forward = _vanishing_forward(view)
    if forward is not None:
        return forward
    first, last = kernels[0], kernels[-1]
    weights = [weight_norm_name(variable_of(name, GRAD_NORM)) for name in (first, last)]
    n = view.t.sustained_epochs
    # A network gone NaN (on_nan: warn trains on) has no gradient ratio to judge: its "0, n/ax
    # the last layer's" was no finding.
    if not _finite_epochs(view, [first, last, *weights], n):
        return None
    g_first, g_last = view.epoch_values(first), view.epoch_values(last)
    w_first, w_last = view.epoch_values(weights[0]), view.epoch_values(weights[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (g_first / w_first) / (g_last / w_last)
    if not np.isfinite(ratio[-n:]).all():
        return None  # the last layer gets no gradient either (or a weight norm is 0): nothing vanishes on the way back
    small_ratio = np.nan_to_num(ratio[-n:], nan=np.inf) < view.t.vanish_ratio
    tiny = np.nan_to_num(g_first[-n:], nan=np.inf) < view.t.vanish_absolute
    if not (small_ratio.all() or tiny.all()):
        return None
    layer = _layer_of(first)
    return Issue(
        f"The gradient of the first weight layer '{layer}' is {_fmt(float(g_first[-1]))}, "
        f"{_fmt(float(ratio[-1]))}x the last layer's relative to their weights, for {n} epochs: the "
        f"signal vanishes on the way back and the early layers stop learning.",
        "Use relu (or leaky_relu) with he_normal initialisation instead of saturating tanh/sigmoid "
        f"stacks, {_standardise_inputs(view)}add batchnorm layers between the dense layers, or use fewer "
        "layers.",
        {"grad_norm_first": float(g_first[-1]), "grad_norm_last": float(g_last[-1]), "relative_ratio": float(ratio[-1]),
         "first_layer": first, "last_layer": last}, layer=layer, epoch=view.epochs[-1].epoch)


def _vanishing_forward(view: Diagnoser) -> Issue | None:
    """The signal fades going forward: the last hidden layer's outputs vary 1000x less than the
    first's, for several epochs. Every gradient is then tiny alike, which the first/last gradient
    ratio cannot see (10 tanh layers initialised with stddev 0.05: output std 3e-3 at layer 3,
    1.5e-6 at layer 9, the loss at ln 2 from the first step)."""
    stds = _hidden_activation_stats(view, "std")
    n = view.t.sustained_epochs
    if len(stds) < 3 or not _finite_epochs(view, [stds[0], stds[-1]], n):
        return None
    first, last = view.epoch_values(stds[0])[-n:], view.epoch_values(stds[-1])[-n:]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = last / first
    if not (np.isfinite(ratio).all() and (ratio < view.t.vanish_ratio).all()):
        return None
    deep, shallow = _layer_of(stds[-1]), _layer_of(stds[0])
    return Issue(
        f"The outputs of layer '{deep}' vary {_fmt(float(ratio[-1]))}x as much as those of layer '{shallow}' (std "
        f"{_fmt(float(last[-1]))} against {_fmt(float(first[-1]))}), for {n} epochs: the signal fades on the way "
        f"forward, so the output barely depends on the input and every gradient is tiny.",
        "Initialise for the activation (glorot_uniform for tanh/sigmoid, he_normal for relu) instead of a small "
        "random_normal, add batchnorm layers between the dense layers, or use fewer layers.",
        {"activation_std_first": float(first[-1]), "activation_std_last": float(last[-1]), "std_ratio": float(ratio[-1]),
         "first_layer": shallow, "last_layer": deep}, layer=deep, epoch=view.epochs[-1].epoch)


def exploding_gradients(view: Diagnoser) -> Issue | None:
    """The global gradient norm grew 100x above its level in the first steps."""
    e = view.explosion
    if e is None:
        return None
    return Issue(
        f"The global gradient norm reached {_fmt(e.norm)} at step {e.step}, {_times(e.norm / max(e.baseline, 1e-12))} "
        f"its level in the first steps ({_fmt(e.baseline)}): the updates feed on themselves.",
        f"Clip gradients (optimizer: {{name: {_optimizer_name(view)}, clipnorm: 1.0}}), lower the learning "
        f"rate ({_lowered_lr(view)})" + (f", and standardise {_standardise(view)}." if _standardise(view) else "."),
        {"grad_norm": e.norm, "baseline_grad_norm": e.baseline, "loss": e.loss}, step=e.step,
        epoch=_epoch_of(view, e.step))


# ---------------------------------------------------------------------------------------------
# Activations.

def dead_relu(view: Diagnoser) -> list[Issue]:
    """A ReLU layer with most units never active in a batch, for several epochs."""
    batch = view.context.batch_size
    if batch is not None and batch < view.t.dead_relu_min_batch:
        return []
    issues = []
    for name in _hidden_activation_stats(view, "dead_fraction"):
        values = view.epoch_values(name)
        since = _sustained_since(values, view.t.dead_fraction, view.t.sustained_epochs)
        if since is None:
            continue
        layer = _layer_of(name)
        fraction = float(values[-1])
        at_start = _dead_at_start(view, name)
        evidence = {"dead_fraction": fraction, "since_epoch": view.epochs[since].epoch,
                    "first_epoch_dead_fraction": float(values[0])}
        if at_start is not None:
            evidence["first_step_dead_fraction"] = at_start
        issues.append(Issue(
            f"{fraction:.0%} of the units of layer '{layer}' output 0 for every example of a batch "
            f"(mean over epoch {view.epochs[-1].epoch + 1}), since epoch {view.epochs[since].epoch + 1}"
            + (f" ({at_start:.0%} already at the first step, before any update)" if at_start is not None else "")
            + ": dead ReLUs pass no gradient and never recover.",
            _dead_relu_advice(view, at_start is not None), evidence, layer=layer, epoch=view.epochs[since].epoch))
    return issues


def _dead_at_start(view: Diagnoser, name: str) -> float | None:
    """The dead fraction of the run's first step when it was already over the threshold, else ``None``.

    The first step's activations come from the initial weights: units dead there were killed by
    the initialisation (a negative bias, a bad kernel init) or the input scale, not by an update.
    """
    if view.first_step != 0:
        return None
    first = view.first_values(name)
    if first.size == 0 or not np.isfinite(first[0]) or first[0] < view.t.dead_fraction:
        return None
    return float(first[0])


def _dead_relu_advice(view: Diagnoser, from_init: bool) -> str:
    """dead-relu's fix: the initialisation first when the units were dead before any update.

    Unless the data checks found the inputs unscaled: raw breast-cancer features (all positive,
    areas ~650 next to ratios ~0.01) put half of a he_normal, zero-bias layer's units below 0 for
    every row, and "fix the initialisation: bias zeros and he_normal" named what it already had.
    """
    if from_init and "unscaled-inputs" in (view.context.check_codes or ()):
        return ("Standardise the inputs first (preprocessing: {standardize_inputs: true}; see unscaled-inputs): "
                "with features of large, one-signed scales a unit's input is on the same side of 0 for every row, "
                "so a unit that starts off stays off. If units are still dead after that, check this layer's "
                "bias_initializer (zeros) and kernel_initializer (he_normal), or use activation: leaky_relu (or elu). "
                "The learning rate did not kill these units: they were dead before the first update.")
    if from_init:
        return ("Fix the initialisation of this layer: bias_initializer: zeros (a negative bias switches "
                "units off for every input) and kernel_initializer: he_normal; "
                + _standardise_inputs(view, "standardise the inputs (preprocessing: {standardize_inputs: true}), ")
                + "or use activation: leaky_relu (or elu). "
                "The learning rate did not kill these units: they were dead before the first update.")
    return (f"Lower the learning rate ({_lowered_lr(view)}) — one big update is the usual killer —, use "
            f"kernel_initializer: he_normal for this layer, {_standardise_inputs(view)}or use "
            f"activation: leaky_relu (or elu).")


def saturated_activations(view: Diagnoser) -> list[Issue]:
    """A tanh/sigmoid hidden layer with many outputs in its flat tails, for several epochs."""
    issues = []
    for name in _hidden_activation_stats(view, "saturated_fraction"):
        values = view.epoch_values(name)
        since = _sustained_since(values, view.t.saturated_info_fraction, view.t.sustained_epochs)
        if since is None:
            continue
        severe = _sustained_since(values, view.t.saturated_fraction, view.t.sustained_epochs) is not None
        layer = _layer_of(name)
        fraction = float(values[-1])
        effect = ("their derivative is ~0, so this layer and the layers below it stop learning" if severe else
                  "not yet enough to stall training, but those units pass almost no gradient")
        issues.append(Issue(
            f"{fraction:.0%} of the outputs of layer '{layer}' sit in the flat tails of its activation "
            f"(|tanh| > 0.99, or sigmoid outside 0.01..0.99) since epoch {view.epochs[since].epoch + 1}: "
            f"{effect}.",
            (_standardise_inputs(view, "Standardise the inputs, lower") or "Lower")
            + " the learning rate, initialise with glorot_uniform/"
            "glorot_normal, add a batchnorm layer before the activation, or switch the hidden layers to "
            "relu with he_normal.",
            {"saturated_fraction": fraction, "since_epoch": view.epochs[since].epoch,
             "first_epoch_saturated_fraction": float(values[0])}, layer=layer, epoch=view.epochs[since].epoch,
            severity=None if severe else "info"))
    return issues


# ---------------------------------------------------------------------------------------------
# Generalisation.

def overfitting(view: Diagnoser) -> Issue | None:
    """The validation loss rises while the training loss keeps falling."""
    # Without the penalty: a shrinking L2 term would hide a rising data loss.
    val = view.val_losses(data_only=True)
    train = view.epoch_losses(data_only=True)
    if len(val) < view.t.overfit_min_epochs + 2 or not np.isfinite(val).any():
        return None
    # With early stopping configured, wait for the end: it may stop the run and restore the best
    # epoch's weights, which turns the rise into a handled note.
    if not view.finished and (view.context.early_stopping or not _curves_ready(view)):
        return None
    best = int(np.nanargmin(val))
    rise_epochs = max(view.t.overfit_min_epochs, math.ceil(view.t.overfit_epoch_fraction * view.planned_epochs))
    after = val[best + 1 :]
    if len(after) < rise_epochs:
        return None
    # 10% above the minimum, and by at least 3% of the loss scale (chance): a rise from 0.117 to
    # 0.130 on a task whose chance level is 0.69 is noise, not overfitting. A classifier's scale
    # is at most a binary one's (ln 2): chance grows as ln K with the classes, the noise of a
    # validation loss near its minimum does not, and 200 digits (10 classes, 2x256) rising
    # steadily from 0.165 to 0.236 over 100 epochs stayed under 3% of ln 10 (0.069).
    scale = _chance(view) or 0.0
    if view.context.task != "regression":
        scale = min(scale, math.log(2))
    floor = view.t.overfit_min_rise * scale
    limit = max(val[best] * (1 + view.t.overfit_rise), val[best] + floor) + 1e-12
    if not (after[-rise_epochs:] > limit).all():
        return None
    if not (np.isfinite(train[best]) and np.isfinite(train[-1]) and train[-1] < train[best]):
        return None
    chance = _chance(view)
    if chance is not None and train[-1] >= chance:
        # A model that has not fitted its own training rows better than chance memorises nothing:
        # a validation curve that jumps about comes from the inputs or the rate (unscaled inputs
        # gave "overfits from epoch 2" at 29x chance).
        return None
    if chance is not None and val[best] >= view.t.at_chance_validation * chance:
        # Nothing ever generalised (random labels: best 98-141% of chance): there is no good epoch
        # to stop at, and loss-at-chance says the model memorises.
        return None
    if _found(view, ("lr-too-high", "oscillating-loss", "diverging-loss")):
        # The validation loss of a run whose steps overshoot jumps about: a rise 3 epochs after a
        # lucky minimum at learning rate 1.0 was "overfitting", with dropout and L2 for advice.
        return None
    start = view.epochs[best].epoch
    evidence = {"best_epoch": start, "best_val_loss": float(val[best]), "final_val_loss": float(val[-1]),
                "train_loss_at_best": float(train[best]), "final_train_loss": float(train[-1])}
    stopping = view.notes.get("early_stopping")
    if stopping and stopping.get("restored_epoch") is not None:
        return Issue(
            f"The validation loss rose from {_fmt(float(val[best]))} (epoch {start + 1}) to "
            f"{_fmt(float(val[-1]))} while the training loss kept falling; early stopping "
            f"{'stopped the run and ' if stopping.get('stopped_epoch') is not None else ''}restored the weights of epoch "
            f"{stopping['restored_epoch'] + 1}.",
            "Nothing to do: early stopping handled it. Regularisation (dropout, kernel_regularizer: "
            "{l2: 0.01}) may lower the best validation loss further.",
            {**evidence, "restored_epoch": stopping["restored_epoch"]}, epoch=start, severity="info")
    return Issue(
        f"The model overfits from epoch {start + 1}: the validation loss rose from {_fmt(float(val[best]))} "
        f"to {_fmt(float(val[-1]))} while the training loss fell from {_fmt(float(train[best]))} to "
        f"{_fmt(float(train[-1]))}.",
        f"Stop at the best epoch: training: {{early_stopping: {{monitor: val_loss, patience: "
        f"{max(5, min(10, rise_epochs))}, restore_best_weights: true}}}} (or epochs: {start + 1}); and/or "
        f"regularise: add dropout layers ({{type: dropout, rate: 0.2}}..0.5) and kernel_regularizer: "
        f"{{l2: 0.01}}, use a smaller model, or get more training rows.",
        evidence, epoch=start)


def underfitting(view: Diagnoser) -> Issue | None:
    """Training ended while both losses were still falling fast: the model was not trained enough."""
    if not view.finished or not _curves_ready(view) or view.epochs_run < 4:
        return None
    train = view.epoch_losses(data_only=True)
    chance = _chance(view)
    if not np.isfinite(train).all() or chance is None or train[-1] < view.t.underfit_level * chance:
        return None
    drop, n = _tail_drop(view, train)
    tail = train[-n:]
    if drop < view.t.underfit_tail_improvement:
        return None
    val = view.val_losses(data_only=True)
    if np.isfinite(val).all() and len(val) == len(train):
        vtail = val[-n:]
        if not vtail[-1] < vtail[0]:
            return None
    if regularization_dominates(view) is not None:  # its fix (less penalty) comes before longer training
        return None
    lowering = _lr_lowering_found(view)
    if lowering:  # the learning rate is already too high for this run: raising it contradicts those
        faster = f" once the learning rate is lowered (see {', '.join(lowering)})"
    else:
        faster = f" or raise the learning rate ({_raised_lr(view)})"
    # The data checks found the scale that slows it: standardising comes before more epochs or
    # a larger rate (inputs x1000 ended 20 epochs at 3.6x chance, told to raise the rate).
    unscaled = [what for code, what in (("unscaled-inputs", "inputs"), ("unscaled-targets", "targets"))
                if code in (view.context.check_codes or ())]
    first = (f"Standardise the {' and '.join(unscaled)} first (preprocessing: "
             f"{{{', '.join(f'standardize_{what}: true' for what in unscaled)}}}; see "
             f"{', '.join(f'unscaled-{what}' for what in unscaled)}): badly scaled data is what "
             f"slows the loss. Then: train" if unscaled else "Train")
    if view.notes.get("stop_reason") == "stopped":
        # Early stopping (or a callback of the user's) ended it: "train for more epochs" would be
        # undone by the same stop, which fired while both losses still fell.
        more = ("for longer: early stopping (or a callback) ended the run while both losses still fell, so give it more "
                "patience or a smaller min_delta (training.early_stopping), or have it monitor val_loss,")
    else:
        more = f"for more epochs (training.epochs: {2 * view.planned_epochs})"
    return Issue(
        f"The training loss was still falling fast when training ended: {drop:.0%} over the last {n} "
        f"epochs (to {_fmt(float(tail[-1]))}"
        + f", {float(tail[-1]) / chance:.0%} of chance"
        + "), with the validation loss falling too: the model is undertrained.",
        f"{first} {more}{faster}; if the loss then flattens high, give the model more capacity (more units).",
        {"tail_improvement": drop, "tail_epochs": n, "final_train_loss": float(tail[-1]), "chance_loss": chance},
        epoch=view.epochs[-1].epoch)


def regularization_dominates(view: Diagnoser) -> Issue | None:
    """The weight penalty is most of the training loss while the data loss stays high."""
    if not view.finished or not _curves_ready(view):
        return None
    total = view.epoch_losses()
    penalty = view.regularization_values()
    chance = _chance(view)
    if chance is None or not (np.isfinite(total[-1]) and np.isfinite(penalty[-1])) or total[-1] <= 0:
        return None
    share = float(penalty[-1] / total[-1])
    data = float(total[-1] - penalty[-1])
    # Half the loss is the penalty and the data loss is no better than half of chance: the steps
    # shrink the weights instead of fitting the data (L2 of 1.0 on every layer: 85% of the loss,
    # accuracy 0.51; 0.1: 0.80 where 0.91 without).
    if share < view.t.penalty_share or data < view.t.underfit_level * chance:
        return None
    return Issue(
        f"The regularization penalty is {share:.0%} of the training loss at the end ({_fmt(float(penalty[-1]))} of "
        f"{_fmt(float(total[-1]))}) while the loss on the data is {_fmt(data)}, {data / chance:.0%} of chance: "
        f"the updates mostly shrink the weights instead of fitting the data.",
        "Lower the penalty 10x (kernel_regularizer: {l2: 0.001} where it is 0.01), or put it on fewer layers; "
        "then judge the model by its validation loss.",
        {"penalty_share": share, "penalty": float(penalty[-1]), "data_loss": data, "chance_loss": chance},
        epoch=view.epochs[-1].epoch)


#: Every diagnosis rule, in the order findings are reported when found at the same moment.
RULES: tuple[Rule, ...] = (
    Rule("nan-loss", "error", "call", nan_loss, "the loss became NaN/inf: the step and the first layer that broke", refresh_advice=True),
    Rule("exploding-gradients", "warning", "call", exploding_gradients, "global gradient norm 100x its starting level", refresh_advice=True),
    Rule("initial-loss-too-low", "warning", "call", initial_loss_too_low, "first losses far below chance: leakage, wrong targets or loss"),
    Rule("initial-loss-too-high", "warning", "call", initial_loss_too_high, "first losses far above chance: unscaled data, bad init"),
    Rule("diverging-loss", "error", "epoch", diverging_loss, "the loss grows instead of falling", refresh_advice=True),
    Rule("loss-collapsed", "warning", "epoch", loss_collapsed, "loss near zero right after the first epoch"),
    Rule("lr-too-high", "warning", "epoch", lr_too_high, "updates > 10% of the weights and no progress", refresh_advice=True),
    Rule("vanishing-gradients", "warning", "epoch", vanishing_gradients, "first layer's gradient 1000x smaller than the last's"),
    Rule("dead-relu", "warning", "epoch", dead_relu, "most units of a ReLU layer never active", refresh_advice=True),
    Rule("saturated-activations", "warning", "epoch", saturated_activations, "tanh/sigmoid outputs in the flat tails (info from 25%, warning from 50%)"),
    Rule("oscillating-loss", "warning", "epoch", oscillating_loss, "the epoch loss jumps up and down", refresh_advice=True),
    Rule("overfitting", "warning", "epoch", overfitting, "validation loss rising while training loss falls", rejudge=True),
    Rule("loss-at-chance", "warning", "end", loss_at_chance, "training (or validation) loss stays at the chance level"),
    Rule("plateau", "warning", "end", plateau, "the loss stopped improving early, far above its start"),
    Rule("regularization-dominates", "warning", "end", regularization_dominates, "the weight penalty is most of the training loss"),
    Rule("lr-too-low", "warning", "end", lr_too_low, "tiny updates and a loss still falling steadily"),
    Rule("underfitting", "warning", "end", underfitting, "training ended while the loss was still falling fast"),
)
#: Every code the diagnosis can report, in one place.
DIAGNOSIS_CODES: tuple[str, ...] = tuple(rule.code for rule in RULES)
