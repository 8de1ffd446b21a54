"""How far back in a sequence the gradient of a recurrent layer reaches.

A recurrent layer that reads a long sequence into one final state (``return_sequences=False``)
learns from step ``t`` only through the gradient that flows back to it from the end, multiplied by
one step's Jacobian per step in between. Over 150 steps that product vanishes (a fresh SimpleRNN:
the gradient at the first tenth of the steps ~1e-16 of the last tenth's; a fresh LSTM ~1e-11),
and the model can learn only from the last few steps: a label that depends on the start of the
sequence stays at chance. The layer-by-layer ``vanishing-gradients`` rule cannot see this, since
the recurrent kernel's gradient sums every step's.

:class:`TimeGradients` measures it after training, on the probe batch (the first training batch,
as the histograms use): the gradient of the loss with respect to each such layer's input
sequence, its norm per row and step, compared between the first and the last tenth of each row's
real steps (masked steps, whose gradient is exactly 0, left out). The training step is unchanged:
this is one forward and backward pass of one batch, at the end of ``fit``, for models that have
such a layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from trainkit.loop import compile_function
from trainkit.seed_states import seed_states_kept
from trainkit.sources import unpack_batch

if TYPE_CHECKING:
    from trainkit.trainer import Trainer

#: Sequences shorter than this are not judged: over a few steps the gradient cannot vanish by much.
MIN_STEPS = 20
#: A step's gradient is "reached" while it is at least this share of the last steps'.
REACH_SHARE = 1e-2
_MISSING = object()


def sequence_readers(model: Any) -> list[Any]:
    """The model's own recurrent layers that return only their final state: the ones whose
    gradient must travel back through every step.

    Not a ``Bidirectional`` one: its backward half ends at the first step, so the gradient is
    strong at both ends and fades in the middle, which a first-to-last ratio cannot see. A
    ``go_backwards`` layer reads the sequence from its end: its steps are compared in the order
    it reads them.
    """
    # Not a stateful one either: measuring it would run the batch through its kept states and
    # move them on, after the fit. Nested models' too (an encoder block holding the LSTM was not
    # measured), but not the halves inside a Bidirectional.
    return [layer for layer in _layers_outside_rnns(model)
            if isinstance(layer, keras.layers.RNN) and not layer.return_sequences and not layer.stateful]


def _layers_outside_rnns(layer: Any) -> list[Any]:
    """``layer``'s sublayers at every depth, but not inside a recurrent layer or a
    ``Bidirectional`` (its cells and halves are measured, if at all, as the layer)."""
    found = []
    for child in layer._flatten_layers(include_self=False, recursive=False):
        found.append(child)
        if not isinstance(child, keras.layers.RNN | keras.layers.Bidirectional):
            found.extend(_layers_outside_rnns(child))
    return found


def reach(norms: np.ndarray) -> dict[str, float] | None:
    """The first-to-last ratio and the reach of one layer's gradient norms, ``[rows, steps]``.

    Each row's real steps are those whose gradient is not exactly 0 (a masked step's is), and
    each row is judged over its own real steps: rows with fewer than :data:`MIN_STEPS` of them
    are left out (one short text among long ones of a padded batch left nothing to judge), and a
    long row is not cut to a short one's length (texts of 22 to 80 tokens were judged over 22).

    Returns:
        ``{"steps", "ratio", "reach"}``, medians over the rows judged: the real steps, the mean
        norm at the first tenth of them over the mean at the last tenth, and how many steps back
        from the end the norm stays above :data:`REACH_SHARE` of the last tenth's; or ``None``
        when no row with finite values has :data:`MIN_STEPS` real steps.
    """
    rows = [row[row > 0] for row in np.asarray(norms, dtype=np.float64) if np.isfinite(row).all()]
    rows = [row for row in rows if row.size >= MIN_STEPS]
    if not rows:
        return None
    steps, ratios, reaches = [], [], []
    for row in rows:
        tenth = max(1, row.size // 10)
        last = row[-tenth:].mean()
        steps.append(row.size)
        ratios.append(row[:tenth].mean() / last)
        below = np.flatnonzero(row[::-1] / last < REACH_SHARE)
        reaches.append(below[0] if below.size else row.size)
    return {"steps": int(np.median(steps)), "ratio": float(np.median(ratios)), "reach": int(np.median(reaches))}


class TimeGradients:
    """Measures :func:`reach` for every :func:`sequence_readers` layer of a trainer's model.

    Args:
        trainer: The trainer whose model and :meth:`~trainkit.trainer.Trainer.compute_loss`
            (overrides included) the gradients come from.

    Attributes:
        layers: The layers measured (empty: nothing to measure).
        batch: The batch to measure on (the probe batch); ``None`` until ``fit`` sets it.
    """

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer
        self.layers = sequence_readers(trainer.model)
        self.batch: Any = None
        self._fn: Any = None

    def measure(self) -> list[dict[str, Any]]:
        """``{"layer", "kind", "go_backwards", "steps", "ratio", "reach", "padded_tail"}`` of each
        layer whose sequence is long enough (``kind``: the recurrent layer's class; ``steps`` in
        the order the layer reads them; ``padded_tail``: see :func:`padded_tail`)."""
        if not self.layers or self.batch is None:
            return []
        if self._fn is None:
            self._fn = compile_function(self._norms, jit_compile=False, reduce_retracing=True)
        with seed_states_kept(self._trainer.model):  # a call model.fit does not make (a later fit goes on from them)
            measured_norms = self._fn(self.batch)
        found = []
        for layer, read in zip(self.layers, measured_norms, strict=True):
            if read is None:
                continue
            norms, tails = read
            measured = reach(np.asarray(norms))
            if measured is not None:
                found.append({"layer": layer.name, "kind": type(layer).__name__, "go_backwards": bool(layer.go_backwards), **measured,
                              "padded_tail": padded_tail(np.asarray(tails))})
        return found

    def _norms(self, batch: Any) -> list[tuple[tf.Tensor, tf.Tensor] | None]:
        """Per row and step, the norm of the loss's gradient at each layer's input sequence; and
        per row, how many of the last steps the layer reads, unmasked, repeat its last step."""
        trainer = self._trainer
        x, y, sample_weight = unpack_batch(batch)
        inputs: dict[int, tf.Tensor] = {}
        masks: dict[int, tf.Tensor | None] = {}
        with tf.GradientTape() as tape, _watching_inputs(self.layers, tape, inputs, masks):
            y_pred = trainer.model(x, training=False)
            loss = trainer._evaluation_loss(x, y, y_pred, sample_weight)
            # Scaled as the training step scales it (mixed_float16's LossScaleOptimizer; the ratios
            # are the same), so that no more of a float16 gradient underflows than in training.
            loss = trainer.optimizer.scale_loss(loss)
        trainer.pop_logged_scalars()  # scalars logged by compute_loss belong to no step here
        found = [inputs.get(id(layer)) for layer in self.layers]
        gradients = tape.gradient(loss, [t for t in found if t is not None])
        by_layer = iter(gradients)
        out: list[tuple[tf.Tensor, tf.Tensor] | None] = []
        for layer, tensor in zip(self.layers, found, strict=True):
            gradient = next(by_layer) if tensor is not None else None
            if gradient is None or gradient.shape.rank != 3:
                out.append(None)
                continue
            norms = tf.norm(tf.cast(gradient, tf.float32), axis=-1)
            # reach() reads a norm of exactly 0 as a masked step: a real step's gradient that
            # underflowed to 0 (float16 under 6e-8: a 50-step SimpleRNN under mixed_float16 was
            # judged on its last 23 steps) is the smallest float32 instead, and only the steps
            # the layer's mask leaves out are 0.
            norms = tf.maximum(norms, np.finfo(np.float32).tiny)
            mask = masks.get(id(layer))
            norms = norms if mask is None else tf.where(tf.cast(mask, tf.bool), norms, 0.0)
            # In the order the layer reads the steps: a go_backwards layer's last step is the first.
            read = tf.reverse(tensor, axis=[1]) if layer.go_backwards else tensor
            out.append((tf.reverse(norms, axis=[1]) if layer.go_backwards else norms, _repeated_tail(read, mask is None)))
        return out


def _repeated_tail(sequences: tf.Tensor, unmasked: bool) -> tf.Tensor:
    """Per row of ``[rows, steps, features]``, how many of its last steps equal its last one (at
    least 1); 0 for every row when a mask leaves the padding out (no step of it is read)."""
    if not unmasked:
        return tf.zeros(tf.shape(sequences)[:1], tf.int32)
    same = tf.reduce_all(tf.equal(sequences, sequences[:, -1:, :]), axis=-1)
    return tf.reduce_sum(tf.math.cumprod(tf.cast(tf.reverse(same, axis=[1]), tf.int32), axis=1), axis=1)


def padded_tail(tails: np.ndarray) -> int:
    """The padding a layer reads last, unmasked: the median over the rows of the steps after the
    last real one that repeat one vector (an unmasked ``Embedding``'s row of id 0 after
    ``pad_sequences(padding="post")``), 0 when most rows have none.

    A row's last step repeated alone (1) is no padding: a real step is its own last.
    """
    if tails.size == 0:
        return 0
    return int(np.median(np.where(tails > 1, tails, 0)))


@contextlib.contextmanager
def _watching_inputs(layers: Sequence[Any], tape: tf.GradientTape, inputs: dict[int, tf.Tensor],
                     masks: dict[int, tf.Tensor | None]) -> Iterator[None]:
    """While tracing, each layer's ``call`` (on the instance) watches and keeps its input sequence
    (and in ``masks`` the mask it was called with, ``None`` without), by the layer's ``id``.

    Keras has no forward hooks; the layer's own ``call`` is put back afterwards, so nothing of
    this stays on the model.
    """
    saved = []
    for layer in layers:
        original = layer.call

        def watched(sequences: Any, *args: Any, _layer: Any = layer, _call: Any = original, **kwargs: Any) -> Any:
            if isinstance(sequences, tf.Tensor) and sequences.dtype.is_floating:
                tape.watch(sequences)
                inputs[id(_layer)] = sequences
                masks[id(_layer)] = kwargs.get("mask")
            return _call(sequences, *args, **kwargs)

        saved.append((layer, layer.__dict__.get("call", _MISSING)))
        # object.__setattr__: Keras's own would track the function as layer state.
        object.__setattr__(layer, "call", watched)
    try:
        yield
    finally:
        for layer, own in saved:
            if own is _MISSING:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", own)
