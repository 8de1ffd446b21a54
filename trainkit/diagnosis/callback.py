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
import numbers
import re
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from trainkit.background import SerialWorker
from trainkit.callbacks.base import Callback
from trainkit.diagnosis.baseline import Baseline, TargetScale, chance_loss, target_scale
from trainkit.diagnosis.engine import (
    UNFINISHED,
    Context,
    Diagnoser,
    EpochRecord,
    epoch_record_state,
)
from trainkit.diagnosis.gradient_rules import learned_something
from trainkit.diagnosis.loss_rules import nonfinite_weights
from trainkit.diagnosis.report import render_markdown
from trainkit.diagnosis.rules import DIAGNOSIS_CODES
from trainkit.findings import Finding
from trainkit.probes import ACTIVATION_LAYER_CLASSES, layer_activation, reported_names
from trainkit.stat_names import NEGATIVE_SLOPED, SMOOTH_RELU

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
#: A validation chance level at most this share of the training one is a constant's exact fit (one
#: class), not a level: the training level stands in for it.
_ONE_CLASS_SHARE = 1e-4
#: Per-epoch scalar: the penalty in the training loss, where measured (activity penalties).
TRAIN_REGULARIZATION_TAG = "diagnosis/train_regularization"


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
        self._targets: Any = None
        self._sample_weight: Any = None
        self._validation: tuple[Any, Any] = (None, None)
        self._others: list[Callback] = []
        self._initial_epoch = 0
        self._batch_size: int | None = None
        self._batch_rows: int | None = None
        self._train_rows: int | None = None
        self._has_validation = False
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
        has_validation: bool = False,
        sample_weight: Any = None,
        validation_targets: Any = None,
        validation_sample_weight: Any = None,
        batch_rows: int | None = None,
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
            has_validation: Whether validation runs after each epoch.
            validation_targets: The validation targets (numpy), for the validation loss's own
                chance level; ``None`` if unknown (it is then compared with the training one).
            validation_sample_weight: The validation rows' weights, or ``None``.
            batch_rows: Rows of a dataset's first batch, where ``batch_size`` is not given: the
                chance level's first steps (see :func:`build_context`) are read at it.
        """
        self._targets = targets
        self._sample_weight = sample_weight
        self._validation = (validation_targets, validation_sample_weight)
        self._others = [cb for cb in callbacks if cb is not self]
        self.console = console
        self._initial_epoch = initial_epoch
        self._batch_size = batch_size
        self._batch_rows = batch_rows
        self._train_rows = train_rows
        self._has_validation = has_validation

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
        context = build_context(trainer, self._targets, initial_epoch=self._initial_epoch, batch_size=self._batch_size,
                                train_rows=self._train_rows, has_validation=self._has_validation, callbacks=self._others,
                                sample_weight=self._sample_weight, validation_targets=self._validation[0],
                                validation_sample_weight=self._validation[1], batch_rows=self._batch_rows)
        resumed_penalty = (self._resumed_state or {}).get("weight_penalty")
        self._weight_penalty = _regularization(trainer.model) if resumed_penalty is None else float(resumed_penalty)
        # The chance levels are computed: do not hold on to the data.
        self._targets = self._sample_weight = None
        self._validation = (None, None)
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
        weights = _regularization(trainer.model)
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
        notes = {"early_stopping": _early_stopping_outcome(self._others), "nan_recovery": self._nan_note,
                 "epochs_run": self.diagnoser.epochs_run, "stop_reason": stop_reason}
        # Measured only where vanishing-gradients-through-time could use it: an unfinished run gets
        # no end verdicts, and a run that learned something needs no reason why it could not.
        if stop_reason not in UNFINISHED and learned_something(self.diagnoser) is False:
            reach = _recurrent_reach(trainer)
            if reach:
                notes["recurrent_reach"] = reach
        if trainer.writer is not None:
            trainer.writer.text("train", trainer.step, END_TAG, f"```json\n{json.dumps(notes)}\n```")
        self._record(self.diagnoser.finish(notes))
        self._sync_rejudged()
        self._sync_final_advice()
        if trainer.writer is not None:
            reason = (logs or {}).get("stop_reason")
            trainer.writer.text("train", trainer.step, REPORT_TAG,
                                render_markdown(trainer.findings, unfinished=reason if reason in UNFINISHED else None))

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


#: Batches of a tf.data source sampled for the chance level.
_TARGET_BATCHES = 16


def first_batch_rows(source: Any) -> int | None:
    """Rows of a ``tf.data`` source's first batch (its batch size, in practice; kept by the
    source, so not read again), or ``None`` when unknown."""
    if not hasattr(source, "sample"):
        return None
    batches = source.sample(1)
    if not batches or not isinstance(batches[0], tuple | list) or len(batches[0]) < 2:
        return None
    rows = np.shape(batches[0][1])
    return int(rows[0]) if len(rows) else None


def source_targets_and_weights(source: Any) -> tuple[Any, Any]:
    """The training targets and row weights of a trainer's data source, for the chance level.

    In-memory data gives its target tensor and its weights (``sample_weight`` times
    ``class_weight``: fit folds both into the rows); a ``tf.data`` source gives those of its
    first few batches (datasets are re-iterable, so this does not consume the training data).
    For a model with several outputs, the targets are the same structure (tuple, list or dict)
    of arrays. Each is ``None`` when unknown; the weights are also ``None`` for unweighted rows,
    and for weights that are not one array (per-output weights: the chance level then comes
    out unknown rather than unweighted, see :func:`_chance_level`).
    """
    data = getattr(source, "data", None)
    if isinstance(data, tuple | list) and len(data) > 1:
        weights = _map_targets(np.asarray, data[2]) if len(data) > 2 and data[2] is not None else None
        return _map_targets(np.asarray, data[1]), weights
    if not hasattr(source, "sample"):
        return None, None
    parts, weights = [], []
    try:
        for batch in source.sample(_TARGET_BATCHES):  # kept batches: the pipeline is not read again
            if not isinstance(batch, tuple | list) or len(batch) < 2:
                return None, None
            parts.append(_map_targets(np.asarray, batch[1]))
            if len(batch) > 2 and batch[2] is not None:
                weights.append(_map_targets(np.asarray, batch[2]))
    except (TypeError, ValueError):
        return None, None
    if not parts:
        return None, None
    return _concatenate(parts), (_concatenate(weights) if weights else None)


def _concatenate(parts: list[Any]) -> Any:
    """Batches of arrays (or of tuples, lists or dicts of arrays) joined along the rows."""
    first = parts[0]
    if isinstance(first, Mapping):
        return {k: np.concatenate([p[k] for p in parts]) for k in first}
    if isinstance(first, tuple | list):
        return type(first)(np.concatenate([p[i] for p in parts]) for i in range(len(first)))
    return np.concatenate(parts)


def _map_targets(fn: Any, targets: Any) -> Any:
    """``fn`` applied to one target array, or to each of a tuple, list or dict of them."""
    if isinstance(targets, Mapping):
        return {k: fn(v) for k, v in targets.items()}
    if isinstance(targets, tuple | list):
        return type(targets)(fn(v) for v in targets)
    return fn(targets)


def _chance_level(trainer: Any, targets: Any, sample_weight: Any = None, batch_size: int | None = None) -> Baseline | None:
    """The chance level of the trainer's loss: for several outputs the weighted sum of theirs.

    ``sample_weight`` (one array: compute_loss gives it to every output) weighs the rows the way
    training does; weights in a structure (per output) give no chance level, not an unweighted one.
    ``batch_size`` gives a one-output model's :attr:`Baseline.first_steps`.
    """
    if isinstance(sample_weight, tuple | list | Mapping):
        return None
    heads = getattr(trainer, "heads", None)
    targets = _one_output_targets(trainer, targets)
    if not heads or len(heads) == 1 or not isinstance(targets, tuple | list | Mapping):
        return chance_loss(trainer.task, trainer.loss, targets, sample_weight, batch_size)
    per_output = [targets.get(h.name) for h in heads] if isinstance(targets, Mapping) else list(targets)
    if len(per_output) != len(heads):
        return None
    total, details = 0.0, []
    for head, y in zip(heads, per_output, strict=True):
        if head.loss is None:
            continue
        baseline = chance_loss(head.task, head.loss, y, sample_weight) if y is not None else None
        if baseline is None:
            return None
        total += head.weight * baseline.loss
        details.append(f"{head.name}: {baseline.detail}")
    return Baseline(total, "sum over the outputs (" + "; ".join(details) + ")")


def _one_output_targets(trainer: Any, targets: Any) -> Any:
    """A one-output model's targets given by its key (``{"out": y}`` for a model returning
    ``{"out": ...}``, as ``model.fit`` takes them) as the array itself; anything else as it is."""
    if isinstance(targets, Mapping) and len(targets) == 1 and len(getattr(trainer, "heads", ())) == 1:
        return next(iter(targets.values()))
    return targets


def _loss_text(trainer: Any, describe_loss: Any) -> str:
    heads = getattr(trainer, "heads", ())
    if len(heads) > 1:
        return ", ".join(f"{h.name}: {describe_loss(h.loss).describe()}" for h in heads if h.loss is not None)
    return describe_loss(heads[0].loss if heads else trainer.loss).describe()


def _one_task(trainer: Any) -> str:
    """The trainer's task, ``mixed`` when its outputs have different ones."""
    tasks = {h.task for h in getattr(trainer, "heads", ()) if h.loss is not None}
    return tasks.pop() if len(tasks) == 1 else trainer.task if isinstance(trainer.task, str) else "mixed"


