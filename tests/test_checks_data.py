"""Fit-time data checks: each with a bad and a good case; every error message carries its fix."""

from __future__ import annotations

import functools
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainkit import DataError
from trainkit.checks import (
    DATA_ERROR_CODES,
    DATA_INFO_CODES,
    DATA_RULES,
    DATA_WARNING_CODES,
    DatasetSample,
    check_data,
)
from trainkit.resolve import get_loss

L = keras.layers


@functools.cache
def model(kind: str) -> keras.Model:
    """Tiny models, built once, never fitted."""
    if kind == "binary":
        return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(1, activation="sigmoid")])
    if kind == "binary_logits":
        return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(1)])
    if kind == "multiclass":
        return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(3, activation="softmax")])
    if kind == "multilabel":
        return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(3, activation="sigmoid")])
    if kind == "regression":
        return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(1)])
    if kind == "regression_sigmoid":
        return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(1, activation="sigmoid", name="out")])
    if kind == "regression_relu":
        return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(1, activation="relu")])
    if kind == "normalized":
        return keras.Sequential([keras.Input((4,)), L.Normalization(mean=0.0, variance=1.0), L.Dense(8, activation="relu"), L.Dense(1)])
    if kind == "image":
        return keras.Sequential([keras.Input((8, 8, 1)), L.Flatten(), L.Dense(8, activation="relu"), L.Dense(1, activation="sigmoid")])
    if kind == "embedding":  # four ids per row, looked up in a table of 10
        return keras.Sequential([keras.Input((4,), dtype="int32"), L.Embedding(10, 2), L.Flatten(), L.Dense(1, activation="sigmoid")])
    if kind == "embedding_pooled":  # four ids per row, masked and averaged
        return keras.Sequential([keras.Input((4,), dtype="int32"), L.Embedding(10, 2, mask_zero=True), L.GlobalAveragePooling1D(),
                                 L.Dense(1, activation="sigmoid")])
    if kind == "text_unadapted":  # a TextVectorization never adapted
        return keras.Sequential([keras.Input((1,), dtype="string"), L.TextVectorization(max_tokens=10, output_sequence_length=4),
                                 L.Embedding(10, 2), L.Flatten(), L.Dense(1, activation="sigmoid")])
    if kind == "binary_float16":  # mixed precision: the first layer casts its inputs to float16
        return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu", dtype="mixed_float16"), L.Dense(1, activation="sigmoid")])
    raise ValueError(kind)


TASK = {"binary": "binary", "binary_logits": "binary", "multiclass": "multiclass", "multilabel": "multilabel",
        "regression": "regression", "regression_sigmoid": "regression", "regression_relu": "regression",
        "normalized": "regression", "image": "binary", "embedding": "binary", "binary_float16": "binary",
        "text_unadapted": "binary", "embedding_pooled": "binary"}
LOSS = {"binary": "bce", "binary_logits": {"name": "bce", "from_logits": True}, "multiclass": "scce",
        "multilabel": "bce", "regression": "mse", "regression_sigmoid": "mse", "regression_relu": "mse",
        "normalized": "mse", "image": "bce", "embedding": "bce", "binary_float16": "bce",
        "text_unadapted": "bce", "embedding_pooled": "bce"}


def run(kind, x, y, loss=None, **kw):
    return check_data(x, y, model=model(kind), loss=get_loss(loss or LOSS[kind]), task=kw.pop("task", TASK[kind]), **kw)


def std_x(n=600, d=4, seed=0):
    """Standardised uniform random features (the calibration baseline)."""
    x = np.random.default_rng(seed).uniform(-1, 1, (n, d))
    return ((x - x.mean(0)) / x.std(0)).astype("float32")


def binary_y(x, seed=0):
    """Learnable, balanced binary labels from two features."""
    return (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int64")


def codes(findings):
    return [f.code for f in findings]


# --- one table of bad cases: every data error, its code and a piece of its fix ----------------

X = std_x()
YB = binary_y(X)
YM = np.digitize(X[:, 0], [-0.5, 0.5]).astype("int64")  # classes 0, 1, 2
YR = (X @ np.array([1.0, -0.5, 0.25, 0.0])).astype("float32")
ONE_HOT = np.eye(3, dtype="float32")[YM]


def _nan_x():
    x = X.copy()
    x[7, 2] = np.nan
    x[9, 0] = np.inf
    return x


def _nan_y():
    y = YR.copy()
    y[11] = np.inf
    return y


BAD = [
    # (id, model kind, x, y, loss, kwargs, code, piece of the fix)
    ("x-columns", "binary", X[:, :3], YB, None, {}, "shape-mismatch", "keras.Input(shape=(3,))"),
    ("x-rank", "binary", X.reshape(-1, 2, 2), YB, None, {}, "shape-mismatch", "reshape(len(x), 4)"),
    ("rows", "binary", X, YB[:-1], None, {}, "shape-mismatch", "same first dimension"),
    ("y-columns", "regression", X, np.stack([YR, YR, YR], 1), None, {}, "shape-mismatch", "Dense(3)"),
    ("nan-x", "binary", _nan_x(), YB, None, {}, "non-finite-data", "np.isfinite(x)"),
    ("inf-y", "regression", X, _nan_y(), None, {}, "non-finite-data", "Drop those rows"),
    ("nan-x-val", "binary", X, YB, None, {"x_val": _nan_x(), "y_val": YB}, "non-finite-data", "np.isfinite(x_val)"),
    ("int-labels-cce", "multiclass", X, YM, "categorical_crossentropy", {}, "label-format", "SparseCategoricalCrossentropy"),
    ("one-hot-sparse", "multiclass", X, ONE_HOT, "scce", {}, "label-format", "y.argmax(axis=-1)"),
    # Multi-hot rows were told "one-hot rows" and y.argmax(axis=-1), which drops all but one label a row.
    ("multi-hot-sparse", "multiclass", X, np.maximum(ONE_HOT, ONE_HOT[::-1]), "scce", {}, "label-format", "use task='multilabel'"),
    ("binary-1-2", "binary", X, YB + 1, None, {}, "label-format", "y - 1"),
    ("binary-val-label-7", "binary", X, YB, None, {"x_val": X[:20], "y_val": np.where(np.arange(20) == 13, 7, YB[:20])}, "label-format", "y_val"),
    ("class-id-too-big-val", "multiclass", X, YM, None, {"x_val": X[:20], "y_val": np.where(YM[:20] == 2, 3, YM[:20])}, "label-format", "Dense(4)"),
    ("binary-pm1", "binary", X, 2 * YB - 1, None, {}, "label-format", "(y + 1) / 2"),
    ("binary-3-classes", "binary", X, YM, None, {}, "label-format", "These look like 3 classes: use task='multiclass'"),
    ("multilabel-sum-column", "multilabel", X, np.c_[X[:, :2] > 0, (X[:, :2] > 0).sum(1)], None, {}, "label-format",
     "y = np.delete(y, 2, axis=1)"),
    ("multilabel-counts", "multilabel", X, 2 * ONE_HOT + ONE_HOT[:, ::-1], None, {}, "label-format", "y = (y > 0)"),
    ("binary-of-counts", "binary", X, np.arange(len(X)) % 200, None, {}, "label-format", "use task='regression'"),
    ("binary-div-255", "binary", X, YB / 255.0, None, {}, "label-format", "(y > 0)"),
    ("class-id-too-big", "multiclass", X, np.where(YM == 2, 3, YM), None, {}, "label-format", "Dense(4)"),
    ("one-based", "multiclass", X, YM + 1, None, {}, "label-format", "y - 1"),
    ("negative-class-ids", "multiclass", X, YM - 1, None, {}, "label-format", "Map the 3 distinct labels to 0..2"),
    ("class-ids-far-too-big", "multiclass", X, YM * 2**33, None, {}, "label-format", "Map the 3 distinct labels to 0..2"),
    ("labels-div-255", "multiclass", X, YM / 255.0, None, {}, "label-format", "np.rint(y * 255)"),
    ("multi-hot-cce", "multiclass", X, np.clip(ONE_HOT + np.eye(3)[0], 0, 1), "categorical_crossentropy", {}, "label-format", "task='multilabel'"),
    ("single-class", "binary", X, np.zeros(len(X), dtype=int), None, {}, "single-class", "at least two classes"),
    ("constant-targets", "regression", X, np.zeros(len(X)), None, {}, "constant-targets", "the training targets need to vary"),
    ("weights-all-zero", "binary", X, YB, None, {"sample_weight": np.zeros(len(X))}, "sample-weight-all-zero", "positive weights"),
    ("weights-negative", "binary", X, YB, None, {"sample_weight": -np.ones(len(X))}, "sample-weight-negative", "0 to leave a row out"),
    ("embedding-ids-past-the-table", "embedding", np.arange(len(X) * 4).reshape(-1, 4) % 12, YB, None, {}, "embedding-ids", "Embedding(input_dim=12"),
    ("empty-masked-rows", "embedding_pooled", np.where(np.arange(len(X))[:, None] % 10 == 3, 0, 1 + np.arange(len(X) * 4).reshape(-1, 4) % 9), YB,
     None, {}, "empty-masked-rows", "x, y = x[keep], y[keep]"),
    ("lookup-not-adapted", "text_unadapted", np.array(["a b c d"] * len(X)), YB, None, {}, "lookup-not-adapted", ".adapt(x_train)"),
    ("float16-overflow", "binary_float16", X * 1e5, YB, None, {}, "float16-overflow", "dtype='float32'"),
    ("nan-weight", "binary", X, YB, None, {"sample_weight": np.where(np.arange(len(X)) == 3, np.nan, 1.0)}, "non-finite-data", "np.isfinite(sample_weight)"),
    ("sigmoid-3-103", "regression_sigmoid", X, np.linspace(3, 103, len(X)), None, {}, "labels-out-of-range", "Remove the activation"),
    ("relu-negative", "regression_relu", X, YR, None, {}, "labels-out-of-range", "linear output"),
    # MSLE reads every negative target as 0: signed targets trained silently on other targets.
    ("msle-negative", "regression", X, YR, "msle", {}, "labels-out-of-range", "loss='mse'"),
    # MAPE divides by |y|: counts with zeros made the loss 1e7 and were told to look at the initialisers.
    ("mape-zero", "regression", X, np.floor(np.abs(YR) * 2), "mape", {}, "labels-out-of-range", "loss='mae'"),
    # Standardised counts are signed: the fix for counts is to leave them unstandardised.
    ("poisson-standardised-counts", "regression_relu", X, YR, "poisson", {}, "labels-out-of-range", "unstandardised"),
]


def test_targets_out_of_a_bounded_output_s_range_name_the_recipe_keys():
    # A recipe's users were told to write y_scaled = (y - 3) / 100 on a y they never hold.
    with pytest.raises(DataError) as info:
        run("regression_sigmoid", X, np.linspace(3, 103, len(X)))
    assert info.value.code == "labels-out-of-range"
    assert "(in a recipe, leave activation out of that layer and set preprocessing.standardize_targets: true)" in info.value.message


def test_non_negative_targets_with_msle_pass_and_a_relu_output_s_range_still_applies():
    # Targets >= 0 are what MSLE is for; a sigmoid output still caps them at 1.
    assert "labels-out-of-range" not in codes(run("regression", X, np.abs(YR), loss="msle"))
    assert "labels-out-of-range" in codes(run("regression_sigmoid", X, np.abs(YR) + 2, loss="msle", allow={"labels-out-of-range"}))


def test_mape_takes_targets_away_from_0_and_refuses_a_0_in_the_validation_targets_too():
    # One 0 makes its row's MAPE 1e9 times the prediction: it swamps every other row's.
    positive = np.abs(YR) + 1
    assert "labels-out-of-range" not in codes(run("regression", X, positive, loss="mape"))
    assert "labels-out-of-range" not in codes(run("regression", X, -positive, loss="mape"))  # |y|: signed is fine
    y_val = positive[:20].copy()
    y_val[5] = 0.0
    with pytest.raises(DataError) as info:
        run("regression", X, positive, loss="mape", x_val=X[:20], y_val=y_val)
    assert info.value.code == "labels-out-of-range" and "5.0% of the targets of y_val are 0" in info.value.message
    # Zeros weighted out (sample_weight 0: a missing value the loss skips) add nothing to it.
    counts = positive.copy()
    counts[::4] = 0.0
    weights = np.where(counts == 0, 0.0, 1.0)
    assert "labels-out-of-range" not in codes(run("regression", X, counts, loss="mape", sample_weight=weights,
                                                  x_val=X[:20], y_val=y_val, val_sample_weight=np.where(y_val == 0, 0.0, 1.0)))
    with pytest.raises(DataError) as info:  # one zero left in
        run("regression", X, counts, loss="mape", sample_weight=np.where(np.arange(len(counts)) == 4, 0.0, 1.0))
    assert info.value.code == "labels-out-of-range"
    # A function of one's own under Keras's name is trained as written: it may guard the division.
    def mean_absolute_percentage_error(y_true, y_pred):
        return 100 * keras.ops.mean(keras.ops.abs(y_true - y_pred) / (keras.ops.abs(y_true) + 1), axis=-1)

    found = check_data(X, counts, model=model("regression"), loss=get_loss(mean_absolute_percentage_error), task="regression")
    assert "labels-out-of-range" not in codes(found)


def test_validation_targets_out_of_a_bounded_output_s_range_are_found_and_named():
    # Only the training targets were read: validation targets of 3..103 for a sigmoid output
    # passed, and fit then withdrew the bounded-output warning on the training targets alone.
    inside = np.linspace(0.1, 0.9, len(X))
    with pytest.raises(DataError) as info:
        run("regression_sigmoid", X, inside, x_val=X, y_val=np.linspace(3, 103, len(X)))
    assert info.value.code == "labels-out-of-range" and "The targets of y_val range from 3 to 103" in info.value.message
    assert "labels-out-of-range" not in codes(run("regression_sigmoid", X, inside, x_val=X, y_val=inside))


@pytest.mark.parametrize(("kind", "x", "y", "loss", "kw", "code", "fix"),
                         [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_each_data_error_has_its_code_and_fix(kind, x, y, loss, kw, code, fix):
    with pytest.raises(DataError) as info:
        run(kind, x, y, loss, **kw)
    assert info.value.code == code
    assert fix in info.value.message
    assert isinstance(info.value, ValueError)


def test_bad_table_covers_every_data_error():
    assert {case[6] for case in BAD} == set(DATA_ERROR_CODES)
    assert {r.code for r in DATA_RULES} == set(DATA_ERROR_CODES) | set(DATA_WARNING_CODES) | set(DATA_INFO_CODES)


GOOD = [
    ("binary", X, YB, None),
    ("binary_logits", X, YB.astype("float32").reshape(-1, 1), None),
    ("binary", X, YB.astype(bool), None),
    ("binary", X, np.clip(0.1 + 0.8 * YB, 0, 1), None),  # soft labels
    ("multiclass", X, YM, None),
    ("multiclass", X, YM.reshape(-1, 1), None),
    ("multiclass", X, ONE_HOT, "categorical_crossentropy"),
    ("multilabel", X, (X[:, :3] > 0).astype("float32"), None),
    ("regression", X, YR, None),
    ("regression", X, YR.reshape(-1, 1), None),
    ("regression_sigmoid", X, 1 / (1 + np.exp(-YR)), None),
    ("regression_relu", X, np.abs(YR), None),
]


@pytest.mark.parametrize(("kind", "x", "y", "loss"), GOOD)
def test_good_data_passes_without_findings(kind, x, y, loss):
    assert run(kind, x, y, loss, x_val=std_x(seed=1), y_val=None) == []


def test_non_finite_message_counts_rows_and_names_the_first():
    with pytest.raises(DataError) as info:
        run("binary", _nan_x(), YB)
    assert "x has 2 rows of 600 with NaN or Inf" in info.value.message
    assert "1 NaN, 1 Inf" in info.value.message and "first at row 7, column 2" in info.value.message


def test_float64_values_beyond_float32_are_named_as_overflow_not_inf():
    # 1e40 in float64 data was "x has 1 row of 600 with NaN or Inf values (0 NaN, 1 Inf ...)" with
    # advice built on np.isfinite(x), which is all True on the caller's data: fit narrows it to
    # float32, where 1e40 is Inf (with a numpy overflow RuntimeWarning on stderr).
    import warnings

    from trainkit import Trainer

    x = X.astype(np.float64)
    x[7, 2], x[9, 0], x[11, 1] = 1e40, -3e39, np.nan
    with pytest.raises(DataError) as info:
        run("binary", x, YB)
    message = info.value.message
    assert info.value.code == "non-finite-data" and "x has 3 rows of 600 with NaN, Inf or values beyond float32's range" in message
    assert "2 beyond ±3.4e+38, 1 NaN, 0 Inf; the first at row 7, column 2: 1e+40" in message and "float32, the model's dtype" in message
    assert "keep = (np.abs(x) <= np.finfo(np.float32).max)" in message
    (found,) = [f for f in run("binary", x, YB, allow={"non-finite-data"}) if f.code == "non-finite-data"]
    assert found.evidence["float32_overflow"] == 2 and found.evidence["rows"] == 3
    (found,) = [f for f in run("binary", x.astype(">f8"), YB, allow={"non-finite-data"}) if f.code == "non-finite-data"]
    assert found.evidence["float32_overflow"] == 2  # big-endian float64 is narrowed too
    x[11, 1] = 0.0
    keras.utils.set_random_seed(0)
    trainer = Trainer(model("regression"), loss="mse", optimizer="sgd", task="regression", seed=0, diagnose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "overflow encountered in cast" from the narrowing
        with pytest.raises(DataError) as info:
            trainer.fit(x, YR.astype(np.float64), epochs=1, verbose=0, validation_split=0.5)
    assert "x has 2 rows with values beyond float32's range among its first 300 rows" in info.value.message
    assert "(2 beyond ±3.4e+38; the first at row 7, column 2: 1e+40)" in info.value.message
    assert "non-finite-data" not in codes(run("binary", x.clip(-3e38, 3e38), YB))  # within float32's range


def test_float16_inputs_with_inf_of_both_signs_are_named_without_a_numpy_warning():
    # float16 data cast from values past ±65,504 holds inf and -inf: the check's own sum of them,
    # NaN, printed numpy's "invalid value encountered in reduce" RuntimeWarning beside the error.
    import warnings

    x = X.astype(np.float16)
    x[7, 2], x[9, 0] = np.inf, -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError) as info:
            run("binary", x, YB)
    assert info.value.code == "non-finite-data" and "x has 2 rows of 600 with NaN or Inf" in info.value.message


def test_non_finite_labels_and_ids_are_not_told_to_be_filled_with_a_mean():
    # A NaN label, and a NaN among the ids an Embedding looks up, were told to "fill the gaps with
    # the training-split mean": 0.4 is no class, a mean target is made up, 2547.3 is no product id.
    def advice(kind, x, y):
        with pytest.raises(DataError) as info:
            run(kind, x, y)
        assert info.value.code == "non-finite-data"
        return info.value.message
    y = YB.astype("float32")
    y[4] = np.nan
    text = advice("binary", X, y)
    assert "Drop those rows" in text and "a missing label has no value to fill in" in text and "mean." not in text
    text = advice("regression", X, _nan_y())
    assert "Drop those rows" in text and "made-up target" in text and "training-split mean" not in text
    ids = np.random.default_rng(0).integers(0, 10, X.shape).astype("float64")
    ids[3, 1] = np.nan
    text = advice("embedding", ids, YB)
    assert "an id of their own" in text and "training-split mean" not in text
    text = advice("binary", _nan_x(), YB)  # features: a mean is a fair fill
    assert "Drop or impute those rows" in text and "fill the gaps with the training-split mean" in text


def test_bfloat16_data_is_checked_as_the_numbers_it_holds():
    # numpy knows bfloat16 (TensorFlow's, from ml_dtypes) as kind "V": its labels were refused as
    # "not numbers" (model.fit trains on them), and NaN or unscaled bfloat16 inputs passed unseen.
    bfloat16 = tf.bfloat16.as_numpy_dtype
    assert run("binary", X, YB.astype(bfloat16)) == []
    assert run("regression", X, YR.astype(bfloat16)) == []
    with pytest.raises(DataError) as info:
        run("binary", _nan_x().astype(bfloat16), YB)
    assert info.value.code == "non-finite-data" and "first at row 7, column 2" in info.value.message
    with pytest.raises(DataError) as info:
        run("binary", X, YB.astype(bfloat16) + 1)
    assert info.value.code == "label-format" and "0/1 labels" in info.value.message
    assert "unscaled-inputs" in codes(run("binary", (X * 100).astype(bfloat16), YB))


def test_a_multilabel_column_beside_0_1_ones_is_named_and_not_told_to_be_multiclass():
    # "y holds {0, 1, 2}: these look like 3 classes, use task='multiclass'" for two 0/1 label
    # columns beside their sum, which no single class id a row can replace.
    labels = (X[:, :2] > 0).astype("float32")
    with pytest.raises(DataError) as info:
        run("multilabel", X, np.c_[labels, labels.sum(1)])
    assert info.value.code == "label-format"
    assert "Column 2 of y" in info.value.message and "sum of the other columns" in info.value.message
    assert "multiclass" not in info.value.message


def test_unscaled_target_images_for_binary_crossentropy_are_told_to_be_divided_by_255():
    # An autoencoder's targets left in 0..255 (inputs scaled, targets not) were told they "look like
    # counts: make each a 0/1 label, y = (y > 0)", which binarises every image; float pixels were
    # told y = (y == positive_class), and a conv autoencoder's (n, 8, 8, 1) to use task='regression'.
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (60, 64)).astype("float32")
    dense = keras.Sequential([keras.Input((64,)), L.Dense(4, activation="relu"), L.Dense(64, activation="sigmoid")])
    conv = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(1, 3, padding="same", activation="sigmoid")])
    for net, x, y in ((dense, pixels / 255, pixels), (dense, pixels / 255, np.clip(pixels + 0.5, 0, 255)),
                      (conv, pixels.reshape(-1, 8, 8, 1) / 255, pixels.reshape(-1, 8, 8, 1))):
        with pytest.raises(DataError) as info:
            check_data(x, y, model=net, loss=get_loss("bce"), task="multilabel")
        assert info.value.code == "label-format" and "y = y / 255" in info.value.message
        assert "(y > 0)" not in info.value.message and "regression" not in info.value.message
    # Tag counts stay counts; 0/255 masks keep their own advice.
    counts = rng.integers(0, 5, (60, 64)).astype("float32")
    with pytest.raises(DataError) as info:
        check_data(pixels / 255, counts, model=dense, loss=get_loss("bce"), task="multilabel")
    assert "y = (y > 0)" in info.value.message
    # Heavy-tailed counts reach 128-255 too (most of them a few): they were told pixels, y / 255.
    counts = np.minimum(rng.zipf(1.6, (60, 64)) - 1, 200).astype("float32")
    assert counts.max() >= 128
    with pytest.raises(DataError) as info:
        check_data(pixels / 255, counts, model=dense, loss=get_loss("bce"), task="multilabel")
    assert "y = (y > 0)" in info.value.message and "/ 255" not in info.value.message
    with pytest.raises(DataError) as info:
        check_data(pixels / 255, 255 * (pixels > 127), model=dense, loss=get_loss("bce"), task="multilabel")
    assert "0/255 masks" in info.value.message


def test_labels_out_of_range_states_both_ranges():
    with pytest.raises(DataError) as info:
        run("regression_sigmoid", X, np.linspace(3, 103, len(X)))
    msg = info.value.message
    assert "range from 3 to 103" in msg and "applies sigmoid, whose outputs lie in [0, 1]" in msg
    assert "100.0% of the targets" in msg and "y_scaled = (y - 3) / 100" in msg


def test_allowed_data_error_becomes_warning():
    findings = run("regression_sigmoid", X, np.linspace(3, 103, len(X)), allow={"labels-out-of-range"})
    assert codes(findings)[0] == "labels-out-of-range" and findings[0].severity == "warning"


@pytest.mark.parametrize(("model_shape", "x_shape", "wanted"), [
    ((8, 8, 3), (64, 3, 8, 8), "np.moveaxis(x, 1, -1)"),  # channels-first images, channels-last model
    ((3, 8, 8), (64, 8, 8, 3), "np.moveaxis(x, -1, 1)"),  # the reverse
    ((8, 8, 1), (64, 1, 8, 8), "x.reshape(len(x), 8, 8, 1)"),  # one channel: a reshape moves it right
])
def test_images_with_their_channel_axis_at_the_other_end_are_told_to_move_it_not_reshape(model_shape, x_shape, wanted):
    # x.reshape(len(x), 8, 8, 3) of channels-first images keeps the values in memory order:
    # every image scrambled, and the model trains on noise.
    m = keras.Sequential([keras.Input(model_shape), L.Flatten(), L.Dense(1, activation="sigmoid")])
    x = np.random.default_rng(0).random(x_shape).astype("float32")
    with pytest.raises(DataError) as info:
        check_data(x, np.arange(64) % 2, model=m, loss=get_loss("bce"), task="binary")
    assert info.value.code == "shape-mismatch"
    assert wanted in str(info.value)
    assert ("reshape" in wanted) == ("Reshape it" in str(info.value))


@pytest.mark.parametrize(("task", "activation", "y", "loss"), [
    ("binary", "sigmoid", YB.reshape(-1, 1), "bce"),
    ("multiclass", "softmax", YM, "scce"),
])
def test_unflattened_samples_ask_for_a_flatten_not_for_other_labels(task, activation, y, loss):
    # (n, 4, 4) samples straight into Dense layers: the output keeps an axis, (None, 4, units).
    units = 1 if task == "binary" else 3
    dense_only = keras.Sequential([keras.Input((4, 4)), L.Dense(8, activation="relu"), L.Dense(units, activation=activation)])
    with pytest.raises(DataError) as info:
        check_data(std_x(d=16).reshape(-1, 4, 4), y, model=dense_only, loss=get_loss(loss), task=task)
    message = info.value.message
    assert info.value.code == "shape-mismatch"
    assert "{type: flatten}" in message and "keras.layers.Flatten()" in message and "(4, 4)" in message
    assert "Give y the shape" not in message


@pytest.mark.parametrize(("layer", "wanted", "unwanted"), [
    (lambda: L.LSTM(8, return_sequences=True, name="seq"), "LSTM 'seq': pass return_sequences=False to it", "Flatten"),
    (lambda: L.Conv1D(8, 2, name="seq"), "Conv1D 'seq': add a GlobalAveragePooling or Flatten layer after it", "return_sequences"),
], ids=["lstm", "conv1d"])
def test_a_sequence_model_that_keeps_positions_is_told_where_to_reduce_them(layer, wanted, unwanted):
    # An LSTM(return_sequences=True) model was told to add a Flatten as its first layer.
    model = keras.Sequential([keras.Input((5, 3)), layer(), L.Dense(1)])
    with pytest.raises(DataError) as info:
        check_data(std_x(d=15).reshape(-1, 5, 3), YR, model=model, loss=get_loss("mse"), task="regression")
    message = info.value.message
    assert info.value.code == "shape-mismatch" and wanted in message and unwanted not in message
    assert "as the first of model.layers" not in message and "Give y the shape" not in message


def test_labels_with_extra_axes_are_not_told_to_use_the_output_width_they_have():
    # "change the output layer to Dense(4)" for an output layer that is Dense(4).
    model = keras.Sequential([keras.Input((16,)), L.Dense(4)])
    with pytest.raises(DataError) as info:
        check_data(std_x(d=16), np.zeros((len(std_x(d=16)), 5, 4), "float32"), model=model, loss=get_loss("mse"), task="regression")
    message = info.value.message
    assert "Dense(4)" not in message and "Give y the shape (n, 4)" in message and "(5,) in y" in message


def test_labels_of_the_wrong_shape_still_get_told_their_shape():
    # A flat input whose output has one unit per sample: the labels are what is wrong.
    with pytest.raises(DataError) as info:
        run("regression", X, np.stack([YR, YR], 1))
    assert "Give y the shape (n, 1)" in info.value.message and "Flatten" not in info.value.message


def test_one_hot_binary_labels_for_one_sigmoid_unit_are_told_to_take_the_class_1_column():
    # "or change the output layer to Dense(2)": two sigmoid units for a binary task are then
    # refused as units-mismatch; the labels are what to change.
    with pytest.raises(DataError) as info:
        run("binary", X, np.eye(2, dtype="float32")[YB])
    assert info.value.code == "shape-mismatch" and "y = y[:, 1]" in info.value.message and "Dense(2)" not in info.value.message
    # A recipe's one-hot labels come from its data.one_hot key: the fix names it.
    assert "in a recipe, data.one_hot: false" in info.value.message


def test_one_hot_rows_of_three_classes_for_a_binary_task_are_told_it_is_multiclass():
    # label_mode='categorical' over 3 class folders, task='binary': "change the output layer to
    # Dense(3)" gave 3 sigmoid units, which a binary task refuses (units-mismatch).
    with pytest.raises(DataError) as info:
        run("binary", X, ONE_HOT)
    assert info.value.code == "shape-mismatch" and "one-hot rows of 3 classes" in info.value.message
    assert "task='multiclass' with Dense(3, activation='softmax')" in info.value.message and "Dense(3) to predict" not in info.value.message


@pytest.mark.parametrize(("loss", "labels", "recipe"), [
    ("categorical_crossentropy", lambda y: y, "loss: sparse_categorical_crossentropy, or data.one_hot: true"),
    ("scce", lambda y: np.eye(3, dtype="float32")[y], "loss: categorical_crossentropy, or data.one_hot: false"),
])
def test_class_ids_against_a_one_hot_loss_and_back_name_the_recipe_keys(loss, labels, recipe):
    # A recipe's users were told keras.utils.to_categorical(y, 3) or y.argmax(axis=-1): code on a
    # y they never hold, where the recipe's loss or its data.one_hot is what to change.
    y = np.arange(len(X)) % 3
    with pytest.raises(DataError) as info:
        check_data(X, labels(y), model=model("multiclass"), loss=get_loss(loss), task="multiclass")
    assert info.value.code == "label-format" and f"(in a recipe, {recipe})" in info.value.message, info.value.message


# --- warnings: each with a bad and a good case -----------------------------------------------

def test_constant_inputs_fires_when_no_feature_varies_and_only_then():
    # An all-zero x trained to the label prior; the only data-side finding was dead-relu's "fix the
    # bias initialisation (zeros)", which it had.
    y = binary_y(std_x())
    (finding,) = [f for f in run("binary", np.zeros((600, 4), "float32"), y) if f.code == "constant-inputs"]
    assert finding.severity == "warning" and "every row" in finding.message and finding.evidence["value"] == 0.0
    assert "constant-inputs" in codes(run("binary", np.full((600, 4), 3.0), y))
    # One constant column among varying ones is common and harmless.
    x = std_x()
    x[:, 2] = 0.0
    assert "constant-inputs" not in codes(run("binary", x, y))
    assert "constant-inputs" not in codes(run("binary", std_x(), y))


def test_constant_inputs_reads_on_past_the_first_batches_of_a_dataset_in_order():
    # Windows of a series whose first 800 steps are 0, batched in time order
    # (timeseries_dataset_from_array never shuffles): the 8 batches read were all 0 and told
    # "every row looks the same to the model". The rows past them are read too.
    x = np.zeros((2000, 4), "float32")
    x[800:] = std_x(1200)
    y = x[:, 0].copy()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    assert "constant-inputs" not in codes(run("regression", data, None))
    # All of them 0: still told, shuffled or not.
    zeros = tf.data.Dataset.from_tensor_slices((np.zeros_like(x), y))
    assert "constant-inputs" in codes(run("regression", zeros.batch(32), None))
    assert "constant-inputs" in codes(run("regression", zeros.shuffle(2000, seed=0).batch(32), None))


def test_unscaled_inputs_fires_on_rand_times_100_and_names_features():
    rng = np.random.default_rng(0)
    x = rng.random((500, 4)) * 100
    x[:, 1] = rng.random(500)
    (finding,) = [f for f in run("binary", x, (x[:, 0] > 50).astype(int)) if f.code == "unscaled-inputs"]
    assert finding.severity == "warning"
    assert finding.evidence["features"][0] in (0, 2, 3) and 1 not in finding.evidence["features"][:3]
    assert 40 < finding.evidence["mean"][0] < 60 and "mean" in finding.message
    assert "Normalization" in finding.advice


@pytest.mark.parametrize("two_inputs", [False, True])
def test_unscaled_inputs_leaves_out_a_masking_layers_padding_steps(two_inputs):
    # Standardised features padded with Masking(mask_value=-99.0)'s value (72% of the steps) were
    # "not scaled (values reach |mean| 71.08 / std 44.56)"; their real steps are mean 0, std 1.
    rng = np.random.default_rng(0)
    real = np.arange(40)[None] < np.minimum(rng.geometric(0.12, size=(200, 1)) + 2, 40)
    x = np.where(real[..., None], rng.normal(size=(*real.shape, 4)), -99.0).astype("float32")
    y = (rng.random(200) < 0.5).astype("float32")

    def classifier(mask_value: float | None) -> keras.Model:
        steps = keras.Input((40, 4))
        h = L.LSTM(8)(L.Masking(mask_value=mask_value)(steps) if mask_value is not None else steps)
        if not two_inputs:
            return keras.Model(steps, L.Dense(1, activation="sigmoid")(h))
        other = keras.Input((3,))
        return keras.Model([steps, other], L.Dense(1, activation="sigmoid")(L.Concatenate()([h, other])))

    def found(mask_value: float | None, rows: np.ndarray) -> list[str]:
        xs = [rows, rng.normal(size=(200, 3)).astype("float32")] if two_inputs else rows
        return codes(check_data(xs, y, model=classifier(mask_value), loss=get_loss("bce"), task="binary"))

    assert "unscaled-inputs" not in found(-99.0, x)
    # Without the layer the padding is read as values; and real steps out of scale are still told.
    assert "unscaled-inputs" in found(None, x)
    assert "unscaled-inputs" in found(-99.0, np.where(real[..., None], x * 100.0, -99.0).astype("float32"))


def test_unscaled_inputs_fires_on_scales_spanning_orders_of_magnitude():
    x = std_x()
    x[:, 3] *= 1e-3
    assert "unscaled-inputs" in codes(run("binary", x, YB))


def test_unscaled_inputs_reads_a_channels_first_models_channels_on_axis_1():
    # A channels_first Conv2D's channels were read on the last axis, an image's columns: 0..255
    # channels 0 and 1 beside a 0..1 channel 2 read "channel 8: mean 86.2" (each column mixes
    # them), and a near-empty channel 2 (x 1e-4) beside 0..1 ones was not told at all.
    rng = np.random.default_rng(0)
    net = keras.Sequential([keras.Input((3, 16, 16)), L.Conv2D(4, 3, activation="relu", data_format="channels_first"),
                            L.GlobalAveragePooling2D(data_format="channels_first"), L.Dense(1, activation="sigmoid")])
    y = rng.integers(0, 2, 128)

    def finding(x: np.ndarray) -> list:
        return [f for f in check_data(x, y, model=net, loss=get_loss("bce"), task="binary") if f.code == "unscaled-inputs"]

    x = rng.random((128, 3, 16, 16)).astype("float32")
    x[:, :2] *= 255
    (told,) = finding(x)
    assert sorted(told.evidence["features"]) == [0, 1, 2] and told.evidence["scale_ratio"] > 100
    assert 120 < told.evidence["mean"][0] < 135 and "channel 2: mean 0.5" in told.message
    x = rng.random((128, 3, 16, 16)).astype("float32")
    x[:, 2] *= 1e-4
    (told,) = finding(x)
    assert told.evidence["features"][-1] == 2 and "orders of magnitude" in told.message
    assert not finding(rng.random((128, 3, 16, 16)).astype("float32"))


@pytest.mark.parametrize("features", ["standardised", "unit_interval", "one_hot_mix"])
def test_unscaled_inputs_silent_on_scaled_data(features):
    rng = np.random.default_rng(1)
    if features == "standardised":
        x = rng.standard_normal((800, 4))
    elif features == "unit_interval":
        x = rng.random((800, 4))
    else:
        x = np.concatenate([rng.standard_normal((800, 2)), np.eye(2)[rng.integers(0, 2, 800)]], axis=1)
    y = (x[:, 0] + x[:, 1] > np.median(x[:, 0] + x[:, 1])).astype(int)
    assert "unscaled-inputs" not in codes(run("binary", x, y))


