"""Models with several outputs: per-output losses, weights, tasks and metrics, as model.compile."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainkit import Trainer
from trainkit.diagnosis.baseline import chance_loss
from trainkit.diagnosis.run_context import build_context
from trainkit.errors import ArgumentError, CompatibilityError, DataError, UnknownNameError


def data(rows: int = 70) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 4)).astype("float32")
    return x, (x[:, :1] > 0).astype("float32"), 2.0 * x[:, :3]


def two_heads() -> keras.Model:
    """A binary head ``a`` (1 unit) and a regression head ``b`` (3 units): different shapes."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, [keras.layers.Dense(1, activation="sigmoid", name="a")(hidden), keras.layers.Dense(3, name="b")(hidden)])


def heads_trainer(**kwargs) -> Trainer:
    kwargs.setdefault("loss", ["binary_crossentropy", "mse"])
    kwargs.setdefault("task", ["binary", "regression"])
    kwargs.setdefault("optimizer", keras.optimizers.SGD(0.05))
    return Trainer(kwargs.pop("model", None) or two_heads(), seed=0, jit_compile=False, diagnose=False, **kwargs)


def test_per_output_losses_weights_and_metrics_match_model_fit():
    x, ya, yb = data()
    keras_model = two_heads()
    keras_model.compile(loss=["binary_crossentropy", "mse"], loss_weights=[1.0, 0.5], optimizer=keras.optimizers.SGD(0.05),
                        metrics={"a": ["accuracy"], "b": ["mae"]})
    expected = keras_model.fit(x, [ya, yb], batch_size=32, epochs=2, shuffle=False, validation_split=0.2, verbose=0).history
    trainer = heads_trainer(loss_weights=[1.0, 0.5], metrics={"a": ["accuracy"], "b": ["mae"]})
    got = trainer.fit(x, [ya, yb], batch_size=32, epochs=2, shuffle=False, validation_split=0.2, verbose=0).history
    assert set(got) == {"loss", "a_loss", "b_loss", "a_accuracy", "b_mae",
                        "val_loss", "val_a_loss", "val_b_loss", "val_a_accuracy", "val_b_mae"}
    for key in ("loss", "a_accuracy", "val_loss", "val_a_loss", "val_b_loss", "val_a_accuracy"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(got["val_b_mae"], expected["val_b_mae"], rtol=1e-5)
    # The per-output training losses are row-weighted over the epoch, like the total, so they add
    # up to it (Keras averages their batch values: its a_loss weights the 24-row last batch as
    # much as the 32-row first one).
    np.testing.assert_allclose(got["loss"], np.add(got["a_loss"], 0.5 * np.asarray(got["b_loss"])), rtol=1e-5)


def test_with_sample_weights_the_per_output_losses_still_add_up_to_the_loss():
    x, ya, yb = data()
    weights = np.random.default_rng(1).random(len(x)).astype("float32")
    keras_model = two_heads()
    keras_model.compile(loss=["binary_crossentropy", "mse"], optimizer=keras.optimizers.SGD(0.05))
    expected = keras_model.fit(x, [ya, yb], sample_weight=weights, batch_size=32, epochs=2, shuffle=False, verbose=0).history
    got = heads_trainer().fit(x, [ya, yb], sample_weight=weights, batch_size=32, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(got["loss"], np.add(got["a_loss"], got["b_loss"]), rtol=1e-5)


def test_one_loss_for_every_output_is_summed_over_the_outputs():
    x, ya, _ = data()
    yb = (x[:, 1:2] > 0).astype("float32")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(1, activation="sigmoid", name="a")(hidden), keras.layers.Dense(1, activation="sigmoid", name="b")(hidden)])
    trainer = Trainer(model, loss="binary_crossentropy", task="binary", optimizer=keras.optimizers.SGD(0.0), metrics=["accuracy"], seed=0, diagnose=False)
    result = trainer.evaluate(x, [ya, yb], batch_size=70)
    pa, pb = model(x)
    bce = keras.losses.BinaryCrossentropy()
    assert result["loss"] == pytest.approx(float(bce(ya, pa)) + float(bce(yb, pb)), rel=1e-6)
    assert result["a_accuracy"] == pytest.approx(float(np.mean((pa.numpy() > 0.5) == ya)), rel=1e-6)
    assert result["b_accuracy"] == pytest.approx(float(np.mean((pb.numpy() > 0.5) == yb)), rel=1e-6)


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # Keras warns of the untrained head, as model.fit does
def test_losses_and_targets_by_output_name_and_an_output_without_a_loss_is_not_trained():
    x, ya, yb = data()
    trainer = heads_trainer(loss={"a": "binary_crossentropy"}, task={"a": "binary"})
    head_b = trainer.model.get_layer("b").kernel.numpy().copy()
    head_a = trainer.model.get_layer("a").kernel.numpy().copy()
    history = trainer.fit(x, {"b": yb, "a": ya}, batch_size=32, epochs=1, verbose=0).history
    assert set(history) == {"loss", "a_loss"}
    assert history["loss"][0] == pytest.approx(history["a_loss"][0], rel=1e-6)
    np.testing.assert_array_equal(trainer.model.get_layer("b").kernel.numpy(), head_b)
    assert not np.array_equal(trainer.model.get_layer("a").kernel.numpy(), head_a)


