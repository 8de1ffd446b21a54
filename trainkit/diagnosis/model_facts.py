"""What the diagnosis reads off a model's layers: their names in model order, which layer feeds
which, their initializers, weight penalties and dropout rates, the frozen base, the softmax and
other activations that change what a rule may conclude, and the layers that make the outputs.

Read once when a fit starts, into the :class:`~trainkit.diagnosis.engine.Context` that
:mod:`trainkit.diagnosis.run_context` builds; advice names what a layer has, not a guess.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import numpy as np

from trainkit.checks.model_inspect import inference_mode_ids
from trainkit.probes import ACTIVATION_LAYER_CLASSES, layer_activation, reported_names
from trainkit.trained_models import set_apart_from_initializer


def layer_names(model: Any) -> list[str]:
    """Every layer's name in model order (nested layers flattened, in their own order: by
    ``_flatten_layers`` a nested block's came last to first)."""
    reported = reported_names(model)  # a nested layer whose name another layer has: its path, as its statistics
    return [reported.get(id(layer), layer.name) for layer in _layers_in_order(model)]


def float16_layers(model: Any) -> tuple[str, ...]:
    """The names (as :func:`layer_names` gives them) of the layers that compute in float16
    (``mixed_float16``), whose outputs overflow to inf past 65,504."""
    reported = reported_names(model)
    return tuple(reported.get(id(layer), layer.name) for layer in _layers_in_order(model)
                 if getattr(getattr(layer, "dtype_policy", None), "compute_dtype", None) == "float16")


#: The layer attributes that hold a weight (or output) penalty, as a recipe's layer keys (and
#: Keras's layer arguments) name them: not the kernel's alone, since an Embedding's or an LSTM's
#: recurrent penalty may be the one that dominates (an embeddings_regularizer of 16.7 was left
#: out, and the advice lowered a Dense's penalty of 0.002 instead).
REGULARIZER_ATTRIBUTES = ("kernel_regularizer", "recurrent_regularizer", "embeddings_regularizer", "depthwise_regularizer",
                          "pointwise_regularizer", "gamma_regularizer", "beta_regularizer", "bias_regularizer",
                          "activity_regularizer")


