"""Checkpoints that resume a run exactly: weights, optimizer, RNG and metric state, progress.

Keras 3 metrics are not ``Trackable`` and a model's dropout ``SeedGenerator`` state is not restored
through ``tf.train.Checkpoint(model=...)`` (measured on Keras 3.15), so the checkpoint holds plain
lists of the underlying ``tf.Variable``s: every model variable (weights, batch-norm statistics,
seed-generator states), every optimizer variable, the trainer's metric accumulators and its global
step. The state a Trainer subclass keeps itself is a group of its own, keyed by the attributes
that hold it, so that a resume under renamed attributes is refused rather than restored into the
wrong ones. Everything that is not a tensor (epoch, batches done within the epoch, History, callback
state) goes to a JSON file beside each checkpoint, written atomically after the checkpoint itself:
a checkpoint without its JSON (a process killed in between) is never restored. Records that only
grow with the run (the diagnosis's one per epoch) go to a journal the checkpoints share
(:mod:`trainkit.journal`), each written once.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
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
        required: Keys of the progress record besides ``epoch`` that a record must hold to be
            restored (a resume reads them): one without them is skipped as damaged.
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
        required: Collection[str] = (),
    ) -> None:
        self.directory = Path(directory)
        self._required = frozenset(required)
        self._groups = {
            "model": _tf_variables(model_variables),
            "optimizer": _tf_variables(optimizer_variables),
            "metrics": _tf_variables(metric_variables),
        }
        # A dict of dicts: tf.train.Checkpoint keys each variable by its path through them
        # (own/loss_tracker/0/...), as it keys the other groups' variables by their position.
        self._own = {path: dict(zip(held, _tf_variables(list(held.values())), strict=True))
                     for path, held in (own_variables or {}).items()}
        self._global_step = global_step
        self._checkpoint = tf.train.Checkpoint(**self._groups, **({OWN: self._own} if self._own else {}), global_step=global_step)
        self._max_to_keep = max_to_keep
        self._manager = self._make_manager(max_to_keep)
        self.journal = Journal(self.directory / JOURNAL_NAME)

    def _make_manager(self, max_to_keep: int) -> tf.train.CheckpointManager:
        """TensorFlow's manager of the checkpoints, which reads their list from ``checkpoints/checkpoint``.

        A list it cannot parse it ignores (with a log line of its own), and an empty one or one
        that is not UTF-8 (a disk error, a file overwritten) it raised on, a ``ValueError``
        traceback on every resume of the run. Such a file is set aside (``checkpoint.damaged``),
        with a warning, and the list is written again from the checkpoints' files
        (:meth:`_found_prefixes`), as it is when the file is missing: a manager that lists none of
        them never deletes them, so they were kept forever beyond ``max_to_keep``, without the
        progress records :meth:`save` deletes for the checkpoints it does not list.
        """
        state = self.directory / "checkpoint"
        try:
            manager = tf.train.CheckpointManager(self._checkpoint, str(self.directory), max_to_keep=max_to_keep)
        except ValueError as err:  # UnicodeDecodeError is one too
            if not state.is_file():
                raise
            problem: str | None = _first_line(err)
        else:
            found = self._found_prefixes()
            if manager.checkpoints or not found:
                return manager
            problem = "it lists none of the checkpoints" if state.is_file() else None
        if problem is not None:
            state.replace(state.with_name("checkpoint.damaged"))
            print(f"warning: [checkpoint-corrupt] {state}, TensorFlow's list of the checkpoints, does not read back ({problem}); "
                  "set aside as checkpoint.damaged, the checkpoints are found from their files.", file=sys.stderr)
        found = [Path(prefix) for prefix in self._found_prefixes()]
        if found:
            # TensorFlow's text format of the list (paths relative to the directory). Each gets a
            # time (its index file's): a checkpoint listed without one counts as preserved, which
            # the manager never deletes either.
            lines = [f'model_checkpoint_path: "{found[-1].name}"', *(f'all_model_checkpoint_paths: "{p.name}"' for p in found),
                     *(f"all_model_checkpoint_timestamps: {p.with_name(p.name + '.index').stat().st_mtime!r}" for p in found)]
            write_atomic(state, "\n".join(lines) + "\n")
        return tf.train.CheckpointManager(self._checkpoint, str(self.directory), max_to_keep=max_to_keep)

    def save(self, progress: Mapping[str, Any], journal: JournalRecords | None = None) -> Path:
        """Writes a checkpoint and its progress record; returns the checkpoint prefix.

        Args:
            progress: JSON-serialisable state: ``epoch``, ``batches_done``, ``history``, ...
            journal: Records that only grow with the run, for the journal (only those not
                written yet are encoded); :meth:`restore_latest` returns them under
                ``"journal_records"``.
        """
        number = int(self._checkpoint.global_step.numpy())
        try:
            prefix = Path(self._manager.save(checkpoint_number=number))
        except Exception:
            # TensorFlow writes the shards to <prefix>_temp/ and leaves it behind when a write
            # fails (a full disk): a dead directory, as large as the checkpoint, in every run.
            shutil.rmtree(self.directory / f"ckpt-{number}_temp", ignore_errors=True)
            raise
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
                problem = _record_problem(record, self._required)
                if problem is None:
                    yield prefix, record
                    continue
            if damaged is not None:
                damaged.append(f"{sidecar.name} ({problem})")

    def _prefixes(self) -> list[str]:
        """The checkpoints, oldest first: as the manager's state file lists them, or, when that
        file is missing or damaged (it lists none), as the directory holds them."""
        if self._manager.checkpoints:
            return list(self._manager.checkpoints)
        return self._found_prefixes()

    def _found_prefixes(self) -> list[str]:
        """The checkpoints the directory holds (by their index files), oldest first."""
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
        # The list as the directory's state file has it now, not as this manager remembers it:
        # another trainer (a notebook cell resuming the run) or process may have saved since. A
        # trainer's own resume then found only the checkpoints it had kept, deleted by then
        # ("Nothing to resume"), or restored an older one of them in silence.
        self._manager = self._make_manager(self._max_to_keep)
        damaged: list[str] = []
        for prefix, progress in self._records(damaged):
            by_position = False
            try:
                saved = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
                # Compared first: a restore that fails on a shape leaves TensorFlow's warnings
                # about unrestored values under the error, and restores some variables.
                mismatch = self._mismatch(saved)
                if mismatch is None:
                    by_position = bool(self._own) and _own_by_position(saved)
                    checkpoint = self._by_position() if by_position else self._checkpoint
                    checkpoint.restore(prefix).assert_existing_objects_matched()
            except _DAMAGED as err:
                damaged.append(f"{Path(prefix).name} ({_first_line(err)})")
                continue
            if mismatch is not None:
                # Another model (a changed layer width, an extra layer), or a subclass's state under
                # other attributes: no checkpoint of the run fits.
                problem, remedy = mismatch
                raise RecipeError("resume-mismatch", f"The checkpoint {prefix} does not fit this run's model and trainer: {problem}. {remedy}")
            if by_position:
                print(f"warning: [checkpoint-own-by-position] {Path(prefix).name} was written by an older trainkit, which kept the state "
                      "of a Trainer subclass's attributes by their order, not their names: restored so, it went into the wrong "
                      "attributes if one was renamed, added or removed since (start a new run then). Checkpoints from here on "
                      "keep it by attribute name.", file=sys.stderr)
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

    def _by_position(self) -> tf.train.Checkpoint:
        """This run's variables as an older trainkit laid them out, to restore its checkpoints:
        the subclass's own state one list, its attributes in the order of their names."""
        return tf.train.Checkpoint(**self._groups, **{OWN: self._own_list()}, global_step=self._global_step)

    def _own_list(self) -> list[tf.Variable]:
        """The subclass's own state as one list, in the order of its attributes' names."""
        return [variable for held in self._own.values() for variable in held.values()]

    def _mismatch(self, saved: Mapping[str, list[int]]) -> tuple[str, str] | None:
        """How the variables of a checkpoint (their shapes by key) differ from this run's.

        Returns:
            ``None`` when they fit, else what differs and how to go on.
        """
        saved_groups = {key.split("/", 1)[0] for key in saved if key.endswith(_VALUE)} - {"global_step", "save_counter"}
        extra = sorted(saved_groups - set(self._groups) - ({OWN} if self._own else set()))
        if extra:  # restored with assert_existing_objects_matched, it would be dropped in silence
            return f"it holds {', '.join(extra)} variables this run has none of", _SAME_RUN
        groups = dict(self._groups)
        by_position = bool(self._own) and _own_by_position(saved)
        if by_position:  # an older trainkit's layout (see _by_position): compared as it compared it
            groups[OWN] = self._own_list()
        for group, variables in groups.items():
            problem = _positional_mismatch(saved, group, variables)
            if problem is not None:
                return problem, _SAME_RUN
        if self._own and OWN not in saved_groups:
            return ("it holds none of the state a Trainer subclass keeps itself (its seed generators, metrics, variables), "
                    f"this run has {len(self._own_list())}: written by another class, or by a trainkit that did not "
                    "checkpoint it yet, it cannot be resumed exactly"), _SAME_RUN
        return self._own_mismatch(saved) if self._own and not by_position else None

    def _own_mismatch(self, saved: Mapping[str, list[int]]) -> tuple[str, str] | None:
        """How the subclass's own state saved by attribute differs from this run's, as
        :meth:`_mismatch` says it."""
        there = _saved_own(saved)
        missing, new = sorted(set(there) - set(self._own)), sorted(set(self._own) - set(there))
        if missing or new:
            # Restored by position, one attribute's state would go into another's of the same shape.
            return ("the state the Trainer subclass keeps itself is held by other attributes there than here (one renamed, "
                    f"added or removed since the checkpoint was written): missing from this run: {_attributes(missing)}; "
                    f"new in this run: {_attributes(new)}"), _SAME_ATTRIBUTES
        for path, held in self._own.items():
            if set(held) != set(there[path]):
                return f"self.{path} holds {len(there[path])} variables there, {len(held)} here", _SAME_ATTRIBUTES
            for index, variable in held.items():
                shape = there[path][index]
                if shape != variable.shape.as_list():
                    return f"own variable {variable.name} (self.{path}) has shape {shape} there, {variable.shape.as_list()} here", _SAME_RUN
        return None


