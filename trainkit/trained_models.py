"""Which models a Trainer of this process has trained, so that a new fit knows a fresh start.

A sweep or a notebook re-running a cell hands a trained model to a new trainer. The diagnosis
judges some verdicts on fresh starts only (a low first loss, a collapsed loss, a spiking step), so
a fit asks :func:`trained_before` when it starts and calls :func:`record_training` once it trains.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np

#: The models a Trainer of this process has trained (weakly held: a sweep's models are freed), each
#: with :func:`weights_fingerprint` of the weights its first training started from (``None``
#: where those were trained already: putting them back makes no fresh start).
_TRAINED_MODELS: weakref.WeakKeyDictionary[keras.Model, tuple[float, ...] | None] = weakref.WeakKeyDictionary()
#: The variables (ids) each of those models' fits trained: those trainable when a fit began. A base
#: frozen under one head (``base.trainable = False``) is the model's but never moved by its fits.
_TRAINED_VARIABLES: weakref.WeakKeyDictionary[keras.Model, set[int]] = weakref.WeakKeyDictionary()


def _fingerprinted(model: keras.Model) -> list[keras.Variable]:
    """The trainable variables :func:`weights_fingerprint` sums: the first two and the last two."""
    weights = list(model.trainable_weights)
    return weights[:2] + weights[2:][-2:]


def weights_fingerprint(model: keras.Model) -> tuple[float, ...]:
    """Sums of the first two and last two trainable variables: equal again once the weights are put
    back where they started (``model.set_weights(initial)``), cheap for any model size."""
    return tuple(float(np.sum(np.asarray(v), dtype=np.float64)) for v in _fingerprinted(model))


def trained_before(model: keras.Model) -> bool:
    """Whether ``model``'s weights had been trained before a new trainer got it: by another
    Trainer of this process (unless its weights were put back where that training started, as a
    sweep resetting one model does), or by ``model.fit`` (its compiled optimizer took steps).

    A new model built around trained layers counts too: one that nests a trained model
    (``Sequential([base, head])``, ``Model(x, base(x))``), or takes layers of a model a Trainer
    trained (``Model(base.inputs, base.layers[-1].output)``). Its first loss is that training's
    (0.01 against a chance level of 0.69 read as a leak and a collapsed loss).
    """
    if _trained_itself(model):
        return True
    nested = [layer for layer in _inner_layers(model) if isinstance(layer, keras.Model)]
    if any(_trained_itself(inner) for inner in nested):
        return True
    # Which trained models share its weights first (ids alone), and only theirs fingerprinted:
    # each fingerprint copies 4 variables to the host, and 100 models of a notebook's sweep, kept
    # alive in its results, cost ~1 ms each at every fit's start (more for larger models).
    # Only the weights their fits trained: a base frozen under a first head, unfrozen since under a
    # new one, shares the first model's weights (trainable now) that no fit moved, and was judged
    # trained before (its fresh start's verdicts unsaid) because that model's head trained.
    weights = {id(v) for v in model.trainable_weights}
    return any(_shared_weights_trained(trained, weights) for trained in list(_TRAINED_MODELS)
               if trained is not model and any(id(v) in weights and id(v) in _TRAINED_VARIABLES.get(trained, ()) for v in trained.weights))


def _shared_weights_trained(trained: keras.Model, weights: set[int]) -> bool:
    """Whether the weights a new model shares with ``trained`` (ids in ``weights``) were trained.

    Where some of the variables ``trained``'s fingerprint sums are shared, those alone tell: a
    cross-validation loop putting a base back (``base.set_weights(initial)``) under a new head each
    fold (``Sequential([base, head])``) shares the base with the earlier folds' models, whose own
    heads trained, and each fold from the second on was judged trained before (its fresh-start
    verdicts unsaid). Otherwise ``trained`` is judged whole, as before.
    """
    start = _TRAINED_MODELS.get(trained)
    variables = _fingerprinted(trained)
    shared = [i for i, v in enumerate(variables) if id(v) in weights]
    if start is None or not shared or len(start) != len(variables):
        return _trained_itself(trained)
    now = weights_fingerprint(trained)
    return any(now[i] != start[i] for i in shared)


def _trained_itself(model: keras.Model) -> bool:
    """Whether ``model`` itself was trained: by a Trainer (and not put back), by ``model.fit``, or
    in another process, its weights read back from a file (see :func:`left_initialization`)."""
    if model in _TRAINED_MODELS:
        start = _TRAINED_MODELS[model]
        return start is None or weights_fingerprint(model) != start
    iterations = getattr(getattr(model, "optimizer", None), "iterations", None)
    if iterations is not None and int(np.asarray(iterations)) > 0:
        return True
    return left_initialization(model)


def left_initialization(model: keras.Model) -> bool:
    """Whether most of ``model``'s layers with weights a constant initializer sets (a ``Dense``'s
    zero bias, a normalisation's ``beta`` and ``gamma``) no longer hold that constant.

    A model a Trainer trained and saved (``model.save``, ``save_weights``) comes back from
    ``keras.models.load_model`` or ``load_weights`` with no optimizer, or with the untouched one of
    a ``compile`` before the Trainer: only its weights tell it was trained (its first loss, 0.02
    against a chance level of 0.69, was read as a leak). Training moves every layer's bias; a
    bias set by hand on one layer (an output bias at ``log(p / (1 - p))``) leaves the others
    at 0, so it takes more than half of the layers; a weight of one value everywhere (a hidden
    bias set by hand) is no training either. Kernels are drawn at random and tell nothing.
    The layers that give the outputs are left out, as that advice sets their biases (each head's
    of a model with several; a single-layer model's one): a logistic regression, two heads, or a
    ``Dense`` before an ``Activation("sigmoid")`` so started were judged trained.
    """
    outputs = {id(layer) for layer in _output_layers(model)}
    moved = counted = 0
    for layer in _inner_layers(model):
        if id(layer) in outputs:
            continue
        constants = [(variable, initializer) for variable, initializer in _constant_initialized(layer) if variable.trainable]
        if not constants:
            continue
        counted += 1
        moved += not all(_holds(variable, value) or _one_value(variable) for variable, value in constants)
    return moved * 2 > counted


def _one_value(variable: keras.Variable) -> bool:
    """Whether ``variable`` holds one number in each of its (several) entries, as a hand sets it
    (``layer.bias.assign(np.full(shape, 0.01))``, ReLU biases started above 0): training moves each
    unit's by its own gradient. Every hidden bias so set was judged trained (2 of 2 layers moved),
    and the fresh start's verdicts went unsaid."""
    weights = np.asarray(variable)
    return weights.size > 1 and bool(np.all(weights == weights.flat[0]))


def _holds(variable: keras.Variable, value: np.ndarray) -> bool:
    """Whether ``variable`` holds ``value`` everywhere, compared in its own dtype (a float32 bias
    from ``Constant(0.1)`` is not float64's 0.1)."""
    weights = np.asarray(variable)
    try:
        return bool(np.all(weights == value.astype(weights.dtype)))
    except ValueError:  # a constant that is no such weight's shape: it tells nothing
        return True


def _constant_initialized(layer: keras.layers.Layer) -> list[tuple[keras.Variable, np.ndarray]]:
    """A layer's weights that a constant initializer set (``bias_initializer="zeros"``...), each
    with that constant; attributes named ``<weight>_initializer`` point to them, as in Keras's
    own layers."""
    out = []
    for name, initializer in vars(layer).items():
        if not name.endswith("_initializer"):
            continue
        value = _constant_value(initializer)
        variable = getattr(layer, name.removesuffix("_initializer"), None)
        if value is not None and isinstance(variable, keras.Variable):
            if name == "bias_initializer" and getattr(layer, "unit_forget_bias", False):
                value = _with_forget_gate_ones(value, tuple(variable.shape))
            out.append((variable, value))
    return out


def set_apart_from_initializer(layer: keras.layers.Layer, weight: str = "bias") -> bool:
    """Whether ``layer``'s ``weight`` (built) holds other values than its constant initializer
    fills it with (``bias.assign([1.3])`` on a ``zeros`` bias; an LSTM cell's forget-gate ones
    are its initializer's own); ``False`` where that initializer is no constant."""
    variable = getattr(layer, weight, None)
    return any(held is variable and not _holds(held, value) for held, value in _constant_initialized(layer))


def _with_forget_gate_ones(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An LSTM cell's bias as ``unit_forget_bias=True`` (Keras's default) starts it: the
    initializer's constant, with the forget gate's quarter (the second) at 1; read as zeros, every
    fresh LSTM was judged trained (two LSTMs and a Dense: a trained model, its first loss a leak
    no more)."""
    try:
        expected = np.array(np.broadcast_to(value, shape), dtype=np.float64)
    except ValueError:  # a constant that is no such bias's shape: _holds judges nothing
        return value
    units = shape[-1] // 4 if shape else 0
    expected[..., units:2 * units] = 1.0
    return expected


def _constant_value(initializer: object) -> np.ndarray | None:
    """The value a constant initializer fills a weight with (``Constant([...])``'s, one a unit);
    ``None`` for any other."""
    if isinstance(initializer, keras.initializers.Zeros):
        return np.zeros(())
    if isinstance(initializer, keras.initializers.Ones):
        return np.ones(())
    if isinstance(initializer, keras.initializers.Constant):
        try:
            return np.asarray(initializer.get_config().get("value"), dtype=np.float64)
        except (TypeError, ValueError):  # a value that is no number
            return None
    return None


def _output_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers with weights that give a functional or ``Sequential`` model's outputs, found back
    through layers without weights (an ``Activation``) and through Keras operations, which have
    none (``keras.ops.sigmoid(dense(h))``, the ``NotEqual`` a mask from ``mask_zero=True`` is
    computed by: a model so ending, or nesting one, failed every fit with an AttributeError);
    none for a subclassed model."""
    pending = [getattr(getattr(t, "_keras_history", None), "operation", None) for t in _model_outputs(model)]
    found, seen = [], set()
    while pending:
        layer = pending.pop()
        if layer is None or id(layer) in seen:
            continue
        seen.add(id(layer))
        if getattr(layer, "weights", None):  # an Operation has no weights attribute
            found.append(layer)
        else:
            pending.extend(node.operation for inbound in getattr(layer, "_inbound_nodes", ())[:1] for node in inbound.parent_nodes)
    return found


def _model_outputs(model: keras.Model) -> list[object]:
    """``model.outputs`` as a list (a subclassed model's raises, or is ``None``)."""
    try:
        return keras.tree.flatten(model.outputs or [])
    except (AttributeError, ValueError):
        return []


def _inner_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer inside ``model``, nested ones included."""
    flatten = getattr(model, "_flatten_layers", None)
    return list(flatten(include_self=False)) if flatten is not None else list(model.layers)


def record_training(model: keras.Model, was_trained_before: bool) -> None:
    """Notes that a Trainer starts training ``model`` (the first time only: the start it keeps is
    where that first training began), and the variables this fit trains (each fit's)."""
    _TRAINED_VARIABLES.setdefault(model, set()).update(id(v) for v in model.trainable_weights)
    if model not in _TRAINED_MODELS:
        # Weights model.fit trained are no start to come back to: a sweep that put them back for
        # each variant was judged a fresh start from its second on (initial-loss-too-low for a
        # loss that model.fit had lowered).
        _TRAINED_MODELS[model] = None if was_trained_before else weights_fingerprint(model)
