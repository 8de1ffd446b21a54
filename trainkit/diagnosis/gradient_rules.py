"""Rules on gradients: vanishing on the way back (or the signal fading forward), exploding."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from trainkit.diagnosis.loss_measures import still_falling
from trainkit.diagnosis.lr_advice import clipping_text, lowered_lr_text
from trainkit.diagnosis.number_text import format_number, times_text
from trainkit.diagnosis.rule_types import Issue
from trainkit.diagnosis.stat_reads import (
    called_layer,
    epoch_of_step,
    finite_for_epochs,
    hidden_activation_stats,
    kernel_stats,
    layer_of,
)
from trainkit.diagnosis.task_context import (
    chance_level,
    standardise_advice,
    standardise_inputs_advice,
    val_chance_level,
)
from trainkit.stat_names import GRAD_NORM, variable_of, weight_norm_name

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser


def vanishing_gradients(view: Diagnoser) -> Issue | None:
    """The first weight layer gets a gradient 1000x smaller (relative to its weights) than the last."""
    # Not an attention's query or key projection: its gradient passes through the scores'
    # softmax alone, small by design (a healthy Transformer's query read 3e-4x the output's).
    scores = set(view.context.attention_score_layers)
    kernels = [name for name in kernel_stats(view, GRAD_NORM) if layer_of(name) not in scores]
    if len(kernels) < 2 or view.epochs_run < view.t.sustained_epochs:
        return None
    chance = chance_level(view)
    losses = view.epoch_losses(data_only=True)
    if chance is not None and np.isfinite(losses[-1]) and losses[-1] < view.t.solved_fraction * chance:
        return None  # a solved task has tiny gradients everywhere
    forward = _vanishing_forward(view)
    if forward is not None:
        return forward
    n = view.t.sustained_epochs
    # Not a weight layer that gets no gradient at all while a layer's every ReLU unit is dead:
    # the dead layer (or the layer itself) blocks its path, dead-relu's finding. A dead branch
    # beside live ones read "the gradient of the first weight layer is 0, 0x the last layer's",
    # with advice to replace tanh stacks in a ReLU network. A wholly dead gelu/silu layer passes
    # a gradient of ~1e-10 rather than 0: "nearly none" is blocked there.
    blocked = _any_wholly_dead(view, n)
    floor = 0.0 if blocked is None else view.t.vanish_absolute if blocked else np.nextafter(0.0, 1.0)
    alive = [name for name in kernels if not (np.nan_to_num(view.epoch_values(name, "maximum")[-n:], nan=1.0) < floor).all()]
    if len(alive) < 2:
        return None
    first = alive[0]
    # The last weight layer the first one feeds: in a graph of branches (or several outputs) the
    # last in model order may take nothing from it.
    reached = [name for name in alive[1:]
               if view.context.feeds(called_layer(view, layer_of(first)), called_layer(view, layer_of(name)))]
    if not reached:
        return None
    last = reached[-1]
    weights = [weight_norm_name(variable_of(name, GRAD_NORM)) for name in (first, last)]
    # A network gone NaN (on_nan: warn trains on) has no gradient ratio to judge: its "0, n/ax
    # the last layer's" was no finding.
    if not finite_for_epochs(view, [first, last, *weights], n):
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
    layer = layer_of(first)
    blocker = _gradient_blocker(view, first, last, n)
    if blocker is not None:
        return Issue(
            f"The gradient of the first weight layer '{layer}' was exactly 0 at every step for {n} epochs, while layer "
            f"'{layer_of(last)}' after it learns: layer '{blocker}' between them passes no gradient back, so nothing before "
            f"it learns.",
            f"Make '{blocker}' differentiable: an op without a gradient (tf.round, a cast to an integer, argmax, "
            "tf.stop_gradient) passes none (round in the forward pass only, with a straight-through estimator: "
            "x + tf.stop_gradient(tf.round(x) - x)), and a clip passes none where its inputs lie outside its range.",
            {"grad_norm_first": float(g_first[-1]), "grad_norm_last": float(g_last[-1]), "first_layer": first,
             "last_layer": last, "blocking_layer": blocker}, layer=blocker, epoch=view.epochs[-1].epoch)
    return Issue(
        f"The gradient of the first weight layer '{layer}' is {format_number(float(g_first[-1]))}, "
        f"{format_number(float(ratio[-1]))}x the last layer's relative to their weights, for {n} epochs: the "
        f"signal vanishes on the way back and the early layers stop learning.",
        "Use relu (or leaky_relu) with he_normal initialisation instead of saturating tanh/sigmoid "
        f"stacks, {standardise_inputs_advice(view)}add batchnorm layers between the dense layers, or use fewer "
        "layers.",
        {"grad_norm_first": float(g_first[-1]), "grad_norm_last": float(g_last[-1]), "relative_ratio": float(ratio[-1]),
         "first_layer": first, "last_layer": last}, layer=layer, epoch=view.epochs[-1].epoch)


def _gradient_blocker(view: Diagnoser, first: str, last: str, epochs: int) -> str | None:
    """The Lambda or custom layer between the weight layers of ``first`` and ``last`` (gradient
    statistics) that passes no gradient back: ``first``'s gradient exactly 0 at every step of the
    last ``epochs`` epochs, where a vanishing one is small but not 0. ``None`` when there is none.

    A ``Lambda(tf.round)`` between two Dense layers was told to replace tanh stacks and add batchnorm.
    """
    if not view.context.opaque_layers or bool((np.nan_to_num(view.epoch_values(first, "maximum")[-epochs:], nan=1.0) > 0).any()):
        return None
    start, end = called_layer(view, layer_of(first)), called_layer(view, layer_of(last))
    between = [name for name in view.context.opaque_layers if view.context.feeds(start, name) and view.context.feeds(name, end)]
    return between[0] if between else None


def _any_wholly_dead(view: Diagnoser, epochs: int) -> bool | None:
    """Whether some hidden layer had every ReLU unit dead (never active in a batch) at every step
    of the last ``epochs`` epochs: the layers that feed only through it get a gradient of exactly 0
    (``False``), or of nearly 0 when one such layer is a smooth ReLU's (``True``); ``None`` when none was."""
    found: bool | None = None
    for name in hidden_activation_stats(view, "dead_fraction"):
        dead = view.epoch_values(name, "minimum")[-epochs:]
        if len(dead) == epochs and bool((np.nan_to_num(dead, nan=0.0) >= 1.0).all()):
            found = bool(found) or called_layer(view, layer_of(name)) in view.context.smooth_layers
    return found


