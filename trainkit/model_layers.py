"""Notices a model whose layers changed after a Trainer was made for it.

A notebook cell may ``model.pop()`` / ``model.add(...)`` (or give a subclassed model a new layer
attribute) and run ``trainer.fit`` again. The trainer's compiled steps call the layers they were
traced with, so a layer without weights added in between (a ``Rescaling``, an ``Activation``) was
never run: ``fit`` went on training, and ``evaluate`` and ``predict`` went on measuring, the model
as it was, in silence. Its compatibility checks, output heads and statistics were made for those
layers too.
"""

from __future__ import annotations

import keras

from trainkit.errors import ArgumentError


def layer_ids(model: keras.Model) -> tuple[int, ...]:
    """The identities of every layer inside ``model``, nested ones included, in order.

    Input layers are left out: building a Sequential model adds one, which changes nothing it
    computes.
    """
    flatten = getattr(model, "_flatten_layers", None)
    layers = flatten(include_self=False) if flatten is not None else model.layers
    return tuple(id(layer) for layer in layers if not isinstance(layer, keras.layers.InputLayer))


def trainable_layer_ids(model: keras.Model) -> tuple[int, ...]:
    """The identities of the layers inside ``model`` (as :func:`layer_ids`) that are trainable now."""
    flatten = getattr(model, "_flatten_layers", None)
    layers = flatten(include_self=False) if flatten is not None else model.layers
    return tuple(id(layer) for layer in layers if layer.trainable and not isinstance(layer, keras.layers.InputLayer))


def refuse_changed_layers(known: tuple[int, ...], model: keras.Model) -> None:
    """Refuses to train or evaluate ``model`` with a trainer made for other layers.

    Args:
        known: :func:`layer_ids` of the model when the trainer first had it built.
        model: The trainer's model now.

    Raises:
        ArgumentError: ``model-changed`` when its layers are not those any more.
    """
    if layer_ids(model) != known:
        raise ArgumentError("model-changed", "The model's layers changed after this Trainer was made for it (model.pop(), model.add(...), a layer "
                                             "replaced): its compiled steps, checks and statistics are those of the layers it had, so it would "
                                             "go on training and evaluating the old model. Make a new Trainer for the changed model "
                                             "(Trainer(model, optimizer='adam', ...)), as Keras needs model.compile() again.")
