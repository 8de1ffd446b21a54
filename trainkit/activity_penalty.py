"""The activity penalties of a model, for the diagnosis.

A layer's ``activity_regularizer`` adds a penalty on its outputs to the loss at every step. The
diagnosis separates the penalties from the loss on the data (``regularization-dominates``, the
first losses against the chance level, the curve rules); weight penalties can be read from the
weights at any time, but an activity penalty exists only inside a call on data, where
``model.losses`` holds it as a tensor of the step's graph.

So the steps measure it: :func:`activity_sum` is added to an epoch mean per split (the
trainer's ``_penalty_trackers``, read with the loss and kept out of the logs), which gives the
exact penalty in each epoch's training and validation loss. Before the first step,
:class:`ActivityPenalty` runs the model once on the first training rows (inference mode: no
dropout, no BatchNormalization update) for the penalty the first losses hold. Both happen only
for models that have such a penalty.

Penalties a layer adds with ``add_loss`` in its own ``call`` (a VAE's KL term) are left out: they
are part of what the model learns, not a regularizer whose strength advice could name. Their
level is unknown, so a loss that holds them has no chance level (:func:`call_loss_layers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from trainkit.loop import compile_function
from trainkit.seed_states import seed_states_kept
from trainkit.sources import ArraySource, unpack_batch

if TYPE_CHECKING:
    from trainkit.trainer import Trainer


#: The name of the trackers of the activity penalties' epoch means (kept out of the logs).
ACTIVITY_PENALTY = "trainkit_activity_penalty"


def activity_sum(layers: Sequence[Any]) -> tf.Tensor:
    """The activity penalties ``layers`` added in the call being traced, summed in float32.

    Keras adds each as the layer's own loss (divided by the batch's rows); a layer's losses hold
    those of its latest call, so this reads the penalties of the step that just called the model.
    """
    penalties = [tf.reduce_sum(tf.cast(loss, tf.float32)) for layer in layers for loss in layer._get_own_losses()]
    return tf.add_n(penalties) if penalties else tf.constant(0.0)


def activity_layers(model: Any) -> list[Any]:
    """The layers (nested ones too) with an ``activity_regularizer``; none when the model has a
    stateful layer, whose kept states one more call would move on."""
    layers = list(model._flatten_layers(include_self=False))
    if any(getattr(layer, "stateful", False) for layer in layers):
        return []
    return [layer for layer in layers if getattr(layer, "activity_regularizer", None) is not None]


def call_loss_layers(model: Any) -> tuple[str, ...]:
    """The layers (the model itself too) that added a loss with ``add_loss`` in the call being
    traced, not as an ``activity_regularizer``: a VAE's KL term, a penalty written by hand.

    Read from the layers' own losses when a step is traced (Python, nothing per step): such a
    term is in the loss at a level trainkit cannot tell, so the loss has no chance level. Keras's
    ``_flatten_layers`` and ``_get_own_losses`` are not public API, and this runs in the step of
    every model with a loss term (a ``kernel_regularizer``'s too): without them it reads the model
    and its ``layers`` and finds no such term, rather than failing the step it diagnoses.
    """
    flatten = getattr(model, "_flatten_layers", None)
    layers = flatten(include_self=True) if callable(flatten) else [model, *getattr(model, "layers", ())]
    return tuple(layer.name for layer in layers if _own_losses(layer) and getattr(layer, "activity_regularizer", None) is None)


def _own_losses(layer: Any) -> list[Any]:
    """The losses ``layer`` itself added in its latest call (none where Keras does not say)."""
    own = getattr(layer, "_get_own_losses", None)
    return list(own()) if callable(own) else []


#: Rows the penalty at the start is measured on at most (a batch of 32's penalty was 10% off the
#: mean of 204 rows: 3.88 against 3.54), and in batches of training size at most (one call on
#: them holds their activations at once: a large image model trains on small batches).
START_ROWS = 1024
START_BATCHES = 8


def start_batch(train: Any, batch_size: int) -> Any:
    """The rows :class:`ActivityPenalty` measures on: the first rows of in-memory data (up to
    :data:`START_ROWS`, and :data:`START_BATCHES` batches), a dataset's first batch."""
    if isinstance(train, ArraySource):
        return train.head(max(batch_size, min(START_ROWS, START_BATCHES * batch_size)))
    return train.first_batch()


class ActivityPenalty:
    """Measures the activity penalties of a trainer's model on a batch, before the first step.

    Attributes:
        layers: The layers with an activity penalty (:func:`activity_layers`).
        batch: The batch to measure on (:func:`start_batch`); ``None`` until ``fit`` sets it.
    """

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer
        self.layers = trainer._activity_layers
        self.batch: Any = None
        self._fn: Any = None

    def measure(self) -> float:
        """The summed activity penalties on the batch now (0.0 without such layers or a batch)."""
        if not self.layers or self.batch is None:
            return 0.0
        if self._fn is None:
            self._fn = compile_function(self._penalty, jit_compile=False, reduce_retracing=True)
        with seed_states_kept(self._trainer.model):  # a call model.fit does not make (a sampling layer draws in it)
            return float(np.asarray(self._fn(self.batch)))

    def _penalty(self, batch: Any) -> tf.Tensor:
        x = unpack_batch(batch)[0]
        self._trainer.model(x, training=False)
        return activity_sum(self.layers)
