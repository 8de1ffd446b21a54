"""What fit, evaluate and predict accept besides numpy arrays and tf.data, and what they refuse."""

from __future__ import annotations

import contextlib
import re
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainkit import Callback, Trainer
from trainkit.errors import DataError
from trainkit.inputs import _source_errors


def make_data(rows: int = 96, features: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)).astype("float32")
    return x, (x[:, :1] > 0).astype("float32")


def make_model(features: int = 4, inputs: int = 1) -> keras.Model:
    keras.utils.set_random_seed(0)
    if inputs == 1:
        return keras.Sequential([keras.Input((features,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
    ins = [keras.Input((features,), name=name) for name in ("a", "b")]
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()(ins))
    return keras.Model(ins, out)


def make_trainer(model: keras.Model | None = None) -> Trainer:
    return Trainer(model or make_model(), loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), task="binary", seed=0, jit_compile=False)


class Batches(keras.utils.PyDataset):
    def __init__(self, x: np.ndarray, y: np.ndarray | None, batch_size: int = 32) -> None:
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.epochs_ended = 0
        self.read: list[int] = []

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i: int):
        self.read.append(i)
        rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.x[rows] if self.y is None else (self.x[rows], self.y[rows])

    def on_epoch_end(self) -> None:
        self.epochs_ended += 1


def test_a_pydataset_trains_as_its_batches_in_order_would():
    # It was refused as "missing-targets ... when x is a numpy array".
    x, y = make_data(100)  # a partial last batch of 4
    batches = Batches(x.astype("float64"), y)  # float64 read as float32, as Keras reads it
    history = make_trainer().fit(batches, epochs=2, shuffle=False, verbose=0).history
    expected = make_trainer().fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0).history
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-6)
    assert batches.epochs_ended >= 2
    trainer = make_trainer()
    trainer.fit(x, y, epochs=1, verbose=0, validation_data=Batches(x, y))
    assert trainer.evaluate(Batches(x, y)) == pytest.approx(trainer.evaluate(x, y), rel=1e-6)
    np.testing.assert_allclose(trainer.predict(Batches(x, None)), trainer.predict(x), rtol=1e-6)


class Failing(Batches):
    """Batches that fail as a user's PyDataset can: batch ``bad`` raises ``error``."""

    def __init__(self, x: np.ndarray, y: np.ndarray | None, bad: int, error: Exception) -> None:
        super().__init__(x, y)
        self.bad, self.error = bad, error

    def __getitem__(self, i: int):
        if i == self.bad:
            raise self.error
        return super().__getitem__(i)


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_an_error_a_pydataset_raises_mid_epoch_reaches_the_caller_as_itself(method):
    # It came inside TensorFlow's InvalidArgumentError of the generator op (model.fit's: "Graph
    # execution error:"); batches 0, 1 and the last are read before training, batch 2 is not.
    x, y = make_data(160)
    trainer = make_trainer()
    data = Failing(x, None if method == "predict" else y, bad=2, error=ValueError("my bug in batch 2"))
    with pytest.raises(ValueError, match=r"^my bug in batch 2$"):
        getattr(trainer, method)(data, **({"verbose": 0, "epochs": 1} if method == "fit" else {}))


def test_a_pydataset_error_is_raised_only_in_the_thread_whose_fit_read_it():
    # The errors were kept in one process-wide slot: a trainer fitting in another thread could
    # take this thread's error in place of its own TensorFlow error (the review audit).
    import threading

    from trainkit import inputs

    x, y = make_data(160)

    def read_theirs():  # another thread's dataset fails in batch 2, read by tf.data
        with contextlib.suppress(tf.errors.OpError):
            list(inputs.pydataset_batches(Failing(x, y, bad=2, error=ValueError("their batch"))))

    other = threading.Thread(target=read_theirs)
    other.start()
    other.join()

    @inputs.reraises_source_errors
    def failing_fit():
        raise tf.errors.InvalidArgumentError(None, None, "ValueError: their batch")

    try:
        with pytest.raises(tf.errors.InvalidArgumentError):
            failing_fit()
    finally:
        inputs._source_errors.clear()


def test_a_pydataset_batch_of_text_with_missing_values_is_refused_with_a_code():
    # None among a batch's text failed tf.data with an InternalError ("Unsupported object type
    # NoneType") in the first step; numpy text with None is refused as unsupported-input.
    texts = np.array(["good movie", "bad film", "great", "dull"] * 40, dtype=object)
    texts[70] = None  # batch 2 of 32 rows: read only once training runs
    vectorize = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=4)
    vectorize.adapt(["good movie", "bad film", "great", "dull"])
    model = keras.Sequential([keras.Input((), dtype="string"), vectorize, keras.layers.Embedding(20, 4),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid")])
    y = np.array([1, 0, 1, 0] * 40, dtype="float32")
    with pytest.raises(DataError) as info:
        make_trainer(model).fit(Batches(texts, y), epochs=1, verbose=0)
    assert info.value.code == "unsupported-input" and "Batch 2 of the Batches holds missing values" in info.value.message


def test_a_string_a_row_trains_an_input_of_shape_one_as_model_fit_does():
    # keras.Input(shape=(1,), dtype="string") fed (n,) strings, as Keras' text examples do: a 1-D
    # object array or a dataset of batched strings. model.fit trains on both; they were refused
    # (shape-mismatch: "x has shape (320,) but the model's input expects (None, 1)").
    words = np.array(["good", "bad", "great", "awful", "movie", "plot", "the", "was"])
    texts = np.array([" ".join(r) for r in words[np.random.default_rng(0).integers(0, 8, size=(96, 5))]], dtype=object)
    y = np.array([("good" in t or "great" in t) for t in texts], dtype="float32")
    vectorize = keras.layers.TextVectorization(max_tokens=12, output_sequence_length=5)
    vectorize.adapt(texts)

    def build() -> keras.Model:
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((1,), dtype="string"), vectorize, keras.layers.Embedding(12, 4),
                                 keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid")])

    reference = build()
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(texts, y, epochs=2, batch_size=32, shuffle=False, verbose=0).history["loss"]
    arrays = Trainer(build(), loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), task="binary", logdir=None)
    assert arrays.fit(texts, y, epochs=2, batch_size=32, shuffle=False, verbose=0).history["loss"] == pytest.approx(expected, abs=1e-6)
    dataset = tf.data.Dataset.from_tensor_slices((texts.astype(str), y)).batch(32)
    batches = Trainer(build(), loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), task="binary", logdir=None)
    assert batches.fit(dataset, epochs=2, verbose=0).history["loss"] == pytest.approx(expected, abs=1e-6)
    assert arrays.predict(texts[:3]).shape == (3, 1)


def test_columns_one_axis_short_of_their_inputs_train_as_model_fit_adjusts_them():
    # A dict of 1-D columns for keras.Input((1,)) inputs, as Keras's structured-data examples feed
    # them: model.fit adds the axis of 1 (and drops one for keras.Input(())); they were refused
    # (shape-mismatch: "x['age'] has shape (96,) but the model's input expects (None, 1)").
    rng = np.random.default_rng(0)
    age, kind = rng.normal(size=96).astype("float32"), rng.integers(0, 5, size=96)
    y = ((age + (kind == 2)) > 0.5).astype("float32")

    def build() -> keras.Model:
        keras.utils.set_random_seed(0)
        a, k = keras.Input((1,), name="age"), keras.Input((1,), name="kind", dtype="int64")
        hidden = keras.layers.Concatenate()([a, keras.layers.CategoryEncoding(5, output_mode="one_hot")(k)])
        return keras.Model([a, k], keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dense(4, activation="relu")(hidden)))

    reference = build()
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    x = {"age": age, "kind": kind}
    expected = reference.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0).history["loss"]
    trainer = make_trainer(build())
    assert trainer.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0).history["loss"] == pytest.approx(expected, abs=1e-6)
    assert trainer.predict(x).shape == (96, 1)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    assert make_trainer(build()).fit(dataset, epochs=2, verbose=0).history["loss"] == pytest.approx(expected, abs=1e-6)
    # The checks read such a column as the model does: a copy of the label in it is told.
    assert "label-leakage" in [f.code for f in make_trainer(build()).check_data({"age": y.copy(), "kind": kind}, y)]
    inputs = keras.Input(())
    scalar = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Reshape((1,))(inputs)))
    assert len(make_trainer(scalar).fit(age[:, None], y, epochs=1, verbose=0).history["loss"]) == 1