def test_unscaled_inputs_fires_on_features_all_shrunk_near_zero():
    # scikit-learn's load_diabetes() features come scaled to unit norm per column (std 0.048):
    # a 10-64-1 MLP under SGD(0.01) stayed above MSE 0.6 for 100 epochs (seeds 0-2) where the same
    # rows standardised got there by epoch 3-4, and no check said a word.
    rng = np.random.default_rng(0)
    x = std_x(n=442) * 0.048
    (finding,) = [f for f in run("regression", x, rng.standard_normal(442)) if f.code == "unscaled-inputs"]
    assert "every feature spreads by" in finding.message and "~" in finding.message and "slowly" in finding.message
    assert "Large or uneven" not in finding.message and finding.evidence["max_scale"] < 0.1
    assert "Standardise each feature" in finding.advice
    # Through a Normalization layer never adapted: the same, told to adapt it.
    (finding,) = [f for f in run("normalized", x, rng.standard_normal(442)) if f.code == "unscaled-inputs"]
    assert ".adapt(x_train)" in finding.advice
    # Not on 0/1 columns, however rare their 1s (std 0.03 for 1 row in 1000), nor one-hot ones,
    # nor pixels in [0, 1] of which many stay near 0 (a dim image's border).
    rare = (rng.random((1000, 4)) < 0.001).astype("float32")
    rare[0] = 1.0
    assert "unscaled-inputs" not in codes(run("binary", rare, rng.integers(0, 2, 1000)))
    onehot = np.eye(4, dtype="float32")[rng.integers(0, 4, 800)]
    assert "unscaled-inputs" not in codes(run("binary", onehot, rng.integers(0, 2, 800)))
    images = (rng.random((64, 8, 8, 1)) ** 4).astype("float32")
    images[:, 0] *= 0.05
    assert "unscaled-inputs" not in codes(run("image", images, rng.integers(0, 2, 64)))
    assert "unscaled-inputs" not in codes(run("regression", x / 0.048 * 0.3, rng.standard_normal(442)))


@pytest.mark.parametrize("first", ["layer_norm", "unit_norm", "layer_norm_behind_dropout", "second_input"])
def test_unscaled_inputs_silent_on_small_inputs_a_layer_normalisation_reads_first(first):
    # load_diabetes()-sized features (std 0.048) read first by a LayerNormalization trained as
    # fast as standardised ones (SGD 0.01: 4-5 epochs to MSE 0.6 against 3-4; 28-32 ten times
    # smaller, where its epsilon 1e-3 outweighs their variance), yet were told to standardise.
    rng = np.random.default_rng(0)
    x = std_x(n=442) * 0.048
    y = rng.standard_normal(442)
    norm = {"unit_norm": L.UnitNormalization}.get(first, L.LayerNormalization)
    if first == "second_input":
        amounts, small = keras.Input((2,), name="amounts"), keras.Input((4,), name="small")
        joined = L.Concatenate()([amounts, L.LayerNormalization()(small)])
        net = keras.Model([amounts, small], L.Dense(1)(L.Dense(8, activation="relu")(joined)))
        data = lambda x: {"amounts": rng.standard_normal((442, 2)).astype("float32"), "small": x}  # noqa: E731
    else:
        extra = [L.Dropout(0.1)] if first == "layer_norm_behind_dropout" else []
        net = keras.Sequential([keras.Input((4,)), *extra, norm(), L.Dense(8, activation="relu"), L.Dense(1)])
        data = lambda x: x  # noqa: E731
    loss = get_loss("mse")
    assert "unscaled-inputs" not in codes(check_data(data(x), y, model=net, loss=loss, task="regression"))
    # So small that the epsilon outweighs their variance: told, but for the unit norm (x / |x|).
    found = codes(check_data(data(x / 100), y, model=net, loss=loss, task="regression"))
    assert ("unscaled-inputs" in found) == (first != "unit_norm")


def test_unscaled_inputs_skipped_when_model_normalises_and_images_get_divide_by_255():
    rng = np.random.default_rng(2)
    x = rng.random((300, 4)) * 1000
    adapted = keras.layers.Normalization()
    adapted.adapt(x)
    model = keras.Sequential([keras.Input((4,)), adapted, keras.layers.Dense(1)])
    assert "unscaled-inputs" not in codes(check_data(x, rng.standard_normal(300), model=model, loss=get_loss("mse"), task="regression"))
    # A Normalization of mean 0 and variance 1 (never adapted, or built so) passes the values
    # through unchanged: counted as scaling them, it hid inputs x1000.
    (finding,) = [f for f in run("normalized", x, rng.standard_normal(300)) if f.code == "unscaled-inputs"]
    assert "after the Normalization layer" in finding.message and ".adapt(x_train)" in finding.advice
    # Adapted with axis=None, one mean and variance for all the features: their scales stay 1e3
    # apart, and "adapt it" was the advice.
    x[:, 0] /= 1e3
    shared = keras.layers.Normalization(axis=None)
    shared.adapt(x)
    model = keras.Sequential([keras.Input((4,)), shared, keras.layers.Dense(1)])
    (finding,) = [f for f in check_data(x, rng.standard_normal(300), model=model, loss=get_loss("mse"), task="regression") if f.code == "unscaled-inputs"]
    assert "built with axis=None" in finding.advice and "axis=-1" in finding.advice and "Adapt the" not in finding.advice
    images = rng.integers(0, 256, (64, 8, 8, 1)).astype("uint8")
    (finding,) = [f for f in run("image", images, rng.integers(0, 2, 64)) if f.code == "unscaled-inputs"]
    assert "/ 255.0" in finding.advice
    # The values are those after a recipe's feature_scale: random_images with feature_scale 255
    # was told feature_scale 0.00392157, which makes its images 0..0.004.
    assert "divide data.feature_scale by 255" in finding.advice and "feature_scale: 1 where it was 255" in finding.advice


def test_unscaled_pixels_of_a_dataset_are_told_a_rescaling_layer_or_a_map_not_numpy(tmp_path):
    # image_dataset_from_directory gives 0..255 floats: "x = x / 255.0" and a recipe's
    # feature_scale named nothing that applies to a dataset.
    data = keras.utils.image_dataset_from_directory(image_directory(tmp_path, per_class=8), image_size=(16, 16), batch_size=8, verbose=False)
    cnn = keras.Sequential([keras.Input((16, 16, 3)), L.Conv2D(2, 3, activation="relu"), L.Flatten(), L.Dense(3, activation="softmax")])
    (finding,) = [f for f in check_data(data, model=cnn, loss=get_loss("scce"), task="multiclass") if f.code == "unscaled-inputs"]
    assert "keras.layers.Rescaling(1 / 255) first in the model" in finding.advice
    assert "dataset.map(lambda x, y, *w: (x / 255, y, *w))" in finding.advice
    assert "x = x / 255.0" not in finding.advice and "feature_scale" not in finding.advice


@pytest.mark.parametrize("before", [[L.Reshape((8, 8, 1))], [L.Reshape((8, 8, 1)), L.RandomFlip()], []])
def test_unscaled_inputs_skipped_when_a_rescaling_follows_layers_that_only_move_the_pixels(before):
    # Grayscale (n, 8, 8) images reshaped (and flipped) before Rescaling(1 / 255) are scaled by the
    # model: only the first layer was read, and the Reshape got "not scaled, divide by 255".
    images = np.random.default_rng(3).integers(0, 256, (64, 8, 8)).astype("uint8")
    layers = [*before, L.Rescaling(1 / 255)] if before else [L.Reshape((8, 8, 1))]
    m = keras.Sequential([keras.Input((8, 8)), *layers, L.Conv2D(2, 3, activation="relu"), L.Flatten(), L.Dense(1, activation="sigmoid")])
    found = codes(check_data(images, np.arange(64) % 2, model=m, loss=get_loss("bce"), task="binary"))
    assert ("unscaled-inputs" in found) == (not before)


def _augmenting_cnn_checked(pixels, front, functional=False):
    """``check_data`` of a small CNN whose first layers are ``front`` (a nested augmentation
    ``Sequential`` when ``functional``), then ``Rescaling(1 / 255)``."""
    if functional:
        inputs = keras.Input((8, 8, 3))
        h = L.Rescaling(1 / 255)(keras.Sequential(front, name="data_augmentation")(inputs))
        m = keras.Model(inputs, L.Dense(1, activation="sigmoid")(L.Flatten()(L.Conv2D(2, 3, activation="relu")(h))))
    else:
        m = keras.Sequential([keras.Input((8, 8, 3)), *front, L.Rescaling(1 / 255), L.Conv2D(2, 3, activation="relu"), L.Flatten(),
                              L.Dense(1, activation="sigmoid")])
    return codes(check_data(pixels, np.arange(64) % 2, model=m, loss=get_loss("bce"), task="binary"))


@pytest.mark.parametrize("front", ["contrast", "brightness", "randaugment", "pipeline", "nested"])
def test_unscaled_inputs_skipped_when_augmentation_layers_come_before_the_rescaling(front):
    # Keras's color augmentations keep 0..255 pixels in 0..255 (their value_range), as Keras's
    # examples put them before Rescaling(1 / 255): RandomContrast, RandomBrightness, RandAugment,
    # a keras.layers.Pipeline of flips and an augmentation Sequential holding a RandomContrast
    # were each told "not scaled (values reach |mean| 128)" and to divide the images by 255.
    pixels = np.random.default_rng(3).integers(0, 256, (64, 8, 8, 3)).astype("uint8")
    layers = {"contrast": [L.RandomContrast(0.2)], "brightness": [L.RandomBrightness(0.2)],
              "randaugment": [L.RandAugment(value_range=(0, 255))], "nested": [L.RandomFlip(), L.RandomContrast(0.2)],
              "pipeline": [L.Pipeline([L.RandomFlip(), L.RandomRotation(0.1)])]}[front]
    assert "unscaled-inputs" not in _augmenting_cnn_checked(pixels, layers, functional=front == "nested")
    # Without the Rescaling behind them the pixels are still told.
    m = keras.Sequential([keras.Input((8, 8, 3)), *layers, L.Conv2D(2, 3, activation="relu"), L.Flatten(), L.Dense(1, activation="sigmoid")])
    assert "unscaled-inputs" in codes(check_data(pixels, np.arange(64) % 2, model=m, loss=get_loss("bce"), task="binary"))


def test_unscaled_inputs_finds_images_scaled_twice_by_a_rescaling_layer():
    # Images already in [0, 1] through Rescaling(1 / 255) reach the Conv2D as values under 0.004:
    # a 16x16 CNN stayed at chance (1.38 of 1.386, seeds 0-2) and was told only of dead ReLUs.
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (64, 8, 8, 1)).astype("uint8")

    def cnn(*pre):
        return keras.Sequential([keras.Input((8, 8, 1)), *pre, L.Conv2D(2, 3, activation="relu"), L.Flatten(), L.Dense(1, activation="sigmoid")])

    def check(x, m):
        return check_data(x, np.arange(64) % 2, model=m, loss=get_loss("bce"), task="binary")

    (finding,) = [f for f in check(pixels / 255.0, cnn(L.Rescaling(1 / 255))) if f.code == "unscaled-inputs"]
    assert "scales them again" in finding.message and "Scale the inputs once" in finding.advice
    assert finding.evidence["max"] == pytest.approx(1.0) and finding.evidence["max_spread_after"] < 0.01
    # Scaled once, by the layer or before it, is healthy; [-1, 1] through Rescaling(1 / 127.5, offset=-1) too.
    assert "unscaled-inputs" not in codes(check(pixels, cnn(L.Rescaling(1 / 255))))
    assert "unscaled-inputs" not in codes(check(pixels, cnn(L.Rescaling(1 / 127.5, offset=-1))))
    assert "unscaled-inputs" not in codes(check(pixels / 255.0, cnn()))
    # 16-bit images through Rescaling(1 / 255) still reach 257: told the layer's factor, not to adapt it.
    (finding,) = [f for f in check(pixels.astype("uint16") * 257, cnn(L.Rescaling(1 / 255))) if f.code == "unscaled-inputs"]
    assert "after the Rescaling layer" in finding.message and "Rescaling(1 / 65535)" in finding.advice and ".adapt(" not in finding.advice


@pytest.mark.parametrize("front", [[L.RandomFlip()], [L.Pipeline([L.RandomFlip(), L.RandomContrast(0.2, value_range=(0, 1))])]])
def test_unscaled_inputs_reads_the_scaling_layer_behind_augmentation_layers(front):
    # Behind a RandomFlip the model's first scaling layer was taken as scaling the input, but not
    # read: a Normalization never adapted (0..255 pixels passed through unchanged) and a
    # Rescaling(1 / 255) of images already in [0, 1] were told nothing, as they are told without it.
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (64, 8, 8, 3)).astype("uint8")

    def found(x, scaler):
        m = keras.Sequential([keras.Input((8, 8, 3)), *front, scaler, L.Conv2D(2, 3, activation="relu"), L.Flatten(),
                              L.Dense(1, activation="sigmoid")])
        return [f for f in check_data(x, np.arange(64) % 2, model=m, loss=get_loss("bce"), task="binary") if f.code == "unscaled-inputs"]

    (finding,) = found(pixels, L.Normalization())
    assert "after the Normalization layer" in finding.message and ".adapt(" in finding.advice
    (finding,) = found(pixels / 255.0, L.Rescaling(1 / 255))
    assert "scales them again" in finding.message
    adapted = L.Normalization()
    adapted.adapt(pixels.astype("float32"))
    assert found(pixels, adapted) == [] and found(pixels, L.Rescaling(1 / 255)) == []


def _on_base(base: keras.Model) -> keras.Model:
    """A frozen ``base`` with a sigmoid head, as a fine-tuning user builds it."""
    base.trainable = False
    inputs = keras.Input(base.input_shape[1:])
    features = L.GlobalAveragePooling2D()(base(inputs, training=False))
    return keras.Model(inputs, L.Dense(1, activation="sigmoid")(features))


def test_unscaled_pixels_for_a_keras_applications_base_are_told_its_preprocess_input():
    # MobileNetV2 wants [-1, 1]: "x / 255" gave it [0, 1], half its range off. The base is found
    # by the name Keras gives it ("mobilenetv2_0.35_32").
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (32, 32, 32, 3)).astype("float32")
    labels = np.arange(32) % 2
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.35)
    (finding,) = [f for f in check_data(pixels, labels, model=_on_base(base), loss=get_loss("bce"), task="binary") if f.code == "unscaled-inputs"]
    assert "keras.applications.mobilenet_v2.preprocess_input(x)" in finding.advice and "[-1, 1]" in finding.advice
    assert "not x / 255" in finding.advice and "x = x / 255.0" not in finding.advice
    # What preprocess_input makes of them is scaled.
    scaled = keras.applications.mobilenet_v2.preprocess_input(pixels.copy())
    assert "unscaled-inputs" not in codes(check_data(scaled, labels, model=_on_base(base), loss=get_loss("bce"), task="binary"))


def test_pixels_preprocessed_for_a_caffe_base_are_not_unscaled_inputs():
    # ResNet50's and VGG's preprocess_input leaves BGR pixels less the channel means (std ~74),
    # the scale their weights learned: read as "not scaled, standardise them". A stand-in named as
    # Keras names ResNet50 keeps the test light; the name is what the check reads.
    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 256, (32, 8, 8, 3)).astype("float32")
    labels = np.arange(32) % 2
    stand_in = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, activation="relu")], name="resnet50")
    m = _on_base(stand_in)
    caffe = keras.applications.resnet.preprocess_input(pixels.copy())
    assert "unscaled-inputs" not in codes(check_data(caffe, labels, model=m, loss=get_loss("bce"), task="binary"))
    (finding,) = [f for f in check_data(pixels, labels, model=m, loss=get_loss("bce"), task="binary") if f.code == "unscaled-inputs"]
    assert "keras.applications.resnet.preprocess_input(x)" in finding.advice
    # Without such a base the same values are still unscaled.
    plain = _on_base(keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, activation="relu")], name="my_base"))
    (finding,) = [f for f in check_data(caffe, labels, model=plain, loss=get_loss("bce"), task="binary") if f.code == "unscaled-inputs"]
    assert "Standardise" in finding.advice


def test_a_rescaling_layer_is_not_blamed_for_uneven_scales_one_factor_cannot_change():
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (64, 8, 8, 3)).astype("uint8")
    pixels[..., 2] = rng.integers(0, 2, pixels[..., 2].shape)  # a near-empty channel
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Rescaling(1 / 255), L.Conv2D(2, 3, activation="relu"), L.Flatten(),
                              L.Dense(1, activation="sigmoid")])
    # 0..255 through Rescaling(1 / 255) is scaled once: it was told to give the layer the factor 1 / 255.
    assert "unscaled-inputs" not in codes(check_data(pixels, np.arange(64) % 2, model=model, loss=get_loss("bce"), task="binary"))
    # A salary and an age through Rescaling(1 / 1000): still large, and no one factor fixes that.
    table = np.stack([rng.normal(5e4, 2e4, 200), rng.normal(30, 10, 200)], 1).astype("float32")
    model = keras.Sequential([keras.Input((2,)), L.Rescaling(1 / 1000), L.Dense(4, activation="relu"), L.Dense(1, activation="sigmoid")])
    (finding,) = [f for f in check_data(table, np.arange(200) % 2, model=model, loss=get_loss("bce"), task="binary")
                  if f.code == "unscaled-inputs"]
    assert "replace it with keras.layers.Normalization()" in finding.advice and "Rescaling(1 /" not in finding.advice


def test_unscaled_targets_bad_and_good():
    y = np.linspace(3, 103, len(X)).astype("float32")
    (finding,) = run("regression", X, y)
    assert finding.code == "unscaled-targets" and finding.evidence["mean"] == pytest.approx(53, abs=0.1)
    assert "y_std" in finding.advice
    assert run("regression", X, (y - y.mean()) / y.std()) == []
    # A relu output: the same targets, scaled but not centred (it cannot reach negative ones).
    (finding,) = run("regression_relu", X, y)
    assert finding.code == "unscaled-targets" and "keeping them >= 0 for the relu output" in finding.advice
    assert run("regression_relu", X, y / y.std()) == []


@pytest.mark.parametrize(("kind", "loss"), [("regression", "msle"), ("regression", "mape"), ("regression_relu", None)])
def test_targets_to_scale_without_centring_name_a_recipe_s_target_scale(kind, loss):
    # MSLE, MAPE and a relu output were told y_scale = ... and fit on y / y_scale, code on a y a
    # recipe never holds; its data.target_scale does it, and the factor named passes the checks.
    y = np.linspace(3, 103, len(X)).astype("float32")
    (finding,) = run(kind, X, y, loss=loss)
    factor = re.search(r"in a recipe, multiply data.target_scale by ([0-9.e+-]+): data: \{target_scale: \1\} where it was 1",
                       finding.advice)
    assert finding.code == "unscaled-targets" and factor, finding.advice
    assert run(kind, X, y * float(factor.group(1)), loss=loss) == []


def test_unscaled_targets_read_on_past_the_first_batches_of_a_dataset_in_order():
    # A rising series' windows in time order (timeseries_dataset_from_array never shuffles):
    # the 8 batches read held targets of ~1..14, of ~1..120 in all, and nothing was said of
    # their scale while the run ended at 74x its (first batches') chance level.
    t = np.arange(2400)
    series = (0.05 * t + 3 * np.sin(t / 10)).astype("float32")
    x = np.stack([np.sin(t / 10), np.cos(t / 10), np.sin(t / 7), np.cos(t / 7)], axis=1).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, series)).batch(32)
    (finding,) = [f for f in run("regression", data, None) if f.code == "unscaled-targets"]
    assert "rows after them" in finding.message
    # Scaled all along: nothing.
    scaled = tf.data.Dataset.from_tensor_slices((x, (series - series.mean()) / series.std())).batch(32)
    assert "unscaled-targets" not in codes(run("regression", scaled, None))


def test_unscaled_targets_are_no_problem_for_a_cosine_similarity_loss():
    # It compares the directions of each row's targets and outputs: targets ~5000 trained to
    # -0.97 like standardised ones, and were told their "first MSE" and a bias that had to travel.
    y = np.stack([np.linspace(3, 103, len(X)), np.linspace(50, 0, len(X))], axis=1).astype("float32")
    m = keras.Sequential([keras.Input((X.shape[1],)), L.Dense(2)])
    assert codes(check_data(X, y, model=m, loss=keras.losses.CosineSimilarity(), task="regression")) == []
    assert codes(check_data(X, y, model=m, loss=get_loss("mse"), task="regression")) == ["unscaled-targets"]


def test_unscaled_skewed_positive_targets_under_mse_are_told_of_a_log_scale():
    # Log-normal prices (1e3..1e6, skewness ~4) were told only to standardise them, which keeps a
    # squared error ruled by the few largest: fitted on log(y) the same MLP's validation MAPE was
    # 23% against 47%.
    prices = np.exp(9 + np.random.default_rng(0).normal(size=len(X))).astype("float32")
    advice = next(f.advice for f in run("regression", X, prices) if f.code == "unscaled-targets")
    assert "standardize_targets: true" in advice and "np.log(y)" in advice and "loss: msle" in advice
    # Unscaled but symmetric targets, and an absolute error, get no such hint.
    symmetric = 1e4 + 1e3 * YR
    assert "np.log(y)" not in next(f.advice for f in run("regression", X, symmetric) if f.code == "unscaled-targets")
    assert "np.log(y)" not in next(f.advice for f in run("regression", X, prices, loss="mae") if f.code == "unscaled-targets")


@pytest.mark.parametrize("loss", ["mape", "msle"])
def test_unscaled_targets_of_mape_or_msle_are_scaled_not_standardised(loss):
    # Standardising (the advice for mse) centres the targets on 0: MAPE divides by them, MSLE
    # reads the lower half as 0. Followed, the scale-only advice passes the checks.
    y = np.linspace(3, 103, len(X)).astype("float32")
    (finding,) = run("regression", X, y, loss=loss)
    assert finding.code == "unscaled-targets" and "np.abs(y_train).mean(0)" in finding.advice
    assert "standardize_targets" not in finding.advice and "y_std" not in finding.advice
    assert run("regression", X, y / np.abs(y).mean(0), loss=loss) == []
    # Neither loss is an MSE: the message named "the first MSE ~3e3", where an output near 0
    # scores MAPE 100 and MSLE the mean of log(1 + y) squared.
    first = 100.0 if loss == "mape" else float(np.mean(np.log1p(y) ** 2))
    assert "MSE" not in finding.message and f"~{first:.4g}" in finding.message


def test_target_columns_of_very_different_spreads_are_told_to_be_standardised_each():
    # Columns of std 5 and 0.05 under one MSE: the narrow one's errors barely count, and it ended
    # at validation R2 -4.8 to -2.0 (0.23-0.33 standardised) with nothing said of it.
    rng = np.random.default_rng(0)
    y = np.stack([5 * YR, 0.05 * np.sin(2 * X[:, 1]) + 0.005 * rng.normal(size=len(X))], axis=1).astype("float32")
    two = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(2)])
    for loss in ("mse", "mae", "huber"):
        (finding,) = check_data(X, y, model=two, loss=get_loss(loss), task="regression")
        assert finding.code == "unscaled-targets" and finding.evidence["narrow_column"] == 1, finding.message
        assert "column 1's std" in finding.message and "y_train.std(0)" in finding.advice
    assert check_data(X, (y - y.mean(0)) / y.std(0), model=two, loss=get_loss("mse"), task="regression") == []
    # Spreads 10x apart, and a flattened image's pixels (many columns, uneven by nature), are let be.
    assert check_data(X, y * np.array([1.0, 10.0], "float32"), model=two, loss=get_loss("mse"), task="regression") == []
    wide = keras.Sequential([keras.Input((4,)), L.Dense(100)])
    pixels = (rng.uniform(size=(len(X), 100)) * np.logspace(-3, 0, 100)).astype("float32")
    assert check_data(X, pixels, model=wide, loss=get_loss("mse"), task="regression") == []


def test_target_columns_of_very_different_spreads_under_a_loss_of_one_s_own_are_let_be():
    # A loss that scales each column's error itself was told its narrow column "barely counts"
    # and to standardise each column: only losses known to add the columns up in their own units
    # (MSE, MAE, Huber, log-cosh, as the README says) are judged.
    rng = np.random.default_rng(0)
    y = np.stack([5 * YR, 0.05 * np.sin(2 * X[:, 1]) + 0.005 * rng.normal(size=len(X))], axis=1).astype("float32")
    two = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(2)])

    def scaled_mse(y_true, y_pred):
        return keras.ops.mean(keras.ops.square((y_true - y_pred) / keras.ops.convert_to_tensor([5.0, 0.05])), axis=-1)

    assert check_data(X, y, model=two, loss=get_loss(scaled_mse), task="regression") == []


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_targets_unscaled_only_by_a_few_far_rows_are_not_told_to_be_standardised(loss):
    # 1% of the targets at 1000 among values ~1 (std ~100): standardised as advised, the other
    # rows lay in a band ~0.02 wide, and under Huber their validation R2 went from 0.90-0.97 to
    # -4 to -29 (seeds 0-2), at chance.
    y = (5 * YR).astype("float32")
    y[100::100] = 1000.0
    (finding,) = run("regression", X, y, loss=loss)
    assert finding.code == "unscaled-targets" and finding.evidence["outlier_rows"] == 5, finding.message
    assert "only because of a few far values" in finding.message and "row 100 is 1000" in finding.message
    assert "standardize_targets" not in finding.advice and "y_std" not in finding.advice
    assert ("use a loss that a few rows do not rule" in finding.advice) == (loss == "mse")
    # A heavy tail (5% of the rows) is no few bad rows: the usual advice stands.
    y[::20] = 1000.0
    assert "y_std" in run("regression", X, y, loss=loss)[0].advice


def test_unscaled_targets_of_several_columns_quote_the_named_column_and_the_mse_of_all():
    # Linnerud's targets (weight ~184, waist ~36, pulse ~56) were told "y have mean 184.1 and std
    # 23.01 (range 31..247)": the weight's mean beside the three columns' range (31 is a waist), and
    # a first MSE "~3.441e+04", the weight's alone, where an output of 0 scores the mean over all three.
    from sklearn.datasets import load_linnerud
    y = load_linnerud().target[:16].astype("float32")
    x = std_x(16, 3)
    m = keras.Sequential([keras.Input((3,)), L.Dense(4, activation="relu"), L.Dense(3)])
    (finding,) = [f for f in check_data(x, y, model=m, loss=get_loss("mse"), task="regression") if f.code == "unscaled-targets"]
    assert finding.message.startswith("Column 0 of the regression targets y has mean 184.1 and std 23.01 (range 154..247)")
    assert f"~{np.mean(np.square(y.astype('float64'))):.4g}" in finding.message  # ~1.296e+04
    assert (finding.evidence["min"], finding.evidence["max"]) == (154.0, 247.0)
    # One column: its own range and mean of y squared, as before.
    (finding,) = run("regression", X, np.linspace(3, 103, len(X)).astype("float32"))
    assert finding.message.startswith("The regression targets y have mean 53 ") and "(range 3..103)" in finding.message


def test_unscaled_targets_near_zero_mean_name_their_spread_not_the_bias():
    # make_regression's targets (mean -5, std 168) were told "the output bias has to travel 5.2
    # units": their offset needed no scaling, their spread did.
    y = np.random.default_rng(4).normal(-5.0, 168.0, len(X)).astype("float32")
    (finding,) = run("regression", X, y)
    assert "bias has to travel" not in finding.message and "spread ~1" in finding.message
    (finding,) = run("regression", X, np.linspace(3, 103, len(X)).astype("float32"))
    assert "bias has to travel 53" in finding.message


def test_unscaled_targets_of_an_output_bias_started_at_their_mean_name_their_spread_not_the_bias():
    # high_unscaled_broken with bias_initializer {name: constant, value: 1035}, as
    # initial-loss-too-high advises: still told "an output near 0 ... the output bias has to travel 1035 units".
    y = np.linspace(3, 103, len(X)).astype("float32")
    at_mean = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"),
                                L.Dense(1, bias_initializer=keras.initializers.Constant(53.0))])
    (finding,) = check_data(X, y, model=at_mean, loss=get_loss("mse"), task="regression")
    assert finding.code == "unscaled-targets" and "bias has to travel" not in finding.message
    assert "The output bias starts at 53, near their mean" in finding.message and "spread ~28.9" in finding.message


def test_train_validation_overlap_bad_and_good():
    (finding,) = run("binary", X, YB, x_val=X[:100], y_val=YB[:100])
    assert finding.code == "train-validation-overlap"
    assert finding.evidence["rows_found"] == 100 and finding.evidence["first_val_row"] == 0
    assert run("binary", X, YB, x_val=std_x(seed=5), y_val=YB) == []


def test_overlap_counts_every_copied_image_wherever_it_sits_in_its_array():
    # Identical rows must hash alike at any position: a BLAS matrix-vector product sums the rows
    # at the end of a block in another order, and 3 of 9 images shared by two
    # image_dataset_from_directory subsets (45 and 15 rows of 16x16x3 pixels) hashed ~1e-12 apart.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (45, 16, 16, 3)).astype("float32")
    picks = rng.permutation(45)[:15]
    cnn = keras.Sequential([keras.Input((16, 16, 3)), L.Rescaling(1 / 255), L.Flatten(), L.Dense(3, activation="softmax")])
    y = rng.integers(0, 3, 45)
    found = check_data(x, y, x_val=x[picks], y_val=y[picks], model=cnn, loss=get_loss("scce"), task="multiclass")
    (finding,) = [f for f in found if f.code == "train-validation-overlap"]
    assert finding.evidence["rows_found"] == 15


