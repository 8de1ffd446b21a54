"""Checkpoints that resume a run exactly: weights, optimizer, RNG and metric state, progress.

Keras 3 metrics are not ``Trackable`` and a model's dropout ``SeedGenerator`` state is not restored
through ``tf.train.Checkpoint(model=...)`` (measured on Keras 3.15), so the checkpoint holds plain
lists of the underlying ``tf.Variable``s: every model variable (weights, batch-norm statistics,
seed-generator states), every optimizer variable, the trainer's metric accumulators and its global
step. Everything that is not a tensor (epoch, batches done within the epoch, History, callback
state) goes to a JSON file beside each checkpoint, written atomically after the checkpoint itself:
a checkpoint without its JSON (a process killed in between) is never restored. Records that only
grow with the run (the diagnosis's one per epoch) go to a journal the checkpoints share
(:mod:`trainkit.journal`), each written once.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf

from trainkit.errors import RecipeError, RunDirError
from trainkit.journal import JOURNAL_NAME, Journal
from trainkit.runs import write_atomic

CHECKPOINT_SUBDIR = "checkpoints"
#: ``(every record so far, encode)``: what :meth:`TrainingCheckpoint.save` puts in the journal.
JournalRecords = tuple[Sequence[Any], Callable[[Any], Mapping[str, Any]]]
#: Keys of a progress record: the journal's mark when it was written, and (in what
#: :meth:`TrainingCheckpoint.restore_latest` returns) the journal's records up to that mark, or
#: ``None`` when they no longer read back.
JOURNAL_MARK, JOURNAL_RECORDS = "journal", "journal_records"


def _tf_variables(variables: Sequence[Any]) -> list[tf.Variable]:
    """The ``tf.Variable`` behind each Keras variable (Keras 3 wraps them); a ``tf.Variable`` as
    it is (its ``value`` is a method)."""
    return [v if isinstance(v, tf.Variable) else getattr(v, "value", v) for v in variables]


class TrainingCheckpoint:
    """Saves and restores the complete state of a training run.

    Args:
        directory: Where checkpoints go (``<run_dir>/checkpoints``).
        model_variables: Every variable of the model (``model.variables``).
        optimizer_variables: Every variable of the optimizer (built before this is created).
        metric_variables: The accumulators of the epoch's running loss and metrics.
        global_step: The trainer's step counter.
        own_variables: The state a trainer subclass holds itself (its seed generators, metrics,
            variables, layers outside the model), by the path of the attribute that holds it
            (``loss_tracker``, ``accumulated[0]``), then by the variable's index within it; a
            group of its own only when there is some, so a plain trainer's checkpoints keep
            their layout.
        max_to_keep: How many checkpoints to keep.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        model_variables: Sequence[Any],
        optimizer_variables: Sequence[Any],
        metric_variables: Sequence[Any],
        global_step: tf.Variable,
        max_to_keep: int = 3,
        own_variables: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._groups = {
            "model": _tf_variables(model_variables),
            "optimizer": _tf_variables(optimizer_variables),
            "metrics": _tf_variables(metric_variables),
        }
        if own_variables:
            self._groups[OWN] = _tf_variables([variable for held in own_variables.values() for variable in held.values()])
        self._checkpoint = tf.train.Checkpoint(**self._groups, global_step=global_step)
        self._manager = tf.train.CheckpointManager(self._checkpoint, str(self.directory), max_to_keep=max_to_keep)
        self.journal = Journal(self.directory / JOURNAL_NAME)

    def save(self, progress: Mapping[str, Any], journal: JournalRecords | None = None) -> Path:
        """Writes a checkpoint and its progress record; returns the checkpoint prefix.

        Args:
            progress: JSON-serialisable state: ``epoch``, ``batches_done``, ``history``, ...
            journal: Records that only grow with the run, for the journal (only those not
                written yet are encoded); :meth:`restore_latest` returns them under
                ``"journal_records"``.
        """
        prefix = Path(self._manager.save(checkpoint_number=int(self._checkpoint.global_step.numpy())))
        self._write_record(prefix, progress, journal)
        self._remove_orphan_records()
        return prefix

    def rewrite_record(self, prefix: Path, progress: Mapping[str, Any], journal: JournalRecords | None = None) -> None:
        """Replaces the progress record of the checkpoint at ``prefix``, if it is still kept."""
        if str(prefix) in self._manager.checkpoints:
            self._write_record(prefix, progress, journal)

    def _write_record(self, prefix: Path, progress: Mapping[str, Any], journal: JournalRecords | None) -> None:
        # The journal first: a record never points past what the journal holds on disk.
        record = {**progress, JOURNAL_MARK: self.journal.append(*journal)} if journal is not None else dict(progress)
        write_atomic(prefix.with_name(prefix.name + ".json"), json.dumps(record, allow_nan=True))

    def _remove_orphan_records(self) -> None:
        # The manager deletes checkpoints beyond max_to_keep but knows nothing of their records.
        kept = {Path(p + ".json").name for p in self._manager.checkpoints}
        for record in self.directory.glob("*.json"):
            if record.name not in kept:
                record.unlink(missing_ok=True)

    def _records(self, damaged: list[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each checkpoint that has a readable progress record, with that record, newest first.

        A record that does not read back as one (cut short, not UTF-8, not a mapping with its
        epoch) is skipped, and named in ``damaged`` when given.
        """
        for prefix in reversed(self._prefixes()):
            sidecar = Path(prefix + ".json")
            if not sidecar.exists():
                continue
            try:
                record = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                problem = _first_line(err)
            else:
                if isinstance(record, dict) and isinstance(record.get("epoch"), int):
                    yield prefix, record
                    continue
                problem = "its record holds no epoch"
            if damaged is not None:
                damaged.append(f"{sidecar.name} ({problem})")

    def _prefixes(self) -> list[str]:
        """The checkpoints, oldest first: as the manager's state file lists them, or, when that
        file is missing or damaged (it lists none), as the directory holds them."""
        if self._manager.checkpoints:
            return list(self._manager.checkpoints)
        found = [(int(m.group(1)), str(index.with_suffix(""))) for index in self.directory.glob("ckpt-*.index")
                 if (m := re.fullmatch(r"ckpt-(\d+)", index.stem))]
        return [prefix for _, prefix in sorted(found)]

    def latest(self) -> tuple[str, dict[str, Any]] | None:
        """The newest checkpoint that has a progress record, with that record; ``None`` if none."""
        return next(self._records(), None)

    def restore_latest(self) -> dict[str, Any] | None:
        """Restores the newest complete checkpoint that reads back; returns its record, or ``None``.

        A damaged checkpoint (a truncated data file, a deleted index) is skipped, with a warning
        on stderr, for the next older one, as one without its record is.

        Raises:
            RunDirError: ``checkpoint-corrupt`` when checkpoints exist but none reads back.
            RecipeError: ``resume-mismatch`` when the checkpoint holds variables of another model.
        """
        damaged: list[str] = []
        for prefix, progress in self._records(damaged):
            try:
                # Compared first: a restore that fails on a shape leaves TensorFlow's warnings
                # about unrestored values under the error, and restores some variables.
                mismatch = self._mismatch(prefix)
                if mismatch is None:
                    self._checkpoint.restore(prefix).assert_existing_objects_matched()
            except _DAMAGED as err:
                damaged.append(f"{Path(prefix).name} ({_first_line(err)})")
                continue
            if mismatch is not None:
                # Another model (a changed layer width, an extra layer): no checkpoint of the run fits.
                raise RecipeError("resume-mismatch", f"The checkpoint {prefix} does not fit this run's model and trainer: {mismatch}. "
                                                     "Resume with the same recipe (model) and --set options, or start a new run.")
            if damaged:
                print(f"warning: [checkpoint-corrupt] Skipped damaged checkpoint(s) {', '.join(damaged)}; resuming from {Path(prefix).name}.", file=sys.stderr)
            return self._with_journal(progress)
        if damaged:
            raise RunDirError("checkpoint-corrupt", f"No checkpoint in {self.directory} can be read back: {'; '.join(damaged)}. "
                                                    "Start a new run without --resume.")
        return None

    def _with_journal(self, progress: dict[str, Any]) -> dict[str, Any]:
        """The restored ``progress`` with its journal records; later appends go after them."""
        mark = progress.get(JOURNAL_MARK)
        if mark is None:
            return progress
        records = self.journal.read(mark)
        if records is None:
            print(f"warning: [checkpoint-corrupt] {self.journal.path} does not hold the {mark['count']} records the checkpoint "
                  "was written with; the resumed run is diagnosed from where it resumes.", file=sys.stderr)
        self.journal.continue_from(mark if records is not None else None)
        return {**progress, JOURNAL_RECORDS: records}

    def _mismatch(self, prefix: str) -> str | None:
        """How the variables saved at ``prefix`` differ from this run's (count, shapes); ``None``: they fit."""
        saved = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
        saved_groups = {key.split("/", 1)[0] for key in saved if key.endswith(_VALUE)} - {"global_step", "save_counter"}
        extra = sorted(saved_groups - set(self._groups))
        if extra:  # restored with assert_existing_objects_matched, it would be dropped in silence
            return f"it holds {', '.join(extra)} variables this run has none of"
        for group, variables in self._groups.items():
            count = sum(1 for key in saved if key.startswith(f"{group}/") and key.endswith(_VALUE))
            if group == OWN and count == 0:
                return (f"it holds none of the state a Trainer subclass keeps itself (its seed generators, metrics, variables), "
                        f"this run has {len(variables)}: written by another class, or by a trainkit that did not checkpoint it yet, "
                        "it cannot be resumed exactly")
            if count != len(variables):
                return f"it holds {count} {group} variables, this run has {len(variables)}"
            for i, variable in enumerate(variables):
                shape = list(saved[f"{group}/{i}/{_VALUE}"])
                if shape != variable.shape.as_list():
                    return f"{group} variable {variable.name} has shape {shape} there, {variable.shape.as_list()} here"
        return None


#: The checkpoint group of the state a Trainer subclass keeps itself (only when it keeps some).
OWN = "own"

#: The key suffix of a variable's value in a checkpoint (``model/0/.ATTRIBUTES/VARIABLE_VALUE``).
_VALUE = ".ATTRIBUTES/VARIABLE_VALUE"

#: What reading a damaged checkpoint raises: a truncated data file reads short (``IndexError``),
#: a missing or mangled file is a ``NotFoundError`` / ``DataLossError``.
_DAMAGED = (tf.errors.OpError, IndexError)


def _first_line(err: BaseException) -> str:
    """The first line of an error's message (TensorFlow's run to several), with its type."""
    text = str(err.message if isinstance(err, tf.errors.OpError) else err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"