def test_a_trainer_given_columns_with_and_without_their_axis_of_1_traces_the_model_s_rank():
    # fit on (n,) columns for keras.Input((1,)), then predict or evaluate on (n, 1): the compiled
    # calls relaxed their traced shape to an unknown rank, and the model's call failed on it
    # ("as_list() is not defined on an unknown TensorShape"), as model.fit's does in that order.
    x, y = make_data(features=1)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="sigmoid")])
    trainer = make_trainer(model)
    trainer.fit(x[:, 0], y, epochs=1, verbose=0)
    trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=1, verbose=0)
    trainer.fit(x, y, epochs=1, verbose=0)
    assert trainer.predict(x).shape == trainer.predict(x[:, 0]).shape == (96, 1)
    assert trainer.evaluate(x, y)["loss"] == pytest.approx(trainer.evaluate(tf.data.Dataset.from_tensor_slices((x[:, 0], y)).batch(32))["loss"])


def test_a_dataset_of_columns_alone_is_predicted_as_batches_not_refused_as_single_examples():
    # predict(dataset of (None,) batches) for keras.Input((1,)) was refused: "The tf.data.Dataset
    # yields single examples, not batches (element shapes (None,))"; model.predict reads them.
    x, _ = make_data(features=1)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="sigmoid")])
    trainer = make_trainer(model)
    predicted = trainer.predict(tf.data.Dataset.from_tensor_slices(x[:, 0]).batch(32))
    np.testing.assert_allclose(predicted, model.predict(x, verbose=0), atol=1e-6)
    for single in (x[:, 0], x):  # single examples are still told to batch, () or (1,) each
        with pytest.raises(DataError) as info:
            trainer.predict(tf.data.Dataset.from_tensor_slices(single))
        assert info.value.code == "dataset-unbatched"
        with pytest.raises(DataError) as info:
            trainer.fit(tf.data.Dataset.from_tensor_slices((single, x[:, 0])), epochs=1, verbose=0)
        assert info.value.code == "dataset-unbatched"


def test_a_generator_s_batches_reach_the_model_at_its_rank_whichever_rank_each_predict_gets():
    # predict on a generator of (b,) batches for keras.Input((1,)), then on one of (b, 1) batches:
    # the generator's batches reached the compiled call as they came, its traced shape relaxed to
    # an unknown rank and the model's call failed ("Cannot take the length of shape with unknown
    # rank"), where arrays and datasets are given the model's rank first. A last batch of one row,
    # (1,) as a tensor, is a column too, not a single example.
    x, _ = make_data(rows=97, features=1)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="sigmoid")])
    trainer = make_trainer(model)
    expected = model.predict(x, verbose=0)

    def batches(a: np.ndarray, make=np.asarray):
        yield from (make(a[i:i + 32]) for i in range(0, len(a), 32))

    for columns, make in ((x[:, 0], np.asarray), (x, np.asarray), (x[:, 0], tf.constant)):
        np.testing.assert_allclose(trainer.predict(batches(columns, make)), expected, atol=1e-6)


def test_an_id_past_the_table_in_a_batch_the_checks_did_not_read_is_a_data_error():
    # The checks read a dataset's first batches; an id past the Embedding's table in a later one
    # failed the step with TensorFlow's "Graph execution error ... indices[4,3] = 25 is not in
    # [0, 20)" under trainkit's scopes (sequential_trainkit_probe_1/embedding_1/GatherV2).
    x = np.random.default_rng(0).integers(0, 20, size=(160, 6))
    x[155, 3] = 25  # batch 20 of 8 rows
    data = tf.data.Dataset.from_tensor_slices((x, (x[:, 0] % 2).astype("float32"))).batch(8)
    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(20, 4, name="tokens"),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(DataError) as info:
        make_trainer(model).fit(data, epochs=1, verbose=0)
    assert info.value.code == "embedding-ids"
    assert "holds id 25" in info.value.message and "Embedding 'tokens' has 20 rows" in info.value.message


@pytest.mark.parametrize(("bad_label", "said"), [(7, "holds class id 7, but the output layer 'classes' has 5 units"),
                                                   (-1, "holds class id -1, but the output layer 'classes' takes ids 0..4")])
def test_a_class_id_past_the_units_in_a_batch_the_checks_did_not_read_is_a_data_error(bad_label, said):
    # The checks read a dataset's first batches; a label 7 for a 5-unit softmax in a later one
    # failed the step with TensorFlow's "Graph execution error ... Received a label value of 7
    # which is outside the valid range of [0, 5)", where numpy labels are refused as label-format.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(640, 4)).astype("float32")
    y = rng.integers(0, 5, size=640)
    y[600] = bad_label  # batch 19 of 32 rows
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="softmax", name="classes")])
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="adam", task="multiclass", logdir=None, jit_compile=False)
    with pytest.raises(DataError) as info:
        trainer.fit(data, epochs=1, verbose=0)
    assert info.value.code == "label-format"
    assert said in info.value.message and "read only a dataset's first batches" in info.value.message
    # A dataset's labels take no np.unique: the lookup map told runs on it, as written.
    assert "np.unique" not in info.value.message
    advised = re.search(r"dataset\.map\((lambda .*\))\)\.", info.value.message).group(1)
    lookup = keras.layers.IntegerLookup(vocabulary=sorted({*range(5), bad_label}), num_oov_indices=0)
    mapped = data.map(eval(advised, {"lookup": lookup}))
    assert int(max(int(tf.reduce_max(b)) for _, b in mapped)) == 5 and int(min(int(tf.reduce_min(b)) for _, b in mapped)) == 0


@pytest.mark.parametrize("structure", ["dict", "tuple"])
def test_a_class_id_past_the_units_of_one_output_of_several_is_told_a_map_of_that_output(structure):
    # The lookup map told for a dataset mapped the whole y, a TypeError on a dict (or tuple) of
    # targets: it now makes over the failing output's entry alone.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(640, 4)).astype("float32")
    ids, other = rng.integers(0, 5, size=640), rng.normal(size=(640, 1)).astype("float32")
    ids[600] = 7  # batch 19 of 32 rows
    inputs = keras.Input((4,))
    model = keras.Model(inputs, [keras.layers.Dense(5, activation="softmax", name="classes")(inputs), keras.layers.Dense(1, name="value")(inputs)])
    targets = {"classes": ids, "value": other} if structure == "dict" else (ids, other)
    data = tf.data.Dataset.from_tensor_slices((x, targets)).batch(32)
    trainer = Trainer(model, loss={"classes": "sparse_categorical_crossentropy", "value": "mse"}, optimizer="adam",
                      task={"classes": "multiclass", "value": "regression"}, logdir=None, jit_compile=False)
    with pytest.raises(DataError) as info:
        trainer.fit(data, epochs=1, verbose=0)
    assert info.value.code == "label-format" and "the output layer 'classes' has 5 units" in info.value.message
    advised = re.search(r"dataset\.map\((lambda .*\))\)\.", info.value.message).group(1)
    lookup = keras.layers.IntegerLookup(vocabulary=[0, 1, 2, 3, 4, 7], num_oov_indices=0)
    mapped = list(data.map(eval(advised, {"lookup": lookup})))
    made = [b["classes"] if structure == "dict" else b[0] for _, b in mapped]
    kept = [b["value"] if structure == "dict" else b[1] for _, b in mapped]
    assert int(max(int(tf.reduce_max(b)) for b in made)) == 5
    np.testing.assert_array_equal(np.concatenate([np.asarray(b) for b in kept]), other)