def image_directory(root, classes=3, per_class=20, size=16, seed=0):
    """A directory of PNGs in one folder a class, as keras.utils.image_dataset_from_directory reads them."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (size, size, 3)).astype("uint8")
            pixels[..., c % 3] += 150
            tf.io.write_file(str(root / f"class{c}" / f"{i}.png"), tf.io.encode_png(pixels))
    return str(root)


def test_overlap_names_the_files_two_directory_subsets_share_and_the_seed(tmp_path):
    # subset='training' and subset='validation' made with different seeds share files: each call
    # shuffles the file list with its own seed before it cuts the split off. Told to drop
    # duplicates with np.unique, and only from the first batches' pixels.
    directory = image_directory(tmp_path)

    def subset(name, seed, **kw):
        return keras.utils.image_dataset_from_directory(directory, image_size=(16, 16), batch_size=8, validation_split=0.25,
                                                        subset=name, seed=seed, verbose=False, **kw)

    train, val = subset("training", 1), subset("validation", 2)
    shared = len(set(train.file_paths) & set(val.file_paths))
    cnn = keras.Sequential([keras.Input((16, 16, 3)), L.Rescaling(1 / 255), L.Flatten(), L.Dense(3, activation="softmax")])

    def check(t, v):
        return check_data(t, model=cnn, loss=get_loss("scce"), task="multiclass", x_val=v)

    (finding,) = [f for f in check(train, val) if f.code == "train-validation-overlap"]
    assert finding.evidence["files_shared"] == shared > 0 and finding.evidence["files_checked"] == 15
    assert "same seed" in finding.advice and "subset='both'" in finding.advice and "np.unique" not in finding.advice
    # Cached, the datasets carry no file_paths: the copied pixels are found, and the seed still named.
    (finding,) = [f for f in check(train.cache(), val.cache()) if f.code == "train-validation-overlap"]
    assert finding.evidence["rows_found"] == shared and "same seed" in finding.advice
    # The same seed: no file shared, no finding.
    assert "train-validation-overlap" not in codes(check(subset("training", 3), subset("validation", 3)))


@pytest.mark.parametrize(("label_mode", "units", "loss", "code", "fix"), [
    ("categorical", 3, "scce", "label-format", "label_mode='int'"),
    ("int", 3, "cce", "label-format", "label_mode='categorical'"),
    ("int", 2, "scce", "label-format", "Dense(len(dataset.class_names))"),
    ("categorical", 1, "bce", "shape-mismatch", "label_mode='binary'"),
])
def test_label_advice_for_a_dataset_names_its_label_mode_not_numpy(tmp_path, label_mode, units, loss, code, fix):
    # A dataset's labels cannot take y.argmax(axis=-1), to_categorical, y[:, 1] or np.unique:
    # image_dataset_from_directory makes them as its label_mode says.
    classes = 2 if units == 1 else 3
    data = keras.utils.image_dataset_from_directory(image_directory(tmp_path, classes=classes, per_class=8), image_size=(16, 16),
                                                    batch_size=8, label_mode=label_mode, verbose=False)
    head = L.Dense(units, activation="sigmoid" if units == 1 else "softmax")
    cnn = keras.Sequential([keras.Input((16, 16, 3)), L.Rescaling(1 / 255), L.Flatten(), head])
    with pytest.raises(DataError) as raised:
        check_data(data, model=cnn, loss=get_loss(loss), task="binary" if units == 1 else "multiclass")
    assert raised.value.code == code and fix in str(raised.value)
    assert not any(numpy in str(raised.value) for numpy in ("argmax(axis", "to_categorical", "np.unique", "y[:, 1] (or"))


@pytest.mark.parametrize(("read", "model_input", "fix"), [
    ({"image_size": (32, 32)}, (16, 16, 3), "image_size=(16, 16) in keras.utils.image_dataset_from_directory"),
    ({"color_mode": "grayscale"}, (16, 16, 3), "color_mode='rgb' in keras.utils.image_dataset_from_directory"),
    ({}, (16, 16, 1), "color_mode='grayscale' in keras.utils.image_dataset_from_directory"),
    ({"image_size": (32, 32), "color_mode": "grayscale"}, (16, 16, 3), "image_size=(16, 16) and color_mode='rgb'"),
])
def test_a_dataset_of_images_of_another_size_or_channels_is_told_how_to_read_them(tmp_path, read, model_input, fix):
    # "Give each sample the shape (16, 16, 3)" named no way to do it for a dataset's images.
    data = keras.utils.image_dataset_from_directory(image_directory(tmp_path, per_class=4), batch_size=8, verbose=False,
                                                    **{"image_size": (16, 16), **read})
    cnn = keras.Sequential([keras.Input(model_input), L.Rescaling(1 / 255), L.Flatten(), L.Dense(3, activation="softmax")])
    with pytest.raises(DataError) as raised:
        check_data(data, model=cnn, loss=get_loss("scce"), task="multiclass")
    assert raised.value.code == "shape-mismatch" and fix in str(raised.value)
    assert ("keras.layers.Resizing(16, 16)" in str(raised.value)) == (read == {"image_size": (32, 32)})


@pytest.mark.parametrize("stride", [1, 2])
def test_overlap_finds_overlapping_windows_split_at_random_not_by_time(stride):
    # Windows of a series (every step, or every 2nd) shuffled and then split: no row repeats, so
    # no finding, while each validation window shares all its steps but one or two with a training
    # window and its target lies inside another (val_loss measures interpolation, not a forecast).
    x, y = series_windows(12)
    x, y = x[::stride, :, None], y[::stride]
    gru = keras.Sequential([keras.Input((12, 1)), L.GRU(2), L.Dense(1)])

    def found(train, val):
        return check_data(x[train], y[train], model=gru, loss=get_loss("mse"), task="regression", x_val=x[val], y_val=y[val])

    n = int(0.8 * len(x))
    p = np.random.default_rng(0).permutation(len(x))
    (finding,) = [f for f in found(p[:n], p[n:]) if f.code == "train-validation-overlap"]
    assert finding.evidence["shift"] == stride and finding.evidence["overlap_share"] > 0.5
    assert f"shifted by {stride} step" in finding.message and "timeseries_dataset_from_array" in finding.advice
    # Split by time: the windows meet at the boundary only.
    assert "train-validation-overlap" not in codes(found(np.arange(n), np.arange(n, len(x))))


def test_overlap_finds_long_windows_from_a_sample_of_the_training_rows():
    # The shifted windows are looked for among a sample of the training windows (six hashes of
    # 20,000 rows of 784 values took 580 ms a fit); 4,000 windows of 1,024 steps read in part are
    # still found, their share scaled to the rows not read.
    rng = np.random.default_rng(0)
    s = (np.sin(np.arange(6100) / 50) + rng.normal(size=6100) * 0.1).astype("float32")
    x = np.lib.stride_tricks.sliding_window_view(s[:-1], 1024)[:5000]
    y = s[1024:1024 + 5000]
    p = rng.permutation(len(x))
    dense = keras.Sequential([keras.Input((1024,)), L.Dense(1)])
    found = check_data(x[p[:4000]], y[p[:4000]], x_val=x[p[4000:]], y_val=y[p[4000:]], model=dense, loss=get_loss("mse"), task="regression")
    (finding,) = [f for f in found if f.code == "train-validation-overlap"]
    assert finding.evidence["shift"] == 1 and finding.evidence["overlap_share"] > 0.5


@functools.cache
def _text_classifier() -> keras.Model:
    """A string input through an adapted TextVectorization, as a text model takes raw texts."""
    vectorize = L.TextVectorization(max_tokens=50, output_sequence_length=8)
    vectorize.adapt(["good film", "bad plot", "a very good film", "the plot was bad"])
    texts = keras.Input((1,), dtype="string")
    pooled = L.GlobalAveragePooling1D()(L.Embedding(50, 4, mask_zero=True)(vectorize(texts)))
    return keras.Model(texts, L.Dense(1, activation="sigmoid")(pooled))


@pytest.mark.parametrize("given", ["str", "bytes", "column"])
def test_overlap_finds_validation_texts_that_are_training_texts(given):
    # Texts are no numbers, so the check skipped them: a validation set of 80 of the training
    # texts themselves trained a TextVectorization model without a word.
    rng = np.random.default_rng(0)
    words = np.array(["good", "bad", "film", "plot", "the", "a", "very", "was", "acting", "story"])
    texts = np.array([" ".join(rng.choice(words, rng.integers(4, 12))) for _ in range(300)])
    y = rng.integers(0, 2, 300)
    fresh = np.array([" ".join(rng.choice(words, rng.integers(4, 12))) for _ in range(80)])
    if given == "bytes":  # as a tf.string tensor's .numpy() gives them, beside numpy's str
        fresh, copied = np.array([t.encode() for t in fresh], dtype=object), np.array([t.encode() for t in texts[:80]], dtype=object)
    else:
        copied = texts[:80]
    if given == "column":
        texts, fresh, copied = texts[:, None], fresh[:, None], copied[:, None]
    loss = get_loss("binary_crossentropy")
    assert "train-validation-overlap" not in codes(check_data(texts, y, model=_text_classifier(), loss=loss, task="binary",
                                                              x_val=fresh, y_val=y[:80]))
    (finding,) = [f for f in check_data(texts, y, model=_text_classifier(), loss=loss, task="binary", x_val=copied, y_val=y[:80])
                  if f.code == "train-validation-overlap"]
    assert finding.evidence["rows_found"] == 80 and finding.evidence["overlap_share"] == 1.0


def test_overlap_codes_objects_that_are_no_texts_by_their_repr():
    # check_data on an object array of lists (which fit refuses earlier, unsupported-input) raised
    # Python's "TypeError: unhashable type: 'list'" from the text coding.
    x = np.empty(100, dtype=object)
    x[:] = [[i, i + 1] for i in range(100)]
    y = np.random.default_rng(0).integers(0, 2, 100)
    found = check_data(x, y, model=_text_classifier(), loss=get_loss("binary_crossentropy"), task="binary", x_val=x[:20], y_val=y[:20])
    (finding,) = [f for f in found if f.code == "train-validation-overlap"]
    assert finding.evidence["rows_found"] == 20


def test_overlap_tells_apart_long_arrays_that_share_their_ends():
    # Coded by their repr, arrays of over 1000 values were only their first and last three
    # (numpy's "[a, b, c, ..., x, y, z]"): 20 validation rows of 2000 new values whose ends were
    # 20 training rows' were told train-validation-overlap, 20 rows found.
    rng = np.random.default_rng(0)
    ends = rng.integers(0, 9, size=(100, 6)).astype(float)

    def rows(count: int) -> np.ndarray:
        x = np.empty(count, dtype=object)
        for i in range(count):
            row = rng.normal(size=2000)
            row[:3], row[-3:] = ends[i, :3], ends[i, 3:]
            x[i] = row
        return x

    x, x_val = rows(100), rows(20)
    y = rng.integers(0, 2, 100)
    found = check_data(x, y, model=_text_classifier(), loss=get_loss("binary_crossentropy"), task="binary", x_val=x_val, y_val=y[:20])
    assert "train-validation-overlap" not in [f.code for f in found]
    found = check_data(x, y, model=_text_classifier(), loss=get_loss("binary_crossentropy"), task="binary", x_val=x[:20].copy(), y_val=y[:20])
    (finding,) = [f for f in found if f.code == "train-validation-overlap"]
    assert finding.evidence["rows_found"] == 20


def test_overlap_silent_on_short_texts_that_repeat_by_chance():
    # Three words of four make 64 texts: training and validation drawn alike share most of them,
    # as often as the training texts repeat each other.
    rng = np.random.default_rng(0)
    words = np.array(["good", "bad", "film", "plot"])
    texts = np.array([" ".join(rng.choice(words, 3)) for _ in range(400)])
    y = rng.integers(0, 2, 400)
    found = check_data(texts[:320], y[:320], model=_text_classifier(), loss=get_loss("binary_crossentropy"), task="binary",
                       x_val=texts[320:], y_val=y[320:])
    assert "train-validation-overlap" not in codes(found)


def test_overlap_silent_when_discrete_rows_repeat_by_nature():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2, (600, 4)).astype("float32")
    x_val = rng.integers(0, 2, (200, 4)).astype("float32")
    y = (x[:, 0] + x[:, 1] + rng.random(600) > 1.5).astype(int)
    assert "train-validation-overlap" not in codes(run("binary", x, y, x_val=x_val))


@pytest.mark.parametrize("seed", [2, 4, 6, 7])
def test_overlap_silent_on_id_sequences_that_repeat_by_chance(seed):
    # Four ids of 6 a row, drawn alike for both splits: ~12% of the validation rows match a
    # training row by chance, ~12% of the training rows match another, but ~6% are repeats
    # (a pair is one repeat), and "2x the training repeat rate" fired at 8 of 20 seeds.
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, (200, 4))
    y = rng.integers(0, 2, 200)
    assert "train-validation-overlap" not in codes(run("embedding", x[:160], y[:160], x_val=x[160:], y_val=y[160:]))
    x = rng.integers(0, 6, (400, 4))  # validation rows copied from the training rows are still found
    (finding,) = [f for f in run("embedding", x, y.repeat(2), x_val=x[:50], y_val=y[:50]) if f.code == "train-validation-overlap"]
    assert finding.evidence["overlap_share"] > 0.9


@pytest.mark.parametrize("seed", [27, 34, 38])
def test_overlap_silent_when_a_few_discrete_rows_match_by_chance_beside_training_rows_without_repeats(seed):
    # 4 columns of 10 ids, 160 training rows: most splits hold no training repeat (rate 0), and 2
    # of 40 validation rows matching by chance were "2 hits where 0 were expected", a warning at
    # 3 of 40 seeds. Counted in pairs, 2 validation-training pairs against 0 training ones happen
    # at a third of the splits or more.
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 10, (200, 4)).astype("float32")
    y = rng.integers(0, 2, 200)
    assert "train-validation-overlap" not in codes(run("binary", x[:160], y[:160], x_val=x[160:], y_val=y[160:]))
    # 8 of the 40 validation rows copied from the training rows are still found.
    x_val = x[160:].copy()
    x_val[:8] = x[:8]
    (finding,) = [f for f in run("binary", x[:160], y[:160], x_val=x_val, y_val=y[160:]) if f.code == "train-validation-overlap"]
    assert finding.evidence["rows_found"] >= 8


@pytest.mark.parametrize("oversample", ["tile", "repeat", "minority"])
def test_overlap_found_beside_training_rows_oversampled_5x_and_silent_on_honest_ones(oversample):
    # Validation rows all copied from the training rows (4 columns of 10 ids: ~15% of the training
    # rows repeat another by nature) were found, until the training rows were oversampled 5x: then
    # every training row repeats another, and the copies read as chance (100% against 100%).
    rng = np.random.default_rng(0)
    x = rng.integers(0, 10, (2000, 4)).astype("float32")
    y = (x.sum(1) + rng.normal(size=2000) > 18).astype("int64")
    xt, yt = x[:1600], y[:1600]

    def oversampled(a, b):
        if oversample == "tile":
            return np.tile(a, (5, *[1] * (a.ndim - 1))), np.tile(b, 5)
        if oversample == "repeat":
            return np.repeat(a, 5, axis=0), np.repeat(b, 5)
        m = b == 1  # the minority class's rows alone, 5x
        return np.concatenate([a[~m], np.repeat(a[m], 5, axis=0)]), np.concatenate([b[~m], np.repeat(b[m], 5)])

    (finding,) = [f for f in run("binary", *oversampled(xt, yt), x_val=xt[:300], y_val=yt[:300]) if f.code == "train-validation-overlap"]
    assert finding.evidence["overlap_share"] == 1.0 and finding.evidence["train_duplicate_rate"] < 0.3
    assert finding.evidence["train_copies"] == 5 and "5 copies" in finding.message
    # Honest validation rows beside the same oversampled training rows, and rows of few values
    # (3 ids in 4 columns: 81 rows in all) that match by nature: no warning.
    assert "train-validation-overlap" not in codes(run("binary", *oversampled(xt, yt), x_val=x[1600:], y_val=y[1600:]))
    few = rng.integers(0, 3, (2000, 4)).astype("float32")
    assert "train-validation-overlap" not in codes(run("binary", *oversampled(few[:1600], yt), x_val=few[1600:], y_val=y[1600:]))
    assert "train-validation-overlap" not in codes(run("binary", *oversampled(few[:1600], yt), x_val=few[:300], y_val=yt[:300]))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_overlap_found_when_every_row_was_copied_before_the_split(seed):
    # Each of 500 continuous rows twice, shuffled, split 80/20: ~80% of the validation rows have
    # their twin in training, and ~40% of the training rows are repeats themselves, so "2x the
    # training repeat rate" made it a coin toss (found at seed 0, missed at seed 1).
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(500, 4)).astype("float32")
    x = np.concatenate([x, x])[rng.permutation(1000)]
    y = binary_y(x)
    (finding,) = [f for f in run("binary", x[:800], y[:800], x_val=x[800:], y_val=y[800:]) if f.code == "train-validation-overlap"]
    assert "copies" in finding.message



def _continuous_as_before(rows):
    """_has_continuous_feature as it read every row's distinct twin first (until session 37)."""
    from trainkit.checks.leakage_checks import _CONTINUOUS_COLUMNS, _on_a_grid

    flat = rows.reshape(len(rows), -1)
    distinct = np.unique(flat[:, :: max(1, flat.shape[1] // _CONTINUOUS_COLUMNS)], axis=0)
    if len(distinct) < 20:
        return False
    mostly = len(distinct) * 4 >= len(flat)
    return any(np.unique(distinct[:, j]).size * 2 >= len(distinct) and (mostly or not _on_a_grid(np.unique(distinct[:, j])))
               for j in range(distinct.shape[1]))


def _continuity_cases():
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(400, 6))
    ids = rng.integers(0, 50, (800, 3))
    return {
        "continuous": normal, "continuous float32": normal.astype("float32"),
        "continuous rows each twice": np.concatenate([normal[:100], normal[:100]]),
        "one column of 50 ids": ids[:, :1], "50 ids standardised": (ids[:, :1] - 25) / 14.4,
        "three id columns": ids, "id sequences": rng.integers(1, 6, (500, 4)),
        "few distinct rows": np.repeat(normal[:10], 30, axis=0), "ids 0..5000 by 100": rng.integers(0, 5000, (300, 100)),
        "30 continuous rows, each 10 times": np.repeat(normal[:30], 10, axis=0),
        "a grid of halves, mostly repeated": np.repeat(rng.integers(0, 40, (30, 2)) / 2, 10, axis=0),
        "signed zeros": np.concatenate([np.zeros((30, 2)), -np.zeros((30, 2)), rng.integers(0, 3, (60, 2)) * 1.0]),
        "booleans": rng.random((200, 12)) > 0.5, "wide": rng.normal(size=(50, 600)),
        "15 continuous rows": normal[:15], "signed ids, mostly repeated": np.repeat(rng.integers(-30, 30, (40, 2)), 5, axis=0),
        "uint8 pixels": rng.integers(0, 256, (300, 64)).astype("uint8"),
    }


@pytest.mark.parametrize("case", list(_continuity_cases()))
def test_continuous_feature_read_as_before_without_sorting_the_rows(case, monkeypatch):
    # A column with 20+ values in half the rows answers without the distinct rows (sorting the
    # rows whole cost 40-130 ms of a fit's checks on 200,000 x 50 rows): the same answers.
    from trainkit.checks import leakage_checks

    rows = _continuity_cases()[case]
    expected = _continuous_as_before(rows)
    sorted_rows = []
    monkeypatch.setattr(leakage_checks, "_distinct_rows", lambda r: sorted_rows.append(r) or len(np.unique(r, axis=0)))
    assert leakage_checks._has_continuous_feature(rows) == expected
    if case.startswith("continuous"):
        assert sorted_rows == []  # answered from one column
    monkeypatch.undo()
    assert leakage_checks._has_continuous_feature(rows) == expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overlap_silent_on_one_column_of_category_ids_that_repeat_by_chance(seed):
    # One column of 50 category ids over 800 rows, split 80/20: every validation row matches a
    # training row by chance, and the column, taking a value of its own in every distinct row (it
    # alone makes the rows), was read as continuous: "they are copies" on every split.
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 50, (800, 1)).astype("float32")
    y = (rng.normal(size=50)[x[:, 0].astype(int)] > 0).astype(int)
    ids_model = keras.Sequential([keras.Input((1,)), L.Dense(8, activation="relu"), L.Dense(1, activation="sigmoid")])
    found = check_data(x[:640], y[:640], model=ids_model, loss=get_loss("binary_crossentropy"), task="binary",
                       x_val=x[640:], y_val=y[640:])
    assert "train-validation-overlap" not in codes(found)
    x = (x - x.mean()) / x.std()  # standardised as unscaled-inputs advises: still 50 ids
    found = check_data(x[:640], y[:640], model=ids_model, loss=get_loss("binary_crossentropy"), task="binary",
                       x_val=x[640:], y_val=y[640:])
    assert "train-validation-overlap" not in codes(found)
    x = rng.integers(0, 100_000, (400, 1)).astype("float32")  # whole-number rows copied before the split
    x = np.concatenate([x, x])[rng.permutation(800)]
    y = (x[:, 0] > 50_000).astype(int)
    found = check_data(x[:640], y[:640], model=ids_model, loss=get_loss("binary_crossentropy"), task="binary",
                       x_val=x[640:], y_val=y[640:])
    (finding,) = [f for f in found if f.code == "train-validation-overlap"]
    assert "copies" in finding.message


def test_unscaled_inputs_of_few_whole_numbers_name_a_category_code_as_a_possibility():
    # One column of 50 category ids fed to Dense was told only to standardise: standardised, the
    # run stays at chance (0.58 validation accuracy), where one-hot ids reach 1.0.
    x = X.copy()
    x[:, 1] = np.random.default_rng(0).integers(0, 50, len(x))
    (finding,) = [f for f in run("binary", x, YB) if f.code == "unscaled-inputs"]
    assert "Standardise" in finding.advice and "If feature 1 (only 50 whole numbers, 0..49) is a category code" in finding.advice
    x[:, 1] = X[:, 1] * 20 + 40  # an amount: no such hint
    (finding,) = [f for f in run("binary", x, YB) if f.code == "unscaled-inputs"]
    assert "category code" not in finding.advice


def test_unscaled_inputs_name_every_listed_category_code_zip_codes_included():
    # An age (72 whole numbers) listed before a store id of 40 got the hint alone, and 300 zip
    # codes over 2,000 rows got none (standardised: 0.54-0.56 validation accuracy, an Embedding
    # 0.89-0.90). Incomes rounded to thousands repeat as much, on a step of 1000: amounts.
    rng = np.random.default_rng(0)
    n = 2000
    age, store = rng.integers(18, 90, n), rng.integers(0, 40, n)
    zips = rng.choice(rng.choice(np.arange(10_000, 99_999), 300, replace=False), n)
    income = np.round(rng.lognormal(11, 0.8, n), -3)
    x = np.stack([age, store, zips, rng.normal(size=n)], 1).astype("float64")
    y = (age > 50).astype("int64")
    (finding,) = [f for f in run("binary", x, y) if f.code == "unscaled-inputs"]
    assert "(only 72 whole numbers, 18..89)" in finding.advice and "feature 1 (only 40 whole numbers, 0..39)" in finding.advice
    assert "feature 2 (300 whole numbers, " in finding.advice and "each in ~7 rows" in finding.advice
    assert "keras.layers.Embedding(vocabulary size + 1, 8)" in finding.advice
    x[:, :3] = np.stack([income, rng.normal(size=n), rng.integers(0, 5000, n)], 1)  # an amount; ids that barely repeat
    (finding,) = [f for f in run("binary", x, y) if f.code == "unscaled-inputs"]
    assert "category code" not in finding.advice


def test_unscaled_inputs_of_a_row_number_tell_to_leave_it_out_not_to_standardise_it():
    # A row number (0, 1, 2, ...) as feature 1 was told to standardise (and, of 600 rows or fewer,
    # that it might be a category code): standardised it is still a row number, which tells
    # nothing about new rows and learns the order the rows came in.
    x = X.copy()
    x[:, 1] = np.arange(len(x))
    (finding,) = [f for f in run("binary", x, YB) if f.code == "unscaled-inputs"]
    assert "Feature 1 counts up row by row (0, 1, 2, ...): an ID or a row number" in finding.advice
    assert "x = np.delete(x, 1, axis=1), and the same from the validation and test rows" in finding.advice and "category code" not in finding.advice
    x = x.astype("float64")  # a timestamp (float32 rounds it to 128 s): named in full, and a time may be meant
    x[:, 1] = 1_600_000_000 + 3600 * np.arange(len(x))
    (finding,) = [f for f in run("binary", x, YB) if f.code == "unscaled-inputs"]
    assert "(1600000000, 1600003600, 1600007200, ...)" in finding.advice and "unless it is a time" in finding.advice
    x[:, 1] = np.random.default_rng(0).permutation(len(x))  # the same numbers in no order: an amount or a code
    (finding,) = [f for f in run("binary", x, YB) if f.code == "unscaled-inputs"]
    assert "row by row" not in finding.advice


def test_unscaled_inputs_of_one_rising_feature_do_not_tell_to_delete_it():
    # A regression on one feature of sorted whole numbers (x = 1000, 1010, ...) was told to delete
    # it as a row number: np.delete(x, 0, axis=1) leaves the model no input at all.
    x = (1000 + 10 * np.arange(200, dtype="float32")).reshape(-1, 1)
    y = np.sin(x[:, 0] / 100).astype("float32")
    one = keras.Sequential([keras.Input((1,)), L.Dense(8, activation="relu"), L.Dense(1)])
    (finding,) = [f for f in check_data(x, y, model=one, loss=get_loss("mse"), task="regression") if f.code == "unscaled-inputs"]
    assert "row by row" not in finding.advice and "np.delete" not in finding.advice


def test_label_leakage_feature_equal_to_label():
    x = X.copy()
    x[:, 2] = YB
    (finding,) = [f for f in run("binary", x, YB) if f.code == "label-leakage"]
    assert finding.evidence["feature"] == 2 and "np.delete(x, 2, axis=1), and the same from the validation and test rows" in finding.advice


def test_a_leak_is_named_by_its_column_and_removed_with_data_drop_when_the_columns_are_known():
    # "Remove column 2 from x": in the csv file, column 2 was the target itself; the leak was the
    # column after it, and a recipe had no x to delete it from.
    x = X.copy()
    x[:, 2] = YB
    names = [f"col{j}" for j in range(x.shape[1])]
    (finding,) = [f for f in run("binary", x, YB, feature_names=names) if f.code == "label-leakage"]
    assert "Feature 2 ('col2')" in finding.message and "data: {drop: [col2]}" in finding.advice


def test_label_leakage_categorical_feature_mapping_to_single_class():
    x = X.copy()
    x[:, 3] = YM * 7.0 + 2.0  # three values, each with one class
    findings = run("multiclass", x, YM)
    assert codes(findings) == ["label-leakage"] and findings[0].evidence["distinct_values"] == 3


@pytest.mark.parametrize("given", ["str", "object", "dataset"])
def test_label_leakage_a_text_category_mapping_to_single_class(given):
    # The class names themselves ('neg'/'pos') fed to a StringLookup beside the numeric features:
    # texts were no numbers, so the rule read none and the model trained on the label unseen.
    num, color = keras.Input((4,), name="num"), keras.Input((1,), name="status", dtype="string")
    status = L.Flatten()(L.StringLookup(vocabulary=["neg", "pos"], output_mode="one_hot")(color))
    mixed = keras.Model({"num": num, "status": color}, L.Dense(1, activation="sigmoid")(L.Concatenate()([num, status])))
    texts = np.where(YB[:, None] == 1, "pos", "neg")
    x = {"num": X, "status": texts.astype(object) if given == "object" else texts}
    if given == "dataset":
        x = tf.data.Dataset.from_tensor_slices((x, YB)).shuffle(600, seed=0).batch(32)
    findings = check_data(x, None if given == "dataset" else YB, model=mixed, loss=get_loss("bce"), task="binary")
    (finding,) = [f for f in findings if f.code == "label-leakage"]
    assert "Each of the 2 values of the text input x['status'] ('neg', 'pos') maps to a single class" in finding.message
    assert finding.evidence["input"] == "x['status']" and "Leave the input x['status'] out" in finding.advice
    # Categories that do not give the class away, and sentences (a few repeated each make one
    # class by chance), are no leak.
    for texts in (np.array(["red", "green", "blue"])[np.arange(600) % 3][:, None], np.where(YB[:, None] == 1, "a fine film", "a dull film")):
        assert "label-leakage" not in codes(check_data({"num": X, "status": texts}, YB, model=mixed, loss=get_loss("bce"), task="binary"))


@pytest.mark.parametrize("first_class", [0, 1])
def test_label_leakage_label_one_hot_encoded_into_the_features(first_class):
    # The label's one-hot columns in x (all 3, or 2 of a drop-first encoding): none of them equals
    # the label or maps each of its values to one class, and no rule fired.
    x = X.copy()
    x[:, 4 - 3 + first_class:] = np.eye(3)[YM][:, first_class:]
    (finding,) = [f for f in run("multiclass", x, YM) if f.code == "label-leakage"]
    assert finding.evidence["features"] == list(range(1 + first_class, 4))
    assert finding.evidence["classes"] == list(range(first_class, 3))
    assert f"np.delete(x, {list(range(1 + first_class, 4))}, axis=1)" in finding.advice
    honest = X.copy()
    honest[:, 1:] = np.eye(3)[(YM + np.arange(len(YM))) % 3]  # one-hot levels that are not the label
    assert "label-leakage" not in codes(run("multiclass", honest, YM))


def test_label_leakage_one_multilabel_label_column_copied_into_the_features():
    # A multilabel target has no one class id a row, so no column of it was read: a label column
    # copied into x (a recipe's leak_label on a multilabel task) trained without a word.
    y = (np.random.default_rng(3).random((len(X), 3)) < 0.4).astype("float32")
    x = X.copy()
    x[:, 3] = y[:, 1]
    (finding,) = [f for f in run("multilabel", x, y) if f.code == "label-leakage"]
    assert finding.evidence["feature"] == 3 and finding.evidence["label_column"] == 1
    assert "label column 1" in finding.message
    assert run("multilabel", X, y) == []


def test_label_leakage_not_told_of_a_binary_autoencoder_whose_targets_are_its_inputs():
    # fit(x, x) on 0/1 features under binary cross-entropy (task='multilabel'): every label
    # column is its own input column by design, and was told "Feature 0 is identical to label
    # column 0", as a regression autoencoder's is not.
    x = (np.random.default_rng(4).random((len(X), 4)) < 0.4).astype("float32")
    net = keras.Sequential([keras.Input((4,)), L.Dense(2, activation="relu"), L.Dense(4, activation="sigmoid")])
    assert "label-leakage" not in codes(check_data(x, x.copy(), model=net, loss=get_loss("bce"), task="multilabel"))


def test_label_leakage_told_of_a_label_copied_among_as_many_features_as_labels():
    # 10 labels beside 10 features is no autoencoder: feature 3, a copy of label column 7, went
    # unsaid once the label columns were as many as the features.
    rng = np.random.default_rng(0)
    y = (rng.random((256, 10)) < 0.4).astype("float32")
    x = rng.normal(size=(256, 10)).astype("float32")
    x[:, 3] = y[:, 7]
    net = keras.Sequential([keras.Input((10,)), L.Dense(8, activation="relu"), L.Dense(10, activation="sigmoid")])
    (told,) = [f for f in check_data(x, y, model=net, loss=get_loss("bce"), task="multilabel") if f.code == "label-leakage"]
    assert told.evidence["feature"] == 3 and told.evidence["label_column"] == 7


def test_label_leakage_regression_copy_of_target():
    x = X.copy()
    x[:, 1] = 3.0 * YR + 1.0
    assert "label-leakage" in codes(run("regression", x, YR))


def test_label_leakage_finds_a_monotone_function_of_a_regression_target():
    # log(y) or sqrt(y) beside the features (a log_price column left in) correlates only 0.97-0.99
    # with y: the diabetes MLP reached val_loss 0.12 and 0.08 on them, against 0.53 honestly, and
    # no leak was found. Ties of the target (whole-number targets) are ties of its copy.
    rng = np.random.default_rng(0)
    y = np.round(rng.lognormal(4.5, 0.6, 600)).astype("float32")  # positive whole numbers, with ties
    for copy in (np.log(y), np.sqrt(y), 1.0 / y):
        x = X.copy()
        x[:, 2] = (copy - copy.mean()) / copy.std()
        (finding,) = [f for f in run("regression", x, y) if f.code == "label-leakage"]
        assert finding.evidence["feature"] == 2 and "is a monotone function of the target" in finding.message
        assert abs(finding.evidence["rank_correlation"]) > 0.9999 and abs(finding.evidence["correlation"]) < 0.9999
    x = X.copy()
    x[:, 2] = np.log(y) + rng.normal(0, 0.05, len(y))  # a strong, honest, noisy feature: no copy
    assert "label-leakage" not in codes(run("regression", x, y))


def test_a_function_of_one_of_two_features_is_the_task_not_a_monotone_leak():
    # y = sin(x0) on [0, 1.5] beside an unused second column is a function to fit: its rank copy
    # was told label-leakage. Among a table's many columns the same copy is a leak (above).
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1.5, (500, 2)).astype("float32")
    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])
    assert "label-leakage" not in codes(check_data(x, np.sin(x[:, 0]), model=net, loss=get_loss("mse"), task="regression"))


def series_windows(steps: int, *, look_ahead: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``steps`` values of a slow sine (a smooth series) and the value after each, as a
    forecast takes them; ``look_ahead``: each window shifted one step on, so it ends at its target."""
    t = np.arange(3000)
    s = np.sin(2 * np.pi * t / 2000) + 1e-4 * np.random.default_rng(0).normal(size=t.size)
    rows = t.size - steps - 1
    x = s[np.arange(rows)[:, None] + np.arange(steps)[None, :] + int(look_ahead)]
    return x.astype("float32"), s[np.arange(rows) + steps].astype("float32")


def test_label_leakage_no_false_alarm_on_the_window_of_a_smooth_series():
    # A window's last value correlates 0.99999 with the next value of a slow sine (or of a
    # 20,000-step random walk, 0.99994): honest forecasting windows were told label-leakage
    # ("Feature 3 is a linear copy of the target (correlation 1.00000)") as a leaked column.
    x, y = series_windows(4)
    assert "label-leakage" not in codes(run("regression", x, y))
    # The window that holds its target (look-ahead) still is one.
    x, y = series_windows(4, look_ahead=True)
    (finding,) = [f for f in run("regression", x, y) if f.code == "label-leakage"]
    assert finding.evidence["feature"] == 3
    # So is a copy of the target beside another copy of it (in another unit): both are exact.
    twice = X.copy()
    twice[:, 1], twice[:, 2] = 3.0 * YR + 1.0, 1000.0 * YR
    assert "label-leakage" in codes(run("regression", twice, YR))


@pytest.mark.parametrize("source", ["arrays", "dataset"])
def test_label_leakage_finds_the_target_inside_a_window_of_a_sequence_model(source):
    # (rows, steps, 1) windows that end at the value they predict (look-ahead: s[i+1:i+5] for
    # s[i+4], timeseries_dataset_from_array one step off) into a GRU: only 2-D inputs were read,
    # so the leak trained without a word.
    gru = keras.Sequential([keras.Input((4, 1)), L.GRU(2), L.Dense(1)])

    def found(x, y):
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32) if source == "dataset" else x
        return check_data(data, None if source == "dataset" else y, model=gru, loss=get_loss("mse"), task="regression")

    x, y = series_windows(4, look_ahead=True)
    (finding,) = [f for f in found(x[:, :, None], y) if f.code == "label-leakage"]
    assert finding.evidence["step"] == 3 and finding.evidence["window_feature"] == 0
    assert "x[:, 3, 0]" in finding.message and "look-ahead" in finding.message
    assert "timeseries_dataset_from_array" in finding.advice
    x, y = series_windows(4)
    assert "label-leakage" not in codes(found(x[:, :, None], y))


def horizon_windows(steps: int, horizon: int, *, look_ahead: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`series_windows` with ``horizon`` values to predict after each window (a multi-step forecast)."""
    t = np.arange(3000)
    s = np.sin(2 * np.pi * t / 2000) + 1e-4 * np.random.default_rng(0).normal(size=t.size)
    rows = t.size - steps - horizon
    x = s[np.arange(rows)[:, None] + np.arange(steps)[None, :] + int(look_ahead)]
    return x.astype("float32"), s[np.arange(rows)[:, None] + steps + np.arange(horizon)[None, :]].astype("float32")


@pytest.mark.parametrize("source", ["arrays", "dataset"])
@pytest.mark.parametrize("target_shape", ["(n, H)", "(n, H, 1)"])
def test_label_leakage_finds_the_first_step_of_a_horizon_inside_the_window(source, target_shape):
    # Windows one step off for a 5-step forecast: the last window value is the horizon's first.
    # Only one-column targets were compared with the window, so the look-ahead trained without a word.
    gru = keras.Sequential([keras.Input((4, 1)), L.GRU(2), L.Dense(5)] + ([L.Reshape((5, 1))] if target_shape == "(n, H, 1)" else []))

    def found(x, y):
        y = y[:, :, None] if target_shape == "(n, H, 1)" else y
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32) if source == "dataset" else x
        return check_data(data, None if source == "dataset" else y, model=gru, loss=get_loss("mse"), task="regression")

    x, y = horizon_windows(4, 5, look_ahead=True)
    (finding,) = [f for f in found(x[:, :, None], y) if f.code == "label-leakage"]
    assert finding.evidence["step"] == 3 and finding.evidence["target_column"] == 0
    assert "x[:, 3, 0]" in finding.message and "look-ahead" in finding.message and "column 0" in finding.message
    assert "y = s[i+w:i+w+5]" in finding.advice
    x, y = horizon_windows(4, 5)
    assert "label-leakage" not in codes(found(x[:, :, None], y))


def test_label_leakage_finds_the_horizon_inside_flat_windows_but_not_an_autoencoder_or_shifted_sequence():
    def dense(inputs, outputs):
        return keras.Sequential([keras.Input((inputs,)), L.Dense(outputs)])

    def found(net, x, y):
        return codes(check_data(x, y, model=net, loss=get_loss("mse"), task="regression"))

    x, y = horizon_windows(8, 3, look_ahead=True)
    (finding,) = [f for f in check_data(x, y, model=dense(8, 3), loss=get_loss("mse"), task="regression") if f.code == "label-leakage"]
    assert finding.evidence["feature"] == 7 and finding.evidence["target_column"] == 0
    assert "target's column 0 (of 3 a row)" in finding.message
    x, y = horizon_windows(8, 3)
    assert "label-leakage" not in found(dense(8, 3), x, y)
    # Targets that are the inputs (an autoencoder) or the window shifted one step (a
    # sequence-to-sequence model's targets, a step each) hold copies of inputs by design.
    assert "label-leakage" not in found(dense(4, 4), X, X.copy())
    seq = keras.Sequential([keras.Input((8, 1)), L.GRU(2, return_sequences=True), L.Dense(1)])
    x, _ = horizon_windows(9, 1)
    issues = check_data(x[:, :8, None], x[:, 1:, None], model=seq, loss=get_loss("mse"), task="regression")
    assert "label-leakage" not in codes(issues)


def two_input_model() -> keras.Model:
    """An id input into an Embedding next to a float one: ``ids`` (1 column) and ``feat`` (3)."""
    ids, feat = keras.Input((1,), dtype="int32", name="ids"), keras.Input((3,), name="feat")
    h = L.Concatenate()([L.Flatten()(L.Embedding(10, 2)(ids)), feat])
    return keras.Model([ids, feat], L.Dense(1, activation="sigmoid")(L.Dense(8, activation="relu")(h)))


@pytest.mark.parametrize("as_dict", [False, True])
def test_label_leakage_in_one_input_of_a_model_with_several_is_found_and_named(as_dict):
    # The label copied into one of two inputs (ids into an Embedding, float features) trained
    # without a word: only a model with one input was read.
    rng = np.random.default_rng(0)
    ids, feat = rng.integers(0, 10, (300, 1)).astype("int32"), rng.normal(size=(300, 3)).astype("float32")
    y = (feat[:, 0] > 0).astype("float32")
    leaked = feat.copy()
    leaked[:, 2] = y
    x = {"ids": ids, "feat": leaked} if as_dict else [ids, leaked]
    name = "x['feat']" if as_dict else "x[1]"
    (finding,) = [f for f in check_data(x, y, model=two_input_model(), loss=get_loss("bce"), task="binary")
                  if f.code == "label-leakage"]
    assert f"Feature 2 of {name} is identical to the class label" in finding.message
    assert f"{name} = np.delete({name}, 2, axis=1)" in finding.advice
    assert finding.evidence["feature"] == 2 and finding.evidence["input"] == name
    clean = {"ids": ids, "feat": feat} if as_dict else [ids, feat]
    assert check_data(clean, y, model=two_input_model(), loss=get_loss("bce"), task="binary") == []


@pytest.mark.parametrize("as_dict", [False, True])
def test_train_validation_overlap_reads_a_row_across_all_the_inputs(as_dict):
    # validation_data made of the first 60 training rows of a model with two inputs gave no
    # finding: only a model with one input was read.
    rng = np.random.default_rng(0)
    ids, feat = rng.integers(0, 10, (300, 1)).astype("int32"), rng.normal(size=(300, 3)).astype("float32")
    y = (feat[:, 0] > 0).astype("float32")

    def x(rows_ids, rows_feat):
        return {"ids": ids[rows_ids], "feat": feat[rows_feat]} if as_dict else [ids[rows_ids], feat[rows_feat]]

    def found(x_val, y_val):
        return codes(check_data(x(slice(0, 240), slice(0, 240)), y[:240], model=two_input_model(), loss=get_loss("bce"),
                                task="binary", x_val=x_val, y_val=y_val))

    assert found(x(slice(0, 60), slice(0, 60)), y[:60]) == ["train-validation-overlap"]
    assert found(x(slice(240, 300), slice(240, 300)), y[240:]) == []
    # Ids repeat by nature: one input's repeats are no copied row while the other input differs.
    assert found(x(slice(0, 60), slice(240, 300)), y[240:]) == []


def test_label_leakage_silent_for_continuous_features_even_if_one_decides_the_label():
    x = std_x(seed=4)
    assert run("binary", x, (x[:, 0] > 0).astype(int)) == []


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_a_feature_that_alone_separates_the_classes_is_noted(kind):
    # A noisy copy of the label (y + 0.1 N(0, 1)) gave 100% validation accuracy and no finding.
    # Only a note: well-separated clusters look the same (13 of 20 make_blobs data sets).
    y = YB if kind == "binary" else YM
    x = std_x(seed=5)
    x[:, 1] = y + 0.1 * np.random.default_rng(5).normal(size=len(y))
    (finding,) = run(kind, x, y)
    assert (finding.code, finding.severity, finding.evidence["feature"]) == ("one-feature-separates", "info", 1)
    assert finding.evidence["gap_in_within_class_stds"] > 1.0 and "np.delete(x, 1, axis=1)" in finding.advice


