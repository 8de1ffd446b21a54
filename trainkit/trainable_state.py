"""Keeping a :class:`~trainkit.trainer.Trainer`'s compiled step true to its optimizer and to the
model's trainable weights.

The step is traced for one optimizer and one set of trainable variables. An optimizer replaced
between fits (``trainer.optimizer = ...``), layers frozen or unfrozen between fits or by a callback
during one, and a ``mixed_float16`` model's loss scaling all change what the step must apply: this
mixin takes such changes in as a new Trainer would, traces again, or refuses them with a message
that says how to make them.

:class:`TrainableState` is a mixin rather than an object of its own: it reads and replaces the
trainer's optimizer, compiled loop and findings.
"""

from __future__ import annotations

from typing import Any

import keras

from trainkit import distribute
from trainkit.checks.compatibility import TRAINABLE_RULE_CODES
from trainkit.checks.compile_checks import setup_record
from trainkit.errors import ArgumentError
from trainkit.model_layers import trainable_layer_ids
from trainkit.resolve import get_optimizer


class TrainableState:
    """The optimizer and trainable-variable bookkeeping of :class:`~trainkit.trainer.Trainer`.

    It expects the trainer's attributes: ``model``, ``optimizer``, ``strategy``, ``findings``,
    ``_auto_scale_loss``, ``_train_loop``, ``_loop_variables``, ``_loop_optimizer``,
    ``_fit_variables``, ``_fit_first_epoch``, ``_checked_trainable``, ``_unshown_checks``,
    ``_histograms`` and ``check_model()``.
    """

    model: keras.Model
    optimizer: Any
    strategy: Any
    findings: list[Any]
    _auto_scale_loss: bool
    _train_loop: Any
    _loop_variables: tuple[int, ...]
    _loop_optimizer: Any
    _fit_variables: tuple[int, ...]
    _fit_first_epoch: int
    _checked_trainable: Any
    _unshown_checks: list[Any]
    _histograms: Any
    _setup_record: dict[str, Any]

    def _loss_scaled(self, optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
        """``optimizer`` in a ``LossScaleOptimizer`` where ``auto_scale_loss`` wants one for a
        ``mixed_float16`` model, as ``model.compile(auto_scale_loss=True)`` does: without loss
        scaling, float16 gradients below ~6e-8 become 0 and the layers they belong to stop learning."""
        if self._auto_scale_loss and self.model.dtype_policy.name == "mixed_float16" and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return keras.optimizers.LossScaleOptimizer(optimizer, name="loss_scale_optimizer")
        return optimizer

    def _adopt_replaced_optimizer(self) -> None:
        """Takes an optimizer set between fits (``trainer.optimizer = ...``) as the ``optimizer``
        argument is taken: a name resolved (``"sgd"`` was an AttributeError), and wrapped for a
        ``mixed_float16`` model (a plain Adam so set trained that model without loss scaling)."""
        if self.optimizer is self._loop_optimizer:
            return
        with distribute.scope(self.strategy):  # its variables replicated, as __init__ makes them
            self.optimizer = get_optimizer(self.optimizer)
            # Refused as __init__ refuses it: it was told "trainable-changed ... give this one a
            # new optimizer", the very thing done.
            self._refuse_another_models_optimizer()
            self.optimizer = self._loss_scaled(self.optimizer)
        # Its checkpoints record the new one, which the run's resume is given.
        self._setup_record = {**self._setup_record, **{key: value for key, value in setup_record(None, self.optimizer, ()).items()
                                                       if key in ("optimizer", "learning_rate", "optimizer_settings")}}

    def _refuse_another_models_optimizer(self) -> None:
        """Refuses an optimizer already built for another model's weights (Keras refuses it at the
        first update, with "Unknown variable").

        Raises:
            ArgumentError: ``bad-argument``.
        """
        built_for = self._optimizer_built_for()
        # All the model's weights: one built before a layer was frozen holds that layer's state too.
        if built_for and not built_for <= {id(v) for v in self.model.variables}:
            raise ArgumentError("bad-argument", "This optimizer instance already holds the state of another model's weights (a Trainer made "
                                                "before?). Give each Trainer an optimizer of its own: optimizer='adam', or a new keras.optimizers.Adam(...).")

    def _optimizer_built_for(self) -> set[int]:
        """Ids of the variables the optimizer holds state for (none while it is unbuilt).

        Keras keeps the list only privately (``_trainable_variables``); an optimizer without it
        gives an empty set, and the checks that read this then judge nothing.
        """
        return {id(v) for v in getattr(self.optimizer, "_trainable_variables", None) or ()} if self.optimizer.built else set()

    def _follow_trainable_changes(self) -> None:
        """Traces the step again when layers were frozen or unfrozen since the last fit, or
        ``optimizer`` was replaced (built first by :meth:`_ensure_built`).

        The traced step updates the trainable variables it saw when it was traced: a layer set to
        ``trainable = False`` between two fits went on training, and one set back to ``True`` stayed
        frozen, in silence. A frozen layer is followed by tracing again; a newly trainable one is
        refused, as its optimizer holds no state for it (Keras's "Unknown variable" at the first
        update).

        Raises:
            ArgumentError: ``trainable-changed`` when a variable became trainable that the
                optimizer was not built for.
        """
        variables = self.model.trainable_variables
        known = self._optimizer_built_for()
        new = [v for v in variables if id(v) not in known]
        if known and new:  # (an optimizer of its own that keeps no such list is left to say it)
            names = ", ".join(getattr(v, "path", v.name) for v in new[:3]) + (f" and {len(new) - 3} more" if len(new) > 3 else "")
            raise ArgumentError("trainable-changed", f"Weights became trainable after this Trainer's optimizer was built ({names}): it holds no state for "
                                                     "them, so they cannot be trained. Make a new Trainer with a new optimizer for the unfrozen model "
                                                     "(Trainer(model, optimizer='adam', ...)), or give this one a new optimizer (trainer.optimizer = "
                                                     "keras.optimizers.Adam(1e-5)), as Keras needs model.compile() again after a change of trainable.")
        traced = tuple(id(v) for v in variables)
        if self._train_loop is not None and traced != self._loop_variables:
            self._train_loop = None  # built again by _prepare_fit, for the variables trainable now
            self._histograms.reset()
        if self._train_loop is not None and self.optimizer is not self._loop_optimizer:
            # A new optimizer set between fits (trainer.optimizer = Adam(1e-4)): the traced step
            # applied the old one's updates while the History, callbacks and diagnosis read the
            # new one's rate.
            self._train_loop = None
        self._loop_variables = traced
        self._loop_optimizer = self.optimizer
        self._recheck_trainable_rules()

    def _recheck_trainable_rules(self) -> None:
        """Runs the model checks that read ``layer.trainable`` again when layers were frozen or
        unfrozen since they ran, replacing their earlier verdicts.

        The checks ran when the Trainer was built: a base frozen then and unfrozen for a fine-tune
        in a second fit (with a new optimizer, as ``trainable-changed`` advises) got no
        ``batchnorm-training-flag-ignored``, where a new Trainer for the same model got it.
        """
        state = trainable_layer_ids(self.model)
        if state == self._checked_trainable:
            return
        self._checked_trainable = state
        fresh = [f for f in self.check_model() if f.code in TRAINABLE_RULE_CODES]
        self.findings[:] = [*(f for f in self.findings if f.code not in TRAINABLE_RULE_CODES), *fresh]
        self._unshown_checks = [*(f for f in self._unshown_checks if f.code not in TRAINABLE_RULE_CODES),
                                *(f for f in fresh if f.severity != "info")]

    def _refuse_trainable_change_in_fit(self, epoch: int) -> None:
        """Refuses layers frozen or unfrozen while a fit runs (a callback's ``base.trainable = True``
        at epoch N), before the epoch that would ignore it.

        The compiled step updates the variables that were trainable when the fit began: a base a
        callback unfroze at epoch 3 stayed frozen to the end, its weights unchanged, and a layer it
        froze went on training, both in silence. Read once an epoch, on the host, not in the step.

        Raises:
            ArgumentError: ``trainable-changed`` when the trainable variables differ from the fit's.
        """
        variables = self.model.trainable_variables
        if tuple(id(v) for v in variables) == self._fit_variables:
            return
        traced = set(self._fit_variables)
        unfrozen = [v for v in variables if id(v) not in traced]
        frozen = len(traced - {id(v) for v in variables})
        names = ", ".join(getattr(v, "path", v.name) for v in unfrozen[:3])
        what = f"{len(unfrozen)} weights became trainable ({names})" if unfrozen else f"{frozen} weights were frozen"
        # Before this fit's first epoch (a callback's on_train_begin) no epoch ran to end a fit at:
        # "fit(..., epochs=0) first" was the advice.
        when = ("Set trainable before calling fit instead (a callback's on_train_begin runs after the step was traced)"
                if epoch == self._fit_first_epoch else f"Change trainable between fits instead: fit(..., epochs={epoch}) first, "
                                                       "then a second fit with the layers frozen or unfrozen")
        raise ArgumentError("trainable-changed", f"{what} during this fit, before epoch {epoch + 1} (by a callback?): the "
                                                 "compiled step trains the weights that were trainable when the fit began, so the change would be "
                                                 f"ignored to the end of the fit. {when} (unfrozen ones need a new Trainer with a new "
                                                 "optimizer, its learning rate low: Trainer(model, optimizer=keras.optimizers.Adam(1e-5), ...)).")