def vanishing_through_time(view: Diagnoser) -> Issue | None:
    """A recurrent layer's gradient fades 1000x between the last and the first steps of its
    sequence (measured at the end, :mod:`trainkit.time_gradients`), and the loss stayed at chance.

    A fading gradient alone is no fault: a fresh LSTM's fades over 60 steps, and one that needs
    only the last steps learns well. Only beside a loss that never got clearly below chance is it
    a reason the model could not learn.
    """
    measured = [m for m in view.notes.get("recurrent_reach") or () if m.get("ratio", 1.0) < view.t.vanish_ratio]
    chance = chance_level(view)
    if not measured or chance is None or learned_something(view) is not False:
        return None  # whatever the model needed lay within the gradient's reach
    losses = view.epoch_losses(data_only=True)
    best = float(np.nanmin(losses[-max(1, len(losses) // 3):]))
    if best > view.t.at_chance_ceiling * chance:
        # Worse than a constant prediction: a model that reads only the last steps still gets to
        # the target mean, so no fading gradient explains it. An LSTM forecasting an unscaled
        # rising series (mean 23, "next = last" at 0.07) ended at 305% of chance and was told it
        # learned from the last 5 of its 24 steps only, which is all a forecast needs.
        return None
    validated = bool(np.isfinite(view.val_losses(data_only=True)).any())
    judged = view.val_losses(data_only=True) if validated else losses
    if np.isfinite(judged).all() and still_falling(view, judged):
        # Still learning fast: nothing says what it learns lies out of the gradient's reach. A GRU
        # on a random walk's windows (3 epochs, validation 1.16, 0.66, 0.27, "next = last" at
        # 0.003) was told nothing it learned carried over, and worse-than-linear sent it here.
        return None
    worst = min(measured, key=lambda m: m["ratio"])
    layer, steps, reach = worst["layer"], int(worst["steps"]), int(worst["reach"])
    padding = int(worst.get("padded_tail") or 0)
    if padding >= reach:
        return _padding_read_last(worst, padding, validated, best, chance, view.epochs[-1].epoch if view.epochs else None)
    simple = worst.get("kind") == "SimpleRNN"
    return Issue(
        f"'{layer}' reads {steps} steps into one final state{' (from the last, go_backwards)' if worst.get('go_backwards') else ''}, "
        "but the gradient reaching the first tenth it reads is "
        f"{format_number(float(worst['ratio']))}x the last tenth's: the model learns from about the last {reach} steps only, "
        f"and {'nothing it learned carries over to the validation rows' if validated else 'the training loss stayed near chance'} "
        f"(training loss {best / chance:.0%} of chance). A label that depends on earlier steps cannot be learned this way.",
        ("Use LSTM or GRU instead of SimpleRNN, and " if simple else "")
        + f"{'g' if simple else 'G'}ive every step a short path to the loss: return_sequences=True followed by "
        "GlobalAveragePooling1D (or attention) instead of the final state; or feed shorter sequences (the steps that "
        + ("matter), in the order they come (go_backwards=False) when what matters comes last." if worst.get("go_backwards") else
           "matter), reversed (go_backwards=True) when what matters comes first."),
        {"layer": layer, "steps": steps, "ratio": float(worst["ratio"]), "reach": reach, "best_loss": best, "chance_loss": chance},
        layer=layer, epoch=view.epochs[-1].epoch if view.epochs else None)


def _padding_read_last(worst: dict[str, Any], padding: int, validated: bool, best: float, chance: float, epoch: int | None) -> Issue:
    """:func:`vanishing_through_time` for a layer whose gradient reaches only the padding it reads
    last, unmasked: the real steps lie before it, out of reach.

    Token ids padded at the end (``pad_sequences(padding="post")``) into an ``Embedding`` without
    ``mask_zero``: an LSTM read 80 steps, ~60 of them padding after the last real token, stayed
    at chance (0.691) and was told to pool its states or feed shorter sequences, where pre-padding
    or the mask alone reached a validation loss of 0.004 in the same 10 epochs.
    """
    layer, steps, reach = worst["layer"], int(worst["steps"]), int(worst["reach"])
    backwards = bool(worst.get("go_backwards"))
    other_end = "'post'" if backwards else "'pre', its default"
    return Issue(
        f"'{layer}' reads {steps} steps into one final state{' (from the last, go_backwards)' if backwards else ''}, and in most rows "
        f"the last {padding} steps it reads repeat one vector: padding (id 0 through an Embedding without mask_zero) that no mask "
        f"leaves out. Its gradient reaches about the last {reach} steps only ({format_number(float(worst['ratio']))}x at the first tenth), "
        "so the rows' real steps, before the padding, are out of its reach, and "
        f"{'nothing it learned carries over to the validation rows' if validated else 'the training loss stayed near chance'} "
        f"(training loss {best / chance:.0%} of chance).",
        "Mask the padding so that the layer skips it: Embedding(..., mask_zero=True) (with 0 kept for padding only), or a "
        f"Masking layer for padded float sequences; or, for ids from pad_sequences, pad at the other end, so that the real "
        f"steps come last: pad_sequences(..., padding={other_end}) (a TextVectorization always pads at the end: mask it).",
        {"layer": layer, "steps": steps, "ratio": float(worst["ratio"]), "reach": reach, "padded_tail": padding, "best_loss": best,
         "chance_loss": chance},
        layer=layer, epoch=epoch)


def learned_something(view: Diagnoser) -> bool | None:
    """Whether the run learned something that shows: a validation loss clearly below its chance
    level, or without validation a training loss clearly below chance; ``None`` when unknown.

    Not the training loss alone when there is validation: it may be memorised rows (144 of them
    fell to 85% of chance while the validation loss stayed at it).
    """
    chance = chance_level(view)
    losses = view.epoch_losses(data_only=True)
    if chance is None or not np.isfinite(losses).any():
        return None
    val = view.val_losses(data_only=True)
    val = val[np.isfinite(val)]
    if val.size:
        return float(np.min(val)) < view.t.at_chance_validation * (val_chance_level(view) or chance)
    tail = losses[-max(1, len(losses) // 3):]
    tail = tail[~np.isnan(tail)]
    if not tail.size:
        # Its last epochs were NaN (on_nan: warn): unknown. np.nanmin printed numpy's "All-NaN
        # slice encountered" RuntimeWarning into the user's output at the end of such a fit.
        return None
    return float(np.min(tail)) < view.t.at_chance_train * chance


def _vanishing_forward(view: Diagnoser) -> Issue | None:
    """The signal fades going forward: the last hidden layer's outputs vary 1000x less than the
    first's, for several epochs. Every gradient is then tiny alike, which the first/last gradient
    ratio cannot see (10 tanh layers initialised with stddev 0.05: output std 3e-3 at layer 3,
    1.5e-6 at layer 9, the loss at ln 2 from the first step)."""
    # Not a hidden softmax's (an attention's, read inside its layer): its std says how spread its
    # probabilities are, ~1/keys for a long sequence, not how large the signal is (an attention
    # over 512 keys "faded" 3e-4x against the first layer).
    softmax = set(view.context.softmax_layers)
    stds = [name for name in hidden_activation_stats(view, "std") if called_layer(view, layer_of(name)) not in softmax]
    n = view.t.sustained_epochs
    if len(stds) < 3 or not finite_for_epochs(view, [stds[0], stds[-1]], n):
        return None
    first, last = view.epoch_values(stds[0])[-n:], view.epoch_values(stds[-1])[-n:]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = last / first
    if not (np.isfinite(ratio).all() and (ratio < view.t.vanish_ratio).all()):
        return None
    deep, shallow = layer_of(stds[-1]), layer_of(stds[0])
    return Issue(
        f"The outputs of layer '{deep}' vary {format_number(float(ratio[-1]))}x as much as those of layer '{shallow}' (std "
        f"{format_number(float(last[-1]))} against {format_number(float(first[-1]))}), for {n} epochs: the signal fades on the way "
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
        f"The global gradient norm reached {format_number(e.norm)} at step {e.step}, {times_text(e.norm / max(e.baseline, 1e-12))} "
        f"its level in the first steps ({format_number(e.baseline)}): the updates feed on themselves.",
        f"Clip gradients ({clipping_text(view)}), lower the learning "
        f"rate ({lowered_lr_text(view)})" + (f", and {standardise_advice(view)}." if standardise_advice(view) else "."),
        {"grad_norm": e.norm, "baseline_grad_norm": e.baseline, "loss": e.loss}, step=e.step,
        epoch=epoch_of_step(view, e.step))