def test_no_note_for_a_strong_feature_whose_classes_overlap():
    x = std_x(seed=6)
    x[:, 1] = YB + 0.3 * np.random.default_rng(6).normal(size=len(YB))  # classes 1 apart, noise 0.3
    assert run("binary", x, YB) == []


def test_class_imbalance_names_the_output_bias_only_when_it_is_not_set_already():
    # A model whose output bias was already the prior's log-odds (as the advice says) was told
    # to initialise it all the same.
    y = np.zeros(len(X), dtype=int)
    y[:30] = 1  # 5%: log(0.05 / 0.95) = -2.94
    assert "initialise the output bias to log(p / (1 - p)) = -2.94" in run("binary", X, y)[0].advice
    # A recipe sets it with the output layer's key, not with code.
    assert "bias_initializer: {name: constant, value: -2.94} on the output layer" in run("binary", X, y)[0].advice
    set_already = model("binary")
    set_already.layers[-1].bias.assign([-2.94])
    findings = check_data(X, y, model=set_already, loss=get_loss("bce"), task="binary")
    assert codes(findings) == ["class-imbalance"] and "output bias" not in findings[0].advice


def test_class_imbalance_names_a_bias_per_unit_for_a_two_unit_softmax():
    # "initialise the output bias to log(p / (1 - p)) = -2.94" on a softmax over 2 units: one
    # value on both biases (bias_initializer constant) changes nothing, it still starts at 50/50.
    y = np.zeros(len(X), dtype=int)
    y[:30] = 1
    softmax = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(2, activation="softmax")])
    advice = check_data(X, y, model=softmax, loss=get_loss("scce"), task="multiclass")[0].advice
    assert "log([0.95, 0.05]) = [-0.05, -3.00]" in advice and "log(p / (1 - p))" not in advice


def test_class_imbalance_bad_and_good():
    y = np.zeros(len(X), dtype=int)
    y[:30] = 1  # 5%
    findings = run("binary", X, y)
    assert codes(findings) == ["class-imbalance"]
    assert findings[0].evidence["minority_share"] == pytest.approx(0.05)
    assert "class_weight={0: 0.53, 1: 10.0}" in findings[0].advice
    assert run("binary", X, YB) == []
    ym = YM.copy()
    ym[np.flatnonzero(ym == 2)[5:]] = 1  # class 2 keeps 5 rows
    assert codes(run("multiclass", X, ym)) == ["class-imbalance"]


@pytest.mark.parametrize(("kind", "y", "loss", "label"), [
    ("binary", np.zeros(len(X), dtype=int), None, "class 0"),
    ("binary", -np.ones(len(X)), "hinge", "class -1"),
    ("multiclass", np.full(len(X), 2), None, "class 2"),
    ("multiclass", np.eye(3, dtype="float32")[np.ones(len(X), dtype=int)], "categorical_crossentropy", "class 1"),
])
def test_training_labels_of_one_class_are_an_error_naming_the_class_and_rows(kind, y, loss, label):
    # They got class-imbalance with class_weight={0: 0.5, 1: 300.0} and a bias of -13.82.
    with pytest.raises(DataError) as info:
        run(kind, X, y, loss)
    assert info.value.code == "single-class"
    assert f"all {len(X)} rows are {label}" in info.value.message and "nothing to learn" in info.value.message


def test_single_class_says_when_the_validation_labels_hold_the_other_classes():
    with pytest.raises(DataError) as info:
        run("binary", X, np.zeros(len(X), dtype=int), x_val=X[:50], y_val=np.ones(50, dtype=int))
    assert "The validation labels hold {1}" in info.value.message and "Shuffle" in info.value.message


def test_single_class_of_a_handful_of_rows_blames_their_number_not_their_order():
    with pytest.raises(DataError) as info:
        run("binary", X[:3], np.zeros(3, dtype=int), x_val=X[3:50], y_val=np.ones(47, dtype=int))
    assert "With 3 training rows, one class can happen by chance" in info.value.message and "Shuffle" not in info.value.message


def test_class_imbalance_names_the_rare_label_columns_of_a_multilabel_task():
    # Labels at 1-3% positives were never judged: binary_accuracy read 99% for a model answering 0.
    rng = np.random.default_rng(0)
    y = (rng.random((len(X), 3)) < [0.4, 0.02, 0.3]).astype("float32")
    (finding,) = [f for f in run("multilabel", X, y) if f.code == "class-imbalance"]
    assert finding.evidence["rare_labels"] == [1] and "label 1:" in finding.message
    assert "log(p / (1 - p))" in finding.advice and "class_weight=" not in finding.advice
    balanced = (rng.random((len(X), 3)) < [0.4, 0.2, 0.3]).astype("float32")
    assert "class-imbalance" not in codes(run("multilabel", X, balanced))


def test_multilabel_label_columns_of_one_value_are_named():
    # A label 0 (or 1) in every training row got no word: nothing to learn for it, and
    # AUC(multi_label=True) scores it 0 (perfect predictions on 2 labels beside one read 0.667).
    rng = np.random.default_rng(0)
    y = (rng.random((len(X), 3)) < [0.4, 0.0, 1.0]).astype("float32")
    (finding,) = [f for f in run("multilabel", X, y) if f.code == "class-imbalance"]
    assert "2 of the 3 label columns of y hold one value in all the training rows (label 1: 0 in every row, label 2: 1 in every row)" in finding.message
    assert finding.evidence["constant_labels"] == [1, 2] and "y = y[:, keep]" in finding.advice
    # Beside a rare label, both are told.
    y[:, 0] = rng.random(len(X)) < 0.03
    (finding,) = [f for f in run("multilabel", X, y) if f.code == "class-imbalance"]
    assert finding.evidence["rare_labels"] == [0] and finding.evidence["constant_labels"] == [1, 2]
    assert "label 0:" in finding.message and "label 1: 0 in every row" in finding.message
    # A column of one value under the row weights only: its rows of the other value weigh 0, and
    # were said not to exist ("label 1: 0 in every row" of 5 rows of 1 weighing 0).
    y[:5, 1], w = 1, np.r_[np.zeros(5), np.ones(len(X) - 5)]
    (finding,) = [f for f in run("multilabel", X, y, sample_weight=w) if f.code == "class-imbalance"]
    assert "label 1: 0 in every row of nonzero weight, its 5 of 1 weighing 0" in finding.message
    assert "one value in all the training rows (" not in finding.message  # rows of the other value exist
    assert "label 2: 1 in every row," in finding.message or "label 2: 1 in every row)" in finding.message


def test_a_multilabel_column_constant_in_training_alone_is_told_as_a_split_not_to_be_dropped():
    # Label 2 at 0 in all 480 training rows, its 1s in 3 of 120 validation rows, was told "if meant
    # to be constant, drop them": the validation rows hold the other value, a split's doing.
    rng = np.random.default_rng(0)
    y = (rng.random((len(X), 3)) < [0.4, 0.3, 0.0]).astype("float32")
    y_val = y[480:].copy()
    y_val[:3, 2] = 1

    def finding(y_val: np.ndarray, **kw) -> object:
        (found,) = [f for f in run("multilabel", X[:480], y[:480], x_val=X[480:], y_val=y_val, **kw) if f.code == "class-imbalance"]
        return found

    told = finding(y_val)
    assert told.evidence["constant_labels"] == [2] and told.evidence["validation_other_value"] == {2: 3}
    assert "label 2: 1 in 3 of 120 validation rows" in told.message and "stratify=y[:, 2]" in told.advice
    assert "drop them" not in told.advice and "y = y[:, keep]" not in told.advice
    # A label constant in both splits keeps its advice to check or drop it.
    told = finding(y[480:])
    assert "validation_other_value" not in told.evidence and "y = y[:, keep]" in told.advice
    # Beside one constant in both, each gets its own advice.
    train = y[:480].copy()
    train[:, 1] = 0
    (told,) = [f for f in run("multilabel", X[:480], train, x_val=X[480:], y_val=np.where(np.arange(3) == 1, 0, y_val))
               if f.code == "class-imbalance"]
    assert told.evidence["constant_labels"] == [1, 2] and told.evidence["validation_other_value"] == {2: 3}
    assert "stratify=y[:, 2]" in told.advice and "if k not in [1]]" in told.advice
    # Its 1s in training rows that weigh 0: the weights, not a split, hide them from training.
    train, weights = y[:480].copy(), np.ones(480, "float32")
    train[:5, 2], weights[:5] = 1, 0
    (told,) = [f for f in run("multilabel", X[:480], train, x_val=X[480:], y_val=y_val, sample_weight=weights) if f.code == "class-imbalance"]
    assert "its 5 of 1 weighing 0" in told.message and "validation_other_value" not in told.evidence
    assert "on the validation side" not in told.message and "stratify" not in told.advice


def test_multilabel_class_imbalance_advice_names_recipe_keys_and_skips_biases_already_at_log_odds():
    # The advice was Python alone (bias.assign, BinaryFocalCrossentropy(...)), which a recipe's
    # user cannot run, and told biases already at each label's log-odds to be set there.
    rng = np.random.default_rng(0)
    y = (rng.random((len(X), 3)) < [0.4, 0.02, 0.3]).astype("float32")
    p = np.clip(y.mean(0), 1e-3, 1 - 1e-3)
    log_odds = np.log(p / (1 - p))
    (plain,) = [f for f in run("multilabel", X, y) if f.code == "class-imbalance"]
    values = ", ".join(f"{v:.2f}" for v in log_odds)
    assert f"in a recipe, bias_initializer: {{name: constant, value: [{values}]}}" in plain.advice
    assert "loss: {name: binary_focal_crossentropy, apply_class_balancing: true, alpha: 0.9}" in plain.advice
    assert "metrics: [{name: auc, multi_label: true}]" in plain.advice
    at_prior = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"),
                                 L.Dense(3, activation="sigmoid", bias_initializer=keras.initializers.Constant(log_odds.tolist()))])
    (started,) = [f for f in check_data(X, y, model=at_prior, loss=get_loss("bce"), task="multilabel") if f.code == "class-imbalance"]
    assert "bias" not in started.advice and "binary_focal_crossentropy" in started.advice


def test_multilabel_class_imbalance_under_a_focal_loss_is_not_told_to_use_one():
    # Having followed the advice (BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.9)),
    # a run was told its rare rows weigh little in the loss and to switch to the loss it had.
    rng = np.random.default_rng(0)
    y = (rng.random((len(X), 3)) < [0.4, 0.02, 0.3]).astype("float32")
    focal = {"name": "binary_focal_crossentropy", "apply_class_balancing": True, "alpha": 0.9}
    (found,) = [f for f in run("multilabel", X, y, focal) if f.code == "class-imbalance"]
    assert "Focal" not in found.advice and "focal" not in found.advice and "weigh little" not in found.message
    assert "AUC(multi_label=True)" in found.advice and found.advice.endswith(".")


def test_allowed_single_class_is_a_warning_without_class_imbalance_advice():
    findings = run("binary", X, np.zeros(len(X), dtype=int), allow={"single-class"})
    assert codes(findings) == ["single-class"] and findings[0].severity == "warning"


def test_single_class_leaves_multilabel_and_dataset_samples_alone():
    # A multilabel column constant over the rows is another matter; a dataset's first batches may
    # hold one class because the dataset is sorted.
    constant_column = (X[:, :3] > 0).astype("float32")
    constant_column[:, 1] = 0.0
    assert "single-class" not in codes(run("multilabel", X, constant_column))
    y = np.sort(YB)
    # Its first 8 batches all class 0, more to come and no shuffle: sorted, which unshuffled-dataset says.
    assert codes(run("binary", tf.data.Dataset.from_tensor_slices((X, y)).batch(32), None)) == ["unshuffled-dataset"]


def sorted_split(y, held_out=0.2):
    """x and y sorted by label, split as fit(validation_split=...) splits: the last rows held out."""
    order = np.argsort(y, kind="stable")
    cut = int(len(y) * (1 - held_out))
    return X[order][:cut], y[order][:cut], X[order][cut:], y[order][cut:]


def test_validation_class_mismatch_finds_a_validation_split_of_sorted_rows():
    # Sorted 3-class rows (iris's order): the last 20% are class 2 alone. val_loss measured one
    # class, and only the realdata audit's dropped chance level hinted at it.
    x, y, x_val, y_val = sorted_split(YM)
    (finding,) = [f for f in run("multiclass", x, y, x_val=x_val, y_val=y_val) if f.code == "validation-class-mismatch"]
    assert finding.severity == "warning"
    assert f"all {len(y_val)} rows are class 2" in finding.message and "sorted by label" in finding.message
    assert "permutation" in finding.advice and "stratify=y" in finding.advice
    # validation_data the caller cut: no validation_split to blame (it named one the fit never had).
    assert "validation_split" not in finding.message and "cut from rows in label order" in finding.message
    assert finding.evidence["val_counts"] == [0, 0, len(y_val)] and finding.evidence["chance"] < 1e-4


def test_validation_class_mismatch_names_classes_no_training_row_holds():
    # Half the rows held out of sorted 3-class rows: class 2 is all in validation (with some 1s),
    # so the validation labels hold two classes and the model never sees one of them.
    x, y, x_val, y_val = sorted_split(YM, held_out=0.5)
    assert set(np.unique(y_val)) == {1, 2}
    (finding,) = [f for f in run("multiclass", x, y, x_val=x_val, y_val=y_val) if f.code == "validation-class-mismatch"]
    assert "hold class 2 (2: " in finding.message and "which no training row holds" in finding.message


def test_validation_class_mismatch_names_multilabel_columns_no_training_row_holds():
    # Multilabel rows sorted by one label: 240 training rows without one 1 in column 2, the 60
    # validation rows holding it at 50%. The model is never taught label 2 and got no word.
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (rng.uniform(size=(n, 3)) < 0.3).astype("float32")
    y[:, 2] = 0
    y[240:, 2] = rng.uniform(size=60) < 0.5
    (finding,) = [f for f in run("multilabel", x[:240], y[:240], x_val=x[240:], y_val=y[240:]) if f.code == "validation-class-mismatch"]
    assert f"label 2: 1 in {int(y[240:, 2].sum())} of 60 rows" in finding.message and "never taught" in finding.message
    assert "permutation" in finding.advice and finding.evidence["columns"] == [2]
    # The same rows shuffled, or a rare label's one 1 held out by chance: no warning.
    order = rng.permutation(n)
    assert "validation-class-mismatch" not in codes(run("multilabel", x[order][:240], y[order][:240], x_val=x[order][240:], y_val=y[order][240:]))
    rare = y.copy()
    rare[:, 2] = 0
    rare[250, 2] = 1
    assert "validation-class-mismatch" not in codes(run("multilabel", x[:240], rare[:240], x_val=x[240:], y_val=rare[240:]))


def test_validation_class_mismatch_stays_silent_on_random_splits_and_blames_size_where_chance_explains_it():
    for seed in range(10):  # shuffled rows, however the classes fall
        order = np.random.default_rng(seed).permutation(len(X))
        cut = int(0.8 * len(X))
        assert "validation-class-mismatch" not in codes(run("multiclass", X[order][:cut], YM[order][:cut], x_val=X[order][cut:], y_val=YM[order][cut:]))
    # One class in 5 validation rows of 20 balanced ones happens by chance (3% of splits), and so
    # do 120 rows without one of 2% positives: still one class (AUC, precision and recall read 0
    # on them, as the imbalance audit found), but the rows are too few, not sorted.
    y = np.repeat([0, 1], 10)
    rare = (np.random.default_rng(0).uniform(size=600) < 0.02).astype("int64")
    rare[-120:] = 0
    for found in (run("binary", X[:15], y[:15], x_val=X[15:20], y_val=y[15:]), run("binary", X[:480], rare[:480], x_val=X[480:], y_val=rare[480:])):
        (finding,) = [f for f in found if f.code == "validation-class-mismatch"]
        assert "too few rows are held out" in finding.message and "sorted" not in finding.message
        assert "AUC, precision, recall" in finding.message and "stratify=y" in finding.advice
        # validation_split is fit's: a recipe's is training.validation_split.
        assert "training.validation_split in a recipe" in finding.advice
    # One class in training too (single-class's error, allowed): not this warning.
    assert "validation-class-mismatch" not in codes(run("binary", X[:500], np.zeros(500, int), x_val=X[500:], y_val=np.zeros(100, int),
                                                        allow={"single-class"}))


def test_validation_class_mismatch_reads_validation_datasets_whose_batches_stand_for_their_rows():
    # Sorted rows cut into a validation dataset (120 rows, all class 1; or half the rows of 3
    # classes, with class 2 no training row holds) got no word where the same arrays were told:
    # its first batches are all of it, or a shuffling pipeline's random draw.
    ds = tf.data.Dataset.from_tensor_slices
    x, y, x_val, y_val = sorted_split(YB)
    for val in (ds((x_val, y_val)).batch(32), ds((x_val, y_val)).shuffle(120, seed=0).batch(32)):
        (finding,) = [f for f in run("binary", x, y, x_val=val) if f.code == "validation-class-mismatch"]
        assert "hold one class only" in finding.message and "sorted by label" in finding.message
    (finding,) = [f for f in run("binary", ds((x, y)).shuffle(480, seed=0).batch(32), None, x_val=ds((x_val, y_val)).batch(32))
                  if f.code == "validation-class-mismatch"]
    assert "y_val in the first 4 batches hold one class only" in finding.message
    x, y, x_val, y_val = sorted_split(YM, held_out=0.5)
    (finding,) = [f for f in run("multiclass", x, y, x_val=ds((x_val, y_val)).shuffle(300, seed=0).batch(32))
                  if f.code == "validation-class-mismatch"]
    assert "hold class 2 (2: " in finding.message and "which no training row holds" in finding.message
    # A never-shuffled dataset's first batches, even half of them, are its first rows: sorted by
    # label, its first class alone, beside classes it holds further on. Nor a never-shuffled
    # training dataset's first rows, which lack the classes sorted after them.
    x, y = std_x(2000, seed=1), None
    y = (x[:, 0] > 0).astype("int64")
    order = np.argsort(y[1000:], kind="stable")
    for size in (32, 63):  # 32 batches of which 8 read; 16, 8 read
        assert "validation-class-mismatch" not in codes(run("binary", x[:1000], y[:1000], x_val=ds((x[1000:][order], y[1000:][order])).batch(size)))
    x, y, x_val, y_val = sorted_split(YM, held_out=0.5)
    assert "validation-class-mismatch" not in codes(run("multiclass", ds((x, y)).batch(16), None, x_val=x_val, y_val=y_val))
    # Healthy splits, shuffled or read whole, and a rare class that a shuffled validation
    # dataset's first 256 rows miss by chance (the rows past them may hold it): no warning.
    for seed in range(5):
        rng = np.random.default_rng(seed)
        x = std_x(3000, seed=seed)
        y = rng.integers(0, 3, 3000)
        train = ds((x[:2000], y[:2000])).shuffle(2000, seed=seed).batch(32)
        assert "validation-class-mismatch" not in codes(run("multiclass", train, None, x_val=ds((x[2000:], y[2000:])).shuffle(1000, seed=seed).batch(32)))
        assert "validation-class-mismatch" not in codes(run("multiclass", x[:2800], y[:2800], x_val=ds((x[2800:], y[2800:])).batch(32)))
        rare = (rng.uniform(size=3000) < 0.01).astype("int64")
        assert "validation-class-mismatch" not in codes(run("binary", x[:1000], rare[:1000], x_val=ds((x[1000:], rare[1000:])).shuffle(2000, seed=seed).batch(32)))


def test_validation_class_mismatch_ignores_the_first_batches_of_a_validation_dataset_shuffled_in_a_small_buffer():
    # A shuffle buffer smaller than the rows draws the first batches from the first rows: 1,000
    # validation rows sorted by label, half each class, .shuffle(200), read 256 rows of class 0 and
    # were told "val_loss measures that class alone", where the validation measures all its rows
    # (whose order does not matter). Read whole, the same rows are judged as arrays are.
    ds = tf.data.Dataset.from_tensor_slices
    x = std_x(3000, seed=0)
    y = np.random.default_rng(0).integers(0, 2, 3000)
    order = np.argsort(y[2000:], kind="stable")
    x_val, y_val = x[2000:][order], y[2000:][order]
    for buffer in (50, 200):
        assert "validation-class-mismatch" not in codes(run("binary", x[:2000], y[:2000], x_val=ds((x_val, y_val)).shuffle(buffer, seed=0).batch(32)))
    one_class = y_val == 0
    (finding,) = [f for f in run("binary", x[:2000], y[:2000], x_val=ds((x_val[one_class], y_val[one_class])).shuffle(50, seed=0).batch(128))
                  if f.code == "validation-class-mismatch"]
    assert "hold one class only" in finding.message


def test_validation_class_mismatch_names_no_class_missing_from_a_training_dataset_s_first_batches():
    # A shuffle buffer smaller than a training dataset sorted by label draws its first batches
    # from its first classes: 2,000 rows of 3 classes in .shuffle(100) read classes 0 and 1, and
    # the validation arrays' class 2 was told "no training row holds it: the model is never
    # taught it", beside ~950 training rows of class 2 past the batches read.
    ds = tf.data.Dataset.from_tensor_slices
    x = std_x(2500, seed=0)
    rng = np.random.default_rng(0)
    y = np.where(rng.uniform(size=2500) < 0.05, 0, rng.integers(1, 3, 2500))
    order = np.argsort(y[:2000], kind="stable")
    train = ds((x[:2000][order], y[:2000][order])).shuffle(100, seed=0).batch(32)
    assert "validation-class-mismatch" not in codes(run("multiclass", train, None, x_val=x[2000:], y_val=y[2000:]))
    # All its batches read, a class it lacks is told.
    lacking = y[:2000] != 2
    (finding,) = [f for f in run("multiclass", ds((x[:2000][lacking], y[:2000][lacking])).batch(512), None, x_val=x[2000:], y_val=y[2000:])
                  if f.code == "validation-class-mismatch"]
    assert "hold class 2 (2: " in finding.message


def test_validation_class_mismatch_reads_the_first_batches_a_full_shuffle_buffer_draws():
    # Judged only for datasets read whole while any shuffle counted as a random draw: a validation
    # dataset of ~330 rows all class 2 (11 batches) in .shuffle(2000), beside training arrays of 3
    # classes, and a training dataset without class 2 in .shuffle(2000), beside validation arrays
    # of 3 classes, got no word (3 of 3 seeds). A buffer that holds all the rows draws them.
    ds = tf.data.Dataset.from_tensor_slices
    rng = np.random.default_rng(0)
    x, y = std_x(3000), rng.integers(0, 3, 3000)
    one_class = 2000 + np.flatnonzero(y[2000:] == 2)
    assert len(one_class) > 8 * 32
    found = run("multiclass", x[:2000], y[:2000], x_val=ds((x[one_class], y[one_class])).shuffle(2000, seed=0).batch(32))
    (finding,) = [f for f in found if f.code == "validation-class-mismatch"]
    assert "y_val in the first 8 batches hold one class only: all 256 rows are class 2" in finding.message
    lacking = np.flatnonzero(y[:2000] != 2)
    found = run("multiclass", ds((x[lacking], y[lacking])).shuffle(2000, seed=0).batch(32), None, x_val=x[2000:], y_val=y[2000:])
    (finding,) = [f for f in found if f.code == "validation-class-mismatch"]
    assert "hold class 2 (2: " in finding.message and "no training row in the first 8 batches holds" in finding.message
    # A buffer smaller than the rows: the same validation rows sorted among others are no draw.
    order = np.argsort(y[2000:], kind="stable")
    found = run("multiclass", x[:2000], y[:2000], x_val=ds((x[2000:][order], y[2000:][order])).shuffle(50, seed=0).batch(32))
    assert "validation-class-mismatch" not in codes(found)


def test_validation_class_mismatch_advises_only_a_stratified_split_sklearn_can_make():
    # Few rows: validation_split=0.2 of 4 rows holds out one, always of one class. The advice
    # "train_test_split(x, y, test_size=0.2, stratify=y)" raised in sklearn there ("The test_size
    # = 1 should be greater or equal to the number of classes = 2"), and a class of one row cannot
    # be stratified at all ("The least populated class in y has only 1 member").
    def advice(y, y_val):
        found = run("multiclass" if max(y.max(), y_val.max()) > 1 else "binary", X[: len(y)], y, x_val=X[: len(y_val)], y_val=y_val,
                    allow={"few-training-rows"})
        (finding,) = [f for f in found if f.code == "validation-class-mismatch"]
        return finding.advice
    assert "test_size=2, stratify=y" in advice(np.array([0, 1, 0]), np.array([1]))
    assert "test_size=3, stratify=y" in advice(np.array([0, 1, 2, 0, 1]), np.array([2]))
    single = advice(np.array([0, 0, 1]), np.array([0]))
    assert "stratify" not in single and "class 1 has one row in all" in single
    # Enough rows for a fifth to hold every class: the advice as before.
    assert "test_size=0.2, stratify=y" in advice(np.repeat([0, 1], 10)[:15], np.ones(5, int))


def test_masked_ids_inside_finds_a_token_0_that_mask_zero_drops_and_spares_padding():
    # Ids 0..19 with 0 a real token: mask_zero=True dropped it and the run sat at chance, told "the
    # labels are unpredictable"; the same rows shifted by one (0 for padding only) learned.
    def net(mask: bool) -> keras.Model:
        return keras.Sequential([keras.Input((12,), dtype="int32"), L.Embedding(21, 4, mask_zero=mask),
                                 L.GlobalAveragePooling1D(), L.Dense(1, activation="sigmoid")])

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, size=(200, 12))
    y = (ids == 0).any(1).astype("int64")
    found = check_data(ids, y, model=net(True), loss=get_loss("bce"), task="binary")
    (finding,) = [f for f in found if f.code == "masked-ids-inside"]
    assert finding.severity == "warning" and "mask_zero=True" in finding.message and finding.layer is not None
    assert finding.evidence["rows_with_inner_zero"] > 0.3 and "x + 1" in finding.advice
    # Shifted after padding, the padding would become token 1 and the mask would drop nothing.
    assert "before padding the rows" in finding.advice
    # Without the mask, or rows padded with 0 at either end: nothing to report.
    assert "masked-ids-inside" not in codes(check_data(ids, y, model=net(False), loss=get_loss("bce"), task="binary"))
    padded = np.zeros((200, 12), dtype="int64")
    for i, n in enumerate(rng.integers(3, 13, size=200)):
        padded[i, :n] = rng.integers(1, 21, size=n)
    for rows in (padded, padded[:, ::-1]):
        assert "masked-ids-inside" not in codes(check_data(rows, y, model=net(True), loss=get_loss("bce"), task="binary"))


def test_validation_scale_mismatch_finds_raw_validation_inputs_and_targets_in_another_unit():
    # A scaler applied to the training rows only: standardised x, raw x_val (mean ~300, std ~50),
    # which loss-at-chance blamed on the labels; and y_val x1000, which got no finding at all.
    raw = X * 50 + 300
    (finding,) = [f for f in run("binary", X[:480], YB[:480], x_val=raw[480:], y_val=YB[480:]) if f.code == "validation-scale-mismatch"]
    assert finding.severity == "warning" and "validation inputs x_val" in finding.message
    assert finding.evidence["columns_off"] == 4 and "scaler.transform(x_val)" in finding.advice
    y = X[:, 0] + 0.5 * X[:, 1]
    (finding,) = [f for f in run("regression", X[:480], y[:480], x_val=X[480:], y_val=y[480:] * 1000)
                  if f.code == "validation-scale-mismatch"]
    assert "validation targets y_val" in finding.message and finding.evidence["val_iqr"] > 100 * finding.evidence["train_iqr"]


def test_validation_scale_mismatch_stays_silent_on_random_splits_and_heavy_tails():
    rng = np.random.default_rng(0)
    y = X[:, 0] + 0.5 * X[:, 1]
    heavy = np.c_[rng.lognormal(0, 2.5, (len(X), 2)), rng.poisson(0.7, (len(X), 2))].astype("float32")
    for seed in range(10):
        order = np.random.default_rng(seed).permutation(len(X))
        for data, cut in ((X, 480), (heavy, 580)):  # 20 validation rows of heavy tails
            found = codes(run("regression", data[order][:cut], y[order][:cut], x_val=data[order][cut:], y_val=y[order][cut:]))
            assert "validation-scale-mismatch" not in found
    # Classes (and ids) are no scale: a classifier's labels are not compared.
    assert "validation-scale-mismatch" not in codes(run("binary", X[:480], YB[:480], x_val=X[480:], y_val=YB[480:]))


def test_validation_scale_mismatch_reads_a_channels_first_models_channels_on_axis_1():
    # A channels_first Conv2D's channels were read on the last axis, an image's columns: channels
    # at 1, 100 and 10,000 beside validation channels 0 and 1 x255 mixed in every column, read
    # alike in both splits (no finding), and 0-255 validation images read "feature 29".
    rng = np.random.default_rng(0)
    net = keras.Sequential([keras.Input((3, 32, 32)), L.Conv2D(4, 3, activation="relu", data_format="channels_first"),
                            L.GlobalAveragePooling2D(data_format="channels_first"), L.Dense(1, activation="sigmoid")])
    scale = np.array([1.0, 100.0, 10000.0], "float32")[None, :, None, None]
    x, y, y_val = (rng.random((64, 3, 32, 32)) * scale).astype("float32"), rng.integers(0, 2, 64), rng.integers(0, 2, 32)

    def finding(x_val: np.ndarray) -> list:
        return [f for f in check_data(x, y, model=net, loss=get_loss("bce"), task="binary", x_val=x_val, y_val=y_val, allow={"unscaled-inputs"})
                if f.code == "validation-scale-mismatch"]

    x_val = (rng.random((32, 3, 32, 32)) * scale).astype("float32")
    assert not finding(x_val)
    x_val[:, :2] *= 255
    (told,) = finding(x_val)
    assert told.evidence["columns_compared"] == 3 and told.evidence["columns_off"] == 2 and told.evidence["column"] in (0, 1)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_validation_scale_mismatch_names_an_images_channels_as_channels(data_format):
    # 0-255 validation images beside 0-1 training ones were told "in 3 of 3 columns ... (feature 1:
    # ...)": the image's channels named as a table's features.
    rng = np.random.default_rng(0)
    shape = (8, 8, 3) if data_format == "channels_last" else (3, 8, 8)
    x, x_val = rng.random((100, *shape)).astype("float32"), (rng.random((40, *shape)) * 255).astype("float32")
    y, y_val = rng.integers(0, 2, 100), rng.integers(0, 2, 40)

    def told(net: keras.Model) -> str:
        (finding,) = [f for f in check_data(x, y, model=net, loss=get_loss("bce"), task="binary", x_val=x_val, y_val=y_val)
                      if f.code == "validation-scale-mismatch"]
        return finding.message

    cnn = keras.Sequential([keras.Input(shape), L.Rescaling(1.0), L.Conv2D(4, 3, data_format=data_format), L.Flatten(), L.Dense(1, activation="sigmoid")])
    message = told(cnn)
    assert "in 3 of 3 channels" in message and re.search(r"\(channel [012]: training median", message) and "feature" not in message
    # A rank-4 input a Dense layer reads first: its last axis is features, as before.
    dense = keras.Sequential([keras.Input(shape), L.Dense(2), L.Flatten(), L.Dense(1, activation="sigmoid")])
    message = told(dense)
    assert "columns" in message and "(feature " in message and "channel" not in message


def test_validation_scale_mismatch_reads_the_first_batches_of_datasets():
    # A validation dataset of raw inputs (or targets x1000) beside a standardised, shuffled
    # training dataset was never compared: loss-at-chance then blamed memorised random labels.
    ds = tf.data.Dataset.from_tensor_slices
    train = ds((X[:480], YB[:480])).shuffle(480, seed=0).batch(32)
    (finding,) = [f for f in run("binary", train, None, x_val=ds((X[480:] * 50 + 300, YB[480:])).batch(32))
                  if f.code == "validation-scale-mismatch"]
    assert "validation inputs x_val" in finding.message and "of the first batches" in finding.message
    y = (X[:, 0] + 0.5 * X[:, 1]).astype("float32")
    found = run("regression", ds((X[:480], y[:480])).shuffle(480, seed=0).batch(32), None, x_val=ds((X[480:], y[480:] * 1000)).batch(32))
    assert "validation-scale-mismatch" in codes(found)
    # Numpy training rows beside a validation dataset too.
    assert "validation-scale-mismatch" in codes(run("binary", X[:480], YB[:480], x_val=ds((X[480:] * 50 + 300, YB[480:])).batch(32)))
    # Images scaled twice in the validation pipeline (pixels pooled: no order of rows narrows them).
    images = np.random.default_rng(0).uniform(0, 1, (600, 8, 8, 1)).astype("float32")
    yi = (images.mean(axis=(1, 2, 3)) > 0.5).astype("int64")
    train = ds((images[:400], yi[:400])).shuffle(400, seed=0).batch(32)
    assert "validation-scale-mismatch" in codes(run("image", train, None, x_val=ds((images[400:] / 255, yi[400:])).batch(32)))
    assert "validation-scale-mismatch" not in codes(run("image", train, None, x_val=ds((images[400:], yi[400:])).batch(32)))


def test_validation_scale_mismatch_stays_silent_on_datasets_in_order():
    # A dataset's first batches are its first rows: a validation dataset sorted by the target or
    # by a feature spreads far less there than all of its rows, and a training dataset that never
    # shuffles shows its first rows, not its scale.
    ds = tf.data.Dataset.from_tensor_slices
    x = std_x(4000, seed=1)
    y = (x @ np.array([1.0, -0.5, 0.25, 0.0]) + 0.1 * np.random.default_rng(1).normal(size=len(x))).astype("float32")
    train = ds((x[:2000], y[:2000])).shuffle(2000, seed=0).batch(32)
    for order in (np.argsort(y[2000:]), np.argsort(x[2000:, 0]), np.argsort(-x[2000:, 0])):
        val = ds((x[2000:][order], y[2000:][order])).batch(32)
        assert "validation-scale-mismatch" not in codes(run("regression", train, None, x_val=val))
    unshuffled = ds((X[:480], YB[:480])).batch(32)
    assert "validation-scale-mismatch" not in codes(run("binary", unshuffled, None, x_val=ds((X[480:] * 50 + 300, YB[480:])).batch(32)))


def test_validation_augmented_finds_random_maps_over_the_validation_dataset():
    # Noise (std 1.5) mapped over both splits of a standardised binary task got no finding at all:
    # val_loss measured noised rows, drawn anew each epoch.
    ds = tf.data.Dataset.from_tensor_slices
    train = ds((X[:480], YB[:480])).shuffle(480, seed=0).batch(32)

    def noise(a, b):
        return a + tf.random.normal(tf.shape(a), stddev=1.5), b

    @tf.function
    def nested(a, b):  # the draws inside a tf.function the map calls
        return a + tf.random.uniform(tf.shape(a)), b

    flip = keras.layers.RandomFlip("horizontal")  # augments when called outside a model
    images = np.random.default_rng(0).uniform(0, 1, (200, 8, 8, 1)).astype("float32")
    yi = (images.mean(axis=(1, 2, 3)) > 0.5).astype("int64")
    image_train = ds((images[:150], yi[:150])).shuffle(150, seed=0).batch(32)
    cases = [("binary", train, ds((X[480:], YB[480:])).batch(32).map(noise), "RandomStandardNormal"),
             ("binary", train, ds((X[480:], YB[480:])).batch(32).map(nested), "RandomUniform"),
             ("image", image_train, ds((images[150:], yi[150:])).batch(32).map(lambda a, b: (flip(a), b)), "StatelessRandomUniformV2"),
             ("image", image_train, ds((images[150:], yi[150:])).batch(32).map(lambda a, b: (tf.image.random_flip_left_right(a), b)),
              "RandomUniform")]
    for kind, training, val, op in cases:
        (finding,) = [f for f in run(kind, training, None, x_val=val) if f.code == "validation-augmented"]
        assert finding.severity == "warning" and op in finding.evidence["random_ops"] and "training dataset alone" in finding.advice
    # Augmenting the training dataset alone, or a validation map without draws, is no mistake.
    augmented_train = ds((X[:480], YB[:480])).shuffle(480, seed=0).batch(32).map(noise)
    clean = ds((X[480:], YB[480:])).batch(32).map(lambda a, b: (a / 2.0, b))
    assert "validation-augmented" not in codes(run("binary", augmented_train, None, x_val=clean))
    assert "validation-augmented" not in codes(run("binary", X[:480], YB[:480], x_val=X[480:], y_val=YB[480:]))


