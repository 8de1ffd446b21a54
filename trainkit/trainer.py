"""The :class:`Trainer`: a compiled ``tf.GradientTape`` loop that replaces ``model.fit``.

Subclass it and override :meth:`Trainer.train_step`, :meth:`Trainer.compute_loss` or
:meth:`Trainer.test_step`; overrides are compiled exactly like the defaults, several steps per call.

This module holds the Trainer's construction, its overridable hooks and ``fit``'s epoch loop. The
rest of what it does is in modules of their own, mixed in where it reads and writes much of the
trainer's state: pairing outputs with losses and metrics (:mod:`trainkit.output_heads`), the
epoch's trackers (:mod:`trainkit.epoch_metrics`), cutting an epoch into compiled calls
(:mod:`trainkit.epoch_calls`), data arguments as sources (:mod:`trainkit.fit_data`), checkpoints
and resuming (:mod:`trainkit.resumable`), TensorBoard (:mod:`trainkit.tensorboard_logging`) and
``evaluate`` and ``predict`` (:mod:`trainkit.inference`); owned as objects where it does not: the
probe-batch histograms (:mod:`trainkit.histograms`) and the step table
(:mod:`trainkit.step_table`); and functions where it holds no state: the checks of what a traced
step returns (:mod:`trainkit.step_checks`) and which models were trained before
(:mod:`trainkit.trained_models`).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import random
import sys
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from trainkit import background, checks, distribute, multioutput, probes, stats, updates
from trainkit.activity_penalty import (
    ACTIVITY_PENALTY,
    ActivityPenalty,
    activity_layers,
    activity_sum,
    call_loss_layers,
    start_batch,
)
from trainkit.callbacks.base import Callback, CallbackList, flat_callbacks
from trainkit.callbacks.early_stopping import EarlyStopping
from trainkit.callbacks.keras_callbacks import KerasCallback, as_trainkit_callback
from trainkit.checkpoint import TrainingCheckpoint
from trainkit.epoch_calls import EpochCalls, in_memory_batches
from trainkit.epoch_metrics import EpochMetrics, add_row_sums, user_scalar_columns
from trainkit.errors import (
    ArgumentError,
    DataError,
    TrainingInterrupted,
    UnknownNameError,
)
from trainkit.findings import Finding
from trainkit.fit_data import (
    FitData,
    Shuffle,
    check_batch_size,
    check_epochs,
    check_fit_options,
    verbosity,
)
from trainkit.histograms import ProbeHistograms, probe_batch
from trainkit.history import History
from trainkit.inference import Inference
from trainkit.inputs import reraises_source_errors
from trainkit.interrupt import SecondInterrupt, StopRequest, stop_on_signals
from trainkit.jit_policy import (
    XLA_FALLBACK,
    choose_jit_compile,
    fit_plan,
    xla_fallback_note,
    xla_obstacle,
)
from trainkit.loop import (
    CompiledLoop,
    StepOutputs,
    autograph_overrides,
)
from trainkit.model_layers import layer_ids, trainable_layer_ids
from trainkit.output_heads import OutputHeads, known_output_count, listed_outputs
from trainkit.resolve import Spec, get_optimizer
from trainkit.resumable import FINISHED_STOP_REASONS, Resumable
from trainkit.run_lock import holds_run_lock
from trainkit.running_metrics import held_metrics, results_noted, running_values, updates_noted
from trainkit.runs import is_storage_failure
from trainkit.sources import (
    ArraySource,
    DatasetSource,
    unpack_batch,
)
from trainkit.step_checks import (
    STATISTICS_MISSING,
    VALIDATION_PREFIX,
    check_model_step_overrides,
    check_step_returns_loss,
    check_step_signatures,
    missing_statistics,
    model_attribute_error,
    scalar_loss,
    unknown_variables_explained,
)
from trainkit.step_table import DEFAULT_KEPT_STEPS, StepTable
from trainkit.tasks import Task
from trainkit.tensorboard_logging import TensorBoardLogging
from trainkit.time_gradients import TimeGradients
from trainkit.trainable_state import TrainableState
from trainkit.trained_models import record_training, trained_before
from trainkit.trainer_arguments import check_trainer_arguments, is_whole_number, needs_init
from trainkit.writers.console import ConsoleLogger
from trainkit.writers.hparams import clean_hparams
from trainkit.writers.tensorboard import (
    RunWriter,
    check_text,
)

#: The methods a subclass overrides to change what a step does. trainkit compiles without AutoGraph;
#: an override of one of these is converted (see :func:`trainkit.loop.autograph_overrides`). The
#: base versions, and the helpers an override calls, are marked ``do_not_convert``, so that
#: converting an override does not convert trainkit's own step (seconds of tracing).
STEP_METHODS = ("train_step", "test_step", "compute_loss", "apply_gradients", "update_metrics", "replica_gradients")



class Trainer(OutputHeads, EpochMetrics, EpochCalls, FitData, Resumable, TensorBoardLogging, Inference, TrainableState):
    """Trains a Keras model with a compiled GradientTape loop, measuring every step.

    Args:
        model: A Keras model (Sequential, Functional or subclassed).
        loss: A Keras loss object or name (``"binary_crossentropy"``, ``{"name": ..., ...}``).
            For a model with several outputs, one loss for all of them or, as with
            ``model.compile``, a list (by position) or dict (by output name) of losses; the
            total is their weighted sum (see :mod:`trainkit.multioutput`).
        optimizer: A Keras optimizer object or name (``"adam"``, ``{"name": "sgd", ...}``).
        task: ``"binary"``, ``"multiclass"``, ``"multilabel"`` or ``"regression"``; for a model
            with several outputs of different kinds, a list (by position) or dict (by output
            name) of them, ``None`` there for an output without a loss.
        metrics: Metric objects or names; ``"accuracy"`` picks the variant the task needs.
            With several outputs, each metric of a flat list is computed for every output
            (``<output>_accuracy``); a list of lists or a dict by output name picks per output.
        logdir: Directory for this run's TensorBoard events (``train/``, ``validation/``); none
            are written when ``None``.
        seed: Seeds the per-epoch shuffle (stateless in ``(seed, epoch)``, so a resumed run sees
            the same order). Initial weights and dropout masks come from Keras's own seed
            generators: call ``keras.utils.set_random_seed(seed)`` before building the model for
            a run that repeats exactly (recipes do). ``None``: drawn from Python's ``random``,
            which ``keras.utils.set_random_seed`` seeds too, so that alone repeats a run, as with
            ``model.fit``.
        allow: Check codes (compatibility or data) to downgrade from errors to recorded warnings:
            a list of them, or one code.
        num_classes: Number of classes, when known, for the compatibility checks.
        steps_per_execution: Steps per compiled call: an int, or ``"auto"`` to size calls to
            about half a second each (a whole epoch for small in-memory data).
        jit_compile: ``True``/``False`` or ``"auto"``: XLA where it is known to be faster (a GPU;
            on a CPU, dense-only models in a first fit long enough to repay XLA's compile time,
            see :func:`choose_jit_compile`).
        scalars_every: Write per-step scalars to TensorBoard every this many steps.
        report_last_batch_loss: Also record the last batch's loss of each epoch as
            ``last_batch_loss`` (to show how misleading that number is).
        statistics: Compute the per-step gradient, update and activation statistics of
            :mod:`trainkit.stats` inside the default :meth:`train_step` (``learning_rate``,
            ``grad_norm/...``, ``weight_norm/...``, ``update_ratio/...``, ``grad_nonfinite/...``,
            ``activation/...``). ``False`` leaves them out of the graph: the step returns
            ``loss`` and the scalars logged with :meth:`log_scalar` only.
        histograms_every: Write histograms of weights, gradients and activations (computed on a
            fixed probe batch, the first training batch, without updating anything) every this
            many steps (compiled calls then end at those steps), ``"epoch"`` for once per
            epoch, ``None`` for never. Needs ``logdir``.
        step_table_steps: Steps of per-step scalars :meth:`step_table` keeps (the most recent
            ones), so memory stays bounded in long runs; ``None`` keeps every step, ``0`` none.
        hparams: Hyperparameters (name -> str, float, int or bool) to record for TensorBoard's
            HParams dashboard when the writer opens, with the epoch loss and metrics as
            its metric columns; ``None`` records none.
        diagnose: Run the diagnosis rules live (:mod:`trainkit.diagnosis`): new warnings are
            printed once when ``verbose`` and findings go to :attr:`findings` (a NaN loss with
            its step and the first layer that broke). ``False`` turns it off; a
            :class:`~trainkit.diagnosis.DiagnosisCallback` instance customises it.
        checkpoint_every: Write a checkpoint (weights, optimizer, RNG and metric state,
            progress) to ``<logdir>/checkpoints`` every this many epochs; 0 never; ``"auto"``
            after the first epoch that ends at least
            :data:`~trainkit.resumable.AUTO_CHECKPOINT_SECONDS` after the
            last checkpoint (or the start), so short epochs do not spend their time saving and a
            crash loses at most that long plus one epoch. Every setting but 0 also checkpoints
            at the end. An interrupted run (Ctrl-C, SIGTERM) writes one too, mid-epoch, so
            ``fit(..., resume=True)`` continues exactly where it stopped. Needs ``logdir``.
        keep_checkpoints: How many checkpoints to keep.
        on_nan: ``"stop"``: end training right after the first step whose loss is NaN or
            infinite, keeping the weights from before that step (the default train step skips a
            non-finite update) and setting :attr:`stop_reason` to ``"nan-loss"``; ``"warn"``:
            record it and go on.
        loss_weights: With several outputs, the weight of each output's loss in the total: one
            for every output, a list or dict by output name (1.0 where not given), as with
            ``model.compile``.
        auto_scale_loss: As with ``model.compile``: when the model's dtype policy is
            ``mixed_float16``, wrap the optimizer in a ``keras.optimizers.LossScaleOptimizer``
            (unless it is one), which scales the loss so that small float16 gradients do not
            become 0. :attr:`optimizer` is then the wrapper.
        strategy: A ``tf.distribute.Strategy`` (``MirroredStrategy``,
            ``MultiWorkerMirroredStrategy``, ...) to replicate training over; build the model
            inside its ``scope()``. Each global batch of ``batch_size`` rows is split across the
            replicas; the loss, metrics and statistics are reduced across them (see
            :mod:`trainkit.distribute`). Only the chief writes events, checkpoints and reports.
            ``None`` or the default strategy: one device, the unchanged single-device loop.
    """

    @property
    def _metric_split(self) -> str:
        """The split whose trackers ``metrics`` and the default ``update_metrics`` give: ``"eval"``
        while this thread traces a validation or evaluation step, else ``"train"``.

        By thread: under a MirroredStrategy each replica traces the step on a thread of its own,
        and one attribute for all was set back to ``"train"`` by the first replica done while the
        other still traced, whose validation loss then fed the training tracker (a ``sum`` loss's
        val_loss 6.44 over two CPU replicas against one device's 8.78). Read from ``__dict__``:
        the property is read before ``__init__`` sets anything, by a subclass that never calls it.
        """
        return "eval" if threading.get_ident() in self.__dict__.get("_eval_tracing_threads", ()) else "train"

    def __init__(
        self,
        model: keras.Model,
        *,
        loss: Spec,
        optimizer: Spec,
        task: Task | Sequence[Task | None] | Mapping[str, Task | None],
        metrics: Iterable[Spec] | Mapping[str, Any] | None = (),
        logdir: str | Path | None = None,
        seed: int | None = None,
        allow: Collection[str] = (),
        num_classes: int | None = None,
        steps_per_execution: int | Literal["auto"] = "auto",
        jit_compile: bool | Literal["auto"] = "auto",
        scalars_every: int = 1,
        report_last_batch_loss: bool = False,
        statistics: bool = True,
        histograms_every: int | Literal["epoch"] | None = "epoch",
        step_table_steps: int | None = DEFAULT_KEPT_STEPS,
        hparams: Mapping[str, Any] | None = None,
        diagnose: bool | Callback = True,
        checkpoint_every: int | Literal["auto"] = "auto",
        keep_checkpoints: int = 3,
        on_nan: Literal["stop", "warn"] = "stop",
        strategy: tf.distribute.Strategy | None = None,
        loss_weights: float | Sequence[float] | Mapping[str, float] | None = None,
        auto_scale_loss: bool = True,
    ) -> None:
        if not isinstance(model, keras.Model):
            raise ArgumentError("bad-argument", f"model must be a keras.Model (Sequential, functional or subclassed), got a {type(model).__name__}. "
                                                "Build it first, e.g. keras.Sequential([...]).")
        checks.validate_task(task)
        check_trainer_arguments(
            logdir=logdir, seed=seed, allow=allow, num_classes=num_classes, steps_per_execution=steps_per_execution, jit_compile=jit_compile,
            scalars_every=scalars_every, statistics=statistics, report_last_batch_loss=report_last_batch_loss,
            histograms_every=histograms_every, step_table_steps=step_table_steps, hparams=hparams, diagnose=diagnose,
            checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints, on_nan=on_nan, strategy=strategy,
            auto_scale_loss=auto_scale_loss)
        obstacle = xla_obstacle(model) if jit_compile is True else None
        if obstacle is not None:  # XLA's failure would be a TensorFlow traceback at the first step
            raise ArgumentError("jit-unsupported", f"jit_compile=True, but {obstacle}. Pass jit_compile=False, or \"auto\", which leaves "
                                                   "XLA off for such a model (as model.fit does).")
        self.model = model
        self.task = task
        self.diagnose = diagnose
        # Only a real strategy changes anything; the default strategy is the single-device path.
        self.strategy = strategy if distribute.is_distributed(strategy) else None
        if self.strategy is not None:
            distribute.check_variables_in_scope(self.strategy, model.variables)
        # Optimizer, metric and step-counter variables are replicated: created in the scope.
        with distribute.scope(self.strategy):
            self._create_state(loss, optimizer, metrics, task, loss_weights, auto_scale_loss)
        # The loss, optimizer (class and learning rate) and metrics as given, before any callback
        # moves the rate: a checkpoint records them, and a resume with others is refused.
        self._setup_record = checks.setup_record(self.loss, self.optimizer, self._metric_specs, self.model)
        if self.strategy is not None:
            distribute.check_optimizer_in_scope(self.strategy, self.optimizer)
        self.logdir = Path(logdir) if logdir is not None else None
        # Under a multi-worker strategy only the chief writes events, checkpoints and reports.
        self.is_chief = distribute.is_chief(self.strategy)
        # Without a seed, one drawn from Python's global generator, as Keras's own generators draw
        # theirs: keras.utils.set_random_seed seeds it, so two fits after it shuffle alike, as two
        # model.fit calls do (fresh OS entropy gave every fit another epoch order).
        self.seed = int(seed) if seed is not None else random.randint(0, 2**31 - 2)
        self.allow = frozenset([allow] if isinstance(allow, str) else allow)  # a str is one code, not its characters
        self.num_classes = num_classes
        self.steps_per_execution = steps_per_execution
        self.jit_compile = jit_compile
        self.scalars_every = scalars_every
        self.report_last_batch_loss = report_last_batch_loss
        # Checked here: a bad value would otherwise fail only when the writer opens.
        self.hparams = clean_hparams(hparams) if hparams is not None else None
        self.statistics = statistics
        self.on_nan = on_nan
        self.checkpoint_every = checkpoint_every
        self.keep_checkpoints = keep_checkpoints
        self.stop_reason: str | None = None
        # After a stop on a non-finite loss, what the weights are: "kept" (the step's update was
        # skipped), "checkpoint" (a step of its own applied it; the last checkpoint came back),
        # "nonfinite" (it applied it, and no checkpoints are kept: no logdir, or checkpoint_every 0)
        # or "nonfinite-early" (none had been written yet).
        self.nan_weights: str | None = None
        self._checkpoint: TrainingCheckpoint | None = None
        self._checkpoint_optimizer: keras.optimizers.Optimizer | None = None  # the optimizer it saves
        self._checkpoint_logdir: Path | None = None  # and the logdir it saves into
        # The checkpoint written at the end of this fit's last epoch, and its record, which gets the
        # findings of the end of the run once on_train_end made them.
        self._final_checkpoint: tuple[Path, dict[str, Any]] | None = None
        # Whether a resumed fit's hyperparameters differ from its checkpoint's (more epochs).
        self._hparams_changed = False
        self.resumed_epochs = 0
        #: Batches of its first epoch a resumed fit had trained before (a mid-epoch checkpoint).
        self.resumed_batches = 0
        self._last_checkpoint_time = 0.0
        self._auto_call_steps = 8  # steps_per_execution="auto": the size of the next call
        self._batches_done = 0
        self._step: int | None = None  # global_step mirrored on the host (see `step`)
        self._metric_fns: dict[str, Any] = {}  # compiled reset and read of the metrics, by split
        # A Python int: the calls are cut at its steps by isinstance(every, int), and numpy's
        # np.int64(4), which the check above takes, wrote no histogram at all.
        self.histograms_every = int(histograms_every) if is_whole_number(histograms_every) else histograms_every
        self.step_table_steps = step_table_steps

        self.findings: list[Finding] = []
        #: The codes the last data checks of training data found (``None``: none ran).
        self.data_check_codes: tuple[str, ...] | None = None
        #: Of those, the scale findings that blame only a few far rows (see ``Context.far_value_checks``).
        self.data_check_far: tuple[str, ...] = ()
        self.history = History()
        self._output_names = tuple(getattr(model, "output_names", None) or ())
        self.stop_training = False
        self.epochs = 0
        self.steps_per_epoch: int | None = None
        self.writer: RunWriter | None = None
        self._pending_texts: dict[str, str] = {}
        self._step_table = StepTable()
        self._probe: probes.Probe | None = None
        self._histograms = ProbeHistograms(self)
        self._time_gradients = TimeGradients(self)
        self._activity_penalty = ActivityPenalty(self)
        self._step_xla = False
        # Whether the optimizer's updates can be recorded as it applies them (trainkit.updates):
        # None until the first traced step shows it.
        self._updates_recorded: bool | None = None
        # Whether the training loss holds the model's penalties (model.losses): the default
        # compute_loss adds them; a compute_loss of its own that never calls it may not (see
        # _counted_train_step). The diagnosis takes them out of the loss only where they are in it.
        self._loss_holds_penalties = True
        self._default_loss_ran = False
        # The layers whose add_loss in their own call the training loss holds (see compute_loss).
        self._call_loss_layers: tuple[str, ...] = ()
        self._live_diagnosis: Any = None  # this fit's DiagnosisCallback, if any
        self._resumed_diagnosis: dict[str, Any] | None = None  # its checkpointed state, for a resumed fit

        # What a step being traced hands from one hook to the next (log_scalar's values, the
        # per-output losses), by thread: a strategy traces each replica's step in a thread of its
        # own, and they take turns at every all-reduce.
        self._traced: dict[int, dict[str, Any]] = {}
        # Whether the traced train/test step feeds the loss and metric trackers (an overridden
        # step may not, and then the epoch loss comes from the "loss" each step returns).
        self._tracked: dict[str, bool] = {}
        self._running: dict[str, dict[str, keras.metrics.Metric]] = {}
        # trainkit compiles without AutoGraph (see loop.compile_function); a subclass's own step
        # methods are converted, so a Python `if` over tensors in them still traces.
        check_step_signatures(self, Trainer)  # before the conversion, which hides the signatures
        check_model_step_overrides(self, Trainer)
        autograph_overrides(self, Trainer, STEP_METHODS)
        # A compute_loss written before Keras 3.3 takes no `training`: Keras calls it without one.
        parameters = inspect.signature(type(self).compute_loss).parameters.values()
        self._loss_takes_training = any(p.name == "training" or p.kind is p.VAR_KEYWORD for p in parameters)
        # An apply_gradients of its own written as (gradients, variables, loss) takes no
        # `record_updates`: it is called without it, and its updates are measured from a
        # snapshot of the weights (a TypeError in the first trace otherwise).
        parameters = inspect.signature(type(self).apply_gradients).parameters.values()
        self._apply_records = any(p.name == "record_updates" or p.kind is p.VAR_KEYWORD for p in parameters)
        self._epochs_skipped = 0
        # The running sums of the epoch's step-averaged values (see _run_epoch), and those a
        # mid-epoch checkpoint recorded, for the resumed epoch.
        self._epoch_sums: dict[str, list[float]] = {}
        self._resumed_sums: dict[str, list[float]] | None = None
        self._train_loop: CompiledLoop | None = None
        # The trainable variables the training loop was traced for (see _follow_trainable_changes).
        self._loop_variables: tuple[int, ...] = ()
        self._loop_optimizer: Any = None  # and the optimizer it applies
        self._fit_variables: tuple[int, ...] = ()  # and those the running fit began with
        self._fit_first_epoch = 0  # the first epoch that fit runs
        self._eval_loop: CompiledLoop | None = None
        self._predict_fn: Any = None
        self._predict_arrays_fn: Any = None
        self._predict_dataset_fn: Any = None
        self._model_trained_before = False  # see fit
        # The layers its checks, heads and compiled steps are made for (see _refuse_changed_layers);
        # a model built at its first fit is recorded then.
        self._layer_ids = layer_ids(model) if model.built and model.variables else None
        self.findings.extend(self.check_model())
        # The layers trainable when the model checks ran (see _recheck_trainable_rules).
        self._checked_trainable = trainable_layer_ids(model)
        # Printed at the first fit that shows its progress (see _show_check_warnings).
        self._unshown_checks = [f for f in self.findings if f.severity != "info"]
        self._initialized = True  # what _needs_init looks for

    def _create_state(self, loss: Spec, optimizer: Spec, metrics: Any, task: Task, loss_weights: Any, auto_scale_loss: bool) -> None:
        """Creates the loss, optimizer, metrics and step counter (inside a strategy's scope)."""
        if loss is None:
            # Keras's compile(loss=None) trains on the model's add_loss losses alone: said only
            # "A loss is a name, ... got None".
            raise UnknownNameError("unknown-loss", "The loss is None. A model trained on its add_loss losses alone (Keras: compile(loss=None), "
                                                   "fit(x)) is trained by a Trainer subclass whose compute_loss returns "
                                                   "tf.add_n(self.model.losses) (README: Subclassing); such a trainer takes any loss, e.g. loss='mse'.")
        self.loss = multioutput.resolve_losses(loss)
        self.optimizer = get_optimizer(optimizer)
        self._refuse_another_models_optimizer()
        self._auto_scale_loss = auto_scale_loss
        self.optimizer = self._loss_scaled(self.optimizer)
        if metrics is None:  # as model.compile(metrics=None): none (it was a TypeError)
            metrics = []
        if isinstance(metrics, str | keras.metrics.Metric) or callable(metrics):
            metrics = [metrics]  # one metric given alone (list("accuracy") would be its letters)
        self._metric_specs = metrics if isinstance(metrics, Mapping) else list(metrics)
        self._loss_weight_spec = loss_weights
        self._loss_tracker = keras.metrics.Mean(name="loss")
        self._eval_loss_tracker = keras.metrics.Mean(name="loss")
        # The epoch means of the activity penalties in each split's loss, for the diagnosis
        # (trainkit.activity_penalty); only for a model that has any, and a run diagnosed (else
        # the steps summed and tracked them for nobody).
        self._activity_layers = activity_layers(self.model)
        measured = bool(self._activity_layers and self.diagnose)
        self._penalty_trackers = {split: keras.metrics.Mean(name=ACTIVITY_PENALTY) for split in ("train", "eval")} if measured else {}
        self._penalties_seen: set[str] = set()
        self.epoch_activity_penalties: dict[str, float] = {}
        count = known_output_count(self.model)
        # A subclassed model's outputs are counted when it first sees data (_ensure_built); until
        # then, as many as the per-output arguments list.
        self._outputs_counted = count is not None
        self._pair_outputs(count or listed_outputs(loss, task, loss_weights))
        # ONLY_FIRST_REPLICA: every replica counts the same step; the counter must advance once.
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step", aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Refuses ``self(x)``: a step written for a ``keras.Model`` calls itself, a trainer's calls
        its model (a bare ``TypeError: object is not callable`` otherwise, deep in the trace).

        Raises:
            ArgumentError: ``trainer-is-not-the-model``.
        """
        raise ArgumentError("trainer-is-not-the-model", f"{type(self).__name__} is a Trainer, not the model: in a step of its own call "
                                                        "self.model(x, training=True), and take self.model.trainable_variables where a "
                                                        "keras.Model's step takes self.trainable_variables.")

    def __getattr__(self, name: str) -> Any:
        """Called only for an attribute the trainer lacks: one that a step ported from a
        ``keras.Model`` reads from ``self`` (``self.compiled_loss``, ``self.trainable_variables``)
        is told the trainer's spelling.

        Raises:
            ModelAttributeError: ``trainer-is-not-the-model`` (an ``AttributeError`` too).
            AttributeError: for any other name.
        """
        if any(name in vars(cls) for cls in type(self).__mro__):
            # A property (the trainer's or a subclass's) that raised AttributeError inside: Python
            # drops that error and calls this, which said "object has no attribute 'extra'" of a
            # property it has (or trainer-is-not-the-model of a subclass's own `layers`). Reading it
            # again raises the property's own error, with its own message and traceback.
            return object.__getattribute__(self, name)
        raise model_attribute_error(self, name)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        """The loss tracker (named ``loss``) and metrics, as Keras's ``model.metrics`` lists them,
        so that a step written as in Keras's guide to customizing ``fit`` (update ``loss`` with the
        loss, the others with ``(y, y_pred)``, return every ``result()``) runs as it does there.

        While a validation or :meth:`evaluate` step is traced they are the evaluation trackers
        (Keras shares one set and resets it before validation; trainkit keeps one per split), so
        that an :meth:`update_metrics` of a subclass's own feeds the split its step measures.
        Elsewhere, the training ones. A subclass may override it (the guide's ``metrics``
        property); trainkit itself reads its own lists, ``_metrics`` and ``_eval_metrics``.
        """
        if self._metric_split == "eval":
            return [self._eval_loss_tracker, *self._eval_metrics]
        return [self._loss_tracker, *self._metrics]

    @metrics.setter
    def metrics(self, value: Any) -> None:
        # Keras's model.metrics cannot be set either; the list is the constructor's to make.
        raise ArgumentError("bad-argument", "Trainer.metrics is read from the trainer's trackers and cannot be set: pass metrics=[...] to "
                                            "the Trainer, or define a metrics property in a subclass (as Keras's guide does).")

    # -- hooks users override (all run inside the compiled loop) ----------------------------------
    @tf.autograph.experimental.do_not_convert  # see STEP_METHODS
    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None, training: bool = True) -> tf.Tensor:
        """The scalar loss of a batch: the loss function plus the model's regularization losses.

        For a model with several outputs, the weighted sum of each output's loss (each one is
        also reported as ``<output>_loss``). Every argument has a default, as in
        ``keras.Model.compute_loss``, so a step written for Keras that calls
        ``self.compute_loss(y=y, y_pred=y_pred)`` works unchanged (``x`` is unused here).
        """
        self._default_loss_ran = True
        predictions = multioutput.flat_outputs(y_pred)
        if len(predictions) == 1:
            head = self.heads[0]
            # A model whose one output is a dict ({"out": ...}) returns it so: the loss reads the
            # tensor (it paired the dict with the targets' array: "don't have the same nested structure").
            y_pred = predictions[0] if isinstance(y_pred, Mapping) else y_pred
            loss = self._output_loss(head.loss, multioutput.like_outputs(y, y_pred, self._output_names), y_pred, sample_weight)
            loss = loss if head.weight == 1.0 else head.weight * loss
        else:
            if len(predictions) != len(self.heads):
                self._pair_outputs(len(predictions))  # not counted yet (compute_loss called directly)
            names = [h.name for h in self.heads]
            targets = multioutput.targets_per_output(y, y_pred, names)
            if len(targets) != len(predictions):
                raise DataError("shape-mismatch", f"The model has {len(predictions)} outputs ({', '.join(names)}) but a batch has {len(targets)} targets: give one target per output.")
            missing = [h.name for h, target in zip(self.heads, targets, strict=True) if h.loss is not None and target is None]
            if missing:
                raise DataError("missing-targets", f"The targets have none for output {missing[0]}, which has a loss: give every trained output its targets.")
            values = [None if h.loss is None else self._output_loss(h.loss, target, prediction, sample_weight)
                      for h, target, prediction in zip(self.heads, targets, predictions, strict=True)]
            self._tracing()["output_losses"] = [v for v in values if v is not None]
            loss = tf.add_n([v if h.weight == 1.0 else h.weight * v for v, h in zip(values, self.heads, strict=True) if v is not None])
        if self.model.losses:
            # Summed each, as Keras's compute_loss sums them: an add_loss of one value per row
            # (a per-example penalty) made the loss a vector, refused as loss-not-scalar. In the
            # loss's dtype: a float16 layer's activity penalty (mixed_float16) could not be added.
            loss = loss + tf.add_n([tf.reduce_sum(tf.cast(extra, loss.dtype)) for extra in self.model.losses])
            # As a step is traced (the training step's, the evaluation's: a term added in training
            # only is one still): the diagnosis compares no loss holding such a term with a chance level.
            self._call_loss_layers = tuple(dict.fromkeys((*self._call_loss_layers, *call_loss_layers(self.model))))
            if self._penalty_trackers:
                self._tracing()[ACTIVITY_PENALTY] = activity_sum(self._activity_layers)
        return loss

    @tf.autograph.experimental.do_not_convert  # see STEP_METHODS
    def _evaluation_loss(self, x: Any, y: Any, y_pred: Any, sample_weight: Any) -> tf.Tensor:
        """``compute_loss(..., training=False)``, or without ``training`` for an override that
        takes none (written before Keras 3.3 added it; Keras's own steps call such one so too)."""
        if self._loss_takes_training:
            return self.compute_loss(x, y, y_pred, sample_weight, training=False)
        return self.compute_loss(x, y, y_pred, sample_weight)

    def _output_loss(self, loss_fn: Any, y: Any, y_pred: Any, sample_weight: Any) -> tf.Tensor:
        weights = multioutput.per_position_weights(sample_weight, y_pred)
        loss = loss_fn(y, y_pred, sample_weight=weights)
        return distribute.unscale_keras_loss(loss_fn, loss, y_pred, weights) if distribute.in_replica() else loss

    @tf.autograph.experimental.do_not_convert  # see STEP_METHODS
    def train_step(self, batch: Any) -> dict[str, tf.Tensor]:
        """One optimisation step; returns the step's scalars (at least ``"loss"``).

        Runs inside ``tf.function``: no numpy, no host syncs. With ``statistics=True`` the dict
        also holds the statistics of :mod:`trainkit.stats` (names in that module's docstring).
        Anything logged with :meth:`log_scalar` while it runs is added to the returned dict.
        """
        x, y, sample_weight = unpack_batch(batch)
        variables = self.model.trainable_variables
        if not self.statistics:
            with tf.GradientTape() as tape:
                y_pred = self.model(x, training=True)
                loss = scalar_loss(self.compute_loss(x, y, y_pred, sample_weight))
                scaled = self.optimizer.scale_loss(loss)  # mixed precision: the optimizer unscales
            gradients = tape.gradient(scaled, variables)
            gradients, step_loss = self.replica_gradients(gradients, loss, y_pred)
            self.apply_gradients(gradients, variables, step_loss)
            results = self._noted_update_metrics(y, y_pred, sample_weight, loss)
            return {"loss": loss, **results, **self.pop_logged_scalars()}

        with tf.GradientTape() as tape:
            # The probe shares the model's layers: same y_pred, same gradients, plus activations.
            y_pred, taps = self.probe(x, training=True)
            loss = scalar_loss(self.compute_loss(x, y, y_pred, sample_weight))
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        gradients, step_loss = self.replica_gradients(gradients, loss, y_pred)
        # Under a strategy the statistics describe the all-reduced gradient, as one device would.
        global_gradients = distribute.all_reduce_gradients(gradients) if distribute.in_replica() else gradients
        if scaled is not loss:  # the statistics describe the gradient of the loss itself
            global_gradients = stats.unscaled_gradients(global_gradients, self.optimizer.scale_loss(tf.ones_like(loss)))
        names = stats.variable_names(variables, self.model.name)
        learning_rate = self.current_learning_rate()
        logs = {stats.LOSS: loss, stats.LEARNING_RATE: learning_rate}
        xla = self._step_xla  # same values either way; picks the faster reductions
        iteration = tf.convert_to_tensor(self.optimizer.iterations) if xla else None  # read before the update counts it
        before, recorded = self._apply_measuring_updates(gradients, variables, step_loss)
        if recorded is not None and xla:  # fewer kernels: see updates.fusable_updates
            keep = tf.math.is_finite(step_loss) if self.on_nan == "stop" else None
            recorded = updates.fusable_updates(self.optimizer, variables, recorded, learning_rate, iteration, keep)
        # Gradient, update and activation statistics together: fewer kernels than one by one.
        # (Before the metrics: tf.shape(y_pred) in the loss mean would otherwise be a reader of a
        # softmax output, which stats._softmax_again then leaves to oneDNN's kernel.)
        logs.update(probes.step_stats(taps, global_gradients, before, variables, names, xla=xla, updates=recorded))
        logs.update(self._noted_update_metrics(y, y_pred, sample_weight, loss))
        return {**logs, **self.pop_logged_scalars()}

    def _apply_measuring_updates(self, gradients: Sequence[Any], variables: Sequence[Any], loss: tf.Tensor) -> tuple[list[tf.Tensor] | None, list[tf.Tensor] | None]:
        """Applies the update; returns ``(values before it, None)`` or ``(None, the updates)``.

        The updates are recorded as the optimizer applies them when it can tell (see
        :mod:`trainkit.updates`): a snapshot of the weights costs a copy of every weight a step.
        The first trace takes the snapshot as well and learns whether recording works for this
        optimizer; later traces record only.
        """
        record = (self.strategy is None and self._apply_records and updates.can_capture(self.optimizer, variables)
                  and self._updates_recorded is not False)
        if record and self._updates_recorded:
            recorded = self.apply_gradients(gradients, variables, loss, record_updates=True)
            if recorded is None:
                raise RuntimeError("The optimizer's updates were recorded when the step was first traced but not now; pass statistics=False or report this.")
            return None, recorded
        before = stats.snapshot(variables)
        if not record:
            self.apply_gradients(gradients, variables, loss)
            return before, None
        recorded = self.apply_gradients(gradients, variables, loss, record_updates=True)
        self._updates_recorded = recorded is not None
        return before, None

    @tf.autograph.experimental.do_not_convert  # see STEP_METHODS
    def replica_gradients(self, gradients: Sequence[Any], loss: tf.Tensor, y_pred: Any) -> tuple[Sequence[Any], tf.Tensor]:
        """Off a strategy, ``(gradients, loss)`` unchanged (no ops added).

        Inside ``strategy.run``: the gradients scaled by ``local_rows / global_rows`` (the
        optimizer sums them across replicas into the gradient of the global-batch mean) and the
        global-batch loss, so that every replica takes the same ``on_nan`` decision (replicas that
        disagreed would wait forever for each other's all-reduce). A custom :meth:`train_step`
        that runs under a strategy calls this between ``tape.gradient`` and ``apply_gradients``.
        """
        if not distribute.in_replica():
            return gradients, loss
        rows = distribute.replica_rows(y_pred)
        return distribute.scale_gradients(gradients, rows), distribute.global_mean(loss, rows)

    @tf.autograph.experimental.do_not_convert  # see STEP_METHODS
    def apply_gradients(self, gradients: Sequence[Any], variables: Sequence[Any], loss: tf.Tensor, *, record_updates: bool = False) -> list[tf.Tensor] | None:
        """Applies one optimizer update; with ``on_nan="stop"`` skips it when ``loss`` is not finite.

        Skipping in the graph (a select inside each assign of the update, see
        :mod:`trainkit.updates`, or a ``tf.cond`` around it for optimizers that write variables
        otherwise) is what keeps the last good weights exactly when the loop stops after a
        non-finite step, without copying weights every step.

        Args:
            gradients: One gradient per variable.
            variables: The variables to update.
            loss: The step's loss (decides the skip).
            record_updates: Also return the update applied to each variable, recorded as the
                optimizer applies it (:mod:`trainkit.updates`; zeros for a skipped step).

        Returns:
            With ``record_updates``, the updates, or ``None`` when the optimizer changed a
            variable other than through its assigns; otherwise ``None``.

        Raises:
            ArgumentError: ``no-gradients`` (while the step is traced) when the loss depends on
                none of the variables.
        """
        if variables and all(g is None for g in gradients):
            # A Lambda(tf.round) on the outputs was told to compute the loss from y_pred, which it did.
            raise ArgumentError("no-gradients", "The loss depends on none of the model's trainable weights, so no step can change them: compute it from "
                                                "the model's outputs (y_pred), not from constants or the labels alone (a tensor turned into a number, "
                                                "or a loss built outside the step, loses the connection), and keep ops without a gradient off the "
                                                "path from the weights to the loss (tf.round, a cast to an integer, argmax, tf.stop_gradient, in a "
                                                "Lambda or custom layer after the last weights, or in the loss itself).")
        if self.on_nan != "stop":
            return self._apply(gradients, variables, record_updates)
        if distribute.in_replica():
            # A tf.cond around the optimizer's cross-replica all-reduce cannot be traced in a
            # replica (merge_call in control flow): the update runs with zero gradients instead,
            # which keeps the weights finite (momentum-style optimizers may still move them).
            finite = tf.math.is_finite(loss)
            self.optimizer.apply([None if g is None else updates.select_whole(finite, g, tf.zeros_like(g)) for g in gradients], variables)
            return None
        if updates.can_guard(self.optimizer, variables) and not any(isinstance(g, tf.IndexedSlices) for g in gradients):
            # A select inside the update rather than a tf.cond around it (see trainkit.updates).
            keep = tf.math.is_finite(loss)
            recorded = self._apply(gradients, variables, record_updates, keep=keep)
            updates.undo_iteration(self.optimizer, keep)
            return recorded
        if not record_updates:

            def update() -> tf.Tensor:
                self.optimizer.apply(gradients, variables)
                return tf.constant(True)

            tf.cond(tf.math.is_finite(loss), update, lambda: tf.constant(False))
            return None
        # The branch returns the updates it recorded (zeros where it could not: then None below).
        outcome = {}

        def update_recorded() -> list[tf.Tensor]:
            recorded = self._apply(gradients, variables, True)
            outcome["complete"] = recorded is not None
            return recorded if recorded is not None else [tf.zeros(v.shape, tf.float32) for v in variables]

        recorded = tf.cond(tf.math.is_finite(loss), update_recorded, lambda: [tf.zeros(v.shape, tf.float32) for v in variables])
        return list(recorded) if outcome.get("complete") else None

    def _apply(self, gradients: Sequence[Any], variables: Sequence[Any], record_updates: bool, keep: tf.Tensor | None = None) -> list[tf.Tensor] | None:
        """``optimizer.apply``, recording the updates when asked (``None`` if not all were).

        With ``keep`` (a scalar bool), a step where it is false changes no variable.
        """
        if not record_updates and keep is None:
            self.optimizer.apply(gradients, variables)
            return None
        with updates.capture_updates(self.optimizer, variables, keep=keep) as capture:
            self.optimizer.apply(gradients, variables)
        return capture.updates if record_updates and capture.complete else None

    @tf.autograph.experimental.do_not_convert  # see STEP_METHODS
    def current_learning_rate(self) -> tf.Tensor:
        """The learning rate the next optimizer update uses, as a float32 scalar tensor.

        Read it before ``optimizer.apply``: a schedule is evaluated at the optimizer's iteration
        count, which the update increments.
        """
        rate = self.optimizer.learning_rate
        rate = tf.convert_to_tensor(getattr(rate, "value", rate))
        return rate if rate.dtype == tf.float32 else tf.cast(rate, tf.float32)

    @tf.autograph.experimental.do_not_convert  # see STEP_METHODS
    def probe(self, x: Any, training: bool = True) -> tuple[Any, list[probes.Tap]]:
        """The model's output for ``x`` and its tapped activations (see :mod:`trainkit.probes`)."""
        if self._probe is None:
            self._probe = probes.build_probe(self.model)
        return self._probe(x, training=training)

    @tf.autograph.experimental.do_not_convert  # see STEP_METHODS
    def test_step(self, batch: Any) -> dict[str, tf.Tensor]:
        """One evaluation step: updates the evaluation loss and metrics through
        :meth:`update_metrics` (as Keras's ``test_step`` calls ``compute_metrics``), which feeds
        the evaluation trackers while this step is traced."""
        x, y, sample_weight = unpack_batch(batch)
        y_pred = self.model(x, training=False)
        loss = self._evaluation_loss(x, y, y_pred, sample_weight)
        results = self._noted_update_metrics(y, y_pred, sample_weight, loss)
        return {"loss": loss, **results, **self.pop_logged_scalars()}

    @tf.autograph.experimental.do_not_convert  # see STEP_METHODS
    def update_metrics(self, y: Any, y_pred: Any, sample_weight: Any, loss: tf.Tensor) -> None:
        """Adds one batch to the epoch's loss mean and metrics: the training ones in a training
        step, the evaluation ones (``val_*``, :meth:`evaluate`) in a validation step.

        Called by the default :meth:`train_step` and :meth:`test_step`, as Keras's steps call
        ``compute_metrics``: an override ported from a model's ``compute_metrics`` (metrics of a
        logits output's sigmoid: ``super().update_metrics(y, tf.sigmoid(y_pred), sample_weight,
        loss)``) measures both splits so. One that feeds ``self.metrics`` itself gets the
        split's trackers there too. The batch mean is weighted by the batch's row count, so the
        epoch value is the exact mean over every row, the partial last batch included.
        """
        rows = distribute.replica_rows(y_pred)
        split = self._metric_split
        self._tracked[split] = True
        if split == "eval":
            self._eval_loss_tracker.update_state(loss, sample_weight=rows)
            self._update_output_losses(split, self._eval_output_loss_trackers, rows)
            self._update_activity_penalty(split, rows)
            self._update_metrics(self._eval_metrics, y, y_pred, sample_weight)
            return
        self._loss_tracker.update_state(loss, sample_weight=rows)
        self._update_output_losses(split, self._output_loss_trackers, rows)
        self._update_activity_penalty(split, rows)
        self._update_metrics(self._metrics, y, y_pred, sample_weight)

    def _noted_update_metrics(self, y: Any, y_pred: Any, sample_weight: Any, loss: tf.Tensor) -> dict[str, tf.Tensor]:
        """Calls :meth:`update_metrics`; returns, for an override that feeds the trainer's metrics
        itself instead of through the default one, the results of those it updated.

        The default step returns only the loss; the trackers the default ``update_metrics``
        feeds are read at the epoch's end. An override that updated ``self.metrics`` itself
        (``accuracy.update_state(y, y_pred)``) had them left out of the History without a word;
        returned, they are logged as a Keras step's ``result()`` values are (see
        :mod:`trainkit.running_metrics`). What an override returns besides its split's trackers'
        results (a port of a ``compute_metrics`` that added a value to Keras's dict) is returned
        too, as Keras's steps return ``compute_metrics``'s dict: it was dropped in silence.
        """
        split = self._metric_split
        metrics = self._eval_metrics if split == "eval" else self._metrics
        with updates_noted(metrics) as updated:
            returned = self.update_metrics(y, y_pred, sample_weight, loss)
        # Values under a tracker's name (Keras's {m.name: m.result() for m in self.metrics}) are
        # logged from the trackers themselves; the others are the step's own.
        tracked = {stats.LOSS, *(m.name for m in self._split_metrics(split))}
        extra = {name: value for name, value in returned.items() if name not in tracked} if isinstance(returned, Mapping) else {}
        clashing = [name for name in extra if isinstance(name, str) and stats.is_statistic(name)]
        if clashing:
            raise ArgumentError("bad-step-output", f"update_metrics returns {clashing[0]!r}, the name of a statistic the step measures, which "
                                                   "it would overwrite: give the value a name of its own.")
        if self._tracked.get(split):
            return extra
        return {**extra, **{m.name: m.result() for m in metrics if id(m) in updated}}

    @tf.autograph.experimental.do_not_convert  # see STEP_METHODS
    def log_scalar(self, name: str, value: tf.Tensor) -> None:
        """Records an extra per-step scalar from inside a step (e.g. a penalty term).

        It is written to TensorBoard every step and its epoch mean goes into the History.

        Raises:
            ArgumentError: ``log-scalar-outside-step`` when called outside a step being traced
                (from a callback, say), where there is no step to add it to.
        """
        if not tf.inside_function():
            raise ArgumentError("log-scalar-outside-step", f"log_scalar({name!r}, ...) records a value of a training step: call it in train_step, test_step or "
                                                           "compute_loss. From a callback, write to TensorBoard with trainer.writer or keep the value yourself.")
        logs = self._tracing()["logs"]
        self._check_logged_name(name, logs)
        value = tf.convert_to_tensor(value)
        if value.shape.num_elements() not in (1, None):
            raise ArgumentError("bad-log-scalar", f"log_scalar({name!r}, ...) takes one number, got a tensor of shape {value.shape}: reduce it first, "
                                                  "e.g. tf.reduce_mean(...).")
        if not (value.dtype.is_floating or value.dtype.is_integer or value.dtype.is_bool):
            raise ArgumentError("bad-log-scalar", f"log_scalar({name!r}, ...) takes a number, got a {value.dtype.name} tensor.")
        logs[name] = tf.reshape(tf.cast(value, tf.float32), [])

    def _check_logged_name(self, name: Any, logs: Mapping[str, Any]) -> None:
        """Refuses a log_scalar name that would overwrite another value of the epoch logs."""
        if not isinstance(name, str) or not name:
            raise ArgumentError("bad-log-scalar", f"log_scalar's name must be a non-empty string, got {name!r}.")
        taken = {stats.LOSS, stats.LEARNING_RATE, *(m.name for m in self._metrics), *(t.name for t in self._output_loss_trackers)}
        if name in taken or stats.is_statistic(name):
            raise ArgumentError("bad-log-scalar", f"log_scalar({name!r}, ...) would overwrite the step's own {name!r}: give the value a name of its own.")
        if name.startswith(VALIDATION_PREFIX):
            raise ArgumentError("bad-log-scalar", f"log_scalar({name!r}, ...): the epoch logs name validation values val_<name>, so the validation's would "
                                                  "overwrite it. Give it a name without the val_ prefix: a value logged in compute_loss gets its val_ twin.")
        if name in logs:
            raise ArgumentError("bad-log-scalar", f"log_scalar({name!r}, ...) was called twice in one step: the first value would be lost. Log each value "
                                                  "under its own name, or add them up first.")

    def _tracing(self) -> dict[str, Any]:
        """This thread's hand-over between the hooks of the step it traces."""
        return self._traced.setdefault(threading.get_ident(), {"logs": {}})

    @tf.autograph.experimental.do_not_convert  # see STEP_METHODS
    def pop_logged_scalars(self) -> dict[str, tf.Tensor]:
        """Returns and clears the scalars logged with :meth:`log_scalar` during this trace."""
        # The step's hand-over ends here (per-output losses left unread included).
        logs = self._traced.pop(threading.get_ident(), {}).get("logs", {})
        return logs

    # -- checks -----------------------------------------------------------------------------------
    def check_model(self) -> list[Finding]:
        """Compatibility checks of model, loss and task (raises CompatibilityError on errors), and
        of a ``model.compile`` the trainer does not train with (``compile-ignored``)."""
        found = checks.check_compatibility(self.model, self.loss, self.task, allow=self.allow, num_classes=self.num_classes, optimizer=self.optimizer)
        return [*found, *checks.check_compiled(self.model, loss=self.loss, optimizer=self.optimizer, metrics=self._metric_specs,
                                               compare_loss=not self._computes_own_loss(),
                                               metrics_made=getattr(self, "_metrics", None) if len(getattr(self, "heads", ())) == 1 else None,
                                               jit_compile=self.jit_compile)]

    def check_data(self, x: Any, y: Any, x_val: Any = None, y_val: Any = None, sample_weight: Any = None,
                   batch_size: int | None = None, *, evaluation: bool = False, feature_names: Sequence[str] | None = None,
                   val_sample_weight: Any = None, complete: bool = True, split_at: int | None = None,
                   shuffle: bool | str | None = None) -> list[Finding]:
        """Data checks against the task and the model; raises DataError on errors.

        ``sample_weight``: the training rows' weights (times any class weights), so that the
        class-imbalance check knows when they already even out the classes. ``batch_size``: the
        rows per batch fit will use on numpy data (``batch-larger-than-data``). ``evaluation``:
        ``x`` and ``y`` are to be evaluated, not trained on (the checks that hold for any data).
        ``feature_names``: the columns of ``x`` (a csv header), to name features in the findings.
        ``val_sample_weight``: the validation rows' weights, when given (all 0 is refused).
        ``complete``: ``y`` holds every training target, not a dataset's sampled batches (only
        then do targets found in a bounded output's range withdraw ``bounded-output-for-regression``).
        ``split_at``: the validation rows are the caller's rows from this one on (``validation_split``).
        ``shuffle``: ``fit``'s ``shuffle`` of numpy rows (``stateful-shuffled``; ``None``: not judged).
        """
        # A train_step or compute_loss of its own may use no targets and be given placeholders of
        # one value (see _targets_hint): constant-targets would refuse what that advice says to pass.
        skip = ("constant-targets",) if self._computes_own_loss() else ()
        found = checks.check_data(x, y, model=self.model, loss=self.loss, task=self.task, x_val=x_val, y_val=y_val, allow=self.allow,
                                  sample_weight=sample_weight, batch_size=batch_size, evaluation=evaluation, feature_names=feature_names,
                                  val_sample_weight=val_sample_weight, skip=skip, split_at=split_at,
                                  shuffle=shuffle)
        if not evaluation:  # the diagnosis's advice reads them (the inputs scaled, a leak found)
            self.data_check_codes = tuple(f.code for f in found)
            # unscaled-inputs / unscaled-targets name the far rows (outlier_rows) only when those
            # rows alone make the data look unscaled: their advice is to check them, not to standardise.
            self.data_check_far = tuple(f.code for f in found if "outlier_rows" in f.evidence)
            if complete and y is not None and "labels-out-of-range" not in self.data_check_codes:
                # Every target lies in the bounded output's range (labels-out-of-range looked at
                # each one): the model-time warning that they might not no longer holds.
                self.findings[:] = [f for f in self.findings if f.code != "bounded-output-for-regression"]
        return found

    def log_text(self, name: str, markdown: str) -> None:
        """Adds a text to the run's TensorBoard events (written when training starts)."""
        check_text(name, markdown)  # here: a bad one failed the next fit, once its writer opened
        self._pending_texts[name] = markdown
        if self.writer is not None:
            self.writer.text("train", 0, name, markdown)

    # -- fit --------------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """Steps trained so far (the global step), read without a device sync during ``fit``.

        The trainer counts the steps each compiled call ran; reading the ``global_step``
        variable instead would wait for the device at every call.
        """
        if self._step is None:
            self._step = int(self.global_step.numpy())
        return self._step

    @needs_init
    @holds_run_lock
    @reraises_source_errors
    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        epochs: int,
        batch_size: int = 32,
        validation_data: Any = None,
        validation_split: float = 0.0,
        shuffle: Shuffle = True,
        sample_weight: Any = None,
        callbacks: Iterable[Callback | keras.callbacks.Callback] | None = (),
        verbose: int | str = 1,
        initial_epoch: int = 0,
        check_data: bool = True,
        resume: bool = False,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        class_weight: Mapping[int, float] | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int = 1,
    ) -> History:
        """Trains for ``epochs`` epochs and returns the History of exact epoch values.

        Args:
            x: Inputs as a numpy array, or a batched ``tf.data.Dataset`` of ``(x, y[, w])``.
            y: Targets (numpy); ``None`` when ``x`` is a dataset.
            epochs: Index of the last epoch (exclusive), as in Keras.
            batch_size: Rows per batch for numpy inputs.
            validation_data: ``(x_val, y_val)`` or a batched dataset, evaluated after each epoch.
            validation_split: Fraction of the numpy rows (taken from the end, before shuffling)
                held out for validation.
            shuffle: Reshuffle numpy rows every epoch (seeded by seed and epoch), or a
                ``keras.utils.PyDataset``'s batch order (as ``model.fit`` does); a
                ``tf.data.Dataset`` keeps its own order. ``"batch"``, as with ``model.fit``:
                numpy rows are batched in their order, every epoch alike, and only each batch's
                rows are shuffled among themselves (a PyDataset's batch order is shuffled).
            sample_weight: Optional per-row weights for numpy inputs.
            callbacks: :class:`~trainkit.callbacks.Callback` instances, and Keras callbacks that
                work at epochs (``ReduceLROnPlateau``, ``ModelCheckpoint``, ``CSVLogger``...;
                see :mod:`trainkit.callbacks.keras_callbacks`). ``None`` is none, as in ``model.fit``.
            verbose: 1 (or ``"auto"``) shows a progress bar and a line per epoch (and, in a
                terminal, a spinner while the data is read and checked), 2 the lines only, 0
                nothing. With 1 or 2 the checks' warnings not shown yet are printed
                before the first epoch (see :meth:`_show_check_warnings`).
            initial_epoch: Epoch to start from (when resuming).
            check_data: Run the data checks first (skip only when already run on this data).
            resume: Continue from the newest checkpoint under ``<logdir>/checkpoints``: weights,
                optimizer, RNG and metric state, History, position within the epoch.
            steps_per_epoch: Batches an epoch takes from a dataset, each epoch going on where
                the last stopped (needed for one that repeats forever; a finite one starts
                again once it ends, its last epoch of a pass short; a PyDataset's
                ``on_epoch_begin()``/``on_epoch_end()`` still called each epoch, as
                ``model.fit`` calls them); ``None``: all of it.
            validation_steps: Batches each validation takes from the start of a validation
                dataset; ``None``: all of it.
            class_weight: Class id -> weight of its training rows (times any
                ``sample_weight``), as with ``model.fit`` (see :mod:`trainkit.class_weights`).
            validation_batch_size: Rows per batch of numpy validation data (default
                ``batch_size``).
            validation_freq: Only 1: every epoch is validated (the diagnosis and early stopping
                read each epoch's validation loss). Taken for Keras code; another value is refused.

        Raises:
            TrainingInterrupted: after SIGINT/SIGTERM, once a checkpoint is written and the
                TensorBoard events are flushed (``err.exit_code`` is 130 or 143).
            RunDirError: ``run-dir-in-use`` when another process trains into ``logdir`` (see
                :mod:`trainkit.run_lock`).

        Returns:
            The :class:`History`: ``history["loss"]``, ``history["val_loss"]`` and each metric.
        """
        check_batch_size(batch_size)
        check_epochs(epochs, initial_epoch)
        check_fit_options(validation_split, callbacks, shuffle)
        verbose = verbosity(verbose)
        if validation_batch_size is not None:
            check_batch_size(validation_batch_size, "validation_batch_size")
        # Python ints from here: they reach the run's JSON (the diagnosis context, checkpoints), which
        # refused batch_size=np.int64(32) with a TypeError once training began.
        epochs, batch_size, initial_epoch = int(epochs), int(batch_size), int(initial_epoch)
        validation_batch_size = int(validation_batch_size or batch_size)
        if isinstance(validation_freq, bool) or validation_freq != 1:
            raise ArgumentError("bad-argument", f"validation_freq={validation_freq!r}: trainkit validates after every epoch (the diagnosis and early "
                                                "stopping read each epoch's validation loss). Leave it at 1, or pass no validation data and call "
                                                "evaluate() when you want it.")
        self._refuse_changed_layers()
        self._adopt_replaced_optimizer()
        self._follow_logdir_change()
        if not resume:
            from trainkit.diagnosis.rules import DIAGNOSIS_CODES

            # The diagnosis of a new fit starts afresh, as its History does: an earlier fit's
            # verdicts (a dead-relu since fixed) stayed in the findings and read as this fit's.
            self.findings[:] = [f for f in self.findings if f.code not in DIAGNOSIS_CODES]
        console = [ConsoleLogger(progress_bar=verbose == 1)] if verbose else []
        with console[0].preparing() if console else contextlib.nullcontext():
            train, validation = self._sources(x, y, sample_weight, validation_data, validation_split, steps_per_epoch, validation_steps, class_weight, shuffle, batch_size)
            if check_data:  # else the codes of the checks already run on this data stand (a recipe run's)
                self._check_sources(train, validation, batch_size, shuffle)
            self._refuse_placeholder_validation(train, validation)
            self._ensure_built(train, resume, batch_size)
            if resume:  # before its checkpoint is read, which holds the variables of every metric
                self._build_metrics(train.batch_spec())
            if validation is not None:  # its targets by name too: a misspelt key was dropped without a word
                self._check_targets_cover_outputs(unpack_batch(validation.batch_spec())[1], "validation_data's y")
        self._follow_trainable_changes()
        self.epochs = epochs
        self.steps_per_epoch = _epoch_steps(train, batch_size)  # this fit's, for on_train_begin (Keras's params["steps"])
        self.stop_training = False
        self.stop_reason = None
        self.nan_weights = None
        # Keras's own, run at epochs; lists inside the list flattened, as model.fit flattens them
        # (callbacks=[my_callbacks, early_stopping] was refused as "must be ... instances, got list").
        callbacks = [as_trainkit_callback(cb, self.optimizer) for cb in flat_callbacks(callbacks or ())]
        start_batch = 0
        self._resumed_diagnosis = None
        self._final_checkpoint = None
        self._hparams_changed = False
        self.resumed_epochs = self.resumed_batches = 0
        # A notebook's new Trainer for a model an earlier cell trained starts from trained weights:
        # its first losses are no fresh model's (see Context.trained_before). Asked at each fit: the
        # model may have been trained since this trainer was made.
        self._model_trained_before = trained_before(self.model)
        if resume:  # the History of the run so far comes back with the checkpoint
            initial_epoch, start_batch, ended = self._resume(callbacks, epochs)
            self._step = None  # global_step came back with the checkpoint (a finished run returns below)
            self.resumed_epochs, self.resumed_batches = len(self.history.epoch), start_batch
            self._share_history(verbose)
            if ended:
                # Its History and findings are back; its event files are complete as they are
                # (cutting its end-of-run events to write them again could lose them to a kill).
                self._finalize_weights(callbacks)  # the model the finished run ended with
                return self.history
        else:  # like model.fit: each call returns a History of its own epochs
            self._refuse_another_run()
            self.history = History()
            self._share_history(verbose)
            if self._checkpoint is not None:
                # This fit's diagnosis starts with no epochs: its records start the journal again
                # (another fit of this trainer left its own there).
                self._checkpoint.journal.continue_from(None)
        # With steps_per_epoch a dataset's iterator goes on across epochs: a new fit (whatever its
        # initial_epoch) starts it at the beginning, a resumed fit where the interrupted one had it
        # (the epoch that fit started at comes back with the checkpoint).
        if not resume:
            self._epochs_skipped = initial_epoch
        self._step = None  # a restored checkpoint or a custom loop may have moved global_step
        if console:
            self._show_check_warnings(console[0].console)
        diagnosis = self._diagnosis_callbacks(train, validation, callbacks, console, initial_epoch, batch_size, shuffle,
                                              isinstance(x, keras.utils.PyDataset))
        callback_list = CallbackList([*console, *diagnosis, *callbacks], self)
        began = False
        try:
            # Inside the try: a failure here (a train_step that returns no dict, say) still
            # closes the TensorBoard writer opened first.
            # A resumed run plans the whole run, as the run it continues did: the same XLA choice.
            planned_epochs = epochs if resume else epochs - initial_epoch
            self._prepare_fit(train, validation, callbacks, batch_size, validation_batch_size, planned_epochs, resume)
            with stop_on_signals() as stop_request, background.training():
                began = True
                record_training(self.model, self._model_trained_before)
                callback_list.on_train_begin()
                # A resumed run that a callback ended (early stopping) is finished, like one that
                # trained all its epochs: nothing is left to train.
                last_epoch = initial_epoch if self.stop_reason in FINISHED_STOP_REASONS else epochs
                self._fit_first_epoch = initial_epoch
                for epoch in range(initial_epoch, last_epoch):
                    first_batch, start_batch = start_batch, 0
                    logs = self._run_epoch(epoch, train, batch_size, shuffle, callback_list, first_batch, stop_request, callbacks)
                    if self.stop_reason == "nan-loss":
                        break  # the epoch was abandoned at the bad step: no epoch values to log
                    if validation is not None:
                        logs.update({f"val_{k}": v for k, v in self._evaluate(validation, validation_batch_size).items()})
                    self._end_epoch(epoch, logs, epochs, callback_list, callbacks)
                    if self.stop_training:
                        break
                if not self.stop_training:
                    # A signal in the last epoch's validation or on_epoch_end, after its last call:
                    # in an earlier epoch it stops the run before the next one begins, here it was
                    # dropped, and the run ended "completed" (exit 0) after the user's Ctrl-C.
                    self._batches_done = 0
                    self._stop_if_requested(stop_request, last_epoch, callbacks)
        except BaseException as err:
            if isinstance(train, DatasetSource):
                train.release()  # its read-ahead threads outlived the fit (see DatasetSource.release)
            if isinstance(err, KeyboardInterrupt) and self.stop_reason is None:
                # Raised as such, not through the stop request: a second Ctrl-C, a callback's
                # KeyboardInterrupt in on_train_begin (one in an epoch's hooks is interrupted with
                # a checkpoint, see _interrupt). Its run was recorded "failed" (on_train_end's stop_reason, the
                # HParams dashboard's status) where the CLI said "interrupted" with exit 130.
                self.stop_reason = "interrupted"
            # The error in flight (an interruption, a NaN stop, a user error) is what the caller
            # must see: a failure while ending the run is only reported beside it.
            self._end_training(callback_list, began, in_flight=err)
            raise
        if isinstance(train, DatasetSource):
            train.release()
        self._finalize_weights(callbacks)
        # A stop signal now arrives after the last epoch: the run is complete, and its ending (the
        # end-of-run diagnosis, the final checkpoint's record, the events) takes a moment more.
        # SIGTERM here used to kill the process without its report.
        with stop_on_signals():
            self._end_training(callback_list, began)
        return self.history

    def _show_check_warnings(self, console: Any) -> None:
        """Prints the checks' warnings not shown yet: the model checks' once, each fit's data checks'.

        The live diagnosis prints its own warnings; these were only in :attr:`findings`, so a
        notebook's fit printed "Fix what unscaled-inputs says first" about a finding it never
        showed. (A recipe run reports them in its summary.)
        """
        for finding in self._unshown_checks:
            if not any(finding is kept for kept in self.findings):
                continue  # withdrawn since (bounded-output-for-regression, by targets in range)
            console.print(f"check: {finding.format()}", markup=False, highlight=False, soft_wrap=True)
        self._unshown_checks = []

    def _share_history(self, verbose: int) -> None:
        """Gives this fit's History Keras's ``params`` and ``model``, and the model its ``history``,
        as ``model.fit`` does (notebook code plots ``model.history.history["loss"]``: it was
        ``None``, or the History of an earlier fit that ran a Keras callback)."""
        self.history.params = {"verbose": verbose, "epochs": self.epochs, "steps": self.steps_per_epoch}
        self.history.model = self.model
        self.model.history = self.history

    def _prepare_fit(self, train: Any, validation: Any, callbacks: Sequence[Callback], batch_size: int, validation_batch_size: int,
                     planned_epochs: int, resume: bool) -> None:
        """Everything between the data and the first epoch: the writer, the compiled loops (traced),
        the checks of what they return, the probe batch, the layout and the checkpoint manager."""
        # A resumed run's root holds its HParams record, unless its epochs changed.
        self._open_writer(hparams=not resume or self._hparams_changed, resumed=resume)
        self._build_train_loop(train, *fit_plan(train, batch_size, planned_epochs))
        if validation is not None:  # its names too, before a callback checks its monitor
            self._build_eval_loop(validation, validation_batch_size)
        self._check_step_returns_loss()
        self._check_metric_results()
        self._note_missing_statistics()
        logged = self.epoch_log_names(validation is not None)
        for callback in callbacks:
            if not hasattr(callback, "check_monitor"):
                # It may add values to the epoch logs (an F1 score) for the callbacks after it to
                # monitor, as model.fit allows: theirs are checked at the epoch's end instead.
                break
            callback.check_monitor(logged)  # before any epoch: a typo costs none
            if getattr(callback, "may_add_logs", False):  # a Keras callback of the user's: the same
                break
        self._histograms.batch = probe_batch(train, batch_size) if self._wants_histograms() else None
        # The diagnosis measures how far back its recurrent layers' gradients reach on it.
        self._time_gradients.batch = probe_batch(train, batch_size) if self._time_gradients.layers and self._live_diagnosis is not None else None
        # ... and the activity penalties in the first losses (trainkit.activity_penalty).
        self._activity_penalty.batch = start_batch(train, batch_size) if self._activity_penalty.layers and self._live_diagnosis is not None else None
        # The checks are done: a training dataset's first batch may still size its stacks.
        for source, keep in ((train, 1), (validation, 0)):
            if isinstance(source, DatasetSource):
                source.release_sample(keep)
        if not resume:  # a resumed run's event files hold it already
            self._write_layout()
        self._checkpoint = self._make_checkpoint()
        self._last_checkpoint_time = time.monotonic()
        # What the step was traced to train, read after the trace (a train_step of its own may set
        # trainable as it traces): _refuse_trainable_change_in_fit compares each epoch with it.
        self._fit_variables = tuple(id(v) for v in self.model.trainable_variables)

    def _end_epoch(self, epoch: int, logs: dict[str, float], epochs: int, callback_list: CallbackList, callbacks: Sequence[Callback]) -> None:
        """An epoch's values to the callbacks, the History and TensorBoard; its checkpoint when due."""
        if self.histograms_every == "epoch":
            self._write_histograms(self.step)
        # Before the callbacks: one that lowers the rate at the epoch's end (ReduceLROnPlateau) put
        # the next epoch's rate on this epoch's chart.
        learning_rate = self._last_update_learning_rate() if self.writer is not None else None
        interrupted: KeyboardInterrupt | None = None
        try:
            callback_list.on_epoch_end(epoch, logs)
        except KeyboardInterrupt as err:
            if not _raised_by_callback(err):
                raise
            interrupted = err  # the epoch ends first, as with Ctrl-C during on_epoch_end
        # After the callbacks, as Keras's History is the last callback: a value one adds to the
        # logs (a scheduler's learning_rate) is kept and logged too.
        self.history.append(epoch, logs)
        self._write_epoch(epoch, logs, learning_rate)
        final = epoch + 1 == epochs or self.stop_training
        if self.stop_training:
            # Before the checkpoint: its record says the run ended here, so resuming it trains
            # nothing more (it trained an epoch more on every resume).
            self.stop_reason = self.stop_reason or "stopped"
        failure = self._train_loop.xla_failure if self._train_loop is not None else None
        if failure is not None and not any(f.code == XLA_FALLBACK for f in self.findings):
            self.findings.append(xla_fallback_note(failure))
        if self._checkpoint_due(epoch) or final:
            saved = self._save_checkpoint(epoch + 1, 0, callbacks)
            self._final_checkpoint = saved if final else None
        if interrupted is not None:
            if self.stop_training:
                raise interrupted  # a callback ended the run here, and its final checkpoint says so
            # The next epoch's start, as a signal in on_epoch_end stops the run there: every
            # callback has had this epoch's end, and the resume goes on with the next.
            self._batches_done = 0
            self._interrupt(epoch + 1, callbacks, CALLBACK_INTERRUPT, 130, cause=interrupted)

    def _finalize_weights(self, callbacks: Sequence[Callback]) -> None:
        """The weights a finished run leaves in the model, in ``model.fit``'s order: an EMA
        optimizer's averages, then early stopping's best epoch over them.

        After the final checkpoint, which keeps the raw weights a longer run goes on from (a
        resume stays exactly the uninterrupted run). No averages after a NaN stop: they hold NaN;
        but the best epoch's weights, as Keras's callback puts them back after ``TerminateOnNaN``.
        """
        nan_stop = self.stop_reason == "nan-loss"
        if getattr(self.optimizer, "use_ema", False) and not nan_stop:
            with distribute.scope(self.strategy):
                self.optimizer.finalize_variable_values(self.model.trainable_variables)
        # A NaN stop leaves the weights of a step inside the abandoned epoch, not those at the end of
        # the History's last one, even when that was the best: they were left diverged (loss NaN).
        last_epoch = self.history.epoch[-1] if self.history.epoch and not nan_stop else None
        for callback in callbacks:
            if isinstance(callback, EarlyStopping):
                callback.restore_at_end(self._restorable_weights(), last_epoch)

    def _end_training(self, callbacks: CallbackList, began: bool, *, in_flight: BaseException | None = None) -> None:
        """``on_train_end`` (if training began), then closes the TensorBoard writer in any case.

        With an exception already in flight (``in_flight``), a failure here is printed to stderr
        instead of replacing it, unless it is that same failure again.
        """
        try:
            try:
                if began:
                    # "failed": an error ended the run (an interruption has its own reason).
                    reason = self.stop_reason or ("failed" if in_flight is not None else None)
                    callbacks.on_train_end({"epochs_run": len(self.history.epoch), "stop_reason": reason})
                    # The end record before the checkpoint is marked ended: a kill in between left
                    # a resume nothing to do, and the finished run without one for good.
                    self._write_run_end(reason)
                    if in_flight is None:
                        self._complete_final_checkpoint()
            finally:
                for callback in callbacks.callbacks:
                    if isinstance(callback, KerasCallback):  # its on_train_end may not have run
                        callback.give_back()
                self._close_writer()
        except Exception as err:
            if in_flight is None:
                raise
            if type(err) is type(in_flight) and str(err) == str(in_flight):
                # A full disk fails the writer's close as it failed the write in flight: the
                # error was printed twice, once as "a second error".
                return
            if is_storage_failure(in_flight) and is_storage_failure(err):
                # A full disk fails the end record as it failed the write in flight (a file-size
                # limit lets that small file through): the error in flight says it all already.
                return
            print(f"trainkit: a second error while ending a run that had already failed: {type(err).__name__}: {err}", file=sys.stderr)

    # -- live diagnosis ---------------------------------------------------------------------------
    def _diagnosis_callbacks(self, train: Any, validation: Any, callbacks: list[Callback], console: list[ConsoleLogger], initial_epoch: int, batch_size: int,
                             shuffle: Shuffle = True, pydataset: bool = False) -> list[Callback]:
        """The live diagnosis callback (``diagnose``), told what only ``fit`` knows (``pydataset``: ``train`` reads a
        PyDataset's batches, which ``shuffle`` orders)."""
        self._live_diagnosis = None
        if not self.diagnose:
            return []
        from trainkit.diagnosis.callback import DiagnosisCallback
        from trainkit.diagnosis.masked_positions import masks_inputs
        from trainkit.diagnosis.run_context import (
            batches_in_order,
            first_batch_rows,
            held_rows,
            one_pass_epochs,
            sample_stands_for_rows,
            source_inputs,
            source_targets_and_weights,
            source_targets_read_on,
        )

        callback = self.diagnose if isinstance(self.diagnose, DiagnosisCallback) else DiagnosisCallback()
        self._live_diagnosis = callback
        in_memory = isinstance(train, ArraySource)
        targets, weights = source_targets_and_weights(train)
        # In-memory validation rows only: sampling a validation dataset would read its pipeline
        # once more before training, for a chance level the training one approximates.
        val_targets, val_weights = source_targets_and_weights(validation) if isinstance(validation, ArraySource) else (None, None)
        # A regression's linear fit reads the inputs; a masked sequence model's chance level, their mask.
        wants_inputs = self.task == "regression" or masks_inputs(self.model)
        callback.prepare(targets=targets, sample_weight=weights, callbacks=callbacks, console=console[0].console if console else None,
                         initial_epoch=initial_epoch, batch_size=batch_size if in_memory else None,
                         train_rows=train.rows if in_memory else None, has_validation=validation is not None,
                         one_pass_epochs=one_pass_epochs(train), batches_in_order=batches_in_order(train, shuffle, pydataset),
                         validation_targets=val_targets, validation_sample_weight=val_weights,
                         batch_rows=None if in_memory else first_batch_rows(train),
                         inputs=source_inputs(train) if wants_inputs else None,
                         validation_inputs=source_inputs(validation) if wants_inputs and isinstance(validation, ArraySource) else None,
                         # A dataset that never shuffles: its first batches are its first rows, no sample of them.
                         read_on=None if in_memory or pydataset else source_targets_read_on(train),
                         # A regression's linear fit is judged on a dataset's sampled rows too: its
                         # first training batches where they stand for its rows, the validation
                         # dataset's first batches the data checks hold (read from no pipeline).
                         inputs_stand_for_rows=not in_memory and wants_inputs and sample_stands_for_rows(train, pydataset),
                         validation_held=held_rows(validation) if wants_inputs and isinstance(validation, DatasetSource) else None)
        resumed, self._resumed_diagnosis = self._resumed_diagnosis, None
        if resumed is not None:
            callback.set_state(resumed)
        return [callback]

    def _wait_for_diagnosis(self) -> None:
        """Lets the live diagnosis (possibly on its worker thread) catch up with training."""
        if self._live_diagnosis is not None:
            self._live_diagnosis.wait()

    # -- the compiled loops -----------------------------------------------------------------------
    def _traced_test_step(self, batch: Any) -> dict[str, tf.Tensor]:
        self._tracked["eval"] = False  # until the step feeds the evaluation loss tracker
        self._traced.pop(threading.get_ident(), None)  # a trace that failed, or a step of its own, may have left values
        # The metrics property and update_metrics feed the evaluation trackers while it traces.
        tracing = self.__dict__.setdefault("_eval_tracing_threads", set())
        tracing.add(threading.get_ident())
        try:
            with results_noted(self._held_metrics()) as produced:
                logs = _with_logged_scalars(self.test_step(batch), self.pop_logged_scalars())
        finally:
            tracing.discard(threading.get_ident())
        self._running["eval"] = running_values(logs, produced)
        return logs

    def _computes_own_loss(self) -> bool:
        """Whether a subclass's own ``train_step`` or ``compute_loss`` computes the loss, which may
        read no targets (a GAN, a VAE, a model trained on its ``add_loss`` losses alone)."""
        return type(self).train_step is not Trainer.train_step or type(self).compute_loss is not Trainer.compute_loss

    def _targets_hint(self, dataset: bool = False) -> str:
        """A step of its own may use no targets, as the Keras guide's GAN and VAE fit on images
        alone; trainkit's data checks and diagnosis read targets, so it takes placeholders."""
        if not self._computes_own_loss():
            return ""
        return (f"A train_step or compute_loss of its own that uses no targets (a GAN, a VAE, a model whose loss comes from add_loss) "
                f"takes placeholders shaped like the model's output: "
                f"{_placeholder_targets(self.model, dataset)}, with task='regression' (its data checks pass placeholders of one value) "
                "and diagnose=False (the diagnosis would judge a loss against them).")

    def _resolve_jit(self, planned_steps: int | None = None, batch_rows: int = 32) -> bool:
        if self.jit_compile != "auto":
            return bool(self.jit_compile)
        return choose_jit_compile(self.model, planned_steps, batch_rows)

    def _counted_train_step(self, batch: Any) -> dict[str, tf.Tensor]:
        self._tracked["train"] = False  # until the step feeds the loss tracker (update_metrics)
        self._default_loss_ran = False  # until an override calls super().compute_loss
        self._traced.pop(threading.get_ident(), None)  # a trace that failed, or a step of its own, may have left values
        # Under a strategy, the values each replica's step starts from (see average_replica_states).
        states = distribute.replica_states(self.model) if distribute.in_replica() else []
        before = [tf.identity(tf.convert_to_tensor(v)) for v in states]
        with results_noted(self._held_metrics()) as produced, unknown_variables_explained():
            logs = _with_logged_scalars(self.train_step(batch), self.pop_logged_scalars())
        if states:
            distribute.average_replica_states(states, before, tf.cast(tf.shape(tf.nest.flatten(batch)[0])[0], tf.float32))
        self._running["train"] = running_values(logs, produced)
        if type(self).compute_loss is not Trainer.compute_loss:
            # A train_step of its own that computes the loss without compute_loss is taken to add
            # the penalties itself, as the default does.
            self._loss_holds_penalties = self._default_loss_ran
        self.global_step.assign_add(1)
        return logs

    def _held_metrics(self) -> list[keras.metrics.Metric]:
        """Metrics a subclass keeps as attributes (the Keras guide's ``self.loss_tracker``), and
        the trainer's own: a step that updates ``self.metrics`` itself, without
        :meth:`update_metrics`, and returns their ``result()`` returns running values too."""
        return held_metrics(self)

    def _build_train_loop(self, train: Any, planned_steps: int | None = None, batch_rows: int = 32) -> None:
        """Builds the compiled training loop at the trainer's first fit; ``auto`` weighs XLA's
        compile time against that fit's ``planned_steps`` (see :func:`choose_jit_compile`), and
        a later fit long enough to repay it builds the loop again with XLA (a short trial fit,
        then the real one). A loop does not go back from XLA."""
        if (self.statistics or self.histograms_every is not None) and self._probe is None:
            self._probe = probes.build_probe(self.model)  # eagerly here, never while a step traces
        loop = self._train_loop
        if loop is not None and loop.names is None:
            # Its first trace never finished (Ctrl-C while a notebook's first fit traced): kept, it
            # made every later fit fail ("train_step returned an empty dict", an AssertionError).
            loop = self._train_loop = None
        if (loop is not None and self.jit_compile == "auto" and self.strategy is None and not loop.jit_compile and loop.xla_failure is None
                and self._resolve_jit(planned_steps, batch_rows)):
            self._train_loop = None
        if self._train_loop is None:
            self._step_xla = self._resolve_jit(planned_steps, batch_rows)
            if self.strategy is not None:
                # XLA stays off under a strategy: replicas run the plain step in strategy.run.
                self._step_xla = False
                self._train_loop = CompiledLoop(self._counted_train_step, stop_on_nonfinite=self.on_nan == "stop", strategy=self.strategy)
                self._train_loop.discover_distributed_names(self._distributed_iterator(train, 32, None))
                return
            self._train_loop = CompiledLoop(self._counted_train_step, jit_compile=self._step_xla, stop_on_nonfinite=self.on_nan == "stop", xla_fallback=self.jit_compile == "auto")
            self._train_loop.discover_names(train.batch_spec(), **in_memory_batches(train, batch_rows))

    def _check_step_returns_loss(self) -> None:
        """Refuses a ``train_step`` whose dict has no ``"loss"`` (``bad-step-output``)."""
        check_step_returns_loss((self._train_loop.names if self._train_loop is not None else None) or ())

    def _note_missing_statistics(self) -> None:
        """An info finding when ``statistics=True`` yields fewer statistics than it promises."""
        names = (self._train_loop.names if self._train_loop is not None else None) or ()
        if not self.statistics or not names or any(f.code == STATISTICS_MISSING for f in self.findings):
            return
        finding = missing_statistics(names, self._probe)
        if finding is not None:
            self.findings.append(finding)

    # -- one epoch --------------------------------------------------------------------------------
    def _run_epoch(
        self,
        epoch: int,
        train: Any,
        batch_size: int,
        shuffle: Shuffle,
        callbacks: CallbackList,
        start_batch: int = 0,
        stop_request: StopRequest | None = None,
        user_callbacks: Sequence[Callback] = (),
    ) -> dict[str, float]:
        if start_batch == 0:  # a resumed epoch continues with its restored running means
            self._reset_metrics()
        self._batches_done = start_batch
        # The row-weighted sums of the values whose epoch means come from the steps (log_scalar's,
        # a step's own loss): [sum of value * rows, rows]. A resumed epoch goes on from the sums its
        # checkpoint recorded, so its means cover the steps before the interruption too (set before
        # any checkpoint of this epoch: one written before its first call records them).
        resumed, self._resumed_sums = self._resumed_sums, None
        self._epoch_sums = resumed if start_batch and resumed is not None else {}
        # A signal that came between calls (in on_epoch_end, in validation) stops the run before
        # this epoch's first call: checked only after each call, it trained one call more.
        self._stop_if_requested(stop_request, epoch, user_callbacks)
        self.steps_per_epoch = _epoch_steps(train, batch_size)
        try:
            callbacks.on_epoch_begin(epoch)
        except KeyboardInterrupt as err:
            if not _raised_by_callback(err):
                raise
            self._interrupt(epoch, user_callbacks, CALLBACK_INTERRUPT, 130, cause=err)
        self._refuse_trainable_change_in_fit(epoch)
        if isinstance(train, DatasetSource):
            train.begin_epoch()  # a PyDataset's on_epoch_begin(), where its passes span epochs
        if self.strategy is not None:
            calls = self._distributed_calls(train, batch_size, shuffle, epoch, start_batch)
        elif isinstance(train, ArraySource):
            calls = self._in_memory_calls(train, batch_size, shuffle, epoch, start_batch)
        else:
            calls = self._streaming_calls(train, epoch - self._epochs_skipped, start_batch)
        last: StepOutputs | None = None
        last_step = self.step
        call_began = time.time()  # the next call runs when the loop asks for its outputs
        # Closed however the epoch ends: an exception (Ctrl-C's TrainingInterrupted, a callback's
        # error) keeps this frame in its traceback, and with it the epoch's dataset iterator, whose
        # PyDataset read-ahead threads and queued batches lived on while the exception was kept (a
        # notebook keeps the last one).
        try:
            for outputs in calls:
                call_ended = time.time()
                if outputs.steps == 0:
                    continue
                first_step, last_step = last_step, last_step + outputs.steps
                self._step = last_step
                nonfinite = self.on_nan == "stop" and "loss" in outputs.names and not np.isfinite(outputs.values[-1, outputs.names.index("loss")])
                if self.writer is not None:
                    # The step that stops the run is written whatever scalars_every: without it
                    # TensorBoard and `trainkit diagnose` showed no non-finite loss at all.
                    self.writer.step_scalars(first_step, outputs.names, outputs.values, (call_began, call_ended), keep_last=nonfinite)
                if self.step_table_steps != 0:
                    self._step_table.keep(first_step, outputs, self.step_table_steps)
                # A callback's KeyboardInterrupt stops the run as Ctrl-C does, once this call's
                # steps are counted: the checkpoint holds its steps (as the weights do), so a
                # resume does not train them again.
                interrupted: KeyboardInterrupt | None = None
                try:
                    callbacks.on_execution_end(first_step, outputs)
                except KeyboardInterrupt as err:
                    if not _raised_by_callback(err):
                        raise
                    interrupted = err
                # Statistics are per-step signals (in TensorBoard and the step table), not epoch
                # metrics: only user scalars (log_scalar) get an epoch mean in the History.
                for column, name in user_scalar_columns(outputs.names, untracked_loss=self._tracked.get("train") is False):
                    add_row_sums(self._epoch_sums.setdefault(name, [0.0, 0.0]), outputs.values[:, column], outputs.batch_sizes)
                every = self.histograms_every
                if isinstance(every, int) and last_step // every > first_step // every:
                    self._write_histograms(last_step)
                last = outputs
                self._batches_done += outputs.steps
                if nonfinite:
                    self._stop_on_nonfinite_loss(last_step - 1)
                    if interrupted is not None:
                        raise interrupted  # the run ended at the NaN: nothing to resume
                    break
                if interrupted is not None:
                    self._interrupt(epoch, user_callbacks, CALLBACK_INTERRUPT, 130, cause=interrupted)
                self._stop_if_requested(stop_request, epoch, user_callbacks)
                call_began = time.time()
        finally:
            close = getattr(calls, "close", None)
            if close is not None:
                close()
        if isinstance(train, DatasetSource):
            train.end_epoch()  # as model.fit: after the epoch's batches, before its validation
        if last is None and not start_batch:  # a dataset of unknown size that had no batch
            raise DataError("empty-data", f"Epoch {epoch + 1} had no batches: the training dataset is empty (check the filter or the take/skip that made it).")
        logs = self._metric_results()
        for name, (total, rows) in self._epoch_sums.items():
            logs[name] = total / rows if rows else math.nan
        logs.update(self._running_results("train"))
        if self.report_last_batch_loss and last is not None:
            logs["last_batch_loss"] = float(last.values[-1, last.names.index("loss")])
        return logs

    def _stop_if_requested(self, stop_request: StopRequest | None, epoch: int, user_callbacks: Sequence[Callback]) -> None:
        """Ends the run where it is (a checkpoint of it first) when a stop signal came."""
        if stop_request is None or not stop_request.requested:
            return
        self.stop_reason = "interrupted"
        self._save_checkpoint(epoch, self._batches_done, user_callbacks)
        name = stop_request.signal.name if stop_request.signal else "a signal"
        self._interrupt(epoch, user_callbacks, name, stop_request.exit_code)

    def _interrupt(self, epoch: int, user_callbacks: Sequence[Callback], by: str, exit_code: int, cause: BaseException | None = None) -> None:
        """Ends the run where it is, ``self._batches_done`` batches into ``epoch``: a checkpoint
        of it first (with a logdir), then :class:`TrainingInterrupted` saying what stopped it."""
        self.stop_reason = "interrupted"
        self._save_checkpoint(epoch, self._batches_done, user_callbacks)
        saved = "a checkpoint was written" if self._checkpoint is not None else "no checkpoint was written (no logdir)"
        # Between epochs (a signal in on_epoch_end): the epoch that ended, not the next one, which
        # after the last epoch does not exist ("in epoch 4" of a 3-epoch fit).
        where = f"after epoch {epoch}" if epoch > 0 and self._batches_done == 0 else f"in epoch {epoch + 1}"
        raise TrainingInterrupted("interrupted", f"Training stopped by {by} {where}; {saved}.", exit_code=exit_code) from cause

    def _stop_on_nonfinite_loss(self, step: int) -> None:
        """Ends training right after ``step``, whose loss went non-finite, and records why."""
        self.stop_training = True
        self.stop_reason = "nan-loss"
        self._wait_for_diagnosis()
        if not any(f.code == "nan-loss" and f.step == step for f in self.findings):  # the diagnosis also names the layer
            # An earlier fit's NaN is replaced: it kept this fit's (at another step) from being recorded.
            self.findings[:] = [f for f in self.findings if f.code != "nan-loss"]
            self.findings.append(Finding(
                code="nan-loss",
                severity="error",
                message=f"The loss became NaN or infinite at step {step}; training stopped there.",
                advice="Lower the learning rate (e.g. 10x), standardise inputs and targets, or clip gradients (optimizer clipnorm: 1.0).",
                evidence={"step": step},
                step=step,
            ))
        self.nan_weights = "kept"
        if not all(np.isfinite(w).all() for w in self.model.get_weights()):
            # A custom train_step applied the non-finite update: fall back to the last checkpoint.
            checkpoint = self._make_checkpoint()
            restored = checkpoint.restore_latest() if checkpoint is not None else None
            if restored is not None:
                self._step = None  # global_step went back with the weights
            # Without a checkpoint to go back to: none kept (no logdir), or none written yet.
            kept = checkpoint is not None and self.checkpoint_every != 0
            self.nan_weights = "checkpoint" if restored is not None else "nonfinite-early" if kept else "nonfinite"

    # -- per-step statistics ----------------------------------------------------------------------

    def step_table(self) -> list[tuple[int, str, float]]:
        """The recorded per-step scalars (loss, statistics, logged scalars) as ``(step, name, value)``.

        Holds the most recent ``step_table_steps`` steps (at least; whole compiled calls are kept
        or dropped); for complete per-step records of long runs read the TensorBoard events, or
        consume :meth:`~trainkit.callbacks.Callback.on_execution_end`.
        """
        return self._step_table.rows()



#: What stopped a run whose callback raised ``KeyboardInterrupt`` (see :meth:`Trainer._interrupt`).
CALLBACK_INTERRUPT = "a KeyboardInterrupt raised in a callback"


def _raised_by_callback(err: KeyboardInterrupt) -> bool:
    """Whether ``err``, out of a callback hook, stops the run as Ctrl-C does (a checkpoint, then
    :class:`TrainingInterrupted`): not a second Ctrl-C, which exits at once, nor a stop already
    under way."""
    return not isinstance(err, SecondInterrupt | TrainingInterrupted)


def _epoch_steps(train: Any, batch_size: int) -> int | None:
    """The batches an epoch of ``train`` takes (``None``: a dataset of unknown size)."""
    return math.ceil(train.rows / batch_size) if isinstance(train, ArraySource) else train.batches


def _placeholder_targets(model: keras.Model, dataset: bool) -> str:
    """Placeholder targets for a step that uses none, as code: zeros shaped like each output.

    The data checks compare targets with the outputs, and the histograms and the default
    ``test_step`` give them to the loss: ``np.zeros(len(x))`` fitted a one-unit output only (a
    GAN's discriminator), and an autoencoder's or a VAE's 20 units refused it (shape-mismatch).
    """
    outputs = getattr(model, "outputs", None) or []  # a subclassed model's are unknown before its first call
    shapes = [tuple(output.shape[1:]) for output in outputs] or [None]

    def zeros(shape: tuple[int | None, ...] | None) -> str:
        if shape in ((), (1,)):
            return "tf.zeros(tf.shape(x)[:1])" if dataset else "np.zeros(len(x))"
        dims = "*OUTPUT_SHAPE" if shape is None or None in shape else ", ".join(map(str, shape))
        return f"tf.zeros((tf.shape(x)[0], {dims}))" if dataset else f"np.zeros((len(x), {dims}))"

    each = ", ".join(zeros(shape) for shape in shapes)
    targets = each if len(shapes) == 1 else f"({each})" if dataset else f"[{each}]"
    placeholder = f".map(lambda x: (x, {targets}))" if dataset else f"y={targets}"
    return placeholder + (" (OUTPUT_SHAPE: one row of the model's output)" if "OUTPUT_SHAPE" in placeholder else "")


def _with_logged_scalars(logs: Any, logged: Mapping[str, tf.Tensor]) -> Any:
    """A step's returned logs with the scalars it logged but did not return added.

    The default steps return ``pop_logged_scalars()``; a step of its own that calls
    :meth:`Trainer.log_scalar` (or a ``compute_loss`` that does) and returns ``{"loss": loss}``
    lost them in silence. A value the step returns under the same name is kept.
    """
    if not logged or not isinstance(logs, Mapping):
        return logs  # (no dict: the step's checks refuse it)
    return {**logs, **{name: value for name, value in logged.items() if name not in logs}}
