"""trainkit: a compiled GradientTape training loop that tells you why your loss looks wrong."""

from trainkit.callbacks import Callback, EarlyStopping
from trainkit.errors import (
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
from trainkit.trainer import Trainer

__all__ = [
    "Callback",
    "CompatibilityError",
    "DataError",
    "EarlyStopping",
    "Finding",
    "History",
    "NonFiniteLossError",
    "RecipeError",
    "RunDirError",
    "Trainer",
    "TrainingInterrupted",
    "TrainkitError",
    "UnknownNameError",
]
__version__ = "0.1.0"