def test_validation_augmented_leaves_out_stateless_draws_of_fixed_seeds():
    # Stateless ops seeded by constants or by the row's index draw the same numbers every epoch: a
    # fixed noisy validation set (a denoising task's) was told val_loss "changes with the draws".
    ds = tf.data.Dataset.from_tensor_slices
    train = ds((X[:480], YB[:480])).shuffle(480, seed=0).batch(32)
    val = ds((X[480:], YB[480:]))

    def fixed(a, b):
        return a + tf.random.stateless_normal(tf.shape(a), seed=(1, 2)), b

    def per_row(i, pair):
        return pair[0] + tf.random.stateless_normal(tf.shape(pair[0]), seed=tf.stack([i, 0])), pair[1]

    # sample_from_datasets and rejection_resample draw their choices with a stateless op seeded by a
    # Dataset.random: rows sampled, not altered (both were told "augmentation or noise").
    halves = [val.take(60), val.skip(60)]
    mixed = tf.data.Dataset.sample_from_datasets(halves, weights=[0.5, 0.5], seed=1)
    resampled = val.rejection_resample(lambda a, b: tf.cast(b, tf.int32), target_dist=[0.5, 0.5], seed=1).map(lambda _, pair: pair)
    for data in (val.map(fixed).batch(32), val.enumerate().map(per_row).batch(32), mixed.batch(32), resampled.batch(32)):
        assert "validation-augmented" not in codes(run("binary", train, None, x_val=data))
    # Seeds drawn from a generator's state change at every pass: still reported.
    generator = tf.random.Generator.from_seed(0)

    def drawn(a, b):
        return a + tf.random.stateless_normal(tf.shape(a), seed=generator.make_seeds(1)[:, 0]), b

    (finding,) = [f for f in run("binary", train, None, x_val=val.map(drawn).batch(32)) if f.code == "validation-augmented"]
    assert "StatelessRandomNormalV2" in finding.evidence["random_ops"]
    # Only the seed tells: a shape read from rows a numpy_function loaded (a stateful op) made a
    # noise seeded by (1, 2) read as drawing anew.
    def loaded(a, b):
        row = tf.numpy_function(lambda v: v, [a], tf.float32)
        return tf.ensure_shape(row + tf.random.stateless_normal(tf.shape(row), seed=(1, 2)), a.shape), b

    noisy = val.map(loaded)
    assert "validation-augmented" not in codes(run("binary", train, None, x_val=noisy.batch(32)))


def test_validation_augmented_reads_a_cond_on_a_constant_training_flag_by_its_taken_branch():
    # A shared preprocess(x, training) whose augmentation sits behind tf.cond(training, ...): the
    # validation map's tf.constant(False) never runs it, and the untaken branch was reported.
    ds = tf.data.Dataset.from_tensor_slices
    train = ds((X[:480], YB[:480])).shuffle(480, seed=0).batch(32)
    val = ds((X[480:], YB[480:]))

    def preprocess(training):
        def apply(a, b):
            return tf.cond(training, lambda: a + tf.random.normal(tf.shape(a)), lambda: a / 2.0), b
        return apply

    assert "validation-augmented" not in codes(run("binary", train, None, x_val=val.map(preprocess(tf.constant(False))).batch(32)))
    # The flag on, or a flag a variable holds (it may change): the branch may run.
    for flag in (tf.constant(True), tf.Variable(False)):
        (finding,) = [f for f in run("binary", train, None, x_val=val.map(preprocess(flag)).batch(32)) if f.code == "validation-augmented"]
        assert finding.evidence["random_ops"] == ["RandomStandardNormal"]


def test_shuffled_apart_finds_one_side_of_a_zip_shuffled_alone():
    # zip((x_ds, y_ds.shuffle(n))) pairs each row with another row's label: a validation dataset so
    # built was told by loss-at-chance that the model memorised random labels.
    ds = tf.data.Dataset.from_tensor_slices
    train = ds((X[:480], YB[:480])).shuffle(480, seed=0).batch(32)
    apart = tf.data.Dataset.zip((ds(X[480:]), ds(YB[480:]).shuffle(120, seed=1))).batch(32)
    (finding,) = [f for f in run("binary", train, None, x_val=apart) if f.code == "shuffled-apart"]
    assert finding.evidence["datasets"] == ["validation_data"] and "shuffle the pairs" in finding.advice
    inputs_alone = tf.data.Dataset.zip((ds(X[:480]).shuffle(480, seed=0), ds(YB[:480]))).batch(32)
    assert [f.evidence["datasets"] for f in run("binary", inputs_alone, None) if f.code == "shuffled-apart"] == [["x"]]
    # Zipped, then shuffled together; both sides alike; a repeated constant beside shuffled rows.
    fine = [tf.data.Dataset.zip((ds(X[:480]), ds(YB[:480]))).shuffle(480, seed=0).batch(32),
            tf.data.Dataset.zip((ds(X[:480]), ds(YB[:480]))).batch(32),
            tf.data.Dataset.zip((ds(X[:480]).shuffle(480, seed=3), ds(YB[:480]).shuffle(480, seed=3))).batch(32),
            tf.data.Dataset.zip((ds((X[:480], YB[:480])).shuffle(480, seed=0), tf.data.Dataset.from_tensors(1.0).repeat()))
            .map(lambda pair, one: (pair[0] * one, pair[1])).batch(32)]
    for data in fine:
        assert "shuffled-apart" not in codes(run("binary", data, None))


def test_shuffled_apart_names_the_shuffle_default_of_image_dataset_from_directory(tmp_path):
    # image_dataset_from_directory(d, labels=None) shuffles its files unless told shuffle=False:
    # zipped with labels in the files' sorted order, each image met another's label, and the
    # advice to "never shuffle one side of a zip alone" named a .shuffle() nowhere in the code.
    directory = image_directory(tmp_path, per_class=8)
    labels = tf.data.Dataset.from_tensor_slices(np.repeat([0, 1, 2], 8)).batch(8)
    cnn = keras.Sequential([keras.Input((16, 16, 3)), L.Rescaling(1 / 255), L.Conv2D(2, 3, activation="relu"), L.Flatten(),
                            L.Dense(3, activation="softmax")])

    def found(shuffle, mapped=False):
        images = keras.utils.image_dataset_from_directory(directory, labels=None, image_size=(16, 16), batch_size=8, shuffle=shuffle,
                                                          seed=1, verbose=False)
        images = images.map(lambda x: x * 1.0) if mapped else images
        data = tf.data.Dataset.zip((images, labels))
        return [f for f in check_data(data, model=cnn, loss=get_loss("scce"), task="multiclass") if f.code == "shuffled-apart"]

    for mapped in (False, True):
        (finding,) = found(True, mapped)
        assert finding.evidence["from_directory"] == ["x"] and "unless given shuffle=False" in finding.message
        assert "labels=[...] in the alphanumeric order of its file paths" in finding.advice
    assert found(False) == []
    # One side shuffled by a .shuffle() of the user's is told as before.
    ds = tf.data.Dataset.from_tensor_slices
    (finding,) = [f for f in run("binary", tf.data.Dataset.zip((ds(X[:480]).shuffle(480, seed=0), ds(YB[:480]))).batch(32), None)
                  if f.code == "shuffled-apart"]
    assert finding.evidence["from_directory"] == [] and "image_dataset_from_directory" not in finding.message + finding.advice


def test_shuffled_apart_names_no_shuffle_default_of_a_directory_dataset_made_with_shuffle_false(tmp_path):
    # image_dataset_from_directory(..., shuffle=False).shuffle(n): the user's own .shuffle() shuffles
    # the images alone, but the finding said the loader "shuffles its files unless given
    # shuffle=False" and advised the shuffle=False it was given.
    directory = image_directory(tmp_path, per_class=8)
    labels = tf.data.Dataset.from_tensor_slices(np.repeat([0, 1, 2], 8)).batch(8)
    cnn = keras.Sequential([keras.Input((16, 16, 3)), L.Rescaling(1 / 255), L.Conv2D(2, 3, activation="relu"), L.Flatten(),
                            L.Dense(3, activation="softmax")])
    images = keras.utils.image_dataset_from_directory(directory, labels=None, image_size=(16, 16), batch_size=8, shuffle=False,
                                                      verbose=False).shuffle(3, seed=1)
    (finding,) = [f for f in check_data(tf.data.Dataset.zip((images, labels)), model=cnn, loss=get_loss("scce"), task="multiclass")
                  if f.code == "shuffled-apart"]
    assert finding.evidence["from_directory"] == [] and "image_dataset_from_directory" not in finding.message + finding.advice


def test_shuffled_apart_leaves_out_a_zipped_side_that_reads_no_rows():
    # A constant repeated as many times as there are rows, or a range counter, beside shuffled
    # rows pairs with no row: such zips were told "each row is paired with another row's label".
    ds = tf.data.Dataset.from_tensor_slices
    rows = ds((X[:480], YB[:480])).shuffle(480, seed=0)
    fine = [tf.data.Dataset.zip((rows, tf.data.Dataset.from_tensors(1.0).repeat(480))).map(lambda pair, one: (pair[0] * one, pair[1])),
            tf.data.Dataset.zip((rows, tf.data.Dataset.range(480))).map(lambda pair, i: (pair[0], pair[1]))]
    for data in fine:
        assert "shuffled-apart" not in codes(run("binary", data.batch(32), None))
    # Beside such a side, the rows' own sides are still judged.
    apart = tf.data.Dataset.zip((ds(X[:480]).shuffle(480, seed=0), ds(YB[:480]), tf.data.Dataset.range(480)))
    data = apart.map(lambda a, b, i: (a, b)).batch(32)
    assert "shuffled-apart" in codes(run("binary", data, None))


def test_shuffled_apart_leaves_out_zips_of_whole_examples():
    # zip((ds, ds.shuffle(n))) of (x, y) examples pairs whole examples on purpose (mixup, a siamese
    # network's pairs): each row keeps its label, yet it was told "paired with another row's label".
    ds = tf.data.Dataset.from_tensor_slices
    rows = ds((X[:480], YB[:480])).shuffle(480, seed=0)
    # Sides of whole (x, y) examples, one shuffled: mixup's or a siamese network's pairs, on purpose.
    mixup = tf.data.Dataset.zip((ds((X[:480], YB[:480])), rows)).map(
        lambda one, two: (0.7 * one[0] + 0.3 * two[0], 0.7 * tf.cast(one[1], tf.float32) + 0.3 * tf.cast(two[1], tf.float32)))
    assert "shuffled-apart" not in codes(run("binary", mixup.batch(32), None))


def test_shuffled_apart_still_reads_rows_read_from_a_generated_side_and_tuples_of_other_specs():
    # Rows a range's map gathers, a from_tensors(y).unbatch(), and a two-input model's (x1, x2)
    # beside a two-output model's (y1, y2), one side shuffled, were left out as a side that reads
    # no rows or as whole (x, y) examples: each row still meets another row's label.
    ds = tf.data.Dataset.from_tensor_slices
    x, y = X[:480], YB[:480].astype("float32")
    gathered = tf.data.Dataset.range(480).shuffle(480, seed=0).map(lambda i: tf.gather(x, i))
    apart = [tf.data.Dataset.zip((gathered, ds(y))),
             tf.data.Dataset.zip((ds(x), tf.data.Dataset.from_tensors(y).unbatch().shuffle(480, seed=0))),
             tf.data.Dataset.zip((ds((x, x)), ds((y, y)).shuffle(480, seed=0))).map(lambda xs, ys: (xs[0] + xs[1], ys[0]))]
    for data in apart:
        assert "shuffled-apart" in codes(run("binary", data.batch(32), None))
    # A counter a map turns into a number holds no rows: still left out.
    counter = tf.data.Dataset.range(480).map(lambda i: tf.cast(i, tf.float32))
    data = tf.data.Dataset.zip((ds((x, y)).shuffle(480, seed=0), counter)).map(lambda pair, i: pair)
    assert "shuffled-apart" not in codes(run("binary", data.batch(32), None))


def test_validation_scale_mismatch_stays_silent_on_random_splits_of_zero_inflated_columns():
    # Columns 65-80% zeros: a quartile between 0 and the amounts made spreads 0.0004 against
    # 0.008 in 20 validation rows of a random split, "on another scale".
    for seed in range(30):
        rng = np.random.default_rng(seed)
        x = ((rng.random((120, 4)) < rng.uniform(0.2, 0.35, size=4)) * rng.exponential(1.0, (120, 4))).astype("float32")
        y = rng.integers(0, 2, 120).astype("float32")
        assert "validation-scale-mismatch" not in codes(run("binary", x[:100], y[:100], x_val=x[100:], y_val=y[100:])), seed


def test_validation_class_mismatch_comes_from_fit_validation_split():
    from trainkit import Trainer

    x, y, x_val, y_val = sorted_split(YB)
    net = keras.Sequential([keras.Input((4,)), L.Dense(1, activation="sigmoid")])
    trainer = Trainer(net, loss="bce", task="binary", optimizer="sgd", statistics=False)
    trainer.fit(np.concatenate([x, x_val]), np.concatenate([y, y_val]), epochs=1, validation_split=0.2, verbose=0)
    (finding,) = [f for f in trainer.findings if f.code == "validation-class-mismatch"]
    assert "fit(validation_split=...) holds out the LAST rows" in finding.message and "before fit" in finding.advice


@pytest.mark.parametrize(("row", "where"), [(190, "among the 40 rows validation_split holds out"), (20, "among its first 160 rows")])
def test_a_nan_in_rows_validation_split_holds_out_is_named_by_the_callers_array_and_row(row, where):
    # NaN at x's row 190 with validation_split=0.2 was reported as "x_val ... row 30", an array
    # (and a row) the caller never had, with advice to index x_val.
    from trainkit import Trainer

    x = X[:200].copy()
    x[row, 2] = np.nan
    net = keras.Sequential([keras.Input((4,)), L.Dense(1, activation="sigmoid")])
    with pytest.raises(DataError) as info:
        Trainer(net, loss="bce", task="binary", optimizer="sgd").fit(x, YB[:200], epochs=1, validation_split=0.2, verbose=0)
    assert info.value.code == "non-finite-data"
    assert info.value.message.startswith(f"x has 1 row with NaN or Inf values {where}") and f"the first at row {row}, column 2" in info.value.message
    assert "x_val" not in info.value.message


def test_unscaled_inputs_made_by_a_few_extreme_rows_name_them_instead_of_standardising():
    # One row of 1e4 among standardised values read as unscaled inputs (std 447), and the advice
    # to standardise would have squashed every other row of that feature 450 times narrower.
    x = X.copy()
    x[17, 2] = 1e4
    (finding,) = run("binary", x, YB)
    assert finding.code == "unscaled-inputs" and "only because of a few extreme values: feature 2: 1 row (row 17 is 1e+04" in finding.message
    assert finding.advice.startswith("Check those rows first") and "np.clip(x[:, 2], lo, hi)" in finding.advice
    assert finding.evidence["first_rows"] == [17]
    # Unscaled through and through: the standardising advice stands.
    (finding,) = run("binary", X * 1000.0, YB)
    assert finding.code == "unscaled-inputs" and finding.advice.startswith("Standardise each feature")


def test_unscaled_inputs_outliers_leave_no_zero_inflated_amounts_unnamed():
    # A column of 80% zeros and amounts of ~8000 has no interquartile range: one extreme row of
    # another feature was named as all that was unscaled, "the other rows on a normal scale".
    rng = np.random.default_rng(0)
    x = X.copy()
    x[7, 0] = 300.0
    x[:, 1] = np.where(rng.random(len(x)) < 0.8, 0.0, rng.lognormal(9, 0.5, len(x)))
    (finding,) = run("binary", x, YB)
    assert finding.code == "unscaled-inputs" and "only because of a few extreme values" not in finding.message
    assert "feature 1: mean" in finding.message


def test_validation_target_range_finds_regression_rows_sorted_by_target():
    # Sorted diabetes with validation_split=0.2 validated on its top 20% of targets (val_loss 2.8
    # against a training loss of 0.37) and got no finding at all.
    y = X[:, 0] + 0.1 * X[:, 1]
    for order, side in ((np.argsort(y), "above"), (np.argsort(-y), "below")):
        ys = y[order].reshape(-1, 1)
        (finding,) = [f for f in run("regression", X[order][:480], ys[:480], x_val=X[order][480:], y_val=ys[480:])
                      if f.code == "validation-target-range"]
        assert finding.severity == "warning" and f"lies {side} every training target" in finding.message
        assert "sorted by target" in finding.message and "permutation" in finding.advice and finding.evidence["chance"] < 1e-10
    for seed in range(10):  # shuffled rows never
        p = np.random.default_rng(seed).permutation(len(X))
        ys = y[p].reshape(-1, 1)
        assert "validation-target-range" not in codes(run("regression", X[p][:480], ys[:480], x_val=X[p][480:], y_val=ys[480:]))
    # 4 validation rows are too few to tell an order from chance.
    ys = np.sort(y).reshape(-1, 1)
    assert "validation-target-range" not in codes(run("regression", X[:596], ys[:596], x_val=X[596:], y_val=ys[596:]))


def test_validation_target_range_reads_datasets_first_batches():
    # Arrays only, before: rows sorted by target cut into a shuffled training dataset and a
    # validation dataset got no word where the same arrays were told (seeds 0-2, 2,000 rows).
    y = (X[:, 0] + 0.1 * X[:, 1]).astype("float32")

    def found(order, shuffle=True, batch=32):
        xs, ys = X[order].astype("float32"), y[order].reshape(-1, 1)
        train = tf.data.Dataset.from_tensor_slices((xs[:480], ys[:480]))
        train = (train.shuffle(480, seed=0) if shuffle else train).batch(batch)
        val = tf.data.Dataset.from_tensor_slices((xs[480:], ys[480:])).batch(32)
        return [f for f in run("regression", train, None, x_val=val) if f.code == "validation-target-range"]

    (finding,) = found(np.argsort(y))
    assert "y_val in the first 4 batches (120 rows" in finding.message and "every training target in the first 8 batches" in finding.message
    assert finding.evidence["sampled"] and finding.evidence["chance"] < 1e-10
    # A training dataset that never shuffles shows its first rows, sorted ones its lowest: no
    # sample of its range; unless its batches were all read (8 of 60 rows).
    assert not found(np.argsort(y), shuffle=False)
    assert found(np.argsort(y), shuffle=False, batch=60)
    for seed in range(10):  # shuffled rows never
        assert not found(np.random.default_rng(seed).permutation(len(X)))


def test_validation_target_range_not_judged_by_a_validation_datasets_first_period():
    # A never-shuffled validation dataset's first few batches are its first rows: a rising series
    # split at random, its validation rows kept in time order (8 of 20,000 read), was told "every
    # validation target lies below every training target ... a chance of 1e-..": that draw was
    # no random one. A shuffling pipeline's first batches are.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40000, 4)).astype("float32")
    y = (np.linspace(0, 10, 40000) + 1e-4 * rng.normal(size=40000)).astype("float32").reshape(-1, 1)
    val = np.sort(rng.choice(40000, 20000, replace=False))
    train = np.setdiff1d(np.arange(40000), val)
    rows = tf.data.Dataset.from_tensor_slices((x[train], y[train])).shuffle(20000, seed=1).batch(32)
    for shuffle in (False, True):
        validation = tf.data.Dataset.from_tensor_slices((x[val], y[val]))
        validation = (validation.shuffle(20000, seed=0) if shuffle else validation).batch(1)
        assert "validation-target-range" not in codes(run("regression", rows, None, x_val=validation))


def test_raw_validation_targets_are_a_scale_mismatch_not_rows_sorted_by_target():
    # Standardised y, y_val left raw (a load series ~1e4): every validation target lay above every
    # training one, and validation-target-range said "the rows look sorted by target: shuffle x
    # and y"; with x_val left raw too, validation-scale-mismatch named the inputs alone.
    y = X[:, 0] + 0.5 * X[:, 1]
    raw_y = y * 2000 + 1e4
    found = run("regression", X[:480], y[:480], x_val=X[480:], y_val=raw_y[480:])
    assert codes(found) == ["validation-scale-mismatch"] and "validation targets y_val" in found[0].message
    found = run("regression", X[:480], y[:480], x_val=X[480:] * 50 + 300, y_val=raw_y[480:])
    assert codes(found) == ["validation-scale-mismatch"]
    assert "So are the validation targets y_val" in found[0].message and "(y_val - y_mean) / y_std" in found[0].advice
    assert found[0].evidence["targets"]["val_median"] > 1000
    # Rows sorted by target continue the training range: still validation-target-range's.
    order = np.argsort(y)
    found = run("regression", X[order][:480], y[order][:480], x_val=X[order][480:], y_val=y[order][480:])
    assert "validation-target-range" in codes(found)


def test_validation_targets_a_whole_training_range_beyond_it_are_not_told_sorted_rows():
    # A rising series standardised with the training rows' statistics, y_val left raw: 11.2..15.8
    # against -1.9..2.0, a shift under validation-scale-mismatch's 10 spreads, was told "the rows
    # look sorted by target: shuffle x and y". Sorted rows continue the training range.
    t = np.arange(1500)
    series = 0.01 * t + np.sin(t / 10) + 0.1 * np.random.default_rng(0).normal(size=t.size)
    x = np.stack([series[i:i + 4] for i in range(1496)]).astype("float32")
    y = series[4:1500].astype("float32")
    mu, sd = y[:1200].mean(), y[:1200].std()
    found = run("regression", (x[:1200] - mu) / sd, (y[:1200] - mu) / sd, x_val=x[1200:], y_val=y[1200:])
    (finding,) = [f for f in found if f.code == "validation-target-range"]
    assert "more than the whole training range" in finding.message and "look sorted" not in finding.message
    assert "(y_val - y_mean) / y_std" in finding.advice and "permutation" not in finding.advice
    assert finding.evidence["gap"] > 2.0
    # Split by time and scaled alike, the validation rows continue the training range: no gap.
    found = run("regression", (x[:1200] - mu) / sd, (y[:1200] - mu) / sd, x_val=(x[1200:] - mu) / sd, y_val=(y[1200:] - mu) / sd)
    assert all("more than the whole training range" not in f.message for f in found)


def test_validation_target_range_counts_ties_at_the_edge_of_the_training_range():
    # Count targets of 94% zeros: 20 validation zeros lay "below" training's 0..3 at 6 of 20
    # random splits, told a chance of 4e-21; a random split draws them about 1 time in 4.
    y = np.zeros((100, 1), dtype="float32")
    y[[3, 17, 42, 55, 71, 77]] = [[1.0], [2.0], [1.0], [3.0], [1.0], [2.0]]
    assert "validation-target-range" not in codes(run("regression", X[:80], y[:80], x_val=X[80:100], y_val=y[80:]))
    # Sorted ratings with ties at the edge still are: the validation rows all 5, 30 of 100 rows.
    ratings = np.repeat([1.0, 2.0, 3.0, 4.0, 5.0], [10, 20, 20, 20, 30]).astype("float32").reshape(-1, 1)
    assert "validation-target-range" in codes(run("regression", X[:80], ratings[:80], x_val=X[80:100], y_val=ratings[80:]))


def test_validation_target_range_names_validation_split_only_where_it_held_the_rows_out():
    # validation_data the caller cut from sorted rows was told "fit(validation_split=...) holds out
    # the LAST rows", an argument the fit never had.
    y = X[:, 0] + 0.1 * X[:, 1]
    order = np.argsort(y)
    ys = y[order].reshape(-1, 1)
    for split_at, said in ((None, "cut from rows in target order"), (480, "validation_split=...) holds out the LAST rows")):
        (finding,) = [f for f in run("regression", X[order][:480], ys[:480], x_val=X[order][480:], y_val=ys[480:], split_at=split_at)
                      if f.code == "validation-target-range"]
        assert said in finding.message and ("validation_split" in finding.message) == (split_at is not None)


def test_few_training_rows_warn_from_under_20_rows_and_say_how_many_are_held_out():
    # 4 or 10 training rows (data.rows=5, validation_split=0.99) were "ok".
    assert YB[:19].min() == 0 and YB[:19].max() == 1
    (finding,) = run("binary", X[:19], YB[:19], x_val=X[19:], y_val=YB[19:])
    assert finding.code == "few-training-rows" and finding.severity == "warning"
    assert "only 19 rows (581 more rows are held out for validation), fewer than 20" in finding.message
    assert "validation_split" in finding.advice
    assert run("binary", X[:20], YB[:20]) == []


def test_few_training_rows_asks_for_two_rows_per_class_of_a_wide_classifier():
    wide = keras.Sequential([keras.Input((4,)), L.Dense(15, activation="softmax")])
    y = np.arange(25) % 15
    (finding,) = check_data(X[:25], y, model=wide, loss=get_loss("scce"), task="multiclass")
    assert finding.code == "few-training-rows" and "fewer than 30 for 15 classes" in finding.message
    assert check_data(X[:30], np.arange(30) % 15, model=wide, loss=get_loss("scce"), task="multiclass") == []


def test_a_batch_size_of_twice_the_training_rows_or_more_warns_that_an_epoch_is_one_step():
    (finding,) = run("binary", X, YB, batch_size=100_000)
    assert finding.code == "batch-larger-than-data" and finding.severity == "warning"
    assert "600 training rows" in finding.message and "single step" in finding.message
    assert "such as 32" in finding.advice
    # Full batch over the rows before a 20% validation split (batch 100, 80 training rows) is a
    # deliberate choice of shipped recipes; a dataset brings its own batches.
    assert run("binary", X, YB, batch_size=2 * len(X) - 1) == []
    assert run("binary", X, YB, batch_size=None) == []
    assert run("binary", tf.data.Dataset.from_tensor_slices((X, YB)).batch(32), None, batch_size=100_000) == []


def test_few_rows_with_a_default_batch_size_are_told_to_get_rows_not_a_smaller_batch():
    assert codes(run("binary", X[:12], YB[:12], batch_size=32)) == ["few-training-rows"]


def test_class_imbalance_is_silent_when_the_row_weights_already_balance_the_classes():
    # It advised "Pass class_weight={...}" to a run passing exactly that class_weight.
    y = np.zeros(len(X), dtype=int)
    y[:30] = 1  # 5%
    balanced = np.where(y == 1, 10.0, 0.53)
    assert run("binary", X, y, sample_weight=balanced) == []
    assert codes(run("binary", X, y, sample_weight=np.ones(len(y)))) == ["class-imbalance"]
    ym = YM.copy()
    ym[np.flatnonzero(ym == 2)[5:]] = 1  # class 2 keeps 5 rows
    counts = np.bincount(ym)
    assert run("multiclass", X, ym, sample_weight=len(ym) / (len(counts) * counts[ym])) == []


def test_class_imbalance_reads_the_weights_a_dataset_carries():
    # A dataset of (x, y, w) (and fit's class_weight, which it folds into the dataset) still got
    # the advice to pass class_weight: only in-memory weights reached the check.
    y = np.zeros(len(X), dtype=int)
    y[::20] = 1  # 5%, spread over every batch
    balanced = np.where(y == 1, 10.0, 0.53).astype("float32")
    assert run("binary", tf.data.Dataset.from_tensor_slices((X, y, balanced)).batch(32), None) == []
    assert codes(run("binary", tf.data.Dataset.from_tensor_slices((X, y)).batch(32), None)) == ["class-imbalance"]


def test_a_dataset_of_rows_sorted_by_label_is_unshuffled_not_imbalanced():
    # Three balanced classes sorted by label and batched without .shuffle(): the first 8 batches
    # held 234 rows of class 0 and 22 of class 1, told "imbalanced", with class weights to pass.
    order = np.argsort(YM, kind="stable")
    (finding,) = run("multiclass", tf.data.Dataset.from_tensor_slices((X[order], YM[order])).batch(32), None)
    assert finding.code == "unshuffled-dataset" and ".shuffle(" in finding.advice
    assert finding.evidence["first_change_row"] == int(np.sum(YM == 0))
    shuffled = tf.data.Dataset.from_tensor_slices((X[order], YM[order])).shuffle(len(X), seed=0).batch(32)
    assert run("multiclass", shuffled, None) == []
    # 5% positives with one last by chance is no sorted order; numpy rows are shuffled by fit.
    y = np.zeros(256, dtype=int)
    y[-1] = 1
    assert "unshuffled-dataset" not in codes(run("binary", tf.data.Dataset.from_tensor_slices((X[:256], y)).batch(32), None))
    assert "unshuffled-dataset" not in codes(run("multiclass", X[order], YM[order]))


