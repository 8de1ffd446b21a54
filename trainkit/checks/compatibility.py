"""Construction-time checks: output layer x loss x task combinations that can never train well.

Each rule is a small named function over one :class:`Case` (one model output with its loss, the
task and the number of classes) that returns an :class:`Issue` or ``None``. The rules are
registered, in the order they are tried, in :data:`COMPATIBILITY_RULES`;
:data:`COMPATIBILITY_CODES` lists every code this module can raise or report.

:func:`check_compatibility` raises :class:`~trainkit.errors.CompatibilityError` for the first
error whose code is not in ``allow`` and returns the warnings as :class:`~trainkit.findings.Finding`
records (allowed errors become warnings that say they were allowed).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Literal

import keras

from trainkit.checks.model_inspect import (
    ACTIVATION_RANGES,
    PROBABILITY_ACTIVATIONS,
    UNKNOWN,
    OutputInfo,
    find_outputs,
    hidden_layers,
    ignored_inference_batchnorms,
    iter_layers,
)
from trainkit.errors import CompatibilityError, UnknownNameError
from trainkit.findings import Finding, Severity
from trainkit.resolve import closest, get_loss, is_keras_loss_function
from trainkit.tasks import CLASSIFICATION_TASKS, TASKS

LossKind = Literal["binary", "categorical", "sparse", "regression", "poisson", "hinge",
                   "categorical_hinge", "kl"]
#: Losses that read probabilities (or logits with ``from_logits=True``).
PROBABILITY_LOSSES = frozenset({"binary", "categorical", "sparse", "kl"})
#: Losses that have a ``from_logits`` argument.
LOGIT_LOSSES = frozenset({"binary", "categorical", "sparse"})
CLASSIFICATION_LOSSES = frozenset({"binary", "categorical", "sparse", "hinge", "categorical_hinge", "kl"})
REGRESSION_LOSSES = frozenset({"regression", "poisson"})
#: Names describe_loss gives MSLE and MAPE, regression losses of logarithms and ratios of the
#: targets: MSLE reads every target below 0 as 0, MAPE divides by |y|.
MSLE_NAMES = frozenset({"MeanSquaredLogarithmicError", "mean_squared_logarithmic_error"})
MAPE_NAMES = frozenset({"MeanAbsolutePercentageError", "mean_absolute_percentage_error"})

_LOSS_CLASS_KINDS: tuple[tuple[type, LossKind], ...] = (
    (keras.losses.BinaryFocalCrossentropy, "binary"),
    (keras.losses.BinaryCrossentropy, "binary"),
    (keras.losses.CategoricalFocalCrossentropy, "categorical"),
    (keras.losses.SparseCategoricalCrossentropy, "sparse"),
    (keras.losses.CategoricalCrossentropy, "categorical"),
    (keras.losses.MeanSquaredError, "regression"),
    (keras.losses.MeanAbsoluteError, "regression"),
    (keras.losses.MeanAbsolutePercentageError, "regression"),
    (keras.losses.MeanSquaredLogarithmicError, "regression"),
    (keras.losses.Huber, "regression"),
    (keras.losses.LogCosh, "regression"),
    (keras.losses.Poisson, "poisson"),
    (keras.losses.CategoricalHinge, "categorical_hinge"),
    (keras.losses.SquaredHinge, "hinge"),
    (keras.losses.Hinge, "hinge"),
    (keras.losses.KLDivergence, "kl"),
)
_LOSS_FN_KINDS: dict[str, LossKind] = {
    "binary_crossentropy": "binary",
    "binary_focal_crossentropy": "binary",
    "categorical_crossentropy": "categorical",
    "categorical_focal_crossentropy": "categorical",
    "sparse_categorical_crossentropy": "sparse",
    "mean_squared_error": "regression",
    "mean_absolute_error": "regression",
    "mean_absolute_percentage_error": "regression",
    "mean_squared_logarithmic_error": "regression",
    "huber": "regression",
    "log_cosh": "regression",
    "poisson": "poisson",
    "hinge": "hinge",
    "squared_hinge": "hinge",
    "categorical_hinge": "categorical_hinge",
    "kl_divergence": "kl",
}


@dataclasses.dataclass(frozen=True)
class LossInfo:
    """What the rules need to know about a loss.

    Attributes:
        name: Class name, e.g. ``"BinaryCrossentropy"`` (the function name for wrapped functions).
        kind: Family of the loss, or ``None`` for a custom loss the rules do not know.
        from_logits: The loss's ``from_logits`` argument (``False`` when it has none).
        ignore_class: The label sparse cross-entropy leaves out of its average (a segmentation's
            void pixels, 255 or -1), or ``None``.
    """

    name: str
    kind: LossKind | None
    from_logits: bool = False
    ignore_class: int | None = None

    def describe(self) -> str:
        """``BinaryCrossentropy(from_logits=True)``-style name for messages."""
        if self.kind in LOGIT_LOSSES:
            return f"{self.name}(from_logits={self.from_logits})"
        return f"{self.name}()" if self.kind else self.name

    def with_logits(self, from_logits: bool) -> str:
        """The same loss written with another ``from_logits`` value."""
        return f"{self.name}(from_logits={from_logits})"


def describe_loss(loss: Any) -> LossInfo:
    """Reads the family and ``from_logits`` of a resolved loss (names and functions are resolved)."""
    if loss is None:
        return LossInfo("None", None)
    if not isinstance(loss, keras.losses.Loss):
        try:
            loss = get_loss(loss)
        except (UnknownNameError, TypeError, AttributeError):
            return LossInfo(getattr(loss, "__name__", type(loss).__name__), None)
    try:
        config = loss.get_config() or {}
    except (NotImplementedError, TypeError, AttributeError):
        config = {}
    from_logits = bool(config.get("from_logits", False))
    ignore = config.get("ignore_class")
    for cls, kind in _LOSS_CLASS_KINDS:
        if isinstance(loss, cls):
            # A subclass computing the loss its own way (an unclipped log in its call) is the
            # user's loss: read as Keras's, its NaN was "Keras's own loss ... no log(0)".
            if type(loss).call is not cls.call or not is_keras_loss_function(getattr(loss, "fn", None)):
                return LossInfo(type(loss).__name__, None, from_logits)
            return LossInfo(cls.__name__, kind, from_logits, int(ignore) if kind == "sparse" and ignore is not None else None)
    # A loss function wrapped as a Loss (Keras's LossFunctionWrapper, not public API, or trainkit's
    # own): read by its function's name.
    # A function of the user's is named as written (not "_FunctionLoss"), and has no family even
    # under a Keras name: its level and clipping are its own.
    if callable(getattr(loss, "fn", None)):
        fn_name = getattr(loss.fn, "__name__", "")
        if fn_name in _LOSS_FN_KINDS and is_keras_loss_function(loss.fn):
            return LossInfo(fn_name, _LOSS_FN_KINDS[fn_name], from_logits)
        return LossInfo(loss.name if fn_name == "<lambda>" or not fn_name else fn_name, None, from_logits)
    return LossInfo(type(loss).__name__, None, from_logits)


def losses_per_output(outputs: Sequence[OutputInfo], loss: Any) -> list[LossInfo]:
    """One :class:`LossInfo` per output: a list/tuple is matched by position, a dict by output
    key or name, a single loss applies to every output (as ``model.compile`` does)."""
    if isinstance(loss, Mapping) and not {"name"} <= set(loss):
        found = []
        for out in outputs:
            value = loss.get(out.key) if out.key is not None and out.key in loss else loss.get(out.name)
            found.append(describe_loss(value) if value is not None else LossInfo("None", None))
        return found
    if isinstance(loss, list | tuple):
        return [describe_loss(loss[i]) if i < len(loss) else LossInfo("None", None) for i in range(len(outputs))]
    info = describe_loss(loss)
    return [info] * len(outputs)


def tasks_per_output(outputs: Sequence[OutputInfo], task: Any) -> list[str | None]:
    """One task per output: a list/tuple by position, a dict by output key or name (``None`` for
    an output it leaves out), a single task for every output."""
    if isinstance(task, Mapping):
        return [task[o.key] if o.key is not None and o.key in task else task.get(o.name) for o in outputs]
    if isinstance(task, list | tuple):
        return [task[i] if i < len(task) else None for i in range(len(outputs))]
    return [task] * len(outputs)


@dataclasses.dataclass(frozen=True)
class Case:
    """One model output with its loss, as the rules see it.

    Attributes:
        output: The inspected output.
        loss: The loss applied to it.
        task: ``binary``, ``multiclass``, ``multilabel`` or ``regression``.
        num_classes: Number of classes when known (multiclass/multilabel).
        model: The whole model (for model-level rules).
        optimizer: The optimizer the model trains with, when known.
    """

    output: OutputInfo
    loss: LossInfo
    task: str
    num_classes: int | None
    model: Any = None
    optimizer: Any = None

    @property
    def act(self) -> str:
        """Effective output activation; ``unknown`` when the output is rescaled."""
        return UNKNOWN if self.output.rescaled else self.output.activation

    @property
    def units(self) -> int | None:
        return self.output.units


@dataclasses.dataclass(frozen=True)
class Issue:
    """What a rule found: message (what and why), advice (the exact fix), evidence, layer."""

    message: str
    advice: str
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    layer: str | None = None


@dataclasses.dataclass(frozen=True)
class Rule:
    """A registered rule: its stable code, severity, function and scope (per output or model)."""

    code: str
    severity: Severity
    check: Callable[[Case], Issue | None]
    scope: Literal["output", "model"] = "output"


# ---------------------------------------------------------------------------------------------
# Fixes, written once and reused by the rules.

def _classification_fix(task: str, num_classes: int | None) -> str:
    # With the recipe's spelling too: low_mse_binary_broken's users write YAML, and were given
    # only the Python classes.
    k = num_classes if num_classes else "K"
    if task == "binary":
        return ("Use loss=BinaryCrossentropy(from_logits=True) with a linear output Dense(1), or "
                "BinaryCrossentropy() with Dense(1, activation='sigmoid') (in a recipe, loss: binary_crossentropy "
                "with {type: dense, units: 1, activation: sigmoid}).")
    if task == "multiclass":
        return (f"Use loss=SparseCategoricalCrossentropy(from_logits=True) for integer labels (or "
                f"CategoricalCrossentropy(from_logits=True) for one-hot labels) with a linear output "
                f"Dense({k}); or from_logits=False with Dense({k}, activation='softmax') (in a recipe, loss: "
                f"sparse_categorical_crossentropy, or categorical_crossentropy for one-hot labels, with "
                f"{{type: dense, units: {k}, activation: softmax}}).")
    return (f"Use loss=BinaryCrossentropy(from_logits=True) with a linear output Dense({k}), or "
            f"BinaryCrossentropy() with Dense({k}, activation='sigmoid') (in a recipe, loss: binary_crossentropy "
            f"with {{type: dense, units: {k}, activation: sigmoid}}).")


def _output_layer(case: Case) -> tuple[int | str, str | None]:
    """``(units, activation)`` of the output layer a task and loss need (``"K"`` units where the
    classes are unknown; ``None``: linear)."""
    k = case.num_classes or (case.units if case.units and case.units > 1 else "K")
    logits = case.loss.from_logits
    if case.task == "binary" and case.loss.kind in ("categorical", "sparse"):
        return 2, None if logits else "softmax"
    if case.task == "binary":
        return 1, None if logits else "sigmoid"
    if case.task == "multiclass":
        return k, None if logits else "softmax"
    if case.task == "multilabel":
        return k, None if logits else "sigmoid"
    return case.units or 1, None


def _output_fix(case: Case) -> str:
    """The output layer a task and loss need, as code."""
    units, act = _output_layer(case)
    return f"Dense({units}" + (f", activation='{act}')" if act else ")")


def _recipe_output(case: Case) -> str:
    """:func:`_output_fix`'s layer as a recipe's ``model.layers`` writes it.

    A recipe's users write YAML: ``Dense(4, activation='softmax')`` or ``BinaryCrossentropy()``
    named classes they never construct, so the fixes below say the recipe's spelling too.
    """
    units, act = _output_layer(case)
    return f"{{type: dense, units: {units}" + (f", activation: {act}}}" if act else "}")


def _recipe_loss(loss: LossInfo | str, from_logits: bool = False) -> str:
    """A loss as a recipe writes it: ``loss: binary_crossentropy``, or with ``from_logits: true``
    ``loss: {name: binary_crossentropy, from_logits: true}`` (from a class name,
    ``BinaryCrossentropy``, or a LossInfo's)."""
    name = loss.name if isinstance(loss, LossInfo) else loss
    snake = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()
    return f"loss: {{name: {snake}, from_logits: true}}" if from_logits else f"loss: {snake}"


def _fmt_range(lo: float, hi: float) -> str:
    def one(v: float) -> str:
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:g}"
    return f"[{one(lo)}, {one(hi)}]"


