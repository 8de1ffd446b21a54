"""Tests of trainkit.recipe: schema, loader, overrides and one-line RecipeErrors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainkit.errors import RecipeError
from trainkit.recipe import Recipe, apply_overrides, list_recipes, load_recipe, parse_yaml

TINY = """\
description: "tiny MLP on learnable data"
task: binary
data: {source: generator, generator: learnable_binary, rows: 100, features: 4, seed: 1}
model:
  layers:
    - {type: dense, units: 8, activation: relu, kernel_initializer: he_normal, kernel_regularizer: {l2: 0.01}}
    - {type: dropout, rate: 0.25}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: adam, learning_rate: 1e-3}
metrics: [accuracy]
training: {epochs: 3, batch_size: 16}
"""


def write(directory: Path, text: str, name: str = "tiny.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write(tmp_path, TINY)


def error_of(fn, *args, **kwargs) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        fn(*args, **kwargs)
    err = info.value
    assert "\n" not in err.message and "Traceback" not in err.message, err.message
    return err


def tiny_with(tmp_path: Path, old: str, new: str) -> Path:
    assert old in TINY
    return write(tmp_path, TINY.replace(old, new), "edited.yaml")


# ------------------------------------------------------------------------------------ loading


def test_tiny_recipe_loads_with_defaults_and_source(tiny: Path) -> None:
    recipe = load_recipe(tiny)
    assert recipe.name == "tiny"  # the file stem
    assert recipe.description == "tiny MLP on learnable data"
    assert recipe.source_path == tiny.resolve()
    assert recipe.base_dir == tiny.parent.resolve()
    assert recipe.training.validation_split == 0.2 and recipe.training.steps_per_execution == "auto"
    assert recipe.model.layers is not None and recipe.model.layers[1].type == "dropout"
    assert recipe.loss_name == "binary_crossentropy" and recipe.optimizer_name == "adam"


def test_yaml_1e_minus_3_in_file_is_a_float(tiny: Path) -> None:
    # Plain PyYAML (YAML 1.1) would read 1e-3 as the string "1e-3".
    assert load_recipe(tiny).optimizer == {"name": "adam", "learning_rate": 0.001}
    assert parse_yaml("a: 1e-3\nb: '1e-3'\nc: 2E5") == {"a": 0.001, "b": "1e-3", "c": 200000.0}


def test_explicit_name_wins_over_file_stem(tmp_path: Path) -> None:
    assert load_recipe(write(tmp_path, "name: custom\n" + TINY)).name == "custom"


def test_to_yaml_round_trips(tiny: Path, tmp_path: Path) -> None:
    recipe = load_recipe(tiny, ["training.early_stopping.patience=2"])
    again = load_recipe(write(tmp_path, recipe.to_yaml(), "again.yaml"))
    assert again.model_dump() == recipe.model_dump()
    assert "early_stopping" in recipe.to_yaml()


def test_hparams_are_flat_scalars(tiny: Path) -> None:
    hp = load_recipe(tiny).hparams()
    assert all(isinstance(v, str | int | float | bool) for v in hp.values())
    assert hp["layers"] == "8-1"
    assert hp["activations"] == "relu-sigmoid"
    assert hp["kernel_initializer"] == "he_normal-glorot_uniform"
    assert hp["learning_rate"] == pytest.approx(0.001)
    assert hp["optimizer"] == "adam" and hp["loss"] == "binary_crossentropy"
    assert hp["dropout"] == 0.25 and hp["l2"] == 0.01
    assert hp["batch_size"] == 16 and hp["epochs"] == 3
    assert hp["standardize_inputs"] is False


def test_hparams_learning_rate_defaults_to_keras_default(tiny: Path) -> None:
    assert load_recipe(tiny, ["optimizer=sgd"]).hparams()["learning_rate"] == pytest.approx(0.01)
    assert load_recipe(tiny, ["optimizer=rmsprop"]).hparams()["learning_rate"] == pytest.approx(0.001)


def test_hparams_tell_learning_rate_schedules_apart(tiny: Path) -> None:
    # learning_rate is -1 for every schedule: two recipes differing in their schedules alone were
    # alike in a comparison's table and in the hyperparameters a resume checks.
    def schedule(rate: float) -> str:
        return f"optimizer={{name: sgd, learning_rate: {{class_name: CosineDecay, config: {{initial_learning_rate: {rate}, decay_steps: 100}}}}}}"

    fast, slow = load_recipe(tiny, [schedule(0.1)]).hparams(), load_recipe(tiny, [schedule(0.01)]).hparams()
    assert fast["learning_rate"] == slow["learning_rate"] == -1
    assert fast["learning_rate_schedule"] == "CosineDecay(decay_steps=100, initial_learning_rate=0.1)"
    assert slow["learning_rate_schedule"] != fast["learning_rate_schedule"]
    assert load_recipe(tiny).hparams()["learning_rate_schedule"] == ""


def test_builder_recipe_hparams(tmp_path: Path) -> None:
    path = tiny_with(tmp_path, TINY[TINY.index("model:") : TINY.index("loss:")], "model: {builder: 'pkg.mod:make', builder_args: {width: 3}}\n")
    recipe = load_recipe(path)
    assert recipe.model.builder == "pkg.mod:make" and recipe.model.builder_args == {"width": 3}
    assert recipe.hparams()["layers"] == "builder:pkg.mod:make"


# ------------------------------------------------------------------------------------ errors


def test_recipe_not_found(tmp_path: Path) -> None:
    err = error_of(load_recipe, tmp_path / "missing.yaml")
    assert err.code == "recipe-not-found" and "missing.yaml" in err.message
    assert error_of(load_recipe, tmp_path).code == "recipe-not-found"  # a directory


def test_a_missing_recipe_names_the_file_it_likely_meant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `trainkit recipes` lists names, and `trainkit train mlp_binary` only said the file did not exist.
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "mlp_binary.yaml").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    for typed in ("mlp_binary", "mlp_binary.yaml", "recipes/mlp_binary", "recipes/mlp_binar.yaml"):
        err = error_of(load_recipe, typed)
        assert err.code == "recipe-not-found" and err.message.endswith(f"Did you mean {Path('recipes/mlp_binary.yaml')}?"), err.message
    assert "Did you mean" not in error_of(load_recipe, "recipes/other_thing.yaml").message


def test_a_recipe_that_is_not_text_is_blamed_on_its_content_not_its_path(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00bad")
    err = error_of(load_recipe, path)
    assert err.code == "recipe-yaml" and "is not UTF-8 text (byte 0)" in err.message


def test_a_recipe_path_that_never_ends_is_refused_instead_of_read_until_memory_runs_out(tmp_path: Path) -> None:
    # `trainkit check /dev/zero` (or a data file passed by mistake) was read whole: with /dev/zero,
    # until the process ran out of memory.
    from trainkit.recipe import MAX_RECIPE_BYTES

    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_RECIPE_BYTES + 1))
    for path in (big, Path("/dev/zero")) if Path("/dev/zero").exists() else (big,):
        err = error_of(load_recipe, path)
        assert err.code == "recipe-yaml" and "too large for a recipe" in err.message and "not a valid path" not in err.message


@pytest.mark.parametrize(("text", "says"), [
    ("epochs: 3\n", "Unknown key epochs. Did you mean training.epochs? (epochs belongs under training)"),
    ("training: {learning_rate: 0.1}\n", "Unknown key training.learning_rate. Did you mean optimizer.learning_rate?"),
    ("training: {rows: 10}\n", "Unknown key training.rows. Did you mean data.rows? (rows belongs under data)"),
    ("training: {metrics: [accuracy]}\n", "Unknown key training.metrics. Did you mean metrics? (metrics belongs at the top level)"),
])
def test_a_key_written_in_the_wrong_section_is_pointed_to_its_section(tmp_path: Path, text: str, says: str) -> None:
    # A wrong nesting listed the valid keys of where it was written, none of them the one meant.
    base = "task: binary\nloss: binary_crossentropy\nmodel:\n  layers:\n    - {type: dense, units: 1, activation: sigmoid}\n"
    err = error_of(load_recipe, write(tmp_path, base + text))
    assert err.code == "recipe-unknown-key" and says in err.message, err.message


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    err = error_of(load_recipe, write(tmp_path, "task: binary\nmodel: [unclosed\n"))
    assert err.code == "recipe-yaml"
    assert "line 3" in err.message and "column" in err.message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "{}\n", "null\n"])
def test_empty_recipe(tmp_path: Path, text: str) -> None:
    assert error_of(load_recipe, write(tmp_path, text)).code == "recipe-empty"


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_top_level(tmp_path: Path, text: str) -> None:
    err = error_of(load_recipe, write(tmp_path, text))
    assert err.code == "recipe-invalid-value" and "mapping" in err.message


def test_unknown_key_names_dotted_path_and_closest(tmp_path: Path) -> None:
    err = error_of(load_recipe, tiny_with(tmp_path, "epochs: 3", "epoch: 3"))
    assert err.code == "recipe-unknown-key"
    assert "training.epoch" in err.message and "Did you mean training.epochs?" in err.message


def test_unknown_key_inside_a_layer(tmp_path: Path) -> None:
    err = error_of(load_recipe, tiny_with(tmp_path, "units: 8,", "unit: 8,"))
    assert err.code == "recipe-unknown-key"
    assert "model.layers.0.unit" in err.message and "model.layers.0.units" in err.message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    err = error_of(load_recipe, write(tmp_path, TINY + "trainign: {}\n"))
    assert err.code == "recipe-unknown-key" and "Did you mean training?" in err.message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("epochs: 3", "epochs: abc", ["training.epochs", "'abc'", "integer"]),
        ("epochs: 3", "epochs: -1", ["training.epochs", "-1", "greater than or equal to 1"]),
        ("rate: 0.25", "rate: 1.5", ["model.layers.1.rate", "1.5"]),
        ("task: binary", "task: binry", ["task", "'binry'", "'binary'"]),
        ("type: dropout", "type: dropuot", ["model.layers.1.type", "Did you mean dropout?"]),
        ("rows: 100", "rows: 1000000000000000000000000000000", ["data.rows"]),
        ("rows: 100", "rows: 1e400", ["data.rows", "finite"]),
        ("batch_size: 16", "batch_size: [1, 2]", ["training.batch_size", "[1, 2]"]),
        ("loss: binary_crossentropy", "loss: {from_logits: true}", ["loss", "'name'"]),
        ("source: generator,", "source: csv,", ["data", "path", "target"]),
        ("source: generator,", "source: sklearn,", ["data", "breast_cancer"]),
        # A column named no or off: YAML reads the bare word as a boolean.
        ("source: generator, generator: learnable_binary, rows: 100, features: 4, seed: 1", "source: csv, path: d.csv, target: no",
         ["data.target", "received False", "in quotes ('no')"]),
        ("source: generator, generator: learnable_binary, rows: 100, features: 4, seed: 1", "source: csv, path: d.csv, target: y, drop: [off]",
         ["data.drop.0", "received False", "in quotes"]),
        ("source: generator,", "source: sklearn, name: digits,", ["data: features is read only by a generator source", "this one is sklearn"]),
        ("source: generator,", "source: generator, path: data.csv,", ["data: path is read only by a csv or npz source", "remove path"]),
        # Keys another generator reads were ignored in silence: classes on a regression generator,
        # image_shape on a feature table, features on images.
        ("generator: learnable_binary,", "generator: learnable_regression, classes: 5,", ["classes is read only by", "this one is learnable_regression"]),
        ("generator: learnable_binary,", "generator: learnable_binary, image_shape: [8, 8, 1],", ["image_shape is read only by the random_images generator"]),
        ("generator: learnable_binary,", "generator: random_images,", ["features is read only by", "this one is random_images"]),
        ("task: binary", "task: binary\npreprocessing: {standardize_targets: true}", ["standardize_targets", "regression"]),
        ("task: binary", "task: binary\nname: ../../escape", ["name", "'../../escape'", "one plain folder name"]),
        ("task: binary", "task: binary\nname: runs/nested", ["name", "'runs/nested'"]),
        ("task: binary", "task: binary\nname: '..'", ["name", "'..'"]),
        # A folder name longer than file systems take: training failed with an OSError traceback.
        ("task: binary", "task: binary\nname: " + "é" * 128, ["name", "at most 255 bytes", "got 256"]),
    ],
)
def test_invalid_values(tmp_path: Path, old: str, new: str, expected: list[str]) -> None:
    err = error_of(load_recipe, tiny_with(tmp_path, old, new))
    assert err.code == "recipe-invalid-value"
    for fragment in expected:
        assert fragment in err.message


@pytest.mark.parametrize(("loss", "name"), [("msle", "msle"), ("mape", "mape"), ("poisson", "poisson"),
                                            ("MeanSquaredLogarithmicError", "meansquaredlogarithmicerror"),
                                            ("{name: mean_absolute_percentage_error}", "mean_absolute_percentage_error")])
def test_standardised_targets_are_refused_for_losses_that_need_them_uncentred(tmp_path: Path, loss: str, name: str) -> None:
    # Standardised targets are signed and near 0: msle reads half of them as 0, poisson takes no
    # negative rate (both refused by the data checks without naming the recipe's key), and mape
    # divides by them (diabetes so standardised passed every check).
    text = TINY.replace("task: binary", "task: regression\npreprocessing: {standardize_targets: true}").replace(
        "loss: binary_crossentropy", f"loss: {loss}").replace("metrics: [accuracy]\n", "")
    err = error_of(load_recipe, write(tmp_path, text, "edited.yaml"))
    assert err.code == "recipe-invalid-value"
    assert "standardize_targets centres the targets on 0" in err.message and f"loss {name} cannot take" in err.message
    assert "data.target_scale" in err.message
    # Unstandardised, each loads.
    assert load_recipe(write(tmp_path, text.replace("standardize_targets: true", "standardize_targets: false"), "ok.yaml")).loss_name == name


@pytest.mark.parametrize(("override", "meant"), [
    ("task=binery", "binary"),
    ("task=Binary", "binary"),
    ("data.source=cvs", "csv"),
    ("data.generator=learnable_binery", "learnable_binary"),
    ("data.feature_distribution=normall", "normal"),
    ("training.on_nan=wran", "warn"),
    ("training.checkpoint_every=autp", "auto"),  # 'auto' or an integer
    ("model.layers.0={type: conv2d, filters: 2, kernel_size: 2, padding: sme}", "same"),  # inside a layer
])
def test_a_misspelt_choice_names_the_closest_valid_one(tiny: Path, override: str, meant: str) -> None:
    err = error_of(load_recipe, tiny, [override])
    assert err.code == "recipe-invalid-value" and err.message.endswith(f"Did you mean {meant}?")


def test_a_value_far_from_every_choice_gets_no_guess(tiny: Path) -> None:
    assert "Did you mean" not in error_of(load_recipe, tiny, ["task=xyzzy"]).message


def test_layers_and_builder_are_exclusive(tmp_path: Path) -> None:
    err = error_of(load_recipe, tiny_with(tmp_path, "model:\n", "model:\n  builder: 'a.b:c'\n"))
    assert err.code == "recipe-invalid-value" and "exactly one" in err.message
    no_model = TINY[: TINY.index("model:")] + "model: {}\n" + TINY[TINY.index("loss:") :]
    assert "exactly one" in error_of(load_recipe, write(tmp_path, no_model)).message


def test_bad_builder_format(tmp_path: Path) -> None:
    err = error_of(load_recipe, tiny_with(tmp_path, "model:\n  layers:", "model:\n  builder: not-a-path\n  layers:"))
    assert err.code == "recipe-invalid-value"
    assert "package.module:function" in err.message


def test_duplicate_layer_names(tmp_path: Path) -> None:
    text = TINY.replace("units: 8,", "units: 8, name: a,").replace("units: 1,", "units: 1, name: a,")
    err = error_of(load_recipe, write(tmp_path, text))
    assert err.code == "recipe-invalid-value" and "unique" in err.message


def test_missing_required_key(tmp_path: Path) -> None:
    err = error_of(load_recipe, write(tmp_path, TINY.replace("task: binary\n", "")))
    assert err.code == "recipe-invalid-value" and "Missing required key task" in err.message


def test_several_problems_in_one_line(tmp_path: Path) -> None:
    text = TINY.replace("epochs: 3", "epochs: x").replace("batch_size: 16", "batch_size: y").replace("task: binary", "task: z")
    err = error_of(load_recipe, write(tmp_path, text))
    assert "training.epochs" in err.message and "training.batch_size" in err.message and "task" in err.message


@pytest.mark.parametrize(
    ("old", "new", "key", "line"),
    [
        ("loss: binary_crossentropy", "loss: binary_crossentropy\noptimizer: sgd", "optimizer", 11),
        ("epochs: 3,", "epochs: 3, epochs: 5,", "epochs", 12),
    ],
)
def test_a_key_repeated_in_one_mapping_is_an_error_not_a_silent_override(tmp_path: Path, old: str, new: str, key: str, line: int) -> None:
    err = error_of(load_recipe, tiny_with(tmp_path, old, new))
    assert err.code == "recipe-yaml"
    assert f"duplicate key '{key}'" in err.message and f"at line {line}," in err.message


def test_a_merged_mapping_may_still_be_overridden(tmp_path: Path) -> None:
    text = TINY.replace("training: {epochs: 3, batch_size: 16}", "base: &base {epochs: 3, batch_size: 16}\ntraining: {<<: *base, epochs: 5}")
    text = text.replace("base: &base", "x-base: &base")
    data = parse_yaml(text)
    assert data["training"] == {"epochs": 5, "batch_size": 16}


def test_yaml_that_cannot_be_constructed(tmp_path: Path) -> None:
    for text in ["a: 2024-13-45\n", "a: !!python/object:os.system x\n", "a: " + "9" * 5000 + "\n", "[" * 5000]:
        assert error_of(load_recipe, write(tmp_path, text)).code == "recipe-yaml"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("allow: &loop [a, *loop]\n", "refers to itself"),
        ("allow: " + "[" * 40 + "]" * 40 + "\n", "levels deep"),
        ("allow: &a [x, x, x, x, x, x, x, x, x, x]\ndescription: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
         "logging: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nmetrics: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
         "preprocessing: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n", "expands to more than"),
    ],
)
def test_cyclic_deep_or_exploding_yaml(tmp_path: Path, extra: str, fragment: str) -> None:
    # (the extra keys replace the recipe's own: a repeated key is an error of its own)
    path = write(tmp_path, TINY.replace("metrics: [accuracy]\n", "").replace('description: "tiny MLP on learnable data"\n', "") + extra)
    for overrides in ([], ["training.epochs=2"]):
        err = error_of(load_recipe, path, overrides)
        assert err.code == "recipe-invalid-value" and fragment in err.message


def test_odd_builder_args_still_dump(tmp_path: Path) -> None:
    text = "task: binary\nloss: bce\nmodel: {builder: 'a.b:c', builder_args: {raw: !!binary '/w==', day: 2024-01-31, x: .nan}}\n"
    dumped = yaml.safe_load(load_recipe(write(tmp_path, text)).to_yaml())
    assert set(dumped["model"]["builder_args"]) == {"raw", "day", "x"}


def test_unicode_keys_and_values(tmp_path: Path) -> None:
    err = error_of(load_recipe, write(tmp_path, TINY + "ünïcødé: ✓\n"))
    assert err.code == "recipe-unknown-key" and "ünïcødé" in err.message
    assert load_recipe(write(tmp_path, TINY.replace("tiny MLP", "tiny MLP ✓ 日本"))).description.endswith("日本 on learnable data")


# ----------------------------------------------------------------------------------- overrides


def test_overrides_nested_list_index_and_types(tiny: Path) -> None:
    recipe = load_recipe(tiny, ["training.epochs=7", "model.layers.0.units=64", "optimizer.learning_rate=1e-2", "training.jit_compile=false", "description=changed"])
    assert recipe.training.epochs == 7
    assert recipe.model.layers[0].units == 64
    assert recipe.optimizer["learning_rate"] == 0.01 and isinstance(recipe.optimizer["learning_rate"], float)
    assert recipe.training.jit_compile is False
    assert recipe.description == "changed"


def test_override_float_parsing() -> None:
    raw = {"optimizer": {"name": "adam"}}
    out = apply_overrides(raw, ["optimizer.learning_rate=1e-3", "optimizer.beta_1=.9", "optimizer.epsilon=-2.5E-7"])
    assert out["optimizer"] == {"name": "adam", "learning_rate": 0.001, "beta_1": 0.9, "epsilon": -2.5e-7}
    assert apply_overrides(raw, ["optimizer.name='1e-3'"])["optimizer"]["name"] == "1e-3"  # quoted stays text


def test_override_does_not_mutate_input_and_creates_null_sections() -> None:
    raw = {"training": {"early_stopping": None}}
    out = apply_overrides(raw, ["training.early_stopping.patience=3", "data.rows=50"])
    assert raw == {"training": {"early_stopping": None}}
    assert out["training"]["early_stopping"] == {"patience": 3} and out["data"] == {"rows": 50}


def test_null_override_removes_a_key_null_is_no_value_of(tiny: Path) -> None:
    # `rows` on a csv source is refused with "remove rows", and --set could not remove it:
    # data.rows=null was refused as "expected a valid integer".
    (tiny.parent / "d.csv").write_text("a,b,label\n" + "".join(f"{i % 7},{i % 3},{i % 2}\n" for i in range(40)), encoding="utf-8")
    to_csv = ["data.source=csv", "data.path=d.csv", "data.target=label"]
    assert "read only by a generator source" in error_of(load_recipe, tiny, to_csv).message
    recipe = load_recipe(tiny, [*to_csv, "data.rows=null", "data.features=null", "data.seed=null"])
    assert recipe.data.source == "csv" and not {"rows", "features", "seed"} & recipe.data.model_fields_set
    out = apply_overrides({"training": {"early_stopping": {"patience": 3}}}, ["training.early_stopping=null"])
    assert out["training"]["early_stopping"] is None  # null is a value there: it stays, and turns it off
    assert apply_overrides({}, ["training.epochs=null"]) == {"training": {"epochs": None}}  # nothing to remove: refused as before


def test_override_accepts_a_single_string_and_an_empty_recipe() -> None:
    assert apply_overrides({}, "training.epochs=4") == {"training": {"epochs": 4}}
    assert apply_overrides(None, ["task=binary"]) == {"task": "binary"}
    assert error_of(apply_overrides, [1, 2], ["task=binary"]).code == "recipe-invalid-value"


def test_override_replaces_whole_values(tiny: Path) -> None:
    recipe = load_recipe(tiny, ["loss={name: binary_crossentropy, from_logits: true}", "metrics=[accuracy, auc]"])
    assert recipe.loss == {"name": "binary_crossentropy", "from_logits": True}
    assert recipe.metrics == ["accuracy", "auc"]


def test_override_into_free_mapping(tiny: Path) -> None:
    recipe = load_recipe(tiny, ["model.layers.0.kernel_regularizer.l1=0.5"])
    assert recipe.model.layers[0].kernel_regularizer == {"l2": 0.01, "l1": 0.5}


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("training.epochs", "key.path=value"),
        ("=3", "empty key"),
        ("training..epochs=3", "empty key"),
        (" =3", "empty key"),
        ("training.epochs.deep=3", "training.epochs holds int"),
        ("task.name=x", "task holds str"),
        ("training.epoch=3", "Did you mean training.epochs?"),
        ("nonsense.key=1", "unknown key nonsense"),
        ("model.layers.9.units=3", "model.layers.9"),
        ("model.layers.x.units=3", "model.layers.x"),
        ("model.layers.1.units=3", "Valid keys of model.layers.1"),
        ("training.epochs=[1,", "not valid YAML"),
    ],
)
def test_bad_overrides(tiny: Path, override: str, fragment: str) -> None:
    err = error_of(load_recipe, tiny, [override])
    assert err.code == "bad-override"
    assert fragment in err.message


def test_an_index_past_a_list_says_an_override_adds_no_item(tiny: Path) -> None:
    # --set model.layers.9={...} meant to add a layer was told only the valid indices.
    assert "set the whole list to add or remove items (model.layers=[...]" in error_of(load_recipe, tiny, ["model.layers.9.units=3"]).message
    assert "whole list" not in error_of(load_recipe, tiny, ["model.layers.x.units=3"]).message


def test_override_value_is_validated_afterwards(tiny: Path) -> None:
    err = error_of(load_recipe, tiny, ["training.epochs=-5"])
    assert err.code == "recipe-invalid-value" and "training.epochs" in err.message


# ----------------------------------------------------------------------------------- listing


def test_list_recipes_shows_broken_files_as_errors(tmp_path: Path) -> None:
    write(tmp_path, TINY, "a_good.yaml")
    write(tmp_path, "task: [", "b_broken.yaml")
    write(tmp_path, TINY.replace("epochs: 3", "epoch: 3"), "c_typo.yml")
    (tmp_path / "notes.txt").write_text("ignored")
    listing = list_recipes(tmp_path)
    assert [name for name, _ in listing] == ["a_good", "b_broken", "c_typo"]
    assert listing[0][1] == "tiny MLP on learnable data"
    assert listing[1][1].startswith("error: [recipe-yaml]")
    assert listing[2][1].startswith("error: [recipe-unknown-key]")


# -------------------------------------------------------------------------------------- fuzz

_KEYS = ["task", "data", "rows", "model", "layers", "0", "1", "units", "training", "epochs", "loss", "name", "x", "", " ", "é"]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=200), st.text(alphabet=":-[]{}#&*!|>'\"%@`,? \n\t0123456789abcdeé", max_size=120)))
def test_fuzz_yaml_text_only_raises_recipe_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_recipe(path)
        except RecipeError as err:
            assert "\n" not in err.message


_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_override = st.one_of(
    st.text(max_size=60),
    st.builds(lambda keys, value: ".".join(keys) + "=" + value, st.lists(st.sampled_from(_KEYS), min_size=1, max_size=5), st.text(max_size=20)),
    st.builds(lambda keys, value: ".".join(keys) + "=" + yaml.safe_dump(value, default_flow_style=True).strip(), st.lists(st.sampled_from(_KEYS), min_size=1, max_size=4), _yaml_values),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=st.lists(_override, min_size=1, max_size=3))
def test_fuzz_overrides_only_raise_recipe_error(overrides: list[str]) -> None:
    raw = parse_yaml(TINY)
    try:
        Recipe.from_dict(apply_overrides(raw, overrides), source_path="fuzz.yaml")
    except RecipeError as err:
        assert "\n" not in err.message


def test_keyword_override_on_a_loss_or_optimizer_given_by_name(tiny: Path):
    """`loss: binary_crossentropy` takes `--set loss.from_logits=true`: the name becomes {name: ...}."""
    recipe = load_recipe(tiny, ["loss.from_logits=true", "optimizer.learning_rate=0.05"])
    assert recipe.loss == {"name": "binary_crossentropy", "from_logits": True}
    assert recipe.optimizer == {"name": "adam", "learning_rate": 0.05}


@pytest.mark.parametrize("override", ["training.epochs=true", "model.layers.0.units=true", "data.seed=false"])
def test_a_boolean_where_a_number_goes_is_refused(tiny: Path, override: str) -> None:
    # Pydantic read true as 1: `units: true` built a one-unit layer.
    err = error_of(load_recipe, tiny, [override])
    assert err.code == "recipe-invalid-value" and "must be a number, got" in err.message


def test_booleans_still_fill_boolean_fields(tiny: Path) -> None:
    recipe = load_recipe(tiny, ["training.jit_compile=true", "training.shuffle=false"])
    assert recipe.training.jit_compile is True and recipe.training.shuffle is False


def test_the_learning_rate_of_the_default_optimizer_can_be_set(tmp_path: Path) -> None:
    text = "\n".join(line for line in TINY.splitlines() if not line.startswith("optimizer"))
    recipe = load_recipe(write(tmp_path, text), ["optimizer.learning_rate=1e-3"])
    assert recipe.optimizer == {"name": "adam", "learning_rate": 0.001}


@pytest.mark.parametrize(("overrides", "words"), [
    (["training.early_stopping={monitor: val_los}"], "did you mean 'val_loss'"),
    (["training.validation_split=0", "training.early_stopping.patience=2"], "val_* needs training.validation_split > 0"),
])
def test_an_early_stopping_monitor_that_is_never_logged_is_refused_before_training(tiny: Path, overrides: list[str], words: str) -> None:
    err = error_of(load_recipe, tiny, overrides)
    assert err.code == "recipe-invalid-value" and words in err.message


def test_an_early_stopping_monitor_may_name_a_repeated_metric_as_the_trainer_numbers_it(tiny: Path) -> None:
    # The trainer logs auc and auc_1; the recipe refused val_auc_1 as never logged.
    overrides = ["metrics=[auc, {name: auc, curve: PR}]"]
    assert load_recipe(tiny, [*overrides, "training.early_stopping={monitor: val_auc_1}"]).training.early_stopping.monitor == "val_auc_1"
    assert "the epoch logs are loss, auc, auc_1, val_loss, val_auc, val_auc_1" in error_of(load_recipe, tiny, [*overrides, "training.early_stopping={monitor: val_auc_2}"]).message


def test_class_weight_is_read_with_integer_class_ids(tiny: Path) -> None:
    assert load_recipe(tiny, ["training.class_weight={0: 1, 1: 4.5}"]).training.class_weight == {0: 1.0, 1: 4.5}
    err = error_of(load_recipe, tiny, ["training.class_weight={0: -1}"])
    assert err.code == "recipe-invalid-value" and "class_weight" in err.message


def test_a_bad_value_from_the_command_line_is_blamed_on_its_override(tiny: Path) -> None:
    err = error_of(load_recipe, tiny, ["training.batch_size=8", "training.epochs=abc"])
    assert err.message.startswith("--set training.epochs=abc: ") and str(tiny) not in err.message
    err = error_of(load_recipe, tiny, ["model.layers.0.units=0"])
    assert err.message.startswith("--set model.layers.0.units=0: ")


def test_an_item_of_a_list_the_recipe_does_not_set_is_explained(tiny: Path) -> None:
    err = error_of(load_recipe, tiny, ["allow.0=label-format"])
    assert err.code == "bad-override" and "the recipe sets no allow" in err.message and "--set 'allow=[...]'" in err.message


@pytest.mark.parametrize("override", ["training.early_stopping.monitor=val_acc", "training.class_weight={0: -1}"])
def test_nested_values_from_the_command_line_are_blamed_on_their_override(tiny: Path, override: str) -> None:
    err = error_of(load_recipe, tiny, [override])
    assert err.message.startswith(f"--set {override}: ")


@pytest.mark.parametrize(("overrides", "blamed", "path"), [
    (["sweep.optimizer.learning_rate=0.1"], 0, "Invalid value at sweep.optimizer.learning_rate: received 0.1; expected a valid list of the values to try, such as [0.1]"),
    (["sweep={optimizer: {learning_rate: 0.1}}"], 0, "sweep.optimizer.learning_rate"),
    (["sweep.training.epoch=[1, 2]"], 0, "sweep.training.epoch: unknown key training.epoch (did you mean training.epochs)"),
    (["training.early_stopping={monitor: val_los}"], 0, "training.early_stopping.monitor 'val_los' is not logged"),
    (["training.early_stopping.monitor=val_los"], 0, "training.early_stopping.monitor 'val_los'"),
    (["training.epochs=4", "metrics=[auc]"], 1, "training.early_stopping.monitor 'val_accuracy'"),  # names no path of an override
])
def test_an_error_a_set_value_causes_names_that_set_and_the_full_path(tmp_path: Path, overrides: list[str], blamed: int, path: str) -> None:
    recipe = write(tmp_path, TINY.replace("training: {epochs: 3,", "training: {early_stopping: {monitor: val_accuracy}, epochs: 3,"))
    assert load_recipe(recipe).training.early_stopping is not None  # the file alone is fine
    err = error_of(load_recipe, recipe, overrides)
    assert err.message.startswith(f"--set {overrides[blamed]}: ") and str(recipe) not in err.message
    assert path in err.message


def test_an_error_of_the_file_itself_is_still_blamed_on_the_file(tmp_path: Path) -> None:
    recipe = write(tmp_path, TINY.replace("training: {epochs: 3,", "training: {early_stopping: {monitor: val_acc}, epochs: 3,"))
    err = error_of(load_recipe, recipe, ["training.epochs=4", "data.rows=50"])
    assert err.message.startswith(f"{recipe}: ") and "--set" not in err.message


@pytest.mark.parametrize("override", ["training.class_weight={true: 2}", "training.class_weight={0: 1, 1: true}"])
def test_class_weight_takes_no_booleans(tiny: Path, override: str) -> None:
    assert "class_weight maps class ids to weights" in error_of(load_recipe, tiny, [override]).message


def _schema_keys(model: type, prefix: str = "") -> list[str]:
    """Every dotted key of a section, descending into the sections it holds (not into layers)."""
    from pydantic import BaseModel

    keys = []
    for name, field in model.model_fields.items():
        keys.append(f"{prefix}{name}")
        section = next((t for t in (field.annotation, *getattr(field.annotation, "__args__", ())) if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if section is not None and section.__name__ != "EarlyStoppingConfig":  # its keys are listed in one cell
            keys.extend(_schema_keys(section, f"{prefix}{name}."))
    return keys


def test_the_readme_recipe_reference_names_every_key_and_layer_type():
    from trainkit.recipe import LAYER_TYPES, EarlyStoppingConfig, LayerSpec

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Recipe reference", 1)[1].split("\n## ", 1)[0]
    missing = [key for key in _schema_keys(Recipe) if f"`{key}`" not in section]
    assert not missing, f"README's recipe reference lacks {missing}"
    assert all(f"{key}:" in section for key in EarlyStoppingConfig.model_fields)
    layers = {line.split("|")[1].strip(" `"): line for line in section.splitlines() if line.startswith("| `") and line.split("|")[1].strip(" `") in LAYER_TYPES}
    assert set(layers) == set(LAYER_TYPES)
    for layer in LayerSpec.__origin__.__args__:  # Annotated[Union[...], discriminator]
        kind = layer.model_fields["type"].annotation.__args__[0]
        keys = set(layer.model_fields) - {"type", "name"}
        assert all(f"`{key}`" in layers[kind] for key in keys), (kind, keys)


def test_class_weight_on_a_multilabel_recipe_is_refused_when_it_loads(tmp_path):
    # fit refused it only after the run directory was made, leaving a failed run behind.
    text = (TINY.replace("task: binary", "task: multilabel")
            .replace("generator: learnable_binary", "generator: random_labels, classes: 3")
            .replace("units: 1, activation: sigmoid", "units: 3, activation: sigmoid")
            .replace("batch_size: 16}", "batch_size: 16, class_weight: {0: 1.0, 1: 5.0}}"))
    err = error_of(load_recipe, write(tmp_path, text))
    assert "a multilabel row holds several labels" in err.message
    assert load_recipe(write(tmp_path, text), ["training.class_weight=null"]).training.class_weight is None
    # A regression's too (the multilabel audit saw its failed run directory left behind).
    text = (TINY.replace("task: binary", "task: regression").replace("generator: learnable_binary", "generator: learnable_regression")
            .replace("units: 1, activation: sigmoid", "units: 1").replace("loss: binary_crossentropy", "loss: mse")
            .replace("metrics: [accuracy]", "metrics: [mae]").replace("batch_size: 16}", "batch_size: 16, class_weight: {0: 1.0, 1: 5.0}}"))
    err = error_of(load_recipe, write(tmp_path, text))
    assert "a regression has none" in err.message


def test_a_logdir_under_the_home_directory_is_expanded(tmp_path: Path, monkeypatch) -> None:
    # `logging.logdir: ~/runs` (no shell reads a recipe) trained into a folder named "~" in the
    # current directory, while the summary said "run written to ~/runs/...".
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    written = write(tmp_path, TINY + "logging: {logdir: ~/runs}\n")
    assert load_recipe(written).logging.logdir == str(tmp_path / "home" / "runs")
    assert load_recipe(tiny_with(tmp_path, "seed: 1", "seed: 2"), ["logging.logdir=~/elsewhere"]).logging.logdir == str(tmp_path / "home" / "elsewhere")
    assert load_recipe(written, ["logging.logdir=runs/~x"]).logging.logdir == "runs/~x"  # only a leading ~ is the home