class SortedRows(keras.utils.PyDataset):
    """A PyDataset of rows in the order given, 32 a batch, that never shuffles them."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__()
        self.x, self.y = x, y

    def __len__(self) -> int:
        return -(-len(self.x) // 32)

    def __getitem__(self, i: int):
        return self.x[i * 32 : (i + 1) * 32], self.y[i * 32 : (i + 1) * 32]


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_pydataset_of_rows_sorted_by_label_is_told_to_shuffle_its_rows_not_a_pipeline(shuffle):
    # The advice was tf.data's, "dataset.shuffle(n_rows, ...).batch(...)", for a PyDataset that has
    # no pipeline: the fix is in its own __getitem__ (fit's shuffle reorders whole batches only).
    from trainkit import Trainer

    order = np.argsort(YM, kind="stable")
    data = SortedRows(X[order], YM[order])
    (finding,) = run("multiclass", data, None)
    assert finding.code == "unshuffled-dataset" and "SortedRows" in finding.advice and "dataset.shuffle(" not in finding.advice
    trainer = Trainer(model("multiclass"), loss=LOSS["multiclass"], task="multiclass", optimizer="sgd", seed=0)
    trainer.fit(data, epochs=1, shuffle=shuffle, verbose=0)
    (finding,) = [f for f in trainer.findings if f.code == "unshuffled-dataset"]
    assert "permutation of the row indices" in finding.advice and "dataset.shuffle(" not in finding.advice
    assert ("fit's shuffle=True" in finding.message) == shuffle


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sorted_rows_batched_before_a_shuffle_are_unshuffled_not_imbalanced(seed):
    # dataset.batch(32).shuffle(...) on rows sorted by label: the batches come in a random order,
    # each one class's, so the labels ran in no class order and got no word, or (64 rows of class
    # 0, 192 of class 1, none of class 2) "imbalanced", with class weights for balanced classes.
    order = np.argsort(YM, kind="stable")
    rows = tf.data.Dataset.from_tensor_slices((X[order], YM[order]))
    # The batch order comes from the op seed and the global one, which earlier tests leave as they
    # will: under some, both batches where the sorted rows change class fall among the 8 read
    # (about 1 order in 6 for 19 batches), which the rule does not call one class a batch.
    tf.random.set_seed(3)
    (finding,) = run("multiclass", rows.batch(32).shuffle(100, seed=seed), None)
    assert finding.code == "unshuffled-dataset" and "one class a batch" in finding.message
    assert finding.evidence["one_class_batches"] >= finding.evidence["batches"] - 1
    assert ".shuffle(n_rows" in finding.advice
    # Shuffled before batching; unshuffled rows in a random order; 5% positives in random batches.
    assert run("multiclass", rows.shuffle(len(X), seed=seed).batch(32), None) == []
    mixed = np.random.default_rng(seed).permutation(len(X))
    assert run("multiclass", tf.data.Dataset.from_tensor_slices((X[mixed], YM[mixed])).batch(32), None) == []
    y = (np.random.default_rng(seed).random(len(X)) < 0.05).astype(int)
    assert "unshuffled-dataset" not in codes(run("binary", tf.data.Dataset.from_tensor_slices((X, y)).batch(32), None))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_large_dataset_sorted_by_label_whose_first_batches_hold_one_class_is_unshuffled(seed):
    # 20,000 rows of 3 classes sorted by label and batched without .shuffle(): the 8 batches the
    # checks read were all class 0, which no class order shows, and the run got no word.
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(20000, 4)).astype("float32")
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)
    order = np.argsort(y, kind="stable")
    rows = tf.data.Dataset.from_tensor_slices((x[order], y[order]))
    (finding,) = run("multiclass", rows.batch(32), None)
    assert finding.code == "unshuffled-dataset" and "no .shuffle()" in finding.message
    # The labels past the 8 batches are read too (2,048 rows more): still class 0.
    assert finding.evidence["class"] == 0 and finding.evidence["rows"] == 256 + 2048
    # The same rows shuffled, or left in a random order; and one class that is the whole dataset.
    assert run("multiclass", rows.shuffle(20000, seed=seed).batch(32), None) == []
    mixed = rng.permutation(len(x))
    assert run("multiclass", tf.data.Dataset.from_tensor_slices((x[mixed], y[mixed])).batch(32), None) == []
    whole = tf.data.Dataset.from_tensor_slices((x[:256], np.zeros(256, dtype=int))).batch(32)
    assert "unshuffled-dataset" not in codes(run("multiclass", whole, None))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_rare_class_that_the_first_batches_missed_is_no_sorted_dataset(seed):
    # 0.5% positives in a random order, never shuffled: the first 256 rows hold none 28% of the
    # time, and were told "the rows look sorted by label". The labels further on hold positives
    # at the rate of the whole: no sorted block.
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(20000, 4)).astype("float32")
    y = (rng.random(20000) < 0.005).astype(int)
    y[:300] = 0  # the first batches, and a little more, without a positive
    y[rng.integers(300, 320)] = 1
    found = run("binary", tf.data.Dataset.from_tensor_slices((x, y)).batch(32), None)
    assert "unshuffled-dataset" not in codes(found)
    # A short sorted block, 400 rows of class 0 and then the rest class 1, is one.
    y = (np.arange(20000) >= 400).astype(int)
    (finding,) = [f for f in run("binary", tf.data.Dataset.from_tensor_slices((x, y)).batch(32), None) if f.code == "unshuffled-dataset"]
    assert finding.evidence["rows"] == 400 and "first 400 labels" in finding.message


@pytest.mark.parametrize("as_dict", [True, False])
def test_a_rare_class_the_first_batches_missed_is_no_sorted_dataset_beside_another_output(as_dict):
    # 1% positives in a random order, none in the first 300 rows, for a model with a classifier
    # and a regression output: the labels further on came as a dict, were not read, and the run
    # was told "Every label of y['cls'] in the first 8 batches is class 0 ... the rows look
    # sorted by label" (a single-output model's same rows stayed silent).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 6)).astype("float32")
    y = np.zeros(5000, "float32")
    y[rng.choice(np.arange(300, 5000), 50, replace=False)] = 1
    r = rng.normal(size=(5000, 1)).astype("float32")
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = [keras.layers.Dense(1, activation="sigmoid", name="cls")(hidden), keras.layers.Dense(1, name="reg")(hidden)]
    model = keras.Model(inputs, dict(zip(("cls", "reg"), outputs, strict=True)) if as_dict else outputs)
    loss, task = {"cls": "binary_crossentropy", "reg": "mse"}, {"cls": "binary", "reg": "regression"}

    def found(labels: np.ndarray) -> list:
        targets = {"cls": labels, "reg": r} if as_dict else (labels, r)
        return [f for f in check_data(tf.data.Dataset.from_tensor_slices((x, targets)).batch(32), None, model=model, loss=loss, task=task)
                if f.code == "unshuffled-dataset"]

    assert found(y) == []
    # A sorted block, 400 rows of class 0 and then the rest class 1, is still named.
    (finding,) = found((np.arange(5000) >= 400).astype("float32"))
    assert finding.evidence["rows"] == 400 and "first 400 labels of y['cls']" in finding.message


def test_a_dataset_sorted_by_label_is_no_label_leak_of_few_values():
    # Sorted digits' first batches hold 0s and 1s only, and a pixel of 12 values told them apart:
    # "probably the label leaking", for a feature that separates no two classes of the data.
    rng = np.random.default_rng(0)
    x = X.copy()
    x[:, 3] = np.where(YM == 0, rng.integers(0, 6, len(x)), rng.integers(6, 12, len(x)))  # classes 1 and 2 share theirs
    order = np.argsort(YM, kind="stable")
    sorted_rows = tf.data.Dataset.from_tensor_slices((x[order], YM[order])).batch(32)
    assert codes(run("multiclass", sorted_rows, None)) == ["unshuffled-dataset"]
    # A copy of the label is a leak in any order.
    x[:, 3] = YM
    sorted_rows = tf.data.Dataset.from_tensor_slices((x[order], YM[order])).batch(32)
    assert "label-leakage" in codes(run("multiclass", sorted_rows, None))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("labels", ["random", "learnable"])
@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_calibration_no_warning_on_healthy_data(seed, labels, kind):
    rng = np.random.default_rng(100 + seed)
    x, x_val = std_x(2000, 4, seed), std_x(500, 4, seed + 50)
    if kind == "regression":
        y = rng.standard_normal(2000) if labels == "random" else x @ np.array([0.8, -0.5, 0.3, 0.1]) + 0.1 * rng.standard_normal(2000)
    elif kind == "binary":
        y = rng.integers(0, 2, 2000) if labels == "random" else binary_y(x)
    else:
        y = rng.integers(0, 3, 2000) if labels == "random" else np.digitize(x[:, 0] - x[:, 1], [-0.6, 0.6])
    assert run(kind, x, y, x_val=x_val) == []


# --- tf.data and other sources ---------------------------------------------------------------

def test_dataset_sample_is_checked_and_bounded():
    x = _nan_x()
    ds = tf.data.Dataset.from_tensor_slices((x, YB)).batch(32)
    with pytest.raises(DataError) as info:
        run("binary", ds, None)
    assert info.value.code == "non-finite-data" and "in the first 8 batches" in info.value.message
    late = X.copy()
    late[500, 0] = np.nan  # batch 15: beyond the 8 sampled batches
    ds_late = tf.data.Dataset.from_tensor_slices((late, YB)).batch(32)
    assert run("binary", ds_late, None) == []
    with pytest.raises(DataError):
        run("binary", ds_late, None, sample_batches=16)


def test_batches_already_read_are_checked_as_their_dataset():
    """The trainer checks the batches it sampled from a dataset (DatasetSample) instead of the
    dataset: the same findings, bounded the same way, for batched and unbatched elements alike."""

    def sample(ds):
        return DatasetSample(list(ds.take(16 * 64)), ds.element_spec)

    bad = tf.data.Dataset.from_tensor_slices((_nan_x(), YB)).batch(32)
    with pytest.raises(DataError) as info:
        run("binary", sample(bad), None)
    assert info.value.code == "non-finite-data" and "in the first 8 batches" in info.value.message
    late = X.copy()
    late[500, 0] = np.nan  # batch 15: beyond the 8 checked batches
    late_sample = sample(tf.data.Dataset.from_tensor_slices((late, YB)).batch(32))
    assert run("binary", late_sample, None) == []
    with pytest.raises(DataError):
        run("binary", late_sample, None, sample_batches=16)
    unbatched = tf.data.Dataset.from_tensor_slices((X, YB + 1))
    with pytest.raises(DataError) as info:
        run("binary", sample(unbatched), None)
    assert info.value.code == "label-format"
    good = tf.data.Dataset.from_tensor_slices((X, YB)).batch(32)
    assert run("binary", sample(good), None, x_val=sample(good.skip(2))) == run("binary", good, None, x_val=good.skip(2))


def test_dataset_is_not_consumed_and_weights_are_accepted():
    calls = []

    def gen():
        for i in range(0, len(X), 100):
            calls.append(i)
            yield X[i:i + 100], YB[i:i + 100], np.ones(len(YB[i:i + 100]), "float32")

    sig = (tf.TensorSpec((None, 4), tf.float32), tf.TensorSpec((None,), tf.int64), tf.TensorSpec((None,), tf.float32))
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
    it = iter(ds)
    first = next(it)
    assert run("binary", ds, None, sample_batches=2) == []
    second = next(it)  # the user's iterator goes on where it was
    np.testing.assert_array_equal(first[0].numpy(), X[:100])
    np.testing.assert_array_equal(second[0].numpy(), X[100:200])
    with pytest.raises(DataError) as info:
        run("binary", ds.map(lambda a, b, w: (a, b + 1, w)), None)
    assert info.value.code == "label-format"


def test_unbatched_dataset_and_python_iterator():
    ds = tf.data.Dataset.from_tensor_slices((X, YB + 1))
    with pytest.raises(DataError) as info:
        run("binary", ds, None)
    assert info.value.code == "label-format"
    it = iter([(X[:10], YB[:10])])
    (finding,) = run("binary", it, None)
    assert finding.code == "data-not-inspectable" and finding.severity == "info"
    assert next(it)[0].shape == (10, 4)


def test_several_outputs_take_labels_by_name():
    inp = keras.Input((4,))
    h = L.Dense(8, activation="relu")(inp)
    net = keras.Model(inp, {"cls": L.Dense(3, activation="softmax", name="cls")(h), "reg": L.Dense(1, name="reg")(h)})
    losses = {"cls": get_loss("scce"), "reg": get_loss("mse")}
    assert check_data(X, {"cls": YM, "reg": YR}, model=net, loss=losses, task="multiclass") == []
    with pytest.raises(DataError) as info:
        check_data(X, {"cls": YM + 1, "reg": YR}, model=net, loss=losses, task="multiclass")
    assert info.value.code == "label-format" and "y['cls']" in info.value.message


def test_labels_numbered_from_one_are_named_as_such():
    # Classes 1..2 for a 3-unit softmax: the imbalance message listed "class 0: 0" among the
    # rarest classes instead of saying why class 0 has no rows.
    y = np.where(YM == 0, 1, YM)
    (finding,) = [f for f in run("multiclass", X, y) if f.code == "class-imbalance"]
    assert "numbered from 1" in finding.message and "y = y - 1" in finding.advice
    assert finding.evidence["absent"] == [0]


def test_token_ids_fed_to_an_embedding_are_not_unscaled_features():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 50, size=(64, 8)).astype("int32")
    y = rng.integers(0, 2, size=(64, 1)).astype("float32")
    text = keras.Sequential([keras.Input((8,), dtype="int32"), keras.layers.Embedding(50, 4), keras.layers.GlobalAveragePooling1D(),
                             keras.layers.Dense(1, activation="sigmoid")])
    assert "unscaled-inputs" not in codes(check_data(tokens, y, model=text, loss=get_loss("bce"), task="binary"))
    # Two inputs: the token ids are exempt, the raw amounts beside them are not.
    tok_in, num_in = keras.Input((8,), dtype="int32", name="tok"), keras.Input((3,), name="num")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(50, 4)(tok_in))
    both = keras.Model([tok_in, num_in], keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([pooled, num_in])))
    amounts = rng.normal(1000.0, 300.0, size=(64, 3)).astype("float32")
    (finding,) = [f for f in check_data({"tok": tokens, "num": amounts}, y, model=both, loss=get_loss("bce"), task="binary") if f.code == "unscaled-inputs"]
    # Named by the key it was given under (it said x[1], its place in the model's inputs, and
    # advised the Python-less x[1]_train.mean(axis=0)).
    assert "x['num']" in finding.message and "x_train['num'].mean(axis=0)" in finding.advice
    # Ids reshaped (or flattened) on their way to the Embedding are ids too: they were told "not scaled".
    ids_in = keras.Input((1,), dtype="int32", name="ids")
    looked_up = keras.layers.Flatten()(keras.layers.Embedding(900, 4)(keras.layers.Reshape((1,))(ids_in)))
    reshaped = keras.Model([ids_in, num_in], keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([looked_up, num_in])))
    ids = rng.integers(0, 900, size=(64, 1)).astype("int32")
    found = [f for f in check_data({"ids": ids, "num": amounts}, y, model=reshaped, loss=get_loss("bce"), task="binary") if f.code == "unscaled-inputs"]
    assert [f.evidence["input"] for f in found] == [1] and "x['num']" in found[0].message
    # So are ids cast by a keras.ops call (an op of the graph, not a layer), and an id past the table is an error.
    cast = keras.layers.Flatten()(keras.layers.Embedding(900, 4)(keras.ops.cast(ids_in, "int32")))
    casting = keras.Model([ids_in, num_in], keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([cast, num_in])))
    found = [f for f in check_data({"ids": ids, "num": amounts}, y, model=casting, loss=get_loss("bce"), task="binary") if f.code == "unscaled-inputs"]
    assert [f.evidence["input"] for f in found] == [1]
    with pytest.raises(DataError) as info:
        check_data({"ids": ids + 500, "num": amounts}, y, model=casting, loss=get_loss("bce"), task="binary")
    assert info.value.code == "embedding-ids"
    # ... and a Normalization never adapted behind a Dropout is still read as the values it passes on.
    dropped = keras.layers.Normalization()(keras.layers.Dropout(0.1)(num_in))
    behind = keras.Model([tok_in, num_in], keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([pooled, dropped])))
    (finding,) = [f for f in check_data({"tok": tokens, "num": amounts}, y, model=behind, loss=get_loss("bce"), task="binary") if f.code == "unscaled-inputs"]
    assert "after the Normalization layer" in finding.message and ".adapt(x_train['num'])" in finding.advice


def test_ids_through_a_lambda_into_an_embedding_are_not_unscaled_features():
    # Ids 0..9999 through a Lambda into an Embedding were told "not scaled (|mean| ~5000)": what a
    # Lambda hands an Embedding is read as ids. Floats through a Lambda into a Dense still are features.
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 10000, size=(64, 5)).astype("int32")
    y = rng.integers(0, 2, size=(64, 1)).astype("float32")
    amounts = rng.normal(5000.0, 1000.0, size=(64, 5)).astype("float32")
    lookup = [keras.layers.Embedding(10000, 4), keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid")]
    seq = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Lambda(lambda t: t), *lookup])
    assert "unscaled-inputs" not in codes(check_data(ids, y, model=seq, loss=get_loss("bce"), task="binary"))
    ids_in = keras.Input((5,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(10000, 4)(keras.layers.Lambda(lambda t: t)(ids_in)))
    func = keras.Model(ids_in, keras.layers.Dense(1, activation="sigmoid")(pooled))
    assert "unscaled-inputs" not in codes(check_data(ids, y, model=func, loss=get_loss("bce"), task="binary"))
    dense = keras.Sequential([keras.Input((5,)), keras.layers.Lambda(lambda t: t), keras.layers.Dense(1, activation="sigmoid")])
    assert "unscaled-inputs" in codes(check_data(amounts, y, model=dense, loss=get_loss("bce"), task="binary"))
    num_in = keras.Input((5,))
    dense_branch = keras.layers.Dense(4)(keras.layers.Lambda(lambda t: t)(num_in))
    both = keras.Model([ids_in, num_in], keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([pooled, dense_branch])))
    found = [f for f in check_data([ids, amounts], y, model=both, loss=get_loss("bce"), task="binary") if f.code == "unscaled-inputs"]
    assert [f.evidence["input"] for f in found] == [1]


@pytest.mark.parametrize("classes", [2, 3, 10, 100])  # sorted sums for any count (a one-hot product was up to 64)
def test_class_sums_of_the_separation_screen(classes):
    from trainkit.checks.leakage_checks import _class_sums

    rng = np.random.default_rng(classes)
    xs = rng.standard_normal((4 * classes, 5))
    inverse = rng.permutation(np.arange(4 * classes) % classes)  # classes interleaved, as rows come
    expected = np.stack([xs[inverse == c].sum(axis=0) for c in range(classes)])
    np.testing.assert_allclose(_class_sums(xs, inverse, classes), expected, rtol=1e-12, atol=1e-12)
    xs = rng.standard_normal((4 * classes, 5))
    inverse = np.concatenate([np.arange(classes), rng.integers(0, classes, 3 * classes)])  # every class present
    expected = np.stack([xs[inverse == c].sum(axis=0) for c in range(classes)])
    np.testing.assert_allclose(_class_sums(xs, inverse, classes), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("functional", [False, True])
@pytest.mark.parametrize("reshaped", [False, True])
@pytest.mark.parametrize(("shift", "words"), [(-5, "holds ids -5..4, but the Embedding"), (20, "holds ids 20..29"), (0.5, "holds non-integer values")])
def test_ids_an_embedding_cannot_look_up_are_an_error(functional, reshaped, shift, words):
    # Negative and fractional ids trained in silence (on rows of zeros, or rounded); ids past the
    # table failed in the first step's GatherV2 (reshaped on their way to the Embedding, still).
    ids = np.random.default_rng(0).integers(0, 10, (64, 5))
    moves = [keras.layers.Reshape((5, 1)), keras.layers.Flatten()] if reshaped else []
    if functional:
        inputs = keras.Input((5,), dtype="int32")
        moved = functools.reduce(lambda t, layer: layer(t), moves, inputs)
        net = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(keras.layers.Embedding(10, 2)(moved))))
    else:
        net = keras.Sequential([keras.Input((5,), dtype="int32"), *moves, keras.layers.Embedding(10, 2), keras.layers.Flatten(),
                                keras.layers.Dense(1, activation="sigmoid")])
    y = (ids[:, :1] > 4).astype("float32")
    assert check_data(ids, y, model=net, loss=get_loss("binary_crossentropy"), task="binary") == []
    with pytest.raises(DataError) as info:
        check_data(ids + shift, y, model=net, loss=get_loss("binary_crossentropy"), task="binary")
    assert info.value.code == "embedding-ids" and words in info.value.message


@pytest.mark.parametrize("inputs", [1, 2])
def test_ids_read_by_an_embedding_inside_a_nested_encoder_are_ids(inputs):
    # A functional model calling a nested Sequential encoder (Embedding(mask_zero=True) +
    # GlobalAveragePooling1D): the input's readers were looked for among the encoder's layers,
    # whose calls read the encoder's own Input, so the Embedding read no ids. A first token that
    # tells the intent ("play ...", "set ...") was a label-leakage warning, a 0 between the
    # tokens went without masked-ids-inside, and ids past the table trained until the step
    # failed (told "the checks read only a dataset's first batches", of numpy arrays).
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    ids = rng.integers(10, 40, size=(300, 8)).astype("int32")
    ids[:, 0] = 1 + 3 * y + rng.integers(0, 3, 300)  # each first token belongs to one class
    ids[:, 6:] = 0  # padded at the end
    encoder = keras.Sequential([keras.Input((8,), dtype="int32"), L.Embedding(40, 4, mask_zero=True), L.GlobalAveragePooling1D()])
    tokens = keras.Input((8,), dtype="int32", name="tokens")
    if inputs == 1:
        net = keras.Model(tokens, L.Dense(3, activation="softmax")(encoder(tokens)))
        x = lambda ids: ids  # noqa: E731
    else:  # the encoder reads the second of two inputs, beside scaled amounts
        amounts = keras.Input((2,), name="amounts")
        pooled = L.Concatenate()([amounts, encoder(tokens)])
        net = keras.Model([amounts, tokens], L.Dense(3, activation="softmax")(pooled))
        scaled = rng.normal(size=(300, 2)).astype("float32")
        x = lambda ids: {"amounts": scaled, "tokens": ids}  # noqa: E731
    loss = get_loss("sparse_categorical_crossentropy")
    assert codes(check_data(x(ids), y, model=net, loss=loss, task="multiclass")) == []
    inside = ids.copy()
    inside[:, 2] = 0
    assert "masked-ids-inside" in codes(check_data(x(inside), y, model=net, loss=loss, task="multiclass"))
    with pytest.raises(DataError) as info:
        check_data(x(ids + 5), y, model=net, loss=loss, task="multiclass")
    assert info.value.code == "embedding-ids" and "Embedding(input_dim=45" in info.value.message


def test_validation_ids_an_embedding_cannot_look_up_are_an_error():
    # Only x was checked: ids past the table in validation_data trained a whole epoch, then
    # crashed the validation pass in TensorFlow's GatherV2.
    ids = np.random.default_rng(0).integers(0, 10, (64, 5))
    net = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(10, 2), keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    y = (ids[:, :1] > 4).astype("float32")
    with pytest.raises(DataError) as info:
        check_data(ids, y, model=net, loss=get_loss("binary_crossentropy"), task="binary", x_val=ids + 3, y_val=y)
    assert info.value.code == "embedding-ids" and "x_val holds ids 3..12" in info.value.message


@pytest.mark.parametrize("mask_zero", [False, True])
def test_the_ids_of_a_two_input_model_are_not_told_to_be_scaled(mask_zero):
    # Embedding(mask_zero=True) adds an op to the functional graph (ids != 0, its mask) that reads
    # the ids beside the Embedding: taken for a reader of their scale, x['tokens'] (ids 1..299) was
    # told "not scaled (|mean| 152 / std 101.5)" and to standardise its token ids.
    rng = np.random.default_rng(0)
    ids = np.where(np.arange(20)[None] < rng.integers(3, 20, size=(200, 1)), rng.integers(1, 300, size=(200, 20)), 0)
    tokens, num = keras.Input((20,), dtype="int32", name="tokens"), keras.Input((3,), name="num")
    pooled = L.GlobalAveragePooling1D()(L.Embedding(300, 8, mask_zero=mask_zero)(tokens))
    net = keras.Model([tokens, num], L.Dense(1, activation="sigmoid")(L.Concatenate()([pooled, num])))
    found = check_data({"tokens": ids, "num": std_x(200, 3)}, (ids[:, 0] % 2).astype("float32"), model=net,
                       loss=get_loss("binary_crossentropy"), task="binary")
    assert "unscaled-inputs" not in codes(found)
    # Raw values into the other input are still told.
    found = check_data({"tokens": ids, "num": 1000 + 100 * std_x(200, 3)}, (ids[:, 0] % 2).astype("float32"), model=net,
                       loss=get_loss("binary_crossentropy"), task="binary")
    assert "unscaled-inputs" in codes(found)


def test_negative_ids_are_not_told_to_grow_the_table():
    # -1 padding into Embedding(10): the advice read "Use Embedding(input_dim=10, ...) if there are
    # 10 ids", the size the table had, which no input_dim could fix.
    ids = np.random.default_rng(0).integers(0, 10, (64, 5))
    ids[:, 4] = -1
    net = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(10, 2), keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(DataError) as info:
        check_data(ids, (ids[:, :1] > 4).astype("float32"), model=net, loss=get_loss("binary_crossentropy"), task="binary")
    assert info.value.code == "embedding-ids" and "holds ids -1..9" in info.value.message
    assert "input_dim=10," not in info.value.message and "x + 1" in info.value.message and "input_dim=11" in info.value.message
    # Keras reads -1 as the table's last row (model.fit trains on it): it was said to fail in TensorFlow.
    net(ids)
    assert "fails" not in info.value.message and "-1 is row 9" in info.value.message


@pytest.mark.parametrize("functional", [False, True])
@pytest.mark.parametrize("kind", ["TextVectorization", "StringLookup"])
def test_a_lookup_vocabulary_past_the_embedding_table_is_an_error(functional, kind):
    # The ids are made inside the model, out of the id check's sight: a TextVectorization adapted
    # to 30 tokens before Embedding(20) trained until a batch held id 23, then was told of "a batch
    # read during training" past "a dataset's first batches", for numpy texts.
    words = np.array([f"w{i}" for i in range(28)])
    texts = np.array([" ".join(words[np.arange(i, i + 4) % 28]) for i in range(64)])
    if kind == "TextVectorization":
        lookup, x, shape = keras.layers.TextVectorization(max_tokens=50, output_sequence_length=4), texts, (1,)
    else:
        lookup, x, shape = keras.layers.StringLookup(mask_token=""), np.stack([t.split() for t in texts]), (4,)
    lookup.adapt(x)
    assert lookup.vocabulary_size() == 30

    def net(dim: int) -> keras.Model:
        layers = [lookup, keras.layers.Dropout(0.1), keras.layers.Embedding(dim, 2), keras.layers.GlobalAveragePooling1D(),
                  keras.layers.Dense(1, activation="sigmoid")]
        if not functional:
            return keras.Sequential([keras.Input(shape, dtype="string"), *layers])
        inputs = keras.Input(shape, dtype="string")
        return keras.Model(inputs, functools.reduce(lambda t, layer: layer(t), layers, inputs))

    y = (np.arange(64) % 2).astype("float32")
    with pytest.raises(DataError) as info:
        check_data(x, y, model=net(20), loss=get_loss("binary_crossentropy"), task="binary")
    assert info.value.code == "embedding-ids"
    assert f"The {kind} '{lookup.name}' gives ids 0..29" in info.value.message and "has 20 rows" in info.value.message
    assert f"Embedding(input_dim={lookup.name}.vocabulary_size(), ...) (30)" in info.value.message and "max_tokens=20" in info.value.message
    assert "embedding-ids" not in codes(check_data(x, y, model=net(30), loss=get_loss("binary_crossentropy"), task="binary"))


@pytest.mark.parametrize("kind", ["TextVectorization", "StringLookup"])
def test_a_lookup_layer_never_adapted_is_an_error(kind):
    # Its table is empty: fit failed while the step was traced, with TensorFlow's "Table not
    # initialized" from inside trainkit's probe, naming neither the layer nor adapt().
    texts = np.array([f"w{i % 7} w{i % 5} w{i % 3}" for i in range(64)])
    if kind == "TextVectorization":
        vectorize, shape = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=3), (1,)
    else:
        vectorize, shape, texts = keras.layers.StringLookup(), (3,), np.stack([t.split() for t in texts])
    net = keras.Sequential([keras.Input(shape, dtype="string"), vectorize, keras.layers.Embedding(20, 2), keras.layers.GlobalAveragePooling1D(),
                            keras.layers.Dense(1, activation="sigmoid")])
    y = (np.arange(64) % 2).astype("float32")
    with pytest.raises(DataError) as info:
        check_data(texts, y, model=net, loss=get_loss("binary_crossentropy"), task="binary")
    assert info.value.code == "lookup-not-adapted"
    assert f"The {kind} '{vectorize.name}' holds no vocabulary" in info.value.message
    assert f"{vectorize.name}.adapt(x_train)" in info.value.message
    with pytest.raises(DataError, match="lookup-not-adapted"):  # nor can it evaluate
        check_data(texts, y, model=net, loss=get_loss("binary_crossentropy"), task="binary", evaluation=True)
    vectorize.adapt(texts)
    assert "lookup-not-adapted" not in codes(check_data(texts, y, model=net, loss=get_loss("binary_crossentropy"), task="binary"))
    given = keras.layers.StringLookup(vocabulary=["a", "b"])  # a vocabulary given is one to look up
    net = keras.Sequential([keras.Input((3,), dtype="string"), given, keras.layers.Embedding(4, 2), keras.layers.GlobalAveragePooling1D(),
                            keras.layers.Dense(1, activation="sigmoid")])
    assert "lookup-not-adapted" not in codes(check_data(np.array([["a", "b", "c"]] * 64), y, model=net,
                                                        loss=get_loss("binary_crossentropy"), task="binary"))


@pytest.mark.parametrize("dataset", [False, True])
def test_text_labels_are_named_and_told_how_to_encode_them_where_they_are(dataset):
    # 'pos'/'neg' labels were "object values" and, read from a dataset's batches, told numpy's
    # np.unique, which cannot reach them there.
    labels = np.where(YB == 1, "pos", "neg")
    y = tf.data.Dataset.from_tensor_slices((X, labels)).batch(32) if dataset else labels
    with pytest.raises(DataError) as info:
        check_data(y if dataset else X, None if dataset else y, model=model("binary"), loss=get_loss("bce"), task="binary")
    assert info.value.code == "label-format" and "holds text labels ('neg', 'pos'), not numbers" in info.value.message
    if dataset:
        assert "np.unique" not in info.value.message
        assert "StringLookup(vocabulary=['neg', 'pos'], num_oov_indices=0)" in info.value.message
        assert "dataset.map(lambda x, y, *w: (x, lookup(y), *w))" in info.value.message
    else:
        assert "np.unique(y, return_inverse=True)" in info.value.message


@pytest.mark.parametrize("weighted", [False, True])
def test_the_string_lookup_map_told_for_a_datasets_text_labels_runs(weighted):
    # The map told was lambda x, y: (x, lookup(y)), a TypeError on a dataset of (x, y, sample_weight).
    labels = np.where(YB == 1, "pos", "neg")
    parts = (X, labels, np.ones(len(X), "float32")) if weighted else (X, labels)
    dataset = tf.data.Dataset.from_tensor_slices(parts).batch(16)
    with pytest.raises(DataError) as info:
        check_data(dataset, None, model=model("binary"), loss=get_loss("bce"), task="binary")
    message = info.value.message
    lookup = eval(re.search(r"lookup = (keras\.layers\.StringLookup\(.*?\))\s\(", message).group(1))
    mapped = eval(re.search(r"(dataset\.map\(lambda .*?\)\)) \(", message).group(1), {"dataset": dataset, "lookup": lookup})
    batch = next(iter(mapped))
    assert len(batch) == len(parts) and batch[1].numpy().tolist() == (YB[:16] == 1).astype(int).tolist()
    assert "label-format" not in codes(check_data(mapped, None, model=model("binary"), loss=get_loss("bce"), task="binary"))


@pytest.mark.parametrize(("length", "padding", "mask_zero", "reader", "told"), [
    (200, "pre", False, "pool", True), (200, "post", False, "pool", True), (200, "pre", True, "pool", False),
    (200, "pre", False, "lstm", False), (16, "pre", False, "pool", False)])
def test_padding_an_unmasked_average_reads_as_tokens_is_told(length, padding, mask_zero, reader, told):
    # Sentences of ~11 ids padded to 200 into an Embedding without mask_zero and an average: the
    # padding's vector made ~95% of each row's mean, the loss stayed at chance (0.692 of 0.693 at 99%
    # validation accuracy), and the run was told the labels were unpredictable.
    rng = np.random.default_rng(0)
    rows = [rng.integers(1, 40, rng.integers(6, 16)) for _ in range(200)]
    ids = keras.utils.pad_sequences(rows, maxlen=length, padding=padding)
    after = keras.layers.GlobalAveragePooling1D() if reader == "pool" else keras.layers.LSTM(4)
    net = keras.Sequential([keras.Input((length,), dtype="int32"), keras.layers.Embedding(40, 4, mask_zero=mask_zero),
                            keras.layers.Dropout(0.1), after, keras.layers.Dense(1, activation="sigmoid")])
    found = {f.code: f for f in check_data(ids, (np.arange(200) % 2).astype("float32"), model=net, loss=get_loss("bce"), task="binary")}
    assert ("unmasked-padding" in found) == told
    if told:
        where = "after" if padding == "post" else "before"
        assert f"of the positions of x are padding (id 0, {where} the tokens)" in found["unmasked-padding"].message
        assert "mask_zero=True" in found["unmasked-padding"].advice


def test_unmasked_padding_reads_a_sample_of_wide_rows(monkeypatch):
    # It read every row of a wide input: 100k rows of 200 ids took 0.19 s of the checks, where
    # the scale checks read a million values at most (row_budget).
    from trainkit.checks import value_checks
    read = []

    def strided(a, rows):
        read.append(rows)
        return a[::max(1, -(-len(a) // rows))]

    monkeypatch.setattr(value_checks, "strided_rows", strided)
    ids = np.zeros((20_000, 200), "int32")
    ids[:, :10] = 1 + np.arange(20_000)[:, None] % 30
    net = keras.Sequential([keras.Input((200,), dtype="int32"), keras.layers.Embedding(40, 4), keras.layers.GlobalAveragePooling1D(),
                            keras.layers.Dense(1, activation="sigmoid")])
    found = check_data(ids, (np.arange(20_000) % 2).astype("float32"), model=net, loss=get_loss("bce"), task="binary")
    assert "unmasked-padding" in codes(found)
    assert read and max(read) * 200 <= 1_000_000


@pytest.mark.parametrize("mask_zero", [True, False])
def test_rows_of_padding_alone_into_a_masked_average_are_an_error(mask_zero):
    # GlobalAveragePooling1D averages a fully masked row over no position, 0 / 0: 5% empty texts
    # made the first step's loss NaN, and nan-loss told only to check the weights and log(0).
    ids = keras.utils.pad_sequences([list(range(1, 2 + i % 6)) for i in range(100)], maxlen=8)
    ids[::20] = 0
    net = keras.Sequential([keras.Input((8,), dtype="int32"), keras.layers.Embedding(10, 2, mask_zero=mask_zero),
                            keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid")])
    assert bool(np.isnan(keras.ops.convert_to_numpy(net(ids[:2]))).any()) == mask_zero
    y = (np.arange(100) % 2).astype("float32")
    if not mask_zero:  # unmasked, the padding is averaged as a token: a number, no NaN
        assert "empty-masked-rows" not in codes(check_data(ids, y, model=net, loss=get_loss("bce"), task="binary"))
        return
    with pytest.raises(DataError) as info:
        check_data(ids, y, model=net, loss=get_loss("bce"), task="binary")
    assert info.value.code == "empty-masked-rows" and "x holds 5 rows of padding alone (every id 0; the first is row 0)" in info.value.message
    with pytest.raises(DataError, match="x_val holds 5 rows"):
        check_data(ids[1:20], y[1:20], model=net, loss=get_loss("bce"), task="binary", x_val=ids, y_val=y)


@pytest.mark.parametrize("two_inputs", [False, True])
def test_the_empty_rows_drop_told_runs(two_inputs):
    # It told x = x[(x != 0).any(axis=1)], a TypeError on a dict of inputs (and on any list).
    ids = keras.utils.pad_sequences([list(range(1, 2 + i % 6)) for i in range(100)], maxlen=8)
    ids[::20] = 0
    words = keras.Input((8,), dtype="int32", name="ids")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(10, 2, mask_zero=True)(words))
    if two_inputs:
        extra = keras.Input((3,), name="num")
        net = keras.Model([words, extra], keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([pooled, extra])))
        x = {"ids": ids, "num": np.ones((100, 3), "float32")}
    else:
        net, x = keras.Model(words, keras.layers.Dense(1, activation="sigmoid")(pooled)), ids
    y = (np.arange(100) % 2).astype("float32")
    with pytest.raises(DataError) as info:
        check_data(x, y, model=net, loss=get_loss("bce"), task="binary")
    told = re.search(r"Drop the empty rows \((keep = .*?\.any\(axis=1\))(, then x, y = x\[keep\], y\[keep\])?", info.value.message)
    scope = {"x": x, "y": y}
    exec(told.group(1) + (f"; {told.group(2)[len(', then '):]}" if told.group(2) else ""), scope)
    assert int(scope["keep"].sum()) == 95 and (told.group(2) is None) == two_inputs
    if not two_inputs:
        assert "empty-masked-rows" not in codes(check_data(scope["x"], scope["y"], model=net, loss=get_loss("bce"), task="binary"))


def test_the_empty_rows_drop_told_keeps_the_sample_weights_and_filters_a_dataset():
    # With sample weights, x, y = x[keep], y[keep] left 100 weights for 95 rows (refused again);
    # a dataset's rows, which take no numpy indexing, were told the same numpy lines.
    ids = keras.utils.pad_sequences([list(range(1, 2 + i % 6)) for i in range(100)], maxlen=8)
    ids[::20] = 0
    words = keras.Input((8,), dtype="int32", name="ids")
    extra = keras.Input((3,), name="num")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(10, 2, mask_zero=True)(words))
    net = keras.Model([words, extra], keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([pooled, extra])))
    solo = keras.Model(words, keras.layers.Dense(1, activation="sigmoid")(pooled))
    y, w = (np.arange(100) % 2).astype("float32"), np.linspace(1, 2, 100).astype("float32")
    with pytest.raises(DataError) as info:
        check_data(ids, y, sample_weight=w, model=solo, loss=get_loss("bce"), task="binary")
    told = re.search(r"Drop the empty rows \(keep = (.*?), then (.*?)\), or", info.value.message)
    scope = {"x": ids, "y": y, "sample_weight": w}
    exec(f"keep = {told.group(1)}; " + told.group(2).replace(", sample_weight =", "; sample_weight ="), scope)
    assert len(scope["sample_weight"]) == len(scope["x"]) == 95
    assert "empty-masked-rows" not in codes(check_data(scope["x"], scope["y"], sample_weight=scope["sample_weight"], model=solo,
                                                       loss=get_loss("bce"), task="binary"))
    rows = tf.data.Dataset.from_tensor_slices(({"ids": ids, "num": np.ones((100, 3), "float32")}, y, w))
    with pytest.raises(DataError) as info:
        check_data(rows.batch(10), model=net, loss=get_loss("bce"), task="binary")
    advised = re.search(r"dataset\.filter\((lambda .*?\))\)\), or", info.value.message).group(1)
    kept = rows.filter(eval(advised, {"tf": tf})).batch(10)  # the advice's own code
    assert sum(int(tf.shape(b[1])[0]) for b in kept) == 95
    assert "empty-masked-rows" not in codes(check_data(kept, model=net, loss=get_loss("bce"), task="binary"))


@pytest.mark.parametrize(("between", "nan"), [("Reshape", False), ("Masking", False), ("SpatialDropout1D", True), ("Dropout", True)])
@pytest.mark.parametrize("functional", [False, True])
def test_empty_masked_rows_only_where_the_mask_reaches_the_average(between, nan, functional):
    # A Reshape drops the mask (Keras warns it "will destroy the mask information"), a Masking
    # layer makes its own from the vectors: the average then reads every position, a number, yet
    # empty-masked-rows refused the run as 0 / 0.
    ids = keras.utils.pad_sequences([list(range(1, 2 + i % 6)) for i in range(100)], maxlen=8)
    ids[::20] = 0
    layer = keras.layers.Reshape((8, 2)) if between == "Reshape" else getattr(keras.layers, between)(**({} if between == "Masking" else {"rate": 0.1}))
    layers = [keras.layers.Embedding(10, 2, mask_zero=True), layer, keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid")]
    inputs = keras.Input((8,), dtype="int32")
    net = keras.Model(inputs, functools.reduce(lambda t, one: one(t), layers, inputs)) if functional else keras.Sequential([inputs, *layers])
    assert bool(np.isnan(keras.ops.convert_to_numpy(net(ids[:2]))).any()) == nan
    y = (np.arange(100) % 2).astype("float32")
    if nan:
        with pytest.raises(DataError, match="empty-masked-rows"):
            check_data(ids, y, model=net, loss=get_loss("bce"), task="binary")
    else:
        assert "empty-masked-rows" not in codes(check_data(ids, y, model=net, loss=get_loss("bce"), task="binary"))


@pytest.mark.parametrize("mode", ["one_hot", "multi_hot", "count"])
def test_ids_a_category_encoding_has_no_category_for_are_an_error(mode):
    # model.fit trains on them in silence: CategoryEncoding(num_tokens=5) encodes ids 5..7 as a
    # row of zeros, so three categories look the same as each other and as no category at all.
    ids = np.random.default_rng(0).integers(0, 8, (64, 1 if mode == "one_hot" else 3))
    net = keras.Sequential([keras.Input((ids.shape[1],), dtype="int32"), keras.layers.CategoryEncoding(5, output_mode=mode),
                            keras.layers.Dense(1, activation="sigmoid")])
    y = (ids[:, :1] % 2).astype("float32")
    with pytest.raises(DataError) as info:
        check_data(ids, y, model=net, loss=get_loss("binary_crossentropy"), task="binary")
    assert info.value.code == "embedding-ids" and "CategoryEncoding(num_tokens=8" in info.value.message
    assert check_data(ids % 5, y, model=net, loss=get_loss("binary_crossentropy"), task="binary") == []


def test_class_imbalance_lists_only_the_rare_classes():
    # 3 classes, two of them rare: the three smallest counts named the largest class among the
    # "rarest" ("class 1: 4, class 2: 4, class 0: 292, against 292 for class 0").
    y = np.zeros(len(X), dtype=int)
    y[::50], y[1::50] = 1, 2
    (finding,) = [f for f in run("multiclass", X, y) if f.code == "class-imbalance"]
    counts = np.bincount(y)
    assert finding.evidence["rarest"] == [1, 2]
    assert f"class 1: {counts[1]}, class 2: {counts[2]}, against {counts[0]} for class 0" in finding.message


def test_many_balanced_classes_with_few_rows_each_are_not_imbalanced():
    # 2,400 rows drawn evenly over 900 classes count 0 to 10 a class by chance alone: they were
    # told "the classes are imbalanced: the rarest have class 72: 0 ... (0.0% of it)".
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2400, 4)).astype("float32")
    wide = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(900, activation="softmax")])
    y = rng.integers(0, 900, len(x))
    assert np.bincount(y, minlength=900).min() == 0
    assert "class-imbalance" not in codes(check_data(x, y, model=wide, loss=get_loss("scce"), task="multiclass"))
    # Classes of uneven shares are still told, however few rows most of them have: one class of
    # 400 rows beside 2.2 a class for the others, or Zipf-like shares.
    skewed = np.where(np.arange(len(x)) < 400, 0, y)
    assert "class-imbalance" in codes(check_data(x, skewed, model=wide, loss=get_loss("scce"), task="multiclass"))
    shares = 1 / np.arange(1, 901)
    zipf = rng.choice(900, len(x), p=shares / shares.sum())
    assert "class-imbalance" in codes(check_data(x, zipf, model=wide, loss=get_loss("scce"), task="multiclass"))


def test_a_softmax_wider_than_the_labels_classes_is_named():
    # Dense(1000) for labels 0..4 got no word, or "the rarest have class 5: 0, class 6: 0, ..." with
    # weights n / (K * count) that divide by 0.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1600, 4)).astype("float32")
    wide = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(1000, activation="softmax", name="out")])
    (finding,) = [f for f in check_data(x, rng.integers(0, 5, len(x)), model=wide, loss=get_loss("scce"), task="multiclass")
                  if f.code == "class-imbalance"]
    assert "hold class ids 0..4 only, but the output layer 'out' has 1000 units" in finding.message
    assert "Dense(5)" in finding.advice and finding.evidence["empty_units"] == 995 and "y[:, :5]" not in finding.advice
    # One-hot labels are as wide as the output: Dense(5) alone would no longer match them.
    (finding,) = [f for f in check_data(x, np.eye(1000, dtype="float32")[rng.integers(0, 5, len(x))], model=wide, loss=get_loss("cce"),
                                        task="multiclass") if f.code == "class-imbalance"]
    assert "Dense(5), and y = y[:, :5]" in finding.advice
    # Validation labels passed apart are one-hot too: cut y alone, they no longer fit Dense(5).
    one_hot = np.eye(1000, dtype="float32")
    (finding,) = [f for f in check_data(x, one_hot[rng.integers(0, 5, len(x))], model=wide, loss=get_loss("cce"), task="multiclass",
                                        x_val=x[:100], y_val=one_hot[rng.integers(0, 5, 100)]) if f.code == "class-imbalance"]
    assert "Dense(5), and y = y[:, :5], y_val = y_val[:, :5]" in finding.advice, finding.advice
    # Rows validation_split holds out are y's own: no y_val to cut.
    (finding,) = [f for f in check_data(x, one_hot[rng.integers(0, 5, len(x))], model=wide, loss=get_loss("cce"), task="multiclass",
                                        x_val=x[1500:], y_val=one_hot[rng.integers(0, 5, 100)], split_at=1500) if f.code == "class-imbalance"]
    assert "y = y[:, :5]" in finding.advice and "y_val" not in finding.advice, finding.advice
    # Classes only the validation rows hold are counted as such.
    y, y_val = rng.integers(0, 900, len(x)), rng.integers(0, 1000, 400)
    (finding,) = [f for f in check_data(x, y, x_val=rng.normal(size=(400, 4)).astype("float32"), y_val=y_val, model=wide,
                                        loss=get_loss("scce"), task="multiclass") if f.code == "class-imbalance"]
    assert f"units 900..999 ({np.count_nonzero(np.unique(y_val) >= 900)} of them only in the validation labels)" in finding.message
    # A rare top class missing by chance is not: 3 rows a class, the last one empty.
    y = rng.integers(0, 1000, 3000)
    y[y == 999] = 0
    assert not [f for f in check_data(rng.normal(size=(3000, 4)).astype("float32"), y, model=wide, loss=get_loss("scce"),
                                      task="multiclass") if f.code == "class-imbalance"]


def test_class_ids_with_gaps_are_told_to_be_renumbered_not_weighted():
    # Labels {0, 5, 9} under Dense(10), ~100 rows each, were told "the classes are imbalanced: the
    # rarest have class 1: 0, class 2: 0, class 3: 0, against 104 for class 0" with weights
    # n / (K * count) that divide by 0.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype("float32")
    net = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(10, activation="softmax", name="out")])
    (finding,) = [f for f in check_data(x, rng.choice([0, 5, 9], len(x)), model=net, loss=get_loss("scce"), task="multiclass")
                  if f.code == "class-imbalance"]
    assert "hold 3 of the 10 class ids 0..9: ids 1, 2, 3, 4, 6, 7, ... (7 in all) have no training row" in finding.message
    assert "np.unique(y, return_inverse=True)" in finding.advice and "Dense(3)" in finding.advice
    assert "count_c" not in finding.advice and finding.evidence["absent"] == [1, 2, 3, 4, 6, 7, 8]
    one_hot = np.eye(10, dtype="float32")[rng.choice([0, 5, 9], len(x))]
    (finding,) = [f for f in check_data(x, one_hot, model=net, loss=get_loss("cce"), task="multiclass") if f.code == "class-imbalance"]
    assert "y = y[:, classes]" in finding.advice
    # Balanced ids 0..9 are not told, nor a real imbalance without a gap.
    assert "class-imbalance" not in codes(check_data(x, rng.integers(0, 10, len(x)), model=net, loss=get_loss("scce"), task="multiclass"))
    skewed = np.r_[np.zeros(250, int), np.arange(50) % 9 + 1]
    (finding,) = [f for f in check_data(x, skewed, model=net, loss=get_loss("scce"), task="multiclass") if f.code == "class-imbalance"]
    assert "the rarest have" in finding.message


def test_imbalanced_classes_with_an_id_missing_are_told_imbalanced_not_to_renumber():
    # Class 0 at 500 rows, 1..9 at 20 each but 4 at none, was told "hold 9 of the 10 class ids:
    # ids 4 have no training row ... number them 0..8", its imbalance (20 against 500) unsaid.
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(500, int), np.repeat([1, 2, 3, 5, 6, 7, 8, 9], 20)]
    x = rng.normal(size=(len(y), 4)).astype("float32")
    net = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(10, activation="softmax")])
    (finding,) = [f for f in check_data(x, y, model=net, loss=get_loss("scce"), task="multiclass") if f.code == "class-imbalance"]
    assert "are imbalanced" in finding.message and "class 4: 0, class 1: 20" in finding.message
    assert "np.unique" not in finding.advice
    # Row weights that even the classes held out leave the gap to tell (class_weight was advised to a run that passes it).
    w = np.where(y == 0, 0.04, 1.0)
    (finding,) = [f for f in check_data(x, y, model=net, loss=get_loss("scce"), task="multiclass", sample_weight=w)
                  if f.code == "class-imbalance"]
    assert "ids 4 have no training row" in finding.message and "class_weight" not in finding.advice


def test_class_ids_missing_from_training_but_in_the_validation_labels_are_not_told_to_be_renumbered():
    # Training ids {0, 1, 2, 4, 5}, validation ids 0..5: id 3 exists. It was told "number them 0..4
    # (np.unique(y, return_inverse=True) ... y_val = np.searchsorted(classes, y_val))", which maps
    # the validation rows of class 3 to class 3, the training rows' class 4.
    rng = np.random.default_rng(0)
    y, y_val = rng.choice([0, 1, 2, 4, 5], 300), rng.choice(6, 60)
    x, x_val = rng.normal(size=(300, 4)).astype("float32"), rng.normal(size=(60, 4)).astype("float32")
    net = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(6, activation="softmax")])
    found = check_data(x, y, model=net, loss=get_loss("scce"), task="multiclass", x_val=x_val, y_val=y_val)
    assert "validation-class-mismatch" in codes(found)
    (finding,) = [f for f in found if f.code == "class-imbalance"]
    assert "np.unique" not in finding.advice and "searchsorted" not in finding.advice and "class 3: 0" in finding.message
    # Beside ids no row holds anywhere, the validation's id is counted a class of its own.
    oh = np.eye(10, dtype="float32")
    net = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(10, activation="softmax")])
    found = check_data(x, oh[rng.choice([0, 5, 9], 300)], model=net, loss=get_loss("cce"), task="multiclass",
                       x_val=x_val, y_val=oh[rng.choice([0, 3, 5, 9], 60)])
    (finding,) = [f for f in found if f.code == "class-imbalance"]
    assert "ids 1, 2, 4, 6, 7, 8 have no training row (ids 3 have none either, but the validation labels hold them" in finding.message
    assert "Dense(4)" in finding.advice and "y.sum(0) + y_val.sum(0)" in finding.advice and finding.evidence["classes"] == 4


def test_a_label_decided_by_the_token_at_one_position_is_no_leak_but_a_copied_label_is():
    # Token ids are not features: "does the sequence start with id 3" maps each id at position 0
    # to one class, which is the task itself; it was reported as label-leakage.
    ids = np.random.default_rng(0).integers(0, 10, (300, 4))
    starts_with_3 = (ids[:, 0] == 3).astype("int64")
    assert "label-leakage" not in codes(run("embedding", ids, starts_with_3))
    copied = ids.copy()
    copied[:, 2] = starts_with_3
    assert "label-leakage" in codes(run("embedding", copied, starts_with_3))


def test_inputs_with_rows_but_no_values_are_refused_before_anything_reduces_them():
    # x of shape (n, 0) raised numpy's "zero-size array to reduction" from the scale checks; past
    # them, a Dense layer on zero features aborted the whole process in oneDNN.
    with pytest.raises(DataError) as info:
        run("binary", np.zeros((40, 0), "float32"), YB[:40])
    assert info.value.code == "data-empty" and "x has 40 rows but no values" in info.value.message
    with pytest.raises(DataError, match="x_val has 5 rows but no values"):
        run("binary", X, YB, x_val=np.zeros((5, 0), "float32"), y_val=YB[:5])


def test_a_normalization_layer_of_a_mixed_float16_model_is_read_in_full_precision():
    # Called, the layer computes in float16: raw inputs ~3e5 overflowed to inf, and the finding
    # reported a mean of 6.2e4 for 2.9e5.
    x = (np.random.default_rng(3).normal(size=(200, 4)) * 1e3 + 3e5).astype("float32")
    never_adapted = keras.layers.Normalization(dtype="mixed_float16")
    model = keras.Sequential([keras.Input((4,)), never_adapted, keras.layers.Dense(1, dtype="mixed_float16")])
    allow = {"float16-overflow"}  # as the layer's own call does, training makes inf of them (below)
    found = check_data(x, x[:, 0] - 3e5, model=model, loss=get_loss("mse"), task="regression", allow=allow)
    (finding,) = [f for f in found if f.code == "unscaled-inputs"]
    assert finding.evidence["max_abs_mean"] == pytest.approx(float(np.abs(x.mean(axis=0)).max()), rel=1e-3)
    adapted = keras.layers.Normalization(dtype="mixed_float16")
    adapted.adapt(x)
    model = keras.Sequential([keras.Input((4,)), adapted, keras.layers.Dense(1, dtype="mixed_float16")])
    found = codes(check_data(x, x[:, 0] - 3e5, model=model, loss=get_loss("mse"), task="regression", allow=allow))
    # Adapted, its statistics scale them, but it casts them to float16 first: inf, said by float16-overflow.
    assert "unscaled-inputs" not in found and "float16-overflow" in found
    assert not np.isfinite(np.asarray(model(x[:4]), dtype=np.float32)).all()


# --- channels-first-input: (n, 3, 32, 32) images read by a channels_last Conv2D ------------------

def conv_model(sample: tuple[int, ...] | None, *front: keras.layers.Layer, data_format: str = "channels_last",
               kernel: int | tuple[int, int] = 3) -> keras.Model:
    """A tiny conv classifier over ``sample`` (1-D for a rank-2 sample); ``None``: never built."""
    conv, pool = (L.Conv1D, L.GlobalAveragePooling1D) if sample is not None and len(sample) == 2 else (L.Conv2D, L.GlobalAveragePooling2D)
    head = [conv(2, kernel, padding="same", data_format=data_format), pool(data_format=data_format), L.Dense(3, activation="softmax")]
    return keras.Sequential([*([keras.Input(sample)] if sample else []), *front, *head])


def layout_codes(m: keras.Model, sample: tuple[int, ...]) -> list:
    x = np.random.default_rng(0).uniform(size=(30, *sample)).astype("float32")
    return check_data(x, np.arange(30) % 3, model=m, loss=get_loss("scce"), task="multiclass")


@pytest.mark.parametrize(("sample", "front", "fix"), [
    ((3, 32, 32), (), "np.transpose(x, (0, 2, 3, 1)) (x_val too) with keras.Input((32, 32, 3))"),
    ((1, 28, 28), (), "keras.Input((28, 28, 1))"),
    ((4, 16, 24), (L.Rescaling(1 / 255), L.RandomFlip("horizontal")), "keras.Input((16, 24, 4))"),
    ((3, 100), (), "np.transpose(x, (0, 2, 1)) (x_val too) with keras.Input((100, 3))"),
])
def test_channels_first_input_fires_on_channels_first_samples_read_channels_last(sample, front, fix):
    found = [f for f in layout_codes(conv_model(sample, *front), sample) if f.code == "channels-first-input"]
    assert len(found) == 1 and found[0].severity == "warning"
    assert f"samples of shape {sample}" in found[0].message and "data_format='channels_last'" in found[0].message
    assert fix in found[0].advice and "data_format='channels_first'" in found[0].advice


def test_channels_first_input_reads_the_data_of_a_model_not_built_yet_and_each_input_of_several():
    assert "channels-first-input" in codes(layout_codes(conv_model(None), (3, 32, 32)))
    image, table = keras.Input((3, 32, 32)), keras.Input((4,))
    features = L.GlobalAveragePooling2D()(L.Conv2D(2, 3, padding="same")(L.Rescaling(1 / 255)(image)))
    two = keras.Model([image, table], L.Dense(3, activation="softmax")(L.Concatenate()([features, table])))
    rows = np.random.default_rng(0)
    x = [rows.uniform(size=(30, 3, 32, 32)).astype("float32"), rows.normal(size=(30, 4)).astype("float32")]
    found = [f for f in check_data(x, np.arange(30) % 3, model=two, loss=get_loss("scce"), task="multiclass")
             if f.code == "channels-first-input"]
    assert len(found) == 1 and found[0].message.startswith("x[0] has samples of shape (3, 32, 32)")


@pytest.mark.parametrize(("sample", "kw"), [
    ((32, 32, 3), {}), ((28, 28, 1), {}), ((64, 64, 3), {}), ((64, 64, 4), {}), ((128, 44, 1), {}), ((100, 3), {}),
    ((4, 4, 512), {}),  # a backbone's feature map: channels last, rows and columns too few for an image
    ((3, 32, 32), {"data_format": "channels_first"}),  # channels-first samples read as such
    ((1, 100, 40), {"kernel": (1, 3)}),  # one row of 100 steps, read row by row on purpose
])
def test_channels_first_input_silent_on_channels_last_shapes(sample, kw):
    assert "channels-first-input" not in codes(layout_codes(conv_model(sample, **kw), sample))


def test_channels_first_input_silent_on_short_sequences_of_a_model_taking_any_length():
    # A dataset's first batch of 3 steps, 64 features each: keras.Input((None, 64)) says they are steps.
    assert "channels-first-input" not in codes(layout_codes(conv_model((None, 64)), (3, 64)))
    assert "channels-first-input" in codes(layout_codes(conv_model((3, 64)), (3, 64)))


def test_the_training_mode_probe_leaves_keras_auto_names_as_they_were():
    # Its layer's output tensor took the next keras_tensor_N: an unnamed input built after the
    # first check was numbered one further, a name an exported model's signature takes.
    from trainkit.checks.model_inspect import _graph_keeps_training_false

    before = keras.backend.get_uid("keras_tensor")
    _graph_keeps_training_false.__wrapped__()
    assert keras.backend.get_uid("keras_tensor") == before + 1


def test_batches_of_one_row_through_a_dense_batchnorm_are_reported():
    # batch_size 1 through Dense -> BatchNormalization: over one row each value is its own mean, so
    # the layer outputs its beta for every input; training sat at chance (0.69) and the
    # validation loss at 4.3-6.7 (seeds 0-2), told only that the labels looked unpredictable.
    def bn_model(trainable: bool = True) -> keras.Model:
        norm = L.BatchNormalization(name="norm")
        norm.trainable = trainable
        return keras.Sequential([keras.Input((4,)), L.Dense(8), norm, L.Activation("relu"), L.Dense(1, activation="sigmoid")])

    def check(m, x, y=None, **kw):
        return codes(check_data(x, y, model=m, loss=get_loss("bce"), task="binary", **kw))

    (finding,) = check_data(X, YB, model=bn_model(), loss=get_loss("bce"), task="binary", batch_size=1)
    assert finding.code == "batchnorm-batch-of-one" and finding.layer == "norm" and "LayerNormalization" in finding.advice
    # A recipe has no batch_size= nor LayerNormalization: its keys are named too.
    assert "training.batch_size: 32" in finding.advice and "remove the {type: batchnorm} layer" in finding.advice
    assert check(bn_model(), tf.data.Dataset.from_tensor_slices((X, YB)).batch(1)) == ["batchnorm-batch-of-one"]
    # Batches of 2 train, noisily; a frozen BatchNormalization uses its moving statistics; a
    # convolution's normalises over each image's positions too; a model without one.
    assert check(bn_model(), X, YB, batch_size=2) == []
    assert check(bn_model(trainable=False), X, YB, batch_size=1) == []
    conv = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3), L.BatchNormalization(), L.Flatten(), L.Dense(1, activation="sigmoid")])
    images = np.random.default_rng(0).normal(size=(len(YB), 8, 8, 1)).astype("float32")
    assert check(conv, images, YB, batch_size=1) == []
    assert "batchnorm-batch-of-one" not in check(model("binary"), X, YB, batch_size=1)
    # An unfrozen base called with training=False (fine-tuning) trains on batch statistics all the
    # same: Keras 3 passes the model's training=True over it (its moving variance went 1 -> 0.008,
    # validation loss 0.97 -> 3.24, in silence). A frozen base normalises with its moving statistics.
    inputs = keras.Input((4,))
    base = keras.Model(inputs, L.BatchNormalization(name="base_norm")(L.Dense(8)(inputs)), name="base")
    for training in (False, None):
        outer_inputs = keras.Input((4,))
        outer = keras.Model(outer_inputs, L.Dense(1, activation="sigmoid")(base(outer_inputs, training=training)))
        assert check(outer, X, YB, batch_size=1) == ["batchnorm-batch-of-one"]
        base.trainable = False
        assert check(outer, X, YB, batch_size=1) == []
        base.trainable = True


def test_inputs_beyond_float16_read_by_a_float16_layer_are_named():
    # Under mixed_float16 a layer casts its inputs to float16 first: amounts ~1e5 became inf even
    # in a Normalization layer adapted to scale them, and the first step's loss was NaN with advice
    # about learning rates and log(0).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype("float32")
    x[:, 2] = rng.uniform(1e4, 2e5, len(x))
    y = (x[:, 0] > 0).astype("float32")

    def model_reading_with(dtype):
        norm = keras.layers.Normalization(dtype=dtype)
        norm.adapt(x)
        return keras.Sequential([keras.Input((4,)), norm, keras.layers.Dense(8, activation="relu", dtype="mixed_float16"),
                                 keras.layers.Dense(1, activation="sigmoid")])

    def check(model, **kw):
        return check_data(x, y, model=model, loss=get_loss("binary_crossentropy"), task="binary", allow={"float16-overflow"}, **kw)

    (finding,) = [f for f in check(model_reading_with("mixed_float16")) if f.code == "float16-overflow"]
    first = int(np.argmax(x[:, 2] > 65504))
    assert finding.evidence["layer"].startswith("normalization") and finding.evidence["first_row"] == first
    assert "dtype='float32'" in finding.advice
    with pytest.raises(DataError) as info:
        check_data(x, y, model=model_reading_with("mixed_float16"), loss=get_loss("binary_crossentropy"), task="binary")
    assert info.value.code == "float16-overflow"
    # The advice: the Normalization layer in float32 reads them whole; a float32 model never overflows.
    assert "float16-overflow" not in codes(check(model_reading_with("float32")))
    assert "float16-overflow" not in codes(check(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])))
    # Validation rows held out by validation_split are named as the caller's x rows.
    small = x.copy()
    small[:, 2] /= 1e4
    found = check_data(small[:300], y[:300], x_val=x[300:], y_val=y[300:], split_at=300, model=model_reading_with("mixed_float16"),
                       loss=get_loss("binary_crossentropy"), task="binary", allow={"float16-overflow", "validation-scale-mismatch"})
    (finding,) = [f for f in found if f.code == "float16-overflow"]
    assert finding.evidence["first_row"] >= 300 and "val_loss" in finding.message


def test_inputs_a_float16_cast_rounds_down_to_its_largest_value_are_no_float16_overflow():
    # Values between 65,504 and 65,520 round to 65,504 in float16, finite: fit was refused with
    # float16-overflow for 65,510, which trains as model.fit trains it.
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid", dtype="mixed_float16")])
    assert np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(np.float32([65510.0, 65519.0]), "float16"))).all()
    for value, overflows in ((65510.0, False), (65519.0, False), (65520.0, True), (-7e4, True)):
        x[5, 1] = value
        found = codes(check_data(x, y, model=model, loss=get_loss("binary_crossentropy"), task="binary", allow={"float16-overflow", "unscaled-inputs"}))
        assert ("float16-overflow" in found) == overflows, value


def test_layers_under_mixed_float16_that_read_their_inputs_whole_are_no_float16_readers():
    # An IntegerLookup (its input_dtype int64) and a Discretization (float32) under mixed_float16
    # read ids and values ~1e6 exactly, and fit was refused with float16-overflow: the check read
    # the policy's compute dtype, not the dtype the layer casts its inputs to.
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1_000_000, size=(200, 1))
    y = rng.normal(size=(200, 1)).astype("float32")
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")  # a lookup layer takes its policy from there only
    try:
        lookup = keras.layers.IntegerLookup(vocabulary=np.arange(0, 1_000_000, 1000))
    finally:
        keras.mixed_precision.set_global_policy(before)
    inp = keras.Input((1,), dtype="int64")
    ids_model = keras.Model(inp, L.Dense(1)(L.Flatten()(L.Embedding(1002, 4)(lookup(inp)))))
    bins = keras.Sequential([keras.Input((1,)), L.Discretization(bin_boundaries=[7e4, 8e4], dtype="mixed_float16"),
                             L.Dense(1, dtype="mixed_float16")])
    for model, x in ((ids_model, ids), (bins, ids.astype("float32"))):
        assert "float16-overflow" not in codes(check_data(x, y, model=model, loss=get_loss("mse"), task="regression"))
    # A Dense layer under mixed_float16 still casts them: inf.
    dense = keras.Sequential([keras.Input((1,)), L.Dense(1, dtype="mixed_float16")])
    with pytest.raises(DataError) as info:
        check_data(ids.astype("float32"), y, model=dense, loss=get_loss("mse"), task="regression")
    assert info.value.code == "float16-overflow"


# --- segmentation masks: a label per pixel ----------------------------------------------------------


def _segmenter(units: int, activation: str) -> keras.Model:
    """A tiny fully convolutional model: one prediction of ``units`` per pixel of an 8x8 image."""
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, padding="same", activation="relu"),
                             L.Conv2D(units, 1, activation=activation)])


def _masks(n=120, seed=0):
    """8x8 images whose bright pixels are class 1 (about a quarter of them), and those masks."""
    x = np.random.default_rng(seed).normal(size=(n, 8, 8, 1)).astype("float32")
    return x, (x[..., 0] > 0.7).astype("int64")


@pytest.mark.parametrize(("units", "activation", "loss", "task"), [(2, "softmax", "scce", "multiclass"),
                                                                   (1, "sigmoid", "bce", "binary")])
def test_masks_with_a_channel_axis_are_checked_not_crashed(units, activation, loss, task):
    # Masks stored as (n, H, W, 1), the layout Keras' own segmentation examples give them, raised a
    # bare numpy ValueError ("cannot reshape array of size 7680 into shape (120,)") from the checks
    # that read one class a row, before the first step.
    x, y = _masks()
    found = check_data(x, y[..., None], model=_segmenter(units, activation), loss=get_loss(loss), task=task)
    assert not [f for f in found if f.severity == "error"]
    # Per-position labels have no one class a row: no rule reads them as rows of one class.
    assert "single-class" not in codes(found)


@pytest.mark.parametrize(("units", "activation", "loss", "layout", "wanted"), [
    # Masks of another size than the output: resized, not a Dense of the masks' width.
    (2, "softmax", "scce", lambda y: y[:, ::2, ::2], "method='nearest'"),
    # Channels-first masks against a channels-last output.
    (1, "sigmoid", "bce", lambda y: y[:, None].astype("float32"), "np.moveaxis(y, 1, -1)"),
    # Class-id masks with a one-hot loss.
    (2, "softmax", "cce", lambda y: y, "keras.utils.to_categorical(y, 2)"),
    (2, "softmax", "cce", lambda y: y[..., None], "SparseCategoricalCrossentropy"),
])
def test_masks_that_do_not_fit_a_segmentation_output_get_a_fix_for_masks(units, activation, loss, layout, wanted):
    # Each was told "change the output layer to Dense(8) to predict 8 value(s) per sample" (the
    # masks' last axis, a width in pixels): no fix for a model that predicts per pixel.
    x, y = _masks()
    with pytest.raises(DataError) as info:
        check_data(x, layout(y), model=_segmenter(units, activation), loss=get_loss(loss),
                   task="multiclass" if units > 1 else "binary")
    assert info.value.code == "shape-mismatch" and wanted in info.value.message and "Dense(" not in info.value.message


def test_masks_resized_with_linear_interpolation_are_told_to_resize_with_nearest():
    # Class-id masks resized bilinearly hold fractions along every region's edge; the advice was
    # np.unique(y, return_inverse=True), which makes each fraction a class of its own.
    x, _ = _masks()
    squares = np.zeros((len(x), 4, 4), "float32")  # a 2x2 square of class 1 in each 4x4 mask
    for i in range(len(x)):
        squares[i, i % 3:i % 3 + 2, i // 3 % 3:i // 3 % 3 + 2] = 1
    blurred = tf.image.resize(squares[..., None], (8, 8)).numpy()[..., 0]  # bilinear: 1/3 of the pixels blended
    with pytest.raises(DataError) as info:
        check_data(x, blurred, model=_segmenter(2, "softmax"), loss=get_loss("scce"), task="multiclass")
    assert info.value.code == "label-format"
    assert "method='nearest'" in info.value.message and "np.unique" not in info.value.message
    # Class labels of one per row that are not whole keep their advice.
    with pytest.raises(DataError) as info:
        run("multiclass", std_x(), np.linspace(0, 2, 600))
    assert "np.unique" in info.value.message


@pytest.mark.parametrize(("units", "activation", "loss", "layout", "wanted"), [
    (1, "sigmoid", "bce", lambda y: y[..., None].astype("float32"), "BinaryFocalCrossentropy(apply_class_balancing=True"),
    (3, "softmax", "scce", lambda y: y, "to_categorical(y, 3)"),
    (3, "softmax", "cce", lambda y: np.eye(3, dtype="float32")[y], "OneHotMeanIoU(num_classes=3)"),
])
def test_class_imbalance_reads_a_segmentations_pixels(units, activation, loss, layout, wanted):
    # A mask holds a class per pixel, so the rule that reads one class a row read nothing: masks
    # of 95% background pixels got no word, though labelling every pixel background scores 95%.
    x, _ = _masks()
    masks = np.zeros((len(x), 8, 8), "int64")
    masks[:, 0, 0] = 1  # class 1 on one pixel of every row (1.6%), class 0 elsewhere
    if units == 3:
        masks[::2, 7, 7] = 2  # and class 2 on one pixel of every other row (0.8%)
    found = [f for f in check_data(x, layout(masks), model=_segmenter(units, activation), loss=get_loss(loss),
                                   task="binary" if units == 1 else "multiclass") if f.code == "class-imbalance"]
    assert len(found) == 1 and "pixel" in found[0].message and wanted in found[0].advice
    assert "class_weight=" not in found[0].advice  # fit refuses class_weight for a per-position output
    # Masks mostly background, as masks are (94% of the pixels; 3 classes at 84/9/6% were warned),
    # train well on a per-pixel cross-entropy: not reported.
    masks[:, 3:5, 3:5] = np.arange(len(x))[:, None, None] % 2 + 1 if units == 3 else 1
    assert "class-imbalance" not in codes(check_data(x, layout(masks), model=_segmenter(units, activation), loss=get_loss(loss),
                                                     task="binary" if units == 1 else "multiclass"))
    # Balanced masks are not reported.
    balanced = (x[..., 0] > 0).astype("int64") if units == 1 else np.digitize(x[..., 0], [-0.43, 0.43])
    assert "class-imbalance" not in codes(check_data(x, layout(balanced), model=_segmenter(units, activation), loss=get_loss(loss),
                                                     task="binary" if units == 1 else "multiclass"))


def test_class_imbalance_of_multilabel_masks_counts_their_labels_not_their_pixels():
    # (n, 8, 8, 3) masks of 3 labels were read as 192 label columns, one a pixel and label.
    x, _ = _masks()
    masks = np.zeros((len(x), 8, 8, 3), "float32")
    masks[:, :4, :, 0] = 1  # label 0 on half the pixels, label 1 on 1/16, label 2 on 1/2
    masks[:, :2, :2, 1] = 1
    masks[:, 4:, :, 2] = 1
    (found,) = [f for f in check_data(x, masks, model=_segmenter(3, "sigmoid"), loss=get_loss("bce"), task="multilabel")
                if f.code == "class-imbalance"]
    assert "1 of the 3 label columns" in found.message and found.evidence["rare_labels"] == [1]
    # The bias advice's prior once read y_train.mean(0): a mean per pixel, (8, 8, 3), no bias's shape.
    prior = re.search(r"p = np\.clip\((.+?), 1e-3", found.advice).group(1)
    assert eval(prior, {"y_train": masks}).shape == (3,)  # the advice's own expression


def test_unscaled_image_targets_are_told_to_standardise_per_channel_not_per_pixel():
    # Image targets (n, 8, 8, 1) were told y_train.mean(0), y_train.std(0): a statistic per pixel,
    # which divides a pixel that barely varies across the images (here a border of constant 128)
    # by ~0, and fits no bias of a conv output (one a channel).
    x, _ = _masks()
    depth = np.full((len(x), 8, 8, 1), 128.0, "float32")
    depth[:, 1:-1, 1:-1, 0] += 40 * x[:, 1:-1, 1:-1, 0]
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, padding="same", activation="relu"), L.Conv2D(1, 1)])
    (found,) = [f for f in check_data(x, depth, model=model, loss=get_loss("mse"), task="regression") if f.code == "unscaled-targets"]
    assert "y_train.std(axis=(0, 1, 2))" in found.advice and "std(0)" not in found.advice
    # Without the channel axis, one mean and std over every value; per row targets keep axis 0.
    (found,) = [f for f in check_data(x, depth[..., 0], model=model, loss=get_loss("mse"), task="regression") if f.code == "unscaled-targets"]
    assert "y_train.std()" in found.advice
    (found,) = [f for f in run("regression", std_x(), 500 + 50 * std_x()[:, 0]) if f.code == "unscaled-targets"]
    assert "y_train.std(0)" in found.advice


def test_unscaled_targets_of_a_forecast_horizon_are_told_of_steps_not_pixels():
    # A 5-step forecast of an unscaled series, targets (n, 5, 1) from Dense(5) and Reshape((5, 1)),
    # was told "one value a channel over every pixel: a pixel's own spread is ~0".
    x, y = horizon_windows(8, 5)
    x, y = 20 + 10 * x[:, :, None], 20 + 10 * y[:, :, None]
    model = keras.Sequential([keras.Input((8, 1)), L.GRU(2), L.Dense(5), L.Reshape((5, 1))])
    (found,) = [f for f in check_data(x, y, model=model, loss=get_loss("mse"), task="regression") if f.code == "unscaled-targets"]
    assert "y_train.std(axis=(0, 1))" in found.advice and "every step" in found.advice and "pixel" not in found.advice


def test_a_taggers_per_timestep_weights_are_refused_with_a_way_to_leave_padding_out():
    # (n, T) weights, 0 on the padding (Keras' temporal sample weights), were told to weigh "a
    # weight a pixel" with focal losses or Dice, which leave no padding out.
    rng = np.random.default_rng(0)
    real = np.arange(12)[None] < rng.integers(3, 12, size=(64, 1))
    x = np.where(real, rng.integers(1, 100, size=real.shape), 0)
    with pytest.raises(DataError) as info:
        check_data(x, np.where(real, x % 5, 0), model=_masked_tagger(12, 5, mask_zero=False), loss=get_loss("scce"),
                   task="multiclass", sample_weight=real.astype("float32"))
    assert info.value.code == "shape-mismatch" and "Weights per timestep" in info.value.message
    assert "mask_zero=True" in info.value.message and "ignore_class=-1" in info.value.message and "Dice" not in info.value.message


@pytest.mark.parametrize("kind", ["categorical", "binary"])
def test_a_taggers_per_timestep_weights_are_told_a_padding_label_its_loss_can_take(kind):
    # One-hot tags were told y = np.where(w > 0, y, -1), which does not broadcast (n, T) weights
    # against (n, T, k) labels; a sigmoid tagger was told SparseCategoricalCrossentropy.
    rng = np.random.default_rng(0)
    real = np.arange(12)[None] < rng.integers(3, 12, size=(64, 1))
    x = np.where(real, rng.integers(1, 100, size=real.shape), 0)
    ids = np.where(real, x % 5, 0)
    if kind == "categorical":
        y, model, loss = np.eye(5, dtype="float32")[ids], _masked_tagger(12, 5, mask_zero=False), "categorical_crossentropy"
    else:
        y, model, loss = (ids > 2).astype("float32")[..., None], _masked_tagger(12, 1, mask_zero=False), "binary_crossentropy"
        model.layers[-1].activation = keras.activations.sigmoid
    w = real.astype("float32")
    with pytest.raises(DataError) as info:
        check_data(x, y, model=model, loss=get_loss(loss), task="multiclass" if kind == "categorical" else "binary", sample_weight=w)
    assert info.value.code == "shape-mismatch" and "mask_zero=True" in info.value.message
    if kind == "categorical":
        advised = info.value.message.split("with y = ")[1].rstrip(".")
        assert eval(advised, {"np": np, "w": w, "y": y}).shape == ids.shape
    else:
        assert "ignore_class" not in info.value.message


@pytest.mark.parametrize("trailing", [(), (1,)])
def test_per_pixel_weights_are_refused_with_a_way_to_weigh_pixels(trailing):
    # A weight a pixel (Keras' way to weigh a segmentation's classes) was refused with "to weigh
    # several outputs differently use loss_weights", which weighs no pixel.
    x, y = _masks()
    weights = np.where(y > 0, 5.0, 1.0).reshape(y.shape + trailing)
    with pytest.raises(DataError) as info:
        check_data(x, y, model=_segmenter(2, "softmax"), loss=get_loss("scce"), task="multiclass", sample_weight=weights)
    assert info.value.code == "shape-mismatch" and "Weights per position" in info.value.message
    assert "loss_weights" not in info.value.message and "Dice" in info.value.message
    # Weights of another shape keep their advice.
    with pytest.raises(DataError) as info:
        run("binary", std_x(), binary_y(std_x()), sample_weight=np.ones((600, 2)))
    assert "loss_weights" in info.value.message


@pytest.mark.parametrize("leaked", [lambda y: y.astype("float32"), lambda y: (255 - 255 * y).astype("float32")])
def test_a_mask_stacked_into_the_image_channels_is_label_leakage(leaked):
    # The leak rules read a 2-D input's columns only: a segmentation's mask stacked as an input
    # channel trained to a loss of 0.004 (chance 0.53) without a word.
    x, y = _masks()
    stacked = np.concatenate([x, leaked(y)[..., None]], axis=-1)
    model = keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(4, 3, padding="same", activation="relu"), L.Conv2D(2, 1, activation="softmax")])
    (found,) = [f for f in check_data(stacked, y, model=model, loss=get_loss("scce"), task="multiclass", allow={"label-leakage"})
                if f.code == "label-leakage"]
    assert found.evidence["channel"] == 1 and "np.delete(x, 1, axis=-1)" in found.advice
    # The image alone (its mask a threshold of its continuous values) gives nothing away.
    assert "label-leakage" not in codes(check_data(x, y, model=_segmenter(2, "softmax"), loss=get_loss("scce"), task="multiclass"))


def test_a_mask_stacked_into_a_channels_first_images_channels_is_label_leakage():
    # A channels_first model's (N, 2, 8, 8) images were read with their channels last: axes
    # (2, 8) fit no (8, 8) positions, and the mask stacked as channel 1 got no word.
    x, y = _masks()
    stacked = np.transpose(np.concatenate([x, y[..., None].astype("float32")], axis=-1), (0, 3, 1, 2))
    model = keras.Sequential([keras.Input((2, 8, 8)), L.Conv2D(4, 3, padding="same", activation="relu", data_format="channels_first"),
                              L.Conv2D(2, 1, data_format="channels_first"), L.Permute((2, 3, 1)), L.Softmax()])
    (found,) = [f for f in check_data(stacked, y, model=model, loss=get_loss("scce"), task="multiclass", allow={"label-leakage"})
                if f.code == "label-leakage"]
    assert found.evidence["channel"] == 1 and "np.delete(x, 1, axis=1)" in found.advice
    # Two channels of the image itself give nothing away.
    healthy = np.transpose(np.concatenate([x, 2 * x], axis=-1), (0, 3, 1, 2))
    assert "label-leakage" not in codes(check_data(healthy, y, model=model, loss=get_loss("scce"), task="multiclass"))


def test_a_mask_with_void_pixels_stacked_into_the_image_channels_is_label_leakage():
    # Masks with void pixels (ignore_class=255) were skipped: their labelled pixels were fewer
    # than the image's, and the channel went unread.
    x, y = _masks()
    y = y.astype("int64")
    y[:, 0, :] = 255
    loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=255)
    stacked = np.concatenate([x, y[..., None].astype("float32")], axis=-1)
    model = keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(4, 3, padding="same", activation="relu"), L.Conv2D(2, 1, activation="softmax")])
    (found,) = [f for f in check_data(stacked, y, model=model, loss=loss, task="multiclass", allow={"label-leakage"}) if f.code == "label-leakage"]
    assert found.evidence["channel"] == 1 and found.evidence["pixels_checked"] == 7 * 8 * len(y)
    assert "label-leakage" not in codes(check_data(x, y, model=_segmenter(2, "softmax"), loss=loss, task="multiclass"))


@pytest.mark.parametrize("void", [255, -1])
def test_void_pixels_the_loss_ignores_are_no_class_ids_out_of_range(void):
    # SparseCategoricalCrossentropy(ignore_class=255), Keras' way to leave a segmentation's void
    # pixels out, was refused: "y holds class ids 0..255 but the output layer has 3 units".
    x, y = _masks()
    y = y + (x[..., 0] < -0.7)  # classes 0..2
    y[:, 0, :] = void
    loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=void)
    found = check_data(x, y, model=_segmenter(3, "softmax"), loss=loss, task="multiclass")
    assert not [f for f in found if f.severity == "error"]
    # The void pixels are no class of the pixel shares either (255 made 256 classes).
    assert all("class 255" not in f.message and "class 3" not in f.message for f in found)
    # Without ignore_class they are ids out of range, as before, told the loss's ignore_class: they
    # were told "use Dense(256), or map the 4 distinct labels to 0..3", training void as a class.
    with pytest.raises(DataError) as info:
        check_data(x, y, model=_segmenter(3, "softmax"), loss=get_loss("scce"), task="multiclass")
    assert info.value.code == "label-format" and f"ignore_class={void})" in info.value.message
    assert "Dense(256)" not in info.value.message and "np.unique" not in info.value.message
    # One id just past the units beside ids that fit is a class short of units, no void label.
    with pytest.raises(DataError) as info:
        check_data(x, np.where(y == void, 3, y), model=_segmenter(3, "softmax"), loss=get_loss("scce"), task="multiclass")
    assert info.value.code == "label-format" and "ignore_class" not in info.value.message
    # A real id out of range beside the void ones is still refused.
    y[:, 1, 1] = 7
    with pytest.raises(DataError) as info:
        check_data(x, y, model=_segmenter(3, "softmax"), loss=loss, task="multiclass")
    assert info.value.code == "label-format" and "0..7" in info.value.message


def test_void_pixels_that_vary_by_row_beside_row_weights_are_counted_not_crashed():
    # Row weights were repeated over the labelled pixels of the first row's count: void pixels
    # (ignore_class) on more rows than others made np.bincount raise "The weights and list don't
    # have the same length" before the first step.
    x, y = _masks()
    y = np.where(x[..., 0] > 2.4, 2, y)  # class 2 under 1% of the pixels
    y[:, 0, :] = 255
    y[:7, 1, :] = 255
    w = np.where(np.arange(len(y)) < 60, 3.0, 1.0).astype("float32")
    loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=255)
    found = {f.code: f for f in check_data(x, y, sample_weight=w, model=_segmenter(3, "softmax"), loss=loss, task="multiclass")}
    shares = np.asarray(found["class-imbalance"].evidence["pixel_shares"])
    labelled = y != 255
    expected = np.bincount(y[labelled], weights=np.broadcast_to(w[:, None, None], y.shape)[labelled], minlength=3)
    assert shares == pytest.approx(expected / expected.sum())


@pytest.mark.parametrize("shape", [(256,), (256, 1)])
def test_a_datasets_rows_the_loss_ignores_as_minus_one_are_checked_not_crashed(shape):
    # A classifier's rows labelled -1 under SparseCategoricalCrossentropy(ignore_class=-1), in a
    # dataset: the label-order test's np.bincount raised "'list' argument must have no negative
    # elements" before the first step, where Keras trains on them.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(256, 4)).astype("float32"), rng.integers(0, 3, 256)
    y[::7] = -1
    data = tf.data.Dataset.from_tensor_slices((x, y.reshape(shape), np.ones(256, "float32"))).batch(32)
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    assert not [f for f in check_data(data, model=model, loss=loss, task="multiclass") if f.severity == "error"]


@pytest.mark.parametrize("void", [255, -1])
def test_rows_the_loss_ignores_are_no_class_of_the_class_balance(void):
    # A classifier's rows labelled 255 under ignore_class=255 were counted as a class: 5 balanced
    # classes read "the rarest have class 5: 0, class 6: 0, class 7: 0"; -1 skipped the check.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1024, 8)).astype("float32"), rng.integers(0, 5, 1024)
    y[::7] = void
    model = keras.Sequential([keras.Input((8,)), L.Dense(5)])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=void)
    assert "class-imbalance" not in codes(check_data(x, y, model=model, loss=loss, task="multiclass"))
    y[(y == 4) & (np.arange(1024) % 10 != 0)] = 3  # class 4 a tenth of what it was
    (found,) = [f for f in check_data(x, y, model=model, loss=loss, task="multiclass") if f.code == "class-imbalance"]
    assert "class 4" in found.message and "class 5" not in found.message and "class 255" not in found.message


def test_a_sequence_taggers_rare_tags_are_told_of_positions_not_pixels():
    # (n, T) tags against a [batch, T, k] output take the segmentation's path: a tagger was told
    # "the labelled pixels", "77.4% pixel accuracy" and to one-hot its "masks".
    rng = np.random.default_rng(0)
    x = rng.integers(1, 50, size=(300, 20))
    y = np.where(x < 10, 1, 0) + 2 * (x == 10)  # tag 2 on ~2% of the timesteps...
    y[:, :3] = np.where(y[:, :3] == 2, 0, y[:, :3])  # ...under 2% of them
    model = keras.Sequential([keras.Input((20,), dtype="int32"), L.Embedding(50, 8), L.LSTM(8, return_sequences=True),
                              L.Dense(3, activation="softmax")])
    found = {f.code: f for f in check_data(x, y, model=model, loss=get_loss("scce"), task="multiclass")}
    text = found["class-imbalance"].message + found["class-imbalance"].advice
    assert "the labelled positions" in text and "position accuracy" in text and "one-hot labels" in text
    assert "pixel" not in text and "masks" not in text


def _masked_tagger(steps: int, classes: int, mask_zero: bool = True) -> keras.Model:
    return keras.Sequential([keras.Input((steps,), dtype="int32"), L.Embedding(100, 8, mask_zero=mask_zero),
                             L.LSTM(8, return_sequences=True), L.Dense(classes, activation="softmax")])


def test_a_pooled_masked_classifier_is_not_called_by_the_checks(monkeypatch):
    # Its mask stops at the pooling, and only per-position labels read it: the model was called
    # (twice, eagerly) on every check_data, 1.1 s instead of 0.5 s for a BiLSTM on 20,000 rows.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 100, size=(64, 10))
    net = keras.Sequential([keras.Input((10,), dtype="int32"), L.Embedding(100, 8, mask_zero=True), L.LSTM(8),
                            L.Dense(1, activation="sigmoid")])

    calls = []
    monkeypatch.setattr(keras.Model, "__call__", lambda *args, **kwargs: calls.append(args))  # (a failed call is caught)
    check_data(x, (x[:, 0] % 2).astype("float32"), model=net, loss=get_loss("binary_crossentropy"), task="binary")
    assert calls == []


def test_a_masked_taggers_padding_is_no_class_of_its_own():
    # Tags of the real tokens spread evenly over 5 classes, padding (85% of the positions) labelled
    # 0: the loss leaves the padding out (the mask), but class-imbalance counted it as "92.1% for
    # class 0" against 1.9% for class 1.
    rng = np.random.default_rng(0)
    real = np.arange(60)[None] < rng.integers(3, 10, size=(300, 1))
    x = np.where(real, rng.integers(1, 100, size=real.shape), 0)
    y = np.where(real, x % 5, 0)
    assert "class-imbalance" not in codes(check_data(x, y, model=_masked_tagger(60, 5), loss=get_loss("scce"), task="multiclass"))
    # Without the mask the loss reads the padding's labels: the same shares are the loss's.
    assert "class-imbalance" in codes(check_data(x, y, model=_masked_tagger(60, 5, mask_zero=False), loss=get_loss("scce"),
                                                 task="multiclass"))
    # A tag rare among the real tokens is still told.
    rare = np.where(real & (x % 5 == 1) & (x > 10), 2, np.where(real, x % 5, 0))
    found = {f.code: f for f in check_data(x, rare, model=_masked_tagger(60, 5), loss=get_loss("scce"), task="multiclass")}
    assert "class 1" in found["class-imbalance"].message


def test_a_masking_taggers_padding_is_no_class_of_its_own():
    # The same with a Masking layer on padded features: its padding steps (72%) labelled 0 read
    # "class 3: 1.3%, class 4: 1.4%, against 84.7% for class 0", where its real steps hold 4.7%
    # and 5.0% of them.
    rng = np.random.default_rng(0)
    real = np.arange(40)[None] < np.minimum(rng.geometric(0.12, size=(200, 1)) + 2, 40)
    x = np.where(real[..., None], rng.normal(size=(*real.shape, 4)), 0.0).astype("float32")
    y = np.where(real, rng.choice(5, p=[0.45, 0.3, 0.15, 0.05, 0.05], size=real.shape), 0)

    def tagger(masked: bool) -> keras.Model:
        return keras.Sequential([keras.Input((40, 4)), *([L.Masking()] if masked else []), L.LSTM(8, return_sequences=True),
                                 L.Dense(5, activation="softmax")])

    assert "class-imbalance" not in codes(check_data(x, y, model=tagger(True), loss=get_loss("scce"), task="multiclass"))
    assert "class-imbalance" in codes(check_data(x, y, model=tagger(False), loss=get_loss("scce"), task="multiclass"))


def test_a_masked_regressions_padded_targets_are_not_judged_as_its_scale():
    # Standardised sequence targets padded with -100 (an ignore value) at the steps a Masking layer
    # leaves out, which the loss leaves out too, read "mean -96.01 and std 19.53": unscaled-targets,
    # with advice to standardise them. Targets unscaled at their real steps are still told.
    rng = np.random.default_rng(0)
    real = np.arange(30)[None] < rng.integers(5, 31, size=(200, 1))
    x = np.where(real[..., None], rng.normal(size=(*real.shape, 1)), 0.0).astype("float32")
    y = (np.cumsum(x, axis=1) / 3).astype("float32")

    def tagger() -> keras.Model:
        return keras.Sequential([keras.Input((30, 1)), L.Masking(), L.LSTM(8, return_sequences=True), L.Dense(1)])

    assert "unscaled-targets" not in codes(check_data(x, np.where(real[..., None], y, -100.0), model=tagger(), loss=get_loss("mse"), task="regression"))
    assert "unscaled-targets" in codes(check_data(x, np.where(real[..., None], y * 1000 + 5000, 0.0), model=tagger(), loss=get_loss("mse"),
                                                  task="regression"))


def _padded_token_rows(rows: int, steps: int, shortest: int, seed: int, dtype: str = "int32") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(real, x, y): token ids 1..49 in rows of ``shortest..steps`` real steps, padded with 0 after
    them (``real`` marks the real ones), and one standard-normal target per step."""
    rng = np.random.default_rng(seed)
    real = np.arange(steps)[None] < rng.integers(shortest, steps + 1, size=(rows, 1))
    x = np.where(real, rng.integers(1, 50, size=real.shape), 0).astype(dtype)
    return real, x, rng.normal(size=(*real.shape, 1)).astype("float32")


