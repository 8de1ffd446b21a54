"""From a recipe to a finished run: data, model, checks, run directory, training, report.

The CLI is a thin shell around :func:`prepare_run` and :func:`train_recipe`; tests and notebooks
call them directly. Everything that can be refused (recipe, names, compatibility, data) is refused
in :func:`prepare_run`, before a run directory exists, so bad input never leaves one behind.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import yaml

from trainkit import class_weights
from trainkit.callbacks import Callback, EarlyStopping
from trainkit.callbacks.base import flat_callbacks
from trainkit.callbacks.keras_callbacks import KerasCallback
from trainkit.checkpoint import CHECKPOINT_SUBDIR
from trainkit.data import DataSplits, prepare_data, standardization
from trainkit.diagnosis.readback import run_order
from trainkit.distribute import is_chief, scope, strategy_from_name
from trainkit.errors import (
    NOTHING_TRAINED,
    RecipeError,
    RunDirError,
    TrainingInterrupted,
    UnknownNameError,
)
from trainkit.findings import Finding
from trainkit.history import History
from trainkit.interrupt import (
    SecondInterrupt,
    Terminated,
    restore_sigterm,
    sigterm_as_interrupt,
    stop_on_signals,
)
from trainkit.model_file import remove_stale_model_file, save_model_file
from trainkit.modelbuild import build_from_recipe, model_code_error
from trainkit.recipe import Recipe
from trainkit.recipe_text import one_line, parse_yaml
from trainkit.run_lock import in_use_error, training_process
from trainkit.runs import (
    check_writable,
    create_run_dir,
    is_storage_failure,
    json_text,
    new_directories,
    os_error_reason,
    refuse_a_run_directory,
    remove_run_dir,
    unwritable_part,
    write_atomic,
)
from trainkit.trainer import Trainer
from trainkit.writers.console import format_logs


@dataclasses.dataclass
class PreparedRun:
    """A recipe turned into data and a checked trainer, with nothing written to disk yet."""

    recipe: Recipe
    splits: DataSplits
    trainer: Trainer

    @property
    def findings(self) -> list[Finding]:
        """Warnings the compatibility and data checks recorded."""
        return self.trainer.findings


@dataclasses.dataclass
class RunResult:
    """What a finished (or stopped) run produced."""

    run_dir: Path
    history: History
    trainer: Trainer
    seconds: float
    status: str = "completed"  # or "interrupted", "nan-loss", "stopped" (early stopping), "failed" (an error)
    resumed_epochs: int = 0  # epochs the run had trained before this (resumed) process
    resumed_batches: int = 0  # and batches of the epoch it resumed in (a mid-epoch checkpoint)
    # Early stopping put back the weights of this epoch (0-based): the model is not the last
    # epoch's, whose values the History ends with.
    restored_epoch: int | None = None
    # What the recipe's preprocessing standardised with (see trainkit.data.standardization).
    standardization: dict[str, Any] | None = None
    # False on a multi-worker run's other workers, which write nothing: the chief writes the run.
    chief: bool = True
    # What ended a "stopped" run before its last epoch: "early stopping" or "a callback".
    stopped_by: str | None = None
    # The trained model as a Keras file (``<run_dir>/model.keras``), ``None`` where none was written.
    model_file: Path | None = None

    @property
    def restored_values(self) -> dict[str, float] | None:
        """The epoch values of the weights early stopping restored (``None`` if it did not)."""
        if self.restored_epoch is None or self.restored_epoch not in self.history.epoch:
            return None
        at = self.history.epoch.index(self.restored_epoch)
        return {k: v[at] for k, v in self.history.history.items() if len(v) > at}

    @property
    def findings(self) -> list[Finding]:
        """Everything the checks and the diagnosis found."""
        return self.trainer.findings


def _num_classes(recipe: Recipe) -> int | None:
    if recipe.task == "multiclass" and recipe.data.source == "generator":
        return recipe.data.classes
    return None


def run_hparams(recipe: Recipe, splits: DataSplits) -> dict[str, str | float | int | bool]:
    """The recipe's hyperparameters, with ``rows`` the number of rows the run loaded.

    ``Recipe.hparams`` knows the rows only of generated data; a file or scikit-learn source has
    them once loaded, and a comparison of such runs should not show 0.
    """
    rows = len(splits.x_train) + (len(splits.x_val) if splits.x_val is not None else 0)
    return {**recipe.hparams(), "rows": rows}


def prepare_run(recipe: Recipe, *, data: DataSplits | None = None, hparams: Mapping[str, str | float | int | bool] | None = None) -> PreparedRun:
    """Loads the data, builds the model and trainer, and runs every pre-training check.

    Args:
        recipe: A validated recipe.
        data: Its data, already prepared (for a recipe with the same
            :func:`~trainkit.data.data_key`), which nothing here or in training modifies;
            ``None``: loaded from the recipe.
        hparams: Hyperparameters to record beside the recipe's (a comparison's swept values
            that the recipe's own do not show).

    Raises:
        TrainkitError: Any user error (unknown names, incompatible model, bad data).
    """
    # The strategy comes first (MultiWorkerMirroredStrategy must exist before other TF ops run);
    # the model is built in its scope so that its variables are replicated.
    strategy = strategy_from_name(recipe.training.distribute)
    splits = data if data is not None else prepare_data(recipe)
    with scope(strategy):
        model = build_from_recipe(recipe, splits.x_train.shape[1:])
    trainer = Trainer(
        model,
        loss=recipe.loss,
        optimizer=recipe.optimizer,
        task=recipe.task,
        metrics=recipe.metrics,
        seed=recipe.training.seed,
        allow=recipe.allow,
        num_classes=_num_classes(recipe),
        steps_per_execution=recipe.training.steps_per_execution,
        jit_compile=recipe.training.jit_compile,
        scalars_every=recipe.logging.scalars_every,
        statistics=recipe.logging.statistics,
        histograms_every=recipe.logging.histograms_every,
        report_last_batch_loss=recipe.training.report_last_batch_loss,
        checkpoint_every=recipe.training.checkpoint_every,
        on_nan=recipe.training.on_nan,
        auto_scale_loss=recipe.training.auto_scale_loss,
        hparams={**(hparams or {}), **run_hparams(recipe, splits)},
        strategy=strategy,
    )
    # Its advice names recipe keys (--set takes them), not the Python a Trainer.fit's names.
    trainer._recipe_run = True
    # The recipe's class weights, as fit will weigh the training rows (class-imbalance then knows).
    cw = recipe.training.class_weight
    weights = class_weights.row_weights(cw, splits.y_train, y_val=splits.y_val) if cw and not isinstance(splits.y_train, dict | list | tuple) else None
    trainer.findings.extend(splits.findings)  # what reading the data file noticed
    found = trainer.check_data(splits.x_train, splits.y_train, splits.x_val, splits.y_val, sample_weight=weights,
                               batch_size=recipe.training.batch_size, feature_names=splits.feature_names, shuffle=recipe.training.shuffle)
    trainer.findings.extend(_with_leak_label_fix(recipe, splits, found))
    _try_loss_arguments(recipe, splits, trainer)
    # Shown before the first epoch, as a Python fit's own checks are (the report repeats them).
    trainer._unshown_checks = [f for f in trainer.findings if f.severity != "info"]
    return PreparedRun(recipe, splits, trainer)


def _try_loss_arguments(recipe: Recipe, splits: DataSplits, trainer: Trainer) -> None:
    """Calls a loss given keyword arguments once, eagerly, on two training rows and their outputs.

    Some arguments can only be judged against the shapes they meet: ``loss: {name:
    binary_crossentropy, axis: 5}`` passed ``trainkit check`` as "ok", and ``trainkit train`` then
    failed tracing its first step with a TensorFlow traceback (exit 1), its run directory left
    behind. Only such recipes pay for the call, once, before training.

    Raises:
        UnknownNameError: ``bad-loss-argument``, naming the arguments and the loss's own message.
    """
    spec = recipe.loss
    if not isinstance(spec, Mapping) or set(spec) <= {"name"} or len(trainer.heads) != 1:
        return
    if not isinstance(splits.x_train, np.ndarray) or not isinstance(splits.y_train, np.ndarray) or not len(splits.x_train):
        return
    import tensorflow as tf  # imported by the trainer already

    y_pred = trainer.model(splits.x_train[:2], training=False)
    if not tf.is_tensor(y_pred):  # a dict or list of one output: the step pairs it, not this
        return
    loss_fn = trainer.heads[0].loss
    given = ", ".join(f"{key}: {value!r}" for key, value in spec.items() if key != "name")
    try:
        # Traced, not run: a kernel that failed eagerly logged TensorFlow's C++ warnings on stderr.
        traced = tf.function(lambda y, p: loss_fn(y, p), autograph=False).get_concrete_function(tf.constant(splits.y_train[:2]), y_pred)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as err:
        # Shape inference's message goes on with the node and its input shapes: "... for '{{node ...".
        reason = str(err).split(" for '{{node")[0].strip().rstrip(".")
        raise UnknownNameError("bad-loss-argument", one_line(
            f'Loss "{spec.get("name")}" fails with {given} on this model\'s outputs (shape {tuple(y_pred.shape)[1:]} a row) and the targets: '
            f"{reason}. Change or remove those arguments (loss in the recipe).")) from None
    value = traced.structured_outputs
    if tf.is_tensor(value) and value.shape.rank not in (0, None) and value.shape.num_elements() != 1:
        # reduction: none gives one loss a row: 'check' said ok, and the first step refused it
        # (loss-not-scalar) with the run directory made.
        fix = ("leave its reduction at the default, sum_over_batch_size" if "reduction" in spec else
               "change or remove those arguments")
        raise UnknownNameError("bad-loss-argument", one_line(
            f'Loss "{spec.get("name")}" with {given} returns one value a row (shape {tuple(value.shape)} on two rows), but training '
            f"needs the loss as one number: {fix} (loss in the recipe)."))


def _with_leak_label_fix(recipe: Recipe, splits: DataSplits, findings: Sequence[Finding]) -> list[Finding]:
    """``findings``, with the fix of a leak the recipe itself makes named: ``data.leak_label: false``.

    ``leak_label`` appends the label to the features (the label-leakage scenario); the check found
    it and told the run to ``np.delete`` a column of an x the recipe's user never holds.
    """
    if not recipe.data.leak_label or not isinstance(splits.x_train, np.ndarray) or splits.x_train.ndim != 2:
        return list(findings)
    label_columns = int(np.prod(np.shape(splits.y_train)[1:], dtype=np.int64))
    appended = set(range(splits.x_train.shape[1] - label_columns, splits.x_train.shape[1]))
    fixed = []
    for finding in findings:
        leaked = finding.evidence.get("features", [finding.evidence.get("feature")]) if finding.code == "label-leakage" else []
        if leaked and set(leaked) <= appended:
            finding = dataclasses.replace(finding, advice="Set data.leak_label: false: this recipe appends the label to the features "
                                                          "itself (the scenario's broken part). With data of your own: "
                                                          + finding.advice[:1].lower() + finding.advice[1:])
        fixed.append(finding)
    return fixed


def recipe_callbacks(recipe: Recipe) -> list[Callback]:
    """The callbacks a recipe asks for (early stopping, ...)."""
    callbacks: list[Callback] = []
    stopping = recipe.training.early_stopping
    if stopping is not None:
        callbacks.append(EarlyStopping(monitor=stopping.monitor, patience=stopping.patience, min_delta=stopping.min_delta, restore_best_weights=stopping.restore_best_weights))
    return callbacks


def train_recipe(
    recipe: Recipe,
    *,
    logdir: str | Path | None = None,
    verbose: int = 1,
    callbacks: Iterable[Callback] = (),
    prepared: PreparedRun | None = None,
    resume: str | Path | None = None,
) -> RunResult:
    """Trains a recipe and writes its run directory ``<logdir>/<name>/<timestamp>/``.

    Args:
        recipe: A validated recipe.
        logdir: Root of the run directories; defaults to the recipe's ``logging.logdir``.
        verbose: 1 for a progress bar and epoch lines on stderr, 0 for silence.
        callbacks: Extra callbacks.
        prepared: A :class:`PreparedRun` of this recipe, to skip preparing it again.
        resume: A run directory of this recipe to continue from its newest checkpoint, instead
            of starting a new run directory.

    Raises:
        TrainingInterrupted: After SIGINT/SIGTERM, with the checkpoint and report written;
            ``err.run_dir`` says which run to resume.
    """
    resume_dir = _resumable(resume, recipe) if resume is not None else None
    if recipe.sweep:
        raise RecipeError("sweep-needs-compare", sweep_message(recipe))
    root = Path(logdir if logdir is not None else recipe.logging.logdir)
    if resume_dir is None:
        refuse_a_run_directory(root)
        check_writable(root, keep=False)  # created with the run directory, once the checks pass
    prepared = prepared or prepare_run(recipe)
    trainer, splits = prepared.trainer, prepared.splits
    scaling = standardization(splits)
    chief = is_chief(trainer.strategy)
    validation = (splits.x_val, splits.y_val) if splits.x_val is not None and len(splits.x_val) else None
    # Lists inside the list flattened, as fit flattens them: an EarlyStopping in one was not seen
    # by _stopped_by and _restored_epoch ("stopped by a callback", no restored epoch).
    run_callbacks = flat_callbacks([*recipe_callbacks(recipe), *callbacks])
    history_before = trainer.history  # fit replaces it (a resume, with the checkpoint's)
    made: list[Path] = []  # directories a new run creates, removed with it if it trains nothing
    if not chief:
        # A non-chief worker of a multi-worker run writes no run directory: an empty scratch
        # directory stands in for it (no events; its checkpoint copies go to their own scratch).
        run_dir = Path(tempfile.mkdtemp(prefix="trainkit-worker-"))
    elif resume_dir is None:
        made = new_directories(root / (recipe.name or "recipe"))
        run_dir = create_run_dir(root, recipe.name or "recipe")
    else:
        run_dir = resume_dir
    trainer.logdir = run_dir
    if chief and resume_dir is None:
        _write_new_recipe(run_dir, made, recipe)
    elif chief:
        note = _epochs_change_note(run_dir, recipe)
        if note is not None:
            print(note, file=sys.stderr)
    started = time.perf_counter()
    previous = sigterm_as_interrupt()
    try:
        if chief and resume_dir is None:
            trainer.log_text("recipe", f"```yaml\n{recipe.to_yaml()}```")
        elif chief and _read_text(run_dir / "recipe.yaml") != recipe.to_yaml():
            # Resumed with more epochs: TensorBoard's recipe text says so from here on.
            trainer.log_text("recipe", f"```yaml\n{recipe.to_yaml()}```")
        history = trainer.fit(
            splits.x_train,
            splits.y_train,
            epochs=recipe.training.epochs,
            batch_size=recipe.training.batch_size,
            validation_data=validation,
            shuffle=recipe.training.shuffle,
            callbacks=run_callbacks,
            verbose=verbose,
            check_data=False,
            resume=resume_dir is not None,
            class_weight=recipe.training.class_weight,
        )
    except TrainingInterrupted as err:
        if chief and resume_dir is not None and trainer.history is not history_before:
            _save_resumed_recipe(run_dir, recipe)
        if chief:
            remove_stale_model_file(run_dir)
            try:
                write_report(RunResult(run_dir, trainer.history, trainer, time.perf_counter() - started, "interrupted", standardization=scaling), recipe)
            except OSError as failed:
                # A full disk: the interruption (and how to resume it, from the checkpoint) still
                # matters most; an OSError traceback replaced it.
                print(f"warning: [logdir-unwritable] The interrupted run's report could not be written to {run_dir}: "
                      f"{os_error_reason(failed, run_dir)}.", file=sys.stderr)
        err.run_dir = run_dir  # type: ignore[attr-defined]
        raise
    except KeyboardInterrupt as stop:
        # Ctrl-C (or SIGTERM) while fit set up, before it took over the signals, or a second Ctrl-C
        # while it was stopping. Only a new run that trained no step is removed: nothing in it to resume.
        code = 143 if isinstance(stop, Terminated) else 130
        checkpointed = any((run_dir / CHECKPOINT_SUBDIR).glob("*"))
        if trainer.step > 0 or resume_dir is not None or checkpointed:
            by = "SIGTERM" if code == 143 else "a second Ctrl-C" if isinstance(stop, SecondInterrupt) else "Ctrl-C"
            err = TrainingInterrupted("interrupted", f"Stopped by {by}" + ("; a checkpoint was written earlier." if checkpointed else " before any checkpoint was written."),
                                      exit_code=code)
            if chief and checkpointed:
                err.run_dir = run_dir  # type: ignore[attr-defined]
            raise err from None
        if chief:
            remove_run_dir(run_dir, made)
        raise TrainingInterrupted("interrupted", NOTHING_TRAINED, exit_code=code) from None
    except Exception as err:
        # An error in training or in user code (a callback, say): the report still says how far
        # the run got and what was found so far (fit made no end-of-run verdicts for it). A resume
        # that failed before its checkpoint came back leaves the run's report as it was.
        if chief and (resume_dir is None or trainer.history is not history_before):
            remove_stale_model_file(run_dir)
            _write_failed_report(RunResult(run_dir, trainer.history, trainer, time.perf_counter() - started, "failed",
                                           resumed_epochs=trainer.resumed_epochs, resumed_batches=trainer.resumed_batches, restored_epoch=_restored_epoch(run_callbacks, trainer.history),
                                           standardization=scaling), recipe, err)
        in_model_code = model_code_error(recipe, err)
        if in_model_code is not None:  # the user's own code, named by file and line
            kept = f" The run's failed report is in {run_dir}." if chief and resume_dir is None else ""
            said = in_model_code.message if in_model_code.message.endswith(".") else in_model_code.message + "."
            raise RecipeError(in_model_code.code, said + kept) from err
        raise
    finally:
        restore_sigterm(previous)
        if not chief:  # nothing in it is read: each worker process of a run left one behind
            shutil.rmtree(run_dir, ignore_errors=True)
    status = trainer.stop_reason or "completed"
    result = RunResult(run_dir, history, trainer, time.perf_counter() - started, status,
                       resumed_epochs=trainer.resumed_epochs, resumed_batches=trainer.resumed_batches, restored_epoch=_restored_epoch(run_callbacks, trainer.history), standardization=scaling,
                       chief=chief, stopped_by=_stopped_by(run_callbacks) if status == "stopped" else None)
    with stop_on_signals():  # the run is complete: a stop signal now waits for its report
        try:
            _finish_run(result, recipe, resume_dir, chief)
        except KeyboardInterrupt as stop:
            # A second Ctrl-C while the run's end was written (its model file takes seconds for a
            # big model): the training is done and checkpointed, which the command line's "nothing
            # was trained or kept" denied; a resume trains nothing and writes what is missing.
            by = "a second Ctrl-C" if isinstance(stop, SecondInterrupt) else "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
            err = TrainingInterrupted("interrupted", f"Stopped by {by} while the trained run's model file and report were written; its training is "
                                                     "complete and checkpointed: resuming it trains nothing and writes them.",
                                      exit_code=143 if isinstance(stop, Terminated) else 130)
            if chief:
                err.run_dir = run_dir  # type: ignore[attr-defined]
            raise err from None
    return result


#: The runs that end with a usable model, written to ``model.keras``: a NaN loss ends with weights
#: that were about to diverge, an interrupted run's checkpoint is what its resume uses, and a
#: failed run's model is wherever the error left it.
MODEL_FILE_STATUSES = frozenset({"completed", "stopped"})


def _finish_run(result: RunResult, recipe: Recipe, resume_dir: Path | None, chief: bool) -> None:
    """Writes a completed run's recipe (after a resume) and report, saying what it lost, if anything."""
    run_dir = result.run_dir
    if chief:
        # A resume writes its recipe.yaml again below (and may resume a run that lost it); event
        # files deleted while the run trained the trainer reported as it closed them.
        if resume_dir is None and not (run_dir / "recipe.yaml").exists():
            # Deleted (or moved) while training: the report below would otherwise pass for a whole run.
            print(f"warning: [run-dir-changed] {run_dir} lost recipe.yaml while the run trained: the report is written, "
                  "but the recipe is gone.", file=sys.stderr)
        try:
            if resume_dir is not None:
                _save_resumed_recipe(run_dir, recipe)
            # Before the report: a run that has its report.json has its model file.
            if result.status in MODEL_FILE_STATUSES:
                result.model_file = save_model_file(result.trainer, run_dir)
            else:
                remove_stale_model_file(run_dir)  # a resume's NaN: the file of the run's earlier end is not this model
            write_report(result, recipe)
        except RunDirError:
            raise  # the model file's (an OSError too), which names its file
        except OSError as err:
            # A full disk (or a directory made read-only) at the very end: the run's checkpoints and
            # events are written, and resuming it, with nothing left to train, writes the report.
            raise RunDirError("logdir-unwritable", f"The run trained, but writing its report to {run_dir} failed: {os_error_reason(err, run_dir)}. "
                                                   "Free space or fix the directory, then resume it (--resume RUN_DIR; nothing is trained "
                                                   "again) to write the report.") from err