@pytest.mark.parametrize(("bad_id", "said", "not_said"), [
    # predict(x) with id 30 for Embedding(20) was told "A batch read during training ... The checks
    # before the first step read only a dataset's first batches": predict neither trains nor checks.
    (30, ["A batch to predict holds id 30"], ["training", "checks"]),
    # Keras counts a negative id from the table's end, so -25 for 20 rows reached TensorFlow as -5,
    # and the error said "holds id -5 ... Use Embedding(input_dim=...) larger": no table helps.
    (-25, ["an id below -20", "Map the ids to 0..19"], ["larger"]),
])
def test_an_id_outside_the_table_in_rows_to_predict_is_a_data_error_with_its_own_advice(bad_id, said, not_said):
    x = np.random.default_rng(0).integers(0, 20, size=(40, 6))
    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(20, 4, name="tokens"),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid")])
    trainer = make_trainer(model)
    trainer.fit(x, (x[:, 0] % 2).astype("float32"), epochs=1, verbose=0)
    x[5, 2] = bad_id
    with pytest.raises(DataError) as info:
        trainer.predict(x)
    assert info.value.code == "embedding-ids"
    assert all(words in info.value.message for words in said) and not any(words in info.value.message for words in not_said)


def test_an_object_array_of_token_lists_is_told_to_pad_them():
    # np.array(rows, dtype=object) of token-id lists of several lengths was told "holds values that
    # are not numbers ... encode text and categories first", as if it held text.
    rows = np.empty(40, dtype=object)
    rows[:] = [list(range(1, 3 + i % 5)) for i in range(40)]
    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(10, 4),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(DataError) as info:
        make_trainer(model).fit(rows, np.zeros(40, "float32"), epochs=1, verbose=0)
    assert info.value.code == "unsupported-input" and "pad_sequences" in info.value.message and "encode text" not in info.value.message
    # Lists of one length (a DataFrame column of lists) were told of "rows of different lengths".
    rows[:] = [[1, 2, 3, 4, 5, 6] for _ in range(40)]
    with pytest.raises(DataError) as info:
        make_trainer(model).fit(rows, np.zeros(40, "float32"), epochs=1, verbose=0)
    assert "np.stack(rows)" in info.value.message and "different lengths" not in info.value.message


def test_float64_inputs_stay_float64_when_floatx_is_float64():
    # Keras narrows float64 data to floatx; trainkit narrowed it to float32 whatever floatx was, so
    # a float64 model trained on rounded inputs: weights 3e-11 off model.fit's here, 4e-9 with Adam.
    keras.backend.set_floatx("float64")
    keras.mixed_precision.set_global_policy("float64")  # Keras made the float32 one already
    try:
        x, y = make_data(100)
        x = x.astype(np.float64) + 1e-9  # digits float32 drops
        keras.utils.set_random_seed(0)
        reference = make_model()
        reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
        reference.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
        for data in ((x, y), (Batches(x, y),)):
            trainer = make_trainer()
            trainer.fit(*data, epochs=2, batch_size=32, shuffle=False, verbose=0)
            for got, want in zip(trainer.model.get_weights(), reference.get_weights(), strict=True):
                assert got.dtype == np.float64
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)
    finally:
        keras.backend.set_floatx("float32")
        keras.mixed_precision.set_global_policy("float32")


def test_big_endian_float64_batches_of_a_pydataset_are_read_as_float32():
    # A PyDataset's batches were narrowed where dtype == np.float64, which a big-endian ">f8" is
    # not: its batches went through as float64 tensors where native float64 ones are float32.
    from trainkit import inputs

    x, y = make_data(100)
    for dtype in ("float64", ">f8"):
        spec = inputs.pydataset_batches(Batches(x.astype(dtype), y.astype(dtype))).element_spec
        assert [s.dtype for s in spec] == [tf.float32, tf.float32]
    history = make_trainer().fit(Batches(x.astype(">f8"), y), epochs=2, shuffle=False, verbose=0).history
    expected = make_trainer().fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0).history
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-6)


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8, reason="np.longdouble is float64 here")
def test_longdouble_data_is_refused_by_name_as_model_fit_refuses_it():
    # np.longdouble (float128) failed with TensorFlow's words: "Unsupported numpy type:
    # NPY_LONGDOUBLE" in memory, "Cannot convert ... to a TensorFlow DType" from a PyDataset.
    # model.fit refuses it too ("Invalid dtype: float128"), so trainkit refuses it with a code.
    x, y = make_data(64)
    wide = x.astype(np.longdouble)
    for data in ((wide, y), (x, y.astype(np.longdouble)), (Batches(wide, y),)):
        with pytest.raises(DataError) as info:
            make_trainer().fit(*data, epochs=1, batch_size=32, verbose=0)
        assert info.value.code == "unsupported-input" and "float128" in info.value.message and ".astype(np.float32)" in info.value.message


class Endless(keras.utils.PyDataset):
    """Keras's PyDataset that never ends: ``num_batches`` is None, no ``__len__``."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__()
        self.x, self.y = x, y

    @property
    def num_batches(self) -> None:
        return None

    def __getitem__(self, i: int):
        rows = slice(i % 3 * 32, (i % 3 + 1) * 32)
        return self.x[rows], self.y[rows]


def test_a_pydataset_that_never_ends_trains_with_steps_per_epoch_as_with_model_fit():
    # It failed with "TypeError: object of type 'Endless' has no len()".
    x, y = make_data()
    reference = make_model()
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(Endless(x, y), epochs=3, steps_per_epoch=2, shuffle=False, verbose=0).history["loss"]
    trainer = make_trainer()
    got = trainer.fit(Endless(x, y), epochs=3, steps_per_epoch=2, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    with pytest.raises(DataError) as info:
        trainer.fit(Endless(x, y), epochs=1, verbose=0)
    assert info.value.code == "dataset-infinite" and "steps_per_epoch" in info.value.message
    # predict(..., steps=N) of a PyDataset was refused as "numpy data is predicted whole".
    np.testing.assert_allclose(trainer.predict(Endless(x, y), steps=2), trainer.predict(x[:64]), rtol=1e-6)


class FailsFarOn(keras.utils.PyDataset):
    """Regression batches that never end, failing from batch 20 on: past the steps a fit trains."""

    @property
    def num_batches(self) -> None:
        return None

    def __getitem__(self, i: int):
        if i >= 20:
            raise RuntimeError(f"batch {i} is broken")
        rng = np.random.default_rng(i)
        return rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")


def test_a_batch_past_those_a_fit_trains_on_fails_only_the_checks_read_past_it():
    # The data checks read a dataset that never shuffles on past its first batches (unscaled-
    # targets, up to 2,048 rows): batch 20 of one that never ends raised from them, before the
    # first step, where model.fit trained its 3 epochs of 5 steps (batches 0-14) without reading it.
    def model() -> keras.Model:
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])

    reference = model()
    reference.compile(loss="mse", optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(FailsFarOn(), epochs=3, steps_per_epoch=5, shuffle=False, verbose=0).history["loss"]
    trainer = Trainer(model(), loss="mse", optimizer=keras.optimizers.SGD(0.1), task="regression", statistics=False)
    got = trainer.fit(FailsFarOn(), epochs=3, steps_per_epoch=5, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert threading.get_ident() not in _source_errors  # nor is its error kept, with the dataset in its traceback
    # A fit that reaches it still fails with the batch's own error.
    trainer = Trainer(model(), loss="mse", optimizer="sgd", task="regression", statistics=False)
    with pytest.raises(RuntimeError, match="batch 20 is broken"):
        trainer.fit(FailsFarOn(), epochs=1, steps_per_epoch=25, shuffle=False, verbose=0)


def test_a_pass_that_fails_after_its_call_ended_keeps_no_error():
    # tf.data reads ahead: after a fit of 3 epochs of 5 steps returned, the dropped iterator's
    # reader now and then met batch 20 and kept its error under the thread (CI, under load), for a
    # later call's unrelated failure to be taken for it. A pass records only while its call runs.
    from trainkit import inputs

    batches = inputs.pydataset_batches(FailsFarOn())

    @inputs.reraises_source_errors
    def a_call_that_starts_a_pass():
        iterator = iter(batches)
        next(iterator)
        return iterator

    iterator = a_call_that_starts_a_pass()
    with pytest.raises(tf.errors.OpError):
        for _ in range(25):  # on to batch 20, after the call ended
            next(iterator)
    assert threading.get_ident() not in _source_errors


def test_a_generator_is_refused_for_fit_and_read_once_by_predict():
    x, y = make_data()
    trainer = make_trainer()
    with pytest.raises(DataError) as info:
        trainer.fit(((x[i : i + 32], y[i : i + 32]) for i in range(0, len(x), 32)), epochs=2, verbose=0)
    assert info.value.code == "unsupported-input" and "read only once" in info.value.message
    predicted = trainer.predict(x[i : i + 32] for i in range(0, len(x), 32))
    np.testing.assert_allclose(predicted, trainer.predict(x), rtol=1e-6)


class OnlyIterable:
    """Batches to iterate, with no length or indexing (as some loaders are)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y

    def __iter__(self):
        return ((self.x[i : i + 32], self.y[i : i + 32]) for i in range(0, len(self.x), 32))