def layer_regularizers(model: Any) -> dict[str, dict[str, dict[str, float]]]:
    """:attr:`Context.regularizers`: each layer's penalties, ``{"dense": {"kernel_regularizer": {"l2": 1.0}}}``.

    The non-zero ``l1`` / ``l2`` factors of Keras's ``L1``, ``L2`` and ``L1L2``; ``{}`` for a
    penalty of another kind (``OrthogonalRegularizer``, a function of the user's), whose strength
    advice cannot name.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    cells: set[int] = set()
    for layer in _layers_in_order(model):
        # A recurrent layer's cell holds the penalties the layer was given: named once, by the layer.
        if id(layer) in cells:
            continue
        if getattr(layer, "cell", None) is not None:
            cells.add(id(layer.cell))
        found = {}
        for attribute in REGULARIZER_ATTRIBUTES:
            penalty = getattr(layer, attribute, None)
            if penalty is None:
                continue
            factors = {key: float(getattr(penalty, key)) for key in ("l1", "l2")
                       if isinstance(getattr(penalty, key, None), (int, float)) and getattr(penalty, key)}
            known = type(penalty).__name__ in ("L1", "L2", "L1L2")
            found[attribute] = factors if known else {}
        if found:
            out[layer.name] = found
    return out


def strongest_dropout(model: Any) -> tuple[float, str | None, bool]:
    """(rate, layer name, whether that layer reads a model input) of the model's highest dropout
    rate: ``rate`` of the Dropout family (Dropout, SpatialDropout*, GaussianDropout, AlphaDropout)
    and an RNN layer's ``dropout`` / ``recurrent_dropout``; ``(0.0, None, False)`` without dropout.

    ``dropout-too-high`` told a hidden ``Dropout(0.9)`` "on the inputs, 0.2 at most": it knew the
    rate only, not where it sat.
    """
    flatten = getattr(model, "_flatten_layers", None)
    layers = list(flatten(include_self=False)) if flatten is not None else list(getattr(model, "layers", []))
    best: tuple[float, Any] = (0.0, None)
    for layer in layers:
        names = ("rate",) if "Dropout" in type(layer).__name__ else ("dropout", "recurrent_dropout")
        for name in names:
            value = getattr(layer, name, None)
            if real_number(value) and 0 <= value < 1 and float(value) > best[0]:
                best = (float(value), layer)
    rate, layer = best
    return (rate, layer.name, _reads_model_inputs(model, layer)) if layer is not None else (0.0, None, False)


#: Keras's augmentation layers whose names do not start with "Random".
_AUGMENTATIONS = ("RandAugment", "AugMix", "MixUp", "CutMix")


def training_only_layers(model: Any) -> tuple[str, ...]:
    """The layers that change their output in training only, in model order: the Dropout family,
    the noise layers (``GaussianNoise``), the augmentation layers (``RandomFlip``, ``RandomZoom``...)
    and recurrent layers with ``dropout`` or ``recurrent_dropout``.

    The training loss is measured with them on and the validation loss with them off, which is
    why the one may sit below the other in a healthy run (``validation-below-training``).
    """
    flatten = getattr(model, "_flatten_layers", None)
    layers = list(flatten(include_self=False)) if flatten is not None else list(getattr(model, "layers", []))
    names = []
    # Named by the layer that holds them: an RNN's cell, an attention layer's own dropout.
    held = {id(layer.cell) for layer in layers if getattr(layer, "cell", None) is not None}
    off = inference_mode_ids(model)  # a frozen base's dropout, base(x, training=False), stays off
    for layer in layers:
        if id(layer) in held or id(layer) in off:
            continue
        kind = type(layer).__name__
        recurrent = any(real_number(getattr(layer, key, None)) and getattr(layer, key) > 0 for key in ("dropout", "recurrent_dropout"))
        # A rate or stddev of 0 changes nothing: MultiHeadAttention's own Dropout (rate 0 by
        # default) was named in every attention model as why its validation loss was lower.
        strength = getattr(layer, "rate", getattr(layer, "stddev", None))
        acting = not real_number(strength) or strength > 0
        if (("Dropout" in kind or "Noise" in kind) and acting) or kind.startswith("Random") or kind in _AUGMENTATIONS or recurrent:
            names.append(layer.name)
            # Named once: MultiHeadAttention(dropout=0.1) and its own inner Dropout were both listed.
            inner = getattr(layer, "_flatten_layers", None)
            held.update(id(sub) for sub in (inner(include_self=False) if inner is not None else ()))
    return tuple(names)


def batch_norm_momenta(model: Any) -> dict[str, float]:
    """:attr:`Context.batch_norms`: the ``momentum`` of each ``BatchNormalization`` layer that
    normalises by the batch's own statistics in training, by name in model order.

    Such a layer normalises a training batch by that batch's mean and variance, and every other
    batch (validation, ``evaluate``, ``predict``) by its moving averages of them, which take
    ``1 / (1 - momentum)`` steps to follow the weights: the training and validation losses are
    measured through two different layers. A frozen one (``trainable=False``) and one in a base
    called with ``training=False`` where Keras honours that flag use the moving averages in
    training too, and are left out.
    """
    import keras

    reported = reported_names(model)
    off = inference_mode_ids(model)
    return {reported.get(id(layer), layer.name): float(layer.momentum) for layer in _layers_in_order(model)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable and id(layer) not in off
            and real_number(getattr(layer, "momentum", None))}


def batch_norm_errors(model: Any, steps: int) -> dict[str, float]:
    """How far each layer of :func:`batch_norm_momenta` normalises by its moving averages, after
    ``steps`` training steps, from how it normalises by the batches' statistics those averages
    imply: the root mean square over its units of the error in a normalised value, in units of
    its spread (0: the same layer at inference as in training).

    The averages hold a share ``s = momentum ** steps`` of their start (mean 0, variance 1), so
    the batches' mean and variance were about ``mean / (1 - s)`` and ``(variance - s) / (1 - s)``.
    A lag only matters where those are far from 0 and 1: on standardised inputs, an MLP's
    averages after 240 steps at momentum 0.99 (8% of their start) erred by 0.05-0.1 and
    ``evaluate`` scored its training rows at 0.04, the training loss; on inputs centred at 20 by
    far more than 1. Read once at the end of a run, from the layers' variables.
    """
    import keras

    reported = reported_names(model)
    off = inference_mode_ids(model)
    out: dict[str, float] = {}
    for layer in _layers_in_order(model):
        if not (isinstance(layer, keras.layers.BatchNormalization) and layer.trainable and id(layer) not in off
                and real_number(getattr(layer, "momentum", None)) and 0 <= layer.momentum < 1 and layer.built):
            continue
        share = float(layer.momentum) ** steps
        if share >= 1.0:
            continue
        mean = np.asarray(keras.ops.convert_to_numpy(layer.moving_mean), dtype=np.float64)
        variance = np.asarray(keras.ops.convert_to_numpy(layer.moving_variance), dtype=np.float64)
        batch_mean = mean / (1 - share)
        batch_std = np.sqrt(np.maximum((variance - share) / (1 - share), 0.0) + float(layer.epsilon))
        std = np.sqrt(np.maximum(variance, 0.0) + float(layer.epsilon))
        error = np.sqrt(((mean - batch_mean) / std) ** 2 + (batch_std / std - 1) ** 2)
        if error.size and np.isfinite(error).all():
            out[reported.get(id(layer), layer.name)] = float(np.sqrt(np.mean(error ** 2)))
    return out


#: Dropout layers that set the values they drop to 0 (GaussianDropout multiplies them by noise
#: about 1, AlphaDropout sets them to its own negative value).
_ZEROING_DROPOUTS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D")


def dropped_activations(model: Any, inputs: Mapping[str, list[str]] | None) -> dict[str, float]:
    """:attr:`Context.dropped_activations`: each layer without weights (an ``Activation("relu")``,
    a ``ReLU()``) that takes its input straight from a ``Dropout`` layer, with that layer's rate.

    Such a layer outputs 0 for every value the dropout zeroed, so in training a live unit reads
    inactive for a share ``rate`` of the rows: ``Dense(32)``, ``Dropout(0.9)``, ``Activation("relu")``
    at batch_size 8 read 66% of its units "dead" at the first step, told to fix the initialisation.
    ``inputs`` is :func:`layer_inputs`'s map.
    """
    if not inputs:
        return {}
    reported = reported_names(model)
    layers = list(_layers_in_order(model))
    rates = {reported.get(id(layer), layer.name): float(layer.rate) for layer in layers
             if type(layer).__name__ in _ZEROING_DROPOUTS and real_number(getattr(layer, "rate", None)) and 0 < layer.rate < 1}
    out = {}
    for layer in layers:
        name = reported.get(id(layer), layer.name)
        fed = [rates[parent] for parent in inputs.get(name, ()) if parent in rates]
        if fed and not layer.weights:
            out[name] = max(fed)
    return out


def opaque_layers(model: Any) -> tuple[str, ...]:
    """The layers without weights whose computation the diagnosis cannot read, in model order:
    ``Lambda`` layers and layer classes of the user's own (not Keras's).

    Such a layer may pass no gradient back (``tf.round``, a cast to an integer, ``argmax``,
    ``tf.stop_gradient``, a clip its inputs lie outside of): the layers before it then get a
    gradient of exactly 0, which ``vanishing-gradients`` named as a deep tanh stack's.
    """
    reported = reported_names(model)
    return tuple(reported.get(id(layer), layer.name) for layer in _layers_in_order(model)
                 if not layer.weights and (type(layer).__name__ == "Lambda" or not type(layer).__module__.startswith("keras")))


def attention_score_layers(model: Any) -> tuple[str, ...]:
    """The query and key projections of the model's attention layers (``MultiHeadAttention``,
    ``GroupedQueryAttention``), named as their weights' statistics name them
    (``multi_head_attention/query``), in model order.

    Their gradient reaches them only through the attention scores' softmax, which a fresh
    attention spreads nearly evenly over the keys, and not at all where the task is solved
    through the values: a healthy one-block Transformer whose loss fell 0.50 -> 0.003 got a query
    gradient 3e-4x the output layer's (relative to the weights), "vanishing" on the way back.
    """
    from trainkit.stat_names import variable_name

    found = []
    for layer in _layers_in_order(model):
        for projection in (getattr(layer, "_query_dense", None), getattr(layer, "_key_dense", None)):
            kernel = getattr(projection, "kernel", None) if projection is not None else None
            if kernel is not None:
                found.append(variable_name(kernel, getattr(model, "name", None)).rsplit("/", 1)[0])
    return tuple(found)


def _reads_model_inputs(model: Any, layer: Any) -> bool:
    """Whether ``layer`` reads an input of ``model`` itself: the first layer of a Sequential, or a
    layer called on an ``Input`` of a Functional model."""
    import keras

    if isinstance(model, keras.Sequential):
        return bool(model.layers) and model.layers[0] is layer
    for node in getattr(layer, "_inbound_nodes", []):
        for tensor in keras.tree.flatten(getattr(node, "input_tensors", [])):
            history = getattr(tensor, "_keras_history", None)
            if history is not None and isinstance(getattr(history, "operation", None), keras.layers.InputLayer):
                return True
    return False


def layer_initializers(model: Any, read_bias: bool = False) -> dict[str, dict[str, str]]:
    """:attr:`Context.initializers`: each weight layer's initializers, under its own name and under
    that of an activation layer right after it (``Dense(64)`` then ``ReLU()``).

    A normalisation layer in between breaks the link (the activation's input is rescaled, so the
    weights' start no longer sets it), as does a layer with weights of another kind
    (``DepthwiseConv2D``'s ``depthwise_initializer``, an ``Embedding``'s). A ``TimeDistributed``
    layer's are those of the layer it wraps.

    ``read_bias``: the model is untrained, so a built bias whose initializer is ``zeros`` but
    which holds other values was set after the build (``layer.bias.assign([1.3])``): its start is
    given as those values, ``"assigned 1.3"`` (see :func:`_assigned_bias`).
    """
    out: dict[str, dict[str, str]] = {}
    last: dict[str, str] | None = None
    wrappers: list[Any] = []
    reported = reported_names(model)  # a nested layer whose name another layer has: by its path, as its statistics
    for layer in _layers_in_order(model):
        name = reported.get(id(layer), layer.name)
        if type(layer).__name__ == "TimeDistributed":
            wrappers.append(layer)
        kernel = getattr(layer, "kernel_initializer", None)
        if kernel is not None:
            bias = getattr(layer, "bias_initializer", None) if getattr(layer, "use_bias", True) else None
            bias_text = initializer_text(bias) if bias is not None else "none"
            if read_bias and bias_text == "zeros":
                bias_text = _assigned_bias(layer) or bias_text
            last = out[name] = {"layer": name, "kernel": initializer_text(kernel), "bias": bias_text}
        elif type(layer).__name__ in ACTIVATION_LAYER_CLASSES and last is not None:
            out[name] = last
        elif "Normalization" in type(layer).__name__ or layer.weights:
            # Weights without a kernel_initializer: their start, not the layer's before, sets the
            # activation's input (a ReLU after a DepthwiseConv2D took the Conv2D's before it).
            last = None
    for wrapper in wrappers:  # its statistics are its wrapped layer's, under its own name
        if wrapper.layer.name in out:
            out[wrapper.name] = out[wrapper.layer.name]
    return out


def _assigned_bias(layer: Any) -> str | None:
    """``"assigned 1.3"`` (or ``"assigned, mean 1.3"`` for values that differ) for a built bias
    holding other values than its initializer's; ``None`` for those, or none built. An output bias set at the
    targets' mean with ``bias.assign`` read as its initializer's zeros, and the run was told to
    initialise it at the mean."""
    if not getattr(layer, "built", False) or not set_apart_from_initializer(layer, "bias"):
        return None
    values = np.asarray(layer.bias, dtype=np.float64).ravel()
    if not values.size or not np.isfinite(values).all():
        return None
    if np.all(values == values[0]):
        return f"assigned {values[0]:.4g}"
    return f"assigned, mean {float(values.mean()):.4g}"


def layer_inputs(model: Any) -> dict[str, list[str]] | None:
    """:attr:`Context.layer_inputs`: by layer name, the layers whose outputs it takes.

    From the Keras graph's nodes (``_inbound_nodes``), for the model's layers and those of the
    models nested in it. A nested model takes what its callers give it and passes it to each of
    its layers, and everything inside it reaches what takes its output: edges that can only say
    "may feed", never miss a layer that does. ``None`` when no layer has a node (a subclassed
    model, called on tensors only): the layers are then taken as a chain.
    """
    inputs: dict[str, list[str]] = {}
    reported = reported_names(model)  # a nested layer whose name another layer has: its path, as its statistics

    def name(layer: Any) -> str:
        return reported.get(id(layer), layer.name)

    for layer in _layers_in_order(model):
        parents = inputs.setdefault(name(layer), [])
        for node in getattr(layer, "_inbound_nodes", None) or ():
            for parent in getattr(node, "parent_nodes", None) or ():
                operation = getattr(parent, "operation", None)
                if operation is None:
                    continue
                # What a nested model gives out may come from any of its layers.
                for source in (name(operation), *(name(inner) for inner in _layers_in_order(operation))):
                    if source not in parents:
                        parents.append(source)
        for inner in _layers_in_order(layer):
            # A nested model's layers take what the model is given (it stands for its inputs).
            inner_parents = inputs.setdefault(name(inner), [])
            if name(layer) not in inner_parents:
                inner_parents.append(name(layer))
    return inputs if any(inputs.values()) else None


def frozen_layers(model: Any) -> tuple[str, ...]:
    """:attr:`Context.frozen_layers`: the layers before the first one with trainable weights, in
    model order (a frozen base's, nested models' and their layers included).

    Their activations are the same at every step for the same rows: dead or saturated units there
    are the data and the fixed weights' doing, which no learning rate or initialiser of this run
    changes (a pretrained base's dead ReLUs were reported with "fix the initialisation").

    A subclassed model (or custom layer) holds its layers in the order its ``__init__`` assigns
    them, not the order ``call`` runs them: there a layer without weights (a ``ReLU``) may follow
    any of them, and ends the frozen layers; one with frozen weights (a pretrained base) does not.
    """
    names: list[str] = []
    _frozen_prefix(model, names, reported_names(model))
    return tuple(names)


def _frozen_prefix(layer: Any, names: list[str], reported: Mapping[int, str]) -> bool:
    """Adds to ``names`` the frozen layers inside ``layer`` (see :func:`frozen_layers`), depth
    first as :func:`_layers_in_order`; ``False`` once a layer that may be fed by trained ones ends them."""
    import keras

    # Sequential and Functional models hold their layers in the order they run.
    in_call_order = isinstance(layer, keras.Sequential) or hasattr(layer, "_operations")
    for inner in getattr(layer, "_layers", None) or getattr(layer, "layers", None) or []:
        if inner.trainable_weights or not (in_call_order or inner.weights):
            return False
        names.append(reported.get(id(inner), inner.name))  # a nested layer's path where its name repeats
        if not _frozen_prefix(inner, names, reported):
            return False
    return True


def frozen_output_layers(model: Any, outputs: Collection[str], inputs: Mapping[str, list[str]] | None) -> tuple[str, ...]:
    """:attr:`Context.frozen_outputs`: the weight layers that make the outputs, when they have
    weights and none of them is trainable while other layers of the model train.

    An output layer without weights made to train (an ``Activation``, a ``Reshape``, an adapted
    ``Normalization``) stands for the weight layers that feed it, found back through ``inputs``
    (:func:`layer_inputs`; without it, the weight layer before it in model order). ``model.layers[-1].trainable = False`` (meant for the
    layers before it) trains the hidden layers under a fixed random head: the loss falls slowly or
    stalls, and the run was told to train longer with a larger learning rate.
    """
    if not getattr(model, "trainable_weights", None):
        return ()  # nothing trains at all: weights-frozen says so
    reported = reported_names(model)
    ordered = list(_layers_in_order(model))
    by_name = {reported.get(id(layer), layer.name): layer for layer in ordered}
    names = list(by_name)
    found: list[str] = []
    seen: set[str] = set()
    todo = [name for name in outputs if name in by_name]
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        layer = by_name[name]
        if _weight_layer(layer):
            if not layer.trainable_weights and not isinstance(layer, _model_class()):
                found.append(name)
            continue
        parents = (inputs or {}).get(name)
        if parents is None:  # no graph: the weight layer before it in model order
            earlier = [n for n in names[: names.index(name)] if _weight_layer(by_name[n])]
            parents = earlier[-1:]
        todo.extend(parent for parent in parents if parent in by_name)
    return tuple(found)


def _weight_layer(layer: Any) -> bool:
    """Whether ``layer`` has weights made to train (a nested model: any weights), whether or not
    ``layer.trainable = False`` froze them since. A layer whose weights are all state, such as
    ``Normalization(invert=True)`` turning a regression's outputs back into target units, is no
    frozen head: it is passed through like a layer without weights, to the ones that feed it."""
    if not layer.weights:
        return False
    made = getattr(layer, "_trainable_variables", None)  # Keras 3: the variables it made trainable, frozen since or not
    return isinstance(layer, _model_class()) or made is None or bool(made)


def _model_class() -> type:
    import keras

    return keras.Model


def softmax_layers(model: Any, probe: Any) -> tuple[str, ...]:
    """The model's softmax layers, then the other taps the traced step saw go through a softmax
    (a subclassed model's ``record(name, tensor, "softmax")``)."""
    reported = reported_names(model)  # a nested layer whose name another layer has: its path, as its statistics
    layers = [reported.get(id(layer), layer.name) for layer in _layers_in_order(model) if layer_activation(layer) == "softmax"]
    return (*layers, *sorted(set(getattr(probe, "softmax_taps", ())) - set(layers)))


def layers_with(model: Any, probe: Any, activations: Collection[str], taps: str) -> tuple[str, ...]:
    """The model's layers whose activation is one of ``activations`` (:data:`NEGATIVE_SLOPED`:
    not 0 below 0; :data:`SMOOTH_RELU`), then the other taps the traced step saw go through one
    (a ``record(name, tensor, "elu")``), which the probe lists as its attribute ``taps``."""
    layers = [layer.name for layer in _layers_in_order(model) if layer_activation(layer) in activations]
    return (*layers, *sorted(set(getattr(probe, taps, ())) - set(layers)))


def _layers_in_order(layer: Any) -> Iterator[Any]:
    """Every layer inside ``layer`` (nested models' and custom layers' too), depth first, each
    layer's in the order it holds them: ``_flatten_layers`` lists a nested model's layers last to
    first, which linked its ReLU to the Dense after it."""
    for inner in getattr(layer, "_layers", None) or getattr(layer, "layers", None) or []:
        yield inner
        yield from _layers_in_order(inner)


def narrowest_width(model: Any) -> int | None:
    """The fewest values a row any layer of ``model`` outputs (a Dense bottleneck's units), read
    from the shapes of its built layers' outputs; ``None`` where no layer's output shape is known
    (a subclassed model's layers). In a functional model only the layers every path from its inputs
    to its outputs runs through count: a side branch's ``Dense(1)`` gate, or a row's mean
    concatenated to its features, is no bottleneck (they read 1 and took a denoising model's linear fit away)."""
    widths = []
    for layer in _path_layers(model):
        if type(layer).__name__ == "InputLayer":
            continue
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError, RuntimeError):
            continue
        if len(shape) >= 2 and all(isinstance(d, int) for d in shape[1:]):
            widths.append(math.prod(shape[1:]))
    return min(widths) if widths else None


def _path_layers(model: Any) -> Iterator[Any]:
    """:func:`_layers_in_order`, less the layers of a functional graph (a nested one too) that some
    path from its inputs to its outputs goes around."""
    outputs = getattr(model, "outputs", None) if type(model).__name__ != "Sequential" else None
    try:
        cuts = _cut_layers(model, outputs) if outputs else None
    except (AttributeError, IndexError, TypeError, ValueError):
        cuts = None
    for inner in getattr(model, "_layers", None) or getattr(model, "layers", None) or []:
        if cuts is not None and id(inner) not in cuts:
            continue
        yield inner
        yield from _path_layers(inner)


def _cut_layers(model: Any, outputs: Any) -> set[int]:
    """The ids of the operations of ``model``'s graph on every path from its inputs to ``outputs``."""
    def walk(skip: Any) -> tuple[bool, set[int]]:
        # Back from the outputs, not through ``skip``: whether an input is reached, and the operations met.
        stack, seen, met, reached = list(_flat(outputs)), set(), set(), False
        while stack:
            history = getattr(stack.pop(), "_keras_history", None)
            if history is None:
                continue
            op = history.operation
            if op is skip or (id(op), history.node_index) in seen:
                continue
            seen.add((id(op), history.node_index))
            met.add(id(op))
            if type(op).__name__ == "InputLayer":
                reached = True
                continue
            stack.extend(_flat(op._inbound_nodes[history.node_index].input_tensors))
        return reached, met

    _, on_paths = walk(None)
    layers = getattr(model, "_layers", None) or getattr(model, "layers", None) or []
    return {id(layer) for layer in layers if id(layer) in on_paths and not walk(layer)[0]}


def _flat(tensors: Any) -> list[Any]:
    if isinstance(tensors, Mapping):
        tensors = list(tensors.values())
    if isinstance(tensors, list | tuple):
        return [t for item in tensors for t in _flat(item)]
    return [tensors]


def initializer_text(initializer: Any) -> str:
    """An initializer as a recipe writes it: ``he_normal``, ``zeros``, ``constant(-10)``,
    ``random_normal(stddev=0.05)`` (the settings that differ from the class's defaults)."""
    if callable(initializer) and hasattr(initializer, "__name__"):
        # A plain function (Keras takes any callable): its own name, not "function".
        return str(initializer.__name__)
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(initializer).__name__).lower()
    try:
        config = initializer.get_config()
        defaults = type(initializer)().get_config()
    except Exception:  # a custom initializer: its name alone
        return name
    shown = {k: v for k, v in config.items() if k != "seed" and defaults.get(k) != v}
    if not shown:
        return name
    if list(shown) == ["value"]:
        return f"{name}({shown['value']:g})" if isinstance(shown["value"], int | float) else name
    return f"{name}({', '.join(f'{k}={v:g}' if isinstance(v, int | float) else f'{k}={v}' for k, v in shown.items())})"


def output_layer_names(model: Any, traced: Collection[str] = ()) -> list[str]:
    """Names of the layers that produce the model's outputs (the last layer when unknown).

    An output a nested model produces names that model and, inside it, its own output layers:
    their statistics are read too (through hooks), and a confident nested sigmoid output was
    judged by saturated-activations as a hidden layer.

    Args:
        model: The model.
        traced: The layers the traced step saw produce an output (:attr:`Probe.output_layers`):
            a subclassed model's, whose last layer is only a guess (an output layer created
            before its hidden layer was judged as a hidden one, and that hidden layer as the output).
    """
    import keras

    names = []
    try:
        for tensor in model.outputs or []:
            history = getattr(tensor, "_keras_history", None)
            operation = getattr(history, "operation", None) if history is not None else None
            if operation is not None:
                names.append(operation.name)
                if isinstance(operation, keras.Model):
                    names.extend(output_layer_names(operation))
    except (AttributeError, ValueError):
        names = []
    names += [name for name in sorted(traced) if name not in names]
    if not names and getattr(model, "layers", None):
        names = [model.layers[-1].name]
    return names


def weight_penalties(model: Any) -> float:
    """The model's weight penalties now (the part of the loss that is not the data's).

    Penalties that depend on the data (``activity_regularizer``, ``add_loss``) are left out: after
    a step has been traced, ``model.losses`` holds them as tensors of that graph, which have no
    value here (converting one raised and stopped ``fit``). The activity penalties are measured
    on a batch instead (:func:`trainkit.diagnosis.run_context.build_context` adds them).
    """
    try:
        losses = list(model.losses)
    except (TypeError, ValueError, AttributeError):
        return 0.0
    total = 0.0
    for loss in losses:
        try:
            total += float(np.asarray(loss))
        except (TypeError, ValueError, AttributeError, NotImplementedError):
            continue  # a symbolic tensor of a traced step
    return total


def real_number(value: Any) -> bool:
    """A real number but a bool, numpy's included: Keras keeps ``Dropout(np.float32(0.5)).rate`` and
    ``clipnorm=np.float32(1.0)`` as given, and an ``int | float`` test read them as no dropout and
    no clipping (a run clipping at 1.0 was told to add clipnorm: 1.0)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def bounded_output(model: Any) -> dict[str, Any] | None:
    """A one-output model's output activation where it bounds the predictions (sigmoid, tanh,
    relu, softmax...): ``{"layer", "activation", "low", "high"}`` (an unbounded side as ``None``,
    which JSON keeps); ``None`` for a linear or unknown one, several outputs or a model that
    cannot be inspected.

    A regression's predictions squeezed into a range that holds its targets still learn them
    badly near its bounds: the advice of a run that ends far worse than a linear fit names it.
    """
    from trainkit.checks.model_inspect import find_outputs

    try:
        outputs = find_outputs(model)
    except Exception:  # a model the inspection cannot read: nothing known
        return None
    if len(outputs) != 1 or outputs[0].activation in ("linear", "unknown"):
        return None
    low, high = outputs[0].output_range
    if math.isinf(low) and math.isinf(high):
        return None
    return {"layer": outputs[0].activation_layer, "activation": outputs[0].activation,
            "low": None if math.isinf(low) else float(low), "high": None if math.isinf(high) else float(high)}
