"""Histograms of a model's weights, gradients and activations on one fixed probe batch.

A :class:`~trainkit.trainer.Trainer` with ``histograms_every`` set holds a :class:`ProbeHistograms`
and asks it for bucket counts between compiled calls, to write them to TensorBoard. They are
computed on the same batch every time (the first training batch), so that a change from one
histogram to the next is the model's, not the data's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from trainkit import stats
from trainkit.loop import compile_function
from trainkit.seed_states import seed_states_kept
from trainkit.sources import ArraySource, unpack_batch
from trainkit.writers.tensorboard import histogram_tag

if TYPE_CHECKING:
    from trainkit.trainer import Trainer


def probe_batch(train: Any, batch_size: int) -> Any:
    """The fixed probe batch histograms are computed on: the first training batch of ``train``."""
    if isinstance(train, ArraySource):
        return train.head(batch_size)
    return train.first_batch()


class ProbeHistograms:
    """Counts the histogram buckets of one batch in a compiled call, updating nothing.

    Args:
        trainer: The trainer whose model, :meth:`~trainkit.trainer.Trainer.probe` and
            :meth:`~trainkit.trainer.Trainer.compute_loss` (overrides included) the histograms
            describe.

    Attributes:
        batch: The probe batch (:func:`probe_batch`); ``None``: no histograms to write.
        fn: The compiled histogram step, traced on the first :meth:`buckets`.
        tags: The TensorBoard tag of each row :attr:`fn` returns, in order.
    """

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer
        self.batch: Any = None
        self.fn: Any = None
        self.tags: list[str] = []

    def reset(self) -> None:
        """Traces the histogram step again at the next :meth:`buckets` (the trainable variables changed)."""
        self.fn = None

    def buckets(self) -> dict[str, np.ndarray]:
        """The bucket counts of every weight, gradient and activation, by TensorBoard tag."""
        if self.fn is None:
            self.fn = self._build()
        # A layer that draws in inference mode too (a VAE's sampling layer) would advance its
        # seed generator at every histogram: a run with a logdir ended 3e-2 away from model.fit's.
        with seed_states_kept(self._trainer.model):
            buckets = self.fn(self.batch).numpy()
        return dict(zip(self.tags, buckets, strict=True))

    def _build(self) -> Any:
        """Compiles gradients and activations of one batch, without updating any state.

        ``training=False``: no dropout draws, no BatchNormalization statistics updates, and
        :meth:`buckets` puts the seed generators' states back, so writing histograms never changes
        the training run.
        """
        trainer = self._trainer
        variables = trainer.model.trainable_variables
        names = stats.variable_names(variables, trainer.model.name)

        def histogram_step(batch: Any) -> tf.Tensor:
            x, y, sample_weight = unpack_batch(batch)
            with tf.GradientTape() as tape:
                y_pred, taps = trainer.probe(x, training=False)
                loss = trainer._evaluation_loss(x, y, y_pred, sample_weight)
                # Scaled as the training step scales it (mixed_float16's LossScaleOptimizer), then
                # divided back: unscaled, the float16 backward pass flushed gradients under 6e-8 to
                # 0, and a layer whose step statistics showed a gradient had a histogram of zeros.
                scaled = trainer.optimizer.scale_loss(loss)
            trainer.pop_logged_scalars()  # scalars logged by compute_loss belong to no step here
            gradients = tape.gradient(scaled, variables)
            if scaled is not loss:
                gradients = stats.unscaled_gradients(gradients, trainer.optimizer.scale_loss(tf.ones_like(loss)))
            tensors: dict[str, Any] = {}
            for name, gradient in zip(names, gradients, strict=True):
                if gradient is not None:
                    tensors[histogram_tag("gradients", name)] = stats.histogram_entries(gradient)
            for tap in taps:
                # Masked (padding) positions as NaN, which histograms leave out: at 72% padding the
                # histogram was mostly the pad's one output per unit (0 for a ReLU: "piled up at 0").
                tensors[histogram_tag("activations", tap.name)] = tap.tensor if tap.mask is None else tf.where(
                    tf.expand_dims(tf.cast(tap.mask, tf.bool), -1), tap.tensor, tf.constant(np.nan, tap.tensor.dtype))
            # The weights too: read in the same call rather than one eager read each.
            for name, variable in zip(names, variables, strict=True):
                tensors[histogram_tag("weights", name)] = stats.read_variable(variable)
            # Counted here: only 30 buckets a tensor come back to the host, as one array.
            self.tags = list(tensors)
            return stats.histograms(list(tensors.values()), xla=xla)

        # Where the training step compiled with XLA, the counting XLA compiles well (per-tensor
        # extremes, one segment sum; the probe batch's shapes are fixed), but run by TensorFlow's
        # kernels, not compiled by XLA: its compile took 1.9 s of the first histogram of the
        # 10-64-32-1 MLP and 2.8 s of the 8x256 MLP's, once a trainer, to save ~0.2 and ~4 ms a
        # call (0.54 against 0.70 ms, 4.4 against 8.6): once an epoch, repaid after ~10,000 and
        # ~500 epochs. A short fit with a logdir under XLA paid it whole.
        xla = trainer._train_loop is not None and trainer._train_loop.jit_compile
        return compile_function(histogram_step, reduce_retracing=not xla)
