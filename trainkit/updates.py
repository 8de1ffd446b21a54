"""The update an optimizer step applies to each variable, recorded as the optimizer applies it.

``update_ratio`` needs every variable's update ``w_after - w_before``. Reading each variable
before ``optimizer.apply`` and subtracting afterwards (a *snapshot*) makes the compiled step copy
every weight before the optimizer overwrites it in place: for the 10-64-32-1 MLP under XLA about
half of what the update statistics cost (~1.3 ms of ~2.5 ms an epoch), for wide layers megabytes a
step. Keras optimizers apply their updates through their own ``assign``, ``assign_add`` and
``assign_sub``, so the update can be recorded there while the step is traced: ``assign_sub(v,
x)`` changes ``v`` by ``-x``, ``assign_add(v, x)`` by ``x``, ``assign(v, y)`` by ``y - v``.

This runs only while a step is traced: nothing is patched while the compiled step runs, and the
recorded updates are ordinary tensors of the step's graph. An optimizer that updates a variable
some other way (weight decay, gradient accumulation or EMA overwrite in Keras; a custom
optimizer writing to variables directly) is either recognised up front (:func:`can_capture`) or
shows as an :attr:`UpdateCapture.complete` of ``False``; the trainer then takes a snapshot.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import tensorflow as tf

_ASSIGNS = ("assign", "assign_add", "assign_sub")


def can_capture(optimizer: Any, variables: Sequence[Any] = ()) -> bool:
    """Whether ``optimizer`` applies every update of ``variables`` through its assigns.

    Keras applies weight decay with ``variable.assign_sub`` directly, accumulates gradients and
    overwrites weights with their EMA in branches of their own, and a loss-scale optimizer applies
    its inner optimizer's update in a branch: those take the snapshot. So do variables with a
    constraint (``apply`` projects them with ``variable.assign`` after the update: recorded, the
    update of a ``MaxNorm`` kernel left the projection out) and variables overwritten with their
    gradients.
    """
    if not all(callable(getattr(optimizer, name, None)) for name in _ASSIGNS):
        return False
    if getattr(optimizer, "weight_decay", None) or getattr(optimizer, "gradient_accumulation_steps", None):
        return False
    if getattr(optimizer, "use_ema", False) and getattr(optimizer, "ema_overwrite_frequency", None):
        return False
    if any(getattr(v, "constraint", None) is not None or getattr(v, "overwrite_with_gradient", False) for v in variables):
        return False
    return not hasattr(optimizer, "inner_optimizer")


def can_guard(optimizer: Any, variables: Sequence[Any]) -> bool:
    """Whether :func:`capture_updates` with ``keep=`` can skip every state change of a step.

    Besides its assigns, ``optimizer.apply`` writes directly only its iteration count (undone
    afterwards, see :func:`undo_iteration`), projections of constrained variables, weights
    overwritten with their gradients, and EMA copies: models and optimizers with those take the
    ``tf.cond`` instead.
    """
    return can_capture(optimizer, variables) and not getattr(optimizer, "use_ema", False)


def select_whole(keep: tf.Tensor, then: tf.Tensor, otherwise: tf.Tensor) -> tf.Tensor:
    """``then`` where the scalar ``keep`` is true, else ``otherwise`` (both the same shape).

    The v1 ``Select`` op: with a scalar condition its TensorFlow kernel copies one whole input.
    ``tf.where`` (``SelectV2``) broadcasts the scalar element by element instead, ~60 us for a
    7200x10 kernel on this machine, three times a variable per step (the CNN's dense layer).
    Under XLA both compile to the same fused select.
    """
    return tf.raw_ops.Select(condition=keep, x=then, y=otherwise)


def undo_iteration(optimizer: Any, keep: tf.Tensor) -> None:
    """Takes back the iteration ``optimizer.apply`` counted when ``keep`` is false."""
    iterations = optimizer.iterations
    iterations.assign_sub(tf.cast(tf.logical_not(keep), iterations.dtype))


class UpdateCapture:
    """The updates recorded for ``variables`` by :func:`capture_updates`.

    Args:
        variables: The variables whose updates to record (Keras or ``tf.Variable``).
    """

    def __init__(self, variables: Sequence[Any]) -> None:
        self._variables = list(variables)
        self._index: dict[int, int] = {}
        for i, variable in enumerate(self._variables):
            self._index[id(variable)] = i
            inner = getattr(variable, "value", None)  # a Keras variable's tf.Variable
            if isinstance(inner, tf.Variable):
                self._index[id(inner)] = i
        self._updates: list[tf.Tensor | None] = [None] * len(self._variables)
        self._unsupported = False

    @property
    def complete(self) -> bool:
        """True when every variable was updated through the optimizer's assigns, and only so."""
        return not self._unsupported and all(u is not None for u in self._updates)

    @property
    def updates(self) -> list[tf.Tensor]:
        """Each variable's update, float32, in the order of ``variables`` (needs :attr:`complete`)."""
        if not self.complete:
            raise RuntimeError("Not every variable's update was recorded; take a snapshot instead.")
        return [u for u in self._updates if u is not None]

    def record(self, method: str, variable: Any, value: Any) -> None:
        """Adds the change ``optimizer.<method>(variable, value)`` is about to make."""
        i = self._index.get(id(variable))
        if i is None:  # an optimizer slot (momentum, velocity...), not a trained variable
            return
        if isinstance(value, tf.IndexedSlices):
            self._unsupported = True  # a sparse update: rows, not the whole variable
            return
        value = tf.cast(value, tf.float32)
        if method == "assign_sub":
            change = -value
        elif method == "assign_add":
            change = value
        else:  # read here, before the assignment: automatic control dependencies keep that order
            change = value - tf.cast(tf.convert_to_tensor(variable), tf.float32)
        previous = self._updates[i]
        self._updates[i] = change if previous is None else previous + change


@contextlib.contextmanager
def capture_updates(optimizer: Any, variables: Sequence[Any], keep: tf.Tensor | None = None) -> Iterator[UpdateCapture]:
    """Records the updates ``optimizer`` applies to ``variables`` inside the ``with`` block.

    Use it around ``optimizer.apply(...)`` while a step is traced::

        with capture_updates(optimizer, variables) as capture:
            optimizer.apply(gradients, variables)
        if capture.complete:
            updates = capture.updates

    The optimizer's ``assign``, ``assign_add`` and ``assign_sub`` are wrapped on the instance for
    the block's duration and restored after it, whatever happens inside.

    Args:
        optimizer: A Keras optimizer.
        variables: The variables whose updates to record.
        keep: A scalar bool tensor: where false, every assign of the block (weights and the
            optimizer's slots alike) writes the value the variable already has, so the step
            changes nothing; the recorded updates are then zeros. Call :func:`undo_iteration`
            after ``apply``. A select in the update instead of a ``tf.cond`` around it: under XLA
            a conditional makes every variable it updates a copy in and out (the 8x256 MLP's
            epoch took 265 instead of 190 ms). Only for dense gradients and :func:`can_guard`.
    """
    capture = UpdateCapture(variables)
    own = {method: vars(optimizer)[method] for method in _ASSIGNS if method in vars(optimizer)}
    for method in _ASSIGNS:
        original = getattr(optimizer, method)

        def wrapper(variable: Any, value: Any, _method: str = method, _original: Any = original) -> Any:
            if keep is not None:
                if _method == "assign":  # the current value where the step is skipped
                    current = tf.convert_to_tensor(variable)
                    value = select_whole(keep, tf.cast(value, current.dtype), current)
                else:  # adding or subtracting zero leaves the variable exactly as it is
                    value = tf.convert_to_tensor(value)
                    value = select_whole(keep, value, tf.zeros_like(value))
            capture.record(_method, variable, value)
            return _original(variable, value)

        object.__setattr__(optimizer, method, wrapper)
    try:
        yield capture
    finally:
        for method in _ASSIGNS:
            # The wrapper shadows the class's method on the instance: removing it restores the
            # method; an instance attribute the optimizer had of its own is put back.
            if method in own:
                object.__setattr__(optimizer, method, own[method])
            else:
                object.__delattr__(optimizer, method)


#: Entries up to which :func:`fusable_updates` recomputes a variable's update (see there).
SMALL_VARIABLE = 4096


def fusable_updates(
    optimizer: Any, variables: Sequence[Any], recorded: Sequence[tf.Tensor], learning_rate: tf.Tensor, iteration: tf.Tensor, keep: tf.Tensor | None = None
) -> list[tf.Tensor]:
    """The recorded updates of a step, with plain Adam's small ones recomputed for an XLA step.

    Keras's Adam subtracts ``m * alpha / (sqrt(v) + epsilon)`` from each variable. Recorded, that
    update has two readers, the variable's assignment and the statistics, so XLA computes it in a
    kernel of its own and writes it out (it does not compute square roots and divisions twice to
    fuse them into both readers), where without statistics it is fused into the assignment.
    Recomputed here from the moments the update has just written, each reader fuses its own
    copy. The copy is written a little differently (the same value to a rounding): written as
    Adam writes it, XLA's common-subexpression pass merges the two back into one. The 10-64-32-1
    MLP's XLA step has six kernels fewer, and its in-graph statistics cost 1.39-1.45x its
    statistics-off epoch instead of 1.44-1.49x (three interleaved A/B runs). Variables over
    :data:`SMALL_VARIABLE` entries keep the recorded update: there the divisions bound the
    kernel, and doing them twice cost more than the written-out copy (the 8x256 MLP's
    statistics 1.16x -> 1.24x with every variable recomputed). Without XLA nothing fuses: don't
    call this.

    Args:
        optimizer: The optimizer that applied ``recorded``. Anything but a
            ``keras.optimizers.Adam`` itself (a subclass may update otherwise) gets
            ``recorded`` back.
        variables: The updated variables, in the order of ``recorded``.
        recorded: Their updates as :func:`capture_updates` recorded them.
        learning_rate: The learning rate the update used (read before ``optimizer.apply``).
        iteration: ``optimizer.iterations`` read before ``optimizer.apply``.
        keep: As for :func:`capture_updates`: where false, the step changed nothing and the
            updates are zeros.

    Returns:
        One float32 update per variable.
    """
    if type(optimizer) is not keras.optimizers.Adam:
        return list(recorded)
    step = tf.cast(iteration + 1, tf.float32)
    beta_1, beta_2 = tf.cast(optimizer.beta_1, tf.float32), tf.cast(optimizer.beta_2, tf.float32)
    alpha = tf.cast(learning_rate, tf.float32) * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
    out = []
    for variable, update in zip(variables, recorded, strict=True):
        if variable.dtype != tf.float32 or variable.shape.num_elements() is None or variable.shape.num_elements() > SMALL_VARIABLE:
            out.append(update)
            continue
        index = optimizer._get_variable_index(variable)  # what Adam's update_step reads too
        momentum = tf.convert_to_tensor(optimizer._momentums[index])
        velocity = tf.convert_to_tensor((optimizer._velocity_hats if optimizer.amsgrad else optimizer._velocities)[index])
        # Written unlike Adam's m * alpha / (sqrt(v) + epsilon), to a rounding the same value
        # (v >= 0), or XLA merges the two copies into one again (see above).
        change = -(momentum / (tf.sqrt(tf.maximum(velocity, 0.0)) + optimizer.epsilon) * alpha)
        out.append(change if keep is None else select_whole(keep, change, tf.zeros_like(change)))
    return out