# ---------------------------------------------------------------------------------------------
# The rules, one small function each.

def softmax_single_unit(case: Case) -> Issue | None:
    """Softmax over one unit always outputs 1.0: the loss is constant and nothing learns."""
    if case.act != "softmax" or case.units != 1:
        return None
    if case.task == "binary":
        fix = ("Use Dense(1, activation='sigmoid') with BinaryCrossentropy(), or Dense(2, "
               "activation='softmax') with SparseCategoricalCrossentropy() (in a recipe, {type: dense, units: 1, "
               "activation: sigmoid} with loss: binary_crossentropy, or units: 2 with loss: sparse_categorical_crossentropy).")
    elif case.task == "regression":
        fix = "Use a linear output: Dense(1) with no activation (in a recipe, leave activation out of the output layer)."
    else:
        plain = dataclasses.replace(case, loss=LossInfo('', None))
        fix = f"Use {_output_fix(plain)} with one unit per class (in a recipe, {_recipe_output(plain)})."
    return Issue(
        f"The output layer '{case.output.activation_layer}' applies softmax to a single unit. Softmax "
        f"normalises over the units, so one unit always outputs exactly 1.0: the loss is constant "
        f"and its gradient is zero.", fix, {"units": 1}, case.output.activation_layer)


def regression_loss_for_classification(case: Case) -> Issue | None:
    """MSE/MAE/Huber/... on class labels: weak, saturating gradients through a sigmoid/softmax."""
    if case.task not in CLASSIFICATION_TASKS or case.loss.kind not in REGRESSION_LOSSES:
        return None
    # "Why is my loss already low at the start?": an MSE on 0/1 labels is small at chance.
    scale = (" Its values also mislead: predicting the positive rate p for every row already scores "
             "p(1 - p), 0.25 for balanced classes, so an MSE near 0.25 is chance, not a low loss."
             if case.task in ("binary", "multilabel") and case.loss.name in ("MeanSquaredError", "mean_squared_error") else "")
    return Issue(
        f"The loss {case.loss.describe()} is a regression loss but the task is {case.task} "
        f"classification. Squared/absolute errors on 0/1 labels give vanishing gradients through "
        f"a sigmoid or softmax and do not estimate class probabilities.{scale}",
        _classification_fix(case.task, case.num_classes), {}, case.output.layer)


