"""Rules on the loss level and curve: at chance, collapsed, NaN/inf, diverging, oscillating, on a plateau, frozen."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from trainkit.checks.row_checks import MIN_TRAIN_ROWS
from trainkit.diagnosis.finding_groups import (
    CANNOT_LEARN,
    OVERSHOOTING,
    found_codes,
    init_blocked_found,
    lr_lowering_found,
)
from trainkit.diagnosis.fit_rules import DROPOUT_STRONG, regularization_dominates, worse_than_linear
from trainkit.diagnosis.loss_measures import (
    curves_ready,
    few_validation_rows,
    first_losses,
    fresh_start,
    improvement_origin,
    penalty_note,
    steadily_falling,
    still_falling,
)
from trainkit.diagnosis.lr_advice import (
    clipping_text,
    decayed_weights,
    epsilon_share,
    lowered_lr_text,
    raised_lr_text,
    rate_cut_short,
    rate_cut_while_learning,
    schedule_ended_text,
)
from trainkit.diagnosis.lr_rules import lr_too_low
from trainkit.diagnosis.number_text import format_number, times_text
from trainkit.diagnosis.rule_types import Issue
from trainkit.diagnosis.setting_text import fit_setting, optimizer_setting
from trainkit.diagnosis.stat_reads import dead_outputs, epoch_of_step, layer_of
from trainkit.diagnosis.task_context import (
    chance_level,
    chance_text,
    constant_prediction,
    mean_bias_text,
    standardise_advice,
    standardise_inputs_advice,
    targets_scaled,
    targets_scaling_advice,
    targets_text,
    targets_tiny,
    val_chance_level,
    val_chance_text,
)
from trainkit.diagnosis.update_ratios import early_update_ratio
from trainkit.stat_names import (
    GLOBAL_GRAD_NORM,
    GRAD_NONFINITE,
    GRAD_NORM,
    LOSS,
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


def _total_at_chance(view: Diagnoser) -> Issue | None:
    """loss-at-chance for the total loss (a model's only one, or the sum of its outputs')."""
    chance = chance_level(view)
    if chance is None or not view.finished or not curves_ready(view):
        return None
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
              + _can_learn_text(view.context.train_rows if float(train[-1]) >= view.t.at_chance_train * chance else None))
    # A validation loss clearly below chance means something generalisable was learned, however
    # slowly: that is not "at chance" (see lr-too-low / underfitting).
    val_learned = best_val is not None and best_val < view.t.at_chance_train * val_chance
    too_small_steps = lr_too_low(view) is not None
    if final > view.t.at_chance_ceiling * chance:
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
    noise = _chance_noise(view) * val_chance
    creeping = (final >= view.t.at_chance_train * chance and _creeping(view, train, chance) and not found_codes(view, CANNOT_LEARN)
                and (val.size == 0 or (_creeping(view, val, val_chance) and _last_third_fall(val) > noise
                                       and float(val[-1]) <= (1 + view.t.at_chance_band) * val_chance)))
    above = final > (1 + view.t.at_chance_band) * chance
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
    if (final >= view.t.at_chance_train * chance and not val_learned and not still_falling(view, train) and not slow
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
    if (best_val is not None and best_val >= view.t.at_chance_validation * val_chance and not still_falling(view, val)
            and not slow and not learning):
        if blockers or float(train[-1]) >= view.t.at_chance_train * chance:
            # A training loss that never got clearly below chance memorised nothing: L2 1.0 on every
            # layer (training loss 104% of chance, falling as the penalty shrank the weights) was
            # told "it memorises the training rows ... e.g. random labels".
            trained = float(train[-1]) < view.t.at_chance_train * chance
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


def _floor_cause(view: Diagnoser) -> str:
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
        f"{f', of its distance from the floor {format_number(floor)} that {_floor_cause(view)} sets' if floor > 0 else ''})"
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