def test_an_unbuilt_masked_taggers_padded_targets_are_not_judged_as_its_scale():
    # The same for a tagger not built before its fit (Embedding(mask_zero=True) first, no
    # keras.Input): it had no input to call it on, so every position counted, and standardised
    # targets padded with -100 (31% of the steps) read "mean -85 and std 35.72". It stays unbuilt.
    real, x, y = _padded_token_rows(200, 12, 4, seed=0)

    def tagger() -> keras.Model:
        return keras.Sequential([L.Embedding(50, 8, mask_zero=True), L.LSTM(8, return_sequences=True), L.Dense(1)])

    model = tagger()
    assert "unscaled-targets" not in codes(check_data(x, np.where(real[..., None], y, -100.0), model=model, loss=get_loss("mse"), task="regression"))
    assert not model.built
    assert "unscaled-targets" in codes(check_data(x, np.where(real[..., None], y * 1000 + 5000, 0.0), model=tagger(), loss=get_loss("mse"),
                                                  task="regression"))


def test_an_unbuilt_masked_taggers_big_endian_ids_are_read_through_its_mask():
    # Its copy was built on keras.Input(dtype=">i4"), which Keras refuses ("Invalid dtype: >i4"):
    # the copy failed, every position counted, and standardised targets padded with -100 were told
    # unscaled-targets, where the same tagger built first (or given native ids) was told nothing.
    real, x, y = _padded_token_rows(200, 12, 4, seed=0, dtype=">i4")
    y = np.where(real[..., None], y, -100.0)
    model = keras.Sequential([L.Embedding(50, 8, mask_zero=True), L.LSTM(8, return_sequences=True), L.Dense(1)])
    assert "unscaled-targets" not in codes(check_data(x, y, model=model, loss=get_loss("mse"), task="regression"))
    assert not model.built


