"""Advice names a setting for its run's audience: recipe keys for a recipe, Python for a Trainer.fit."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from trainkit import Trainer
from trainkit.diagnosis import Context
from trainkit.diagnosis.readback import _saved_context
from trainkit.diagnosis.run_context import build_context
from trainkit.diagnosis.setting_text import (
    fit_setting,
    optimizer_setting,
    rate_key,
    rate_setting,
    standardize_setting,
)
from trainkit.recipe import load_recipe
from trainkit.run import prepare_run

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
#: Keys only a recipe takes: a Python fit's advice naming one told it nothing it could do.
RECIPE_ONLY = ("optimizer.", "preprocessing.", "training.")


def test_a_setting_is_the_recipe_key_for_a_recipe_run_and_python_for_a_fit():
    recipe, python = Context(recipe=True), Context()
    assert optimizer_setting(recipe, "learning_rate", "0.001") == "optimizer.learning_rate: 0.001"
    assert optimizer_setting(python, "learning_rate", "0.001") == "learning_rate=0.001 in the optimizer"
    assert fit_setting(recipe, "epochs", "8") == "training.epochs: 8" and fit_setting(recipe, "epochs") == "training.epochs"
    assert fit_setting(python, "epochs", "8") == "epochs=8 in fit" and fit_setting(python, "epochs") == "fit's epochs"
    assert standardize_setting(recipe, "inputs") == "preprocessing.standardize_inputs: true"
    assert standardize_setting(recipe, "targets") == "preprocessing.standardize_targets: true"
    for what in ("inputs", "targets"):
        assert not any(key in standardize_setting(python, what) for key in RECIPE_ONLY)
    assert "keras.layers.Normalization()" in standardize_setting(python, "inputs")


def test_the_context_knows_a_recipe_run_from_a_python_fit():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", jit_compile=False)
    y = np.array([0, 1] * 8)
    assert build_context(trainer, y).recipe is False
    prepared = prepare_run(load_recipe(RECIPES / "train_scale_broken.yaml", ["training.epochs=1"]))
    assert build_context(prepared.trainer, prepared.splits.y_train).recipe is True
    # Written to TensorBoard and read back by `trainkit diagnose`.
    assert Context.from_dict(Context(recipe=True).to_dict()).recipe is True


def test_a_run_written_before_the_flag_is_a_recipe_run_where_its_directory_holds_the_recipe():
    assert _saved_context({"task": "binary"}, recipe_run=True).recipe is True
    assert _saved_context({"task": "binary"}, recipe_run=False).recipe is False
    # A run that said so keeps what it said.
    assert _saved_context({"task": "binary", "recipe": False}, recipe_run=True).recipe is False


def python_fit(x: np.ndarray, y: np.ndarray, optimizer: object, epochs: int, hidden: str = "relu") -> dict[str, str]:
    """A Python Trainer.fit of a small binary classifier: each finding's advice by code."""
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Dense(16, activation=hidden),
                              keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer=optimizer, task="binary", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=epochs, batch_size=32, validation_split=0.2, verbose=0)
    return {f.code: f.advice for f in trainer.findings}


def recipe_run(tmp_path: Path, overrides: list[str]) -> dict[str, str]:
    """``trainkit train recipes/train_scale_broken.yaml --set ...``: each finding's advice by code."""
    from trainkit.run import train_recipe

    result = train_recipe(load_recipe(RECIPES / "train_scale_broken.yaml", overrides), logdir=tmp_path, verbose=0)
    return {f.code: f.advice for f in result.trainer.findings}


