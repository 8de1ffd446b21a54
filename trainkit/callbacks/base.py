"""Callback protocol: Keras-like hooks called between compiled calls, never inside them."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from trainkit.errors import ArgumentError, TrainingInterrupted, closest
from trainkit.interrupt import SecondInterrupt

if TYPE_CHECKING:
    from trainkit.loop import StepOutputs
    from trainkit.trainer import Trainer

# The one list of hook names: a misspelt override in a subclass is caught at registration.
EVENTS: tuple[str, ...] = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_execution_end",
)


class Callback:
    """Base class; override any hook of :data:`EVENTS`. Every hook is a no-op by default.

    ``self.trainer`` is set before ``on_train_begin``. Set ``self.trainer.stop_training = True``
    to stop after the current epoch.
    """

    trainer: Trainer

    def set_trainer(self, trainer: Trainer) -> None:
        """Called once by the trainer before training starts."""
        self.trainer = trainer

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Before the first epoch."""

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """After the last epoch, also when training stopped early or failed."""

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Before the first compiled call of ``epoch`` (0-based)."""

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        """After validation of ``epoch``; ``logs`` holds its exact loss and metrics."""

    def on_execution_end(self, first_step: int, outputs: StepOutputs) -> None:
        """After each compiled call, with every step's scalars as numpy arrays ``[steps]``.

        Args:
            first_step: Global index (0-based) of the first step the call ran.
            outputs: The per-step values; ``outputs.as_dict()`` maps names to arrays.
        """

    def get_state(self) -> dict[str, Any] | None:
        """JSON-serialisable state a checkpoint must keep to resume this callback exactly."""
        return None

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`get_state` returned (when resuming from a checkpoint)."""


def _overrides(callback: Callback, hook: str) -> bool:
    return getattr(type(callback), hook) is not getattr(Callback, hook)


def _unknown_hooks(cls: type) -> list[str]:
    """Methods of ``cls`` and its own base classes (not trainkit's) that look like hooks but are
    none: ``on_epoch_ends``, ``onEpochEnd``. Each would never be called, in silence."""
    names = {n for klass in cls.__mro__ if klass not in Callback.__mro__ for n in vars(klass)}
    return sorted(n for n in names if (n.startswith("on_") or re.fullmatch(r"on[A-Z]\w*", n)) and n not in EVENTS)


# The positional arguments CallbackList passes each hook (see its methods below).
_HOOK_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "on_train_begin": ("logs",),
    "on_train_end": ("logs",),
    "on_epoch_begin": ("epoch", "logs"),
    "on_epoch_end": ("epoch", "logs"),
    "on_execution_end": ("first_step", "outputs"),
}


def _unfit_hook(callback: Callback) -> str | None:
    """The first overridden hook that cannot take the arguments trainkit calls it with, as
    ``name(parameters)``: ``on_execution_end(self, logs)``, written as Keras's batch hooks are, or
    ``on_train_end(self)``, failed with a bare ``TypeError`` only once training reached them."""
    for hook, arguments in _HOOK_ARGUMENTS.items():
        if not _overrides(callback, hook):
            continue
        try:
            signature = inspect.signature(getattr(callback, hook))
        except (TypeError, ValueError):  # not introspectable (a builtin): left to the call
            continue
        try:
            signature.bind(*arguments)
        except TypeError:
            return f"{hook}{signature}"
    return None


def _snake(name: str) -> str:
    """``onEpochEnd`` -> ``on_epoch_end``."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


class CallbackList:
    """Dispatches hooks to several callbacks in order."""

    def __init__(self, callbacks: Iterable[Callback], trainer: Trainer) -> None:
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                # (Trainer.fit wraps the Keras callbacks it takes before they get here.)
                raise ArgumentError("bad-callback", f"callbacks must be trainkit.callbacks.Callback instances, got {type(cb).__name__}.")
            unknown = _unknown_hooks(type(cb))
            if unknown:
                hint = closest(unknown[0] if unknown[0].startswith("on_") else _snake(unknown[0]), EVENTS)
                raise ArgumentError("bad-callback", f"{type(cb).__name__} defines {unknown}, which trainkit never calls.{hint} Hooks are: {', '.join(EVENTS)}.")
            unfit = _unfit_hook(cb)
            if unfit is not None:
                calls = ", ".join(f"{hook}({', '.join(arguments)})" for hook, arguments in _HOOK_ARGUMENTS.items())
                raise ArgumentError("bad-callback", f"{type(cb).__name__}.{unfit} cannot take what trainkit passes it; the hooks are called as {calls}.")
            cb.set_trainer(trainer)
        self._listeners = {e: [cb for cb in self.callbacks if _overrides(cb, e)] for e in EVENTS}

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._dispatch("on_train_begin", logs)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self._dispatch("on_train_end", logs)

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._dispatch("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        self._dispatch("on_epoch_end", epoch, logs)

    def on_execution_end(self, first_step: int, outputs: StepOutputs) -> None:
        self._dispatch("on_execution_end", first_step, outputs)

    def _dispatch(self, hook: str, *arguments: Any) -> None:
        """Calls ``hook`` of each listening callback in order.

        A ``KeyboardInterrupt`` one raises (its own stop, or Ctrl-C where no handler of fit's
        caught it) is raised once every other callback has had the hook, as they all have it when
        Ctrl-C comes during one: the trainer then checkpoints the run with every callback's state
        at the same point (see ``Trainer.fit``). A second Ctrl-C (``SecondInterrupt``) and a
        stop already under way (``TrainingInterrupted``) go out at once.
        """
        interrupted: KeyboardInterrupt | None = None
        for cb in self._listeners[hook]:
            try:
                getattr(cb, hook)(*arguments)
            except KeyboardInterrupt as err:
                if isinstance(err, SecondInterrupt | TrainingInterrupted):
                    raise
                interrupted = interrupted or err
        if interrupted is not None:
            raise interrupted


def flat_callbacks(callbacks: Iterable[Any]) -> list[Any]:
    """``callbacks`` with the lists and tuples inside it flattened into it, in order (``fit``'s
    ``callbacks=`` and a recipe run's alike)."""
    flat: list[Any] = []
    for callback in callbacks:
        flat.extend(flat_callbacks(callback) if isinstance(callback, list | tuple) else [callback])
    return flat


def is_better(value: float, best: float, mode: str, min_delta: float = 0.0) -> bool:
    """True when ``value`` improves on ``best`` by more than ``min_delta`` in direction ``mode``."""
    if not np.isfinite(value):
        return False
    return value < best - min_delta if mode == "min" else value > best + min_delta


def metric_mode(metrics: Iterable[Any], monitor: str) -> str | None:
    """``"max"`` or ``"min"``: the direction Keras gives the metric ``monitor`` names (without its
    ``val_`` prefix) among ``metrics`` (an ``F1Score`` or ``R2Score`` goes up, an ``MAE`` down);
    ``None`` when none of them is that metric or it has no direction (the loss, a function)."""
    name = str(monitor).removeprefix("val_")
    for metric in metrics:
        direction = getattr(metric, "_direction", None)
        if getattr(metric, "name", None) == name and direction in ("up", "down"):
            return "max" if direction == "up" else "min"
    return None
