"""Rules on the learning rate: the update/weight ratio of the weight matrices, with the loss trend."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from trainkit.diagnosis.finding_groups import GRADIENT_BLOCKED, LR_LOWERING, found_codes
from trainkit.diagnosis.loss_measures import (
    curves_ready,
    first_losses,
    fresh_start,
    improvement_origin,
    steadily_falling,
)
from trainkit.diagnosis.lr_advice import (
    clipping_shrink,
    clipping_text,
    epsilon_share,
    learning_rate_of,
    lowered_lr_text,
    raised_lr_text,
    schedule_ended_text,
)
from trainkit.diagnosis.number_text import format_number, times_text
from trainkit.diagnosis.rule_types import Issue
from trainkit.diagnosis.setting_text import fit_setting, optimizer_setting, rate_key
from trainkit.diagnosis.task_context import chance_level
from trainkit.diagnosis.update_ratios import (
    early_update_ratio,
    first_steps_update_ratio,
    peak_epoch_update_ratio,
)
from trainkit.stat_names import LEARNING_RATE

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser


def lr_too_high(view: Diagnoser) -> Issue | None:
    """Updates larger than 10% of the weights, with a loss that does not fall."""
    if not view.epochs:
        return None
    early, per_early = early_update_ratio(view)
    first, per_first = first_steps_update_ratio(view)
    if (first or 0.0) > (early or 0.0):
        early, per_early = first, per_first
    peak, per_peak, peak_epoch = peak_epoch_update_ratio(view)
    ratio, per_layer = (early, per_early) if (early or 0.0) >= (peak or 0.0) else (peak, per_peak)
    if ratio is None or (ratio < view.t.lr_high_ratio and not (ratio >= view.t.lr_high_trained_ratio and _undone(view))):
        return None
    losses = view.epoch_losses()
    finite = losses[np.isfinite(losses)]
    nonfinite = view.nonfinite is not None and view.nonfinite.loss_step is not None
    if finite.size == 0 and not nonfinite:
        return None
    first = first_losses(view)
    start = float(first[0]) if first.size else float(finite[0])
    # The loss trend that makes large steps a problem: a spike (3x the first loss), no progress
    # (the best of the last third of the epochs no better than the start, judged like the curves),
    # exploding gradients or a non-finite loss.
    peak = view.max_loss[1] if view.max_loss is not None else start
    spiked = start > 0 and peak >= view.t.lr_high_spike * start
    # 10% of the start's size below it: 0.9 * start of a negative start (a cosine similarity's)
    # was a bar above the start, so a loss stuck where it began was "learning".
    not_learning = finite.size == 0 or (
        curves_ready(view) and float(np.min(finite[-max(1, len(finite) // 3):])) >= start - 0.1 * abs(start))
    # A fit that starts from trained weights (a pretrained base unfrozen for fine-tuning) whose
    # validation loss jumps while its training loss falls: steps of 27-39% of a pretrained base's
    # kernels (Adam 3e-2) took it from 0.45 to 6.6 after one epoch, training loss 0.32 -> 0.001,
    # and nothing was reported. A fresh model's first losses are chance, no such reference.
    val = view.val_losses()
    val_peak = float(np.nanmax(val)) if not fresh_start(view) and np.isfinite(val).any() else None
    val_spiked = val_peak is not None and start > 0 and val_peak >= view.t.lr_high_spike * start
    undone = ratio < view.t.lr_high_ratio  # let in by _undone alone: say so
    if not (undone or nonfinite or spiked or not_learning or val_spiked or view.explosion is not None):
        return None
    worst = max(per_layer, key=lambda k: per_layer[k])
    if undone:
        epoch_loss = float(view.epoch_losses()[0])
        trend = (f"the first epoch's training loss rose to {format_number(epoch_loss)}, {times_text(epoch_loss / start)} the loss the "
                 f"trained weights this fit started from had ({format_number(start)}): steps this large undo what they learned "
                 "(a pretrained base unfrozen at a high rate)")
    elif nonfinite:
        trend = "the loss went NaN"
    elif spiked:
        trend = f"the loss jumped to {format_number(peak)}, {times_text(peak / start)} the first loss ({format_number(start)})"
    elif val_spiked and val_peak is not None and not not_learning and view.explosion is None:
        trend = (f"the validation loss jumped to {format_number(val_peak)}, {times_text(val_peak / start)} the loss the trained weights "
                 f"this fit started from had ({format_number(start)}): steps this large undo what they learned (a pretrained base "
                 f"unfrozen at a high rate)")
    else:
        now = format_number(float(finite[-1])) if finite.size else "NaN"
        trend = f"the loss is not falling ({format_number(start)} at the first step, {now} in epoch {view.epochs[-1].epoch + 1})"
    return Issue(
        f"Steps change the weights by {ratio:.0%} of their size (median over the weight matrices; "
        f"{worst}: {per_layer[worst]:.0%}), where ~0.1-1% is healthy, and {trend}: the learning rate "
        f"is too high.",
        f"Lower the learning rate ({lowered_lr_text(view)}, which brings the steps to ~1% of the weights), and clip "
        f"gradients ({clipping_text(view)}).",
        {"update_ratio_median": ratio, "update_ratio_by_layer": per_layer, "learning_rate": learning_rate_of(view),
         "initial_loss": start, "peak_loss": peak, "peak_val_loss": val_peak, "peak_epoch": peak_epoch}, layer=worst.rsplit("/", 1)[0], epoch=view.epochs[-1].epoch)


def _undone(view: Diagnoser) -> bool:
    """Whether a fit that starts from trained weights undid them in its first epoch: its training
    loss there :attr:`~Thresholds.lr_high_spike` times the first step's (the trained weights' own
    loss, on this fit's data: no earlier fit's loss on other rows) and by
    :attr:`~Thresholds.lr_high_undone_chance` of chance above it, from a start under half of chance.

    Read from the step losses the fit records anyway: no pass over the data beside them. A fresh
    model's first loss is chance, no measure of what it knew.
    """
    first = first_losses(view)
    chance = chance_level(view)
    losses = view.epoch_losses()
    if fresh_start(view) or not first.size or chance is None or chance <= 0 or not losses.size or not np.isfinite(losses[0]):
        return False
    start, epoch_loss = float(first[0]), float(losses[0])
    return (0.0 <= start < 0.5 * chance and epoch_loss >= view.t.lr_high_spike * start
            and epoch_loss >= start + view.t.lr_high_undone_chance * chance)


def lr_too_low(view: Diagnoser) -> Issue | None:
    """Tiny first updates and a loss that is still falling steadily when training ends; or a
    learning rate of 0 for the whole run."""
    if view.finished and view.epochs_run and _learning_rate_always_zero(view):
        # Adam(0.0) for 6 epochs, loss flat at 177% of chance, had no finding at all: updates of
        # exactly 0 read as "no gradient reaches the weights" below.
        return Issue(
            "The learning rate was 0 for the whole run: the optimizer never changed the weights, so the loss "
            "could not fall.",
            f"Set a learning rate above 0 ({rate_key(view.context)}, e.g. 0.001, Adam's default); with a schedule, "
            "check that it does not start and stay at 0.",
            {"learning_rate": 0.0}, epoch=view.epochs[-1].epoch)
    if not view.finished or not curves_ready(view) or view.epochs_run < 4:
        return None
    # At the run's largest rate: the first steps of a warm-up measure a fraction of it.
    ratio, per_layer = early_update_ratio(view, at_peak_rate=True)
    if ratio is None or ratio >= view.t.lr_low_ratio:
        return None
    # Updates of ~0 (no gradient flows), or units found dead or saturated, or a vanishing
    # gradient: the steps are small because the gradients are, and a larger learning rate
    # contradicted those findings' advice (dead-relu: lower it). Those findings carry the fix.
    if ratio < view.t.lr_low_min_ratio or found_codes(view, (*LR_LOWERING, *GRADIENT_BLOCKED)):
        return None
    losses = view.epoch_losses()
    if not np.isfinite(losses).all():
        return None
    # Against the loss's size: a negative loss (cosine similarity falling from -0.10 to -0.11)
    # divided by 1e-12 read as a fall of 10^10 %, and never as too slow.
    improvement = (float(losses[0]) - float(losses[-1])) / max(abs(float(losses[0])), 1e-12)
    if not steadily_falling(losses) or improvement >= view.t.lr_low_max_improvement:
        return None
    chance = chance_level(view)
    origin = improvement_origin(view, float(losses[0]), chance)
    if (origin - float(losses[-1])) / max(abs(origin), 1e-12) >= view.t.lr_low_max_improvement:
        return None  # a fit from trained weights that were already far below chance: a fine-tune's small steps
    if chance is not None and float(losses[-1]) < view.t.collapse_fraction * chance:
        # A loss at 2e-9 against a chance level of 0.69 (a model that started at the answer): its
        # steps are tiny because its gradients are, and a larger rate has nothing left to speed up.
        return None
    band = view.t.at_chance_band * (chance or 0.0)
    if chance is not None and float(losses[0]) > chance + band and abs(float(losses[-1]) - chance) <= band:
        return None  # fell onto chance from above and stays there: nothing learned that a larger rate would speed up
    measured = early_update_ratio(view)[0]
    if measured is not None and measured < (1 - _WARM_UP_SHORTFALL) * ratio:
        # A warm-up: its first steps measured a fraction of the rate that is judged. A decaying
        # schedule's first steps run within a few % of its peak (ExponentialDecay's 32 steps lost
        # 1%): no warm-up to name, and the steps are quoted as measured.
        head = (f"At the run's largest learning rate ({learning_rate_of(view):.3g}) the first steps would change the weights by "
                f"only {ratio * 100:.2g}% of their size (median over the weight matrices; they ran at a warm-up's lower rates "
                f"and changed them by {measured * 100:.2g}%)")
    else:
        head = (f"The first steps changed the weights by only {(measured or ratio) * 100:.2g}% of their size (median over the "
                f"weight matrices)")
    evidence = {"update_ratio_early": ratio, "update_ratio_by_layer": per_layer, "learning_rate": learning_rate_of(view),
                "loss_improvement": improvement}
    shrink = clipping_shrink(view)
    if shrink is not None and view.context.clipping:
        # The clipping, not the rate, made the steps small: a larger rate only scales the clipped
        # gradient, and the advice's 1000x still left SGD(clipnorm=1e-4) 5x too slow.
        key, value = next(iter(view.context.clipping.items()))
        return Issue(
            f"{head} and the loss is still falling steadily when training ends, having fallen only "
            f"{improvement * 100:.2g}% ({format_number(float(losses[0]))} to {format_number(float(losses[-1]))}): the "
            f"gradient clipping ({key} {value:.3g}) cut the steps to 1/{shrink:.0f} of what the learning rate gives the "
            f"measured gradients, which are {shrink:.0f}x larger than the threshold lets through.",
            f"Raise the clipping threshold ({optimizer_setting(view.context, key, f'{value * shrink:.3g}')}, the gradients' measured size, or "
            f"more) or remove it; clipping is meant to cut rare spikes, not every step.",
            {**evidence, "clipping": dict(view.context.clipping), "clipping_shrink": shrink}, epoch=view.epochs[-1].epoch)
    if epsilon_share(view) is not None:
        # Adam(epsilon=1.0): the step is rate x gradient / epsilon; raising the rate 10x left it
        # ~10x too slow, where Keras's epsilon gives steps of ~the rate.
        return Issue(
            f"{head} and the loss is still falling steadily when training ends, having fallen only "
            f"{improvement * 100:.2g}% ({format_number(float(losses[0]))} to {format_number(float(losses[-1]))}): the "
            f"optimizer's epsilon ({view.context.epsilon:.3g}) is far above the gradients, so each step is the learning "
            f"rate times the gradient divided by epsilon (plain SGD's at a rate {view.context.epsilon:.3g} times smaller), "
            f"not ~the learning rate.",
            f"Lower the epsilon ({optimizer_setting(view.context, 'epsilon', '1e-07')}, Keras's default; at most ~1e-3 of the gradients' size) rather "
            "than the learning rate.",
            {**evidence, "epsilon": view.context.epsilon}, epoch=view.epochs[-1].epoch)
    return Issue(
        f"{head} and the loss is still falling steadily when training ends, having fallen "
        f"only {improvement * 100:.2g}% ({format_number(float(losses[0]))} to {format_number(float(losses[-1]))}): the learning "
        f"rate is too low for the number of epochs.",
        f"Raise the learning rate ({raised_lr_text(view)}), or train for more epochs "
        f"({fit_setting(view.context, 'epochs')}{schedule_ended_text(view)}).",
        evidence, epoch=view.epochs[-1].epoch)



#: How far below the peak rate's the first steps' measured update ratio must fall to be called a warm-up's.
_WARM_UP_SHORTFALL = 0.1


def _learning_rate_always_zero(view: Diagnoser) -> bool:
    """Whether every step's learning rate was 0 (the ``learning_rate`` statistic's largest value of
    every epoch); without that statistic, whether the rate read when training began was 0 and the
    loss did not fall (a warm-up schedule starts at 0 too, and then the loss falls)."""
    largest = view.epoch_values(LEARNING_RATE, "maximum")
    if np.isfinite(largest).any():
        return bool(np.all(largest[np.isfinite(largest)] == 0.0))
    losses = view.epoch_losses()
    flat = losses.size > 0 and bool(np.isfinite(losses).all()) and float(losses[-1]) >= 0.99 * float(losses[0])
    return view.context.learning_rate == 0.0 and flat
