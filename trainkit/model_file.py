"""A finished run's trained model as a file plain Keras loads: ``<run_dir>/model.keras``.

A run's ``checkpoints/`` are TensorFlow checkpoints, which ``load_weights`` and ``load_model``
refuse: without this file, a model trained from the command line reached plain Keras only by
building it again from the recipe. The model is compiled first with the loss, optimizer and
metrics the trainer trained with, so that ``load_model(...).evaluate(...)`` measures as the run's
report does and ``model.fit`` goes on with the trainer's optimizer state.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from trainkit import distribute
from trainkit.checks.compile_checks import note_own_compile
from trainkit.errors import RunDirError
from trainkit.modelbuild import first_line
from trainkit.resolve import clone_metric
from trainkit.runs import (
    MODEL_FILE,
    atomic_path,
    is_storage_error,
    os_error_reason,
    storage_error_text,
)

#: How a run's end says its model file was not written (the run's exit code is unchanged).
UNSAVED = "model-unsaved"


def compile_as_trained(trainer: Any) -> None:
    """Compiles ``trainer.model`` with the trainer's losses, loss weights, optimizer (its state
    included) and fresh copies of its metrics, as ``model.compile`` would have them.

    Only the model's compile changes: the trainer keeps training with its own loss and metrics.
    """
    heads = trainer.heads
    model = trainer.model
    if len(heads) == 1:
        loss: Any = heads[0].loss
        weights: Any = None
        metrics: Any = [clone_metric(m) for m in trainer._metrics]
    else:
        loss = [h.loss for h in heads]
        weights = [h.weight for h in heads]
        # Keras names each output's metric <output>_<metric> itself, as trainkit does.
        metrics = [[clone_metric(m, m.name[len(h.name) + 1:]) for m, at in zip(trainer._metrics, trainer._metric_outputs, strict=True) if at == i]
                   for i, h in enumerate(heads)]
    # A multi-worker strategy makes each variable with every worker (a collective broadcast of its
    # initial value), and only the chief saves: in its scope the compile's trackers waited on
    # workers that had finished, until they were called dead, and the file was written uncompiled.
    multi_worker = isinstance(trainer.strategy, tf.distribute.MultiWorkerMirroredStrategy)
    with contextlib.nullcontext() if multi_worker else distribute.scope(trainer.strategy):
        model.compile(loss=loss, loss_weights=weights, optimizer=trainer.optimizer, metrics=metrics,
                      auto_scale_loss=getattr(trainer, "_auto_scale_loss", True))
    note_own_compile(model)  # a later Trainer of this model is not told of a compile the user never made


def save_model_file(trainer: Any, run_dir: Path) -> Path | None:
    """Writes ``run_dir/model.keras`` atomically (a temporary file beside it, then a rename), and
    reads it back to be sure Keras can: a layer class that is not registered saves, and fails only
    at ``load_model``.

    Returns:
        The file, or ``None`` when the model cannot be saved so (``warning: [model-unsaved]`` said why).

    Raises:
        RunDirError: ``logdir-unwritable`` when the disk or the directory failed the write.
    """
    path = run_dir / MODEL_FILE
    uncompiled = None
    try:
        compile_as_trained(trainer)
    except Exception as err:  # a loss or metric Keras's compile refuses: the file then holds none
        # Not met with a recipe's losses and metrics (the trainer made and copied them already).
        uncompiled = err
    try:
        with atomic_path(path, suffix=".keras") as tmp:
            try:
                trainer.model.save(tmp)
            except Exception as err:
                if is_storage_error(err):
                    raise  # the disk's or the directory's: logdir-unwritable below
                raise _Unsaved(err) from err
            try:
                _load_back(tmp)
            except Exception as err:  # a class load_model cannot find, memory for a second copy: not the disk's
                raise _Unsaved(err) from err
    except _Unsaved as unsaved:
        err = unsaved.error
        with contextlib.suppress(OSError):
            path.unlink()  # an earlier run's file (before a resume) is not this model
        why, layers = _why_unsaved(trainer.model, err)
        # A layer class of the user's that Keras cannot serialise is fixed in its code; anything
        # else (memory for the read-back's second copy, say) may pass in a fresh process.
        advice = ("Register each layer class of your own with @keras.saving.register_keras_serializable() and give it a get_config() "
                  "that returns its __init__ arguments, or build the model again from the recipe and read the weights from the run's "
                  "checkpoints/ with tf.train.Checkpoint (README: Python)." if layers else
                  f"Resume the run (trainkit train RECIPE --resume {shlex.quote(str(run_dir))}; nothing is trained again) to write it, "
                  "or read the weights from the run's checkpoints/ with tf.train.Checkpoint (README: Python).")
        print(f"warning: [{UNSAVED}] The trained model was not written to {path}: {why}. {advice}", file=sys.stderr)
        return None
    except Exception as err:
        # The save's storage errors, and the temporary file's own (mkstemp in a directory made
        # read-only, its fsync on a full disk, the rename), which told model-unsaved with a layer's advice.
        if not is_storage_error(err):
            raise
        reason = os_error_reason(err, run_dir) if isinstance(err, OSError) else storage_error_text(err)
        raise RunDirError("logdir-unwritable", f"The run trained, but writing its model file to {path} failed: {reason}. "
                                               "Free space or fix the directory, then resume it (--resume RUN_DIR; nothing is trained "
                                               "again) to write it.") from err
    if uncompiled is not None:
        print(f"warning: [model-uncompiled] {path} is written without the run's loss, metrics and optimizer: compiling the model "
              f"with them failed ({type(uncompiled).__name__}: {first_line(uncompiled)}); compile it after load_model.", file=sys.stderr)
    return path


class _Unsaved(Exception):
    """Keras could not save the model or load it back (not the disk's fault): ``model-unsaved``."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def remove_stale_model_file(run_dir: Path) -> None:
    """Removes a model file an earlier end of this run wrote (a resume that then ended without a
    usable model: interrupted, failed, NaN), so that the file beside ``report.json`` is never
    another epoch's model."""
    with contextlib.suppress(OSError):
        (run_dir / MODEL_FILE).unlink()


def _load_back(path: Path) -> None:
    """Loads the file as ``keras.models.load_model`` does in this process (its registered classes),
    on the CPU: a second copy of a big model on a GPU the run has filled would fail for memory
    (ResourceExhaustedError, which is not the file's fault)."""
    with warnings.catch_warnings(), tf.device("/CPU:0"):
        warnings.simplefilter("ignore")  # Keras's notes on a compile it restores
        keras.models.load_model(path, safe_mode=False)


def _why_unsaved(model: keras.Model, err: BaseException) -> tuple[str, bool]:
    """Why Keras cannot save (or load back) ``model``: the layers of a class of the user's own
    that it cannot serialise, else Keras's own first line; and whether it was such layers."""
    unsaved = []
    for layer in model._flatten_layers(include_self=True):
        cls = type(layer)
        if cls.__module__.split(".")[0] == "keras":
            continue
        try:
            layer.get_config()
        except Exception:
            unsaved.append(f"{layer.name} ({cls.__name__}: its get_config() fails, an __init__ argument it cannot serialise)")
            continue
        if keras.saving.get_registered_object(keras.saving.get_registered_name(cls)) is not cls:
            unsaved.append(f"{layer.name} ({cls.__name__}: not registered with Keras, so load_model cannot find the class)")
    if unsaved:
        return f"layer{'s' if len(unsaved) > 1 else ''} {', '.join(unsaved)}", True
    cause = err.__cause__ or err.__context__ or err
    return f"{type(cause).__name__}: {first_line(cause)}", False
