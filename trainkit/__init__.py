"""trainkit: a compiled GradientTape training loop that tells you why your loss looks wrong."""

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

__all__ = [
    "CompatibilityError",
    "DataError",
    "Finding",
    "NonFiniteLossError",
    "RecipeError",
    "RunDirError",
    "TrainingInterrupted",
    "TrainkitError",
    "UnknownNameError",
]
__version__ = "0.1.0"
