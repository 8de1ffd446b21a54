"""Live diagnosis: the :class:`DiagnosisCallback` the :class:`~trainkit.Trainer` adds by default.

Between compiled calls it hands the call's per-step buffer to a
:class:`~trainkit.diagnosis.engine.Diagnoser` (already on the host: no extra sync), prints each new
warning once (through the console of the progress bar, only when ``verbose``), and appends findings
to ``trainer.findings``. It also writes what a later ``trainkit diagnose RUN_DIR`` needs into the
run's TensorBoard events: the context (task, chance level, layers, schedule) at the start, the step
at which each epoch ended, and the final report as text.

Non-finite loss: the diagnosis always records ``nan-loss`` with the step and the first layer that
broke. Stopping is the trainer's job when it has one (``Trainer(on_nan="stop")``, the default, skips
the bad update in the graph and ends training at that step); the finding then says so. For a trainer
without it (or ``stop_on_nan=True``), the callback stops by itself: the call that produced the NaN
sets ``trainer.stop_training``, and when the epoch ends the weights and optimizer state of the last
epoch that ended finite are restored (:meth:`DiagnosisCallback.recover_from_nan`). Those weights are
copied to host memory at each finite epoch end (``model.get_weights()`` and the optimizer's
variables: ~5 ms an epoch for a 10-64-32-1 MLP with Adam), only when this fallback is active.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from trainkit.background import SerialWorker
from trainkit.callbacks.base import Callback
from trainkit.diagnosis.engine import (
    UNFINISHED,
    Context,
    Diagnoser,
    EpochRecord,
    epoch_record_state,
)
from trainkit.diagnosis.fit_rules import batchnorm_steps
from trainkit.diagnosis.gradient_rules import learned_something
from trainkit.diagnosis.model_facts import batch_norm_errors
from trainkit.diagnosis.nonfinite_rules import nonfinite_weights
from trainkit.diagnosis.report import render_markdown
from trainkit.diagnosis.rules import DIAGNOSIS_CODES
from trainkit.diagnosis.run_context import (
    build_context,
    early_stopping_outcome,
    loss_penalties,
    recurrent_reach,
    resumed_context,
)
from trainkit.findings import Finding

if TYPE_CHECKING:
    from rich.console import Console

    from trainkit.loop import StepOutputs

#: TensorBoard text tag holding the diagnosis context (JSON) and the checks' findings.
CONTEXT_TAG = "diagnosis_context"
#: TensorBoard text tag holding what happened at the end (early stopping, NaN recovery; JSON).
END_TAG = "diagnosis_end"
#: TensorBoard text tag of the final report (markdown).
REPORT_TAG = "report"
#: Per-epoch scalar (in train/, at step = epoch): the global step count when the epoch ended.
EPOCH_END_TAG = "diagnosis/epoch_end_step"
#: Per-epoch scalar (in train/, at step = epoch): the regularization penalty in both losses.
REGULARIZATION_TAG = "diagnosis/regularization"
#: Per-epoch scalar: the penalty in the training loss, where measured (activity penalties).
TRAIN_REGULARIZATION_TAG = "diagnosis/train_regularization"


#: What the weights are after a stop on a non-finite loss, by :attr:`Trainer.nan_weights`.
_NAN_WEIGHTS_NOTES = {
    "kept": "Training stopped at that step; its update was skipped, so the weights are those of the step before.",
    "checkpoint": ("Training stopped at that step. A train_step of its own applied the non-finite update, so the "
                   "weights of the last checkpoint were put back."),
    "nonfinite": ("Training stopped at that step, but the weights already hold NaN/inf values (an update with "
                  "finite loss but non-finite values, or a train_step of its own that applied the non-finite "
                  "step's update, which Trainer.apply_gradients skips): the model is unusable, and no checkpoint "
                  "could put them back (a trainer keeps checkpoints with a logdir and checkpoint_every other than 0)."),
    "nonfinite-early": ("Training stopped at that step, but the weights already hold NaN/inf values (an update with "
                        "finite loss but non-finite values, or a train_step of its own that applied the non-finite "
                        "step's update, which Trainer.apply_gradients skips): the model is unusable, and no checkpoint "
                        "had been written yet to put them back (the first comes at the end of an epoch or after "
                        "checkpoint_every)."),
}


class DiagnosisCallback(Callback):
    """Runs the diagnosis rules during training and records the findings.

    Args:
        stop_on_nan: Stop training and restore the last good weights when the loss goes
            non-finite. ``None`` (default): leave it to the trainer's ``on_nan`` when it has one,
            else do it here. ``False``: only record the finding.
        thresholds: Rule thresholds (:class:`~trainkit.diagnosis.rule_types.Thresholds`).
        rules: Rules to run instead of :data:`~trainkit.diagnosis.rules.RULES`.
        background: Run the rules on a worker thread, overlapping the next compiled call, rather
            than between calls (~1.8 ms of a 19 ms epoch for the 10-64-32-1 MLP). Findings then
            reach ``trainer.findings`` a call or so later, and all of them by the time ``fit``
            returns, a checkpoint is written or :meth:`wait` returns. Off when this callback
            restores weights after a NaN itself, which has to stop training at once.
    """

    def __init__(self, *, stop_on_nan: bool | None = None, thresholds: Any = None, rules: Sequence[Any] | None = None, background: bool = True) -> None:
        self.stop_on_nan = stop_on_nan
        self.background = background
        self._worker: SerialWorker | None = None
        self.thresholds = thresholds
        self.rules = rules
        self.console: Console | None = None
        self.diagnoser: Diagnoser | None = None
        #: What :meth:`prepare` was told, for :func:`build_context` at ``on_train_begin`` (the data
        #: arrays among it are let go of once the context holds what it needs of them).
        self._fit_facts: dict[str, Any] = {}
        self._others: list[Callback] = []
        self._initial_epoch = 0
        self._snapshot: tuple[int, list[np.ndarray], list[np.ndarray]] | None = None
        self._nan_pending = False
        self._recovers = False
        self._nan_note: str | None = None
        self._resumed_state: dict[str, Any] | None = None
        #: The weight penalties at the last epoch's end (or the start): see _epoch_penalties.
        self._weight_penalty: float | None = None

    # -- set up by the trainer ---------------------------------------------------------------------
    def prepare(
        self,
        *,
        targets: Any = None,
        callbacks: Iterable[Callback] = (),
        console: Console | None = None,
        initial_epoch: int = 0,
        batch_size: int | None = None,
        train_rows: int | None = None,
        one_pass_epochs: bool | None = None,
        batches_in_order: bool | None = None,
        has_validation: bool = False,
        sample_weight: Any = None,
        validation_targets: Any = None,
        validation_sample_weight: Any = None,
        batch_rows: int | None = None,
        inputs: Any = None,
        validation_inputs: Any = None,
        read_on: Any = None,
        inputs_stand_for_rows: bool | int = False,
        validation_held: Any = None,
    ) -> None:
        """What the trainer knows at ``fit`` time and a callback cannot see by itself.

        Args:
            targets: The training targets (numpy), for the chance level; ``None`` if unknown.
            sample_weight: The training rows' weights (sample weight times class weight, one per
                row of ``targets``), or ``None``: the chance level is the loss training reports,
                weights included.
            callbacks: The other callbacks of this fit (to know about early stopping).
            console: Where to print new warnings; ``None`` prints nothing.
            initial_epoch: First epoch of this fit.
            batch_size: Rows per batch, when known.
            train_rows: Training rows, when known.
            one_pass_epochs: Whether an epoch reads each training row once at most (see
                :attr:`~trainkit.diagnosis.engine.Context.one_pass_epochs`), ``None`` if unknown.
            batches_in_order: Whether the training batches come in the data's own order (see
                :attr:`~trainkit.diagnosis.engine.Context.batches_in_order`), ``None`` if unknown.
            has_validation: Whether validation runs after each epoch.
            validation_targets: The validation targets (numpy), for the validation loss's own
                chance level; ``None`` if unknown (it is then compared with the training one).
            validation_sample_weight: The validation rows' weights, or ``None``.
            batch_rows: Rows of a dataset's first batch, where ``batch_size`` is not given: the
                chance level's first steps (see :func:`build_context`) are read at it.
            inputs: The training inputs (a dataset's first batches'), for the level a fresh
                regression model's first losses plausibly reach (see :func:`build_context`).
            validation_inputs: The in-memory validation inputs, for the loss of the inputs'
                linear fit on the validation rows (see :func:`build_context`).
            read_on: A never-shuffled dataset's targets past its first batches too (a
                :class:`~trainkit.diagnosis.run_context.RowsReadOn`), for the chance levels.
            inputs_stand_for_rows: Whether a dataset's ``inputs`` stand for all its rows, for the
                linear fit's loss on the training rows (see
                :func:`~trainkit.diagnosis.run_context.sample_stands_for_rows`).
            validation_held: A validation dataset's first batches, held from the data checks (a
                :class:`~trainkit.diagnosis.run_context.HeldRows`), for that fit's loss on validation rows.
        """
        self._others = [cb for cb in callbacks if cb is not self]
        self.console = console
        self._initial_epoch = initial_epoch
        self._fit_facts = {"targets": targets, "initial_epoch": initial_epoch, "batch_size": batch_size, "train_rows": train_rows,
                           "one_pass_epochs": one_pass_epochs, "batches_in_order": batches_in_order, "has_validation": has_validation, "callbacks": self._others, "sample_weight": sample_weight,
                           "validation_targets": validation_targets, "validation_sample_weight": validation_sample_weight,
                           "batch_rows": batch_rows, "inputs": inputs, "validation_inputs": validation_inputs, "read_on": read_on,
                           "inputs_stand_for_rows": inputs_stand_for_rows, "validation_held": validation_held}

    # -- checkpointing -----------------------------------------------------------------------------
    def get_state(self, *, epochs: bool = True) -> dict[str, Any] | None:
        """The diagnoser's bounded state, for the trainer's checkpoint (``None`` before training).

        Args:
            epochs: Include the per-epoch records; without them, :meth:`epoch_records` gives
                them for a checkpoint's journal and :meth:`set_state` takes them back under
                ``state["diagnoser"]["epochs"]``.
        """
        if self.diagnoser is None:
            return None
        # The weight penalty at the epoch's start too: a resume mid-epoch took the one where it
        # resumed, and the epoch's training penalty (see _epoch_penalties) differed from the run's.
        return {"diagnoser": self.diagnoser.state(epochs=epochs), "weight_penalty": self._weight_penalty}

    def epoch_records(self) -> tuple[list[EpochRecord], Callable[[EpochRecord], dict[str, Any]]]:
        """Every epoch's record so far and how to encode one, for a checkpoint's journal."""
        return (self.diagnoser.epochs if self.diagnoser is not None else []), epoch_record_state

    def set_state(self, state: dict[str, Any]) -> None:
        """Goes on from a checkpoint's state at the next ``on_train_begin`` (a resumed fit)."""
        self._resumed_state = state

    # -- hooks -------------------------------------------------------------------------------------
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        trainer = self.trainer
        facts = self._fit_facts
        context = build_context(trainer, facts.pop("targets", None), **facts)
        resumed_penalty = (self._resumed_state or {}).get("weight_penalty")
        self._weight_penalty = loss_penalties(trainer) if resumed_penalty is None else float(resumed_penalty)
        # The chance levels are computed: do not hold on to the data.
        self._fit_facts = {}
        # Whether this fit goes on with a run (a resume whose lost journal left the diagnosis to
        # start afresh too: its report keeps the run's findings), or starts a diagnosis of its own.
        resumed = self._resumed_state is not None or getattr(trainer, "resumed_epochs", 0) > 0
        self.diagnoser = self._new_diagnoser(context)
        context = self.diagnoser.context
        self._nan_pending = False
        self._nan_note = None
        # The callback's own NaN recovery, only where the trainer does not stop on NaN itself.
        self._recovers = self.stop_on_nan if self.stop_on_nan is not None else not hasattr(trainer, "on_nan")
        self._take_snapshot(self._initial_epoch - 1)
        if self.background and not self._recovers:
            self._worker = SerialWorker("trainkit-diagnosis")
        if trainer.writer is not None:
            # The checks' findings only: a resumed trainer also holds the diagnosis's own, which
            # `trainkit diagnose` replays from the steps (they were listed twice).
            checks = [f.to_dict() for f in trainer.findings if f.code not in DIAGNOSIS_CODES]
            # `trainkit diagnose` replays from the last fit that did not resume: a trainer's own
            # second fit replaces the earlier fit's findings.
            payload = json.dumps({"context": context.to_dict(), "checks": checks, "resumed": resumed}, allow_nan=True)
            trainer.writer.text("train", trainer.step, CONTEXT_TAG, f"```json\n{payload}\n```")

    def _new_diagnoser(self, context: Context) -> Diagnoser:
        """A fresh diagnoser, or for a resumed fit the checkpointed one going on."""
        state, self._resumed_state = self._resumed_state, None
        saved = (state or {}).get("diagnoser")
        if saved is None:
            diagnoser = Diagnoser(context, rules=self.rules, thresholds=self.thresholds)
            if self._initial_epoch > 0:
                # A resumed fit diagnosed afresh (its journal was lost): the checkpoint's end-of-run
                # verdicts judged the run where it ended then, and stood in the longer run's report
                # ("underfitting" at epoch 4 of 6, its loss then) when the fresh diagnosis made none.
                end_codes = {rule.code for rule in diagnoser.rules if rule.when == "end"}
                self.trainer.findings[:] = [f for f in self.trainer.findings if f.code not in end_codes]
            return diagnoser
        diagnoser = Diagnoser.from_state(saved, resumed_context(Context.from_dict(saved["context"]), context),
                                         rules=self.rules, thresholds=self.thresholds)
        # A finished run trained further is judged again at its new end.
        dropped = {(f.code, f.layer) for f in diagnoser.reopen()}
        self.trainer.findings[:] = [f for f in self.trainer.findings if (f.code, f.layer) not in dropped]
        return diagnoser

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        diagnoser = self.diagnoser
        if diagnoser is None:
            return
        first_step = self.trainer.step
        if self._worker is not None:
            # In order with the previous epoch's calls and end, which the worker may not have
            # reached yet: starting the new epoch now would put them into it.
            self._worker.submit(lambda: diagnoser.begin_epoch(epoch, first_step))
            return
        diagnoser.begin_epoch(epoch, first_step)

    def on_execution_end(self, first_step: int, outputs: StepOutputs) -> None:
        if self.diagnoser is None:
            return
        if self._worker is not None:  # the outputs are the call's own arrays: nothing reuses them
            self._worker.submit(lambda: self._add_steps(first_step, outputs))
            return
        self._add_steps(first_step, outputs)

    def _add_steps(self, first_step: int, outputs: StepOutputs) -> None:
        assert self.diagnoser is not None
        self._record(self.diagnoser.add_steps(first_step, outputs.names, outputs.values))
        nonfinite = self.diagnoser.nonfinite
        if nonfinite is not None and nonfinite.loss_step is not None and not self._nan_pending and self._recovers:
            self._nan_pending = True
            self.trainer.stop_training = True

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        if self.diagnoser is None:
            return
        trainer = self.trainer
        weights = loss_penalties(trainer)
        penalty, train_penalty = self._epoch_penalties(weights, "val_loss" in logs)
        self._weight_penalty = weights
        if trainer.writer is not None:
            marks = {EPOCH_END_TAG: float(trainer.step), REGULARIZATION_TAG: penalty}
            if train_penalty is not None:
                marks[TRAIN_REGULARIZATION_TAG] = train_penalty
            trainer.writer.scalars("train", epoch, marks, tag=str)
        if self._worker is not None:
            logs = dict(logs)
            self._worker.submit(lambda: self._end_epoch(epoch, logs, penalty, train_penalty))
            return
        self._end_epoch(epoch, logs, penalty, train_penalty)

    def _epoch_penalties(self, weights: float, validated: bool) -> tuple[float, float | None]:
        """The penalty in the epoch's validation loss (at its end) and, for a model with activity
        penalties, the one in its training loss (``None``: the diagnosis takes the mean of the
        penalty at the epoch's start and end).

        ``weights``: the weight penalties at the epoch's end. The activity penalties are the
        steps' exact epoch means (:mod:`trainkit.activity_penalty`).
        """
        measured = getattr(self.trainer, "epoch_activity_penalties", {})
        train, val = measured.get("train", math.nan), measured.get("eval", math.nan) if validated else math.nan
        if not math.isfinite(train):
            return weights, None
        # The training loss holds the weight penalty as it went over the epoch.
        before = self._weight_penalty if self._weight_penalty is not None else weights
        return weights + (val if math.isfinite(val) else train), (before + weights) / 2 + train

    def _end_epoch(self, epoch: int, logs: Mapping[str, float], penalty: float, train_penalty: float | None = None) -> None:
        assert self.diagnoser is not None
        new = self.diagnoser.end_epoch(epoch, logs, regularization=penalty, train_regularization=train_penalty)
        if self._nan_pending:
            self.recover_from_nan(epoch)
        elif self.diagnoser.nonfinite is None and all(math.isfinite(float(v)) for v in logs.values()):
            self._take_snapshot(epoch)
        self._record(new)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.diagnoser is None:
            return
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.close()
        trainer = self.trainer
        if self._nan_note is None and (logs or {}).get("stop_reason") == "nan-loss":
            outcome = trainer.nan_weights or "kept"
            self._nan_note = _NAN_WEIGHTS_NOTES.get(outcome, _NAN_WEIGHTS_NOTES["kept"])
            broken = self.diagnoser.nonfinite
            if outcome.startswith("nonfinite") and broken is not None and nonfinite_weights(broken.row):
                self._nan_note += (f" They have held NaN/inf values, or values too large for float32 to square (a weight norm over "
                                   f"~1e19 reads inf), since step {broken.step}.")
            if outcome.startswith("nonfinite"):
                self._nan_note += " Retrain with a lower learning rate."
            self._annotate_nan()
        # stop_reason: an interrupted or failed run gets no end-of-run verdicts (Diagnoser.finish).
        stop_reason = (logs or {}).get("stop_reason")
        notes = {"early_stopping": early_stopping_outcome(self._others), "nan_recovery": self._nan_note,
                 "epochs_run": self.diagnoser.epochs_run, "stop_reason": stop_reason}
        # Measured only where vanishing-gradients-through-time could use it: an unfinished run gets
        # no end verdicts, and a run that learned something needs no reason why it could not.
        if stop_reason not in UNFINISHED and learned_something(self.diagnoser) is False:
            reach = recurrent_reach(trainer)
            if reach:
                notes["recurrent_reach"] = reach
        if stop_reason not in UNFINISHED and self.diagnoser.context.batch_norms and not self.diagnoser.context.trained_before:
            # Whether BatchNormalization's averages lag by enough to matter (batchnorm-lag): read
            # once here, from the layers' variables, so that `trainkit diagnose` replays it.
            # All the steps the averages moved in: a second fit's first fit's too (batchnorm_steps).
            notes["batch_norm_errors"] = batch_norm_errors(trainer.model, batchnorm_steps(self.diagnoser))
        if trainer.writer is not None:
            trainer.writer.text("train", trainer.step, END_TAG, f"```json\n{json.dumps(notes)}\n```")
        self._record(self.diagnoser.finish(notes))
        self._sync_rejudged()
        self._sync_final_advice()
        if trainer.writer is not None:
            reason = (logs or {}).get("stop_reason")
            unfinished = reason if reason in UNFINISHED else None
            trainer.writer.text("train", trainer.step, REPORT_TAG,
                                render_markdown(trainer.findings, unfinished=unfinished, resumable=unfinished is None or trainer._can_resume()))

    def wait(self) -> None:
        """Blocks until the calls and epochs handed to the worker are diagnosed (see ``background``)."""
        if self._worker is not None:
            self._worker.wait()

    # -- non-finite loss ---------------------------------------------------------------------------
    def recover_from_nan(self, epoch: int) -> None:
        """Restores the last good weights after the epoch in which the loss went non-finite."""
        assert self.diagnoser is not None
        self._nan_pending = False
        if self._snapshot is None:
            return
        good_epoch, weights, optimizer_state = self._snapshot
        self.trainer.model.set_weights(weights)
        variables = list(getattr(self.trainer.optimizer, "variables", []))
        if len(variables) == len(optimizer_state):
            for variable, value in zip(variables, optimizer_state, strict=True):
                variable.assign(value)
        where = "the initial weights" if good_epoch < self._initial_epoch else f"the weights from the end of epoch {good_epoch + 1}"
        self._nan_note = f"Training stopped after epoch {epoch + 1}; {where} were restored."
        self._annotate_nan()

    def _annotate_nan(self) -> None:
        assert self.diagnoser is not None and self._nan_note is not None
        for finding in self.diagnoser.findings:
            if finding.code == "nan-loss":
                updated = annotate_nan_recovery(finding, self._nan_note)
                self.diagnoser.replace(updated)
                self._replace_in_trainer(updated)

    def _take_snapshot(self, epoch: int) -> None:
        if not self._recovers:
            return
        optimizer_state = [np.array(v.numpy()) for v in getattr(self.trainer.optimizer, "variables", [])]
        self._snapshot = (epoch, self.trainer.model.get_weights(), optimizer_state)

    # -- findings ----------------------------------------------------------------------------------
    def _record(self, findings: Iterable[Finding]) -> None:
        position = {(f.code, f.layer): i for i, f in enumerate(self.trainer.findings)}
        for finding in findings:
            key = (finding.code, finding.layer)
            if key in position:  # the diagnoser reports a key again only when it grew more severe
                self.trainer.findings[position[key]] = finding
            else:
                position[key] = len(self.trainer.findings)
                self.trainer.findings.append(finding)
            if self.console is not None and finding.severity != "info":
                self.console.print(f"diagnosis: {finding.format()}", markup=False, highlight=False, soft_wrap=True)

    def _sync_rejudged(self) -> None:
        """``trainer.findings`` after the end's second look (``Diagnoser._rejudge``): a verdict
        the whole run no longer supports is withdrawn, one it changed is updated in place."""
        assert self.diagnoser is not None
        rejudged = {rule.code for rule in self.diagnoser.rules if rule.rejudge}
        current = {(f.code, f.layer): f for f in self.diagnoser.findings if f.code in rejudged}
        kept = []
        for finding in self.trainer.findings:
            key = (finding.code, finding.layer)
            if finding.code not in rejudged:
                kept.append(finding)
            elif key in current:
                kept.append(current.pop(key))
            elif self.console is not None and finding.severity != "info":
                # Printed while training, gone from the report: say so, or the two contradict.
                where = f" ({finding.location()})" if finding.location() else ""
                self.console.print(f"diagnosis: withdrawn [{finding.code}]{where}: judged again on the whole run, "
                                   "it no longer holds.", markup=False, highlight=False, soft_wrap=True)
        self.trainer.findings[:] = [*kept, *current.values()]

    def _sync_final_advice(self) -> None:
        """``trainer.findings``' advice as the end wrote it again from the whole run (the rules
        marked ``refresh_advice``: one lowered learning rate in every finding)."""
        assert self.diagnoser is not None
        final = {(f.code, f.layer): f for f in self.diagnoser.findings}
        for i, finding in enumerate(self.trainer.findings):
            latest = final.get((finding.code, finding.layer))
            if latest is not None and latest.advice != finding.advice:
                self.trainer.findings[i] = dataclasses.replace(finding, advice=latest.advice)

    def _replace_in_trainer(self, finding: Finding) -> None:
        for i, old in enumerate(self.trainer.findings):
            if (old.code, old.layer) == (finding.code, finding.layer):
                self.trainer.findings[i] = finding


def annotate_nan_recovery(finding: Finding, note: str) -> Finding:
    """The nan-loss finding with what was done about it (where training stopped, which weights)."""
    return dataclasses.replace(finding, message=f"{finding.message} {note}")