def test_a_subclassed_model_with_two_outputs_trains_from_numpy_as_from_a_dataset():
    class TwoHeads(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = keras.layers.Dense(8, activation="relu")
            self.a = keras.layers.Dense(1, activation="sigmoid")
            self.b = keras.layers.Dense(3)

        def call(self, x, training=False):
            hidden = self.hidden(x)
            return self.a(hidden), self.b(hidden)

    x, ya, yb = data()
    histories = []
    for form in ("numpy", "dataset"):
        keras.utils.set_random_seed(0)
        trainer = heads_trainer(model=TwoHeads())
        if form == "numpy":
            history = trainer.fit(x, [ya, yb], batch_size=32, epochs=2, shuffle=False, verbose=0)
        else:
            history = trainer.fit(tf.data.Dataset.from_tensor_slices((x, (ya, yb))).batch(32), epochs=2, verbose=0)
        histories.append(history.history)
    assert set(histories[0]) == {"loss", "output_0_loss", "output_1_loss"}
    for key, values in histories[0].items():
        np.testing.assert_allclose(values, histories[1][key], rtol=1e-6, err_msg=key)
    # Its hidden layer is read through a hook; output_0 takes the sigmoid of the layer producing it.
    assert not [f for f in trainer.findings if f.code == "statistics-missing"]
    names = set(trainer._train_loop.names)
    hidden = trainer.model.hidden.name
    assert {f"activation/{hidden}/dead_fraction", "activation/output_0/saturated_fraction", "activation/output_1/mean"} <= names


@pytest.mark.parametrize(("kwargs", "code", "words"), [
    ({"loss": ["binary_crossentropy"]}, "bad-argument", "loss is a list of 1 but the model has 2 outputs (a, b)"),
    ({"loss": {"a": "binary_crossentropy", "c": "mse"}}, "bad-argument", 'names "c", which is not an output'),
    ({"loss": {"a": "binary_crossentropy", "b": "mse"}, "task": {"a": "binary"}}, "bad-argument", "Output b has a loss but no task"),
    ({"loss_weights": [1.0, "x"]}, "bad-argument", "loss_weights: the weight of output b must be a finite number >= 0"),
    ({"loss_weights": [1.0, -1.0]}, "bad-argument", "loss_weights: the weight of output b must be a finite number >= 0, got -1.0"),
    ({"task": ["binary", "regresion"]}, "unknown-task", 'Did you mean "regression"'),
    ({"loss": ["binary_crossentropy", "mse_typo"]}, "unknown-loss", "Unknown loss"),
    # A flat list is computed for every output: the message names the one it does not fit, and
    # the dict that picks metrics per output (it told of "a regression task" only).
    ({"metrics": ["accuracy"]}, "unknown-metric", "The metrics of output b (regression): The metric \"accuracy\" means nothing"),
    ({"metrics": ["accuracy"]}, "unknown-metric", "metrics={'a': [...], 'b': [...]}"),
])
def test_per_output_arguments_that_do_not_fit_the_outputs_are_refused(kwargs, code, words):
    with pytest.raises((ArgumentError, UnknownNameError)) as info:
        heads_trainer(**kwargs)
    assert info.value.code == code and words in info.value.message


def test_each_output_is_checked_against_its_own_task():
    with pytest.raises(CompatibilityError) as info:
        heads_trainer(task="binary")  # the mse head b is not a binary classifier
    assert info.value.code == "regression-loss-for-classification"
    x, ya, yb = data()
    with pytest.raises(DataError) as info:
        heads_trainer().fit(x, [ya * 255, yb], epochs=1, verbose=0)
    assert info.value.code == "label-format" and "y['a']" in info.value.message


def test_the_chance_level_of_several_outputs_is_the_weighted_sum_of_theirs():
    _, ya, yb = data()
    trainer = heads_trainer(loss_weights={"b": 0.5})
    context = build_context(trainer, (ya, yb))
    expected = chance_loss("binary", trainer.heads[0].loss, ya).loss + 0.5 * chance_loss("regression", trainer.heads[1].loss, yb).loss
    assert context.chance_loss == pytest.approx(expected, rel=1e-9)
    assert context.task == "mixed"


def test_each_output_keeps_its_own_chance_level_on_the_training_and_validation_rows():
    _, ya, yb = data()
    trainer = heads_trainer(loss_weights={"b": 0.5})
    context = build_context(trainer, (ya[:50], yb[:50]), validation_targets=(ya[50:], yb[50:]))
    assert context.output_chance_losses == {"a": pytest.approx(chance_loss("binary", trainer.heads[0].loss, ya[:50]).loss),
                                            "b": pytest.approx(chance_loss("regression", trainer.heads[1].loss, yb[:50]).loss)}
    assert context.val_output_chance_losses["b"] == pytest.approx(chance_loss("regression", trainer.heads[1].loss, yb[50:]).loss)
    assert context.output_loss_weights == {"a": 1.0, "b": 0.5}
    assert context.chance_loss == pytest.approx(context.output_chance_losses["a"] + 0.5 * context.output_chance_losses["b"])
    # An output whose level is unknown (soft labels) leaves the total unknown, not the other's level.
    context = build_context(trainer, (np.full_like(ya, 0.3), yb))
    assert context.chance_loss is None and set(context.output_chance_losses) == {"b"}
    # One output: none.
    assert build_context(heads_trainer(model=keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")]),
                                       loss="binary_crossentropy", task="binary"), ya).output_chance_losses is None


def test_an_outputs_validation_level_pools_the_training_labels_where_its_rows_are_few_a_class():
    # 200 classes, 800 validation rows: their own prior read 3.99, fitted to their noise, where one
    # output's level pools the training labels (4.11) and a head that had learned read at chance.
    rng = np.random.default_rng(0)
    prior = 1 / np.arange(1, 201)
    ytr, yva = rng.choice(200, size=8000, p=prior / prior.sum()), rng.choice(200, size=800, p=prior / prior.sum())
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8)(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(200, activation="softmax", name="a")(hidden),
                                 keras.layers.Dense(1, activation="sigmoid", name="b")(hidden)])
    trainer = heads_trainer(model=model, loss=["sparse_categorical_crossentropy", "binary_crossentropy"], task=["multiclass", "binary"])
    yb = (rng.random((8800, 1)) > 0.5).astype("float32")
    context = build_context(trainer, (ytr, yb[:8000]), validation_targets=(yva, yb[8000:]))
    pooled = chance_loss("multiclass", trainer.heads[0].loss, yva, prior_rows=ytr)
    assert context.val_output_chance_losses["a"] == pytest.approx(pooled.loss)
    assert context.val_output_chance_losses["a"] > chance_loss("multiclass", trainer.heads[0].loss, yva).loss + 0.05


