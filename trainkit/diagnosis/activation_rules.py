"""Rules on hidden layers' activations that last for epochs: dead ReLUs, saturated tanh/sigmoid units."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from trainkit.diagnosis.loss_measures import fresh_start
from trainkit.diagnosis.lr_advice import lowered_lr_text
from trainkit.diagnosis.number_text import format_number
from trainkit.diagnosis.rule_types import Issue
from trainkit.diagnosis.setting_text import layer_setting, standardize_setting
from trainkit.diagnosis.stat_reads import (
    called_layer,
    dead_outputs,
    epoch_of_step,
    hidden_activation_stats,
    layer_of,
    layer_text,
    sustained_since,
)
from trainkit.diagnosis.task_context import (
    far_values_only,
    standardise_inputs_advice,
    targets_scaled_not_centred,
)
from trainkit.stat_names import NEAR_ZERO

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser


def dead_relu(view: Diagnoser) -> list[Issue]:
    """A ReLU layer with most units never active in a batch, for several epochs (not one of
    :attr:`Context.frozen_layers`, whose units no step of the run changes). A smooth ReLU's unit
    (gelu, silu...) is inactive where its output is near 0 (:data:`~trainkit.stat_names.NEAR_ZERO`)."""
    batch = view.context.batch_size
    if batch is not None and view.context.train_rows:
        # A batch holds no more rows than the data: batch_size 32 on 2 rows is a batch of 2.
        batch = min(batch, view.context.train_rows)
    if batch is not None and batch < view.t.dead_relu_min_batch:
        return []
    issues = []
    # Weights gone NaN read as dead units (a ReLU turns NaN into 0): nan-loss's finding, whose
    # cause is no learning rate ("lower the learning rate" beside a NaN batch of inputs).
    broken_from = epoch_of_step(view, view.nonfinite.step) if view.nonfinite is not None else None
    all_dead: list[str] = []  # the layers whose every unit was dead at the first step, in model order
    restored = _restored_index(view)
    for name in hidden_activation_stats(view, "dead_fraction"):
        at_start = _dead_at_start(view, name)
        inherited = _at_fit_start(view, name, view.t.dead_fraction)
        # Only one that feeds this layer: a wholly dead layer on another branch of a Concatenate
        # takes nothing from this one's inputs, and fixing it first revives nothing here.
        upstream = next((dead for dead in all_dead
                         if view.context.feeds(called_layer(view, dead), called_layer(view, layer_of(name)))), None)
        if at_start == 1.0:
            # A frozen layer's too: a wholly dead frozen base leaves the trainable layer after it
            # only its bias, and he_normal for that layer changed nothing.
            all_dead.append(layer_of(name))
        if called_layer(view, layer_of(name)) in view.context.frozen_layers:
            continue  # frozen, and fed by frozen layers: no step killed its units, none can revive them
        rate = (view.context.dropped_activations or {}).get(called_layer(view, layer_of(name)), 0.0)
        if batch is not None and batch * (1 - rate) < view.t.dead_relu_min_batch:
            # A Dropout right before the activation zeroes a share `rate` of its inputs: a live unit
            # is seen active in about batch * (1 - rate) of a batch's rows, too few to call it dead
            # (Dropout(0.9) at batch_size 8 read 66% "dead" at the first step).
            continue
        values = view.epoch_values(name)
        since = sustained_since(values, view.t.dead_fraction, view.t.sustained_epochs)
        last = len(values) - 1  # the epoch the verdict describes: the last, or the one early stopping restored
        back = _epochs_back(values, view.t.dead_fraction) if since is None and view.finished else 0
        # Epochs of that last spell under the bar that are clearly under it: 49% after 60% is no recovery.
        recovered = int(np.sum(np.nan_to_num(values[len(values) - back:], nan=np.inf) < view.t.dead_recovered_fraction))
        if back and recovered < view.t.sustained_epochs:
            # Judged again at the end: units back for fewer epochs than they had to be dead to be
            # told are no recovery (9 of 16 dead in epochs 2-6, 7 in the 7th and last: withdrawn,
            # where one more epoch at 9 would have kept it), nor units back only to just under the
            # bar (60% dead, then 49% to the end: withdrawn, with nearly half of them still dead).
            since, last = sustained_since(values[:-back], view.t.dead_fraction, view.t.sustained_epochs), len(values) - 1 - back
        if since is None and restored is not None:
            # Judged again at the end (rejudge): units that came back after the epoch whose weights
            # early stopping restored are still dead in the model it returned (12 of 16 dead in
            # epochs 2-5, restored at epoch 5, alive from epoch 6: the report withdrew them).
            since, last = sustained_since(values[: restored + 1], view.t.dead_fraction, view.t.sustained_epochs), restored
        if since is None or (broken_from is not None and view.epochs[since].epoch >= broken_from):
            continue
        layer = layer_of(name)
        sloped = called_layer(view, layer) in view.context.sloped_layers
        smooth = called_layer(view, layer) in view.context.smooth_layers
        fraction = float(values[last])
        evidence = {"dead_fraction": fraction, "since_epoch": view.epochs[since].epoch,
                    "first_epoch_dead_fraction": float(values[0])}
        if last != len(values) - 1:
            evidence["final_dead_fraction"] = float(values[-1])
        if last == restored:
            evidence["restored_epoch"] = view.epochs[last].epoch
        if at_start is not None:
            evidence["first_step_dead_fraction"] = at_start
        if inherited is not None:
            evidence["fit_first_step_dead_fraction"] = inherited
        issues.append(Issue(
            f"{fraction:.0%} of the units of {layer_text(view, layer)} "
            + ("are negative" if sloped else f"output nearly 0 (|a| < {NEAR_ZERO})" if smooth else "output 0")
            + f" for every example of a batch (mean over epoch {view.epochs[last].epoch + 1}"
            + ("" if last == len(values) - 1 else
               ", whose weights early stopping restored: they came back after it, not in the model kept" if last == restored else
               f"; {float(values[-1]):.0%} in the last epoch alone")
            + f"), since epoch {view.epochs[since].epoch + 1}"
            + (f" ({at_start:.0%} already at the first step, before any update)" if at_start is not None else "")
            + (f" ({inherited:.0%} already at this fit's first step, in the trained weights it started from)" if inherited is not None else "")
            + (": on the negative side of a leaky_relu/prelu they pass only the slope's share of the gradient and add no "
               "non-linearity, and on an elu/selu's flat negative tail almost no gradient." if sloped else
               ": their inputs sit far below 0, where a gelu/silu/mish/softplus passes almost no gradient (under 3% of a "
               "live unit's), so they barely learn and barely recover." if smooth else
               ": dead ReLUs pass no gradient and never recover."),
            _inherited_advice("dead", "kill", sloped or smooth) if inherited is not None else
            _after_dead_layer(upstream, _dead_relu_advice(view, at_start is not None, called_layer(view, layer), sloped or smooth))
            if at_start is not None and upstream is not None else
            _dead_relu_advice(view, at_start is not None, called_layer(view, layer), sloped or smooth),
            evidence, layer=layer, epoch=view.epochs[since].epoch))
    return issues + _dead_heads(view)


def _epochs_back(values: np.ndarray, threshold: float) -> int:
    """How many of the last epochs read under ``threshold`` (a NaN as under), counting back from the end."""
    under = ~(np.nan_to_num(values, nan=-np.inf) >= threshold)
    return len(values) if under.all() else int(np.argmin(under[::-1]))


def _restored_index(view: Diagnoser) -> int | None:
    """The index in :attr:`Diagnoser.epochs` of the epoch whose weights early stopping restored at
    the run's end, when it restored an earlier one than the last; else ``None``."""
    stopping = view.notes.get("early_stopping") if view.finished else None
    restored = (stopping or {}).get("restored_epoch")
    if restored is None:
        return None
    index = next((i for i, record in enumerate(view.epochs) if record.epoch == restored), None)
    return index if index is not None and index < len(view.epochs) - 1 else None


