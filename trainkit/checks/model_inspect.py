"""Reads what the compatibility and data checks need from a Keras model, without running it.

For every model output this finds the layer that produces the units (a ``Dense``, ``Conv``, ``RNN``
or ``EinsumDense`` layer) and the *effective* output activation: the last non-linearity applied on
the way to the output, whether it is the ``activation=`` of that layer or a separate ``Activation``,
``Softmax``, ``ReLU``, ... layer after it (with ``Dropout``, ``Flatten``, ``Reshape`` and the like in
between). ``Rescaling`` layers after the activation move the output's range and are recorded.

Works for ``Sequential`` models (built or not), functional models with one or several outputs, and
models nested inside them. Subclassed models cannot be inspected without calling them: for those
:func:`find_outputs` returns an empty list and the checks that need the output are skipped.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import inspect
import math
import re
from collections.abc import Iterator
from typing import Any

import keras

from trainkit.stats import relu_layer_activation

INF = math.inf

#: Range of each known activation's outputs (closed or open ends alike).
ACTIVATION_RANGES: dict[str, tuple[float, float]] = {
    "linear": (-INF, INF),
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "sparse_sigmoid": (0.0, 1.0),
    "softmax": (0.0, 1.0),
    "sparsemax": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "hard_tanh": (-1.0, 1.0),
    "softsign": (-1.0, 1.0),
    "relu": (0.0, INF),
    "relu6": (0.0, 6.0),
    "softplus": (0.0, INF),
    "sparse_plus": (0.0, INF),
    "squareplus": (0.0, INF),
    "exponential": (0.0, INF),
    "elu": (-1.0, INF),
    "celu": (-1.0, INF),
    "selu": (-1.7580993408473766, INF),
    "gelu": (-0.17, INF),
    "silu": (-0.2785, INF),
    "swish": (-0.2785, INF),
    "hard_silu": (-0.375, INF),
    "hard_swish": (-0.375, INF),
    "mish": (-0.3089, INF),
    "leaky_relu": (-INF, INF),
    "prelu": (-INF, INF),
    "log_softmax": (-INF, 0.0),
    "log_sigmoid": (-INF, 0.0),
    "tanh_shrink": (-INF, INF),
    "hard_shrink": (-INF, INF),
    "soft_shrink": (-INF, INF),
    "threshold": (-INF, INF),
    "glu": (-INF, INF),
}
#: Activations whose outputs are probabilities in [0, 1].
PROBABILITY_ACTIVATIONS = frozenset({"sigmoid", "hard_sigmoid", "sparse_sigmoid", "softmax", "sparsemax"})
#: Name used for an activation trainkit does not know (a custom function, a Lambda layer, ...).
UNKNOWN = "unknown"

# Layers that only move or drop values (identity at inference): the output chain passes through them.
_PASSTHROUGH = frozenset({
    "Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D", "Flatten", "Reshape", "Identity", "Permute",
    "ActivityRegularization", "InputLayer", "Masking",
})
# Layers whose effect is linear: a model made only of these (and linear Dense/Conv) is linear.
_LINEAR_LAYERS = _PASSTHROUGH | {
    "BatchNormalization", "Rescaling", "Normalization", "Add", "Subtract", "Average",
    "Concatenate", "RepeatVector", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Cropping1D", "Cropping2D", "Cropping3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAveragePooling3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Embedding",
}
#: Layers that, placed first, make the model standardise its own inputs.
INPUT_SCALING_LAYERS = frozenset({
    "Normalization", "Rescaling", "BatchNormalization", "Discretization", "CategoryEncoding",
    "StringLookup", "IntegerLookup", "Hashing", "TextVectorization",
    # Its inputs are indices (token ids), not features to standardise.
    "Embedding",
})
#: Keras's image augmentation layers (``RandomFlip``, ``RandomContrast``, ``RandAugment``...): each
#: keeps the values in the range it was given (``value_range``, 0..255 by default), so it leaves
#: their scale as it found it.
AUGMENTATION_LAYERS = frozenset(
    {name for name in dir(keras.layers) if name.startswith("Random")}
    | {"RandAugment", "AugMix", "AutoContrast", "Equalization", "Solarization", "MixUp", "CutMix"})
#: Layers that move, crop or resample values without changing their scale: the layer after them
#: (``Reshape((28, 28, 1))`` or a ``RandomFlip`` before ``Rescaling(1 / 255)``) decides. So do the
#: augmentation layers: 0..255 images through ``RandomContrast`` then ``Rescaling(1 / 255)`` (the
#: order Keras's examples put them in) were told they were not scaled.
_SCALE_KEEPING_LAYERS = _PASSTHROUGH | AUGMENTATION_LAYERS | {
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "Resizing", "CenterCrop",
}
#: The op a functional graph records for an ``Embedding(mask_zero=True)``'s mask (``ids != 0``),
#: which reads its ids beside the Embedding: no use of their scale. Taken for a reader, it made a
#: text input of a two-input model "not scaled (|mean| 152 / std 101.5), standardise it".
_MASK_OPS = frozenset({"NotEqual"})


@dataclasses.dataclass(frozen=True)
class OutputInfo:
    """One model output as the checks see it.

    Attributes:
        name: The output's name (``model.output_names``), used to match per-output losses.
        key: The key of a dict-structured output, when the model returns a dict.
        layer: Name of the layer that produces the units (``Dense``, ``Conv``, ...), or of the
            last layer when none was found.
        activation_layer: Name of the layer applying the effective activation.
        activation: Canonical activation name (``"linear"``, ``"sigmoid"``, ...) or ``"unknown"``.
        units: Size of the output's last axis (1 for a rank-1 output), when known.
        shape: The output's shape including the batch axis, when known.
        output_range: Range of the output values, after any ``Rescaling`` that follows the
            activation.
        rescaled: Whether a ``Rescaling`` layer follows the activation.
        index: Position among the model's outputs.
        inner_activation: ``(activation, layer name)`` of a non-linear activation applied between
            the unit layer and the effective one (``Dense(1, "sigmoid")`` then
            ``Activation("sigmoid")``): the effective activation then squashes its outputs.
    """

    name: str
    layer: str
    activation_layer: str
    activation: str
    units: int | None
    shape: tuple[int | None, ...] | None
    output_range: tuple[float, float]
    rescaled: bool = False
    key: str | None = None
    index: int = 0
    inner_activation: tuple[str, str] | None = None

    @property
    def is_probability(self) -> bool:
        """Whether the output holds probabilities (sigmoid/softmax and not rescaled)."""
        return self.activation in PROBABILITY_ACTIVATIONS and not self.rescaled

    def describe(self) -> str:
        """``"dense_2" (Dense, 1 unit, sigmoid)``-style description for messages."""
        units = "? units" if self.units is None else f"{self.units} unit{'s' if self.units != 1 else ''}"
        via = "" if self.activation_layer == self.layer else f" from layer '{self.activation_layer}'"
        return f"'{self.layer}' ({units}, {self.activation}{via})"


@dataclasses.dataclass(frozen=True)
class HiddenLayerInfo:
    """A layer that is not part of an output chain.

    Attributes:
        name: Layer name.
        class_name: Layer class name, e.g. ``"Dense"``.
        activation: Canonical activation name when the layer has one, else ``None``.
        has_weights: Whether it is a Dense/Conv/RNN-style layer with a kernel.
        linear: Whether the layer computes a linear function of its input.
    """

    name: str
    class_name: str
    activation: str | None
    has_weights: bool
    linear: bool


def activation_name(fn: Any) -> str:
    """Canonical name of an activation function, string or ``None`` (``None`` is ``"linear"``)."""
    if fn is None:
        return "linear"
    if isinstance(fn, str):
        name = fn.lower()
    else:
        name = getattr(fn, "__name__", None) or type(fn).__name__
        # tf.nn.softmax is named softmax_v2 (tf.nn.log_softmax log_softmax_v2): read as unknown,
        # Dense(4, activation=tf.nn.softmax), TensorFlow's tutorials' output, passed every check.
        name = name.lower().removesuffix("_v2")
    name = {"identity": "linear", "swish": "silu", "hard_swish": "hard_silu", "softsign": "softsign"}.get(name, name)
    return name if name in ACTIVATION_RANGES else UNKNOWN


def _is_unit_layer(layer: Any) -> bool:
    """Dense, EinsumDense, Conv*, RNN-style layers: they hold a kernel and produce the units
    (wrapped in a ``TimeDistributed`` too, which applies the layer at each time step)."""
    if isinstance(layer, keras.layers.TimeDistributed):
        return _is_unit_layer(layer.layer)
    if isinstance(layer, keras.Model):
        return False
    return hasattr(layer, "activation") and (
        hasattr(layer, "units") or hasattr(layer, "filters") or type(layer).__name__ == "EinsumDense"
    )


def _layer_activation(layer: Any) -> str | None:
    """The activation a single layer applies, or ``None`` when it applies none of its own.

    ``"linear"`` for unit layers without an activation; ``None`` for passthrough layers; ``UNKNOWN``
    for layers trainkit does not know (Lambda, custom layers, ...).
    """
    if isinstance(layer, keras.layers.TimeDistributed):
        # Its output is the wrapped layer's at each step: TimeDistributed(Dense(3, "softmax")) was
        # an unknown layer, and a softmax output with from_logits=True passed every check.
        return _layer_activation(layer.layer)
    cls = type(layer).__name__
    if _is_unit_layer(layer):
        return activation_name(getattr(layer, "activation", None))
    if cls == "Activation":
        return activation_name(layer.activation)
    if cls == "Softmax":
        return "softmax"
    if cls == "ReLU":
        return relu_layer_activation(layer.get_config())
    if cls in ("LeakyReLU", "PReLU", "ELU"):
        return {"LeakyReLU": "leaky_relu", "PReLU": "prelu", "ELU": "elu"}[cls]
    if cls in _PASSTHROUGH or cls == "Rescaling":
        return None
    return UNKNOWN


def _unit_count(layer: Any) -> int | None:
    if isinstance(layer, keras.layers.TimeDistributed):
        return _unit_count(layer.layer)
    for attr in ("units", "filters"):
        value = getattr(layer, attr, None)
        if isinstance(value, int):
            return value
    shape = getattr(layer, "partial_output_shape", None) or getattr(layer, "full_output_shape", None)
    if shape and isinstance(shape[-1], int):
        return shape[-1]
    return None


def _shape_keeping_input(op: Any, node_index: int, tensor: Any) -> Any:
    """The one tensor a Keras operation, no layer (``keras.ops.sigmoid``, ``x * 2.0``), was called
    on where its output ``tensor`` keeps that tensor's shape, else ``None``: its units are the
    layer's before it (an ``ops.mean`` over them, which changes the shape, has none of its own)."""
    if isinstance(op, keras.layers.Layer) or node_index >= len(getattr(op, "_inbound_nodes", ())):
        return None
    given = [t for t in keras.tree.flatten(op._inbound_nodes[node_index].input_tensors) if hasattr(t, "_keras_history")]
    return given[0] if len(given) == 1 and tuple(given[0].shape) == tuple(tensor.shape) else None