@pytest.mark.parametrize("kind", ["generator-function", "only-iterable"])
def test_a_generator_function_or_an_object_that_only_iterates_is_refused_as_not_data(kind):
    # Both became one object array: "fit(x, y) needs targets y when x is a numpy array", or with
    # y "x holds values that are not numbers", advice for text.
    x, y = make_data()
    data = OnlyIterable(x, y)
    given = data.__iter__ if kind == "generator-function" else data
    trainer = make_trainer()
    for call in (lambda: trainer.fit(given, epochs=1, verbose=0), lambda: trainer.fit(given, y, epochs=1, verbose=0),
                 lambda: trainer.evaluate(given), lambda: trainer.predict(given)):
        with pytest.raises(DataError) as info:
            call()
        assert info.value.code == "unsupported-input" and "not data" in info.value.message and "from_generator" in info.value.message


def test_validation_data_is_accepted_like_x():
    # A generator got "validation_data must be (x_val, y_val) ...", not why a generator cannot
    # serve; a PyDataset of inputs only was told about a tf.data.Dataset it never gave.
    x, y = make_data()
    with pytest.raises(DataError) as info:
        make_trainer().fit(x, y, epochs=1, verbose=0, validation_data=((x[i : i + 32], y[i : i + 32]) for i in range(0, len(x), 32)))
    assert info.value.code == "unsupported-input" and info.value.message.startswith("validation_data is a generator")
    with pytest.raises(DataError) as info:
        make_trainer().fit(x, y, epochs=1, verbose=0, validation_data=Batches(x, None))
    assert info.value.code == "missing-targets" and "The Batches's batches hold inputs only" in info.value.message


@pytest.mark.parametrize(("x", "wanted"), [
    (lambda x: [list(row) for row in x[:-1]] + [list(x[-1][:2])], "same shape"),
    (lambda x: np.array([[*row[:-1], "a"] for row in x.tolist()], dtype=object), "not numbers"),
    (lambda x: np.array([[str(v) for v in row] for row in x]), "not numbers"),
], ids=["ragged-rows", "object-with-a-string", "strings"])
def test_inputs_that_are_not_one_array_of_numbers_are_refused(x, wanted):
    features, y = make_data()
    with pytest.raises(DataError) as info:
        make_trainer().fit(x(features), y, epochs=1, verbose=0)
    assert info.value.code == "unsupported-input" and wanted in info.value.message


def test_a_scipy_sparse_matrix_is_told_to_become_dense():
    sparse = pytest.importorskip("scipy.sparse")
    x, y = make_data()
    with pytest.raises(DataError) as info:
        make_trainer().fit(sparse.csr_matrix(x), y, epochs=1, verbose=0)
    assert info.value.code == "unsupported-input" and "x.toarray()" in info.value.message


@pytest.mark.parametrize(("make", "wanted"), [
    (tf.sparse.from_dense, "x is a tf.SparseTensor of dense shape (96, 4)"),
    (tf.RaggedTensor.from_tensor, "x is a tf.RaggedTensor"),
], ids=["sparse", "ragged"])
def test_a_sparse_or_ragged_tensor_is_told_to_become_dense(make, wanted):
    # It became one numpy object, refused as "values that are not numbers" (advice: encode text)
    # with the tensor's whole repr.
    x, y = make_data()
    with pytest.raises(DataError) as info:
        make_trainer().fit(make(x), y, epochs=1, verbose=0)
    assert info.value.code == "unsupported-input" and info.value.message.startswith(wanted) and len(info.value.message) < 300


def test_a_ragged_tensor_is_told_the_padding_mask_that_trains_it_as_model_fit_does():
    # model.fit trains an Embedding and a GlobalAveragePooling1D on ragged token lists; trainkit
    # refuses them, and told only to pad them, which averaged the padding's vector in: losses
    # 0.6523, 0.5816 where model.fit's are 0.6627, 0.5991 (256 rows). Padded into an Embedding(mask_zero=True), as
    # the refusal now says, they are model.fit's.
    rng = np.random.default_rng(0)
    tokens = [rng.integers(1, 50, size=n).tolist() for n in rng.integers(2, 9, size=96)]
    y = np.array([float(3 in t or 7 in t) for t in tokens], "float32")
    ragged = tf.ragged.constant(tokens, dtype=tf.int64)

    def build(**kwargs) -> keras.Model:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((None,), dtype="int64", **kwargs)
        pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(50, 4, mask_zero=not kwargs)(inputs))
        return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(pooled))

    reference = build(ragged=True)
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(ragged, y, epochs=2, batch_size=32, shuffle=False, verbose=0).history["loss"]
    for data in (ragged, tf.data.Dataset.from_tensor_slices((ragged, y)).batch(32)):
        with pytest.raises(DataError) as info:
            make_trainer(build()).fit(data, y if data is ragged else None, epochs=1, verbose=0)
        assert info.value.code == "unsupported-input" and "Embedding(mask_zero=True)" in info.value.message
    padded = make_trainer(build()).fit(ragged.to_tensor().numpy(), y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    assert padded.history["loss"] == pytest.approx(expected, abs=1e-6)


def test_object_arrays_of_numbers_are_trained_as_numbers():
    x, y = make_data()
    history = make_trainer().fit(x.astype(object), y, epochs=1, shuffle=False, verbose=0).history
    assert history["loss"] == make_trainer().fit(x, y, epochs=1, shuffle=False, verbose=0).history["loss"]


def test_targets_that_are_no_numbers_are_refused_and_object_arrays_of_numbers_trained():
    # Regression targets as text were a TensorFlow UnimplementedError (a Cast of a string) at the
    # first step, an object array of numbers "Failed to convert a NumPy array to a Tensor", and
    # complex targets trained on their real part without a word.
    x, _ = make_data()
    y = x[:, :1] * 2.0

    def regression() -> Trainer:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        return Trainer(model, loss="mse", optimizer=keras.optimizers.SGD(0.01), task="regression", seed=0, jit_compile=False, diagnose=False)

    for targets, code, wanted in [(y.astype(str), "label-format", "not numbers; MeanSquaredError() needs numeric targets"),
                                  (y.astype(np.complex64), "unsupported-input", "y holds complex numbers")]:
        with pytest.raises(DataError) as info:
            regression().fit(x, targets, epochs=1, verbose=0)
        assert info.value.code == code and wanted in info.value.message
    history = regression().fit(x, y.astype(object), epochs=1, shuffle=False, verbose=0).history
    assert history["loss"] == regression().fit(x, y, epochs=1, shuffle=False, verbose=0).history["loss"]


@pytest.mark.parametrize(("weights", "code", "wanted"), [
    (lambda n: np.where(np.arange(n) == 5, np.nan, 1.0), "non-finite-data", "sample_weight has 1 row"),
    (lambda n: np.ones((n, 2)), "shape-mismatch", "sample_weight has shape (96, 2)"),
    (lambda n: np.zeros(n), "sample-weight-all-zero", "weigh"),
    (lambda n: np.ones(n - 1), "shape-mismatch", "same number of rows"),
], ids=["nan", "two-columns", "all-zero", "rows"])
def test_sample_weights_are_checked_like_the_data(weights, code, wanted):
    # A NaN weight passed the checks and the fit returned an empty History after a NaN stop.
    x, y = make_data()
    with pytest.raises(DataError) as info:
        make_trainer().fit(x, y, epochs=1, verbose=0, sample_weight=weights(len(x)))
    assert info.value.code == code and wanted in info.value.message


def test_weights_per_output_are_refused_with_what_to_do_instead():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, {"p": keras.layers.Dense(1, activation="sigmoid", name="p")(inputs),
                                 "q": keras.layers.Dense(1, activation="sigmoid", name="q")(inputs)})
    x, y = make_data()
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", jit_compile=False)
    for weights in ({"p": np.ones(len(x)), "q": np.ones(len(x))}, [np.ones(len(x)), np.ones(len(x))]):
        with pytest.raises(DataError) as info:
            trainer.fit(x, {"p": y, "q": y}, epochs=1, verbose=0, sample_weight=weights)
        assert info.value.code == "unsupported-input" and "one weight per row" in info.value.message


