"""The names of trainkit's per-step statistics: the one place they are made and read.

Free of TensorFlow, so that code reading statistics without the graph (the diagnosis, the
TensorBoard read-back) uses the same names as :mod:`trainkit.stats`, which computes them.

Naming contract (each name is also the TensorBoard tag, but ``loss`` and ``learning_rate``, which
are written as ``step/loss`` and ``step/learning_rate``):

==========================================  ================================================
``loss``, ``learning_rate``                 the batch loss; the learning rate used by the step
``grad_norm/global``                        L2 norm of all gradients together (before clipping)
``grad_norm/VAR``                           L2 norm of one variable's gradient (before clipping)
``weight_norm/VAR``                         L2 norm of the variable after the update
``update_ratio/VAR``                        ``||w_after - w_before|| / ||w_after||``
``grad_nonfinite/VAR``                      number of NaN/inf gradient entries
``activation/L/mean``, ``.../std``          over every output value of layer ``L`` in the batch
``activation/L/nonfinite``                  number of NaN/inf output values
``activation/L/nonpositive_fraction``       ReLU family: fraction of outputs <= 0
``activation/L/dead_fraction``              ReLU family: fraction of units never > 0 in the batch
``activation/L/saturated_fraction``         tanh: ``|a| > 0.99``; sigmoid: ``a < 0.01 or a > 0.99``;
                                            softmax: rows whose top probability is > 0.99
==========================================  ================================================

``VAR`` is a variable's path with the layer name first (``dense/kernel``, ``dense_1/bias``), ``L``
a layer name, or ``output`` for the model's output (``output_0``, ``output_1``... when the model
has several). Code that reads statistics should build names with the helpers below
(:func:`grad_norm_name`, :func:`activation_stat_name`, ...) and look activations up in
:data:`ACTIVATION_KINDS` instead of hard-coding strings.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "ACTIVATION",
    "ACTIVATION_KINDS",
    "ACTIVATION_STATS",
    "BASE_ACTIVATION_STATS",
    "DEAD_FRACTION",
    "GLOBAL_GRAD_NORM",
    "GRAD_NONFINITE",
    "GRAD_NORM",
    "LEARNING_RATE",
    "LOSS",
    "MEAN",
    "NEAR_ZERO",
    "NEGATIVE_SLOPED",
    "NONFINITE",
    "NONPOSITIVE_FRACTION",
    "OUTPUT",
    "SATURATED_FRACTION",
    "SATURATION_THRESHOLD",
    "SMOOTH_RELU",
    "STD",
    "SYMMETRIC_SATURATING",
    "UPDATE_RATIO",
    "VARIABLE_STATS",
    "WEIGHT_NORM",
    "StatName",
    "activation_kind",
    "activation_stat_name",
    "activation_stat_names",
    "activation_stat_of",
    "grad_nonfinite_name",
    "grad_norm_name",
    "is_output_name",
    "is_statistic",
    "numbered",
    "output_names",
    "parse_stat_name",
    "relu_layer_activation",
    "update_ratio_name",
    "variable_name",
    "variable_names",
    "variable_of",
    "variable_stat_names",
    "weight_norm_name",
]

LOSS = "loss"
LEARNING_RATE = "learning_rate"
GLOBAL_GRAD_NORM = "grad_norm/global"
OUTPUT = "output"

GRAD_NORM = "grad_norm"
WEIGHT_NORM = "weight_norm"
UPDATE_RATIO = "update_ratio"
GRAD_NONFINITE = "grad_nonfinite"
ACTIVATION = "activation"
#: The per-variable statistics, in the order the step returns them.
VARIABLE_STATS: tuple[str, ...] = (GRAD_NORM, WEIGHT_NORM, UPDATE_RATIO, GRAD_NONFINITE)

MEAN = "mean"
STD = "std"
NONFINITE = "nonfinite"
NONPOSITIVE_FRACTION = "nonpositive_fraction"
DEAD_FRACTION = "dead_fraction"
SATURATED_FRACTION = "saturated_fraction"
#: Statistics every tapped activation gets.
BASE_ACTIVATION_STATS: tuple[str, ...] = (MEAN, STD, NONFINITE)
#: Every activation statistic trainkit knows, in the order the step returns them.
ACTIVATION_STATS: tuple[str, ...] = (MEAN, STD, NONFINITE, NONPOSITIVE_FRACTION, DEAD_FRACTION, SATURATED_FRACTION)

_RELU_EXTRAS = (NONPOSITIVE_FRACTION, DEAD_FRACTION)
_SATURATING_EXTRAS = (SATURATED_FRACTION,)
_SMOOTH_EXTRAS = (DEAD_FRACTION,)  # a smooth ReLU's outputs <= 0 are no sign of dead units
#: Statistics computed for each activation, by canonical activation name (Keras's function names,
#: ``"leaky_relu"`` / ``"prelu"`` for those layers). An activation not listed here (softsign,
#: a custom function...) gets :data:`BASE_ACTIVATION_STATS` only.
ACTIVATION_KINDS: dict[str, tuple[str, ...]] = {
    "linear": BASE_ACTIVATION_STATS,
    # ReLU family: a unit whose output is never > 0 passes no gradient (exactly zero for
    # relu/relu6, nearly so for elu/selu's flat negative tail, slope-scaled for leaky/prelu).
    "relu": BASE_ACTIVATION_STATS + _RELU_EXTRAS,
    "relu6": BASE_ACTIVATION_STATS + _RELU_EXTRAS,
    "leaky_relu": BASE_ACTIVATION_STATS + _RELU_EXTRAS,
    "prelu": BASE_ACTIVATION_STATS + _RELU_EXTRAS,
    "elu": BASE_ACTIVATION_STATS + _RELU_EXTRAS,
    "selu": BASE_ACTIVATION_STATS + _RELU_EXTRAS,
    # Smooth ReLUs: no exact zero, but a unit pushed far below 0 outputs ~0 and passes ~no gradient.
    "gelu": BASE_ACTIVATION_STATS + _SMOOTH_EXTRAS,
    "silu": BASE_ACTIVATION_STATS + _SMOOTH_EXTRAS,
    "mish": BASE_ACTIVATION_STATS + _SMOOTH_EXTRAS,
    "softplus": BASE_ACTIVATION_STATS + _SMOOTH_EXTRAS,
    "hard_silu": BASE_ACTIVATION_STATS + _SMOOTH_EXTRAS,
    # Saturating: the derivative vanishes in the flat tails.
    "tanh": BASE_ACTIVATION_STATS + _SATURATING_EXTRAS,
    "sigmoid": BASE_ACTIVATION_STATS + _SATURATING_EXTRAS,
    "hard_sigmoid": BASE_ACTIVATION_STATS + _SATURATING_EXTRAS,
    "softmax": BASE_ACTIVATION_STATS + _SATURATING_EXTRAS,
}
#: The ReLU family's activations that are not 0 below 0: a unit never positive still passes a
#: gradient (slope-scaled for leaky/prelu, fading with the input for elu/selu), and is not "dead"
#: as a ReLU's is (see :func:`trainkit.diagnosis.activation_rules.dead_relu`).
NEGATIVE_SLOPED = frozenset({"leaky_relu", "prelu", "elu", "selu"})
#: Smooth relatives of ReLU whose outputs are never exactly 0: a unit counts as dead when its output
#: is within :data:`NEAR_ZERO` of 0 for every row of a batch (and a negative output is no dead unit).
SMOOTH_RELU = frozenset({"gelu", "silu", "mish", "softplus", "hard_silu"})
#: How near 0 a smooth ReLU's output is when its unit is dead: |a| < 0.01 puts a gelu's input below
#: -2.7 (its gradient under 3% of a live unit's), a silu's or mish's below -6.4 (under 1%), a
#: softplus's below -4.6 (under 1%); hard_silu is exactly 0 below -3. (An input within 0.02 of 0
#: reads as near 0 too; no unit keeps it there for every row of a batch.)
NEAR_ZERO = 0.01
#: Activations whose saturation test is ``|a| > 0.99`` (odd, range [-1, 1]).
SYMMETRIC_SATURATING = frozenset({"tanh"})
SATURATION_THRESHOLD = 0.99

_KINDS = frozenset({GRAD_NORM, WEIGHT_NORM, UPDATE_RATIO, GRAD_NONFINITE, ACTIVATION})


def grad_norm_name(var: str) -> str:
    """``grad_norm/VAR``: L2 norm of the gradient of variable ``var`` (e.g. ``dense/kernel``)."""
    return f"{GRAD_NORM}/{var}"


def weight_norm_name(var: str) -> str:
    """``weight_norm/VAR``: L2 norm of variable ``var`` after the step's update."""
    return f"{WEIGHT_NORM}/{var}"


