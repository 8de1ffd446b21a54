"""Rules on the loss curve: collapsed, diverging, oscillating, on a plateau, frozen."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from trainkit.diagnosis.chance_rules import floor_cause
from trainkit.diagnosis.finding_groups import init_blocked_found, lr_lowering_found
from trainkit.diagnosis.fit_rules import DROPOUT_STRONG
from trainkit.diagnosis.loss_measures import (
    curves_ready,
    first_losses,
    fresh_start,
    improvement_origin,
    penalty_note,
)
from trainkit.diagnosis.lr_advice import (
    clipping_text,
    lowered_lr_text,
    raised_lr_text,
    rate_cut_short,
    rate_cut_while_learning,
)
from trainkit.diagnosis.lr_rules import lr_too_low
from trainkit.diagnosis.number_text import format_number, times_text
from trainkit.diagnosis.rule_types import Issue
from trainkit.diagnosis.setting_text import fit_setting
from trainkit.diagnosis.stat_reads import dead_outputs, epoch_of_step
from trainkit.diagnosis.task_context import (
    chance_level,
    chance_text,
    mean_bias_text,
    standardise_advice,
)
from trainkit.diagnosis.update_ratios import early_update_ratio
from trainkit.stat_names import GLOBAL_GRAD_NORM, LOSS

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser


def loss_collapsed(view: Diagnoser) -> Issue | None:
    """The loss is near zero right after the first epoch."""
    if not view.epochs or view.epochs_run > view.t.collapse_epochs:
        return None
    if not fresh_start(view):
        # A trainer's second fit starts with a trained model (as initial_losses says): its low
        # first epochs are the earlier fit's learning, and every continued fit of a model that
        # had learned its task was told "few tasks are solved that fast: the inputs contain the answer".
        return None
    chance = chance_level(view)
    losses = view.epoch_losses(data_only=True)
    loss = float(losses[-1])
    if chance is None and (bool((losses < 0).any()) or bool((first_losses(view) < 0).any())):
        # Without a chance level, "near 0" means solved only for a loss whose floor is 0: one that
        # has gone below it (a cosine similarity, a Poisson loss) has none. A cosine-similarity
        # loss learning well (-0.23 after epoch 2) was "under 2% of the chance level n/a".
        return None
    if chance is not None and loss < 0:
        # Below the floor of a loss with a chance level: the penalty taken out (the mean of its
        # values at the epoch's start and end) overstates one that fell fast within the epoch.
        # L2(1.0) falling 5 -> 1.5 in epoch 1 left -0.46 of a 5.1 loss, read as "collapsed" on a
        # run whose val_loss was 1.6. The penalty at the epoch's end bounds the loss on the data.
        loss = float(view.epoch_losses()[-1] - view.regularization_values()[-1])
    limit = view.t.collapse_fraction * chance if chance is not None else view.t.collapse_absolute
    if not math.isfinite(loss) or loss >= limit:
        return None
    start = first_losses(view)
    # On the data, as the epoch's loss is read: the first step's holds the starting penalty, and
    # MSE * 1e-4 beside an L2 penalty of 0.4 read as a fall from 0.4005 to 5.2e-4.
    if chance is None and start.size and loss >= view.t.collapse_fraction * (float(start[0]) - view.context.regularization):
        # Without a chance level the absolute bar alone reads the loss's scale, not a fall: a custom
        # loss scaled by 1e-4 (MSE * 1e-4: 5.2e-4 at its first step and at every epoch after) was
        # told "few tasks are solved that fast: the inputs contain the answer". A collapse falls to
        # under 2% of where the fresh model started, as it falls under 2% of a chance level.
        return None
    # Where no chance level is known, the bar is an absolute one, said as such.
    under = (f"{view.t.collapse_fraction:.0%} of {chance_text(view)}" if chance is not None else
             f"{format_number(view.t.collapse_absolute)} (no chance level is known for this loss)")
    leaked = [code for code in ("label-leakage", "train-validation-overlap") if code in (view.context.check_codes or ())]
    if leaked:  # the checks already found why: "or the task is easy, which is fine" would hedge against them
        # The fix of each cause found, and only those: a label leak alone was also told to "keep copies
        # of training rows out of the validation rows", an overlap the checks had not found.
        fixes = {"label-leakage": "drop the leaked column", "train-validation-overlap": "keep copies of training rows out of the validation rows"}
        # Validation rows that repeat training rows (or shifted windows of them) do not make the
        # training loss collapse; they keep the validation loss from showing what carries over.
        # "The inputs give the answer away" was said of honest windows split at random.
        why = ("the inputs give the answer away, so the model learned nothing it can use on new rows" if "label-leakage" in leaked else
               "the validation rows repeat training rows, so a low validation loss will not show whether what the model "
               "learned carries over to new rows either")
        return Issue(
            f"The training loss is {format_number(loss)} after epoch {view.epochs[-1].epoch + 1}, under "
            f"{under}: the data checks found {'why' if 'label-leakage' in leaked else 'this'} before the first "
            f"step ({', '.join(leaked)}): {why}.",
            f"Do what {'those findings say' if len(leaked) > 1 else 'that finding says'} ({'; '.join(fixes[code] for code in leaked)}), "
            "then train again and judge the model by its validation loss.",
            {"epoch_loss": loss, "chance_loss": chance, "data_checks": leaked}, epoch=view.epochs[-1].epoch)
    linear = view.context.linear_loss
    if linear is not None and linear < limit:
        # The inputs' least-squares linear fit gets there too: a random walk's next value from its
        # window (0.3% of the walk's variance after 2 epochs) was warned as a collapse to look into.
        return Issue(
            f"The training loss is {format_number(loss)} after epoch {view.epochs[-1].epoch + 1}, under {under}, and a "
            f"least-squares linear fit of the inputs gets {format_number(linear)} on the same rows: the targets are a "
            "near-exact linear function of the inputs (a series' next value from its recent values, a sum of columns), "
            "which the model learned. That is fine when the inputs are known at prediction time.",
            "If an input should not be known when predicting (the target itself, a value from after it), remove it; "
            "otherwise judge the model against that linear fit (worse-than-linear compares them) rather than against chance.",
            {"epoch_loss": loss, "chance_loss": chance, "linear_loss": linear, "data_checks": []},
            epoch=view.epochs[-1].epoch, severity="info")
    if view.context.check_codes is not None and view.context.has_validation:
        # The checks looked for a copied or derived target column and for validation rows copied
        # from training, and found neither: what is left is mostly an easy task (separable blobs
        # trained with BatchNorm reached 1% of chance), so this is a note, not an alarm. Without
        # validation rows the overlap check had nothing to compare, and the message would claim
        # a check that never ran.
        return Issue(
            f"The training loss is {format_number(loss)} after epoch {view.epochs[-1].epoch + 1}, under "
            f"{under}. The data checks found no input column that gives "
            f"the target away and no validation rows copied from training, so the task is likely (near-)deterministic "
            f"and easy (well separated classes, a smooth function of the inputs with little noise), which is fine.",
            "If the task is not known to be that easy, look for what the checks cannot see: an input computed from "
            "the target through several columns, ids or timestamps that encode it, near-copies of training rows among "
            "the validation rows. Trust the validation loss on rows collected separately, not the training loss.",
            {"epoch_loss": loss, "chance_loss": chance, "data_checks": []}, epoch=view.epochs[-1].epoch, severity="info")
    return Issue(
        f"The training loss is {format_number(loss)} after epoch {view.epochs[-1].epoch + 1}, under "
        f"{under}. Few tasks are solved that fast: "
        f"either the inputs contain the answer (a label column or something derived from it, or rows "
        f"repeated across the split), or the task is (near-)deterministic and easy (a smooth "
        f"function of the inputs with little noise, well separated classes), which is fine.",
        "If the task is not known to be that easy: check x for a column equal to or computed from y "
        "(trainkit's label-leakage check lists it) and drop it; make sure the validation rows are not "
        "copies of training rows; check that y is not constant. Trust the validation loss on rows "
        "collected separately, not the training loss.",
        {"epoch_loss": loss, "chance_loss": chance}, epoch=view.epochs[-1].epoch)


def diverging_loss(view: Diagnoser) -> Issue | None:
    """The loss grows: an epoch loss 2x the best so far and still rising, or a 100x step spike."""
    first = first_losses(view)
    # The first loss is the reference of a fresh model only. A trained model's batch losses spread
    # over orders of magnitude near 0: a second fit (or a new Trainer's) of one at 0.02 an epoch
    # "jumped to 0.0833 at step 15, 128x the first loss (0.000649)", an error, while its epoch
    # losses fell. The epoch losses below judge it.
    if view.max_loss is not None and first.size and fresh_start(view):
        step, peak = view.max_loss
        start = float(first[0])
        epoch_losses = view.epoch_losses()
        if view.context.batches_in_order and epoch_losses.size and np.isfinite(epoch_losses[0]):
            # Batches in the data's own order: the first ones are its beginning, no sample of it.
            # An unshuffled rising series (timeseries_dataset_from_array's default) starts near 0
            # and ends ~45: its later batches' losses were "1018x the first loss (2.17)", an error,
            # while every epoch's loss fell (688 to 461). The first epoch's, over all of them, is
            # the reference then, unless a later epoch never came back down: every batch of it,
            # the ones the run began on too, 100x the first loss is a model thrown away, not the
            # data's order (a blow-up within the first epoch raised its loss to the peak's level).
            lows = view.epoch_values(LOSS, "minimum")[1:]
            lows = lows[np.isfinite(lows)]
            if not (lows.size and float(np.max(lows)) > view.t.diverge_step_factor * start):
                start = max(start, float(epoch_losses[0]))
        # A batch of the rows a constant fits worst reads that high with the model at its start:
        # a few far targets (1% at 1000 under Huber) put two of them in one batch at 63, "213x
        # the first loss (0.29)", while the model learned. Only a peak well above it is the model's.
        worst = view.context.worst_batch_loss
        if start > 0 and peak > view.t.diverge_step_factor * start and (worst is None or peak > view.t.diverge_worst_batch_factor * worst):
            return Issue(
                f"The loss jumped to {format_number(peak)} at step {step}, {times_text(peak / start)} the first loss "
                f"({format_number(start)}): the updates overshoot and the model is being thrown away.",
                f"Lower the learning rate ({lowered_lr_text(view)}) and clip gradients ({clipping_text(view)}).",
                {"peak_loss": peak, "initial_loss": start, "ratio": peak / start}, step=step, epoch=epoch_of_step(view, step))
    losses = view.epoch_losses()
    if len(losses) < 3 or not np.isfinite(losses).all():
        return None
    best = float(np.min(losses[:-1]))
    last = float(losses[-1])
    rising = losses[-1] > losses[-2] > losses[-3]
    # "2x the best" means nothing for a best of 0 or below (a cosine-similarity loss is negative):
    # every rise would pass, and a best of 0 divided by zero below.
    # "2x the best" against a level the loss held, the lowest mean of 3 epochs in a row, not one
    # epoch's dip: a noisy epoch loss's lowest is its noise's luck. 16 random-label rows under
    # Dropout(0.9), 2 steps an epoch, jumping 0.47-1.35 epoch to epoch, "rose to 1.022, 2.2x its
    # best (0.4708)" in 5 of 10 seeds (2 so judged); a loss that grows 10x and more passes both.
    # Not from the first epoch's loss, the mean of a fresh model's descent, no level it held: in a
    # 4-epoch run 1.0, 0.2, 0.6, 1.1 (5.5x its best) its only window read 0.6 and hid the rise.
    held = _held_level(losses[1:-1])
    if rising and best > 0 and last > view.t.diverge_factor * max(best, held) and last > losses[0]:
        # A best that is the first epoch's is said once: zero_lr_1 at seed 2 read "13.4x its best
        # (0.7673) and above the first epoch's (0.7673)".
        against = (f"its best, the first epoch's ({format_number(best)})" if best == float(losses[0]) else
                   f"its best ({format_number(best)}) and above the first epoch's ({format_number(float(losses[0]))})")
        return Issue(
            f"The training loss is rising: {format_number(last)} in epoch {view.epochs[-1].epoch + 1}, "
            f"{times_text(last / best)} {against}.",
            f"Lower the learning rate ({lowered_lr_text(view)}), clip gradients ({clipping_text(view)}), or use a decaying schedule."
            if _schedule_advised(view) else
            f"Lower the learning rate ({lowered_lr_text(view)}) and clip gradients ({clipping_text(view)}).",
            {"epoch_loss": last, "best_loss": best, "first_epoch_loss": float(losses[0])}, epoch=view.epochs[-1].epoch)
    return None


def _held_level(losses: np.ndarray, epochs: int = 3) -> float:
    """The lowest mean of ``epochs`` epoch losses in a row (``-inf`` for fewer epochs)."""
    if len(losses) < epochs:
        return -math.inf
    return float(np.min(np.convolve(losses, np.ones(epochs) / epochs, mode="valid")))


def _schedule_advised(view: Diagnoser) -> bool:
    """Whether "use a decaying schedule" is advice for this run: not when the optimizer's rate is a
    schedule already (the lower rate advice names its argument then)."""
    return view.context.schedule is None


def oscillating_loss(view: Diagnoser) -> Issue | None:
    """The epoch loss jumps up and down by large amounts instead of falling."""
    losses = view.epoch_losses()
    if len(losses) < view.t.oscillation_min_epochs or not curves_ready(view):
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
    # level: dropout noise of 0.01 on a loss of 0.05 is no oscillation. Sizes, not signed values:
    # a negative loss (a cosine similarity's, settled near -0.98) made the scale 1e-12, and a
    # jitter of 0.002 "moved by 2e+11% of the loss scale".
    scale = max(abs(float(np.mean(window))), chance_level(view) or abs(float(losses[0])))
    amplitude = float(np.mean(np.abs(moves)) / max(scale, 1e-12))
    # A zig-zag that still makes progress (a falling trend) is not an oscillation.
    trend = abs(float(window[-1] - window[0])) / max(float(np.sum(np.abs(moves))), 1e-12)
    if changes < view.t.oscillation_sign_fraction or amplitude < view.t.oscillation_amplitude or trend > view.t.oscillation_max_trend:
        return None
    evidence = {"sign_change_fraction": changes, "relative_amplitude": amplitude, "net_trend": trend, "window_epochs": len(window)}
    # The window's lowest and highest losses, said as a range: "(0.2278 to 0.712)" read as the
    # loss going from one to the other, which the epoch lines (0.3081 ... 0.4528) did not show.
    moved = (f"Over the last {len(window)} epochs the training loss changed direction in {changes:.0%} of the "
             f"epochs, moving by {amplitude:.0%} of the loss scale each time (between {format_number(float(window.min()))} "
             f"and {format_number(float(window.max()))})")
    val = view.val_losses()[-len(window):]
    # The training loss is measured with dropout on, the validation loss with it off: strong dropout
    # whose training loss stays above the validation loss makes the zig-zag itself. Dropout 0.9 after
    # each hidden layer zig-zagged as much at a 10x lower learning rate, and was told to lower it.
    if (view.context.dropout >= DROPOUT_STRONG and len(val) == len(window) and np.isfinite(val).all()
            and float(np.mean(window)) > float(np.mean(val))):
        return Issue(
            f"{moved}, above the validation loss (mean {format_number(float(np.mean(val)))}): the training loss is "
            f"measured with dropout at rate {view.context.dropout:g} on, and that noise, not the step size, makes it "
            f"jump.",
            f"Lower the dropout rate (now {view.context.dropout:g}; 0.1-0.3 is usual, 0.5 at most): a lower learning "
            f"rate does not calm dropout noise.",
            {**evidence, "mean_val_loss": float(np.mean(val)), "dropout": view.context.dropout},
            epoch=view.epochs[-1].epoch)
    return Issue(
        f"{moved}: the updates overshoot the minimum back and forth.",
        f"Lower the learning rate ({lowered_lr_text(view)}){' or use a decaying schedule' if _schedule_advised(view) else ''}; larger batches "
        f"({fit_setting(view.context, 'batch_size')}) also smooth the updates.",
        evidence, epoch=view.epochs[-1].epoch)


def _output_gradient_blocker(view: Diagnoser) -> str | None:
    """The Lambda or custom layer without weights that makes (or feeds) an output, when the
    global gradient norm was exactly 0 at every step of the run; ``None`` otherwise."""
    opaque = view.context.opaque_layers
    if not opaque or bool((np.nan_to_num(view.epoch_values(GLOBAL_GRAD_NORM, "maximum"), nan=1.0) > 0).any()):
        return None
    outputs = view.context.output_layers
    # After the last weights: a Lambda that preprocesses the inputs feeds the outputs too.
    weights = [name for name, init in (view.context.initializers or {}).items() if init.get("layer") == name]
    found = [name for name in opaque if (name in outputs or any(view.context.feeds(name, out) for out in outputs))
             and not any(view.context.feeds(name, layer) for layer in weights)]
    return found[-1] if found else None


def weights_frozen(view: Diagnoser) -> Issue | None:
    """The training loss was the same at every epoch: no step changed the weights.

    A ``train_step`` override that never applies its gradients trained "silently" (the audit's
    run: 0.8563 at every epoch, told only that the loss stayed at chance), and so does a learning
    rate of 0 or a model whose trained layers are all frozen.
    """
    if not view.finished or view.epochs_run < view.t.frozen_min_epochs:
        return None
    losses = view.epoch_losses(data_only=True)
    if losses.size < view.t.frozen_min_epochs or not np.isfinite(losses).all():
        return None
    level = float(np.mean(np.abs(losses)))
    spread = float(np.max(losses) - np.min(losses)) / level if level > 0 else math.inf
    if spread > view.t.frozen_spread or lr_too_low(view) is not None:  # a rate of 0: lr-too-low says so
        return None
    evidence: dict[str, Any] = {"final_train_loss": float(losses[-1]), "epochs": int(losses.size), "relative_spread": spread}
    ratio = early_update_ratio(view)[0]
    if ratio is not None and math.isfinite(ratio) and ratio > 0:
        chance = chance_level(view)
        if chance is not None and float(losses[-1]) < view.t.collapse_fraction * chance:
            # The steps move the weights and the loss, already near 0 (2e-9 against a chance level
            # of 0.69), has nowhere left to go: nothing is frozen, and "raise the learning rate"
            # (an error) has nothing to speed up, as lr-too-low leaves such a loss alone.
            return None
        # The optimizer did apply its steps, only too small to show in the loss: SGD(1e-7) was
        # told first to check a train_step override it did not have.
        evidence["update_ratio_early"] = ratio
        return Issue(
            f"The training loss was {format_number(float(losses[-1]))} at every one of the {losses.size} epochs (the epochs "
            f"differ by {spread:.0e} of it): the steps changed the weights by only {ratio * 100:.2g}% of their size "
            f"(median over the weight matrices over the first steps, where ~0.1-1% is healthy), too little to move the loss.",
            f"Raise the learning rate ({raised_lr_text(view)}): the optimizer applies its steps, but at this rate they "
            f"are too small to change anything.", evidence, epoch=view.epochs[-1].epoch)
    skipped = _every_gradient_nonfinite(view)
    if skipped:
        # A LossScaleOptimizer (mixed_float16) skips each step whose gradients are NaN/inf: uint8
        # images into a float16 Conv2D overflowed at all 9 steps of 3 epochs, and the run was told
        # to check a train_step override, the learning rate and trainable layers.
        half = bool(view.context.float16_layers)
        fix = ("build the layers that read the raw inputs with dtype='float32', or use "
               "keras.mixed_precision.set_global_policy('mixed_bfloat16') (float32's range)" if half else
               "lower the learning rate and find what makes the gradients NaN/inf (grad_nonfinite/* names the layers)")
        scale = standardise_advice(view)
        advice = f"{scale}; {fix}." if scale else f"{fix}."
        return Issue(
            f"The training loss was {format_number(float(losses[-1]))} at every one of the {losses.size} epochs: the gradients "
            f"held NaN/inf at every one of the {skipped} steps, so no step was applied"
            + (" (a LossScaleOptimizer, which mixed_float16 uses, skips such a step and halves its loss scale; these "
               "gradients overflowed float16's range, 65,504, at every scale it tried)." if half else "."),
            advice[:1].upper() + advice[1:],
            {**evidence, "nonfinite_gradient_steps": skipped, "float16": half}, epoch=view.epochs[-1].epoch)
    if view.context.layers and view.context.frozen_layers == view.context.layers:
        # No layer has a trainable weight: "a train_step override must apply its gradients" sent
        # the user of a plain fit looking for a step they never wrote.
        return Issue(
            f"The training loss was {format_number(float(losses[-1]))} at every one of the {losses.size} epochs: the model has "
            "no trainable weights (every layer is frozen, or has none), so nothing could change.",
            "Make the layers to train trainable (layer.trainable = True before building the Trainer; when a pretrained base "
            "is frozen, the layers added on top of it must stay trainable).",
            {**evidence, "trainable_weights": 0}, epoch=view.epochs[-1].epoch)
    dead = dead_outputs(view)
    if dead:
        # Dense(1, activation="relu") whose input is below 0 for every row outputs 0 and passes no
        # gradient: told to check a train_step override and the learning rate, neither of which
        # the run had wrong.
        return Issue(
            f"The training loss was {format_number(float(losses[-1]))} at every one of the {losses.size} epochs: the output "
            f"layer {', '.join(repr(layer) for layer in dead)} applies a ReLU whose input was below 0 for every row at every "
            "step (a dead output: it predicts 0 for everything), so no gradient reaches any weight and no step changed them.",
            "Make the output linear (a regression's default), or softplus for targets that must stay >= 0, and standardise "
            f"the targets; a relu output needs its bias started where the targets are ({mean_bias_text(view)}), not below 0.",
            {**evidence, "dead_outputs": dead}, layer=dead[0], epoch=view.epochs[-1].epoch)
    blocker = _output_gradient_blocker(view)
    if blocker is not None:
        # Lambda(clip_by_value(t, 0, 1)) on outputs that all lay below 0: every gradient exactly 0,
        # and the advice named a train_step override, the learning rate and trainable layers.
        return Issue(
            f"The training loss was {format_number(float(losses[-1]))} at every one of the {losses.size} epochs: every "
            f"gradient was exactly 0 at every step, and layer '{blocker}', between the last weights and the output, passes "
            "none back (an op without a gradient, or a clip whose range the values lie outside), so no step changed the weights.",
            f"Make '{blocker}' pass a gradient: clip or round in the forward pass only with a straight-through estimator "
            "(x + tf.stop_gradient(tf.clip_by_value(x, lo, hi) - x)), or use a bounded activation (sigmoid, tanh) scaled to "
            "the range instead of a clip.",
            {**evidence, "blocking_layer": blocker}, layer=blocker, epoch=view.epochs[-1].epoch)
    return Issue(
        f"The training loss was {format_number(float(losses[-1]))} at every one of the {losses.size} epochs (the epochs "
        f"differ by {spread:.0e} of it, summing in another order): no step changed the weights.",
        "Check that the step updates the weights: a train_step override must apply its gradients "
        "(self.apply_gradients(gradients, variables, loss), or the optimizer's apply); the learning rate "
        "must be large enough to move them (a rate of 1e-9 moves nothing either); the layers to train must "
        "be trainable.",
        evidence, epoch=view.epochs[-1].epoch)


def _every_gradient_nonfinite(view: Diagnoser) -> int:
    """The steps whose global gradient norm was read when it was NaN/inf at every one of them, else 0.

    Read steps, not the epochs' steps: ``trainkit diagnose`` of a run with ``scalars_every`` reads
    every n-th step. An epoch's mean is NaN when it read no finite norm.
    """
    if GLOBAL_GRAD_NORM not in view.names:
        return 0
    j = view.names.index(GLOBAL_GRAD_NORM)
    if any(j >= len(epoch.nonfinite) or j >= len(epoch.mean) or not np.isnan(epoch.mean[j]) for epoch in view.epochs):
        return 0
    return int(sum(epoch.nonfinite[j] for epoch in view.epochs))


def plateau(view: Diagnoser) -> Issue | None:
    """The loss stopped improving early, at a level far above where it started to fall."""
    if not view.finished or not curves_ready(view) or view.epochs_run < 6:
        return None
    losses = view.epoch_losses(data_only=True)
    if not np.isfinite(losses).all():
        return None
    chance = chance_level(view)
    half = len(losses) // 2
    start, middle, last = float(losses[0]), float(losses[half]), float(losses[-1])
    if start <= 0 or chance is None or last >= view.t.at_chance_train * chance:
        return None
    # Improvements are measured towards the loss's floor: label smoothing 0.4 holds binary
    # cross-entropy above 0.50, and a model there after 0.58 -> 0.508 (13% of the loss, 90% of
    # the way to its floor) was told its training was stuck.
    floor = view.context.loss_floor
    recent = (middle - last) / max(abs(middle - floor), 1e-12)
    origin = improvement_origin(view, start, chance)
    total = (origin - last) / max(origin - floor, 1e-12)
    # A rate that a schedule or callback took to ~0 while the loss still fell stopped it wherever it
    # was, however far it had come: LearningRateScheduler at 1e-8 from epoch 4 of 14, the loss
    # 0.865 -> 0.145 and falling 25% an epoch, then 0.1447 for 11 epochs, had no finding. Not for
    # a loss that got under solved_fraction of chance: a step decay to ~0 that ends a classifier
    # at 0.012 (1.7% of chance) fine-tuned a solved task, it did not stop one.
    cut = rate_cut_short(view) if last >= view.t.solved_fraction * chance else None
    if recent >= view.t.plateau_improvement or (total >= view.t.plateau_total_improvement and cut is None):
        return None
    if _validation_still_improving(view, losses):
        return None
    evidence = {"first_epoch_loss": start, "mid_loss": middle, "final_loss": last, "recent_improvement": recent, "loss_floor": floor}
    if cut is not None and total >= view.t.plateau_total_improvement:
        # A cut at a new validation best (a step schedule's) is told as before; one at an epoch
        # that only read a little worse, or by a ReduceLROnPlateau, as its patience's doing.
        early = rate_cut_while_learning(view)
        if early is not None and (view.context.rate_plateau is not None or early["val_rise"] > 0):
            return _rate_cut_too_soon(view, last, recent, total, cut, early, evidence)
        return Issue(
            f"The training loss has been flat at {format_number(last)} since about epoch {view.epochs[half].epoch + 1} "
            f"(it improved {recent:.1%} over the second half of the run, {total:.0%} in all): the learning rate fell "
            f"from {cut[0]:.3g} to {cut[1]:.3g} while the loss was still falling, and the steps stopped there.",
            "Let the learning rate decay more slowly or to a floor (a schedule's decay_steps counts optimizer steps, not "
            "epochs; a callback lowering it, ReduceLROnPlateau, needs a min_lr), or stop training where the rate ends.",
            {**evidence, "learning_rate_peak": cut[0], "learning_rate_last": cut[1]}, epoch=view.epochs[half].epoch)
    lowering, blocked = lr_lowering_found(view), init_blocked_found(view)
    if lowering:
        rate = f"lower the learning rate ({lowered_lr_text(view)}; see {', '.join(lowering)})"
    elif blocked:  # units dead or saturated from the start: neither rate moves them
        rate = f"fix what {', '.join(blocked)} says first (dead or saturated before the first update: not the learning rate)"
    else:
        rate = f"try a larger learning rate ({raised_lr_text(view)})"
    return Issue(
        f"The training loss has been flat at {format_number(last)} since about epoch {view.epochs[half].epoch + 1} "
        f"(it improved {recent:.1%} over the second half of the run and {total:.0%} in all"
        f"{f', of its distance from the floor {format_number(floor)} that {floor_cause(view)} sets' if floor > 0 else ''})"
        f"{penalty_note(view)}: "
        f"training is stuck, typically behind dead or saturated units or a learning rate that is too small.",
        f"Look at the dead-relu / saturated-activations findings; {rate}, he_normal initialisation with "
        f"relu, or a learning-rate schedule that restarts.",
        evidence, epoch=view.epochs[half].epoch)


def _epochs_text(epochs: list[int]) -> str:
    """``6``, ``6 and 9``, or ``6, 7, 8, ... (24 cuts)`` for the epochs a rate was cut after."""
    if len(epochs) == 1:
        return str(epochs[0])
    if len(epochs) <= 3:
        return f"{', '.join(map(str, epochs[:-1]))} and {epochs[-1]}"
    return f"{', '.join(map(str, epochs[:3]))}, ... ({len(epochs)} cuts)"


def _rate_cut_too_soon(view: Diagnoser, last: float, recent: float, total: float, cut: tuple[float, float],
                       early: dict[str, Any], evidence: dict[str, Any]) -> Issue:
    """plateau for a rate cut (by a ReduceLROnPlateau, mostly) while the training loss still fell
    and the validation loss was within its noise of its best (see :func:`rate_cut_while_learning`).

    The plain "decay more slowly or to a floor" did not say what to change: the callback's
    patience of 1 reacted to one epoch of noise, and a min_lr alone would have left the run at it.
    """
    val = (f"the validation loss at it was {early['val_rise']:.1%} above its best, within its noise "
           f"(~{early['val_noise']:.0%} of it" + (f" over {view.context.val_rows} rows)" if view.context.val_rows else ")"))
    message = (f"The training loss ended flat at {format_number(last)} (it improved {recent:.1%} over the second half of the "
               f"run, {total:.0%} in all): the learning rate was cut "
               f"after epoch {_epochs_text(early['cut_epochs'])}, from {cut[0]:.3g} to {cut[1]:.3g}, while the training loss "
               f"still fell {early['train_fall']:.0%} an epoch before the first cut and {val}: the cuts, not the model, "
               "stopped it.")
    plateau = view.context.rate_plateau
    if plateau is not None:
        waited = f"{plateau['patience']} epoch{'s' * (plateau['patience'] != 1)}"
        monitor = plateau["monitor"]
        if monitor == "val_loss":
            # Keras's min_delta is in the loss's units, not a share of it.
            delta = early["val_noise"] * abs(early["val_best"])
            min_delta = f"set min_delta={delta:.2g} (the noise it should ignore, ~{early['val_noise']:.0%} of the loss)"
        else:
            # min_delta is in the monitored value's units: the validation loss's noise is no
            # number for val_accuracy (mode 'max') or the training loss.
            rows = view.context.val_rows
            noise = (f" (an accuracy over {rows} rows moves by up to ~{0.5 / math.sqrt(rows):.2g} by chance)"
                     if rows and "acc" in monitor else "")
            min_delta = f"set min_delta to the change of '{monitor}' that is noise, in its own units{noise}"
        # What it has already is not asked for again: a cooldown of 2 was told to give it one.
        cooldown = ("" if plateau["cooldown"] >= 2 else
                    "give it a cooldown (2-5 epochs) so one cut shows its effect before the next, ")
        floor = "raise its min_lr to" if plateau.get("min_lr", 0.0) > 0 else "give it a min_lr"
        advice = (f"The ReduceLROnPlateau (monitor='{monitor}', patience={plateau['patience']}, "
                  f"min_delta={plateau['min_delta']:g}, cooldown={plateau['cooldown']}, min_lr={plateau.get('min_lr', 0.0):g}) cut "
                  f"after {waited} of noise: raise its patience (5-10 epochs), {min_delta}, {cooldown}and {floor} "
                  f"~{cut[0] / 100:.3g} (1% of the rate) so it never stops the steps.")
    else:
        advice = ("Cut the learning rate later and less often: whatever lowers it (a callback watching the validation loss, a "
                  "step schedule) should wait several epochs without improvement beyond the loss's noise, and keep a floor "
                  f"(~{cut[0] / 100:.3g}, 1% of the rate).")
    return Issue(message, advice,
                 {**evidence, "learning_rate_peak": cut[0], "learning_rate_last": cut[1], "cut_epochs": early["cut_epochs"],
                  "train_fall_per_epoch": early["train_fall"], "val_rise_at_cut": early["val_rise"], "val_noise": early["val_noise"]},
                 epoch=view.epochs[early["first"]].epoch)


def _validation_still_improving(view: Diagnoser, train: np.ndarray) -> bool:
    """Whether the validation loss, below the training loss at the end, is no plateau by
    plateau's own measures: it improved by ``plateau_improvement`` or more over the second half of
    the run, to within ``underfit_near_best`` of its lowest, or by ``plateau_total_improvement`` or
    more in all (from its first epoch, after a whole epoch of training).

    The training loss is measured with the training-only noise on (dropout, GaussianNoise, random
    augmentation), which can hold it flat while the model still learns: GaussianNoise(0.6) and
    Dropout(0.3) on a binary MLP kept it at 0.61-0.63 over the second half while the validation
    loss fell 0.586 -> 0.552 (0.745 accuracy), and were told "training is stuck"; GaussianNoise(1.0)
    on a linear task held it at 0.51-0.56 (23% below its first epoch) where the validation loss
    went 0.60 -> 0.37 (0.975 accuracy). A validation loss
    above the training loss and falling is no such sign: BatchNormalization's moving statistics
    catching up with a stuck model do that too.
    """
    val = view.val_losses(data_only=True)
    if val.size != train.size or not np.isfinite(val).all() or float(val[-1]) >= float(train[-1]):
        return False
    first, middle, last, best = float(val[0]), float(val[len(val) // 2]), float(val[-1]), float(np.min(val))
    if first > 0 and (first - last) / first >= view.t.plateau_total_improvement:
        return True
    return ((middle - last) / max(abs(middle), 1e-12) >= view.t.plateau_improvement
            and last - best <= view.t.underfit_near_best * abs(best))