def _write_new_recipe(run_dir: Path, made: Sequence[Path], recipe: Recipe) -> None:
    """Writes a new run's ``recipe.yaml``, its first file.

    Raises:
        RunDirError: ``logdir-unwritable`` when it cannot be written (a full disk, a file-size
            limit); the run directory, which holds nothing yet, is removed.
    """
    try:
        write_atomic(run_dir / "recipe.yaml", recipe.to_yaml())
    except BaseException as err:  # Ctrl-C too: nothing in the directory to resume
        # An OSError here ended in a traceback, and left a run directory with a "failed" report of
        # a run that never started.
        remove_run_dir(run_dir, made)
        if not isinstance(err, OSError):
            raise
        raise RunDirError("logdir-unwritable", f"Cannot write the run's recipe.yaml to {run_dir}: {os_error_reason(err, run_dir)}. "
                                               "Free space (or raise the file-size limit), or pass another --logdir.") from None


def _save_resumed_recipe(run_dir: Path, recipe: Recipe) -> None:
    """The recipe a resume trained with (more epochs), once its checkpoint was accepted: a resume
    refused for another learning rate wrote its recipe first, and the right resume was then
    compared with the wrong one."""
    saved = run_dir / "recipe.yaml"
    if _read_text(saved) != recipe.to_yaml():
        write_atomic(saved, recipe.to_yaml())  # the next resume compares with these