def update_ratio_name(var: str) -> str:
    """``update_ratio/VAR``: norm of the update applied to ``var`` over its norm after the update."""
    return f"{UPDATE_RATIO}/{var}"


def grad_nonfinite_name(var: str) -> str:
    """``grad_nonfinite/VAR``: number of NaN/inf entries in the gradient of ``var``."""
    return f"{GRAD_NONFINITE}/{var}"


def activation_stat_name(layer: str, stat: str) -> str:
    """``activation/L/STAT`` for layer ``layer`` (``"output"`` for the model output)."""
    return f"{ACTIVATION}/{layer}/{stat}"


def output_names(count: int) -> list[str]:
    """The layer names of a model's outputs in activation statistics: ``output`` for one,
    ``output_0``, ``output_1``... for several."""
    return [OUTPUT] if count == 1 else [f"{OUTPUT}_{i}" for i in range(count)]


def is_output_name(layer: str) -> bool:
    """Whether ``layer`` (an activation statistic's ``L``) is one of :func:`output_names`."""
    head, _, index = layer.partition("_")
    return layer == OUTPUT or (head == OUTPUT and index.isdigit())


def relu_layer_activation(config: Mapping[str, Any]) -> str:
    """The canonical activation of a Keras ``ReLU`` layer, from its ``get_config()``.

    ``leaky_relu`` with a negative slope (its outputs can then be negative: the ``relu``
    statistics take them to be >= 0; Keras refuses a negative threshold).
    """
    if config.get("negative_slope"):
        return "leaky_relu"
    return "relu6" if config.get("max_value") == 6 else "relu"