def _trace_tensor(tensor: Any) -> list[Any]:
    """Layers from ``tensor`` back to (and including) the layer that produces the units."""
    chain: list[Any] = []
    for _ in range(1000):
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            break
        op = history.operation
        if isinstance(op, keras.Model):
            inner = _model_output_tensors(op)
            if inner is not None and history.tensor_index < len(inner):
                inner_chain = _trace_tensor(inner[history.tensor_index])
            else:
                inner_chain = _trace_layer_list(op)
            chain.extend(inner_chain)
            if inner_chain and (_is_unit_layer(inner_chain[-1]) or _layer_activation(inner_chain[-1]) == UNKNOWN):
                break
            node = op._inbound_nodes[history.node_index]
        else:
            chain.append(op)
            given = _shape_keeping_input(op, history.node_index, tensor)
            if given is not None:
                # keras.ops.sigmoid(dense(h)): the chain goes on to the layer that gives its units,
                # which was judged a hidden layer ("the model is linear" for a logistic regression).
                tensor = given
                continue
            if _is_unit_layer(op) or _layer_activation(op) == UNKNOWN or type(op).__name__ == "InputLayer":
                break
            node = op._inbound_nodes[history.node_index]
        inputs = list(node.input_tensors)
        if len(inputs) != 1:
            break
        tensor = inputs[0]
    return chain


def _trace_layer_list(model: Any) -> list[Any]:
    """The output chain of a Sequential model read from its layer list (works before it is built)."""
    chain: list[Any] = []
    for layer in reversed(list(getattr(model, "layers", []))):
        if isinstance(layer, keras.Model):
            inner = _model_output_tensors(layer)
            inner_chain = _trace_tensor(inner[0]) if inner else _trace_layer_list(layer)
            chain.extend(inner_chain)
            if inner_chain and (_is_unit_layer(inner_chain[-1]) or _layer_activation(inner_chain[-1]) == UNKNOWN):
                break
            continue
        chain.append(layer)
        if _is_unit_layer(layer) or _layer_activation(layer) == UNKNOWN:
            break
    return chain


