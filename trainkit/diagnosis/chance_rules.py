"""Rules that judge the loss against its chance level: ``loss-at-chance`` (with what explains it: data
that carries nothing usable, a leaked label, a stalled optimizer, dropout, too few epochs) and the
note when no chance level is known."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from trainkit.checks.row_checks import MIN_TRAIN_ROWS
from trainkit.diagnosis.finding_groups import CANNOT_LEARN, OVERSHOOTING, found_codes
from trainkit.diagnosis.fit_rules import (
    DROPOUT_STRONG,
    batchnorm_lag,
    regularization_dominates,
    worse_than_linear,
)
from trainkit.diagnosis.loss_measures import (
    curves_ready,
    few_validation_rows,
    fresh_start,
    penalty_note,
    steadily_falling,
    still_falling,
)
from trainkit.diagnosis.lr_advice import (
    decayed_weights,
    epsilon_share,
    lowered_lr_text,
    raised_lr_text,
    rate_cut_short,
    schedule_ended_text,
)
from trainkit.diagnosis.lr_rules import lr_too_low
from trainkit.diagnosis.number_text import format_number, times_text
from trainkit.diagnosis.rule_types import Issue
from trainkit.diagnosis.setting_text import optimizer_setting
from trainkit.diagnosis.task_context import (
    chance_level,
    chance_text,
    constant_prediction,
    mean_bias_text,
    standardise_inputs_advice,
    targets_scaled,
    targets_scaling_advice,
    targets_text,
    targets_tiny,
    val_chance_level,
    val_chance_text,
)

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser


#: Data-check codes that explain a loss at chance: the inputs carry nothing, or nothing usable yet,
#: or the targets are too far from where a fresh output starts to be reached.
#: shuffled-apart: rows paired with other rows' labels (zip((x_ds, y_ds.shuffle(n)))), which was told
#: "it memorises the training rows ... (e.g. random labels)" as if the labels were the user's.
DATA_BLOCKERS = ("constant-inputs", "unscaled-inputs", "unscaled-targets", "masked-ids-inside", "unmasked-padding", "batchnorm-batch-of-one",
                 "shuffled-apart")
#: Data-check codes that explain a validation loss at chance beside a training loss that fell: the
#: validation rows are not drawn like the training ones (another scale, range or class mix).
VALIDATION_MISMATCHES = ("validation-scale-mismatch", "validation-target-range", "validation-class-mismatch")
#: The data check that explains a training loss that fell beside a validation loss at chance: too
#: few training rows to learn anything that carries over, whatever the labels.
FEW_ROWS = "few-training-rows"


def loss_at_chance(view: Diagnoser) -> Issue | None:
    """The training loss (or the validation loss) never leaves the chance level; or, for a model
    with several outputs whose total did, one output's loss never leaves its own."""
    issue = _total_at_chance(view)
    return issue if issue is not None else _output_at_chance(view)


#: An output whose weighted chance level is under this share of the total's has a loss weight too
#: small beside the others' for its own gradient to count.
OUTPUT_SHARE_SMALL = 0.1


def _output_at_chance(view: Diagnoser) -> Issue | None:
    """loss-at-chance for one output of several (its ``<name>_loss`` against its own chance level),
    while the total got clearly below the total's: the total is a weighted sum, and a head on
    random labels beside one that learns left it at 57% of its level with no word (validation
    0.70-0.72 against the head's own 0.693, the other head's falling to 0.12)."""
    levels = view.context.output_chance_losses
    if not levels or not view.finished or not curves_ready(view) or found_codes(view, CANNOT_LEARN):
        return None
    total = view.epoch_losses(data_only=True)
    total = total[np.isfinite(total)]
    chance = chance_level(view)
    if total.size == 0 or (chance is not None and float(total[-1]) >= view.t.at_chance_train * chance):
        return None  # the total itself at chance: the rule on the total judges it
    weights = view.context.output_loss_weights or {}
    # The total's level unknown (a custom loss on one output): another output's own loss clearly
    # below its level is what says the model learns. Else every head stuck alike (SGD at 1e-6
    # beside lr-too-low) named a head on learnable labels "unpredictable from the inputs".
    learned = {name for name in view.context.output_names if _output_learned(view, name)}
    for name in view.context.output_names:
        if weights.get(name) == 0 or (chance is None and not learned - {name}):
            continue  # loss_weights 0: a head only watched (nothing trains it), as loss=None's; or no sign of learning
        issue = _one_output_at_chance(view, name, total, chance)
        if issue is not None:
            return issue  # one finding a code: the first output (in the model's order) so stuck
    return None


def _output_learned(view: Diagnoser, name: str) -> bool:
    """Whether output ``name``'s training loss ended clearly below its own chance level."""
    level = _positive((view.context.output_chance_losses or {}).get(name))
    train = view.log_values(f"{name}_loss")
    train = train[np.isfinite(train)]
    return level is not None and train.size > 0 and float(train[-1]) < view.t.at_chance_train * level


