"""Exposes intermediate layer outputs (activations) to the training step.

Sequential and Functional models are tapped automatically: :func:`build_probe` builds, once, a
Functional model that shares the model's layers and weights and whose outputs are every activated
layer's output followed by the model's own outputs. The step calls it instead of the model, so the
forward pass is the same computation (same ``y_pred``, same gradients) and the activations come out
of it for free; nothing is stored once the step ends.

A layer is *activated* when it applies a non-linear activation of its own: ``Dense``/``Conv*``
with ``activation=`` other than linear (the activation runs inside the layer, so the layer's output
*is* the activation output), or an ``Activation``, ``ReLU``, ``LeakyReLU``, ``PReLU``, ``ELU`` or
``Softmax`` layer. The activated layers the model's graph does not show (inside a nested model,
a custom block layer or a subclassed model) are read while the step traces, through
:class:`trainkit.layer_hooks.LayerHooks`, in the order they run; a layer called several times is
reported once per call (``_1``, ``_2``... suffixes), and so is a layer the model's own graph calls
more than once (shared). Layers inside recurrent layers are not: their outputs live in the
recurrence's loop; nor are those of a block a ``TimeDistributed`` layer wraps, which runs once per
time step.

A custom layer or subclassed model can also name what it reports with :func:`record`, called in
``call`` (its name wins over a hooked layer's for the same tensor); it returns its input unchanged
and does nothing outside a trainkit step::

    from trainkit.probes import record

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(64, activation="relu")
            self.out = keras.layers.Dense(1)

        def call(self, x):
            h = record("hidden", self.hidden(x), activation="relu")
            return self.out(h)

The model output is always reported, under ``output`` (``output_0``, ``output_1``... for several
outputs). Its activation is read from the layer producing it; a subclassed model's output counts as
linear unless ``call`` records it: ``return record("output", y, activation="sigmoid")``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import keras
import tensorflow as tf

from trainkit import stats
from trainkit.errors import ArgumentError, closest
from trainkit.layer_hooks import LayerHooks
from trainkit.stat_names import NEGATIVE_SLOPED, SMOOTH_RELU

#: Layer classes that are nothing but an activation, and the activation each applies.
_ACTIVATION_LAYERS = {"LeakyReLU": "leaky_relu", "PReLU": "prelu", "ELU": "elu", "Softmax": "softmax"}
#: The class names of every layer that only applies an activation (to the layer before it).
ACTIVATION_LAYER_CLASSES = frozenset({"Activation", "ReLU", *_ACTIVATION_LAYERS})
_RENAMED = {"identity": "linear", "swish": "silu", "hard_swish": "hard_silu"}


def activation_name(fn: Any) -> str:
    """Canonical name of an activation (a Keras activation function, its name, or ``None``)."""
    if fn is None:
        return "linear"
    name = fn if isinstance(fn, str) else getattr(fn, "__name__", None) or type(fn).__name__
    name = name.lower()
    return _RENAMED.get(name, name)


def layer_activation(layer: Any) -> str | None:
    """The non-linear activation ``layer`` applies to its own output, or ``None``.

    ``None`` for linear layers, layers without an activation, nested models and recurrent layers
    (whose output is not simply ``activation(...)``). A ``TimeDistributed`` layer applies the
    activation of the layer it wraps.
    """
    if isinstance(layer, keras.layers.TimeDistributed):
        # Read whole, not through its wrapped layer: that runs once per time step, each call a
        # layer of its own (td_dense_4...) whose dead_fraction saw one step's rows (a padded step:
        # "dead"), and a sequence of 50 steps made 50 sets of statistics.
        return layer_activation(layer.layer)
    if isinstance(layer, keras.Model) or hasattr(layer, "recurrent_activation"):
        return None
    cls = type(layer).__name__
    if cls == "ReLU":
        name = stats.relu_layer_activation(layer.get_config())
    elif cls in _ACTIVATION_LAYERS:
        name = _ACTIVATION_LAYERS[cls]
    elif hasattr(layer, "activation"):
        name = activation_name(layer.activation)
    else:
        return None
    return None if name == "linear" else name


@dataclasses.dataclass(frozen=True)
class Tap:
    """One tapped tensor of a step.

    Attributes:
        name: ``L`` in ``activation/L/...``: a layer name, a recorded name, or ``output``.
        tensor: The tensor (symbolic, inside the traced step).
        activation: Canonical activation name; picks the statistics (see
            :data:`trainkit.stats.ACTIVATION_KINDS`).
        mask: The Keras mask of the tensor's positions (its shape less the units axis; an
            ``Embedding(mask_zero=True)``'s or a ``Masking`` layer's, carried on), or ``None``:
            the statistics then read the unmasked positions only.
    """

    name: str
    tensor: Any
    activation: str
    mask: Any = None


# -- record(): the mechanism for subclassed models -------------------------------------------------
_local = threading.local()


def _collectors() -> list[list[Tap]]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def record(name: str, tensor: Any, activation: str | Callable[..., Any] = "linear") -> Any:
    """Reports ``tensor`` as the activation of ``name`` to the trainkit step tracing the model.

    Call it in a layer's or model's ``call``. Outside a trainkit training step (plain
    ``model(x)``, ``model.fit``, Keras's symbolic build) it does nothing. A name recorded twice in
    one step gets ``_1``, ``_2``... suffixes.

    Args:
        name: Name ``L`` of the statistics (``activation/L/mean``...); ``"output"`` declares the
            model output's activation.
        tensor: The activation output, batch first, units last.
        activation: Canonical activation name (``"relu"``, ``"tanh"``, ``"sigmoid"``...), or the
            activation function.

    Returns:
        ``tensor``, unchanged, so it can wrap an expression.

    Raises:
        ArgumentError: ``bad-argument`` (inside a trainkit step) for an ``activation`` name that
            names no activation.
    """
    stack = _collectors()
    if stack and not isinstance(tensor, keras.KerasTensor):
        stack[-1].append(Tap(name, tensor, _recorded_activation(activation)))
    return tensor


def _recorded_activation(activation: Any) -> str:
    """The canonical name of the activation :func:`record` was given.

    Raises:
        ArgumentError: ``bad-argument`` for a name that is no activation (``"rleu"``): its layer
            got a linear layer's statistics, and ``dead-relu`` never looked at it, in silence.
    """
    name = activation_name(activation)
    if not isinstance(activation, str) or name in stats.ACTIVATION_KINDS:
        return name
    try:
        keras.activations.get(name)
    except ValueError:
        raise ArgumentError("bad-argument", f"trainkit.probes.record got activation={activation!r}, which is no activation.{closest(name, stats.ACTIVATION_KINDS)} "
                                            "Name the one the recorded tensor went through (\"relu\", \"tanh\", \"sigmoid\"...), or \"linear\" for none.") from None
    return name


@contextmanager
def collect() -> Iterator[list[Tap]]:
    """Collects the :func:`record` calls made while the block runs (traces)."""
    taps: list[Tap] = []
    _collectors().append(taps)
    try:
        yield taps
    finally:
        _collectors().pop()


# -- probes ---------------------------------------------------------------------------------------
def _unpack_singleton(value: Any) -> Any:
    # What Functional.call does: a model with one output in a list returns the tensor itself.
    if isinstance(value, list | tuple) and len(value) == 1:
        return value[0]
    return value


def _calls_in_graph(model: Any, layer: Any) -> list[list[Any]]:
    """The output tensors of each call of ``layer`` in ``model``'s graph.

    Not ``layer.output``: that is the first call's, which for a shared layer hid every other call,
    and for a layer first called while building another model is not in this graph at all.
    """
    return [list(node.outputs) for nodes in model._nodes_by_depth.values() for node in nodes if node.operation is layer]


def _produced_by(tensor: Any) -> Any:
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history else None


class Probe:
    """Runs a model's forward pass and returns its output with the tapped activations.

    Build it with :func:`build_probe`. Call it inside the ``GradientTape`` instead of the model.

    Attributes:
        model: The model.
        tapped: ``(name, activation)`` of each layer tapped from the model's graph, in model order
            (the layers inside nested models and blocks are read through hooks as the step traces).
        output_activations: Activation of each flat model output.
        reason: Why the model's graph cannot be tapped (a subclassed model...), or ``None``;
            its hidden layers are then read through hooks only.
        output_layers: Names of the tapped layers whose output is a model output (known once
            the step has been traced): they are not hidden layers.
        softmax_taps: Names of the taps whose activation is softmax (known once the step has
            been traced), those :func:`record` named included: a softmax's statistics say how
            peaked its rows are, and the diagnosis does not judge them as a signal's.
        sloped_taps: Names of the taps whose activation is not 0 below 0 (leaky_relu, prelu, elu,
            selu: :data:`trainkit.stat_names.NEGATIVE_SLOPED`; known once the step has been
            traced): their units never positive still pass a gradient, unlike a ReLU's.
        smooth_taps: Names of the taps whose activation is a smooth ReLU (gelu, silu...:
            :data:`trainkit.stat_names.SMOOTH_RELU`): their units are dead when their outputs stay near 0.
    """

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.tapped: list[tuple[str, str]] = []
        self.output_activations: list[str] = []
        self.reason: str | None = None
        self.output_layers: set[str] = set()
        self.softmax_taps: set[str] = set()
        self.sloped_taps: set[str] = set()
        self.smooth_taps: set[str] = set()
        self._tap_model: keras.Model | None = None
        self._output_struct: Any = None
        self._output_layers: list[str | None] = []
        self._num_taps = 0
        # Layers read through hooks: their activation, and where they sort among the graph's taps.
        self._hooked_activation: dict[int, str] = {}
        self._hooked_position: dict[int, int] = {}
        # Names of the graph's tapped layers whose channel axis is the second (channels_first).
        self._channels_first: set[str] = set()
        self._layer_names = frozenset(layer.name for layer in model._flatten_layers(include_self=False))
        self._reported = reported_names(model)
        self._build()
        self._hooks = LayerHooks([layer for layer, _ in self._hidden])

    def _build(self) -> None:
        model = self.model
        base = model._functional if isinstance(model, keras.Sequential) else model
        self._hidden: list[tuple[Any, str]] = []
        if base is None or not isinstance(base, keras.Model) or not hasattr(base, "_outputs_struct"):
            self.reason = "subclassed model: report activations with trainkit.probes.record()"
            self._hide(hidden_layers(model), position=0)
            return
        flat_outputs = keras.tree.flatten(base.output)
        output_ids = {id(t) for t in flat_outputs}
        taps: list[Any] = []
        # A layer called here and inside a nested model or block too is hooked for the latter,
        # and a hook reads each of its calls, this graph's included: tapped as well, its call here
        # was reported twice (shared_d, shared_d_1) and the nested call a third time (shared_d_2).
        nested = {id(inner) for layer in base.layers if layer_activation(layer) is None for inner, _ in hidden_layers(layer)}
        channels_first = _channels_first_tensors(base)
        for position, layer in enumerate(base.layers):
            activation = layer_activation(layer)
            if activation is None:
                self._hide(hidden_layers(layer), position)
                continue
            calls = _calls_in_graph(base, layer)
            if len(calls) > 1 or id(layer) in nested:  # a shared layer, one output per call: read at each call instead
                self._hide([(layer, activation)], position)
                continue
            if len(calls) != 1 or len(calls[0]) != 1:
                continue  # never called in this graph, or several outputs
            (tensor,) = calls[0]
            if isinstance(tensor, keras.KerasTensor) and id(tensor) not in output_ids:
                taps.append(tensor)
                self.tapped.append((layer.name, activation))
                if id(tensor) in channels_first:
                    self._channels_first.add(layer.name)
            elif isinstance(tensor, keras.KerasTensor):
                self.tapped.append((layer.name, activation))  # the output itself: aliased below
        self.output_activations = [layer_activation(_produced_by(t)) or "linear" for t in flat_outputs]
        self._output_layers = [getattr(_produced_by(t), "name", None) for t in flat_outputs]
        self._output_struct = base.output
        try:
            self._tap_model = keras.Model(inputs=base.input, outputs=[*taps, *flat_outputs], name=f"{model.name}_trainkit_probe")
        except Exception as err:  # a graph Keras cannot re-wrap: fall back to record() only
            self.reason = f"could not tap the model's layers ({err})"
            self.tapped = []
            self._tap_model = None
        self._num_taps = len(taps)

    def _hide(self, layers: Sequence[tuple[Any, str]], position: int) -> None:
        for layer, activation in layers:
            self._hidden.append((layer, activation))
            self._hooked_activation[id(layer)] = activation
            self._hooked_position.setdefault(id(layer), position)

    @tf.autograph.experimental.do_not_convert  # plain Python over layers; nothing to convert
    def __call__(self, x: Any, training: bool = True) -> tuple[Any, list[Tap]]:
        """The model's output for ``x`` and the step's taps (layers, recorded, output).

        Must run inside a ``tf.function`` being traced (or eagerly): taps are tensors of this call.
        """
        with collect() as recorded, self._hooks.recording() as hooked:
            if self._tap_model is None:
                y_pred = self.model(x, training=training)
                tapped: list[Tap] = []
            else:
                flat = keras.tree.flatten(self._tap_model(x, training=training))
                layer_tensors, outputs = flat[: self._num_taps], flat[self._num_taps :]
                y_pred = _unpack_singleton(keras.tree.pack_sequence_as(self._output_struct, outputs))
                tensors = iter(layer_tensors)
                tapped = []
                for name, activation in self.tapped:
                    if name in self._output_layers:
                        tensor = outputs[self._output_layers.index(name)]
                    else:
                        tensor = next(tensors)
                    tapped.append(Tap(name, tensor, activation))
        named = {id(tap.tensor) for tap in recorded}  # record()'s name wins over the layer's
        from_hooks = [(layer, tensor) for layer, tensor in hooked.outputs if id(tensor) not in named]
        ordered = self._in_model_order(tapped, from_hooks)
        taps = _with_outputs(_unique(ordered + recorded, self._layer_names), y_pred, self, ordered)
        moved = {id(tap.tensor) for tap in tapped if tap.name in self._channels_first}
        moved |= {id(tensor) for layer, tensor in from_hooks if _channels_first(layer)}
        if moved:
            outputs = {id(t) for t in keras.tree.flatten(y_pred)}  # the model output is read as it is
            taps = [dataclasses.replace(tap, tensor=_channels_last(tap.tensor)) if id(tap.tensor) in moved and id(tap.tensor) not in outputs
                    and stats.DEAD_FRACTION in stats.activation_kind(tap.activation) else tap for tap in taps]
        taps = [_with_mask(tap) for tap in taps]
        self.softmax_taps.update(tap.name for tap in taps if tap.activation == "softmax")
        self.sloped_taps.update(tap.name for tap in taps if tap.activation in NEGATIVE_SLOPED)
        self.smooth_taps.update(tap.name for tap in taps if tap.activation in SMOOTH_RELU)
        return y_pred, taps

    def _in_model_order(self, tapped: list[Tap], hooked: list[tuple[Any, tf.Tensor]]) -> list[Tap]:
        """The graph's taps and the hooked layers' outputs, in model order: a hooked layer sorts
        with the top-level layer it is inside, in the order the calls ran."""
        if not hooked:
            return tapped
        top = {name: position for position, name in enumerate(layer.name for layer in self._top_layers())}
        keyed = [((top.get(tap.name, 0), 0), tap) for tap in tapped]
        keyed += [((self._hooked_position[id(layer)], 1),
                   Tap(self._reported.get(id(layer), layer.name), tensor, self._hooked_activation[id(layer)]))
                  for layer, tensor in hooked]
        return [tap for _, tap in sorted(keyed, key=lambda item: item[0])]

    def _top_layers(self) -> list[Any]:
        base = self.model._functional if isinstance(self.model, keras.Sequential) else self.model
        return list(getattr(base, "layers", []))


#: Layers whose output keeps its input's layout: a channels-first input stays channels-first.
_LAYOUT_KEEPING = (keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU, keras.layers.PReLU,
                   keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout, keras.layers.BatchNormalization,
                   keras.layers.Identity)


def _channels_first_tensors(model: Any) -> set[int]:
    """The ids of ``model``'s graph tensors whose channel axis is the second: a channels-first
    layer's outputs, and what layout-keeping layers (a separate ``ReLU()``, ``Dropout``) make of
    them. A ``ReLU()`` after a ``Conv2D(data_format="channels_first")`` was read per pixel column."""
    found: set[int] = set()
    for depth in sorted(model._nodes_by_depth, reverse=True):  # inputs first: the deepest depth
        for node in model._nodes_by_depth[depth]:
            layer = node.operation
            inputs = keras.tree.flatten(node.input_tensors)
            if _channels_first(layer) or (isinstance(layer, _LAYOUT_KEEPING) and inputs and all(id(t) in found for t in inputs)):
                found.update(id(t) for t in node.outputs)
    return found


def _with_mask(tap: Tap) -> Tap:
    """``tap`` with the Keras mask its tensor carries, where it has one of the tensor's positions.

    Keras keeps the mask as the tensor's ``_keras_mask`` (set by the layer's ``__call__``, so a
    hooked call's output has it by the time the forward pass returns). Read while the step
    traces: a model without masks gets no op more. A channels-first tensor moved channels-last,
    or a mask of another shape, is read whole, as before.
    """
    mask = getattr(tap.tensor, "_keras_mask", None)
    rank = tap.tensor.shape.rank
    if mask is None or isinstance(mask, keras.KerasTensor) or rank is None or rank < 2 or mask.shape.rank != rank - 1:
        return tap
    if not mask.shape.is_compatible_with(tap.tensor.shape[:-1]):
        return tap
    return dataclasses.replace(tap, mask=mask)


def _channels_first(layer: Any) -> bool:
    """Whether ``layer`` (a ``Conv2D(data_format="channels_first")``...) puts its units on axis 1."""
    return getattr(layer, "data_format", None) == "channels_first"


def _channels_last(tensor: Any) -> Any:
    """A channels-first output ``[batch, channels, ...]`` as ``[batch, ..., channels]``.

    The statistics take the last axis as the units: a ReLU conv layer with 3 of its 5 channels
    never active, read channels-first, counted columns of pixels instead, dead_fraction 0.0.
    """
    rank = len(tensor.shape)
    return tensor if rank < 3 else tf.transpose(tensor, [0, *range(2, rank), 1])


def _unique(taps: Sequence[Tap], layer_names: Collection[str] = ()) -> list[Tap]:
    """Suffixes repeated names (a recording layer called twice) with ``_1``, ``_2``..., skipping
    ``layer_names`` (the model's layers': a repeated call is never named as another layer)."""
    names = stats.numbered((t.name for t in taps), taken=layer_names)
    return [dataclasses.replace(tap, name=name) for tap, name in zip(taps, names, strict=True)]


def _with_outputs(taps: list[Tap], y_pred: Any, probe: Probe, layer_taps: Sequence[Tap] = ()) -> list[Tap]:
    """Appends the model output(s); a recorded ``output`` overrides the inferred activation.

    An output that is some layer's tapped output (``layer_taps``: a subclassed model's last layer,
    read through a hook) takes that layer's activation where the graph tells none.
    """
    flat = keras.tree.flatten(y_pred)
    names = stats.output_names(len(flat))
    declared = {t.name: t.activation for t in taps if t.name in names}
    taps = [t for t in taps if t.name not in declared]
    inferred = probe.output_activations if len(probe.output_activations) == len(flat) else ["linear"] * len(flat)
    produced = {id(t.tensor): t.activation for t in layer_taps}
    outputs = {id(t) for t in flat}
    probe.output_layers.update(t.name for t in taps if id(t.tensor) in outputs)
    for name, tensor, activation in zip(names, flat, inferred, strict=True):
        if activation == "linear":
            activation = produced.get(id(tensor), activation)
        taps.append(Tap(name, tensor, declared.get(name, activation)))
    return taps


def reported_names(model: Any) -> dict[int, str]:
    """By ``id``, the name each nested layer is reported under when another layer of ``model``
    has its name: its path through the models and blocks it is in, ``bad/h`` (the model's own
    layers keep their names).

    Keras names a nested model's layers in that model alone: two blocks built by one function
    both hold a ``h``, and the second one's statistics read ``h_1``, "layer 'h' (its later
    call, h_1)", with the first one's initializers in its advice. A layer called twice is one
    layer, and stays numbered per call (``e1``, ``e1_1``).
    """
    paths: dict[int, str] = {}
    count: dict[str, set[int]] = {}

    def walk(layer: Any, prefix: str) -> None:
        for inner in layer._flatten_layers(include_self=False, recursive=False):
            if id(inner) not in paths:
                paths[id(inner)] = f"{prefix}{inner.name}"
                count.setdefault(inner.name, set()).add(id(inner))
                walk(inner, f"{prefix}{inner.name}/")

    walk(model, "")
    return {key: path for key, path in paths.items() if "/" in path and len(count[path.rsplit("/", 1)[-1]]) > 1}


def hidden_layers(layer: Any) -> list[tuple[Any, str]]:
    """``(layer, activation)`` of each activated layer inside ``layer`` (not itself), depth first.

    The search stops at an activated layer (its output is what it applies), at recurrent
    layers, whose inner layers run inside the recurrence's loop, and at a ``TimeDistributed``
    layer, which calls the layer it wraps once per time step: a wrapped block's ``Dense(relu)``
    was reported once per step (``dense``, ``dense_2``...), each over that step's rows only.
    """
    if isinstance(layer, keras.layers.TimeDistributed):
        return []
    found: list[tuple[Any, str]] = []
    for inner in layer._flatten_layers(include_self=False, recursive=False):
        activation = layer_activation(inner)
        if activation is not None:
            found.append((inner, activation))
        elif not isinstance(inner, keras.layers.RNN) and not hasattr(inner, "recurrent_activation"):
            found.extend(hidden_layers(inner))
    return found


def build_probe(model: keras.Model) -> Probe:
    """A :class:`Probe` for ``model`` (built, so its layers have outputs)."""
    return Probe(model)


def distinct_taps(taps: Sequence[Tap]) -> tuple[list[tuple[str, Any, str]], list[tuple[Tap, str]]]:
    """Splits taps into ``(name, tensor, activation)`` items to compute and aliases of them.

    The output layer's activation and the model output are usually the same tensor: it is
    computed once and reported under both names. Returns ``(items, [(tap, same_as_name), ...])``.
    """
    items: list[tuple[str, Any, str]] = []
    aliases: list[tuple[Tap, str]] = []
    for tap in taps:
        same = next((name for name, tensor, act in items if tensor is tap.tensor and act == tap.activation), None)
        if same is None:
            items.append((tap.name, tap.tensor, tap.activation))
        else:
            aliases.append((tap, same))
    return items, aliases


def _item_masks(taps: Sequence[Tap], items: Sequence[tuple[str, Any, str]]) -> list[Any] | None:
    """The mask of each of :func:`distinct_taps`'s items, or ``None`` when no tap has one."""
    if all(tap.mask is None for tap in taps):
        return None
    masks = {tap.name: tap.mask for tap in taps}
    return [masks[name] for name, _, _ in items]


