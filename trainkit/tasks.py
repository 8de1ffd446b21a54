"""The tasks trainkit trains for: one name each, in one place (free of Keras, for the recipe)."""

from __future__ import annotations

import typing
from typing import Literal

#: What a model's output is trained to predict.
Task = Literal["binary", "multiclass", "multilabel", "regression"]
#: Every :data:`Task`, in the order messages list them.
TASKS: tuple[str, ...] = typing.get_args(Task)
#: The tasks whose targets are classes.
CLASSIFICATION_TASKS = frozenset({"binary", "multiclass", "multilabel"})
