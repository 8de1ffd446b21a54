"""Checkpointing and resuming a :class:`~trainkit.trainer.Trainer`'s ``fit``.

When a run checkpoints (``checkpoint_every``, the end, an interruption), what a checkpoint's
progress record holds besides the variables (History, findings, callback and live-diagnosis state,
event file sizes, hyperparameters), and how ``fit(..., resume=True)`` puts all of it back. The
checkpoint files themselves (variables, records, the journal) are :mod:`trainkit.checkpoint`'s.

:class:`Resumable` is a mixin rather than an object of its own: a checkpoint records, and a resume
restores, most of the trainer's run state (its seed, History, findings, stop reason, the
optimizers a subclass holds as attributes).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from trainkit import checks
from trainkit.callbacks.base import Callback
from trainkit.checkpoint import (
    CHECKPOINT_SUBDIR,
    JOURNAL_MARK,
    JOURNAL_RECORDS,
    JournalRecords,
    TrainingCheckpoint,
    newest_record,
)
from trainkit.errors import ArgumentError, RecipeError, RunDirError
from trainkit.findings import Finding
from trainkit.history import History
from trainkit.running_metrics import named_attribute_items
from trainkit.runs import is_storage_error, storage_error_text
from trainkit.writers.tensorboard import (
    RunWriter,
    event_file_sizes,
    rewind_event_files,
    trained_event_file,
)

#: ``checkpoint_every="auto"``: the least time between two end-of-epoch checkpoints. A checkpoint
#: of a small model takes ~30 ms, longer than a 10k-row epoch of it, so saving every epoch would
#: more than double such runs; a crash still loses at most this long plus one epoch.
AUTO_CHECKPOINT_SECONDS = 30.0

#: Stop reasons (:attr:`Trainer.stop_reason`) of a run that ended before its last epoch and is
#: finished: resuming it trains nothing. An interrupted run is not; a NaN stop writes no checkpoint.
FINISHED_STOP_REASONS = ("stopped",)

#: What :meth:`Resumable._resume` reads from every progress record (a record without them is
#: skipped as damaged, for the next older checkpoint).
RESUME_RECORD_KEYS = ("batches_done", "seed", "history", "epochs")

# Hyperparameters a resume may change: more epochs is how a finished run is trained further.
RESUMABLE_HPARAMS = frozenset({"epochs"})


def _unkept_state(callbacks: Sequence[Callback], states: Sequence[Any]) -> ArgumentError | None:
    """The error to raise for the first callback whose :meth:`~trainkit.callbacks.Callback.get_state`
    JSON cannot keep, if one is why a checkpoint's record failed (looked for only then: a state
    can be large, early stopping's best weights).

    A numpy number in it (a best value kept as ``np.float32``) failed the run at its first
    checkpoint with json's bare "Object of type float32 is not JSON serializable".
    """
    for callback, state in zip(callbacks, states, strict=True):
        try:
            json.dumps(state, allow_nan=True)
        except (TypeError, ValueError) as err:
            return ArgumentError("bad-callback", f"{type(callback).__name__}.get_state() returned what a checkpoint cannot keep ({err}): return "
                                                 "JSON values only (dict, list, str, int, float, bool, None), float(x) for a numpy number.")
    return None


class Resumable:
    """Writes a run's checkpoints and resumes from the newest, mixed into the Trainer.

    Reads the trainer's settings (``logdir``, ``checkpoint_every``, ``keep_checkpoints``), its
    model, optimizers and trackers, and its run state, which a resume sets back.
    """

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    global_step: tf.Variable
    logdir: Path | None
    is_chief: bool
    seed: int
    hparams: dict[str, Any] | None
    checkpoint_every: int | str
    keep_checkpoints: int
    stop_reason: str | None
    history: History
    findings: list[Finding]
    writer: RunWriter | None
    _loss_tracker: keras.metrics.Mean
    _output_loss_trackers: list[keras.metrics.Mean]
    _metrics: list[keras.metrics.Metric]
    #: The loss and metric trackers of ``train`` / ``eval`` (:class:`~trainkit.epoch_metrics.EpochMetrics`).
    _split_metrics: Callable[[str], list[keras.metrics.Metric]]
    #: The checkpoint writer, made by the first :meth:`_make_checkpoint` with a logdir.
    _checkpoint: TrainingCheckpoint | None
    #: The optimizer whose variables ``_checkpoint`` saves (see :meth:`_make_checkpoint`).
    _checkpoint_optimizer: keras.optimizers.Optimizer | None
    #: The logdir ``_checkpoint`` writes into (see :meth:`_follow_logdir_change`).
    _checkpoint_logdir: Path | None
    #: The checkpoint written at the end of this fit's last epoch, and its record, which gets the
    #: findings of the end of the run once on_train_end made them.
    _final_checkpoint: tuple[Path, dict[str, Any]] | None
    _last_checkpoint_time: float
    #: The epoch a dataset's iterator started at (see ``fit``'s ``steps_per_epoch``).
    _epochs_skipped: int
    #: The running sums of the epoch's step-averaged values, and those a resumed epoch starts from.
    _epoch_sums: dict[str, list[float]]
    _resumed_sums: dict[str, list[float]] | None
    #: By split, the activity penalties' epoch-mean tracker (:class:`~trainkit.epoch_metrics.EpochMetrics`).
    _penalty_trackers: dict[str, keras.metrics.Mean]
    _live_diagnosis: Any
    #: The loss, optimizer and metrics the trainer was given (:func:`~trainkit.checks.setup_record`).
    _setup_record: dict[str, Any]
    #: The live diagnosis's checkpointed state, for a resumed fit.
    _resumed_diagnosis: dict[str, Any] | None

    def _make_checkpoint(self) -> TrainingCheckpoint | None:
        """The run's checkpoint writer (``<logdir>/checkpoints``), or ``None`` without a logdir."""
        if self.logdir is None:
            return None
        if self._checkpoint is None or self._checkpoint_optimizer is not self.optimizer:
            # Made again for an optimizer set between fits (trainer.optimizer = ...): the old
            # one's variables, saved on, left the new one's state out of every checkpoint (a
            # resume with it was refused, "holds 10 optimizer variables, this run has 6", or,
            # of the same kind, restored the old one's learning rate and moments).
            self._checkpoint_optimizer = self.optimizer
            self._checkpoint_logdir = self.logdir.resolve()  # the directory, however spelt
            # (A subclass's own metrics are in its own state: _own_state.)
            metric_variables = [v for m in (self._loss_tracker, *self._output_loss_trackers, *self._metrics) for v in m.variables]
            # Saving replicated variables runs collectives, so under a multi-worker strategy every
            # worker saves; the others into a scratch directory that nobody reads.
            if self.is_chief:
                directory = self.logdir / CHECKPOINT_SUBDIR
            else:
                directory = Path(tempfile.mkdtemp(prefix="trainkit-worker-checkpoints-"))
                # Gone with the trainer (or at exit): each worker process of a run left one behind.
                weakref.finalize(self, shutil.rmtree, directory, ignore_errors=True)
            self._checkpoint = TrainingCheckpoint(
                directory,
                model_variables=self.model.variables,
                optimizer_variables=[*self.optimizer.variables, *(v for opt in self._own_optimizers() for v in opt.variables)],
                metric_variables=metric_variables,
                global_step=self.global_step,
                max_to_keep=self.keep_checkpoints,
                own_variables=self._own_state(),
                required=RESUME_RECORD_KEYS,
            )
        return self._checkpoint

    def _follow_logdir_change(self) -> None:
        """Takes a ``trainer.logdir`` set between fits as a new run there, as a new Trainer's: the
        checkpoint writer of the old logdir is dropped (its second fit wrote ckpt-2 and the
        diagnosis journal into the old logdir, and only its events into the new one), and the
        refusals of a fresh trainer's fit apply there (``logdir-has-run``). A ``str`` set is
        taken as a ``Path``, as the argument is."""
        if self.logdir is not None and not isinstance(self.logdir, Path):
            self.logdir = Path(self.logdir)
        # The directory, not its spelling: the same run directory set again as an absolute path
        # (or a relative one) was "another run's checkpoints", its own run refused (logdir-has-run).
        if self._checkpoint is not None and (self.logdir is None or self.logdir.resolve() != self._checkpoint_logdir):
            self._checkpoint = self._checkpoint_optimizer = None

    def _own_state(self) -> dict[str, dict[str, Any]]:
        """Variables a subclass holds as attributes (or in a list, tuple or dict attribute) that
        the model, the optimizers and the trainer's own trackers leave out, by attribute path
        (``loss_tracker``, ``accumulated[0]``), each by its index among the attribute's variables.

        A GAN's ``self.seed_generator`` (its latent vectors), the guide's ``self.loss_tracker``, a
        gradient accumulator's ``tf.Variable`` buffers and counter, a generator kept beside the
        model: without them a resumed run drew other random numbers, or lost a running mean or
        half an accumulated gradient, and no longer matched the run it continues. Keyed by where
        they are held, not by their order: a resume with an attribute renamed cannot put one
        attribute's state into another's.

        Raises:
            ArgumentError: ``layer-not-built`` for a layer of its own not built yet.
        """
        covered = {id(v) for v in (*self.model.variables, self.global_step)}
        trackers = {id(m) for m in (*self._split_metrics("train"), *self._split_metrics("eval"))}
        found: dict[str, dict[str, Any]] = {}
        for path, item in named_attribute_items(self):
            variables = {}
            # By its index among all the item's variables: one the model holds leaves no gap.
            for index, variable in enumerate(_held_variables(item, trackers)):
                if id(variable) not in covered:
                    covered.add(id(variable))
                    variables[str(index)] = variable
            if variables:
                found[path] = variables
        return found

    def _restorable_weights(self) -> list[Any]:
        """The weights early stopping keeps and puts back: the model's (in ``model.weights``
        order), then those of the layers and models a subclass holds beside it (a GAN's
        ``self.generator`` beside its discriminator), which Keras's GAN holds inside the model.

        The model's alone put back the best epoch's discriminator beside the last epoch's
        generator, a pair that never trained together.
        """
        variables = list(self.model.weights)
        seen = {id(v) for v in variables}
        for _, item in named_attribute_items(self):
            if isinstance(item, keras.layers.Layer) and item is not self.model:
                for variable in item.weights:
                    if id(variable) not in seen:
                        seen.add(id(variable))
                        variables.append(variable)
        return variables

    def _own_optimizers(self) -> list[keras.optimizers.Optimizer]:
        """Optimizers a subclass holds besides :attr:`optimizer` (a GAN's second), by attribute name.

        Checkpoints hold their state too, so each must be built before a resume reads one (a
        fit's first trace builds it otherwise, before the first checkpoint is written).

        Raises:
            ArgumentError: ``optimizer-not-built`` for one that is not built yet.
        """
        own = [(name, value) for name, value in sorted(vars(self).items())
               if isinstance(value, keras.optimizers.Optimizer) and value is not self.optimizer]
        for name, optimizer in own:
            if not optimizer.built:
                raise ArgumentError("optimizer-not-built", f"self.{name} is an optimizer of its own, not built before the checkpoint is read (a resume "
                                                           f"would reset its state). Build it in __init__ with the variables it updates: "
                                                           f"self.{name}.build(generator.trainable_variables).")
        return [optimizer for _, optimizer in own]

    def _check_same_setup(self, record: Mapping[str, Any] | None, restored: bool = False) -> None:
        """Refuses to resume a run with another loss, optimizer class, learning rate, optimizer setting or metrics
        than its checkpoint recorded (:func:`~trainkit.checks.setup_record`); a checkpoint written
        before they were recorded resumes unchecked. Once the checkpoint is ``restored``, a rate
        given that is the one the run had reached (a callback lowered it, and the same optimizer
        was given again) is no other rate: the run's first one stays recorded.

        Raises:
            RecipeError: ``resume-mismatch``, naming what differs, both values and how to go on.
        """
        saved = record.get("setup") if isinstance(record, Mapping) else None
        difference = checks.setup_difference(saved, self._setup_record)
        if difference is not None and difference[0] == "learning_rate" and restored:
            # The same optimizer object given again after ReduceLROnPlateau halved its rate (0.01
            # given, 0.005 reached) was refused: "trained with learning_rate = 0.01, not 0.005".
            reached = checks.setup_record(None, self.optimizer, ())["learning_rate"]
            given = self._setup_record.get("learning_rate")
            if isinstance(reached, float) and isinstance(given, float) and math.isclose(reached, given, rel_tol=1e-6):
                # Recorded as first given, for a later resume with it.
                self._setup_record = {**self._setup_record, "learning_rate": saved.get("learning_rate")}
                difference = checks.setup_difference(saved, self._setup_record)
        if difference is None:
            return
        key, then, now = difference
        # A recipe run's advice is the recipe's, as for its other settings (_check_same_hparams).
        how = ("Resume with the same recipe and --set options, or start a new run." if getattr(self, "_recipe_run", False) else
               f"Resume with the {key.replace('_', ' ')} it was trained with, or start a new run: a logdir of its own, or fit without resume=True.")
        raise RecipeError("resume-mismatch", f"{self.logdir} was trained with {key} = {then}, not {now}. {how}")

    def _checkpoint_due(self, epoch: int) -> bool:
        """Whether the end of ``epoch`` is a checkpoint by ``checkpoint_every`` (the end aside)."""
        if self.checkpoint_every == "auto":
            return time.monotonic() - self._last_checkpoint_time >= AUTO_CHECKPOINT_SECONDS
        return bool(self.checkpoint_every) and (epoch + 1) % self.checkpoint_every == 0

    def _can_resume(self) -> bool:
        """Whether the run has a checkpoint to resume from (one that stopped before its first has none)."""
        return self._checkpoint is not None and self._checkpoint.latest() is not None

    def _save_checkpoint(self, epoch: int, batches_done: int, callbacks: Sequence[Callback]) -> tuple[Path, dict[str, Any]] | None:
        """Checkpoints the run at ``batches_done`` batches into ``epoch`` (0 = its start).

        Returns:
            The checkpoint's prefix and record, or ``None`` when none was written.
        """
        if self.checkpoint_every == 0 and self.stop_reason != "interrupted":
            return None
        checkpoint = self._make_checkpoint()
        if checkpoint is None:
            return None
        self._wait_for_diagnosis()  # the checkpoint records the findings so far
        event_files = None
        if self.writer is not None:
            # What a resumed run must not log twice: everything logged up to here, on disk.
            self.writer.flush()
            event_files = event_file_sizes(self.writer.run_dir)
        self._last_checkpoint_time = time.monotonic()
        states = {f"{i}:{type(cb).__name__}": cb.get_state() for i, cb in enumerate(callbacks)}
        progress = {
            "epoch": epoch,
            "batches_done": batches_done,
            "seed": self.seed,
            "history": self.history.history,
            "epochs": self.history.epoch,
            "callbacks": {k: v for k, v in states.items() if v is not None},
            "findings": [f.to_dict() for f in self.findings],
            "dataset_first_epoch": self._epochs_skipped,
            # Mid-epoch, the sums behind the epoch means of step-averaged values (a step's own
            # loss, log_scalar's values): the resumed epoch's means cover every step.
            "epoch_sums": self._epoch_sums if batches_done else {},
            # ... and the activity penalties' running mean (total, rows), which the checkpoint's
            # metric variables leave out: the resumed epoch's penalty covered its last steps only.
            "activity_penalty": [float(v.numpy()) for v in self._penalty_trackers["train"].variables]
                                if batches_done and "train" in self._penalty_trackers else None,
            # Why training stopped here, if it did ("stopped": a callback ended the run).
            "stop_reason": self.stop_reason,
            # The live diagnosis's references (first losses, gradient baseline; its per-epoch
            # records go to the journal), so that a resumed run is judged as a whole.
            "diagnosis": self._diagnosis_state(),
            # The event files' sizes: a resume cuts them back to these (None: no events written).
            "event_files": event_files,
            # A resume with other hyperparameters (the run's recipe.yaml gone) is refused.
            "hparams": self.hparams,
            # The variables the optimizer holds state for, when a layer was frozen since it was
            # built (see _variables_to_optimize); None when they are the trainable ones.
            "optimizer_variables": self._optimizer_layout(),
            # The model's precision policy: a resume under another (mixed_float16 then float32)
            # was refused as "14 optimizer variables, this run has 10" (the loss scale's).
            "precision_policy": _policy_name(self.model),
            # The loss, optimizer (class, learning rate) and metrics the run was given: a resume with
            # others (a changed loss, Adam(1e-2) for Adam(1e-3), whose rate the restore put back in
            # silence) is refused, as a recipe's resume is refused another recipe.
            "setup": self._setup_record,
        }
        try:
            return checkpoint.save(progress, journal=self._diagnosis_epochs()), progress
        except Exception as err:
            unkept = _unkept_state(callbacks, list(states.values())) if isinstance(err, TypeError | ValueError) else None
            if unkept is not None:
                raise unkept from None
            if not is_storage_error(err):
                raise
            # The run's first checkpoint failing left nothing to resume: "continue from its last
            # good checkpoint" sent the user to a resume that then answered no-checkpoint.
            then = ("continue the run from its last good checkpoint (--resume RUN_DIR, or fit(..., resume=True))" if checkpoint.latest() is not None
                    else "train the run again: it has no earlier checkpoint to resume from")
            raise RunDirError("logdir-unwritable", f"Writing a checkpoint to {checkpoint.directory} failed: {storage_error_text(err)}. Free space or fix the directory, "
                                                   f"then {then}.") from err

    def _optimizer_layout(self) -> list[int] | None:
        """The indices in ``model.variables`` of the variables the optimizer was built for, in its
        order, when they are not the model's trainable variables (a layer frozen between two
        fits keeps its slots there); ``None`` when they are, or cannot be told."""
        built = getattr(self.optimizer, "_trainable_variables", None) if self.optimizer.built else None
        if not built or [id(v) for v in built] == [id(v) for v in self.model.trainable_variables]:
            return None
        index = {id(v): i for i, v in enumerate(self.model.variables)}
        return [index[id(v)] for v in built] if all(id(v) in index for v in built) else None

    def _variables_to_optimize(self, resume: bool) -> list[Any]:
        """The variables to build the optimizer for: the trainable ones, or on a resume, those the
        optimizer of the run's newest checkpoint held state for (:meth:`_optimizer_layout`).

        A layer frozen between two fits of a trainer keeps its slots in the optimizer, and in the
        checkpoints: built for the trainable variables alone, the resumed optimizer held fewer
        variables than the checkpoint, and the resume was refused (``resume-mismatch``).
        """
        variables = list(self.model.trainable_variables)
        if not resume or self.logdir is None:
            return variables
        record = newest_record(self.logdir / CHECKPOINT_SUBDIR)
        layout = record.get("optimizer_variables") if record is not None else None
        every = self.model.variables
        if not isinstance(layout, list) or not all(isinstance(i, int) and 0 <= i < len(every) for i in layout):
            return variables  # (another model's layout: the restore names what differs)
        return [every[i] for i in layout]

    def _diagnosis_state(self) -> dict[str, Any] | None:
        return self._live_diagnosis.get_state(epochs=False) if self._live_diagnosis is not None else None

    def _diagnosis_epochs(self) -> JournalRecords | None:
        return self._live_diagnosis.epoch_records() if self._live_diagnosis is not None else None

    def _complete_final_checkpoint(self) -> None:
        """Adds the end-of-run findings to the record of the checkpoint written at the last epoch.

        That checkpoint is written before on_train_end runs the end rules (loss-at-chance,
        underfitting, ...): without them, resuming the finished run reported no findings.
        """
        if self._final_checkpoint is None or self._checkpoint is None:
            return
        prefix, progress = self._final_checkpoint
        self._final_checkpoint = None
        if self.writer is not None:
            self.writer.flush()  # "ended" below promises the end-of-run events are on disk
        # ended: a resume of this finished run has nothing to train and nothing to log again.
        progress = {**progress, "findings": [f.to_dict() for f in self.findings], "diagnosis": self._diagnosis_state(), "ended": True}
        self._checkpoint.rewrite_record(prefix, progress, journal=self._diagnosis_epochs())

    def _refuse_another_run(self) -> None:
        """Refuses a new run of a fresh trainer in a logdir that holds another run's checkpoints, or
        the trained steps of one that stopped before its first checkpoint.

        Its steps start at 0 again: its checkpoints took the numbers of the old run's (ckpt-4
        beside the old ckpt-12, which the list kept as the older one), and its events went into
        the same files as the old run's, each step twice. A trainer's own second fit goes on
        with its step count, and is allowed (as ``model.fit`` allows it), unless another trainer
        has trained the run further since (its checkpoints are beyond this trainer's step).

        Raises:
            RunDirError: ``logdir-has-run``.
        """
        if self.logdir is None or not self.is_chief:
            return
        found = [p.stem for p in (self.logdir / CHECKPOINT_SUBDIR).glob("ckpt-*.index")]
        newest = max(found, key=_checkpoint_step) if found else None
        if self._checkpoint is not None:
            # Its own second fit goes on, unless another trainer (a notebook cell resuming this
            # run) has trained it further since: this one's steps went on from its own count,
            # logged again beside that trainer's, and its ckpt-N overwrote the newer run's.
            step = int(self.global_step.numpy())  # what its checkpoints are numbered by
            if newest is not None and _checkpoint_step(newest) > step:
                raise RunDirError("logdir-has-run", f"{self.logdir} holds {newest}, beyond this trainer's step {step}: another Trainer (or "
                                                    "process) has trained the run further since this one's last fit, and this fit would log "
                                                    f"steps {step}.. again beside its and overwrite its checkpoints. Go on with that "
                                                    "Trainer, pass resume=True to go on from its newest checkpoint, or give this fit a "
                                                    "logdir of its own.")
            return
        if newest is not None:
            raise RunDirError("logdir-has-run", f"{self.logdir} holds another run's checkpoints (the newest {newest}): a new run there "
                                                "would mix its checkpoints and TensorBoard events with that run's. Pass resume=True to continue "
                                                "that run, or give this one a logdir of its own (or delete the old one).")
        # A run that stopped before its first checkpoint (a callback's error, a NaN loss in its
        # first 30 s, checkpoint_every=0) has none: a notebook cell run again logged the new run's
        # steps from 0 beside the old one's in the same event directory, each step twice.
        trained = trained_event_file(self.logdir)
        if trained is not None:
            raise RunDirError("logdir-has-run", f"{self.logdir} holds the TensorBoard events of another run ({trained}), which stopped before its "
                                                "first checkpoint and cannot be resumed: a new run there would log its steps beside that run's. "
                                                "Give this one a logdir of its own, or delete the old one.")

    def _resume(self, callbacks: Sequence[Callback], epochs: int) -> tuple[int, int, bool]:
        """Restores the newest checkpoint.

        Returns:
            ``(epoch, batches done within it, ended)``; ``ended``: the run had finished (its
            epochs trained, or a callback stopped it) and logged its end, so there is nothing
            left to train or to log.
        """
        checkpoint = self._make_checkpoint()
        record = newest_record(checkpoint.directory) if checkpoint is not None else None
        try:
            progress = checkpoint.restore_latest() if checkpoint is not None else None
        except RecipeError as error:
            # Only a checkpoint that does not fit is told the policy: a mixed_bfloat16 run (or a
            # mixed_float16 one without loss scaling) holds the float32 variables a float32 run
            # does, and resumed under float32 before policies were compared.
            if error.code == "resume-mismatch":
                # Another optimizer or metrics fail the restore first ("it holds 6 optimizer
                # variables, this run has 2"): what differs is said instead.
                self._check_same_setup(record)
                _check_same_policy(record, _policy_name(self.model), self.logdir)
            raise
        if progress is None:
            if self.logdir is None:  # "no complete checkpoint in nowhere" said nothing of what to give
                raise RunDirError("no-checkpoint", "Nothing to resume: resume=True reads the checkpoints of the Trainer's logdir, and this Trainer has "
                                                   "none. Give it the logdir of the run to resume: Trainer(..., logdir=...), or fit without resume=True.")
            # Not "one that trained at least one epoch": a run whose first checkpoint failed (a full
            # disk) or was not due yet (checkpoint_every) trained epochs and still has none.
            raise RunDirError("no-checkpoint", f"Nothing to resume: no complete checkpoint in {self.logdir / CHECKPOINT_SUBDIR} (a run stopped before its first "
                                               "checkpoint has none, however many epochs it trained). Train it again without --resume (or, from Python, into a "
                                               "logdir of its own), or give the run directory that holds the checkpoints.")
        _check_same_hparams(progress.get("hparams"), self.hparams, self.logdir)
        self._check_same_setup(progress, restored=True)
        saved = progress.get("hparams") or {}
        if self.hparams is not None:
            # Kept: a key only the run's first trainer had (a swept momentum that trainkit compare
            # recorded, which the recipe that resumes it has no hyperparameter for).
            self.hparams = {**{k: v for k, v in saved.items() if k not in self.hparams}, **self.hparams}
        # Only RESUMABLE_HPARAMS can differ among the saved keys; a key added since is no change.
        self._hparams_changed = any(saved.get(k) != (self.hparams or {}).get(k) for k in saved)
        trained = int(progress["epoch"])
        if epochs < trained:
            # Accepted, it trained nothing and left the run's recipe saying fewer epochs than it has.
            raise RecipeError("resume-mismatch", f"{self.logdir} already trained {trained} epochs, more than the {epochs} asked for "
                                                 f"(training.epochs in a recipe). Resume with more than {trained} epochs to train it "
                                                 f"further, or with {trained} to look at it again.")
        finished = progress.get("stop_reason") in FINISHED_STOP_REASONS or trained >= epochs
        ended = finished and bool(progress.get("ended"))
        if progress.get("event_files") is not None and self.logdir is not None and not ended:
            # Everything logged after this checkpoint (by a killed process) is logged again from here.
            lost = rewind_event_files(self.logdir, progress["event_files"])
            if lost:
                # Deleted or cut short since: the resumed run went on without a word, and TensorBoard
                # and trainkit diagnose then showed only the epochs after the resume.
                print(f"warning: [events-lost] {', '.join(lost)} in {self.logdir} {'is' if len(lost) == 1 else 'are'} gone or shorter than "
                      f"at the checkpoint: TensorBoard and trainkit diagnose lack what {'it' if len(lost) == 1 else 'they'} held of the "
                      f"first {trained} epoch{'' if trained == 1 else 's'}; report.json keeps every epoch's values.", file=sys.stderr)
        self.seed = int(progress["seed"])
        self.history = History(history={k: list(v) for k, v in progress["history"].items()}, epoch=list(progress["epochs"]))
        self.findings = [Finding.from_dict(f) for f in progress.get("findings", [])]
        self._resumed_diagnosis = _with_journal_epochs(progress)
        self._epochs_skipped = int(progress.get("dataset_first_epoch", 0))
        self._resumed_sums = {str(k): [float(v[0]), float(v[1])] for k, v in progress.get("epoch_sums", {}).items()}
        if progress.get("activity_penalty") and "train" in self._penalty_trackers:
            for variable, value in zip(self._penalty_trackers["train"].variables, progress["activity_penalty"], strict=True):
                variable.assign(value)
        if progress.get("stop_reason") in FINISHED_STOP_REASONS:
            self.stop_reason = progress["stop_reason"]
        states = progress.get("callbacks", {})
        for i, callback in enumerate(callbacks):
            state = states.get(f"{i}:{type(callback).__name__}")
            if state is not None:
                callback.set_state(state)
        return int(progress["epoch"]), int(progress["batches_done"]), ended


