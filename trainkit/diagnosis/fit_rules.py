"""Rules on how the model fits its data at the end: overfitting, BatchNormalization averages that lag, underfitting, a dominating penalty, a frozen output layer, dropout
that hides what the model learned, a validation loss below the training loss, a regression worse than the linear fit of its inputs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from trainkit.diagnosis.finding_groups import found_codes, init_blocked_found, lr_lowering_found
from trainkit.diagnosis.loss_measures import (
    curves_ready,
    few_validation_rows,
    penalty_note,
    tail_drop,
)
from trainkit.diagnosis.lr_advice import raised_lr_text, schedule_ended_text
from trainkit.diagnosis.model_facts import real_number
from trainkit.diagnosis.number_text import format_number, times_text
from trainkit.diagnosis.rule_types import Issue
from trainkit.diagnosis.setting_text import fit_setting, for_run, standardize_setting
from trainkit.diagnosis.task_context import (
    chance_level,
    constant_prediction,
    far_values_only,
    standardise_advice,
    targets_scaled_not_centred,
    val_chance_level,
)

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser


def batchnorm_start_share(view: Diagnoser) -> tuple[str, float, float] | None:
    """``(layer, momentum, share)`` of the ``BatchNormalization`` layer whose moving averages
    still hold the largest share of their starting values (mean 0, variance 1) after the run's
    steps (``momentum ** steps``), where that share is
    :attr:`~trainkit.diagnosis.rule_types.Thresholds.batchnorm_start_share` or more; ``None``
    otherwise, or for a model trained before this run (its layers' steps are not all counted).
    The steps are the layer's (:func:`batchnorm_steps`): a trainer's second ``fit`` counts its first's too.

    The validation loss is measured through those averages, the training loss through each
    batch's own statistics: after 48 steps at momentum 0.99 they still held 62% of their start,
    and on inputs centred at 20 the validation loss rose 0.56 -> 1.45 while the training loss fell,
    told "overfits" where ``evaluate`` scored the training rows themselves at 1.77.
    """
    norms = view.context.batch_norms
    steps = batchnorm_steps(view)
    if not norms or view.context.trained_before or steps <= 0:
        return None
    errors = view.notes.get("batch_norm_errors")
    if isinstance(errors, Mapping):
        # The end of the run read how far the averages err from the batches' statistics: a lag
        # between two nearby normalisations is no cause (an MLP on standardised inputs that
        # overfit, evaluate scoring its training rows at their training loss 0.04, was told its
        # validation loss 0.45 came from BatchNormalization's averages, and no overfitting).
        norms = {name: m for name, m in norms.items() if real_number(errors.get(name)) and errors[name] >= view.t.batchnorm_lag_error}
        if not norms:
            return None
    layer, momentum = max(norms.items(), key=lambda item: item[1])
    share = float(momentum) ** steps if 0 <= momentum < 1 else 1.0
    return (layer, float(momentum), share) if share >= view.t.batchnorm_start_share else None


def batchnorm_steps(view: Diagnoser) -> int:
    """The training steps the model's ``BatchNormalization`` averages moved in since it was built:
    this diagnosis's, and those of the trainer's earlier fits before it (its first step).

    A second ``fit`` of 14 epochs after 12 had moved them 364 times, 3% of their start left, and was
    judged on its own 196 steps (14%): averages that had long followed the batches (evaluate scored
    the training rows at their training loss) read as lagging, and its overfitting went untold.
    """
    return (view.first_step or 0) + view.steps


def batchnorm_lag(view: Diagnoser) -> Issue | None:
    """The validation loss ends far above the training loss while a ``BatchNormalization``
    layer's moving averages, through which it is measured, still hold much of their start.

    "Why is my validation loss huge with BatchNormalization?": momentum 0.99 over a few dozen
    steps leaves the moving mean and variance near 0 and 1, far from the batches' own, so the
    model scores every row (its training rows too) worse at inference than in training.
    """
    lagging = batchnorm_start_share(view)
    if lagging is None or not view.finished or few_validation_rows(view):
        return None
    if "batchnorm-batch-of-one" in (view.context.check_codes or ()):
        return None  # batches of one row, the data check's case: no momentum or step count mends those
    train, val = view.epoch_losses(data_only=True), view.val_losses(data_only=True)
    if len(val) != len(train) or not len(train) or not (np.isfinite(train[-1]) and np.isfinite(val[-1])):
        return None
    final_train, final_val = float(train[-1]), float(val[-1])
    chance = chance_level(view)
    if final_val < view.t.batchnorm_val_above * max(final_train, 0.0) or (
            chance is not None and final_val - final_train < view.t.overfit_min_rise * chance):
        return None
    layer, momentum, share = lagging
    window = 1 / (1 - momentum) if momentum < 1 else math.inf
    per_epoch = view.steps / max(1, view.epochs_run)
    return Issue(
        f"The validation loss ended at {format_number(final_val)}, {times_text(final_val / max(final_train, 1e-12))} the "
        f"training loss {format_number(final_train)}, and BatchNormalization '{layer}' (momentum {momentum:g}) ran only "
        f"{batchnorm_steps(view)} training steps: its moving mean and variance, which normalise the validation rows (and evaluate and "
        f"predict), still give their starting values (mean 0, variance 1) a weight of {share:.0%}, while each training batch is "
        f"normalised by its own statistics. The two losses are measured through different layers, so the gap (and a "
        f"validation loss that rises while the training loss falls) need not be overfitting.",
        "Score the training rows as the validation rows are scored, trainer.evaluate(x_train, y_train): if they score as "
        "badly, the moving averages lag. Lower the layer's momentum ("
        + for_run(view.context, "momentum: 0.9 on its {type: batchnorm} layer", "BatchNormalization(momentum=0.9)")
        + f" averages over ~10 steps, now ~{window:.0f}, {window / max(per_epoch, 1e-12):.0f} epochs of {per_epoch:.0f} "
        f"steps), or train for more steps (more epochs{', or smaller batches' if (view.context.batch_size or 0) >= 32 else ''})"
        # Unscaled inputs put the batches' statistics far from the start values the averages leave.
        + (f"; {standardise_advice(view)}" if "unscaled-inputs" in (view.context.check_codes or ()) and standardise_advice(view) else "")
        + ".",
        {"layer": layer, "momentum": momentum, "steps": batchnorm_steps(view), "start_share": share, "final_train_loss": final_train,
         "final_val_loss": final_val}, epoch=view.epochs[-1].epoch, layer=layer)


def overfitting(view: Diagnoser) -> Issue | None:
    """The validation loss rises while the training loss keeps falling."""
    # Without the penalty: a shrinking L2 term would hide a rising data loss.
    val = view.val_losses(data_only=True)
    train = view.epoch_losses(data_only=True)
    if len(val) < view.t.overfit_min_epochs + 2 or not np.isfinite(val).any() or few_validation_rows(view):
        return None
    # With early stopping configured, wait for the end: it may stop the run and restore the best
    # epoch's weights, which turns the rise into a handled note.
    if not view.finished and (view.context.early_stopping or not curves_ready(view)):
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
    # The validation loss's own chance level: a regression's is the validation targets' spread
    # about their own mean (what the training mean scores there adds the squared shift of the
    # means, which says nothing about the noise: targets 3 std off made it 9.8 where the spread
    # is 1.5, and a rise from 0.10 to 0.34 fell under the 0.29 it asked).
    scale = val_chance_level(view) or 0.0
    if scale == 0.0 and val[best] <= 0:
        # "10% above the minimum" sizes a rise by the distance from 0, the floor of the losses
        # this rule knows. A loss that goes below 0 (a cosine similarity) has no floor there, and
        # without a chance level nothing else sizes it: random targets' validation cosine rising
        # from -0.0215 to -0.0074 (noise about chance) passed a bar 1e-12 above its minimum.
        return None
    if view.context.task != "regression":
        scale = min(scale, math.log(2))
    floor = view.t.overfit_min_rise * scale
    limit = max(val[best] * (1 + view.t.overfit_rise), val[best] + floor) + 1e-12
    if not (after[-rise_epochs:] > limit).all():
        return None
    # A lucky minimum in a curve that jumps about is no rise: the rise has to outgrow the
    # validation loss's own epoch-to-epoch moves around its minimum (the median, as many epochs
    # before it as after). Unscaled breast-cancer features (0.05..2500) made val_loss jump
    # 0.50 -> 1.08 -> 0.48 while the training loss fell smoothly; a dip to 0.287, then 0.356, was
    # told "overfits from epoch 24", where standardising the inputs gave 0.12 with no rise.
    # The jumps are the moves' changes (second differences), not the moves themselves: a smooth
    # descent and climb moves every epoch too, and a parabola's 0.30 -> 0.54 over 4 epochs (or a
    # steep fall to 0.30 and a steady climb to 0.46) was no verdict, its rise no larger than the
    # median move. sqrt(3) makes them the moves' size for pure noise (std sqrt(6) against sqrt(2)).
    window = val[max(0, best - len(after)) :]
    jumps = np.abs(np.diff(window[np.isfinite(window)], n=2))
    if len(jumps) and float(after[-rise_epochs:].min() - val[best]) <= float(np.median(jumps)) / math.sqrt(3):
        return None
    if not (np.isfinite(train[best]) and np.isfinite(train[-1]) and train[-1] < train[best]):
        return None
    chance = chance_level(view)
    if chance is not None and train[-1] >= view.t.at_chance_train * chance:
        # A model that has not fitted its own training rows clearly better than chance (what
        # loss-at-chance calls staying at it) memorises nothing: a validation curve that jumps
        # about comes from the inputs or the rate (unscaled inputs gave "overfits from epoch 2" at
        # 29x chance), or from a constant still moving (class-weighted random labels ended at 95%
        # of chance, told "overfits from epoch 1").
        return None
    val_chance = val_chance_level(view)
    if val_chance is not None and val[best] >= view.t.at_chance_validation * val_chance:
        # Nothing ever generalised (random labels: best 98-141% of chance): there is no good epoch
        # to stop at, and loss-at-chance says the model memorises.
        return None
    if found_codes(view, ("lr-too-high", "oscillating-loss", "diverging-loss")):
        # The validation loss of a run whose steps overshoot jumps about: a rise 3 epochs after a
        # lucky minimum at learning rate 1.0 was "overfitting", with dropout and L2 for advice.
        return None
    if batchnorm_start_share(view) is not None:
        # The validation loss is measured through BatchNormalization's moving averages, still near
        # their start: their lag, not memorised rows, can make it rise (batchnorm-lag tells it).
        return None
    start = view.epochs[best].epoch
    evidence = {"best_epoch": start, "best_val_loss": float(val[best]), "final_val_loss": float(val[-1]),
                "train_loss_at_best": float(train[best]), "final_train_loss": float(train[-1])}
    by_output, rising, falling = _output_val_trends(view, best)
    if by_output:
        evidence["output_val_losses"] = by_output
    stopping = view.notes.get("early_stopping")
    if stopping and stopping.get("restored_epoch") is not None:
        return Issue(
            f"The validation loss rose from {format_number(float(val[best]))} (epoch {start + 1}) to "
            f"{format_number(float(val[-1]))} while the training loss kept falling{penalty_note(view)}; early stopping "
            f"{'stopped the run and ' if stopping.get('stopped_epoch') is not None else ''}restored the weights of epoch "
            f"{stopping['restored_epoch'] + 1}.",
            "Nothing to do: early stopping handled it. Regularisation ("
            + for_run(view.context, "dropout, kernel_regularizer: {l2: 0.01}", "keras.layers.Dropout, kernel_regularizer=keras.regularizers.L2(0.01)")
            + ") may lower the best validation loss further.",
            {**evidence, "restored_epoch": stopping["restored_epoch"]}, epoch=start, severity="info")
    return Issue(
        f"The model overfits from epoch {start + 1}: the validation loss rose from {format_number(float(val[best]))} "
        f"to {format_number(float(val[-1]))} while the training loss fell from {format_number(float(train[best]))} to "
        f"{format_number(float(train[-1]))}{penalty_note(view)}{_output_trend_text(by_output, rising, falling)}.",
        f"Stop at the best epoch: {_early_stopping_text(view, max(5, min(10, rise_epochs)), start + 1)}; and/or "
        f"regularise: {_regularise_text(view)}, use a smaller model, or get more training rows."
        + (f" Only {_names(rising)} overfit{'s' if len(rising) == 1 else ''}: {_names(falling)} still improve{'s' if len(falling) == 1 else ''} "
           f"on the validation rows, which stopping at epoch {start + 1} cuts short too; a lower loss_weights entry for "
           f"{_names(rising)} lets {_names(falling)} go on learning." if rising and falling else ""),
        evidence, epoch=start)


def _output_val_trends(view: Diagnoser, best: int) -> tuple[dict[str, list[float]], list[str], list[str]]:
    """Each output's validation loss at the best epoch (of the total) and at the last, for a model
    with several outputs; and the outputs whose loss rose past :attr:`Thresholds.overfit_rise`
    since, and those whose loss fell.

    The total of two heads is one number: a regression head under loss_weights 1000 overfitting
    from epoch 4 read "the model overfits" and "stop at epoch 4", while the classifier beside it
    was still improving (its validation loss 0.53 there, 0.48 at the end).
    """
    by_output, rising, falling = {}, [], []
    for name in view.context.output_names:
        values = view.log_values(f"val_{name}_loss")
        if len(values) <= best or not (np.isfinite(values[best]) and np.isfinite(values[-1])):
            continue
        at_best, last = float(values[best]), float(values[-1])
        by_output[name] = [at_best, last]
        if last > at_best * (1 + view.t.overfit_rise) and last > at_best:
            rising.append(name)
        elif last < at_best:
            falling.append(name)
    return by_output, rising, falling


def _output_trend_text(by_output: dict[str, list[float]], rising: list[str], falling: list[str]) -> str:
    """``; by output: price's validation loss rose from 0.21 to 0.24, is_pos's fell ...`` when one rose and one fell."""
    if not (rising and falling):
        return ""
    moves = [f"{name}'s {'validation loss ' if i == 0 else ''}{'rose' if last > first else 'fell'} from {format_number(first)} "
             f"to {format_number(last)}" for i, (name, (first, last)) in enumerate(by_output.items())]
    return "; by output: " + ", ".join(moves)


def _names(names: list[str]) -> str:
    """``price`` or ``price and score``: outputs in a sentence."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _early_stopping_text(view: Diagnoser, patience: int, epochs: int) -> str:
    """overfitting's early stopping, as its run sets it: a recipe's by dotted keys, a Python fit's by
    the callback it passes."""
    if not view.context.recipe:
        return (f"callbacks=[trainkit.EarlyStopping(monitor='val_loss', patience={patience}, restore_best_weights=True)] "
                f"in fit (or epochs={epochs} in fit)")
    # Dotted keys, as lr_advice's: "training: {early_stopping: ...} (or epochs: 7)" pasted into a
    # recipe that has a training: mapping already is a duplicate key, and a bare epochs: is refused.
    return (f"training.early_stopping: {{monitor: val_loss, patience: {patience}, restore_best_weights: true}} "
            f"(or training.epochs: {epochs})")


def _regularise_text(view: Diagnoser) -> str:
    """overfitting's regularisation advice, from what the model has: a model with dropout 0.2 and
    L2 0.001 was told to "add dropout layers ({type: dropout, rate: 0.2}) and kernel_regularizer:
    {l2: 0.01}", the dropout it had."""
    dropout = view.context.dropout
    if dropout >= DROPOUT_STRONG:
        more_dropout = None
    elif dropout > 0:
        higher = min(DROPOUT_STRONG, round(dropout + 0.2, 2))
        layer = for_run(view.context, f"{{type: dropout, rate: {higher:g}}}", f"keras.layers.Dropout({higher:g})")
        more_dropout = f"a higher dropout rate ({layer}, now {dropout:g}; rates up to {DROPOUT_STRONG:g} are usual)"
    else:
        # "({type: dropout, rate: 0.2}..0.5)" read as a stray brace.
        layer = for_run(view.context, "{type: dropout, rate: 0.2}", "keras.layers.Dropout(0.2)")
        more_dropout = f"add dropout layers ({layer}; rates of 0.2 to 0.5 are usual)"
    l2 = sorted({penalties["kernel_regularizer"]["l2"] for penalties in (view.context.regularizers or {}).values()
                 if penalties.get("kernel_regularizer", {}).get("l2")})
    if l2:
        least = " at least" if len(l2) > 1 else ""
        penalty = for_run(view.context, f"kernel_regularizer: {{l2: {10 * l2[0]:.3g}}} (now {{l2: {l2[0]:.3g}}}{least})",
                          f"kernel_regularizer=keras.regularizers.L2({10 * l2[0]:.3g}) (now L2({l2[0]:.3g}){least})")
    else:  # where the regulariser goes
        penalty = for_run(view.context, "kernel_regularizer: {l2: 0.01} to the dense or conv2d layers",
                          "kernel_regularizer=keras.regularizers.L2(0.01) to the Dense or Conv2D layers")
    return f"{more_dropout} and {penalty}" if more_dropout else penalty


#: A dropout rate from which dropout is strong: 0.5 is the classic ceiling for hidden layers.
DROPOUT_STRONG = 0.5
#: dropout-too-high: a validation loss under this share of the training loss at the end (with
#: dropout off against on) is the model's own, not noise about the same level.
DROPOUT_VAL_SHARE = 0.95


def underfitting(view: Diagnoser) -> Issue | None:
    """Training ended while both losses were still falling fast: the model was not trained enough."""
    if not view.finished or not curves_ready(view) or view.epochs_run < 4:
        return None
    train = view.epoch_losses(data_only=True)
    chance = chance_level(view)
    if not np.isfinite(train).all() or chance is None or train[-1] < view.t.underfit_level * chance:
        return None
    drop, n = tail_drop(view, train)
    tail = train[-n:]
    if drop < view.t.underfit_tail_improvement:
        return None
    if train[-1] > (1 + view.t.underfit_near_best) * float(np.min(train)):
        # Falling back from a jump, not towards a new best: Adam at 1.0 went 1.54, 2.10, 5.13,
        # 4.40 (635% of chance) and was called undertrained, "train for more epochs".
        return None
    val = view.val_losses(data_only=True)
    held_back = (view.context.dropout >= DROPOUT_STRONG and np.isfinite(val).all() and len(val) == len(train)
                 and float(train[-1]) > float(val[-1]))
    # The validation loss of a handful of rows (or none at all) is no measure of what the model
    # generalises: it neither vetoes the verdict nor is named in it.
    validated = bool(val.size) and np.isfinite(val).all() and len(val) == len(train) and not few_validation_rows(view)
    if validated:
        vtail = val[-n:]
        if not vtail[-1] < vtail[0]:
            return None
        # Most of the training loss's fall missing from the validation loss: the model memorises
        # its rows, it is not short of epochs. train_simple_fixed at batch 64 (80 rows) fell 16%
        # (0.44 -> 0.37) over its last 38 epochs while the validation loss went 0.606 -> 0.602, and
        # was told to train 300 epochs, where its validation loss rose from epoch 119. Not under
        # strong dropout: that training loss, measured with dropout on, does not compare.
        if not held_back and float(vtail[0] - vtail[-1]) < view.t.underfit_val_share * float(tail[0] - tail[-1]):
            return None
    if regularization_dominates(view) is not None:  # its fix (less penalty) comes before longer training
        return None
    lowering, blocked = lr_lowering_found(view), init_blocked_found(view)
    if lowering:  # the learning rate is already too high for this run: raising it contradicts those
        faster = f" once the learning rate is lowered (see {', '.join(lowering)})"
    elif blocked:  # units dead or saturated from the start: their initialisation or inputs, not the rate
        faster = f" once what {', '.join(blocked)} says is fixed (not the learning rate: those units were dead or saturated before the first update)"
    else:
        faster = f" or raise the learning rate ({raised_lr_text(view)})"
    # The data checks found the scale that slows it: standardising comes before more epochs or
    # a larger rate (inputs x1000 ended 20 epochs at 3.6x chance, told to raise the rate).
    unscaled = [what for code, what in (("unscaled-inputs", "inputs"), ("unscaled-targets", "targets"))
                if code in (view.context.check_codes or ()) and not far_values_only(view, what)]
    # Data unscaled only by a few far rows: its check says to look at those rows, and
    # standardising would squash every other row.
    far = [f"unscaled-{what}" for what in ("inputs", "targets") if far_values_only(view, what)]
    first = (f"Standardise the {' and '.join(unscaled)} first ("
             f"{' and '.join(standardize_setting(view.context, what) for what in unscaled)}; see "
             f"{', '.join(f'unscaled-{what}' for what in unscaled)}): badly scaled data is what "
             f"slows the loss. Then: train" if unscaled else "Train")
    if far and not unscaled:
        first = (f"Check the few far rows {' and '.join(far)} name{'s' * (len(far) == 1)} first (not by standardising: that "
                 "would squash every other row). Then: train")
    if not unscaled and found_codes(view, ("initial-loss-too-high",)):
        # A start far above chance that no data check explains is the initialisation's (ReLU
        # layers at random_normal(stddev=1) on the diabetes data ended at 1e5x chance, and were
        # told more epochs, a larger rate, more capacity): that comes first.
        first = ("Fix what initial-loss-too-high says first (a start far above chance: the initialisation or the output's "
                 "scale): that is what slows the loss. Then: train")
    if "targets" in unscaled and targets_scaled_not_centred(view):
        # MAPE and MSLE break on centred targets, and a relu output cannot produce them:
        # unscaled-targets tells to divide them by their scale.
        first = ("Bring the data to a unit scale first (see " + ", ".join(f"unscaled-{what}" for what in unscaled)
                 + "; the targets divided by their scale, not centred, for this loss): badly scaled data is what slows "
                 "the loss. Then: train")
    if view.notes.get("stop_reason") == "stopped":
        # Early stopping (or a callback of the user's) ended it: "train for more epochs" would be
        # undone by the same stop, which fired while both losses still fell.
        more = ("for longer: early stopping (or a callback) ended the run while both losses still fell, so give it more "
                f"patience or a smaller min_delta ({for_run(view.context, 'training.early_stopping', 'the EarlyStopping callback')}), "
                "or have it monitor val_loss,")
    else:
        more = f"for more epochs ({fit_setting(view.context, 'epochs', str(2 * view.planned_epochs))}{schedule_ended_text(view)})"
    # Strong dropout (0.5 and up, the classic ceiling for hidden layers) with a training loss, which
    # is measured with dropout on, above the validation loss, measured with it off: the noise holds
    # the model back, not its size or its epochs. Dropout 0.9 after each hidden layer ended 30
    # epochs at 93% of chance (validation 91%) and was told "raise the learning rate, more capacity".
    if held_back:
        return Issue(
            f"The training loss was still falling when training ended ({drop:.0%} over the last {n} epochs, to "
            f"{format_number(float(tail[-1]))}, {float(tail[-1]) / chance:.0%} of chance) and stays above the "
            f"validation loss ({format_number(float(val[-1]))}): the training loss is measured with dropout on, so "
            f"dropout at rate {view.context.dropout:g} costs the model more than it fits: it is held back by the "
            f"dropout noise, not by its size.",
            f"Lower the dropout rate (now {view.context.dropout:g}; 0.1-0.3 is usual, 0.5 at most) before anything "
            f"else; then {first[0].lower() + first[1:] if unscaled else 'train'} {more} if the loss still falls.",
            {"tail_improvement": drop, "tail_epochs": n, "final_train_loss": float(tail[-1]), "chance_loss": chance,
             "final_val_loss": float(val[-1]), "dropout": view.context.dropout},
            epoch=view.epochs[-1].epoch)
    return Issue(
        f"The training loss was still falling fast when training ended: {drop:.0%} over the last {n} "
        f"epochs (to {format_number(float(tail[-1]))}"
        + f", {float(tail[-1]) / chance:.0%} of chance"
        + f"){', with the validation loss falling too' if validated else ''}: the model is undertrained{penalty_note(view)}.",
        f"{first} {more}{faster}; if the loss then flattens high, give the model more capacity (more units).",
        {"tail_improvement": drop, "tail_epochs": n, "final_train_loss": float(tail[-1]), "chance_loss": chance},
        epoch=view.epochs[-1].epoch)


def _lowered_penalty_text(view: Diagnoser) -> str:
    """The run's penalties a tenth as strong, by layer: ``kernel_regularizer: {l2: 0.1} (now 1) on dense, dense_1``.

    L2 of 1.0 on every layer was told "kernel_regularizer: {l2: 0.001} where it is 0.01", a
    thousandth of its penalty. An example of the kind when the penalties are unknown or of a kind
    whose strength is no ``l1`` / ``l2`` factor. A Python fit's names the Keras regularizer
    (``kernel_regularizer=keras.regularizers.L2(0.1) (now L2(1)) on dense``).
    """
    example = for_run(view.context, "kernel_regularizer: {l2: 0.001} where it is 0.01",
                      "kernel_regularizer=keras.regularizers.L2(0.001) where it is L2(0.01)")
    regularizers = view.context.regularizers
    if not regularizers:
        return example
    layers_by_setting: dict[str, list[str]] = {}
    for layer, penalties in regularizers.items():
        for attribute, factors in penalties.items():
            if not factors:
                return example
            if view.context.recipe:
                lowered = ", ".join(f"{key}: {value / 10:.3g}" for key, value in factors.items())
                now = ", ".join(f"{key}: {value:.3g}" for key, value in factors.items())
                setting = f"{attribute}: {{{lowered}}} (now {{{now}}})"
            else:
                lowered, now = _keras_regularizer({key: value / 10 for key, value in factors.items()}), _keras_regularizer(factors)
                setting = f"{attribute}=keras.regularizers.{lowered} (now {now})"
            layers_by_setting.setdefault(setting, []).append(layer)
    return "; ".join(f"{setting} on {', '.join(layers)}" for setting, layers in layers_by_setting.items())


def _keras_regularizer(factors: dict[str, float]) -> str:
    """``L2(0.1)``, ``L1(0.5)`` or ``L1L2(l1=0.1, l2=0.2)``: the Keras regularizer of ``factors``."""
    if len(factors) == 1:
        ((key, value),) = factors.items()
        return f"{key.upper()}({value:.3g})"
    return "L1L2(" + ", ".join(f"{key}={value:.3g}" for key, value in factors.items()) + ")"


def _what_shrinks(view: Diagnoser) -> str:
    """What the run's penalties pull to 0: the weights, or the layers' outputs for activity penalties."""
    attributes = {attribute for penalties in (view.context.regularizers or {}).values() for attribute in penalties}
    if attributes and attributes <= {"activity_regularizer"}:
        return "the layers' outputs"
    return "the weights and the layers' outputs" if "activity_regularizer" in attributes else "the weights"


def regularization_dominates(view: Diagnoser) -> Issue | None:
    """The regularization penalty is most of the training loss while the data loss stays high."""
    if not view.finished or not curves_ready(view):
        return None
    total = view.epoch_losses()
    penalty = view.train_regularization_values()
    chance = chance_level(view)
    if chance is None or not (np.isfinite(total[-1]) and np.isfinite(penalty[-1])) or total[-1] <= 0:
        return None
    share = float(penalty[-1] / total[-1])
    data = float(total[-1] - penalty[-1])
    evidence = {"penalty_share": share, "penalty": float(penalty[-1]), "data_loss": data, "chance_loss": chance}
    advice = (f"Lower the penalty 10x ({_lowered_penalty_text(view)}), or put it on fewer layers; "
              "then judge the model by its validation loss.")
    # Half the loss is the penalty and the data loss is no better than half of chance: the steps
    # shrink the weights instead of fitting the data (L2 of 1.0 on every layer: 85% of the loss,
    # accuracy 0.51; 0.1: 0.80 where 0.91 without).
    if share >= view.t.penalty_share and data >= view.t.underfit_level * chance:
        return Issue(
            f"The regularization penalty is {share:.0%} of the training loss at the end ({format_number(float(penalty[-1]))} of "
            f"{format_number(float(total[-1]))}) while the loss on the data is {format_number(data)}, {data / chance:.0%} of chance: "
            f"the updates mostly shrink {_what_shrinks(view)} instead of fitting the data.",
            advice, evidence, epoch=view.epochs[-1].epoch)
    # A penalty that won: it was most of the loss for most of the run and drove the weights to
    # ~0, where its value is small (its gradient still balances the data's) and the data loss sits
    # at chance. L2 1.0 on a 10-32-32-1 MLP under Adam: 98% of the loss in epoch 1, under half only
    # from epoch 17 of 20 (18% at the end), data loss 104% of chance, and the findings were
    # "memorises the training rows" and "train longer, raise the rate, more capacity". A data loss
    # clearly below chance (at_chance_train) means the penalty left room to learn: a healthy
    # regularised run starts penalty-heavy too.
    finite = np.isfinite(total) & np.isfinite(penalty) & (total > 0)
    shares = penalty[finite] / total[finite]
    dominated = int(np.sum(shares >= view.t.penalty_share))
    if shares.size == 0 or 2 * dominated < shares.size or data < view.t.at_chance_train * chance:
        return None
    return Issue(
        f"The regularization penalty was at least {view.t.penalty_share:.0%} of the training loss in {dominated} of "
        f"{shares.size} epochs ({float(shares[0]):.0%} in the first): it shrank {_what_shrinks(view)} until the model predicts "
        f"no better than chance (loss on the data {format_number(data)}, {data / chance:.0%} of chance), where it is "
        f"only {share:.0%} of the loss but still holds them near 0.",
        advice, {**evidence, "dominated_epochs": dominated}, epoch=view.epochs[-1].epoch)


#: The verdicts of a loss that stalled or fell too slowly, which a frozen output layer explains.
STALLED_CODES = ("weights-frozen", "loss-at-chance", "plateau", "lr-too-low", "underfitting")


def frozen_output(view: Diagnoser) -> Issue | None:
    """The loss stalled (or fell too slowly) while the layer that makes the outputs was frozen.

    ``model.layers[-1].trainable = False`` (meant for the base below it) leaves the hidden layers
    to learn under a fixed random head: 3 classes ended 20 epochs at 56-60% of chance where the
    same model with its head trainable reached 35%, and the run was told only that it was
    undertrained (more epochs, a larger learning rate).
    """
    frozen = view.context.frozen_outputs
    if not view.finished or not frozen:
        return None
    stalled = found_codes(view, STALLED_CODES)
    if not stalled:
        return None
    names = ", ".join(repr(name) for name in frozen)
    losses = view.epoch_losses(data_only=True)
    last = float(losses[-1]) if losses.size and np.isfinite(losses[-1]) else None
    ended = f" (the training loss ended at {format_number(last)})" if last is not None else ""
    return Issue(
        f"The output layer{'s' if len(frozen) > 1 else ''} {names} {'are' if len(frozen) > 1 else 'is'} frozen "
        f"(trainable=False: none of {'their' if len(frozen) > 1 else 'its'} weights trains) while the layers below "
        f"train, and the loss stalled or fell slowly{ended}, as {', '.join(stalled)} {'says' if len(stalled) == 1 else 'say'}: "
        f"the model learns only what a fixed head lets it, so more epochs or another learning rate help little.",
        f"Make {names} trainable ({'layer' if len(frozen) == 1 else 'each'}.trainable = True before building the Trainer): "
        f"to freeze a pretrained base, set base.trainable = False (or trainable = False on the layers before the head, "
        f"model.layers[:-1]), never on the new output layer; fix this before {', '.join(stalled)}'s advice.",
        {"frozen_outputs": list(frozen), "stalled": stalled}, layer=frozen[0], epoch=view.epochs[-1].epoch if view.epochs else None)


def dropout_too_high(view: Diagnoser) -> Issue | None:
    """Dropout so strong that the training loss (measured with it on) stays near chance while the
    validation loss (with it off) shows the model learned.

    Dropout(0.9) right on the inputs of a binary classifier: the training loss ended at 96% of
    chance, the validation loss at 87% of it (0.79 validation accuracy), and the run got no
    finding: loss-at-chance waits for a validation loss at chance too.
    """
    rate = view.context.dropout
    chance = chance_level(view)
    if not view.finished or not curves_ready(view) or rate < DROPOUT_STRONG or chance is None or chance <= 0:
        return None
    train = view.epoch_losses(data_only=True)
    val = view.val_losses(data_only=True)
    if len(val) != len(train) or len(train) < 3 or not (np.isfinite(train).all() and np.isfinite(val).all()):
        return None
    tail = max(1, len(train) // 3)
    best_train = float(np.min(train[-tail:]))
    if best_train < view.t.at_chance_train * chance:
        return None  # the training rows are fitted, dropout or not
    val_chance = val_chance_level(view) or chance
    final_train, final_val, best_val = float(train[-1]), float(val[-1]), float(np.min(val))
    if not (final_val < DROPOUT_VAL_SHARE * final_train and best_val < view.t.at_chance_validation * val_chance):
        return None
    if found_codes(view, ("loss-at-chance", "nan-loss", "diverging-loss", "lr-too-high")):
        return None  # loss-at-chance names the dropout itself; an overshooting run is another matter
    layer = view.context.dropout_layer
    where = f" of '{layer}'" if layer else ""
    return Issue(
        f"The training loss, measured with dropout at rate {rate:g} on, stayed near chance ({format_number(final_train)}, "
        f"{final_train / chance:.0%} of chance {format_number(chance)}) while the validation loss, with dropout off, reached "
        f"{format_number(best_val)} ({best_val / val_chance:.0%} of its chance level): the model learns, but dropout throws "
        f"away so much of each row that the training steps see mostly noise, and the training loss hides what it learned.",
        # "0.5 at most" told a rate of 0.5 to lower itself to where it already was.
        f"Lower the dropout rate{where} (now {rate:g}; "
        + (f"on the inputs 0.2 at most or none: a rate of {rate:g} there keeps {1 - rate:.0%} of each row's features)."
           if view.context.dropout_on_inputs else
           f"0.1-0.3 is usual{', 0.5 at most' if rate > DROPOUT_STRONG else ''}; on the inputs, 0.2 at most or none)."),
        {"dropout": rate, "dropout_layer": layer, "on_inputs": view.context.dropout_on_inputs, "final_train_loss": final_train,
         "final_val_loss": final_val, "best_val_loss": best_val, "chance_loss": chance}, epoch=view.epochs[-1].epoch)


#: Data-check codes that say the validation rows are not drawn like the training rows.
SPLIT_CODES = ("train-validation-overlap", "validation-class-mismatch", "validation-target-range", "validation-scale-mismatch")
#: Findings that already explain a validation loss below the training loss, or a run whose
#: curves say nothing of it.
VAL_BELOW_EXPLAINED = ("dropout-too-high", "loss-at-chance", "nan-loss", "diverging-loss", "lr-too-high", "oscillating-loss")


def validation_below_training(view: Diagnoser) -> Issue | None:
    """The validation loss ends well below the training loss, and why (an info note).

    "Why is my validation loss lower than my training loss?": the training loss is measured with
    dropout, noise and augmentation on, the validation loss with them off; the training loss is
    an epoch's mean over its steps, the validation loss is measured with the weights at its end;
    or the validation rows are easier than the training ones (another mix, copies of training
    rows). A GaussianNoise(1.0) MLP ended at validation 0.36 against training 0.51 without a word.
    """
    if not view.finished or not curves_ready(view) or few_validation_rows(view):
        return None
    if view.context.summed_loss:
        # A loss summed over each batch's rows reads a batch's rows times their mean: a validation
        # split's short last batch (40 rows in batches of 64, training 160 in 64, 64, 32) reads
        # 69% of the training loss on rows drawn alike, and 61-64% was told "the validation rows
        # may be easier". The two splits' losses are not comparable.
        return None
    train, val = view.epoch_losses(data_only=True), view.val_losses(data_only=True)
    if len(val) != len(train) or len(train) < 3 or not (np.isfinite(train).all() and np.isfinite(val).all()):
        return None
    tail = max(2, len(train) // 3)
    mean_train, mean_val = float(np.mean(train[-tail:])), float(np.mean(val[-tail:]))
    chance = chance_level(view)
    gap = mean_train - mean_val
    if mean_train <= 0 or mean_val > view.t.val_below_train_share * mean_train:
        return None
    if chance is not None and chance > 0 and gap < view.t.val_below_train_min_gap * chance:
        return None
    if found_codes(view, VAL_BELOW_EXPLAINED):
        return None
    final_train, final_val = float(train[-1]), float(val[-1])
    # The epoch's mean lags its end-of-epoch weights by about half the epoch's fall.
    lag = max(0.0, float(train[-2]) - final_train) / 2
    causes, advice = [], []
    layers = view.context.training_only_layers
    if layers:
        named = ", ".join(f"'{name}'" for name in layers[:4]) + (f" and {len(layers) - 4} more" if len(layers) > 4 else "")
        causes.append(f"the training loss is measured with the layers that act in training only on ({named}: dropout, noise or "
                      "augmentation), the validation loss with them off")
    norms, rows = view.context.batch_norms or {}, view.context.batch_size
    if norms and rows is not None and rows < view.t.batchnorm_small_batch:
        # Over a few rows a batch's mean and variance are noisy: in training the layer adds that
        # noise as dropout does, while the validation rows go through its moving averages.
        named = ", ".join(f"'{name}'" for name in list(norms)[:4]) + (f" and {len(norms) - 4} more" if len(norms) > 4 else "")
        causes.append(f"BatchNormalization ({named}) normalises each training batch of {rows} row{'s' if rows != 1 else ''} by "
                      "that batch's own mean and variance, noisy over so few rows, and the validation rows by its moving averages")
    if lag >= 0.5 * max(final_train - final_val, 0.0) and lag > 0:
        causes.append(f"the training loss is each epoch's mean over its steps while the weights still improve (it fell "
                      f"{format_number(2 * lag)} over the last epoch), and the validation loss is measured with the weights at "
                      "the epoch's end")
    val_chance = val_chance_level(view)
    if chance is not None and val_chance is not None and mean_val / val_chance >= view.t.val_below_train_share * mean_train / chance:
        # class_weight (or a sample_weight) weighs the training loss alone: balanced weights on 12%
        # positives put the training rows' chance level near 2x the validation rows', and healthy
        # MLPs ended at 65-70% of the training loss, told the split was suspect (seeds 0-2).
        causes.append(f"a constant prediction scores {format_number(val_chance)} on the validation rows against "
                      f"{format_number(chance)} on the training rows (class_weight, or a sample_weight given to the training rows "
                      "alone, weighs only the training loss; or the splits hold another class or target mix): each against its own chance level, the "
                      f"validation loss is {mean_val / val_chance / (mean_train / chance):.0%} of the training loss")
    split = [code for code in SPLIT_CODES if code in (view.context.check_codes or ())]
    if split:
        causes.append(f"the data checks found the validation rows drawn unlike the training rows ({', '.join(split)})")
    if not causes:
        causes.append("nothing in the model or the curves explains it: the validation rows may be easier than the training "
                      "ones (another class or target mix, less label noise, rows copied from the training rows), or the "
                      "input pipeline adds noise or augmentation to the training rows alone")
        advice.append("Check how the split was made (rows drawn alike and at random, no row in both splits) and compare the "
                      "splits' label shares.")
    compare = ("score the training rows as the validation rows are scored, with the final weights and the training-only layers "
               "off: trainer.evaluate(x_train, y_train) (or the training dataset)")
    advice.insert(0, f"Nothing is wrong in itself; to compare like with like, {compare}." if not split and not advice else
                  f"To see how far the splits differ, {compare}.")
    return Issue(
        f"The validation loss ended below the training loss: {format_number(mean_val)} against {format_number(mean_train)} "
        f"on average over the last {tail} epochs ({mean_val / mean_train:.0%} of it){penalty_note(view)}. Likely why: "
        + "; ".join(causes) + ".",
        " ".join(advice),
        {"mean_val_loss": mean_val, "mean_train_loss": mean_train, "epochs": tail, "final_val_loss": final_val,
         "final_train_loss": final_train, "training_only_layers": list(layers), "epoch_lag": lag, "split_checks": split,
         "batch_norms": list(norms) if rows is not None and rows < view.t.batchnorm_small_batch else []},
        epoch=view.epochs[-1].epoch)


#: Findings of the same run that explain a model ending far worse than a linear fit: how the data
#: was scaled, how the steps went, what the units did, how far training got.
LINEAR_CAUSES = ("weights-frozen", "frozen-output", "lr-too-low", "lr-too-high", "diverging-loss", "exploding-gradients",
                 "oscillating-loss", "dead-relu", "saturated-activations", "vanishing-gradients",
                 "vanishing-gradients-through-time", "regularization-dominates", "dropout-too-high", "initial-loss-too-high",
                 "underfitting", "plateau")
#: Data-check codes that explain it (standardising comes first: see underfitting).
LINEAR_DATA_CAUSES = ("unscaled-inputs", "unscaled-targets")
#: Findings after which the end loss says nothing of what the model learns: the run broke.
LINEAR_BROKEN = ("nan-loss",)


def worse_than_linear(view: Diagnoser) -> Issue | None:
    """A one-output regression that ended far worse than the least-squares linear fit of its inputs.

    Its best validation loss (the training loss without validation rows, and then only without
    dropout, which makes that loss read high) at least
    :attr:`~trainkit.diagnosis.rule_types.Thresholds.linear_worse_factor` times the fit's loss on
    the same rows (made on the training rows before the first step: ``Context.val_linear_loss``,
    ``Context.linear_loss``), where the fit explains a real share of the target and the model ends
    :attr:`~trainkit.diagnosis.rule_types.Thresholds.linear_min_gap` of chance above it. A forecaster ended
    at MSE 0.014 where "next = last" of its window gets 0.0033, and the run got no finding: nothing
    compared the loss with more than the best constant.
    """
    ctx = view.context
    if not view.finished or not curves_ready(view) or ctx.task != "regression" or found_codes(view, LINEAR_BROKEN):
        return None
    if "label-leakage" in (ctx.check_codes or ()):
        # The fit reads the leaked copy of the target too, so it scores near 0: sqrt(y) among the
        # diabetes features put it at 0.015, a model at 0.079 (against 0.53 honestly) was told
        # "Nothing else this run found explains it: train for more epochs", a leaking model tuned on.
        return None
    val = view.val_losses(data_only=True)
    val = val[np.isfinite(val)]
    sample = None  # the rows the fit's loss was measured on, where a dataset's first batches
    if ctx.val_linear_loss is not None and val.size and not few_validation_rows(view):
        model, linear, level, rows = float(np.min(val)), ctx.val_linear_loss, val_chance_level(view), "validation"
        sample = ctx.val_linear_sample_rows
    elif ctx.linear_loss is not None and ctx.dropout == 0:
        # Without validation rows, the training loss; not under dropout, with which that loss is
        # measured, and reads higher than the model's own.
        train = view.epoch_losses(data_only=True)
        train = train[np.isfinite(train)]
        if not train.size:
            return None
        model, linear, level, rows = float(np.min(train)), ctx.linear_loss, chance_level(view), "training"
        sample = ctx.linear_sample_rows
    else:
        return None
    if level is None or not 0 < linear < view.t.linear_explains * level or model < view.t.linear_worse_factor * linear:
        return None
    if model - linear < view.t.linear_min_gap * level:
        return None  # within a sliver of chance of the fit: a model that explains ~all a constant leaves is no training fault
    causes = [code for code in LINEAR_DATA_CAUSES if code in (ctx.check_codes or ())] + found_codes(view, LINEAR_CAUSES)
    bounded = ctx.bounded_output
    at_chance = found_codes(view, ("loss-at-chance",))
    best = "best validation loss" if rows == "validation" else "lowest training loss"
    # A dataset's first batches: said so, as the fit's loss was measured on them alone.
    on = f"the {rows} rows (" if sample is None else \
        f"the first {sample:,} {rows} rows (a sample: the shuffled dataset's first batches; "
    message = (f"The model's {best} was {format_number(model)}, {times_text(model / linear)} the {format_number(linear)} that "
               f"a least-squares linear fit of its inputs gets on {on}fitted on the training rows; "
               f"{linear / level:.0%} of the {'validation ' if rows == 'validation' else ''}chance level {format_number(level)})")
    if at_chance:
        message += (f": it predicts no better than {constant_prediction(view)} (loss-at-chance) where a linear function of its inputs "
                    "does far better, so what holds it back is its training, not the labels.")
    else:
        message += ": it has not learned even what a linear function of its inputs predicts, so something in its training is off."
    parts = []
    if bounded is not None:
        low, high = bounded["low"], bounded["high"]
        span = f"[{format_number(low) if low is not None else '-inf'}, {format_number(high) if high is not None else 'inf'}]"
        parts.append(f"the output layer '{bounded['layer']}' applies {bounded['activation']}, which keeps the predictions in "
                     f"{span} and passes little or no gradient near its bounds: use a linear output (no activation)")
    if causes:
        parts.append(f"fix what {', '.join(causes)} say{'s' if len(causes) == 1 else ''}: "
                     f"{'the likely cause' if len(causes) == 1 else 'the likely causes'} this run found")
    if parts:
        advice = "First, " + "; then ".join(parts) + ". "
    else:
        # Nothing named: what is left is how far the steps got (a forecaster under SGD 1e-3 for 5
        # epochs got no other finding), or the data's scale where the checks could not tell.
        scale = standardise_advice(view)
        advice = (f"Nothing else this run found explains it: {scale + ', then ' if scale else ''}train for more epochs "
                  f"or faster ({raised_lr_text(view)}), and check that the hidden units stay active. ")
    advice += ("A model that cannot beat a linear fit has a training problem, not too little capacity: compare with "
               "a linear model (a single Dense(1)) trained the same way.")
    evidence = {"model_loss": model, "linear_loss": linear, "ratio": model / linear, "chance_loss": level, "rows": rows,
                "causes": causes}
    if sample is not None:
        evidence["linear_rows"] = sample
    if bounded is not None:
        evidence["output_activation"] = bounded["activation"]
    return Issue(message, advice, evidence, epoch=view.epochs[-1].epoch)
