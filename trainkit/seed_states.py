"""Calls of a model that trainkit makes for itself, kept from moving the model's random streams.

Before training, trainkit calls a model eagerly to learn what it needs (a subclassed model's
variables, its outputs' count and names). ``model.fit`` makes no such call. A layer that draws
random numbers in every call, a VAE's sampling layer (``keras.random.normal(...,
seed=self.seed_generator)``) say, advanced its ``SeedGenerator`` at each of them, so the run drew
other numbers than ``model.fit`` with the same seeds: the Keras guide's VAE trained 3 epochs to a
loss 3e-3 away from Keras's. So do the compiled calls trainkit makes between steps: the
histograms' probe batch, the activity penalty measured before the first step and the recurrent
gradients' reach measured at the end (a run with a logdir ended 3e-2 away from ``model.fit``'s).
A ``stateful=True`` recurrent layer's kept states are put back too: the histograms' call on the
probe batch at each epoch's end moved them on, so the next epoch started from other states than
``model.fit``'s (an LSTM(4) on 32 rows at batch 8: epoch 2's loss 0.1627 against 0.1567, 3.8%).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
from keras import tree

#: The name Keras gives the state variable of every ``keras.random.SeedGenerator``.
SEED_STATE_NAME = "seed_generator_state"


@contextlib.contextmanager
def seed_states_kept(model: keras.Model) -> Iterator[None]:
    """Puts the model's seed generator states back as they were once the block ends.

    For calls made from Python outside any step only, eager or compiled (the states are read and
    assigned eagerly). A generator the call itself creates (a layer built by it) is left as the
    call left it; the states a stateful layer's first call creates start from zeros again, as
    ``model.fit``'s first step finds them.
    """
    states = [v for v in model.non_trainable_variables if v.name == SEED_STATE_NAME] + _recurrent_states(model)
    saved = [v.numpy() for v in states]
    unbuilt = [layer for layer in stateful_recurrent_layers(model) if layer.states is None]
    try:
        yield
    finally:
        for variable, value in zip(states, saved, strict=True):
            variable.assign(value)
        # Built by this call (an unbuilt Sequential's or subclassed model's), then moved on by it:
        # training started from the states the call left where model.fit's starts from zeros.
        for layer in unbuilt:
            layer.reset_state()


def stateful_recurrent_layers(model: keras.Model) -> list[keras.layers.RNN]:
    """The model's ``stateful=True`` recurrent layers, nested ones (a ``Bidirectional``'s halves) included."""
    return [layer for layer in model._flatten_layers(include_self=False) if getattr(layer, "stateful", False) and isinstance(layer, keras.layers.RNN)]


def _recurrent_states(model: keras.Model) -> list[keras.Variable]:
    """The state variables of the model's ``stateful=True`` recurrent layers (see
    :func:`stateful_recurrent_layers`); Keras keeps them out of ``non_trainable_variables``."""
    states: list[keras.Variable] = []
    for layer in stateful_recurrent_layers(model):
        if layer.states is not None:
            states.extend(v for v in tree.flatten(layer.states) if isinstance(v, keras.Variable))
    return states