def _dead_heads(view: Diagnoser) -> list[Issue]:
    """The outputs of a model with several outputs whose ReLU was inactive for every row of every step.

    Such a head predicts 0 and passes no gradient, so its loss never moves, while the other outputs
    train and the total still falls: ``Dense(1, activation="relu")`` whose bias started at -50
    predicted 0 for 10 epochs (``price_loss`` 2.181 at each) beside a classifier that learned, and
    no finding said so (the output layers are no hidden layers, and the total loss was not frozen).
    With one output, or every output dead, the whole loss is frozen: ``weights-frozen`` names them.
    """
    # An output trained with no loss is asked nothing: its ReLU may stay off.
    outputs = [layer for layer in view.context.output_layers if layer not in view.context.untrained_outputs]
    if len(outputs) < 2 or view.epochs_run < view.t.sustained_epochs:
        return []
    dead = [layer for layer in dead_outputs(view) if layer in outputs]
    if len(dead) == len(outputs):
        return []
    issues = []
    for layer in dead:
        losses = view.log_values(f"{layer}_loss")  # the output's own History key, when it is named after its layer
        stuck = (f" (its loss, {layer}_loss, has stayed at {format_number(float(losses[-1]))})"
                 if losses.size and np.isfinite(losses).all() and float(np.ptp(losses)) <= 1e-6 * max(abs(float(losses[-1])), 1e-12) else "")
        issues.append(Issue(
            f"The output layer '{layer}' applies a ReLU whose input was below 0 for every row at every step since the run "
            f"began{stuck}: a dead output, it predicts 0 for everything and passes no gradient, so it "
            "learns nothing while the other outputs train.",
            "Make this output linear (a regression's default), or softplus for targets that must stay >= 0, and standardise "
            f"its targets; a relu output needs its bias started where its targets are (model.get_layer('{layer}').bias.assign("
            "[y_train.mean()]) after building the model, y_train being this output's targets), not below 0.",
            {"dead_fraction": 1.0, "since_epoch": view.epochs[0].epoch, "dead_output": True}, layer=layer,
            epoch=view.epochs[0].epoch))
    return issues