def _one_output_at_chance(view: Diagnoser, name: str, total: np.ndarray, chance: float | None) -> Issue | None:
    """:func:`_output_at_chance` for the output ``name``, judged as the total is: its validation
    loss never clearly below its own level and not still learning, or without validation rows, its
    training loss at its level over the last third of the epochs."""
    level = _positive((view.context.output_chance_losses or {}).get(name))
    train = view.log_values(f"{name}_loss")
    train = train[np.isfinite(train)]
    if level is None or train.size == 0:
        return None
    val = view.log_values(f"val_{name}_loss")
    val = val[np.isfinite(val)] if not few_validation_rows(view) else val[:0]
    val_level = _positive((view.context.val_output_chance_losses or {}).get(name)) or level
    final = float(np.min(train[-max(1, len(train) // 3):]))
    trained = float(train[-1]) < view.t.at_chance_train * level
    if val.size:
        best = float(np.min(val))
        noise = _chance_noise(view) * val_level
        # A hard output still learning (both losses lower at nearly every epoch, the validation
        # loss falling by more than the noise over the last third, through its level) is not at
        # chance, even where it has not got under it yet: a product-of-inputs head at epoch 15
        # (validation 0.712 -> 0.694 over the last third, its level 0.693) was at 0.646 by epoch 30.
        # Random labels' validation loss rises or stays flat. One still above the band over its
        # level is not "learning" so: a head under loss_weights 0.005 beside SGD's other head crept
        # from 0.855 to 0.838 (121% of its level) in 15 epochs.
        learning = (steadily_falling(train) and steadily_falling(val) and _last_third_fall(val) > noise
                    and float(val[-1]) <= (1 + view.t.at_chance_band) * val_level)
        if best < view.t.at_chance_validation * val_level or still_falling(view, val) or learning:
            return None
        stayed = (f"Output {name}'s validation loss never got clearly below its own chance level {format_number(val_level)}: "
                  f"its best was {format_number(best)} ({best / val_level:.0%} of it), its training loss ended at "
                  f"{format_number(float(train[-1]))} ({float(train[-1]) / level:.0%} of its level {format_number(level)})")
    else:
        if (final < view.t.at_chance_train * level or final > view.t.at_chance_ceiling * level or still_falling(view, train)
                or (steadily_falling(train) and final <= (1 + view.t.at_chance_band) * level)):
            return None
        stayed = (f"Output {name}'s training loss stayed at its own chance level {format_number(level)}: its best over the last "
                  f"third of the epochs was {format_number(final)} ({final / level:.0%} of it)")
    overall = (f", while the total loss fell to {format_number(float(total[-1]))}"
               + (f" ({float(total[-1]) / chance:.0%} of the total's chance level {format_number(chance)})" if chance is not None else "")
               # The total quoted is the loss on the data: the History's holds the penalty too.
               + penalty_note(view))
    share = _weighted_share(view, name)
    weight = (view.context.output_loss_weights or {}).get(name)
    weight_text = (f"its loss weight ({format_number(weight)}) makes it {share:.0%} of the total loss at chance"
                   if share is not None and weight is not None else "")
    labels = (f"check that {name}'s labels can be predicted from the inputs: that its targets are aligned with the rows "
              "of x (shuffled together), not random or shuffled, and that they are the ones meant for this output")
    raise_weight = f"a larger loss_weights entry for {name} (loss_weights={{'{name}': ...}} in the Trainer) gives its gradient more say"
    if share is not None and share < OUTPUT_SHARE_SMALL and not trained:
        cause = (f"it learned nothing, not even the training rows, and {weight_text}: the other outputs' gradients "
                 "drown its own")
        advice = f"Raise its weight: {raise_weight}. If it still stays at chance, {labels}."
    else:
        cause = ("it memorises the training rows, which happens when its labels are unpredictable from the inputs "
                 "(e.g. random labels)" if trained else
                 "it learned nothing, not even the training rows: its labels are unpredictable from the inputs")
        cause += f" ({weight_text})" if weight_text else ""
        advice = f"{labels[0].upper()}{labels[1:]}. If they are, {raise_weight}."
    evidence = {"output": name, "output_chance_loss": level, "final_output_loss": float(train[-1]),
                "final_train_loss": float(total[-1]), "chance_loss": chance}
    if val.size:
        evidence.update(best_output_val_loss=float(np.min(val)), output_val_chance_loss=val_level)
    if share is not None:
        evidence["output_chance_share"] = share
    # A head 121% of its level at its best does worse than the constant, not merely as well.
    at_best = best / val_level if val.size else final / level
    than = "worse than" if at_best > 1 + 2 * view.t.at_chance_band else "no better than"
    return Issue(f"{stayed}{overall}. For this output the model predicts {than} a constant: {cause}.",
                 advice, evidence, epoch=view.epochs[-1].epoch)


def _positive(level: float | None) -> float | None:
    """``level`` when it is a chance level a loss can be compared with: known, finite and not ~0."""
    return level if level is not None and math.isfinite(level) and level > 1e-8 else None


def _weighted_share(view: Diagnoser, name: str) -> float | None:
    """Output ``name``'s share of the total loss at chance (its loss weight times its chance level,
    over the sum of those of every output), ``None`` when an output's level or weight is unknown."""
    levels, weights = view.context.output_chance_losses or {}, view.context.output_loss_weights or {}
    if not weights or set(weights) != set(levels):
        return None
    total = sum(weights[k] * levels[k] for k in levels)
    return weights[name] * levels[name] / total if total > 0 and name in levels else None


def _loss_floors(view: Diagnoser, chance: float) -> tuple[float, float]:
    """The floors (a perfect prediction's loss) of the training and validation losses, from which
    loss-at-chance measures its shares of the chance levels: 0 but for label-smoothed
    cross-entropy (the smoothed labels' entropy) and Poisson (``mean(y - y * log(y))``), whose loss
    cannot go below it. Measured from 0, "10% below chance" asked more of those: on the same rows
    and model (no validation), BinaryCrossentropy ended at 0.609 (88% of 0.693: learned) and with
    label_smoothing=0.1 at 0.626 (90%, floor 0.199), told "the labels are unpredictable"; Poisson
    counts of mean 1 ended at 0.904 of 1.000 (floor 0.356: 85% of the way) and were told the same.
    The validation rows' own floor goes with their own chance level; the training floor stands in
    for a level the training rows' stands in for."""
    floor = view.context.loss_floor if 0 < view.context.loss_floor < chance else 0.0
    val_chance = val_chance_level(view) or chance
    own = view.context.val_loss_floor if view.context.val_chance_loss is not None and val_chance == view.context.val_chance_loss else None
    val_floor = own if own is not None and 0 <= own < val_chance else floor if floor < val_chance else 0.0
    return floor, val_floor


def _part(level: float, floor: float, share: float) -> float:
    """The loss ``share`` of the way from ``floor`` up to ``level`` (``share * level`` over a floor of 0)."""
    return floor + share * (level - floor)


def _total_at_chance(view: Diagnoser) -> Issue | None:
    """loss-at-chance for the total loss (a model's only one, or the sum of its outputs')."""
    chance = chance_level(view)
    if chance is None or not view.finished or not curves_ready(view):
        return None
    floor, val_floor = _loss_floors(view, chance)
    train = view.epoch_losses(data_only=True)
    train = train[np.isfinite(train)]
    if train.size == 0:
        return None
    tail = train[-max(1, len(train) // 3):]
    final = float(np.min(tail))
    val = view.val_losses(data_only=True)
    # Too few validation rows to read generalisation from: judged as a run without validation.
    val = val[np.isfinite(val)] if not few_validation_rows(view) else val[:0]
    best_val = float(np.min(val)) if val.size else None
    # The validation loss has a chance level of its own: class_weight weighs only the training
    # loss, and the validation rows may have another class mix (see trainkit.diagnosis.baseline).
    val_chance = val_chance_level(view) or chance
    evidence = {"final_train_loss": float(train[-1]), "chance_loss": chance, "best_val_loss": best_val}
    if view.context.val_chance_loss is not None:
        evidence["val_chance_loss"] = val_chance
    advice = ("Check that the labels can be predicted from the inputs: that x and y rows are aligned "
              "(shuffled together), that the labels are not random or shuffled, and that the model can "
              # A training loss that fell (memorised rows) failed no overfit test: only one that stayed did.
              + _can_learn_text(view.context.train_rows if float(train[-1]) >= _part(chance, floor, view.t.at_chance_train) else None))
    # A validation loss clearly below chance means something generalisable was learned, however
    # slowly: that is not "at chance" (see lr-too-low / underfitting).
    val_learned = best_val is not None and best_val < _part(val_chance, val_floor, view.t.at_chance_train)
    too_small_steps = lr_too_low(view) is not None
    if final > _part(chance, floor, view.t.at_chance_ceiling):
        # Worse than a constant prediction: not "at chance" (diverging, lr-too-high cover it),
        # unless nothing else explains it.
        return _worse_than_chance(view, train, final, chance, val_learned, evidence, too_small_steps)
    # A loss still falling fast towards chance from above (0.918, 0.795, 0.710 with chance 0.693)
    # has not "stayed" there: it has not shown where it settles (underfitting's measure); nor has
    # one falling steadily but slowly, still above it: with steps too small that is lr-too-low's
    # case (1.80 -> 1.53, chance 1.39, was told "the labels are unpredictable"), otherwise it is
    # said as it is (the README's 10-epoch MirroredStrategy example, 0.887 -> 0.841, lower at every
    # epoch, chance 0.693, was told the loss "stayed at" 121% of chance).
    # lr-too-low (a learning rate of 0, say) and regularization-dominates explain it as well: run
    # after this rule, they are asked directly.
    # So do the data checks' constant inputs (nothing to learn from) and unscaled inputs (an LSTM
    # on features ~3000 sat at chance with its gates saturated, and was told "the labels are
    # unpredictable from the inputs" beside unscaled-inputs), and unscaled targets (targets of std
    # ~2e6 kept Adam's MSE at 101% of the target variance for 20 epochs, and were told the same).
    checked = [code for code in DATA_BLOCKERS if code in (view.context.check_codes or ())]
    # So does a start far above chance that the data checks do not explain: the initialisation's.
    # Six ReLU layers at random_normal(stddev=1) on standardised breast-cancer features started at
    # 2e4x chance and ended with val_loss 281 (415x chance) at 90% validation accuracy, logits in the
    # thousands, and were told "nothing carries over ... the labels are unpredictable".
    started_far = [] if checked else found_codes(view, ("initial-loss-too-high",))
    blockers = (checked + started_far + found_codes(view, CANNOT_LEARN) + (["lr-too-low"] if too_small_steps else [])
                + (["regularization-dominates"] if regularization_dominates(view) is not None else []))
    # Near chance (within its band, or under it), a loss still falling at nearly every epoch by a
    # measurable step has not stayed anywhere either: a 3-epoch text classifier without validation,
    # 0.684 -> 0.642 (chance 0.693), and an MLP at Adam 3e-4, 0.723 -> 0.692, were told "the labels
    # are unpredictable from the inputs". Where validation rows are read, their loss must fall so
    # too (by more than its noise): random labels' training loss creeps down as the model
    # memorises them, their validation loss stays flat (0.691, 0.688, 0.689).
    # A validation loss still falling from far above its own level (a SimpleRNN that cannot reach
    # the label's step: 0.89 -> 0.73 against 0.671) only nears what a constant scores, and a
    # cannot-learn finding says why the training loss creeps: both are "stayed", as before.
    # The former only once the training loss is under chance at every epoch of its last third (3
    # at least; the SimpleRNN's 0.688, 0.677, 0.666 against 0.693): before that, both losses still
    # falling from above chance have shown nothing either way. A healthy MLP on x0+x1>0 (320 rows,
    # Adam 1e-3), 0.795 -> 0.713 in 5 epochs (103% of chance), validation 0.784 -> 0.713, was told
    # "the labels are unpredictable from the inputs".
    noise = _chance_noise(view) * (val_chance - val_floor)
    trained_under = bool(np.all(train[-max(3, len(train) // 3):] < chance))
    creeping = (final >= _part(chance, floor, view.t.at_chance_train) and _creeping(view, train, chance - floor)
                and not found_codes(view, CANNOT_LEARN)
                and (val.size == 0 or (_creeping(view, val, val_chance - val_floor) and _last_third_fall(val) > noise
                                       and (not trained_under or float(val[-1]) <= _part(val_chance, val_floor, 1 + view.t.at_chance_band)))))
    above = final > _part(chance, floor, 1 + view.t.at_chance_band)
    slow = steadily_falling(train) and (above or creeping)
    # Both losses still lower at nearly every epoch, the validation loss already under what any
    # constant prediction scores on its rows: the model is learning, slowly, and has settled
    # nowhere, however close to chance it still is. Random labels cannot get there (a constant is
    # the best their validation rows allow). A logistic regression at Adam 1e-3 on 400 rows
    # (0.748 -> 0.687, chance 0.693; validation 0.722 -> 0.677 under its 0.690, lower at every
    # epoch) was told "the labels are unpredictable from the inputs".
    # "Under" by more than the noise of a few rows' loss, or still falling through it by more: the
    # validation loss of random labels settles within ~1/sqrt(rows) of its chance level, under it
    # as often as not (0.35% under on 40 rows, having fallen 0.1% over the last third), where a
    # logistic regression on 500 rows crossed it falling 2% (0.707 -> 0.692, its level 0.693).
    learning = (val.size >= view.t.curve_min_epochs and steadily_falling(train) and steadily_falling(val)
                and (float(val[-1]) < val_chance - noise or (float(val[-1]) < val_chance and _last_third_fall(val) > noise)))
    if slow and not too_small_steps and not val_learned and not still_falling(view, train) and not found_codes(view, CANNOT_LEARN):
        lead = (f"The training loss is still above {chance_text(view)} after {len(train)} epochs: {format_number(final)} at "
                f"best over the last third ({final / chance:.0%} of chance), lower at nearly every epoch but slowly. "
                f"So far the model predicts no better than {constant_prediction(view)}." if above else
                f"The training loss is still near {chance_text(view)} after {len(train)} epochs: {format_number(final)} at "
                f"best over the last third ({final / chance:.0%} of chance), lower at nearly every epoch"
                f"{', and so is the validation loss' if val.size else ''}. It has not shown where it settles: too few "
                "epochs to tell a model that learns slowly from labels it cannot predict.")
        return Issue(
            lead,
            f"Train for more epochs{schedule_ended_text(view)}, or faster ({raised_lr_text(view)}), and watch whether the loss gets clearly below "
            "chance. If it settles at chance instead, check that the labels can be predicted from the inputs (x and y "
            "rows aligned, labels not shuffled or random).",
            {**evidence, "still_falling": True}, epoch=view.epochs[-1].epoch)
    if (final >= _part(chance, floor, view.t.at_chance_train) and not val_learned and not still_falling(view, train) and not slow
            and not learning):
        stayed = (f"The training loss stayed at {chance_text(view)}: its best over the last third of the "
                  f"epochs was {format_number(final)} ({final / chance:.0%} of chance). The model predicts no better "
                  f"than {constant_prediction(view)}")
        if blockers:
            # Next to lr-too-high or dead-relu, "the labels are unpredictable" sent users to their
            # labels first, when the run's own findings say why the model could not learn.
            return _explained_by(view, f"{stayed}, and", blockers, evidence)
        if _optimizer_stalled(view):
            return _stalled_by_optimizer(view, stayed, evidence)
        if _dropout_holds_back(view, train, val):
            return _held_back_by_dropout(view, stayed, train, val, evidence)
        if _label_leaked(view):
            return _at_chance_despite_leak(view, stayed, evidence)
        if worse_than_linear(view) is not None:
            return _predictable_targets(view, f"{stayed}: the model cannot learn", evidence)
        return Issue(f"{stayed}: the labels are unpredictable from the inputs, or the model cannot learn.", advice, evidence,
                     epoch=view.epochs[-1].epoch)
    if (best_val is not None and best_val >= _part(val_chance, val_floor, view.t.at_chance_validation) and not still_falling(view, val)
            and not slow and not learning):
        if blockers or float(train[-1]) >= _part(chance, floor, view.t.at_chance_train):
            # A training loss that never got clearly below chance memorised nothing: L2 1.0 on every
            # layer (training loss 104% of chance, falling as the penalty shrank the weights) was
            # told "it memorises the training rows ... e.g. random labels".
            trained = float(train[-1]) < _part(chance, floor, view.t.at_chance_train)
            head = (f"The validation loss never got clearly below {val_chance_text(view)}: its best was "
                    f"{format_number(best_val)} ({best_val / val_chance:.0%} of chance) while the training loss fell to "
                    f"{format_number(float(train[-1]))}" if trained else
                    f"Neither the validation loss (best {format_number(best_val)}, {best_val / val_chance:.0%} of "
                    f"{val_chance_text(view)}) nor the training loss ({format_number(float(train[-1]))}, "
                    f"{float(train[-1]) / chance:.0%} of {chance_text(view)}) got clearly below chance")
            if not blockers and not trained and _optimizer_stalled(view):
                return _stalled_by_optimizer(view, head, evidence)
            if not blockers and _dropout_holds_back(view, train, val):
                return _held_back_by_dropout(view, head, train, val, evidence)
            if not blockers and _label_leaked(view):
                return _at_chance_despite_leak(view, head, evidence)
            if not blockers and worse_than_linear(view) is not None:
                return _predictable_targets(view, f"{head}: the model learned nothing, not even the training rows", evidence)
            if not blockers:
                return Issue(f"{head}: the model learned nothing, not even the training rows: the labels are "
                             "unpredictable from the inputs, or the model cannot learn.", advice, evidence,
                             epoch=view.epochs[-1].epoch)
            # A training loss far below chance was learned: "reasons it cannot learn" after "the
            # training loss fell to 0.1437" (zero_lr_1: learning rate 1.0, random labels) said the
            # opposite of the numbers before it.
            return _explained_by(view, f"{head};", blockers, evidence,
                                 "can be why nothing it learned carries over to new rows" if trained else "are reasons it cannot learn")
        mismatched = [code for code in VALIDATION_MISMATCHES if code in (view.context.check_codes or ())]
        if mismatched:
            # Standardised training rows beside x_val and y_val left raw (val_loss 4570% of chance)
            # were told "it memorises the training rows ... (e.g. random labels)", beside the data
            # check that had said the validation rows are on another scale.
            return _explained_by(
                view, f"The validation loss never got clearly below {val_chance_text(view)}: its best was "
                f"{format_number(best_val)} ({best_val / val_chance:.0%} of chance) while the training loss fell to "
                f"{format_number(float(train[-1]))};", mismatched, evidence,
                "say the validation rows are not drawn like the training rows, which can be why nothing it learned "
                "carries over to them")
        if FEW_ROWS in (view.context.check_codes or ()):
            # Too few rows to learn from, not unpredictable labels: 5 training rows of sin(x) plus
            # noise (6 features) were memorised to a loss of 0.016 and validated at 233% of chance,
            # and were told "the labels are unpredictable from the inputs (e.g. random labels)".
            return _explained_by(
                view, f"The validation loss never got clearly below {val_chance_text(view)}: its best was "
                f"{format_number(best_val)} ({best_val / val_chance:.0%} of chance) while the training loss fell to "
                f"{format_number(float(train[-1]))};", [FEW_ROWS], evidence,
                "say the training rows are too few to learn from: a model memorises a handful of rows, and what it "
                "memorised does not carry over to new ones")
        if batchnorm_lag(view) is not None:
            # Validation rows normalised by BatchNormalization averages still near their start: 6
            # Conv-BN-ReLU layers (40 steps at momentum 0.99, training loss 0.08, validation 1.09
            # against chance 1.10, the same rows in training mode 0.10) were told the validation
            # rows "are likely prepared unlike the training rows", a validation_split of the same rows.
            return _explained_by(
                view, f"The validation loss never got clearly below {val_chance_text(view)}: its best was "
                f"{format_number(best_val)} ({best_val / val_chance:.0%} of chance) while the training loss fell to "
                f"{format_number(float(train[-1]))};", ["batchnorm-lag"], evidence,
                "say the validation rows are normalised by BatchNormalization's moving averages, which still hold much of "
                "their start, where each training batch is normalised by its own statistics: that can be why what it learned "
                "does not show on them")
        learned = _first_epoch_learned(view, chance)
        if learned is not None:
            return Issue(
                f"The validation loss never got clearly below {val_chance_text(view)}: its best was {format_number(best_val)} "
                f"({best_val / val_chance:.0%} of chance) while the training loss fell to {format_number(float(train[-1]))}. "
                f"Yet the first epoch's training loss, each batch scored before the model stepped on it, was already "
                f"{format_number(learned)} ({learned / chance:.0%} of chance): the model predicted rows it had not trained on, "
                "so the labels can be learned, and it fails on the validation rows alone. They are likely prepared unlike the "
                "training rows: y_val not aligned with x_val (one of them shuffled or sorted alone), another preprocessing "
                "(scaling, column order, encoding) or another distribution.",
                "Build x_val and y_val as x and y are built: the same steps, fitted on the training rows, applied to both, rows "
                "and labels shuffled together. trainer.evaluate on a slice of the training rows scores them as the validation "
                "rows are: a low loss there and a loss at chance on the validation rows point at the validation data.",
                {**evidence, "first_epoch_loss": learned}, epoch=view.epochs[-1].epoch)
        return Issue(
            f"The validation loss never got clearly below {val_chance_text(view)}: its best was {format_number(best_val)} "
            f"({best_val / val_chance:.0%} of chance) while the training loss fell to {format_number(float(train[-1]))}. "
            f"Nothing the model learned carries over to new rows: it memorises the training rows, "
            f"which happens when the labels are unpredictable from the inputs (e.g. random labels).",
            advice, evidence, epoch=view.epochs[-1].epoch)
    return None


def _can_learn_text(rows: int | None) -> str:
    """loss-at-chance's advice on checking that the model can learn, ending its sentence: train on
    a tiny set until the loss is near 0, or, for a run on a tiny set (``rows`` training rows), what
    its failing that test says.

    4 XOR rows through Dense(2, relu), stuck at 0.6931 (seeds 2 and 4 of 6), were told to "train
    on 20 examples until the loss is near 0": the run was that test already.
    """
    if rows is None or rows > MIN_TRAIN_ROWS:
        return ("learn at all — train on 20 examples until the loss is near 0 (a model that cannot overfit "
                "a tiny set has a bug: a frozen or dead layer, a too small learning rate, a wrong loss).")
    return (f"learn at all: {rows} training row{'s' * (rows != 1)} {'are' if rows != 1 else 'is'} a set that a model able to learn fits to a loss near 0, "
            "so this run is that test, and its loss stayed at chance. Look for a frozen or dead layer (dead-relu does not "
            "judge batches under 8 rows: ReLUs off for every row show as a loss that never moves), a learning rate too "
            "small for the steps the run took (a few rows make few steps an epoch), a wrong loss; a very small network "
            "(XOR's 2 hidden units) can also start where it cannot get out: try other seeds or more units.")


def _chance_noise(view: Diagnoser) -> float:
    """The share of the validation chance level that a validation loss of unpredictable labels may
    end under it by chance: :attr:`~trainkit.diagnosis.rule_types.Thresholds.at_chance_noise` over
    the square root of the validation rows (0 where their number is unknown)."""
    rows = view.context.val_rows
    return view.t.at_chance_noise / math.sqrt(rows) if rows else 0.0


def _last_third_fall(losses: np.ndarray) -> float:
    """How much the losses fell over their last third (at least 3 epochs), as steadily_falling reads them."""
    tail = losses[-max(3, len(losses) // 3):]
    return float(tail[0]) - float(tail[-1])


def _creeping(view: Diagnoser, losses: np.ndarray, level: float) -> bool:
    """Whether ``losses`` (per epoch) still fall at nearly every epoch over their last third (see
    :func:`steadily_falling`) by at least :attr:`~trainkit.diagnosis.rule_types.Thresholds.at_chance_creep`
    of ``level`` an epoch: a fall a longer run would carry clearly below chance."""
    moves = min(len(losses), max(3, len(losses) // 3)) - 1
    return (moves > 0 and steadily_falling(losses)
            and _last_third_fall(losses) >= view.t.at_chance_creep * abs(level) * moves)


def _first_epoch_learned(view: Diagnoser, chance: float) -> float | None:
    """The first epoch's training loss when it is clearly below chance, else ``None``.

    Each step's loss is read before that step's update, so over the first epoch every batch is
    scored on rows the model never trained on (a progressive validation): random labels cannot go
    below chance there, memorised or not. Shuffled validation labels (val_loss 116% of chance beside
    a first epoch at 70-84%) were told "it memorises the training rows ... (e.g. random labels)".
    Only from the run's own first epoch of a fresh model (not a resumed run's, nor a model trained
    before, :func:`fresh_start`: one that had memorised 300 rows of random labels started a new
    trainer's first epoch at 0.2% of chance, and was told "the labels can be learned"), over enough
    rows for the mean to hold, and where an epoch reads each row once: a ``.repeat()``-ed dataset's first epoch of
    ``steps_per_epoch`` batches (128 rows of random labels read 30 times) had memorised them
    (17% of chance), and was told "the labels can be learned".
    """
    rows = view.context.train_rows
    one_pass = view.context.one_pass_epochs if view.context.one_pass_epochs is not None else rows is not None
    if (not view.epochs or view.epochs[0].epoch != 0 or not fresh_start(view) or chance <= 0 or not one_pass
            or (rows is not None and rows < view.t.first_epoch_min_rows)):
        return None
    first = float(view.epoch_losses(data_only=True)[0])
    return first if np.isfinite(first) and first < view.t.first_epoch_learned * chance else None


def _predictable_targets(view: Diagnoser, lead: str, evidence: dict[str, Any]) -> Issue:
    """loss-at-chance for a regression whose inputs' linear fit gets far below chance, where
    worse-than-linear gives the numbers: "the labels are unpredictable from the inputs" was false
    there, and sent users to their labels first."""
    return Issue(
        f"{lead}, although the targets can be predicted from its inputs: a least-squares linear fit of them gets far "
        "below chance (see worse-than-linear).",
        "Train on 20 examples until the loss is near 0: a model that cannot overfit a tiny set has a bug (an output that "
        "cannot reach the targets, a frozen or dead layer, a too small learning rate, a wrong loss).",
        {**evidence, "targets_predictable": True}, epoch=view.epochs[-1].epoch)


def _label_leaked(view: Diagnoser) -> bool:
    """Whether the data checks found the label among the inputs."""
    return "label-leakage" in (view.context.check_codes or ())


def _at_chance_despite_leak(view: Diagnoser, lead: str, evidence: dict[str, Any]) -> Issue:
    """loss-at-chance for a run whose inputs hold the label: the labels are predictable.

    An exact copy of the label in x, trained slowly (0.86 to 0.71 over 6 epochs, chance 0.69), was
    told "the labels are unpredictable from the inputs" beside label-leakage, which says they are
    given away.
    """
    return Issue(
        f"{lead}, although the data checks found the label among the inputs (label-leakage): the labels are "
        "predictable, even trivially, so it is the model that does not learn.",
        f"Check that the model can learn at all: train on 20 examples until the loss is near 0 (one that cannot has a "
        f"bug: a frozen or dead layer, a wrong loss), and raise the learning rate ({raised_lr_text(view)}) or train "
        "longer. Then drop the leaked column (see label-leakage) and judge the model by its validation loss.",
        {**evidence, "data_checks": ["label-leakage"]}, epoch=view.epochs[-1].epoch)


def _optimizer_stalled(view: Diagnoser) -> bool:
    """Whether the optimizer's own settings stopped its steps or shrank the weights away (see :func:`_stalled_by_optimizer`)."""
    return _rate_stalled(view) or epsilon_share(view) is not None or decayed_weights(view) is not None


def _rate_stalled(view: Diagnoser) -> bool:
    """Whether a learning rate that fell to ~0 while the loss was still falling (:func:`rate_cut_short`)
    stopped the run before it could learn.

    Random labels at chance from the first step, the rate cut after 2 flat epochs at 1e-3 by
    ``ReduceLROnPlateau``, were told "the steps stopped moving the weights before the model could
    learn, which says nothing about the labels yet": the flat loss lowered the rate, not the other
    way round.
    """
    return rate_cut_short(view) is not None


def _stalled_by_optimizer(view: Diagnoser, lead: str, evidence: dict[str, Any]) -> Issue:
    """loss-at-chance for a run whose optimizer stopped its own steps: a learning rate that fell to
    ~0 (a schedule, a callback lowering it), or an epsilon far above the gradients.

    Adam on ExponentialDecay(1e-3, decay_steps=5, decay_rate=0.1) was at 1e-6 after one epoch of
    15 steps; the loss stayed at 108% of chance for 10 epochs and was told "the labels are
    unpredictable from the inputs", while the rate had stopped every step. So was RMSprop with
    epsilon=1.0 (steps 8e-5 of the weights, 104% of chance).
    """
    decayed = rate_cut_short(view)
    if decayed is not None:
        peak, last = decayed
        return Issue(
            f"{lead}; but the learning rate fell from {peak:.3g} to {last:.3g} (under 1% of its largest for most of the "
            "second half of the run): the steps stopped moving the weights before the model could learn, which says "
            "nothing about the labels yet.",
            "Let the learning rate decay more slowly or to a floor (a schedule's decay_steps counts optimizer steps, not "
            "epochs; a callback lowering it, ReduceLROnPlateau, needs a min_lr). If the loss still stays at chance after "
            "that, check that the labels can be predicted from the inputs (x and y rows aligned, labels not shuffled or "
            "random).",
            {**evidence, "learning_rate_peak": peak, "learning_rate_last": last}, epoch=view.epochs[-1].epoch)
    shrunk = decayed_weights(view)
    if shrunk is not None:
        decay = view.context.weight_decay or 0.0
        return Issue(
            f"{lead}; but the optimizer's weight_decay ({decay:.3g}) shrank the weight matrices to {shrunk:.1%} of their "
            "starting size (median): every step takes the learning rate times weight_decay of each weight, whatever the "
            "loss, and the model's outputs collapsed to a constant, which says nothing about the labels yet.",
            f"Lower the weight decay ({optimizer_setting(view.context, 'weight_decay', '0.004')} is AdamW's default; 1e-4 to 0.1 is usual). If the loss "
            "still stays at chance after that, check that the labels can be predicted from the inputs (x and y rows "
            "aligned, labels not shuffled or random).",
            {**evidence, "weight_decay": decay, "weight_share": shrunk}, epoch=view.epochs[-1].epoch)
    eps = view.context.epsilon
    return Issue(
        f"{lead}; but the optimizer's epsilon ({eps:.3g}) is far above the gradients and set its steps (the learning rate "
        "times the gradient divided by epsilon, not ~the learning rate): they were too small for the model to learn, "
        "which says nothing about the labels yet.",
        f"Lower the epsilon ({optimizer_setting(view.context, 'epsilon', '1e-07')}, Keras's default). If the loss still stays at chance after that, "
        "check that the labels can be predicted from the inputs (x and y rows aligned, labels not shuffled or random).",
        {**evidence, "epsilon": eps}, epoch=view.epochs[-1].epoch)


def _dropout_holds_back(view: Diagnoser, train: np.ndarray, val: np.ndarray) -> bool:
    """Strong dropout (0.5 and up) with the last training loss, measured with it on, above the
    validation loss, measured with it off: underfitting's and oscillating-loss's test."""
    return (view.context.dropout >= DROPOUT_STRONG and val.size == train.size and val.size > 0
            and float(train[-1]) > float(val[-1]))


def _held_back_by_dropout(view: Diagnoser, lead: str, train: np.ndarray, val: np.ndarray, evidence: dict[str, Any]) -> Issue:
    """loss-at-chance blaming strong dropout, not the labels.

    Dropout 0.9 after each hidden layer ended 15 epochs at 118% of chance (validation 93% of its
    own) and was told "the labels are unpredictable from the inputs", while oscillating-loss beside
    it blamed the dropout rate.
    """
    rate = view.context.dropout
    return Issue(
        f"{lead}; but the training loss is measured with dropout at rate {rate:g} on, and it ended above the validation "
        f"loss ({format_number(float(train[-1]))} against {format_number(float(val[-1]))}): the dropout noise holds the "
        "model back, which says nothing about the labels yet.",
        f"Lower the dropout rate (now {rate:g}; 0.1-0.3 is usual, 0.5 at most) first. If the loss still stays at chance "
        "after that, check that the labels can be predicted from the inputs (x and y rows aligned, labels not "
        "shuffled or random).",
        {**evidence, "final_val_loss": float(val[-1]), "dropout": rate}, epoch=view.epochs[-1].epoch)


def _explained_by(view: Diagnoser, lead: str, blockers: list[str], evidence: dict[str, Any],
                  why: str = "are reasons it cannot learn") -> Issue:
    """loss-at-chance naming the run's own findings (``blockers``) as why the model could not learn.

    ``lead`` is the verdict, ending where "this run's other findings ..." goes on; ``why`` what
    they explain.
    """
    return Issue(
        f"{lead} this run's other findings ({', '.join(blockers)}) {why}.",
        f"Fix what {', '.join(blockers)} say{'s' if len(blockers) == 1 else ''} first. If the loss still stays "
        "at chance after that, check that the labels can be predicted from the inputs (x and y rows aligned, "
        "labels not shuffled or random).",
        {**evidence, "explained_by": blockers}, epoch=view.epochs[-1].epoch)


def _worse_than_chance(view: Diagnoser, train: np.ndarray, final: float, chance: float, val_learned: bool,
                       evidence: dict[str, Any], too_small_steps: bool) -> Issue | None:
    """A regression that ended far worse than predicting the target mean, with nothing else explaining it.

    Raw diabetes targets (mean 152, std 77) ended 40 epochs at 4.5x the target variance with no
    verdict: loss-at-chance stepped aside for diverging-loss / lr-too-high, which never fired.
    Regression only: a classifier's cross-entropy above chance with good accuracy is overconfidence,
    and the learning-rate findings cover the runs measured so far.
    """
    if view.context.task != "regression" or found_codes(view, OVERSHOOTING) or still_falling(view, train):
        return None  # still falling fast: underfitting's verdict
    moves = min(len(train), max(3, len(train) // 3)) - 1
    if (moves > 0 and steadily_falling(train)
            and _last_third_fall(train) / moves * view.t.worse_than_chance_horizon >= final - chance):
        # Still closing the gap to chance at a pace that gets there soon: no sign of being stuck,
        # however short the run (a 3-epoch run's "last quarter" is one epoch, which must fall 5%).
        return None
    if too_small_steps:
        # Falling epoch after epoch from a start above the mean, on steps too small to get
        # there: lr-too-low's case. RMSprop at 1e-6 (3.22 -> 2.62 over 30 epochs, targets
        # standardised) was also told "stuck away from the targets", with a 10x lower rate to try.
        # (lr-too-low fires only on such a fall, or on a learning rate of 0, which explains a flat
        # loss as well.)
        return None
    if val_learned:
        return None  # the validation loss beat the mean: something was learned
    ended = (f"The training loss ended at {format_number(final)} (best over the last third of the epochs), "
             f"{times_text(final / chance)} {chance_text(view)}: predicting {constant_prediction(view)} for every row would do "
             f"better, and the loss is no longer falling fast.")
    evidence = {**evidence, "ratio": final / chance}
    if targets_scaled(view) and not targets_tiny(view):
        return Issue(
            f"{ended} The targets are on a unit scale ({targets_text(view)}), so the predictions are stuck away "
            f"from them: an output that cannot reach them, units that stopped passing a signal, or steps that "
            f"do not settle.",
            f"Make sure the output layer can reach the targets (activation: linear for signed targets), read the "
            f"dead-relu and saturation statistics of the hidden layers, {standardise_inputs_advice(view)}and try the learning "
            f"rate lower ({lowered_lr_text(view)}) and higher ({raised_lr_text(view)}).",
            evidence, epoch=view.epochs[-1].epoch)
    return Issue(
        f"{ended} The model never reached the scale of the targets: typical of unstandardised targets (a linear "
        f"output starting near 0 for targets far from 0) or updates too small to get there.",
        targets_scaling_advice(view) + standardise_inputs_advice(view, "; standardise the inputs")
        + f", or initialise the output bias at {constant_prediction(view)} ({mean_bias_text(view)}); then check the "
        "learning rate and train longer if the loss still falls.",
        evidence, epoch=view.epochs[-1].epoch)


def floor_cause(view: Diagnoser) -> str:
    """What sets a loss floor above 0: Poisson's perfect prediction, or label smoothing."""
    return "a perfect prediction of the counts" if _is_poisson(view) else "label smoothing"


def _is_poisson(view: Diagnoser) -> bool:
    return (view.context.loss or "").startswith(("Poisson", "poisson"))


def _poisson_levels(view: Diagnoser) -> str:
    """For a Poisson loss, how to compute its two levels, or ``""``: its value goes below 0 (a count
    model at -0.20, another at -830), so the distance from 0 the other levels are read by says nothing."""
    if not _is_poisson(view):
        return ""
    return (" It knows Poisson()'s only where a perfect prediction scores 0 or more (Poisson counts of mean under ~2): the rules "
            "read a loss by its ratio to the chance level, from 0. For Poisson(), the best constant is the target mean m = y_train.mean(), scoring mean(m - y * log(m)); a "
            "perfect prediction scores mean(y - y * log(y)) (0 where y is 0), the floor: read the loss by where it lies "
            "between the two, not by its distance from 0.")


#: The verdicts that compare the loss with its chance level, and are not made without one.
CHANCE_VERDICTS = ("initial-loss-too-low", "initial-loss-too-high", "loss-at-chance", "plateau", "underfitting", "regularization-dominates")


def chance_level_unknown(view: Diagnoser) -> Issue | None:
    """No chance level for the run's loss: the verdicts that need one were not made.

    A hinge, Poisson or custom loss, a summed loss or soft targets left those six rules silent,
    and a report without findings read as a healthy run where half the diagnosis had not looked.
    """
    if not view.finished or view.context.chance_loss is not None or not view.epochs:
        return None
    loss = f" ({view.context.loss})" if view.context.loss else ""
    if view.context.soft_target_loss is not None:
        return _soft_targets_note(view, loss)
    if view.context.call_loss_layers:
        return _call_losses_note(view, loss)
    return Issue(
        f"No chance level (the loss a model that ignores its inputs gets) is known for this run's loss{loss}: a loss "
        f"without one, a compute_loss of the trainer's own, targets it cannot be computed on, or weights per output. So the verdicts that compare the loss "
        f"with one were not made: {', '.join(CHANCE_VERDICTS)}. The other findings (NaN, gradients, "
        f"activations, learning rate, overfitting) were judged as usual.",
        "Compare the loss with a baseline yourself: the same loss of a constant prediction (the class prior, the mean "
        "target) on these rows. trainkit knows the level of cross-entropy (focal too) on 0/1 labels, MSE, MAE, Huber, "
        "log-cosh, MAPE, MSLE and KL divergence averaged over the batch." + _poisson_levels(view),
        {"loss": view.context.loss or ""})


def _call_losses_note(view: Diagnoser, loss: str) -> Issue:
    """chance-level-unknown for a loss that holds a term a layer adds with ``add_loss`` in its call.

    A beta-VAE (KL x 20) was told its initialiser made the first loss 19x chance, and its
    collapsed posterior to fix that first: the KL term was read as loss on the data.
    """
    layers = view.context.call_loss_layers
    names = ", ".join(layers)
    return Issue(
        f"The training loss{loss} holds what {'layer' if len(layers) == 1 else 'layers'} {names} "
        f"{'adds' if len(layers) == 1 else 'add'} with add_loss in {'its' if len(layers) == 1 else 'their'} call "
        f"(a VAE's KL term, a penalty of one's own), whose level trainkit cannot tell, so the loss has no chance level (the "
        f"loss a model that ignores its inputs gets): the verdicts that compare the loss with one were not made: "
        f"{', '.join(CHANCE_VERDICTS)}. The other findings (NaN, gradients, activations, learning rate, overfitting) "
        f"were judged as usual.",
        "Log that term apart (return it from the layer, or compute it in a metric) and compare the rest of the loss with "
        "the same loss of a constant prediction (the class prior, the mean target) on these rows; a term that ends near 0 "
        "while the rest stays at that level is a collapsed posterior (lower the KL's weight, or warm it up from 0).",
        {"loss": view.context.loss or "", "add_loss_layers": names})


def _soft_targets_note(view: Diagnoser, loss: str) -> Issue:
    """chance-level-unknown for cross-entropy on soft targets: where the loss starts and ends, and
    how far between them the run got.

    An autoencoder's pixels in [0, 1] were told only of "targets it cannot be computed on" and to
    compare the loss with a constant prediction's themselves; its loss ending at 0.587, far above
    0, read as poor, where the constant prediction scores 0.693 and a perfect one 0.582: 95% of the
    way.
    """
    constant, floor = view.context.soft_target_loss, view.context.loss_floor
    final = float(view.epoch_losses(data_only=True)[-1])
    share = (constant - final) / (constant - floor)
    # A loss still above the mean prediction's (a conv autoencoder after 10 epochs: 0.24 against
    # 0.14) read "covers -97% of the way".
    # A NaN final loss (share NaN) read "is still above the mean prediction's loss" beside nan-loss.
    where = ("is not finite, so how far it got cannot be told" if not np.isfinite(share) else
             f"covers {share:.0%} of the way from the mean prediction's loss down to that floor" if share >= 0 else
             "is still above the mean prediction's loss: the model does no better than predicting the mean yet")
    return Issue(
        f"The targets are probabilities, not 0/1 labels (an autoencoder's pixels in [0, 1], a teacher's soft labels): "
        f"the loss{loss} cannot go below their own entropy, {format_number(floor)} here (predicting every target "
        f"exactly), and predicting their mean for every row scores {format_number(constant)}. The final training loss, "
        f"{format_number(final)}{penalty_note(view)}, {where}. No chance "
        f"level is set for such targets, so the verdicts that compare the loss with one were not made: "
        f"{', '.join(CHANCE_VERDICTS)}. The other findings (NaN, gradients, activations, learning rate, overfitting) "
        f"were judged as usual.",
        "Judge the loss by that share, (mean-prediction loss - loss) / (mean-prediction loss - floor), not by its distance "
        "from 0 (metrics: ['mae'] adds an error on the targets' own scale).",
        {"loss": view.context.loss or "", "mean_prediction_loss": constant, "floor": floor, "final_train_loss": final,
         "share_of_the_way": share})