def _model_output_tensors(model: Any) -> list[Any] | None:
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None
    if outputs is None:
        return None
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def _chain_info(chain: list[Any]) -> tuple[str, str, str, tuple[float, float], bool, int | None]:
    """(unit layer name, activation layer name, activation, range, rescaled, units) of a chain.

    ``chain`` runs from the output backwards; the first non-linear activation met is the
    effective one, and ``Rescaling`` layers met before it move its range.
    """
    scale, offset = 1.0, 0.0
    activation, act_layer = None, None
    unit_layer = chain[-1] if chain else None
    units = None
    for layer in chain:
        if _is_unit_layer(layer):
            unit_layer = layer
            units = _unit_count(layer)
        act = _layer_activation(layer)
        if activation is None:
            if type(layer).__name__ == "Rescaling":
                cfg = layer.get_config()
                layer_scale = cfg.get("scale", 1.0)
                layer_offset = cfg.get("offset", 0.0)
                if isinstance(layer_scale, int | float) and isinstance(layer_offset, int | float):
                    # y = x * s + o applied after the rescalings already seen (closer to the output).
                    offset = offset + scale * float(layer_offset)
                    scale = scale * float(layer_scale)
                else:
                    activation, act_layer = UNKNOWN, layer
            elif act is not None and act != "linear":
                activation, act_layer = act, layer
    if unit_layer is not None and activation is None:
        activation = _layer_activation(unit_layer) or "linear"
        act_layer = unit_layer
    if activation is None:
        activation = UNKNOWN if not chain else "linear"
    lo, hi = ACTIVATION_RANGES.get(activation, (-INF, INF))
    rescaled = (scale, offset) != (1.0, 0.0)
    if rescaled:
        ends = sorted(_affine(v, scale, offset) for v in (lo, hi))
        lo, hi = ends[0], ends[1]
    unit_name = getattr(unit_layer, "name", "?")
    return unit_name, getattr(act_layer, "name", unit_name), activation, (lo, hi), rescaled, units


def _inner_activation(chain: list[Any], act_layer: str, unit_layer: str) -> tuple[str, str] | None:
    """The first non-linear activation below the effective one, down to the unit layer."""
    names = [getattr(layer, "name", None) for layer in chain]
    if act_layer not in names or act_layer == unit_layer:
        return None
    for layer in chain[names.index(act_layer) + 1 :]:
        act = _layer_activation(layer)
        if act == UNKNOWN:
            # A Lambda or custom layer bounds nothing known, and what it makes of the values below
            # it is unknown: a temperature (Lambda z / 2) before a sigmoid was refused as a double
            # activation, "remove activation='unknown' from 'temperature'".
            return None
        if act is not None and act != "linear":
            return act, layer.name
        if layer.name == unit_layer:
            return None
    return None


def _affine(value: float, scale: float, offset: float) -> float:
    if math.isinf(value):
        return value * (1 if scale > 0 else -1) if scale != 0 else offset
    return value * scale + offset


def _shape_tuple(tensor: Any) -> tuple[int | None, ...] | None:
    shape = getattr(tensor, "shape", None)
    if shape is None:
        return None
    return tuple(None if d is None else int(d) for d in shape)


def find_outputs(model: keras.Model) -> list[OutputInfo]:
    """The model's outputs with their effective activation, units and range.

    Returns an empty list when the model cannot be inspected (a subclassed model).
    """
    tensors = _model_output_tensors(model)
    names = list(getattr(model, "output_names", None) or [])
    keys: list[str | None] = []
    struct = getattr(model, "_outputs_struct", None)
    if isinstance(struct, dict):
        # model.outputs lists a dict's tensors in sorted-key order (Keras flattens dicts sorted).
        keys = sorted(str(k) for k in struct)
    if tensors is None:
        if not isinstance(model, keras.Sequential):
            return []
        chain = _trace_layer_list(model)
        if not chain:
            return []
        unit, act_layer, act, rng, rescaled, units = _chain_info(chain)
        return [OutputInfo(name=chain[0].name, layer=unit, activation_layer=act_layer, activation=act,
                           units=units, shape=None, output_range=rng, rescaled=rescaled,
                           inner_activation=_inner_activation(chain, act_layer, unit))]
    infos = []
    for i, tensor in enumerate(tensors):
        chain = _trace_tensor(tensor)
        unit, act_layer, act, rng, rescaled, units = _chain_info(chain)
        shape = _shape_tuple(tensor)
        if shape is not None:
            units = shape[-1] if len(shape) >= 2 else 1
        name = names[i] if i < len(names) else (chain[0].name if chain else f"output_{i}")
        infos.append(OutputInfo(name=name, key=keys[i] if i < len(keys) else None, layer=unit,
                                activation_layer=act_layer, activation=act, units=units, shape=shape,
                                output_range=rng, rescaled=rescaled, index=i, inner_activation=_inner_activation(chain, act_layer, unit)))
    return infos


def iter_layers(model: Any) -> Iterator[Any]:
    """Every layer of the model, nested models expanded (the models themselves left out)."""
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def _output_chain_ids(model: keras.Model) -> set[int]:
    tensors = _model_output_tensors(model)
    chains = [_trace_tensor(t) for t in tensors] if tensors is not None else [_trace_layer_list(model)]
    return {id(layer) for chain in chains for layer in chain}


def hidden_layers(model: keras.Model) -> list[HiddenLayerInfo]:
    """Every layer outside the output chains (input layers left out), in model order."""
    in_chain = _output_chain_ids(model)
    infos = []
    for layer in iter_layers(model):
        cls = type(layer).__name__
        if id(layer) in in_chain or cls == "InputLayer":
            continue
        act = _layer_activation(layer)
        has_weights = _is_unit_layer(layer)
        if has_weights:
            linear = act == "linear" and not hasattr(layer, "recurrent_activation")
        elif cls == "Activation":
            linear = act == "linear"
        else:
            linear = cls in _LINEAR_LAYERS
        infos.append(HiddenLayerInfo(name=layer.name, class_name=cls, activation=act,
                                     has_weights=has_weights, linear=linear))
    return infos


def input_shapes(model: keras.Model) -> list[tuple[int | None, ...]] | None:
    """Shapes (batch axis included) of the model's inputs, or ``None`` when not known yet."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    shapes = [_shape_tuple(t) for t in inputs]
    return None if any(s is None for s in shapes) else shapes  # type: ignore[return-value]


def input_names(model: keras.Model) -> list[str]:
    """Names of the model's inputs (for matching dict inputs), empty when unknown."""
    try:
        inputs = model.inputs or []
    except (AttributeError, ValueError):
        return []
    names = []
    for tensor in inputs:
        history = getattr(tensor, "_keras_history", None)
        names.append(getattr(history.operation, "name", "") if history else "")
    return names