def _epochs_change_note(run_dir: Path, recipe: Recipe) -> str | None:
    """The line a resume prints when it trains to other epochs than the run was started with, and
    no ``--set`` gave them: a run started with ``--set training.epochs=3`` and resumed with the bare
    recipe (5) trained on to 5 without a word (a resume may change the epochs: RESUMABLE_CHANGES)."""
    if _overrides_set_epochs(recipe.overrides):
        return None  # the epochs were asked for
    text = _read_text(run_dir / "recipe.yaml")
    try:
        then = yaml.safe_load(text) if text is not None else None
    except yaml.YAMLError:
        return None  # _resumable said so already
    training = then.get("training") if isinstance(then, dict) else None
    epochs = training.get("epochs") if isinstance(training, dict) else None
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs == recipe.training.epochs:
        return None
    now = recipe.training.epochs
    try:
        trained = json.loads(_read_text(run_dir / "report.json") or "{}").get("epochs_run")
    except (ValueError, AttributeError):
        trained = None
    if isinstance(trained, int) and trained > now:
        return None  # refused (resume-mismatch: it already trained more), which says so itself
    return (f"note: {run_dir} was started with training.epochs = {epochs}; the recipe says {now}, so this resume trains "
            f"{'on ' if now > epochs else ''}to epoch {now}. To keep {epochs}, resume with --set training.epochs={epochs}.")


