"""Keras callbacks in trainkit's fit: those whose work happens at epochs, run through trainkit's hooks.

``model.fit`` users bring ``ReduceLROnPlateau``, ``ModelCheckpoint``, ``CSVLogger``,
``LearningRateScheduler``, Keras's ``EarlyStopping`` and ``LambdaCallback``. Each does its work in
``on_train_begin``, ``on_epoch_begin``, ``on_epoch_end`` and ``on_train_end``, which trainkit calls
with the same logs, and reaches the training through ``self.model`` (``model.optimizer`` for the
learning rate, ``model.stop_training`` to stop). trainkit runs many steps in one compiled call and
calls no batch hooks, so a callback that works per batch (``ModelCheckpoint(save_freq=100)``,
``TerminateOnNaN``, ``LambdaCallback(on_batch_end=...)``) or around validation (``SwapEMAWeights``)
is refused rather than silently never called; those with a trainkit equivalent name it.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import keras

from trainkit.callbacks.base import Callback, metric_mode
from trainkit.errors import ArgumentError, closest

if TYPE_CHECKING:
    from trainkit.trainer import Trainer

#: Keras hooks trainkit never calls: it runs many steps per compiled call, and validates in its own loop.
_UNCALLED_HOOKS = (
    "on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
    "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
    "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end",
)  # fmt: skip

#: Keras callbacks whose job trainkit does itself: what to use instead.
_INSTEAD = {
    keras.callbacks.TensorBoard: "trainkit writes TensorBoard itself: give the Trainer a logdir",
    keras.callbacks.BackupAndRestore: "trainkit checkpoints a run with a logdir and resumes it with fit(..., resume=True)",
    keras.callbacks.TerminateOnNaN: "trainkit stops at a NaN or infinite loss by itself (on_nan='stop', the default)",
    keras.callbacks.ProgbarLogger: "fit(verbose=1) prints trainkit's progress",
    keras.callbacks.History: "fit returns trainkit's History",
}


#: Keras callbacks that only read the epoch logs (ReduceLROnPlateau and LearningRateScheduler add
#: ``learning_rate``).
_READ_LOGS_ONLY = (keras.callbacks.EarlyStopping, keras.callbacks.ModelCheckpoint, keras.callbacks.CSVLogger)


def as_trainkit_callback(callback: Any, optimizer: Any = None) -> Any:
    """``callback`` as trainkit calls it: a Keras callback wrapped in :class:`KerasCallback`.

    Raises:
        ArgumentError: ``bad-callback`` for a Keras callback that works per batch or around
            validation, or whose job trainkit does itself, or that sets the learning rate of
            ``optimizer`` when a schedule gives it.
    """
    if not isinstance(callback, keras.callbacks.Callback):
        return callback
    name = type(callback).__name__
    if isinstance(callback, keras.callbacks.ReduceLROnPlateau | keras.callbacks.LearningRateScheduler) and _scheduled(optimizer):
        # Keras raises "its learning rate is not settable" when the callback first sets it: a
        # plateau's first reduction, possibly many epochs into the run.
        raise ArgumentError("bad-callback", f"{name} sets the optimizer's learning rate, which a LearningRateSchedule gives: Keras refuses "
                                            "to set it. Use one of the two: a float learning rate with the callback, or the schedule alone.")
    for kind, instead in _INSTEAD.items():
        if isinstance(callback, kind):
            raise ArgumentError("bad-callback", f"keras.callbacks.{name} is not needed with trainkit: {instead}.")
    hooks = _uncalled_hooks(callback)
    if hooks:
        if isinstance(callback, keras.callbacks.ModelCheckpoint):
            raise ArgumentError("bad-callback", f"ModelCheckpoint(save_freq={callback.save_freq!r}) saves every few batches, and trainkit calls "
                                                "callbacks between epochs only (it runs many steps in one compiled call): use "
                                                "save_freq='epoch', or a logdir, whose checkpoints trainkit writes and resumes.")
        raise ArgumentError("bad-callback", f"{name} does its work in {', '.join(hooks)}, which trainkit never calls: it runs many steps in one "
                                            "compiled call and calls callbacks between epochs (on_train_begin, on_epoch_begin, on_epoch_end, "
                                            "on_train_end). Subclass trainkit.Callback instead: on_execution_end gets every step's values.")
    return KerasCallback(callback)


def _scheduled(optimizer: Any) -> bool:
    """Whether ``optimizer`` (or the one a LossScaleOptimizer wraps) takes its rate from a schedule."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return isinstance(getattr(inner, "_learning_rate", None), keras.optimizers.schedules.LearningRateSchedule)


