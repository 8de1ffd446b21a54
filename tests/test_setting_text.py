"""Advice names a setting for its run's audience: recipe keys for a recipe, Python for a Trainer.fit."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from trainkit import Trainer
from trainkit.diagnosis import Context
from trainkit.diagnosis.readback import _saved_context
from trainkit.diagnosis.run_context import build_context
from trainkit.diagnosis.setting_text import fit_setting, optimizer_setting, standardize_setting
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
