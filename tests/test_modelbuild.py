"""Tests of trainkit.modelbuild: Sequential models from layer specs, names, seeds and builders."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from trainkit.errors import RecipeError, UnknownNameError
from trainkit.modelbuild import build_from_recipe, build_model
from trainkit.recipe import ModelSection, Recipe, load_recipe

MLP = {
    "layers": [
        {"type": "dense", "units": 8, "activation": "relu", "kernel_initializer": "he_normal", "kernel_regularizer": {"l2": 0.01}},
        {"type": "dropout", "rate": 0.2},
        {"type": "batchnorm"},
        {"type": "dense", "units": 1, "activation": "sigmoid"},
    ]
}


def section(*layers: dict[str, Any]) -> ModelSection:
    return ModelSection.model_validate({"layers": list(layers)})


def test_mlp_from_layer_specs() -> None:
    model = build_model(ModelSection.model_validate(MLP), (4,))
    assert isinstance(model, keras.Sequential)
    assert [layer.name for layer in model.layers] == ["dense", "dropout", "batch_normalization", "dense_1"]
    assert model.output_shape == (None, 1)
    first, dropout, _, last = model.layers
    assert first.units == 8 and first.activation.__name__ == "relu"
    assert isinstance(first.kernel_initializer, keras.initializers.HeNormal)
    assert first.kernel_regularizer.get_config() == {"l2": 0.01}
    assert dropout.rate == 0.2
    assert last.activation.__name__ == "sigmoid"
    assert model.count_params() == (4 * 8 + 8) + 4 * 8 + (8 + 1)  # dense, batchnorm (4 per unit), dense_1
    assert model(np.zeros((2, 4), dtype=np.float32)).shape == (2, 1)


def test_layer_names_are_per_model_and_respect_given_names() -> None:
    spec = section({"type": "dense", "units": 3, "name": "dense_1"}, {"type": "dense", "units": 2}, {"type": "dense", "units": 1})
    for _ in range(2):  # no global counter: the second model gets the same names
        assert [layer.name for layer in build_model(spec, (4,)).layers] == ["dense_1", "dense", "dense_2"]


def test_conv_stack() -> None:
    spec = section(
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "maxpool2d", "pool_size": 2},
        {"type": "conv2d", "filters": 2, "kernel_size": [2, 2], "padding": "same"},
        {"type": "flatten"},
        {"type": "dense", "units": 10},
        {"type": "activation", "activation": "softmax"},
    )
    model = build_model(spec, (10, 10, 3))
    assert [layer.output.shape for layer in model.layers] == [(None, 8, 8, 4), (None, 4, 4, 4), (None, 4, 4, 2), (None, 32), (None, 10), (None, 10)]
    assert model.layers[-1].activation.__name__ == "softmax"


def test_seed_makes_initial_weights_reproducible() -> None:
    spec = ModelSection.model_validate(MLP)
    a = build_model(spec, (4,), seed=7).get_weights()
    b = build_model(spec, (4,), seed=7).get_weights()
    c = build_model(spec, (4,), seed=8).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_accepts_a_plain_mapping_and_rejects_a_bad_one() -> None:
    assert build_model(MLP, (3,)).output_shape == (None, 1)
    with pytest.raises(RecipeError) as info:
        build_model({"layers": [{"type": "dense"}]}, (3,))
    assert info.value.code == "recipe-invalid-value" and "units" in info.value.message


@pytest.mark.parametrize(
    ("layer", "code", "hint"),
    [
        ({"type": "dense", "units": 1, "activation": "sigmoud"}, "unknown-activation", '"sigmoid"'),
        ({"type": "activation", "activation": "softmx"}, "unknown-activation", '"softmax"'),
        ({"type": "dense", "units": 1, "kernel_initializer": "he_normall"}, "unknown-initializer", '"he_normal"'),
        ({"type": "dense", "units": 1, "bias_initializer": {"name": "zeroes"}}, "unknown-initializer", '"zeros"'),
        ({"type": "dense", "units": 1, "kernel_initializer": {"name": "random_normal", "stdev": 1}}, "unknown-initializer", "arguments"),
        ({"type": "dense", "units": 1, "kernel_regularizer": "l3"}, "unknown-regularizer", '"l2"'),
        ({"type": "dense", "units": 1, "kernel_regularizer": {"l3": 0.1}}, "unknown-regularizer", '"l2"'),
        ({"type": "conv2d", "filters": 1, "kernel_size": 1, "kernel_regularizer": {"l2": -1}}, "unknown-regularizer", "non-negative"),
    ],
)
def test_unknown_names_suggest_the_closest(layer: dict[str, Any], code: str, hint: str) -> None:
    shape = (4, 4, 1) if layer["type"] == "conv2d" else (4,)
    with pytest.raises(UnknownNameError) as info:
        build_model(section(layer), shape)
    assert info.value.code == code
    assert hint in info.value.message


def test_initializer_and_regularizer_mappings() -> None:
    layer = {"type": "dense", "units": 2, "kernel_initializer": {"name": "random_normal", "stddev": 0.5}, "kernel_regularizer": {"l1": 0.1, "l2": 0.2}, "bias_regularizer": "l2"}
    dense = build_model(section(layer), (3,)).layers[0]
    assert dense.kernel_initializer.get_config()["stddev"] == 0.5
    assert dense.kernel_regularizer.get_config() == {"l1": 0.1, "l2": 0.2}
    assert isinstance(dense.bias_regularizer, keras.regularizers.L2)


def test_layer_that_cannot_take_the_input_shape() -> None:
    with pytest.raises(RecipeError) as info:
        build_model(section({"type": "dense", "units": 3}, {"type": "conv2d", "filters": 2, "kernel_size": 3}), (5,))
    assert info.value.code == "bad-model"
    assert "Layer 1" in info.value.message and "(None, 3)" in info.value.message and "\n" not in info.value.message


# -------------------------------------------------------------------------------------- builders

BUILDERS = """
import keras

