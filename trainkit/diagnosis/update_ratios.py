"""Update/weight ratios of the weight matrices: the step size the learning rate gives, measured over
the first steps, at each of the very first steps, and per epoch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from trainkit.diagnosis.stat_reads import kernel_stats
from trainkit.stat_names import LEARNING_RATE, UPDATE_RATIO, variable_of

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser


def row_medians_of_finite(matrix: np.ndarray) -> np.ndarray:
    """Median of each row's finite entries (NaN for a row without any).

    ``np.nanmedian(..., axis=1)`` computes the same through masked arrays, ~0.5 ms a call; this
    runs after every epoch, over every epoch so far.
    """
    finite = np.isfinite(matrix)
    ordered = np.sort(np.where(finite, matrix, np.inf), axis=1)  # the finite entries first
    counts = finite.sum(axis=1)
    rows = np.arange(len(matrix))
    low, high = np.maximum((counts - 1) // 2, 0), np.maximum(counts // 2, 0)
    with np.errstate(invalid="ignore"):
        medians = (ordered[rows, np.minimum(low, matrix.shape[1] - 1)] + ordered[rows, np.minimum(high, matrix.shape[1] - 1)]) / 2
    return np.where(counts > 0, medians, np.nan)


def early_update_ratio(view: Diagnoser, *, at_peak_rate: bool = False) -> tuple[float | None, dict[str, float]]:
    """Median update/weight ratio of the weight matrices over the first steps of the run.

    The first steps measure the step size the learning rate gives relative to the weights (Adam's
    first updates are ~learning_rate per weight), before the updates shrink as training converges.

    Args:
        view: The diagnosis.
        at_peak_rate: Scale each step's ratios to the run's largest learning rate (see
            :func:`_scaled_to_peak_rate`): the step size the run's rate gives, for the rules that
            judge that rate, where the first steps of a warm-up measure a fraction of it.
    """
    names = kernel_stats(view, UPDATE_RATIO)
    columns = [view.first_values(name) for name in names]
    rows = max((len(column) for column in columns), default=0)
    matrix = np.full((rows, len(names)), np.nan)  # a statistic first seen later (a restored run) is shorter
    for j, column in enumerate(columns):
        matrix[: len(column), j] = column
    if at_peak_rate:
        matrix = _scaled_to_peak_rate(view, matrix)
    # Steps that changed no weight matrix at all measure no step size: an optimizer with
    # gradient_accumulation_steps=3 applies an update every third step, and a median over its
    # first steps was 0 (a slow run got no lr-too-low, and loss-at-chance blamed the labels).
    # Where no step moved anything, every step counts (updates of ~0: no gradient flows).
    moved = np.any(np.isfinite(matrix) & (matrix != 0), axis=1)
    if moved.any():
        matrix = matrix[moved]
    per_layer: dict[str, float] = {}
    for name, values in zip(names, matrix.T, strict=True):
        values = values[np.isfinite(values)]
        if values.size:
            per_layer[variable_of(name, UPDATE_RATIO)] = float(np.median(values))
    if not per_layer:
        return None, {}
    return float(np.median(list(per_layer.values()))), per_layer


def _scaled_to_peak_rate(view: Diagnoser, matrix: np.ndarray) -> np.ndarray:
    """The first steps' update/weight ratios (a row a step) as the run's largest learning rate gives them.

    A step's update is proportional to its learning rate (Adam's, SGD's, AdamW's decay): a warm-up
    from 0 to 1e-3 over 160 steps measured 0.015% over its first 32, and a run whose steps at 1e-3
    were healthy got lr-too-low and was told to raise the rate 6.6x, where the same run at a
    constant 1e-3 got no finding. Steps at a rate of 0 measured nothing and are left out (all of
    them, where every first step's rate was 0); a constant rate leaves the ratios as they are.
    """
    rates = view.first_values(LEARNING_RATE)[: len(matrix)]
    largest = view.epoch_values(LEARNING_RATE, "maximum")
    finite = np.concatenate([largest[np.isfinite(largest)], rates[np.isfinite(rates)]])
    peak = float(finite.max()) if finite.size else 0.0
    if len(rates) < len(matrix) or not peak > 0:
        return matrix
    known = np.isfinite(rates)
    scale = np.where(known & (rates > 0), peak / np.where(rates > 0, rates, 1.0), 1.0)
    scaled = matrix * scale[:, None]
    running = ~known | (rates > 0)
    return scaled[running] if running.any() else scaled


def first_steps_update_ratio(view: Diagnoser) -> tuple[float | None, dict[str, float]]:
    """The largest per-step median update/weight ratio (over the weight matrices) of the run's first steps.

    Kernels only: a bias starting at 0 has a ratio of ~1 at its first update whatever the rate.
    """
    if view.first_step != 0:
        return None, {}
    names = kernel_stats(view, UPDATE_RATIO)
    if not names:
        return None, {}
    n = view.t.lr_high_first_steps
    # A statistic first seen after the first rows (a restored run) has fewer values: NaN-padded.
    columns = [view.first_values(name)[:n] for name in names]
    matrix = np.full((n, len(names)), np.nan)
    for j, column in enumerate(columns):
        matrix[: len(column), j] = column
    medians = row_medians_of_finite(matrix)
    if not np.isfinite(medians).any():
        return None, {}
    i = int(np.nanargmax(medians))
    per = {variable_of(n, UPDATE_RATIO): float(v) for n, v in zip(names, matrix[i], strict=True) if np.isfinite(v)}
    return float(medians[i]), per


def peak_epoch_update_ratio(view: Diagnoser) -> tuple[float | None, dict[str, float], int | None]:
    """The epoch with the largest median (over weight matrices) mean update/weight ratio."""
    names = kernel_stats(view, UPDATE_RATIO)
    if not names or not view.epochs:
        return None, {}, None
    matrix = np.column_stack([view.epoch_values(n) for n in names])
    medians = row_medians_of_finite(matrix)
    if not np.isfinite(medians).any():
        return None, {}, None
    i = int(np.nanargmax(medians))
    per = {variable_of(n, UPDATE_RATIO): float(v) for n, v in zip(names, matrix[i], strict=True) if np.isfinite(v)}
    return float(medians[i]), per, view.epochs[i].epoch


def largest_update_ratio(view: Diagnoser) -> float | None:
    """The largest median update/weight ratio measured: over the first steps, at one of them, or in an epoch."""
    ratios = [r for r in (early_update_ratio(view)[0], first_steps_update_ratio(view)[0], peak_epoch_update_ratio(view)[0])
              if r is not None and math.isfinite(r)]
    return max(ratios) if ratios else None
