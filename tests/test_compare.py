"""Comparing runs: sweep expansion and validation, the table, `trainkit compare`, HParams records."""

from __future__ import annotations

import gc
import json
import math
import re
import shlex
import weakref
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from trainkit.cli import app
from trainkit.compare import (
    CompareRow,
    best_epoch,
    compare,
    expand,
    expand_all,
    format_table,
    format_value,
    iter_compare,
    table_rows,
    variant_label,
)
from trainkit.errors import RecipeError
from trainkit.recipe import MAX_VARIANTS, Recipe, load_recipe

TINY = """
name: tiny
task: binary
data: {source: generator, generator: learnable_binary, rows: 120, features: 4, seed: 0}
preprocessing: {standardize_inputs: true}
model:
  layers:
    - {type: dense, units: 4, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: adam, learning_rate: 0.01}
metrics: [accuracy]
training: {epochs: 2, batch_size: 32, jit_compile: false}
"""


def recipe_with(tmp_path: Path, sweep: object = None, name: str = "tiny", **changes: object) -> Path:
    raw = yaml.safe_load(TINY)
    raw["name"] = name
    raw.update(changes)
    if sweep is not None:
        raw["sweep"] = sweep
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run_dirs(logdir: Path) -> list[Path]:
    return sorted(p for p in logdir.glob("*/*") if p.is_dir()) if logdir.exists() else []


# ------------------------------------------------------------------------------ sweep expansion


def test_a_recipe_without_sweep_is_one_variant(tmp_path):
    (variant,) = expand(load_recipe(recipe_with(tmp_path)))
    assert variant.name == "tiny" and variant.values == {}


def test_sweep_expands_to_the_cartesian_product_with_values_applied(tmp_path):
    sweep = {"optimizer.learning_rate": [1.0, 1e-3, 1e-4], "preprocessing.standardize_inputs": [False, True]}
    recipe = load_recipe(recipe_with(tmp_path, sweep))
    variants = expand(recipe)
    assert len(variants) == 6
    assert [v.name for v in variants[:2]] == ["tiny-learning_rate=1,standardize_inputs=false", "tiny-learning_rate=1,standardize_inputs=true"]
    last = variants[-1].recipe
    assert last.optimizer == {"name": "adam", "learning_rate": 1e-4}
    assert last.preprocessing.standardize_inputs is True
    assert last.sweep is None  # a variant is one run
    assert last.source_path == recipe.source_path  # relative data paths still resolve
    assert recipe.optimizer["learning_rate"] == 0.01  # the base recipe is untouched


def test_nested_sweep_and_set_override_mean_the_same_paths(tmp_path):
    nested = load_recipe(recipe_with(tmp_path, {"optimizer": {"learning_rate": [0.1, 0.01]}}))
    by_set = load_recipe(recipe_with(tmp_path, name="plain"), ["sweep.optimizer.learning_rate=[0.1, 1e-2]"])
    assert nested.sweep == by_set.sweep == {"optimizer.learning_rate": [0.1, 0.01]}


def test_a_set_option_the_sweep_replaces_is_warned_of(tmp_path, capsys):
    # The sweep's values replaced the --set value in every run, without a word.
    path = recipe_with(tmp_path, {"optimizer.learning_rate": [0.1, 0.01]})
    variants = expand(load_recipe(path, ["optimizer.learning_rate=0.5", "training.epochs=2"]))
    assert [v.recipe.optimizer["learning_rate"] for v in variants] == [0.1, 0.01]
    warned = capsys.readouterr().err.splitlines()
    assert len(warned) == 1 and warned[0].startswith("warning: [set-replaced-by-sweep] --set optimizer.learning_rate=0.5 ")
    expand(load_recipe(path, ["sweep.optimizer.learning_rate=[0.5]", "optimizer.name=sgd"]))
    assert capsys.readouterr().err == ""


def test_a_sweep_into_an_optimizer_given_by_name_takes_its_keywords(tmp_path):
    recipe = load_recipe(recipe_with(tmp_path, {"optimizer.learning_rate": [0.1]}, optimizer="sgd"))
    (variant,) = expand(recipe)
    assert variant.recipe.optimizer == {"name": "sgd", "learning_rate": 0.1}
    assert recipe.optimizer == "sgd"


def test_clashing_key_names_use_the_whole_path(tmp_path):
    recipe = load_recipe(recipe_with(tmp_path, {"model.layers.0.units": [8], "model.layers.1.units": [1]}))
    (variant,) = expand(recipe)
    assert variant.name == "tiny-model.layers.0.units=8,model.layers.1.units=1"


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        ({"optimizer.learning_rat": [0.1]}, None),  # free optimizer kwargs: Keras judges the name
        ({"training.epoch": [1, 2]}, "did you mean training.epochs"),
        ({"model.layers.5.units": [3]}, "use an index from 0 to 1"),
        ({"training.epochs": []}, "lists no values; give the values to train, e.g. training.epochs: [10, 20]"),
        ({"training.epochs": 3}, "expected a valid list"),
        ({"sweep.x": [1]}, "cannot change the sweep itself"),
        ({"training.epochs": list(range(1, 20)), "training.batch_size": list(range(1, 20))}, f"at most {MAX_VARIANTS}"),
    ],
)
def test_sweep_paths_and_sizes_are_checked_when_the_recipe_loads(tmp_path, sweep, expected):
    path = recipe_with(tmp_path, sweep)
    if expected is None:
        assert load_recipe(path).sweep == sweep
        return
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert err.value.code == "recipe-invalid-value"
    assert expected in err.value.message
    assert "\n" not in str(err.value)


