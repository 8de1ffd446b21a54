"""Checks of what a traced ``train_step`` (and its ``compute_loss``) returns, made before training.

The trainer traces its step once before the first epoch, which tells the names of the scalars
each step returns. A step without ``"loss"`` is refused (the epoch loss, the NaN stop and the
diagnosis read it); a step that returns fewer statistics than ``statistics=True`` promises gets
an info finding, as the diagnosis rules that read them would otherwise judge nothing silently.
A ``compute_loss`` returning a loss per example is refused as the step is traced.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from trainkit import probes, stats
from trainkit.errors import ArgumentError, ModelAttributeError, TrainkitError
from trainkit.findings import Finding

#: The info finding of a run whose statistics are fewer than ``statistics=True`` promises.
STATISTICS_MISSING = "statistics-missing"
#: What the epoch logs put before the names of the validation's values.
VALIDATION_PREFIX = "val_"


#: The step methods a subclass overrides, and how many positional arguments trainkit calls each with.
_STEP_CALLS = {"train_step": 1, "test_step": 1, "compute_loss": 4, "update_metrics": 4, "apply_gradients": 3}


def check_step_signatures(trainer: Any, base: type) -> None:
    """Refuses an overridden step method that cannot take the arguments trainkit calls it with.

    ``compute_loss(self, y, y_pred)`` (Keras 2's spelling) failed in the first trace with
    "takes 3 positional arguments but 5 were given", naming a converted ``tf__compute_loss``.

    Raises:
        ArgumentError: ``bad-step-signature``, with the signature to write.
    """
    for name, count in _STEP_CALLS.items():
        method = getattr(type(trainer), name, None)
        if method is None or method is getattr(base, name):
            continue
        try:
            inspect.signature(getattr(trainer, name)).bind(*[None] * count)
        except TypeError:
            wanted = f"{name}({_plain(inspect.signature(getattr(base, name)))})"
            raise ArgumentError("bad-step-signature", f"{type(trainer).__name__}.{name}({_plain(inspect.signature(method))}) cannot take the "
                                                      f"{count} argument{'s' if count > 1 else ''} trainkit passes it: write it as {wanted}.") from None
        except ValueError:  # no signature to read (a builtin): let the call tell
            continue


#: The model's own step methods model.fit calls, and the Trainer's methods that stand in for
#: each in a subclass, the first being where to move it (a ported train_step may call the model's
#: compute_loss itself). Keras's steps call compute_metrics for the metrics they log: a model's
#: that measured its logits' sigmoid logged another accuracy than trainkit's, in silence. Both
#: steps call it, so a train_step alone does not port it (the default test_step still measured
#: the logits: val_binary_accuracy 0.70 where model.fit's was 0.65); a tuple is methods all needed.
_MODEL_STEPS: dict[str, tuple[str | tuple[str, ...], ...]] = {
    "train_step": ("train_step",), "test_step": ("test_step",), "compute_loss": ("compute_loss", "train_step"),
    "compute_metrics": ("update_metrics", ("train_step", "test_step"))}


def check_model_step_overrides(trainer: Any, base: type) -> None:
    """Refuses a model whose own ``train_step``, ``test_step``, ``compute_loss`` or
    ``compute_metrics`` trainkit would never call.

    ``model.fit`` calls a ``keras.Model`` subclass's overrides; trainkit's steps are the Trainer's,
    so a model's ``compute_loss`` adding a penalty trained without it, in silence (its losses and
    weights were those of the model without the penalty). A Trainer subclass that overrides the
    same step (the model's ported to the trainer) replaces it and is not refused.

    Raises:
        ArgumentError: ``model-step-ignored``, naming the method and where to move it.
    """
    model_class = type(trainer.model)
    for name, replaced_by in _MODEL_STEPS.items():
        if getattr(model_class, name, None) is getattr(keras.Model, name):
            continue
        if any(all(getattr(type(trainer), own) is not getattr(base, own) for own in ((ported,) if isinstance(ported, str) else ported))
               for ported in replaced_by):
            continue
        port = str(replaced_by[0])  # the Trainer's method to write it as (compute_metrics: update_metrics)
        raise ArgumentError("model-step-ignored", f"{model_class.__name__} overrides keras.Model.{name}, which model.fit calls but trainkit never does "
                                                  f"(it trains with the Trainer's steps, without model.compile): move it to a Trainer subclass, "
                                                  f"class MyTrainer(Trainer) with {port}({_plain(inspect.signature(getattr(base, port)))}) and "
                                                  f"self.model where the model's had self, and train with MyTrainer(model, ...).")


#: What a step ported from a keras.Model writes on a trainer for the model's attributes it read
#: from ``self`` (each was a bare "object has no attribute" AttributeError from inside the trace).
_TRAINER_SPELLINGS = {
    "compiled_loss": "self.compute_loss(y=y, y_pred=y_pred, sample_weight=sample_weight) (the Trainer's loss plus the model's penalties, "
                     "as Keras 3's compute_loss)",
    "compiled_metrics": "self.update_metrics(y, y_pred, sample_weight, loss), which feeds the epoch's loss and the metrics given to the Trainer "
                        "(self.metrics)",
    "compute_metrics": "self.update_metrics(y, y_pred, sample_weight, loss), which feeds the epoch's loss and the metrics given to the Trainer, "
                       "and return {m.name: m.result() for m in self.metrics}",
    "get_metrics_result": "{m.name: m.result() for m in self.metrics}",
    **{name: f"self.model.{name}" for name in ("trainable_variables", "trainable_weights", "non_trainable_variables", "non_trainable_weights",
                                                "variables", "weights", "layers", "losses")},
}


def model_attribute_error(trainer: Any, name: str) -> AttributeError:
    """The error for an attribute the trainer lacks: for one of a ``keras.Model``'s that a ported
    step reads from ``self``, :class:`ModelAttributeError` (``trainer-is-not-the-model``) with the
    trainer's spelling; for any other, Python's own ``AttributeError``."""
    spelling = _TRAINER_SPELLINGS.get(name)
    if spelling is None:
        return AttributeError(f"{type(trainer).__name__!r} object has no attribute {name!r}")
    return ModelAttributeError("trainer-is-not-the-model", f"{type(trainer).__name__} is a Trainer, not the model: self.{name} is a keras.Model's. "
                                                           f"In a step of its own write {spelling}.")


@contextlib.contextmanager
def unknown_variables_explained() -> Iterator[None]:
    """Turns Keras's "Unknown variable" from an optimizer that a step (being traced) applied to
    variables it was not built for into ``optimizer-variables-unknown``, with what to write.

    Keras's message tells to "recreate a new optimizer instance", which a trainer cannot do with
    its ``self.optimizer``: the usual cause is a GAN's step applying it to the weights of a
    network kept beside ``self.model`` (or a second optimizer to the model's).

    Raises:
        ArgumentError: ``optimizer-variables-unknown``.
    """
    try:
        yield
    except ValueError as err:
        message = str(err)
        if isinstance(err, TrainkitError) or "Unknown variable" not in message or "originally built with" not in message:
            raise
        unknown = message[message.index("Unknown variable"):].split(". This optimizer", 1)[0]
        raise ArgumentError("optimizer-variables-unknown", f"{unknown}: a step applied an optimizer to variables it was not built for. self.optimizer "
                                                           "is built for self.model.trainable_variables: apply it to those (or some of them). "
                                                           "Weights kept beside the model (a GAN's self.generator) take an optimizer of their own, "
                                                           "made and built in __init__ (self.g_optimizer = keras.optimizers.Adam(...); "
                                                           "self.g_optimizer.build(self.generator.trainable_variables)) and applied to those "
                                                           "weights only.") from None


def _plain(signature: inspect.Signature) -> str:
    """A signature's parameters as a user writes them: names and defaults, no annotations."""
    return ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in signature.parameters.values())


def check_step_returns_loss(names: Sequence[str]) -> None:
    """Refuses a ``train_step`` whose dict (its scalars' ``names``) has no ``"loss"``, or a name
    the epoch logs keep for a validation value.

    Raises:
        ArgumentError: ``bad-step-output``.
    """
    if "loss" not in names:
        returned = ", ".join(map(repr, names)) or "an empty dict"
        raise ArgumentError("bad-step-output", f"train_step must return the step's loss under 'loss'; it returned {returned}. "
                                               "Add it: return {'loss': loss, ...}.")
    # The validation's values join the epoch logs as val_<name>: a training value so named was
    # overwritten by one (its History lost), or without validation data taken for one.
    taken = [name for name in names if name.startswith(VALIDATION_PREFIX)]
    if taken:
        raise ArgumentError("bad-step-output", f"train_step returns {taken[0]!r}, a name the epoch logs keep for validation values (val_<name>): the "
                                               "validation's would overwrite it. Give it a name without the val_ prefix.")


def missing_statistics(names: Sequence[str], probe: probes.Probe | None) -> Finding | None:
    """The ``statistics-missing`` note for a step returning scalars ``names``, or ``None``.

    A ``train_step`` of its own returns what it returns, and a subclassed model's layers
    cannot be tapped (``probe.reason`` says why): the rules that read the missing statistics
    then judge nothing, and saying so beats a silent "no findings".
    """
    parsed = [stats.parse_stat_name(name) for name in names]
    if not any(p is not None and p.kind in (stats.GRAD_NORM, stats.UPDATE_RATIO) for p in parsed):
        message = ("The train_step returns no gradient or update statistics (a step of its own returns what it returns), so the rules "
                   "that read them (exploding-gradients, vanishing-gradients, lr-too-high, lr-too-low, dead-relu, "
                   "saturated-activations) cannot judge this run.")
        advice = "Override compute_loss instead, or return {**super().train_step(batch), ...} to add values; statistics=False silences this note."
    elif probe is not None and probe.reason is not None and not any(
            p is not None and p.kind == stats.ACTIVATION and not stats.is_output_name(p.layer) and p.layer not in probe.output_layers
            for p in parsed):
        message = f"Activation statistics cover the model's output only ({probe.reason}): dead-relu and saturated-activations judge no hidden layer."
        advice = "In the model's call, wrap each hidden activation: x = trainkit.probes.record(\"dense_1\", x, \"relu\")."
    else:
        return None
    return Finding(code=STATISTICS_MISSING, severity="info", message=message, advice=advice, evidence={"step_values": len(names)})


def scalar_loss(loss: Any) -> tf.Tensor:
    """``compute_loss``'s value, refused unless it is one number (the optimizer needs a scalar).

    Raises:
        ArgumentError: ``loss-not-scalar`` for a per-example loss (a Keras loss function called
            directly, ``keras.losses.binary_crossentropy(y, y_pred)``, returns one).
    """
    original = loss
    if loss is None:
        raise ArgumentError("loss-not-scalar", "compute_loss returned None: return the loss, e.g. return super().compute_loss(x, y, y_pred, sample_weight) + penalty.")
    # A loss returned with values beside it ((loss, {"aux": ...}), {"loss": ...}) was a bare
    # TypeError from the conversion ("Expected float32, but got Tensor"), deep in the trace.
    try:
        loss = None if isinstance(loss, Mapping) else tf.convert_to_tensor(loss)
    except (TypeError, ValueError):
        loss = None
    if loss is None:
        raise ArgumentError("loss-not-scalar", "compute_loss must return the loss alone, one number: it returned a "
                                               f"{type(original).__name__} holding more. Log the other values with self.log_scalar(name, value).")
    if loss.shape.rank not in (0, None) and loss.shape.num_elements() != 1:
        raise ArgumentError("loss-not-scalar", f"compute_loss must return one number, got a tensor of shape {loss.shape} (a loss per example?): "
                                               "reduce it, e.g. tf.reduce_mean(...), or call super().compute_loss, which weighs and reduces as Keras does. "
                                               "A Keras loss built with reduction=None (or 'none') returns one loss a row: leave its reduction at "
                                               "the default, 'sum_over_batch_size'.")
    if not loss.dtype.is_floating:
        raise ArgumentError("loss-not-scalar", f"compute_loss must return a float, got a {loss.dtype.name} tensor: an integer has no gradient. "
                                               "Compute the loss from the model's outputs (y_pred).")
    # One number in a tensor of shape [1] (tf.reshape(loss, [1])): the updates expect a scalar.
    return tf.reshape(loss, []) if loss.shape.rank else loss