def activation_kind(activation: str) -> tuple[str, ...]:
    """The statistics computed for ``activation`` (see :data:`ACTIVATION_KINDS`)."""
    return ACTIVATION_KINDS.get(activation, BASE_ACTIVATION_STATS)


def activation_stat_names(layer: str, activation: str) -> tuple[str, ...]:
    """Every statistic name :func:`activation_stats` returns for ``layer`` with ``activation``."""
    return tuple(activation_stat_name(layer, stat) for stat in activation_kind(activation))


def variable_stat_names(var: str) -> tuple[str, ...]:
    """The four per-variable statistic names of ``var``, in :data:`VARIABLE_STATS` order."""
    return (grad_norm_name(var), weight_norm_name(var), update_ratio_name(var), grad_nonfinite_name(var))


@dataclasses.dataclass(frozen=True)
class StatName:
    """A statistic name split into its parts.

    Attributes:
        kind: ``grad_norm``, ``weight_norm``, ``update_ratio``, ``grad_nonfinite`` or
            ``activation``.
        target: The variable (``dense/kernel``, or ``global``) or layer (``dense``, ``output``).
        stat: The activation statistic (``mean``, ``dead_fraction``...); ``None`` for the others.
    """

    kind: str
    target: str
    stat: str | None = None

    @property
    def layer(self) -> str:
        """The layer the statistic belongs to (``dense`` for ``dense/kernel``)."""
        if self.kind == ACTIVATION:
            return self.target
        return self.target.rsplit("/", 1)[0] if "/" in self.target else self.target


