"""How advice names a setting, for the run's audience.

A recipe run's user changes a setting with ``trainkit train ... --set KEY=VALUE``, so its advice
names the dotted recipe key (``optimizer.learning_rate: 0.001``), as the README's findings table
does. A Python ``Trainer.fit``'s user holds no recipe: ``preprocessing.standardize_inputs: true``
told a notebook nothing it could do, so its advice names the Python that does the same
(``learning_rate=0.001 in the optimizer``). :attr:`~trainkit.diagnosis.engine.Context.recipe`
says which run it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Context


def for_run(context: Context, recipe: str, python: str) -> str:
    """``recipe`` for a recipe run, ``python`` for a Python fit: a setting no other helper phrases."""
    return recipe if context.recipe else python


def optimizer_setting(context: Context, key: str, value: str) -> str:
    """``optimizer.KEY: VALUE`` for a recipe run, ``KEY=VALUE in the optimizer`` for Python."""
    return f"optimizer.{key}: {value}" if context.recipe else f"{key}={value} in the optimizer"


def rate_setting(context: Context, value: float, now: float | None) -> str:
    """The learning rate set to ``value`` (the run's largest is ``now``): ``optimizer.learning_rate:
    VALUE`` for a recipe run, ``learning_rate=VALUE in the optimizer`` for Python, and for an
    optimizer whose rate is a schedule the schedule's argument that sets its largest rate
    (``warmup_target=0.001 in the CosineDecay schedule``; a recipe's by its key,
    ``optimizer.learning_rate.config.warmup_target: 0.001``).

    Keras refuses a number for the ``learning_rate`` of an optimizer built on a schedule, and a
    number in its place would drop the warm-up and the decay: the schedule is what to change. A
    recipe told ``optimizer.learning_rate: 0.001`` replaced its schedule with a constant.
    """
    if context.rate_callback and now:
        # The callback sets the optimizer's rate at every epoch's start: learning_rate=0.121 in the
        # optimizer was overwritten by the 10 its function returned, as every rate it returns is.
        return f"the rates your {context.rate_callback}'s function returns times {value / now:.3g}, its largest {value:.3g}"
    if context.schedule is None:
        return optimizer_setting(context, "learning_rate", f"{value:.3g}")
    if context.schedule_rate in (None, "values") and now:
        # PiecewiseConstantDecay's list, or a schedule of one's own: every rate scaled alike.
        what = "values" if context.schedule_rate == "values" else "rates"
        if context.recipe:
            where = "optimizer.learning_rate.config.values" if what == "values" else "optimizer.learning_rate's rates"
            return f"{where} times {value / now:.3g}, its largest {value:.3g}"
        return f"the {context.schedule} schedule's {what} times {value / now:.3g}, its largest {value:.3g}"
    argument = context.schedule_rate or "learning_rate"
    if context.recipe:
        return optimizer_setting(context, f"learning_rate.config.{argument}", f"{value:.3g}")
    return f"{argument}={value:.3g} in the {context.schedule} schedule"


def rate_key(context: Context) -> str:
    """The setting that sets the run's largest learning rate, by name: :func:`optimizer_key`'s
    ``learning_rate`` without a schedule, else the schedule's argument (a recipe's
    ``optimizer.learning_rate.config.initial_learning_rate``, a Python fit's ``the CosineDecay
    schedule's initial_learning_rate``): a number in ``optimizer.learning_rate`` would replace the
    schedule, and Keras refuses one for an optimizer built on it."""
    if context.rate_callback:
        return f"the rates your {context.rate_callback}'s function returns"
    if context.schedule is None:
        return optimizer_key(context, "learning_rate")
    argument = context.schedule_rate or "rates"
    if context.recipe and context.schedule_rate is not None:
        return f"optimizer.learning_rate.config.{argument}"
    return f"the {context.schedule} schedule's {argument}"


def layer_setting(context: Context, key: str, value: str) -> str:
    """A layer's argument: ``KEY: VALUE`` as a recipe's layer mapping writes it, ``KEY='VALUE'`` as
    a Keras layer takes it in Python (``kernel_initializer='he_normal'``)."""
    return f"{key}: {value}" if context.recipe else f"{key}='{value}'"


def optimizer_key(context: Context, key: str) -> str:
    """The optimizer's setting ``key`` by name: ``optimizer.KEY`` for a recipe run, ``the optimizer's KEY`` for Python."""
    return f"optimizer.{key}" if context.recipe else f"the optimizer's {key}"


def fit_setting(context: Context, key: str, value: str | None = None) -> str:
    """``training.KEY[: VALUE]`` for a recipe run; for Python ``KEY=VALUE in fit`` (``fit's KEY``
    without a value)."""
    if context.recipe:
        return f"training.{key}" + (f": {value}" if value is not None else "")
    return f"{key}={value} in fit" if value is not None else f"fit's {key}"


#: A Python run's ways to standardise its inputs, as ``preprocessing.standardize_inputs: true`` does a recipe's.
_STANDARDISE_INPUTS = ("keras.layers.Normalization() adapted on x_train first in the model, or "
                       "x = (x - x_train.mean(0)) / x_train.std(0)")
#: A Python run's way to standardise its regression targets (and undo it on the predictions).
_STANDARDISE_TARGETS = "y = (y - y_train.mean()) / y_train.std(), and predict with model(x) * y_train.std() + y_train.mean()"


def standardize_setting(context: Context, what: str) -> str:
    """How to standardise ``what`` (``"inputs"`` or ``"targets"``): ``preprocessing.standardize_inputs:
    true`` for a recipe run, the Python that does it otherwise."""
    if context.recipe:
        return f"preprocessing.standardize_{what}: true"
    return _STANDARDISE_INPUTS if what == "inputs" else _STANDARDISE_TARGETS