def test_a_dataset_yielding_weights_per_output_is_refused_as_numpy_ones_are():
    # A tuple of weights trained with numbers unlike model.fit's (loss 1.8105 against 1.8351),
    # a dict of them failed in the first step with TensorFlow's TypeError.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, [keras.layers.Dense(1, activation="sigmoid", name="p")(inputs),
                                 keras.layers.Dense(1, activation="sigmoid", name="q")(inputs)])
    x, y = make_data()
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", jit_compile=False)
    w = np.ones(len(x), "float32")
    for weights in ((w, w), {"p": w, "q": w}):
        targets = (y, y) if isinstance(weights, tuple) else {"p": y, "q": y}
        dataset = tf.data.Dataset.from_tensor_slices((x, targets, weights)).batch(32)
        for call in (lambda d=dataset: trainer.fit(d, epochs=1, verbose=0), lambda d=dataset: trainer.evaluate(d)):
            with pytest.raises(DataError) as info:
                call()
            assert info.value.code == "unsupported-input" and "one weight per row" in info.value.message


@pytest.mark.parametrize("form", ["numpy", "dataset"])
def test_targets_in_a_list_or_tuple_of_one_train_a_model_with_one_output_as_model_fit_does(form):
    # fit(x, [y]) with 1-D labels was refused as y of shape (1, 96); a dataset of (x, (y,))
    # failed in the first step with a ValueError from keras.tree ("Expected an instance of tuple").
    x, y = make_data()
    y = y[:, 0]
    reference = make_model()
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    if form == "numpy":
        expected = reference.fit(x, [y], batch_size=32, epochs=2, shuffle=False, verbose=0).history["loss"]
        got = make_trainer().fit(x, [y], batch_size=32, epochs=2, shuffle=False, verbose=0).history["loss"]
    else:
        dataset = tf.data.Dataset.from_tensor_slices((x, (y,))).batch(32)
        expected = reference.fit(dataset, epochs=2, verbose=0).history["loss"]
        got = make_trainer().fit(dataset, epochs=2, verbose=0).history["loss"]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize(("x", "wanted"), [
    (lambda x: {"a": x, "B": x}, "x has no 'b' (x has 'B' instead: is 'B' meant to be 'b'?)"),
    (lambda x: [x], "holds 1 array."),
    (lambda x: x, "is one array"),
], ids=["misspelt-key", "too-few-arrays", "one-array"])
def test_inputs_that_do_not_match_the_model_inputs_are_named(x, wanted):
    # A raw multi-line ValueError from inside the traced step, in fit, evaluate and predict.
    features, y = make_data()
    trainer = make_trainer(make_model(inputs=2))
    for call in (lambda: trainer.fit(x(features), y, epochs=1, verbose=0), lambda: trainer.evaluate(x(features), y),
                 lambda: trainer.predict(x(features))):
        with pytest.raises(DataError) as info:
            call()
        assert info.value.code == "shape-mismatch" and wanted in info.value.message


@pytest.mark.parametrize("form", ["numpy", "dataset"])
def test_validation_inputs_missing_a_named_input_are_named_before_training(form):
    # Keras's "Missing data for input" came from inside the first validation step, after an epoch.
    features, y = make_data()
    x_val = {"a": features, "B": features}
    validation = (x_val, y) if form == "numpy" else tf.data.Dataset.from_tensor_slices((x_val, y)).batch(32)
    with pytest.raises(DataError) as info:
        make_trainer(make_model(inputs=2)).fit({"a": features, "b": features}, y, epochs=1, verbose=0, validation_data=validation)
    assert info.value.code == "shape-mismatch" and "x_val has no 'b' (x_val has 'B' instead" in info.value.message


@pytest.mark.parametrize(("x", "wanted"), [
    (lambda x: x[0], "if x is one sample, pass x[None] (shape (1, 4))"),
    (lambda x: x[:, 0], "give it the shape (n, 4)"),
], ids=["one-sample", "one-column"])
def test_one_dimensional_x_is_told_its_first_axis_counts_samples(x, wanted):
    # It was told to "build the model with keras.Input(shape=())".
    features, _ = make_data()
    with pytest.raises(DataError) as info:
        make_trainer().predict(x(features))
    assert info.value.code == "shape-mismatch" and wanted in info.value.message and "Input(shape=())" not in info.value.message


@pytest.mark.parametrize("shape", [(8, 8, 1), (None, None, 1)], ids=["fixed", "any-size"])
def test_one_image_without_the_batch_axis_is_told_to_add_it(shape):
    # predict(image) of one (8, 8, 1) image was told "build the model with keras.Input(shape=(8, 1))".
    model = keras.Sequential([keras.Input(shape), keras.layers.Conv2D(2, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(1, activation="sigmoid")])
    image = np.random.default_rng(0).random((8, 8, 1)).astype("float32")
    with pytest.raises(DataError) as info:
        Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary").predict(image)
    assert info.value.code == "shape-mismatch" and "pass x[None] (shape (1, 8, 8, 1))" in info.value.message
    assert "keras.Input(shape=" not in info.value.message


def test_rows_that_fit_as_one_sequence_are_also_told_to_shape_each_sample():
    # 500 rows of 8 features for an LSTM's (None, 8) were told only "if x is one sample, pass x[None]".
    model = keras.Sequential([keras.Input((None, 8)), keras.layers.LSTM(4), keras.layers.Dense(1)])
    with pytest.raises(DataError) as info:
        Trainer(model, loss="mse", optimizer="adam", task="regression", logdir=None).fit(
            np.zeros((500, 8), "float32"), np.zeros(500, "float32"), epochs=1, verbose=0)
    assert "pass x[None]" in info.value.message and "give each the shape (None, 8)" in info.value.message
    assert "keras.Input(shape=(8,))" in info.value.message


def test_one_flat_image_is_told_to_reshape_it_not_to_add_an_axis():
    # A flat (64,) image for an (8, 8, 1) input was told "pass x[None] (shape (1, 8, 8, 1))": x[None] is (1, 64).
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(1, activation="sigmoid")])
    image = np.random.default_rng(0).random(64).astype("float32")
    with pytest.raises(DataError) as info:
        Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary").predict(image)
    assert info.value.code == "shape-mismatch" and "pass x.reshape(1, 8, 8, 1) (shape (1, 8, 8, 1))" in info.value.message


@pytest.mark.parametrize(("dataset", "code", "wanted"), [
    (lambda x, y: tf.data.Dataset.from_tensor_slices((x, y, y[:, 0], y)).batch(32), "shape-mismatch", "yields 4 parts a batch"),
    (lambda x, y: tf.data.Dataset.from_tensor_slices((tf.RaggedTensor.from_tensor(x), y)).batch(32), "unsupported-input", "RaggedTensorSpec"),
    (lambda x, y: tf.data.Dataset.from_tensor_slices((tf.sparse.from_dense(x), y)).batch(32), "unsupported-input",
     "SparseTensorSpec values; trainkit trains on dense tensors. Make sparse ones dense: .map(lambda x, y: (tf.sparse.to_dense(x), y))."),
], ids=["four-parts", "ragged", "sparse"])
def test_datasets_whose_batches_are_not_x_y_weights_of_dense_tensors_are_refused(dataset, code, wanted):
    # A raw ValueError from inside the probe (4 parts), a raw XLA error (ragged). Sparse batches
    # were told to pad them ("Pad them: dataset.padded_batch(...)"), which they need not.
    x, y = make_data()
    with pytest.raises(DataError) as info:
        make_trainer().fit(dataset(x, y), epochs=1, verbose=0)
    assert info.value.code == code and wanted in info.value.message
    assert ("Pad" in info.value.message) == (wanted == "RaggedTensorSpec")