class _SubclassedTagger(keras.Model):
    """Embedding(mask_zero=True), LSTM(return_sequences=True), Dense(1), as a keras.Model subclass."""

    def __init__(self):
        super().__init__()
        self.embed = L.Embedding(50, 8, mask_zero=True)
        self.lstm = L.LSTM(8, return_sequences=True)
        self.head = L.Dense(1)

    def call(self, ids):
        return self.head(self.lstm(self.embed(ids)))


@pytest.mark.parametrize("built", [False, True], ids=["unbuilt", "built"])
def test_a_subclassed_masked_taggers_padded_targets_are_not_judged_as_its_scale(built):
    # A subclassed tagger has no traced inputs, so its Embedding's mask was never looked for: its
    # standardised targets padded with -100 (28% of the steps) read "mean -90.68 and std 28.99",
    # which its loss (masked, 1.19 against 2813 over every step) never sees. Its call tells now.
    real, x, y = _padded_token_rows(200, 12, 4, seed=0)

    model = _SubclassedTagger()
    if built:
        model(x[:2])
    assert "unscaled-targets" not in codes(check_data(x, np.where(real[..., None], y, -100.0), model=model, loss=get_loss("mse"), task="regression"))
    assert "unscaled-targets" in codes(check_data(x, np.where(real[..., None], y * 1000 + 5000, 0.0), model=_SubclassedTagger(), loss=get_loss("mse"),
                                                  task="regression"))


def test_a_fit_of_an_unbuilt_subclassed_tagger_trains_as_before_its_mask_was_read():
    # The data checks build it by calling it, before the fit would: the same weights and losses.
    from trainkit import Trainer

    real, x, y = _padded_token_rows(48, 10, 3, seed=1)
    y = np.where(real[..., None], y, -100.0)
    fits = []
    for check in (True, False):
        keras.utils.set_random_seed(0)
        model = _SubclassedTagger()
        trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, diagnose=False)
        trainer.fit(x, y, epochs=2, batch_size=16, verbose=0, check_data=check)
        fits.append(([np.asarray(w) for w in model.weights], trainer.history.history["loss"]))
        if check:
            assert "unscaled-targets" not in trainer.data_check_codes
    assert fits[0][1] == fits[1][1]
    for checked, unchecked in zip(fits[0][0], fits[1][0], strict=True):
        np.testing.assert_array_equal(checked, unchecked)


class _StatefulSubclassedTagger(keras.Model):
    """_SubclassedTagger with a stateful=True LSTM, whose states take the rows of its first call."""

    def __init__(self):
        super().__init__()
        self.embed = L.Embedding(50, 8, mask_zero=True)
        self.lstm = L.LSTM(8, return_sequences=True, stateful=True)
        self.head = L.Dense(1)

    def call(self, ids):
        return self.head(self.lstm(self.embed(ids)))


def test_an_unbuilt_stateful_subclassed_tagger_is_built_by_its_fit_not_by_the_data_checks():
    # The data checks' call on 32 rows built it, its LSTM's states with 32 rows: the fit's batches
    # of 16 then failed ("Expected batch size: 32, Received batch size: 16").
    from trainkit import Trainer

    real, x, y = _padded_token_rows(48, 10, 3, seed=1)
    y = np.where(real[..., None], y, -100.0)
    model = _StatefulSubclassedTagger()
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, diagnose=False)
    trainer.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    assert [tuple(state.shape) for state in model.lstm.states] == [(16, 8), (16, 8)]


def test_an_unbuilt_subclassed_tagger_made_in_a_strategys_scope_is_built_by_the_data_checks_in_it():
    # The data checks' call built it outside the strategy's scope: its variables were no mirrored
    # ones, and its fit failed ("colocate_vars_with must only be passed a variable created in this
    # tf.distribute.Strategy.scope()").
    import tensorflow as tf

    from trainkit import Trainer

    real, x, y = _padded_token_rows(48, 10, 3, seed=1)
    y = np.where(real[..., None], y, -100.0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _SubclassedTagger()
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, diagnose=False, strategy=strategy)
    trainer.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert "unscaled-targets" not in trainer.data_check_codes  # its mask was read
    assert all(isinstance(w.value, tf.distribute.DistributedValues) for w in model.weights)


def test_whether_a_dataset_shuffles_is_read_without_serialising_its_tensors(monkeypatch):
    # Read from the serialised graph, which copies every tensor a pipeline holds: from_tensor_slices
    # of 200 MB of rows took 4 s and 570 MB more memory at every fit.
    from trainkit.checks.data_sampling import shuffles

    def refuse(**_):
        raise AssertionError("the dataset was serialised")

    monkeypatch.setattr(tf.raw_ops, "DatasetToGraphV2", refuse)
    rows = tf.data.Dataset.from_tensor_slices((np.zeros((10, 2), "float32"), np.zeros(10)))
    assert shuffles(rows.batch(2)) is False and shuffles(rows.map(lambda a, b: (a, b)).repeat().batch(2).prefetch(1)) is False
    assert shuffles(rows.shuffle(10).batch(2)) is True and shuffles(rows.batch(2).shuffle(5)) is True
    assert shuffles(tf.data.Dataset.zip((rows.shuffle(3), rows)).batch(2)) is True


def test_a_shuffle_draws_rows_only_where_its_buffer_holds_them_all():
    # Any .shuffle() counted as a random draw: 2,000 rows sorted by label in .shuffle(1000) drew
    # their first 8 batches from the first ~1,256 rows (classes 0 and 1; .shuffle(1500): 23 rows
    # of class 3 of 4 where a draw holds 64), and rules that judge the data by a random draw did so.
    from trainkit.checks.data_sampling import draws_rows, shuffle_short

    rows = tf.data.Dataset.from_tensor_slices((np.zeros((2000, 2), "float32"), np.zeros(2000)))
    endless = tf.data.Dataset.from_generator(lambda: iter([(np.zeros(2, "float32"), 0.0)]),
                                             output_signature=(tf.TensorSpec((2,)), tf.TensorSpec(())))
    for data in (rows.shuffle(2000).batch(32), rows.shuffle(5000).batch(32).repeat(), rows.repeat().shuffle(2000).batch(32),
                 rows.shuffle(2000).map(lambda a, b: (a, b)).batch(32).prefetch(1), rows.take(500).shuffle(500).batch(32)):
        assert draws_rows(data) is True and not shuffle_short(data)
    for data in (rows.shuffle(100).batch(32), rows.shuffle(1999).batch(32), rows.repeat().shuffle(100).batch(32)):
        assert draws_rows(data) is False and shuffle_short(data)
    # A shuffle of batches, or of groups whose rows come in their own order, draws no rows.
    for data in (rows.batch(32), rows.batch(32).shuffle(100), rows.batch(4).shuffle(500).unbatch().batch(32)):
        assert draws_rows(data) is False and not shuffle_short(data)
    # Rows of unknown number: unknown, neither a draw nor known short.
    for data in (endless.shuffle(1000).batch(32), rows.filter(lambda a, b: b >= 0).shuffle(5000).batch(32)):
        assert draws_rows(data) is None and not shuffle_short(data)


@pytest.mark.parametrize("buffer", [1000, 1200])
def test_class_imbalance_reads_no_class_mix_from_a_shuffle_buffer_smaller_than_the_rows(buffer):
    # 2,000 rows of 3 balanced classes sorted by label, .shuffle(1000).batch(32): the first 8
    # batches held classes 0 and 1 only, told "hold class ids 0..1 only, but the output layer has
    # 3 units"; .shuffle(1200): "imbalanced: the rarest have class 2: 11, against 127" (seeds 0-2).
    rng = np.random.default_rng(0)
    x, y = std_x(2600), rng.integers(0, 3, 2600)
    order = np.argsort(y[:2000], kind="stable")
    ds = tf.data.Dataset.from_tensor_slices
    found = run("multiclass", ds((x[:2000][order], y[:2000][order])).shuffle(buffer, seed=0).batch(32), None, x_val=x[2000:], y_val=y[2000:])
    assert "class-imbalance" not in codes(found)
    # A buffer of all the rows draws them: a 5% class in random order is told, one missing too.
    rare = (rng.uniform(size=2000) < 0.05).astype("int64")
    assert "class-imbalance" in codes(run("binary", ds((x[:2000], rare)).shuffle(2000, seed=0).batch(32), None))
    lacking = np.flatnonzero(y[:2000] != 2)
    (finding,) = [f for f in run("multiclass", ds((x[lacking], y[lacking])).shuffle(2000, seed=0).batch(32), None) if f.code == "class-imbalance"]
    assert "hold class ids 0..1 only" in finding.message


def test_a_shuffle_after_a_finite_repeat_draws_one_passs_rows():
    # draws_rows compared a buffer with one pass's rows only through an endless .repeat(): 2,000
    # rows .repeat(2).shuffle(2000) (its buffer holds every row, and copies) read as a buffer of
    # 2,000 against 4,000 rows, "too short", and a 5% class in random order went unsaid.
    from trainkit.checks.data_sampling import draws_rows, shuffle_short

    rng = np.random.default_rng(0)
    x, rare = std_x(2000), (rng.uniform(size=2000) < 0.05).astype("int64")
    rows = tf.data.Dataset.from_tensor_slices((x, rare))
    for data in (rows.repeat(2).shuffle(2000, seed=0).batch(32), rows.repeat(3).repeat(2).shuffle(2000, seed=0).batch(32)):
        assert draws_rows(data) is True and not shuffle_short(data)
        assert "class-imbalance" in codes(run("binary", data, None))
    assert draws_rows(rows.repeat(2).shuffle(1999).batch(32)) is False  # one pass's rows are still more


def test_a_directory_dataset_that_shuffles_its_files_draws_its_rows(tmp_path):
    # image_dataset_from_directory(shuffle=True) shuffles its whole file list before reading it,
    # then shuffles again in a buffer of batch_size * 8 files; draws_rows read that buffer alone,
    # too short for more files (256 for 300 at the default batch_size 32): 285 and 15 images of
    # two classes got no class-imbalance (a 5% class), told before any buffer was weighed.
    from trainkit.checks.data_sampling import draws_rows, shuffle_short

    rng = np.random.default_rng(0)
    for c, rows in (("a", 95), ("b", 5)):
        (tmp_path / c).mkdir()
        for i in range(rows):
            tf.io.write_file(str(tmp_path / c / f"{i}.png"), tf.io.encode_png(rng.integers(0, 255, (4, 4, 3)).astype("uint8")))
    made = functools.partial(keras.utils.image_dataset_from_directory, str(tmp_path), image_size=(4, 4), batch_size=8, verbose=False)
    data = made(seed=0)  # a buffer of 64 files for 100
    assert draws_rows(data) is True and not shuffle_short(data) and draws_rows(data.map(lambda a, b: (a / 255, b))) is True
    imaging = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    found = check_data(data, None, model=imaging, loss=get_loss("binary_crossentropy"), task="binary")
    assert "class-imbalance" in codes(found)
    assert draws_rows(made(shuffle=False)) is False  # its files in sorted order


def test_validation_target_range_reads_no_range_from_a_shuffle_buffer_smaller_than_the_rows():
    # A training dataset sorted by target in .shuffle(100): its first 8 batches are its ~356
    # lowest rows, and 20 validation rows from the upper quarter of the targets were told "lie
    # above every training target in the first 8 batches" (seeds 0-2), beside 500 training rows
    # above them. A buffer of all its rows draws them: no word.
    x = std_x(2100, seed=0)
    t = (x @ np.array([1.0, -0.5, 0.25, 0.0])).astype("float32")
    order = np.argsort(t[:2000])
    upper = 2000 + np.flatnonzero(t[2000:] > np.quantile(t, 0.75))[:20]
    for buffer in (100, 2000):
        train = tf.data.Dataset.from_tensor_slices((x[:2000][order], t[:2000][order])).shuffle(buffer, seed=0).batch(32)
        assert "validation-target-range" not in codes(run("regression", train, None, x_val=x[upper], y_val=t[upper]))


def test_multi_hot_rows_beside_all_zero_ones_show_a_multi_hot_row_for_a_softmax():
    # Tags of which some rows hold none: "row 0 sums to 0: several 1s (multi-hot)" showed an
    # all-zero row as the multi-hot one.
    y = np.zeros((len(X), 3), "float32")
    y[1::2, :2] = 1.0
    with pytest.raises(DataError) as info:
        run("multiclass", X, y, "categorical_crossentropy")
    assert info.value.code == "label-format"
    assert "row 1, sums to 2: several 1s (multi-hot)" in info.value.message
    assert "task='multilabel'" in info.value.message


@pytest.mark.parametrize("shape", [(-1,), (-1, 1)])
def test_class_ids_for_a_multilabel_output_are_told_to_be_encoded_not_to_use_dense_1(shape):
    # Class ids 0..2 against a multilabel Dense(3, sigmoid) were told "change the output layer to
    # Dense(1)": one unit cannot hold three labels; the ids want a 0/1 column a label.
    ids = (np.arange(len(X)) % 3).reshape(shape)
    with pytest.raises(DataError) as info:
        run("multilabel", X, ids)
    assert info.value.code == "shape-mismatch"
    assert "y = keras.utils.to_categorical(y, 3)" in info.value.message and "Dense(1)" not in info.value.message
    with pytest.raises(DataError) as info:  # one 0/1 label a row: no class ids to encode
        run("multilabel", X, (np.arange(len(X)) % 2).reshape(shape))
    assert "to_categorical" not in info.value.message


@pytest.mark.parametrize(("loss", "units", "labels"), [
    ("cce", 3, lambda rng: rng.integers(0, 3, 32).astype("float32")),  # float class ids for one-hot rows
    ("scce", 3, lambda rng: np.eye(3, dtype="float32")[rng.integers(0, 3, 32)]),  # one-hot rows for class ids
])
def test_the_dataset_map_advised_for_labels_runs_on_weighted_elements_and_float_ids(loss, units, labels):
    # dataset.map(lambda x, y: ...) raised a TypeError on (x, y, sample_weight) elements, and
    # tf.one_hot(tf.reshape(y, [-1]), 3) one on float class ids (it takes integer ids only).
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), labels(rng)
    data = tf.data.Dataset.from_tensor_slices((x, y, np.ones(32, "float32"))).batch(8)
    model = keras.Sequential([keras.Input((4,)), L.Dense(units, activation="softmax")])
    with pytest.raises(DataError) as raised:
        check_data(data, model=model, loss=get_loss(loss), task="multiclass")
    advised = re.search(r"dataset\.map\((lambda .*\))\)\.", str(raised.value)).group(1)
    mapped = data.map(eval(advised, {"tf": tf}))  # the advice's own code
    assert check_data(mapped, model=model, loss=get_loss(loss), task="multiclass") is not None
    assert len(next(iter(mapped))) == 3  # the weights kept


@pytest.mark.parametrize("as_dict", [True, False])
@pytest.mark.parametrize(("loss", "labels"), [
    ("cce", lambda rng: rng.integers(0, 3, 32)),  # class ids for one-hot rows
    ("scce", lambda rng: np.eye(3, dtype="float32")[rng.integers(0, 3, 32)]),  # one-hot rows for class ids
])
def test_the_dataset_map_advised_for_one_output_of_several_maps_that_output_alone(as_dict, loss, labels):
    # dataset.map(lambda x, y, *w: (x, tf.one_hot(tf.cast(tf.reshape(y, [-1]), ...)))) was told for
    # y['cls'] of a dict (or tuple) of targets: tf.reshape of the whole dict raised.
    rng = np.random.default_rng(0)
    x, cls, score = rng.normal(size=(32, 4)).astype("float32"), labels(rng), rng.normal(size=(32, 1)).astype("float32")
    inp = keras.Input((4,))
    hidden = L.Dense(8, activation="relu")(inp)
    model = keras.Model(inp, {"cls": L.Dense(3, activation="softmax", name="cls")(hidden), "score": L.Dense(1, name="score")(hidden)})
    y = {"cls": cls, "score": score} if as_dict else (cls, score)
    data = tf.data.Dataset.from_tensor_slices((x, y, np.ones(32, "float32"))).batch(8)
    losses, tasks = {"cls": get_loss(loss), "score": get_loss("mse")}, {"cls": "multiclass", "score": "regression"}
    with pytest.raises(DataError) as raised:
        check_data(data, model=model, loss=losses, task=tasks)
    assert raised.value.code == "label-format"
    advised = re.search(r"dataset\.map\((lambda .*\))\)\.", str(raised.value)).group(1)
    mapped = data.map(eval(advised, {"tf": tf}))  # the advice's own code
    assert check_data(mapped, model=model, loss=losses, task=tasks) is not None
    _, targets, w = next(iter(mapped))
    score_out = targets["score"] if as_dict else targets[1]
    assert w.shape == (8,) and score_out.shape == (8, 1)  # the other output's targets and the weights kept


def test_the_dataset_map_advised_for_one_outputs_labels_given_by_name_maps_that_entry():
    # {'label': ids} for a model of one output named 'label' (Keras takes it): the map replaced
    # the whole dict with tf.one_hot(tf.reshape(y, ...)), which raised on it.
    rng = np.random.default_rng(0)
    x, ids = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 3, 32)
    inp = keras.Input((4,))
    model = keras.Model(inp, {"label": L.Dense(3, activation="softmax", name="label")(inp)})
    data = tf.data.Dataset.from_tensor_slices((x, {"label": ids}, np.ones(32, "float32"))).batch(8)
    with pytest.raises(DataError) as raised:
        check_data(data, model=model, loss=get_loss("cce"), task="multiclass")
    advised = re.search(r"dataset\.map\((lambda .*\))\)\.", str(raised.value)).group(1)
    mapped = data.map(eval(advised, {"tf": tf}))  # the advice's own code
    assert check_data(mapped, model=model, loss=get_loss("cce"), task="multiclass") is not None


def test_the_dataset_map_advised_for_pixels_keeps_sample_weights():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 8, 8, 1)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((images, rng.integers(0, 2, 16), np.ones(16, "float32"))).batch(8)
    cnn = keras.Sequential([keras.Input((8, 8, 1)), L.Flatten(), L.Dense(1, activation="sigmoid")])
    (finding,) = [f for f in check_data(data, model=cnn, loss=get_loss("bce"), task="binary") if f.code == "unscaled-inputs"]
    advised = re.search(r"dataset\.map\((lambda .*\))\)\.", finding.advice).group(1)
    x, _, w = next(iter(data.map(eval(advised, {"tf": tf}))))  # the advice's own code
    assert float(tf.reduce_max(x)) <= 1.0 and w.shape == (8,)


@pytest.mark.parametrize("as_dict", [True, False])
def test_the_dataset_map_advised_for_pixels_of_one_of_several_inputs_runs(as_dict):
    # dataset.map(lambda x, y: (x / 255, y)) raised a TypeError on a dict (or tuple) of inputs.
    rng = np.random.default_rng(0)
    images, counts = rng.integers(0, 256, (16, 8, 8, 1)).astype("float32"), rng.normal(size=(16, 3)).astype("float32")
    image_in, count_in = keras.Input((8, 8, 1), name="image"), keras.Input((3,), name="counts")
    joined = L.Concatenate()([L.Flatten()(image_in), count_in])
    model = keras.Model([image_in, count_in], L.Dense(1, activation="sigmoid")(joined))
    x = {"image": images, "counts": counts} if as_dict else (images, counts)
    data = tf.data.Dataset.from_tensor_slices((x, rng.integers(0, 2, 16))).batch(8)
    (finding,) = [f for f in check_data(data, model=model, loss=get_loss("bce"), task="binary") if f.code == "unscaled-inputs"]
    assert "Rescaling(1 / 255) first in the model on that input" in finding.advice
    advised = re.search(r"dataset\.map\((lambda .*\))\)\.", finding.advice).group(1)
    x, _ = next(iter(data.map(eval(advised, {"tf": tf}))))  # the advice's own code
    scaled, kept = (x["image"], x["counts"]) if as_dict else x
    assert float(tf.reduce_max(scaled)) <= 1.0 and np.allclose(kept, counts[:8])


def test_the_rows_past_the_first_batches_of_a_dataset_in_order_are_read_once():
    # Each check that reads on past the sampled batches read them anew: two regression outputs
    # whose first batches look scaled read them twice (2 s each behind a slow map, 200k rows).
    from trainkit import Trainer

    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 4)).astype("float32")
    mapped = []

    def count(row):
        mapped.append(1)
        return row

    data = (tf.data.Dataset.from_tensor_slices((x, {"a": rng.standard_normal((600, 1)).astype("float32"),
                                                     "b": rng.standard_normal((600, 1)).astype("float32")}))
            .map(lambda row, y: (tf.py_function(count, [row], tf.float32), y)).batch(32))
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4, activation="relu")(inputs)
    two = keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(hidden), "b": keras.layers.Dense(1, name="b")(hidden)})
    trainer = Trainer(two, loss={"a": "mse", "b": "mse"}, optimizer="adam", task="regression")
    trainer.check_data(data, None)
    # The 8 batches sampled (and a row read ahead), then one pass, whose skip maps them again:
    # 857 rows; reading the rest per output was 1,457.
    assert len(mapped) <= 600 + 300


def test_row_hashes_project_rows_in_a_small_buffer_with_the_same_hashes():
    # Blocks of 4M values were copied to float64 and multiplied beside the copy: 64 MB for 200k rows
    # of 20 features, at every fit with validation rows; the hashes (so the overlap verdicts) are the same.
    import tracemalloc

    from trainkit.checks.leakage_checks import _row_hashes

    rng = np.random.default_rng(0)
    a = rng.normal(size=(200_000, 20)).astype(np.float32)
    weights = rng.standard_normal(20)
    tracemalloc.start()
    try:
        hashes = _row_hashes(a, weights)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < hashes.nbytes + (4 << 20)  # the hashes themselves and a buffer of ~0.5 MB
    np.testing.assert_array_equal(hashes, (a.astype(np.float64) * weights).sum(axis=1))
    images = rng.integers(0, 256, (300, 8, 8, 3), dtype=np.uint8)
    images[7] = images[3]  # identical rows hash alike wherever they sit
    image_hashes = _row_hashes(images, rng.standard_normal(192))
    assert image_hashes[7] == image_hashes[3] and len(np.unique(image_hashes)) == 299