def classification_loss_for_regression(case: Case) -> Issue | None:
    """A cross-entropy/hinge loss on real-valued regression targets."""
    if case.task != "regression" or case.loss.kind not in CLASSIFICATION_LOSSES:
        return None
    shape = case.output.shape
    per_position = shape is not None and len(shape) >= 3
    if case.loss.kind == "binary" and (case.units or 1) > 1:
        # Several units each scored as a 0/1 label or a probability: an autoencoder's pixels in
        # [0, 1] with binary cross-entropy. "binary or multiclass" named two tasks that refuse it
        # (units-mismatch, loss-task-mismatch).
        classes = ("if each unit's targets are 0/1 labels or probabilities in [0, 1] (an autoencoder's pixels scaled "
                   "to [0, 1]), declare task='multilabel'")
    elif case.loss.kind == "binary" and per_position:
        # One sigmoid channel per pixel: a grey-scale autoencoder's (or a binary mask's). Told
        # "if the targets are really classes", it was steered off a loss that fits pixels in [0, 1].
        classes = ("if each pixel's target is 0/1 or a probability in [0, 1] (an autoencoder's pixels scaled to [0, 1], "
                   "a mask), declare task='binary', which takes probabilities as targets")
    else:
        classes = "if the targets are really classes, declare task='binary' or task='multiclass'"
    # An output per position is a convolution's: Dense(1) named a layer the model does not end with.
    linear = "a linear output layer (no activation on it)" if per_position else f"a linear output {_output_fix(case)}"
    return Issue(
        f"The loss {case.loss.describe()} is a classification loss but the task is regression: "
        f"it expects class labels or probabilities, not real-valued targets.",
        f"Use loss='mse' (or 'mae', 'huber') with {linear}; {classes} (in a recipe, loss: mse with no activation "
        f"on the output layer).",
        {}, case.output.layer)


