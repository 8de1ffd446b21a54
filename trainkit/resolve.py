"""Turns the names users write ("adam", "binary_crossentropy", {"name": "sgd", ...}) into Keras objects.

One place resolves names for the Python API and for recipes, so both accept the same spellings and
fail with the same :class:`~trainkit.errors.UnknownNameError`, which names the closest valid one.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

# closest is imported from here by other modules too (it lives in errors, free of Keras).
from trainkit.errors import ArgumentError, UnknownNameError, closest

Spec = str | Mapping[str, Any] | Any

LOSS_ALIASES: dict[str, str] = {
    "bce": "binary_crossentropy",
    "cce": "categorical_crossentropy",
    "scce": "sparse_categorical_crossentropy",
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    # Keras's own short names (keras.losses.get takes them; "mape" was refused as unknown).
    "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
    "kld": "kl_divergence",
    "huber_loss": "huber",
}
LOSS_CLASSES: dict[str, type[keras.losses.Loss]] = {
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
    "binary_focal_crossentropy": keras.losses.BinaryFocalCrossentropy,
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "categorical_focal_crossentropy": keras.losses.CategoricalFocalCrossentropy,
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
    "mean_squared_error": keras.losses.MeanSquaredError,
    "mean_absolute_error": keras.losses.MeanAbsoluteError,
    "mean_absolute_percentage_error": keras.losses.MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": keras.losses.MeanSquaredLogarithmicError,
    "huber": keras.losses.Huber,
    "log_cosh": keras.losses.LogCosh,
    "hinge": keras.losses.Hinge,
    "squared_hinge": keras.losses.SquaredHinge,
    "categorical_hinge": keras.losses.CategoricalHinge,
    "kl_divergence": keras.losses.KLDivergence,
    "poisson": keras.losses.Poisson,
}
OPTIMIZER_CLASSES: dict[str, type[keras.optimizers.Optimizer]] = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adagrad": keras.optimizers.Adagrad,
    "adadelta": keras.optimizers.Adadelta,
    "adamax": keras.optimizers.Adamax,
    "nadam": keras.optimizers.Nadam,
    "ftrl": keras.optimizers.Ftrl,
    "lion": keras.optimizers.Lion,
}


# Keras 2 optimizer arguments that Keras 3 renamed or dropped, with what to write instead. The
# closest spelling would suggest nothing for "lr", and "weight_decay" for "decay", which is another
# thing (it shrinks the weights, it does not lower the learning rate).
LEGACY_OPTIMIZER_ARGUMENTS: dict[str, str] = {
    "lr": ' Did you mean "learning_rate"? (Keras 3\'s name for Keras 2\'s "lr".)',
    "decay": (
        " Keras 3 dropped Keras 2's learning-rate decay (learning_rate / (1 + decay * step)): leave it out for a fixed "
        "learning_rate, or in Python pass learning_rate=keras.optimizers.schedules.InverseTimeDecay(<learning_rate>, "
        "decay_steps=1, decay_rate=<decay>), which decays the same way. (\"weight_decay\" is another thing: it shrinks the weights.)"
    ),
    "jit_compile": (
        " Keras 3 optimizers take no jit_compile: trainkit compiles the whole training step, optimizer included; "
        "set training.jit_compile in a recipe, or Trainer(jit_compile=...)."
    ),
}


class _FunctionLoss(keras.losses.Loss):
    """Wraps a plain ``loss(y_true, y_pred) -> per-example losses`` function as a Keras Loss."""

    def __init__(self, fn: Any, name: str) -> None:
        super().__init__(name=name)
        self.fn = fn

    def call(self, y_true: Any, y_pred: Any) -> Any:
        # Keras's own wrapper of loss functions lines the ranks up first: 1-D targets against a
        # [batch, 1] output otherwise broadcast to [batch, batch] in ``y_true - y_pred``, and the
        # usual custom MSE trained on the mean over every pair of rows.
        y_true, y_pred = same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred)


def same_rank(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """``y_true`` and ``y_pred`` with a trailing axis of 1 added or dropped where only that differs.

    Keras's ``squeeze_or_expand_to_same_rank``, which is not public API: a rank-1 tensor gets the
    axis, a higher rank loses it. Tensors of unknown rank are left as they are.
    """
    if not (tf.is_tensor(y_true) and tf.is_tensor(y_pred)) or y_true.shape.rank is None or y_pred.shape.rank is None:
        return y_true, y_pred
    true_rank, pred_rank = len(y_true.shape), len(y_pred.shape)
    if true_rank == pred_rank + 1 and y_true.shape[-1] == 1:
        return (y_true, keras.ops.expand_dims(y_pred, -1)) if pred_rank == 1 else (keras.ops.squeeze(y_true, -1), y_pred)
    if pred_rank == true_rank + 1 and y_pred.shape[-1] == 1:
        return (keras.ops.expand_dims(y_true, -1), y_pred) if true_rank == 1 else (y_true, keras.ops.squeeze(y_pred, -1))
    return y_true, y_pred


# The name a mapping without one is shown with (the recipe's examples, recipe._NAMED_EXAMPLES).
_EXAMPLE_NAMES = {"loss": "binary_crossentropy", "optimizer": "adam", "metric": "auc", "initializer": "glorot_uniform", "regularizer": "l2"}


def _split_spec(spec: Spec, kind: str) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping):
        params = dict(spec)
        name = params.pop("name", None)
        if not isinstance(name, str):
            # "A optimizer ... needs a 'name' key" named neither the article nor what the key holds.
            example = {"name": _EXAMPLE_NAMES.get(kind, "..."), **{key: value for key, value in params.items() if isinstance(key, str)}}
            raise UnknownNameError(f"unknown-{kind}", f"{_article(kind)} {kind} given as a mapping needs a 'name' key with the {kind}'s name, "
                                                      f"such as {example!r}; got {dict(spec)!r}.")
        return name, params
    _refuse_class(spec, kind)
    raise UnknownNameError(f"unknown-{kind}", f"{_article(kind)} {kind} is a name, a {{'name': ...}} mapping or a Keras {kind} object; got {spec!r}.")


def _refuse_class(spec: Any, kind: str) -> None:
    """Refuses a class where an instance belongs (``keras.losses.BinaryCrossentropy`` without ``()``).

    A class is callable, so a loss or metric class would otherwise be taken for a function
    ``fn(y_true, y_pred)`` and fail deep in the first traced step (a loss built with
    ``reduction=y_true``).
    """
    if isinstance(spec, type):
        raise UnknownNameError(f"unknown-{kind}", f"{_article(kind)} {kind} must be an instance, not the class {spec.__name__}: pass {spec.__name__}() or its name.")


#: ``package.module:function`` (or ``module.function``): a name of the user's own code, as a recipe's
#: ``model.builder`` is written. No Keras loss or metric name holds a ``:`` or a ``.``.
_CODE_PATH_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*[:.][A-Za-z_]\w*$")


#: The first parts of a path that names Keras's own loss or metric, ``keras.losses.Huber``.
_KERAS_MODULES = ("keras", "tf", "tensorflow")


def _refuse_own_by_path(name: str, kind: str, base: str, suggest: Callable[[str], str]) -> None:
    """Refuses ``mymod:focal`` as a loss or metric name saying what it is: a function of the user's
    own, which only the Python API takes (a recipe imports nothing but ``model.builder``), where
    "Unknown loss" and the list of Keras's names read as if the function were misspelt.

    A path into Keras itself (``keras.losses.BinaryCrossentropy``, ``tf.keras.metrics.AUC``) is
    Keras's own, named without its module path (``suggest``: the " Did you mean" for its last
    part), not one to train with from Python."""
    if not _CODE_PATH_RE.match(name):
        return
    parts = re.split(r"[:.]", name)
    function = parts[-1]
    if parts[0] in _KERAS_MODULES:
        raise UnknownNameError(f"unknown-{kind}", f'Unknown {kind} "{name}": Keras\'s own {kind.replace("loss", "losse")}s are named without their module path.'
                                                  f"{suggest(function)}")
    argument, module = ("loss=" + function, "losses") if kind == "loss" else (f"metrics=[{function}]", "metrics")
    raise UnknownNameError(
        f"unknown-{kind}", f'Unknown {kind} "{name}": a {kind} is named by its Keras name (or a {{name: ...}} mapping of one), and one of your own '
                           f"is not imported by a path (a recipe imports only its model.builder, and the model.compile a builder calls is "
                           f"ignored). Train with it from Python: Trainer(model, {argument}, ...) takes any function {function}(y_true, y_pred) "
                           f"or keras.{module}.{base} instance.")


def _suggest_loss(part: str) -> str:
    """' Did you mean "x"?' for the last part of a path into Keras given as a loss name."""
    key = LOSS_ALIASES.get(part.lower(), part.lower())
    return f' Did you mean "{part}"?' if key in LOSS_CLASSES else closest(key, [*LOSS_CLASSES, *LOSS_ALIASES])


def _suggest_metric(part: str) -> str:
    """' Did you mean "x"?' for the last part of a path into Keras given as a metric name."""
    return f' Did you mean "{part}"?' if _keras_metric_class(part) is not None else closest(part.lower(), (*METRIC_NAMES, "accuracy"))


def _article(word: str) -> str:
    return "An" if word[:1] in "aeiou" else "A"


def _class_arguments(cls: type) -> dict[str, Any]:
    """Every keyword ``cls`` takes, with its default, its base classes' included where an
    ``__init__`` passes its ``**kwargs`` up to them (Keras's optimizers)."""
    accepted: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            parameters = inspect.signature(klass.__init__).parameters.values()
            for p in parameters:
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    accepted.setdefault(p.name, p.default)
            # Without **kwargs nothing more gets through: MeanSquaredError hands its base its
            # ``fn`` itself, and "Its arguments: reduction, name, dtype, fn" offered one that failed.
            if not any(p.kind is p.VAR_KEYWORD for p in parameters):
                break
    return accepted


# Ranges of arguments Keras takes without a check, then trains with (a label_smoothing of 5, a
# negative clipnorm) or fails on deep inside the first step: (low, high, low included, high included).
_ARGUMENT_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "label_smoothing": (0.0, 1.0, True, True),
    "clipnorm": (0.0, math.inf, False, False),
    "global_clipnorm": (0.0, math.inf, False, False),
    "clipvalue": (0.0, math.inf, False, False),
    "beta_1": (0.0, 1.0, True, False),  # 1: Adam's bias correction divides by 1 - beta ** t = 0
    "beta_2": (0.0, 1.0, True, False),
    "momentum": (0.0, 1.0, True, True),
    "rho": (0.0, 1.0, True, False),
    "epsilon": (0.0, math.inf, True, False),
    "weight_decay": (0.0, math.inf, True, False),
    # 0 scales the loss to 0 and the gradients back by 1/0: NaN at the first step (exit code 3).
    "loss_scale_factor": (0.0, math.inf, False, False),
    # Adagrad's accumulator starts here: a negative one takes the square root of a negative number.
    "initial_accumulator_value": (0.0, math.inf, True, False),
    "stddev": (0.0, math.inf, True, False),
}