def _after_dead_layer(upstream: str, own: str) -> str:
    """dead-relu's fix for a layer dead from the start after a layer whose every unit was.

    A bias of -5 on the first of two ReLU layers left the second only its zero bias as input: it
    was told to use he_normal, which changed nothing (the loss stayed at 0.6931) until the first
    layer's bias was fixed, which revived both.
    """
    return (f"Fix layer '{upstream}' first: every one of its units was dead at the first step, so a layer it feeds "
            f"gets only its own bias as input and looks dead too. If this layer is still dead after that: "
            f"{own[0].lower()}{own[1:]}")


def _dead_at_start(view: Diagnoser, name: str) -> float | None:
    """The dead fraction of the run's first step when it was already over the threshold, else ``None``.

    Units dead there were killed by the initialisation (a negative bias, a bad kernel init) or the
    input scale, not by an update.
    """
    return _at_start(view, name, view.t.dead_fraction)


def _dead_relu_advice(view: Diagnoser, from_init: bool, layer: str, sloped: bool = False) -> str:
    """dead-relu's fix: the initialisation first when the units were dead before any update.

    ``sloped``: the layer's activation is already one that is not 0 below 0 (leaky_relu, elu...),
    which "use activation: leaky_relu (or elu)" told it to switch to, or a smooth ReLU (gelu,
    silu...) chosen on purpose: a normalization layer before the activation, which centres each
    unit's input, is named instead.

    Unless the data checks found the inputs unscaled: raw breast-cancer features (all positive,
    areas ~650 next to ratios ~0.01) put half of a he_normal, zero-bias layer's units below 0 for
    every row, and "fix the initialisation: bias zeros and he_normal" named what it already had.
    What the layer's weights start from is known (:attr:`Context.initializers`), so the advice
    prescribes only what it lacks: "use he_normal" was told to a he_normal layer.
    """
    start = initializers_of(view, layer)
    switch = ("a BatchNormalization layer before the activation (it centres each unit's input)" if sloped else
              f"{layer_setting(view.context, 'activation', 'leaky_relu')} (or elu)")
    if from_init and "constant-inputs" in (view.context.check_codes or ()):
        # All-zero x with zero biases: every unit's input is 0 for every row, which reads "dead";
        # "bias_initializer: zeros" named what it already had.
        return ("Fix the inputs first (see constant-inputs): every row holds the same values, so each unit gets the "
                "same input for every row and a unit that starts off (all zeros in, zero bias) stays off. The "
                "initialisation and the learning rate are not the cause.")
    if from_init and "unscaled-inputs" in (view.context.check_codes or ()) and not far_values_only(view, "inputs"):
        return (f"Standardise the inputs first ({standardize_setting(view.context, 'inputs')}; see unscaled-inputs): "
                "with features of large, one-signed scales a unit's input is on the same side of 0 for every row, "
                "so a unit that starts off stays off. If units are still dead after that, check this layer's "
                f"bias_initializer (zeros) and kernel_initializer (he_normal), or use {switch}. "
                "The learning rate did not kill these units: they were dead before the first update.")
    if from_init:
        where = "this layer" if start is None or start["layer"] == layer else f"layer '{start['layer']}' (which this activation follows)"
        changes = []
        if start is None or start["bias"] not in ("zeros", "none"):
            changes.append(layer_setting(view.context, "bias_initializer", "zeros") + " (" + (f"it is {start['bias']}; " if start else "")
                           + "a negative bias switches units off for every input)")
        if start is None or not start["kernel"].startswith("he_"):
            changes.append(layer_setting(view.context, "kernel_initializer", "he_normal") + (f" (it is {start['kernel']})" if start else ""))
        if changes:
            fix = f"Fix the initialisation of {where}: {' and '.join(changes)}; "
        else:
            fix = f"The initialisation of {where} is already what relu needs ({start['kernel']}, bias {start['bias']}): "
        standardise = standardise_inputs_advice(view, f"standardise the inputs ({standardize_setting(view.context, 'inputs')}), ")
        # Nothing before it to be an alternative to (the start right, the inputs scaled): "...
        # bias zeros): or use activation" read as a sentence cut short.
        alternative = "or use" if changes or standardise else "use"
        return (f"{fix}{standardise}{alternative} {switch}. "
                "The learning rate did not kill these units: they were dead before the first update.")
    he = "" if start is not None and start["kernel"].startswith("he_") else f"use {layer_setting(view.context, 'kernel_initializer', 'he_normal')} for this layer, "
    lower = (f"Lower the learning rate ({lowered_lr_text(view)}) — one big update is the usual killer —, {he}"
             f"{standardise_inputs_advice(view)}or use {switch}.")
    if "unscaled-inputs" in (view.context.check_codes or ()):
        # Its inputs fixed first, "standardise the inputs" again after it is no next step.
        lower = f"Lower the learning rate ({lowered_lr_text(view)}) — one big update is the usual killer —, {he}or use {switch}."
        # Images scaled twice (x / 255 and a Rescaling(1 / 255)): units died within 2 epochs and
        # the loss stayed at chance; at the learning rate "lower" named (1e-4) it stayed there too
        # (1.385 of 1.386, seeds 0-2) and lr-too-low told it to raise the rate again.
        return ("Fix the inputs' scale first (see unscaled-inputs): inputs far from 0, or shrunk to nearly 0, give a "
                "unit an input of the same sign for every row, so each step that turns it off turns it off for all of "
                f"them. If units still die after that: {lower[0].lower()}{lower[1:]}")
    # Targets unscaled only by a few far rows are told to check those rows, not to standardise.
    if ("unscaled-targets" in (view.context.check_codes or ()) and not targets_scaled_not_centred(view)
            and not far_values_only(view, "targets")):
        # Raw diabetes targets (mean 152) on sklearn's scaled features: every step pushed the same
        # way for 30 epochs until 53% of a layer was off for every row. Told to lower the rate
        # 10x, the run kept its units and got lr-too-low, its loss still 5x the target variance;
        # standardised targets trained cleanly (MSE 0.51 of the variance).
        return (f"Standardise the targets first ({standardize_setting(view.context, 'targets')}; see unscaled-targets): "
                "targets far from where the output starts make every step push the weights the same way, epoch "
                f"after epoch, until units are switched off for every row. If units still die after that: {lower[0].lower()}{lower[1:]}")
    return lower