def loss_task_mismatch(case: Case) -> Issue | None:
    """A classification loss for the wrong kind of classification (e.g. CCE for multilabel)."""
    kind = case.loss.kind
    if case.task == "multilabel" and kind in ("categorical", "sparse", "categorical_hinge", "kl"):
        return Issue(
            f"The loss {case.loss.describe()} treats the classes as mutually exclusive (one label "
            f"per sample) but the task is multilabel, where each label is an independent yes/no.",
            _classification_fix("multilabel", case.num_classes or case.units), {}, case.output.layer)
    if case.task == "multiclass" and kind in ("binary", "hinge") and (case.units or 0) > 1:
        return Issue(
            f"The loss {case.loss.describe()} scores each unit as an independent yes/no, but the "
            f"task is multiclass (exactly one class per sample); accuracy computed with it is "
            f"the per-unit binary accuracy and looks far better than it is.",
            # A sample's several labels (tags, multi-hot rows) are what a yes/no per unit fits: told
            # only of softmax losses, such a user was steered to a loss its labels refuse.
            _classification_fix("multiclass", case.num_classes or case.units)
            + " If a sample can hold several of the classes at once (multi-hot label rows), keep the loss and declare "
              "task='multilabel' (in a recipe, task: multilabel).", {}, case.output.layer)
    return None


def double_activation(case: Case) -> Issue | None:
    """A sigmoid/softmax output followed by a loss that applies sigmoid/softmax again, or applied
    on top of another activation (``Dense(1, "sigmoid")`` then ``Activation("sigmoid")``)."""
    inner = case.output.inner_activation
    if inner is not None and case.act in PROBABILITY_ACTIVATIONS:
        inner_act, inner_layer = inner
        lo, hi = ACTIVATION_RANGES.get(inner_act, (-math.inf, math.inf))
        reach = ""
        if case.act == "sigmoid" and (math.isfinite(lo) or math.isfinite(hi)):
            reach = f" sigmoid of values in [{lo:g}, {hi:g}] stays within [{_sigmoid(lo):.3g}, {_sigmoid(hi):.3g}]:"
        return Issue(
            f"The output applies {inner_act} (layer '{inner_layer}') and then {case.act} (layer "
            f"'{case.output.activation_layer}') to its result:{reach or ' the second squashes what the first already bounded:'} "
            f"the predictions cannot reach the probabilities the labels need, and the loss stays high.",
            f"Keep one activation on the output: remove activation='{inner_act}' from '{inner_layer}' (or the "
            f"{case.act} layer after it; in a recipe, its activation: {inner_act} key or the {{type: activation}} layer).",
            {"inner_activation": inner_act, "activation": case.act}, case.output.activation_layer)
    if case.loss.kind not in LOGIT_LOSSES or not case.loss.from_logits:
        return None
    if case.act not in PROBABILITY_ACTIVATIONS:
        return None
    return Issue(
        f"The output layer '{case.output.activation_layer}' applies {case.act} and the loss "
        f"{case.loss.describe()} applies it again: the loss reads probabilities in [0, 1] as "
        f"logits, so predictions cannot leave the middle of the range and gradients stay tiny. (Keras's TensorFlow "
        f"backend undoes this only while the {case.act} op is the output's very last one: it then reads the logits "
        f"beneath it, with a warning; a cast to float32 under mixed precision, a reshape after it or another backend "
        f"breaks that.)",
        f"Use {case.loss.with_logits(False)}, or remove the activation (a linear output "
        f"{_output_fix(case)}) and keep from_logits=True (in a recipe, {_recipe_loss(case.loss)}, or leave "
        f"activation out of the output layer and keep the loss's from_logits: true).",
        {"from_logits": True}, case.output.activation_layer)


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value)) if value > -700 else 0.0


