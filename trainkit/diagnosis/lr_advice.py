"""The learning rate advice names: the run's rate, and the one lower (or higher) rate that every
finding of a run advising to lower (or raise) it names, from the measured step sizes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from trainkit.diagnosis.setting_text import optimizer_key, optimizer_setting, rate_setting
from trainkit.diagnosis.stat_reads import kernel_stats
from trainkit.diagnosis.update_ratios import early_update_ratio, largest_update_ratio
from trainkit.stat_names import (
    LEARNING_RATE,
    UPDATE_RATIO,
    WEIGHT_NORM,
    grad_norm_name,
    variable_of,
    weight_norm_name,
)

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser


def learning_rate_of(view: Diagnoser) -> float | None:
    """The run's learning rate: the largest the steps used, or the configured one where larger.

    The largest, not the first: a warm-up starts at 0 (the advice said to raise the rate to 0),
    and a decaying schedule's largest is its first. Not the configured one alone: a callback that
    raises a number rate (a LearningRateScheduler warm-up from 1e-5 to 0.4, a one-cycle policy)
    left the optimizer's starting rate there, and lr-too-high told a run diverging at 0.4 to set
    7.6e-07 (now 1e-05). ``ReduceLROnPlateau`` only lowers it: the largest is the configured one.
    """
    values = view.epoch_values(LEARNING_RATE, "maximum")
    if not np.isfinite(values).any():  # no epoch ended yet
        values = view.first_values(LEARNING_RATE)
    values = values[np.isfinite(values)]
    used = float(values.max()) if values.size else None
    lr = view.context.learning_rate
    return used if lr is None or (used is not None and used > lr) else lr


def _lr_text(view: Diagnoser, factor: float) -> str:
    lr = learning_rate_of(view)
    if lr is None:
        return f"multiply the learning rate by {factor:g}"
    return f"{rate_setting(view.context, lr * factor, lr)} (now {lr:.3g})"


def _lr_to(view: Diagnoser, value: float) -> str:
    # For a recipe run the dotted key ``--set`` takes (``optimizer.learning_rate``), which a recipe
    # whose optimizer is a bare name accepts too. An optimizer mapping (``optimizer: {name: sgd,
    # learning_rate: 0.02}``) pasted over the recipe's dropped its other settings (momentum: 0.9).
    # A Python fit's names the optimizer's argument, or its schedule's (see rate_setting).
    lr = learning_rate_of(view)
    now = f" (now {lr:.3g})" if lr is not None else ""
    return f"{rate_setting(view.context, value, lr)}{now}"


#: Optimizers whose step is ~learning_rate per weight: 1e-3 is their usual ceiling. (Adagrad's
#: first steps are ~the rate and shrink, and so are Ftrl's, an Adagrad with its own accumulator;
#: Adafactor's are the rate relative to the weights' size. Not Adadelta: its step starts
#: ~sqrt(epsilon) whatever the rate, which is meant to be ~1.)
ADAPTIVE = ("adam", "adamw", "nadam", "adamax", "rmsprop", "lion", "adagrad", "ftrl", "adafactor")


def lowered_lr_text(view: Diagnoser) -> str:
    """The one lower learning rate every "lower it" advice of a run names.

    10x lower; lower still when the steps are measured too large, to bring the largest median
    update/weight ratio to ~1% (at most 1000x lower); and for an adaptive optimizer at most
    1e-3 (lr 1.0 -> 0.1 was still 100x Adam's default). One number for all findings: SGD at 2
    was told 0.001 ("Adam's default") by one finding and 0.2 by another.
    """
    lr = learning_rate_of(view)
    if lr is None:
        return _lr_text(view, 0.1)
    target = lr / 10
    ratio = largest_update_ratio(view)
    if ratio is not None and ratio > _HEALTHY_UPDATE_RATIO:
        target = min(target, max(lr * _HEALTHY_UPDATE_RATIO / ratio, lr / 1000))
    if optimizer_name(view) in ADAPTIVE:
        target = min(target, 1e-3)
    return _lr_to(view, target)


def raised_lr_text(view: Diagnoser) -> str:
    """The one higher learning rate every "raise it" advice of a run names.

    From the measured step sizes: steps far below the healthy ~0.1% of the weights get the factor
    that brings them there, others 3x. lr-too-low said 0.001 and underfitting 0.0003 for one run at
    1e-4. An adaptive optimizer's step is ~the rate itself and its useful rates span a few orders
    of magnitude around 1e-3, so it gets at most 10x; plain SGD's step is the rate times the
    gradient, and its useful rates span many (1e-4 to 1), so it gets up to 1000x, the most the
    lowering advice goes down: SGD at 1e-6, steps 2e-7 of the weights, was told 1e-5, which
    would still take steps 5000x too small.
    """
    decayed = rate_cut_short(view)
    if decayed is not None:
        return (f"it fell from {decayed[0]:.3g} to {decayed[1]:.3g} by the last epoch: the schedule, or a callback "
                f"lowering it, took it to ~0 while the loss still had to fall; let it decay more slowly or to a floor")
    shrink = clipping_shrink(view)
    if shrink is not None and view.context.clipping:
        key, value = next(iter(view.context.clipping.items()))
        return (f"the gradient clipping cuts the steps to 1/{shrink:.0f} of what the rate gives: raise {optimizer_key(view.context, key)} "
                f"to {value * shrink:.3g} (now {value:.3g}) instead")
    if epsilon_share(view) is not None:
        return (f"{optimizer_name(view)}'s epsilon ({view.context.epsilon:.3g}) is far above the gradients and sets the steps: "
                f"lower {optimizer_key(view.context, 'epsilon')} to 1e-07 (Keras's default) instead")
    lr = learning_rate_of(view)
    if lr is None:
        return _lr_text(view, 10.0)
    ratio = early_update_ratio(view, at_peak_rate=True)[0]  # the steps ``lr`` (the largest rate) gives
    factor = 3.0
    if ratio is not None and math.isfinite(ratio) and ratio > 0:
        most = 10.0 if optimizer_name(view) in ADAPTIVE else 1000.0
        factor = min(most, max(3.0, _SMALL_UPDATE_RATIO / ratio))
    return _lr_to(view, lr * factor)


def decayed_rate(view: Diagnoser) -> tuple[float, float] | None:
    """The run's largest learning rate and its last epoch's, when the rate itself fell to ~0 during
    the run (a schedule, ReduceLROnPlateau); ``None`` otherwise.

    The step sizes measured over the first steps then say nothing about the rate that stalled the
    run: SGD on ExponentialDecay(0.5, 10, 1e-3), flat from epoch 2, was told to raise the rate to
    241 (now 0.5). ``None`` unless the epochs' mean rate over the second half of the run was mostly
    below :data:`_DECAYED_FRACTION` of the largest (a cosine decay to 0 over the run is not: at
    three quarters of it the rate is still 15% of its peak).
    """
    means = view.epoch_values(LEARNING_RATE)
    finite = means[np.isfinite(means)]
    if finite.size < 2:
        return None
    largest = view.epoch_values(LEARNING_RATE, "maximum")
    peak = float(np.nanmax(largest)) if np.isfinite(largest).any() else float(finite.max())
    late = finite[len(finite) // 2:]
    if not (peak > 0 and float(np.median(late)) < _DECAYED_FRACTION * peak):
        return None
    return peak, float(finite[-1])


#: A rate below this fraction of the run's largest, over most of the run's second half, decayed to ~0.
_DECAYED_FRACTION = 0.01


#: Each Keras schedule's argument that sets how many steps its decay takes.
_SCHEDULE_LENGTH = {"CosineDecay": "decay_steps", "ExponentialDecay": "decay_steps", "InverseTimeDecay": "decay_steps",
                    "PolynomialDecay": "decay_steps", "PiecewiseConstantDecay": "boundaries"}
#: Keras schedules that start again after each decay: a run that ended low ended mid-cycle, and
#: epochs added past it train at a restarted rate, not at the end rate.
_RESTARTING = frozenset({"CosineDecayRestarts"})
#: A schedule whose last epoch ran under this fraction of its largest rate has (about) run its course.
_ENDED_FRACTION = 0.1


def schedule_ended_text(view: Diagnoser) -> str:
    """``, with the CosineDecay schedule's decay_steps raised in proportion (...)`` for advice to
    train for more epochs, when the run's schedule ended it under :data:`_ENDED_FRACTION` of its
    largest rate; ``""`` otherwise (no schedule, or one still at a working rate).

    A schedule counts steps, not the epochs of ``fit``: past its ``decay_steps`` a ``CosineDecay``
    stays at its end rate (0 by default), so CosineDecay(3e-5, decay_steps=3000) over 300 epochs
    of 10 steps, told "train for more epochs", would have run the added epochs at a rate of 0.
    """
    if view.context.schedule is None or view.context.schedule in _RESTARTING:
        return ""
    means = view.epoch_values(LEARNING_RATE)
    largest = view.epoch_values(LEARNING_RATE, "maximum")
    if not (np.isfinite(means).any() and np.isfinite(largest).any()):
        return ""
    peak, last = float(np.nanmax(largest)), float(means[np.isfinite(means)][-1])
    if not (peak > 0 and last < _ENDED_FRACTION * peak):
        return ""
    argument = _SCHEDULE_LENGTH.get(view.context.schedule)
    if argument is None:  # a schedule of one's own: no argument of it is known by name
        where = f"the step counts of your {view.context.schedule} schedule"
    else:
        where = (f"optimizer.learning_rate.config.{argument}" if view.context.recipe
                 else f"the {view.context.schedule} schedule's {argument}")
    share = f"{last / peak:.0%}" if last >= 0.01 * peak else "under 1%"
    return (f", with {where} raised in proportion: its rate ended at {last:.3g}, {share} of its largest "
            f"{peak:.3g}, and epochs added past the schedule's end run at that rate or lower")


def rate_cut_short(view: Diagnoser) -> tuple[float, float] | None:
    """:func:`decayed_rate` where the rate fell to ~0 while the loss was still falling: the decay,
    not the model, stopped the run; ``None`` otherwise.

    Not when the loss had already stopped falling (less than ``at_chance_band`` over its last
    ``sustained_epochs`` epochs) at the last epoch whose rate was :data:`_DECAYED_FRACTION` of the
    largest or more: ``ReduceLROnPlateau`` lowers the rate because the loss stopped. A linear model
    on noisy labels, flat at 0.886 (0.909, 0.890, 0.888 at 0.05, 0.005, 0.005) and cut 10x an epoch
    down to 5e-14, was told its plateau came from a rate "taken to ~0 while the loss still had to
    fall". A run with fewer epochs than that at a working rate showed no sign of where it settles.

    Nor when the validation loss had stopped improving there (no new best over those epochs, where
    it was measured at every epoch up to there): ``ReduceLROnPlateau`` watches ``val_loss`` unless
    told otherwise, and more steps at the full rate would only have fit the training rows further.
    An overfitting MLP, its validation loss 0.440 -> 0.464 while the training loss fell 0.28 ->
    0.15, cut 10x an epoch from 3e-3, was told its training plateau came from a rate cut short. A
    validation loss still setting new bests, however slowly, is still learning.
    """
    decayed = decayed_rate(view)
    if decayed is None:
        return None
    if rate_cut_while_learning(view) is not None:
        return decayed
    rates, losses = view.epoch_values(LEARNING_RATE), view.epoch_losses()
    n = min(len(rates), len(losses))
    working = np.flatnonzero(np.isfinite(rates[:n]) & (rates[:n] >= _DECAYED_FRACTION * decayed[0]))
    last = int(working[-1]) if working.size else -1
    if last < view.t.sustained_epochs:
        return decayed
    before = float(losses[last - view.t.sustained_epochs])
    if not float(losses[last]) < before - view.t.at_chance_band * abs(before):
        return None
    val = view.val_losses()[:last + 1]
    start = last - view.t.sustained_epochs + 1  # the epochs of the window after its first
    if val.size == last + 1 and np.isfinite(val).all() and float(val[start:].min()) >= float(val[:start].min()):
        return None
    return decayed


#: An epoch whose rate is this share of the one before's or less was cut (a ReduceLROnPlateau's
#: factor is 0.1 by default, 0.5 at most in common use); a smooth decay falls far less an epoch.
_CUT_SHARE = 0.5
#: How far above its best the validation loss may read at a cut and still be taken for noise where
#: its rows are unknown (a dataset): the noise of the mean loss over ``n`` rows is ~1/sqrt(n) of it.
_VAL_NOISE_UNKNOWN_ROWS = 0.01


def rate_cut_while_learning(view: Diagnoser) -> dict[str, Any] | None:
    """The learning rate's first cut (an epoch's rate :data:`_CUT_SHARE` of the one before's or
    less) where it came while the training loss still fell (``at_chance_band`` or more over the
    ``sustained_epochs`` epochs up to it) and the validation loss at the cut was within its noise
    of its best so far; ``None`` otherwise.

    ``ReduceLROnPlateau(patience=1)`` on 40 validation rows of digits (Adam 1e-3) cut the rate after
    epoch 6 and at every epoch after, to 1e-27, for a validation loss 0.4-1.6% above its best
    (seeds 0-2) while the training loss still fell 8% an epoch: it ended at validation loss
    1.53-1.63 and accuracy 0.65-0.68, where the same run without the callback reached 1.44-1.47
    and 0.70-0.73, and no finding said so. :func:`rate_cut_short` judged the loss at the last epoch
    whose rate was 1% of the largest, two cuts later, when the cuts had already stopped it. Not a
    validation loss that had risen beyond that noise (overfitting: 0.438 -> 0.465, 6% up), nor one
    whose best lay further back than those epochs (a patience of 5 run out): the callback did
    what it is for. Nor a cut after which the validation loss set a new best beyond that noise: it
    helped.

    Returns:
        ``{"first": the 0-based index of the epoch whose end cut the rate, "cut_epochs": the
        1-based epochs after which it was cut, "train_fall": the training loss's fall per epoch
        before the cut (a share of it), "val_rise": the validation loss at the cut over its best
        before (a share, 0 or more), "val_noise": the share taken for noise, "val_best": that best}``.
    """
    rates, losses = view.epoch_values(LEARNING_RATE), view.epoch_losses()
    n = min(len(rates), len(losses), len(view.epochs))
    with np.errstate(invalid="ignore"):
        cut = np.isfinite(rates[1:n]) & np.isfinite(rates[:n - 1]) & (rates[1:n] <= _CUT_SHARE * rates[:n - 1])
    cuts = np.flatnonzero(cut)  # i: the rate fell between epochs i and i + 1
    window = view.t.sustained_epochs
    if not cuts.size or int(cuts[0]) < window:
        return None
    first = int(cuts[0])
    before, at = float(losses[first - window]), float(losses[first])
    if not (math.isfinite(before) and math.isfinite(at) and at < before - view.t.at_chance_band * abs(before)):
        return None
    val = view.val_losses()[:first + 1]
    if val.size != first + 1 or not math.isfinite(float(val[first])) or not np.isfinite(val[:first]).any():
        return None
    best = float(np.nanmin(val[:first]))
    if int(np.nanargmin(val[:first])) < first - window:
        # No new best for several epochs before the cut (a patience of 5 that ran out): the
        # validation loss had stopped, which is what the callback is for.
        return None
    rise = max(0.0, (float(val[first]) - best) / max(abs(best), 1e-12))
    rows = view.context.val_rows
    noise = min(view.t.at_chance_band, 1.0 / math.sqrt(rows)) if rows else _VAL_NOISE_UNKNOWN_ROWS
    if rise > noise:
        return None
    after = view.val_losses()[first + 1:]
    after = after[np.isfinite(after)]
    if after.size and float(after.min()) < best - noise * abs(best):
        # A new best beyond the noise after it: the cut helped, as a lower rate does once the
        # steps bounce about a minimum (0.603 -> 0.46 after a cut after epoch 9 of 30, the later
        # cuts as that loss stopped), and the run was told the cuts, not the model, stopped it.
        return None
    return {"first": first, "cut_epochs": [view.epochs[int(i)].epoch + 1 for i in cuts],
            "train_fall": (before - at) / abs(before) / window, "val_rise": rise, "val_noise": noise, "val_best": best}


#: The update/weight ratio a healthy step reaches at least (~0.1-1% is healthy).
_SMALL_UPDATE_RATIO = 1e-3


#: The update/weight ratio a step should stay under (~0.1-1% is healthy).
_HEALTHY_UPDATE_RATIO = 0.01


def clipping_text(view: Diagnoser) -> str:
    """The clipping "clip gradients (...)" advice names: ``optimizer.clipnorm: 1.0``, or for a run
    that clips already, a tenth of its threshold (runs clipping at clipnorm 1.0 were told to add
    clipnorm: 1.0).

    A dotted key for a recipe run, as the learning rate's: a bare ``clipnorm: 1.0`` read as a
    top-level recipe key, which is refused, and an optimizer mapping dropped the recipe's other
    optimizer settings. A Python fit's names the optimizer's argument (``clipnorm=1.0 in the optimizer``).
    """
    clip = view.context.clipping
    key, value = next(iter(clip.items())) if clip else ("clipnorm", None)
    text = optimizer_setting(view.context, key, f"{value / 10:.3g}" if value is not None else "1.0")
    return text if value is None else f"{text} (now {value:.3g})"


def clipping_shrink(view: Diagnoser) -> float | None:
    """How many times smaller than its unclipped step the gradient clipping made a plain (SGD-like)
    optimizer's first steps, where it made them 10x smaller or more; ``None`` otherwise.

    SGD's step without clipping is the rate times the gradient (momentum only makes it larger), so
    the measured update/weight ratio against ``learning_rate * grad_norm / weight_norm`` (the
    gradient norm is measured before clipping) is what the clipping left of it. SGD(0.01,
    clipnorm=1e-4) moved the weights 2.6e-7 of their size a step and was told to raise the rate
    1000x, which still left the steps clipped 5x too small. Not for adaptive optimizers: Adam
    divides the clipped gradient by its own running size, so clipping hardly changes its steps.
    """
    clip = view.context.clipping
    if not clip or optimizer_name(view) in ADAPTIVE:
        return None
    share = _step_share(view, view.first_values(LEARNING_RATE))
    if share is None or not 0 < share <= _CLIPPED_SHARE:
        return None
    return 1.0 / share


def _step_share(view: Diagnoser, rates: np.ndarray) -> float | None:
    """The first steps' update/weight ratios over ``rates * grad_norm / weight_norm`` (a plain
    step at those per-step rates): the median over the steps of each weight matrix, then over the
    matrices; ``None`` when nothing was measured."""
    shares = []
    for name in kernel_stats(view, UPDATE_RATIO):
        var = variable_of(name, UPDATE_RATIO) or ""
        update, grad, weight = (view.first_values(n) for n in (name, grad_norm_name(var), weight_norm_name(var)))
        n = min(len(update), len(grad), len(weight), len(rates))
        with np.errstate(divide="ignore", invalid="ignore"):
            plain = rates[:n] * grad[:n] / weight[:n]
            share = update[:n] / plain
        share = share[np.isfinite(share) & (plain > 0)]
        if share.size:
            shares.append(float(np.median(share)))
    return float(np.median(shares)) if shares else None


#: Steps the clipping left at this share of their unclipped size or less were clipped too tight.
_CLIPPED_SHARE = 0.1


def epsilon_share(view: Diagnoser) -> float | None:
    """For an optimizer whose ``epsilon`` is far above its gradients, the share of the epsilon-bound
    step ``learning_rate * grad_norm / epsilon`` its first steps took (0.3 or more); ``None`` otherwise.

    Adam's step per weight is ``rate * m / (sqrt(v) + epsilon)``: ~the rate while the gradients are
    far above epsilon (Keras's default 1e-7), but ``rate * g / epsilon``, plain SGD's at a rate
    epsilon times smaller, once epsilon dominates. Adam(epsilon=1.0) moved the weights 1.2e-5 of
    their size a step and was told to raise the rate 10x, which left it learning ~10x too slowly.
    The bound is never exceeded; a step near it is one that epsilon, not the gradients' size, set.
    """
    eps = view.context.epsilon
    # Not at or below Keras's default: "lower epsilon to 1e-07" named what the run had, where its
    # gradients themselves were tiny (the review audit).
    if eps is None or not eps > 1e-7:
        return None
    rates = view.first_values(LEARNING_RATE)
    if optimizer_name(view) in ("rmsprop", "adagrad"):
        eps = math.sqrt(eps)  # added under the square root: sqrt(v + epsilon)
    if view.context.beta_2 is not None:
        # Adam's epsilon meets sqrt(v) before v's bias correction, which the rate carries: at step t
        # the bound is rate x sqrt(1 - beta_2^t) x gradient / epsilon (0.03 of it at the first step).
        t = view.first_step + 1 + np.arange(len(rates))
        rates = rates * np.sqrt(1.0 - view.context.beta_2 ** t)
    share = _step_share(view, rates / eps)  # the epsilon-bound step: plain SGD's at rate / epsilon
    return share if share is not None and share >= _EPSILON_BOUND_SHARE else None


#: Steps at this share of the epsilon-bound step or more were set by epsilon (a momentum's
#: first steps are a fraction (1 - beta_1) of it, bias-corrected back to ~1).
_EPSILON_BOUND_SHARE = 0.3


def decayed_weights(view: Diagnoser) -> float | None:
    """The weight matrices' size at the last epoch as a share of their size at the first step
    (median over them), where the optimizer's decoupled ``weight_decay`` shrank them under
    :data:`_COLLAPSED_SHARE`; ``None`` otherwise (or without weight decay).

    AdamW(1e-3, weight_decay=50) shrinks every weight 5% a step: its kernels ended at 0.1-0.4% of
    their starting size, the loss at chance, and the run was told "the labels are unpredictable".
    """
    if view.context.weight_decay is None or not view.epochs:
        return None
    shares = []
    for name in kernel_stats(view, WEIGHT_NORM):
        first, last = view.first_values(name), view.epoch_values(name)
        if first.size and last.size and np.isfinite(first[0]) and np.isfinite(last[-1]) and first[0] > 0:
            shares.append(float(last[-1] / first[0]))
    if not shares or float(np.median(shares)) >= _COLLAPSED_SHARE:
        return None
    return float(np.median(shares))


#: Weight matrices shrunk under this share of their starting size by the decay collapsed (AdamW
#: weight_decay=5 left them at 53-74% and learned; 20 at 7-19%, and the loss rose back to chance).
_COLLAPSED_SHARE = 0.25


def optimizer_name(view: Diagnoser) -> str:
    """The optimizer's name in lower case (``adam`` when unknown)."""
    return (view.context.optimizer or "adam").lower()