def trainer_evaluate(trainer: Trainer) -> Any:
    """``model.evaluate`` of the model ``trainer`` trains, by :meth:`~trainkit.Trainer.evaluate`:
    its loss and metrics, Keras's arguments and return value (a list, or the loss alone, unless
    ``return_dict=True``). The data is not checked again, as ``model.evaluate`` does not."""

    def evaluate(x: Any = None, y: Any = None, batch_size: int | None = None, verbose: Any = "auto", sample_weight: Any = None,
                 steps: int | None = None, callbacks: Any = None, return_dict: bool = False, **kwargs: Any) -> Any:
        return trainer.evaluate(x, y, batch_size=batch_size or 32, sample_weight=sample_weight, steps=steps, check_data=False, return_dict=return_dict)

    return evaluate


def _missing_path_fields(callback: keras.callbacks.Callback, logged: Collection[str]) -> list[str]:
    """The fields of a ``ModelCheckpoint``'s filepath (``{val_loss:.2f}``) that neither the epoch
    logs nor Keras (``epoch``) fill; none for another callback or an unparsable path.

    ``{batch}`` is among them: Keras fills it only for a checkpoint saved every few batches
    (``save_freq=N``, refused here), and formats a once-an-epoch one with the epoch and the logs.
    """
    if not isinstance(callback, keras.callbacks.ModelCheckpoint):
        return []
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(str(callback.filepath)) if name}
    except ValueError:  # an unbalanced brace: left to Keras's own error
        return []
    fields = {re.split(r"[.\[]", name, maxsplit=1)[0] for name in names}  # {val_loss[0]}, {x.attr}: the key
    return sorted(field for field in fields if field and not field.isdigit() and field not in {*logged, "epoch"})


def _uncalled_hooks(callback: keras.callbacks.Callback) -> list[str]:
    """The batch and validation hooks ``callback`` defines (its class's or set on it, as
    ``LambdaCallback`` does), which would never run; ModelCheckpoint's batch hook is idle when it
    saves once an epoch."""
    own = {n for k in type(callback).__mro__ if k not in keras.callbacks.Callback.__mro__ for n in vars(k)} | set(vars(callback))
    hooks = [hook for hook in _UNCALLED_HOOKS if hook in own]
    if isinstance(callback, keras.callbacks.ModelCheckpoint) and callback.save_freq == "epoch":
        hooks = [hook for hook in hooks if hook != "on_train_batch_end"]
    return hooks


