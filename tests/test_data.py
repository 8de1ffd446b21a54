"""Tests of trainkit.data: generators, files, splits and standardisation fitted on train only."""

from __future__ import annotations

import sys
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import trainkit.data
from trainkit.data import (
    DataSplits,
    Standardizer,
    load_arrays,
    per_batch_max_normalize,
    prepare_data,
    split,
)
from trainkit.errors import DataError, RecipeError
from trainkit.recipe import DataConfig, Recipe

ROWS = 120


def cfg(**kwargs: Any) -> DataConfig:
    kwargs.setdefault("rows", ROWS)
    kwargs.setdefault("features", 5)
    return DataConfig(**kwargs)


def recipe(tmp_path: Path | None = None, task: str = "binary", data: dict | None = None, **sections: Any) -> Recipe:
    raw = {
        "task": task,
        # Rows and features are the generator's: other sources refuse them.
        "data": {**({"rows": ROWS, "features": 4} if (data or {}).get("source", "generator") == "generator" else {}), **(data or {})},
        "model": {"layers": [{"type": "dense", "units": 1}]},
        "loss": "mse",
        **sections,
    }
    return Recipe.from_dict(raw, source_path=tmp_path / "r.yaml" if tmp_path else None)


def data_error(fn: Any, *args: Any, **kwargs: Any) -> DataError:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    assert "\n" not in info.value.message
    return info.value


# ----------------------------------------------------------------------------------- generators


@pytest.mark.parametrize(
    ("generator", "task", "extra", "y_shape", "y_dtype"),
    [
        ("learnable_binary", "binary", {}, (ROWS, 1), np.float32),
        ("learnable_multiclass", "multiclass", {"classes": 3}, (ROWS,), np.int32),
        ("learnable_regression", "regression", {}, (ROWS, 1), np.float32),
        ("random_labels", "binary", {}, (ROWS, 1), np.float32),
        ("random_labels", "multiclass", {"classes": 4}, (ROWS,), np.int32),
        ("random_labels", "multilabel", {"classes": 3}, (ROWS, 3), np.float32),
        ("random_labels", "multiclass", {"classes": 4, "one_hot": True}, (ROWS, 4), np.float32),
        ("learnable_binary", "binary", {"one_hot": True}, (ROWS, 2), np.float32),
    ],
)
def test_generator_shapes_dtypes_and_determinism(generator: str, task: str, extra: dict, y_shape: tuple, y_dtype: type) -> None:
    config = cfg(generator=generator, seed=3, **extra)
    x, y = load_arrays(config, ".", task=task)
    assert x.shape == (ROWS, 5) and x.dtype == np.float32
    assert y.shape == y_shape and y.dtype == y_dtype
    x2, y2 = load_arrays(config, ".", task=task)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)  # same seed, same data
    x3, _ = load_arrays(cfg(generator=generator, seed=4, **extra), ".", task=task)
    assert not np.array_equal(x, x3)


def test_uniform_and_normal_features() -> None:
    uniform, _ = load_arrays(cfg(rows=200, feature_distribution="uniform"), ".")
    normal, _ = load_arrays(cfg(rows=200, feature_distribution="normal"), ".")
    assert uniform.min() >= 0.0 and uniform.max() < 1.0
    assert normal.min() < 0.0 and abs(normal.mean()) < 0.2 and 0.8 < normal.std() < 1.2


def test_learnable_binary_is_balanced_and_depends_on_x() -> None:
    x, y = load_arrays(cfg(rows=200, generator="learnable_binary"), ".")
    assert set(np.unique(y)) == {0.0, 1.0}
    assert 0.4 <= y.mean() <= 0.6
    # Labels are a function of x: a least-squares linear fit already beats chance clearly.
    design = np.c_[x, np.ones(len(x))]
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    assert ((design @ coef > 0.5) == (y > 0.5)).mean() > 0.7


def test_random_labels_ignore_x() -> None:
    x, y = load_arrays(cfg(rows=200, generator="random_labels"), ".")
    design = np.c_[x, np.ones(len(x))]
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    assert ((design @ coef > 0.5) == (y > 0.5)).mean() < 0.7


def test_learnable_multiclass_uses_every_class() -> None:
    _, y = load_arrays(cfg(rows=200, generator="learnable_multiclass", classes=4), ".", task="multiclass")
    counts = np.bincount(y, minlength=4)
    assert counts.min() >= 30, counts


def test_regression_targets_scale_and_offset() -> None:
    _, base = load_arrays(cfg(generator="learnable_regression"), ".")
    _, y = load_arrays(cfg(generator="learnable_regression", target_scale=100.0, target_offset=3.0), ".")
    assert base.min() == pytest.approx(0.0) and base.max() == pytest.approx(1.0)
    assert y.min() == pytest.approx(3.0) and y.max() == pytest.approx(103.0)
    assert np.allclose(y, base * 100 + 3, atol=1e-4)


