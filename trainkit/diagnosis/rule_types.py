"""The types every diagnosis rule is made of: :class:`Thresholds`, :class:`Issue` and :class:`Rule`.

Each rule reads a :class:`~trainkit.diagnosis.engine.Diagnoser` (the bounded summaries of a run) and
returns :class:`Issue` records, or nothing; its :class:`Rule` turns them into findings. The thresholds
live in :class:`Thresholds`; their defaults start from the published detectors
(``shared/DIAGNOSIS.md``: TheDeepChecker, AUTOTRAINER, DeepDiagnosis, UMLAUT, SageMaker Debugger) and
were calibrated on trainkit's scenario recipes and on clean runs (``tests/test_scenarios.py``); the
comment next to each says where it comes from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from trainkit.findings import Finding, Severity

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser


When = Literal["call", "epoch", "end"]


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Every number the rules compare against (see each rule for its use).

    The defaults were calibrated so that every broken scenario recipe shows its finding and no
    fixed recipe or clean run gets a warning; change them with care (and rerun the scenarios).
    """

    # Initial loss: first steps before the weights moved much (min/max of the first 3 losses).
    initial_steps: int = 3
    # TheDeepChecker flags |L0 - log K| >= log K; far *below* chance is the suspicious direction.
    initial_low_factor: float = 0.5
    # Above 3x chance for classification (2x, TheDeepChecker, fired on healthy he_normal MLPs whose
    # first batch loss is ~1.6x chance); regression's chance (the target variance) is often
    # doubled by the random output at initialisation, so it gets more room.
    initial_high_factor: float = 3.0
    initial_high_factor_regression: float = 10.0
    # Loss-curve rules wait for this fraction of the planned epochs (AUTOTRAINER waits for 30%).
    curve_fraction: float = 0.3
    curve_min_epochs: int = 3
    curve_min_steps: int = 20
    # Loss at chance: the training loss has not fallen 10% below chance (nor the validation loss),
    # or the best validation loss never went 5% below it.
    at_chance_train: float = 0.9
    #: Above this multiple of chance the loss is not "at chance" but worse than a constant
    #: prediction (diverging, a learning rate too high: other findings).
    at_chance_ceiling: float = 1.25
    at_chance_validation: float = 0.95
    #: A validation loss "under its chance level" must be this many times 1/sqrt(validation rows)
    #: of that level under it: random multi-hot labels on 40 rows (a logistic model at Adam 1e-3)
    #: ended 0.35% under theirs, lower at every epoch, at 1 seed in 20 to 5, and read as learning.
    #: 0.06 asks 0.95% under it of 40 rows, 0.67% of 80: the logistic regression on 400 rows
    #: (80 held out) whose validation loss ended 1.9% under its chance level still learns.
    at_chance_noise: float = 0.06
    #: A first epoch's training loss under this share of chance, over this many training rows at
    #: least (or a dataset's), was scored on rows before the model stepped on them: the labels can
    #: be predicted, and a validation loss at chance says the validation rows differ. Random labels
    #: start at 103-114% of chance (250 and 1000 rows, Adam 1e-2 and 3e-2).
    first_epoch_learned: float = 0.85
    first_epoch_min_rows: int = 200
    #: Validation rows a verdict read from the validation loss alone needs (overfitting, a
    #: validation loss at chance), as validation-target-range needs 5: fit(validation_split=0.2)
    #: on 5 rows held out 1, whose loss rising from 0.018 to 0.44 was told "the model overfits".
    min_validation_rows: int = 5
    #: regularization-dominates: the penalty's share of the training loss at the end.
    penalty_share: float = 0.5
    #: Within this fraction of chance, a loss has settled at chance: falling onto it from above
    #: is no sign of learning (random labels at Adam 1e-4: 0.88 -> 0.68, chance 0.69).
    at_chance_band: float = 0.05
    #: A loss near chance that still falls at nearly every epoch by this share of chance an epoch
    #: (over the last third) has not shown where it settles: a short run's (3 epochs of a text
    #: classifier, 0.684 -> 0.642 against 0.693, 3% an epoch; an MLP at Adam 3e-4, 0.723 -> 0.692,
    #: 2%) is no verdict on the labels. Random labels settling onto chance creep far slower
    #: (Adam 1e-4, from 0.87: 0.19% an epoch over the last third of 20 epochs; an LSTM 0.07%).
    at_chance_creep: float = 0.0025
    #: A regression's loss above chance that still falls at nearly every epoch at a pace that
    #: reaches chance within this many more epochs is not "stuck away from the targets": an MLP at
    #: Adam 3e-4, 1.911, 1.808, 1.729 in 3 epochs (chance 1.263, 4-5% an epoch: under
    #: underfitting's 5% over the last quarter) was; raw diabetes targets at 4.5x chance, falling
    #: 1% an epoch for 40 epochs, are.
    worse_than_chance_horizon: int = 10
    # Loss collapsed: within the first 2 epochs the loss is under 2% of chance (1e-3 without one).
    # Healthy runs measured >= 27% of chance in their first 3 epochs (a smooth regression), MNIST-like
    # tasks ~10% after one long epoch, but honest easy tasks far less: a near-deterministic
    # standardised regression 2.6% after the second, separable blobs (tanh MLP) 4.9% (5% fired on
    # both). A label copied into the inputs (zero_leak_broken) measured 0.8-1.7% after the second
    # epoch over seeds 0-2: the margin is thin both ways, so the message names both causes.
    collapse_fraction: float = 0.02
    collapse_absolute: float = 1e-3
    collapse_epochs: int = 2
    # A loss under 5% of chance is a solved task: tiny gradients everywhere are no vanishing.
    solved_fraction: float = 0.05
    # Diverging: an epoch loss twice the best so far and above the first epoch's, still rising;
    # or a single step loss 100x the initial loss.
    diverge_factor: float = 2.0
    diverge_step_factor: float = 100.0
    # ... and a step loss over twice the worst batch a constant prediction reads: a model that
    # learned predicts a far row a little off the constants too (-0.49 where Huber's constant is
    # ~0: a far row at 1000 read 999.99 against the constant's 999.5).
    diverge_worst_batch_factor: float = 2.0
    # Oscillating (TheDeepChecker: > 50% sign changes): over the last 10 epochs at least half of the
    # moves change direction, with moves of at least 10% of the loss scale (the larger of the loss
    # and chance: dropout noise on a loss near zero is no oscillation).
    oscillation_window: int = 10
    oscillation_min_epochs: int = 6
    oscillation_sign_fraction: float = 0.5
    oscillation_amplitude: float = 0.1
    # ... and the moves mostly cancel out: the net change is under 30% of the total movement.
    oscillation_max_trend: float = 0.3
    # Plateau: over the last half of the epochs the loss improved by < 1%, after a total
    # improvement of < 25%, while below chance (at chance it is loss-at-chance).
    plateau_improvement: float = 0.01
    plateau_total_improvement: float = 0.25
    # Weights frozen: every epoch's training loss within this fraction of their mean (3 epochs at
    # least). Shuffled batches sum in another order each epoch (~1e-7 apart); a step that moves
    # the weights at all moves the epoch loss far more.
    frozen_spread: float = 1e-6
    frozen_min_epochs: int = 3
    # Learning rate: update/weight ratio of the weight matrices (DeepDiagnosis: outside
    # [1e-5, 1e-1]; CS231n: ~1e-3 healthy). Too high (> 0.1 over the first steps or in an epoch)
    # needs a bad loss trend as well. Too low is judged on the first 32 steps, before updates
    # shrink with convergence: healthy Adam(1e-3) runs measured 1.4e-3..6e-3 there, Adam(1e-4)
    # 4e-4; later in a healthy run the ratio falls to ~3e-4, so the whole-run median cannot tell.
    lr_high_ratio: float = 0.1
    # ... also judged on each of the very first steps (median over the weight matrices): Adam at
    # lr 1.0 measured 0.99 at step 0, but a median of 0.03 over 32 steps once its ReLUs had died;
    # Adam(1e-3)'s first steps are ~learning_rate per weight, ~2e-3 of a he_normal kernel's size.
    lr_high_first_steps: int = 3
    lr_high_spike: float = 3.0
    # ... in a fit that starts from trained weights (a pretrained base unfrozen for fine-tuning),
    # steps of this fraction of the weights are enough, where the first epoch's training loss
    # undid what they had learned: lr_high_spike x the first step's loss (the trained weights' own,
    # on this fit's data) and by lr_high_undone_chance of chance above it. A base unfrozen under
    # Adam 1e-2 took steps of 6% (median over the first steps' weight matrices) and its loss went
    # 0.02 -> 0.25 in the first epoch, validation 0.067 -> 0.09-0.22, with no finding.
    lr_high_trained_ratio: float = 0.03
    lr_high_undone_chance: float = 0.1
    lr_low_ratio: float = 7e-4
    # ... but a ratio of ~0 means no gradient reaches the weights (dead or saturated units): it
    # says nothing about the learning rate (ReLUs dead from a bias of -5 measured exactly 0).
    lr_low_min_ratio: float = 1e-8
    # Too low: the loss still falls steadily at the end but has fallen less than this fraction.
    lr_low_max_improvement: float = 0.5
    # Vanishing gradients (AUTOTRAINER: |g_first| / |g_last| < 1e-3; DeepDiagnosis: < 1e-7).
    vanish_ratio: float = 1e-3
    vanish_absolute: float = 1e-7
    # Exploding gradients (TheDeepChecker > 1e6 or growth; AUTOTRAINER ratio > 70): the global
    # gradient norm 100x its baseline of the first steps (and above 1.0).
    explode_factor: float = 100.0
    explode_min_norm: float = 1.0
    # ... at a step whose loss is not under this fraction of the first steps' (a norm growing as
    # the loss falls far is a model leaving a flat start: a small-init tanh stack measured 170x).
    explode_loss_fraction: float = 0.5
    # Dead ReLU (AUTOTRAINER/DeepDiagnosis >= 70% of outputs <= 0; SageMaker: > 50% of a layer
    # inactive): half of the layer's units never active in a batch, for 2 epochs running.
    dead_fraction: float = 0.5
    # Judged again at the end, a layer's units count as back only under this fraction (for
    # sustained_epochs epochs): 49% after 60% is a reading at the bar, not a recovery.
    dead_recovered_fraction: float = 0.45
    # "Never active in a batch" needs a batch: with one row, a healthy unit active for half the
    # inputs reads dead half the time (a healthy MLP at batch_size 1 showed 55% "dead"). From 8
    # rows a unit active for 20% of the inputs reads dead in ~17% of the batches.
    dead_relu_min_batch: int = 8
    # Saturation (DeepDiagnosis > 50% beyond +-5; here post-activation |tanh| > 0.99): a warning
    # from 50% of the outputs, an info note from 25% (a healthy, converged tanh MLP measured 14%).
    saturated_fraction: float = 0.5
    saturated_info_fraction: float = 0.25
    sustained_epochs: int = 2
    # Overfitting (UMLAUT: validation loss rising while training loss falls): the validation loss
    # 10% (and 3% of chance, a classifier's chance capped at ln 2) above its minimum for 3 epochs (or 10% of the epochs) while the
    # training loss fell.
    overfit_rise: float = 0.1
    overfit_min_rise: float = 0.03
    overfit_min_epochs: int = 3
    overfit_epoch_fraction: float = 0.1
    # Underfitting: training stopped while the loss was still falling fast: more than 5% over
    # the last quarter of the epochs, with the validation loss falling too.
    underfit_tail_fraction: float = 0.25
    underfit_tail_improvement: float = 0.05
    # ... while the training loss on the data is still above half the chance level, and ends
    # within 5% of its best: a fall that only undoes an earlier jump is not "still falling".
    underfit_level: float = 0.5
    underfit_near_best: float = 0.05
    # ... and at least half of the training loss's fall over that tail shows in the validation
    # loss: where less does, most of the progress only widens the gap to the validation rows
    # (memorising), and more epochs would overfit rather than fit.
    underfit_val_share: float = 0.5
    # Worse than linear: the model's best validation loss (training loss without validation rows)
    # at least 2x the loss of the inputs' least-squares linear fit on the same rows, where that fit
    # explains a real share of the target (its loss under 70% of chance). Where a linear model is
    # near-optimal, healthy models end close above it: an MLP on diabetes, and MLPs (Adam 1e-3, 20
    # epochs) on a random walk's windows, whose best predictor is the last value, at 1.06-1.61x
    # (seeds 0-2, 1,500 and 3,000 rows, split by time or at random): 1.5x fired on two of those.
    # Broken runs measured 8x and more (a forecaster under SGD 1e-3, a sigmoid output).
    linear_worse_factor: float = 2.0
    linear_explains: float = 0.7
    # ... and ending at least 2% of the chance level above the fit (loss-collapsed's share): on a
    # linear target with little noise (the fit at 0.1% of chance), healthy MLPs (Adam 1e-3, 30
    # epochs, seeds 0-2) ended at 2.3-3.6x the fit, 0.2-0.4% of chance (R^2 0.997), and were told
    # "something in its training is off"; the forecaster under SGD 1e-3 ends 5.7% of chance above.
    linear_min_gap: float = 0.02
    # Validation below training: over the last third of the epochs the validation loss averages
    # under 85% of the training loss (both on the data), by at least 2% of the chance level (a
    # gap of 0.004 between losses near 0 is no question anyone asks).
    val_below_train_share: float = 0.85
    val_below_train_min_gap: float = 0.02
    # ... and a BatchNormalization layer normalising training batches of fewer rows than this by
    # their own statistics is one of the reasons it names (the batchnorm-batch-of-one check's
    # advice: 16 rows or more). Dense, BatchNormalization, ReLU at batch_size 2: training 0.49,
    # validation 0.36, the training rows scored by evaluate 0.42.
    batchnorm_small_batch: int = 16
    # BatchNormalization lag: its moving averages still hold 5% or more of their start (momentum
    # 0.99 over 298 steps or fewer, 0.9 over 28) and the validation loss ends at 1.25x the
    # training loss or more (and by 3% of chance, overfitting's floor): the two losses are
    # measured through different statistics. 48 steps at 0.99 (62% of the start) on inputs
    # centred at 20: validation 1.45 against training 0.47, evaluate on the training rows 1.77.
    batchnorm_start_share: float = 0.05
    # ... and, where the end of the run measured it (not in runs saved before), the averages err by
    # this much of a normalised value's spread from the batches' statistics they imply (see
    # model_facts.batch_norm_errors): 0.10-0.11 (240 steps at 0.99) and 0.29 (48 steps) on
    # standardised inputs, where evaluate scored the training rows at their training loss; 9.2
    # on inputs centred at 20 (48 steps), where it scored them at 3.36 against 0.64.
    batchnorm_lag_error: float = 0.5
    batchnorm_val_above: float = 1.25