def random_head_fit(yb_of, logdir=None) -> list:
    """Two binary heads on 600 rows, ``a`` learnable, ``b``'s labels from ``yb_of(x, rng)``: the
    run's findings (its event files under ``logdir``, when given)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype("float32")
    ya = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")[:, None]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(1, activation="sigmoid", name="a")(hidden),
                                 keras.layers.Dense(1, activation="sigmoid", name="b")(hidden)])
    trainer = Trainer(model, loss="binary_crossentropy", task="binary", optimizer=keras.optimizers.Adam(3e-3), seed=0, jit_compile=False,
                      logdir=logdir)
    trainer.fit(x, [ya, yb_of(x, rng)], batch_size=32, epochs=15, validation_split=0.25, verbose=0)
    return trainer.findings


def test_a_head_on_random_labels_beside_one_that_learns_is_at_its_own_chance(tmp_path):
    # b's validation loss 0.705-0.718 against its own level 0.693 while a's fell to 0.12 and the
    # total to 57% of its level: no finding at all.
    from trainkit.diagnosis.readback import diagnose_run_dir

    findings = random_head_fit(lambda x, rng: rng.integers(0, 2, size=(600, 1)).astype("float32"), tmp_path)
    found = [f for f in findings if f.code == "loss-at-chance"]
    assert found and found[0].message.startswith("Output b's validation loss never got clearly below its own chance level")
    assert found[0].evidence["output"] == "b"
    # trainkit diagnose reads the outputs' levels back from the event files: the same finding.
    assert [f.message for f in diagnose_run_dir(tmp_path) if f.code == "loss-at-chance"] == [found[0].message]
    # b learnable too: silent.
    assert "loss-at-chance" not in [f.code for f in random_head_fit(lambda x, rng: (x[:, 4] - x[:, 5] > 0).astype("float32")[:, None])]


def test_dict_outputs_written_out_of_order_pair_each_loss_with_its_output():
    # The checks read a dict's outputs in written order, Keras flattens them sorted: the mse of
    # "score" was checked against the sigmoid "flag" output and refused.
    x, ya, yb = data(64)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, {"score": keras.layers.Dense(3)(hidden), "flag": keras.layers.Dense(1, activation="sigmoid")(hidden)})
    trainer = Trainer(model, loss={"score": "mse", "flag": "binary_crossentropy"}, task={"score": "regression", "flag": "binary"},
                      optimizer=keras.optimizers.SGD(0.0), seed=0, diagnose=False)
    result = trainer.evaluate(x, {"flag": ya, "score": yb})
    outputs = model(x)
    assert result["score_loss"] == pytest.approx(float(keras.losses.MeanSquaredError()(yb, outputs["score"])), rel=1e-6)
    assert result["flag_loss"] == pytest.approx(float(keras.losses.BinaryCrossentropy()(ya, outputs["flag"])), rel=1e-6)


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # the untrained head, as model.fit warns
def test_targets_may_leave_out_an_output_without_a_loss_but_not_one_with():
    x, ya, _ = data()
    history = heads_trainer(loss={"a": "binary_crossentropy"}, task={"a": "binary"}).fit(x, {"a": ya}, epochs=1, verbose=0).history
    assert set(history) == {"loss", "a_loss"}
    with pytest.raises(DataError) as info:
        heads_trainer().fit(tf.data.Dataset.from_tensor_slices((x, {"a": ya})).batch(16), epochs=1, verbose=0)
    assert info.value.code == "missing-targets" and "output b" in info.value.message


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # the untrained head, as model.fit warns
def test_an_output_with_metrics_but_no_targets_is_refused_not_measured_as_zero():
    # Its metrics were never updated: the History read b_mae 0.0 every epoch, a perfect score.
    x, ya, _ = data()
    trainer = heads_trainer(loss={"a": "binary_crossentropy", "b": None}, task={"a": "binary"}, metrics={"b": ["mae"]})
    with pytest.raises(DataError) as info:
        trainer.fit(x, {"a": ya}, epochs=1, verbose=0)
    assert info.value.code == "missing-targets" and "output b, which has metrics (b_mae)" in info.value.message
    with pytest.raises(DataError, match="output b, which has metrics"):
        trainer.evaluate(x, {"a": ya})


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # the untrained head, as model.fit warns
def test_a_target_list_may_give_none_for_the_output_without_a_loss_as_model_fit_takes_it():
    # fit(x, [ya, None]) read None as a target of shape () and was refused (shape-mismatch).
    x, ya, _ = data()
    model = two_heads()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=["binary_crossentropy", None])
    expected = model.fit(x, [ya, None], epochs=2, batch_size=32, shuffle=False, verbose=0).history["loss"]
    trainer = heads_trainer(loss=["binary_crossentropy", None], task=["binary", None])
    history = trainer.fit(x, [ya, None], epochs=2, shuffle=False, validation_data=(x, [ya, None]), verbose=0).history
    np.testing.assert_allclose(history["loss"], expected, rtol=1e-5)
    assert set(trainer.evaluate(x, [ya, None])) == {"loss", "a_loss"}
    with pytest.raises(DataError) as info:  # None for an output the loss trains is still refused
        heads_trainer().fit(x, [ya, None], epochs=1, verbose=0)
    assert info.value.code == "missing-targets" and "'b'" in info.value.message


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # the untrained head, as model.fit warns
@pytest.mark.parametrize("as_dict", [False, True])
def test_a_subclassed_model_takes_none_in_a_target_list_too(as_dict):
    # Its outputs were not counted yet when the list was read, so None stayed a target of shape
    # () and was refused (shape-mismatch), as before the Functional fix.
    x, ya, _ = data()

    class TwoHeads(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden, self.a, self.b = keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid"), keras.layers.Dense(3)

        def call(self, inputs):
            h = self.hidden(inputs)
            return {"a": self.a(h), "b": self.b(h)} if as_dict else (self.a(h), self.b(h))

    keras.utils.set_random_seed(0)
    trainer = heads_trainer(model=TwoHeads(), loss=["binary_crossentropy", None], task=["binary", None])
    history = trainer.fit(x, [ya, None], epochs=1, validation_data=(x, [ya, None]), verbose=0).history
    first = "a" if as_dict else "output_0"
    assert {"loss", f"{first}_loss", "val_loss"} <= set(history)


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # the untrained head, as model.fit warns
def test_a_task_list_may_give_none_for_the_output_without_a_loss():
    # loss=[..., None] as model.compile takes it: the task list had to name a task for the
    # untrained output too, and None there was "unknown-task" (a dict could leave it out).
    x, ya, yb = data()
    history = heads_trainer(loss=["binary_crossentropy", None], task=["binary", None]).fit(x, [ya, yb], epochs=1, verbose=0).history
    assert set(history) == {"loss", "a_loss"}
    with pytest.raises(ArgumentError, match="Output b has a loss but no task"):
        heads_trainer(task=["binary", None])
    with pytest.raises(UnknownNameError) as info:
        heads_trainer(task=None)
    assert info.value.code == "unknown-task"


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # the untrained head, as model.fit warns
def test_text_targets_of_an_output_without_a_loss_are_not_refused():
    # Nothing reads them; the number check refused them as "None needs numeric targets".
    x, ya, _ = data()
    trainer = heads_trainer(loss={"a": "binary_crossentropy", "b": None}, task={"a": "binary"})
    history = trainer.fit(x, {"a": ya, "b": np.array(["text"] * len(x))}, epochs=1, verbose=0).history
    assert set(history) == {"loss", "a_loss"}


def test_targets_under_a_name_that_is_no_output_are_named_where_an_output_lacks_its_own():
    # "The targets have none for output b" said nothing of the misspelt key that held them.
    x, ya, yb = data()
    with pytest.raises(DataError) as info:
        heads_trainer().fit(x, {"a": ya, "bb": yb}, epochs=1, verbose=0)
    assert info.value.code == "missing-targets" and "output b, which has a loss (y has 'bb' instead)" in info.value.message


def test_targets_under_a_name_that_is_no_output_are_refused_when_every_output_has_its_own():
    # They were dropped without a word; model.fit refuses them ("different structures").
    x, ya, yb = data()
    with pytest.raises(DataError) as info:
        heads_trainer().fit(x, {"a": ya, "b": yb, "c": yb}, epochs=1, verbose=0)
    assert info.value.code == "shape-mismatch" and "y has targets under 'c', which names none of the model's outputs (a, b)" in info.value.message
    with pytest.raises(DataError, match='Did you mean "b"'):
        heads_trainer(loss={"a": "binary_crossentropy", "b": None}, task={"a": "binary"}).fit(x, {"a": ya, "B": yb}, epochs=1, verbose=0)

    # validation_data's targets as well: "c" was dropped, and "bb" got a message without it.
    with pytest.raises(DataError, match=r"validation_data's y has targets under 'c', which names none"):
        heads_trainer().fit(x, {"a": ya, "b": yb}, validation_data=(x, {"a": ya, "b": yb, "c": yb}), epochs=1, verbose=0)
    with pytest.raises(DataError, match=r"validation_data's y has no targets for output b, which has a loss \(validation_data's y has 'bb' instead\)"):
        heads_trainer().fit(x, {"a": ya, "b": yb}, validation_data=(x, {"a": ya, "bb": yb}), epochs=1, verbose=0)

    class Masked(Trainer):  # a loss of its own may read a key that names no output
        def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
            return super().compute_loss(x, {"a": y["a"], "b": y["b"] * y["mask"]}, y_pred, sample_weight, training)

    history = Masked(two_heads(), loss=["binary_crossentropy", "mse"], task=["binary", "regression"], optimizer="adam", seed=0).fit(
        x, {"a": ya, "b": yb, "mask": np.ones_like(yb)}, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


@pytest.mark.parametrize("form", ["numpy", "dataset"])
def test_validation_targets_that_are_not_one_per_output_name_the_validation_data(form):
    # "The model has 2 outputs (a, b) but a batch has 3 targets", from the validation step's trace.
    x, ya, yb = data()
    y_val = (ya, yb, yb)
    validation = (x, y_val) if form == "numpy" else tf.data.Dataset.from_tensor_slices((x, y_val)).batch(16)
    with pytest.raises(DataError) as info:
        heads_trainer().fit(x, [ya, yb], epochs=1, verbose=0, validation_data=validation)
    assert info.value.code == "shape-mismatch" and "but y_val is a " in info.value.message and " of 3: each output" in info.value.message


def test_class_weight_is_refused_for_several_outputs_even_before_they_are_counted():
    class TwoHeads(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = keras.layers.Dense(1, activation="sigmoid"), keras.layers.Dense(3)

        def call(self, x, training=False):
            return self.a(x), self.b(x)

    x, ya, yb = data()
    with pytest.raises(ArgumentError) as info:
        heads_trainer(model=TwoHeads()).fit(x, [ya, yb], epochs=1, verbose=0, class_weight={0: 1.0, 1: 2.0})
    assert info.value.code == "bad-argument" and "one output" in info.value.message


def test_class_weight_with_one_output_targets_in_a_dict_names_the_array_to_pass():
    # It said "class_weight applies to a model with one output" of a model with one output; and
    # "pass that array itself, y['flag']" to a dataset, whose caller holds no such array.
    x, ya, _ = data()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="flag")(inputs))
    trainer = Trainer(model, loss="binary_crossentropy", task="binary", optimizer="sgd", seed=0, diagnose=False)
    for x_fit, y_fit, fix in ((x, {"flag": ya}, "pass that array itself, y['flag']"),
                              (tf.data.Dataset.from_tensor_slices((x, {"flag": ya})).batch(16), None, "dataset.map(lambda x, y: (x, y['flag']))")):
        with pytest.raises(ArgumentError) as info:
            trainer.fit(x_fit, y_fit, epochs=1, verbose=0, class_weight={0: 1.0, 1: 2.0})
        assert info.value.code == "bad-argument" and "applies to a model with one output" not in info.value.message and fix in info.value.message


def test_class_imbalance_of_one_output_names_it_and_does_not_advise_class_weight():
    # It said "Class 1 is 2.9% of the labels" (which output's?) and "Pass class_weight=..." to a
    # model with two outputs, for which fit refuses class_weight.
    x, ya, yb = data()
    ya = np.zeros_like(ya)
    ya[:2] = 1.0
    (finding,) = [f for f in heads_trainer().check_data(x, [ya, yb]) if f.code == "class-imbalance"]
    assert "of the labels of y['a']" in finding.message and finding.layer == "a"
    assert "Pass sample_weight" in finding.advice and "class_weight applies to a model with one output only" in finding.advice


def test_loss_weights_of_zero_for_every_trained_output_are_refused():
    # The loss read 0.0 every epoch, nothing trained, and the diagnosis called it loss-collapsed.
    for weights in ([0.0, 0.0], {"a": 0.0, "b": 0}):
        with pytest.raises(ArgumentError) as info:
            heads_trainer(loss_weights=weights)
        assert info.value.code == "bad-argument" and "every output with a loss weight 0" in info.value.message
    with pytest.raises(ArgumentError, match="weight 0"):
        heads_trainer(loss={"a": "binary_crossentropy"}, task={"a": "binary"}, loss_weights={"a": 0.0, "b": 1.0})
    assert [h.weight for h in heads_trainer(loss_weights=[0.0, 1.0]).heads] == [0.0, 1.0]


def test_loss_weights_may_be_numpy_numbers_as_model_compile_takes_them():
    # np.float32(0.5) (a weight computed with numpy) was refused: "must be a finite number >= 0, got np.float32(0.5)".
    for weights in ([np.float32(1.0), np.float32(0.5)], {"b": np.float32(0.5)}, [np.int64(1), np.float16(0.5)]):
        assert [h.weight for h in heads_trainer(loss_weights=weights).heads] == [1.0, 0.5]
    assert [h.weight for h in heads_trainer(loss_weights=np.float32(2.0)).heads] == [2.0, 2.0]
    with pytest.raises(ArgumentError, match=r"got np\.True_"):
        heads_trainer(loss_weights=[1.0, np.True_])


def test_loss_weights_apply_to_a_single_output_too():
    x, ya, _ = data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    plain = Trainer(model, loss="binary_crossentropy", task="binary", optimizer=keras.optimizers.SGD(0.0), seed=0).evaluate(x, ya)["loss"]
    weighted = Trainer(model, loss="binary_crossentropy", task="binary", optimizer=keras.optimizers.SGD(0.0), seed=0, loss_weights=[2.0]).evaluate(x, ya)["loss"]
    assert weighted == pytest.approx(2.0 * plain, rel=1e-6)


def test_a_metric_function_can_be_given_for_one_output():
    def within_one(y_true, y_pred):
        return tf.cast(tf.abs(y_true - y_pred) < 1.0, tf.float32)

    x, ya, yb = data()
    result = heads_trainer(metrics={"b": within_one}, optimizer=keras.optimizers.SGD(0.0)).evaluate(x, [ya, yb])
    expected = float(np.mean(np.abs(yb - two_heads()(x)[1].numpy()) < 1.0))
    assert result["b_within_one"] == pytest.approx(expected, rel=1e-6)


def test_a_subclassed_model_returning_a_dict_takes_losses_by_its_output_names():
    # Its outputs were named output_0, output_1 (as for a list), so loss={"cls": ..., "reg": ...}
    # was refused: "cls" is not an output of the model. model.fit accepts it.
    class TwoHeads(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(8, activation="relu")
            self.cls, self.reg = keras.layers.Dense(1, activation="sigmoid"), keras.layers.Dense(1)

        def call(self, inputs, training=False):
            h = self.hidden(inputs)
            return {"reg": self.reg(h), "cls": self.cls(h)}

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = {"cls": (x[:, :1] > 0).astype("float32"), "reg": x[:, 1:2]}
    keras.utils.set_random_seed(0)
    trainer = Trainer(TwoHeads(), loss={"cls": "binary_crossentropy", "reg": "mse"}, optimizer="adam",
                      task={"cls": "binary", "reg": "regression"}, seed=0, diagnose=False)
    history = trainer.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    assert [h.name for h in trainer.heads] == ["cls", "reg"]
    assert {"loss", "cls_loss", "reg_loss"} <= set(history)
    np.testing.assert_allclose(np.array(history["cls_loss"]) + np.array(history["reg_loss"]), history["loss"], rtol=1e-5)


def dict_output_model() -> keras.Model:
    """A model whose one output is returned in a dict, ``{"out": ...}``."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    return keras.Model(inputs, {"out": keras.layers.Dense(1, activation="sigmoid", name="out")(keras.layers.Dense(8, activation="relu")(inputs))})


