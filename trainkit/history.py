"""The record ``Trainer.fit`` returns, shaped like Keras's ``History``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass
class History:
    """Per-epoch values of a run.

    Attributes:
        history: ``{"loss": [...], "val_loss": [...], "accuracy": [...], ...}``, one entry per epoch.
        epoch: The epoch indices (0-based) that ran.
        params: What ``fit`` was asked for, as Keras's ``History.params``: ``{"verbose": ...,
            "epochs": ..., "steps": ...}`` (``steps``: batches an epoch, ``None`` when unknown).
        model: The model ``fit`` trained, as Keras's ``History.model``.
    """

    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    epoch: list[int] = dataclasses.field(default_factory=list)
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: Any = dataclasses.field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        # Short, as the last line of a notebook cell shows it: the dataclass's own repr printed
        # every value of every epoch (Keras's History shows its address).
        last = ", ".join(f"{key}={values[-1]:.4g}" for key, values in self.history.items() if values)
        return f"History(epochs={len(self.epoch)}{', last: ' + last if last else ''})"

    def append(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Adds one epoch's logs; ``history[key][i]`` always belongs to ``epoch[i]``.

        A key missing from some epochs (a scalar logged only sometimes, a resumed epoch that
        ran no step) holds NaN there, so the lists stay aligned with ``epoch``. Values that are no
        number (a callback's ``logs["phase"] = "warmup"``) are not epoch values and are left out.
        """
        done = len(self.epoch)
        self.epoch.append(epoch)
        for key, value in numeric_logs(logs).items():
            self.history.setdefault(key, [math.nan] * done).append(value)
        for values in self.history.values():
            if len(values) == done:
                values.append(math.nan)


def numeric_logs(logs: Mapping[str, object]) -> dict[str, float]:
    """The epoch logs that are numbers, as floats (a callback may add others, as with Keras; a
    flag is no epoch value either)."""
    out = {}
    for key, value in logs.items():
        if isinstance(value, str | bytes | bool | np.bool_) or value is None:  # numpy's flags too: logs["loss"] < np.float32(1) is one
            continue
        try:
            out[key] = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):  # an array, an object
            continue
    return out