def build_context(
    trainer: Any,
    targets: Any,
    *,
    initial_epoch: int = 0,
    batch_size: int | None = None,
    train_rows: int | None = None,
    has_validation: bool = False,
    callbacks: Iterable[Callback] = (),
    sample_weight: Any = None,
    validation_targets: Any = None,
    validation_sample_weight: Any = None,
    batch_rows: int | None = None,
) -> Context:
    """The :class:`Context` of a trainer about to fit.

    The chance level comes from ``targets``, weighted by ``sample_weight``; the validation loss's
    from ``validation_targets`` weighted by ``validation_sample_weight``, when they are known.
    Its level over the first steps is read at ``batch_size`` rows a batch, or ``batch_rows`` (a
    dataset's first batch) without one.
    """
    from trainkit.checks.compatibility import describe_loss

    baseline = _chance_level(trainer, targets, sample_weight, batch_size or batch_rows) if targets is not None else None
    # The validation loss's own levels (see trainkit.diagnosis.baseline): without class_weight,
    # on the validation rows' class mix.
    val_chance = None
    if baseline is not None and validation_targets is not None:
        val_chance = _chance_level(trainer, validation_targets, validation_sample_weight)
        if val_chance is not None and val_chance.loss <= _ONE_CLASS_SHARE * baseline.loss:
            # Validation rows a constant predicts exactly (one class: iris unsorted, validation_split's
            # last 30 rows all class 2) have no level to compare with, but the clipped cross-entropy
            # makes their ~0 a 2.4e-7 that passed as one: val_loss 0.64 read "268611732% of chance
            # ... e.g. random labels". The training rows' level stands in, as for no level at all.
            val_chance = None
    scale = _target_scale(trainer, targets)
    model = trainer.model
    return Context(
        task=_one_task(trainer),
        loss=_loss_text(trainer, describe_loss),
        chance_loss=baseline.loss if baseline else None,
        chance_detail=baseline.detail if baseline else "",
        val_chance_loss=val_chance.loss if val_chance else None,
        val_chance_detail=val_chance.detail if val_chance else "",
        uninformed_loss=baseline.uninformed if baseline else None,
        first_steps_loss=baseline.first_steps if baseline else None,
        regularization=_regularization(model) + _activity_penalty(trainer),
        layers=tuple(layer_names(model)),
        output_layers=tuple(output_layer_names(model, traced=getattr(getattr(trainer, "_probe", None), "output_layers", ()))),
        softmax_layers=_softmax_layers(model, getattr(trainer, "_probe", None)),
        sloped_layers=_layers_with(model, getattr(trainer, "_probe", None), NEGATIVE_SLOPED, "sloped_taps"),
        smooth_layers=_layers_with(model, getattr(trainer, "_probe", None), SMOOTH_RELU, "smooth_taps"),
        epochs=int(trainer.epochs) if trainer.epochs else None,
        initial_epoch=initial_epoch,
        learning_rate=_learning_rate(trainer.optimizer),
        optimizer=_optimizer_class(trainer.optimizer),
        clipping=_clipping(trainer.optimizer),
        epsilon=_epsilon(trainer.optimizer),
        beta_2=_beta_2(trainer.optimizer),
        weight_decay=_weight_decay(trainer.optimizer),
        batch_size=batch_size,
        train_rows=train_rows,
        has_validation=has_validation,
        early_stopping=_early_stopping_config(callbacks),
        target_mean=scale.mean if scale else None,
        target_std=scale.std if scale else None,
        target_columns=int(np.prod(np.shape(targets)[1:], dtype=np.int64)) if scale else None,
        check_codes=getattr(trainer, "data_check_codes", None),
        dropout=dropout_rate(model),
        initializers=layer_initializers(model),
        frozen_layers=frozen_layers(model),
        relative_loss=_relative_loss(trainer),
        regularizers=layer_regularizers(model),
        layer_inputs=layer_inputs(model),
        # A resumed run's first steps are its own run's, whatever the model held before the restore.
        trained_before=bool(getattr(trainer, "_model_trained_before", False)) and not getattr(trainer, "resumed_epochs", 0)
        and not getattr(trainer, "resumed_batches", 0),
    )


