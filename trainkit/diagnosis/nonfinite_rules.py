"""The ``nan-loss`` rule: the step whose loss became NaN/inf, the first layer that broke, and why."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from trainkit.diagnosis.loss_measures import first_losses
from trainkit.diagnosis.lr_advice import clipping_text, lowered_lr_text
from trainkit.diagnosis.number_text import format_number, times_text
from trainkit.diagnosis.rule_types import Issue
from trainkit.diagnosis.stat_reads import epoch_of_step, layer_of
from trainkit.diagnosis.task_context import standardise_advice
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
)

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser, NonFinite


def nan_loss(view: Diagnoser) -> Issue | None:
    """A non-finite loss: the step, and the first layer whose activations or gradients broke."""
    nf = view.nonfinite
    if nf is None:
        return None
    if nf.loss_step is None:
        return _nonfinite_weights_finite_loss(view, nf)
    layer, where = _first_nonfinite_layer(view, nf.row)
    # Finite outputs and a non-finite loss at the same step: the loss made the NaN, and the
    # gradients it then gave (the output layer's first) were named as its origin, with "lower the
    # learning rate" first for the log(0) of a custom loss on a sigmoid saturated to exactly 1.
    from_loss = nf.step == nf.loss_step and _outputs_finite(nf.row)
    # Keras's own losses clip probabilities: no log(0) there, and "guard custom losses" was the
    # first advice of an MSE that overflowed (SGD at 10 on targets ~5e4, last finite loss 3e22).
    overflow = from_loss and view.context.keras_loss
    # Under XLA a sparse cross-entropy scores a class id past the output's units as NaN, where
    # TensorFlow's kernel raises "Received a label value of 7 ..." (refused as label-format): a
    # dataset's label 7 for 5 units, past the batches the checks read, was told only of NaN/inf.
    sparse_ids = "Sparse" in view.context.loss
    bad_targets = "targets or sample weights hold NaN/inf" + (" or the targets hold a class id outside the output's units"
                                                              if sparse_ids else "")
    if overflow:
        layer = None
        origin = (f" The model's outputs were finite at that step, and {view.context.loss} is Keras's own loss (its "
                  "cross-entropies clip probabilities: no log(0)): the loss overflowed float32 (an error past ~1.8e19 squares to inf), or that "
                  f"step's {bad_targets}.")
    elif from_loss:
        layer = None
        origin = (" The model's outputs were finite at that step: the loss computation itself produced it (log(0) of a "
                  "probability saturated to exactly 0 or 1, a division by zero, an overflow), or that step's targets or "
                  "sample weights hold NaN/inf.")
    elif layer:
        origin = f" The first non-finite values appeared at step {nf.step} in {where}."
    elif any(n == GLOBAL_GRAD_NORM or variable_of(n, GRAD_NORM) or activation_stat_of(n) for n in nf.row):
        origin = (" Every layer's activations and gradients were still finite: the loss computation itself "
                  "produced it (log(0), a division by zero, an overflow in a custom loss).")
    else:
        origin = ""
    # Under mixed_float16 a layer's outputs overflow at 65,504: told only to standardise the inputs
    # and look at the initial weights, a model that fits float32's range had no word of float16.
    half = bool(layer) and where.startswith("the activations") and layer in view.context.float16_layers
    if half:
        origin += f" '{layer}' computes in float16 (the mixed_float16 policy), whose largest value is 65,504: larger outputs, which float32 holds, become inf there."
    half_fix = (f"Build '{layer}' with dtype='float32', or use keras.mixed_precision.set_global_policy('mixed_bfloat16') (float32's range). "
                if half else "")
    evidence = {"step": nf.loss_step, "first_nonfinite_step": nf.step, "last_finite_loss": nf.last_finite_loss,
                "grad_norm_global": nf.row.get(GLOBAL_GRAD_NORM), "float16_layer": half or None}
    evidence = {k: v for k, v in evidence.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    if nf.last_finite_loss is None:  # no finite loss in the whole run: the weights as they started
        return Issue(
            f"The loss was NaN/inf from the run's first step ({nf.loss_step}), before any update had changed the weights, "
            f"so no learning rate caused it.{origin}",
            f"{half_fix}Look at what the first forward pass reads: "
            + (f"{standardise_advice(view)} (a value over ~1.8e19 overflows float32 when squared: an MSE of targets "
               "near 1e30 is inf), " if standardise_advice(view) else "")
            + "check the weights the model starts from, and guard custom losses against log(0) and division by zero "
            "(add an epsilon).",
            evidence, step=nf.loss_step, epoch=epoch_of_step(view, nf.loss_step), layer=layer)
    if overflow:
        first = first_losses(view)
        # A first loss of exactly 0 (zero weights on zero targets) is no scale to grow from: the
        # ratio divided by it and the fit stopped on ZeroDivisionError.
        grew = len(first) > 0 and float(first[0]) > 0 and nf.last_finite_loss > 100 * float(first[0])
        lower = f"lower the learning rate ({lowered_lr_text(view)}) and clip gradients ({clipping_text(view)})"
        scale = f"{standardise_advice(view)}, " if standardise_advice(view) else ""
        check = "check the targets and sample weights of that step's batch for NaN/inf" + (
            " and for class ids outside 0..units-1" if sparse_ids else "")
        return Issue(
            f"The loss became NaN/inf at step {nf.loss_step} (the last finite loss was "
            f"{format_number(nf.last_finite_loss)}"
            + (f", {times_text(nf.last_finite_loss / float(first[0]))} the first step's" if grew else "") + f").{origin}",
            (f"The loss grew until it overflowed: {lower}, {scale}and {check}." if grew
             else f"{check[0].upper()}{check[1:]} (the data checks read only a sample of a dataset); if the loss grew first, "
             f"{scale}{lower}."),
            evidence, step=nf.loss_step, epoch=epoch_of_step(view, nf.loss_step), layer=layer)
    if from_loss:
        return Issue(
            f"The loss became NaN/inf at step {nf.loss_step} (the last finite loss was "
            f"{format_number(nf.last_finite_loss)}).{origin}",
            "Guard custom losses against log(0) and division by zero (clip the probabilities to [1e-7, 1 - 1e-7], add an "
            "epsilon, or compute the loss from logits: from_logits=True), and check the targets and sample weights of that "
            f"step's batch for NaN/inf; if the loss grew first, lower the learning rate ({lowered_lr_text(view)}).",
            evidence, step=nf.loss_step, epoch=epoch_of_step(view, nf.loss_step), layer=layer)
    return Issue(
        f"The loss became NaN/inf at step {nf.loss_step} (the last finite loss was "
        f"{format_number(nf.last_finite_loss)}).{origin} Once a weight is NaN every later step is NaN.",
        f"{half_fix}Lower the learning rate ({lowered_lr_text(view)}), clip gradients "
        f"({clipping_text(view)}), "
        + (f"{standardise_advice(view)}, " if standardise_advice(view) else "") + "and "
        "guard custom losses against log(0) and division by zero (add an epsilon).",
        evidence, step=nf.loss_step, epoch=epoch_of_step(view, nf.loss_step),
        layer=layer)


def _nonfinite_weights_finite_loss(view: Diagnoser, nf: NonFinite) -> Issue | None:
    """Weights NaN/inf at every step of the latest epoch while the loss stays finite.

    A ReLU after a NaN turns it into 0 (TensorFlow's relu and its gradient do): sqrt of a negative
    pre-activation in a Lambda layer made every weight NaN at step 0, the output read its bias
    alone, the loss stayed 0.6931 for 3 epochs and the run got only dead-relu ("fix the
    initialisation"). NaN weights never recover; a loss-scale optimizer's skipped steps leave the
    weights finite, so they are not counted.
    """
    if not view.epochs or view.epochs[-1].steps == 0:
        return None
    last = view.epochs[-1]
    broken = [n for j, n in enumerate(view.names)
              if variable_of(n, WEIGHT_NORM) is not None and j < len(last.nonfinite) and last.nonfinite[j] >= last.steps]
    if not broken:
        return None
    layer, where = _first_nonfinite_layer(view, nf.row)
    layers = view.layer_order(layer_of(n) for n in broken)
    origin = f" The first non-finite values appeared at step {nf.step} in {where}." if layer else ""
    from_inputs = _inputs_nonfinite(view, nf.row)
    if from_inputs is not None:
        return Issue(
            f"The weights of {', '.join(repr(name) for name in layers)} were NaN/inf at every step of epoch {last.epoch + 1}, "
            f"while the loss stayed finite.{_inputs_origin(nf.step, from_inputs)} A ReLU after a NaN turns it into 0, so the "
            "loss reads a constant prediction instead of NaN and the units look dead; the model trains no more.",
            f"{_INPUTS_ADVICE} The weights of this run are NaN: train again.",
            {"first_nonfinite_step": nf.step, "nonfinite_weights": [variable_of(n, WEIGHT_NORM) for n in broken], "inputs_nonfinite": True},
            step=nf.step, epoch=epoch_of_step(view, nf.step), layer=from_inputs)
    if all(nf.row.get(n) == math.inf for n in broken):
        # Inf, not NaN, where the weights broke: the norm sums squares in float32, which overflow
        # from ~1.8e19, so weights of 5e19 (a finite loss of 1e33) were called "NaN: train again",
        # with a ReLU-turns-NaN-into-0 story that nothing in the run showed.
        return Issue(
            f"The weights of {', '.join(repr(name) for name in layers)} had no finite norm at any step of epoch {last.epoch + 1}, "
            f"while the loss stayed finite.{origin} Their norm read inf, not NaN, at step {nf.step}: weights whose squares overflow "
            "the float32 sum the norm takes (from ~1e19 each, less in a large matrix), or inf ones. The model is unusable at that size.",
            f"Lower the learning rate ({lowered_lr_text(view)}) and clip gradients ({clipping_text(view)}), and train again: "
            "weights that size make outputs that overflow or saturate every activation.",
            {"first_nonfinite_step": nf.step, "nonfinite_weights": [variable_of(n, WEIGHT_NORM) for n in broken], "weight_norm_overflow": True},
            step=nf.step, epoch=epoch_of_step(view, nf.step), layer=layer)
    return Issue(
        f"The weights of {', '.join(repr(name) for name in layers)} were NaN/inf at every step of epoch {last.epoch + 1}, "
        f"while the loss stayed finite.{origin} A ReLU (or a max, a clip) after a NaN turns it into 0, so the loss reads a "
        "constant prediction instead of NaN and the units look dead; the model trains no more.",
        "Find what produced the first NaN: a sqrt or log of a negative or zero value, a division by zero, a custom layer "
        f"or loss without an epsilon; if the gradients grew first, lower the learning rate ({lowered_lr_text(view)}) and clip "
        f"gradients ({clipping_text(view)}). The weights of this run are NaN: train again.",
        {"first_nonfinite_step": nf.step, "nonfinite_weights": [variable_of(n, WEIGHT_NORM) for n in broken]},
        # The epoch of that step, not the one judged: a NaN at step 18 of a 20-step epoch was
        # reported at step 18 in epoch 1, which TensorBoard's x axis and the console contradict.
        step=nf.step, epoch=epoch_of_step(view, nf.step), layer=layer)


def _inputs_nonfinite(view: Diagnoser, row: Mapping[str, float]) -> str | None:
    """The first weight layer when its kernel's gradient is NaN/inf and its bias's is finite, else ``None``.

    A kernel's gradient is its inputs times the error signal, its bias's the error signal alone:
    only the inputs can make the one non-finite and not the other. A NaN in a tf.data batch past
    the ones the data checks read was told to find "a sqrt or log of a negative value" or to lower
    the learning rate. (The loss stays finite then: a ReLU's gradient is 0 at a NaN, so the NaN
    row adds nothing to the bias's gradient and 0 x NaN to the kernel's.)
    """
    counts = {variable_of(n, GRAD_NONFINITE): v for n, v in row.items() if variable_of(n, GRAD_NONFINITE)}
    layers = view.layer_order(var.rpartition("/")[0] for var in counts if var)
    if not layers:
        return None
    first = layers[0]
    kernel, bias = counts.get(f"{first}/kernel"), counts.get(f"{first}/bias")
    return first if kernel is not None and bias is not None and kernel > 0 and bias == 0 else None


#: The filter flattens x: ``tf.math.is_finite(x)`` raised a TypeError on a dict of inputs (a
#: model with several named inputs) and on integer ids, which it takes no dtype of. ``*targets``
#: takes ``(x, y)`` and ``(x, y, sample_weight)`` elements alike (``lambda x, y`` raised on the latter).
_INPUTS_ADVICE = ("Check the inputs of that step's batch for NaN/inf: the data checks read only a dataset's first batches "
                  "(drop such rows in the pipeline, before .batch(): ds.filter(lambda x, *targets: tf.reduce_all([tf.reduce_all("
                  "tf.math.is_finite(v)) for v in tf.nest.flatten(x) if v.dtype.is_floating])), or fix them where the data is "
                  "made).")


def _inputs_origin(step: int, layer: str) -> str:
    """The origin sentence of a NaN that the inputs of step ``step``'s batch brought in."""
    return (f" The first non-finite values appeared at step {step} in the gradient of the kernel of layer '{layer}' while "
            "its bias's stayed finite: a kernel's gradient multiplies the layer's inputs, so that step's batch of inputs "
            "held NaN/inf.")


def _outputs_finite(row: Mapping[str, float]) -> bool:
    """Whether ``row`` measured the model's outputs (``activation/output*/nonfinite``) and every one was finite."""
    counts = [v for n, v in row.items() if (layer := activation_stat_of(n, NONFINITE)) is not None and is_output_name(layer)]
    return bool(counts) and all(v == 0 for v in counts)


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
    layers = [layer for layer in view.layer_order(layer_of(n) for n in activations) if not is_output_name(layer)]
    if layers:
        return layers[0], f"the activations of layer '{layers[0]}'"
    # The counts of NaN/inf entries when the step has them; an infinite norm alone may be finite
    # gradients too large to square in float32.
    counted = any(variable_of(n, GRAD_NONFINITE) for n in row)
    grads = [n for n, v in row.items() if (variable_of(n, GRAD_NONFINITE) and v > 0) or (
        not counted and variable_of(n, GRAD_NORM) and not math.isfinite(v))]
    layers = view.layer_order(layer_of(n) for n in grads)
    if layers:
        # Back-propagation reaches the last layer first: the origin is the last one in model order.
        return layers[-1], f"the gradients of layer '{layers[-1]}'"
    huge = [n for n, v in row.items() if variable_of(n, GRAD_NORM) and not math.isfinite(v)]
    layers = view.layer_order(layer_of(n) for n in huge)
    if layers:
        return layers[-1], f"the gradients of layer '{layers[-1]}', finite but too large for float32 to square (norm inf)"
    weights = nonfinite_weights(row)
    layers = view.layer_order(layer_of(n) for n in weights)
    if layers:
        # Finite gradients, non-finite weights after the update: the update itself overflowed.
        return layers[0], f"the weights of layer '{layers[0]}' after the update, from finite gradients (an update too large to represent or to square, or a NaN/inf learning rate)"
    return None, ""