def initializers_of(view: Diagnoser, layer: str) -> dict[str, str] | None:
    """How the weights before ``layer``'s activation start (see :attr:`Context.initializers`)."""
    return (view.context.initializers or {}).get(layer)


def saturated_activations(view: Diagnoser) -> list[Issue]:
    """A tanh/sigmoid hidden layer with many outputs in its flat tails, for several epochs.

    Not a hidden softmax (an attention's, read inside its layer): its saturated_fraction counts
    peaked rows, a confident choice, and the advice (relu, glorot, batchnorm) is no fix for one.
    Nor one of :attr:`Context.frozen_layers`, whose outputs no step of the run changes.
    """
    issues = []
    softmax = set(view.context.softmax_layers)
    for name in hidden_activation_stats(view, "saturated_fraction"):
        if called_layer(view, layer_of(name)) in softmax or called_layer(view, layer_of(name)) in view.context.frozen_layers:
            continue
        values = view.epoch_values(name)
        since = sustained_since(values, view.t.saturated_info_fraction, view.t.sustained_epochs)
        if since is None:
            continue
        severe = sustained_since(values, view.t.saturated_fraction, view.t.sustained_epochs) is not None
        layer = layer_of(name)
        fraction = float(values[-1])
        threshold = view.t.saturated_fraction if severe else view.t.saturated_info_fraction
        at_start = _at_start(view, name, threshold)
        inherited = _at_fit_start(view, name, threshold)
        evidence = {"saturated_fraction": fraction, "since_epoch": view.epochs[since].epoch,
                    "first_epoch_saturated_fraction": float(values[0])}
        if at_start is not None:
            evidence["first_step_saturated_fraction"] = at_start
        if inherited is not None:
            evidence["fit_first_step_saturated_fraction"] = inherited
        effect = ("their derivative is ~0, so this layer and the layers below it stop learning" if severe else
                  "not yet enough to stall training, but those units pass almost no gradient")
        issues.append(Issue(
            f"{fraction:.0%} of the outputs of {layer_text(view, layer)} sit in the flat tails of its activation "
            f"(|tanh| > 0.99, or sigmoid outside 0.01..0.99) since epoch {view.epochs[since].epoch + 1}"
            + (f" ({at_start:.0%} already at the first step, before any update)" if at_start is not None else "")
            + (f" ({inherited:.0%} already at this fit's first step, in the trained weights it started from)" if inherited is not None else "")
            + f": {effect}.",
            _inherited_advice("saturated", "saturate") if inherited is not None else
            _saturated_advice(view, at_start is not None, initializers_of(view, called_layer(view, layer))),
            evidence, layer=layer, epoch=view.epochs[since].epoch, severity=None if severe else "info"))
    return issues