def _relative_loss(trainer: Any) -> bool:
    """Whether a regression output's loss reads ratios or logarithms of its targets (MAPE, MSLE)."""
    from trainkit.checks.compatibility import MAPE_NAMES, MSLE_NAMES, describe_loss

    heads = getattr(trainer, "heads", ())
    losses = [h.loss for h in heads if h.task in ("regression", None) and h.loss is not None] if heads else [trainer.loss]
    return any(describe_loss(loss).name in MAPE_NAMES | MSLE_NAMES for loss in losses)


def _target_scale(trainer: Any, targets: Any) -> TargetScale | None:
    """The scale of a one-output regression's training targets (``None`` for anything else)."""
    heads = getattr(trainer, "heads", ())
    targets = _one_output_targets(trainer, targets)
    if _one_task(trainer) != "regression" or len(heads) > 1 or targets is None or isinstance(targets, tuple | list | Mapping):
        return None
    return target_scale(targets)


def resumed_context(saved: Context, current: Context) -> Context:
    """The context of a resumed fit: ``current``, with what describes the run's start from ``saved``.

    The first epoch (how many epochs the run plans), the penalty in the first losses, the
    learning rate at the start and the chance level are the whole run's; the rest (epochs asked
    for, callbacks, validation) is this fit's.
    """
    return dataclasses.replace(current, initial_epoch=saved.initial_epoch, regularization=saved.regularization,
                               learning_rate=saved.learning_rate, chance_loss=saved.chance_loss,
                               chance_detail=saved.chance_detail, val_chance_loss=saved.val_chance_loss,
                               val_chance_detail=saved.val_chance_detail, uninformed_loss=saved.uninformed_loss,
                               first_steps_loss=saved.first_steps_loss)