def newest_record(directory: Path) -> dict[str, Any] | None:
    """The progress record of the newest checkpoint in ``directory`` that has one that reads back
    as a mapping, or ``None``; read before a :class:`TrainingCheckpoint` can be made (what the
    optimizer is built for comes first), so without its checks: a restore makes them."""
    found = [(int(m.group(1)), index.with_suffix(".json")) for index in directory.glob("ckpt-*.index")
             if (m := re.fullmatch(r"ckpt-(\d+)", index.stem))]
    for _, sidecar in sorted(found, reverse=True):
        try:
            record = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            return record
    return None


#: The checkpoint group of the state a Trainer subclass keeps itself (only when it keeps some).
OWN = "own"

#: The key suffix of a variable's value in a checkpoint (``model/0/.ATTRIBUTES/VARIABLE_VALUE``).
_VALUE = ".ATTRIBUTES/VARIABLE_VALUE"

#: How to go on from a checkpoint of another model or recipe, and from one of a subclass whose
#: attributes are not those it was written with.
_SAME_RUN = "Resume with the same model and settings the run was trained with (a recipe's: the same recipe and --set options), or start a new run."
_SAME_ATTRIBUTES = ("Resume with the Trainer subclass's attributes named as they were when the run was written, "
                    "or start a new run.")