def test_feature_scale_and_offset() -> None:
    base, _ = load_arrays(cfg(), ".")
    scaled, _ = load_arrays(cfg(feature_scale=100.0, feature_offset=5.0), ".")
    assert np.allclose(scaled, base * 100 + 5, atol=1e-3)


def test_label_noise_replaces_some_labels() -> None:
    _, clean = load_arrays(cfg(rows=200), ".")
    _, noisy = load_arrays(cfg(rows=200, noise=0.5), ".")
    changed = (clean != noisy).mean()
    assert 0.1 < changed < 0.45  # half replaced at random, about half of those keep their label


def test_random_images() -> None:
    config = DataConfig(generator="random_images", rows=20, image_shape=[8, 8, 3], classes=10, one_hot=True)
    x, y = load_arrays(config, ".", task="multiclass")
    assert x.shape == (20, 8, 8, 3) and x.dtype == np.float32
    assert y.shape == (20, 10) and np.all(y.sum(axis=1) == 1)
    default = DataConfig(generator="random_images", rows=4)
    assert load_arrays(default, ".")[0].shape == (4, 32, 32, 3)


def test_leak_label_appends_the_label() -> None:
    x, y = load_arrays(cfg(leak_label=True), ".")
    assert x.shape == (ROWS, 6)
    assert np.array_equal(x[:, -1:], y)


def test_per_batch_max_normalisation_reproduces_the_bug() -> None:
    raw, _ = load_arrays(cfg(rows=100, feature_scale=10.0), ".")
    x, _ = load_arrays(cfg(rows=100, feature_scale=10.0, per_batch_max_normalize=32), ".")
    chunks = [slice(s, s + 32) for s in range(0, 100, 32)]
    for chunk in chunks:
        assert x[chunk].max() == pytest.approx(1.0)
        # Each chunk is divided by ITS OWN max...
        assert np.allclose(x[chunk], raw[chunk] / raw[chunk].max())
    # ... and those maxima differ, so the same raw value is scaled differently in different chunks.
    assert len({float(raw[chunk].max()) for chunk in chunks}) == len(chunks)
    assert not np.allclose(x, raw / raw.max())


def test_per_batch_max_normalize_leaves_all_zero_chunks_alone() -> None:
    out = per_batch_max_normalize(np.zeros((4, 2), dtype=np.float32), 2)
    assert np.all(out == 0) and not np.isnan(out).any()


# ---------------------------------------------------------------------------------------- split


def test_split_holds_out_the_tail_after_a_seeded_shuffle() -> None:
    x = np.arange(100, dtype=np.float32).reshape(100, 1)
    y = x.copy()
    x_tr, _, x_val, _ = split(x, y, 0.2, seed=None)
    assert np.array_equal(x_val, x[80:]) and np.array_equal(x_tr, x[:80])  # Keras: the last 20%
    a = split(x, y, 0.2, seed=1)
    b = split(x, y, 0.2, seed=1)
    c = split(x, y, 0.2, seed=2)
    assert a[0].shape == (80, 1) and a[2].shape == (20, 1)
    assert np.array_equal(a[2], b[2]) and not np.array_equal(a[2], c[2])
    assert np.array_equal(a[0], a[1]) and np.array_equal(a[2], a[3])  # rows stay paired
    assert sorted(np.r_[a[0].ravel(), a[2].ravel()]) == list(range(100))


def test_split_without_validation_and_with_too_few_rows() -> None:
    x = np.ones((10, 2), dtype=np.float32)
    x_tr, _, x_val, y_val = split(x, x, 0.0, seed=0)
    assert len(x_tr) == 10 and x_val is None and y_val is None
    assert data_error(split, x[:1], x[:1], 0.5, 0).code == "data-empty"
    # A split above 0 too small to hold out a row is refused, not trained without validation.
    err = data_error(split, x, x, 1e-17, 0)
    assert err.code == "data-empty" and "no validation rows" in err.message


# ------------------------------------------------------------------------------- standardizer


def test_standardizer_fit_transform_inverse() -> None:
    a = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]], dtype=np.float32)
    s = Standardizer().fit(a)
    assert np.allclose(s.mean, [3.0, 5.0]) and np.allclose(s.std, [np.sqrt(8 / 3), 1.0])  # std 0 -> 1
    t = s.transform(a)
    assert np.allclose(t[:, 0].mean(), 0) and np.allclose(t[:, 1], 0) and not np.isnan(t).any()
    assert np.allclose(s.inverse_transform(t), a)
    assert np.allclose(Standardizer.from_dict(s.to_dict()).transform(a), t)
    with pytest.raises(ValueError):
        Standardizer().transform(a)


