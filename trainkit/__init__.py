"""trainkit: a compiled GradientTape training loop that tells you why your loss looks wrong.

The public names below are imported lazily (PEP 562), so ``import trainkit.recipe`` or the CLI's
``trainkit recipes`` do not pay for importing TensorFlow, and the CLI can import TensorFlow itself
with its start-up noise filtered (see :mod:`trainkit.quiet`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "ArgumentError": "trainkit.errors",
    "Callback": "trainkit.callbacks",
    "EarlyStopping": "trainkit.callbacks",
    "CompatibilityError": "trainkit.errors",
    "DataError": "trainkit.errors",
    "NonFiniteLossError": "trainkit.errors",
    "RecipeError": "trainkit.errors",
    "RunDirError": "trainkit.errors",
    "TrainingInterrupted": "trainkit.errors",
    "TrainkitError": "trainkit.errors",
    "UnknownNameError": "trainkit.errors",
    "Finding": "trainkit.findings",
    "History": "trainkit.history",
    "Trainer": "trainkit.trainer",
    "load_recipe": "trainkit.recipe",
    "Recipe": "trainkit.recipe",
}

__all__ = [
    "ArgumentError",
    "Callback",
    "CompatibilityError",
    "DataError",
    "EarlyStopping",
    "Finding",
    "History",
    "NonFiniteLossError",
    "Recipe",
    "RecipeError",
    "RunDirError",
    "Trainer",
    "TrainingInterrupted",
    "TrainkitError",
    "UnknownNameError",
    "load_recipe",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from trainkit.callbacks import Callback, EarlyStopping
    from trainkit.errors import (
        ArgumentError,
        CompatibilityError,
        DataError,
        NonFiniteLossError,
        RecipeError,
        RunDirError,
        TrainingInterrupted,
        TrainkitError,
        UnknownNameError,
    )
    from trainkit.findings import Finding
    from trainkit.history import History
    from trainkit.recipe import Recipe, load_recipe
    from trainkit.trainer import Trainer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trainkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