# Cached: the diagnosis asks about the same few hundred names at every epoch (~480 parses an
# epoch for the 10-64-32-1 MLP, a third of its rules' time on the host).
@functools.lru_cache(maxsize=8192)
def parse_stat_name(name: str) -> StatName | None:
    """Splits a statistic name; ``None`` for names that are not statistics (``loss``, ``penalty``).

    Examples:
        ``parse_stat_name("grad_norm/dense/kernel") == StatName("grad_norm", "dense/kernel")``;
        ``parse_stat_name("activation/dense/dead_fraction") == StatName("activation", "dense",
        "dead_fraction")``.
    """
    kind, _, rest = name.partition("/")
    if kind not in _KINDS or not rest:
        return None
    if kind == ACTIVATION:
        layer, _, stat = rest.rpartition("/")
        if not layer or stat not in ACTIVATION_STATS:
            return None
        return StatName(kind, layer, stat)
    return StatName(kind, rest)


def variable_of(name: str, kind: str) -> str | None:
    """``VAR`` of a per-variable statistic of ``kind`` (``dense/kernel`` for
    ``grad_norm/dense/kernel`` and kind ``grad_norm``); ``None`` for any other name, the global
    gradient norm included."""
    parsed = parse_stat_name(name)
    if parsed is None or parsed.kind != kind or kind == ACTIVATION or name == GLOBAL_GRAD_NORM:
        return None
    return parsed.target


def activation_stat_of(name: str, *stats: str) -> str | None:
    """The layer ``L`` of an ``activation/L/STAT`` name whose ``STAT`` is one of ``stats`` (any
    activation statistic when none is given); ``None`` for any other name."""
    parsed = parse_stat_name(name)
    if parsed is None or parsed.kind != ACTIVATION or (stats and parsed.stat not in stats):
        return None
    return parsed.target


@functools.lru_cache(maxsize=64)
def counted_over_rows(names: tuple[str, ...]) -> tuple[int, ...]:
    """The columns of ``names`` that are a count over the batch's rows read as a finding: each
    layer's ``dead_fraction`` (units active on no row). A batch of no rows makes it 1, every
    unit active on none of them, where its mean and std are NaN (0 / 0): see
    :func:`trainkit.loop.without_empty_batches`."""
    return tuple(i for i, name in enumerate(names) if activation_stat_of(name, DEAD_FRACTION) is not None)


def is_statistic(name: str) -> bool:
    """True for the names the statistics add to a step (everything but ``loss`` and user scalars).

    The trainer keeps these out of the epoch logs: they are per-step signals, not epoch metrics.
    """
    return name == LEARNING_RATE or parse_stat_name(name) is not None


def variable_name(variable: Any, model_name: str | None = None) -> str:
    """``VAR`` of a Keras variable: its path with the model's own name removed.

    Keras 3 paths are ``sequential/dense/kernel`` for Sequential and subclassed models but
    ``dense/kernel`` for Functional ones; stripping the model's name makes both ``dense/kernel``.
    """
    path = getattr(variable, "path", None) or getattr(variable, "name", "variable")
    path = path.split(":")[0]  # tf.Variable names end in ":0"
    if model_name and path.startswith(model_name + "/"):
        path = path[len(model_name) + 1 :]
    return path


def variable_names(variables: Sequence[Any], model_name: str | None = None) -> list[str]:
    """:func:`variable_name` of each variable, made unique with ``_1``, ``_2``... suffixes."""
    return numbered(variable_name(variable, model_name) for variable in variables)


def numbered(names: Iterable[str], taken: Iterable[str] = ()) -> list[str]:
    """The names, each repeat suffixed ``_1``, ``_2``... as Keras numbers its objects.

    A suffixed name skips those in ``taken``, other objects' names: Keras names a model's layers
    ``dense``, ``dense_1``..., so the second call of layer ``dense`` named ``dense_1`` would read as
    that other layer.
    """
    reserved = set(taken)
    out: list[str] = []
    seen: set[str] = set()
    for base in names:
        name, index = base, 0
        while name in seen or (index and name in reserved):
            index += 1
            name = f"{base}_{index}"
        seen.add(name)
        out.append(name)
    return out