def _at_start(view: Diagnoser, name: str, threshold: float) -> float | None:
    """The run's first-step value of ``name`` when it was already at ``threshold`` or more, else ``None``.

    The first step's activations come from the initial weights: units dead or saturated there
    were made so by the initialisation or the input scale, not by an update (unless the model
    was trained before: then its earlier training may have).
    """
    if not fresh_start(view):
        return None
    first = view.first_values(name)
    if first.size == 0 or not np.isfinite(first[0]) or first[0] < threshold:
        return None
    return float(first[0])


def _at_fit_start(view: Diagnoser, name: str, threshold: float) -> float | None:
    """This fit's first-step value of ``name`` when it was at ``threshold`` or more in a fit that
    starts from trained weights (not :func:`fresh_start`: a base unfrozen for fine-tuning, a
    trainer's second fit), else ``None``: units so before its first update were made so by the
    training its weights came from, not by this fit's learning rate."""
    if fresh_start(view):
        return None
    first = view.first_values(name)
    if first.size == 0 or not np.isfinite(first[0]) or first[0] < threshold:
        return None
    return float(first[0])


def _inherited_advice(state: str, verb: str, sloped: bool = False) -> str:
    """dead-relu's or saturated-activations' fix for units already ``state`` at the first step of
    a fit from trained weights (:func:`_at_fit_start`).

    A pretrained base unfrozen under Adam 1e-5 with most of a layer's units dead from the fit's
    first step was told "Lower the learning rate ... one big update is the usual killer" and
    he_normal: this fit's rate did not do it, and a trained layer's initialiser is long gone.
    """
    own = ("a BatchNormalization layer before the activation" if sloped else "leaky_relu") if state == "dead" else \
          "a batchnorm layer before the activation, or relu"
    return (f"These units were already {state} in the weights this fit started from (an earlier fit, or a pretrained base "
            f"unfrozen for fine-tuning): this fit's learning rate did not {verb} them, and lowering it changes nothing. In a "
            f"pretrained base that is how its training left them on this data, which no fine-tuning rate fixes; in a "
            f"model of your own, the earlier training did it: train it again from scratch with a lower learning rate, or "
            f"use {own}.")