class KerasCallback(Callback):
    """Runs a Keras callback's epoch-level hooks from trainkit's.

    For the run, ``model.optimizer`` is the trainer's optimizer (what ``ReduceLROnPlateau`` and
    ``LearningRateScheduler`` change; a model compiled before keeps its own again afterwards),
    ``model.stop_training = True`` stops training after the epoch, as in ``model.fit``,
    ``model.history`` is the History of the fit, and an uncompiled model's ``model.evaluate(...)``
    is the trainer's (:func:`trainer_evaluate`). The Keras
    callback's own state (a plateau's patience so far) is not in trainkit's checkpoints: a resumed
    run starts it afresh, with the learning rate the checkpoint's optimizer holds.

    Args:
        callback: The Keras callback.
    """

    def __init__(self, callback: keras.callbacks.Callback) -> None:
        self.callback = callback
        # Whether this wrapper lent the trainer's optimizer to the model (the first of several
        # Keras callbacks does), and what the model held before.
        self._lent = False
        self._previous_optimizer: Any = None
        # The last epoch's logs: model.fit passes them to on_train_end ({} when no epoch ended).
        self._last_logs: Mapping[str, float] | None = None
        # Whether this wrapper lent the trainer's evaluate to an uncompiled model.
        self._lent_evaluate = False

    def set_trainer(self, trainer: Trainer) -> None:
        super().set_trainer(trainer)
        self.callback.set_model(trainer.model)

    def check_monitor(self, logged: Collection[str]) -> None:
        """Raises ``ArgumentError(bad-monitor)`` when the Keras callback watches a value the epoch
        logs will not hold: before any epoch (as trainkit's EarlyStopping does), or at an epoch's end
        against its logs (after a callback that may add the value, as ``model.fit`` allows).

        Keras's ``EarlyStopping``, ``ReduceLROnPlateau`` and a ``save_best_only`` ``ModelCheckpoint``
        failed on it after the first epoch, with a ValueError that their mode could not be told
        (or, with ``mode`` given, warned each epoch and did nothing).
        """
        callback = self.callback
        watches = isinstance(callback, keras.callbacks.EarlyStopping | keras.callbacks.ReduceLROnPlateau) or (
            isinstance(callback, keras.callbacks.ModelCheckpoint) and callback.save_best_only)
        monitor = getattr(callback, "monitor", None)
        if watches and isinstance(monitor, str) and monitor not in logged:
            raise ArgumentError("bad-monitor", f'{type(callback).__name__} monitors "{monitor}", but the epoch logs only have {sorted(logged)}.'
                                               f"{closest(monitor, logged)} Monitor one of those (val_* needs validation data).")
        if isinstance(monitor, str) and self._undetermined_mode():
            # Keras's ValueError at the first epoch's end, with an epoch trained. A ModelCheckpoint
            # that saves every epoch sets its mode too, on a monitor the logs lack as well
            # (ModelCheckpoint("m.keras", monitor="val_acc"), where the logs have val_accuracy).
            absent = "" if monitor in logged else f" Nor do the epoch logs have it: they have {sorted(logged)}.{closest(monitor, logged)}"
            raise ArgumentError("bad-monitor", f'{type(callback).__name__} monitors "{monitor}" with mode="auto", which cannot tell whether it should '
                                               "go up or down (it is neither a loss nor a metric of known direction): pass mode='max' (higher is "
                                               f"better) or mode='min'.{absent}")
        missing = _missing_path_fields(callback, logged)
        if missing:
            # ModelCheckpoint formats its filepath with the epoch's logs at each epoch's end: a KeyError
            # ("Failed to format this callback filepath") after the first epoch had trained.
            batch = " ({batch} is filled only when saving every few batches, which trainkit does not do)" if missing[0] == "batch" else ""
            raise ArgumentError("bad-monitor", f'ModelCheckpoint\'s filepath "{callback.filepath}" names {{{missing[0]}}}, but the epoch logs only '
                                               f"have {sorted(logged)} (and epoch){batch}.{closest(missing[0], logged)} Name one of those "
                                               "(val_* needs validation data).")

    @property
    def may_add_logs(self) -> bool:
        """Whether the Keras callback may add values to the epoch logs for the callbacks after it to
        monitor, as ``model.fit`` allows: any but Keras's own that only read them. (A
        ``LambdaCallback`` adding an F1 score had the EarlyStopping after it that monitored the
        score refused before training, ``bad-monitor``.)"""
        return type(self.callback) not in _READ_LOGS_ONLY

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        model = self.trainer.model
        self._lend()
        model.stop_training = False
        self._last_logs = None
        # As model.fit gives them before on_train_begin (steps: this fit's, set again at each epoch;
        # verbose: fit's, as its History has it: a callback that printed only when
        # params["verbose"] was set stayed silent under fit(verbose=1)).
        verbose = self.trainer.history.params.get("verbose", 0)
        self.callback.set_params({"epochs": self.trainer.epochs, "steps": self.trainer.steps_per_epoch, "verbose": verbose})
        self.callback.on_train_begin(dict(logs or {}))

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.callback.params["steps"] = self.trainer.steps_per_epoch  # known once the epoch is planned
        self.callback.on_epoch_begin(epoch, dict(logs or {}))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        # The logs themselves, as Keras passes them: a value the callback adds (ReduceLROnPlateau's
        # learning_rate) reaches the History.
        self.check_monitor(logs)  # the logs as they are: a callback before this one may add the value
        mode = self._monitor_mode()
        if mode is not None:  # read by the callback's _set_monitor_op, at its first on_epoch_end
            self.callback.mode = mode
        self.callback.on_epoch_end(epoch, logs)
        self._last_logs = logs  # the dict itself: callbacks after this one may still add to it
        if getattr(self.trainer.model, "stop_training", False):
            self.trainer.stop_training = True

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        # model.fit's on_train_end gets the last epoch's logs, not trainkit's run summary
        # (epochs_run, stop_reason): a callback reading logs["val_loss"] there got a KeyError.
        if not self._lent:
            # A Keras callback listed before this one lent the optimizer and has given it back by
            # now (its on_train_end ran first): this one's on_train_end still reads the run's.
            self._lend()
        try:
            self.callback.on_train_end(dict(self._last_logs or {}))
        finally:
            self.give_back()

    def give_back(self) -> None:
        """Gives the model back what the run lent it (its optimizer, ``evaluate``); nothing when
        nothing is lent. The trainer calls it once the run ended, however it ended: a callback's
        ``on_train_end`` that raised before this one's left the trainer's ``evaluate`` on the
        model, which a later ``model.compile`` did not replace."""
        model = self.trainer.model
        if self._lent and self._previous_optimizer is not None:
            model.optimizer = self._previous_optimizer
        elif self._lent and "optimizer" in vars(model):
            del model.optimizer
        if self._lent_evaluate and "evaluate" in vars(model):
            del model.evaluate
        self._lent = self._lent_evaluate = False

    def _monitor_mode(self) -> str | None:
        """``"max"`` or ``"min"`` for a Keras callback that monitors a metric with ``mode="auto"``
        (``EarlyStopping``, ``ModelCheckpoint``, ``ReduceLROnPlateau``): the metric's direction,
        which Keras finds in ``model.metrics``. A model trainkit trains holds no compiled metrics,
        so ``monitor="val_accuracy"`` raised "isn't able to automatically determine" after the
        first epoch. ``None`` where Keras decides itself (the loss), or fails with its own message.
        """
        callback = self.callback
        if getattr(callback, "mode", None) != "auto" or getattr(callback, "monitor_op", False) is not None:
            return None
        mode = metric_mode(self.trainer.metrics, callback.monitor)
        if mode is None and str(callback.monitor).endswith("_loss"):
            # An output's loss (val_a_loss) or a tracker a train_step logs (d_loss): a loss, which
            # Keras finds in no metric, and failed on after the first epoch.
            return "min"
        return mode

    def _undetermined_mode(self) -> bool:
        """Whether the Keras callback (one of Keras's monitor callbacks: ``EarlyStopping``,
        ``ModelCheckpoint``, ``ReduceLROnPlateau``) will fail at its first ``on_epoch_end`` because
        ``mode="auto"`` cannot tell its monitor's direction: neither the loss nor a metric with one
        (a plain function's, ``metrics=[hit_rate]``; a value ``log_scalar`` logs)."""
        callback = self.callback
        if not hasattr(callback, "_set_monitor_op") or self._monitor_mode() is not None:
            return False
        if getattr(callback, "mode", None) != "auto" or getattr(callback, "monitor_op", False) is not None:
            return False
        name = str(callback.monitor).removeprefix("val_")
        # As Keras reads it: any direction a metric of that name declares ("up", else less is better).
        return name != "loss" and not any(getattr(m, "name", None) == name and hasattr(m, "_direction") for m in self.trainer.metrics)

    def _lend(self) -> None:
        """Lends the trainer's optimizer to the model, unless it holds it already (another Keras
        callback lent it, or it was compiled with it), keeping what it held to give back."""
        model = self.trainer.model
        self._previous_optimizer = vars(model).get("optimizer")
        self._lent = self._previous_optimizer is not self.trainer.optimizer
        if self._lent:
            model.optimizer = self.trainer.optimizer
        # A Keras callback that evaluates (self.model.evaluate(x_val, y_val)) met "You must call
        # compile() before using the model": a model trainkit trains need not be compiled.
        self._lent_evaluate = not getattr(model, "compiled", False) and "evaluate" not in vars(model)
        if self._lent_evaluate:
            model.evaluate = trainer_evaluate(self.trainer)
        # model.fit sets model.history to its History (and leaves it there): a Keras callback that
        # reads self.model.history.history met AttributeError. The epochs so far, as in Keras
        # (the History is appended after the callbacks' on_epoch_end).
        model.history = self.trainer.history
