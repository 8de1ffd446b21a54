"""Rules on the loss of a run's first steps, before the weights moved much: far below or far above
the chance level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainkit.diagnosis.loss_measures import initial_losses
from trainkit.diagnosis.number_text import format_number, times_text
from trainkit.diagnosis.rule_types import Issue
from trainkit.diagnosis.setting_text import for_run, standardize_setting
from trainkit.diagnosis.task_context import (
    FAR_INPUTS,
    FAR_TARGETS,
    chance_level,
    chance_text,
    constant_prediction,
    far_values_only,
    inputs_scaled,
    mean_bias_text,
    standardise_inputs_advice,
    targets_scaled,
    targets_scaled_not_centred,
    targets_scaling_advice,
    targets_text,
    targets_tiny,
)

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser


def initial_loss_too_low(view: Diagnoser) -> Issue | None:
    """First losses far below chance: leakage, a wrong target encoding or a wrong loss."""
    chance, first = chance_level(view), initial_losses(view)
    if chance is None or first.size == 0:
        return None
    loss = float(first.max()) - view.context.regularization
    # On imbalanced classes the first batches may hold few rows of a rare class: a model at the
    # prior then reads far below chance on them (see trainkit.diagnosis.baseline.first_steps_level).
    lowest = view.context.first_steps_loss
    if loss >= view.t.initial_low_factor * (min(chance, lowest) if lowest is not None else chance):
        return None
    return Issue(
        f"The loss of the first steps was {_at_most(first.size)}{format_number(loss)}, far below {chance_text(view)}, before the model "
        f"had learned anything. A random model cannot beat chance: the targets are probably easy to "
        f"read off the inputs (a label leaking into the features), encoded wrongly (e.g. almost all "
        f"the same), or the loss does not match the task.",
        "Look for label leakage — a feature equal to or computed from the label (drop it) —, check the label encoding "
        "(class ids 0..K-1 for sparse_categorical_crossentropy, 0/1 for binary_crossentropy, one-hot "
        "for categorical_crossentropy), and use the loss of the task: binary_crossentropy for binary, "
        "categorical/sparse_categorical_crossentropy for multiclass, mse on standardised targets for "
        "regression.",
        {"initial_loss": loss, "chance_loss": chance, "ratio": loss / chance}, step=view.first_step,
        epoch=view.context.initial_epoch)


def _column_axis(view: Diagnoser) -> str:
    """``0`` where the targets have several columns, for ``y_train.mean(0)``: each column's mean
    (one pooled mean, -0.36 for columns at 1.29 and -2.01, left them at +1.65 and -1.65)."""
    return "0" if (view.context.target_columns or 1) > 1 else ""


def _output_bias_set(view: Diagnoser) -> bool:
    """Whether an output layer's bias starts from an initializer of its own (not ``zeros``): a
    ``Constant(1.31)`` at the targets' mean, whose model's first loss of 137 (943x chance) came
    from its kernel's random_normal(stddev=1), was told to initialise the bias at the mean."""
    starts = view.context.initializers or {}
    return any(starts.get(layer, {}).get("bias", "zeros") not in ("zeros", "none") for layer in view.context.output_layers)


def _at_most(steps: int) -> str:
    """How the highest of the first ``steps`` losses is quoted (it bounds them all: the verdict holds for each)."""
    return f"at most (the highest of the first {steps}) " if steps > 1 else ""


def _at_least(steps: int) -> str:
    """How the lowest of the first ``steps`` losses is quoted: 9.98e6 as "the loss of the first
    steps" read as typical where their median was 1.15e7."""
    return f"at least (the lowest of the first {steps}) " if steps > 1 else ""