def missing_output_activation(case: Case) -> Issue | None:
    """A linear output fed to a loss that expects probabilities."""
    if case.loss.kind not in PROBABILITY_LOSSES or case.loss.from_logits or case.act != "linear":
        return None
    squash = "sigmoid" if case.loss.kind == "binary" else "softmax"
    if case.loss.kind == "kl":
        fix = f"Add activation='softmax' to the output layer '{case.output.layer}' (in a recipe, activation: softmax)."
    else:
        fix = (f"Use {case.loss.with_logits(True)} (numerically stable), or add "
               f"activation='{squash}' to the output layer '{case.output.layer}' (in a recipe, "
               f"{_recipe_loss(case.loss, from_logits=True)}, or activation: {squash} on the output layer).")
    return Issue(
        f"The output layer '{case.output.layer}' has no activation (linear) but the loss "
        f"{case.loss.describe()} expects probabilities in [0, 1]: raw outputs are clipped to "
        f"[1e-7, 1 - 1e-7], so the loss saturates and gradients vanish for every output outside it.",
        fix, {"from_logits": False}, case.output.layer)


def units_mismatch(case: Case) -> Issue | None:
    """The number of output units does not fit the task and loss."""
    units, kind, task = case.units, case.loss.kind, case.task
    if units is None or kind is None:
        return None
    layer = case.output.layer
    where = f"'{layer}' ({case.output.activation})"
    if task == "binary" and kind in ("binary", "hinge") and units != 1:
        # Several sigmoid units under binary cross-entropy are a multilabel head: multi-hot labels
        # declared binary were told only Dense(1), which their (n, k) labels cannot train.
        multilabel = (f" If each sample holds several 0/1 labels, one a unit (multi-hot rows of {units} columns), keep Dense({units}) "
                      "and declare task='multilabel' (in a recipe, task: multilabel)." if kind == "binary" else "")
        return Issue(
            f"The output layer {where} has {units} units but {case.loss.describe()} "
            f"on a binary task compares one score per sample with a 0/1 label.",
            # "keep 2 units" told 3 sigmoid units to keep a number they did not have.
            f"Use Dense(1, activation='sigmoid') with BinaryCrossentropy(), or {'keep' if units == 2 else 'use'} 2 units with "
            "softmax and SparseCategoricalCrossentropy() (in a recipe, {type: dense, units: 1, activation: sigmoid} "
            "with loss: binary_crossentropy, or {type: dense, units: 2, activation: softmax} with loss: "
            "sparse_categorical_crossentropy)." + multilabel,
            {"units": units, "expected": 1}, layer)
    if task == "binary" and kind in ("categorical", "sparse", "categorical_hinge") and units != 2:
        # Three softmax units were told "with a single unit there is only class 0": more than two
        # are classes no 0/1 label holds, or a multiclass task declared binary.
        extra = units - 2
        why = ("with a single unit there is only class 0, so the loss is constant." if units == 1 else
               f"its {extra} other unit{'s' if extra != 1 else ''} stand{'s' if extra == 1 else ''} for classes no 0/1 label holds.")
        multiclass = (f" If the labels hold {units} classes, declare task='multiclass' (in a recipe, task: multiclass)."
                      if units > 2 else "")
        return Issue(
            f"The output layer {where} has {units} unit{'s' if units != 1 else ''} but "
            f"{case.loss.describe()} on a binary task needs one unit per class (2): {why}",
            "Use Dense(2, activation='softmax') with this loss, or Dense(1, activation='sigmoid') "
            "with BinaryCrossentropy() (in a recipe, {type: dense, units: 2, activation: softmax}, or "
            "{type: dense, units: 1, activation: sigmoid} with loss: binary_crossentropy)." + multiclass,
            {"units": units, "expected": 2}, layer)
    if task in ("multiclass", "multilabel"):
        if case.num_classes is not None and units != case.num_classes:
            return Issue(
                f"The output layer {where} has {units} unit{'s' if units != 1 else ''} but there are "
                f"{case.num_classes} classes: each class needs exactly one output unit.",
                f"Use {_output_fix(case)} (in a recipe, {_recipe_output(case)}).",
                {"units": units, "expected": case.num_classes}, layer)
        if task == "multiclass" and units == 1:
            return Issue(
                f"The output layer {where} has 1 unit but a multiclass task needs "
                f"one unit per class.", f"Use {_output_fix(case)} (in a recipe, {_recipe_output(case)}).", {"units": 1}, layer)
    return None


