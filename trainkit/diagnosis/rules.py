"""The registry of diagnosis rules: :data:`RULES`, one named rule per finding code, and its codes.

Each rule is a small function that reads a :class:`~trainkit.diagnosis.engine.Diagnoser` (the
bounded summaries of a run) and returns :class:`~trainkit.diagnosis.rule_types.Issue` records, or
nothing; :class:`~trainkit.diagnosis.rule_types.Rule` gives it its code, severity and moment. The
rules live in modules by what they read:

* :mod:`~trainkit.diagnosis.initial_loss_rules` — the loss of the first steps against chance;
* :mod:`~trainkit.diagnosis.chance_rules` — the loss against its chance level;
* :mod:`~trainkit.diagnosis.nonfinite_rules` — a NaN/inf loss, where it began and why;
* :mod:`~trainkit.diagnosis.loss_rules` — the loss curve (collapsed, diverging, oscillating, plateau,
  weights frozen);
* :mod:`~trainkit.diagnosis.lr_rules` — the learning rate, from the update/weight ratios;
* :mod:`~trainkit.diagnosis.gradient_rules` — vanishing (across layers or through time) and exploding gradients;
* :mod:`~trainkit.diagnosis.activation_rules` — dead ReLUs, saturated tanh/sigmoid units;
* :mod:`~trainkit.diagnosis.fit_rules` — overfitting, BatchNormalization averages that lag, underfitting, a dominating penalty, a frozen output layer,
  dropout that hides learning, a validation loss below the training loss, a regression worse than the linear fit of its inputs.

Rules never fire on curve shapes before a run has had time to show them: loss-curve verdicts wait
for :attr:`Thresholds.curve_fraction` of the planned epochs (AUTOTRAINER's false alarms in the first
epochs of healthy models), and activation verdicts need a condition that lasts several epochs.
"""

from __future__ import annotations

from trainkit.diagnosis.activation_rules import dead_relu, saturated_activations
from trainkit.diagnosis.chance_rules import chance_level_unknown, loss_at_chance
from trainkit.diagnosis.fit_rules import (
    batchnorm_lag,
    dropout_too_high,
    frozen_output,
    overfitting,
    regularization_dominates,
    underfitting,
    validation_below_training,
    worse_than_linear,
)
from trainkit.diagnosis.gradient_rules import (
    exploding_gradients,
    vanishing_gradients,
    vanishing_through_time,
)
from trainkit.diagnosis.initial_loss_rules import initial_loss_too_high, initial_loss_too_low
from trainkit.diagnosis.loss_rules import (
    diverging_loss,
    loss_collapsed,
    oscillating_loss,
    plateau,
    weights_frozen,
)
from trainkit.diagnosis.lr_rules import lr_too_high, lr_too_low
from trainkit.diagnosis.nonfinite_rules import nan_loss
from trainkit.diagnosis.rule_types import Issue, Rule, Thresholds

# Issue, Rule and Thresholds (from rule_types) stay importable from here, where they were defined
# before the rules had modules of their own: they are what a custom rule list, ``rules=[*RULES,
# Rule(...)]``, and its thresholds are written with.
__all__ = ["DIAGNOSIS_CODES", "RULES", "Issue", "Rule", "Thresholds"]


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
    Rule("dead-relu", "warning", "epoch", dead_relu, "most units of a ReLU layer never active", refresh_advice=True, rejudge=True),
    Rule("saturated-activations", "warning", "epoch", saturated_activations, "tanh/sigmoid outputs in the flat tails (info from 25%, warning from 50%)"),
    Rule("oscillating-loss", "warning", "epoch", oscillating_loss, "the epoch loss jumps up and down", refresh_advice=True),
    Rule("overfitting", "warning", "epoch", overfitting, "validation loss rising while training loss falls", rejudge=True),
    Rule("weights-frozen", "error", "end", weights_frozen, "the training loss was the same at every epoch: no step changed the weights"),
    Rule("vanishing-gradients-through-time", "warning", "end", vanishing_through_time,
         "a recurrent layer's gradient 1000x smaller at the first steps than the last, and the loss at chance"),
    Rule("loss-at-chance", "warning", "end", loss_at_chance, "training (or validation) loss stays at the chance level"),
    Rule("plateau", "warning", "end", plateau, "the loss stopped improving early, far above its start"),
    Rule("regularization-dominates", "warning", "end", regularization_dominates, "the regularization penalty is most of the training loss"),
    Rule("lr-too-low", "warning", "end", lr_too_low, "tiny updates and a loss still falling steadily"),
    Rule("underfitting", "warning", "end", underfitting, "training ended while the loss was still falling fast"),
    Rule("dropout-too-high", "warning", "end", dropout_too_high, "training loss at chance under strong dropout while the validation loss shows learning"),
    Rule("frozen-output", "warning", "end", frozen_output, "the loss stalled while the output layer was frozen (trainable=False)"),
    Rule("worse-than-linear", "warning", "end", worse_than_linear,
         "a regression ended far worse than the least-squares linear fit of its inputs"),
    Rule("batchnorm-lag", "warning", "end", batchnorm_lag,
         "validation loss far above training while BatchNormalization's moving averages still hold their start"),
    Rule("validation-below-training", "info", "end", validation_below_training,
         "the validation loss ended well below the training loss: why (training-only layers, the epoch mean, the split)"),
    Rule("chance-level-unknown", "info", "end", chance_level_unknown, "no chance level for this loss: the verdicts against one were not made"),
)
#: Every code the diagnosis can report, in one place.
DIAGNOSIS_CODES: tuple[str, ...] = tuple(rule.code for rule in RULES)
