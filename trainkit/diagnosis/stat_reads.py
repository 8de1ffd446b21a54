"""Finding statistics in a diagnoser's view: the layer a statistic belongs to, the weight matrices and
hidden layers in model order, conditions that last for epochs, and the epoch a step belongs to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from trainkit.stat_names import (
    DEAD_FRACTION,
    activation_stat_name,
    is_output_name,
    parse_stat_name,
    variable_of,
)

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser


def kernel_stats(view: Diagnoser, kind: str) -> list[str]:
    """``kind/VAR`` names of the weight matrices (``.../kernel``), in model order."""
    every = view.variable_stats(kind)
    names = [n for n in every if variable_of(n, kind).endswith("/kernel")] or [
        n for n in every if not variable_of(n, kind).endswith("/bias")]
    by_layer = {layer_of(n): n for n in names}
    return [by_layer[layer] for layer in view.layer_order(by_layer)]


def layer_of(name: str) -> str:
    """``dense_1`` for ``grad_norm/dense_1/kernel`` or ``activation/dense_1/dead_fraction``."""
    parsed = parse_stat_name(name)
    return parsed.layer if parsed is not None else name


def called_layer(view: Diagnoser, name: str) -> str:
    """The layer whose call ``name`` reports: ``name`` when it is a layer's, else the layer a
    repeated call belongs to (``softmax_1``, the second call of a shared attention's ``softmax``:
    such a call is numbered past every layer name, so it names no layer of its own, and neither
    its softmax nor its initializers were found under it). A weight's statistics name the layer
    by its variable's path, ``enc/stem`` for the layer ``stem`` of a nested model ``enc``: that
    is the layer ``stem`` (Keras refuses a ``/`` in a layer's name), which sorted after every
    known layer put a nested encoder's first layer last."""
    if name in view.context.layers:
        return name
    own = name.rsplit("/", 1)[-1]
    if own in view.context.layers:
        return own
    return re.sub(r"_\d+$", "", name)


def layer_text(view: Diagnoser, name: str) -> str:
    """``layer 'dense'`` for a message; a repeated call's name (``shared_1``, which no layer has)
    as the layer it is a call of: ``layer 'shared' (its later call, shared_1)``."""
    layer = called_layer(view, name)
    # A path (bad/h: a nested layer whose name another layer has) is a layer of its own.
    return f"layer '{name}'" if layer == name or "/" in name else f"layer '{layer}' (its later call, {name})"


def hidden_activation_stats(view: Diagnoser, stat: str) -> list[str]:
    """``activation/L/stat`` of the hidden layers (not the model output), in model order."""
    names = view.activation_stats(stat)
    outputs = set(view.context.output_layers)
    keep = {layer_of(n): n for n in names if not is_output_name(layer_of(n)) and layer_of(n) not in outputs}
    return [keep[layer] for layer in view.layer_order(keep)]


def dead_outputs(view: Diagnoser) -> list[str]:
    """The output layers whose every ReLU unit was inactive for every row of every step (``dead_fraction`` 1 throughout)."""
    dead = []
    for layer in view.context.output_layers:
        least = view.epoch_values(activation_stat_name(layer, DEAD_FRACTION), "minimum")
        if least.size and np.isfinite(least).all() and bool(np.all(least >= 1.0)):
            dead.append(layer)
    return dead


def finite_for_epochs(view: Diagnoser, names: Iterable[str], epochs: int) -> bool:
    """Whether every step of the last ``epochs`` epochs had finite values of each of ``names``.

    Epoch means are over the finite steps only, so a mean alone can hide steps that went NaN.
    """
    if view.epochs_run < epochs:
        return False
    for name in names:
        means = view.epoch_values(name)[-epochs:]
        bad = view.epoch_values(name, "nonfinite")[-epochs:]
        if not (np.isfinite(means).all() and (bad == 0).all()):
            return False
    return True


def sustained_since(values: np.ndarray, threshold: float, epochs: int) -> int | None:
    """Index where a run of values >= threshold started, when it lasts to the end for ``epochs``."""
    if len(values) < epochs:
        return None
    above = np.nan_to_num(values, nan=-np.inf) >= threshold
    if not above[-epochs:].all():
        return None
    start = len(values) - 1
    while start > 0 and above[start - 1]:
        start -= 1
    return start


def epoch_of_step(view: Diagnoser, step: int) -> int | None:
    """The epoch ``step`` belongs to: the last to start at or before it (epochs follow each other,
    and read back from every n-th step an epoch's rows need not reach its end); a step past the
    last closed epoch is in the next, abandoned one."""
    started = [record for record in view.epochs if record.first_step <= step]
    if started and (started[-1] is not view.epochs[-1] or step < started[-1].first_step + started[-1].steps):
        return started[-1].epoch
    return view.epochs[-1].epoch + 1 if view.epochs else view.context.initial_epoch