def test_a_single_input_dict_keyed_by_another_name_is_refused():
    x, y = make_data()
    with pytest.raises(DataError) as info:
        make_trainer().fit({"features": x}, y, epochs=1, verbose=0)
    assert info.value.code == "shape-mismatch" and "x has no" in info.value.message


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("struct", ["dict", "tensor"])
def test_dict_inputs_with_columns_the_model_does_not_read_train_on_the_ones_it_reads(struct, jit_compile):
    # A dataset of dicts with an id (text) column beside the features: model.fit reads the model's
    # inputs by name; trainkit refused the text ("the model takes numbers"), as it did numpy ids.
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(64, 2)).astype("float32"), "b": rng.normal(size=(64, 2)).astype("float32")}
    y = (x["a"][:, 0] > 0).astype("float32")
    ids = np.array([f"row{i}" for i in range(64)])

    def run(features, *, dataset):
        keras.utils.set_random_seed(0)
        a, b = keras.Input((2,), name="a"), keras.Input((2,), name="b")
        hidden = keras.layers.Dense(4, activation="relu")(keras.layers.Concatenate()([a, b]))
        model = keras.Model({"a": a, "b": b} if struct == "dict" else [a, b], keras.layers.Dense(1, activation="sigmoid")(hidden))
        trainer = Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, jit_compile=jit_compile)
        if dataset:
            data = tf.data.Dataset.from_tensor_slices((features, y)).batch(16)
            history = trainer.fit(data, validation_data=data, epochs=2, verbose=0).history
            inputs = tf.data.Dataset.from_tensor_slices(features).batch(16)
            return history, trainer.evaluate(data), trainer.predict(inputs)
        history = trainer.fit(features, y, batch_size=16, shuffle=False, validation_data=(features, y), epochs=2, verbose=0).history
        return history, trainer.evaluate(features, y), trainer.predict(features)

    for dataset in (True, False):
        plain = run(x, dataset=dataset)
        with_ids = run({**x, "id": ids}, dataset=dataset)
        assert with_ids[0] == plain[0] and with_ids[1] == plain[1]
        np.testing.assert_array_equal(with_ids[2], plain[2])


def test_text_reaches_a_model_whose_input_takes_strings():
    # The numbers-only check on x must not refuse a TextVectorization model's text.
    x = np.array(["good movie", "bad film", "great plot", "awful acting"] * 8)
    y = np.array([1, 0, 1, 0] * 8, "float32")
    vectorize = keras.layers.TextVectorization(max_tokens=20, output_mode="multi_hot")
    vectorize.adapt(x)
    model = keras.Sequential([keras.Input((), dtype="string"), vectorize, keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", jit_compile=False)
    assert len(trainer.fit(x, y, epochs=2, verbose=0).history["loss"]) == 2


def mixed_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    num, color = keras.Input((2,), name="num"), keras.Input((1,), name="color", dtype="string")
    colors = keras.layers.Flatten()(keras.layers.StringLookup(vocabulary=["red", "blue"], output_mode="one_hot")(color))
    return keras.Model({"num": num, "color": color}, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([num, colors])))


@pytest.mark.parametrize(("part", "wanted"), [
    ("num-as-text", "x['num'] holds values that are not numbers"),
    ("color-as-ids", "x['color'] holds numbers (int64)"),
    ("color-missing", "x['color'] holds a missing value (None) at row 3"),
    ("color-nan", "x['color'] holds a missing value (nan) at row 5"),
])
def test_each_input_of_a_model_with_text_and_numbers_gets_its_own_kind(part, wanted):
    # The numbers-only check was off for every input of a model with one text input: text for its
    # number input, ids for its text input, or None/NaN among its text (pandas' missing values)
    # failed in the first step with TensorFlow's "Cast string to float is not supported" or
    # "Failed to convert a NumPy array to a Tensor".
    num, y = make_data(features=2)
    color = np.where(num[:, :1] > 0, "red", "blue")
    x = {"num": num, "color": color}
    if part == "num-as-text":
        x["num"] = num.astype(str)
    elif part == "color-as-ids":
        x["color"] = (num[:, :1] > 0).astype("int64")
    else:
        x["color"] = color.astype(object)
        x["color"][3 if part == "color-missing" else 5, 0] = None if part == "color-missing" else float("nan")
    with pytest.raises(DataError) as info:
        make_trainer(mixed_model()).fit(x, y, epochs=1, verbose=0)
    assert info.value.code == "unsupported-input" and info.value.message.startswith(wanted)
    if part == "color-as-ids":  # a dataset's too
        with pytest.raises(DataError) as info:
            make_trainer(mixed_model()).fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=1, verbose=0)
        assert info.value.code == "unsupported-input" and "numbers (int64) for x['color']" in info.value.message
    x = {"num": num, "color": color.astype(object)}  # the right kinds train
    assert len(make_trainer(mixed_model()).fit(x, y, epochs=1, verbose=0).history["loss"]) == 1
    if part == "num-as-text":  # validation_data's are named as such (they were called x)
        bad = {"num": num[:16].astype(str), "color": color[:16].astype(object)}
        with pytest.raises(DataError) as info:
            make_trainer(mixed_model()).fit(x, y, epochs=1, verbose=0, validation_data=(bad, y[:16]))
        assert info.value.message.startswith("x_val['num'] holds values that are not numbers")
    # A functional model of one text input (its input one tensor, not a list) trains too.
    inputs = keras.Input((1,), dtype="string")
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Hashing(8, output_mode="one_hot")(inputs)))
    assert len(make_trainer(model).fit(color, y, epochs=1, verbose=0).history["loss"]) == 1


def test_a_pydataset_is_read_in_a_new_order_each_epoch_when_shuffled():
    # model.fit(shuffle=True), the default, shuffles a PyDataset's batch order each epoch.
    x, y = make_data(320)  # 10 batches
    batches = Batches(x, y)
    make_trainer().fit(batches, epochs=3, verbose=0, check_data=False)
    passes = [batches.read[i : i + 10] for i in range(len(batches.read) - 30, len(batches.read), 10)]
    assert all(sorted(p) == list(range(10)) for p in passes)  # every batch once a pass
    assert len({tuple(p) for p in passes}) == 3 and tuple(range(10)) not in {tuple(p) for p in passes}


class Staged(Batches):
    """Batches whose rows are chosen in ``on_epoch_begin`` (a shard loaded, an index reshuffled)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__(x, y)
        self.all_x, self.all_y = x, y
        self.events: list[str] = []

    def on_epoch_begin(self) -> None:
        self.events.append("begin")
        order = np.random.default_rng(len(self.events)).permutation(len(self.all_x))
        self.x, self.y = self.all_x[order], self.all_y[order]

    def __getitem__(self, i: int):
        self.events.append("read")
        return super().__getitem__(i)

    def on_epoch_end(self) -> None:
        super().on_epoch_end()
        self.events.append("end")


def test_a_pydataset_s_on_epoch_begin_is_called_before_each_epoch_s_batches():
    # model.fit calls it at every epoch's start; trainkit never did, so rows a PyDataset picks there
    # (here a new order of them each epoch) were never picked: every epoch read the same batches.
    x, y = make_data(96)  # 3 batches
    data = Staged(x, y)
    make_trainer().fit(data, epochs=2, shuffle=False, verbose=0, check_data=False)
    epochs = "".join("b" if e == "begin" else "e" if e == "end" else "r" for e in data.events)
    # The reads before the first pass: the element spec's batches (first, second, last).
    assert epochs.lstrip("r").count("brrre") == epochs.count("b") == epochs.count("e") >= 2
    assert epochs.endswith("brrrebrrre")


class Hooked(Batches):
    """Batches that record their reads and epoch hooks in order ("B", "E" and batch indices)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> None:
        super().__init__(x, y, batch_size)
        self.events: list[int | str] = []

    def __getitem__(self, i: int):
        self.events.append(i)
        return super().__getitem__(i)

    def on_epoch_begin(self) -> None:
        self.events.append("B")

    def on_epoch_end(self) -> None:
        super().on_epoch_end()
        self.events.append("E")