def layer_names(model: Any) -> list[str]:
    """Every layer's name in model order (nested layers flattened, in their own order: by
    ``_flatten_layers`` a nested block's came last to first)."""
    reported = reported_names(model)  # a nested layer whose name another layer has: its path, as its statistics
    return [reported.get(id(layer), layer.name) for layer in _layers_in_order(model)]


#: The layer attributes that hold a weight (or output) penalty, as a recipe's layer keys (and
#: Keras's layer arguments) name them: not the kernel's alone, since an Embedding's or an LSTM's
#: recurrent penalty may be the one that dominates (an embeddings_regularizer of 16.7 was left
#: out, and the advice lowered a Dense's penalty of 0.002 instead).
REGULARIZER_ATTRIBUTES = ("kernel_regularizer", "recurrent_regularizer", "embeddings_regularizer", "depthwise_regularizer",
                          "pointwise_regularizer", "gamma_regularizer", "beta_regularizer", "bias_regularizer",
                          "activity_regularizer")


def layer_regularizers(model: Any) -> dict[str, dict[str, dict[str, float]]]:
    """:attr:`Context.regularizers`: each layer's penalties, ``{"dense": {"kernel_regularizer": {"l2": 1.0}}}``.

    The non-zero ``l1`` / ``l2`` factors of Keras's ``L1``, ``L2`` and ``L1L2``; ``{}`` for a
    penalty of another kind (``OrthogonalRegularizer``, a function of the user's), whose strength
    advice cannot name.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    cells: set[int] = set()
    for layer in _layers_in_order(model):
        # A recurrent layer's cell holds the penalties the layer was given: named once, by the layer.
        if id(layer) in cells:
            continue
        if getattr(layer, "cell", None) is not None:
            cells.add(id(layer.cell))
        found = {}
        for attribute in REGULARIZER_ATTRIBUTES:
            penalty = getattr(layer, attribute, None)
            if penalty is None:
                continue
            factors = {key: float(getattr(penalty, key)) for key in ("l1", "l2")
                       if isinstance(getattr(penalty, key, None), (int, float)) and getattr(penalty, key)}
            known = type(penalty).__name__ in ("L1", "L2", "L1L2")
            found[attribute] = factors if known else {}
        if found:
            out[layer.name] = found
    return out


def dropout_rate(model: Any) -> float:
    """The highest dropout rate of the model's layers (0 without dropout).

    ``rate`` of the Dropout family (Dropout, SpatialDropout*, GaussianDropout, AlphaDropout) and
    an RNN layer's ``dropout`` / ``recurrent_dropout``.
    """
    flatten = getattr(model, "_flatten_layers", None)
    layers = list(flatten(include_self=False)) if flatten is not None else list(getattr(model, "layers", []))
    rates = [0.0]
    for layer in layers:
        names = ("rate",) if "Dropout" in type(layer).__name__ else ("dropout", "recurrent_dropout")
        for name in names:
            value = getattr(layer, name, None)
            if _real_number(value) and 0 <= value < 1:
                rates.append(float(value))
    return max(rates)


def layer_initializers(model: Any) -> dict[str, dict[str, str]]:
    """:attr:`Context.initializers`: each weight layer's initializers, under its own name and under
    that of an activation layer right after it (``Dense(64)`` then ``ReLU()``).

    A normalisation layer in between breaks the link (the activation's input is rescaled, so the
    weights' start no longer sets it), as does a layer with weights of another kind
    (``DepthwiseConv2D``'s ``depthwise_initializer``, an ``Embedding``'s). A ``TimeDistributed``
    layer's are those of the layer it wraps.
    """
    out: dict[str, dict[str, str]] = {}
    last: dict[str, str] | None = None
    wrappers: list[Any] = []
    reported = reported_names(model)  # a nested layer whose name another layer has: by its path, as its statistics
    for layer in _layers_in_order(model):
        name = reported.get(id(layer), layer.name)
        if type(layer).__name__ == "TimeDistributed":
            wrappers.append(layer)
        kernel = getattr(layer, "kernel_initializer", None)
        if kernel is not None:
            bias = getattr(layer, "bias_initializer", None) if getattr(layer, "use_bias", True) else None
            last = out[name] = {"layer": name, "kernel": initializer_text(kernel), "bias": initializer_text(bias) if bias is not None else "none"}
        elif type(layer).__name__ in ACTIVATION_LAYER_CLASSES and last is not None:
            out[name] = last
        elif "Normalization" in type(layer).__name__ or layer.weights:
            # Weights without a kernel_initializer: their start, not the layer's before, sets the
            # activation's input (a ReLU after a DepthwiseConv2D took the Conv2D's before it).
            last = None
    for wrapper in wrappers:  # its statistics are its wrapped layer's, under its own name
        if wrapper.layer.name in out:
            out[wrapper.name] = out[wrapper.layer.name]
    return out


def layer_inputs(model: Any) -> dict[str, list[str]] | None:
    """:attr:`Context.layer_inputs`: by layer name, the layers whose outputs it takes.

    From the Keras graph's nodes (``_inbound_nodes``), for the model's layers and those of the
    models nested in it. A nested model takes what its callers give it and passes it to each of
    its layers, and everything inside it reaches what takes its output: edges that can only say
    "may feed", never miss a layer that does. ``None`` when no layer has a node (a subclassed
    model, called on tensors only): the layers are then taken as a chain.
    """
    inputs: dict[str, list[str]] = {}
    reported = reported_names(model)  # a nested layer whose name another layer has: its path, as its statistics

    def name(layer: Any) -> str:
        return reported.get(id(layer), layer.name)

    for layer in _layers_in_order(model):
        parents = inputs.setdefault(name(layer), [])
        for node in getattr(layer, "_inbound_nodes", None) or ():
            for parent in getattr(node, "parent_nodes", None) or ():
                operation = getattr(parent, "operation", None)
                if operation is None:
                    continue
                # What a nested model gives out may come from any of its layers.
                for source in (name(operation), *(name(inner) for inner in _layers_in_order(operation))):
                    if source not in parents:
                        parents.append(source)
        for inner in _layers_in_order(layer):
            # A nested model's layers take what the model is given (it stands for its inputs).
            inner_parents = inputs.setdefault(name(inner), [])
            if name(layer) not in inner_parents:
                inner_parents.append(name(layer))
    return inputs if any(inputs.values()) else None


def frozen_layers(model: Any) -> tuple[str, ...]:
    """:attr:`Context.frozen_layers`: the layers before the first one with trainable weights, in
    model order (a frozen base's, nested models' and their layers included).

    Their activations are the same at every step for the same rows: dead or saturated units there
    are the data and the fixed weights' doing, which no learning rate or initialiser of this run
    changes (a pretrained base's dead ReLUs were reported with "fix the initialisation").

    A subclassed model (or custom layer) holds its layers in the order its ``__init__`` assigns
    them, not the order ``call`` runs them: there a layer without weights (a ``ReLU``) may follow
    any of them, and ends the frozen layers; one with frozen weights (a pretrained base) does not.
    """
    names: list[str] = []
    _frozen_prefix(model, names, reported_names(model))
    return tuple(names)


def _frozen_prefix(layer: Any, names: list[str], reported: Mapping[int, str]) -> bool:
    """Adds to ``names`` the frozen layers inside ``layer`` (see :func:`frozen_layers`), depth
    first as :func:`_layers_in_order`; ``False`` once a layer that may be fed by trained ones ends them."""
    import keras

    # Sequential and Functional models hold their layers in the order they run.
    in_call_order = isinstance(layer, keras.Sequential) or hasattr(layer, "_operations")
    for inner in getattr(layer, "_layers", None) or getattr(layer, "layers", None) or []:
        if inner.trainable_weights or not (in_call_order or inner.weights):
            return False
        names.append(reported.get(id(inner), inner.name))  # a nested layer's path where its name repeats
        if not _frozen_prefix(inner, names, reported):
            return False
    return True


def _softmax_layers(model: Any, probe: Any) -> tuple[str, ...]:
    """The model's softmax layers, then the other taps the traced step saw go through a softmax
    (a subclassed model's ``record(name, tensor, "softmax")``)."""
    reported = reported_names(model)  # a nested layer whose name another layer has: its path, as its statistics
    layers = [reported.get(id(layer), layer.name) for layer in _layers_in_order(model) if layer_activation(layer) == "softmax"]
    return (*layers, *sorted(set(getattr(probe, "softmax_taps", ())) - set(layers)))


def _layers_with(model: Any, probe: Any, activations: Collection[str], taps: str) -> tuple[str, ...]:
    """The model's layers whose activation is one of ``activations`` (:data:`NEGATIVE_SLOPED`:
    not 0 below 0; :data:`SMOOTH_RELU`), then the other taps the traced step saw go through one
    (a ``record(name, tensor, "elu")``), which the probe lists as its attribute ``taps``."""
    layers = [layer.name for layer in _layers_in_order(model) if layer_activation(layer) in activations]
    return (*layers, *sorted(set(getattr(probe, taps, ())) - set(layers)))


def _layers_in_order(layer: Any) -> Iterator[Any]:
    """Every layer inside ``layer`` (nested models' and custom layers' too), depth first, each
    layer's in the order it holds them: ``_flatten_layers`` lists a nested model's layers last to
    first, which linked its ReLU to the Dense after it."""
    for inner in getattr(layer, "_layers", None) or getattr(layer, "layers", None) or []:
        yield inner
        yield from _layers_in_order(inner)


def initializer_text(initializer: Any) -> str:
    """An initializer as a recipe writes it: ``he_normal``, ``zeros``, ``constant(-10)``,
    ``random_normal(stddev=0.05)`` (the settings that differ from the class's defaults)."""
    if callable(initializer) and hasattr(initializer, "__name__"):
        # A plain function (Keras takes any callable): its own name, not "function".
        return str(initializer.__name__)
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(initializer).__name__).lower()
    try:
        config = initializer.get_config()
        defaults = type(initializer)().get_config()
    except Exception:  # a custom initializer: its name alone
        return name
    shown = {k: v for k, v in config.items() if k != "seed" and defaults.get(k) != v}
    if not shown:
        return name
    if list(shown) == ["value"]:
        return f"{name}({shown['value']:g})" if isinstance(shown["value"], int | float) else name
    return f"{name}({', '.join(f'{k}={v:g}' if isinstance(v, int | float) else f'{k}={v}' for k, v in shown.items())})"


def output_layer_names(model: Any, traced: Collection[str] = ()) -> list[str]:
    """Names of the layers that produce the model's outputs (the last layer when unknown).

    An output a nested model produces names that model and, inside it, its own output layers:
    their statistics are read too (through hooks), and a confident nested sigmoid output was
    judged by saturated-activations as a hidden layer.

    Args:
        model: The model.
        traced: The layers the traced step saw produce an output (:attr:`Probe.output_layers`):
            a subclassed model's, whose last layer is only a guess (an output layer created
            before its hidden layer was judged as a hidden one, and that hidden layer as the output).
    """
    import keras

    names = []
    try:
        for tensor in model.outputs or []:
            history = getattr(tensor, "_keras_history", None)
            operation = getattr(history, "operation", None) if history is not None else None
            if operation is not None:
                names.append(operation.name)
                if isinstance(operation, keras.Model):
                    names.extend(output_layer_names(operation))
    except (AttributeError, ValueError):
        names = []
    names += [name for name in sorted(traced) if name not in names]
    if not names and getattr(model, "layers", None):
        names = [model.layers[-1].name]
    return names


def _regularization(model: Any) -> float:
    """The model's weight penalties now (the part of the loss that is not the data's).

    Penalties that depend on the data (``activity_regularizer``, ``add_loss``) are left out: after
    a step has been traced, ``model.losses`` holds them as tensors of that graph, which have no
    value here (converting one raised and stopped ``fit``). The activity penalties are measured
    on a batch instead (:func:`_activity_penalty`).
    """
    try:
        losses = list(model.losses)
    except (TypeError, ValueError, AttributeError):
        return 0.0
    total = 0.0
    for loss in losses:
        try:
            total += float(np.asarray(loss))
        except (TypeError, ValueError, AttributeError, NotImplementedError):
            continue  # a symbolic tensor of a traced step
    return total


def _activity_penalty(trainer: Any) -> float:
    """The model's activity penalties on the probe batch now (:mod:`trainkit.activity_penalty`),
    which ``model.losses`` holds only as tensors of a traced step; 0.0 without any."""
    measurer = getattr(trainer, "_activity_penalty", None)
    return measurer.measure() if measurer is not None else 0.0


def _optimizer_class(optimizer: Any) -> str:
    """The optimizer's class name; a ``LossScaleOptimizer``'s inner one's, which sets the steps
    (the advice named ``{name: lossscaleoptimizer, ...}``, a name no recipe takes, and judged
    Adam's rates as plain SGD's)."""
    return type(getattr(optimizer, "inner_optimizer", optimizer)).__name__


def _clipping(optimizer: Any) -> dict[str, float] | None:
    """The optimizer's gradient clipping (Keras takes one of the three), ``None`` without."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    for key in ("clipnorm", "global_clipnorm", "clipvalue"):
        value = getattr(inner, key, None)
        if _real_number(value):
            return {key: float(value)}
    return None


#: Optimizers whose step divides by the gradients' running size plus ``epsilon``.
_EPSILON_DIVIDES = ("Adam", "AdamW", "Nadam", "Adamax", "RMSprop", "Adagrad")


def _epsilon(optimizer: Any) -> float | None:
    """The ``epsilon`` of an optimizer that divides its step by the gradients' running size plus it, ``None`` for others."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    value = getattr(inner, "epsilon", None)
    if type(inner).__name__ not in _EPSILON_DIVIDES or not _real_number(value):
        return None
    return float(value)


def _beta_2(optimizer: Any) -> float | None:
    """Adam's and AdamW's ``beta_2`` (their epsilon meets the second moment before its bias correction), ``None`` for others."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    value = getattr(inner, "beta_2", None)
    return float(value) if type(inner).__name__ in ("Adam", "AdamW") and _real_number(value) else None


def _weight_decay(optimizer: Any) -> float | None:
    """The optimizer's decoupled ``weight_decay`` when above 0, ``None`` without."""
    value = getattr(getattr(optimizer, "inner_optimizer", optimizer), "weight_decay", None)
    return float(value) if _real_number(value) and value > 0 else None


def _real_number(value: Any) -> bool:
    """A real number but a bool, numpy's included: Keras keeps ``Dropout(np.float32(0.5)).rate`` and
    ``clipnorm=np.float32(1.0)`` as given, and an ``int | float`` test read them as no dropout and
    no clipping (a run clipping at 1.0 was told to add clipnorm: 1.0)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _learning_rate(optimizer: Any) -> float | None:
    """The optimizer's learning rate when it is one number (a variable, which a callback such as
    ``ReduceLROnPlateau`` may still lower); ``None`` for a schedule or a callable.

    A schedule's value when training begins is not the run's rate: a warm-up from 0 read as 0,
    and a run trained with statistics off was told "the learning rate was 0 for the whole run",
    with statistics on to raise the rate to 0.
    """
    import keras

    rate = getattr(getattr(optimizer, "inner_optimizer", optimizer), "_learning_rate", None)
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule) or (callable(rate) and not isinstance(rate, keras.Variable)):
        return None
    try:
        return float(np.asarray(optimizer.learning_rate))
    except (TypeError, ValueError, AttributeError):
        return None


def _early_stoppers(callbacks: Iterable[Callback]) -> Iterator[Any]:
    """trainkit's EarlyStopping callbacks, and Keras's that ``fit`` runs wrapped in a KerasCallback
    (the diagnosis told a run that Keras's had stopped, and restored, to add early stopping)."""
    import keras

    from trainkit.callbacks.early_stopping import EarlyStopping
    from trainkit.callbacks.keras_callbacks import KerasCallback

    for cb in callbacks:
        if isinstance(cb, EarlyStopping):
            yield cb
        elif isinstance(cb, KerasCallback) and isinstance(cb.callback, keras.callbacks.EarlyStopping):
            yield cb.callback


def _early_stopping_config(callbacks: Iterable[Callback]) -> dict[str, Any] | None:
    for cb in _early_stoppers(callbacks):
        # Python values: Keras's callback keeps patience=np.int64(3) as given, which json.dumps refuses.
        return {"monitor": str(cb.monitor), "patience": int(cb.patience), "restore_best_weights": bool(cb.restore_best_weights)}
    return None


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


def _early_stopping_outcome(callbacks: Iterable[Callback]) -> dict[str, Any] | None:
    """Whether an EarlyStopping callback stopped the run, and which epoch's weights it restored."""
    from trainkit.callbacks.early_stopping import EarlyStopping

    for cb in _early_stoppers(callbacks):
        if isinstance(cb, EarlyStopping):
            stopped, restored = cb.stopped_epoch, cb.restored_epoch
        else:
            # Keras's: stopped_epoch 0 until it stops (never at epoch 0); its on_train_end, which
            # runs after this one, puts back the best weights whenever it kept them.
            stopped = cb.stopped_epoch if cb.stopped_epoch > 0 else None
            restored = cb.best_epoch if cb.restore_best_weights and cb.best_weights is not None else None
        if stopped is not None or restored is not None:
            return {"stopped_epoch": stopped, "best_epoch": cb.best_epoch, "restored_epoch": restored}
    return None


def _recurrent_reach(trainer: Any) -> list[dict[str, Any]]:
    """How far back each recurrent layer's gradient reaches (:mod:`trainkit.time_gradients`).

    A failure to measure it is reported and skipped: a diagnostic extra must not fail a run that
    trained.
    """
    measurer = getattr(trainer, "_time_gradients", None)
    if measurer is None:
        return []
    try:
        return measurer.measure()
    except Exception as err:
        print(f"trainkit: could not measure how far back the recurrent layers' gradients reach: {type(err).__name__}: {err}", file=sys.stderr)
        return []
