"""The per-step scalars of a run's most recent steps, kept in memory for ``Trainer.step_table()``.

Every compiled call returns its steps' scalars (loss, statistics, logged scalars) as one array;
:class:`StepTable` keeps those arrays as they came, whole calls at a time, and drops the oldest
calls once more than a bounded number of steps are held, so memory stays bounded however long
the run. Complete per-step records are in the run's TensorBoard events.
"""

from __future__ import annotations

from collections import deque

from trainkit.loop import StepOutputs

#: Steps ``Trainer.step_table()`` keeps by default: ~45 statistics x 4 bytes x 10k steps is ~2 MB
#: for a small MLP, and stays that size however long the run.
DEFAULT_KEPT_STEPS = 10_000


class StepTable:
    """The outputs of the most recent compiled calls, each with the step it started at."""

    def __init__(self) -> None:
        self._calls: deque[tuple[int, StepOutputs]] = deque()
        self._steps = 0  # steps held by the calls in self._calls

    def keep(self, first_step: int, outputs: StepOutputs, limit: int | None) -> None:
        """Adds a call's outputs, dropping whole old calls while ``limit`` steps remain without them.

        Args:
            first_step: The global step of the call's first step.
            outputs: What the call returned.
            limit: Steps to keep at least; ``None`` keeps every call.
        """
        self._calls.append((first_step, outputs))
        self._steps += outputs.steps
        while limit is not None and self._calls and self._steps - self._calls[0][1].steps >= limit:
            self._steps -= self._calls.popleft()[1].steps

    def rows(self) -> list[tuple[int, str, float]]:
        """Every kept scalar as ``(step, name, value)``, in step order."""
        rows: list[tuple[int, str, float]] = []
        for first_step, outputs in self._calls:
            for i in range(outputs.steps):
                rows.extend((first_step + i, name, float(outputs.values[i, j])) for j, name in enumerate(outputs.names))
        return rows
