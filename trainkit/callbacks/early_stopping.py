"""Stop training when a monitored epoch value stops improving."""

from __future__ import annotations

import numbers
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from trainkit.callbacks.base import Callback, is_better, metric_mode
from trainkit.errors import ArgumentError
from trainkit.resolve import closest
from trainkit.trainer_arguments import is_whole_number


class EarlyStopping(Callback):
    """Stops after ``patience`` epochs without improvement of ``monitor``.

    Args:
        monitor: Epoch log to watch, e.g. ``"val_loss"``.
        patience: Epochs without improvement before stopping.
        min_delta: Smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"`` or ``"auto"``: the monitored metric's direction as Keras gives
            it (max for an F1 or R2 score too); for a value without one, max for accuracy-like names.
        restore_best_weights: Put back the weights of the best epoch when stopping, and at the
            end of a run that trained all its epochs (as Keras 3's EarlyStopping does).
        baseline: A value to reach: until an epoch beats it, epochs count toward ``patience``
            even when they improve on the best so far (as in Keras). ``None``: no baseline.
        start_from_epoch: Epochs of warm-up not watched at all (neither best nor patience), as in
            Keras.

    Attributes:
        restored_epoch: The epoch whose weights were put back, ``None`` while none were.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 10, min_delta: float = 0.0, mode: str = "auto", restore_best_weights: bool = True,
                 baseline: float | None = None, start_from_epoch: int = 0) -> None:
        # A misspelt mode ("mn") used to mean "max": the run stopped as the loss fell and put back its worst weights.
        if mode not in ("min", "max", "auto"):
            raise ArgumentError("bad-argument", f'EarlyStopping mode must be "min", "max" or "auto", got {mode!r}.{closest(str(mode), ("min", "max", "auto"))}')
        if not isinstance(monitor, str):
            raise ArgumentError("bad-argument", f"EarlyStopping monitor must be the name of an epoch value (\"val_loss\"), got {monitor!r}.")
        if not is_whole_number(patience) or patience < 0:
            raise ArgumentError("bad-argument", f"EarlyStopping patience must be a whole number of epochs >= 0, got {patience!r}.")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) or not min_delta >= 0:
            raise ArgumentError("bad-argument", f"EarlyStopping min_delta must be a number >= 0, got {min_delta!r}.")
        if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, numbers.Real) or not np.isfinite(baseline)):
            raise ArgumentError("bad-argument", f"EarlyStopping baseline must be a finite number or None, got {baseline!r}.")
        if not is_whole_number(start_from_epoch) or start_from_epoch < 0:
            raise ArgumentError("bad-argument", f"EarlyStopping start_from_epoch must be a whole number of epochs >= 0, got {start_from_epoch!r}.")
        # "auto": the monitored metric's own direction once the trainer's metrics are known (see
        # on_train_begin); until then, and for values that have none, this guess from the name.
        self._auto_mode = mode == "auto"
        if mode == "auto":
            mode = "max" if any(k in monitor for k in ("acc", "auc", "precision", "recall")) else "min"
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, min_delta, mode
        self.restore_best_weights = restore_best_weights
        self.baseline, self.start_from_epoch = baseline, int(start_from_epoch)
        self.best = np.inf if mode == "min" else -np.inf
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.restored_epoch: int | None = None
        self.wait = 0
        self._best_weights: list[np.ndarray] | None = None

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._auto_mode:
            # An F1Score or R2Score goes up: guessed from the name, "min" stopped as it rose and
            # put back the weights of its worst epoch.
            self.mode = metric_mode(self.trainer.metrics, self.monitor) or self.mode
        # A fit starts from nothing, as Keras's EarlyStopping does (a best value or weights kept
        # from an earlier fit stopped the next one after an epoch and put back old weights);
        # only a resumed fit continues the state its checkpoint restored.
        if getattr(self, "_resumed", False):
            self._resumed = False
            return
        self.best = np.inf if self.mode == "min" else -np.inf
        self.best_epoch = self.stopped_epoch = self.restored_epoch = None
        self.wait = 0
        self._best_weights = None

    def check_monitor(self, logged: Collection[str]) -> None:
        """Raises ``ArgumentError(bad-monitor)`` unless the epoch logs will hold the monitor.

        Run before training, so a typo costs no epoch and leaves no half-written run.
        """
        if self.monitor not in logged:
            raise ArgumentError("bad-monitor", f'EarlyStopping monitors "{self.monitor}", but the epoch logs only have {sorted(logged)}.{closest(self.monitor, logged)} '
                                "Monitor one of those (val_* needs validation data).")

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        self.check_monitor(logs)
        if epoch < self.start_from_epoch:
            return
        value = float(logs[self.monitor])
        if is_better(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch = value, epoch
            # Short of the baseline, an improvement still spends patience (Keras's rule).
            reached = self.baseline is None or is_better(value, self.baseline, self.mode, self.min_delta)
            self.wait = 0 if reached else self.wait + 1
            if self.restore_best_weights:
                # The model's and those of the layers its trainer holds beside it (a GAN's generator).
                # A copy by .numpy(): np.array on a Keras variable warns (DeprecationWarning, its
                # __array__ takes no copy keyword) at every improvement.
                self._best_weights = [np.array(v.numpy()) for v in self.trainer._restorable_weights()]
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True
            self._restore(self.trainer._restorable_weights())

    def restore_at_end(self, weights: Sequence[Any], last_epoch: int | None) -> None:
        """Puts the best weights back as a run ends (the trainer calls it, before ``on_train_end``).

        A run that never stopped ended with its last weights where Keras's callback gives the
        best. After the final checkpoint, which keeps the last weights a longer run goes on from
        (so a resume stays the uninterrupted run), and after an EMA optimizer's averaging, which
        replaced weights a stop had restored; before ``on_train_end``, where the diagnosis and the
        report read :attr:`restored_epoch`.

        Args:
            weights: The trainer's weights kept at the best epoch, the model's and those of the
                layers it holds beside it (a finished run resumed ends before callbacks get a
                trainer).
            last_epoch: The epoch whose end the weights are at (``None`` when none is: the run
                trained none, or a NaN loss stopped it inside an epoch).
        """
        if self.stopped_epoch is not None or (self.best_epoch is not None and self.best_epoch != last_epoch):
            self._restore(weights)

    def _restore(self, weights: Sequence[Any]) -> None:
        if self.restore_best_weights and self._best_weights is not None:
            # A checkpoint of an older trainkit kept the model's weights alone: those come first.
            for variable, value in zip(weights, self._best_weights, strict=False):
                variable.assign(value)
            self.restored_epoch = self.best_epoch

    def get_state(self) -> dict[str, Any]:
        """Best value, its epoch, epochs waited, the best weights when they are restored, the epoch it stopped at."""
        weights = [w.tolist() for w in self._best_weights] if self._best_weights is not None else None
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "best_weights": weights,
                "stopped_epoch": self.stopped_epoch, "restored_epoch": self.restored_epoch}

    def set_state(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = float(state["best"]), state["best_epoch"], int(state["wait"])
        # Set only in the checkpoint of the epoch it stopped at: a resume of that finished run
        # reports the weights it restored, as the run did.
        self.stopped_epoch = state.get("stopped_epoch")
        self.restored_epoch = state.get("restored_epoch", self.best_epoch if self.stopped_epoch is not None and self.restore_best_weights else None)
        weights = state.get("best_weights")
        self._best_weights = [np.asarray(w, dtype=np.float32) for w in weights] if weights is not None else None
        self._resumed = True