def test_a_bad_value_names_its_variant_before_anything_runs(tmp_path):
    recipe = load_recipe(recipe_with(tmp_path, {"training.epochs": [1, "many"]}))
    with pytest.raises(RecipeError) as err:
        expand_all([recipe])
    assert "sweep variant epochs=many" in err.value.message and "training.epochs" in err.value.message


def test_train_recipe_refuses_a_sweep_and_points_to_compare(tmp_path):
    from trainkit.run import train_recipe

    recipe = load_recipe(recipe_with(tmp_path, {"optimizer.learning_rate": [0.1, 0.01]}))
    with pytest.raises(RecipeError) as err:
        train_recipe(recipe, logdir=tmp_path / "runs")
    assert err.value.code == "sweep-needs-compare"
    assert "trainkit compare" in err.value.message and "--set sweep=null" in err.value.message
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e-3, "0.001"), (1e-5, "1e-05"), (1.0, "1"), (True, "true"), (64, "64"), ("he normal/x", "he_normal_x"), ({"name": "sgd"}, "sgd")],
)
def test_format_value_is_short_and_path_safe(value, text):
    assert format_value(value) == text
    assert "/" not in format_value(value)


def test_format_value_keeps_floats_that_six_digits_would_merge():
    # 0.001 and 0.0010000001 both spelt "0.001": one run name for two runs, refused as duplicates.
    assert format_value(0.0010000001) == "0.0010000001"
    assert format_value(1234567.0) == "1234567.0"
    assert format_value(0.001) == "0.001"