#: What reading a damaged checkpoint raises: a truncated data file reads short (``IndexError``),
#: a missing or mangled file is a ``NotFoundError`` / ``DataLossError``.
_DAMAGED = (tf.errors.OpError, IndexError)


#: The type of each key of a progress record that a resume reads, when the record has it. A record
#: with one of another type (edited by hand, cut to valid JSON) was a KeyError, AttributeError or
#: ValueError traceback on resume.
_RECORD_TYPES: dict[str, tuple[type, str]] = {
    "epoch": (int, "an integer"), "batches_done": (int, "an integer"), "seed": (int, "an integer"), "history": (dict, "a mapping"),
    "epochs": (list, "a list"), "dataset_first_epoch": (int, "an integer"), "findings": (list, "a list"), "callbacks": (dict, "a mapping"),
    "epoch_sums": (dict, "a mapping"), "diagnosis": (dict, "a mapping"), "event_files": (dict, "a mapping"),
    "hparams": (dict, "a mapping"), JOURNAL_MARK: (dict, "a mapping"), "activity_penalty": (list, "a list"),
}


def _record_problem(record: Any, required: Collection[str] = ()) -> str | None:
    """What keeps a progress record read back from JSON from being restored, or ``None``.

    Args:
        record: The record as JSON gave it.
        required: Keys it must hold besides ``epoch`` (others may be missing, or ``None``).

    The types a resume reads, not every value: enough that a record edited by hand (or cut to
    valid JSON) is skipped as damaged rather than failing the resume with a traceback.
    """
    if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
        return "its record holds no epoch"
    for key, (kind, what) in _RECORD_TYPES.items():
        value = record.get(key)
        if value is None:
            if key in required:
                return f"its record has no {key}"
        elif not isinstance(value, kind) or isinstance(value, bool):
            return f"its record's {key} is not {what}"
    mark = record.get(JOURNAL_MARK) or {}
    parts = [
        ("journal mark", all(isinstance(mark.get(k), int) for k in ("count", "size", "crc32")) if mark else True),
        ("event_files", all(isinstance(v, int) for v in (record.get("event_files") or {}).values())),
        ("findings", all(isinstance(f, dict) for f in record.get("findings") or [])),
        ("epoch_sums", all(isinstance(v, list) and len(v) == 2 for v in (record.get("epoch_sums") or {}).values())),
        ("activity_penalty", all(isinstance(v, int | float) for v in record.get("activity_penalty") or [])),
    ]
    bad = [name for name, fine in parts if not fine]
    return f"its record's {bad[0]} does not read back" if bad else None