def wrong_output_activation(case: Case) -> Issue | None:
    """An output activation that cannot produce what the loss reads (relu/tanh for BCE, ...)."""
    act, kind, layer = case.act, case.loss.kind, case.output.activation_layer
    if act == UNKNOWN:
        return None
    if case.task == "multilabel" and act == "softmax":
        return Issue(
            f"The output layer '{layer}' applies softmax but the task is multilabel: softmax makes "
            f"the labels compete (outputs sum to 1), so two labels can never both be predicted.",
            f"Use activation='sigmoid' (or no activation with BinaryCrossentropy(from_logits=True)) "
            f"on '{case.output.layer}' (in a recipe, activation: sigmoid, with loss: binary_crossentropy).", {}, layer)
    if kind in PROBABILITY_LOSSES and not case.loss.from_logits and act != "linear":
        if kind != "binary" and act in ("sigmoid", "hard_sigmoid") and (case.units or 0) > 1:
            return Issue(
                f"The output layer '{layer}' applies {act} but {case.loss.describe()} expects a "
                f"softmax distribution over the classes: independent sigmoids do not sum to 1.",
                f"Use activation='softmax' on '{case.output.layer}' (in a recipe, activation: softmax).", {}, layer)
        if act not in PROBABILITY_ACTIVATIONS:
            squash = "sigmoid" if kind == "binary" else "softmax"
            lo, hi = case.output.output_range
            return Issue(
                f"The output layer '{layer}' applies {act} (outputs in {_fmt_range(lo, hi)}) but "
                f"{case.loss.describe()} expects probabilities in [0, 1]; values outside are clipped, "
                f"so the loss saturates and gradients vanish.",
                f"Use activation='{squash}', or remove the activation and use "
                f"{case.loss.with_logits(True)} (in a recipe, activation: {squash} on the output layer, or no "
                f"activation with {_recipe_loss(case.loss, from_logits=True)})." if kind in LOGIT_LOSSES else
                f"Use activation='{squash}' (in a recipe, activation: {squash}).", {}, layer)
    if kind in LOGIT_LOSSES and case.loss.from_logits and act not in ("linear", "log_softmax"):
        if act in PROBABILITY_ACTIVATIONS:
            return None  # double-activation
        lo, hi = case.output.output_range
        return Issue(
            f"The output layer '{layer}' applies {act}, so the logits read by "
            f"{case.loss.describe()} are confined to {_fmt_range(lo, hi)}: the predicted "
            f"probabilities cannot reach 0 or 1 (or one side at all).",
            f"Remove the activation from '{case.output.layer}' (logits must be unbounded).",
            {}, layer)
    if kind == "hinge" and act in PROBABILITY_ACTIVATIONS:
        return Issue(
            f"The output layer '{layer}' applies {act} but {case.loss.describe()} expects a signed "
            f"score (positive for class 1, negative for class 0); {act} outputs are never negative.",
            f"Remove the activation from '{case.output.layer}' (or use 'tanh'), or use "
            f"BinaryCrossentropy() with the {act} output.", {}, layer)
    if kind == "poisson" and case.output.output_range[0] < 0:
        return Issue(
            f"The output layer '{layer}' ({act}) can output negative values, but "
            f"Poisson() takes the log of the prediction: negative rates give NaN losses.",
            f"Use activation='exponential' or 'softplus' on '{case.output.layer}'.", {}, layer)
    return None


def bounded_output_for_regression(case: Case) -> Issue | None:
    """A sigmoid/tanh/softmax/relu output on a regression task (a warning; errors at fit)."""
    if case.task != "regression" or case.act in ("linear", UNKNOWN) or case.loss.kind == "poisson":
        return None
    lo, hi = case.output.output_range
    if math.isinf(lo) and math.isinf(hi):
        return None
    return Issue(
        f"The output layer '{case.output.activation_layer}' applies {case.act}, so predictions stay "
        f"in {_fmt_range(lo, hi)}; regression targets outside that range can never be reached "
        f"(checked again against the targets at fit).",
        f"Use a linear output ({_output_fix(case)} with no activation) and standardise the targets, "
        f"unless every target lies in {_fmt_range(lo, hi)}.",
        {"output_min": lo, "output_max": hi}, case.output.activation_layer)


def linear_hidden_layers(case: Case) -> Issue | None:
    """Every hidden layer is linear: the whole model is a linear function of its input."""
    if case.model is None:
        return None
    layers = hidden_layers(case.model)
    weighted = [h for h in layers if h.has_weights]
    if not weighted or not all(h.linear for h in layers):
        return None
    names = ", ".join(f"'{h.name}'" for h in weighted[:5]) + (", ..." if len(weighted) > 5 else "")
    return Issue(
        (f"None of the {len(weighted)} hidden layers ({names}) has an" if len(weighted) > 1 else f"The hidden layer {names} has no")
        + " activation, so the model is linear: stacked linear layers compute nothing a single "
        "Dense layer could not.",
        "Add a non-linearity to the hidden layers, e.g. Dense(64, activation='relu') (in a recipe, activation: relu "
        "on the hidden dense layers).",
        {"hidden_layers": len(weighted)}, weighted[0].name)


