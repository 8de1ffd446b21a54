"""What rules measure on the loss: its first steps, whether it still falls (steadily, or fast at the
end), and whether the run is far enough along for the loss curve to be judged.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from trainkit.diagnosis.number_text import format_number

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser


def penalty_note(view: Diagnoser) -> str:
    """`` (losses on the data: ...)`` for messages quoting losses without the regularization penalty, or ``""``.

    The curve rules judge the losses on the data (the epoch losses less the penalty), so their
    numbers differ from the History's by the penalty: L2 0.001 on two 256-unit layers made an
    overfitting message say 0.7322 where report.json's last val_loss was 0.768.
    """
    penalty = view.regularization_values()
    last = float(penalty[-1]) if penalty.size else 0.0
    if not math.isfinite(last) or last == 0.0:
        return ""
    # The training loss holds the penalty as it went over the epoch (an activity penalty's, its
    # own rows'): where that differs, both are said.
    train = float(view.train_regularization_values()[-1])
    if math.isfinite(train) and abs(train - last) > 0.01 * abs(last):
        return (f" (losses on the data: without the regularization penalty, {format_number(train)} in the last epoch's "
                f"training loss and {format_number(last)} in its validation loss, that the epoch losses include)")
    return (f" (losses on the data: without the regularization penalty, {format_number(last)} in the last epoch, "
            f"that the epoch losses include)")


def first_losses(view: Diagnoser) -> np.ndarray:
    """The finite losses of the first steps this diagnosis saw (the reference for spikes)."""
    losses = view.first_values("loss")[: view.t.initial_steps]
    return losses[np.isfinite(losses)]


def fresh_start(view: Diagnoser) -> bool:
    """Whether this diagnosis saw a fresh model's first steps.

    Not when it began later (a trainer's second ``fit``), nor for a model trained before its
    trainer got it (a notebook's new Trainer for a model an earlier cell trained): their first
    steps start from trained weights.
    """
    return view.first_step == 0 and not view.context.trained_before


def improvement_origin(view: Diagnoser, first: float, chance: float | None) -> float:
    """The loss a fit's improvement in all is measured from: its first loss, or chance where that
    is higher in a fit that starts from trained weights (:func:`fresh_start`: a trainer's second
    ``fit``, a pretrained base unfrozen for fine-tuning), whose first loss is what the earlier
    training reached.

    A fine-tune at Adam 1e-5 of a model that already fit (0.1627 -> 0.161, chance 0.69) read as
    a run that learned 1% in all: ``plateau`` called its training stuck and ``lr-too-low`` its
    rate too low, rules made for a model that starts at chance.
    """
    if chance is None or fresh_start(view):
        return first
    return max(first, chance)


def initial_losses(view: Diagnoser) -> np.ndarray:
    """The finite losses of the run's first steps; none when they were no fresh model's.

    A resumed run (or a second ``fit``) starts where training left off: its first steps are
    not a fresh model's, and judging them against chance flagged every resumed run.
    """
    return first_losses(view) if fresh_start(view) else np.zeros(0)


def steadily_falling(losses: np.ndarray) -> bool:
    """Whether the last third of the epoch losses (at least 3) falls epoch after epoch (3 in 4)."""
    tail = losses[-max(3, len(losses) // 3):]
    return len(tail) >= 2 and float(np.mean(np.diff(tail) < 0)) >= 0.75 and tail[-1] < tail[0]


def curves_ready(view: Diagnoser) -> bool:
    """Loss-curve rules judge only after a fair share of the run (or at its end)."""
    needed = max(view.t.curve_min_epochs, math.ceil(view.t.curve_fraction * view.planned_epochs))
    if view.epochs_run < (view.t.curve_min_epochs if view.finished else needed):
        return False
    return view.steps >= view.t.curve_min_steps


def few_validation_rows(view: Diagnoser) -> bool:
    """Whether the validation rows are too few for a verdict read from the validation loss: one
    held-out row's loss says nothing of how the model generalises (unknown rows count as enough)."""
    rows = view.context.val_rows
    return rows is not None and rows < view.t.min_validation_rows


def tail_drop(view: Diagnoser, losses: np.ndarray) -> tuple[float, int]:
    """How much the loss fell over the last quarter of the epochs (at least 2), and over how many.

    Above :attr:`~trainkit.diagnosis.rule_types.Thresholds.underfit_tail_improvement` the loss is "still falling fast": a run
    that ends so has not shown where its loss settles.
    """
    n = max(2, math.ceil(view.t.underfit_tail_fraction * len(losses)))
    tail = losses[-n:]
    return (float(tail[0]) - float(tail[-1])) / max(abs(float(tail[0])), 1e-12), n


def still_falling(view: Diagnoser, losses: np.ndarray) -> bool:
    """Whether ``losses`` (finite, per epoch) still fall fast at their end (see :func:`tail_drop`),
    towards a new best (ending within :attr:`~trainkit.diagnosis.rule_types.Thresholds.underfit_near_best`
    of their lowest).

    A fall that only undoes an earlier jump shows no new level the loss is heading for: the
    validation loss of random labels (20 rows, 10 classes) went from its best 2.21 up to 2.96 and
    back to 2.73 in the last epochs, and that fall kept loss-at-chance silent.
    """
    return (len(losses) >= 2 and tail_drop(view, losses)[0] >= view.t.underfit_tail_improvement
            and float(losses[-1]) - float(np.min(losses)) <= view.t.underfit_near_best * abs(float(np.min(losses))))