def test_standardizer_needs_no_float64_copy_of_the_data() -> None:
    # Fitting made a float64 copy of the whole array and np.std's float64 deviations of it (4x
    # the float32 rows beside them), and transform three arrays of its size in turn (2x at once).
    a = np.random.default_rng(0).standard_normal((1 << 16, 64)).astype(np.float32)  # 16 MiB
    tracemalloc.start()
    try:
        s = Standardizer().fit(a)
        fit_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        t = s.transform(a)
        transform_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert fit_peak < a.nbytes and transform_peak < 1.5 * a.nbytes
    wide = a.astype(np.float64)  # the same statistics as summed over a float64 copy
    assert np.array_equal(s.mean, wide.mean(axis=0).astype(np.float32)) and np.array_equal(s.std, wide.std(axis=0).astype(np.float32))
    assert t.dtype == np.float32 and np.array_equal(t, ((a - s.mean) / s.std).astype(np.float32))


def test_standardisation_is_fitted_on_the_training_split_only() -> None:
    r = recipe(data={"feature_scale": 10.0, "feature_offset": 50.0}, preprocessing={"standardize_inputs": True})
    splits = prepare_data(r)
    raw_x, raw_y = load_arrays(r.data, r.base_dir, task=r.task)
    raw_train, _, raw_val, _ = split(raw_x, raw_y, r.training.validation_split, r.training.seed)
    std = splits.input_standardizer
    assert isinstance(splits, DataSplits) and std is not None
    assert np.allclose(std.mean, raw_train.mean(axis=0), atol=1e-4)  # training rows only
    assert np.allclose(splits.x_train.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(splits.x_val, (raw_val - std.mean) / std.std, atol=1e-5)  # applied unchanged
    # The validation split is NOT forced to mean 0 / std 1: that would mean fitting on it.
    assert np.abs(splits.x_val.mean(axis=0)).max() > 1e-3
    assert not np.allclose(splits.x_val, Standardizer().fit(raw_val).transform(raw_val))


def test_prepare_data_without_preprocessing() -> None:
    splits = prepare_data(recipe(training={"validation_split": 0.25}))
    assert splits.x_train.shape == (90, 4) and splits.x_val.shape == (30, 4)
    assert splits.input_standardizer is None and splits.target_standardizer is None
    assert splits.feature_names is None


def test_target_standardisation_for_regression() -> None:
    r = recipe(task="regression", data={"generator": "learnable_regression", "target_scale": 100.0, "target_offset": 3.0}, preprocessing={"standardize_targets": True})
    splits = prepare_data(r)
    assert splits.target_standardizer is not None
    assert abs(float(splits.y_train.mean())) < 1e-5 and splits.y_train.std() == pytest.approx(1.0, abs=1e-4)
    original = splits.target_standardizer.inverse_transform(splits.y_train)
    assert original.min() >= 3.0 - 1e-3 and original.max() <= 103.0 + 1e-3


# ------------------------------------------------------------------------------------------ csv


def write_csv(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def csv_cfg(path: Path | str, target: str = "label") -> DataConfig:
    return DataConfig(source="csv", path=str(path), target=target)


def test_csv_class_ids_beyond_int32_reach_the_checks_unchanged(tmp_path: Path) -> None:
    # Cast to int32 they wrapped to -2**31 with a RuntimeWarning, and the label check then named
    # ids the file does not hold.
    write_csv(tmp_path, f"a,label\n1,0\n2,{2**33}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, ids = load_arrays(csv_cfg("data.csv"), tmp_path, task="multiclass")
    assert ids.tolist() == [0, 2**33]


def test_csv_reads_features_and_target(tmp_path: Path) -> None:
    write_csv(tmp_path, "\ufeffa,label,b\n1,0,2\n\n3,1,4.5\n5,1,-6e-1\n")
    x, y = load_arrays(csv_cfg("data.csv"), tmp_path, task="binary")  # relative to base_dir
    assert x.dtype == np.float32 and np.allclose(x, [[1, 2], [3, 4.5], [5, -0.6]])
    assert y.shape == (3, 1) and np.array_equal(y.ravel(), [0, 1, 1])
    _, ids = load_arrays(csv_cfg("data.csv"), tmp_path, task="multiclass")
    assert ids.dtype == np.int32 and ids.shape == (3,)


def test_csv_path_resolves_against_the_recipe_directory(tmp_path: Path) -> None:
    write_csv(tmp_path, "f1,f2,y\n" + "\n".join(f"{i},{i * 2},{i % 2}" for i in range(10)))
    splits = prepare_data(recipe(tmp_path, data={"source": "csv", "path": "data.csv", "target": "y"}, training={"validation_split": 0.0}))
    assert splits.feature_names == ["f1", "f2"]
    assert splits.x_train.shape == (10, 2) and splits.y_train.shape == (10, 1)


def test_leaked_label_columns_get_no_file_column_name(tmp_path: Path) -> None:
    # A name for them ended up in the label-leakage advice as data: {drop: [__label__]}, a column
    # the file does not have (and one name for the K columns of one-hot labels).
    write_csv(tmp_path, "f1,f2,y\n" + "\n".join(f"{i},{i * 2},{i % 3}" for i in range(12)))
    data = {"source": "csv", "path": "data.csv", "target": "y", "leak_label": True, "one_hot": True}
    splits = prepare_data(recipe(tmp_path, task="multiclass", data=data, training={"validation_split": 0.0}))
    assert splits.x_train.shape == (12, 5) and splits.feature_names == ["f1", "f2"]


def test_csv_missing_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "a,b\n1,2\n")
    err = data_error(load_arrays, csv_cfg(path, "label"), tmp_path)
    assert err.code == "data-missing-column"
    assert "'label'" in err.message and "a, b" in err.message


@pytest.mark.parametrize("header", ["label,b,label", "a,a,label"])
def test_a_column_name_used_twice_is_refused(tmp_path: Path, header: str) -> None:
    # The first "label" became the target and the second a feature (a copy of it, or not).
    path = write_csv(tmp_path, f"{header}\n1,2,0\n3,4,1\n")
    err = data_error(load_arrays, csv_cfg(path, "label"), tmp_path)
    assert err.code == "data-duplicate-column" and repr(header.split(",")[0]) in err.message


@pytest.mark.parametrize(("target", "meant"), [("Label", "label"), ("LABEL", "label"), ("lable", "label")])
def test_a_missing_target_column_names_the_closest_one_case_first(tmp_path: Path, target: str, meant: str) -> None:
    path = write_csv(tmp_path, "a,labels_old,label\n1,2,0\n")
    err = data_error(load_arrays, csv_cfg(path, target), tmp_path)
    assert err.code == "data-missing-column" and f'Did you mean "{meant}"?' in err.message


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_a_csv_separated_by_another_character_than_commas_is_read_with_it(tmp_path: Path, sep: str) -> None:
    rows = ["a,b,c,d,label".replace(",", sep), "1,2,3,4,0", "5,6,7,8.5,1"]
    path = write_csv(tmp_path, "\n".join(r.replace(",", sep) for r in rows) + "\n")
    x, y = load_arrays(csv_cfg(path), tmp_path, task="binary")
    assert x.shape == (2, 4) and np.allclose(x[1], [5, 6, 7, 8.5]) and y.ravel().tolist() == [0, 1]


def test_a_semicolon_csv_with_decimal_commas_points_at_the_comma(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "a;b;label\n1;2,5;0\n")
    err = data_error(load_arrays, csv_cfg(path), tmp_path)
    assert err.code == "data-non-numeric" and "'2,5' is not a number (a decimal comma?" in err.message


def test_a_comma_in_the_header_keeps_commas_as_the_separator(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "a;x,b,label\n1,2,0\n")  # ';' inside a column name
    x, _ = load_arrays(csv_cfg(path), tmp_path)
    assert x.shape == (1, 2)


def test_csv_ragged_row(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "a,b,label\n1,2,0\n3,4,1\n5,6\n")
    err = data_error(load_arrays, csv_cfg(path), tmp_path)
    assert err.code == "data-ragged" and "line 4" in err.message and "2 fields" in err.message


def test_csv_non_numeric_value(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "a,b,label\n1,2,0\n3,abc,1\n")
    err = data_error(load_arrays, csv_cfg(path), tmp_path)
    assert err.code == "data-non-numeric"
    assert "Line 3" in err.message and "'b'" in err.message and "'abc'" in err.message


def test_a_pandas_index_column_is_left_out_of_the_features_with_a_warning(tmp_path: Path, capsys: Any) -> None:
    # df.to_csv(path) writes the row index as an unnamed first column: on random labels sorted
    # by label it reached 97% validation accuracy as a feature, with no finding.
    write_csv(tmp_path, ",a,b,label\n0,1.5,2,0\n1,3,4,1\n2,5,6,1\n")
    x, y = load_arrays(csv_cfg("data.csv"), tmp_path, task="binary")
    assert np.allclose(x, [[1.5, 2], [3, 4], [5, 6]]) and y.ravel().tolist() == [0, 1, 1]
    assert "warning: [data-index-column]" in capsys.readouterr().err  # no run to report it in: on stderr
    splits = prepare_data(recipe(tmp_path, data={"source": "csv", "path": "data.csv", "target": "label"}, training={"validation_split": 0.0}))
    assert [f.code for f in splits.findings] == ["data-index-column"] and capsys.readouterr().err == ""  # in the run's report
    write_csv(tmp_path, "a,b,label,\n1,2,0,\n3,4,1,\n")  # a comma at the end of every line
    assert "a comma at the end of every line" in data_error(load_arrays, csv_cfg("data.csv"), tmp_path).message


def test_a_csv_column_that_counts_up_row_by_row_is_warned_of_as_an_id(tmp_path: Path, capsys: Any) -> None:
    # customer_id 10000.. in a file sorted by label leaked the label, and no check after the
    # shuffle could tell it from a feature.
    rows = "".join(f"{10000 + i},{(i * 7) % 5},{int(i >= 15)}\n" for i in range(30))
    write_csv(tmp_path, "customer_id,a,label\n" + rows)
    load_arrays(csv_cfg("data.csv"), tmp_path, task="binary")
    err = capsys.readouterr().err
    assert "warning: [data-id-column] Column 'customer_id'" in err and "drop: [customer_id]" in err and "'a'" not in err
    load_arrays(DataConfig(source="csv", path="data.csv", target="label", drop=["customer_id"]), tmp_path, task="binary")
    assert "data-id-column" not in capsys.readouterr().err


def test_a_missing_relative_data_path_says_it_is_read_from_the_recipe_s_folder(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "files").mkdir()
    write_csv(tmp_path / "files", "a,label\n1,0\n2,1\n")
    (tmp_path / "recipes").mkdir()
    monkeypatch.chdir(tmp_path)  # the path is right from the shell's folder, not the recipe's
    err = data_error(load_arrays, csv_cfg("files/data.csv"), tmp_path / "recipes")
    assert "read from the recipe's folder" in err.message and f"{tmp_path / 'files' / 'data.csv'} exists" in err.message
    # A directory is no data file to offer: data.path "." named the shell's folder as the fix.
    err = data_error(load_arrays, csv_cfg("."), tmp_path / "recipes")
    assert "is a directory" in err.message and "exists: give data.path" not in err.message, err.message
    err = data_error(load_arrays, csv_cfg("files"), tmp_path / "recipes")  # missing there, a folder here
    assert "exists: give data.path" not in err.message, err.message


def test_generator_settings_it_would_ignore_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="learnable_binary makes 2 classes"):
        recipe(tmp_path, task="multiclass", data={"generator": "learnable_binary", "classes": 3})
    with pytest.raises(RecipeError, match="multi-hot labels"):
        recipe(tmp_path, task="multilabel", data={"generator": "learnable_multiclass", "classes": 3})


def test_csv_columns_listed_in_drop_are_left_out(tmp_path: Path) -> None:
    write_csv(tmp_path, "id,a,b,label\n100,1,2,0\n101,3,4,1\n")
    config = DataConfig(source="csv", path="data.csv", target="label", drop=["id"])
    x, _ = load_arrays(config, tmp_path, task="binary")
    assert np.allclose(x, [[1, 2], [3, 4]])
    err = data_error(load_arrays, DataConfig(source="csv", path="data.csv", target="label", drop=["ID"]), tmp_path)
    assert err.code == "data-missing-column" and 'Did you mean "id"' in err.message
    with pytest.raises(RecipeError, match="drop names the target column"):
        recipe(tmp_path, data={"source": "csv", "path": "data.csv", "target": "label", "drop": ["label"]})
    with pytest.raises(RecipeError, match="drop is read only by a csv source"):
        recipe(tmp_path, data={"drop": ["a"]})


def test_csv_columns_listed_in_drop_need_not_be_numbers(tmp_path: Path) -> None:
    # A date or a city is what drop is for, and the error about one said "leave the column out with
    # data: {drop: [city]}": with it given, the same error came back.
    write_csv(tmp_path, ",date,a,city,label\n2024-01-01,2024-01-01,1,paris,0\n2024-01-02,2024-01-02,3,inf,1\n")
    x, y = load_arrays(DataConfig(source="csv", path="data.csv", target="label", drop=["date", "city"]), tmp_path, task="binary")
    assert np.allclose(x, [[1], [3]]) and y.ravel().tolist() == [0, 1]


def test_a_csv_with_a_dropped_text_column_is_read_by_numpy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The text sent the whole file to the field-by-field reader: 300k rows of 22 columns took
    # 7.8 s and 600 MB for a 55 MB file, against 1.3 s and 110 MB by numpy.
    write_csv(tmp_path, 'id,a,b,label\nx1,1.5,2,0\n"Smith, J",3,4e3,1\n')

    def field_by_field(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("read field by field")

    monkeypatch.setattr(trainkit.data, "_csv_values", field_by_field)
    x, y = load_arrays(DataConfig(source="csv", path="data.csv", target="label", drop=["id"]), tmp_path, task="binary")
    assert np.allclose(x, [[1.5, 2], [3, 4e3]]) and y.ravel().tolist() == [0, 1]


def test_a_csv_header_of_column_numbers_is_a_header(tmp_path: Path) -> None:
    # pandas names a DataFrame(array)'s columns 0, 1, 2...: such a file was refused as header-less.
    write_csv(tmp_path, "0,1,2\n0.5,1.5,0\n1,2,1\n")
    x, y = load_arrays(csv_cfg("data.csv", target="2"), tmp_path, task="binary")
    assert np.allclose(x, [[0.5, 1.5], [1, 2]]) and y.ravel().tolist() == [0, 1]


@pytest.mark.parametrize(("text", "says"), [
    ("0.5,1.5,0\n1,2,1\n", "has no header row"),  # the first data row read as a header, and target: '0' took it
    ("a b label\n1 2 0\n", "separated by spaces"),
])
def test_a_csv_without_a_header_or_with_spaces_between_fields_says_so(tmp_path: Path, text: str, says: str) -> None:
    write_csv(tmp_path, text)
    target = "0" if "no header" in says else "label"
    assert says in data_error(load_arrays, csv_cfg("data.csv", target=target), tmp_path).message


@pytest.mark.parametrize(("cell", "column", "says"), [
    ('"17,279"', "a", "write it 17279 if the comma separates thousands, or 17.279 if it is a decimal comma"),
    ("NA", "a", "is a missing value"),
    ('"0,126"', "a", "'0,126' is not a number (a decimal comma? write it with a point)"),  # not "write it 0126"
    ("?", "a", "is a missing value"),
    ("red", "a", "data: {drop: [a]}"),
    ("dog", "label", "Class labels must be numbers"),
])
def test_a_csv_field_that_is_no_number_says_what_to_do(tmp_path: Path, cell: str, column: str, says: str) -> None:
    row = f"{cell},0" if column == "a" else f"1,{cell}"
    write_csv(tmp_path, f"a,label\n1,1\n{row}\n")
    err = data_error(load_arrays, csv_cfg("data.csv"), tmp_path)
    assert err.code == "data-non-numeric" and says in err.message


def test_target_offset_renumbers_a_file_s_class_ids_and_target_keys_elsewhere_are_refused(tmp_path: Path) -> None:
    # target_offset: -1 was silently ignored for class labels, and one_hot on a regression accepted.
    write_csv(tmp_path, "a,label\n1,1\n2,3\n3,2\n")
    _, ids = load_arrays(DataConfig(source="csv", path="data.csv", target="label", target_offset=-1), tmp_path, task="multiclass")
    assert ids.tolist() == [0, 2, 1]
    err = data_error(load_arrays, DataConfig(source="csv", path="data.csv", target="label", one_hot=True), tmp_path, task="multiclass")
    assert err.code == "label-format" and "target_offset: -1" in err.message  # 1..3 made 4 columns, then "use Dense(4)"
    for task, data, says in [("regression", {"one_hot": True}, "one_hot lays out class labels"),
                             ("binary", {"target_scale": 2.0}, "target_scale scales regression targets"),
                             ("binary", {"target_offset": 1.0}, "these labels are the ids 0..K-1 already"),
                             ("multiclass", {"source": "csv", "path": "data.csv", "target": "label", "target_offset": 0.5}, "must be a whole number")]:
        with pytest.raises(RecipeError, match=says):
            recipe(tmp_path, task=task, data=data)


def test_one_hot_on_a_multilabel_task_is_refused_not_ignored(tmp_path: Path) -> None:
    # Multilabel labels are one 0/1 column a label already: one_hot: true changed nothing, silently.
    with pytest.raises(RecipeError, match="one_hot lays out class ids"):
        recipe(tmp_path, task="multilabel", data={"generator": "random_labels", "classes": 3, "one_hot": True})
    write_csv(tmp_path, "a,l1,l2\n1,0,1\n2,1,1\n")
    with pytest.raises(RecipeError, match="one_hot lays out class ids"):
        recipe(tmp_path, task="multilabel", data={"source": "csv", "path": "data.csv", "target": "l1", "one_hot": True})


def test_csv_nan_or_inf_is_refused_at_its_file_line_not_a_shuffled_row(tmp_path: Path) -> None:
    rows = [f"{i},{i * 2},{i % 2}" for i in range(20)]
    rows[4] = "4,nan,0"  # data row 5: line 6 (a header and a blank line come first)
    rows[12] = "12,24,inf"
    path = write_csv(tmp_path, "a,b,label\n\n" + "\n".join(rows) + "\n")
    err = data_error(prepare_data, recipe(tmp_path, data={"source": "csv", "path": str(path), "target": "label"}))
    assert err.code == "non-finite-data"
    assert "2 NaN/inf values in 2 of 20 rows" in err.message and "line 7, column 'b' (nan)" in err.message


@pytest.mark.parametrize("cell", ["1e40", "-3.5e38"])
def test_a_csv_number_too_large_for_float32_is_named_without_a_numpy_warning(tmp_path: Path, cell: str) -> None:
    path = write_csv(tmp_path, f"a,b,label\n1,2,0\n3,{cell},1\n5,6,1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in cast" would raise here
        err = data_error(load_arrays, csv_cfg(path), tmp_path)
    assert err.code == "data-out-of-range"
    assert f"{float(cell):g} at line 3, column 'b'" in err.message and "too large for float32" in err.message and "3.4e38" in err.message
    assert "inf" not in err.message


def test_an_npz_number_too_large_for_float32_is_named_and_inf_still_is_non_finite(tmp_path: Path) -> None:
    x = np.ones((4, 2))
    x[2, 1] = 1e300
    np.savez(tmp_path / "d.npz", x=x, y=np.ones(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        err = data_error(load_arrays, npz_cfg(), tmp_path)
    assert err.code == "data-out-of-range" and "1e+300 at row 2 of 'x'" in err.message
    x[2, 1] = np.inf  # inf is no number out of range: it stays a NaN/inf error
    np.savez(tmp_path / "d.npz", x=x, y=np.ones(4))
    assert data_error(load_arrays, npz_cfg(), tmp_path).code == "non-finite-data"
    np.savez(tmp_path / "d.npz", x=x.astype(np.complex128), y=np.ones(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cast to float32 would warn ComplexWarning
        assert data_error(load_arrays, npz_cfg(), tmp_path).code == "data-non-numeric"


@pytest.mark.parametrize("key", ["x", "y"])
def test_npz_nan_is_refused_at_its_array_row(tmp_path: Path, key: str) -> None:
    arrays = {"x": np.ones((6, 2)), "y": np.ones(6)}
    arrays[key].reshape(6, -1)[3, 0] = np.nan  # one entry of row 3
    np.savez(tmp_path / "d.npz", **arrays)
    err = data_error(load_arrays, npz_cfg(), tmp_path)
    assert err.code == "non-finite-data" and f"row 3 of '{key}'" in err.message and "1 NaN/inf value in 1 of 6 rows" in err.message


@pytest.mark.parametrize("text", ["", "\n\n", "a,b,label\n"])
def test_csv_empty(tmp_path: Path, text: str) -> None:
    assert data_error(load_arrays, csv_cfg(write_csv(tmp_path, text)), tmp_path).code == "data-empty"


def test_csv_not_found(tmp_path: Path) -> None:
    err = data_error(load_arrays, csv_cfg("nope.csv"), tmp_path)
    assert err.code == "data-not-found" and "nope.csv" in err.message


@pytest.mark.parametrize("source", ["csv", "npz"])
def test_a_data_path_that_is_a_directory_says_so(tmp_path: Path, source: str) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / f"train.{source}").write_text("")
    err = data_error(load_arrays, DataConfig(source=source, path="d", **({"target": "label"} if source == "csv" else {})), tmp_path)
    assert err.code == "data-not-found" and "is a directory, not a file" in err.message and f"It holds train.{source}." in err.message
    assert "does not exist" not in err.message


def test_csv_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "bin.csv").write_bytes(b"a,label\n\xff\xfe,1\n")
    assert data_error(load_arrays, csv_cfg("bin.csv"), tmp_path).code == "data-unreadable"


# ------------------------------------------------------------------------------------------ npz


def npz_cfg(**kwargs: Any) -> DataConfig:
    return DataConfig(source="npz", path="d.npz", **kwargs)


def test_npz_reads_arrays_with_custom_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", feats=np.arange(12).reshape(6, 2), labels=np.array([0, 1, 2, 0, 1, 2]))
    x, y = load_arrays(npz_cfg(x_key="feats", y_key="labels"), tmp_path, task="multiclass")
    assert x.dtype == np.float32 and x.shape == (6, 2)
    assert y.dtype == np.int32 and list(y) == [0, 1, 2, 0, 1, 2]


def test_npz_missing_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.ones((3, 2)), target=np.ones(3))
    err = data_error(load_arrays, npz_cfg(), tmp_path)
    assert err.code == "data-missing-key" and "'y'" in err.message and "x, target" in err.message


def test_npz_errors(tmp_path: Path) -> None:
    assert data_error(load_arrays, npz_cfg(), tmp_path).code == "data-not-found"
    np.savez(tmp_path / "d.npz", x=np.ones((3, 2)), y=np.ones(4))
    assert data_error(load_arrays, npz_cfg(), tmp_path).code == "data-ragged"
    np.savez(tmp_path / "d.npz", x=np.array([["a", "b"]] * 3), y=np.ones(3))
    err = data_error(load_arrays, npz_cfg(), tmp_path)  # text: told what to do with it, not only its dtype
    assert err.code == "data-non-numeric" and "holds <U1 values, not numbers. A recipe trains on numbers" in err.message
    assert "trainkit.Trainer, which takes arrays of strings" in err.message
    np.savez(tmp_path / "d.npz", x=np.ones((3, 2)), y=np.array(["yes", "no", "yes"]))
    err = data_error(load_arrays, npz_cfg(), tmp_path)
    assert err.code == "data-non-numeric" and "Save the classes as numbers: 0..K-1" in err.message and "Trainer" not in err.message
    np.savez(tmp_path / "d.npz", x=np.ones((0, 2)), y=np.ones(0))
    assert data_error(load_arrays, npz_cfg(), tmp_path).code == "data-empty"
    for x, y, key in [(np.ones((3, 0)), np.ones(3), "'x'"), (np.ones((3, 2)), np.ones((3, 0)), "'y'")]:  # rows of no values
        np.savez(tmp_path / "d.npz", x=x, y=y)
        err = data_error(load_arrays, npz_cfg(), tmp_path)
        assert err.code == "data-empty" and key in err.message and "no values" in err.message
    (tmp_path / "d.npz").write_text("not a zip")
    assert data_error(load_arrays, npz_cfg(), tmp_path).code == "data-unreadable"


def _no_pickle_advice(message: str) -> None:
    assert "allow_pickle" not in message and "pickle.load" not in message and not message.endswith("..")


@pytest.mark.parametrize(("name", "content", "csv_hint"), [
    ("d.csv", b"a,b,label\n1,2,0\n", True),  # a csv given to the npz source
    ("d.npz", b"not a zip\n", False),  # a text file named .npz
])
def test_a_file_that_is_no_npz_archive_says_so_without_numpys_pickle_advice(tmp_path: Path, name: str, content: bytes, csv_hint: bool) -> None:
    (tmp_path / name).write_bytes(content)
    err = data_error(load_arrays, DataConfig(source="npz", path=name), tmp_path)
    assert err.code == "data-unreadable" and "is not an .npz archive" in err.message and "np.savez" in err.message
    assert ("source: csv" in err.message) == csv_hint
    _no_pickle_advice(err.message)


def test_an_npz_archive_cut_short_or_a_single_array_is_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "whole.npz", x=np.ones((3, 2)), y=np.ones(3))
    (tmp_path / "d.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:100])
    err = data_error(load_arrays, npz_cfg(), tmp_path)  # was zipfile.BadZipFile, uncaught
    assert err.code == "data-unreadable" and "damaged .npz archive" in err.message
    with (tmp_path / "d.npz").open("wb") as handle:
        np.save(handle, np.ones(3))
    err = data_error(load_arrays, npz_cfg(), tmp_path)
    assert err.code == "data-unreadable" and "single array" in err.message


def test_an_npz_with_other_array_names_points_at_x_key_and_y_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", X_train=np.ones((3, 2)), y_train=np.ones(3))
    err = data_error(load_arrays, npz_cfg(), tmp_path)
    assert err.code == "data-missing-key" and "X_train, y_train" in err.message and "data.x_key" in err.message


def test_an_npz_object_array_is_refused_as_a_pickle_trainkit_will_not_load(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.array([[1, "a"]] * 3, dtype=object), y=np.ones(3))
    err = data_error(load_arrays, npz_cfg(), tmp_path)
    assert err.code == "data-unreadable" and "'x'" in err.message and "dtype=object" in err.message and "loads no pickles" in err.message
    _no_pickle_advice(err.message)


# -------------------------------------------------------------------------------------- sklearn


def test_sklearn_bundled_dataset() -> None:
    x, y = load_arrays(DataConfig(source="sklearn", name="breast_cancer"), ".", task="binary")
    assert x.shape == (569, 30) and x.dtype == np.float32
    assert y.shape == (569, 1) and set(np.unique(y)) == {0.0, 1.0}
    splits = prepare_data(recipe(data={"source": "sklearn", "name": "diabetes"}, task="regression"))
    assert splits.feature_names is not None and "bmi" in splits.feature_names


def test_missing_sklearn_is_a_recipe_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn` fail
    with pytest.raises(RecipeError) as info:
        load_arrays(DataConfig(source="sklearn", name="digits"), ".")
    assert info.value.code == "missing-extra" and 'pip install "trainkit[datasets]"' in info.value.message


@pytest.mark.parametrize(("section", "what"), [({"feature_scale": 1e39}, "feature"), ({"target_scale": 3e38, "target_offset": 1e38}, "target")])
def test_a_scale_past_float32_is_data_out_of_range_without_a_numpy_warning(tmp_path, section, what):
    import warnings

    generator = "learnable_regression" if what == "target" else "learnable_binary"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered" leaked to the terminal
        err = data_error(prepare_data, recipe(tmp_path, task="regression" if what == "target" else "binary",
                                              data={"source": "generator", "generator": generator, "rows": 50, **section}))
    assert err.code == "data-out-of-range" and f"data.{what}_scale" in err.message