def test_a_model_whose_one_output_is_a_dict_trains_and_validates_as_with_model_fit():
    # {"out": tensor} reached the loss and the metrics as it is, against an array of targets:
    # "Structures don't have the same nested structure", a traceback from the first trace.
    x, y, _ = data()

    trainer = Trainer(dict_output_model(), loss="binary_crossentropy", task="binary", metrics=["accuracy"], optimizer=keras.optimizers.SGD(0.05), seed=0)
    history = trainer.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, validation_split=0.2).history
    reference = dict_output_model()
    reference.compile(loss="binary_crossentropy", metrics=["accuracy"], optimizer=keras.optimizers.SGD(0.05))
    expected = reference.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, validation_split=0.2).history
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(trainer.predict(x)["out"], reference.predict(x, verbose=0)["out"], rtol=1e-5)


def test_a_model_whose_one_output_is_a_dict_takes_its_targets_by_the_same_key():
    # fit(x, {"out": y}), which model.fit takes for such a model, was refused as shape-mismatch
    # ("the model has one output but y is a dict"); its chance level and validation too.
    x, y, _ = data()

    reference = dict_output_model()
    reference.compile(loss="binary_crossentropy", metrics=["accuracy"], optimizer=keras.optimizers.SGD(0.05))
    expected = reference.fit(x, {"out": y}, epochs=2, batch_size=16, shuffle=False, verbose=0, validation_data=(x[:16], {"out": y[:16]})).history
    trainer = Trainer(dict_output_model(), loss="binary_crossentropy", task="binary", metrics=["accuracy"], optimizer=keras.optimizers.SGD(0.05), seed=0)
    history = trainer.fit(x, {"out": y}, epochs=2, batch_size=16, shuffle=False, verbose=0, validation_data=(x[:16], {"out": y[:16]})).history
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5, err_msg=key)
    assert build_context(trainer, {"out": y}).chance_loss == pytest.approx(chance_loss("binary", trainer.heads[0].loss, y).loss)
    dataset_trainer = Trainer(dict_output_model(), loss="binary_crossentropy", task="binary", optimizer=keras.optimizers.SGD(0.05), seed=0)
    dataset = tf.data.Dataset.from_tensor_slices((x, {"out": y})).batch(16)
    np.testing.assert_allclose(dataset_trainer.fit(dataset, epochs=2, verbose=0).history["loss"], expected["loss"], rtol=1e-5)


