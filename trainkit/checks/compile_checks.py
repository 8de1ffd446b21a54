"""A model the user compiled before handing it to a Trainer: the compile is not what trains it.

trainkit trains without ``model.compile``; the Trainer's ``loss``, ``optimizer`` and ``metrics``
are the ones its steps use. Users coming from Keras compile first (``model.compile(loss=...,
optimizer=..., metrics=...)`` then ``Trainer(model, loss=..., optimizer=...)``), and where the two
differ the compile's settings were dropped in silence. :func:`check_compiled` names each one that
differs, with what trainkit uses instead.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import re
import sys
import types
import warnings
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainkit import multioutput
from trainkit.checks.compatibility import describe_loss
from trainkit.errors import UnknownNameError
from trainkit.findings import Finding
from trainkit.resolve import _keras_metric_class, get_loss, is_keras_loss_function, snake_case

#: Code of the warning for a model compiled with another loss, optimizer (class or learning rate) or metrics.
COMPILE_IGNORED = "compile-ignored"

# Keras's compile reads "acc" as "accuracy" (both pick the accuracy that fits the loss).
_METRIC_ALIASES = {"acc": "accuracy"}
# The compile trainkit itself gave a model (a recipe run's, to save it: model_file.compile_as_trained),
# by model: its _compile_config, which the user's own compile since would replace.
_OWN_COMPILES: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
# The accuracies "accuracy" picks among: compile's sparse_categorical_accuracy and the Trainer's
# "accuracy" of a multiclass task are one metric (the Trainer refuses a variant that does not fit
# the labels, so two that both fit are the same).
_ACCURACY_VARIANTS = frozenset({"binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy"})


def _loss_text(spec: Any) -> Any:
    """A loss (or a list or dict of them, one per output) as comparable text: ``"mse"`` and
    ``MeanSquaredError()`` both read ``MeanSquaredError()``."""
    if spec is None:
        return None
    if isinstance(spec, list | tuple):
        return [_loss_text(one) for one in spec]
    if isinstance(spec, Mapping) and "name" not in spec:
        return {str(key): _loss_text(one) for key, one in spec.items()}
    text = describe_loss(spec).describe()
    settings = ", ".join(f"{key}={value!r}" for key, value in _loss_settings(spec).items())
    if not settings:
        return text
    # CategoricalCrossentropy(from_logits=False, label_smoothing=0.1): a compile's smoothing (or a
    # Huber's delta) that the Trainer's plain "categorical_crossentropy" dropped was not told.
    return f"{text[:-1]}{', ' if not text.endswith('()') else ''}{settings})" if text.endswith(")") else f"{text}({settings})"


def _loss_settings(spec: Any) -> dict[str, Any]:
    """The settings of a Keras loss that differ from its class's defaults (``label_smoothing=0.1``,
    ``delta=2.0``); ``from_logits``, which :func:`describe_loss` names, and its name left out."""
    if not isinstance(spec, keras.losses.Loss):
        try:
            spec = get_loss(spec)
        except (UnknownNameError, TypeError, ValueError, AttributeError):
            return {}
    try:
        # Keras's wrapper keeps the function's arguments in _fn_kwargs: Huber's get_config leaves its
        # delta out.
        fn_kwargs = getattr(spec, "_fn_kwargs", None)
        config = {**(fn_kwargs if isinstance(fn_kwargs, Mapping) else {}), **(spec.get_config() or {})}
        defaults = inspect.signature(type(spec)).parameters
    except (NotImplementedError, TypeError, ValueError, AttributeError):
        return {}
    return {key: value for key, value in config.items()
            if key not in ("name", "dtype", "from_logits") and key in defaults and defaults[key].default is not inspect.Parameter.empty
            and not _same_setting(value, defaults[key].default)}


def _same_setting(value: Any, default: Any) -> bool:
    """Whether a config value is its default (a float read back from float32 counts as equal)."""
    try:
        if value is default or bool(value == default):
            return True
    except (ValueError, TypeError):
        # An array setting (a custom loss's class weights) compares element by element: its ==
        # has no truth value, and Trainer(model, loss=loss) raised that ValueError at once.
        return bool(np.array_equal(value, default)) if isinstance(value, np.ndarray) else False
    return isinstance(value, float) and isinstance(default, float) and math.isclose(value, default, rel_tol=1e-6)


def _per_output(spec: Any) -> bool:
    """Whether a loss spec is one per output (a list, or a dict that is no loss's config)."""
    return isinstance(spec, list | tuple) or (isinstance(spec, Mapping) and "name" not in spec)


def _by_position(spec: Any, other: Any, model: Any) -> Any:
    """A per-output dict ``spec`` as a list in the model's output order when ``other`` is a list:
    compile's ``loss={"a": "mse", "b": ...}`` and the Trainer's ``loss=["mse", ...]`` are the same
    losses (they were told as another setup). One loss ``spec`` beside a per-output ``other``, as
    one for every output of the model (compile and the Trainer both read it so): compile's
    ``loss="mse"`` and the Trainer's ``loss={"a": "mse", "b": "mse"}`` were told apart too."""
    if spec is not None and not _per_output(spec) and _per_output(other):
        outputs = getattr(model, "outputs", None)
        count = len(outputs) if isinstance(outputs, list | tuple) and outputs else len(other)
        if isinstance(other, Mapping):
            return {name: spec for name in multioutput.output_names(model, count, other)}
        return [spec] * count
    if not (isinstance(spec, Mapping) and "name" not in spec and isinstance(other, list | tuple)):
        return spec
    names = multioutput.output_names(model, len(other))
    if {str(key) for key in spec} - set(names):
        return spec  # a key that names no output: compared as they are, and told
    return [spec.get(name) for name in names]


def _optimizer_name(optimizer: Any) -> str | None:
    """The optimizer's class name, a ``LossScaleOptimizer``'s inner one's (both Keras's compile and
    the Trainer wrap a mixed_float16 model's optimizer)."""
    if optimizer is None:
        return None
    if isinstance(optimizer, str):
        try:
            return type(keras.optimizers.get(optimizer)).__name__
        except ValueError:
            return optimizer
    inner = getattr(optimizer, "inner_optimizer", None)
    return type(inner if inner is not None else optimizer).__name__


class _UnreadRate:
    """A callable learning rate whose config cannot be read (a ``functools.partial``, an object
    with ``__call__``, a schedule of the user's without ``get_config``): only the object itself."""

    def __init__(self, rate: Any) -> None:
        self.rate = rate


def _learning_rate(optimizer: Any) -> Any:
    """An optimizer's learning rate as its config has it (a float, or a schedule's serialized
    class and config), a ``LossScaleOptimizer``'s inner one's; a :class:`_UnreadRate` for a
    callable one whose config cannot be read; ``None`` when it cannot be read at all."""
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        return None
    inner = getattr(optimizer, "inner_optimizer", None)
    optimizer = inner if inner is not None else optimizer
    try:
        rate = optimizer.get_config().get("learning_rate")
    except (NotImplementedError, TypeError, ValueError, AttributeError):
        # Keras cannot serialize a partial, a callable object or a schedule without get_config:
        # compile(optimizer=Adam(partial(f, ...))) beside the Trainer's "adam" was not compared.
        raw = getattr(optimizer, "_learning_rate", None)
        return _UnreadRate(raw) if callable(raw) else None
    return rate if isinstance(rate, float | int | Mapping) and not isinstance(rate, bool) else None


def _known_to_differ(one: Any, other: Any) -> bool:
    """Whether two learning rates (see :func:`_learning_rate`) are known to differ: an unread
    callable differs from a number (a constant rate), is the same as the very same object, and is
    not told from another callable (which may compute the same rates)."""
    if isinstance(one, _UnreadRate) or isinstance(other, _UnreadRate):
        if isinstance(one, _UnreadRate) and isinstance(other, _UnreadRate):
            return False  # the same object, or two callables whose rates cannot be compared
        return isinstance(one, float | int) or isinstance(other, float | int)
    return not _same_rate(one, other)


def _same_rate(one: Any, other: Any) -> bool:
    """Whether two learning rates (see :func:`_learning_rate`) are the same: floats read back from
    float32 within 1e-6, schedules by class and config."""
    if isinstance(one, Mapping) or isinstance(other, Mapping):
        return isinstance(one, Mapping) and isinstance(other, Mapping) and one.get("class_name") == other.get("class_name") and _same_config(one.get("config"), other.get("config"))
    return math.isclose(float(one), float(other), rel_tol=1e-6)


def _same_config(one: Any, other: Any) -> bool:
    if isinstance(one, Mapping) and isinstance(other, Mapping):
        return one.keys() == other.keys() and all(_same_config(one[key], other[key]) for key in one)
    return _same_setting(one, other)


def _rate_text(rate: Any) -> str:
    """``1e-05``, a schedule's ``ExponentialDecay(initial_learning_rate=0.1, ...)``, ``the function
    f``, ``the method rate`` (a bound method's), or an unread rate's ``a partial of f``."""
    if isinstance(rate, _UnreadRate):
        if isinstance(rate.rate, functools.partial):
            return f"a partial of {getattr(rate.rate.func, '__name__', type(rate.rate.func).__name__)}"
        return f"a {type(rate.rate).__name__} object"
    if isinstance(rate, Mapping) and rate.get("class_name") in ("__lambda__", "function"):
        # A callable's config is its name, or a lambda's bytecode in base64: unreadable in a message.
        config = rate.get("config")
        return f"the function {config}" if isinstance(config, str) else "a lambda"
    if isinstance(rate, Mapping) and rate.get("class_name") in ("method", "method-wrapper"):
        # A bound method's config is its name alone: read as a class without a config, Adam(s.rate)
        # beside Adam(s.warmup) was told "Adam(learning_rate=method()) (trainkit uses
        # Adam(learning_rate=method()))", the difference unsaid.
        return f"the method {rate.get('config')}"
    if isinstance(rate, Mapping):
        config = rate.get("config") if isinstance(rate.get("config"), Mapping) else {}
        return f"{rate.get('class_name')}({', '.join(f'{key}={_value_text(value)}' for key, value in config.items() if key != 'name')})"
    return f"{float(rate):.6g}"


def _value_text(value: Any) -> str:
    """A setting as text, a float read back from float32 to 6 digits (0.7, not 0.699999988)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value_text(one) for one in value) + "]"
    return repr(value)


def _keras_default_optimizer(optimizer: Any) -> bool:
    """Whether ``optimizer`` is the ``RMSprop()`` that ``model.compile`` puts in when given none
    (its default ``optimizer="rmsprop"``), with RMSprop's default settings."""
    if isinstance(optimizer, str):
        return optimizer.lower() == "rmsprop"
    if type(optimizer) is not keras.optimizers.RMSprop:
        return False
    # The signature's defaults, not a fresh RMSprop's config: one made here (inside a strategy's
    # scope, maybe) would make variables.
    config = optimizer.get_config()
    # (The learning rate comes back from its float32 variable: 0.0010000000474974513.)
    return all(_same_setting(config[key], parameter.default) for key, parameter in inspect.signature(keras.optimizers.RMSprop).parameters.items()
               if key in config and key != "name")


def _metric_name(spec: Any) -> str:
    """A metric's name as compile and the Trainer read it: ``"mae"`` and ``MeanAbsoluteError()``
    are both ``mean_absolute_error``, ``"sparse_categorical_accuracy"`` and ``"accuracy"`` both
    ``accuracy``; with the settings that differ from its class's defaults, ``auc(curve='PR')``
    (``AUC(curve="PR")`` and ``"auc"`` were both ``auc``)."""
    name = _named_metric(spec.get("name") if isinstance(spec, Mapping) else spec)
    settings = _metric_settings(spec)
    name = "accuracy" if name in _ACCURACY_VARIANTS else name
    return f"{name}({', '.join(f'{key}={_value_text(value)}' for key, value in sorted(settings.items()))})" if settings else name


def _metric_settings(spec: Any) -> dict[str, Any]:
    """The settings of a metric (a Keras metric, or a ``{"name": ..., **settings}`` mapping) that
    differ from its class's defaults, its name and dtype left out; none for a name alone, or a
    class whose defaults cannot be read."""
    if isinstance(spec, Mapping):
        spec = _metric_of(spec)
        if spec is None:
            return {}
    if isinstance(spec, keras.metrics.Metric):
        cls = type(spec)
        try:
            config = spec.get_config() or {}
        except (NotImplementedError, TypeError, ValueError, AttributeError):
            return {}
    else:
        return {}
    if not issubclass(cls, keras.metrics.Metric) or cls is keras.metrics.MeanMetricWrapper:
        return {}  # a function's wrapper: its config is the function
    try:
        defaults = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
    return {key: value for key, value in config.items()
            if key not in ("name", "dtype") and key in defaults and defaults[key].default is not inspect.Parameter.empty
            and not _same_setting(value, defaults[key].default)}


def _metric_of(spec: Mapping[str, Any]) -> keras.metrics.Metric | None:
    """The metric a ``{"name": ..., **settings}`` mapping makes, as the Trainer makes it, whose
    config holds its settings as a compiled one's does: ``{curve: pr}`` is ``AUC(curve="PR")``,
    and ``{name: accuracy, threshold: 0.7}`` a ``BinaryAccuracy(threshold=0.7)`` (read from the
    mapping as it was, they were told apart from the same metric compiled); ``None`` where none is."""
    name, params = spec.get("name"), {key: value for key, value in spec.items() if key != "name"}
    if not isinstance(name, str):
        return None
    name = _METRIC_ALIASES.get(name, name)
    if name == "accuracy":  # the variant that takes these settings (the task picks among them)
        classes = [keras.metrics.BinaryAccuracy, keras.metrics.CategoricalAccuracy, keras.metrics.SparseCategoricalAccuracy]
    else:
        cls = _keras_metric_class(name)
        classes = [cls] if cls is not None else []
    for cls in classes:
        try:
            return cls(**params)
        except (TypeError, ValueError):
            continue
    return None


def _named_metric(spec: Any) -> str:
    """A metric's name, a variant of accuracy by its own (see :func:`_metric_name`)."""
    if isinstance(spec, str):
        spec = _METRIC_ALIASES.get(spec, spec)
        if spec == "accuracy":
            return spec  # compile picks its variant from the loss; so does the Trainer
        try:
            spec = keras.metrics.get(spec)
        except (ValueError, TypeError):
            return spec
    if isinstance(spec, type) and issubclass(spec, keras.metrics.Metric):
        return _default_name(spec) or spec.__name__  # "AUC" names the class, whose metrics are "auc"
    if isinstance(spec, keras.metrics.Metric):
        # Keras numbers a default name taken before (auc_1): the same metric all the same.
        default = _default_name(type(spec))
        return default if default and re.fullmatch(rf"{re.escape(default)}(_\d+)?", spec.name) else spec.name
    name = getattr(spec, "__name__", type(spec).__name__)
    if hasattr(spec, "__name__") and not any(getattr(module, name, None) is spec for module in (keras.metrics, keras.losses)):
        # A function of the user's under a Keras name (its own "accuracy", rounding or thresholding
        # otherwise) is not Keras's: compile(metrics=[accuracy]) beside the Trainer's "accuracy" was
        # read as the same metric, and the Trainer's Keras accuracy replaced it in silence.
        return f"{name} (a function of your own)"
    return name


def _default_name(cls: type) -> str | None:
    """The ``name`` a metric class gives its instances by default (``AUC``: ``"auc"``, as Keras
    names one created with ``name=None``: its class's name in snake case)."""
    try:
        default = inspect.signature(cls).parameters["name"].default
    except (KeyError, TypeError, ValueError):
        return None
    return default if isinstance(default, str) else snake_case(cls.__name__) if default is None else None


def _metric_names(*specs: Any) -> list[str]:
    """The names of every metric in ``specs`` (lists, per-output dicts or lists, or ``None``), sorted."""
    names: list[str] = []
    for spec in specs:
        if spec is None:
            continue
        if _per_output(spec):  # a dict by output; {"name": "auc", "curve": "PR"} is one metric
            names.extend(_metric_names(*spec.values()) if isinstance(spec, Mapping) else
                         _metric_names(*spec) if any(_per_output(s) for s in spec) else [_metric_name(s) for s in spec])
        else:
            names.append(_metric_name(spec))
    return sorted(names)


def _listed(names: list[str]) -> str:
    return "[" + ", ".join(names) + "]" if names else "none"


def _execution_differences(config: Mapping[str, Any], jit_compile: Any, compiled_jit: Any = True) -> list[tuple[str, str, str]]:
    """How the compile's ``run_eagerly`` and ``jit_compile`` differ from how trainkit runs the steps.

    trainkit always compiles its steps (``tf.function``), so ``compile(run_eagerly=True)``, asked
    for to debug a model (a ``print`` or a breakpoint in its ``call``), trained compiled in silence;
    ``compile(jit_compile=True)`` beside the Trainer's ``"auto"`` on a CPU trained without XLA in
    silence (another speed, and other dropout masks). A compiled ``jit_compile=True`` is Keras's
    own ``"auto"`` on a machine with a GPU (or TPU), no choice: compared only on a CPU-only machine,
    where Keras's ``"auto"`` is ``False``; and only where Keras kept it (``compiled_jit``, the
    model's ``jit_compile``): a model Keras cannot compile with XLA (a ``RandomZoom``, a
    ``StringLookup``: "Model doesn't support jit_compile=True. Proceeding with jit_compile=False")
    trains without it in ``model.fit`` too. ``jit_compile=None`` compares none.
    """
    found = []
    if config.get("run_eagerly") is True:
        found.append(("run_eagerly", "True", "tf.function-compiled steps; tf.config.run_functions_eagerly(True) runs them eagerly"))
    if (jit_compile is not None and jit_compile is not True and config.get("jit_compile") is True and compiled_jit is True
            and all(device.device_type == "CPU" for device in tf.config.list_physical_devices())):
        used = "False" if jit_compile is False else "'auto', which takes XLA on a CPU only for dense-only models in long runs"
        found.append(("jit_compile", "True", used))
    return found


def note_own_compile(model: Any) -> None:
    """Records that ``model``'s compile is trainkit's own (the settings it trained with, for its
    saved file), not the user's: :func:`check_compiled` says nothing of it to a later Trainer."""
    _OWN_COMPILES[model] = getattr(model, "_compile_config", None)


def _own_compile(model: Any) -> bool:
    try:
        config = _OWN_COMPILES.get(model)
    except TypeError:  # not weakly referenceable: never recorded
        return False
    return config is not None and config is getattr(model, "_compile_config", None)


def check_compiled(model: Any, *, loss: Any, optimizer: Any, metrics: Any, compare_loss: bool = True,
                   metrics_made: Sequence[Any] | None = None, jit_compile: Any = None) -> list[Finding]:
    """Compares a compiled model's ``model.compile`` settings with those the Trainer trains with.

    Args:
        model: The Trainer's model; one never compiled gives no finding.
        loss: The Trainer's loss (resolved, or a list or dict of losses).
        optimizer: The Trainer's optimizer.
        metrics: The Trainer's metric specs (a list, or a dict by output).
        compare_loss: ``False`` for a trainer whose own ``train_step`` or ``compute_loss`` makes
            the loss, for which its ``loss`` argument is nominal.
        metrics_made: The metrics the Trainer made of ``metrics`` (one output's), or ``None``:
            compiled metrics that are these are no difference, though named otherwise.
        jit_compile: The Trainer's ``jit_compile`` (``True``, ``False``, ``"auto"``), compared with
            the compile's (see :func:`_execution_differences`); ``None`` compares none.

    Returns:
        One ``compile-ignored`` warning naming each setting that differs (the loss, the
        optimizer's class or learning rate, the metrics and their settings, ``run_eagerly=True`` and
        ``jit_compile=True``), with the compiled and the Trainer's value; none when they agree.
    """
    if not getattr(model, "compiled", False) or _own_compile(model):
        # trainkit's own compile (a recipe run's model, compiled as trained to be saved): there is
        # no model.compile call of the user's to drop.
        return []
    config = getattr(getattr(model, "_compile_config", None), "config", None)
    config = config if isinstance(config, Mapping) else {}
    differences: list[tuple[str, str, str]] = []  # (what, compiled, trainkit's)
    compiled_loss = config.get("loss", getattr(model, "loss", None))
    # compile() without a loss set none: nothing of the loss was dropped.
    if compare_loss and compiled_loss is not None and _loss_text(_by_position(compiled_loss, loss, model)) != _loss_text(_by_position(loss, compiled_loss, model)):
        differences.append(("loss", str(_loss_text(compiled_loss)), str(_loss_text(loss))))
    compiled_optimizer = _optimizer_name(getattr(model, "optimizer", None) or config.get("optimizer"))
    if compiled_loss is None and _keras_default_optimizer(getattr(model, "optimizer", None) or config.get("optimizer")):
        # A bare model.compile() (or one for jit_compile or steps_per_execution alone) chose no
        # optimizer: Keras put in its default RMSprop(), which was said "compiled with RMSprop".
        compiled_optimizer = None
    used_optimizer = _optimizer_name(optimizer)
    if compiled_optimizer is not None and compiled_optimizer != used_optimizer:
        differences.append(("optimizer", compiled_optimizer, str(used_optimizer)))
    elif compiled_optimizer is not None:
        # The same class at another learning rate: compile(optimizer=Adam(1e-5)) then
        # Trainer(optimizer="adam") trained at 1e-3 in silence. (compile keeps the optimizer it
        # made of a name, not the name: compile(optimizer="adam") compares as Adam(0.001).)
        compiled_rate, used_rate = _learning_rate(getattr(model, "optimizer", None)), _learning_rate(optimizer)
        if compiled_rate is not None and used_rate is not None and _known_to_differ(compiled_rate, used_rate):
            differences.append(("optimizer", f"{compiled_optimizer}(learning_rate={_rate_text(compiled_rate)})",
                                f"{used_optimizer}(learning_rate={_rate_text(used_rate)})"))
    # Every metric the Trainer tracks is weighted by sample_weight, as compile's weighted_metrics.
    compiled_metrics = _metric_names(config.get("metrics"), config.get("weighted_metrics"))
    used_metrics = _metric_names(metrics)
    # The metrics the Trainer made of its names agree with the compiled ones: a logits model
    # compiled with AUC(from_logits=True) (or BinaryAccuracy(threshold=0)) beside metrics=["auc"]
    # ("accuracy"), of which the Trainer makes just that, was told "trainkit uses [auc]".
    if compiled_metrics != used_metrics and (metrics_made is None or compiled_metrics != _metric_names(list(metrics_made))):
        differences.append(("metrics", _listed(compiled_metrics), _listed(used_metrics)))
    differences.extend(_execution_differences(config, jit_compile, getattr(model, "_jit_compile", True)))
    if not differences:
        return []
    said = "; ".join(f"{what} {compiled} (trainkit uses {used})" for what, compiled, used in differences)
    whats = [what for what, _, _ in differences]
    steps = _optimizer_steps(getattr(model, "optimizer", None))
    if steps:
        # A compile that came with the model (keras.models.load_model restores a saved file's, a
        # trainkit run's model.keras included) was told to "drop the model.compile call", a call the
        # user never wrote; its optimizer's steps are what tells it from a fresh compile of theirs.
        settings = ", ".join(f"{what}=..." for what in whats if what not in ("run_eagerly", "jit_compile"))
        return [Finding(
            code=COMPILE_IGNORED, severity="warning",
            message=(f"The model comes compiled, with an optimizer that has taken {steps} step{'s' if steps != 1 else ''} (the compile "
                     "keras.models.load_model restores with a saved model, or one model.fit trained with), and another setup than the "
                     f"Trainer's: {said}. trainkit trains without model.compile: from here on the Trainer's loss, optimizer and "
                     "metrics train and are reported."),
            advice=((f"To go on as the compile trained, pass its settings to the Trainer ({settings}); optimizer=model.optimizer goes "
                     f"on with the compiled optimizer and its state. " if settings else "")
                    + "To train with the Trainer's setup instead, nothing needs changing."
                    + (" To run the steps eagerly (to debug a model's call), call tf.config.run_functions_eagerly(True) before fit."
                       if "run_eagerly" in whats else "")),
            evidence={f"{what}_compiled": compiled for what, compiled, _ in differences} | {f"{what}_used": used for what, _, used in differences}
            | {"optimizer_steps": steps})]
    return [Finding(
        code=COMPILE_IGNORED, severity="warning",
        message=(f"The model was compiled (model.compile) with another setup than the Trainer's: {said}. trainkit trains "
                 "without model.compile and ignores it: the Trainer's loss, optimizer and metrics are the ones that train and are reported."),
        advice=(f"Pass the settings you meant to the Trainer ({', '.join(f'{what}=...' for what in whats if what != 'run_eagerly')}; "
                "optimizer=model.optimizer takes the compiled optimizer itself), and drop the model.compile call."
                if whats != ["run_eagerly"] else "Drop the model.compile call.")
               + (" To run the steps eagerly (to debug a model's call), call tf.config.run_functions_eagerly(True) before fit."
                  if "run_eagerly" in whats else ""),
        evidence={f"{what}_compiled": compiled for what, compiled, _ in differences} | {f"{what}_used": used for what, _, used in differences})]


def _optimizer_steps(optimizer: Any) -> int:
    """How many steps a compiled optimizer has taken (0 for a fresh one, or one not read)."""
    try:
        return int(optimizer.iterations.numpy())
    except Exception:  # no optimizer, no iterations yet, a value not read on the host
        return 0


def _loss_record(loss: Any) -> Any:
    """A resolved loss (or a list or dict of them, one per output) as comparable text for a
    checkpoint's record: Keras's own as :func:`_loss_text` spells it (``"mse"``,
    ``"mean_squared_error"`` and ``MeanSquaredError()`` all read ``MeanSquaredError()``), a
    function of the user's by its module and qualified name (the same function imported again
    reads the same; a lambda with its code, see :func:`_lambda_code`), a Loss class of the user's by its module, name and config (its name left out)."""
    if loss is None:
        return None
    if isinstance(loss, list | tuple):
        return [_loss_record(one) for one in loss]
    if isinstance(loss, Mapping):
        return {str(key): _loss_record(one) for key, one in loss.items()}
    fn = getattr(loss, "fn", None)
    if callable(fn) and not is_keras_loss_function(fn):  # trainkit's (or Keras's) wrapper of a function of the user's
        inner = fn.func if isinstance(fn, functools.partial) else fn
        what = inner if hasattr(inner, "__qualname__") else type(inner)
        text = f"{getattr(what, '__module__', '?')}.{what.__qualname__}{_lambda_code(inner)}"
        return f"partial({text}, {', '.join(f'{k}={v!r}' for k, v in sorted(fn.keywords.items()))})" if isinstance(fn, functools.partial) else text
    cls = type(loss)
    if cls.__module__.startswith("keras."):
        return str(_loss_text(loss))
    try:
        config = loss.get_config() or {}
    except (NotImplementedError, TypeError, ValueError, AttributeError):
        config = {}
    settings = ", ".join(f"{key}={value!r}" for key, value in sorted(config.items()) if key != "name")
    return f"{cls.__module__}.{cls.__qualname__}({settings})"


# How a lambda's record names its code (see _lambda_code): " [code <digest> on Python <major.minor>]".
_CODE_TAG = re.compile(r" \[code [0-9a-f]+ on Python (\d+\.\d+)\]")


def _lambda_code(fn: Any) -> str:
    """A lambda's code, as a tag its record ends with: every lambda is named ``<lambda>``, so two
    different ones (``lambda y, p: (y - p) ** 2`` then ``lambda y, p: abs(y - p)``) were one loss.
    The digest is of its bytecode, constants and the names it reads (not its line, nor its
    arguments' names), which the same source gives again in another process; the Python version
    is named beside it, as another one compiles the same source to other bytecode. Empty for
    anything else: a named function is recorded by its module and name."""
    code = getattr(fn, "__code__", None)
    if getattr(fn, "__name__", None) != "<lambda>" or not isinstance(code, types.CodeType):
        return ""
    return f" [code {_code_digest(code)} on Python {sys.version_info.major}.{sys.version_info.minor}]"


def _code_digest(code: types.CodeType) -> str:
    def const(value: Any) -> str:
        if isinstance(value, types.CodeType):
            return _code_digest(value)  # a lambda or comprehension inside it
        if isinstance(value, frozenset):
            return "frozenset(" + ", ".join(sorted(map(repr, value))) + ")"  # set order varies with the hash seed
        if isinstance(value, tuple):
            return "(" + ", ".join(map(const, value)) + ")"
        return repr(value)

    text = repr((code.co_code, [const(value) for value in code.co_consts], code.co_names))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _untagged(loss: Any) -> Any:
    """A recorded loss with its lambdas' code tags taken out."""
    if isinstance(loss, list):
        return [_untagged(one) for one in loss]
    if isinstance(loss, Mapping):
        return {key: _untagged(one) for key, one in loss.items()}
    return _CODE_TAG.sub("", loss) if isinstance(loss, str) else loss


def _lambda_versions(loss: Any) -> set[str | None]:
    """The Python versions a recorded loss's lambdas were compiled under (``None``: a lambda
    recorded without its code, before trainkit recorded it)."""
    if isinstance(loss, list):
        return set().union(*(_lambda_versions(one) for one in loss)) if loss else set()
    if isinstance(loss, Mapping):
        return set().union(*(_lambda_versions(one) for one in loss.values())) if loss else set()
    if not isinstance(loss, str) or "<lambda>" not in loss:
        return set()
    found = _CODE_TAG.search(loss)
    return {found.group(1) if found else None}


def setup_record(loss: Any, optimizer: Any, metrics: Any, model: Any = None) -> dict[str, Any]:
    """What a checkpoint records of the loss, optimizer and metrics a run trains with, for a resume
    to compare (:func:`setup_difference`): the loss as :func:`_loss_record` spells it, the
    optimizer's class (a ``LossScaleOptimizer``'s inner one's), its learning rate as its config
    has it (a float, a schedule's class and config; ``None`` for a callable whose config cannot be
    read), its other settings (:func:`_optimizer_settings`), the metrics' names as :func:`_metric_names` gives them, and the names of ``model``'s
    outputs where it has several known ones (``None`` otherwise), in which order a per-output
    loss is compared."""
    inner = getattr(optimizer, "inner_optimizer", None) or optimizer
    raw = getattr(inner, "_learning_rate", None)
    # A plain callable's config is its bytecode, which Keras warns of as unsafe (at every Trainer
    # made): not recorded, as a rate that cannot be read is not compared.
    plain_callable = callable(raw) and not isinstance(raw, keras.optimizers.schedules.LearningRateSchedule)
    rate = None if plain_callable else _learning_rate(optimizer)
    if isinstance(rate, _UnreadRate):
        rate = None
    elif isinstance(rate, Mapping):
        try:
            rate = json.loads(json.dumps(rate))  # what the record reads back
        except (TypeError, ValueError):
            rate = None
    outputs = getattr(model, "outputs", None) if model is not None else None
    names = list(multioutput.output_names(model, len(outputs))) if isinstance(outputs, list | tuple) and len(outputs) > 1 else None
    return {"loss": _loss_record(loss), "optimizer": _optimizer_name(optimizer),
            "learning_rate": float(rate) if isinstance(rate, int | float) else rate,
            "optimizer_settings": _optimizer_settings(inner, quiet=plain_callable), "metrics": _metric_names(metrics), "outputs": names}


def _optimizer_settings(optimizer: Any, *, quiet: bool = False) -> dict[str, Any] | None:
    """An optimizer's settings as its ``get_config()`` has them (``beta_1``, ``weight_decay``,
    ``clipnorm``, ...) and a record reads them back, less its ``name`` (``adam``, ``adam_1``: two
    equal optimizers are named apart) and its learning rate (recorded and compared on its own);
    a setting no record can hold (an object of the user's) left out. ``None`` where the config
    cannot be read. ``quiet``: a learning rate that is a plain callable, whose config Keras
    serializes with a warning (its bytecode) that is not the user's business here."""
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        return None
    try:
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore")
            config = optimizer.get_config()
    except (NotImplementedError, TypeError, ValueError, AttributeError):
        return None
    settings = {}
    for key, value in sorted(config.items()):
        if key in ("name", "learning_rate"):
            continue
        try:
            # A numpy value (clipnorm=np.float32(1.0)) as the number it is.
            settings[key] = json.loads(json.dumps(value, default=lambda v: v.item() if isinstance(v, np.generic) else _unrecorded(v)))
        except (TypeError, ValueError):
            continue
    return settings


def _unrecorded(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is no setting a record holds")


def _settings_difference(optimizer: str, then: Mapping[str, Any], now: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first optimizer setting two records hold at other values, as ``Adam(beta_1=0.9)``
    beside ``Adam(beta_1=0.5)``; a setting one of them lacks (another Keras) is not compared."""
    for key in sorted(set(then) & set(now)):
        one, other = then[key], now[key]
        if one == other or (isinstance(one, float) and isinstance(other, float) and math.isclose(one, other, rel_tol=1e-6)):
            continue
        return f"{optimizer}({key}={one!r})", f"{optimizer}({key}={other!r})"
    return None


def _losses_by_output(loss: Any, names: Sequence[str] | None, count: int) -> list[Any] | None:
    """A recorded loss as one per output, in the outputs' order: a list as it is, a dict by the
    output ``names`` (``None`` where they are unknown or it names another output), one loss for
    each of the ``count`` outputs."""
    if isinstance(loss, list):
        return loss
    if isinstance(loss, Mapping):
        return [loss.get(name) for name in names] if names and set(loss) <= set(names) else None
    return [loss] * count


def _same_losses(then: Any, now: Any, names: Sequence[str] | None) -> bool:
    """Whether two recorded losses are the same, per-output ones by output (a dict by name, a list
    in the outputs' order and one loss for every output, as the Trainer reads them, agree); a dict
    beside a list where the outputs' names are unknown is not told apart."""
    if then == now or not (isinstance(then, list | Mapping) or isinstance(now, list | Mapping)):
        return then == now
    count = len(names) if names else max(len(one) for one in (then, now) if isinstance(one, list | Mapping))
    one, other = _losses_by_output(then, names, count), _losses_by_output(now, names, count)
    return one is None or other is None or one == other


def setup_difference(saved: Any, now: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """The first of the loss, optimizer, learning rate, optimizer settings and metrics (see :func:`setup_record`) in
    which a checkpoint's record ``saved`` and this run's ``now`` differ, with both as text;
    ``None`` when they agree, or ``saved`` (a checkpoint written before they were recorded) or
    either value is missing."""
    if not isinstance(saved, Mapping):
        return None
    for key in ("loss", "optimizer", "learning_rate", "optimizer_settings", "metrics"):
        then, here = saved.get(key), now.get(key)
        if then is None or here is None:
            continue
        if key == "optimizer_settings":
            # Adam(beta_1=0.9) then Adam(beta_1=0.5), a weight_decay changed or a clipnorm added
            # resumed in silence: only the class and learning rate were recorded.
            if isinstance(then, Mapping) and isinstance(here, Mapping):
                told = _settings_difference(str(now.get("optimizer") or saved.get("optimizer") or "optimizer"), then, here)
                if told is not None:
                    return "optimizer", *told
            continue
        if key == "learning_rate":
            if (isinstance(then, Mapping | float | int) and isinstance(here, Mapping | float | int) and not isinstance(then, bool)
                    and not _same_rate(then, here)):
                return key, _rate_text(then), _rate_text(here)
        elif key == "metrics":
            if list(then) != list(here):
                return key, _listed(list(then)), _listed(list(here))
        elif key == "loss":
            versions = _lambda_versions(then) | _lambda_versions(here)
            if None in versions or len(versions) > 1:
                # A lambda recorded without its code (an older checkpoint), or compiled by another
                # Python (other bytecode from the same source): compared by name alone, as before.
                then, here = _untagged(then), _untagged(here)
            # A dict by output, a list in the outputs' order and one loss for all were told apart
            # ('loss = {"a": "MeanSquaredError()", ...}, not ["MeanSquaredError()", ...]').
            if not _same_losses(then, here, now.get("outputs") or saved.get("outputs")):
                return key, json.dumps(then) if not isinstance(then, str) else then, json.dumps(here) if not isinstance(here, str) else here
        elif then != here:
            return key, json.dumps(then) if not isinstance(then, str) else then, json.dumps(here) if not isinstance(here, str) else here
    return None