def initial_loss_too_high(view: Diagnoser) -> Issue | None:
    """First losses far above chance: unscaled inputs/targets, a bad initialisation or output bias."""
    chance, first = chance_level(view), initial_losses(view)
    if chance is None or first.size == 0:
        return None
    loss = float(first.min()) - view.context.regularization
    factor = view.t.initial_high_factor_regression if view.context.task == "regression" else view.t.initial_high_factor
    # A classifier whose output predicts every class alike is where a healthy fresh model starts:
    # on 95/5 labels that is ln 2 = 3.5x the chance level 0.20, and every default-initialised run
    # got this warning on top of class-imbalance (which already advises the log-prior output
    # bias). Far above that start is what the rule is for (unscaled inputs: 16x).
    uninformed = view.context.uninformed_loss
    # A regression's batches in the data's own order (an unshuffled series) are a stretch of it
    # whose level is not the data's mean: a random walk's first 16 batches sat near +1.5 std, a
    # fresh output near 0 read 11x their chance level, and the run was told to fix its
    # initialisation. Its start, predicting 0 on those rows, is then the reference too.
    in_order = view.context.task == "regression" and view.context.batches_in_order
    start = max(chance, uninformed) if uninformed is not None and (view.context.task != "regression" or in_order) else chance
    if loss <= factor * start:
        return None
    if view.context.task == "regression" and targets_tiny(view):
        # Targets of std 1e-3 were told they were "already on a unit scale" and sent to the
        # initialisation; the chance level (their variance, 1e-6) is what the first loss dwarfs.
        advice = (f"The targets are tiny ({targets_text(view)}): the outputs of a freshly initialised model spread "
                  f"far wider than they do. {targets_scaling_advice(view)}"
                  + ("." if targets_scaled_not_centred(view) else " and predict with model(x) * y_train.std() + y_train.mean()."))
    elif (view.context.task == "regression" and targets_scaled(view) and uninformed is not None and uninformed > factor * chance
          and loss <= factor * uninformed and not _output_bias_set(view)):
        # Not a start far worse than predicting 0 (79.2 against 1.764, kernels random_normal(stddev=1)):
        # the model's spread, not the offset, is most of it (the bias at the mean started at 67.1).
        # Targets on a unit scale but far from 0 for their spread (log1p of prices: mean 1.31, std
        # 0.29): predicting 0, where a fresh output starts, alone scores 20x their variance, and a
        # default glorot MLP was told to use "the initialiser of the activation instead of a large
        # random_normal". The offset is the start's cause: the output bias, or centred targets.
        centre = "" if targets_scaled_not_centred(view) else (
            ", or centre the targets (" + for_run(view.context, "preprocessing.standardize_targets: true",
                                                    f"y - y_train.mean({_column_axis(view)}), adding it back to the predictions") + ")")
        advice = (f"The targets are on a unit scale ({targets_text(view)}) but far from 0 for their spread, and a fresh output "
                  f"starts near 0: predicting 0 alone scores {format_number(uninformed)} ({times_text(uninformed / chance)} "
                  f"{chance_text(view)}). Initialise the output bias at {constant_prediction(view)} ({mean_bias_text(view)})"
                  f"{centre}.")
    elif view.context.task == "regression" and targets_scaled(view):
        advice = (f"The targets are already on a unit scale ({targets_text(view)}), so the first predictions are far off "
                  "because of what the model computes from the inputs: "
                  + standardise_inputs_advice(view, f"standardise the inputs ({standardize_setting(view.context, 'inputs')}), ")
                  + "use the initialiser of the activation (he_normal for relu, glorot_uniform "
                  "for tanh) instead of a large random_normal, and check that nothing scales the output up (a large "
                  "output bias or kernel initialiser, a Lambda or Rescaling layer after the last Dense).")
    elif view.context.task == "regression":
        # Inputs the data checks found scaled (standard normal features, targets ~1e4) were told
        # to be standardised too.
        advice = (targets_scaling_advice(view)
                  + standardise_inputs_advice(view, f"; standardise the inputs ({standardize_setting(view.context, 'inputs')})")
                  + f"; or initialise the output bias at {constant_prediction(view)} ({mean_bias_text(view)}).")
    elif "unscaled-targets" in (view.context.check_codes or ()) and _regression_outputs_dominate(view, loss):
        # A regression output beside a classifier (task "mixed"): targets ~3000 made the first
        # loss 37x chance and were told "the inputs are scaled, so look at the initialisation".
        if far_values_only(view, "targets"):
            advice = FAR_TARGETS + standardise_inputs_advice(view, f"; standardise the inputs ({standardize_setting(view.context, 'inputs')})")
        elif view.context.relative_loss:
            # MSLE and MAPE break on centred targets: scaled, as unscaled-targets advises.
            advice = ("Scale the regression targets the data checks found unscaled without centring them (see unscaled-targets; "
                      "the loss reads ratios or logarithms of them: y_scale = np.abs(y_train).mean(0), fit on y / y_scale)"
                      + standardise_inputs_advice(view, f"; standardise the inputs ({standardize_setting(view.context, 'inputs')})"))
        else:
            recipe_key = "preprocessing.standardize_targets: true, or " if view.context.recipe else ""
            advice = (f"Standardise the regression targets the data checks found unscaled (see unscaled-targets; {recipe_key}"
                      "y = (y - y_train.mean()) / y_train.std())"
                      + standardise_inputs_advice(view, f" and the inputs ({standardize_setting(view.context, 'inputs')})"))
        advice += ": their output starts far from them, and its loss dwarfs the others'."
    elif far_values_only(view, "inputs"):
        # A few far input values (1% of a feature at 1000 among values ~1) make those rows' first
        # outputs far off; "standardise the inputs" would squash every other row.
        advice = (f"Fix what unscaled-inputs says first: {FAR_INPUTS}. Those rows' first outputs are far off; "
                  f"then use the initialiser of the activation (he_normal for relu, glorot_uniform for tanh), "
                  f"and {_log_prior_bias_text(view)}.")
    elif not inputs_scaled(view) and _scaled_initializers(view):
        # Unscaled inputs into layers that start as they should: "use the initialiser of the
        # activation (he_normal for relu)" made train_scale_broken's glorot_uniform ReLU layer start
        # at 92x chance instead of 16x. The input scale is the cause.
        advice = (f"Standardise the inputs ({standardize_setting(view.context, 'inputs')}) so the first logits are small, "
                  f"and {_log_prior_bias_text(view)}.")
    else:
        advice = (("The inputs are scaled, so look at the initialisation: use" if inputs_scaled(view) else
                   f"Standardise the inputs ({standardize_setting(view.context, 'inputs')}) so the first logits are small, use")
                  + " the initialiser of the activation (he_normal for relu, glorot_uniform "
                  f"for tanh), and {_log_prior_bias_text(view)}.")
    return Issue(
        f"The loss of the first steps was {_at_least(first.size)}{format_number(loss)}, {times_text(loss / chance)} {chance_text(view)} that a "
        f"model predicting {constant_prediction(view)} would get. The model starts far from a "
        f"sensible prediction, so its first updates are large and spent on undoing the start.",
        advice, {"initial_loss": loss, "chance_loss": chance, "ratio": loss / chance}, step=view.first_step,
        epoch=view.context.initial_epoch)