def float16_without_loss_scaling(case: Case) -> Issue | None:
    """Layers computing in float16 (``mixed_float16``), which trains without loss scaling."""
    if case.model is None:
        return None
    half = [layer.name for layer in iter_layers(case.model) if getattr(getattr(layer, "dtype_policy", None), "compute_dtype", None) == "float16"]
    if not half or isinstance(case.optimizer, keras.optimizers.LossScaleOptimizer):
        return None  # the step scales the loss through the wrapper (optimizer.scale_loss)
    return Issue(
        f"{len(half)} layer{'s' if len(half) != 1 else ''} compute in float16 (the mixed_float16 policy), and "
        f"the optimizer is no LossScaleOptimizer: float16 gradients below "
        f"~6e-8 become 0, and the layers they belong to stop learning.",
        "Pass optimizer=keras.optimizers.LossScaleOptimizer(your_optimizer) (auto_scale_loss=True does it for a model whose "
        "dtype policy is mixed_float16), or use "
        "keras.mixed_precision.set_global_policy('mixed_bfloat16') (float32's range: no scaling needed) or float32.",
        {"float16_layers": len(half)}, half[0])


def batchnorm_training_flag_ignored(case: Case) -> Issue | None:
    """A trainable BatchNormalization the model calls with ``training=False`` (itself, or inside
    a fine-tuned base, ``base(x, training=False)``), which Keras 3 trains all the same."""
    if case.model is None:
        return None
    found = ignored_inference_batchnorms(case.model)
    if not found:
        return None
    by_caller: dict[str, list[str]] = {}
    models: set[str] = set()  # the callers with a .layers list to loop over
    for norm, caller in found:
        by_caller.setdefault(caller.name, []).append(norm.name)
        if isinstance(caller, keras.Model):
            models.add(caller.name)

    def names(items: list[str]) -> str:
        return ", ".join(f"'{name}'" for name in items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")

    callers = " and ".join(f"'{caller}'" for caller in by_caller)
    # The fix names the layer to freeze them in: a base's own layers, or the layers themselves.
    # One line of Python: "for layer in base.layers: if isinstance(...): ..." is a SyntaxError.
    fixes = [f"for layer in [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]: layer.trainable = False "
             f"(base: '{caller}', and its nested models' layers too)" if caller in models
             else f"trainable = False on the BatchNormalization layer{'s' if len(norms) > 1 else ''} {names(norms)}"
             for caller, norms in by_caller.items()]
    count = len(found)
    plural = count != 1
    bases = bool(models)
    return Issue(
        f"The model calls {callers} with training=False, a flag Keras 3 ignores there: a functional model passes its own "
        "training=True to every layer it calls (keras-team/keras#20285), in model.fit as in this trainer. So "
        f"{count} trainable BatchNormalization layer{'s' if plural else ''} ({names([norm.name for norm, _ in found])}) "
        f"normalise{'' if plural else 's'} each batch with the batch's own statistics while the model trains and "
        f"move{'' if plural else 's'} {'their' if plural else 'its'} moving mean and variance: a fine-tuned base loses the "
        "statistics it was trained with, and its loss jumps (a fine-tune at Adam 1e-5, batches of 8: training loss 0.026 -> 0.56).",
        "Freeze the BatchNormalization layers themselves before making the Trainer (a frozen one normalises with its "
        "moving statistics and leaves them as they are, while the rest of the base trains): " + "; ".join(fixes)
        + (". Or freeze the whole base (base.trainable = False)" if bases else "") + ". In a recipe, do it in the model.builder function: "
        "recipe layers have no trainable key.",
        {"batchnorm_layers": count, "layers_called_with_training_false": len(by_caller)}, found[0][0].name)


#: Every rule, in the order they are tried; the first error wins.
COMPATIBILITY_RULES: tuple[Rule, ...] = (
    Rule("softmax-single-unit", "error", softmax_single_unit),
    Rule("regression-loss-for-classification", "error", regression_loss_for_classification),
    Rule("classification-loss-for-regression", "error", classification_loss_for_regression),
    Rule("loss-task-mismatch", "error", loss_task_mismatch),
    Rule("double-activation", "error", double_activation),
    Rule("missing-output-activation", "error", missing_output_activation),
    Rule("units-mismatch", "error", units_mismatch),
    Rule("wrong-output-activation", "error", wrong_output_activation),
    Rule("bounded-output-for-regression", "warning", bounded_output_for_regression),
    Rule("linear-hidden-layers", "warning", linear_hidden_layers, scope="model"),
    Rule("float16-without-loss-scaling", "warning", float16_without_loss_scaling, scope="model"),
    Rule("batchnorm-training-flag-ignored", "warning", batchnorm_training_flag_ignored, scope="model"),
)
#: Code of the info finding returned when the model's outputs cannot be inspected.
UNINSPECTABLE_MODEL = "uninspectable-model"
#: Code raised for a task name that is not one of :data:`TASKS`.
UNKNOWN_TASK = "unknown-task"
#: Code raised for an ``allow`` entry that names no known check.
UNKNOWN_ALLOW_CODE = "unknown-allow-code"
#: Every code :func:`check_compatibility` can raise or report.
COMPATIBILITY_CODES: tuple[str, ...] = (
    *(rule.code for rule in COMPATIBILITY_RULES), UNINSPECTABLE_MODEL, UNKNOWN_TASK, UNKNOWN_ALLOW_CODE,
)
COMPATIBILITY_ERROR_CODES: tuple[str, ...] = tuple(r.code for r in COMPATIBILITY_RULES if r.severity == "error")
#: The rules whose verdict follows the layers' ``trainable`` flags, which may change between two fits
#: of one Trainer (a base unfrozen for fine-tuning): the Trainer checks them again then.
TRAINABLE_RULE_CODES: frozenset[str] = frozenset({"batchnorm-training-flag-ignored"})
COMPATIBILITY_WARNING_CODES: tuple[str, ...] = tuple(r.code for r in COMPATIBILITY_RULES if r.severity == "warning")


def validate_task(task: Any) -> None:
    """Raises UnknownNameError(unknown-task) unless ``task`` is one of :data:`TASKS` (or a list
    or dict of them, one per output; ``None`` there for an output without a loss)."""
    if isinstance(task, list | tuple | Mapping):
        for one in task.values() if isinstance(task, Mapping) else task:
            # None: an output that is not trained on, as a dict that leaves it out says (with
            # loss=["mse", None] the list had no way to say it); heads() refuses it beside a loss.
            if one is not None:
                validate_task(one)
        return
    if task not in TASKS:
        raise UnknownNameError(
            UNKNOWN_TASK,
            f"Unknown task {task!r}.{closest(str(task), TASKS)} Use one of: {', '.join(TASKS)}.")


def validate_allow(allow: Collection[str]) -> frozenset[str]:
    """Checks that every ``allow`` entry is a known check code (a typo must not pass silently)."""
    from trainkit.checks.data_checks import DATA_ERROR_CODES, DATA_WARNING_CODES

    # The codes of the rules (not of the checks' own errors: an unknown task cannot be allowed).
    known = {rule.code for rule in COMPATIBILITY_RULES} | set(DATA_ERROR_CODES) | set(DATA_WARNING_CODES)
    allow = frozenset([allow] if isinstance(allow, str) else allow)
    for code in allow:
        if code not in known:
            raise CompatibilityError(
                UNKNOWN_ALLOW_CODE,
                f"allow contains {code!r}, which is not a check code.{closest(code, known)} "
                f"Known codes: {', '.join(sorted(known))}.")
    return allow


def to_finding(code: str, severity: Severity, issue: Issue) -> Finding:
    """A finding for ``issue``; an error (only allowed ones get here) becomes a warning that says it was allowed."""
    message = issue.message
    evidence = dict(issue.evidence)
    if severity == "error":
        severity = "warning"
        message = f"Allowed by allow: [{code}]. {message}"
        evidence["allowed"] = True
    return Finding(code=code, severity=severity, message=message, advice=issue.advice,
                   evidence=evidence, layer=issue.layer)


def check_compatibility(
    model: keras.Model,
    loss: keras.losses.Loss,
    task: Any,
    *,
    allow: Collection[str] = (),
    num_classes: int | None = None,
    optimizer: Any = None,
) -> list[Finding]:
    """Checks the output layer(s), the loss and the task against each other.

    Args:
        model: A built or unbuilt Sequential or functional model (subclassed models are skipped).
        loss: The resolved loss; a list or dict gives one loss per output. Custom losses skip the
            loss-based rules.
        task: ``binary``, ``multiclass``, ``multilabel`` or ``regression``; a list or dict gives
            one task per output (an output without one is not checked).
        allow: Error codes to downgrade to warnings (a deliberate exception).
        num_classes: Number of classes, when known (checked against the output units).
        optimizer: The optimizer, when known (a ``LossScaleOptimizer`` scales float16 losses).

    Returns:
        The warning findings (allowed errors included, as warnings); an info finding when the
        model's outputs cannot be inspected.

    Raises:
        CompatibilityError: for the first error whose code is not in ``allow``.
    """
    validate_task(task)
    allowed = validate_allow(allow)
    outputs = find_outputs(model)
    if not outputs:
        return [Finding(
            code=UNINSPECTABLE_MODEL, severity="info",
            message=f"The outputs of {type(model).__name__} '{getattr(model, 'name', '?')}' cannot be "
                    f"read without calling it (a subclassed model), so the output/loss/task "
                    f"compatibility checks were skipped.",
            advice="Build the model with the Sequential or functional API to have it checked.")]
    losses = losses_per_output(outputs, loss)
    findings: list[Finding] = []
    classes = num_classes if len(outputs) == 1 else None
    tasks = tasks_per_output(outputs, task)
    for i, (output, loss_info, output_task) in enumerate(zip(outputs, losses, tasks, strict=True)):
        if output_task is None:
            continue
        case = Case(output, loss_info, output_task, classes, model, optimizer)
        for rule in COMPATIBILITY_RULES:
            if rule.scope == "model" and i > 0:
                continue
            issue = rule.check(case)
            if issue is None:
                continue
            if rule.severity == "error" and rule.code not in allowed:
                raise CompatibilityError(rule.code, f"{issue.message} {issue.advice}")
            findings.append(to_finding(rule.code, rule.severity, issue))
    return findings