def _overrides_set_epochs(overrides: Sequence[str]) -> bool:
    """Whether the ``--set`` overrides give the epochs: ``training.epochs=...``, or a whole
    ``training={...}`` that holds them (one without, ``training={checkpoint_every: 1}``, puts the
    default epochs in and was taken as asking for them). The last override of either wins."""
    given = False
    for override in overrides:
        key, _, text = override.partition("=")
        if key.strip() == "training.epochs":
            given = True
        elif key.strip() == "training":
            try:
                value = parse_yaml(text)
            except RecipeError:  # applied already: not reached
                value = None
            given = isinstance(value, Mapping) and "epochs" in value
    return given


def _read_text(path: Path) -> str | None:
    """A run's text file, or ``None`` when it cannot be read (missing, a directory, not UTF-8)."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None


def _write_failed_report(result: RunResult, recipe: Recipe, in_flight: BaseException) -> None:
    """Writes the report of a run an error (``in_flight``) ended, without replacing that error if writing fails."""
    try:
        write_report(result, recipe)
    except Exception as err:  # the run directory gone, say: the error in flight is what matters
        if is_storage_failure(in_flight) and is_storage_failure(err):
            return  # a full disk that ended the run fails its report too: the error says so already
        print(f"trainkit: could not write the report of the failed run: {type(err).__name__}: {err}", file=sys.stderr)


def _restored_epoch(callbacks: Iterable[Callback], history: History | None) -> int | None:
    """The epoch whose weights early stopping put back, if it did: trainkit's, or Keras's (run
    through its adapter), which restores its best epoch's weights at ``on_train_end`` whenever it
    has them, as trainkit's does where they are not the last epoch's (a run it stopped was said to
    end with its last weights)."""
    last_epoch = history.epoch[-1] if history is not None and history.epoch else None
    for callback in callbacks:
        if isinstance(callback, EarlyStopping) and callback.restored_epoch is not None:
            return callback.restored_epoch
        keras_one = callback.callback if isinstance(callback, KerasCallback) else callback
        if (isinstance(keras_one, keras.callbacks.EarlyStopping) and keras_one.restore_best_weights and keras_one.best_weights is not None
                and isinstance(keras_one.best_epoch, int) and (keras_one.stopped_epoch > 0 or keras_one.best_epoch != last_epoch)):
            return keras_one.best_epoch
    return None


def _stopped_by(callbacks: Iterable[Callback]) -> str:
    """What set ``stop_training`` in a run that stopped before its last epoch: trainkit's
    EarlyStopping, or Keras's (which the fit runs through its adapter, and which sets its
    ``stopped_epoch``, 0 from each ``on_train_begin``, to the epoch it stopped at: a run it stopped
    was said "stopped ... by a callback"). Keras's TerminateOnNaN is refused by the adapter."""
    def stopped(callback: Any) -> bool:
        callback = callback.callback if isinstance(callback, KerasCallback) else callback
        if isinstance(callback, keras.callbacks.EarlyStopping):
            return isinstance(callback.stopped_epoch, int) and callback.stopped_epoch > 0
        return isinstance(callback, EarlyStopping) and callback.stopped_epoch is not None
    return "early stopping" if any(stopped(callback) for callback in callbacks) else "a callback"