def _fill_aliases(out: dict[str, tf.Tensor], aliases: Sequence[tuple[Tap, str]]) -> dict[str, tf.Tensor]:
    for tap, same in aliases:
        for stat in stats.activation_kind(tap.activation):
            out[stats.activation_stat_name(tap.name, stat)] = out[stats.activation_stat_name(same, stat)]
    return out


def tap_stats(taps: Sequence[Tap], *, xla: bool = False) -> dict[str, tf.Tensor]:
    """:func:`trainkit.stats.layers_activation_stats` of every tap, once per distinct tensor.

    Args:
        taps: The step's taps (from a :class:`Probe`).
        xla: Whether the step is XLA-compiled (picks the faster way to reduce; same values).
    """
    items, aliases = distinct_taps(taps)
    return _fill_aliases(stats.layers_activation_stats(items, xla=xla, masks=_item_masks(taps, items)), aliases)


def step_stats(
    taps: Sequence[Tap],
    grads: Sequence[Any],
    before: Sequence[Any] | None,
    after: Sequence[Any],
    names: Sequence[str],
    *,
    xla: bool = False,
    updates: Sequence[Any] | None = None,
) -> dict[str, tf.Tensor]:
    """:func:`trainkit.stats.step_stats` of a step: variables' statistics and every tap's."""
    items, aliases = distinct_taps(taps)
    masks = _item_masks(taps, items)
    return _fill_aliases(stats.step_stats(grads, before, after, names, items, xla=xla, updates=updates, masks=masks), aliases)
