"""Exceptions raised for user errors, each with a stable machine-readable ``code``.

Every user-facing problem (bad recipe, bad data, an incompatible model) is one of these. The CLI
turns any :class:`TrainkitError` into a single line on stderr and exit code 2; Python callers can
branch on ``err.code``, which never changes between releases for the same problem. :func:`closest`
gives their messages a "did you mean"; it lives here, free of Keras, so that modules which must not
import Keras (the recipe, the data files) use the same one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_match(name: str, choices: Iterable[str]) -> str | None:
    """The choice ``name`` most likely means: one that differs only in case, else the closest
    spelling (difflib ratio 0.5 or more), else ``None``.

    Case first: difflib compares characters as they are, so ``LABEL`` is nowhere near ``label``.
    """
    options = [str(c) for c in choices]
    same = [c for c in options if c.casefold() == str(name).casefold()]
    if same:
        return same[0]
    match = difflib.get_close_matches(str(name), options, n=1, cutoff=0.5)
    return match[0] if match else None


def closest(name: str, choices: Iterable[str]) -> str:
    """Returns ' Did you mean "x"?' for the closest choice, or '' when none is close."""
    match = closest_match(name, choices)
    return f' Did you mean "{match}"?' if match is not None else ""


class TrainkitError(Exception):
    """Base class of all trainkit user errors.

    Attributes:
        code: Stable identifier of the problem, e.g. ``"double-activation"``.
        message: What was found, why it cannot work and how to fix it.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message


class RecipeError(TrainkitError, ValueError):
    """A recipe file, a ``--set`` override or a name inside a recipe is invalid."""


class CompatibilityError(TrainkitError, ValueError):
    """The loss, output activation and task can never train well together."""


class DataError(TrainkitError, ValueError):
    """The data does not fit the task, the loss or the model."""


class RunDirError(TrainkitError, OSError):
    """The run directory cannot be created or written."""


#: What an interruption says when it came before training's first step.
NOTHING_TRAINED = "Stopped before training began; nothing was trained or kept."


class TrainingInterrupted(KeyboardInterrupt):
    """Training was stopped by a signal (Ctrl-C, a notebook's stop button, SIGTERM); the run was
    saved and can be resumed (``fit(..., resume=True)``, ``trainkit train --resume``).

    A ``KeyboardInterrupt``, as ``model.fit``'s Ctrl-C is, not a :class:`TrainkitError`: the user's
    stop is no error, ``except KeyboardInterrupt`` in a notebook catches it, and a sweep loop that
    catches ``Exception`` to log a failed run and go on must not swallow it (it went on to the
    next run). Like the errors, it carries a stable code and a message.

    Attributes:
        code: ``"interrupted"``.
        message: What was stopped, and what was kept.
        exit_code: What the process should exit with: 130 after SIGINT, 143 after SIGTERM.
    """

    def __init__(self, code: str, message: str, *, exit_code: int = 130) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.exit_code = exit_code


class NonFiniteLossError(TrainkitError, ArithmeticError):
    """Reserved for a loss that became NaN or infinite; trainkit does not raise it.

    ``fit`` ends such a run itself (``on_nan="stop"``): ``trainer.stop_reason`` is then
    ``"nan-loss"``, the ``nan-loss`` finding says where, and the CLI exits with code 3.
    """


class ArgumentError(TrainkitError, ValueError, TypeError):
    """An argument of a trainkit class or function out of its range (``batch_size=0``, say) or
    of the wrong kind (a Keras callback where a trainkit one goes): a ``ValueError`` and a
    ``TypeError`` both, so code catching either built-in sees it."""


class ModelAttributeError(ArgumentError, AttributeError):
    """A step ported from a ``keras.Model`` read an attribute of the model (``self.compiled_loss``,
    ``self.trainable_variables``) from the trainer, which is not the model: an ``AttributeError``
    too, so ``hasattr`` and ``getattr(..., default)`` still answer as for any missing attribute."""


class UnknownNameError(TrainkitError, ValueError):
    """A loss, optimizer, metric, layer, activation or initializer name is not known."""