def _resumable(run_dir: str | Path, recipe: Recipe) -> Path:
    """Checks that ``run_dir`` holds checkpoints of this very recipe before anything is built."""
    path = Path(run_dir)
    if not (path / CHECKPOINT_SUBDIR).is_dir():
        if (path / "recipe.yaml").is_file() and not (path / CHECKPOINT_SUBDIR).exists():
            holder = training_process(path)
            if holder is not None:
                # Still in its first epochs, before its first checkpoint: it has not "stopped"
                # (told to train again without --resume, a second run beside the first).
                raise in_use_error(path, holder)
            if _kept_no_checkpoints(path / "recipe.yaml"):  # finished or not, it was never to be resumed
                raise RunDirError("no-checkpoint", f"Nothing to resume in {path}: it was trained with training.checkpoint_every: 0, which keeps "
                                                   "no checkpoints to continue from. Train the recipe again without --resume (with "
                                                   "checkpoint_every above 0, or auto, to be able to resume it).")
            # A run killed (or failed by a full disk) in its first epoch: it is a run directory,
            # and "pass a run directory written by trainkit train" sent the user looking for another.
            raise RunDirError("no-checkpoint", f"Nothing to resume in {path}: the run stopped before its first checkpoint (written at the end "
                                               "of an epoch, by training.checkpoint_every), so it has nothing to continue from. "
                                               "Train the recipe again without --resume.")
        raise RunDirError("no-checkpoint", f"Nothing to resume in {path}: {_why_no_checkpoints(path)}. Pass a run directory written by trainkit train (<logdir>/<recipe>/<time>).")
    unwritable = unwritable_part(path)
    if unwritable is not None:
        # Found here, before anything is built: the lock file's PermissionError was a traceback,
        # and a read-only checkpoints/ failed the resumed run after it had loaded its checkpoint.
        part, reason = unwritable
        what = "it" if part == path else str(part)
        raise RunDirError("logdir-unwritable", f"Cannot resume {path}: {what} cannot be written ({reason}), and a resume writes its checkpoints, "
                                               f"events and report there. Make it writable again (chmod -R u+w {shlex.quote(str(path))}), "
                                               "or resume a writable copy of the run directory.")
    saved = path / "recipe.yaml"
    text = _read_text(saved)
    if text is not None and text != recipe.to_yaml():
        try:
            then = yaml.safe_load(text)
        except yaml.YAMLError:
            then = None
        if not isinstance(then, dict):  # damaged: the checkpoint's own settings still guard the resume
            print(f"warning: [resume-recipe-unreadable] {saved} does not read back as a recipe; the resume is checked against the "
                  "checkpoint's settings only, and the file is written again once it is accepted.", file=sys.stderr)
            return path
        difference = first_difference(then, yaml.safe_load(recipe.to_yaml()), ignore=RESUMABLE_CHANGES)
        if difference is not None:
            key, then, now = difference
            if key == "name":  # another recipe altogether: a --set of its name would not make it this one
                raise RecipeError("resume-mismatch", f"{path} was trained from the recipe {yaml_value(then)}, not {yaml_value(now)} (its copy: {saved}). "
                                                     f"Resume it with the recipe {yaml_value(then)} and the --set options it was trained with, or start a new run.")
            # Quoted: a mapping's spaces (early_stopping's {monitor: val_loss, ...}) cut the pasted --set.
            raise RecipeError("resume-mismatch", f"{path} was trained with {key} = {yaml_value(then)}, not {yaml_value(now)} (see {saved}). "
                                                 f"Resume with the same recipe and --set options (--set {shlex.quote(f'{key}={yaml_value(then)}')}), or start a new run.")
    return path