def unscaled_rows(rows: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Features ~0..100 (as train_scale_broken's) and labels they predict."""
    x = np.random.default_rng(0).uniform(0, 100, size=(rows, 10))
    return x, (x[:, 0] > x[:, 1]).astype(int)


def test_a_diverging_python_fit_is_told_the_optimizer_s_arguments_and_a_recipe_run_its_keys(tmp_path):
    # SGD(1.0) on inputs ~0..100: the loss diverges at step 1.
    python = python_fit(*unscaled_rows(), keras.optimizers.SGD(1.0), epochs=2)
    for code in ("diverging-loss", "lr-too-high"):
        assert "learning_rate=" in python[code] and " in the optimizer (now 1)" in python[code], python[code]
        assert "clip gradients (clipnorm=1.0 in the optimizer)" in python[code], python[code]
        assert "optimizer." not in python[code], python[code]
    recipe = recipe_run(tmp_path, ["training.epochs=2", "optimizer={name: sgd, learning_rate: 1.0}"])
    for code in ("diverging-loss", "lr-too-high"):
        assert "(optimizer.learning_rate: " in recipe[code] and "(now 1)" in recipe[code], recipe[code]
        assert "clip gradients (optimizer.clipnorm: 1.0)" in recipe[code], recipe[code]


def test_a_python_fit_at_too_low_a_rate_is_told_fit_s_epochs_not_a_training_key():
    x = np.random.default_rng(0).normal(size=(400, 8))
    advice = python_fit(x, (x[:, 0] + x[:, 1] > 0).astype(int), keras.optimizers.SGD(1e-6), epochs=6)["lr-too-low"]
    assert advice == "Raise the learning rate (learning_rate=0.001 in the optimizer (now 1e-06)), or train for more epochs (fit's epochs)."


def test_unscaled_inputs_are_told_keras_normalization_in_python_and_the_recipe_key_in_a_recipe(tmp_path):
    python = python_fit(*unscaled_rows(), "adam", epochs=2)["initial-loss-too-high"]
    assert python.startswith("Standardise the inputs (keras.layers.Normalization() adapted on x_train first in the model, "
                             "or x = (x - x_train.mean(0)) / x_train.std(0)) so the first logits are small"), python
    assert not any(key in python for key in RECIPE_ONLY), python
    recipe = recipe_run(tmp_path, ["training.epochs=2"])["initial-loss-too-high"]
    assert recipe.startswith("Standardise the inputs (preprocessing.standardize_inputs: true) so the first logits are small"), recipe


def test_a_tanh_stack_saturated_by_its_inputs_is_told_the_python_that_scales_them():
    x, y = unscaled_rows()
    advice = python_fit(x / 5, y, "adam", epochs=2, hidden="tanh")["saturated-activations"]
    assert advice.startswith("Standardise the inputs (keras.layers.Normalization()"), advice
    assert not any(key in advice for key in RECIPE_ONLY), advice


def test_unscaled_regression_targets_are_told_the_python_that_scales_them_and_the_keras_bias():
    x = np.random.default_rng(0).normal(size=(256, 4))
    y = 5000 + 1000 * x[:, :1]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=1, batch_size=32, verbose=0)
    (advice,) = [f.advice for f in trainer.findings if f.code == "initial-loss-too-high"]
    assert advice.startswith("Standardise the targets with training-split statistics (y = (y - y_train.mean()) / y_train.std())"), advice
    assert "bias_initializer=keras.initializers.Constant(" in advice and "{name: constant" not in advice, advice
    assert not any(key in advice for key in RECIPE_ONLY), advice


def test_a_python_fit_on_a_schedule_is_told_the_schedule_s_argument_not_a_learning_rate():
    # A warm-up to 1.0 under SGD on inputs ~0..100: told "learning_rate=0.001 in the optimizer
    # (now 1)", where Keras refuses a number for the learning rate of an optimizer built on a
    # schedule, and a number in its place would drop the warm-up.
    schedule = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=100, warmup_target=1.0, warmup_steps=5)
    python = python_fit(*unscaled_rows(), keras.optimizers.SGD(schedule), epochs=2)
    for code in ("diverging-loss", "lr-too-high"):
        assert "warmup_target=" in python[code] and " in the CosineDecay schedule (now 1)" in python[code], python[code]
        assert "learning_rate=" not in python[code], python[code]
    assert rate_setting(Context(schedule="ExponentialDecay", schedule_rate="initial_learning_rate"), 0.01, 0.1) == (
        "initial_learning_rate=0.01 in the ExponentialDecay schedule")
    assert rate_setting(Context(schedule="PiecewiseConstantDecay", schedule_rate="values"), 0.01, 0.1) == (
        "the PiecewiseConstantDecay schedule's values times 0.1, its largest 0.01")
    assert rate_setting(Context(recipe=True), 0.01, 0.1) == "optimizer.learning_rate: 0.01"
    assert rate_setting(Context(), 0.01, 0.1) == "learning_rate=0.01 in the optimizer"
    restored = Context.from_dict(Context(schedule="CosineDecay", schedule_rate="warmup_target").to_dict())
    assert (restored.schedule, restored.schedule_rate) == ("CosineDecay", "warmup_target")


def test_a_recipe_on_a_schedule_is_told_the_schedule_s_key_not_a_learning_rate(tmp_path):
    # Told "optimizer.learning_rate: 0.0978 (now 1)", which --set would put in place of the
    # warm-up and the decay: the key of the schedule's argument keeps them.
    schedule = "{class_name: CosineDecay, config: {initial_learning_rate: 0.0, decay_steps: 100, warmup_target: 1.0, warmup_steps: 5}}"
    advice = recipe_run(tmp_path, ["training.epochs=2", f"optimizer={{name: sgd, learning_rate: {schedule}}}"])
    for code in ("diverging-loss", "lr-too-high"):
        assert "optimizer.learning_rate.config.warmup_target: " in advice[code] and "(now 1)" in advice[code], advice[code]
        assert "optimizer.learning_rate: " not in advice[code], advice[code]
    assert rate_setting(Context(recipe=True, schedule="ExponentialDecay", schedule_rate="initial_learning_rate"), 0.01, 0.1) == (
        "optimizer.learning_rate.config.initial_learning_rate: 0.01")
    assert rate_setting(Context(recipe=True, schedule="PiecewiseConstantDecay", schedule_rate="values"), 0.01, 0.1) == (
        "optimizer.learning_rate.config.values times 0.1, its largest 0.01")


def test_a_rate_of_zero_on_a_schedule_is_told_the_schedule_s_key(tmp_path):
    # CosineDecay from 0 without a warm-up, in a recipe: "Set a learning rate above 0
    # (optimizer.learning_rate, e.g. 0.001 ...)", which would replace the schedule.
    schedule = "{class_name: CosineDecay, config: {initial_learning_rate: 0.0, decay_steps: 100}}"
    advice = recipe_run(tmp_path, ["training.epochs=4", f"optimizer={{name: sgd, learning_rate: {schedule}}}"])
    assert "(optimizer.learning_rate.config.initial_learning_rate, e.g. 0.001" in advice["lr-too-low"], advice["lr-too-low"]
    assert rate_key(Context(schedule="CosineDecay", schedule_rate="warmup_target")) == "the CosineDecay schedule's warmup_target"
    assert rate_key(Context(recipe=True)) == "optimizer.learning_rate"
    assert rate_key(Context()) == "the optimizer's learning_rate"