def _real_not_bool(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)  # numpy's numbers too


def _checked_arguments(what: str, code: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with their kinds checked against the defaults, before Keras builds anything.

    Keras takes ``from_logits="false"`` (a true string) or ``beta_1="x"`` and fails, or trains
    wrongly, only when the step runs: a flag must be a bool, a number where the default is one
    (a whole number where it is a float becomes one), and the arguments of
    :data:`_ARGUMENT_RANGES` a number in their range.

    Args:
        what: How messages name the object, e.g. ``'Loss "binary_crossentropy"'``.
        code: The error code.
        params: The user's keyword arguments (names already checked).
        defaults: The class's arguments and defaults (see :func:`_class_arguments`).

    Raises:
        UnknownNameError: ``code``, naming the argument, what it takes and what it got.
    """
    out = dict(params)
    for arg, value in params.items():
        default = defaults.get(arg)
        got = f"got {value!r}" + (" (a string: write it without quotes)" if isinstance(value, str) else "")
        if isinstance(default, bool) and not isinstance(value, bool):
            raise UnknownNameError(code, f"{what}: {arg} takes true or false, {got}.")
        if _real_not_bool(default) and isinstance(value, str | bool):
            raise UnknownNameError(code, f"{what}: {arg} takes a number (its default is {default}), {got}.")
        if isinstance(default, float) and _real_not_bool(value):
            out[arg] = value = float(value)
        if arg in _ARGUMENT_RANGES and value is not None:
            low, high, low_in, high_in = _ARGUMENT_RANGES[arg]
            inside = _real_not_bool(value) and (low <= value if low_in else low < value) and (value <= high if high_in else value < high)
            if not inside:
                span = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
                raise UnknownNameError(code, f"{what}: {arg} takes a number in {span}, {got}.")
    return out


def is_keras_loss_function(fn: Any) -> bool:
    """Whether ``fn`` is Keras's own loss function (``keras.losses.mean_squared_error``), not a
    function of the user's that has its name: ``def mse(y_true, y_pred)`` scaled by 100, or a
    ``binary_crossentropy`` without Keras's clipping, is trained as written, as ``compile`` does."""
    return callable(fn) and getattr(keras.losses, getattr(fn, "__name__", ""), None) is fn


def get_loss(spec: Spec) -> keras.losses.Loss:
    """Resolves a loss name, ``{"name": ..., **kwargs}`` mapping or Keras loss object.

    Plain functions (e.g. ``keras.losses.mean_squared_error``) are wrapped so that every resolved
    loss has a ``get_config()`` that the compatibility checks can read.
    """
    if isinstance(spec, keras.losses.Loss):
        return spec
    _refuse_class(spec, "loss")
    if callable(spec) and not isinstance(spec, str | Mapping):
        fn_name = getattr(spec, "__name__", "")
        key = LOSS_ALIASES.get(fn_name, fn_name)
        if key in LOSS_CLASSES and is_keras_loss_function(spec):
            return LOSS_CLASSES[key]()
        # The name becomes a TensorFlow name scope, which takes no "<" (a lambda's "<lambda>").
        return _FunctionLoss(spec, name=re.sub(r"[^A-Za-z0-9_.-]", "", fn_name).lstrip("_.-") or "custom_loss")
    name, params = _split_spec(spec, "loss")
    key = LOSS_ALIASES.get(name.lower(), name.lower())
    if key not in LOSS_CLASSES:
        _refuse_own_by_path(name, "loss", "Loss", _suggest_loss)
        # Aliases too: "mse_" is nowhere near "mean_squared_error".
        raise UnknownNameError("unknown-loss", f'Unknown loss "{name}".{closest(key, [*LOSS_CLASSES, *LOSS_ALIASES])} Known losses: {", ".join(sorted(LOSS_CLASSES))}.')
    accepted = _class_arguments(LOSS_CLASSES[key])
    unknown = [arg for arg in params if arg not in accepted]
    if unknown:
        raise UnknownNameError("unknown-loss", f'Loss "{name}" has no argument "{unknown[0]}".{closest(unknown[0], accepted)} Its arguments: {", ".join(accepted)}.')
    params = _checked_arguments(f'Loss "{name}"', "bad-loss-argument", params, accepted)
    try:
        return LOSS_CLASSES[key](**params)
    except (TypeError, ValueError) as err:
        raise UnknownNameError("bad-loss-argument", f'Loss "{name}" does not take these arguments: {_sentence(err)}') from None


def get_optimizer(spec: Spec) -> keras.optimizers.Optimizer:
    """Resolves an optimizer name, ``{"name": ..., **kwargs}`` mapping or Keras optimizer object."""
    if isinstance(spec, keras.optimizers.Optimizer):
        return spec
    name, params = _split_spec(spec, "optimizer")
    key = name.lower()
    if key not in OPTIMIZER_CLASSES:
        raise UnknownNameError("unknown-optimizer", f'Unknown optimizer "{name}".{closest(key, OPTIMIZER_CLASSES)} Known optimizers: {", ".join(sorted(OPTIMIZER_CLASSES))}.')
    cls = OPTIMIZER_CLASSES[key]
    params = _optimizer_params(name, cls, params)
    try:
        return cls(**params)
    except (TypeError, ValueError) as err:
        raise UnknownNameError("bad-optimizer-argument", f'Optimizer "{name}" does not take these arguments: {_sentence(err)}') from None


def _optimizer_params(name: str, cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against the optimizer's signature, with whole numbers where it wants floats.

    Keras refuses ``learning_rate=1`` ("should be float") yet takes ``-1.0`` or NaN and trains
    with it; a misspelt argument would only surface as a TypeError without a suggestion.
    """
    accepted = _class_arguments(cls)
    for arg in params:
        if arg not in accepted:
            hint = LEGACY_OPTIMIZER_ARGUMENTS.get(arg) or closest(arg, accepted)
            raise UnknownNameError("bad-optimizer-argument", f'Optimizer "{name}" has no argument "{arg}".{hint} Its arguments: {", ".join(accepted)}.')
    out = _checked_arguments(f'Optimizer "{name}"', "bad-optimizer-argument", params, accepted)
    value = out.get("learning_rate")
    if isinstance(value, Mapping):
        out["learning_rate"] = value = _schedule(name, value)
    if _real_not_bool(value) and not (math.isfinite(value) and value > 0):
        raise UnknownNameError("bad-optimizer-argument", f'Optimizer "{name}": learning_rate must be a finite number > 0, got {value!r} (its default is {accepted["learning_rate"]}).')
    return out


#: Keras's learning-rate schedules by class name: a recipe's ``optimizer.learning_rate`` may be one,
#: serialised as Keras writes it (``{class_name: CosineDecay, config: {initial_learning_rate: 0.1, ...}}``).
SCHEDULE_CLASSES: dict[str, type[keras.optimizers.schedules.LearningRateSchedule]] = {
    name: cls for name, cls in vars(keras.optimizers.schedules).items()
    if isinstance(cls, type) and issubclass(cls, keras.optimizers.schedules.LearningRateSchedule)
    and cls is not keras.optimizers.schedules.LearningRateSchedule
}


def _schedule(name: str, spec: Mapping[str, Any]) -> keras.optimizers.schedules.LearningRateSchedule:
    """The learning-rate schedule a ``{class_name: ..., config: {...}}`` mapping names, its
    arguments checked as an optimizer's are.

    Keras's optimizer refused the mapping itself ("should be float, or an instance of
    LearningRateSchedule"), so a recipe could not use a schedule at all.
    """
    what = f'Optimizer "{name}": learning_rate'
    class_name, config = spec.get("class_name"), spec.get("config", {})
    extra = [key for key in spec if key not in ("class_name", "config")]
    if extra or not isinstance(class_name, str) or not isinstance(config, Mapping):
        raise UnknownNameError("bad-optimizer-argument", f"{what} takes a number or a schedule written as {{class_name: CosineDecay, "
                                                         f"config: {{initial_learning_rate: 0.1, decay_steps: 1000}}}}, got {dict(spec)!r}.")
    cls = SCHEDULE_CLASSES.get(class_name)
    if cls is None:
        raise UnknownNameError("bad-optimizer-argument", f'{what}: unknown schedule "{class_name}".{closest(class_name, SCHEDULE_CLASSES)} '
                                                         f'Known schedules: {", ".join(sorted(SCHEDULE_CLASSES))}.')
    accepted = _class_arguments(cls)
    unknown = [arg for arg in config if arg not in accepted]
    if unknown:
        raise UnknownNameError("bad-optimizer-argument", f'{what}: schedule "{class_name}" has no argument "{unknown[0]}".'
                                                         f'{closest(unknown[0], accepted)} Its arguments: {", ".join(accepted)}.')
    params = _checked_arguments(f'{what} schedule "{class_name}"', "bad-optimizer-argument", _float_rates(config), accepted)
    try:
        schedule = cls(**params)
        # Keras builds a schedule from a string rate and fails only inside the first step.
        first = float(schedule(0))
    except (TypeError, ValueError, tf.errors.OpError) as err:
        raise UnknownNameError("bad-optimizer-argument", f'{what} schedule "{class_name}" does not take these arguments: {_sentence(err)}') from None
    if not (math.isfinite(first) and first >= 0):
        raise UnknownNameError("bad-optimizer-argument", f'{what} schedule "{class_name}" starts at {first:g}; a learning rate is a finite number >= 0.')
    return schedule


def _float_rates(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with its whole numbers as floats, but for step counts (``decay_steps``,
    ``boundaries``). A schedule computes in the dtype of its first rate: ExponentialDecay with
    ``initial_learning_rate: 1`` (YAML's int) was 1 at step 0 and 0 from then on, and
    PiecewiseConstantDecay's ``values: [1, 0]`` are whole numbers too."""
    def as_float(value: Any) -> Any:
        if isinstance(value, list):
            return [as_float(v) for v in value]
        return float(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value

    return {key: value if key.endswith("steps") or key == "boundaries" else as_float(value) for key, value in config.items()}


#: Losses that read one probability (or logit) per class: a binary task given them has 2 units.
_CATEGORICAL_LOSSES = (keras.losses.SparseCategoricalCrossentropy, keras.losses.CategoricalCrossentropy,
                       keras.losses.CategoricalFocalCrossentropy, keras.losses.CategoricalHinge)


def get_metric(spec: Spec, task: str, loss: keras.losses.Loss | None = None) -> keras.metrics.Metric:
    """Resolves a metric, choosing the accuracy variant that fits the task (as ``compile`` does).

    Args:
        spec: A metric name, mapping or Keras metric object.
        task: ``binary``, ``multiclass``, ``multilabel`` or ``regression``.
        loss: The resolved loss; tells sparse from one-hot labels and logits from probabilities.
    """
    if isinstance(spec, keras.metrics.Metric):
        _check_label_format(spec.name, spec, task, loss)
        return spec
    _refuse_class(spec, "metric")
    if callable(spec) and not isinstance(spec, str | Mapping):  # fn(y_true, y_pred), as compile takes
        return keras.metrics.MeanMetricWrapper(spec, name=_callable_name(spec))
    if not isinstance(spec, str | Mapping):
        raise UnknownNameError("unknown-metric", f"A metric is a name, a {{'name': ...}} mapping, a keras.metrics.Metric or a function; got {spec!r}.")
    name, params = _split_spec(spec, "metric")
    key = name.lower()
    from_logits = bool(getattr(loss, "get_config", dict)().get("from_logits", False)) if loss else False
    if key in ("accuracy", "acc") and task in ("binary", "multiclass") and loss is not None and not isinstance(loss, tuple(LOSS_CLASSES.values())):
        # A loss of the user's own does not tell class ids from one-hot rows: picked by the
        # shapes, as compile does (CategoricalAccuracy read class ids as 0.0, and a 2-unit binary
        # output failed in BinaryAccuracy's comparison).
        return _metric_with(name, keras.metrics.MeanMetricWrapper, {"fn": accuracy_by_shapes, "name": "accuracy", **params})
    if key in ("accuracy", "acc"):
        # A binary task may be written as two softmax units with a categorical loss (the
        # compatibility checks accept it): BinaryAccuracy then compares each row's 0/1 label with
        # both probabilities and read 0.5 at every epoch of a model at 93% (as compile picks, the
        # loss's label format decides).
        if task == "binary" and isinstance(loss, _CATEGORICAL_LOSSES):
            sparse = isinstance(loss, keras.losses.SparseCategoricalCrossentropy)
            return _metric_with(name, keras.metrics.SparseCategoricalAccuracy if sparse else keras.metrics.CategoricalAccuracy, {"name": "accuracy", **params})
        if task in ("binary", "multilabel"):
            return _metric_with(name, keras.metrics.BinaryAccuracy, {"name": "accuracy", "threshold": 0.0 if from_logits else 0.5, **params})
        if task == "multiclass":
            sparse = isinstance(loss, keras.losses.SparseCategoricalCrossentropy)
            return _metric_with(name, keras.metrics.SparseCategoricalAccuracy if sparse else keras.metrics.CategoricalAccuracy, {"name": "accuracy", **params})
        raise UnknownNameError("unknown-metric", 'The metric "accuracy" means nothing for a regression task. Use "mae" or "mse" instead.')
    if key == "auc" and from_logits:
        params.setdefault("from_logits", True)
    cls = _keras_metric_class(name)
    if cls is None:
        _refuse_own_by_path(name, "metric", "Metric", _suggest_metric)
        raise UnknownNameError("unknown-metric", f'Unknown metric "{name}".{closest(key, (*METRIC_NAMES, "accuracy"))} Use a Keras metric name such as "accuracy", "mae", "mse", "auc", "precision" or "recall".')
    metric = _metric_with(name, cls, params)
    _check_label_format(name, metric, task, loss)
    # Named as given, like model.compile names it: "mae", not "mean_absolute_error", and "auc"
    # even when the process already made one (Keras numbers its instances: "auc_1").
    metric.name = name
    return metric


def accuracy_by_shapes(y_true: Any, y_pred: Any) -> Any:
    """Each row's accuracy, of the kind ``compile``'s ``"accuracy"`` picks from the shapes: binary
    for one output unit, else sparse for class ids (a lower rank, or one column), else categorical."""
    if y_pred.shape[-1] == 1:
        return keras.metrics.binary_accuracy(y_true, y_pred)
    if len(y_true.shape) < len(y_pred.shape) or y_true.shape[-1] == 1:
        return keras.metrics.sparse_categorical_accuracy(y_true, y_pred)
    return keras.metrics.categorical_accuracy(y_true, y_pred)


def snake_case(name: str) -> str:
    """``name`` in snake case as Keras writes it: ``F1Score`` -> ``f1_score``, ``<lambda>`` -> ``lambda``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _callable_name(fn: Any) -> str:
    """The name ``model.compile`` gives a metric function (its History key): a Keras object's own
    ``name`` (a loss instance's ``mean_absolute_error``), else the function's name, or its class's
    (a ``functools.partial``), in snake case (a lambda's ``lambda``)."""
    name = getattr(fn, "name", None)
    if isinstance(name, str) and name:
        return name
    return snake_case(getattr(fn, "__name__", type(fn).__name__)) or "metric"


def _check_label_format(name: str, metric: keras.metrics.Metric, task: str, loss: keras.losses.Loss | None) -> None:
    """Refuses a multiclass metric that reads the labels in the other format than the loss takes them.

    Else silent nonsense (CategoricalAccuracy reads class ids as a validation accuracy of 0.0)
    or a TensorFlow shape error ("Dimensions must be equal") when the step is traced.

    Raises:
        UnknownNameError: ``unknown-metric``, saying which metric to use instead.
    """
    if task != "multiclass":
        return
    if isinstance(loss, keras.losses.SparseCategoricalCrossentropy) and _compares_like_shapes(metric):
        raise UnknownNameError("unknown-metric", f'The metric "{name}" compares the labels with the outputs entry by entry, so it needs one-hot labels, '
                                                 f'but SparseCategoricalCrossentropy takes class ids. Use "accuracy" (or '
                                                 f'"sparse_top_k_categorical_accuracy"), or one-hot labels with categorical_crossentropy.')
    if isinstance(loss, _ONE_HOT_LOSSES) and isinstance(metric, _READS_CLASS_IDS):
        raise UnknownNameError("unknown-metric", f'The metric "{name}" reads one class id per sample, but {type(loss).__name__} takes one-hot labels. '
                                                 f'Use "accuracy" (or "top_k_categorical_accuracy"), or class ids with sparse_categorical_crossentropy.')


#: Losses that take one-hot label rows, and the metrics that read class ids instead.
_ONE_HOT_LOSSES = (keras.losses.CategoricalCrossentropy, keras.losses.CategoricalFocalCrossentropy, keras.losses.CategoricalHinge)
_READS_CLASS_IDS = (keras.metrics.SparseCategoricalAccuracy, keras.metrics.SparseTopKCategoricalAccuracy, keras.metrics.SparseCategoricalCrossentropy)


def _compares_like_shapes(metric: Any) -> bool:
    """Whether a Keras metric reads labels of the outputs' shape (one-hot), not class ids."""
    module = type(metric).__module__
    one_hot = (keras.metrics.CategoricalAccuracy, keras.metrics.TopKCategoricalAccuracy, keras.metrics.CategoricalCrossentropy)
    return module.endswith(("confusion_metrics", "f_score_metrics")) or isinstance(metric, one_hot)


def _keras_metric_class(name: str) -> type[keras.metrics.Metric] | None:
    """The Keras metric class ``name`` names, as ``keras.metrics.get`` reads it (``F1Score``,
    ``mean_io_u``, ``mse``) or in lower case (``AUC``, ``Precision``); ``None`` if none.

    The class, not an instance: ``keras.metrics.get`` makes one without arguments, which
    ``MeanIoU`` and ``PrecisionAtRecall`` cannot be (they need ``num_classes``, ``recall``).
    """
    for candidate in (name, name.lower()):
        if candidate in METRIC_CLASSES:
            return METRIC_CLASSES[candidate]
        try:
            return type(keras.metrics.get(candidate))  # Keras's aliases: "mse", "MAE", "bce"...
        except (ValueError, TypeError):
            continue
    return None


def _metric_with(name: str, cls: type[keras.metrics.Metric], params: dict[str, Any]) -> keras.metrics.Metric:
    """``cls(**params)``, its arguments checked first (``bad-metric-argument``)."""
    accepted = _class_arguments(cls)
    for arg in params:
        if arg not in accepted:
            raise UnknownNameError("bad-metric-argument", f'Metric "{name}" has no argument "{arg}".{closest(arg, accepted)} Its arguments: {", ".join(accepted)}.')
    # The class's own signature: a base class's required arguments (IoU's num_classes, MeanMetricWrapper's
    # fn) are passed up by the subclass.
    required = [p.name for p in inspect.signature(cls).parameters.values() if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    missing = [arg for arg in required if arg not in params]
    if missing:
        raise UnknownNameError("bad-metric-argument", f'Metric "{name}" needs {" and ".join(missing)}: give it as a mapping, '
                                                      f'{{name: {name}, {missing[0]}: ...}} (in Python, {cls.__name__}({missing[0]}=...)).')
    params = _checked_arguments(f'Metric "{name}"', "bad-metric-argument", params, accepted)
    try:
        return cls(**params)
    except (TypeError, ValueError) as err:
        raise UnknownNameError("bad-metric-argument", f'Metric "{name}" does not take these arguments: {_sentence(err)}') from None


def _sentence(err: BaseException) -> str:
    """An exception's text ending in one full stop (Keras's messages end in one, or two, or none)."""
    return str(err).strip().rstrip(".") + "."


def get_metrics(specs: Sequence[Spec], task: str, loss: keras.losses.Loss | None = None) -> list[keras.metrics.Metric]:
    """Resolves each metric of ``specs`` with :func:`get_metric`."""
    return [get_metric(spec, task, loss) for spec in specs]


def clone_metric(metric: keras.metrics.Metric, name: str | None = None) -> keras.metrics.Metric:
    """A fresh metric of the same class and config (validation needs its own state), renamed
    ``name`` when given.

    A metric wrapping a plain function is rebuilt around the same function: its config names
    the function, which ``from_config`` finds only when it is registered with Keras.
    """
    if type(metric) is keras.metrics.MeanMetricWrapper:
        return keras.metrics.MeanMetricWrapper(metric._fn, name=name or metric.name, dtype=metric.dtype, **metric._fn_kwargs)
    cls = type(metric)
    config = metric.get_config()
    how = (f"trainkit measures validation (and each output) with a copy of every metric, made by {cls.__name__}.from_config(metric.get_config()), "
           "as Keras saves and loads a metric")
    missing = _arguments_left_out(cls, config)
    if missing:  # the copy would take their defaults: validation measured otherwise than training
        raise ArgumentError("metric-not-copyable", f'The metric "{metric.name}" ({cls.__name__}) cannot be copied: {how}, and its get_config() leaves out '
                                                   f'{", ".join(missing)}. Give {cls.__name__} a get_config() that returns them: '
                                                   f'return {{**super().get_config(), "{missing[0]}": self.{missing[0]}, ...}}.')
    try:
        return cls.from_config({**config, "name": name} if name else config)
    except (TypeError, ValueError) as err:
        raise ArgumentError("metric-not-copyable", f'The metric "{metric.name}" ({cls.__name__}) cannot be copied: {how}, which failed: {_sentence(err)} '
                                                   f"Give {cls.__name__} a get_config() that returns its __init__ arguments (and a from_config() where "
                                                   f"{cls.__name__}(**config) cannot rebuild it).") from None


def _arguments_left_out(cls: type, config: Mapping[str, Any]) -> list[str]:
    """The ``__init__`` arguments of a metric class of the user's own that its config leaves out.

    Only classes outside Keras are read (Keras's own keep some arguments under other keys, and
    rebuild them in ``from_config``), and none when such a class has a ``from_config`` of its own.
    """
    own = [k for k in cls.__mro__ if k.__module__.split(".")[0] != "keras" and k is not object]  # not keras_extras
    if any("from_config" in vars(k) for k in own):
        return []
    missing: list[str] = []
    for klass in own:
        if "__init__" in vars(klass):
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.name not in ("self", "name", "dtype") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in config and p.name not in missing:
                    missing.append(p.name)
    return missing


def _public_names(module: Any, exclude: Iterable[str] = ("get", "serialize", "deserialize")) -> tuple[str, ...]:
    """The snake_case names a Keras module exports (its string aliases), minus the helpers."""
    skip = set(exclude)
    return tuple(sorted(n for n in dir(module) if n[:1].islower() and n not in skip))


# Read from Keras rather than typed out, so a Keras upgrade that adds a name needs no change here.
ACTIVATION_NAMES: tuple[str, ...] = _public_names(keras.activations)
INITIALIZER_NAMES: tuple[str, ...] = _public_names(keras.initializers)
# The metric classes (Precision, AUC...) are named in snake case too; dir() lists them capitalised.
#: The metric classes by the names keras.metrics.get takes for them: the class's (``MeanIoU``) and
#: its snake case as Keras spells it (``mean_io_u``, ``f1_score``).
METRIC_CLASSES: dict[str, type[keras.metrics.Metric]] = {
    spelling: cls
    for class_name, cls in vars(keras.metrics).items()
    if isinstance(cls, type) and issubclass(cls, keras.metrics.Metric) and class_name[:1].isupper()
    for spelling in (class_name, snake_case(class_name))
}
METRIC_NAMES: tuple[str, ...] = tuple(dict.fromkeys((*_public_names(keras.metrics), *(n for n in METRIC_CLASSES if n[:1].islower()))))
REGULARIZER_NAMES: tuple[str, ...] = _public_names(keras.regularizers)
# Shorthand mappings such as {"l2": 0.01} name the penalty strengths directly.
_PENALTY_KEYS: tuple[str, ...] = ("l1", "l2")


def get_activation(name: str | None) -> str:
    """Checks an activation name and returns its canonical lower-case spelling.

    Args:
        name: An activation name such as ``"relu"``; ``None`` means ``"linear"``.

    Raises:
        UnknownNameError: ``unknown-activation`` with the closest known name.
    """
    if name is None:
        return "linear"
    key = str(name).lower()
    if key not in ACTIVATION_NAMES:
        raise UnknownNameError("unknown-activation", f'Unknown activation "{name}".{closest(key, ACTIVATION_NAMES)} Known activations: {", ".join(ACTIVATION_NAMES)}.')
    return key


def get_initializer(spec: Spec) -> keras.initializers.Initializer:
    """Resolves an initializer name, ``{"name": ..., **kwargs}`` mapping or Keras initializer.

    Args:
        spec: e.g. ``"he_normal"`` or ``{"name": "random_normal", "stddev": 0.05}``.
        The extra keys are passed to the initializer class (``seed`` included).

    Raises:
        UnknownNameError: ``unknown-initializer`` for an unknown name or bad arguments.
    """
    if isinstance(spec, keras.initializers.Initializer):
        return spec
    name, params = _split_spec(spec, "initializer") if isinstance(spec, str | Mapping) else (str(spec), {})
    key = name.lower()
    if key not in INITIALIZER_NAMES:
        raise UnknownNameError("unknown-initializer", f'Unknown initializer "{name}".{closest(key, INITIALIZER_NAMES)} Known initializers: {", ".join(INITIALIZER_NAMES)}.')
    factory = getattr(keras.initializers, key)
    if isinstance(factory, type):  # the classes; the snake_case names are aliases of them
        params = _checked_arguments(f'Initializer "{name}"', "unknown-initializer", params, _class_arguments(factory))
    try:
        return factory(**params)
    except (TypeError, ValueError) as err:
        raise UnknownNameError("unknown-initializer", f'Initializer "{name}" does not take these arguments: {_sentence(err)}') from None


def get_regularizer(spec: Spec) -> keras.regularizers.Regularizer | None:
    """Resolves a regularizer name, a ``{"l1": a, "l2": b}`` shorthand or a ``{"name": ...}`` mapping.

    Args:
        spec: ``"l2"`` (Keras default strength), ``{"l2": 0.01}``, ``{"l1": 1e-5, "l2": 1e-4}``,
            ``{"name": "orthogonal_regularizer", "factor": 0.01}``, a Keras regularizer or ``None``.

    Raises:
        UnknownNameError: ``unknown-regularizer`` for an unknown name, key or bad arguments.
    """
    if spec is None or isinstance(spec, keras.regularizers.Regularizer):
        return spec
    if isinstance(spec, Mapping) and "name" not in spec:
        return _penalty_regularizer(spec)
    name, params = _split_spec(spec, "regularizer") if isinstance(spec, str | Mapping) else (str(spec), {})
    key = name.lower()
    if key not in REGULARIZER_NAMES:
        raise UnknownNameError("unknown-regularizer", f'Unknown regularizer "{name}".{closest(key, REGULARIZER_NAMES)} Known regularizers: {", ".join(REGULARIZER_NAMES)}, or a mapping such as {{l2: 0.01}}.')
    try:
        return getattr(keras.regularizers, key)(**params)
    except (TypeError, ValueError) as err:
        raise UnknownNameError("unknown-regularizer", f'Regularizer "{name}" does not take these arguments: {_sentence(err)}') from None


def _penalty_regularizer(spec: Mapping[str, Any]) -> keras.regularizers.Regularizer:
    """Builds L1, L2 or L1L2 from ``{"l1": a, "l2": b}`` (either key may be missing)."""
    for key in spec:
        if key not in _PENALTY_KEYS:
            raise UnknownNameError("unknown-regularizer", f'Unknown regularizer key "{key}" in {dict(spec)!r}.{closest(str(key), _PENALTY_KEYS)} Use {{l1: 0.001}}, {{l2: 0.01}} or both.')
    try:
        strengths = {k: float(v) for k, v in spec.items()}
        if set(strengths) == {"l2"}:
            return keras.regularizers.L2(strengths["l2"])
        if set(strengths) == {"l1"}:
            return keras.regularizers.L1(strengths["l1"])
        return keras.regularizers.L1L2(l1=strengths.get("l1", 0.0), l2=strengths.get("l2", 0.0))
    except (TypeError, ValueError) as err:
        raise UnknownNameError("unknown-regularizer", f"Regularizer {dict(spec)!r} needs non-negative numbers: {err}.") from None