def _held_variables(item: Any, trackers: set[int]) -> list[Any]:
    """The state variables of one thing a subclass holds (:meth:`Resumable._own_state`): a seed
    generator's, a metric's (none for one of ``trackers``, the trainer's own), a layer's, a
    variable itself; none for anything else.

    Raises:
        ArgumentError: ``layer-not-built`` for a layer not built yet.
    """
    if isinstance(item, keras.random.SeedGenerator):
        return [item.state]
    if isinstance(item, keras.metrics.Metric):
        return [] if id(item) in trackers else list(item.variables)
    if isinstance(item, keras.layers.Layer):
        if not item.built:
            # Built by the step's first trace, which a resume reads the checkpoint before:
            # its state was left out of the restore in silence (and of every later checkpoint).
            raise ArgumentError("layer-not-built", f"A layer of its own ({type(item).__name__} {item.name!r}) is not built before the "
                                                   "checkpoint is read (a resume would leave its state out). Build it in __init__ "
                                                   "with its input shape: layer.build(input_shape), or start it with keras.Input.")
        return list(item.variables)
    if isinstance(item, tf.Variable | keras.Variable):
        return [item]
    return []


def _with_journal_epochs(progress: Mapping[str, Any]) -> dict[str, Any] | None:
    """The diagnosis state of a restored checkpoint record, its per-epoch records put back.

    Records written before the journal held them in the state itself. ``None`` (a fresh
    diagnosis) when the journal no longer holds them (:meth:`TrainingCheckpoint.restore_latest`
    warned).
    """
    state = progress.get("diagnosis")
    if state is None or JOURNAL_MARK not in progress:
        return state
    records = progress.get(JOURNAL_RECORDS)
    if records is None or "diagnoser" not in state:
        return None
    return {**state, "diagnoser": {**state["diagnoser"], "epochs": records}}