def test_a_model_with_one_plain_output_refuses_targets_by_name():
    # model.fit fails inside its loss ("Expected float32, but got out of type 'str'"); the key
    # pairs with no output key here.
    x, y, _ = data()
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(inputs))
    with pytest.raises(DataError) as info:
        Trainer(model, loss="binary_crossentropy", task="binary", optimizer="sgd").fit(x, {"out": y}, epochs=1, verbose=0)
    assert info.value.code == "shape-mismatch" and "Pass y as one array" in info.value.message


def test_a_one_output_dict_model_given_another_key_is_told_its_own():
    # "Pass y as one array (targets by name are for a model with several outputs)", where this
    # model takes its targets by name too, under the key it returns.
    x, y, _ = data()
    inputs = keras.Input((4,))
    model = keras.Model(inputs, {"out": keras.layers.Dense(1, activation="sigmoid")(inputs)})
    with pytest.raises(DataError) as info:
        Trainer(model, loss="binary_crossentropy", task="binary", optimizer="sgd").fit(x, {"wrong": y}, epochs=1, verbose=0)
    assert info.value.code == "shape-mismatch" and "or a dict under the output's key ({'out': y})" in info.value.message


def test_label_leakage_is_checked_for_every_output():
    # The leak checks read a model of one output only: the binary label copied into x, or a
    # linear copy of the regression targets, trained on without a word beside a second output.
    x, ya, _ = data(200)
    yb = (x @ np.array([[1.0], [-0.5], [0.25], [0.5]]) + np.random.default_rng(2).normal(size=(200, 1))).astype("float32")

    def leak_messages(extra: np.ndarray) -> list[str]:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((5,))
        hidden = keras.layers.Dense(8, activation="relu")(inputs)
        model = keras.Model(inputs, [keras.layers.Dense(1, activation="sigmoid", name="a")(hidden), keras.layers.Dense(1, name="b")(hidden)])
        found = heads_trainer(model=model).check_data(np.concatenate([x, extra], axis=1), [ya, yb])
        return [f.message for f in found if f.code == "label-leakage"]

    (message,) = leak_messages(ya)
    assert "identical to the class label y['a']" in message
    (message,) = leak_messages(3.0 * yb + 1.0)
    assert "linear copy of the target y['b']" in message
    assert leak_messages(np.random.default_rng(1).normal(size=(200, 1)).astype("float32")) == []
