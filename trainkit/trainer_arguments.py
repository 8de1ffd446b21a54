"""Checks of :class:`~trainkit.Trainer`'s constructor arguments, made before anything is built.

Python takes ``jit_compile="false"`` (a true string), ``seed="abc"`` or ``keep_checkpoints=0``
without a word, and the mistake surfaces later, as a wrong setting or a TensorFlow error deep in
``fit``. Each check here raises :class:`~trainkit.errors.ArgumentError` (``bad-argument``) naming
the argument, what it takes and what it got. :func:`needs_init` guards the public methods against a
subclass whose ``__init__`` skipped the constructor altogether.
"""

from __future__ import annotations

import functools
import numbers
import os
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

import numpy as np
import tensorflow as tf

from trainkit.errors import ArgumentError

_Method = TypeVar("_Method", bound=Any)

MAX_SEED = 2**32 - 1  # TensorFlow's and Keras's seeds are 32-bit


def is_whole_number(value: Any) -> bool:
    """A whole number, numpy's included (``np.int64(3)``, a seed drawn with numpy), not a bool (nor ``np.True_``)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _refuse(name: str, takes: str, value: Any) -> ArgumentError:
    return ArgumentError("bad-argument", f"{name} must be {takes}, got {value!r}.")


def check_trainer_arguments(
    *,
    logdir: Any,
    seed: Any,
    allow: Any,
    num_classes: Any,
    steps_per_execution: Any,
    jit_compile: Any,
    scalars_every: Any,
    statistics: Any,
    report_last_batch_loss: Any,
    histograms_every: Any,
    step_table_steps: Any,
    hparams: Any,
    diagnose: Any,
    checkpoint_every: Any,
    keep_checkpoints: Any,
    on_nan: Any,
    strategy: Any,
    auto_scale_loss: Any = True,
) -> None:
    """Raises ``ArgumentError(bad-argument)`` for the first argument of the wrong kind or range.

    ``diagnose`` may be a bool or a callback (checked where callbacks are); ``hparams``' values
    are checked by :func:`trainkit.writers.hparams.clean_hparams`.
    """
    if logdir is not None and not isinstance(logdir, str | os.PathLike):
        raise _refuse("logdir", "a directory path (str or pathlib.Path) or None", logdir)
    if seed is not None and not (is_whole_number(seed) and 0 <= seed <= MAX_SEED):
        raise _refuse("seed", f"a whole number from 0 to {MAX_SEED} or None", seed)
    # A string is one code (the checks' validate_allow takes it so); anything else must be a
    # collection, or frozenset() fails with a bare TypeError, or splits a str into characters.
    if not isinstance(allow, str | Collection):
        raise _refuse("allow", 'a check code or a list of them, such as ["class-imbalance"]', allow)
    if num_classes is not None and not (is_whole_number(num_classes) and num_classes >= 2):
        raise _refuse("num_classes", "a whole number >= 2 or None", num_classes)
    if steps_per_execution != "auto" and not (is_whole_number(steps_per_execution) and steps_per_execution >= 1):
        raise _refuse("steps_per_execution", 'a positive int or "auto"', steps_per_execution)
    if not (isinstance(jit_compile, bool) or jit_compile == "auto"):
        raise _refuse("jit_compile", 'True, False or "auto"', jit_compile)
    if not (is_whole_number(scalars_every) and scalars_every >= 1):
        raise _refuse("scalars_every", "a positive int (write every Nth step's scalars)", scalars_every)
    for name, flag in (("statistics", statistics), ("report_last_batch_loss", report_last_batch_loss), ("auto_scale_loss", auto_scale_loss)):
        if not isinstance(flag, bool):
            raise _refuse(name, "True or False", flag)
    if not isinstance(diagnose, bool) and not hasattr(diagnose, "on_epoch_end"):
        raise _refuse("diagnose", "True, False or a DiagnosisCallback", diagnose)
    if histograms_every not in (None, "epoch") and not (is_whole_number(histograms_every) and histograms_every >= 1):
        raise _refuse("histograms_every", 'a positive int, "epoch" or None', histograms_every)
    if step_table_steps is not None and not (is_whole_number(step_table_steps) and step_table_steps >= 0):
        raise _refuse("step_table_steps", "a non-negative int or None", step_table_steps)
    if hparams is not None and not isinstance(hparams, Mapping):
        raise _refuse("hparams", "a mapping of names to numbers, strings or booleans, or None", hparams)
    if checkpoint_every != "auto" and not (is_whole_number(checkpoint_every) and checkpoint_every >= 0):
        raise _refuse("checkpoint_every", 'a non-negative int or "auto"', checkpoint_every)
    if not (is_whole_number(keep_checkpoints) and keep_checkpoints >= 1):
        raise _refuse("keep_checkpoints", "a positive int", keep_checkpoints)
    if on_nan not in ("stop", "warn"):
        raise _refuse("on_nan", '"stop" or "warn"', on_nan)
    if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
        raise _refuse("strategy", "a tf.distribute.Strategy (MirroredStrategy(), ...) or None", strategy)


def needs_init(method: _Method) -> _Method:
    """Refuses ``method`` on a subclass whose ``__init__`` never called ``super().__init__(...)``.

    Such a trainer has none of the attributes ``Trainer.__init__`` sets, and ``fit`` failed deep
    inside with ``AttributeError: 'MyTrainer' object has no attribute 'is_chief'``.
    """

    @functools.wraps(method)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        if "_initialized" not in vars(self):
            raise ArgumentError("trainer-not-initialized", f"{type(self).__name__}.__init__ did not call super().__init__(model, loss=..., "
                                                           "optimizer=..., task=...), which sets up everything fit, evaluate and predict use: "
                                                           "call it in __init__.")
        return method(self, *args, **kwargs)

    return checked  # type: ignore[return-value]