def _policy_name(model: Any) -> str | None:
    """The name of ``model``'s dtype policy (``mixed_float16``, ``float32``), ``None`` if it has none."""
    policy = getattr(model, "dtype_policy", None)
    name = getattr(policy, "name", None)
    return name if isinstance(name, str) else None


def _check_same_policy(record: Mapping[str, Any] | None, now: str | None, logdir: Path | None) -> None:
    """Tells a checkpoint that did not fit this run (asked after the restore refused it) that
    the run was trained under another precision policy, where it was.

    Under ``mixed_float16`` the optimizer scales the loss and keeps the scale's state, so the
    checkpoint holds variables a float32 run lacks; the restore's "it holds 14 optimizer
    variables, this run has 10" did not say why. Records written before the policy was kept pass.

    Raises:
        RecipeError: ``resume-mismatch``, naming both policies and how to resume.
    """
    saved = record.get("precision_policy") if isinstance(record, Mapping) else None
    if not isinstance(saved, str) or now is None or saved == now:
        return
    raise RecipeError("resume-mismatch", f"{logdir} was trained under the '{saved}' precision policy, but this model was built under '{now}': "
                                         "the optimizer's state (a loss scale under mixed_float16) differs. Call "
                                         f"keras.mixed_precision.set_global_policy('{saved}') before building the model to resume the run, "
                                         "or start a new run with a logdir of its own.")


def _check_same_hparams(saved: Mapping[str, Any] | None, now: Mapping[str, Any] | None, logdir: Path | None) -> None:
    """Refuses to resume a run with other hyperparameters than it was trained with.

    Raises:
        RecipeError: ``resume-mismatch``, naming the first hyperparameter that differs.
    """
    # The saved keys: one this version adds (data_seed) is absent from older checkpoints, which
    # would otherwise never resume.
    # Only the keys both have: one the resuming trainer lacks is kept from the checkpoint.
    differing = [k for k in (saved or {}) if k not in RESUMABLE_HPARAMS and k in (now or {}) and (saved or {}).get(k) != (now or {}).get(k)]
    if saved is None or now is None or not differing:
        return
    key = differing[0]
    raise RecipeError("resume-mismatch", f"{logdir} was trained with {key} = {saved.get(key, '(none)')!r}, not {now.get(key, '(none)')!r}. "
                                         "Resume with the same recipe and --set options, or start a new run.")


def _checkpoint_step(name: str) -> int:
    """The step of a checkpoint named ``ckpt-<step>`` (-1 for a name that holds none)."""
    number = name.rpartition("-")[2]
    return int(number) if number.isdigit() else -1
