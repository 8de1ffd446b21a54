"""Calls of a model that trainkit makes for itself, kept from moving the model's random streams.

Before training, trainkit calls a model eagerly to learn what it needs (a subclassed model's
variables, its outputs' count and names). ``model.fit`` makes no such call. A layer that draws
random numbers in every call, a VAE's sampling layer (``keras.random.normal(...,
seed=self.seed_generator)``) say, advanced its ``SeedGenerator`` at each of them, so the run drew
other numbers than ``model.fit`` with the same seeds: the Keras guide's VAE trained 3 epochs to a
loss 3e-3 away from Keras's. So do the compiled calls trainkit makes between steps: the
histograms' probe batch, the activity penalty measured before the first step and the recurrent
gradients' reach measured at the end (a run with a logdir ended 3e-2 away from ``model.fit``'s).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

#: The name Keras gives the state variable of every ``keras.random.SeedGenerator``.
SEED_STATE_NAME = "seed_generator_state"


@contextlib.contextmanager
def seed_states_kept(model: keras.Model) -> Iterator[None]:
    """Puts the model's seed generator states back as they were once the block ends.

    For calls made from Python outside any step only, eager or compiled (the states are read and
    assigned eagerly). A generator the call itself creates (a layer built by it) is left as the
    call left it.
    """
    states = [v for v in model.non_trainable_variables if v.name == SEED_STATE_NAME]
    saved = [v.numpy() for v in states]
    try:
        yield
    finally:
        for variable, value in zip(states, saved, strict=True):
            variable.assign(value)