@pytest.mark.parametrize("shuffle", [False, True])
def test_the_checks_read_a_pydataset_without_its_epoch_hooks_and_skip_unread(shuffle):
    # The checks' sample (16 batches) and their read past it (labels sorted: one class in the first
    # batches) each began a pass of their own: 30 batches and epochs=2 called on_epoch_begin 4 times
    # and on_epoch_end 3 (model.fit: once each an epoch, and on_epoch_end once more before the
    # first), so a PyDataset that counts epochs or advances a curriculum there saw 4; and the read-on
    # read batches 0-15 again only to skip them.
    x = np.random.default_rng(0).normal(size=(240, 4)).astype("float32")
    y = (np.arange(240) >= 200).astype("float32")[:, None]  # sorted: the checks read on past their sample
    data = Hooked(x, y, batch_size=8)
    make_trainer().fit(data, epochs=2, shuffle=shuffle, verbose=0)
    events = data.events
    assert events.count("B") == events.count("E") == 2
    first = events.index("B")
    epoch = events[first + 1 : events.index("E")]
    assert sorted(epoch) == list(range(30)) and events[first:].count("B") == 2  # both hooks belong to training's passes
    checks = events[3:first]  # after the element spec's batches (0, 1, 29)
    if not shuffle:
        assert checks == list(range(30))  # the sample, then the read-on from batch 16: no batch read twice
    else:
        assert checks == epoch[: len(checks)]  # the sample is the first epoch's first batches


class Numbered(keras.utils.PyDataset):
    """Batches whose targets say which batch they are (2**i, so an epoch's mean loss of a model that
    predicts 0 names its batches), recording its epoch hooks between the fit's epoch callbacks."""

    def __init__(self, batches: int | None) -> None:
        super().__init__()
        self.batches = batches
        self.events: list[str] = []

    def __len__(self) -> int:
        return self.batches or 0

    @property
    def num_batches(self) -> int | None:
        return self.batches  # None: endless

    def __getitem__(self, i: int):
        return np.ones((2, 1), "float32"), np.full((2, 1), 2.0 ** (i % 20), "float32")  # the checks read an endless one further

    def on_epoch_begin(self) -> None:
        self.events.append("B")

    def on_epoch_end(self) -> None:
        self.events.append("E")


class EpochMarks(keras.callbacks.Callback):
    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.events.append("<")

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.events.append(">")


def predicts_zero() -> keras.Model:
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="zeros", use_bias=False)])


@pytest.mark.parametrize(("batches", "steps", "epochs"), [(6, 2, 4), (7, 3, 5), (4, 4, 2), (3, 5, 2), (4, None, 2), (None, 3, 3)],
                         ids=["fewer-steps", "fewer-steps-short-epoch", "as-many", "more-steps", "no-steps", "endless"])
def test_a_pydataset_s_epoch_hooks_follow_the_epochs_with_steps_per_epoch_as_in_model_fit(batches, steps, epochs):
    # With steps_per_epoch, one iterator goes on across epochs and the hooks were called per pass
    # over the batches: 6 batches, 4 epochs of 2 called on_epoch_begin once and on_epoch_end once
    # (an endless PyDataset's: never), where model.fit calls them each epoch, so a PyDataset that
    # reshuffles or advances a curriculum there saw no epochs.
    expected, got = Numbered(batches), Numbered(batches)
    reference = predicts_zero()
    reference.compile(keras.optimizers.SGD(0.0), "mse")
    want = reference.fit(expected, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=[EpochMarks(expected.events)])
    trainer = Trainer(predicts_zero(), loss="mse", optimizer=keras.optimizers.SGD(0.0), task="regression", seed=0, jit_compile=False)
    history = trainer.fit(got, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=[EpochMarks(got.events)])
    # Each epoch's batches, as model.fit reads them (6 batches: 0-1, 2-3, 4-5, then 0-1 again; 7
    # batches at 3: 0-2, 3-5, the pass's short epoch 6 alone, then 0-2 and 3-5 again), and
    # each epoch's hooks inside it, but model.fit's extra on_epoch_end before the first (README).
    np.testing.assert_allclose(history.history["loss"], want.history["loss"], rtol=1e-6)
    assert "".join(expected.events) == "E" + "<BE>" * epochs
    assert "".join(got.events) == "<BE>" * epochs


def test_a_pydataset_read_for_fewer_steps_than_its_batches_ends_each_read_with_on_epoch_end():
    # evaluate(steps=2), validation_steps=2 and predict(steps=2) left its pass after 2 of its 6
    # batches, before the pass's on_epoch_end(): each began an epoch that never ended ("BBB..."),
    # where model.evaluate/fit/predict call on_epoch_begin() and on_epoch_end() once each a read.
    def reads(make_model_or_trainer: str) -> tuple[list[str], list[str], list[str], float]:
        validation, evaluated, predicted = Numbered(6), Numbered(6), Numbered(6)
        if make_model_or_trainer == "keras":
            model = predicts_zero()
            model.compile(keras.optimizers.SGD(0.0), "mse")
            model.fit(Numbered(3), validation_data=validation, validation_steps=2, epochs=2, shuffle=False, verbose=0)
            loss = model.evaluate(evaluated, steps=2, verbose=0)
            model.predict(predicted, steps=2, verbose=0)
        else:
            trainer = Trainer(predicts_zero(), loss="mse", optimizer=keras.optimizers.SGD(0.0), task="regression", seed=0, jit_compile=False)
            trainer.fit(Numbered(3), validation_data=validation, validation_steps=2, epochs=2, shuffle=False, verbose=0)
            loss = trainer.evaluate(evaluated, steps=2)["loss"]
            trainer.predict(predicted, steps=2)
        return validation.events, evaluated.events, predicted.events, loss

    *expected, expected_loss = reads("keras")
    *got, loss = reads("trainkit")
    assert loss == pytest.approx(expected_loss, rel=1e-6)  # the same first 2 batches
    assert ["".join(events) for events in got] == ["BEBE", "BE", "BE"]
    assert [events.count("B") for events in expected] == [2, 1, 1]  # model.fit adds on_epoch_end()s of its own (README)


class ShrinksAtEpochEnd(Numbered):
    def on_epoch_end(self) -> None:
        super().on_epoch_end()
        self.batches -= 1


def test_a_pydataset_whose_len_falls_between_epochs_of_one_pass_is_refused():
    # Its epochs' on_epoch_end now comes mid-pass (steps_per_epoch): the rest of the pass would read
    # the batches len() had at the start, past its new end, so it is refused as between passes.
    data = ShrinksAtEpochEnd(6)
    trainer = Trainer(predicts_zero(), loss="mse", optimizer=keras.optimizers.SGD(0.0), task="regression", seed=0, jit_compile=False)
    with pytest.raises(DataError, match=r"len\(\) fell from 6 batches") as info:
        trainer.fit(data, epochs=3, steps_per_epoch=2, shuffle=False, verbose=0)
    assert info.value.code == "unsupported-input" and "".join(data.events) == "BEB"


class Shrinking(Batches):
    """Batches that drop their last rows at each epoch's end (len() falls), sliced past their end as numpy slices are."""

    def on_epoch_end(self) -> None:
        super().on_epoch_end()
        self.x, self.y = self.x[:-40], self.y[:-40]


def test_a_pydataset_whose_len_falls_during_fit_is_refused_not_read_past_its_end():
    # Each pass read the batches len() gave at the start: batches past the new end came back
    # empty (numpy slices) and trained as batches of no rows, which dead-relu read as units that
    # output 0 on every row of a batch (86% of a layer "dead"), or a user's IndexError came out.
    x, y = make_data(160)  # 5 batches, then 4 (128 rows) after the first pass
    data = Shrinking(x, y)
    with pytest.raises(DataError, match=r"len\(\) fell from 5 batches, when it was first read, to 4") as info:
        make_trainer().fit(data, epochs=3, shuffle=False, verbose=0)
    assert info.value.code == "unsupported-input"
    assert data.epochs_ended == 1 and data.read[-5:] == [0, 1, 2, 3, 4]  # no batch read once len() fell


class Threaded(Batches):
    """Batches read with ``workers`` threads, which record the threads that read them."""

    def __init__(self, x: np.ndarray, y: np.ndarray, workers: int, bad: int | None = None) -> None:
        import threading

        super().__init__(x, y)
        self.workers, self.max_queue_size, self.bad = workers, 3, bad
        self.lock, self.reading, self.overlapped = threading.Lock(), 0, threading.Event()

    def __getitem__(self, i: int):
        with self.lock:
            self.reading += 1
            if self.reading > 1:  # another read is in progress: read side by side
                self.overlapped.set()
        self.overlapped.wait(0.05)  # a read waiting on a file, long enough for another to start
        with self.lock:
            self.reading -= 1
        if i == self.bad:
            raise ValueError(f"my bug in batch {i}")
        return super().__getitem__(i)