def _log_prior_bias_text(view: Diagnoser) -> str:
    """``initialise the output bias to the log prior ...``: for a multilabel task each unit's own,
    as Python or as the recipe's key.

    "The output bias to the log prior, log(p / (1 - p))" told a multilabel output of labels at 2%
    to 33% of one bias and one p, where each label's unit wants its own log-odds.
    """
    if view.context.task != "multilabel":
        return "initialise the output bias to the log prior, log(p / (1 - p)), when the classes are imbalanced"
    how = for_run(view.context, "bias_initializer: {name: constant, value: [...]} on the output layer, one value a label",
                  "model.layers[-1].bias.assign(np.log(p / (1 - p))) after building the model, "
                  "p = np.clip(y_train.mean(0), 1e-3, 1 - 1e-3)")
    return f"initialise each output unit's bias to its label's log-odds, log(p / (1 - p)) of its column's share of 1s ({how}), when labels are rare"


def _regression_outputs_dominate(view: Diagnoser, loss: float) -> bool:
    """Whether the regression outputs make most of a mixed model's first ``loss`` (their weighted
    losses of predicting 0, where a fresh output starts; taken as so when unknown).

    Targets ~3000 under ``loss_weights={"price": 1e-7}`` start that output at ~1.1, while a
    classifier head with a random_normal(20) kernel started at 8.9: the run was told to
    standardise the targets, whose output's loss "dwarfs the others'".
    """
    start = view.context.regression_start_loss
    return start is None or start >= 0.5 * loss


#: Initializers that scale the weights to the layer's fan-in/fan-out, as a recipe writes them with
#: their default settings: a layer starting from one of them does not blow up its inputs.
_SCALED_INITIALIZERS = frozenset({"glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal",
                                  "lecun_uniform", "variance_scaling"})


def _scaled_initializers(view: Diagnoser) -> bool:
    """Whether every weight layer's kernel is known to start from a fan-scaled initializer."""
    layers = view.context.initializers
    return bool(layers) and all(start["kernel"] in _SCALED_INITIALIZERS for start in layers.values())
