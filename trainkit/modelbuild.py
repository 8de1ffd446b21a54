"""Builds the Keras model that a recipe's ``model`` section describes.

Either a ``keras.Sequential`` from the layer list, or whatever a ``"package.module:function"``
builder returns. Names inside layer specs (activations, initializers, regularizers) are resolved by
:mod:`trainkit.resolve`, so a typo fails with an :class:`~trainkit.errors.UnknownNameError` naming
the closest valid name. Builder problems raise :class:`~trainkit.errors.RecipeError` ``bad-builder``;
a layer list Keras cannot assemble (e.g. ``conv2d`` on a feature table) raises ``bad-model``.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from pydantic import ValidationError

from trainkit import resolve
from trainkit.errors import DataError, RecipeError, TrainkitError, closest
from trainkit.recipe import (
    ActivationLayer,
    BatchNormLayer,
    Conv2DLayer,
    DenseLayer,
    DropoutLayer,
    FlattenLayer,
    LayerSpec,
    MaxPool2DLayer,
    ModelSection,
    Recipe,
)
from trainkit.seed_states import seed_states_kept, stateful_recurrent_layers

# The names Keras gives these layers by default: auto-naming per model with the same prefixes
# ("dense", "dense_1", ...) keeps names identical between runs of one process, where Keras' own
# global counter would go on to "dense_7" for the second model built.
_DEFAULT_PREFIX: dict[type, str] = {
    DenseLayer: "dense",
    DropoutLayer: "dropout",
    Conv2DLayer: "conv2d",
    MaxPool2DLayer: "max_pooling2d",
    FlattenLayer: "flatten",
    BatchNormLayer: "batch_normalization",
    ActivationLayer: "activation",
}


def build_model(
    model_cfg: ModelSection | Mapping[str, Any],
    input_shape: Sequence[int],
    *,
    seed: int | None = None,
    base_dir: str | Path | None = None,
) -> keras.Model:
    """Builds the model of a recipe's ``model`` section.

    Args:
        model_cfg: The validated section, or a plain mapping (validated here).
        input_shape: Shape of one example, without the batch dimension, e.g. ``(10,)``.
        seed: Makes the initial weights reproducible (``keras.utils.set_random_seed``).
        base_dir: Directory searched first when importing a ``builder`` module (the recipe's).

    Returns:
        A built ``keras.Model`` (Sequential for a layer list), not compiled.

    Raises:
        UnknownNameError: ``unknown-activation``, ``unknown-initializer`` or ``unknown-regularizer``.
        RecipeError: ``bad-builder``, ``bad-model`` or ``recipe-invalid-value`` for a bad mapping.
    """
    section = _validated(model_cfg)
    shape = tuple(int(d) for d in input_shape)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    if section.builder is not None:
        return _call_builder(section.builder, shape, section.builder_args, base_dir)
    return _sequential(section.layers or [], shape)


def ensure_built(model: keras.Model, input_spec: Any, first_inputs: Callable[[], Any] | None = None) -> None:
    """Creates every variable of ``model`` if it has none yet.

    A Sequential model is built from the spec (unknown sizes, such as a sequence length, stay
    unknown). Any other model is called once, on ``first_inputs()`` (a batch of real inputs) or
    else on one row of zeros: ``model.build()`` alone marks a subclassed model built without
    creating its layers' variables, and an optimizer built then knows none of them.

    Args:
        model: The model.
        input_spec: A ``tf.TensorSpec`` (batch dimension first), a shape tuple without the
            batch dimension, or a structure of specs for several inputs.
        first_inputs: Returns a batch of the real inputs, for models that must be called.

    Raises:
        DataError: ``unbuilt-model``, when the model cannot take those inputs.
    """
    if model.built and model.variables:
        return
    if isinstance(input_spec, tuple) and all(isinstance(d, int | None) for d in input_spec):
        input_spec = tf.TensorSpec((None, *input_spec), tf.float32)
    try:
        # Not with a stateful layer: its states need the batch's rows, which the spec leaves unknown.
        if isinstance(model, keras.Sequential) and isinstance(input_spec, tf.TensorSpec) and not stateful_recurrent_layers(model):
            model.build(input_spec.shape)
            if model.variables:
                return
        if first_inputs is not None:
            inputs = first_inputs()
        else:  # unknown sizes as 1
            inputs = tf.nest.map_structure(lambda s: tf.zeros([1, *(1 if d is None else d for d in s.shape[1:])], s.dtype), input_spec)
        with seed_states_kept(model):  # a call model.fit does not make
            model(inputs, training=False)
    except Exception as err:
        said = first_line(err)
        said += "" if said.endswith(".") else "."
        raise DataError("unbuilt-model", f"The model has no variables yet and could not be built for inputs {input_spec}: {type(err).__name__}: {said} "
                          f"{_channel_axis_hint(model, input_spec)}Give it an input shape (keras.Input(shape=...) first), or call it once on a "
                          "batch before training.") from err


def _channel_axis_hint(model: keras.Model, input_spec: Any) -> str:
    """For grayscale images without a channel axis, ``(n, 28, 28)``, fed to a model whose first layer
    is a 2-D convolution or pooling: the fix (a recipe gets it in :func:`_sequential`; a Python fit
    was told only to give the model an input shape, which ``(28, 28)`` would not make work)."""
    layers = getattr(model, "layers", None) or []
    first = layers[0] if layers else None
    if not isinstance(input_spec, tf.TensorSpec) or input_spec.shape.rank != 3 or first is None or "2D" not in type(first).__name__:
        return ""
    return f"The inputs have no channel axis, which {type(first).__name__} needs: x = x[..., None] for grayscale images (and x_val too). "


def build_from_recipe(recipe: Recipe, input_shape: Sequence[int]) -> keras.Model:
    """Builds the recipe's model, seeded with ``training.seed``, builders imported from its folder."""
    return build_model(recipe.model, input_shape, seed=recipe.training.seed, base_dir=recipe.base_dir)


def _validated(model_cfg: ModelSection | Mapping[str, Any]) -> ModelSection:
    if isinstance(model_cfg, ModelSection):
        return model_cfg
    try:
        return ModelSection.model_validate(dict(model_cfg))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "model"
        raise RecipeError("recipe-invalid-value", f"Invalid model section at {where}: {first['msg']}.") from None


# ---------------------------------------------------------------------------------- sequential


def _sequential(layers: Sequence[LayerSpec], input_shape: tuple[int, ...]) -> keras.Model:
    names = _layer_names(layers)
    model = keras.Sequential()
    model.add(keras.Input(shape=input_shape))
    shape: tuple[int | None, ...] = (None, *input_shape)
    for index, (spec, name) in enumerate(zip(layers, names, strict=True)):
        _check_kernel_fits(spec, name, index, shape)
        layer = _make_layer(spec, name)
        try:
            model.add(layer)
        except (ValueError, TypeError) as err:
            # Keras explains shape problems well but over several lines; keep the first one.
            hint = ""
            if spec.type == "conv2d" and index == 0 and len(shape) == 3:
                # Grayscale images saved as (n, 16, 16): a conv layer wants the channel axis too.
                hint = " The examples have no channel axis: save the images with one (x[..., None] for grayscale)."
            said = first_line(err)
            said += "." if hint and not said.endswith(".") else ""
            raise RecipeError("bad-model", f"Layer {index} ({spec.type} '{name}') cannot take input of shape {shape}: {said}{hint}") from err
        except (tf.errors.ResourceExhaustedError, MemoryError):
            raise RecipeError("bad-model", f"Layer {index} ({spec.type} '{name}') on input of shape {shape} has more weights than this machine's "
                                           "memory holds. Use fewer units, filters or input features.") from None
        shape = tuple(layer.output.shape)
    return model


def _check_kernel_fits(spec: LayerSpec, name: str, index: int, shape: tuple[int | None, ...]) -> None:
    """Refuses a kernel that could not train in this machine's memory (its weights, gradients and
    an optimizer's two moments: four copies) before TensorFlow tries to allocate it: an allocation
    that fails logs a page of C++ warnings first."""
    if isinstance(spec, DenseLayer):
        entries = (shape[-1] or 1) * spec.units
    elif isinstance(spec, Conv2DLayer):
        kernel = spec.kernel_size if isinstance(spec.kernel_size, tuple) else (spec.kernel_size,) * 2
        entries = kernel[0] * kernel[1] * (shape[-1] or 1) * spec.filters
    else:
        return
    needed = 4 * entries * 4  # four float32 copies
    if needed > _memory_bytes():
        raise RecipeError("bad-model", f"Layer {index} ({spec.type} '{name}') on input of shape {shape} would have {entries:,} weights, "
                                       f"{needed / 2**30:,.1f} GiB to train (weights, gradients, the optimizer's two moments): more than this "
                                       f"machine's memory. Use fewer units, filters or input features.")


def _memory_bytes() -> float:
    """Physical memory, or infinity where the OS does not say."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return float("inf")


def _layer_names(layers: Sequence[LayerSpec]) -> list[str]:
    """Given names, else Keras-style ``dense``, ``dense_1`` ... that skip the names already given."""
    taken = {spec.name for spec in layers if spec.name}
    counts: dict[str, int] = {}
    names = []
    for spec in layers:
        if spec.name:
            names.append(spec.name)
            continue
        prefix = _DEFAULT_PREFIX[type(spec)]
        while True:
            n = counts.get(prefix, 0)
            counts[prefix] = n + 1
            candidate = prefix if n == 0 else f"{prefix}_{n}"
            if candidate not in taken:
                break
        taken.add(candidate)
        names.append(candidate)
    return names


def _make_layer(spec: LayerSpec, name: str) -> keras.layers.Layer:
    maker = _MAKERS[type(spec)]
    return maker(spec, name)


def _dense(spec: DenseLayer, name: str) -> keras.layers.Layer:
    return keras.layers.Dense(spec.units, use_bias=spec.use_bias, name=name, **_weights(spec))


def _conv2d(spec: Conv2DLayer, name: str) -> keras.layers.Layer:
    return keras.layers.Conv2D(spec.filters, spec.kernel_size, strides=spec.strides, padding=spec.padding, use_bias=spec.use_bias, name=name, **_weights(spec))


def _weights(spec: DenseLayer | Conv2DLayer) -> dict[str, Any]:
    """Activation, initializers and regularizers of a layer with a kernel, resolved by name."""
    return {
        "activation": resolve.get_activation(spec.activation),
        "kernel_initializer": resolve.get_initializer(spec.kernel_initializer),
        "bias_initializer": resolve.get_initializer(spec.bias_initializer),
        "kernel_regularizer": resolve.get_regularizer(spec.kernel_regularizer),
        "bias_regularizer": resolve.get_regularizer(spec.bias_regularizer),
    }


def _dropout(spec: DropoutLayer, name: str) -> keras.layers.Layer:
    return keras.layers.Dropout(spec.rate, name=name)


def _maxpool2d(spec: MaxPool2DLayer, name: str) -> keras.layers.Layer:
    return keras.layers.MaxPooling2D(spec.pool_size, strides=spec.strides, padding=spec.padding, name=name)


def _flatten(spec: FlattenLayer, name: str) -> keras.layers.Layer:
    return keras.layers.Flatten(name=name)


def _batchnorm(spec: BatchNormLayer, name: str) -> keras.layers.Layer:
    return keras.layers.BatchNormalization(momentum=spec.momentum, epsilon=spec.epsilon, name=name)


def _activation(spec: ActivationLayer, name: str) -> keras.layers.Layer:
    return keras.layers.Activation(resolve.get_activation(spec.activation), name=name)


_MAKERS: dict[type, Callable[[Any, str], keras.layers.Layer]] = {
    DenseLayer: _dense,
    DropoutLayer: _dropout,
    Conv2DLayer: _conv2d,
    MaxPool2DLayer: _maxpool2d,
    FlattenLayer: _flatten,
    BatchNormLayer: _batchnorm,
    ActivationLayer: _activation,
}


# -------------------------------------------------------------------------------------- builder


def _call_builder(target: str, input_shape: tuple[int, ...], args: Mapping[str, Any], base_dir: str | Path | None) -> keras.Model:
    fn = _import_builder(target, base_dir)
    module = target.partition(":")[0]
    try:
        model = fn(input_shape, **dict(args))
    except Exception as err:
        unknown = _unknown_builder_argument(target, fn, args) if isinstance(err, TypeError) else None
        if unknown is not None:
            raise unknown from err
        # Chained (from err) so that `--debug` style tracebacks still reach the user's code.
        raise RecipeError("bad-builder", f'Builder "{target}" failed{_raised_at(err, module)}: {type(err).__name__}: {first_line(err)}') from err
    if not isinstance(model, keras.Model):
        raise RecipeError("bad-builder", f'Builder "{target}" returned {type(model).__name__}, not a keras.Model; it must return the model it builds.')
    try:
        ensure_built(model, input_shape)  # the checks read its layers' shapes
    except DataError as err:
        where = _raised_at(err.__cause__, module) if err.__cause__ is not None else ""  # a call() of its own, say
        raise RecipeError("bad-builder", f'The model builder "{target}" returned does not accept inputs of shape {input_shape}{where}: {err.message}') from err
    return model


def _unknown_builder_argument(target: str, fn: Callable[..., Any], args: Mapping[str, Any]) -> RecipeError | None:
    """The error for a ``builder_args`` key the builder has no parameter for, with the closest
    one; ``None`` when every key is one of its parameters (or its signature cannot be read).

    Python's own "mlp() got an unexpected keyword argument 'widht'" named neither the recipe key
    to change nor the parameter meant.
    """
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    # The first parameter takes the input shape, which trainkit passes itself.
    names = [p.name for p in parameters[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = next((key for key in args if key not in names), None)
    if unknown is None:
        return None
    takes = f"Its arguments: {', '.join(names)}." if names else "It takes no argument besides the input shape."
    return RecipeError("bad-builder", f'Builder "{target}" has no argument "{unknown}" (model.builder_args).{closest(unknown, names)} {takes}')


def _raised_at(err: BaseException, module_name: str) -> str:
    """' at /path/builders.py:12 (in helper)': the innermost line of the builder's module that
    ``err`` went through, or '' when it went through none (wrong builder_args, say).

    The one-line message shows no traceback, and the exception's own text (a Keras error, often)
    does not say which line of the user's code led to it.
    """
    filename = getattr(sys.modules.get(module_name), "__file__", None)
    if not filename:
        return ""
    target = os.path.realpath(filename)
    frames = [(f.filename, f.lineno, f.name) for f in traceback.extract_tb(err.__traceback__) if os.path.realpath(f.filename) == target]
    if not frames:
        # A TensorFlow op that failed when it ran (an assertion, a shape only the last batch has):
        # its Python traceback is trainkit's loop, and its message holds where the op was defined.
        frames = [(m["file"], m["line"], m["name"]) for m in _DEFINED_AT.finditer(str(err)) if os.path.realpath(m["file"]) == target]
    if not frames:
        return ""
    filename, lineno, name = frames[-1]
    return f" at {filename}:{lineno} (in {name})"


def model_code_error(recipe: Recipe, err: BaseException) -> RecipeError | None:
    """``err`` as a one-line ``model-error`` when it was raised in the code of the recipe's builder
    module while the model trained (a layer's ``call`` failing only with ``training=True``, say);
    ``None`` for any other error, which stays as it was.

    Build-time failures were already one ``bad-builder`` line naming the user's file and line; the
    same mistake found by the first training step was a traceback through TensorFlow and trainkit.
    """
    builder = recipe.model.builder
    if builder is None or isinstance(err, TrainkitError):
        return None
    where = _raised_at(err, builder.partition(":")[0])
    if not where:
        return None
    return RecipeError("model-error", f'The model of builder "{builder}" failed while training{where}: {type(err).__name__}: {first_line(err)}')


def _import_builder(target: str, base_dir: str | Path | None) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise RecipeError("bad-builder", f'Builder "{target}" must look like "package.module:function".')
    try:
        with _search_first(base_dir):
            module = importlib.import_module(module_name)
    except ImportError as err:
        missing = getattr(err, "name", None)
        if missing and not f"{module_name}.".startswith(f"{missing}."):
            # The module was found; an import inside it failed.
            raise RecipeError("bad-builder", f'Builder module "{module_name}" was found, but an import inside it failed: {first_line(err)}. '
                                             f'Install "{missing.split(".")[0]}" or fix that import.') from err
        raise RecipeError("bad-builder", f'Builder module "{module_name}" cannot be imported: {first_line(err)}. Is it installed, or next to the recipe?') from err
    except Exception as err:
        raise RecipeError("bad-builder", f'Importing builder module "{module_name}" failed: {type(err).__name__}: {first_line(err)}') from err
    fn = getattr(module, attr, None)
    if fn is None:
        hint = resolve.closest(attr, [n for n in dir(module) if not n.startswith("_")])
        raise RecipeError("bad-builder", f'Module "{module_name}" has no "{attr}".{hint}')
    if not callable(fn):
        raise RecipeError("bad-builder", f'Builder "{target}" is a {type(fn).__name__}, not a function.')
    return fn


@contextlib.contextmanager
def _search_first(directory: str | Path | None) -> Iterator[None]:
    """Temporarily puts ``directory`` first on ``sys.path`` (builders living next to the recipe)."""
    if directory is None:
        yield
        return
    entry = str(Path(directory).resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


# Keras wraps a layer's error as "Exception encountered when calling X.call().", a blank line,
# then the cause in ANSI bold: the cause is the line to show.
_KERAS_WRAPPER = re.compile(r"Exception encountered when calling .*")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A line of the stack a TensorFlow op was defined at, in the message of the error it failed with.
_DEFINED_AT = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<name>\S+)\s*$', re.MULTILINE)


def first_line(err: BaseException) -> str:
    """The first line of an error that says something (past Keras's call wrapper, no ANSI codes)."""
    lines = [line.strip() for line in _ANSI.sub("", str(err)).splitlines() if line.strip()]
    if len(lines) > 1 and _KERAS_WRAPPER.fullmatch(lines[0]):
        lines = lines[1:]
    stack = [i for i, line in enumerate(lines) if _DEFINED_AT.fullmatch(line)]
    if lines and lines[0] == "Graph execution error:" and stack and stack[-1] + 1 < len(lines):
        lines = lines[stack[-1] + 1:]  # past the op's stack: what failed ("assertion failed: ...")
    return lines[0] if lines else type(err).__name__
