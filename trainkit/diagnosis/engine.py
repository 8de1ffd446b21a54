"""The :class:`Diagnoser`: bounded summaries of a run's statistics stream, and the rules over them.

The diagnoser is fed what the training loop already has on the host, between compiled calls:

* :meth:`Diagnoser.add_steps` — one compiled call's per-step scalars (``loss``, ``grad_norm/...``,
  ``activation/...``; names in :mod:`trainkit.stats`), as a ``[steps, names]`` array;
* :meth:`Diagnoser.end_epoch` — the epoch's exact logs (``loss``, metrics, ``val_*``);
* :meth:`Diagnoser.finish` — the end of training.

It never keeps every step. Memory is bounded by the number of epochs, not steps: per epoch it keeps
one :class:`EpochRecord` (finite mean, min, max, last value and non-finite count of every statistic),
plus the first :data:`FIRST_STEPS` raw rows of the run and a few streaming detectors (first
non-finite step, first gradient explosion). Everything it keeps depends only on the sequence of
steps, never on how the steps were split into compiled calls, so replaying a run's TensorBoard
events epoch by epoch (:mod:`trainkit.diagnosis.readback`) reaches the same findings as the live run.

Rules (:mod:`trainkit.diagnosis.rules`) read this state through the :class:`Diagnoser` itself and
are evaluated at three moments, as each rule declares: after every compiled call (``"call"``:
non-finite loss, exploding gradients, the first losses), after every epoch (``"epoch"``: curves that
are judged as they grow) and at the end (``"end"``: verdicts that need the whole run). A finding is
kept the first time it is detected (one per code and layer) and reported once.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from trainkit.findings import Finding
from trainkit.history import numeric_logs
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
    variable_of,
)

_RANK = {"info": 0, "warning": 1, "error": 2}
#: Raw rows kept from the start of the run (initial-loss rules, gradient baselines).
FIRST_STEPS = 32
#: Steps whose global gradient norm forms the baseline of the explosion detector.
BASELINE_STEPS = 8
#: Steps (the one judged and those before it) whose median loss the explosion detector reads.
EXPLOSION_LOSS_STEPS = 8
#: Stop reasons (``notes["stop_reason"]``) of a run that did not end: no end-of-run verdicts.
UNFINISHED = ("interrupted", "failed")


@dataclasses.dataclass
class Context:
    """What the rules need to know about the run besides its statistics.

    Attributes:
        task: ``binary``, ``multiclass``, ``multilabel`` or ``regression``.
        loss: The loss as written in messages, e.g. ``BinaryCrossentropy(from_logits=False)``.
        chance_loss: The loss of the best constant prediction (label prior / target mean), or
            ``None`` when it cannot be computed (custom loss, unknown targets).
        chance_detail: How the chance level was computed, for messages.
        val_chance_loss: The validation loss's own chance level: the loss of the best constant
            prediction on the validation rows, with their own weights (see
            :mod:`trainkit.diagnosis.baseline`), or ``None`` when the validation targets are
            unknown (a dataset, or no validation): the rules then use ``chance_loss``.
        val_chance_detail: How the validation chance level was computed, for messages.
        regularization: The regularization penalty (``sum(model.losses)``) at the start, which
            the training loss includes on top of the data loss.
        layers: Layer names in model order (to name the first layer that went non-finite and the
            first and last weight layers).
        output_layers: Names of the layers that produce the model's outputs (their saturation is
            a confident prediction, not a problem).
        softmax_layers: Names of the softmax layers, nested ones included (an attention's): a
            peaked softmax is a confident choice, not units in a flat tail.
        sloped_layers: Names of the measured layers whose activation is not 0 below 0
            (leaky_relu, prelu, elu, selu), nested ones included: a unit of theirs that is never
            positive still passes a gradient, and is not dead as a ReLU's is.
        smooth_layers: Names of the measured layers whose activation is a smooth ReLU (gelu, silu,
            mish, softplus, hard_silu), nested ones included: a unit of theirs is dead when its
            output stays near 0, not when it is never positive.
        epochs: Epoch index training was asked to run up to (exclusive), when known.
        initial_epoch: First epoch of this fit.
        learning_rate: The optimizer's learning rate at the start, when it is a number.
        optimizer: The optimizer's class name.
        batch_size: Rows per batch, when known (a dataset's: its first batch's).
        train_rows: Training rows, when known.
        one_pass_epochs: Whether an epoch reads each training row once at most (in-memory rows;
            a dataset whose pipeline holds no ``.repeat()``), so that the first epoch's batches
            are each scored before the model stepped on them; ``None`` when unknown (a run
            written before it was recorded: in-memory rows, ``train_rows`` known, read once).
        batches_in_order: Whether the training batches come in the data's own order every epoch
            (in-memory rows with ``shuffle=False``, a dataset whose pipeline holds no shuffle, a
            PyDataset read in order): the first steps' batches are then its beginning (a series'
            first values, rows sorted), no sample of it; ``None`` when unknown.
        has_validation: Whether validation values are computed each epoch.
        val_rows: In-memory validation rows, when known (``None`` for a validation dataset).
        early_stopping: ``{"monitor", "patience", "restore_best_weights"}`` of an EarlyStopping
            callback, when one is used.
        target_mean: A regression's training targets: the mean of the column farthest from unit
            scale (see :func:`trainkit.diagnosis.baseline.target_scale`), when known.
        target_std: That column's standard deviation, when known.
        target_constant: A one-column regression's best constant prediction under its loss (see
            :attr:`trainkit.diagnosis.baseline.Baseline.constant`), when known: the target mean
            for MSE only (MAPE's is far below it on skewed targets).
        target_columns: How many columns the regression's targets have per row, when known: the
            target mean is one column's, so a bias at it fits a one-column output only.
        target_axes: For targets of an output that predicts per position (an image's pixels), the
            axes their per-channel mean is taken over (see
            :func:`trainkit.checks.data_context.position_axes`); ``None`` for targets per row.
        check_codes: The codes the data checks found before the first step (``unscaled-inputs``,
            ``label-leakage``...); ``None`` when they did not run.
        far_value_checks: Of :attr:`check_codes`, ``unscaled-inputs`` and ``unscaled-targets``
            when they found the data on a normal scale but for a few far rows (under 1%): their
            advice is to check those rows (clip them, or keep the targets under huber/mae), and
            standardising, which would squash every other row, is advised nowhere else.
        uninformed_loss: A classifier's loss when it predicts every class alike (where a fresh
            output starts; above ``chance_loss`` for imbalanced classes), a regression's when it
            predicts 0, ``None`` when unknown.
        loss_floor: The loss of a perfect prediction: 0 but for cross-entropy on label-smoothed
            or soft targets, whose own entropy it never goes below (see
            :attr:`trainkit.diagnosis.baseline.Baseline.floor`,
            :attr:`trainkit.diagnosis.baseline.SoftTargetLevels.floor`).
        val_loss_floor: :attr:`loss_floor` on the validation rows, beside their own
            :attr:`val_chance_loss` (a Poisson loss's differs with the rows); ``None`` when unknown.
        soft_target_loss: For cross-entropy on soft targets, which has no chance level, the loss
            of predicting their mean (:class:`trainkit.diagnosis.baseline.SoftTargetLevels`);
            ``None`` otherwise.
        summed_loss: Whether the loss sums over each batch's rows instead of averaging them
            (see :func:`trainkit.diagnosis.baseline.summed_over_batch`): its level grows with a
            batch's rows.
        first_steps_loss: The lowest plausible loss over the first steps while the model
            predicts a constant, a classifier's prior or a regression's best constant or 0 (below
            ``chance_loss`` where a batch may lack a rare class, or a regression's few far targets:
            see :func:`trainkit.diagnosis.baseline.first_steps_level`), ``None`` when unknown.
        worst_batch_loss: The highest loss one batch can read while the model predicts such a
            constant (see :func:`trainkit.diagnosis.baseline.worst_batch_level`), ``None`` when unknown.
        dropout: The highest dropout rate of the model's layers (``Dropout``, ``rate`` of its
            kind, an RNN's ``dropout``/``recurrent_dropout``), 0 without dropout.
        dropout_layer: The layer of that rate, ``None`` without dropout.
        dropout_on_inputs: Whether that layer reads a model input.
        training_only_layers: The layers that act in training only (dropout, noise, augmentation:
            see :func:`trainkit.diagnosis.model_facts.training_only_layers`), in model order.
        batch_norms: The ``momentum`` of each ``BatchNormalization`` layer that normalises by
            the batch's statistics in training and by its moving averages otherwise, by name
            (see :func:`trainkit.diagnosis.model_facts.batch_norm_momenta`).
        dropped_activations: The rate of the ``Dropout`` layer that feeds each layer without
            weights taking its input straight from one (``Dense``, ``Dropout``, ``ReLU``), by name
            (see :func:`trainkit.diagnosis.model_facts.dropped_activations`).
        initializers: By the name of a layer whose activations are measured, how the weights
            before its activation start: ``{"layer", "kernel", "bias"}`` (the weight layer's
            name, its initializers as a recipe writes them, ``"he_normal"``, ``"constant(-10)"``;
            bias ``"none"`` without one), so that advice does not prescribe what a layer has
            (see :func:`trainkit.diagnosis.model_facts.layer_initializers`); ``None`` when unknown.
        relative_loss: A regression output's loss reads ratios or logarithms of the targets (MAPE,
            MSLE), so advice scales its targets without centring them: standardised targets turn
            negative, which MSLE reads as 0 and MAPE divides by.
        keras_loss: Every output's loss is one of Keras's own (a name or a ``keras.losses``
            class) and the trainer computes it as given (no ``compute_loss`` of its own): its
            probabilities are clipped, so a non-finite loss on finite outputs is an overflow or
            the data's, not a custom loss's log(0).
        clipping: The optimizer's gradient clipping, ``{"clipnorm": 1.0}`` (or ``global_clipnorm``,
            ``clipvalue``), so that advice does not prescribe the clipping a run has; ``None`` without.
        epsilon: The optimizer's ``epsilon`` where it divides the step by the gradients' running
            size plus it (Adam, AdamW, Nadam, Adamax, RMSprop, Adagrad), ``None`` otherwise: an
            epsilon far above the gradients turns Adam's step of ~the rate into rate x gradient / epsilon.
        beta_2: Adam's and AdamW's ``beta_2``, whose uncorrected second moment meets ``epsilon``
            (the step at step t is bounded by rate x sqrt(1 - beta_2^t) x gradient / epsilon); ``None`` for others.
        weight_decay: The optimizer's decoupled ``weight_decay`` (AdamW's; any Keras optimizer
            takes one): every step shrinks each weight by rate x weight_decay of itself, whatever
            the loss; ``None`` without.
        frozen_layers: Names of the layers that come before the first layer with trainable
            weights (a frozen base of a transfer-learning model): no step changes their weights
            or their inputs, so their activations are what the data makes of them, not what
            training did (see :func:`trainkit.diagnosis.model_facts.frozen_layers`).
        frozen_outputs: Names of the weight layers that make the outputs when none of their
            weights is trainable while other layers train (``model.layers[-1].trainable =
            False``): the hidden layers learn under a fixed head (see
            :func:`trainkit.diagnosis.model_facts.frozen_output_layers`).
        regularizers: By layer name, its weight penalties and their factors,
            ``{"dense": {"kernel_regularizer": {"l2": 1.0}}}`` (``{}`` for a penalty of another
            kind), so that advice lowers the penalty the run has (see
            :func:`trainkit.diagnosis.model_facts.layer_regularizers`); ``None`` when unknown.
        layer_inputs: By layer name, the layers whose outputs it takes (its inputs' producers in
            a Functional or Sequential graph, nested models' layers included), so that advice
            names a layer that really feeds another: a dead ReLU on one branch of a
            ``Concatenate`` was told to fix a dead layer on the other (see
            :func:`trainkit.diagnosis.model_facts.layer_inputs`); ``None`` when unknown (a subclassed
            model: its layers are then taken as a chain, in model order).
        linear_loss: A one-output regression's loss (the run's loss function, with the rows'
            weights) of the least-squares linear fit of its targets on its in-memory numeric inputs,
            on the training rows it was made on (see :func:`trainkit.diagnosis.baseline.linear_fit`);
            ``None`` when unknown. A model whose loss ends far above it failed to learn what a
            linear function of its inputs gets.
        val_linear_loss: That fit's loss on the in-memory validation rows (or a validation
            dataset's first batches, which the data checks hold), with their own weights; ``None``
            when unknown.
        linear_sample_rows: The rows :attr:`linear_loss` was measured on where they are a
            shuffled training dataset's first batches, a sample of its rows; ``None`` for
            in-memory rows or a dataset's every row.
        val_linear_sample_rows: The same for :attr:`val_linear_loss`: a validation dataset's first
            rows, not all of them.
        bounded_output: A one-output model's output activation where it bounds the predictions,
            ``{"layer", "activation", "low", "high"}`` (see
            :func:`trainkit.diagnosis.model_facts.bounded_output`); ``None`` for a linear one.
        regression_start_loss: For a model with several outputs, its regression outputs' share of
            the loss where a fresh model starts: each one's loss of predicting 0 (a freshly
            initialised linear output's), times its loss weight, summed; ``None`` when unknown
            or for one output. It tells whether unscaled targets explain a first loss far above
            chance or another output does.
        output_names: The names of a model's outputs that have a loss, when it has several (their
            History keys are ``<name>_loss`` and ``val_<name>_loss``); ``()`` for one output.
        untrained_outputs: The layers among ``output_layers`` of outputs trained with no loss
            (``loss=[..., None]``): nothing they predict is asked of them.
        output_chance_losses: For a model with several outputs, each trained output's own chance
            level by name, unweighted as its ``<name>_loss`` is logged (the outputs whose level is
            unknown left out); ``None`` for one output or when none is known.
        val_output_chance_losses: The same on the validation rows (see ``val_chance_loss``), for
            ``val_<name>_loss``; ``None`` when unknown.
        output_loss_weights: For a model with several outputs whose levels are known, each trained
            output's weight in the total loss (``loss_weights``), by name; ``None`` otherwise.
        float16_layers: The layers that compute in float16 (``mixed_float16``): their outputs
            overflow to inf past 65,504, where float32's would not.
        trained_before: The model had been trained before this run's first step (by another
            Trainer, or ``model.fit``): its first losses and activations are that training's, not
            a fresh model's (see :func:`trainkit.diagnosis.loss_measures.fresh_start`).
        recipe: The run trains a recipe (``trainkit train``): advice names a setting by its recipe
            key (``optimizer.learning_rate: 0.001``), which ``--set`` takes; a Python fit's advice
            names its Python (``learning_rate=0.001 in the optimizer``; see
            :mod:`trainkit.diagnosis.setting_text`).
        schedule: The class name of the optimizer's learning rate when it is a
            ``LearningRateSchedule`` (``CosineDecay``), ``None`` otherwise. Keras refuses a number
            for such an optimizer's ``learning_rate``, so a Python fit's advice names the
            schedule's argument instead (see :func:`trainkit.diagnosis.setting_text.rate_setting`).
        schedule_rate: The schedule's argument that sets its largest rate (``warmup_target`` of
            a warm-up, ``initial_learning_rate``, ``values`` of ``PiecewiseConstantDecay``);
            ``None`` for a schedule of one's own.
        rate_callback: The class name of a callback that sets the optimizer's learning rate at
            every epoch (``LearningRateScheduler``), ``None`` without one: a rate set in the
            optimizer is overwritten by what its function returns, so advice names the function.
        rate_plateau: ``{"monitor", "patience", "min_delta", "cooldown", "factor", "min_lr"}`` of a
            Keras ``ReduceLROnPlateau`` the run had, ``None`` without one: advice about a rate it
            cut too soon names its own settings.
        call_loss_layers: The layers that add a term to the loss with ``add_loss`` in their own
            ``call`` (a VAE's KL; not an ``activity_regularizer``): the loss has no chance level.
        opaque_layers: The layers without weights whose computation is the user's (``Lambda``
            layers, layer classes of one's own), which may pass no gradient back.
        attention_score_layers: The query and key projections of the attention layers, as their
            weights' statistics name them (``multi_head_attention/query``): their gradient passes
            through the attention scores' softmax only, small by design, not vanishing.
    """

    task: str | None = None
    loss: str | None = None
    chance_loss: float | None = None
    chance_detail: str = ""
    val_chance_loss: float | None = None
    val_chance_detail: str = ""
    regularization: float = 0.0
    layers: tuple[str, ...] = ()
    output_layers: tuple[str, ...] = ()
    softmax_layers: tuple[str, ...] = ()
    sloped_layers: tuple[str, ...] = ()
    smooth_layers: tuple[str, ...] = ()
    epochs: int | None = None
    initial_epoch: int = 0
    learning_rate: float | None = None
    optimizer: str | None = None
    batch_size: int | None = None
    train_rows: int | None = None
    one_pass_epochs: bool | None = None
    batches_in_order: bool | None = None
    has_validation: bool = False
    val_rows: int | None = None
    early_stopping: dict[str, Any] | None = None
    target_mean: float | None = None
    target_std: float | None = None
    target_constant: float | None = None
    target_columns: int | None = None
    target_axes: tuple[int, ...] | None = None
    check_codes: tuple[str, ...] | None = None
    far_value_checks: tuple[str, ...] = ()
    dropout: float = 0.0
    dropout_layer: str | None = None
    dropout_on_inputs: bool = False
    training_only_layers: tuple[str, ...] = ()
    batch_norms: dict[str, float] | None = None
    dropped_activations: dict[str, float] | None = None
    uninformed_loss: float | None = None
    first_steps_loss: float | None = None
    worst_batch_loss: float | None = None
    loss_floor: float = 0.0
    val_loss_floor: float | None = None
    soft_target_loss: float | None = None
    summed_loss: bool = False
    initializers: dict[str, dict[str, str]] | None = None
    relative_loss: bool = False
    keras_loss: bool = False
    clipping: dict[str, float] | None = None
    epsilon: float | None = None
    beta_2: float | None = None
    weight_decay: float | None = None
    frozen_layers: tuple[str, ...] = ()
    frozen_outputs: tuple[str, ...] = ()
    regularizers: dict[str, dict[str, dict[str, float]]] | None = None
    layer_inputs: dict[str, list[str]] | None = None
    trained_before: bool = False
    linear_loss: float | None = None
    val_linear_loss: float | None = None
    linear_sample_rows: int | None = None
    val_linear_sample_rows: int | None = None
    bounded_output: dict[str, Any] | None = None
    regression_start_loss: float | None = None
    output_names: tuple[str, ...] = ()
    untrained_outputs: tuple[str, ...] = ()
    output_chance_losses: dict[str, float] | None = None
    val_output_chance_losses: dict[str, float] | None = None
    output_loss_weights: dict[str, float] | None = None
    float16_layers: tuple[str, ...] = ()
    recipe: bool = False
    schedule: str | None = None
    schedule_rate: str | None = None
    rate_callback: str | None = None
    rate_plateau: dict[str, Any] | None = None
    call_loss_layers: tuple[str, ...] = ()
    opaque_layers: tuple[str, ...] = ()
    attention_score_layers: tuple[str, ...] = ()

    def feeds(self, upstream: str, layer: str) -> bool:
        """Whether ``upstream``'s output reaches ``layer`` (directly or through other layers).

        Without :attr:`layer_inputs` for ``layer`` (a subclassed model, a run written before
        they were recorded) the layers are taken as a chain: every earlier one feeds it.
        """
        if self.layer_inputs is None or layer not in self.layer_inputs:
            return True
        seen: set[str] = set()
        todo = [layer]
        while todo:
            for parent in self.layer_inputs.get(todo.pop(), ()):
                if parent == upstream:
                    return True
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return False

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (written to TensorBoard so a run can be diagnosed later)."""
        # Every tuple field as a list: what JSON writes, and what from_dict turns back.
        return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Context:
        """Rebuilds a context written by :meth:`to_dict` (unknown keys are ignored)."""
        fields = dataclasses.fields(cls)
        values = {k: v for k, v in data.items() if k in {f.name for f in fields}}
        # The fields annotated as tuples (``tuple[str, ...]``, ``tuple[int, ...] | None``) come back as lists.
        for key in (f.name for f in fields if str(f.type).startswith("tuple[")):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclasses.dataclass
class EpochRecord:
    """Everything kept about one epoch.

    Attributes:
        epoch: Epoch index (0-based).
        first_step: Global index of the epoch's first step.
        steps: Steps the epoch ran.
        mean, minimum, maximum, last: Per statistic (columns of :attr:`Diagnoser.names`), over
            the epoch's finite values (NaN when none was finite).
        nonfinite: Per statistic, how many steps had a NaN/inf value.
        loss_sign_changes: How often the step loss changed direction within the epoch.
        logs: The exact epoch values (``loss``, metrics, ``val_*``), as float32 like TensorBoard.
        regularization: The regularization penalty (``sum(model.losses)``) at the epoch's end,
            which the validation loss includes (the training loss too, up to its change over
            the epoch).
        train_regularization: The penalty in the epoch's training loss, when measured (the
            exact mean of an activity penalty over the epoch's steps); NaN: not measured, see
            :meth:`Diagnoser.train_regularization_values`.
    """

    epoch: int
    first_step: int
    steps: int = 0
    mean: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    minimum: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    maximum: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    last: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    nonfinite: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    loss_sign_changes: int = 0
    logs: dict[str, float] = dataclasses.field(default_factory=dict)
    regularization: float = 0.0
    train_regularization: float = math.nan


class _EpochAccumulator:
    """Column-wise running sums of one epoch's steps (finite values only)."""

    def __init__(self, epoch: int, first_step: int) -> None:
        self.epoch, self.first_step, self.steps = epoch, first_step, 0
        self.sum = np.zeros(0)
        self.count = np.zeros(0)
        self.min = np.zeros(0)
        self.max = np.zeros(0)
        self.last = np.zeros(0)
        self.nonfinite = np.zeros(0)
        self.sign_changes = 0
        self._last_loss: float | None = None
        self._last_direction = 0

    def grow(self, width: int) -> None:
        extra = width - len(self.sum)
        if extra > 0:
            self.sum = np.concatenate([self.sum, np.zeros(extra)])
            self.count = np.concatenate([self.count, np.zeros(extra)])
            self.min = np.concatenate([self.min, np.full(extra, np.inf)])
            self.max = np.concatenate([self.max, np.full(extra, -np.inf)])
            self.last = np.concatenate([self.last, np.full(extra, np.nan)])
            self.nonfinite = np.concatenate([self.nonfinite, np.zeros(extra)])

    def add(self, columns: np.ndarray, values: np.ndarray, loss_column: int | None, first_step: int | None = None) -> None:
        """Adds ``values[steps, len(columns)]`` (float64), the steps from ``first_step`` on, to the sums of ``columns``."""
        finite = np.isfinite(values)
        # The steps the epoch spans so far, not the rows seen: rows read back from every n-th step
        # (scalars_every) put a later step in no epoch, or in the next one.
        covered = first_step + values.shape[0] - self.first_step if first_step is not None else 0
        self.steps = max(self.steps + values.shape[0], covered)
        self.sum[columns] += np.where(finite, values, 0.0).sum(axis=0)
        self.count[columns] += finite.sum(axis=0)
        self.nonfinite[columns] += (~finite).sum(axis=0)
        self.min[columns] = np.minimum(self.min[columns], np.where(finite, values, np.inf).min(axis=0))
        self.max[columns] = np.maximum(self.max[columns], np.where(finite, values, -np.inf).max(axis=0))
        # The last finite value of each column: the row of its last finite entry.
        rows = values.shape[0] - 1 - np.argmax(finite[::-1], axis=0)
        has = finite.any(axis=0)
        self.last[columns[has]] = values[rows[has], np.flatnonzero(has)]
        if loss_column is not None:
            self._count_sign_changes(values[:, loss_column])

    def _count_sign_changes(self, losses: np.ndarray) -> None:
        # Directions of the changes between consecutive finite losses (equal ones carry none),
        # continuing from the previous call's last loss and direction.
        finite = losses[np.isfinite(losses)]
        if finite.size == 0:
            return
        chain = finite if self._last_loss is None else np.concatenate([[self._last_loss], finite])
        directions = np.sign(np.diff(chain))
        directions = directions[directions != 0]
        if directions.size:
            if self._last_direction:
                directions = np.concatenate([[self._last_direction], directions])
            self.sign_changes += int(np.count_nonzero(directions[1:] != directions[:-1]))
            self._last_direction = int(directions[-1])
        self._last_loss = float(finite[-1])

    def state(self) -> dict[str, Any]:
        """JSON-serialisable state (a checkpoint written mid-epoch keeps the epoch's sums)."""
        arrays = {k: _floats(getattr(self, k)) for k in ("sum", "count", "min", "max", "last", "nonfinite")}
        return {"epoch": self.epoch, "first_step": self.first_step, "steps": self.steps, "sign_changes": self.sign_changes,
                "last_loss": self._last_loss, "last_direction": self._last_direction, **arrays}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> _EpochAccumulator:
        """Rebuilds an accumulator written by :meth:`state`."""
        accumulator = cls(int(state["epoch"]), int(state["first_step"]))
        accumulator.steps, accumulator.sign_changes = int(state["steps"]), int(state["sign_changes"])
        accumulator._last_loss, accumulator._last_direction = state["last_loss"], int(state["last_direction"])
        for key in ("sum", "count", "min", "max", "last", "nonfinite"):
            setattr(accumulator, key, np.asarray(state[key], dtype=np.float64))
        return accumulator

    def record(self, width: int) -> EpochRecord:
        self.grow(width)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self.count > 0, self.sum / np.maximum(self.count, 1), np.nan)
        return EpochRecord(
            epoch=self.epoch,
            first_step=self.first_step,
            steps=self.steps,
            mean=mean,
            minimum=np.where(np.isfinite(self.min), self.min, np.nan),
            maximum=np.where(np.isfinite(self.max), self.max, np.nan),
            last=self.last.copy(),
            nonfinite=self.nonfinite.copy(),
            loss_sign_changes=self.sign_changes,
        )