@dataclasses.dataclass(frozen=True)
class Issue:
    """What a rule found; the registry turns it into a :class:`~trainkit.findings.Finding`."""

    message: str
    advice: str
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)
    step: int | None = None
    epoch: int | None = None
    layer: str | None = None
    severity: Severity | None = None  # overrides the rule's severity (e.g. handled -> info)


RuleFn = Callable[["Diagnoser"], "Issue | Iterable[Issue] | None"]


@dataclasses.dataclass(frozen=True)
class Rule:
    """A registered rule: stable code, default severity, when it runs, and what it detects."""

    code: str
    severity: Severity
    when: When
    check: RuleFn
    summary: str
    #: Judged again on the whole run at its end (see ``Diagnoser._rejudge``): for verdicts a later
    #: epoch can undo.
    rejudge: bool = False
    #: Its advice names the run's lowered learning rate (:func:`~trainkit.diagnosis.lr_advice._lowered_lr`), which comes from
    #: step sizes measured as the run goes: at its end the advice is written again from the whole
    #: run's (in ``Diagnoser._run_rules`` once the run is finished), so that every finding names the same rate.
    refresh_advice: bool = False

    def evaluate(self, view: Diagnoser) -> list[Finding]:
        """Runs the check and wraps its issues into findings."""
        result = self.check(view)
        if result is None:
            return []
        issues = [result] if isinstance(result, Issue) else list(result)
        return [
            Finding(code=self.code, severity=i.severity or self.severity, message=i.message, advice=i.advice,
                    evidence={k: _plain(v) for k, v in i.evidence.items()}, step=i.step, epoch=i.epoch, layer=i.layer)
            for i in issues
        ]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) and abs(value) >= 1e-4 else (float(f"{value:.4g}") if math.isfinite(value) else None)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