NOT_A_FUNCTION = 3

def mlp(input_shape, width=4):
    return keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(width), keras.layers.Dense(1)])

def returns_none(input_shape):
    return None

def without_input(input_shape):
    return keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(1)])

def expects_images(input_shape):
    return keras.Sequential([keras.layers.Conv2D(2, 3)])

def explodes(input_shape):
    raise ValueError("boom\\nsecond line")

def _dense(units):
    return keras.layers.Dense(units, activation="no_such_activation")  # Keras raises, deep inside

def fails_in_a_helper(input_shape):
    return keras.Sequential([keras.Input(shape=input_shape), _dense(2)])
"""


@pytest.fixture(scope="module")
def builder_module(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    # A unique module name: sys.modules caches imports for the whole test session.
    name = f"tk_builders_{uuid.uuid4().hex[:8]}"
    directory = tmp_path_factory.mktemp("builders")
    (directory / f"{name}.py").write_text(textwrap.dedent(BUILDERS))
    return name, directory


def builder(target: str, **args: Any) -> ModelSection:
    return ModelSection.model_validate({"builder": target, "builder_args": args})


def test_builder_is_imported_and_called(builder_module: tuple[str, Path]) -> None:
    name, directory = builder_module
    model = build_model(builder(f"{name}:mlp", width=6), (3,), base_dir=directory)
    assert model.layers[0].units == 6 and model.input_shape == (None, 3)


def test_a_builders_model_without_an_input_is_built_for_the_data(builder_module: tuple[str, Path]) -> None:
    # The checks read its layers' shapes, and `trainkit check` counts its parameters.
    name, directory = builder_module
    model = build_model(builder(f"{name}:without_input"), (3,), base_dir=directory)
    assert model.count_params() == 3 * 4 + 4 + 4 + 1


@pytest.mark.parametrize(
    ("function", "fragment"),
    [("expects_images", "does not accept inputs of shape (3,)"), ("returns_none", "returned NoneType"), ("explodes", "ValueError: boom"), ("NOT_A_FUNCTION", "not a function"), ("mpl", 'Did you mean "mlp"?')],
)
def test_bad_builders(builder_module: tuple[str, Path], function: str, fragment: str) -> None:
    name, directory = builder_module
    with pytest.raises(RecipeError) as info:
        build_model(builder(f"{name}:{function}"), (3,), base_dir=directory)
    assert info.value.code == "bad-builder"
    assert fragment in info.value.message and "\n" not in info.value.message


def test_a_failing_builder_names_the_line_of_its_own_code_that_failed(builder_module: tuple[str, Path]) -> None:
    name, directory = builder_module
    line = textwrap.dedent(BUILDERS).splitlines().index('    return keras.layers.Dense(units, activation="no_such_activation")  # Keras raises, deep inside') + 1
    with pytest.raises(RecipeError) as info:
        build_model(builder(f"{name}:fails_in_a_helper"), (3,), base_dir=directory)
    assert info.value.code == "bad-builder" and "\n" not in info.value.message
    assert f'Builder "{name}:fails_in_a_helper" failed at {directory.resolve() / name}.py:{line} (in _dense): ValueError: ' in info.value.message


def test_builder_with_wrong_arguments(builder_module: tuple[str, Path]) -> None:
    name, directory = builder_module
    with pytest.raises(RecipeError) as info:
        build_model(builder(f"{name}:mlp", depth=2), (3,), base_dir=directory)
    assert info.value.code == "bad-builder" and "depth" in info.value.message
    # The call itself failed: no line of the builder to name, but the key and what it takes.
    message = info.value.message
    assert message.startswith(f'Builder "{name}:mlp" has no argument "depth" (model.builder_args).') and message.endswith(" Its arguments: width.")


def test_a_misspelt_builder_argument_gets_the_closest_parameter(builder_module: tuple[str, Path]) -> None:
    # Python's "mlp() got an unexpected keyword argument 'widht'" suggested nothing.
    name, directory = builder_module
    with pytest.raises(RecipeError) as info:
        build_model(builder(f"{name}:mlp", widht=2), (3,), base_dir=directory)
    assert info.value.code == "bad-builder" and 'has no argument "widht" (model.builder_args). Did you mean "width"?' in info.value.message
    with pytest.raises(RecipeError) as info:  # a builder of no arguments says so
        build_model(builder(f"{name}:explodes", width=2), (3,), base_dir=directory)
    assert info.value.message.endswith('has no argument "width" (model.builder_args). It takes no argument besides the input shape.')


def test_builder_module_missing() -> None:
    with pytest.raises(RecipeError) as info:
        build_model(builder("no_such_pkg_zz.models:make"), (3,))
    assert info.value.code == "bad-builder" and "no_such_pkg_zz" in info.value.message


def test_a_builder_module_whose_own_import_fails_is_told_from_a_missing_one(tmp_path: Path) -> None:
    name = f"tk_broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("import no_such_dependency_zz\n\ndef make(input_shape):\n    pass\n")
    with pytest.raises(RecipeError) as info:
        build_model(builder(f"{name}:make"), (3,), base_dir=tmp_path)
    message = info.value.message
    assert f'"{name}" was found, but an import inside it failed' in message and 'Install "no_such_dependency_zz"' in message
    assert "Is it installed, or next to the recipe?" not in message


def test_build_from_recipe_imports_builders_next_to_the_recipe(tmp_path: Path) -> None:
    name = f"tk_local_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(BUILDERS))
    (tmp_path / "r.yaml").write_text(f"task: binary\nmodel: {{builder: '{name}:mlp', builder_args: {{width: 5}}}}\nloss: binary_crossentropy\n")
    model = build_from_recipe(load_recipe(tmp_path / "r.yaml"), (2,))
    assert model.layers[0].units == 5


def test_build_from_recipe_uses_the_training_seed() -> None:
    raw = {"task": "binary", "model": MLP, "loss": "binary_crossentropy", "training": {"seed": 3}}
    a = build_from_recipe(Recipe.from_dict(raw), (4,)).get_weights()
    b = build_model(ModelSection.model_validate(MLP), (4,), seed=3).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