@dataclasses.dataclass
class NonFinite:
    """The first step at which anything went NaN or infinite.

    Attributes:
        step: Global step of the first non-finite value (loss, gradient, activation or weight).
        loss_step: Global step of the first non-finite loss, or ``None`` while the loss is finite.
        row: Every statistic at ``step`` (name -> value).
        last_finite_loss: The last finite loss before ``loss_step``.
    """

    step: int
    loss_step: int | None
    row: dict[str, float]
    last_finite_loss: float | None


@dataclasses.dataclass
class Explosion:
    """The first step whose global gradient norm exceeded the explosion threshold."""

    step: int
    norm: float
    baseline: float
    loss: float | None


class Diagnoser:
    """Keeps bounded summaries of a run and turns them into findings with the rules.

    Args:
        context: What the rules need to know about the task, loss, model and schedule.
        rules: The rules to run (default: :data:`trainkit.diagnosis.rules.RULES`).
        thresholds: Rule thresholds (default: :class:`trainkit.diagnosis.rule_types.Thresholds`).
    """

    def __init__(self, context: Context | None = None, rules: Sequence[Any] | None = None, thresholds: Any = None) -> None:
        from trainkit.diagnosis import rules as rules_module
        from trainkit.diagnosis.rule_types import Thresholds

        self.context = context or Context()
        self.rules = tuple(rules) if rules is not None else rules_module.RULES
        self.t = thresholds or Thresholds()
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        self.epochs: list[EpochRecord] = []
        self.first_rows: np.ndarray = np.zeros((0, 0))
        self.first_step: int | None = None
        self.steps = 0
        self.last_step: int | None = None
        self.nonfinite: NonFinite | None = None
        self.explosion: Explosion | None = None
        self.max_loss: tuple[int, float] | None = None
        self.finished = False
        self.notes: dict[str, Any] = {}
        self._current: _EpochAccumulator | None = None
        # Per-epoch series the rules read every epoch, grown in place (see _table and _series).
        self._tables: dict[str, tuple[np.ndarray, int]] = {}
        self._series_cache: dict[str, tuple[np.ndarray, int]] = {}
        self._baseline: list[float] = []
        self._baseline_median: float | None = None
        self._last_finite_loss: float | None = None
        # The last losses of the previous calls, for the explosion detector's window across calls.
        self._recent_losses: list[float] = []
        self._findings: dict[tuple[str, str | None], Finding] = {}
        self._order: list[tuple[str, str | None]] = []
        self._reported = 0

    # -- feeding ----------------------------------------------------------------------------------
    def begin_epoch(self, epoch: int, first_step: int | None = None) -> None:
        """Starts collecting ``epoch`` (called implicitly by :meth:`add_steps` when needed)."""
        start = first_step if first_step is not None else (self.last_step + 1 if self.last_step is not None else 0)
        current = self._current
        if current is not None and current.epoch == epoch and current.steps and self.last_step is not None and start == self.last_step + 1:
            return  # resumed mid-epoch (from a checkpoint): the epoch goes on with the sums of its earlier steps
        self._current = _EpochAccumulator(epoch, start)

    def add_steps(self, first_step: int, names: Sequence[str], values: np.ndarray) -> list[Finding]:
        """Adds one compiled call's per-step values and runs the ``"call"`` rules.

        Args:
            first_step: Global index of the first row's step.
            names: Name of each column of ``values``.
            values: ``[steps, len(names)]`` per-step scalars.

        Returns:
            Findings detected for the first time by this call.
        """
        values = np.asarray(values, dtype=np.float64).reshape(-1, len(names))
        if values.shape[0] == 0:
            return []
        columns = np.array([self._column(n) for n in names], dtype=np.int64)
        if self._current is None:
            self.begin_epoch(self.epochs[-1].epoch + 1 if self.epochs else self.context.initial_epoch, first_step)
        assert self._current is not None
        self._current.grow(len(self.names))
        loss_col = list(names).index(LOSS) if LOSS in names else None
        self._current.add(columns, values, loss_col, first_step)
        self._keep_first_rows(columns, values)
        self._detect(first_step, list(names), values)
        if self.first_step is None:
            self.first_step = first_step
        # Steps the run has trained, not rows seen: read back from events written every n-th step
        # (logging.scalars_every), the rows were 1/n of them and the curve rules waited n times
        # longer than live (and missed an oscillating loss).
        self.steps = max(self.steps + values.shape[0], first_step + values.shape[0] - self.first_step)
        self.last_step = first_step + values.shape[0] - 1
        return self._run_rules(("call",))

    def end_epoch(self, epoch: int, logs: Mapping[str, float], regularization: float | None = None,
                  train_regularization: float | None = None) -> list[Finding]:
        """Closes ``epoch`` and runs the ``"call"`` and ``"epoch"`` rules.

        Args:
            epoch: The epoch index.
            logs: Its exact values (``loss``, metrics, ``val_*``).
            regularization: The regularization penalty at the epoch's end (included in both
                losses); ``None`` keeps the previous epoch's (or the context's initial) value.
            train_regularization: The penalty in the epoch's training loss when it was measured
                (see :attr:`EpochRecord.train_regularization`); ``None``: from ``regularization``.
        """
        if self._current is None or self._current.epoch != epoch:
            self.begin_epoch(epoch)
        assert self._current is not None
        record = self._current.record(len(self.names))
        # float32, as TensorBoard stores them: the same numbers live and when read back.
        record.logs = {str(k): float(np.float32(v)) for k, v in numeric_logs(logs).items()}
        if regularization is None:
            regularization = self.epochs[-1].regularization if self.epochs else self.context.regularization
        record.regularization = float(np.float32(regularization))
        record.train_regularization = math.nan if train_regularization is None else float(np.float32(train_regularization))
        self.epochs.append(record)
        self._current = None
        return self._run_rules(("call", "epoch"))

    def finish(self, notes: Mapping[str, Any] | None = None) -> list[Finding]:
        """Ends the run (``notes``: e.g. early stopping's outcome) and runs every rule.

        A run whose ``notes["stop_reason"]`` is ``"interrupted"`` or ``"failed"`` has not ended:
        only the notes are kept, and the end rules wait for the end of the run that resumes it
        (an interrupted run was told to "train for more epochs" by ``underfitting``).
        """
        if notes:
            self.notes.update(notes)
        if self.notes.get("stop_reason") in UNFINISHED:
            return []
        self.finished = True
        self._rejudge()
        return self._run_rules(("call", "epoch", "end"))

    def _rejudge(self) -> None:
        """Judges again, on the whole run, the findings of rules marked ``rejudge``.

        An ``overfitting`` seen at epoch 10 (the validation loss 40% over its minimum) stands
        even when the validation loss later reaches a new minimum; its evidence and its advice
        ("epochs: 10") would then describe a run that did not happen. At the end it is replaced
        by the whole run's verdict, or withdrawn when there is none.
        """
        for rule in self.rules:
            if not rule.rejudge:
                continue
            verdicts = {(f.code, f.layer): f for f in rule.evaluate(self)}
            for key in [key for key in self._order if key[0] == rule.code]:  # in place: the report keeps its order
                if key in verdicts:
                    self._findings[key] = verdicts.pop(key)
                else:
                    del self._findings[key]
            self._order = [key for key in self._order if key in self._findings]
            for key, finding in verdicts.items():
                self._order.append(key)
                self._findings[key] = finding

    # -- checkpointing ----------------------------------------------------------------------------
    def state(self, *, epochs: bool = True) -> dict[str, Any]:
        """Everything this diagnoser keeps, JSON-serialisable (NaN/inf as JSON's extensions).

        A checkpoint stores it so that a resumed run judges against the run's own references
        (first losses, the gradient baseline of the first steps, every epoch so far) rather
        than against where it resumed. Bounded like the diagnoser itself: a record per epoch
        and the first :data:`FIRST_STEPS` rows.

        Args:
            epochs: Include the per-epoch records (:func:`epoch_record_state` of each of
                :attr:`epochs`). A checkpoint journals them instead, each written once.
        """
        return {
            "context": self.context.to_dict(),
            "names": list(self.names),
            **({"epochs": [epoch_record_state(r) for r in self.epochs]} if epochs else {}),
            "first_rows": [_floats(row) for row in self.first_rows],
            "first_step": self.first_step,
            "steps": self.steps,
            "last_step": self.last_step,
            "nonfinite": dataclasses.asdict(self.nonfinite) if self.nonfinite is not None else None,
            "explosion": dataclasses.asdict(self.explosion) if self.explosion is not None else None,
            "max_loss": list(self.max_loss) if self.max_loss is not None else None,
            "finished": self.finished,
            "notes": dict(self.notes),
            "current": self._current.state() if self._current is not None else None,
            "baseline": list(self._baseline),
            "baseline_median": self._baseline_median,
            "last_finite_loss": self._last_finite_loss,
            "recent_losses": _floats(self._recent_losses),
            "findings": [self._findings[key].to_dict() for key in self._order],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], context: Context | None = None, rules: Sequence[Any] | None = None,
                   thresholds: Any = None) -> Diagnoser:
        """A diagnoser that goes on from :meth:`state`.

        Args:
            state: What :meth:`state` returned.
            context: The context to use instead of the saved one.
            rules: As for the constructor.
            thresholds: As for the constructor.
        """
        diagnoser = cls(context or Context.from_dict(state["context"]), rules=rules, thresholds=thresholds)
        diagnoser.names = list(state["names"])
        diagnoser._index = {name: i for i, name in enumerate(diagnoser.names)}
        diagnoser.epochs = [epoch_record_from_state(r) for r in state["epochs"]]
        rows = np.asarray(state["first_rows"], dtype=np.float64)
        diagnoser.first_rows = rows if rows.ndim == 2 else np.zeros((0, 0))
        diagnoser.first_step, diagnoser.steps, diagnoser.last_step = state["first_step"], int(state["steps"]), state["last_step"]
        diagnoser.nonfinite = NonFinite(**state["nonfinite"]) if state["nonfinite"] else None
        diagnoser.explosion = Explosion(**state["explosion"]) if state["explosion"] else None
        diagnoser.max_loss = (int(state["max_loss"][0]), float(state["max_loss"][1])) if state["max_loss"] else None
        diagnoser.finished = bool(state["finished"])
        diagnoser.notes = dict(state["notes"])
        diagnoser._current = _EpochAccumulator.from_state(state["current"]) if state["current"] else None
        diagnoser._baseline = [float(v) for v in state["baseline"]]
        diagnoser._baseline_median = state["baseline_median"]
        diagnoser._last_finite_loss = state["last_finite_loss"]
        diagnoser._recent_losses = [float(v) for v in state.get("recent_losses", [])]  # absent from older checkpoints
        for data in state["findings"]:
            diagnoser.replace(Finding.from_dict(data))
        return diagnoser

    def reopen(self) -> list[Finding]:
        """Continues a finished run (a resumed fit): forgets the verdicts of its end.

        The end rules judge the whole run when it ends again; their earlier verdicts (say,
        ``underfitting`` after 3 of now 6 epochs) would otherwise stand for good.

        Returns:
            The findings forgotten.
        """
        self.finished = False
        end_codes = {rule.code for rule in self.rules if rule.when == "end"}
        dropped = [self._findings.pop(key) for key in self._order if key[0] in end_codes]
        self._order = [key for key in self._order if key in self._findings]
        return dropped

    # -- results ----------------------------------------------------------------------------------
    @property
    def findings(self) -> list[Finding]:
        """Every finding so far, in the order it was first detected."""
        return [self._findings[key] for key in self._order]

    def replace(self, finding: Finding) -> None:
        """Replaces the kept finding of the same code and layer (to add what was done about it)."""
        key = (finding.code, finding.layer)
        if key not in self._findings:
            self._order.append(key)
        self._findings[key] = finding

    # -- what rules read ----------------------------------------------------------------------------
    def column(self, name: str) -> int | None:
        """Column of ``name`` in the epoch records, or ``None`` when it was never seen."""
        return self._index.get(name)

    def epoch_values(self, name: str, field: str = "mean") -> np.ndarray:
        """``[epochs]`` series of one statistic's per-epoch ``mean``/``minimum``/``maximum``/``last``/``nonfinite``."""
        col = self._index.get(name)
        if col is None:
            return np.full(len(self.epochs), np.nan)
        return self._table(field)[:, col].copy()

    def _table(self, field: str) -> np.ndarray:
        """``[epochs, names]`` matrix of one per-epoch field, grown in place one row per epoch.

        Rules read many series every epoch; filling only the new rows of a buffer that doubles
        when full keeps a run's cost linear in its epochs (stacking the whole table again each
        epoch made the epochs of a 5000-epoch run twice as slow at its end as at its start).
        """
        rows, width = len(self.epochs), len(self.names)
        buffer, filled = self._tables.get(field, (np.zeros((0, width)), 0))
        if buffer.shape[1] != width or filled > rows:  # a statistic seen for the first time
            buffer, filled = np.zeros((0, width)), 0
        if rows > buffer.shape[0]:
            grown = np.full((max(rows, 2 * buffer.shape[0], 16), width), np.nan)
            grown[:filled] = buffer[:filled]
            buffer = grown
        for i in range(filled, rows):
            array = getattr(self.epochs[i], field)
            buffer[i, : len(array)] = array
        self._tables[field] = (buffer, rows)
        return buffer[:rows]

    def _series(self, key: str, value_of: Callable[[EpochRecord], float]) -> np.ndarray:
        """``[epochs]``: ``value_of`` each epoch record, grown in place like :meth:`_table` (a copy)."""
        rows = len(self.epochs)
        buffer, filled = self._series_cache.get(key, (np.zeros(0), 0))
        if filled > rows:
            buffer, filled = np.zeros(0), 0
        if rows > buffer.shape[0]:
            grown = np.full(max(rows, 2 * buffer.shape[0], 16), np.nan)
            grown[:filled] = buffer[:filled]
            buffer = grown
        for i in range(filled, rows):
            buffer[i] = value_of(self.epochs[i])
        self._series_cache[key] = (buffer, rows)
        return buffer[:rows].copy()

    def log_values(self, key: str) -> np.ndarray:
        """``[epochs]`` series of an exact epoch value (``loss``, ``val_loss``...); NaN where absent."""
        return self._series(f"logs/{key}", lambda record: record.logs.get(key, np.nan))

    def epoch_losses(self, data_only: bool = False) -> np.ndarray:
        """Training loss per epoch: the exact epoch value, else the mean of the step losses.

        Args:
            data_only: Subtract the regularization penalty, leaving the loss on the data (what
                compares with the chance level).
        """
        exact = self.log_values(LOSS)
        steps = self.epoch_values(LOSS)
        losses = np.where(np.isnan(exact), steps, exact)
        return losses - self.train_regularization_values() if data_only else losses

    def val_losses(self, data_only: bool = False) -> np.ndarray:
        """Validation loss per epoch (NaN without validation), optionally without the penalty."""
        values = self.log_values("val_loss")
        return values - self.regularization_values() if data_only else values

    def regularization_values(self) -> np.ndarray:
        """The regularization penalty at the end of each epoch (what the validation loss holds)."""
        return self._series("regularization", lambda record: record.regularization)

    def train_regularization_values(self) -> np.ndarray:
        """The penalty in each epoch's training loss: as measured over its steps where it was
        (:attr:`EpochRecord.train_regularization`), else the mean of its values at the epoch's
        start and end, since that loss averages the penalty over the epoch's steps.

        The value at the end alone left a falling penalty's excess in the "loss on the data": an
        activity penalty going 3.91 -> 3.65 in an epoch made a data loss that fell read flat.
        """
        end = self.regularization_values()
        start = np.concatenate([[self.context.regularization], end[:-1]]) if end.size else end
        measured = self._series("train_regularization", lambda record: record.train_regularization)
        return np.where(np.isnan(measured), (start + end) / 2, measured)

    def first_values(self, name: str) -> np.ndarray:
        """The first (up to :data:`FIRST_STEPS`) per-step values of ``name``."""
        col = self._index.get(name)
        if col is None or col >= self.first_rows.shape[1]:
            return np.zeros(0)
        return self.first_rows[:, col]

    def variable_stats(self, kind: str) -> list[str]:
        """Every ``kind/VAR`` statistic name (``kind`` one of :data:`VARIABLE_STATS`), in order seen."""
        return [n for n in self.names if variable_of(n, kind) is not None]

    def activation_stats(self, stat: str) -> list[str]:
        """Every ``activation/L/stat`` name, in order seen."""
        return [n for n in self.names if activation_stat_of(n, stat) is not None]

    @property
    def epochs_run(self) -> int:
        """Number of epochs closed so far."""
        return len(self.epochs)

    @property
    def planned_epochs(self) -> int:
        """Epochs this fit was asked to run (the epochs run, when unknown)."""
        if self.context.epochs is not None:
            return max(1, self.context.epochs - self.context.initial_epoch)
        return max(1, self.epochs_run)

    def layer_order(self, layers: Iterable[str]) -> list[str]:
        """``layers`` sorted in model order (unknown layers last, in the order given).

        A repeated call of a layer (``e_1``, a shared encoder's second call) sorts with its layer:
        sorted last, it stood as the last hidden layer for the forward vanishing test.
        """
        from trainkit.diagnosis.stat_reads import called_layer

        position = {name: i for i, name in enumerate(self.context.layers)}
        layers = list(dict.fromkeys(layers))
        return sorted(layers, key=lambda n: (position.get(called_layer(self, n), len(position)), layers.index(n)))

    # -- internals --------------------------------------------------------------------------------
    def _column(self, name: str) -> int:
        col = self._index.get(name)
        if col is None:
            col = self._index[name] = len(self.names)
            self.names.append(name)
        return col

    def _keep_first_rows(self, columns: np.ndarray, values: np.ndarray) -> None:
        have = self.first_rows.shape[0]
        if have >= FIRST_STEPS:
            return
        take = values[: FIRST_STEPS - have]
        width = len(self.names)
        rows = np.full((take.shape[0], width), np.nan)
        rows[:, columns] = take
        old = np.full((have, width), np.nan)
        old[:, : self.first_rows.shape[1]] = self.first_rows
        self.first_rows = np.concatenate([old, rows])

    def _detect(self, first_step: int, names: list[str], values: np.ndarray) -> None:
        """Streaming detectors: first non-finite step, first gradient explosion, largest loss."""
        loss = values[:, names.index(LOSS)] if LOSS in names else None
        if self.nonfinite is None or self.nonfinite.loss_step is None:
            watched = [j for j, n in enumerate(names) if _watch_nonfinite(n)]
            bad = ~np.isfinite(values[:, watched]).all(axis=1) if watched else np.zeros(values.shape[0], bool)
            counts = [j for j, n in enumerate(names) if _counts_nonfinite(n)]
            if counts:
                bad |= (np.nan_to_num(values[:, counts], nan=1.0) > 0).any(axis=1)
            # Non-finite values that a wholly finite step follows broke nothing: a loss-scale
            # optimizer (mixed_float16) skips every step whose scaled gradients overflow float16
            # and lowers its scale. The break is the run of non-finite steps the first non-finite
            # loss ends (or that ends this call): blamed on a skipped step 0, the NaN of step 6
            # named that step's gradients instead of the activations that overflowed.
            bad_loss = ~np.isfinite(loss) if loss is not None else np.zeros(values.shape[0], bool)
            end = int(np.argmax(bad_loss)) + 1 if bad_loss.any() else values.shape[0]
            good = np.flatnonzero(~bad[:end])
            if good.size:
                self.nonfinite = None
            start = int(good[-1]) + 1 if good.size else 0
            if self.nonfinite is None and start < end:
                self.nonfinite = NonFinite(first_step + start, None, dict(zip(names, values[start].tolist(), strict=True)), None)
        if loss is not None and (self.nonfinite is None or self.nonfinite.loss_step is None):
            bad_loss = ~np.isfinite(loss)
            j = int(np.argmax(bad_loss)) if bad_loss.any() else len(loss)
            if j:
                self._last_finite_loss = float(loss[j - 1])
            if j < len(loss) and self.nonfinite is not None:
                self.nonfinite.loss_step = first_step + j
                self.nonfinite.last_finite_loss = self._last_finite_loss
        if loss is not None:
            masked = np.where(np.isfinite(loss), loss, -np.inf)
            i = int(np.argmax(masked))
            if np.isfinite(masked[i]) and (self.max_loss is None or masked[i] > self.max_loss[1]):
                self.max_loss = (first_step + i, float(masked[i]))
        if GLOBAL_GRAD_NORM in names and self.explosion is None:
            self._detect_explosion(first_step, values[:, names.index(GLOBAL_GRAD_NORM)], loss)

    def _detect_explosion(self, first_step: int, norms: np.ndarray, loss: np.ndarray | None) -> None:
        # The baseline is the median of the first BASELINE_STEPS finite, nonzero norms; it is fixed once
        # full, so the rest of a call is one vectorised comparison (this runs after every call).
        # Norms of 0 are no level: batches the model already fits exactly (a series in time order
        # whose first 800 steps are 0, zero windows and zero targets) left a baseline of 0, and
        # the first gradient of the series' real values, 2.3, read "2e12x ... the updates feed
        # on themselves"; so did a float16 sigmoid saturated to exactly 0/1 (no gradient at all),
        # whose first norm of 204 read "2e14x its level".
        level = self._loss_level(loss)
        start = 0
        while len(self._baseline) < BASELINE_STEPS and start < len(norms):
            if np.isfinite(norms[start]) and norms[start] > 0:
                self._baseline.append(float(norms[start]))
            start += 1
        if len(self._baseline) < BASELINE_STEPS or start == len(norms):
            return
        if self._baseline_median is None:
            self._baseline_median = float(np.median(self._baseline))
        baseline = self._baseline_median
        limit = max(self.t.explode_factor * baseline, self.t.explode_min_norm)
        rest = norms[start:]
        # A norm that grows while the loss falls far below that of the first steps is a model
        # leaving a flat start, not updates feeding on themselves: 10 tanh layers initialised with
        # stddev 0.05 went from a norm of 0.06 to 10 at a loss of 0.036 (from ln 2), and trained
        # on to a validation loss of 0.007.
        # The step's own loss, or the median of its and the steps' before it: the batch whose
        # gradient spikes is the one whose own loss jumped, so its loss alone read "not falling"
        # in a model that learns. A BiLSTM text classifier's norm reached 53, 472x its flat
        # start's, at a batch loss of 0.41 among steps at 0.10-0.27 (from 0.69), and trained on
        # to a training loss of 0.006 at 0.88 validation accuracy, told "the updates feed on themselves".
        first_loss = self.first_values(LOSS)[:BASELINE_STEPS]
        first_loss = first_loss[np.isfinite(first_loss)]
        falling = np.zeros(len(rest), bool)
        if loss is not None and level is not None and first_loss.size:
            limit_loss = self.t.explode_loss_fraction * float(np.median(first_loss))
            falling = (loss[start:] < limit_loss) | (level[start:] < limit_loss)
        # The first step above the limit before the run broke (see _detect: the steps from there
        # on are the nan-loss rule's business). Not before any non-finite norm: a loss-scale
        # optimizer skips steps whose scaled gradients overflow float16, more often as they grow,
        # and such a skip ahead of them in a call hid norms 700x the first steps'.
        flagged = np.isfinite(rest) & (rest > limit) & ~falling
        if self.nonfinite is not None:
            flagged &= first_step + start + np.arange(len(rest)) < self.nonfinite.step
        if not flagged.any():
            return
        i = start + int(np.argmax(flagged))
        value = float(loss[i]) if loss is not None else None
        self.explosion = Explosion(first_step + i, float(norms[i]), baseline, value)

    def _loss_level(self, loss: np.ndarray | None) -> np.ndarray | None:
        """Per step of ``loss`` (this call's), the median finite loss of that step and the
        :data:`EXPLOSION_LOSS_STEPS` - 1 before it (the previous calls' kept in
        ``_recent_losses``); NaN where none is finite. ``None`` without a loss."""
        if loss is None:
            return None
        losses = np.concatenate([np.asarray(self._recent_losses, dtype=np.float64), np.asarray(loss, dtype=np.float64)])
        losses[~np.isfinite(losses)] = np.nan
        self._recent_losses = losses[len(losses) - (EXPLOSION_LOSS_STEPS - 1):].tolist()
        padded = np.concatenate([np.full(EXPLOSION_LOSS_STEPS - 1 - (len(losses) - len(loss)), np.nan), losses])
        windows = np.lib.stride_tricks.sliding_window_view(padded, EXPLOSION_LOSS_STEPS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a window of no finite loss: NaN, never "falling"
            return np.nanmedian(windows, axis=1)

    def _run_rules(self, moments: tuple[str, ...]) -> list[Finding]:
        new: list[Finding] = []
        for rule in self.rules:
            if rule.when not in moments:
                continue
            for finding in rule.evaluate(self):
                key = (finding.code, finding.layer)
                old = self._findings.get(key)
                if old is not None and _RANK[finding.severity] <= _RANK[old.severity]:
                    # Found before: the first detection stands, but at the run's end its advice
                    # names the rate sized from the whole run, as every other finding then does.
                    if self.finished and rule.refresh_advice and finding.advice != old.advice:
                        self._findings[key] = dataclasses.replace(old, advice=finding.advice)
                    continue
                if old is None:
                    self._order.append(key)
                self._findings[key] = finding  # new, or grown more severe (info -> warning)
                new.append(finding)
        return new


def _watch_nonfinite(name: str) -> bool:
    """Statistics whose non-finite value means the run broke (not ratios of zero by zero)."""
    return (name in (LOSS, GLOBAL_GRAD_NORM) or variable_of(name, GRAD_NORM) is not None
            or variable_of(name, WEIGHT_NORM) is not None or activation_stat_of(name, MEAN, STD) is not None)


def _counts_nonfinite(name: str) -> bool:
    """Statistics that count NaN/inf entries (any count above zero means the run broke)."""
    return variable_of(name, GRAD_NONFINITE) is not None or activation_stat_of(name, NONFINITE) is not None


def _floats(values: Iterable[Any]) -> list[float]:
    """Plain floats of an array (for JSON; NaN and inf kept as such)."""
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


_RECORD_ARRAYS = ("mean", "minimum", "maximum", "last", "nonfinite")


def epoch_record_state(record: EpochRecord) -> dict[str, Any]:
    """An :class:`EpochRecord` as JSON-serialisable values."""
    data = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    data.update({key: _floats(getattr(record, key)) for key in _RECORD_ARRAYS})
    data["logs"] = dict(record.logs)
    return data


def epoch_record_from_state(data: Mapping[str, Any]) -> EpochRecord:
    """The :class:`EpochRecord` that :func:`epoch_record_state` wrote."""
    values = dict(data)
    values.update({key: np.asarray(data[key], dtype=np.float64) for key in _RECORD_ARRAYS})
    return EpochRecord(**values)