def _first_line(err: BaseException) -> str:
    """The first line of an error's message (TensorFlow's run to several), with its type."""
    text = str(err.message if isinstance(err, tf.errors.OpError) else err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _positional_mismatch(saved: Mapping[str, list[int]], group: str, variables: Sequence[tf.Variable]) -> str | None:
    """How the variables of a list group (``model/0/...``) saved differ from ``variables`` in
    number or shape; ``None``: they fit."""
    count = sum(1 for key in saved if key.startswith(f"{group}/") and key.endswith(_VALUE))
    if count != len(variables):
        return f"it holds {count} {group} variables, this run has {len(variables)}"
    for i, variable in enumerate(variables):
        shape = list(saved[f"{group}/{i}/{_VALUE}"])
        if shape != variable.shape.as_list():
            return f"{group} variable {variable.name} has shape {shape} there, {variable.shape.as_list()} here"
    return None


def _own_paths(saved: Mapping[str, list[int]]) -> Iterator[tuple[list[str], list[int]]]:
    """The path of each variable of the own group saved, below the group, with its shape:
    ``["loss_tracker", "0"]`` (by attribute), or ``["3"]`` as an older trainkit keyed it (by position)."""
    for key, shape in saved.items():
        if key.startswith(f"{OWN}/") and key.endswith(f"/{_VALUE}"):
            yield [_unescape(name) for name in key[len(OWN) + 1:-len(_VALUE) - 1].split("/")], list(shape)


def _own_by_position(saved: Mapping[str, list[int]]) -> bool:
    """Whether a checkpoint keys the own group by position, as trainkit did before it keyed it by
    attribute (an attribute's path is always followed by the variable's index)."""
    return any(len(path) == 1 for path, _ in _own_paths(saved))


def _saved_own(saved: Mapping[str, list[int]]) -> dict[str, dict[str, list[int]]]:
    """The own group saved by attribute: each attribute's path -> its variables' shapes by index."""
    found: dict[str, dict[str, list[int]]] = {}
    for path, shape in _own_paths(saved):
        if len(path) == 2:
            found.setdefault(path[0], {})[path[1]] = shape
    return found


def _unescape(name: str) -> str:
    """A name as it was before a checkpoint key escaped it (TensorFlow writes ``.`` as ``..`` and
    ``/`` as ``.S``, so that ``/`` only separates the names along a path)."""
    return re.sub(r"\.([.S])", lambda m: "." if m.group(1) == "." else "/", name)


def _attributes(paths: Sequence[str]) -> str:
    """``self.a, self.b`` for attribute paths; ``none`` for none."""
    return ", ".join(f"self.{path}" for path in paths) or "none"