def test_sweep_values_spelt_alike_are_named_not_called_a_recipe_given_twice(runner, tmp_path):
    recipe = recipe_with(tmp_path, {"training.seed": [1, 1.0]})
    result = runner.invoke(app, ["compare", str(recipe), "--logdir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: [duplicate-run-name] {recipe}: the sweep values "), result.output
    assert "given 2 times" not in result.output and '{"training.seed": 1.0}' in result.output


def test_sweep_variant_names_are_cut_to_a_folder_name_and_stay_apart(tmp_path):
    # Whole layer lists spelt names over 255 bytes: the run failed creating its folder (OSError).
    layers = [[{"type": "dense", "units": 8 + i, "activation": "relu", "kernel_initializer": "he_normal"}] * 6 + [{"type": "dense", "units": 1}]
              for i in range(2)]
    variants = expand(load_recipe(recipe_with(tmp_path, {"model.layers": layers})))
    names = [v.name for v in variants]
    assert len(set(names)) == 2 and all(len(name.encode()) <= 255 for name in names)
    assert all(name.startswith("tiny-layers=") for name in names)


def test_variant_label_joins_the_values():
    assert variant_label({"optimizer.learning_rate": 0.001, "training.batch_size": 64}) == "learning_rate=0.001,batch_size=64"


# ----------------------------------------------------------------------------------- the table


def test_best_epoch_is_one_based_lowest_val_loss_ignoring_nan():
    assert best_epoch({"loss": [3.0, 2.0, 1.0], "val_loss": [2.0, math.nan, 2.5]}) == (1, "val_loss")
    assert best_epoch({"loss": [3.0, 1.0, 2.0]}) == (2, "loss")
    assert best_epoch({"loss": [math.nan]}) == (None, "loss")


def _row(name: str, lr: float, **kw: object) -> CompareRow:
    hparams = {"learning_rate": lr, "optimizer": "adam", "layers": "4-1"}
    return CompareRow(name=name, recipe="tiny", sweep={"optimizer.learning_rate": lr}, hparams=hparams, **kw)  # type: ignore[arg-type]


def test_table_names_a_stop_once_and_the_run_epochs_apart_from_planned_ones():
    # "stopped: nan-loss, nan-loss", and two columns both titled "epochs" when the planned epochs differed.
    rows = [
        CompareRow(name="a", recipe="tiny", sweep={}, hparams={"epochs": 200}, epochs_run=20),
        CompareRow(name="b", recipe="tiny", sweep={}, hparams={"epochs": 5}, epochs_run=2, error="[nan-loss] The loss became NaN.",
                   findings=[{"code": "nan-loss", "severity": "error"}, {"code": "dead-relu", "severity": "warning"}]),
    ]
    header, cells = table_rows(rows)
    assert header[1:3] == ["epochs", "epochs run"] and cells[0][1:3] == ["200", "20"]
    assert cells[1][-1] == "stopped: nan-loss, dead-relu"


def test_table_spells_differing_learning_rates_apart():
    # The learning_rate column showed 0.001 twice (four digits) for two runs whose names differ.
    header, cells = table_rows([_row("tiny-learning_rate=0.001", 0.001), _row("tiny-learning_rate=0.0010000001", 0.0010000001)])
    assert header[1] == "learning_rate" and [c[1] for c in cells] == ["0.001", "0.0010000001"]


def test_table_titles_a_differing_loss_function_apart_from_the_epoch_loss():
    # Two columns were both titled "loss": binary_crossentropy / mse beside 0.7 / 1.2.
    rows = [CompareRow(name="a", recipe="a", sweep={}, hparams={"loss": "binary_crossentropy"}, final={"loss": 0.7}),
            CompareRow(name="b", recipe="b", sweep={}, hparams={"loss": "mse"}, final={"loss": 1.2})]
    header, cells = table_rows(rows)
    assert header[:4] == ["run", "loss function", "epochs", "loss"] and header.count("loss") == 1
    assert cells[1][1] == "mse" and cells[1][3] == "1.2"


def test_table_shows_differing_hparams_metrics_best_epoch_and_findings():
    rows = [
        _row("tiny-learning_rate=1", 1.0, epochs_run=2, final={"loss": 0.7, "accuracy": 0.5, "val_loss": math.nan, "val_accuracy": 0.5},
             best_epoch=None, findings=[{"code": "loss-diverged", "severity": "error"}, {"code": "note", "severity": "info"}]),
        _row("tiny-learning_rate=0.001", 0.001, epochs_run=2, final={"loss": 0.123456, "accuracy": 0.9, "val_loss": 0.2, "val_accuracy": 0.85},
             best_epoch=2, best_monitor="val_loss"),
        _row("tiny-learning_rate=0.1", 0.1, error="[non-finite-loss] The loss became NaN at step 3."),
    ]
    lines = format_table(rows).splitlines()
    header = lines[0].split()
    assert header[:2] == ["run", "learning_rate"]  # optimizer and layers are equal: not shown
    assert "optimizer" not in lines[0] and "layers" not in lines[0]
    assert lines[0].index("loss") < lines[0].index("val_loss") < lines[0].index("accuracy") < lines[0].index("val_accuracy")
    assert set(lines[1]) <= {"-", " "}
    assert "loss-diverged" in lines[2] and "note" not in lines[2]  # info findings stay in the JSON
    assert "0.1235" in lines[3] and "2 (val_loss)" in lines[3]
    assert "stopped: non-finite-loss" in lines[4]
    # Aligned: each column's title and cells sit inside its rule of dashes.
    spans = [(m.start(), m.end()) for m in re.finditer("-+", lines[1])]
    titles = [lines[0][a:b].strip() for a, b in spans]
    assert titles == ["run", "learning_rate", "epochs", "loss", "val_loss", "accuracy", "val_accuracy", "best epoch", "findings"]
    assert [lines[3][a:b].strip() for a, b in spans][3:5] == ["0.1235", "0.2"]
    assert lines[3][spans[3][1] - 1] == "5"  # numbers are right-aligned
    # Numbers are right-aligned: the loss column ends at the same position on every row.
    end = lines[0].index("loss") + len("loss")
    assert lines[3][end - len("0.1235"):end] == "0.1235"


# ----------------------------------------------------------------------------- HParams records


def test_write_hparams_records_session_and_experiment_with_both_groups(tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import api_pb2, metadata

    from trainkit.writers.hparams import write_hparams

    run_dir = tmp_path / "tiny" / "20250101-000000"
    run_dir.mkdir(parents=True)
    path = write_hparams(run_dir, {"learning_rate": np.float32(0.5), "optimizer": "adam", "batchnorm": False}, ["loss", "accuracy"])
    assert path.parent == run_dir and path.exists()
    values = {v.tag: v for event in EventFileLoader(str(path)).Load() for v in event.summary.value}
    start = metadata.parse_session_start_info_plugin_data(values[metadata.SESSION_START_INFO_TAG].metadata.plugin_data.content)
    assert start.group_name == "tiny/20250101-000000"
    assert start.hparams["learning_rate"].number_value == 0.5 and start.hparams["optimizer"].string_value == "adam"
    experiment = metadata.parse_experiment_plugin_data(values[metadata.EXPERIMENT_TAG].metadata.plugin_data.content)
    types = {info.name: info.type for info in experiment.hparam_infos}
    assert types == {"learning_rate": api_pb2.DATA_TYPE_FLOAT64, "optimizer": api_pb2.DATA_TYPE_STRING, "batchnorm": api_pb2.DATA_TYPE_BOOL}
    metrics = {(m.name.group, m.name.tag) for m in experiment.metric_infos}
    assert metrics == {(g, f"epoch/{n}") for g in ("train", "validation") for n in ("loss", "accuracy")}


@pytest.mark.parametrize(("bad", "says"), [
    ({"x": None}, "hyperparameter 'x' = None: values must be str, float, int or bool, got NoneType"),
    ({"x": [1, 2]}, "hyperparameter 'x' = [1, 2]: values must be str, float, int or bool, got list"),
    ({"": 1}, "hyperparameter names must be non-empty strings, got ''"),
])
def test_hparams_of_unsupported_types_are_refused_when_the_trainer_is_built(bad, says):
    import keras

    from trainkit import Trainer
    from trainkit.errors import ArgumentError

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(ArgumentError) as info:  # a TypeError too, as before
        Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", hparams=bad)
    assert info.value.code == "bad-argument" and says in info.value.message


# ---------------------------------------------------------------------------- trainkit compare


def test_a_builder_s_global_dtype_policy_holds_for_its_own_variant_only(tmp_path):
    # A builder that sets mixed_float16 (a recipe's one way to mixed precision) left it set for
    # every variant built after it: a plain recipe compared beside it trained in float16.
    import keras

    (tmp_path / "policy_builders.py").write_text(
        "from pathlib import Path\n"
        "import keras\n"
        "def build(input_shape, policy=None):\n"
        "    if policy is not None:\n"
        "        keras.mixed_precision.set_global_policy(policy)\n"
        "    seen = Path(__file__).with_suffix('.seen')\n"
        "    seen.write_text((seen.read_text() if seen.exists() else '') + keras.mixed_precision.global_policy().name + '\\n')\n"
        "    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(4, activation='relu'),\n"
        "                             keras.layers.Dense(1, activation='sigmoid', dtype='float32')])\n")
    mixed = recipe_with(tmp_path, name="mixed", model={"builder": "policy_builders:build", "builder_args": {"policy": "mixed_float16"}})
    plain = recipe_with(tmp_path, name="plain", model={"builder": "policy_builders:build"})
    try:
        rows = compare(expand_all([load_recipe(mixed), load_recipe(plain)]), logdir=tmp_path / "runs")
        assert [(row.error, row.epochs_run) for row in rows] == [(None, 2), (None, 2)]
        assert (tmp_path / "policy_builders.seen").read_text().split() == ["mixed_float16", "float32"]
        assert keras.mixed_precision.global_policy().name == "float32"  # the caller's, put back
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_compare_sweep_trains_each_variant_and_prints_the_table(runner, tmp_path):
    recipe = recipe_with(tmp_path, {"optimizer.learning_rate": [0.05, 0.001]})
    logdir, out = tmp_path / "runs", tmp_path / "out" / "compare.json"
    result = runner.invoke(app, ["compare", str(recipe), "--logdir", str(logdir), "--json", str(out), "--set", "training.epochs=1"])
    assert result.exit_code == 0, result.output
    dirs = run_dirs(logdir)
    assert [d.parent.name for d in dirs] == ["tiny-learning_rate=0.001", "tiny-learning_rate=0.05"]
    for run_dir in dirs:
        assert list(run_dir.glob("events.out.tfevents.*.hparams")), "HParams records at the run root"
        assert "sweep: null" in (run_dir / "recipe.yaml").read_text()
        assert (run_dir / "model.keras").is_file(), "each run's trained model"
    table = [line for line in result.stdout.splitlines() if line.startswith("tiny-")]
    assert [line.split()[0] for line in table] == ["tiny-learning_rate=0.05", "tiny-learning_rate=0.001"]
    assert "learning_rate" in result.stdout.splitlines()[0] and "val_accuracy" in result.stdout
    assert "[2/2] tiny-learning_rate=0.001: 1 epoch in " in result.stderr
    data = json.loads(out.read_text())
    assert data["differing_hparams"] == ["learning_rate"]
    first = data["runs"][0]
    assert first["sweep"] == {"optimizer.learning_rate": 0.05} and first["hparams"]["learning_rate"] == 0.05
    report = json.loads((Path(first["run_dir"]) / "report.json").read_text())
    assert first["final"] == report["final"] and first["epochs_run"] == 1 and first["best_epoch"] == 1


def test_compare_says_where_each_run_went_and_how_to_look_at_it(runner, tmp_path):
    # trainkit train ends with its run directory and the tensorboard command; compare said neither,
    # and its findings column holds codes whose fixes only a run's report or diagnose prints.
    recipe = recipe_with(tmp_path, {"optimizer.learning_rate": [0.05, 0.01]})
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["compare", str(recipe), "--logdir", str(logdir), "--set", "training.epochs=1"])
    assert result.exit_code == 0, result.output
    for run in run_dirs(logdir):
        assert f"({run})" in result.stderr  # the run's own line names its directory
    assert f"runs written under {logdir} (trainkit tensorboard {logdir}); trainkit diagnose RUN_DIR" in result.stderr
    assert "runs written" not in result.stdout  # the table stays alone on stdout
    assert "(1 epoch)" in result.stderr and ": 1 epoch in " in result.stderr  # not "1 epochs"
    quiet = runner.invoke(app, ["compare", str(recipe), "--logdir", str(logdir), "--set", "training.epochs=1", "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_a_run_stopped_on_a_nan_loss_is_marked_stopped_in_the_table(runner, tmp_path):
    recipe = recipe_with(tmp_path, {"optimizer.learning_rate": [1e30, 0.01]}, optimizer={"name": "sgd", "learning_rate": 0.01})
    result = runner.invoke(app, ["compare", str(recipe), "--logdir", str(tmp_path / "runs"), "--set", "training.epochs=2"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("tiny-")}
    assert "stopped: nan-loss" in rows["tiny-learning_rate=1e+30"]
    assert "stopped" not in rows["tiny-learning_rate=0.01"]
    assert "tiny-learning_rate=1e+30 stopped: error: [nan-loss]" in result.stderr


@pytest.mark.parametrize("rates", [[0.05, 0.001, 0.01], [1e30, 0.01]], ids=["completed", "after-a-nan-stop"])
def test_compare_lets_each_variant_go_before_the_next_trains(tmp_path, monkeypatch, rates):
    # A sweep of many runs in one process must not keep the trainers (models, compiled loops) of
    # the runs it has finished.
    import trainkit.run

    train_recipe, trained = trainkit.run.train_recipe, []

    def recording(recipe, **kwargs):
        gc.collect()
        assert [ref() for ref in trained if ref() is not None] == []  # the runs before are gone
        trained.append(weakref.ref(kwargs["prepared"].trainer))
        return train_recipe(recipe, **kwargs)

    monkeypatch.setattr(trainkit.run, "train_recipe", recording)
    recipe = load_recipe(recipe_with(tmp_path, {"optimizer.learning_rate": rates}, optimizer={"name": "sgd", "learning_rate": 0.01}))
    rows = list(iter_compare(expand_all([recipe]), logdir=tmp_path / "runs"))
    assert len(trained) == len(rows) == len(rates) and not any(row.error for row in rows[1:])
    gc.collect()
    assert [ref() for ref in trained if ref() is not None] == []


def test_variants_with_the_same_data_share_one_copy_and_leave_it_as_it_was(tmp_path, monkeypatch):
    # Every variant is prepared before the first trains: a sweep over the learning rate held one
    # copy of the data a variant.
    import trainkit.data
    import trainkit.run

    loaded = []
    prepare_data = trainkit.data.prepare_data

    def counting(recipe):
        loaded.append(recipe.name)
        return prepare_data(recipe)

    monkeypatch.setattr(trainkit.run, "prepare_data", counting)
    recipe = load_recipe(recipe_with(tmp_path, {"optimizer.learning_rate": [0.1, 0.01, 0.001], "data.seed": [0, 1]},
                                     optimizer={"name": "sgd", "learning_rate": 0.01}))
    variants = expand_all([recipe])
    seen = []
    train_recipe = trainkit.run.train_recipe

    def recording(recipe, **kwargs):
        splits = kwargs["prepared"].splits
        seen.append((recipe.data.seed, splits, splits.x_train.copy(), splits.y_train.copy()))
        return train_recipe(recipe, **kwargs)

    monkeypatch.setattr(trainkit.run, "train_recipe", recording)
    rows = list(iter_compare(variants, logdir=tmp_path / "runs"))
    assert len(rows) == 6 and not any(row.error for row in rows)
    assert len(loaded) == 2  # data seeds 0 and 1
    by_seed = {seed: {id(splits) for s, splits, _, _ in seen if s == seed} for seed in (0, 1)}
    assert all(len(ids) == 1 for ids in by_seed.values()) and by_seed[0] != by_seed[1]
    for _, splits, x_before, y_before in seen:  # training left the shared arrays as they were
        np.testing.assert_array_equal(splits.x_train, x_before)
        np.testing.assert_array_equal(splits.y_train, y_before)


def test_compare_two_recipes_shows_what_differs(runner, tmp_path):
    simple = recipe_with(tmp_path, name="simple")
    raw = yaml.safe_load(TINY)
    raw["model"]["layers"].insert(0, {"type": "dense", "units": 16, "activation": "relu"})
    complex_ = recipe_with(tmp_path, name="complex", model=raw["model"])
    result = runner.invoke(app, ["compare", str(simple), str(complex_), "--logdir", str(tmp_path / "runs"), "-q", "--set", "training.epochs=1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["run", "layers", "activations"]
    assert lines[2].split()[:2] == ["simple", "4-1"] and lines[3].split()[:2] == ["complex", "16-4-1"]
    assert not any(line.startswith("[") for line in lines)  # -q: the table only


def test_compare_shows_the_rows_a_file_source_loaded(runner, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 4))
    rows = ["a,b,c,d,label", *(",".join(f"{v:.4f}" for v in r) + f",{int(r[0] > 0)}" for r in x)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    generated = recipe_with(tmp_path, name="generated")
    from_file = recipe_with(tmp_path, name="from_file", data={"source": "csv", "path": "data.csv", "target": "label"})
    result = runner.invoke(app, ["compare", str(generated), str(from_file), "--logdir", str(tmp_path / "runs"), "-q", "--json", str(tmp_path / "c.json"), "--set", "training.epochs=1"])
    assert result.exit_code == 0, result.output
    runs = {run["name"]: run for run in json.loads((tmp_path / "c.json").read_text())["runs"]}
    assert runs["from_file"]["hparams"]["rows"] == 90 and runs["generated"]["hparams"]["rows"] == 120
    header, *_, from_file_line = result.output.splitlines()
    assert from_file_line.split()[header.split().index("rows")] == "90"


@pytest.mark.parametrize(
    ("sweep", "code"),
    [
        ({"training.epoch": [1]}, "recipe-invalid-value"),
        ({"loss": ["binary_crossentropy", "mse"]}, "regression-loss-for-classification"),  # 2nd variant, found before the 1st trains
    ],
)
def test_compare_user_errors_are_one_line_exit_2_and_train_nothing(runner, tmp_path, sweep, code):
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["compare", str(recipe_with(tmp_path, sweep)), "--logdir", str(logdir), "-q"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: [{code}]"), result.output
    assert run_dirs(logdir) == []


def test_compare_refuses_an_unwritable_json_path_before_training(runner, tmp_path):
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["compare", str(recipe_with(tmp_path)), "--logdir", str(logdir), "--json", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.startswith("error: [output-unwritable]")
    assert run_dirs(logdir) == []


def test_the_json_folder_is_made_only_when_the_comparison_is_written(runner, tmp_path):
    # The check that --json can be written made its folders and left them: a variant refused by its
    # checks before any run trained (mse on binary labels) left an empty new/sub/ behind.
    out = tmp_path / "new" / "sub" / "c.json"
    refused = runner.invoke(app, ["compare", str(recipe_with(tmp_path, loss="mse")), "--logdir", str(tmp_path / "runs"), "-q", "--json", str(out)])
    assert refused.exit_code == 2 and "[regression-loss-for-classification]" in refused.output, refused.output
    assert not (tmp_path / "new").exists()
    written = runner.invoke(app, ["compare", str(recipe_with(tmp_path)), "--logdir", str(tmp_path / "runs"), "-q", "--json", str(out),
                                  "--set", "training.epochs=1"])
    assert written.exit_code == 0, written.output
    assert [run["name"] for run in json.loads(out.read_text())["runs"]] == ["tiny"]


@pytest.mark.parametrize("json_at", ["one of the recipes", "another recipe"])
def test_compare_refuses_a_json_path_that_would_overwrite_a_recipe(runner, tmp_path, json_at):
    # `trainkit compare --json a.yaml b.yaml` takes a.yaml for the output: the comparison of
    # b.yaml replaced the recipe a.yaml with JSON (and `--json a.yaml a.yaml`, the recipe compared).
    first, second = recipe_with(tmp_path, name="a"), recipe_with(tmp_path, name="b")
    before = first.read_text()
    recipes = [str(first), str(second)] if json_at == "one of the recipes" else [str(second)]
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["compare", "--json", str(first), *recipes, "--logdir", str(logdir)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: [output-is-input] --json {first} would overwrite a recipe")
    assert first.read_text() == before and run_dirs(logdir) == []


def test_a_json_file_that_can_no_longer_be_written_after_the_runs_is_one_error_line(runner, tmp_path, monkeypatch):
    # Its directory was writable when compare began, not when the runs had ended (made read-only,
    # a full disk): a PermissionError traceback, exit 1, after the table.
    import trainkit.compare

    def refused(rows, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(trainkit.compare, "write_json", refused)
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["compare", str(recipe_with(tmp_path)), "--logdir", str(tmp_path / "runs"), "--json", str(out), "-q"])
    assert result.exit_code == 2, result.output
    assert "best epoch" in result.stdout  # the table came first
    assert result.stderr.strip() == (f"error: [output-unwritable] Cannot write --json {out}: Permission denied. "
                                     "The table printed above holds the results, and each run is in its run directory.")


def test_a_set_that_fails_in_one_of_several_recipes_names_that_recipe(runner, tmp_path):
    # --set applies to every recipe: "--set model.layers.1.units=1: model.layers.1 is not an item
    # of a list of 1" did not say which of the recipes has one layer.
    one_layer = recipe_with(tmp_path, name="one", model={"layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}]})
    two_layers = recipe_with(tmp_path, name="two")
    result = runner.invoke(app, ["compare", str(two_layers), str(one_layer), "--set", "model.layers.1.units=1", "--logdir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: [bad-override] {one_layer}: Override 'model.layers.1.units=1'"), result.output


def test_train_on_a_sweep_recipe_is_a_user_error(runner, tmp_path):
    result = runner.invoke(app, ["train", str(recipe_with(tmp_path, {"optimizer.learning_rate": [0.1, 0.01]})), "--logdir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.output.startswith("error: [sweep-needs-compare]") and len(result.output.strip().splitlines()) == 1


def test_train_writes_hparams_of_the_recipe(tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    from trainkit.run import train_recipe

    recipe = load_recipe(recipe_with(tmp_path), ["training.epochs=1"])
    result = train_recipe(recipe, logdir=tmp_path / "runs", verbose=0)
    (path,) = result.run_dir.glob("events.out.tfevents.*.hparams")
    values = {v.tag: v for event in EventFileLoader(str(path)).Load() for v in event.summary.value}
    start = metadata.parse_session_start_info_plugin_data(values[metadata.SESSION_START_INFO_TAG].metadata.plugin_data.content)
    expected = Recipe.hparams(recipe)
    assert set(start.hparams) == set(expected)
    assert start.hparams["learning_rate"].number_value == pytest.approx(0.01)
    assert start.hparams["standardize_inputs"].bool_value is True
    assert start.hparams["layers"].string_value == "4-1"


# ------------------------------------------------------------------------ trainkit tensorboard


def test_tensorboard_missing_logdir_is_one_line_exit_2(runner, tmp_path):
    result = runner.invoke(app, ["tensorboard", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert result.output.startswith("error: [logdir-not-found]") and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("port", ["-1", "70000"])
def test_tensorboard_bad_port_is_one_line_exit_2(runner, tmp_path, port):
    result = runner.invoke(app, ["tensorboard", str(tmp_path), f"--port={port}"])
    assert result.exit_code == 2
    assert result.output.startswith("error: [bad-port]")


def test_tensorboard_on_a_directory_without_logs_says_so(runner, tmp_path, monkeypatch):
    # It served an empty page without a word, which looked like a wrong directory or a broken server.
    from trainkit import board

    class Server:  # stands in for TensorBoard's process: started, ready, then Ctrl-C
        def __init__(self, logdir, port):
            self.url = "http://127.0.0.1:1/"

        def start(self):
            pass

        def wait_ready(self, timeout):
            raise KeyboardInterrupt

        def stop(self):
            pass

    monkeypatch.setattr(board, "TensorBoardServer", Server)
    said = runner.invoke(app, ["tensorboard", str(tmp_path)]).output
    assert f"note: no TensorBoard logs under {tmp_path} yet" in said
    (tmp_path / "run" / "train").mkdir(parents=True)
    (tmp_path / "run" / "train" / "events.out.tfevents.1.host").write_bytes(b"")
    assert "note:" not in runner.invoke(app, ["tensorboard", str(tmp_path)]).output


def test_tensorboard_taken_port_is_one_line_exit_2(runner, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        result = runner.invoke(app, ["tensorboard", str(tmp_path), "--port", str(sock.getsockname()[1])])
    assert result.exit_code == 2
    assert result.output.startswith("error: [port-in-use]")


def test_the_run_progress_bar_follows_the_epochs_in_a_terminal_only(tmp_path):
    # compare trains its runs quietly: without a bar a long run showed nothing for minutes.
    import io

    from rich.console import Console

    from trainkit.run import train_recipe
    from trainkit.writers.console import RunProgress

    recipe = load_recipe(recipe_with(tmp_path), ["training.epochs=3"])
    terminal, pipe = io.StringIO(), io.StringIO()
    bars = [RunProgress("[1/2] tiny", Console(file=terminal, force_terminal=True, width=120)), RunProgress("[1/2] tiny", Console(file=pipe, force_terminal=False))]
    train_recipe(recipe, logdir=tmp_path / "runs", verbose=0, callbacks=bars)
    drawn = terminal.getvalue()
    assert "[1/2] tiny" in drawn and "epoch 3/3" in drawn and "val_loss" in drawn
    assert pipe.getvalue() == ""


def test_an_interrupted_compare_says_how_to_resume_the_run_it_stopped(runner, tmp_path, monkeypatch):
    # It said "interrupted after 1 of 2 runs" only, though the stopped run had a checkpoint.
    import os
    import shlex
    import signal

    import trainkit.run

    real = trainkit.run.train_recipe

    def second_run_interrupted(recipe, **kwargs):
        if "0.05" in (recipe.name or ""):
            from trainkit import Callback

            class Terminate(Callback):
                def on_epoch_end(self, epoch, logs=None):
                    os.kill(os.getpid(), signal.SIGTERM)  # fit checkpoints and stops before epoch 2 trains

            kwargs["callbacks"] = [*kwargs.get("callbacks", ()), Terminate()]
        return real(recipe, **kwargs)

    monkeypatch.setattr(trainkit.run, "train_recipe", second_run_interrupted)
    recipe = recipe_with(tmp_path, {"optimizer.learning_rate": [0.01, 0.05]})
    written = tmp_path / "compare.json"
    result = runner.invoke(app, ["compare", str(recipe), "--logdir", str(tmp_path / "runs"), "--set", "training.epochs=3", "--json", str(written)])
    assert result.exit_code == 143
    # The finished run's values are written too (they were printed, and the file was not written),
    # and its swept value keeps its column though no other row differs from it.
    data = json.loads(written.read_text())
    assert [run["name"] for run in data["runs"]] == ["tiny-learning_rate=0.01"] and data["differing_hparams"] == ["learning_rate"]
    assert result.stdout.splitlines()[0].split()[:2] == ["run", "learning_rate"]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("interrupted after 1 of 2 runs. Resume the run it stopped with: trainkit train ")
    command = shlex.split(line.split("stopped with: ", 1)[1])
    monkeypatch.undo()
    resumed = runner.invoke(app, [*command[1:], "-q"])  # the recipe it names is the run's very recipe
    assert resumed.exit_code == 0, resumed.output
    assert resumed.output.startswith("trained 2 more epochs (resumed after epoch 1)")  # stopped as its second epoch began


def test_runs_that_would_share_a_name_are_refused_before_training(runner, tmp_path):
    # compare X X trained X twice into two identical rows; two files with one name: likewise.
    logdir = tmp_path / "runs"
    once = recipe_with(tmp_path)
    result = runner.invoke(app, ["compare", str(once), str(once), "--logdir", str(logdir)])
    assert result.exit_code == 2 and result.output.startswith(f"error: [duplicate-run-name] {once} is given 2 times")
    other = tmp_path / "other.yaml"
    other.write_text(once.read_text())  # name: tiny too
    result = runner.invoke(app, ["compare", str(once), str(other), "--logdir", str(logdir)])
    assert result.exit_code == 2 and f"{once} and {other} are both named tiny" in result.output
    assert run_dirs(logdir) == []


def test_a_failing_variant_is_named_by_its_file_and_sweep_values(runner, tmp_path):
    good = recipe_with(tmp_path, name="good")
    bad = recipe_with(tmp_path, {"loss": ["binary_crossentropy", "mse"]}, name="bad")
    result = runner.invoke(app, ["compare", str(good), str(bad), "--logdir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: [regression-loss-for-classification] {bad} (sweep variant loss=mse): "), result.output


def test_recipes_are_listed_by_file_with_a_differing_name_beside_it(runner, tmp_path):
    recipe_with(tmp_path, name="tiny")
    (tmp_path / "copy.yaml").write_text((tmp_path / "tiny.yaml").read_text())
    result = runner.invoke(app, ["recipes", str(tmp_path)])
    assert result.exit_code == 0
    firsts = [line.split("  ")[0].strip() for line in result.output.splitlines()]
    assert firsts == ["copy (name: tiny)", "tiny"]


def test_a_single_row_names_the_column_of_a_swept_data_seed_by_its_hyperparameter(tmp_path):
    # data.seed showed under "seed", which is training.seed.
    from trainkit.compare import CompareRow, differing_hparams

    row = CompareRow(name="r", recipe="r", sweep={"data.seed": 7}, hparams={"seed": 0, "data_seed": 7, "learning_rate": 0.01}, epochs_run=1)
    assert differing_hparams([row]) == ["data_seed"]


def test_a_recipe_and_its_early_stopping_fix_differ_in_a_column():
    # high_early_stop_broken/_fixed differ only in training.early_stopping: the table had no
    # column for it, so nothing said what the fixed run changed.
    from trainkit.compare import differing_hparams

    recipes = Path(__file__).resolve().parent.parent / "recipes"
    rows = [CompareRow(name=n, recipe=n, sweep={}, hparams=load_recipe(recipes / f"{n}.yaml").hparams(), epochs_run=1)
            for n in ("high_early_stop_broken", "high_early_stop_fixed")]
    assert differing_hparams(rows) == ["early_stopping"]
    header, cells = table_rows(rows)
    column = header.index("early_stopping")
    assert [row[column] for row in cells] == ["none", "val_loss, patience 10, best restored"]
    swept = CompareRow(name="r", recipe="r", sweep={"training.early_stopping.patience": 3}, hparams=rows[1].hparams, epochs_run=1)
    assert differing_hparams([swept]) == ["early_stopping"]


def test_a_findings_column_of_clean_runs_is_left_aligned_text():
    # Every cell "-" read as a column of missing numbers, so it was right-aligned under its title.
    rows = [_row("a", 0.01, final={"loss": 0.5}, best_epoch=1, best_monitor="loss"),
            _row("b", 0.001, final={"loss": 0.6}, best_epoch=1, best_monitor="loss")]
    lines = format_table(rows).splitlines()
    start = lines[0].index("findings")
    assert all(line[start:] == "-" for line in lines[2:])


def test_a_swept_optimizer_keyword_gets_a_column_and_its_run_still_resumes(runner, tmp_path):
    # A sweep of optimizer.momentum trained runs whose hyperparameters were all alike: no column
    # in the table, "differing_hparams": [] in the JSON, nothing in TensorBoard's HParams.
    recipe = recipe_with(tmp_path, {"optimizer.momentum": [0.0, 0.9]}, optimizer={"name": "sgd", "learning_rate": 0.01})
    logdir, out = tmp_path / "runs", tmp_path / "compare.json"
    result = runner.invoke(app, ["compare", str(recipe), "--logdir", str(logdir), "--json", str(out), "-q",
                                 "--set", "training.epochs=1", "--set", "training.checkpoint_every=1"])
    assert result.exit_code == 0, result.output
    assert "momentum" in result.stdout.splitlines()[0].split()
    data = json.loads(out.read_text())
    assert data["differing_hparams"] == ["momentum"]
    assert [run["hparams"]["momentum"] for run in data["runs"]] == [0.0, 0.9]
    # Its run resumes with the command compare names (the recipe there records no momentum).
    variant = expand(load_recipe(recipe, ["training.epochs=1", "training.checkpoint_every=1"]))[1]
    command = shlex.split(variant.resume_command(data["runs"][1]["run_dir"]))[1:]  # train RECIPE --set ... --resume DIR
    resumed = runner.invoke(app, [*command, "--set", "training.epochs=2", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((Path(data["runs"][1]["run_dir"]) / "report.json").read_text())["epochs_run"] == 2


def test_a_run_that_fails_after_some_epochs_keeps_them_and_its_run_directory_in_its_row(runner, tmp_path):
    # A variant whose model failed in its third epoch was a row of 0 epochs, no values and
    # "run_dir": null, where its run directory's report.json held the epochs it trained.
    (tmp_path / "counted.py").write_text(
        "import keras\n"
        "import tensorflow as tf\n"
        "class Counted(keras.layers.Layer):\n"
        "    def __init__(self, steps, **kw):\n"
        "        super().__init__(**kw)\n"
        "        self.steps = steps\n"
        "    def build(self, shape):\n"
        "        self.count = self.add_weight(shape=(), initializer='zeros', trainable=False, name='count')\n"
        "    def call(self, x, training=None):\n"
        "        if training:\n"
        "            self.count.assign_add(1.0)\n"
        "            tf.debugging.assert_less(self.count, float(self.steps), message='out of steps')\n"
        "        return x\n"
        "def build(input_shape, steps=1000):\n"
        "    return keras.Sequential([keras.Input(input_shape), Counted(steps), keras.layers.Dense(1, activation='sigmoid')])\n")
    recipe = recipe_with(tmp_path, {"model.builder_args.steps": [7, 1000]}, model={"builder": "counted:build"},
                         training={"epochs": 3, "batch_size": 32, "jit_compile": False, "steps_per_execution": 1})
    out = tmp_path / "compare.json"
    result = runner.invoke(app, ["compare", str(recipe), "--logdir", str(tmp_path / "runs"), "--json", str(out), "-q"])
    assert result.exit_code == 0, result.output
    failed, completed = json.loads(out.read_text())["runs"]
    assert failed["error"].startswith("[model-error]") and completed["error"] is None and completed["epochs_run"] == 3
    report = json.loads((Path(failed["run_dir"]) / "report.json").read_text())
    assert report["status"] == "failed" and failed["epochs_run"] == report["epochs_run"] == 2
    assert failed["final"] == report["final"] and failed["best_epoch"] is not None