def test_a_pydataset_with_workers_is_read_on_that_many_threads_in_its_order():
    # workers and max_queue_size were ignored: every batch was read on tf.data's one thread, and a
    # __getitem__ waiting 30 ms on files took 3.8 s for 3 epochs of 20 batches with workers=4
    # (model.fit 0.9 s; now 1.2 s).
    x, y = make_data(320)  # 10 batches
    data = Threaded(x, y, workers=3)
    history = make_trainer().fit(data, epochs=2, shuffle=False, verbose=0).history
    expected = make_trainer().fit(Threaded(x, y, workers=1), epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-6)
    assert data.overlapped.is_set() and data.epochs_ended >= 2
    with pytest.raises(ValueError, match=r"^my bug in batch 6$"):
        make_trainer().fit(Threaded(x, y, workers=3, bad=6), epochs=1, shuffle=False, verbose=0)


class MissingFiles(Batches):
    """Batches 7 to 9 of whose files are missing, read on 3 threads: batch 7 fails first."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        import threading

        super().__init__(x, y)
        self.workers, self.failed = 3, threading.Event()

    def __getitem__(self, i: int):
        if 7 <= i <= 9:
            if i == 7:
                self.failed.set()
            else:
                self.failed.wait(5)  # read ahead, failing just after batch 7
            raise FileNotFoundError(f"no file batch_{i}.npy")
        return super().__getitem__(i)


def test_the_error_of_the_batch_that_ends_a_pass_read_ahead_reaches_the_caller_as_itself():
    # Each read kept its error for fit to raise in place of TensorFlow's: batches 8 and 9, read
    # ahead on the workers, failed after batch 7 and overwrote its error, which no longer matched
    # TensorFlow's message, so fit raised TensorFlow's UnknownError wrapper of it.
    x, y = make_data(640)  # 20 batches
    with pytest.raises(FileNotFoundError, match=r"^no file batch_7\.npy$"):
        make_trainer().fit(MissingFiles(x, y), epochs=1, shuffle=False, verbose=0, check_data=False)


class EndlessThreaded(Threaded):
    """Threaded batches that never end (``num_batches`` None), its 10 batches over and over."""

    @property
    def num_batches(self) -> None:
        return None

    def __getitem__(self, i: int):
        return super().__getitem__(i % 10)


def test_a_pydataset_that_never_ends_is_read_on_its_workers_threads_too():
    # Only a finite one was read ahead: one that never ends was read one batch at a time on
    # tf.data's thread, whatever its workers (the README says "with workers=N ... on N threads").
    x, y = make_data(320)
    data = EndlessThreaded(x, y, workers=3)
    history = make_trainer().fit(data, epochs=2, steps_per_epoch=10, shuffle=False, verbose=0).history
    expected = make_trainer().fit(EndlessThreaded(x, y, workers=1), epochs=2, steps_per_epoch=10, shuffle=False, verbose=0).history
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-6)
    assert data.overlapped.is_set()


class FailsAfterTheFirstCall(Callback):
    def on_execution_end(self, first_step, outputs) -> None:
        raise RuntimeError("my callback failed")


@pytest.mark.parametrize("steps_per_epoch", [None, 40])
def test_a_fit_that_fails_mid_epoch_leaves_no_read_ahead_threads_while_its_error_is_kept(steps_per_epoch):
    # The error's traceback holds the epoch's frame, and it held the dataset iterator whose pass
    # was left mid-way: its workers threads and queued batches lived as long as the error was
    # kept (a notebook keeps the last one; Ctrl-C's TrainingInterrupted too). With
    # steps_per_epoch the iterator is carried from epoch to epoch, by the fit's DatasetSource.
    import threading

    x, y = make_data(2048)  # 64 batches: the first call (32 steps) ends mid-epoch
    with pytest.raises(RuntimeError, match="my callback failed") as info:
        make_trainer().fit(Threaded(x, y, workers=3), epochs=1, shuffle=False, verbose=0, check_data=False,
                           steps_per_epoch=steps_per_epoch, callbacks=[FailsAfterTheFirstCall()])
    readers = [t for t in threading.enumerate() if t.name.startswith("trainkit-pydataset")]
    for reader in readers:
        reader.join(10)  # a closed pass's threads end once their read does
    assert info.value is not None and not [t for t in readers if t.is_alive()]


class Sequences(keras.utils.PyDataset):
    """Sequences padded batch by batch: the time axis differs from batch to batch."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        rng = np.random.default_rng(i)
        x = rng.normal(size=(8, 5 + i, 3)).astype("float32")
        return x, (x[:, 0, :1] > 0).astype("float32")


def test_a_pydataset_of_sequences_padded_per_batch_trains():
    # The signature came from the first batch only: (None, 5, 3), and batch 1's (8, 6, 3) failed.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid")])
    history = make_trainer(model).fit(Sequences(), epochs=2, verbose=0).history
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))


def test_a_pydataset_of_inputs_only_is_told_to_return_targets_but_predicts():
    x, _ = make_data()
    trainer = make_trainer()
    with pytest.raises(DataError) as info:
        trainer.fit(Batches(x, None), epochs=1, verbose=0)
    assert info.value.code == "missing-targets" and "Batches's batches hold inputs only" in info.value.message
    assert trainer.predict(Batches(x, None)).shape == (len(x), 1)


def test_weights_of_shape_n_1_as_a_list_are_one_weight_per_row_for_several_outputs():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, [keras.layers.Dense(1, activation="sigmoid")(inputs), keras.layers.Dense(1, activation="sigmoid")(inputs)])
    x, y = make_data()
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", jit_compile=False)
    history = trainer.fit(x, [y, y], epochs=1, verbose=0, sample_weight=[[1.0]] * len(x)).history
    assert np.isfinite(history["loss"]).all()

class _MaskedStep(Trainer):
    """A step of its own that weighs each row's loss by ``x["mask"]``, which no model input reads."""

    def train_step(self, batch):
        x, y = batch[0], batch[1]
        with tf.GradientTape() as tape:
            pred = self.model({"a": x["a"]}, training=True)
            loss = tf.reduce_mean(x["mask"] * tf.square(y[:, None] - pred))
        gradients = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables, strict=True))
        return {"loss": loss}


@pytest.mark.parametrize("dataset", [False, True], ids=["arrays", "dataset"])
def test_a_step_of_its_own_keeps_the_dict_entries_the_model_does_not_read(dataset):
    # Leaving out the entries no model input is named after (an id column) also took them from a
    # train_step of its own that reads one: a KeyError on x["mask"] at the first trace.
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(32, 2)).astype("float32"), "mask": np.ones((32, 1), "float32")}
    y = rng.normal(size=32).astype("float32")
    a = keras.Input((2,), name="a")
    trainer = _MaskedStep(keras.Model({"a": a}, keras.layers.Dense(1)(a)), loss="mse", optimizer="sgd", task="regression",
                          seed=0, jit_compile=False, diagnose=False)
    data = {"x": tf.data.Dataset.from_tensor_slices((x, y)).batch(16)} if dataset else {"x": x, "y": y, "batch_size": 16}
    assert np.isfinite(trainer.fit(**data, epochs=1, verbose=0).history["loss"][0])


def test_grayscale_images_without_a_channel_axis_for_an_unbuilt_conv_model_are_told_to_add_one():
    # A Sequential without an Input, Conv2D first, fit on (n, 28, 28): told only to "give it an input
    # shape", which (28, 28) would not make work; a recipe was already told x[..., None].
    x = np.random.default_rng(0).uniform(size=(40, 28, 28)).astype("float32")
    y = (x.mean(axis=(1, 2)) > 0.5).astype("float32")
    model = keras.Sequential([keras.layers.Conv2D(4, 3), keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(DataError) as info:
        make_trainer(model).fit(x, y, epochs=1, verbose=0)
    assert info.value.code == "unbuilt-model" and "x = x[..., None] for grayscale images" in info.value.message
    assert "Full shape received: (None, 28, 28). The inputs have no channel axis" in info.value.message