#: Layers that act on a sample's last axis only, whatever its other axes: they keep positions.
_PER_POSITION_LAYERS = frozenset({"Dense", "EinsumDense", "Activation", "Dropout", "BatchNormalization", "LayerNormalization",
                                  "InputLayer", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Rescaling", "Normalization"})


def position_keeping_layers(model: keras.Model) -> list[str]:
    """Layers (``"LSTM 'lstm'"``) other than Dense-like ones whose output keeps positions.

    A conv, recurrent (``return_sequences=True``) or embedding layer whose output has axes
    besides the batch and the features: a Dense output layer after it makes one prediction per
    position. Empty for a plain stack of Dense layers, and when shapes are unknown.
    """
    found = []
    for layer in iter_layers(model):
        cls = type(layer).__name__
        try:
            rank = len(layer.output.shape)
        except (AttributeError, ValueError):  # never called, or several outputs
            continue
        if cls not in _PER_POSITION_LAYERS and rank > 2:
            found.append(f"{cls} '{layer.name}'")
    return found


def scales_own_inputs(model: keras.Model) -> list[bool]:
    """For each model input, whether the layers it feeds scale it themselves or read it as indices.

    True when every layer that takes the input is a Normalization/Rescaling-style layer or an
    Embedding/lookup: the data check of the input's scale does not apply then. A Functional
    model's inputs are followed to the layers they feed; otherwise (Sequential, subclassed) the
    model's first layer that changes the values' scale decides for its one input (a ``Reshape``
    or a random flip before it only moves them).
    """
    inputs = getattr(model, "inputs", None) if not isinstance(model, keras.Sequential) else None
    if inputs and len(inputs) > 1:
        # Through the layers that keep the scale, as for one input: ids reshaped for an Embedding
        # are still ids (they were told "not scaled, standardise them").
        consumers = [{type(layer).__name__ for layer in found} - _MASK_OPS for found in _input_readers(model, inputs, _SCALE_KEEPING_LAYERS)]
        through_lambdas = _reads_ids_through_lambdas(model, inputs)
        return [(bool(names) and names <= INPUT_SCALING_LAYERS) or ids for names, ids in zip(consumers, through_lambdas, strict=True)]
    layers = list(_pipelines_expanded(iter_layers(model)))
    for at, layer in enumerate(layers):
        cls = type(layer).__name__
        if cls in _SCALE_KEEPING_LAYERS:
            continue
        if cls == "Lambda":
            if inputs:  # a functional model's: followed to the layers that read the Lambda's values
                return _reads_ids_through_lambdas(model, inputs)
            after = next((type(later).__name__ for later in layers[at + 1:]
                          if type(later).__name__ not in _SCALE_KEEPING_LAYERS | {"Lambda"}), None)
            return [after in _ID_READERS]
        return [cls in INPUT_SCALING_LAYERS]
    return [False]


#: Layers that read their input as ids (rows of a table, categories), whatever scale the values
#: that became those ids had.
_ID_READERS = frozenset({"Embedding", "CategoryEncoding", "IntegerLookup", "StringLookup", "Hashing"})


def _reads_ids_through_lambdas(model: keras.Model, inputs: list[Any]) -> list[bool]:
    """For each of ``inputs``, whether only layers that read ids (an Embedding) read it, past the
    scale-keeping layers and any ``Lambda``. A Lambda is opaque (``x + 1`` or a cast of the ids),
    but what it hands an Embedding is read as ids, not as features to standardise: ids 0..9999
    through ``Lambda(lambda t: t)`` into an ``Embedding(10000, 4)`` were told "not scaled (|mean|
    5067 / std 2884)". A Lambda whose values reach a Dense still leaves them judged as features."""
    found = _input_readers(model, inputs, _SCALE_KEEPING_LAYERS | {"Lambda"})
    return [bool(names) and names <= _ID_READERS
            for names in ({type(layer).__name__ for layer in layers} - _MASK_OPS for layers in found)]


def _pipelines_expanded(layers: Any) -> Iterator[Any]:
    """``layers`` with each ``keras.layers.Pipeline`` replaced by the layers it applies, in order
    (``Pipeline([RandomFlip(), RandomRotation(0.1)])`` before ``Rescaling(1 / 255)``)."""
    for layer in layers:
        if isinstance(layer, keras.layers.Pipeline):
            yield from _pipelines_expanded(layer.layers)
        else:
            yield layer


#: Operations of a functional graph (``keras.ops`` calls, not layers) that keep each value as it is.
_VALUE_MOVING_OPS = frozenset({"Cast", "Squeeze", "ExpandDims"})


def _graph_operations(model: Any) -> Iterator[Any]:
    """Every layer of the model and every ``keras.ops`` call of its graph (``keras.ops.cast(ids,
    "int32")``), nested models expanded."""
    for operation in getattr(model, "operations", None) or getattr(model, "layers", []):
        if isinstance(operation, keras.Model):
            yield from _graph_operations(operation)
        else:
            yield operation


def _input_readers(model: keras.Model, inputs: list[Any], through: frozenset[str] = frozenset()) -> list[list[Any]]:
    """For each of ``inputs``, the layers of ``model`` that read it; a layer whose class is in
    ``through`` (or an op that keeps the values, a cast) is followed to the layers that read its
    outputs instead, and a nested model that reads it (``Model(x, encoder(x))``) to the layers
    that read its own input at that position: its layers' calls read that inner input, not the
    tensor given to the model, so an ``Embedding`` first in a nested encoder read no ids at all
    (its ids were judged as features: a token position that tells the class was a label leak).
    """
    through = through | _VALUE_MOVING_OPS
    readers: dict[int, list[tuple[Any, Any]]] = {}  # a tensor's id -> (layer, node) of each call that reads it
    for layer in [*_graph_operations(model), *_nested_models(model)]:
        for node in getattr(layer, "_inbound_nodes", []):
            for tensor in keras.tree.flatten(getattr(node, "input_tensors", [])):
                readers.setdefault(id(tensor), []).append((layer, node))
    found: list[list[Any]] = []
    for model_input in inputs:
        layers, tensors, followed = [], [model_input], set()
        while tensors:
            tensor = tensors.pop()
            for layer, node in readers.get(id(tensor), []):
                if isinstance(layer, keras.layers.Pipeline):
                    # Read as the first of its layers not passed through, or passed through whole.
                    layer = next((inner for inner in _pipelines_expanded([layer]) if type(inner).__name__ not in through), layer)
                if isinstance(layer, keras.layers.Pipeline):
                    if id(node) not in followed:
                        followed.add(id(node))
                        tensors.extend(keras.tree.flatten(getattr(node, "output_tensors", [])))
                elif isinstance(layer, keras.Model):
                    inner = _nested_input(layer, node, tensor)
                    if inner is not None and id(inner) not in followed:
                        followed.add(id(inner))
                        tensors.append(inner)
                elif type(layer).__name__ not in through:
                    layers.append(layer)
                elif id(node) not in followed:
                    followed.add(id(node))
                    tensors.extend(keras.tree.flatten(getattr(node, "output_tensors", [])))
        found.append(layers)
    return found


def _nested_models(model: Any) -> Iterator[keras.Model]:
    """Every model nested in ``model``, at any depth (which :func:`_graph_operations` expands)."""
    for operation in getattr(model, "operations", None) or getattr(model, "layers", []):
        if isinstance(operation, keras.Model):
            yield operation
            yield from _nested_models(operation)


def _nested_input(nested: keras.Model, node: Any, tensor: Any) -> Any:
    """The input of ``nested`` that its layers read where its call ``node`` was given ``tensor``
    (the same position among its inputs), or ``None`` when that cannot be told (a subclassed
    model, which has no inputs)."""
    given = [id(t) for t in keras.tree.flatten(getattr(node, "input_tensors", []))]
    try:
        own = keras.tree.flatten(nested.inputs or [])
    except (AttributeError, ValueError):
        return None
    position = given.index(id(tensor))
    return own[position] if len(own) == len(given) else None


#: Layers that pass each value through where it is (at inference), so a layer after them reads the input's layout.
_VALUE_KEEPING = frozenset({"InputLayer", "Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "Identity",
                            "ActivityRegularization", "Masking"})


#: What :func:`_first_input_layers` looks past: the value-keeping layers, and the augmentation
#: layers, which pass each value through at inference and keep its scale in training: a
#: ``Normalization`` never adapted, or a ``Rescaling(1 / 255)`` of images already in [0, 1], behind
#: a ``RandomFlip`` was not told (``scales_own_inputs`` looks past it, so the input counted as scaled).
_NORMALIZER_PASSING = _VALUE_KEEPING | AUGMENTATION_LAYERS


def _first_input_layers(model: keras.Model) -> list[Any]:
    """For each model input, the one layer that reads it first (past the layers that keep each
    value where it is, a ``Dropout``, and the augmentation layers), or ``None`` where several
    read it or none is found."""
    inputs = getattr(model, "inputs", None) if not isinstance(model, keras.Sequential) else None
    if inputs and len(inputs) > 1:
        # Through a Dropout as with one input (scales_own_inputs follows it: a Normalization never
        # adapted behind one counted as scaling its input).
        return [found[0] if len(found) == 1 else None for found in _input_readers(model, inputs, _NORMALIZER_PASSING)]
    for layer in _pipelines_expanded(iter_layers(model)):
        if type(layer).__name__ in _NORMALIZER_PASSING:  # not a Reshape or Flatten: the sample's layout must be the layer's
            continue
        return [layer]
    return [None]


def input_normalizers(model: keras.Model) -> list[Any]:
    """For each model input, the ``Normalization`` or ``Rescaling`` layer that alone reads it first, or ``None``.

    Its statistics (or factor) are what scale the input: a layer never adapted (mean 0, variance 1)
    or adapted on other data passes raw values through, and a ``Rescaling(1 / 255)`` of images
    already in [0, 1] shrinks them to [0, 0.004], both of which the data checks took as scaled.
    Followed as :func:`scales_own_inputs` follows the inputs; an inverting layer is not a normaliser.
    """
    def normalizer(layer: Any) -> Any:
        if isinstance(layer, keras.layers.Rescaling):
            return layer
        return layer if isinstance(layer, keras.layers.Normalization) and not getattr(layer, "invert", False) else None

    return [normalizer(layer) for layer in _first_input_layers(model)]


#: Layers that standardise each sample over its own values (``LayerNormalization``, ``x / |x|``):
#: what they pass on has their scale, not the input's, save for an epsilon under a tiny variance.
ROW_NORMALIZING_LAYERS = frozenset({"LayerNormalization", "UnitNormalization", "GroupNormalization", "RMSNormalization"})


def input_row_normalizers(model: keras.Model) -> list[Any]:
    """For each model input, the layer of :data:`ROW_NORMALIZING_LAYERS` that alone reads it first, or ``None``.

    Found as :func:`input_normalizers` finds a ``Normalization``: inputs shrunk near 0 (std 0.048)
    read by a ``LayerNormalization`` first trained as fast as standardised ones (4-5 epochs to
    the loss they reached in 3-4), yet were told to standardise them.
    """
    return [layer if type(layer).__name__ in ROW_NORMALIZING_LAYERS else None for layer in _first_input_layers(model)]


@dataclasses.dataclass(frozen=True)
class ApplicationBase:
    """A ``keras.applications`` model inside the model (or the model itself) that wants its own
    ``preprocess_input``, not ``x / 255``.

    Attributes:
        name: The base's name (``"mobilenetv2_1.00_224"``).
        module: The ``keras.applications`` module whose ``preprocess_input`` it wants (``"mobilenet_v2"``).
        mode: ``"caffe"`` (0..255 RGB -> BGR less the ImageNet means), ``"tf"`` (to [-1, 1]) or
            ``"torch"`` (to [0, 1], then the ImageNet means and stds).
    """

    name: str
    module: str
    mode: str

    def describe(self) -> str:
        """What its ``preprocess_input`` makes of 0..255 pixels, for advice."""
        return {"caffe": "0..255 pixels turned to BGR, less the ImageNet channel means (about -124..152)",
                "tf": "pixels mapped to [-1, 1]",
                "torch": "pixels in [0, 1], standardised with the ImageNet channel means and stds"}[self.mode]


#: ``keras.applications`` models by the names Keras gives them, with the module of their
#: ``preprocess_input`` and its mode. EfficientNet, EfficientNetV2, ConvNeXt and MobileNetV3 are
#: left out: they hold their own preprocessing and take 0..255 pixels as they are.
_APPLICATION_NAMES: tuple[tuple[str, str, str], ...] = (
    (r"vgg16", "vgg16", "caffe"), (r"vgg19", "vgg19", "caffe"), (r"resnet(50|101|152)", "resnet", "caffe"),
    (r"resnet(50|101|152)v2", "resnet_v2", "tf"), (r"inception_v3", "inception_v3", "tf"),
    (r"inception_resnet_v2", "inception_resnet_v2", "tf"), (r"xception", "xception", "tf"),
    (r"mobilenet_[0-9.]+_\d+", "mobilenet", "tf"), (r"mobilenetv2_[0-9.]+_\d+", "mobilenet_v2", "tf"),
    (r"nasnet_(mobile|large)|NASNet", "nasnet", "tf"), (r"densenet(121|169|201)", "densenet", "torch"),
)


def application_base(model: keras.Model) -> ApplicationBase | None:
    """The first ``keras.applications`` model that wants its own ``preprocess_input`` among the
    model and the models nested in it, recognised by the name Keras gives it; ``None`` when none.

    Its inputs' scale is that function's, not ``x / 255``: MobileNetV2 wants [-1, 1], ResNet50
    0..255 less the channel means (which the scale check read as unscaled all the same).
    """
    for candidate in (model, *iter_nested_models(model)):
        for pattern, module, mode in _APPLICATION_NAMES:
            if re.fullmatch(pattern, getattr(candidate, "name", "") or ""):
                return ApplicationBase(candidate.name, module, mode)
    return None


def iter_nested_models(model: Any) -> Iterator[Any]:
    """Every model nested in ``model`` (at any depth), outer ones first."""
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            yield layer
            yield from iter_nested_models(layer)


def input_masking(model: keras.Model) -> list[float | None]:
    """For each model input, the ``mask_value`` of a ``Masking`` layer that alone reads it first
    (past value-keeping layers, :data:`_VALUE_KEEPING`), or ``None``.

    Its padding steps (every feature ``mask_value``) are no values the model learns from: a
    ``Masking(mask_value=-99.0)`` on standardised features made them "not scaled (|mean| 71.08)".
    """
    def value(layer: Any) -> float | None:
        return float(layer.mask_value) if isinstance(layer, keras.layers.Masking) else None

    passing = _VALUE_KEEPING - {"Masking"}
    inputs = getattr(model, "inputs", None) if not isinstance(model, keras.Sequential) else None
    if inputs and len(inputs) > 1:
        # Not the mask's own op (Masking's ``x != mask_value``), which the graph records beside it.
        readers = [[layer for layer in found if type(layer).__name__ not in _MASK_OPS] for found in _input_readers(model, inputs, passing)]
        return [value(found[0]) if len(found) == 1 else None for found in readers]
    for layer in iter_layers(model):
        if type(layer).__name__ not in passing:
            return [value(layer)]
    return [None]


#: Layers that keep each value at its position (scaling, normalising or augmenting it): the layer
#: after them reads the input's layout (``Rescaling(1 / 255)`` or a ``RandomFlip`` before a ``Conv2D``).
_LAYOUT_KEEPING = _VALUE_KEEPING | {"Rescaling", "Normalization", "BatchNormalization", "LayerNormalization", "RandomFlip",
                                    "RandomRotation", "RandomTranslation", "RandomZoom", "RandomContrast", "RandomBrightness"}


def layout_readers(model: keras.Model) -> list[Any]:
    """For each model input, the layer that first reads its layout (past layers that keep each
    value where it is, :data:`_LAYOUT_KEEPING`), or ``None`` when several layers read it.

    Followed as :func:`input_normalizers` follows the inputs; a ``Conv2D`` found here reads the
    input's axes as its ``data_format`` says.
    """
    inputs = getattr(model, "inputs", None) if not isinstance(model, keras.Sequential) else None
    if inputs and len(inputs) > 1:
        return [found[0] if len(found) == 1 else None for found in _input_readers(model, inputs, _LAYOUT_KEEPING)]
    for layer in iter_layers(model):
        if type(layer).__name__ not in _LAYOUT_KEEPING:
            return [layer]
    return [None]


def float16_readers(model: keras.Model) -> list[str | None]:
    """For each model input, the name of a layer reading it that computes in float16 (the
    ``mixed_float16`` policy), or ``None``.

    Such a layer casts its input to float16 before anything else: raw values past 65,504 become
    inf there, even in a ``Normalization`` layer adapted to scale them (the first step's loss is
    NaN, with no word about float16).
    """
    def half(layer: Any) -> bool:
        # What Layer.__call__ casts floating inputs to: input_dtype, not the policy's compute dtype.
        # Under mixed_float16 an IntegerLookup's is int64 and a Discretization's float32 (both read
        # raw ids or values ~1e6 exactly), and fit was refused with float16-overflow for them.
        if not getattr(layer, "autocast", True) or not getattr(layer, "_convert_input_args", True):
            return False
        return str(getattr(layer, "input_dtype", None) or "") == "float16"

    inputs = getattr(model, "inputs", None) if not isinstance(model, keras.Sequential) else None
    if inputs:
        return [next((layer.name for layer in found if half(layer)), None) for found in _input_readers(model, inputs, frozenset({"InputLayer"}))]
    first = next(iter_layers(model), None)
    return [first.name if first is not None and half(first) else None]


def embedding_inputs(model: keras.Model) -> list[tuple[int, str, int, str]]:
    """``(input index, layer name, ids, layer class)`` of each Embedding or CategoryEncoding a
    model input feeds directly.

    An Embedding looks its input up as row ids of a ``[input_dim, width]`` table, a
    CategoryEncoding counts its input as ids of ``num_tokens`` categories: ids must be whole
    numbers in ``[0, ids)``. A Functional model's inputs are followed to the layers they feed, a
    Sequential model's one input to its first layer, past layers that only move values (a
    Reshape, a Flatten).
    """
    # Through layers that only move the ids (a Reshape or Flatten before the Embedding): ids
    # outside its table failed in the first step with TensorFlow's GatherV2 error.
    if isinstance(model, keras.Sequential):
        readers = [[layer for layer in iter_layers(model) if type(layer).__name__ not in _PASSTHROUGH][:1]]
    else:
        readers = _input_readers(model, getattr(model, "inputs", None) or [], _PASSTHROUGH)
    return [(i, layer.name, ids, type(layer).__name__) for i, layers in enumerate(readers) for layer in layers
            if (ids := _id_count(layer)) is not None]


def batch_only_batchnorms(model: keras.Model) -> tuple[str, ...]:
    """The trainable ``BatchNormalization`` layers whose statistics are taken over the batch axis
    alone (a Dense layer's features, ``[batch, units]``): over a batch of one row each value is
    its own mean. A convolution's normalises over its positions too, which one image still has.
    A frozen one (``trainable=False``) normalises with its moving statistics, as in inference. One
    inside an unfrozen base called with ``base(x, training=False)`` does not under Keras 3, which
    trains it on the batch's statistics all the same (see :func:`inference_mode_ids`)."""
    names = []
    for layer in _training_layers(model):
        if not isinstance(layer, keras.layers.BatchNormalization) or not layer.trainable:
            continue
        if list(getattr(layer, "_reduction_axes", None) or ()) == [0]:  # known once built
            names.append(layer.name)
    return tuple(names)


def _training_layers(model: Any) -> Iterator[Any]:
    """:func:`iter_layers` less the layers that run in inference mode while the model trains
    (:func:`inference_mode_ids`)."""
    off = inference_mode_ids(model)
    return (layer for layer in iter_layers(model) if id(layer) not in off)


def inference_mode_ids(model: Any) -> set[int]:
    """The ids of the layers ``model`` runs in inference mode while it trains: those it calls with
    ``training=False`` at every call (a fine-tuned base, ``base(x, training=False)``), and every
    layer inside such a nested model.

    A layer whose ``call`` defaults to ``training=False`` (``Dropout``) records that default in its
    calls whatever the caller passed, so its record says nothing and it is not counted. None at all
    where Keras passes the model's ``training=True`` over the value its graph recorded, as Keras 3
    does (:func:`_graph_keeps_training_false`): there such a base trains as any layer does.
    """
    if not _graph_keeps_training_false():
        return set()
    off: set[int] = set()
    for layer in _inference_called(model):
        off.update(id(sub) for sub in _with_sublayers(layer))
    return off


def ignored_inference_batchnorms(model: Any) -> list[tuple[Any, Any]]:
    """``(BatchNormalization layer, the layer called with training=False)`` of each
    trainable ``BatchNormalization`` that ``model`` calls, directly or inside a nested model or
    layer, with ``training=False`` at every call, where Keras trains it all the same.

    Keras 3's functional model passes its own ``training=True`` over the recorded flag
    (:func:`_graph_keeps_training_false`): such a layer normalises each batch with the batch's
    statistics and moves its moving mean and variance, the fine-tune that
    ``base(x, training=False)`` was written for. A frozen one (``trainable=False``) uses its
    moving statistics and leaves them be. Empty where Keras honours the flag.
    """
    if _graph_keeps_training_false():
        return []
    found: dict[int, tuple[Any, Any]] = {}
    for called in _inference_called(model):  # outer ones first: a BN is told by its outermost base
        for layer in _with_sublayers(called):
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable and id(layer) not in found:
                found[id(layer)] = (layer, called)
    return list(found.values())


def _inference_called(model: Any) -> Iterator[Any]:
    """The layers nested in ``model`` (at any depth, outer ones first) that it calls with
    ``training=False`` at every call; not those whose ``call`` defaults to it (see
    :func:`inference_mode_ids`)."""
    flatten = getattr(model, "_flatten_layers", None)
    layers = list(flatten(include_self=False)) if flatten is not None else list(getattr(model, "layers", []))
    own = _graph_node_keys(model)
    for layer in layers:
        nodes = list(enumerate(getattr(layer, "_inbound_nodes", None) or []))
        if own is not None:  # a base reused from another model keeps that model's calls too
            nodes = [(i, node) for i, node in nodes if _node_key(layer, i) in own]
        calls = [getattr(getattr(node, "arguments", None), "kwargs", None) or {} for _, node in nodes]
        if calls and all(call.get("training") is False for call in calls) and not _defaults_to_inference(layer):
            yield layer


def _graph_node_keys(model: Any) -> set[str] | None:
    """The keys of the calls (nodes) that ``model``'s graph and its nested models' graphs make,
    ``None`` where Keras does not say (another layout, a subclassed model alone).

    A layer keeps the nodes of every model that called it: a base pretrained inside one model
    (``base(x)``) and fine-tuned in another (``base(x, training=False)``) read as called both ways,
    and the fine-tune's trainable BatchNormalization was not told.
    """
    try:
        from keras.src.ops.function import make_node_key  # noqa: F401 (Keras's private layout)
    except ImportError:
        return None
    keys: set[str] = set()
    for candidate in (model, *iter_nested_models(model)):
        graph = getattr(candidate, "_functional", None) or candidate  # a Sequential's graph
        nodes = getattr(graph, "_nodes", None)
        if isinstance(nodes, set):
            keys |= nodes
    return keys or None


def _node_key(layer: Any, index: int) -> str:
    """The key Keras's graphs hold the ``index``-th call of ``layer`` under."""
    from keras.src.ops.function import make_node_key  # asked of :func:`_graph_node_keys` first

    return make_node_key(layer, index)


def _with_sublayers(layer: Any) -> list[Any]:
    """``layer`` and every layer nested in it."""
    inner = getattr(layer, "_flatten_layers", None)
    return list(inner(include_self=True)) if inner is not None else [layer]


class _TrainingProbe(keras.layers.Layer):
    """Returns 0 in training and its input otherwise: which mode Keras called it in."""

    def call(self, x: Any, training: bool | None = None) -> Any:
        return x * 0.0 if training else x


@functools.cache
def _graph_keeps_training_false() -> bool:
    """Whether a layer a functional graph calls with ``training=False`` stays in inference mode
    when the model is called with ``training=True``, as the trainer's step calls it.

    Keras 3's ``Functional.call`` passes the model's own ``training`` to every layer of its graph
    over the recorded ``training=False`` (keras-team/keras#20285): a fine-tuned base called as
    ``base(x, training=False)`` ran its Dropout in training and, once unfrozen, normalised on batch
    statistics and updated its moving variance (towards 0.008 on batches of one row) while the
    checks took it for inference mode. Asked of Keras once, on a graph of one tiny layer, rather
    than assumed of its version. Every layer is named, and the one tensor Keras names itself gives
    its number back (:func:`_auto_name_counts`): no auto-named layer's or tensor's name moves.
    """
    with _auto_name_counts():
        inputs = keras.Input((1,), name="trainkit_training_probe_input")
        outputs = _TrainingProbe(name="trainkit_training_probe")(inputs, training=False)
        model = keras.Model(inputs, outputs, name="trainkit_training_probe_model")
        return float(keras.ops.convert_to_numpy(model(keras.ops.ones((1, 1)), training=True))[0, 0]) == 1.0


@contextlib.contextmanager
def _auto_name_counts() -> Iterator[None]:
    """Keras's auto-name counters as they were before the block, after it.

    The probe layer's output tensor took the next ``keras_tensor_N``: a model built after the first
    check had its unnamed inputs numbered one further (``keras_tensor_5`` for ``keras_tensor_4``),
    names an exported model's serving signature takes. Keras keeps the counters privately; where
    they cannot be read, they are left as the block leaves them.
    """
    try:
        from keras.src.backend.common import global_state

        counts = global_state.get_global_attribute("object_name_uids", default=collections.defaultdict(int), set_to_default=True)
    except Exception:  # another Keras layout: nothing to keep
        counts = None
    saved = dict(counts) if counts is not None else None
    try:
        yield
    finally:
        if counts is not None and saved is not None:
            counts.clear()
            counts.update(saved)


def _defaults_to_inference(layer: Any) -> bool:
    """Whether ``layer.call`` defaults to ``training=False``."""
    try:
        parameter = inspect.signature(layer.call).parameters.get("training")
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.default is False


def masked_embeddings(model: keras.Model) -> tuple[str, ...]:
    """The names of the Embedding layers a model input feeds directly that mask id 0 (``mask_zero=True``)."""
    readers = {layer.name: layer for layer in iter_layers(model)}
    return tuple(name for _, name, _, kind in embedding_inputs(model)
                 if kind == "Embedding" and getattr(readers.get(name), "mask_zero", False) is True)


def _id_count(layer: Any) -> int | None:
    """How many ids ``layer`` reads its input as (an Embedding's rows, a CategoryEncoding's
    categories: ids past them became rows of zeros, in silence), ``None`` for other layers."""
    if isinstance(layer, keras.layers.Embedding):
        return int(layer.input_dim)
    if isinstance(layer, keras.layers.CategoryEncoding) and layer.num_tokens is not None:
        return int(layer.num_tokens)
    return None


#: The lookup layers that turn tokens into ids (with ``output_mode="int"``) from a vocabulary of their own.
_LOOKUP_LAYERS = (keras.layers.TextVectorization, keras.layers.StringLookup, keras.layers.IntegerLookup)


@dataclasses.dataclass(frozen=True)
class LookupInfo:
    """A lookup layer of the model (a ``TextVectorization``, ``StringLookup`` or ``IntegerLookup``)
    and the Embedding layers that look its ids up.

    Attributes:
        name: The lookup layer's name.
        kind: Its class name.
        vocabulary: Its ``vocabulary_size()`` (padding and OOV ids included): it gives ids
            ``0..vocabulary - 1``.
        adapted: Whether it holds a vocabulary (adapted, or given one): one that holds none fails
            on its first call ("Table not initialized").
        embeddings: ``(name, input_dim)`` of each Embedding that reads its ids (none unless it
            gives ids: ``output_mode="int"``, not inverted).
    """

    name: str
    kind: str
    vocabulary: int
    adapted: bool
    embeddings: tuple[tuple[str, int], ...]


def _lookup_table_size(layer: Any) -> int | None:
    """How many tokens the table of a lookup layer holds (0: never adapted), ``None`` when it cannot be read."""
    table = getattr(getattr(layer, "_lookup_layer", layer), "lookup_table", None)
    try:
        return int(table.size().numpy()) if table is not None else None
    except Exception:  # a table of a kind without size(): say nothing of it
        return None


def lookup_layers(model: keras.Model) -> list[LookupInfo]:
    """Each lookup layer of ``model``, with the Embedding layers that read its ids (past layers
    that only move them) where it turns tokens into ids (``output_mode="int"``, not inverted).

    A ``TextVectorization(max_tokens=50)`` adapted on the texts gives ids up to 49: an
    ``Embedding(20, ...)`` after it failed the first batch that held a frequent word's id, in
    the middle of training, where the checks of numeric ids refuse it before the first step.
    """
    found = []
    layers = list(iter_layers(model))
    for i, layer in enumerate(layers):
        if not isinstance(layer, _LOOKUP_LAYERS):
            continue
        size = _lookup_table_size(layer)
        if size is None:
            continue
        gives_ids = str(getattr(layer, "output_mode", None) or getattr(layer, "_output_mode", "int")) == "int"
        if not gives_ids or getattr(layer, "invert", False):
            after = []
        elif isinstance(model, keras.Sequential):
            after = [other for other in layers[i + 1:] if type(other).__name__ not in _PASSTHROUGH][:1]
        else:
            outputs = [t for node in getattr(layer, "_inbound_nodes", []) for t in keras.tree.flatten(getattr(node, "output_tensors", []))]
            after = [other for readers in _input_readers(model, outputs, _PASSTHROUGH) for other in readers]
        embeddings = tuple(dict.fromkeys((other.name, int(other.input_dim)) for other in after if isinstance(other, keras.layers.Embedding)))
        found.append(LookupInfo(layer.name, type(layer).__name__, int(layer.vocabulary_size()), size > 0, embeddings))
    return found


#: Layers among ``_PASSTHROUGH`` whose output holds no mask of id 0 for the next layer: Keras drops
#: the mask at a layer that does not support masking (Flatten, Reshape, Permute), and a Masking
#: layer makes its own from the vectors it reads (an Embedding's row of id 0 is no row of zeros).
_MASK_DROPPING = frozenset({"Flatten", "Reshape", "Permute", "Masking"})


def averaged_embeddings(model: keras.Model, masked: bool = False) -> dict[str, str]:
    """``{Embedding name: pooling layer name}`` for each Embedding a model input feeds directly
    that masks nothing (``mask_zero=False``; with ``masked``, those that mask id 0) and whose
    vectors a ``GlobalAveragePooling1D`` averages (past layers that only move them): unmasked, the
    padding's vector is averaged in with the real tokens'; masked, a row of padding alone is
    averaged over no position (0 / 0)."""
    layers = list(iter_layers(model))
    # Masked, only past layers that keep the mask: after a Reshape the pooling averages every
    # position, and an empty row is a number, not 0 / 0.
    through = _PASSTHROUGH - _MASK_DROPPING if masked else _PASSTHROUGH
    found = {}
    for _, name, _, kind in embedding_inputs(model):
        layer = next((one for one in layers if one.name == name), None)
        if kind != "Embedding" or layer is None or bool(getattr(layer, "mask_zero", False)) != masked:
            continue
        if isinstance(model, keras.Sequential):
            i = layers.index(layer)
            after = [other for other in layers[i + 1:] if type(other).__name__ not in through][:1]
        else:
            outputs = [t for node in getattr(layer, "_inbound_nodes", []) for t in keras.tree.flatten(getattr(node, "output_tensors", []))]
            after = [other for readers in _input_readers(model, outputs, through) for other in readers]
        pool = next((other for other in after if isinstance(other, keras.layers.GlobalAveragePooling1D)), None)
        if pool is not None:
            found[name] = pool.name
    return found