# What a resume may change: more epochs is how a finished run is trained further; how often it is
# checkpointed and its description change nothing it computes.
RESUMABLE_CHANGES = frozenset({"training.epochs", "training.checkpoint_every", "description"})
_MISSING = object()


def first_difference(then: Any, now: Any, *, ignore: frozenset[str] = frozenset(), path: str = "") -> tuple[str, Any, Any] | None:
    """The first dotted path (``model.layers.0.units``) where two parsed recipes differ, with both values.

    Returns:
        ``(path, value then, value now)`` (a missing key's value is ``None``), or ``None`` when
        they differ only at the ``ignore`` paths.
    """
    if path in ignore:
        return None
    if isinstance(then, dict) and isinstance(now, dict):
        for key in dict.fromkeys([*then, *now]):
            found = first_difference(then.get(key, _MISSING), now.get(key, _MISSING), ignore=ignore, path=f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    if isinstance(then, list) and isinstance(now, list) and len(then) == len(now):
        for i, (a, b) in enumerate(zip(then, now, strict=True)):
            found = first_difference(a, b, ignore=ignore, path=f"{path}.{i}")
            if found is not None:
                return found
        return None
    if then == now and type(then) is type(now):
        return None
    return path or "(the recipe)", None if then is _MISSING else then, None if now is _MISSING else now


def yaml_value(value: Any) -> str:
    """A value as --set takes it (``0.01``, ``true``, ``{l2: 0.01}``)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _kept_no_checkpoints(saved_recipe: Path) -> bool:
    """Whether a run's saved recipe turned checkpoints off (``training.checkpoint_every: 0``)."""
    try:
        saved = yaml.safe_load(saved_recipe.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8
        return False
    training = saved.get("training") if isinstance(saved, dict) else None
    return isinstance(training, dict) and training.get("checkpoint_every") == 0


def _why_no_checkpoints(path: Path) -> str:
    """Why ``path`` holds no checkpoints/ to resume from, as a clause."""
    if not path.exists():
        return "it does not exist"
    # A path inside a run (its checkpoints/, train/ or report.json): name the run itself.
    run = next((parent for parent in list(path.parents)[:2] if (parent / CHECKPOINT_SUBDIR).is_dir()), None)
    if run is not None:
        return f"it is inside the run directory {run}; pass that directory (--resume {shlex.quote(str(run))})"
    if not path.is_dir():
        return "it is a file, not a run directory"
    # A recipe's folder (<logdir>/<recipe>) holds its runs: name the newest, which diagnose would take.
    runs = sorted((p for p in path.iterdir() if (p / CHECKPOINT_SUBDIR).is_dir()), key=run_order)  # <time>-10 after <time>-9
    if runs:
        return f"it holds runs, not checkpoints; pass one of them, e.g. the newest, {runs[-1]}"
    return f"it has no {CHECKPOINT_SUBDIR}/ directory"


def sweep_message(recipe: Recipe) -> str:
    """Why a recipe with a ``sweep:`` section is not one run, and the two ways forward."""
    sweep = recipe.sweep or {}
    count = 1
    for values in sweep.values():
        count *= len(values)
    where = shlex.join([str(recipe.source_path) if recipe.source_path else "RECIPE", *(arg for o in recipe.overrides for arg in ("--set", o))])
    return (
        f"Recipe {recipe.name} sweeps {', '.join(sweep)} ({count} runs), and train runs one. "
        f"Train and compare them all with: trainkit compare {where}. "
        "Or train one: add --set sweep=null and --set the values you want."
    )


def report_dict(result: RunResult, recipe: Recipe) -> dict[str, Any]:
    """The JSON report of a run: where, what, the exact epoch values, the findings."""
    history = result.history.history
    return {
        "recipe": recipe.name,
        "task": recipe.task,
        "run_dir": str(result.run_dir),
        "status": result.status,
        "epochs_run": len(result.history.epoch),
        "seconds": round(result.seconds, 3),
        "final": {k: v[-1] for k, v in history.items() if v},
        # With weights restored by early stopping, the values of the epoch the model is at.
        "restored": {"epoch": result.restored_epoch + 1, **restored} if (restored := result.restored_values) is not None else None,
        "history": history,
        "findings": [f.to_dict() for f in result.findings],
        "standardization": result.standardization,
    }


def write_report(result: RunResult, recipe: Recipe) -> Path:
    """Writes ``report.json`` atomically into the run directory and returns its path."""
    path = result.run_dir / "report.json"
    write_atomic(path, json_text(report_dict(result, recipe)) + "\n")
    return path


def _trained_line(epochs: int, resumed: int, seconds: float, values: str, resumed_batches: int = 0, nan_stop: bool = False, stop: str = "") -> str:
    """What this process trained: a resumed run counts only the epochs after its checkpoint
    (and says where in an epoch a mid-epoch checkpoint had it: "trained 300 epochs" read as a
    fresh run's). ``nan_stop``: a NaN loss ended it inside an epoch. ``stop``: the clause that says
    it stopped early and why (:func:`_stop_clause`)."""
    # A resume stopped again by a NaN in its first epoch trained that epoch's steps: "nothing left
    # to train" said the run was finished, where its next epochs were still to train.
    if resumed and epochs <= resumed and not nan_stop:
        # A finished run resumed: nothing was trained, the values are the run's last.
        return f"nothing left to train: the run had already trained its {resumed} epoch{'' if resumed == 1 else 's'}" + (f": {values}" if values else "")
    more = epochs - resumed
    # An epoch abandoned at a NaN loss logs no values: say so rather than end on a colon.
    unit = "epoch" if values else "complete epoch"
    what = f"trained {more}{' more' if resumed and not resumed_batches else ''} {unit}{'' if more == 1 else 's'}"
    if resumed_batches:
        what += f" (resumed in epoch {resumed + 1}, after {resumed_batches} of its batches)"
    elif resumed:
        what += f" (resumed after epoch {resumed})"
    if values:  # in parentheses: the values are the last complete epoch's, not the stop's
        return f"{what} in {seconds:.1f}s{f' ({stop})' if stop else ''}: {values}"
    return f"{what} in {seconds:.1f}s ({f'{stop}; ' if stop else ''}no epoch values)"


def _stop_clause(result: RunResult) -> str:
    """"stopped early in epoch 6 of 10 by a NaN/inf loss" (or "after epoch 12 of 100 by early
    stopping"), or ``""``: a NaN stop's summary said only "trained 5 epochs", as if the run had been
    planned so, with the nan-loss error below it."""
    if result.status not in ("nan-loss", "stopped"):
        return ""
    epochs = len(result.history.epoch)
    planned = result.history.params.get("epochs")
    of = f" of {planned}" if isinstance(planned, int) else ""
    if result.status == "nan-loss":  # inside the epoch after the last complete one
        return f"stopped early in epoch {epochs + 1}{of} by a NaN/inf loss"
    if isinstance(planned, int) and epochs >= planned:
        # Stopped at its last epoch (patience ran out there, or a callback's stop_training) trained
        # every epoch planned: "stopped early after epoch 3 of 3" said it had not.
        return ""
    return f"stopped early after epoch {epochs}{of} by {result.stopped_by or 'early stopping or a callback'}"


def summary_lines(result: RunResult) -> Sequence[str]:
    """The final summary the CLI prints: final values, findings, where the run was written."""
    final = {k: v[-1] for k, v in result.history.history.items() if v}
    values = format_logs(final)
    lines = [_trained_line(len(result.history.epoch), result.resumed_epochs, result.seconds, values, result.resumed_batches,
                           nan_stop=result.status == "nan-loss", stop=_stop_clause(result))]
    restored = result.restored_values
    if restored is not None:
        # The values above are the last epoch's; the model now holds the best epoch's weights.
        at_best = format_logs(restored)
        lines.append(f"early stopping restored the weights of epoch {result.restored_epoch + 1}: {at_best}")
    # The report: checks' and diagnosis findings grouped by severity (errors first), each with its fix.
    from trainkit.diagnosis.report import render_text

    lines.append(render_text(result.findings))
    if result.findings and not [f for f in result.findings if f.severity in ("warning", "error")]:  # notes only
        lines.append("no findings of severity warning or error")
    if not result.chief:
        lines.append("this worker wrote no run directory: the chief worker writes the run")
        return lines
    # The command is quoted for the shell (a logdir with a space pastes back whole); the path is not.
    lines.append(f"run written to {result.run_dir}  (trainkit tensorboard {shlex.quote(str(result.run_dir.parent.parent))})")
    return lines