def _saturated_advice(view: Diagnoser, from_init: bool, start: dict[str, str] | None) -> str:
    """saturated-activations' fix: the learning rate only when the units saturated after training began.

    Units saturated before the first update were saturated by the initialisation or the inputs:
    a 10-layer tanh stack at random_normal(stddev=1) was told to lower the learning rate first,
    and at a tenth of it stayed saturated, its loss higher (0.55 against 0.45).
    """
    rest = (_glorot_advice(start) + _bias_advice(view, start)
            + "add a batchnorm layer before the activation, or switch the hidden layers to relu with he_normal.")
    if from_init:
        fix = standardise_inputs_advice(view, f"Standardise the inputs ({standardize_setting(view.context, 'inputs')}), ") + rest
        return (fix[0].upper() + fix[1:]
                + " The learning rate did not saturate these units: they were saturated before the first update.")
    return (standardise_inputs_advice(view, "Standardise the inputs, lower") or "Lower") + (
        f" the learning rate ({lowered_lr_text(view)}), {rest}")


def _bias_advice(view: Diagnoser, start: dict[str, str] | None) -> str:
    """"bias_initializer: zeros" for a layer whose bias starts elsewhere (a large bias saturates too)."""
    if start is None or start["bias"] in ("zeros", "none"):
        return ""
    return f"{layer_setting(view.context, 'bias_initializer', 'zeros')} (it is {start['bias']}), "


def _glorot_advice(start: dict[str, str] | None) -> str:
    """"initialise with glorot", unless the layer's kernel already starts so (then nothing)."""
    if start is not None and start["kernel"].startswith("glorot_"):
        return ""
    return "initialise with glorot_uniform/glorot_normal" + (f" (it is {start['kernel']})" if start else "") + ", "
