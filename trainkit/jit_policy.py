"""When trainkit compiles a model's steps with XLA: the ``jit_compile="auto"`` rule.

XLA fuses a dense model's step into a few kernels and runs it several times faster on a CPU, but
made a small Conv2D model ~30x slower there, and its compile time (1.2-5 s for five dense models)
only pays off in runs long enough. On a GPU it is always taken.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from trainkit.findings import Finding
from trainkit.sources import ArraySource

# Layers XLA compiles well on CPU. XLA made a small Conv2D model ~30x slower on CPU, so `auto`
# enables it only for models made of these (or on a GPU). A nested Sequential or Functional model
# only wires its layers, which the check sees too: a Dense stack inside one is dense-only.
_XLA_FRIENDLY_LAYERS = frozenset(
    {"InputLayer", "Dense", "Dropout", "Activation", "BatchNormalization", "LayerNormalization",
     "Flatten", "Reshape", "ReLU", "LeakyReLU", "Softmax", "ELU", "PReLU", "GaussianNoise",
     "AlphaDropout", "Identity", "Add", "Concatenate", "Multiply", "Rescaling", "Normalization",
     "Sequential", "Functional"}
)


#: Seconds of steps XLA must save on a CPU before ``auto`` pays its compile time for them: a
#: trainer's extra compile measured 1.2-5 s for five dense models (README, "How the loop works").
XLA_REPAY_SECONDS = 2.0


def xla_repays(model: keras.Model, planned_steps: int | None, batch_rows: int) -> bool:
    """Whether XLA likely repays its compile time within ``planned_steps`` CPU steps.

    XLA saved 216-320 us a step on small MLPs and 1.3-2.8 ms on ones with 0.5-0.7M parameters
    (measured, statistics on), roughly 200 us plus 30 ps a parameter and batch row; no plan
    (``None``, as the benchmarks ask) counts as a long run. (A fit on a dataset of unknown length
    plans 0 steps: see :func:`fit_plan`.)
    """
    if planned_steps is None:
        return True
    try:
        parameters = model.count_params()
    except ValueError:  # not built yet
        parameters = 0
    saved_per_step = 200e-6 + 30e-12 * parameters * batch_rows
    return planned_steps * saved_per_step >= XLA_REPAY_SECONDS


def _layers(model: keras.Model) -> list[Any]:
    return list(model._flatten_layers(include_self=False) if hasattr(model, "_flatten_layers") else model.layers)


def xla_obstacle(model: keras.Model) -> str | None:
    """Why XLA cannot compile ``model``'s step, or ``None``: a layer Keras marks
    ``supports_jit = False`` (``StringLookup``, ``TextVectorization``, ``Hashing``, the lookups,
    some image augmentations; ``model.fit`` turns XLA off for them), or a text input.

    XLA's failure on them is a TensorFlow ``InvalidArgumentError`` when the step first runs (a
    streamed step's too, where ``auto``'s fall-back cannot retry), so they are known up front.
    """
    for layer in _layers(model):
        if getattr(layer, "supports_jit", True) is False:
            return f"its {type(layer).__name__} layer '{layer.name}' cannot be compiled with XLA (Keras marks it supports_jit=False)"
    try:
        inputs = tf.nest.flatten(model.inputs or [])
    except (AttributeError, ValueError):  # a subclassed model: inputs unknown until it is called
        inputs = []
    if any("string" in str(getattr(t, "dtype", "")) for t in inputs):
        return "it takes text (tf.string) inputs, which XLA cannot compile"
    return None


def choose_jit_compile(model: keras.Model, planned_steps: int | None = None, batch_rows: int = 32) -> bool:
    """The ``jit_compile="auto"`` rule: never for a model XLA cannot compile (:func:`xla_obstacle`);
    XLA on a GPU; on a CPU, for dense-only models, in runs long enough to repay XLA's compile time
    (:func:`xla_repays`; ``planned_steps=None``: a long run, as the benchmarks measure)."""
    if xla_obstacle(model) is not None:
        return False
    if tf.config.list_physical_devices("GPU"):
        return True
    return all(type(layer).__name__ in _XLA_FRIENDLY_LAYERS for layer in _layers(model)) and xla_repays(model, planned_steps, batch_rows)


def fit_plan(train: Any, batch_size: int, epochs: int) -> tuple[int, int]:
    """``(steps, rows a step)`` a fit plans: ``steps`` is 0 for a dataset of unknown size.

    Its length is unknown until its first epoch ends, and a pipeline whose length TensorFlow
    cannot tell (``filter``, TFRecord files, a generator) is what its steps wait on: a small MLP
    with statistics on a filtered dataset of 312 batches ran 0.30-0.36 s an epoch with XLA and
    0.31-0.37 s without, while XLA's compile held its first epoch 13.9 s against 1.5 s (500
    TFRecord batches: 3.9 s against 0.9 s). So such a fit counts as short: no XLA under ``auto``.
    """
    if isinstance(train, ArraySource):
        return epochs * -(-train.rows // batch_size), batch_size
    rows = tf.nest.flatten(train.batch_spec())[0].shape
    batch_rows = rows[0] if rows.rank and rows[0] is not None else 32
    return (0 if train.batches is None else epochs * train.batches), batch_rows


#: The info finding of a run whose ``jit_compile="auto"`` chose XLA and fell back without it.
XLA_FALLBACK = "xla-fallback"


def xla_fallback_note(failure: str) -> Finding:
    """The ``xla-fallback`` note: ``auto`` took XLA, which could not compile the step (``failure``,
    XLA's first line), so the run trains without it. Silent, a run simply slower than XLA's
    left the user guessing why."""
    return Finding(
        code=XLA_FALLBACK, severity="info",
        message=f"jit_compile='auto' chose XLA, which cannot compile this model's training step ({failure}); "
                "it trains without XLA, as model.fit's 'auto' does.",
        advice="Nothing to fix. jit_compile=False (in a recipe, training.jit_compile: false) skips the attempt and its "
               "compile time; replacing the op XLA lacks (named above) lets XLA compile the step.",
        evidence={"xla_error": failure[:300]})
