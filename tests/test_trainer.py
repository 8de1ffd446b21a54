"""Core Trainer behaviour: exact epoch metrics, compiled subclass hooks, paths that must agree."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainkit import Trainer, TrainkitError
from trainkit.callbacks import Callback, EarlyStopping
from trainkit.errors import ArgumentError, DataError, RecipeError, UnknownNameError
from trainkit.sources import DatasetSource, unpack_batch


def make_data(rows: int = 1001, features: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype("float32")
    y = (x[:, :1] - 0.5 * x[:, 1:2] > 0).astype("float32")
    return x, y


def make_model(features: int = 10, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((features,)),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ])


class KerasStyle(Trainer):
    """Steps written as for Keras: they return the loss and never call update_metrics."""

    def train_step(self, batch):
        x, y, w = unpack_batch(batch)
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x, y, self.model(x, training=True), w)
        self.optimizer.apply(tape.gradient(loss, self.model.trainable_variables), self.model.trainable_variables)
        return {"loss": loss}

    def test_step(self, batch):
        x, y, w = unpack_batch(batch)
        return {"loss": self.compute_loss(x, y, self.model(x), w)}


def make_trainer(model: keras.Model | None = None, **kwargs) -> Trainer:
    kwargs.setdefault("loss", "binary_crossentropy")
    kwargs.setdefault("optimizer", keras.optimizers.SGD(0.1))
    kwargs.setdefault("task", "binary")
    kwargs.setdefault("seed", 3)
    kwargs.setdefault("jit_compile", False)
    return Trainer(model or make_model(), **kwargs)


def test_epoch_loss_is_exact_mean_over_all_rows_including_partial_batch():
    x, y = make_data(1001)
    model = make_model()
    trainer = make_trainer(model, optimizer=keras.optimizers.SGD(0.0), metrics=["accuracy"], report_last_batch_loss=True)
    history = trainer.fit(x, y, epochs=1, batch_size=32, verbose=0)

    whole = float(keras.losses.BinaryCrossentropy()(y, model(x)))
    epoch_loss = history.history["loss"][0]
    assert epoch_loss == pytest.approx(whole, rel=1e-5)
    assert trainer.evaluate(x, y, batch_size=32)["loss"] == pytest.approx(whole, rel=1e-5)
    # The classic mistake -- reporting the last batch -- gives a visibly different number here,
    # so this test would catch a loop that averaged only part of the epoch.
    assert abs(history.history["last_batch_loss"][0] - whole) > 1e-3
    accuracy = float(np.mean((model(x).numpy() > 0.5) == (y > 0.5)))
    assert history.history["accuracy"][0] == pytest.approx(accuracy, abs=1e-6)


def test_fit_arguments_given_as_numpy_integers_train_a_run_with_a_logdir(tmp_path):
    # batch_size=np.int64(32), initial_epoch=np.int64(0) or an early stopping's patience=np.int64(1)
    # reached the run's JSON (the diagnosis context) as they were: a TypeError once training began.
    x, y = make_data(96, 10)
    for i, stopping in enumerate((EarlyStopping(patience=np.int64(1)), keras.callbacks.EarlyStopping(patience=np.int64(1)))):
        history = make_trainer(logdir=tmp_path / str(i)).fit(x, y, epochs=np.int64(2), batch_size=np.int64(32), initial_epoch=np.int64(0),
                                                             validation_split=0.25, callbacks=[stopping], verbose=0)
        assert history.epoch == [0, 1] and history.params["epochs"] == 2


def test_history_has_keras_keys_and_validation_covers_whole_split():
    x, y = make_data(300)
    trainer = make_trainer(metrics=["accuracy"])
    history = trainer.fit(x, y, epochs=3, batch_size=32, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in history.history.values())
    x_val, y_val = x[225:], y[225:]
    whole = float(keras.losses.BinaryCrossentropy()(y_val, trainer.model(x_val)))
    assert history.history["val_loss"][-1] == pytest.approx(whole, rel=1e-5)


def test_training_reduces_loss():
    x, y = make_data(512)
    history = make_trainer(optimizer={"name": "adam", "learning_rate": 0.01}).fit(x, y, epochs=8, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]


class PenaltyTrainer(Trainer):
    """Adds an L2 penalty on the output and logs it: the subclassing example of the README."""

    def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        penalty = 0.1 * tf.reduce_mean(tf.square(y_pred))
        self.log_scalar("penalty", penalty)
        return loss + penalty


def test_subclass_compute_loss_adds_a_logged_penalty_and_trains():
    x, y = make_data(256)
    trainer = PenaltyTrainer(make_model(), loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, jit_compile=False)
    history = trainer.fit(x, y, epochs=4, batch_size=32, verbose=0)
    assert "penalty" in history.history
    assert all(p > 0 for p in history.history["penalty"])
    assert history.history["loss"][-1] < history.history["loss"][0]
    steps = [row for row in trainer.step_table() if row[1] == "penalty"]
    assert len(steps) == 4 * 8  # one value per step


def test_subclass_train_step_override_is_compiled():
    seen: list[bool] = []

    class Custom(Trainer):
        def train_step(self, batch):
            seen.append(tf.inside_function())
            logs = super().train_step(batch)
            return {**logs, "double_loss": 2.0 * logs["loss"]}

    x, y = make_data(128)
    trainer = Custom(make_model(), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, jit_compile=False)
    history = trainer.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert seen and all(seen)  # only ever called while tracing, never eagerly per step
    assert len(seen) <= 3  # traced a handful of times, not once per step (8 steps ran)
    assert history.history["double_loss"][0] == pytest.approx(2 * history.history["loss"][0], rel=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["plain", "xla"])
def test_overridden_step_methods_may_branch_and_loop_over_tensors(jit_compile):
    """trainkit compiles without AutoGraph (its own step is written for the graph: converting it
    took seconds); an override is converted, as tf.function would, so Python `if` and `for`
    over tensors in it still trace, also when the default train_step calls it."""

    class Branching(Trainer):
        def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
            loss = super().compute_loss(x, y, y_pred, sample_weight, training)
            penalty = tf.constant(0.0)
            for _ in tf.range(3):  # a loop over a tensor
                penalty += 0.01 * tf.reduce_mean(tf.square(y_pred))
            if penalty > 1e6:  # a branch on a tensor
                penalty = tf.zeros_like(penalty)
            self.log_scalar("penalty", penalty)
            return loss + penalty

        def test_step(self, batch):
            logs = super().test_step(batch)
            if logs["loss"] > 0:
                logs = {**logs, "positive": tf.constant(1.0)}
            else:
                logs = {**logs, "positive": tf.constant(0.0)}
            return logs

    x, y = make_data(128)
    trainer = Branching(make_model(), loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, jit_compile=jit_compile)
    history = trainer.fit(x, y, validation_data=(x[:64], y[:64]), epochs=2, batch_size=32, verbose=0).history
    assert all(p > 0 for p in history["penalty"]) and history["val_positive"] == [1.0, 1.0]
    assert {"compute_loss", "test_step"} <= set(vars(trainer)) and "train_step" not in vars(trainer)  # only overrides are converted
    assert "compute_loss" not in vars(make_trainer())


def test_callbacks_receive_hooks_in_order_with_per_call_statistics():
    events: list[str] = []
    steps_seen: list[int] = []

    class Recorder(Callback):
        def on_train_begin(self, logs=None):
            events.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            events.append(f"epoch_begin{epoch}")

        def on_execution_end(self, first_step, outputs):
            steps_seen.extend(range(first_step, first_step + outputs.steps))
            assert outputs.as_dict()["loss"].shape == (outputs.steps,)

        def on_epoch_end(self, epoch, logs):
            events.append(f"epoch_end{epoch}")

        def on_train_end(self, logs=None):
            events.append("train_end")

    x, y = make_data(100)
    make_trainer(steps_per_execution=2).fit(x, y, epochs=2, batch_size=32, callbacks=[Recorder()], verbose=0)
    assert events == ["train_begin", "epoch_begin0", "epoch_end0", "epoch_begin1", "epoch_end1", "train_end"]
    assert steps_seen == list(range(8))  # 4 batches per epoch (3 full + 1 partial), each step once


def test_misspelt_callback_hook_is_refused():
    class Typo(Callback):
        def on_epoch_ended(self, epoch, logs):
            pass

    class Base(Callback):  # a user's own base class: its hooks count too
        def on_batch_end(self, batch, logs):
            pass

    class Camel(Callback):
        def onEpochEnd(self, epoch, logs):
            pass

    x, y = make_data(64)
    for callback, words in ((Typo(), "on_epoch_ended"), (type("Derived", (Base,), {})(), "on_batch_end"), (Camel(), "Did you mean \"on_epoch_end\"?")):
        with pytest.raises(TypeError, match=words):
            make_trainer().fit(x, y, epochs=1, callbacks=[callback], verbose=0)


def test_a_callback_hook_that_cannot_take_its_arguments_is_refused_before_training():
    # on_execution_end(self, logs), as Keras's batch hooks are written, failed with a bare
    # TypeError after the first compiled call; on_train_end(self) only once training had ended.
    class BatchStyle(Callback):
        def on_execution_end(self, logs):
            pass

    class NoLogs(Callback):
        def on_train_end(self):
            pass

    class Flexible(Callback):  # defaults and *args take them as well
        def on_epoch_end(self, *args):
            pass

        def on_train_begin(self, logs=None, extra=1):
            pass

    x, y = make_data(64)
    for callback, words in ((BatchStyle(), r"BatchStyle.on_execution_end\(logs\)"), (NoLogs(), r"NoLogs.on_train_end\(\)")):
        trainer = make_trainer()
        with pytest.raises(ArgumentError, match=words) as info:
            trainer.fit(x, y, epochs=1, callbacks=[callback], verbose=0)
        assert info.value.code == "bad-callback" and trainer.step == 0
    assert make_trainer().fit(x, y, epochs=1, callbacks=[Flexible()], verbose=0).epoch == [0]


@pytest.mark.parametrize("steps_per_execution", [1, 5, "auto"])
def test_steps_per_execution_does_not_change_results(steps_per_execution):
    x, y = make_data(300)
    reference = make_trainer(make_model(seed=1), steps_per_execution=32).fit(x, y, epochs=2, verbose=0).history["loss"]
    losses = make_trainer(make_model(seed=1), steps_per_execution=steps_per_execution).fit(x, y, epochs=2, verbose=0).history["loss"]
    np.testing.assert_allclose(losses, reference, rtol=1e-6)


def test_same_seed_gives_bit_identical_losses():
    x, y = make_data(200)

    def run() -> list[float]:
        keras.utils.set_random_seed(4)
        model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(0.3), keras.layers.Dense(1, activation="sigmoid")])
        return make_trainer(model, optimizer="adam").fit(x, y, epochs=2, verbose=0).history["loss"]

    first, second = run(), run()
    assert first == second


def test_set_random_seed_alone_repeats_a_fit_as_with_model_fit():
    # Without Trainer(seed=...), the epoch order came from fresh OS entropy: two fits after
    # keras.utils.set_random_seed differed (0.8628 against 0.8633), where model.fit's repeat.
    x, y = make_data(200)

    def run() -> list[float]:
        model = make_model(seed=4)  # calls keras.utils.set_random_seed(4)
        return make_trainer(model, seed=None).fit(x, y, epochs=2, batch_size=16, verbose=0).history["loss"]

    assert run() == run()


def test_early_stopping_stops_and_restores_best_weights():
    x, y = make_data(200)
    stopper = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    # lr so high the validation loss gets worse quickly
    trainer = make_trainer(optimizer=keras.optimizers.SGD(50.0))
    with warnings.catch_warnings():
        # Keeping the best weights by np.array(variable) warned at every improvement (a numpy 2
        # DeprecationWarning: a Keras variable's __array__ takes no copy keyword).
        warnings.simplefilter("error", DeprecationWarning)
        history = trainer.fit(x, y, epochs=30, validation_split=0.3, callbacks=[stopper], verbose=0)
    assert len(history.epoch) < 30
    assert stopper.best == min(history.history["val_loss"])
    # The model holds the best epoch's weights, not the last epoch's: its loss on the validation
    # split (the last 30% of the rows) is the best validation loss again.
    assert stopper.restored_epoch == stopper.best_epoch < history.epoch[-1]
    assert trainer.evaluate(x[140:], y[140:])["loss"] == pytest.approx(stopper.best, rel=1e-5)
    assert history.history["val_loss"][-1] != pytest.approx(stopper.best, rel=1e-3)


def test_early_stopping_restores_the_layers_a_subclass_holds_beside_the_model():
    # A GAN's generator kept beside its discriminator (Keras's GAN holds both in one model): only
    # the model's weights were put back, the best epoch's discriminator beside the last epoch's
    # generator.
    x, y = make_data(64, features=4)

    class Beside(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.generator = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
            self.g_optimizer = keras.optimizers.SGD(0.1)
            self.g_optimizer.build(self.generator.trainable_variables)

        def train_step(self, data):
            x, y = data
            d_vars, g_vars = self.model.trainable_variables, self.generator.trainable_variables
            with tf.GradientTape(persistent=True) as tape:
                loss = self.compute_loss(y=y, y_pred=self.model(self.generator(x), training=True))
            self.optimizer.apply(tape.gradient(loss, d_vars), d_vars)
            self.g_optimizer.apply(tape.gradient(loss, g_vars), g_vars)
            return {"loss": loss}

    class Snapshots(Callback):
        def __init__(self):
            super().__init__()
            self.generator, self.model = [], []

        def on_epoch_end(self, epoch, logs):
            self.generator.append(self.trainer.generator.get_weights())
            self.model.append(self.trainer.model.get_weights())

    trainer = Beside(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, diagnose=False)
    snapshots = Snapshots()
    stopper = EarlyStopping(monitor="loss", mode="max", patience=1)  # the falling loss is best at epoch 0
    trainer.fit(x, y, epochs=5, batch_size=16, callbacks=[snapshots, stopper], verbose=0)
    assert stopper.restored_epoch == 0 and len(snapshots.generator) == 2
    for now, best, last in zip(trainer.generator.get_weights(), snapshots.generator[0], snapshots.generator[1], strict=True):
        np.testing.assert_array_equal(now, best)
        assert not np.array_equal(now, last)
    for now, best in zip(trainer.model.get_weights(), snapshots.model[0], strict=True):
        np.testing.assert_array_equal(now, best)


def test_early_stopping_in_auto_mode_follows_the_monitored_metric_s_direction():
    # "auto" guessed the direction from the name: an R2 score that rose every epoch was taken as
    # getting worse, the run stopped after patience + 1 epochs and put back its first epoch's weights.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5], [1.0]], "float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    stopper = EarlyStopping(monitor="val_r2", patience=2)
    trainer = make_trainer(model, loss="mse", task="regression", optimizer=keras.optimizers.Adam(0.02), metrics=[keras.metrics.R2Score(name="r2")])
    history = trainer.fit(x, y, epochs=8, shuffle=False, validation_split=0.25, callbacks=[stopper], verbose=0).history
    assert stopper.mode == "max"
    assert history["val_r2"] == sorted(history["val_r2"]) and len(history["val_r2"]) == 8  # rising: never stopped
    assert stopper.best_epoch == 7 and stopper.restored_epoch is None


@pytest.mark.parametrize("settings", [
    {"baseline": 0.05, "patience": 2},  # never reached: stops though the loss improves
    {"baseline": 0.69, "patience": 2},  # reached at once: as without a baseline
    {"start_from_epoch": 3, "patience": 1},  # the diverging first epochs are not watched
])
def test_early_stopping_baseline_and_warm_up_stop_where_keras_s_do(settings):
    # They were refused with a bare TypeError, where keras.callbacks.EarlyStopping takes them.
    x, y = make_data(200)
    runs = {}
    for kind in (EarlyStopping, keras.callbacks.EarlyStopping):
        stopper = kind(monitor="val_loss", restore_best_weights=True, **settings)
        trainer = make_trainer(optimizer=keras.optimizers.SGD(5.0))
        history = trainer.fit(x, y, epochs=12, shuffle=False, validation_split=0.3, callbacks=[stopper], verbose=0)
        runs[kind] = (history.history["val_loss"], trainer.model.get_weights())
    (ours, our_weights), (keras_losses, keras_weights) = runs.values()
    assert ours == pytest.approx(keras_losses, rel=1e-6)
    for mine, theirs in zip(our_weights, keras_weights, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6)


def test_early_stopping_starts_afresh_in_each_fit():
    # Its best value and weights were kept from the previous fit: a second fit stopped after
    # one epoch and put back the first fit's weights.
    x, y = make_data(200)
    stopper = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    trainer = make_trainer(optimizer=keras.optimizers.SGD(0.5))
    trainer.fit(x, y, epochs=6, validation_split=0.3, callbacks=[stopper], verbose=0)
    trainer.model.set_weights([w * 50.0 for w in trainer.model.get_weights()])  # far worse now
    history = trainer.fit(x, y, epochs=3, validation_split=0.3, callbacks=[stopper], verbose=0).history
    assert len(history["val_loss"]) == 3  # improving from its own start, not stopped early
    assert stopper.best == min(history["val_loss"]) and stopper.stopped_epoch is None


def test_predict_returns_one_row_per_input():
    x, _ = make_data(70)
    out = make_trainer().predict(x, batch_size=32)
    assert out.shape == (70, 1)
    np.testing.assert_allclose(out, make_model()(x).numpy(), rtol=1e-5)


def test_predict_takes_a_numpy_integer_batch_size():
    # np.int64(32) passed the argument check, then failed in the compiled call (TypeError: AddV2 int64 vs int32).
    x, _ = make_data(70)
    np.testing.assert_allclose(make_trainer().predict(x, batch_size=np.int64(32)), make_model()(x).numpy(), rtol=1e-5)


def test_mismatched_rows_raise_data_error_with_code():
    x, y = make_data(50)
    with pytest.raises(DataError) as info:
        make_trainer().fit(x, y[:40], epochs=1, verbose=0)
    assert info.value.code == "shape-mismatch"


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_a_whole_number_learning_rate_is_taken_as_a_float(optimizer):
    # Keras itself refuses learning_rate=1 ("should be float"), though 1.0 is fine.
    trainer = make_trainer(optimizer={"name": optimizer, "learning_rate": 1})
    assert float(trainer.optimizer.learning_rate) == 1.0


@pytest.mark.parametrize(("argument", "says", "not_says"), [
    ("lr", 'Did you mean "learning_rate"?', None),
    ("decay", "InverseTimeDecay", 'Did you mean "weight_decay"'),  # another thing: not a hint
    ("jit_compile", "training.jit_compile", None),
])
def test_a_keras_2_optimizer_argument_says_what_keras_3_takes_instead(argument, says, not_says):
    from trainkit.errors import UnknownNameError
    from trainkit.resolve import get_optimizer

    with pytest.raises(UnknownNameError) as info:
        get_optimizer({"name": "adam", argument: 0.01})
    assert info.value.code == "bad-optimizer-argument" and says in info.value.message
    assert not_says is None or not_says not in info.value.message


def test_a_learning_rate_schedule_mapping_builds_the_schedule():
    # A recipe's optimizer.learning_rate may be a schedule as Keras serialises it; the optimizer
    # refused the mapping itself ("should be float, or an instance of LearningRateSchedule").
    from trainkit.resolve import get_optimizer

    optimizer = get_optimizer({"name": "sgd", "learning_rate": {"class_name": "CosineDecay",
                                                               "config": {"initial_learning_rate": 0.1, "decay_steps": 1000}}})
    schedule = optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert schedule.initial_learning_rate == 0.1 and schedule.decay_steps == 1000


@pytest.mark.parametrize(("rate", "at_5"), [
    ({"class_name": "ExponentialDecay", "config": {"initial_learning_rate": 1, "decay_steps": 10, "decay_rate": 0.5}}, 0.5 ** 0.5),
    ({"class_name": "PiecewiseConstantDecay", "config": {"boundaries": [3], "values": [2, 1]}}, 1.0),
    ({"class_name": "InverseTimeDecay", "config": {"initial_learning_rate": 1, "decay_steps": 10, "decay_rate": 1}}, 1 / 1.5),
])
def test_a_schedule_of_whole_numbers_decays_as_written(rate, at_5):
    # ExponentialDecay(initial_learning_rate: 1), as YAML writes it, computed in int32: 1 at step 0, 0 from then on.
    from trainkit.resolve import get_optimizer

    schedule = get_optimizer({"name": "sgd", "learning_rate": rate})._learning_rate
    assert float(schedule(5)) == pytest.approx(at_5, rel=1e-5)


@pytest.mark.parametrize(("rate", "says"), [
    ({"class_name": "CosineDecy", "config": {"initial_learning_rate": 0.1, "decay_steps": 10}}, 'Did you mean "CosineDecay"'),
    ({"class_name": "CosineDecay", "config": {"initial_learning_rate": 0.1, "decay_step": 10}}, 'Did you mean "decay_steps"'),
    ({"class_name": "CosineDecay", "config": {"initial_learning_rate": "x", "decay_steps": 10}}, 'schedule "CosineDecay" does not take'),
    ({"class_name": "ExponentialDecay", "config": {"initial_learning_rate": -1.0, "decay_steps": 10, "decay_rate": 0.5}}, "starts at -1"),
    ({"name": "CosineDecay"}, "{class_name: CosineDecay"),
])
def test_a_bad_learning_rate_schedule_mapping_is_a_bad_optimizer_argument(rate, says):
    from trainkit.errors import UnknownNameError
    from trainkit.resolve import get_optimizer

    with pytest.raises(UnknownNameError) as info:
        get_optimizer({"name": "sgd", "learning_rate": rate})
    assert info.value.code == "bad-optimizer-argument" and says in info.value.message


@pytest.mark.parametrize(("alias", "cls"), [
    ("mape", keras.losses.MeanAbsolutePercentageError),
    ("msle", keras.losses.MeanSquaredLogarithmicError),
    ("kld", keras.losses.KLDivergence),
])
def test_keras_short_loss_names_resolve_as_keras_resolves_them(alias, cls):
    # keras.losses.get("mape") takes them; get_loss refused them as unknown losses.
    from trainkit.resolve import get_loss

    assert isinstance(get_loss(alias), cls) and isinstance(get_loss(alias.upper()), cls)


@pytest.mark.parametrize(("resolve", "spec", "code", "arguments"), [
    ("get_loss", {"name": "mse", "fn": "mae"}, "unknown-loss", "reduction, name, dtype."),
    ("get_loss", {"name": "binary_crossentropy", "fn": "mae"}, "unknown-loss", "from_logits, label_smoothing, axis, reduction, name, dtype."),
    ("get_metric", {"name": "accuracy", "fn": "mae"}, "bad-metric-argument", "name, dtype, threshold."),
])
def test_an_argument_only_a_base_class_takes_is_no_argument_of_the_loss_or_metric(resolve, spec, code, arguments):
    # "Its arguments: reduction, name, dtype, fn": fn is the one MeanSquaredError hands its base
    # itself, and {name: mse, fn: ...} ended in Python's "__init__() got an unexpected keyword".
    import trainkit.resolve
    from trainkit.errors import TrainkitError

    with pytest.raises(TrainkitError) as err:
        getattr(trainkit.resolve, resolve)(spec, *(["binary"] if resolve == "get_metric" else []))
    assert err.value.code == code and 'has no argument "fn"' in err.value.message, err.value.message
    assert err.value.message.endswith(f"Its arguments: {arguments}"), err.value.message


@pytest.mark.parametrize(("argument", "value", "code"), [
    ("loss", keras.losses.BinaryCrossentropy, "unknown-loss"),
    ("metrics", [keras.metrics.AUC], "unknown-metric"),
])
def test_a_loss_or_metric_class_without_its_brackets_is_refused_when_the_trainer_is_made(argument, value, code):
    # A class is callable: it was wrapped as a loss or metric function, and the first traced step
    # failed with a raw TensorFlow error (BinaryCrossentropy(reduction=y_true, name=y_pred)).
    with pytest.raises(UnknownNameError) as info:
        make_trainer(**{argument: value})
    assert info.value.code == code and "must be an instance, not the class" in info.value.message


def test_a_layer_frozen_between_two_fits_stays_frozen_in_the_second():
    # The traced step kept updating the variables that were trainable when it was traced.
    x, y = make_data(200)
    model = make_model()
    trainer = make_trainer(model)
    trainer.fit(x, y, epochs=1, verbose=0)
    hidden = model.layers[0]
    hidden.trainable = False
    before = [w.copy() for w in hidden.get_weights()]
    output_before = model.layers[1].get_weights()[0].copy()
    trainer.fit(x, y, epochs=1, verbose=0)
    assert all(np.array_equal(b, a) for b, a in zip(before, hidden.get_weights(), strict=True))
    assert not np.array_equal(output_before, model.layers[1].get_weights()[0])


def test_a_layer_unfrozen_after_the_optimizer_was_built_is_refused_not_left_frozen():
    # It stayed frozen in silence: the step traced for the first fit never updated it.
    x, y = make_data(200)
    model = make_model()
    model.layers[0].trainable = False
    trainer = make_trainer(model)
    trainer.fit(x, y, epochs=1, verbose=0)
    model.layers[0].trainable = True
    with pytest.raises(ArgumentError) as info:
        trainer.fit(x, y, epochs=1, verbose=0)
    assert info.value.code == "trainable-changed" and "new Trainer" in info.value.message
    model.layers[0].trainable = False  # back as the optimizer knows it: trains again
    assert len(trainer.fit(x, y, epochs=1, verbose=0).history["loss"]) == 1


def test_an_optimizer_set_between_two_fits_is_the_one_the_second_applies():
    # trainer.optimizer = SGD(0.0) in a notebook cell: the step traced for the first fit went on
    # applying the first optimizer's Adam updates (weights moved, the new one took no step).
    x, y = make_data(200)
    model = make_model()
    trainer = make_trainer(model)
    trainer.fit(x, y, epochs=1, verbose=0)
    trainer.optimizer = keras.optimizers.SGD(0.0)
    before = model.get_weights()
    trainer.fit(x, y, epochs=1, verbose=0)
    assert int(trainer.optimizer.iterations) > 0
    assert all(np.array_equal(b, a) for b, a in zip(before, model.get_weights(), strict=True))
    # A layer unfrozen for fine-tuning trains with a new optimizer, as after Keras's compile().
    model.layers[0].trainable = False
    trainer.fit(x, y, epochs=1, verbose=0)
    model.layers[0].trainable = True
    trainer.optimizer = keras.optimizers.Adam(1e-3)
    hidden = model.layers[0].get_weights()[0].copy()
    trainer.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(hidden, model.layers[0].get_weights()[0])


def test_a_base_unfrozen_for_a_fine_tune_between_two_fits_is_checked_again(capsys):
    # The model checks ran when the Trainer was built, with the base frozen: the fine-tune that
    # unfroze it and set a new optimizer (as trainable-changed advises) got no word that Keras
    # trains its BatchNormalization all the same (a 32x32 CNN's training loss jumped 1.04 -> 0.70
    # while the validation loss stayed at 1.0), where a new Trainer for the model was told.
    x, y = make_data(64, features=4)
    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.BatchNormalization(name="base_bn"), keras.layers.ReLU()], name="base")
    base.trainable = False
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(base(inputs, training=False)))
    trainer = make_trainer(model)
    trainer.fit(x, y, epochs=1, verbose=0)
    assert "batchnorm-training-flag-ignored" not in [f.code for f in trainer.findings]
    base.trainable = True
    trainer.optimizer = keras.optimizers.Adam(1e-5)
    trainer.fit(x, y, epochs=1, verbose=2)
    [finding] = [f for f in trainer.findings if f.code == "batchnorm-training-flag-ignored"]
    assert finding.layer == "base_bn"
    assert "check: WARNING [batchnorm-training-flag-ignored]" in capsys.readouterr().err
    # Frozen again, its verdict is withdrawn, not kept from the fine-tune.
    base.trainable = False
    trainer.optimizer = keras.optimizers.Adam(1e-5)
    trainer.fit(x, y, epochs=1, verbose=0)
    assert "batchnorm-training-flag-ignored" not in [f.code for f in trainer.findings]


def test_an_optimizer_set_between_two_fits_is_taken_as_the_optimizer_argument_is():
    # The README's trainer.optimizer = keras.optimizers.Adam(1e-5): a mixed_float16 model's new
    # optimizer went unwrapped (float16 gradients unscaled, the small ones 0), and a name
    # (trainer.optimizer = "sgd") failed with "'str' object has no attribute 'built'".
    x, y = make_data(64)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid", dtype="float32")])
    finally:
        keras.config.set_dtype_policy("float32")
    trainer = make_trainer(model)
    trainer.fit(x, y, epochs=1, verbose=0)
    trainer.optimizer = keras.optimizers.Adam(1e-5)
    trainer.fit(x, y, epochs=1, verbose=0)
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert int(trainer.optimizer.iterations) > 0
    trainer.optimizer = "sgd"
    trainer.fit(x, y, epochs=1, verbose=0)
    assert isinstance(trainer.optimizer.inner_optimizer, keras.optimizers.SGD)
    assert int(trainer.optimizer.iterations) > 0


def test_an_optimizer_set_between_fits_is_refused_as_the_optimizer_argument_is_when_another_models():
    # An optimizer built for another model's weights was told "trainable-changed ... give this
    # one a new optimizer (trainer.optimizer = ...)", the very thing done; __init__ names it.
    x, y = make_data(64)
    model = make_model()
    trainer = make_trainer(model)
    trainer.fit(x, y, epochs=1, verbose=0)
    first = trainer.optimizer
    other = keras.optimizers.Adam()
    other.build(make_model().trainable_variables)
    trainer.optimizer = other
    with pytest.raises(ArgumentError) as info:
        trainer.fit(x, y, epochs=1, verbose=0)
    assert info.value.code == "bad-argument" and "another model's weights" in info.value.message
    # The first optimizer back after a layer was frozen holds that layer's state: no other model's.
    model.layers[0].trainable = False
    trainer.optimizer = first
    assert len(trainer.fit(x, y, epochs=1, verbose=0).history["loss"]) == 1


def test_a_run_that_froze_a_layer_between_two_fits_resumes_with_it_frozen(tmp_path):
    # The optimizer built in the first fit keeps the slots of the layer frozen since, and so do
    # the checkpoints: a resume with the layer frozen built a smaller optimizer and was refused
    # (resume-mismatch, "10 optimizer variables, this run has 6"), and one with it trainable
    # trained the frozen layer.
    x, y = make_data(200)

    def run(name: str, epochs: int, *, resume: bool = False) -> tuple[keras.Model, Trainer]:
        model = make_model()
        trainer = make_trainer(model, optimizer=keras.optimizers.Adam(1e-2), logdir=tmp_path / name, checkpoint_every=1)
        if not resume:
            trainer.fit(x, y, epochs=1, verbose=0)
        model.layers[0].trainable = False
        trainer.fit(x, y, epochs=epochs, verbose=0, resume=resume)
        return model, trainer

    whole, _ = run("whole", 4)
    part, _ = run("part", 3)
    frozen = part.layers[0].get_weights()
    resumed, trainer = run("part", 4, resume=True)
    assert len(trainer.history.history["loss"]) == 4
    assert all(np.array_equal(b, a) for b, a in zip(frozen, resumed.layers[0].get_weights(), strict=True))
    for expected, got in zip(whole.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_a_run_whose_optimizer_was_replaced_between_fits_checkpoints_and_resumes_with_the_new_one(tmp_path):
    # The checkpoint writer made in the first fit went on saving the first optimizer's variables:
    # the new one's state was in no checkpoint, and a resume with it was refused (resume-mismatch,
    # "holds 10 optimizer variables, this run has 6").
    x, y = make_data(64)
    trainer = make_trainer(optimizer=keras.optimizers.Adam(1e-2), logdir=tmp_path, checkpoint_every=1)
    trainer.fit(x, y, epochs=1, verbose=0)
    trainer.optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
    trainer.fit(x, y, epochs=2, verbose=0)
    resumed = make_trainer(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), logdir=tmp_path, checkpoint_every=1)
    resumed.fit(x, y, epochs=2, verbose=0, resume=True)
    assert int(resumed.optimizer.iterations) == int(trainer.optimizer.iterations)
    for expected, got in zip(trainer.optimizer.variables, resumed.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


@pytest.mark.parametrize("change", ["add-weightless", "pop-and-add"])
def test_a_model_whose_layers_changed_since_its_first_fit_is_refused_not_trained_as_it_was(change):
    # A notebook's model.add(Rescaling(100)) between two fits: the compiled step still called the
    # old layers, so fit trained (loss ~1) and evaluate measured the model without the new layer,
    # in silence; model.pop() + add() was refused as "unfrozen" weights (trainable-changed).
    x, y = make_data(200)
    model = make_model()
    trainer = make_trainer(model)
    trainer.fit(x, y, epochs=1, verbose=0, validation_split=0.2)
    if change == "add-weightless":
        model.add(keras.layers.Rescaling(100.0))
    else:
        model.pop()
        model.add(keras.layers.Dense(1, activation="sigmoid"))
    for call in (lambda: trainer.fit(x, y, epochs=1, verbose=0), lambda: trainer.evaluate(x, y)):
        with pytest.raises(ArgumentError) as info:
            call()
        assert info.value.code == "model-changed" and "new Trainer" in info.value.message
    # predict only calls the model: it follows the new layers, as model.predict does
    np.testing.assert_allclose(trainer.predict(x), model.predict(x, verbose=0), rtol=1e-6)
    assert len(make_trainer(model).fit(x, y, epochs=1, verbose=0).history["loss"]) == 1


def test_a_model_first_built_by_fit_is_not_taken_for_a_changed_one():
    x, y = make_data(200)
    model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
    trainer = make_trainer(model)
    trainer.predict(x[:4])
    for _ in range(2):
        assert len(trainer.fit(x, y, epochs=1, verbose=0).history["loss"]) == 1
    assert set(trainer.evaluate(x, y)) == {"loss"}


@pytest.mark.parametrize("unfreeze", [True, False])
def test_a_layer_a_callback_freezes_or_unfreezes_during_a_fit_is_refused_not_ignored(unfreeze):
    # A Keras callback's base.trainable = True at epoch 2 was ignored: the step traced at the
    # fit's start never updated the base (its kernel unchanged to the end), and a layer frozen so
    # went on training, both in silence.
    x, y = make_data(200)
    model = make_model()
    hidden = model.layers[0]
    hidden.trainable = not unfreeze

    class Toggle(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                hidden.trainable = unfreeze

    trainer = make_trainer(model)
    before = hidden.get_weights()[0].copy()
    with pytest.raises(ArgumentError) as info:
        trainer.fit(x, y, epochs=4, verbose=0, callbacks=[Toggle()])
    assert info.value.code == "trainable-changed" and "before epoch 3" in info.value.message and "epochs=2" in info.value.message
    assert len(trainer.history.history["loss"]) == 2
    assert np.array_equal(before, hidden.get_weights()[0]) == unfreeze  # no epoch ran with the change ignored
    assert ("became trainable" in info.value.message) == unfreeze


def test_a_layer_a_callback_freezes_before_the_first_epoch_is_told_to_set_trainable_before_fit():
    # A callback's on_train_begin runs after the step was traced: the advice was "fit(..., epochs=0) first".
    x, y = make_data(200)
    model = make_model()

    class Freeze(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            model.layers[0].trainable = False

    with pytest.raises(ArgumentError) as info:
        make_trainer(model).fit(x, y, epochs=3, initial_epoch=1, verbose=0, callbacks=[Freeze()])
    assert info.value.code == "trainable-changed" and "before calling fit" in info.value.message
    assert "epochs=1" not in info.value.message


class AboveThreshold(keras.metrics.Metric):
    """A metric of the user's own with an argument, and no get_config() that returns it."""

    def __init__(self, threshold=0.5, name="above", **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = threshold
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total.assign_add(keras.ops.sum(keras.ops.cast(y_pred > self.threshold, "float32")))
        self.count.assign_add(keras.ops.cast(keras.ops.size(y_pred), "float32"))

    def result(self):
        return self.total / self.count


class AboveThresholdRequired(AboveThreshold):
    def __init__(self, threshold, name="above", **kwargs):
        super().__init__(threshold, name=name, **kwargs)


class AboveThresholdConfigured(AboveThreshold):
    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@pytest.mark.parametrize("metric_class", [AboveThreshold, AboveThresholdRequired])
def test_a_metric_whose_config_leaves_out_an_argument_is_refused_with_how_to_fix_it(metric_class):
    # Its validation copy (from_config) took the default threshold, measuring validation otherwise
    # than training in silence, or failed with a raw TypeError when the argument had no default.
    with pytest.raises(ArgumentError) as info:
        make_trainer(metrics=[metric_class(0.1)])
    assert info.value.code == "metric-not-copyable" and "threshold" in info.value.message and "get_config()" in info.value.message


def test_a_metric_of_its_own_with_a_get_config_measures_validation_as_training():
    x, y = make_data(200)
    trainer = make_trainer(metrics=[AboveThresholdConfigured(0.1)], optimizer=keras.optimizers.SGD(0.0))
    history = trainer.fit(x, y, epochs=1, validation_data=(x, y), verbose=0).history
    assert history["val_above"][0] == pytest.approx(history["above"][0])


def test_a_two_output_models_epoch_loss_weights_the_partial_batch_by_its_rows():
    # Rows were counted as tf.shape(y_pred)[0]: for a tuple of outputs, the number of outputs.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 4)).astype("float32")
    y1, y2 = (rng.normal(size=(70, 1)).astype("float32") for _ in range(2))
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, (keras.layers.Dense(1, name="a")(hidden), keras.layers.Dense(1, name="b")(hidden)))
    trainer = Trainer(model, loss="mse", optimizer=keras.optimizers.SGD(0.0), task="regression", seed=0, diagnose=False)
    data = tf.data.Dataset.from_tensor_slices((x, (y1, y2))).batch(32)  # 32 + 32 + 6 rows
    history = trainer.fit(data, epochs=1, verbose=0, validation_data=data)
    p1, p2 = model(x)
    mse = keras.losses.MeanSquaredError()
    batches = [slice(i, i + 32) for i in range(0, 70, 32)]
    # As model.compile: the sum of the outputs' losses.
    exact = sum((float(mse(y1[b], p1[b])) + float(mse(y2[b], p2[b]))) * len(x[b]) for b in batches) / 70
    np.testing.assert_allclose(history.history["loss"][0], exact, rtol=1e-6)
    np.testing.assert_allclose(history.history["val_loss"][0], exact, rtol=1e-6)


@pytest.mark.parametrize("call", ["fit", "evaluate", "predict"])
@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, np.True_])  # np.True_ passed as 1
def test_a_bad_batch_size_is_refused_by_every_entry_point(call, batch_size):
    x, y = make_data(20)
    trainer = make_trainer()
    run = {"fit": lambda: trainer.fit(x, y, epochs=1, batch_size=batch_size, verbose=0),
           "evaluate": lambda: trainer.evaluate(x, y, batch_size=batch_size),
           "predict": lambda: trainer.predict(x, batch_size=batch_size)}[call]
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        run()


def test_a_bad_validation_batch_size_is_refused_under_its_own_name():
    # It was refused as "batch_size must be a positive integer", naming the argument that was fine.
    x, y = make_data(20)
    with pytest.raises(ArgumentError, match=r"^\[bad-argument\] validation_batch_size must be a positive integer, got 0\.$"):
        make_trainer().fit(x, y, epochs=1, validation_split=0.2, validation_batch_size=0, verbose=0)


def two_output_model(features: int = 4) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((features,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    # A list of outputs, as most Functional models return them (tf.data yields tuples).
    return keras.Model(inputs, [keras.layers.Dense(1, activation="sigmoid", name="a")(hidden), keras.layers.Dense(1, activation="sigmoid", name="b")(hidden)])


def test_a_two_output_model_trains_from_numpy_lists_as_from_a_dataset():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 4)).astype("float32")
    y1, y2 = (x[:, :1] > 0).astype("float32"), (x[:, 1:2] > 0).astype("float32")
    from_numpy = Trainer(two_output_model(), loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, metrics=["accuracy"], diagnose=False)
    numpy_history = from_numpy.fit(x, [y1, y2], epochs=2, batch_size=32, validation_split=0.2, shuffle=False, verbose=0).history
    from_dataset = Trainer(two_output_model(), loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, metrics=["accuracy"], diagnose=False)
    train = tf.data.Dataset.from_tensor_slices((x[:56], (y1[:56], y2[:56]))).batch(32)
    validation = tf.data.Dataset.from_tensor_slices((x[56:], (y1[56:], y2[56:]))).batch(32)
    dataset_history = from_dataset.fit(train, epochs=2, validation_data=validation, verbose=0).history
    per_output = {f"{o}_{k}" for o in ("a", "b") for k in ("loss", "accuracy")}
    assert set(numpy_history) == {"loss", "val_loss", *per_output, *(f"val_{k}" for k in per_output)}
    for key, values in numpy_history.items():
        np.testing.assert_allclose(values, dataset_history[key], rtol=1e-6, err_msg=key)
    assert from_numpy.evaluate(x[56:], [y1[56:], y2[56:]])["loss"] == pytest.approx(numpy_history["val_loss"][-1], rel=1e-6)
    # Targets by output name, as model.fit reads them; predictions per output.
    assert from_numpy.evaluate(x[56:], {"b": y2[56:], "a": y1[56:]})["loss"] == pytest.approx(numpy_history["val_loss"][-1], rel=1e-6)
    predicted = from_numpy.predict(x, batch_size=32)
    expected = from_numpy.model(x)
    assert isinstance(predicted, list) and len(predicted) == 2
    for got, want in zip(predicted, expected, strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", ["numpy", "dataset"])
def test_one_target_for_two_outputs_is_refused_before_training(form):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    trainer = Trainer(two_output_model(), loss="binary_crossentropy", optimizer="adam", task="binary", seed=0)
    data = (x, y) if form == "numpy" else (tf.data.Dataset.from_tensor_slices((x, y)).batch(16), None)
    with pytest.raises(DataError) as info:
        trainer.fit(*data, epochs=1, verbose=0)
    assert info.value.code == "shape-mismatch"
    assert "2 outputs (a, b)" in info.value.message and "one array of shape (64, 1)" in info.value.message
    assert trainer.step == 0


def test_an_unbuilt_subclassed_model_trains_with_statistics_of_its_variables():
    class TwoLayers(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = keras.layers.Dense(8, activation="relu")
            self.head = keras.layers.Dense(1, activation="sigmoid")

        def call(self, x, training=False):
            return self.head(self.hidden(x))

    x, y = make_data(64, features=4)
    keras.utils.set_random_seed(0)
    trainer = make_trainer(TwoLayers())
    seen = {}

    class Record(Callback):
        def on_execution_end(self, first_step, outputs):
            seen.update(outputs.as_dict())

    history = trainer.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[Record()])
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    assert len(trainer.model.trainable_variables) == 4
    assert len([name for name in seen if name.startswith("grad_norm/") and name != "grad_norm/global"]) == 4


def test_a_validation_dataset_is_checked_like_validation_arrays():
    x, y = make_data(64)
    bad = tf.data.Dataset.from_tensor_slices((x[:32], y[:32] * 255)).batch(16)  # labels 0/255
    trainer = make_trainer()
    with pytest.raises(DataError) as info:
        trainer.fit(x, y, epochs=1, verbose=0, validation_data=bad)
    assert info.value.code == "label-format" and "y_val" in info.value.message


def test_evaluate_without_targets_raises_data_error_with_code():
    x, _ = make_data(50)
    with pytest.raises(DataError) as info:
        make_trainer().evaluate(x)
    assert info.value.code == "missing-targets" and "evaluate(x, y)" in info.value.message


def test_evaluating_data_of_another_size_does_not_trace_the_loop_again():
    """Each new partial-batch size traced the whole evaluation loop again (0.4-1.2 s a call for a
    small MLP, and one more function kept per size); its rows are left open now."""
    x, y = make_data(200)
    model = make_model()
    trainer = make_trainer(model, metrics=["accuracy"], diagnose=False)
    model.compile(loss="binary_crossentropy", metrics=["accuracy"])
    for rows in (100, 101, 107, 199):  # partial batches of 4, 5, 11 and 7 rows
        results = trainer.evaluate(x[:rows], y[:rows], batch_size=32)
        expected = model.evaluate(x[:rows], y[:rows], batch_size=32, verbose=0, return_dict=True)
        np.testing.assert_allclose([results["loss"], results["accuracy"]], [expected["loss"], expected["accuracy"]], rtol=1e-5)
    ((fn),) = trainer._eval_loop._in_memory_fns.values()
    assert fn.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("labels", ["scalar", "vector", "as-wide-as-x"])
@pytest.mark.parametrize("where", ["fit", "validation", "evaluate"])
def test_an_unbatched_dataset_is_refused_before_anything_is_traced(labels, where):
    # Labels as wide as the features (10 and 10: (10,) and (10,) elements) looked like a batch of
    # 10 rows and failed in the first step with Keras's "Invalid input shape" ValueError.
    x, y = make_data(40)
    if labels == "scalar":
        y = y.reshape(-1)
    elif labels == "as-wide-as-x":
        y = np.repeat(y, x.shape[1], axis=1)
    single = tf.data.Dataset.from_tensor_slices((x, y))
    batched = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    trainer = make_trainer()
    with pytest.raises(DataError) as info:
        if where == "fit":
            trainer.fit(single, epochs=1, verbose=0)
        elif where == "validation":
            trainer.fit(batched, validation_data=single, epochs=1, verbose=0)
        else:
            trainer.evaluate(single)
    assert info.value.code == "dataset-unbatched" and ".batch(" in info.value.message
    assert trainer.global_step.numpy() == 0



def test_predict_refuses_an_unbatched_dataset_of_inputs_alone_as_unbatched():
    # Its (10,) elements were taken for a batch of 10 and refused as shape-mismatch, with advice
    # for an array: "if x is one sample, pass x[None]".
    x, _ = make_data(40)
    trainer = make_trainer()
    with pytest.raises(DataError) as info:
        trainer.predict(tf.data.Dataset.from_tensor_slices(x))
    assert info.value.code == "dataset-unbatched" and ".batch(" in info.value.message
    assert trainer.predict(tf.data.Dataset.from_tensor_slices(x).batch(8)).shape == (40, 1)

def test_batches_without_the_feature_axis_are_refused_with_their_rows_shape():
    # x batches of shape (8,) for a model taking (None, 2) were sampled as single examples of 8
    # features: "x has shape (5, 8)... build the model with keras.Input(shape=(8,))". (For a model
    # taking (None, 1) they train, as in model.fit, which adds the axis: tests/test_inputs.py.)
    x, y = make_data(40, features=2)
    trainer = make_trainer(make_model(features=2))
    dataset = tf.data.Dataset.from_tensor_slices((x[:, 0], y)).batch(8)
    for call in (lambda: trainer.fit(dataset, epochs=1, verbose=0), lambda: trainer.evaluate(dataset)):
        with pytest.raises(DataError) as info:
            call()
        assert info.value.code == "shape-mismatch" and "x has shape (40,)" in info.value.message and "(8,)" not in info.value.message


def test_a_batched_dataset_with_a_fixed_batch_size_is_not_taken_for_single_examples():
    x, y = make_data(40)
    trainer = make_trainer()
    history = trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8, drop_remainder=True), epochs=1, verbose=0)
    assert trainer.global_step.numpy() == 5 and len(history.history["loss"]) == 1


def test_event_files_hold_the_history_and_one_value_per_step(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = make_data(100)
    trainer = make_trainer(logdir=tmp_path, metrics=["accuracy"])
    trainer.log_text("recipe", "name: test")
    history = trainer.fit(x, y, epochs=2, batch_size=32, validation_split=0.2, verbose=0)

    train = EventAccumulator(str(tmp_path / "train")).Reload()
    validation = EventAccumulator(str(tmp_path / "validation")).Reload()
    epoch_loss = [e.value for e in train.Scalars("epoch/loss")]
    np.testing.assert_allclose(epoch_loss, history.history["loss"], rtol=1e-6)
    val_loss = [e.value for e in validation.Scalars("epoch/loss")]
    np.testing.assert_allclose(val_loss, history.history["val_loss"], rtol=1e-6)
    step_loss = train.Scalars("step/loss")
    assert [e.step for e in step_loss] == list(range(2 * 3))  # 80 rows: 2 full + 1 partial per epoch
    assert "recipe/text_summary" in train.Tags()["tensors"]


def test_each_compiled_function_is_traced_once_and_many_trainers_raise_no_retracing_warning(tmp_path, caplog):
    x, y = make_data(100)
    trainers = []
    for i in range(7):  # more trainers than TensorFlow's warning threshold (5)
        trainer = make_trainer(make_model(seed=i), optimizer="adam", logdir=tmp_path / str(i), diagnose=False)
        for _ in range(3):
            trainer.fit(x, y, epochs=2, batch_size=32, verbose=0, validation_data=(x[:40], y[:40]))
        trainers.append(trainer)
    for trainer in trainers:
        counts = [f.experimental_get_tracing_count() for f in trainer._train_loop._in_memory_fns.values()]
        counts += [trainer._histograms.fn.experimental_get_tracing_count()]
        counts += [f.experimental_get_tracing_count() for f in trainer._metric_fns.values()]
        assert counts and all(c == 1 for c in counts), counts
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_the_histograms_of_an_xla_step_are_not_compiled_by_xla(tmp_path):
    """XLA's compile of the histogram call took ~2 s of a small MLP's first epoch with a logdir,
    to save well under a millisecond a call: the XLA step's histograms run TensorFlow's kernels,
    and count the same as the XLA-compiled call did."""
    from trainkit import stats

    x, y = make_data(100)
    trainer = make_trainer(make_model(), logdir=tmp_path, jit_compile=True, diagnose=False)
    trainer.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert trainer._train_loop.jit_compile and trainer._histograms.batch is not None
    assert not trainer._histograms.fn._jit_compile
    buckets = trainer._histograms.buckets()
    kernel = trainer.model.trainable_variables[0]
    tag = next(t for t in buckets if t.startswith("histograms/weights/") and t.endswith("kernel"))
    expected = tf.function(lambda v: stats.histograms([v], xla=True), jit_compile=True)(kernel.value)[0].numpy()
    np.testing.assert_array_equal(buckets[tag][:, 2], expected[:, 2])
    np.testing.assert_allclose(buckets[tag][:, :2], expected[:, :2], rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True], ids=["plain", "xla"])
@pytest.mark.parametrize("rows", [1000, 1024], ids=["partial last batch", "whole batches"])
def test_an_in_memory_fit_compiles_its_step_loop_once(rows, jit):
    """steps_per_execution="auto" starts an epoch with small calls and ends it with the partial
    batch: every call shares one compiled loop (a loop without the tail cost a second compile,
    about as long as the first). Without XLA, learning the step's names is that loop's own trace,
    so the step is traced once per batch shape and never alone."""
    x, y = make_data(rows)
    trainer = make_trainer(optimizer="adam", diagnose=False, jit_compile=jit)
    traced_rows = []
    step = trainer.train_step

    def counting_step(batch):
        traced_rows.append(tf.nest.flatten(batch)[0].shape[0])
        return step(batch)

    trainer.train_step = counting_step
    history = trainer.fit(x, y, epochs=3, batch_size=32, verbose=0)
    assert len(history.history["loss"]) == 3
    assert len(trainer._train_loop._in_memory_fns) == 1
    ((key, fn),) = trainer._train_loop._in_memory_fns.items()
    assert fn.experimental_get_tracing_count() == 1
    partial = [rows % 32] if rows % 32 else []
    if jit:
        assert key == (rows // 32, bool(partial))
        assert traced_rows == [None, 32, *partial]  # the names from a trace of the step alone
    else:
        assert key is None
        assert traced_rows == [32, *[None for _ in partial]]  # the partial batch's rows left open
    assert int(trainer.global_step.numpy()) == 3 * math.ceil(rows / 32)  # every batch ran, the tail once an epoch


def test_a_fit_on_a_dataset_traces_its_train_and_test_steps_once():
    """Without XLA, the streaming loops' own traces learn the steps' names: each step was traced
    alone first, then again in its loop (~0.2 s a loop of a small MLP's first fit). The losses
    stay model.fit's."""
    x, y = make_data(200)
    train, validation = (tf.data.Dataset.from_tensor_slices(data).batch(32) for data in ((x, y), (x[:70], y[:70])))
    trainer = make_trainer(diagnose=False)
    traced = {"train": [], "test": []}
    for kind in traced:
        step = getattr(trainer, f"{kind}_step")
        setattr(trainer, f"{kind}_step", lambda batch, step=step, kind=kind: traced[kind].append(kind) or step(batch))
    history = trainer.fit(train, epochs=2, verbose=0, validation_data=validation, check_data=False)
    assert traced == {"train": ["train"], "test": ["test"]}
    loops = (trainer._train_loop, trainer._eval_loop)
    assert [loop._streaming_fn.experimental_get_tracing_count() for loop in loops] == [1, 1]
    model = make_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    expected = model.fit(train, epochs=2, verbose=0, validation_data=validation, shuffle=False).history
    np.testing.assert_allclose(history.history["loss"], expected["loss"], rtol=1e-6)
    np.testing.assert_allclose(history.history["val_loss"], expected["val_loss"], rtol=1e-6)


def test_histograms_due_at_the_last_full_batch_leave_the_tail_to_a_call_of_its_own(tmp_path):
    """Histograms every 3 steps of 3 full batches and a partial one: they are written after the
    third batch, then the partial batch runs alone (in the epoch's one compiled loop); the losses
    are those of the same run without histograms."""
    x, y = make_data(100)
    runs = [make_trainer(optimizer="adam", diagnose=False, steps_per_execution=3, **options)
            for options in ({"logdir": tmp_path, "histograms_every": 3}, {})]
    losses = [trainer.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0).history["loss"] for trainer in runs]
    assert losses[0] == losses[1]
    assert [int(trainer.global_step.numpy()) for trainer in runs] == [8, 8]
    assert len(runs[0]._train_loop._in_memory_fns) == 1


def test_history_lists_stay_aligned_with_the_epochs_when_a_key_comes_and_goes():
    import math

    from trainkit.history import History

    history = History()
    history.append(0, {"loss": 1.0})
    history.append(1, {"loss": 0.5, "penalty": 0.1})
    history.append(2, {"loss": 0.25})
    assert history.epoch == [0, 1, 2]
    assert history.history["loss"] == [1.0, 0.5, 0.25]
    assert math.isnan(history.history["penalty"][0]) and history.history["penalty"][1] == 0.1 and math.isnan(history.history["penalty"][2])


def test_a_history_s_repr_is_one_short_line_however_long_the_run():
    # A notebook cell ending in `history = trainer.fit(...)`'s value printed every value of every
    # epoch (the dataclass's repr): 1000 epochs were pages of numbers.
    from trainkit.history import History

    history = History()
    for epoch in range(1000):
        history.append(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 2.0 / (epoch + 1)})
    assert repr(history) == "History(epochs=1000, last: loss=0.001, val_loss=0.002)"
    assert repr(History()) == "History(epochs=0)"


def test_a_finding_s_repr_is_one_short_line_and_print_shows_it_whole():
    # `trainer.findings` as a notebook cell's last line showed the dataclass's repr: ~900 characters
    # a finding (message, advice, every evidence float in full, step=None...), 1829 for two.
    from trainkit.findings import Finding

    finding = Finding("unscaled-inputs", "warning", "The inputs x are not scaled " + "feature 1: mean 538.6, std 1034; " * 10,
                      "Standardise each feature.", {"mean": [538.6212902069092] * 10}, epoch=2, step=40)
    assert repr(finding).startswith("<Finding warning [unscaled-inputs] (epoch 3, step 40): The inputs x are not scaled")
    assert repr(finding).endswith(" ...>") and len(repr(finding)) < 150
    assert "538.6212902069092" not in repr(finding) and "Standardise" not in repr(finding)
    assert repr(Finding("plateau", "info", "Flat.", "Train longer.")) == "<Finding info [plateau]: Flat.>"
    assert str(finding) == finding.format() and "fix: Standardise each feature." in str(finding)


@pytest.mark.parametrize(
    ("make", "code", "fragment"),
    [
        (lambda x, y: make_trainer(task="binar"), "unknown-task", 'Did you mean "binary"?'),
        (lambda x, y: make_trainer(on_nan="skip"), "bad-argument", "on_nan"),
        (lambda x, y: make_trainer(allow=None), "bad-argument", "allow must be a check code or a list of them"),
        (lambda x, y: make_trainer().fit(x, y, epochs=1, batch_size=0, verbose=0), "bad-argument", "batch_size"),
        (lambda x, y: make_trainer().fit(x, y, epochs=1, validation_split=1.5, verbose=0), "bad-argument", "validation_split"),
        # A string was read as true: "false" shuffled.
        (lambda x, y: make_trainer().fit(x, y, epochs=1, shuffle="false", verbose=0), "bad-argument", 'shuffle must be True, False or "batch"'),
    ],
)
def test_bad_arguments_raise_trainkit_errors_with_codes(make, code, fragment):
    from trainkit import TrainkitError

    x, y = make_data(40)
    with pytest.raises(TrainkitError) as info:
        make(x, y)
    assert info.value.code == code and fragment in info.value.message
    assert isinstance(info.value, ValueError)  # as before, for code that caught ValueError


def test_shuffle_batch_keeps_the_batches_and_shuffles_only_their_rows_as_model_fit_does():
    # "batch" was read as true: every epoch drew new batches from all the rows.
    trainer = make_trainer(seed=5)
    orders = [trainer._epoch_order(10, "batch", epoch, 4) for epoch in range(3)]
    for order in orders:
        assert [sorted(order[i:i + 4]) for i in (0, 4, 8)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert any(list(order) != list(range(10)) for order in orders) and not all(np.array_equal(orders[0], o) for o in orders[1:])
    np.testing.assert_array_equal(orders[1], make_trainer(seed=5)._epoch_order(10, "batch", 1, 4))  # seeded: a resumed run sees the same

    # A batch's loss and gradient do not depend on its rows' order: model.fit's "batch" numbers.
    x, y = make_data(50, features=4)
    history = make_trainer(make_model(features=4)).fit(x, y, epochs=3, batch_size=16, shuffle="batch", verbose=0).history
    reference = make_model(features=4)
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(x, y, epochs=3, batch_size=16, shuffle="batch", verbose=0).history
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)


def test_resume_without_a_logdir_says_the_trainer_needs_one():
    # It said "no complete checkpoint in nowhere (the trainer has no logdir)" and to drop --resume.
    x, y = make_data(20)
    with pytest.raises(TrainkitError) as info:
        make_trainer().fit(x, y, epochs=1, resume=True, verbose=0)
    assert info.value.code == "no-checkpoint" and "Trainer(..., logdir=...)" in info.value.message and "nowhere" not in info.value.message


def test_metrics_none_means_no_metrics_as_in_model_compile():
    # It raised a bare TypeError: 'NoneType' object is not iterable.
    x, y = make_data(32)
    assert set(make_trainer(metrics=None).fit(x, y, epochs=1, verbose=0).history) == {"loss"}


def test_allow_given_one_code_as_a_string_allows_that_code():
    # frozenset("code") split it into characters: "allow contains 'a', which is not a check code".
    trainer = make_trainer(loss="mse", allow="regression-loss-for-classification")
    assert trainer.allow == {"regression-loss-for-classification"}
    assert [f.code for f in trainer.findings] == ["regression-loss-for-classification"]


def test_each_fit_returns_a_history_of_its_own_epochs_like_model_fit():
    x, y = make_data(64)
    trainer = make_trainer()
    first = trainer.fit(x, y, epochs=2, verbose=0)
    second = trainer.fit(x, y, epochs=4, initial_epoch=2, verbose=0, validation_data=(x, y))
    assert first is not second and trainer.history is second
    assert first.epoch == [0, 1] and set(first.history) == {"loss"}
    assert second.epoch == [2, 3] and len(second.history["val_loss"]) == 2 and np.isfinite(second.history["val_loss"]).all()


def test_an_unbuilt_sequential_model_trains_on_sequences_of_any_length():
    # Built from the dataset's spec (length unknown), not called on a row of length-1 zeros.
    rng = np.random.default_rng(0)

    def sequences():
        for length in (5, 9, 7, 6):
            x = rng.normal(size=(8, length, 3)).astype("float32")
            yield x, (x[:, :1, :1].reshape(8, 1) > 0).astype("float32")

    data = tf.data.Dataset.from_generator(sequences, output_signature=(tf.TensorSpec((None, None, 3)), tf.TensorSpec((None, 1))))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Conv1D(4, 3), keras.layers.GlobalMaxPooling1D(), keras.layers.Dense(1, activation="sigmoid")])
    history = make_trainer(model).fit(data, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_a_train_and_test_step_written_like_keras_report_the_losses_they_return():
    # Overrides that never call update_metrics: the epoch loss was the empty tracker's 0.0 (and
    # the diagnosis then saw a collapse). It is now the row-weighted mean of each step's "loss".

    x, y = make_data(40, features=4)
    trainer = KerasStyle(make_model(features=4), loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), task="binary", metrics=["accuracy"], seed=0)
    history = trainer.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, validation_data=(x, y)).history
    reference = make_model(features=4)
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, validation_data=(x, y)).history
    assert set(history) == {"loss", "val_loss"}  # no accuracy: the step never updated it
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(history["val_loss"], expected["val_loss"], rtol=1e-5)
    assert "loss-collapsed" not in {f.code for f in trainer.findings}
    assert trainer.evaluate(x, y, batch_size=16)["loss"] == pytest.approx(expected["val_loss"][-1], rel=1e-5)


def _guide_step(owner, model, data, training):
    """The Keras guide's custom step: metrics of its own, their running results returned."""
    x, y = data[:2]
    with tf.GradientTape() as tape:
        y_pred = model(x, training=training)
        loss = tf.reduce_mean(keras.losses.binary_crossentropy(y, y_pred))
    if training:
        gradients = tape.gradient(loss, model.trainable_variables)
        owner.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
    owner.loss_tracker.update_state(loss)
    owner.mae_metric.update_state(y, y_pred)
    return {"loss": owner.loss_tracker.result(), "mae": owner.mae_metric.result()}


class GuideTrainer(Trainer):
    """The Keras guide's low-level steps on a Trainer: its own trackers, as attributes only."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mae_metric = keras.metrics.MeanAbsoluteError(name="mae")

    def train_step(self, batch):
        return _guide_step(self, self.model, batch, training=True)

    def test_step(self, batch):
        return _guide_step(self, self.model, batch, training=False)


class GuideModel(keras.Sequential):
    """The same steps on a keras.Model, as the guide writes them, for model.fit."""

    def __init__(self, layers):
        super().__init__(layers)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mae_metric = keras.metrics.MeanAbsoluteError(name="mae")

    @property
    def metrics(self):
        return [self.loss_tracker, self.mae_metric]

    def train_step(self, data):
        return _guide_step(self, self, data, training=True)

    def test_step(self, data):
        return _guide_step(self, self, data, training=False)


def test_a_step_returning_its_own_metrics_running_results_logs_them_as_keras_does():
    # The "customizing fit" guide: an epoch's value of a running mean is where it stands at the
    # epoch's end, the metrics reset at each epoch's start and before validation. Averaged over
    # the steps like a batch's loss, the first batches counted many times over.
    x, y = make_data(203, features=4)  # a partial last batch of 11 rows
    trainer = GuideTrainer(make_model(features=4), loss="binary_crossentropy", optimizer=keras.optimizers.Adam(0.01), task="binary", seed=0, diagnose=False)
    history = trainer.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0, validation_data=(x[:50], y[:50])).history
    reference = GuideModel(make_model(features=4).layers)
    reference.compile(optimizer=keras.optimizers.Adam(0.01))
    expected = reference.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0, validation_data=(x[:50], y[:50])).history
    for key in ("loss", "mae", "val_loss", "val_mae"):
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5, err_msg=key)
    assert trainer.evaluate(x[:50], y[:50])["mae"] == pytest.approx(expected["val_mae"][-1], rel=1e-5)


def test_keras_callbacks_that_work_at_epochs_run_as_in_model_fit(tmp_path):
    # They were refused (bad-callback): ReduceLROnPlateau, CSVLogger, ModelCheckpoint and Keras's
    # EarlyStopping are what model.fit users bring.
    x, y = make_data(96, features=4)

    class Steps(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):  # a KeyError here: trainkit gave params["steps"] only at epochs
            self.planned = (self.params["epochs"], self.params["steps"])

        def on_epoch_end(self, epoch, logs=None):
            self.seen = (self.params["epochs"], self.params["steps"])

    steps = {"trainkit": Steps(), "keras": Steps()}

    def callbacks(name):
        return [steps[name], keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0),
                keras.callbacks.CSVLogger(str(tmp_path / f"{name}.csv")),
                keras.callbacks.ModelCheckpoint(str(tmp_path / f"{name}.keras"), monitor="val_loss", save_best_only=True),
                keras.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=2)]

    trainer = make_trainer(make_model(features=4), optimizer=keras.optimizers.SGD(0.2), seed=0)
    history = trainer.fit(x, y, epochs=6, batch_size=16, shuffle=False, verbose=0, validation_data=(x, y), callbacks=callbacks("trainkit")).history
    reference = make_model(features=4)
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.2))
    expected = reference.fit(x, y, epochs=6, batch_size=16, shuffle=False, verbose=0, validation_data=(x, y), callbacks=callbacks("keras")).history
    # Keras's EarlyStopping stopped both after 3 epochs; ReduceLROnPlateau halved the rate on the way.
    assert len(history["loss"]) == len(expected["loss"]) == 3
    np.testing.assert_allclose(history["learning_rate"], expected["learning_rate"], rtol=1e-6)
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)
    assert float(trainer.optimizer.learning_rate) == pytest.approx(float(reference.optimizer.learning_rate))
    assert float(trainer.optimizer.learning_rate) < 0.2
    assert (tmp_path / "trainkit.csv").read_text().splitlines()[0] == (tmp_path / "keras.csv").read_text().splitlines()[0]
    saved = keras.models.load_model(tmp_path / "trainkit.keras")
    np.testing.assert_allclose(saved.predict(x, verbose=0), trainer.predict(x), rtol=1e-6)
    assert not hasattr(trainer.model, "optimizer")  # the run's optimizer is lent to the model for the run only
    assert steps["trainkit"].seen == steps["keras"].seen == steps["trainkit"].planned == steps["keras"].planned == (6, 6)


def test_a_trained_model_goes_on_in_plain_keras_as_the_readme_says(tmp_path):
    # The README said a saved model's file holds no trainkit optimizer state, and named no way to
    # go on with that state in model.fit, nor to read a run's checkpoints/ with plain Keras.
    x, y = make_data(96, features=4)
    trainer = make_trainer(make_model(features=4), optimizer="adam", logdir=tmp_path / "run", checkpoint_every=1, diagnose=False)
    trainer.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    model = trainer.model
    # Not compiled by the user: its file holds no optimizer.
    model.save(tmp_path / "plain.keras")
    assert not keras.models.load_model(tmp_path / "plain.keras").compiled
    # The checkpoints are TensorFlow's: load_weights refuses them, tf.train.Checkpoint reads them.
    newest = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    with pytest.raises(ValueError, match="File format not supported"):
        make_model(features=4, seed=1).load_weights(newest)
    rebuilt = make_model(features=4, seed=1)
    tf.train.Checkpoint(model=rebuilt.variables).restore(newest).expect_partial()
    for got, want in zip(rebuilt.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)

    def newest_and_final(patience: int, run: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        # The loss never falls by 10: the first epoch is the best, and the weights put back are its.
        stopping = EarlyStopping(monitor="loss", patience=patience, min_delta=10.0)
        stopped = make_trainer(make_model(features=4), optimizer="adam", logdir=tmp_path / run, checkpoint_every=1, diagnose=False)
        stopped.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=[stopping])
        assert stopping.restored_epoch == 0
        rebuilt = make_model(features=4, seed=1)
        tf.train.Checkpoint(model=rebuilt.variables).restore(tf.train.latest_checkpoint(str(tmp_path / run / "checkpoints"))).expect_partial()
        return rebuilt.get_weights(), stopped.model.get_weights()

    # Put back as it stopped the run: in the newest checkpoint. Put back as fit ended: not there.
    newest, final = newest_and_final(1, "stopped")
    assert all(np.array_equal(got, want) for got, want in zip(newest, final, strict=True))
    newest, final = newest_and_final(5, "ran-to-the-end")
    assert not all(np.array_equal(got, want) for got, want in zip(newest, final, strict=True))
    # model.compile(optimizer=trainer.optimizer): model.fit goes on with its state, to a third
    # trainkit epoch's weights.
    model.compile(loss="binary_crossentropy", optimizer=trainer.optimizer)
    model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations) == 18
    reference = make_trainer(make_model(features=4), optimizer="adam", diagnose=False)
    reference.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    for got, want in zip(model.get_weights(), reference.model.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # Given the compiled optimizer, the Trainer trains it, and the file holds its state.
    compiled = make_model(features=4)
    compiled.compile(loss="binary_crossentropy", optimizer="adam")
    make_trainer(compiled, optimizer=compiled.optimizer, diagnose=False).fit(x, y, epochs=1, batch_size=16, verbose=0)
    compiled.save(tmp_path / "compiled.keras")
    assert int(keras.models.load_model(tmp_path / "compiled.keras").optimizer.iterations) == 6


def test_lists_of_callbacks_inside_the_list_are_flattened_as_model_fit_flattens_them():
    # callbacks=[my_callbacks, early_stopping] was refused: "must be trainkit.callbacks.Callback
    # instances, got list", though Keras callbacks are taken and model.fit flattens the lists.
    x, y = make_data(64, features=4)
    seen = []
    mine = [keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(("keras", epoch)))]

    class Mine(Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append(("trainkit", epoch))

    history = make_trainer(make_model(features=4)).fit(x, y, epochs=3, verbose=0, callbacks=[mine, (Mine(), [EarlyStopping(monitor="loss", patience=0, min_delta=10.0)])])
    assert len(history.history["loss"]) == 2  # the EarlyStopping two lists down stopped it
    assert seen == [("keras", 0), ("trainkit", 0), ("keras", 1), ("trainkit", 1)]


@pytest.mark.parametrize("verbose", [0, 2])
def test_a_keras_callback_s_params_hold_fit_s_verbose_as_in_model_fit(verbose, capsys):
    # params["verbose"] was 0 whatever fit was asked: a callback that printed only when it was set
    # stayed silent under fit(verbose=2), where model.fit gives it 2.
    x, y = make_data(64, features=4)

    class Verbose(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seen = self.params["verbose"]

    callback = Verbose()
    make_trainer(make_model(features=4), diagnose=False).fit(x, y, epochs=1, verbose=verbose, callbacks=[callback])
    assert callback.seen == verbose


def test_a_keras_callback_s_on_train_end_gets_the_last_epoch_s_logs_as_in_model_fit():
    # It got trainkit's run summary ({"epochs_run", "stop_reason"}): logs["val_loss"] was a KeyError.
    x, y = make_data(48, features=4)
    ends = {}

    def callback(name):
        return keras.callbacks.LambdaCallback(on_train_end=lambda logs: ends.__setitem__(name, logs))

    trainer = make_trainer(make_model(features=4), seed=0)
    trainer.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, validation_data=(x, y), callbacks=[callback("trainkit")])
    reference = make_model(features=4)
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    reference.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, validation_data=(x, y), callbacks=[callback("keras")])
    assert set(ends["trainkit"]) == set(ends["keras"]) == {"loss", "val_loss"}
    for key in ("loss", "val_loss"):
        assert ends["trainkit"][key] == pytest.approx(float(ends["keras"][key]), rel=1e-5)


def test_a_keras_callback_evaluating_the_model_gets_what_model_fit_s_would():
    # self.model.evaluate(...) raised "You must call compile() before using the model".
    x, y = make_data(48, features=4)
    evaluated = {}

    def evaluating(name):
        cb = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: evaluated.setdefault(name, []).append(cb.model.evaluate(x, y, verbose=0)))
        return cb

    model = make_model(features=4)
    make_trainer(model, seed=0, metrics=["accuracy"]).fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=[evaluating("trainkit")])
    reference = make_model(features=4)
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])
    reference.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=[evaluating("keras")])
    np.testing.assert_allclose(evaluated["trainkit"], evaluated["keras"], rtol=1e-5)
    assert len(evaluated["trainkit"]) == 2 and len(evaluated["trainkit"][0]) == 2  # [loss, accuracy] each epoch
    assert "evaluate" not in vars(model)  # lent for the run only: the model's own afterwards


def test_what_a_keras_callback_lent_the_model_goes_back_when_an_earlier_on_train_end_raised():
    # A callback whose on_train_end raised, listed before a Keras callback, left the trainer's
    # optimizer and evaluate on the model: after model.compile(loss="mse"), model.evaluate still
    # measured the trainer's binary cross-entropy.
    class Failing(Callback):
        def on_train_end(self, logs=None):
            raise RuntimeError("on_train_end failed")

    x, y = make_data(48, features=4)
    model = make_model(features=4)
    with pytest.raises(RuntimeError, match="on_train_end failed"):
        make_trainer(model).fit(x, y, epochs=1, verbose=0, callbacks=[Failing(), keras.callbacks.ReduceLROnPlateau(monitor="loss")])
    assert "evaluate" not in vars(model) and "optimizer" not in vars(model)
    model.compile(loss="mse")
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), np.mean((model.predict(x, verbose=0) - y) ** 2), rtol=1e-5)


def test_a_keras_callback_reading_the_model_s_history_sees_the_epochs_so_far_as_in_model_fit():
    # self.model.history raised AttributeError: model.fit sets it to its History, trainkit did not.
    x, y = make_data(48, features=4)
    seen = {}

    def reading(name):
        cb = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.setdefault(name, []).append(list(cb.model.history.history.get("loss", []))))
        return cb

    history = make_trainer(make_model(features=4), seed=0).fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, callbacks=[reading("trainkit")])
    reference = make_model(features=4)
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    reference.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, callbacks=[reading("keras")])
    assert [len(losses) for losses in seen["trainkit"]] == [len(losses) for losses in seen["keras"]] == [0, 1, 2]
    np.testing.assert_allclose(seen["trainkit"][-1], seen["keras"][-1], rtol=1e-5)
    assert seen["trainkit"][-1] == history.history["loss"][:2]


def test_the_history_has_keras_s_params_and_model_and_is_the_model_s_history_as_in_model_fit():
    # History had no params or model (AttributeError in code written for Keras's History), and
    # model.history was None after a fit without a Keras callback (notebooks plot it).
    x, y = make_data(40, features=4)
    model = make_model(features=4)
    history = make_trainer(model).fit(x, y, epochs=2, batch_size=16, verbose=0, validation_split=0.2)
    reference = make_model(features=4)
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_split=0.2)
    assert history.params == expected.params == {"verbose": 0, "epochs": 2, "steps": 2}
    assert history.model is model and model.history is history and history.epoch == expected.epoch


def test_keras_callbacks_monitoring_a_metric_in_auto_mode_take_its_direction_as_in_model_fit(tmp_path):
    # Keras finds the direction of a monitored metric in model.metrics, which a model trainkit
    # trains does not hold: EarlyStopping(monitor="val_accuracy") raised ValueError ("isn't able
    # to automatically determine whether that metric should be maximized") after the first epoch.
    x, y = make_data(96, features=4)

    def callbacks(name):
        return [keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=1, restore_best_weights=True),
                keras.callbacks.ReduceLROnPlateau(monitor="val_mae", factor=0.5, patience=0),
                keras.callbacks.ModelCheckpoint(str(tmp_path / f"{name}.weights.h5"), monitor="val_accuracy", save_best_only=True, save_weights_only=True)]

    trainer = make_trainer(make_model(features=4), optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy", "mae"], seed=0)
    history = trainer.fit(x, y, epochs=12, batch_size=16, shuffle=False, verbose=0, validation_split=0.25, callbacks=callbacks("trainkit")).history
    reference = make_model(features=4)
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy", "mae"])
    expected = reference.fit(x, y, epochs=12, batch_size=16, shuffle=False, verbose=0, validation_split=0.25, callbacks=callbacks("keras")).history
    assert len(history["loss"]) == len(expected["loss"])
    np.testing.assert_allclose(history["learning_rate"], expected["learning_rate"], rtol=1e-6)
    np.testing.assert_allclose(trainer.predict(x), reference.predict(x, verbose=0), rtol=1e-5)
@pytest.mark.parametrize("callback", [
    lambda path: keras.callbacks.EarlyStopping(monitor="val_los"),
    lambda path: keras.callbacks.ReduceLROnPlateau(monitor="val_los"),
    lambda path: keras.callbacks.ModelCheckpoint(str(path / "m.keras"), monitor="val_los", save_best_only=True),
], ids=["EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint"])
def test_a_keras_callback_watching_a_value_the_logs_lack_is_refused_before_training(callback, tmp_path):
    # Keras's ValueError after the first epoch: "isn't able to automatically determine whether that
    # metric should be maximized or minimized", about a typo.
    x, y = make_data(40, features=4)
    seen = []

    class Epochs(Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append(epoch)

    with pytest.raises(ArgumentError) as info:
        make_trainer(make_model(features=4)).fit(x, y, epochs=2, validation_split=0.25, callbacks=[callback(tmp_path), Epochs()], verbose=0)
    assert info.value.code == "bad-monitor" and 'monitors "val_los"' in info.value.message and 'Did you mean "val_loss"?' in info.value.message
    assert not seen


def test_a_model_checkpoint_whose_filepath_names_a_value_the_logs_lack_is_refused_before_training(tmp_path):
    # Keras's KeyError ("Failed to format this callback filepath") came after the first epoch had
    # trained: {val_loss} without validation data.
    x, y = make_data(40, features=4)
    seen = []

    class Epochs(Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append(epoch)

    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch:02d}-{val_loss:.2f}.keras"))
    with pytest.raises(ArgumentError) as info:
        make_trainer(make_model(features=4)).fit(x, y, epochs=2, callbacks=[checkpoint, Epochs()], verbose=0)
    assert info.value.code == "bad-monitor" and "{val_loss}" in info.value.message and "['loss']" in info.value.message
    assert not seen and not list(tmp_path.iterdir())
    # The fields the logs fill are formatted as in model.fit.
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch:02d}-{val_loss:.2f}.weights.h5"), save_weights_only=True)
    make_trainer(make_model(features=4)).fit(x, y, epochs=2, validation_split=0.25, callbacks=[checkpoint], verbose=0)
    assert len(list(tmp_path.glob("m-0[12]-*.weights.h5"))) == 2


def test_a_model_checkpoint_whose_filepath_names_batch_is_refused_before_training(tmp_path):
    # Keras fills {batch} only when saving every few batches: a once-an-epoch checkpoint's filepath
    # is formatted with the epoch and the logs alone, a KeyError after the first epoch had trained.
    x, y = make_data(40, features=4)
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch}-{batch}.keras"))
    with pytest.raises(ArgumentError) as info:
        make_trainer(make_model(features=4)).fit(x, y, epochs=2, callbacks=[checkpoint], verbose=0)
    assert info.value.code == "bad-monitor" and "{batch}" in info.value.message and "every few batches" in info.value.message
    assert not list(tmp_path.iterdir())
    # {epoch} alone, a format spec and literal braces are formatted as in model.fit.
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "m{{x}}-{epoch:03d}-{loss:.4f}.weights.h5"), save_weights_only=True)
    make_trainer(make_model(features=4)).fit(x, y, epochs=2, callbacks=[checkpoint], verbose=0)
    assert len(list(tmp_path.glob("m{x}-00[12]-*.weights.h5"))) == 2


def test_keras_monitor_callbacks_on_an_output_s_loss_minimise_it():
    # mode="auto" on "val_a_loss" failed after the first epoch, as in model.fit: Keras finds no
    # metric of that name ("isn't able to automatically determine whether that metric should be
    # maximized or minimized"). A loss goes down.
    x, y = make_data(64, features=4)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, {"a": keras.layers.Dense(1, activation="sigmoid", name="a")(inputs), "b": keras.layers.Dense(1, name="b")(inputs)})
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_a_loss", patience=1), keras.callbacks.ReduceLROnPlateau(monitor="b_loss", patience=0)]
    trainer = make_trainer(model, loss={"a": "binary_crossentropy", "b": "mse"}, task={"a": "binary", "b": "regression"})
    history = trainer.fit(x, {"a": y, "b": x[:, :1]}, epochs=2, validation_split=0.25, callbacks=callbacks, verbose=0)
    assert len(history.epoch) == 2
    assert all(callback.monitor_op is keras.ops.less for callback in callbacks)


def test_a_keras_monitor_callback_that_cannot_tell_its_metric_s_direction_is_refused_before_training():
    # mode="auto" on a plain function's metric: Keras's ValueError ("isn't able to automatically
    # determine whether that metric should be maximized or minimized") after the first epoch.
    x, y = make_data(40, features=4)
    seen = []

    def hit_rate(y_true, y_pred):
        return keras.ops.mean(keras.ops.cast(keras.ops.equal(y_true, keras.ops.round(y_pred)), "float32"), axis=-1)

    class Epochs(Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append(epoch)

    for callback in (keras.callbacks.EarlyStopping(monitor="val_hit_rate"), keras.callbacks.ReduceLROnPlateau(monitor="hit_rate")):
        with pytest.raises(ArgumentError) as info:
            make_trainer(make_model(features=4), metrics=[hit_rate]).fit(x, y, epochs=2, validation_split=0.25, callbacks=[callback, Epochs()], verbose=0)
        assert info.value.code == "bad-monitor" and "mode='max'" in info.value.message and "mode='min'" in info.value.message
    assert not seen
    # With its mode, it runs.
    callback = keras.callbacks.EarlyStopping(monitor="val_hit_rate", mode="max", patience=5)
    make_trainer(make_model(features=4), metrics=[hit_rate]).fit(x, y, epochs=2, validation_split=0.25, callbacks=[callback], verbose=0)
    assert callback.monitor_op is keras.ops.greater


def test_a_model_checkpoint_saving_every_epoch_on_a_monitor_it_cannot_tell_is_refused_before_training(tmp_path):
    # Without save_best_only it still sets its mode at the first epoch's end: monitor="val_acc",
    # which the logs lack (they have val_accuracy), was Keras's ValueError after that epoch.
    x, y = make_data(40, features=4)
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), monitor="val_acc")
    with pytest.raises(ArgumentError) as info:
        make_trainer(make_model(features=4), metrics=["accuracy"]).fit(x, y, epochs=2, validation_split=0.25, callbacks=[checkpoint], verbose=0)
    assert info.value.code == "bad-monitor" and "mode='max'" in info.value.message and 'Did you mean "val_accuracy"' in info.value.message
    assert not list(tmp_path.iterdir())
    # One it can tell, logged or not, saves every epoch as in model.fit.
    for monitor in ("val_accuracy", "val_loss"):
        checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / f"{monitor}.keras"), monitor=monitor)
        make_trainer(make_model(features=4), metrics=["accuracy"]).fit(x, y, epochs=2, callbacks=[checkpoint], verbose=0)
        assert (tmp_path / f"{monitor}.keras").exists()


class AddsF1(Callback):
    """A callback of the user's that adds a value to the epoch logs, for the callbacks after it."""

    def on_epoch_end(self, epoch, logs):
        logs["val_f1"] = 0.5 + 0.1 * epoch


@pytest.mark.parametrize("monitor", [
    lambda name: keras.callbacks.EarlyStopping(monitor=name, mode="max", patience=5),
    lambda name: EarlyStopping(monitor=name, mode="max", patience=5),
], ids=["keras", "trainkit"])
def test_a_value_a_callback_adds_to_the_logs_can_be_monitored_after_it(monitor):
    # model.fit allows it; refusing every monitor the step's logs lack before training refused it.
    x, y = make_data(40, features=4)
    history = make_trainer(make_model(features=4)).fit(x, y, epochs=2, validation_split=0.25, callbacks=[AddsF1(), monitor("val_f1")], verbose=0)
    assert history.history["val_f1"] == pytest.approx([0.5, 0.6])
    # A typo there is still refused, at the first epoch's end, against the logs as they are then.
    with pytest.raises(ArgumentError) as info:
        make_trainer(make_model(features=4)).fit(x, y, epochs=2, validation_split=0.25, callbacks=[AddsF1(), monitor("val_f2")], verbose=0)
    assert info.value.code == "bad-monitor" and 'Did you mean "val_f1"?' in info.value.message


class KerasAddsF1(keras.callbacks.Callback):
    """The same, written as a Keras callback."""

    def on_epoch_end(self, epoch, logs=None):
        logs["val_f1"] = 0.5 + 0.1 * epoch


@pytest.mark.parametrize("adder", [
    lambda: keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update(val_f1=0.5 + 0.1 * epoch)),
    KerasAddsF1,
], ids=["LambdaCallback", "Callback"])
def test_a_value_a_keras_callback_adds_to_the_logs_can_be_monitored_after_it(adder):
    # Refused before training (bad-monitor: "the epoch logs only have ['loss', 'val_loss']"), where
    # model.fit allows it as it does after a trainkit callback.
    x, y = make_data(40, features=4)
    stopping = keras.callbacks.EarlyStopping(monitor="val_f1", mode="max", patience=5)
    history = make_trainer(make_model(features=4)).fit(x, y, epochs=2, validation_split=0.25, callbacks=[adder(), stopping], verbose=0)
    assert history.history["val_f1"] == pytest.approx([0.5, 0.6])
    with pytest.raises(ArgumentError) as info:  # a typo still is, at the first epoch's end
        make_trainer(make_model(features=4)).fit(x, y, epochs=2, validation_split=0.25, verbose=0,
                                                 callbacks=[adder(), keras.callbacks.EarlyStopping(monitor="val_f2", mode="max")])
    assert info.value.code == "bad-monitor" and 'Did you mean "val_f1"?' in info.value.message


def test_a_keras_learning_rate_callback_changes_the_trainer_s_optimizer_not_a_compiled_one():
    x, y = make_data(32, features=4)
    model = make_model(features=4)
    compiled = keras.optimizers.SGD(0.7)
    model.compile(loss="mse", optimizer=compiled)
    trainer = make_trainer(model, optimizer=keras.optimizers.SGD(0.2))
    history = trainer.fit(x, y, epochs=2, verbose=0, callbacks=[keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.05 / (epoch + 1))]).history
    assert history["learning_rate"] == pytest.approx([0.05, 0.025])
    assert float(trainer.optimizer.learning_rate) == pytest.approx(0.025)
    assert model.optimizer is compiled and float(compiled.learning_rate) == pytest.approx(0.7)


@pytest.mark.parametrize("compiled", [False, True])
def test_every_keras_callback_s_on_train_end_reads_the_run_s_optimizer(compiled):
    # The first Keras callback gave the lent optimizer back in its own on_train_end: the next
    # one's self.model.optimizer was gone (AttributeError), or a compiled model's other optimizer.
    x, y = make_data(32, features=4)
    model = make_model(features=4)
    compiled_optimizer = keras.optimizers.SGD(0.7)
    if compiled:
        model.compile(loss="mse", optimizer=compiled_optimizer)

    class FinalRate(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            self.rate = float(self.model.optimizer.learning_rate)

    final = FinalRate()
    trainer = make_trainer(model, optimizer=keras.optimizers.SGD(0.2))
    trainer.fit(x, y, epochs=2, verbose=0, callbacks=[keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.05), final])
    assert final.rate == pytest.approx(0.05)
    assert model.optimizer is compiled_optimizer if compiled else not hasattr(model, "optimizer")


def test_a_dataset_that_repeats_forever_needs_steps_and_then_trains_like_model_fit():
    x, y = make_data(40, features=4)
    endless = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()  # 16, 16, 8, 16, ...
    trainer = make_trainer(make_model(features=4), seed=0)
    for run in (lambda: trainer.fit(endless, epochs=1, verbose=0),
                lambda: trainer.fit(endless, epochs=1, steps_per_epoch=2, verbose=0, validation_data=endless),
                lambda: trainer.evaluate(endless)):
        with pytest.raises(DataError) as info:
            run()
        assert info.value.code == "dataset-infinite" and "steps" in info.value.message
    assert trainer.step == 0
    # Each epoch takes 4 batches, going on where the last one stopped (crossing the data's end);
    # each validation takes the first 3.
    history = trainer.fit(endless, epochs=3, steps_per_epoch=4, validation_data=endless, validation_steps=3, verbose=0).history
    reference = make_model(features=4)
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(endless, epochs=3, steps_per_epoch=4, validation_data=endless, validation_steps=3, shuffle=False, verbose=0).history
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(history["val_loss"], expected["val_loss"], rtol=1e-5)
    assert trainer.step == 12
    assert trainer.evaluate(endless, steps=2)["loss"] == pytest.approx(reference.evaluate(endless, steps=2, verbose=0), rel=1e-5)


@pytest.mark.parametrize("kwargs", [{"epochs": 2.5}, {"epochs": -1}, {"epochs": 2, "initial_epoch": "1"}, {"epochs": 2, "steps_per_epoch": 3}])
def test_bad_epoch_arguments_are_refused(kwargs):
    x, y = make_data(40, features=4)
    with pytest.raises(ArgumentError) as info:
        make_trainer(make_model(features=4)).fit(x, y, verbose=0, **kwargs)
    assert info.value.code == "bad-argument"


def test_metrics_are_named_as_given_and_may_be_functions_or_one_name():
    def within_half(y_true, y_pred):
        return tf.cast(tf.abs(y_true - y_pred) < 0.5, tf.float32)

    keras.metrics.AUC()  # a Keras AUC made earlier in the process names the next one "auc_1"
    x, y = make_data(64, features=4)
    trainer = make_trainer(make_model(features=4), metrics=["mae", "auc", within_half])
    history = trainer.fit(x, y, epochs=1, batch_size=16, verbose=0, validation_split=0.25).history
    assert set(history) == {"loss", "mae", "auc", "within_half", "val_loss", "val_mae", "val_auc", "val_within_half"}
    predictions = trainer.predict(x[48:])
    assert history["val_within_half"][0] == pytest.approx(float(np.mean(np.abs(y[48:] - predictions) < 0.5)), rel=1e-6)
    assert set(make_trainer(make_model(features=4), metrics="accuracy").fit(x, y, epochs=1, verbose=0).history) == {"loss", "accuracy"}


def test_metric_functions_are_named_as_model_compile_names_them():
    # A lambda was logged as "<lambda>", a partial and a loss object as "metric".
    def withinHalf(y_true, y_pred):  # compile writes a camel-case name in snake case
        return tf.cast(tf.abs(y_true - y_pred) < 0.5, tf.float32)

    metrics = [lambda y_true, y_pred: tf.abs(y_true - y_pred), functools.partial(withinHalf), keras.losses.MeanAbsoluteError(), withinHalf]
    names = [m.name for m in make_trainer(metrics=metrics)._metrics]
    model = make_model()
    model.compile(loss="binary_crossentropy", metrics=metrics)
    model.evaluate(*make_data(8), verbose=0)
    assert names == ["lambda", "partial", "mean_absolute_error", "within_half"] == [m.name for m in model.metrics[1].metrics]


@pytest.mark.parametrize(("units", "one_hot"), [(3, False), (3, True), (2, False)])
def test_accuracy_with_a_loss_of_one_s_own_reads_the_labels_as_their_shapes_say(units, one_hot):
    # The loss did not say sparse: CategoricalAccuracy read class ids (val_accuracy 0.0), and a
    # 2-unit binary output failed in BinaryAccuracy's comparison.
    def my_loss(y_true, y_pred):
        fn = keras.losses.categorical_crossentropy if one_hot else keras.losses.sparse_categorical_crossentropy
        return fn(y_true, y_pred)

    x, _ = make_data(60, features=4)
    ids = np.argmax(x[:, :units], axis=1)
    y = np.eye(units, dtype="float32")[ids] if one_hot else ids
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, activation="softmax")])
    trainer = make_trainer(model, loss=my_loss, task="binary" if units == 2 else "multiclass", metrics=["accuracy"])
    history = trainer.fit(x[:40], y[:40], validation_data=(x[40:], y[40:]), epochs=2, batch_size=16, verbose=0).history
    expected = float(np.mean(np.argmax(trainer.predict(x[40:]), axis=1) == ids[40:]))
    assert history["val_accuracy"][-1] == pytest.approx(expected) and trainer.evaluate(x[40:], y[40:])["accuracy"] == pytest.approx(expected)


def test_metrics_get_one_dimensional_targets_lined_up_with_a_one_unit_output():
    # [batch] targets against a [batch, 1] output: a metric function's y_true - y_pred broadcast
    # to [batch, batch] (its mean over every pair of rows rose as the model learnt), and F1Score
    # refused them.
    def my_mae(y_true, y_pred):
        return keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)

    x, y = make_data(48, features=4)
    trainer = make_trainer(make_model(features=4), metrics=["mae", my_mae, keras.metrics.F1Score(threshold=0.5)])
    history = trainer.fit(x, y[:, 0], validation_split=0.25, epochs=2, batch_size=16, verbose=0).history
    assert history["my_mae"] == pytest.approx(history["mae"], abs=1e-6) and history["val_my_mae"] == pytest.approx(history["val_mae"], abs=1e-6)
    predicted, labels = trainer.predict(x[36:])[:, 0] > 0.5, y[36:, 0] == 1
    hits = np.sum(predicted & labels)
    assert history["val_f1_score"][-1] == pytest.approx(2 * hits / (np.sum(predicted) + np.sum(labels)), abs=1e-5)


def test_metrics_take_every_name_keras_does_and_the_arguments_a_class_needs():
    # keras.metrics.get takes class names ("F1Score") and their snake case ("mean_io_u"); a class
    # that needs an argument was read as an unknown name ("did you mean mean_absolute_error?").
    specs = ["F1Score", "RootMeanSquaredError", "binary_io_u", {"name": "mean_io_u", "num_classes": 2}, {"name": "PrecisionAtRecall", "recall": 0.5}]
    metrics = make_trainer(metrics=specs)._metrics
    assert [type(m).__name__ for m in metrics] == ["F1Score", "RootMeanSquaredError", "BinaryIoU", "MeanIoU", "PrecisionAtRecall"]
    assert [m.name for m in metrics] == ["F1Score", "RootMeanSquaredError", "binary_io_u", "mean_io_u", "PrecisionAtRecall"]
    assert metrics[3].num_classes == 2 and metrics[4].recall == 0.5
    with pytest.raises(UnknownNameError, match=r"needs num_classes: give it as a mapping, \{name: mean_io_u, num_classes: ...\}") as info:
        make_trainer(metrics=["mean_io_u"])
    assert info.value.code == "bad-metric-argument"
    with pytest.raises(UnknownNameError, match='Did you mean "mean_io_u"') as info:
        make_trainer(metrics=["mean_iou"])
    assert info.value.code == "unknown-metric"


def test_a_metric_giving_several_numbers_is_refused_before_training():
    # F1Score() scores each class; its epoch value failed in a TensorFlow reshape once the first
    # epoch had trained.
    x, y = make_data(40, features=4)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    weights = model.get_weights()
    trainer = make_trainer(model, loss="categorical_crossentropy", task="multiclass", metrics=[keras.metrics.F1Score()])
    with pytest.raises(ArgumentError, match=r'"f1_score" \(F1Score\) gives 3 numbers.*average="macro"') as info:
        trainer.fit(x, np.eye(3, dtype="float32")[(x[:, 0] > 0).astype(int)], epochs=1, verbose=0)
    assert info.value.code == "metric-not-scalar"
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))
    trainer = make_trainer(make_model(features=4), metrics=[keras.metrics.Precision(thresholds=[0.3, 0.5])])
    with pytest.raises(ArgumentError, match=r"gives 2 numbers.*one threshold") as info:
        trainer.evaluate(x, y)
    assert info.value.code == "metric-not-scalar"
    history = make_trainer(make_model(features=4), metrics=[keras.metrics.F1Score()]).fit(x, y, epochs=1, verbose=0).history
    assert isinstance(history["f1_score"][0], float)  # one output unit: one number


@pytest.mark.parametrize(("call", "code"), [
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, validation_data=(x[:, :3], y)), "shape-mismatch"),
    (lambda t, x, y: t.evaluate(x[:, :3], y), "shape-mismatch"),
    (lambda t, x, y: t.predict(x[:, :3]), "shape-mismatch"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, validation_data=x), "bad-argument"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, validation_data=(x,)), "bad-argument"),
    (lambda t, x, y: t.fit(tf.data.Dataset.from_tensor_slices(x).batch(8), epochs=1, verbose=0), "missing-targets"),
    (lambda t, x, y: t.evaluate(tf.data.Dataset.from_tensor_slices(x).batch(8)), "missing-targets"),
    (lambda t, x, y: t.predict(tf.data.Dataset.from_tensor_slices(x).batch(8).repeat()), "dataset-infinite"),
    (lambda t, x, y: t.fit(x[:0], y[:0], epochs=1, verbose=0), "empty-data"),
    (lambda t, x, y: t.fit(x[:1], y[:1], epochs=1, verbose=0, validation_split=0.5), "empty-data"),
    (lambda t, x, y: t.evaluate(x[:0], y[:0]), "empty-data"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()]), "bad-callback"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, callbacks=[keras.callbacks.LambdaCallback(on_batch_end=print)]), "bad-callback"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, callbacks=[keras.callbacks.ModelCheckpoint("m.keras", save_freq=5)]), "bad-callback"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, callbacks=[keras.callbacks.TensorBoard()]), "bad-callback"),
    (lambda t, x, y: t.fit(tf.data.Dataset.from_tensor_slices((x[:0], y[:0])).batch(8), epochs=1, verbose=0), "empty-data"),
    (lambda t, x, y: t.fit(tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: False).batch(8), epochs=1, verbose=0), "empty-data"),
    (lambda t, x, y: t.evaluate(tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: False).batch(8)), "empty-data"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, validation_data=(x, y), validation_steps=2), "bad-argument"),
    (lambda t, x, y: t.evaluate(x, y, steps=2), "bad-argument"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, validation_split="0.2"), "bad-argument"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, callbacks=EarlyStopping(monitor="loss")), "bad-argument"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, validation_data=(x, None)), "missing-targets"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, sample_weight=-np.ones(len(x))), "sample-weight-negative"),
    # Validation weights all 0: val_loss read a perfect 0.0 (as in Keras) that early stopping believed.
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, validation_data=(x, y, np.zeros(len(x)))), "sample-weight-all-zero"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, validation_data=(x, np.ones((len(x), 2)))), "shape-mismatch"),
    # Validation weights NaN, negative or one per output: val_loss NaN (or below 0) without a word,
    # or TensorFlow's "Dimensions must be equal" from the first validation step.
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, validation_data=(x, y, np.where(np.arange(len(x)) == 3, np.nan, 1.0))), "non-finite-data"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, validation_data=(x, y, -np.ones(len(x)))), "sample-weight-negative"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, validation_data=(x, y, np.ones((len(x), 2)))), "shape-mismatch"),
    # ... and those a validation dataset carries, in its sampled first batches.
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, validation_data=tf.data.Dataset.from_tensor_slices(
        (x, y, np.where(np.arange(len(x)) == 3, np.nan, 1.0))).batch(8)), "non-finite-data"),
    (lambda t, x, y: t.fit(x, y, epochs=1, verbose=0, validation_data=tf.data.Dataset.from_tensor_slices((x, y, -np.ones(len(x)))).batch(8)),
     "sample-weight-negative"),
    # evaluate checks what fit checks where it holds for data to evaluate (it returned a loss for each).
    (lambda t, x, y: t.evaluate(np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), y), "non-finite-data"),
    (lambda t, x, y: t.evaluate(x, 2 * y), "label-format"),
    (lambda t, x, y: t.evaluate(x, y, sample_weight=np.zeros(len(x))), "sample-weight-all-zero"),
    (lambda t, x, y: t.evaluate(x, np.ones((len(x), 2))), "shape-mismatch"),
    (lambda t, x, y: t.evaluate(tf.data.Dataset.from_tensor_slices((x, 2 * y)).batch(8)), "label-format"),
    (lambda t, x, y: t.fit(x, {"zz": y}, epochs=1, verbose=0), "shape-mismatch"),  # the loss compared a dict with the output
    # Arguments that were ignored: an empty History, a whole prediction, a y beside a dataset.
    (lambda t, x, y: t.fit(x, y, epochs=2, initial_epoch=5, verbose=0), "bad-argument"),
    (lambda t, x, y: t.fit(x.astype(complex) * (1 + 5j), y, epochs=1, verbose=0), "unsupported-input"),  # trained on the real part
    # Raw TensorFlow errors from the first batch: a matmul of the wrong width, a cast of text.
    (lambda t, x, y: t.predict(tf.data.Dataset.from_tensor_slices(x[:, :3]).batch(8)), "shape-mismatch"),
    (lambda t, x, y: t.predict(b for b in [x[:8, :3]]), "shape-mismatch"),
    (lambda t, x, y: t.fit(tf.data.Dataset.from_tensor_slices((x.astype(str), y)).batch(8), epochs=1, verbose=0), "unsupported-input"),
    (lambda t, x, y: t.predict(x, steps=2), "bad-argument"),
    (lambda t, x, y: t.predict(tf.data.Dataset.from_tensor_slices(x).batch(8), steps=-5), "bad-argument"),
    (lambda t, x, y: t.evaluate(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), y), "bad-argument"),
])
def test_user_mistakes_in_the_data_or_arguments_are_trainkit_errors_before_any_step(call, code):
    # Each raised a raw TensorFlow, numpy or Python error (some after a whole epoch), or trained
    # on nothing and reported a loss of 0.0.
    x, y = make_data(40, features=4)
    trainer = make_trainer(make_model(features=4))
    with pytest.raises((DataError, ArgumentError)) as info:
        call(trainer, x, y)
    assert info.value.code == code
    assert trainer.step == 0


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"jit_compile": "false"}, 'jit_compile must be True, False or "auto"'),  # a true string: XLA was on
    ({"statistics": "no"}, "statistics must be True or False"),
    ({"seed": "abc"}, "seed must be a whole number"),
    ({"seed": 2**70}, "seed must be a whole number from 0 to"),
    ({"seed": 1.5}, "seed must be a whole number"),
    ({"keep_checkpoints": 0}, "keep_checkpoints must be a positive int"),
    ({"scalars_every": 0}, "scalars_every must be a positive int"),
    ({"logdir": 5}, "logdir must be a directory path"),
    ({"num_classes": 0}, "num_classes must be a whole number >= 2"),
    ({"diagnose": "yes"}, "diagnose must be True, False or a DiagnosisCallback"),
    ({"strategy": "mirrored"}, "strategy must be a tf.distribute.Strategy"),
    ({"hparams": [1]}, "hparams must be a mapping"),
    ({"hparams": {"layers": [1, 2]}}, "values must be str, float, int or bool"),
])
def test_constructor_arguments_of_the_wrong_kind_are_refused_before_anything_is_built(kwargs, words):
    with pytest.raises(ArgumentError) as info:
        make_trainer(**kwargs)
    assert info.value.code == "bad-argument" and words in info.value.message


def test_numpy_whole_numbers_are_whole_numbers():
    # np.int64 seeds and class counts, as numpy hands them out, are taken as ints.
    trainer = make_trainer(seed=np.int64(7), num_classes=np.int32(2), optimizer={"name": "adam", "clipnorm": np.int64(1)})
    assert trainer.seed == 7 and type(trainer.seed) is int and trainer.optimizer.clipnorm == 1.0
    assert EarlyStopping(monitor="loss", patience=np.int64(3), min_delta=np.float32(0.01)).patience == 3


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"mode": "mn"}, 'Did you mean "min"?'),  # it meant "max": the run stopped as the loss fell
    ({"patience": "x"}, "patience must be a whole number"),
    ({"min_delta": -0.1}, "min_delta must be a number >= 0"),
])
def test_early_stopping_arguments_are_checked(kwargs, words):
    with pytest.raises(ArgumentError) as info:
        EarlyStopping(monitor="loss", **kwargs)
    assert words in info.value.message


def test_a_model_that_is_not_a_keras_model_is_refused_when_the_trainer_is_built():
    # It was accepted, and fit failed with AttributeError: 'str' object has no attribute 'built'.
    with pytest.raises(ArgumentError) as info:
        Trainer("model", loss="binary_crossentropy", optimizer="adam", task="binary")
    assert info.value.code == "bad-argument" and "got a str" in info.value.message


@pytest.mark.parametrize(("kwargs", "code"), [({"loss": None}, "unknown-loss"), ({"optimizer": keras.optimizers.Adam}, "unknown-optimizer")])
def test_a_loss_or_optimizer_of_the_wrong_kind_is_named(kwargs, code):
    with pytest.raises(ValueError) as info:
        make_trainer(**kwargs)
    assert info.value.code == code


def test_an_optimizer_mapping_without_a_name_says_what_to_add():
    # "[unknown-optimizer] A optimizer given as a mapping needs a 'name' key, got {'learning_rate': 0.01}."
    with pytest.raises(ValueError) as info:
        make_trainer(optimizer={"learning_rate": 0.01})
    assert info.value.code == "unknown-optimizer"
    assert info.value.message == ("An optimizer given as a mapping needs a 'name' key with the optimizer's name, such as "
                                  "{'name': 'adam', 'learning_rate': 0.01}; got {'learning_rate': 0.01}.")


def test_predict_of_no_rows_keeps_the_output_shape():
    x, _ = make_data(10, features=4)
    assert make_trainer(make_model(features=4)).predict(x[:0]).shape == (0, 1)


def test_predict_of_a_dataset_of_no_batches_keeps_the_outputs_structure_and_shapes():
    """As arrays of no rows do: it gave one array of shape (0,) whatever the outputs."""
    x, _ = make_data(10, features=4)
    inputs = keras.Input((4,), name="a")
    model = keras.Model(inputs, {"cls": keras.layers.Dense(1, activation="sigmoid", name="cls")(inputs), "reg": keras.layers.Dense(3, name="reg")(inputs)})
    trainer = make_trainer(model, loss={"cls": "binary_crossentropy", "reg": "mse"}, task={"cls": "binary", "reg": "regression"})
    empty = tf.data.Dataset.from_tensor_slices(x[:0]).batch(4)
    for predicted in (trainer.predict(empty), trainer.predict(x[:0])):
        assert {name: value.shape for name, value in predicted.items()} == {"cls": (0, 1), "reg": (0, 3)}
        assert all(value.dtype == np.float32 for value in predicted.values())


def test_an_early_stopping_monitor_the_logs_never_hold_is_refused_before_the_first_epoch():
    x, y = make_data(40, features=4)
    trainer = make_trainer(make_model(features=4), metrics=["accuracy"])
    with pytest.raises(ArgumentError) as info:
        trainer.fit(x, y, epochs=2, verbose=0, callbacks=[EarlyStopping(monitor="val_acuracy")])
    assert info.value.code == "bad-monitor" and "['accuracy', 'loss']" in info.value.message
    assert trainer.step == 0
    assert trainer.epoch_log_names(validation=True) == ["loss", "accuracy", "val_loss", "val_accuracy"]


@pytest.mark.parametrize("form", ["numpy", "dataset", "one-hot", "float-keys", "one-hot-of-unknown-width"])
def test_class_weight_weights_the_training_rows_as_model_fit_does(form):
    x, y = make_data(70, features=4)
    class_weight = {0: 0.5, 1: 3.0}
    if form == "float-keys":  # dict(zip(np.unique(y), ...)) of float labels: refused, where model.fit takes it
        class_weight = dict(zip(np.unique(y), [0.5, 3.0], strict=True))
    one_hot = form.startswith("one-hot")
    if one_hot:
        y = keras.utils.to_categorical(y[:, 0], 2)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2 if one_hot else 1, activation="softmax" if one_hot else "sigmoid")])
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    loss = "categorical_crossentropy" if one_hot else "binary_crossentropy"
    trainer = Trainer(model, loss=loss, optimizer=keras.optimizers.SGD(0.1), task="multiclass" if one_hot else "binary", seed=0)
    reference.compile(loss=loss, optimizer=keras.optimizers.SGD(0.1))
    if form == "one-hot-of-unknown-width":
        # Labels of shape (None, None): each one-hot row was read as 2 class ids, so 2 weights a
        # row, refused as shape-mismatch ("sample_weight has 140" rows) for weights never given.
        def batches():
            yield from ((x[i : i + 32], y[i : i + 32]) for i in range(0, len(x), 32))

        data = tf.data.Dataset.from_generator(batches, output_signature=(tf.TensorSpec((None, 4), tf.float32), tf.TensorSpec((None, None), tf.float32)))
        got = trainer.fit(data, epochs=2, verbose=0, class_weight=class_weight).history
        expected = reference.fit(data, epochs=2, verbose=0, class_weight=class_weight, shuffle=False).history
    elif form == "dataset":
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
        got = trainer.fit(data, epochs=2, verbose=0, class_weight=class_weight).history
        expected = reference.fit(data, epochs=2, verbose=0, class_weight=class_weight, shuffle=False).history
    else:
        got = trainer.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0, class_weight=class_weight, validation_split=0.2).history
        expected = reference.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0, class_weight=class_weight, validation_split=0.2).history
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)


def test_class_weight_with_sample_weight_weighs_rows_and_training_metrics_by_their_product():
    # As README says: model.fit refuses the two together; its weighted_metrics with the product
    # of the weights are trainkit's numbers, and the validation metrics are the rows' own.
    x, y = make_data(80, features=4)
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(y)).astype("float32")
    class_weight = {0: 1.0, 1: 4.0}
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), weighted_metrics=["accuracy", keras.metrics.Precision(name="precision")])
    product = w[:60] * np.where(y[:60, 0] == 1, 4.0, 1.0).astype("float32")
    expected = reference.fit(x[:60], y[:60], sample_weight=product, validation_data=(x[60:], y[60:]), epochs=2, batch_size=16, shuffle=False, verbose=0).history
    trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), task="binary", seed=0,
                      metrics=["accuracy", keras.metrics.Precision(name="precision")])
    got = trainer.fit(x[:60], y[:60], sample_weight=w[:60], class_weight=class_weight, validation_data=(x[60:], y[60:]), epochs=2, batch_size=16,
                      shuffle=False, verbose=0).history
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)


@pytest.mark.parametrize("mask_zero", [False, True])
def test_one_weight_a_row_weighs_each_timestep_of_a_sequence_output(mask_zero):
    # Per-timestep targets (n, T): Keras multiplied the [batch, T] losses by the [batch] weights
    # and fit failed while tracing ("Dimensions must be equal, but are 32 and 6"), though the
    # checks take (n,) weights and refuse (n, T) ones. Each row's weight now weighs its timesteps:
    # model.fit's numbers with that weight repeated along the timesteps.
    rng = np.random.default_rng(0)
    x = rng.integers(1, 10, size=(48, 6))
    x[::3, 4:] = 0  # padding, masked with mask_zero
    y, weights = x % 3, rng.uniform(0.5, 2.0, len(x)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(10, 4, mask_zero=mask_zero),
                              keras.layers.GRU(4, return_sequences=True), keras.layers.Dense(3, activation="softmax")])
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    reference.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.SGD(0.1), weighted_metrics=["accuracy"])
    expected = reference.fit(x[:32], y[:32], sample_weight=np.repeat(weights[:32, None], 6, axis=1), validation_data=(x[32:], y[32:], np.repeat(weights[32:, None], 6, axis=1)),
                             epochs=2, batch_size=16, shuffle=False, verbose=0).history
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.SGD(0.1), task="multiclass", metrics=["accuracy"], seed=0)
    got = trainer.fit(x[:32], y[:32], sample_weight=weights[:32], validation_data=(x[32:], y[32:], weights[32:]), epochs=2, batch_size=16, shuffle=False, verbose=0).history
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)


@pytest.mark.parametrize("class_weight", [{0: 1.0, "1": 2.0}, {0: -1.0}, {}, [1.0, 2.0], {0: 1.0, 0.5: 2.0}, {0: 1.0, True: 2.0}])
def test_a_bad_class_weight_is_refused(class_weight):
    x, y = make_data(40, features=4)
    with pytest.raises(ArgumentError) as info:
        make_trainer(make_model(features=4)).fit(x, y, epochs=1, verbose=0, class_weight=class_weight)
    assert info.value.code == "bad-argument" and "class_weight" in info.value.message


@pytest.mark.parametrize("form", ["numpy", "dataset"])
def test_class_weight_for_a_model_predicting_per_timestep_is_refused(form):
    # Targets (n, T) of class ids: each row's T ids were read as a one-hot row, its argmax (a
    # position) taken as its class, and the rows weighed by that in silence (or the step failed).
    x = np.random.default_rng(0).integers(1, 10, size=(32, 6))
    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(10, 4),
                              keras.layers.GRU(4, return_sequences=True), keras.layers.Dense(3, activation="softmax")])
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="adam", task="multiclass", seed=0)
    data = (tf.data.Dataset.from_tensor_slices((x, x % 3)).batch(16),) if form == "dataset" else (x, x % 3)
    with pytest.raises(ArgumentError) as info:
        trainer.fit(*data, epochs=1, verbose=0, class_weight={0: 1.0, 1: 2.0, 2: 3.0})
    assert info.value.code == "bad-argument" and "predicts per position (output shape (None, 6, 3))" in info.value.message
    assert trainer.step == 0


@pytest.mark.parametrize(("class_weight", "code", "says"), [
    ({0: 0.0, 1: 0.0}, "class-weight-all-zero", "every class of the training labels {0, 1} weight 0"),
    ({0: 1.0, 1: 2.0, 5: 1.0}, "class-weight-unknown-class", "class 5, which is not among the training labels {0, 1}"),
])
def test_a_class_weight_that_cannot_mean_what_it_says_is_refused_before_training(class_weight, code, says):
    # All zero trained to loss 0 (then blamed on the data); a class no label holds passed silently.
    x, y = make_data(40, features=4)
    trainer = make_trainer(make_model(features=4))
    with pytest.raises(ArgumentError) as info:
        trainer.fit(x, y, epochs=1, verbose=0, class_weight=class_weight, validation_split=0.25)
    assert info.value.code == code and says in info.value.message
    assert trainer.step == 0


def test_a_class_weight_for_a_class_only_the_validation_rows_hold_is_no_typo():
    # Balanced weights over all the labels (sklearn's compute_class_weight) name every class; with
    # many rare classes validation_split leaves some out of the training rows, and fit refused
    # ("class_weight gives a weight to classes 154, 197, which are not among the training labels").
    x, y = make_data(40, features=4)
    y = y.copy()
    y[-2:] = 2  # class 2 only in the validation rows validation_split=0.25 holds out
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="adam", task="multiclass", seed=0)
    trainer.fit(x, y, epochs=1, verbose=0, class_weight={0: 1.0, 1: 1.0, 2: 5.0}, validation_split=0.25)
    assert trainer.step > 0
    trainer.fit(x[:30], y[:30], epochs=1, verbose=0, class_weight={0: 1.0, 1: 1.0, 2: 5.0}, validation_data=(x[30:], y[30:]))
    # A class neither split holds is still refused.
    with pytest.raises(ArgumentError) as info:
        trainer.fit(x, y, epochs=1, verbose=0, class_weight={0: 1.0, 1: 1.0, 3: 5.0}, validation_split=0.25)
    assert info.value.code == "class-weight-unknown-class"
    assert "class 3, which is not among the training labels {0, 1} nor the validation labels" in info.value.message


def test_a_zero_weight_for_some_classes_still_trains_the_others():
    x, y = make_data(40, features=4)
    trainer = make_trainer(make_model(features=4))
    before = [w.copy() for w in trainer.model.get_weights()]
    loss = trainer.fit(x, y, epochs=1, verbose=0, class_weight={0: 0.0}).history["loss"][0]
    assert trainer.step > 0 and np.isfinite(loss) and loss > 0  # the class-1 rows still weigh in
    assert not all(np.array_equal(b, a) for b, a in zip(before, trainer.model.get_weights(), strict=True))


def test_fit_checks_its_batch_size_against_the_training_rows_left_by_the_split():
    x, y = make_data(100, features=4)
    trainer = make_trainer(make_model(features=4))
    trainer.fit(x, y, epochs=1, verbose=0, batch_size=160, validation_split=0.2)
    assert [f.code for f in trainer.findings if f.code == "batch-larger-than-data"] == ["batch-larger-than-data"]
    assert "80 training rows" in next(f.message for f in trainer.findings if f.code == "batch-larger-than-data")


def test_a_second_fit_replaces_the_data_findings_of_the_first():
    # Each fit appended its data checks' findings: three fits listed batch-larger-than-data three
    # times, and a fit on data that no longer has the problem still listed it.
    x, y = make_data(100, features=4)
    trainer = make_trainer(make_model(features=4), diagnose=False)
    for _ in range(3):
        trainer.fit(x, y, epochs=1, verbose=0, batch_size=200)
    assert [f.code for f in trainer.findings] == ["batch-larger-than-data"]
    trainer.fit(x, y, epochs=1, verbose=0, batch_size=32)
    assert trainer.findings == []


def test_targets_beside_a_dataset_are_refused():
    x, y = make_data(40, features=4)
    with pytest.raises(ArgumentError, match="do not pass them"):
        make_trainer(make_model(features=4)).fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), y, epochs=1, verbose=0)


def test_a_fit_with_steps_per_epoch_resumes_where_its_dataset_iterator_was(tmp_path):
    # Each epoch takes 3 batches of a 5-batch endless dataset: the resumed fit must start its
    # iterator 6 batches in, as the uninterrupted one had it.
    x, y = make_data(80, features=4)
    endless = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()

    def trainer(logdir):
        return make_trainer(make_model(features=4), seed=0, logdir=logdir, checkpoint_every=1, diagnose=False)

    for first in (0, 2):  # a fit started at initial_epoch 2 also starts its iterator at batch 0
        whole = trainer(tmp_path / f"whole{first}").fit(endless, epochs=first + 3, steps_per_epoch=3, verbose=0, initial_epoch=first).history
        trainer(tmp_path / f"parts{first}").fit(endless, epochs=first + 2, steps_per_epoch=3, verbose=0, initial_epoch=first)
        history = trainer(tmp_path / f"parts{first}").fit(endless, epochs=first + 3, steps_per_epoch=3, verbose=0, resume=True).history
        np.testing.assert_allclose(history["loss"], whole["loss"], rtol=1e-6)


@pytest.mark.parametrize("known_size", [True, False], ids=["cardinality", "unknown-size"])
def test_a_finite_dataset_with_steps_per_epoch_starts_again_when_it_ends(tmp_path, known_size):
    # 5 batches, 2 an epoch: epochs of 2, 2 and 1 batches, then from the start again (model.fit
    # does the same). The third epoch's iterator used to skip past the end: "epoch 4 had no batches".
    x, y = make_data(80, features=4)
    finite = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    if not known_size:
        finite = finite.filter(lambda *_: True)  # cardinality unknown

    class Steps(Callback):
        def __init__(self):
            self.per_epoch = []

        def on_epoch_begin(self, epoch, logs=None):
            self.per_epoch.append(0)

        def on_execution_end(self, first_step, outputs):
            self.per_epoch[-1] += outputs.steps

    steps = Steps()
    trainer = make_trainer(make_model(features=4), seed=0, logdir=tmp_path / "whole", checkpoint_every=1, diagnose=False)
    whole = trainer.fit(finite, epochs=6, steps_per_epoch=2, verbose=0, callbacks=[steps]).history
    assert steps.per_epoch == [2, 2, 1, 2, 2, 1]
    if known_size:  # a resume knows where the pass it stopped in was
        make_trainer(make_model(features=4), seed=0, logdir=tmp_path / "parts", checkpoint_every=1, diagnose=False).fit(finite, epochs=4, steps_per_epoch=2, verbose=0)
        resumed = make_trainer(make_model(features=4), seed=0, logdir=tmp_path / "parts", checkpoint_every=1, diagnose=False)
        np.testing.assert_allclose(resumed.fit(finite, epochs=6, steps_per_epoch=2, verbose=0, resume=True).history["loss"], whole["loss"], rtol=1e-6)



def test_a_dataset_of_unknown_size_ending_with_an_epoch_starts_again_for_the_next():
    # 4 batches of unknown size, 2 an epoch: the third epoch's iterator had nothing left, and
    # fit raised "Epoch 3 had no batches: the training dataset is empty" (model.fit logs that
    # epoch's loss as 0.0). It starts the dataset again, as the known-size dataset's does.
    x, y = make_data(64, features=4)
    known = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    unknown = known.filter(lambda *_: True)
    histories = [make_trainer(make_model(features=4), seed=0, diagnose=False).fit(data, epochs=4, steps_per_epoch=2, verbose=0).history["loss"]
                 for data in (known, unknown)]
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-6)
    empty = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda *_: False).batch(16)
    with pytest.raises(DataError, match="had no batches") as info:  # an empty one is still refused
        make_trainer(make_model(features=4), seed=0, diagnose=False).fit(empty, epochs=2, steps_per_epoch=2, verbose=0, check_data=False)
    assert info.value.code == "empty-data"


def reshuffling_data_and_fit_loss() -> tuple[Callable[[], tf.data.Dataset], float]:
    """A maker of a seeded reshuffling dataset (each a seed generator of its own, at its first
    pass), and model.fit's first-epoch loss on it."""
    x, y = make_data(96, features=4)

    def data() -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(96, seed=1).batch(16)

    model = make_model(features=4)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    return data, model.fit(data(), epochs=1, verbose=0).history["loss"][0]


@pytest.mark.parametrize("sampled", [True, False], ids=["checked", "unsampled"])
def test_a_reshuffling_dataset_s_first_epoch_is_model_fit_s_only_when_nothing_samples_it(sampled):
    # The README's claim: the data checks' sample spends the first pass of a seeded reshuffling
    # dataset, so the first epoch is the second order; unsampled, it is model.fit's first.
    data, expected = reshuffling_data_and_fit_loss()
    trainer = make_trainer(make_model(features=4), seed=0, diagnose=sampled)
    loss = trainer.fit(data(), epochs=1, verbose=0, check_data=sampled).history["loss"][0]
    assert (abs(loss - expected) < 1e-6) is not sampled


@pytest.mark.parametrize("histograms_every", ["epoch", None], ids=["histograms", "none"])
def test_a_reshuffling_dataset_s_first_epoch_is_model_fit_s_only_without_a_histograms_probe_batch(tmp_path, histograms_every):
    # The README's claim, with a logdir: the histograms' probe batch is the dataset's first, read
    # in a pass of its own, so even with the checks and the diagnosis off it spends the first order.
    data, expected = reshuffling_data_and_fit_loss()
    trainer = make_trainer(make_model(features=4), seed=0, diagnose=False, logdir=tmp_path / "run", histograms_every=histograms_every,
                           checkpoint_every=0)
    loss = trainer.fit(data(), epochs=1, verbose=0, check_data=False).history["loss"][0]
    assert (abs(loss - expected) < 1e-6) is (histograms_every is None)


def test_metrics_of_one_name_are_numbered_and_a_step_that_feeds_no_metric_logs_none():
    x, y = make_data(40, features=4)
    history = make_trainer(make_model(features=4), metrics=["auc", {"name": "auc", "curve": "PR"}]).fit(x, y, epochs=1, verbose=0).history
    assert set(history) == {"loss", "auc", "auc_1"} and history["auc"] != history["auc_1"]

    trainer = KerasStyle(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", metrics=["accuracy"], seed=0)
    with pytest.raises(ArgumentError) as info:  # before the first epoch, not after it
        trainer.fit(x, y, epochs=2, verbose=0, callbacks=[EarlyStopping(monitor="accuracy")])
    assert info.value.code == "bad-monitor" and trainer.step == 0


def test_a_model_with_data_dependent_penalties_trains_as_with_model_fit():
    # The diagnosis read model.losses eagerly: an activity regulariser's tensor of the traced
    # step could not be converted, and fit stopped before its first epoch.
    x, y = make_data(40, features=4)

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="relu", activity_regularizer=keras.regularizers.l1(0.01)),
                                 keras.layers.Dense(1, activation="sigmoid")])

    history = make_trainer(build()).fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    reference = build()
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)


class PerRowPenalty(keras.layers.Layer):
    """An add_loss of one value per row, which Keras's compute_loss sums."""

    def call(self, x):
        self.add_loss(0.01 * keras.ops.sum(keras.ops.square(x), axis=-1))
        return x


def test_penalties_of_one_value_per_row_are_summed_as_with_model_fit():
    # tf.add_n(model.losses) made the loss a vector: refused as loss-not-scalar ("compute_loss
    # must return one number"), where model.fit sums each penalty.
    x, y = make_data(40, features=4)

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="relu"), PerRowPenalty(),
                                 keras.layers.Dense(1, activation="sigmoid")])

    history = make_trainer(build()).fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, validation_split=0.2).history
    reference = build()
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, validation_split=0.2).history
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(history["val_loss"], expected["val_loss"], rtol=1e-5)


def test_a_float16_layers_activity_penalty_is_added_to_the_float32_loss():
    # Under mixed_float16 an activity regulariser's penalty is float16: adding it to the float32
    # loss raised a TypeError (AddV2) when the step was traced.
    x, y = make_data(40, features=4)
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="relu", activity_regularizer=keras.regularizers.L2(0.01)),
                                  keras.layers.Dense(1, activation="sigmoid", dtype="float32")])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    history = make_trainer(model, diagnose=False).fit(x, y, epochs=2, batch_size=8, verbose=0).history
    assert len(history["loss"]) == 2 and all(math.isfinite(v) for v in history["loss"])


@pytest.mark.parametrize("x", [np.float32(1.0), {}], ids=["scalar", "empty-dict"])
def test_inputs_without_rows_are_a_data_error(x):
    # A scalar x (or one holding no arrays) raised IndexError reading its first dimension.
    trainer = make_trainer(make_model(features=4), seed=0, diagnose=False)
    with pytest.raises(DataError) as info:
        trainer.fit(x, np.zeros(3), epochs=1, verbose=0, check_data=False)
    assert info.value.code == "shape-mismatch"


@pytest.mark.parametrize("statistics", [True, False])
def test_a_loss_scale_optimizer_trains_as_its_inner_optimizer(statistics):
    # The step differentiated the loss unscaled, and the LossScaleOptimizer divided the gradients
    # by its scale (32768): the model barely moved, and nothing said so.
    x, y = make_data(96, features=4)

    def fit(optimizer):
        trainer = make_trainer(make_model(features=4), optimizer=optimizer, statistics=statistics, diagnose=False)
        history = trainer.fit(x, y, epochs=3, batch_size=32, verbose=0, shuffle=False).history
        return history["loss"], [v for _, name, v in trainer.step_table() if name == "grad_norm/global"]

    plain = fit(keras.optimizers.SGD(0.1))
    scaled = fit(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)))
    np.testing.assert_allclose(scaled[0], plain[0], rtol=1e-6)  # a power-of-two scale is exact
    np.testing.assert_allclose(scaled[1], plain[1], rtol=1e-6)  # statistics of the loss's gradient
    assert len(plain[1]) == (9 if statistics else 0)


def test_a_second_nan_stop_of_one_trainer_names_its_own_step():
    # Without the diagnosis, the nan-loss finding of the first fit's NaN kept the second fit's
    # from being recorded: trainer.findings named the first fit's step.
    x, y = make_data(96, features=4)
    y[40] = np.nan  # the second step of each fit (32 rows a step, no shuffle)
    trainer = make_trainer(make_model(features=4), diagnose=False)
    for bad_step in (1, 3):  # the global step goes on from the first fit's
        trainer.fit(x, y, epochs=1, verbose=0, shuffle=False, check_data=False)
        assert trainer.stop_reason == "nan-loss"
        assert [f.step for f in trainer.findings if f.code == "nan-loss"] == [bad_step]


@pytest.mark.parametrize(("logdir", "first_fit", "weights", "says"), [
    (False, True, "nonfinite", "a trainer keeps checkpoints with a logdir and checkpoint_every other than 0"),
    (True, True, "checkpoint", "the weights of the last checkpoint were put back"),
    # With a logdir (the CLI always has one) it said "pass a logdir": none had been written yet.
    (True, False, "nonfinite-early", "no checkpoint had been written yet"),
])
def test_a_nan_stop_after_a_step_of_its_own_says_what_the_weights_are(tmp_path, logdir, first_fit, weights, says):
    # The nan-loss finding said "its update was skipped, so the weights are those of the step
    # before" while a Keras-style step had applied it: every weight was NaN.
    x, y = make_data(96, features=4)
    y[70] = np.nan  # in the second fit's third step (32 rows a step, no shuffle)
    trainer = KerasStyle(make_model(features=4), loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), task="binary",
                         seed=0, jit_compile=False, logdir=tmp_path if logdir else None, checkpoint_every=1)
    if first_fit:
        trainer.fit(x[:64], y[:64], epochs=1, verbose=0, shuffle=False)  # a checkpoint (with a logdir)
    trainer.fit(x, y, epochs=2, verbose=0, shuffle=False, initial_epoch=1, check_data=False)
    assert trainer.stop_reason == "nan-loss" and trainer.nan_weights == weights
    finite = all(np.isfinite(w).all() for w in trainer.model.get_weights())
    assert finite == (weights == "checkpoint")
    (finding,) = [f for f in trainer.findings if f.code == "nan-loss"]
    assert says in finding.message + " " + finding.advice and "update was skipped" not in finding.message


@pytest.mark.parametrize("verbose", ["silent", -1, 3, 1.5, "1"])
def test_a_verbose_model_fit_does_not_know_is_refused(verbose):
    # "silent" and -1 were true: they printed every epoch.
    x, y = make_data(32, features=4)
    with pytest.raises(ArgumentError) as info:
        make_trainer(make_model(features=4)).fit(x, y, epochs=1, verbose=verbose)
    assert info.value.code == "bad-argument" and "verbose must be 0" in info.value.message


def test_a_fit_that_shows_its_progress_prints_the_checks_warnings(capsys):
    # They were only in trainer.findings: a notebook's fit printed "Fix what unscaled-inputs says
    # first" (a live diagnosis line) about a finding it never showed.
    x, y = make_data(64, features=4)
    x = x * 300 + 1000
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    trainer = make_trainer(model, loss="mse", task="regression", diagnose=False)
    trainer.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().err == ""
    trainer.fit(x, y, epochs=1, verbose=2)
    err = capsys.readouterr().err
    assert "check: WARNING [unscaled-inputs]" in err and "check: WARNING [linear-hidden-layers]" in err
    trainer.fit(x, y, epochs=1, verbose=2)  # the data's again, the model's once
    err = capsys.readouterr().err
    assert "[unscaled-inputs]" in err and "[linear-hidden-layers]" not in err
    assert {"unscaled-inputs", "linear-hidden-layers"} <= {f.code for f in trainer.findings}


def test_verbose_2_prints_the_epoch_lines_without_a_bar(capsys):
    import io

    from rich.console import Console

    from trainkit.writers.console import ConsoleLogger

    x, y = make_data(64, features=4)
    trainer = make_trainer(make_model(features=4), diagnose=False)
    trainer.fit(x, y, epochs=2, verbose=2)
    assert capsys.readouterr().err.count("epoch ") == 2
    assert trainer.history.params["verbose"] == 2
    trainer.fit(x, y, epochs=1, verbose="auto")  # model.fit's default: 1
    assert trainer.history.params["verbose"] == 1
    terminal = io.StringIO()
    logger = ConsoleLogger(Console(file=terminal, force_terminal=True, width=100), progress_bar=False)
    logger.set_trainer(trainer)
    logger.on_epoch_begin(0)
    assert logger._progress is None  # a terminal, but no bar



@pytest.mark.parametrize("verbose", [1, 2])
def test_a_terminal_is_shown_a_spinner_while_fit_reads_and_checks_the_data(monkeypatch, verbose):
    # Converting 2.4 GB of rows and checking them took ~20 s before the first epoch's bar, with
    # nothing on the screen. A bar's console (verbose=1) shows a transient spinner meanwhile.
    import io

    from rich.console import Console

    import trainkit.trainer
    from trainkit.writers.console import ConsoleLogger

    terminal = io.StringIO()
    spinning: list[bool] = []

    class TerminalLogger(ConsoleLogger):
        def __init__(self, progress_bar: bool = True) -> None:
            super().__init__(Console(file=terminal, force_terminal=True, width=100, highlight=False), progress_bar)

    trainer = make_trainer(make_model(features=4), diagnose=False)
    checks = trainer._check_sources

    def checked(*args, **kwargs):
        spinning.append(any("preparing" in str(made.status) and made._live.is_started for made in TerminalLogger.consoles))
        return checks(*args, **kwargs)

    TerminalLogger.consoles = []
    original_status = Console.status

    def status(console, *args, **kwargs):
        made = original_status(console, *args, **kwargs)
        TerminalLogger.consoles.append(made)
        return made

    monkeypatch.setattr(Console, "status", status)
    monkeypatch.setattr(trainkit.trainer, "ConsoleLogger", TerminalLogger)
    monkeypatch.setattr(trainer, "_check_sources", checked)
    x, y = make_data(64, features=4)
    trainer.fit(x, y, epochs=1, verbose=verbose)
    assert spinning == [verbose == 1]  # the bar's console spins; the epoch lines' alone do not
    assert "epoch 1/1" in terminal.getvalue()

@pytest.mark.parametrize("widgets", [True, False])
def test_a_notebook_shows_the_bar_in_an_output_widget_when_it_has_ipywidgets(monkeypatch, widgets):
    # In Jupyter the console is no terminal: verbose=1 showed the epoch lines and never a bar.
    # rich draws one into an ipywidgets Output there; without ipywidgets it would warn at every
    # refresh ('install "ipywidgets"'), so the epoch lines stay alone.
    import importlib.machinery
    import io
    import sys
    import types
    import warnings

    from rich.console import Console

    from trainkit.writers.console import ConsoleLogger

    shown: list = []
    widgets_made: list = []

    class Output:
        def __init__(self) -> None:
            self.closed = False
            widgets_made.append(self)

        def __enter__(self) -> Output:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def clear_output(self, wait: bool = False) -> None:
            pass

        def close(self) -> None:
            self.closed = True

    display_module = types.ModuleType("IPython.display")
    display_module.display = shown.append
    monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
    monkeypatch.setitem(sys.modules, "IPython.display", display_module)
    if widgets:
        widget_module = types.ModuleType("ipywidgets")
        widget_module.__spec__ = importlib.machinery.ModuleSpec("ipywidgets", None)
        widget_module.Output = Output
        monkeypatch.setitem(sys.modules, "ipywidgets", widget_module)
    else:
        monkeypatch.delitem(sys.modules, "ipywidgets", raising=False)
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ipywidgets" else importlib.machinery.PathFinder.find_spec(name))
    x, y = make_data(64, features=4)
    logger = ConsoleLogger(Console(file=io.StringIO(), force_jupyter=True, width=100))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rich's 'install "ipywidgets"' warning fails the test
        make_trainer(make_model(features=4), diagnose=False).fit(x, y, epochs=2, verbose=0, callbacks=[logger])
    assert len(widgets_made) == (2 if widgets else 0)  # one bar an epoch
    assert all(widget.closed for widget in widgets_made)  # transient: gone at the epoch's end
    assert sum("epoch " in str(getattr(item, "text", "")) for item in shown) >= 2  # the epoch lines


def test_a_new_fit_drops_the_diagnosis_of_the_last_one():
    # The first fit's dead-relu stayed in trainer.findings after a second fit whose units lived.
    x, y = make_data(128, features=4)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", bias_initializer=keras.initializers.Constant(-50.0)),
                              keras.layers.Dense(1, activation="sigmoid")])
    trainer = make_trainer(model)
    trainer.fit(x, y, epochs=2, verbose=0)
    assert "dead-relu" in {f.code for f in trainer.findings}
    model.layers[0].bias.assign(np.zeros(8, "float32"))
    trainer.fit(x, y, epochs=2, verbose=0)
    assert "dead-relu" not in {f.code for f in trainer.findings}


def test_callbacks_none_is_no_callbacks_as_in_model_fit():
    # model.fit's default; a wrapper passing its own callbacks=None on was refused (bad-argument).
    x, y = make_data(64, features=4)
    losses = [make_trainer(make_model(features=4), diagnose=False).fit(x, y, epochs=2, verbose=0, shuffle=False, **kwargs).history["loss"]
              for kwargs in ({}, {"callbacks": None})]
    assert len(losses[1]) == 2 and losses[0] == losses[1]


def test_a_run_without_the_statistics_it_asked_for_gets_a_note():
    # A step of its own (or a subclassed model's untapped layers) silently lost the statistics,
    # and with them every rule that reads them: "no findings" then meant "not judged".
    x, y = make_data(64, features=4)
    plain = make_trainer(make_model(features=4), diagnose=False)
    plain.fit(x, y, epochs=1, verbose=0)
    assert not [f for f in plain.findings if f.code == "statistics-missing"]
    own = KerasStyle(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, diagnose=False)
    own.fit(x, y, epochs=1, verbose=0)
    (note,) = [f for f in own.findings if f.code == "statistics-missing"]
    assert note.severity == "info" and "no gradient or update statistics" in note.message and "super().train_step(batch)" in note.advice

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden, self.out = keras.layers.Dense(8), keras.layers.Dense(1, activation="sigmoid")

        def call(self, inputs, training=False):
            return self.out(tf.nn.relu(self.hidden(inputs)))  # an activation no layer applies

    keras.utils.set_random_seed(0)
    sub = make_trainer(Subclassed(), diagnose=False)
    sub.fit(x, y, epochs=1, verbose=0)
    (note,) = [f for f in sub.findings if f.code == "statistics-missing"]
    assert "output only" in note.message and "trainkit.probes.record(" in note.advice


def test_an_update_metrics_of_its_own_that_feeds_the_metrics_itself_gets_them_logged():
    # Without super().update_metrics, the accuracy it fed was left out of the History (only loss
    # and the validation's values), where the default step gives the same metric its epoch value.
    class OwnUpdates(Trainer):
        def update_metrics(self, y, y_pred, sample_weight, loss):
            for metric in self.metrics[1:]:  # the first is the loss tracker
                metric.update_state(y, y_pred)

    class Silent(Trainer):  # feeds nothing: no zeros of empty trackers
        def update_metrics(self, y, y_pred, sample_weight, loss):
            pass

    x, y = make_data(100, features=4)
    histories = [cls(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", metrics=["accuracy"], seed=0,
                     diagnose=False, jit_compile=False).fit(x, y, epochs=2, batch_size=32, verbose=0).history
                 for cls in (OwnUpdates, Trainer, Silent)]
    own, default, silent = histories
    np.testing.assert_allclose(own["accuracy"], default["accuracy"], rtol=1e-6)  # each epoch's own, reset between them
    np.testing.assert_allclose(own["loss"], default["loss"], rtol=1e-5)
    assert "accuracy" not in silent and np.isfinite(silent["loss"]).all()


def test_what_an_update_metrics_of_its_own_returns_is_logged_as_keras_logs_compute_metrics_dict():
    # Keras's steps return compute_metrics's dict; a port adding a value to it (results["mean_prob"]
    # = ...) had the value dropped from the History and its val_ twin in silence. Values under the
    # trackers' names (Keras's {m.name: m.result() for m in self.metrics}) change nothing.
    class Extra(Trainer):
        def update_metrics(self, y, y_pred, sample_weight, loss):
            super().update_metrics(y, y_pred, sample_weight, loss)
            return {"mean_prob": tf.reduce_mean(y_pred), **{m.name: m.result() for m in self.metrics}}

    x, y = make_data(40, features=4)
    histories = [cls(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", metrics=["accuracy"], seed=0,
                     diagnose=False, jit_compile=False).fit(x, y, validation_split=0.25, epochs=2, batch_size=8, verbose=0).history
                 for cls in (Extra, Trainer)]
    extra, default = histories
    assert set(extra) == {*default, "mean_prob", "val_mean_prob"}
    for name in default:
        np.testing.assert_allclose(extra[name], default[name], rtol=1e-6, err_msg=name)
    assert all(0 < value < 1 for value in (*extra["mean_prob"], *extra["val_mean_prob"]))

    class Clashing(Trainer):  # would overwrite the step's own learning-rate statistic
        def update_metrics(self, y, y_pred, sample_weight, loss):
            super().update_metrics(y, y_pred, sample_weight, loss)
            return {"learning_rate": tf.reduce_mean(y_pred)}

    with pytest.raises(ArgumentError) as info:
        Clashing(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", diagnose=False).fit(x, y, epochs=1, verbose=0)
    assert info.value.code == "bad-step-output" and "'learning_rate'" in info.value.message


def test_an_apply_gradients_of_its_own_without_record_updates_trains_and_measures_its_updates():
    # apply_gradients(self, gradients, variables, loss), the three arguments the docs name, failed
    # in the first trace: "tf__apply_gradients() got an unexpected keyword argument 'record_updates'".
    class HalfSteps(Trainer):
        def apply_gradients(self, gradients, variables, loss):
            super().apply_gradients([0.5 * g for g in gradients], variables, loss)

    class KerasSpelling(Trainer):
        def apply_gradients(self, grads_and_vars):
            pass

    class Grab(Callback):
        def on_execution_end(self, first_step, outputs):
            self.outputs = outputs.as_dict()

    x, y = make_data(64, features=4)
    runs = []
    for cls, rate in ((HalfSteps, 0.1), (Trainer, 0.05)):  # SGD: half the gradient is half the rate
        grab = Grab()
        # Calls of 2 steps in both runs: "auto" sizes them by the time they take, so on a busy
        # machine the last call of one run held 1 step and of the other 2.
        trainer = cls(make_model(features=4), loss="binary_crossentropy", optimizer=keras.optimizers.SGD(rate), task="binary", seed=0,
                      diagnose=False, jit_compile=False, steps_per_execution=2)
        history = trainer.fit(x, y, epochs=2, batch_size=32, callbacks=[grab], verbose=0)
        runs.append((history.history["loss"], [v for k, v in grab.outputs.items() if k.startswith("update_ratio/")]))
    (loss, ratios), (loss_default, ratios_default) = runs
    np.testing.assert_allclose(loss, loss_default, rtol=1e-5)
    assert len(ratios) == len(ratios_default) == 4  # each layer's kernel and bias, in order
    np.testing.assert_allclose(ratios, ratios_default, rtol=1e-3, atol=1e-7)
    with pytest.raises(ArgumentError) as info:
        KerasSpelling(make_model(), loss="binary_crossentropy", optimizer="sgd", task="binary")
    assert info.value.code == "bad-step-signature" and "KerasSpelling.apply_gradients(self, grads_and_vars)" in info.value.message


def test_a_step_method_that_cannot_take_its_arguments_is_refused_when_the_trainer_is_built():
    # compute_loss(self, y, y_pred) failed in the first trace: "tf__compute_loss() takes 3
    # positional arguments but 5 were given".
    class Keras2Loss(Trainer):
        def compute_loss(self, y, y_pred):
            return super().compute_loss(y=y, y_pred=y_pred)

    class NoBatch(Trainer):
        def train_step(self):
            return {}

    class Flexible(Trainer):  # defaults, *args and **kwargs take them: accepted
        def compute_loss(self, x=None, y=None, y_pred=None, *args, **kwargs):
            return super().compute_loss(x, y, y_pred, *args, **kwargs)

    for cls, wrote, wanted in ((Keras2Loss, "compute_loss(self, y, y_pred)", "compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True)"),
                               (NoBatch, "train_step(self)", "train_step(self, batch)")):
        with pytest.raises(ArgumentError) as info:
            cls(make_model(), loss="binary_crossentropy", optimizer="sgd", task="binary")
        assert info.value.code == "bad-step-signature"
        assert f"{cls.__name__}.{wrote}" in info.value.message and f"write it as {wanted}" in info.value.message
    x, y = make_data(32)
    history = Flexible(make_model(), loss="binary_crossentropy", optimizer="sgd", task="binary", jit_compile=False).fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


class PenalisedModel(keras.Model):
    """A model whose own compute_loss, which model.fit calls, adds a penalty on its outputs."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.out = keras.layers.Dense(1, activation="sigmoid")

    def call(self, inputs):
        return self.out(self.hidden(inputs))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return super().compute_loss(x, y, y_pred, sample_weight, training) + 0.5 * keras.ops.mean(keras.ops.square(y_pred))


class PenalisedTrainer(Trainer):
    """PenalisedModel's compute_loss ported to the trainer."""

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return super().compute_loss(x, y, y_pred, sample_weight, training) + 0.5 * keras.ops.mean(keras.ops.square(y_pred))


def test_a_models_own_step_methods_are_refused_unless_the_trainer_overrides_them():
    # trainkit never calls the model's compute_loss (or train_step, test_step): it trained
    # without the penalty, in silence (epoch losses 0.706 against model.fit's 0.838).
    class OwnTrainStep(keras.Sequential):
        def train_step(self, data):
            raise NotImplementedError

    for model, name in ((PenalisedModel(), "PenalisedModel overrides keras.Model.compute_loss"),
                        (OwnTrainStep([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")]), "OwnTrainStep overrides keras.Model.train_step")):
        with pytest.raises(ArgumentError) as info:
            Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary")
        assert info.value.code == "model-step-ignored" and name in info.value.message and "Trainer subclass" in info.value.message
    x, y = make_data(40, features=4)
    keras.utils.set_random_seed(0)
    history = PenalisedTrainer(PenalisedModel(), loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), task="binary", seed=0,
                               diagnose=False).fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    keras.utils.set_random_seed(0)
    reference = PenalisedModel()
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)


class OneDense(keras.Model):
    """A subclassed logits model of one Dense unit, for the models below that override a step."""

    def __init__(self):
        super().__init__()
        self.out = keras.layers.Dense(1)

    def call(self, inputs):
        return self.out(inputs)


class SigmoidMetrics(OneDense):
    """A logits model whose own compute_metrics measures the sigmoid of its output."""

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, keras.ops.sigmoid(y_pred), sample_weight)


class SigmoidPorted(Trainer):
    """SigmoidMetrics's compute_metrics ported as the README says: the sigmoid in update_metrics."""

    def update_metrics(self, y, y_pred, sample_weight, loss):
        super().update_metrics(y, keras.ops.sigmoid(y_pred), sample_weight, loss)


def test_a_models_own_compute_metrics_is_refused_unless_the_trainer_ports_it():
    # Keras's steps log what the model's compute_metrics returns; trainkit never called it: a logits
    # model measuring its sigmoid logged binary_accuracy 0.458, 0.542 where model.fit logged 0.542,
    # 0.604, in silence.
    arguments = dict(loss=keras.losses.BinaryCrossentropy(from_logits=True), metrics=["binary_accuracy"])
    with pytest.raises(ArgumentError) as info:
        Trainer(SigmoidMetrics(), **arguments, optimizer="sgd", task="binary")
    assert info.value.code == "model-step-ignored"
    assert "SigmoidMetrics overrides keras.Model.compute_metrics" in info.value.message
    assert "update_metrics(self, y, y_pred, sample_weight, loss)" in info.value.message
    x, y = make_data(40, features=4)
    keras.utils.set_random_seed(0)
    history = SigmoidPorted(SigmoidMetrics(), **arguments, optimizer=keras.optimizers.SGD(0.1), task="binary", seed=0, diagnose=False).fit(
        x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    keras.utils.set_random_seed(0)
    reference = SigmoidMetrics()
    reference.compile(**arguments, optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    np.testing.assert_allclose(history["binary_accuracy"], expected["binary_accuracy"], rtol=1e-5)


def test_a_ported_compute_metrics_measures_the_validation_and_evaluate_too():
    # Keras calls compute_metrics in test_step too; trainkit's default test_step fed the evaluation
    # metrics directly: with the sigmoid applied in update_metrics, val_binary_accuracy was 0.70,
    # 0.70 (of the logits) where model.fit logged 0.65, 0.65, and evaluate 0.70 against 0.65.
    class FeedsItself(Trainer):  # self.metrics: the evaluation trackers in a validation step
        def update_metrics(self, y, y_pred, sample_weight, loss):
            for metric in self.metrics[1:]:
                metric.update_state(y, keras.ops.sigmoid(y_pred))

    class OwnTestStep(SigmoidPorted):  # Keras's test_step ported: compute_metrics is update_metrics
        def test_step(self, batch):
            x, y, sample_weight = unpack_batch(batch)
            y_pred = self.model(x, training=False)
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=False)
            self.update_metrics(y, y_pred, sample_weight, loss)
            return {"loss": loss}

    arguments = dict(loss=keras.losses.BinaryCrossentropy(from_logits=True), metrics=["binary_accuracy"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=60) > 0).astype("float32")
    fit_arguments = dict(validation_data=(x[40:], y[40:]), epochs=2, batch_size=8, shuffle=False, verbose=0)
    keras.utils.set_random_seed(0)
    reference = SigmoidMetrics()
    reference.compile(**arguments, optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(x[:40], y[:40], **fit_arguments).history
    evaluated = reference.evaluate(x[40:], y[40:], batch_size=8, return_dict=True, verbose=0)
    for cls in (SigmoidPorted, FeedsItself, OwnTestStep):
        keras.utils.set_random_seed(0)
        trainer = cls(SigmoidMetrics(), **arguments, optimizer=keras.optimizers.SGD(0.1), task="binary", seed=0, diagnose=False)
        history = trainer.fit(x[:40], y[:40], **fit_arguments).history
        for name in ("binary_accuracy", "val_binary_accuracy", "val_loss"):
            np.testing.assert_allclose(history[name], expected[name], rtol=1e-5, err_msg=f"{cls.__name__} {name}")
        results = trainer.evaluate(x[40:], y[40:], batch_size=8, return_dict=True)
        np.testing.assert_allclose([results["loss"], results["binary_accuracy"]], [evaluated["loss"], evaluated["binary_accuracy"]], rtol=1e-5)
        assert trainer.metrics[0] is trainer._loss_tracker  # outside a validation step: the training trackers


def test_a_train_step_alone_does_not_port_a_models_compute_metrics():
    # Taken as the port, a train_step measuring the sigmoid left the default test_step measuring the
    # logits: val_binary_accuracy 0.70, 0.70 where model.fit logged 0.65, 0.65, in silence.
    class TrainStepOnly(Trainer):
        def train_step(self, batch):
            return super().train_step(batch)

    class BothSteps(TrainStepOnly):
        def test_step(self, batch):
            return super().test_step(batch)

    arguments = dict(loss=keras.losses.BinaryCrossentropy(from_logits=True), optimizer="sgd", task="binary", diagnose=False)
    with pytest.raises(ArgumentError) as info:
        TrainStepOnly(SigmoidMetrics(), **arguments)
    assert info.value.code == "model-step-ignored" and "update_metrics(self, y, y_pred, sample_weight, loss)" in info.value.message
    BothSteps(SigmoidMetrics(), **arguments)  # both steps its own: they measure what they choose


def test_a_models_own_predict_step_is_what_predict_returns():
    # trainer.predict called the model alone: a logits model whose predict_step applies the
    # sigmoid got 0.50, 1.13, -0.13 where model.predict gave 0.62, 0.76, 0.47, in silence.
    class Probabilities(OneDense):
        def predict_step(self, data):
            return keras.ops.sigmoid(super().predict_step(data))

    x, y = make_data(40, features=4)
    trainer = Trainer(Probabilities(), loss=keras.losses.BinaryCrossentropy(from_logits=True), optimizer="sgd", task="binary", diagnose=False)
    trainer.fit(x, y, epochs=1, verbose=0)
    predicted = trainer.predict(x, batch_size=16)
    np.testing.assert_allclose(predicted, trainer.model.predict(x, verbose=0), rtol=1e-6)
    assert predicted.min() >= 0.0 and predicted.max() <= 1.0
    np.testing.assert_allclose(trainer.predict(tf.data.Dataset.from_tensor_slices(x).batch(8)), predicted, rtol=1e-6)
    # Through model.predict, what trainkit answers for any other model was lost: a generator of bare
    # input batches raised Keras's ValueError, no rows Python's UnboundLocalError, and a dataset
    # repeating forever without steps never returned (dataset-infinite without a predict_step).
    np.testing.assert_allclose(trainer.predict(x[i : i + 16] for i in range(0, 40, 16)), predicted, rtol=1e-6)
    assert trainer.predict(x[:0]).shape == (0, 1)
    with pytest.raises(DataError) as caught:
        trainer.predict(tf.data.Dataset.from_tensor_slices(x).batch(8).repeat())
    assert caught.value.code == "dataset-infinite"

def test_step_mistakes_are_coded_errors_before_training():
    # A per-example loss reached the optimizer (a Keras ValueError about adam/iteration), a step
    # without "loss" trained silently, and log_scalar from a callback was dropped and broke the
    # next trace.
    x, y = make_data(64, features=4)

    class PerExample(Trainer):
        def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
            return keras.losses.binary_crossentropy(y, y_pred)

    class NoLoss(KerasStyle):
        def train_step(self, batch):
            return {"total": super().train_step(batch)["loss"]}

    class LogsFromCallback(Callback):
        def on_epoch_end(self, epoch, logs):
            self.trainer.log_scalar("late", 1.0)

    for cls, code, kwargs in [(PerExample, "loss-not-scalar", {}), (NoLoss, "bad-step-output", {}),
                              (Trainer, "log-scalar-outside-step", {"callbacks": [LogsFromCallback()]})]:
        trainer = cls(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, diagnose=False)
        with pytest.raises(ArgumentError) as info:
            trainer.fit(x, y, epochs=1, verbose=0, **kwargs)
        assert info.value.code == code, cls


def test_a_training_value_named_like_a_validation_one_is_refused():
    # A train_step's "val_accuracy" (or log_scalar("val_loss") in compute_loss) was overwritten in
    # the History by the validation's value, and went to TensorBoard's validation run.
    x, y = make_data(64, features=4)

    class Returns(Trainer):
        def train_step(self, batch):
            logs = super().train_step(batch)
            return {**logs, "val_accuracy": logs["loss"]}

    class Logs(Trainer):
        def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
            loss = super().compute_loss(x, y, y_pred, sample_weight, training)
            self.log_scalar("val_loss", loss)
            return loss

    for cls, code in [(Returns, "bad-step-output"), (Logs, "bad-log-scalar")]:
        trainer = cls(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", metrics=["accuracy"], seed=0, diagnose=False)
        with pytest.raises(ArgumentError) as info:
            trainer.fit(x, y, epochs=1, validation_split=0.25, verbose=0)
        assert info.value.code == code and "without the val_ prefix" in info.value.message, cls


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize(("extra", "words"), [
    ({"note": "hi"}, "'note' is not a number (got str)"),
    ({"note": None}, "'note' is not a number (got NoneType)"),
    ({"note": np.array("x")}, "'note' is not a number (got ndarray of dtype <U1)"),
    ({"note": {"a": 1.0}}, "'note' is not a number (got dict)"),
    # A metric (its result() meant) has a dtype: a TypeError as the values were packed.
    ({"note": keras.metrics.Mean(name="m")}, "'note' is not a number (got the metric 'm'; return its result())"),
    ({3: 1.0}, "names must be non-empty strings"),
])
def test_a_step_returning_a_value_that_is_no_number_is_a_coded_error(extra, words, jit_compile):
    # Each was a TensorFlow error as the values were packed (a Cast of a string, "None values not
    # supported"), or an AttributeError / TypeError where the names were read or sorted.
    x, y = make_data(64, features=4)

    class Extra(Trainer):
        def train_step(self, batch):
            return {**super().train_step(batch), **extra}

    trainer = Extra(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, diagnose=False, jit_compile=jit_compile)
    with pytest.raises(ArgumentError) as info:
        trainer.fit(x, y, epochs=1, verbose=0)
    assert info.value.code == "bad-step-output" and words in info.value.message


@pytest.mark.parametrize(("returned", "code", "words"), [
    (lambda loss: None, "loss-not-scalar", "compute_loss returned None"),
    (lambda loss: tf.constant(1), "loss-not-scalar", "got a int32 tensor"),
    (lambda loss: tf.constant(0.5), "no-gradients", "depends on none of the model's trainable weights"),
    # A TypeError from the conversion ("Expected float32, but got Tensor"):
    (lambda loss: (loss, {"aux": loss}), "loss-not-scalar", "returned a tuple holding more"),
    (lambda loss: {"loss": loss}, "loss-not-scalar", "returned a dict holding more"),
])
def test_a_compute_loss_that_cannot_train_is_a_coded_error(returned, code, words):
    # Each failed deep in the graph: "None values not supported", a DataType list, "No gradients provided".
    x, y = make_data(64, features=4)

    class Custom(Trainer):
        def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
            return returned(super().compute_loss(x, y, y_pred, sample_weight, training))

    for statistics in (False, True):
        trainer = Custom(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, diagnose=False, statistics=statistics)
        with pytest.raises(ArgumentError) as info:
            trainer.fit(x, y, epochs=1, verbose=0)
        assert info.value.code == code and words in info.value.message


def test_an_output_rounded_by_a_lambda_is_told_the_op_passes_no_gradient():
    # Lambda(tf.round) after the last Dense: no weight gets a gradient, and the error said only to
    # compute the loss from y_pred, which the loss did.
    x, y = make_data(64, features=4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid"), keras.layers.Lambda(lambda t: tf.round(t))])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, diagnose=False)
    with pytest.raises(ArgumentError) as info:
        trainer.fit(x, y, epochs=1, verbose=0)
    assert info.value.code == "no-gradients" and "tf.round" in info.value.message


def test_a_keras_loss_without_reduction_is_told_to_keep_its_reduction():
    # MeanSquaredError(reduction=None) returns a loss a row: refused as loss-not-scalar with
    # "compute_loss must return one number", which named a method the user never wrote.
    x, y = make_data(64, features=4)
    trainer = Trainer(make_model(features=4), loss=keras.losses.BinaryCrossentropy(reduction=None), optimizer="sgd", task="binary",
                      seed=0, diagnose=False)
    with pytest.raises(ArgumentError) as info:
        trainer.fit(x, y, epochs=1, verbose=0)
    assert info.value.code == "loss-not-scalar" and "reduction=None" in info.value.message


@pytest.mark.parametrize(("logged", "words"), [
    (lambda t, loss: t.log_scalar("accuracy", loss), "would overwrite the step's own 'accuracy'"),  # history["accuracy"] became it
    (lambda t, loss: t.log_scalar("loss", loss), "would overwrite the step's own 'loss'"),
    (lambda t, loss: (t.log_scalar("p", loss), t.log_scalar("p", loss)), "called twice in one step"),
    (lambda t, loss: t.log_scalar("p", tf.fill([3], loss)), "takes one number, got a tensor of shape (3,)"),
    (lambda t, loss: t.log_scalar(3, loss), "name must be a non-empty string"),
])
def test_log_scalar_refuses_values_that_would_be_lost_or_overwrite_others(logged, words):
    x, y = make_data(64, features=4)

    class Logging(Trainer):
        def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
            loss = super().compute_loss(x, y, y_pred, sample_weight, training)
            logged(self, loss)
            return loss

    trainer = Logging(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", metrics=["accuracy"], seed=0, diagnose=False)
    with pytest.raises(ArgumentError) as info:
        trainer.fit(x, y, epochs=1, verbose=0)
    assert info.value.code == "bad-log-scalar" and words in info.value.message


def test_class_weight_needs_class_ids_and_sparse_labels_need_metrics_that_read_them():
    # An IndexError from a rounded regression target, and a segment_ids shape error at the first step.
    x, _ = make_data(40, features=4)
    regression = Trainer(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]), loss="mse", optimizer="sgd", task="regression", seed=0, diagnose=False)
    with pytest.raises(ArgumentError, match="a regression task has none"):
        regression.fit(x, x[:, :1], class_weight={0: 1.0, 1: 2.0}, epochs=1, verbose=0)
    softmax = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(UnknownNameError, match='"auc" compares the labels with the outputs entry by entry'):
        Trainer(softmax, loss="sparse_categorical_crossentropy", optimizer="sgd", task="multiclass", metrics=["auc"])


def test_class_weight_for_multilabel_rows_is_refused():
    # Read by argmax as model.fit reads it, a multi-hot row weighed its first label's weight and an
    # all-zero row class 0's: {0: 1, 1: 5} trained on in silence.
    x, _ = make_data(40, features=4)
    y = (np.random.default_rng(0).random((40, 3)) < 0.3).astype("float32")
    trainer = Trainer(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid")]), loss="binary_crossentropy",
                      optimizer="sgd", task="multilabel", seed=0, diagnose=False)
    with pytest.raises(ArgumentError, match="a multilabel row holds several labels") as info:
        trainer.fit(x, y, class_weight={0: 1.0, 1: 5.0}, epochs=1, verbose=0)
    assert info.value.code == "bad-argument"
    with pytest.raises(ArgumentError, match="a multilabel row holds several labels"):
        trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), class_weight={0: 1.0, 1: 5.0}, epochs=1, verbose=0)


@pytest.mark.parametrize("metric", ["sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy"])
def test_one_hot_labels_refuse_metrics_that_read_class_ids(metric):
    # A TensorFlow "Dimensions must be equal" error when the step was traced.
    softmax = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(UnknownNameError, match=f'"{metric}" reads one class id per sample, but CategoricalCrossentropy takes one-hot labels') as info:
        Trainer(softmax, loss="categorical_crossentropy", optimizer="sgd", task="multiclass", metrics=[metric])
    assert info.value.code == "unknown-metric"


@pytest.mark.parametrize(("loss", "metric", "says"), [
    ("sparse_categorical_crossentropy", keras.metrics.CategoricalAccuracy, "compares the labels with the outputs entry by entry"),
    ("categorical_crossentropy", keras.metrics.SparseCategoricalAccuracy, "reads one class id per sample"),
])
def test_a_metric_object_reading_labels_in_the_other_format_than_the_loss_is_refused(loss, metric, says):
    # As a name is: CategoricalAccuracy() with class ids logged a validation accuracy of 0.0.
    softmax = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(UnknownNameError, match=says) as info:
        Trainer(softmax, loss=loss, optimizer="sgd", task="multiclass", metrics=[metric()])
    assert info.value.code == "unknown-metric"


def test_a_list_of_one_array_is_the_one_input_or_target_as_in_model_fit():
    # fit([x], y) was refused as 1 row of shape (40, 4).
    x, y = make_data(40, features=4)
    losses = [make_trainer(make_model(features=4)).fit(*args, epochs=1, shuffle=False, verbose=0).history["loss"] for args in ((x, y), ([x], y), (x, [y]))]
    assert losses[0] == losses[1] == losses[2]


def test_row_mismatches_name_the_data_they_are_in():
    x, y = make_data(40, features=4)
    trainer = make_trainer(make_model(features=4))
    with pytest.raises(DataError, match=r"x is a single value \(shape \(\)\)"):
        trainer.fit(None, y, epochs=1, verbose=0)
    with pytest.raises(DataError, match=r"x and y of validation_data must have the same number of rows; got x \(40, 4\), y \(39, 1\)"):
        trainer.fit(x, y, validation_data=(x, y[:-1]), epochs=1, verbose=0)
    # Each array is named as it was given (it said "x, y and sample_weight" of three bare shapes).
    a, b = keras.Input((3,), name="a"), keras.Input((1,), name="b")
    two = Trainer(keras.Model({"a": a, "b": b}, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([a, b]))),
                  loss="binary_crossentropy", optimizer="sgd", task="binary", jit_compile=False)
    with pytest.raises(DataError, match=r"x and y must have the same number of rows; got x\['a'\] \(40, 3\), x\['b'\] \(39, 1\), y \(40, 1\)"):
        two.fit({"a": x[:, :3], "b": x[:-1, 3:]}, y, epochs=1, verbose=0)


def test_an_optimizer_instance_of_another_trainer_is_refused():
    x, y = make_data(40, features=4)
    shared = keras.optimizers.SGD(0.1)
    make_trainer(make_model(features=4), optimizer=shared).fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ArgumentError, match="already holds the state of another model's weights"):
        make_trainer(make_model(features=4, seed=1), optimizer=shared)


def test_evaluate_takes_data_that_is_no_mistake_to_evaluate_on():
    # One class only, or three rows: refused for training, fine to evaluate.
    x, y = make_data(40, features=4)
    trainer = make_trainer(make_model(features=4))
    assert np.isfinite(trainer.evaluate(x, np.zeros_like(y))["loss"]) and np.isfinite(trainer.evaluate(x[:3], y[:3])["loss"])
    assert not trainer.findings or all(f.code != "few-training-rows" for f in trainer.findings)


def test_a_loss_of_shape_one_and_a_lambda_loss_train():
    # tf.reshape(loss, [1]) failed in the optimizer's select ("Dimension 0 ... [1], [4,3]"); a
    # lambda's name "<lambda>" is no valid TensorFlow scope.
    x, y = make_data(64, features=4)

    class OneElement(Trainer):
        def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
            return tf.reshape(super().compute_loss(x, y, y_pred, sample_weight, training), [1])

    history = OneElement(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0,
                         diagnose=False).fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    mse = Trainer(make_model(features=4), loss=lambda t, p: tf.reduce_mean(tf.square(t - p)), optimizer="sgd", task="regression", seed=0, diagnose=False)
    assert np.isfinite(mse.fit(x, y, epochs=1, verbose=0).history["loss"][0])


def test_values_a_test_step_returns_or_logs_reach_the_validation_logs():
    # They were dropped: no val_penalty for a log_scalar in compute_loss, no val_mean_pred for a
    # test_step's own value (Keras puts every returned key into the logs).
    x, y = make_data(100, features=4)

    class MeanPrediction(PenaltyTrainer):
        def test_step(self, batch):
            out = super().test_step(batch)
            return {**out, "mean_pred": tf.reduce_mean(self.model(unpack_batch(batch)[0]))}

    trainer = MeanPrediction(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, diagnose=False)
    history = trainer.fit(x[:80], y[:80], validation_data=(x[80:], y[80:]), epochs=2, verbose=0).history
    assert len(history["val_penalty"]) == len(history["val_mean_pred"]) == 2
    mean_pred = float(np.mean(trainer.predict(x[80:])))
    np.testing.assert_allclose(history["val_mean_pred"][-1], mean_pred, rtol=1e-5)  # 20 rows, one batch
    np.testing.assert_allclose(trainer.evaluate(x[80:], y[80:])["mean_pred"], mean_pred, rtol=1e-5)


def test_a_float64_models_epoch_values_keep_their_float64_digits():
    # The trackers' results were read as float32: a float64 model's History and evaluate() were
    # model.fit's rounded, 1.19863987 against 1.19863989.
    keras.backend.set_floatx("float64")
    keras.mixed_precision.set_global_policy("float64")  # Keras made the float32 one already
    try:
        x, y = make_data(200)
        x = x.astype(np.float64)
        reference = make_model()
        reference.compile(loss="binary_crossentropy", optimizer="adam", metrics=["mae"])
        expected = reference.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0, validation_data=(x[:50], y[:50])).history
        trainer = Trainer(make_model(), loss="binary_crossentropy", optimizer="adam", task="binary", metrics=["mae"], seed=0, jit_compile=False)
        history = trainer.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0, validation_data=(x[:50], y[:50])).history
        for name in ("loss", "mae", "val_loss", "val_mae"):
            np.testing.assert_allclose(history[name], expected[name], rtol=1e-13, err_msg=name)
        assert trainer.evaluate(x, y)["loss"] == pytest.approx(reference.evaluate(x, y, verbose=0)[0], rel=1e-13)
    finally:
        keras.backend.set_floatx("float32")
        keras.mixed_precision.set_global_policy("float32")


def test_the_data_checks_read_the_callers_arrays_without_copying_them():
    # ArraySource.numpy() copied every tensor back for the checks: 381 MB more for 2M x 50 rows.
    from trainkit.sources import ArraySource

    x, y = make_data(100, features=4)
    source = ArraySource([x, y.astype(np.float64), {"w": np.ones(100, np.float32)}])
    xs, ys, ws = source.numpy()
    assert np.shares_memory(xs, x) and np.shares_memory(ws["w"], source._arrays[2]["w"])
    assert ys.dtype == np.float32 and source.data[1].dtype == tf.float32  # narrowed, as Keras does


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the process's memory from /proc")
def test_in_memory_data_holds_one_copy_of_the_arrays():
    # tf.convert_to_tensor's tensor held two buffers of the array's size as long as it lived: 488 MB
    # of rows kept 976 MB through the whole fit (and validation data converted on top of them).
    from trainkit.sources import ArraySource

    def resident() -> int:
        return next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS"))

    x = np.random.default_rng(0).random((1 << 15, 512), dtype=np.float32)  # 64 MiB
    before = resident()
    source = ArraySource([x])
    held = resident() - before
    assert np.array_equal(source.data[0].numpy(), x) and held < 1.5 * x.nbytes


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="resets the process's peak memory through /proc")
def test_in_memory_data_is_converted_with_one_copy_of_the_arrays():
    # tf.convert_to_tensor copied the array with numpy, then TensorFlow copied that copy into an
    # aligned buffer: 1.2 GB of rows took 2.4 GB more at their peak (6.7 s), now 1.2 GB (~2 s).
    from trainkit.sources import ArraySource

    def kib(field: str) -> int:
        return next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))

    x = np.random.default_rng(0).random((1 << 15, 512), dtype=np.float32)  # 64 MiB
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = kib("VmRSS")
    tensor = ArraySource([x]).data[0]
    peak = (kib("VmHWM") - before) * 1024
    assert np.array_equal(tensor.numpy(), x) and np.array_equal(ArraySource([x[:, ::2]]).data[0].numpy(), x[:, ::2])
    narrowed = ArraySource([x[:8].astype(np.float64), np.arange(8)]).data
    assert narrowed[0].dtype == tf.float32 and np.array_equal(narrowed[0].numpy(), x[:8]) and np.array_equal(narrowed[1].numpy(), np.arange(8))
    x[0, 0] = 7.0  # the tensor holds its own copy, not the caller's memory
    assert tensor[0, 0].numpy() != 7.0 and peak < 1.5 * x.nbytes
    # float64 rows narrowed as they are copied: a float32 copy first, then its aligned copy, took
    # the float64 array's size more at their peak (469 MB for 480 MB), half of it now.
    wide = x.astype(np.float64)
    Path("/proc/self/clear_refs").write_text("5")
    before = kib("VmRSS")
    tensor = ArraySource([wide]).data[0]
    peak = (kib("VmHWM") - before) * 1024
    assert tensor.dtype == tf.float32 and np.array_equal(tensor.numpy(), x) and peak < 0.75 * wide.nbytes
    assert ArraySource([wide[:8].astype(">f8")]).data[0].dtype == tf.float32  # in either byte order
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning: the data checks name such values
        assert np.isinf(ArraySource([np.array([[1e300]])]).data[0].numpy()).all()


def test_early_stopping_may_monitor_a_value_only_the_test_step_returns():
    # The monitor was checked before the test step was traced: val_mean_pred was "not logged".
    x, y = make_data(100, features=4)

    class MeanPrediction(Trainer):
        def test_step(self, batch):
            return {**super().test_step(batch), "mean_pred": tf.reduce_mean(self.model(unpack_batch(batch)[0]))}

    trainer = MeanPrediction(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, diagnose=False)
    history = trainer.fit(x[:80], y[:80], validation_data=(x[80:], y[80:]), epochs=2, verbose=0,
                          callbacks=[EarlyStopping(monitor="val_mean_pred", patience=5)]).history
    assert len(history["val_mean_pred"]) == 2 and "val_mean_pred" in trainer.epoch_log_names(validation=True)


def test_a_dataset_is_read_once_before_training(tmp_path):
    """Each read of a pipeline starts a pass (a shuffle buffer refills, files are opened again): the
    data checks, the chance level, the histograms' probe batch and the stacks' sizing share one
    sample of its first batches, then each epoch reads it once (model.fit reads it no more)."""
    x, y = make_data(96)
    passes = []

    def rows():
        passes.append(1)
        yield from zip(x, y, strict=True)

    spec = (tf.TensorSpec([10], tf.float32), tf.TensorSpec([1], tf.float32))
    data = tf.data.Dataset.from_generator(rows, output_signature=spec).batch(32)  # batch axis None: stacks sized from a batch
    trainer = make_trainer(jit_compile=True, logdir=tmp_path / "run", histograms_every="epoch", checkpoint_every=0)
    history = trainer.fit(data, epochs=2, verbose=0)
    assert len(passes) == 1 + 2
    assert trainer._histograms.batch is not None and len(history.history["loss"]) == 2


@pytest.mark.parametrize("check_data", [True, False])
def test_a_never_shuffled_dataset_of_exactly_the_sampled_batches_is_not_read_again(check_data):
    """A dataset of known length whose every batch the sample kept (16 of 16) was taken for a longer
    one: the rows past the sample were looked for in a pass that mapped its 16 batches again."""
    x, y = make_data(16 * 8)
    mapped = []

    def count(inputs):
        mapped.append(len(inputs))
        return inputs

    def mark(inputs, targets):
        return tf.ensure_shape(tf.py_function(count, [inputs], tf.float32), inputs.shape), targets

    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).map(mark)  # 16 batches, never shuffled
    trainer = make_trainer()
    trainer.fit(data, epochs=1, verbose=0, check_data=check_data)
    assert len(mapped) == 16 + 16  # the sample and the epoch (a third pass of 16 before)


def test_a_dataset_nothing_samples_is_read_one_batch_ahead_and_keeps_one():
    """With the checks and diagnosis off nothing samples the dataset before training; the stacks'
    sizing then reads one batch (not the checks' sixteen) and keeps no more."""
    x, y = make_data(320)
    read = []

    def rows():
        for row in zip(x, y, strict=True):
            read.append(1)
            yield row

    spec = (tf.TensorSpec([10], tf.float32), tf.TensorSpec([1], tf.float32))
    data = tf.data.Dataset.from_generator(rows, output_signature=spec).batch(32)  # 10 batches, batch axis None
    trainer = make_trainer(jit_compile=True, diagnose=False)
    kept = []
    original = DatasetSource.batch_bytes
    with mock.patch.object(DatasetSource, "batch_bytes", lambda self: kept.append(self) or original(self)):
        trainer.fit(data, epochs=1, verbose=0, check_data=False)
    assert kept, "the stacks were not sized from a batch"
    assert len(read) <= 320 + 32 + 1  # one epoch and one batch ahead (sixteen batches ahead read all ten again)
    assert len(kept[0]._kept) == 1  # what the source holds through training


def test_a_loss_function_gets_targets_of_the_prediction_s_rank_as_in_model_fit():
    # 1-D targets against a [batch, 1] output broadcast to [batch, batch] in the usual custom MSE:
    # trainkit trained on the mean over every pair of rows (mse 1.26 against Keras's 0.83).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 2]).astype("float32")

    def my_mse(y_true, y_pred):
        return tf.reduce_mean(tf.square(y_true - y_pred), axis=-1)

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])

    reference = build()
    reference.compile(optimizer=keras.optimizers.Adam(1e-2), loss=my_mse)
    expected = reference.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0).history["loss"]
    trainer = Trainer(build(), loss=my_mse, optimizer=keras.optimizers.Adam(1e-2), task="regression", seed=0, logdir=None)
    got = trainer.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_values_a_callback_adds_to_the_epoch_logs_reach_the_history_and_tensorboard(tmp_path):
    # Keras keeps them (its History is the last callback); trainkit dropped them, so a ported
    # learning-rate callback's `learning_rate` entry vanished. Text is no epoch value: left out
    # (it made fit raise a ValueError).
    class AddsAValue(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["my_value"] = 10.0 + epoch
            logs["phase"] = "warmup"
            logs["improved"] = np.float32(logs["loss"]) < 10.0  # a numpy flag is no epoch value either (it was 1.0)

    x, y = make_data(rows=64)
    trainer = Trainer(make_model(), loss="binary_crossentropy", optimizer="adam", task="binary", logdir=tmp_path, diagnose=False)
    history = trainer.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[AddsAValue()])
    assert history.history["my_value"] == [10.0, 11.0] and "phase" not in history.history and "improved" not in history.history
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "train")).Reload()
    assert [e.value for e in events.Scalars("epoch/my_value")] == [10.0, 11.0]


def test_an_ema_optimizer_leaves_the_averaged_weights_in_the_model_as_model_fit_does():
    # fit never called finalize_variable_values: the model kept its raw weights (evaluate 0.588
    # against Keras's 0.648).
    x, y = make_data(rows=96)

    def optimizer():
        return keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.9)

    reference = make_model()
    reference.compile(optimizer=optimizer(), loss="binary_crossentropy")
    reference.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    model = make_model()
    Trainer(model, loss="binary_crossentropy", optimizer=optimizer(), task="binary", seed=0, logdir=None).fit(
        x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    for got, expected in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_keras_keywords_of_fit_evaluate_and_predict_are_taken():
    # verbose=, return_dict= and validation_batch_size= were TypeErrors; validation_freq is refused clearly.
    x, y = make_data(rows=90)
    trainer = Trainer(make_model(), loss="binary_crossentropy", optimizer="adam", task="binary", metrics=["accuracy"], logdir=None, diagnose=False)
    history = trainer.fit(x, y, epochs=1, batch_size=32, validation_split=0.5, validation_batch_size=7, verbose=0)
    results = trainer.evaluate(x[-45:], y[-45:], batch_size=7, verbose=0, return_dict=True)
    assert results["loss"] == pytest.approx(history.history["val_loss"][0], rel=1e-5)  # 45 rows in batches of 7, exactly
    assert trainer.evaluate(x, y, verbose=0, return_dict=False) == list(trainer.evaluate(x, y).values())
    assert trainer.predict(x, verbose=0).shape == (90, 1)
    with pytest.raises(ArgumentError, match="validation_freq=2") as info:
        trainer.fit(x, y, epochs=1, validation_split=0.3, validation_freq=2, verbose=0)
    assert info.value.code == "bad-argument"


def test_early_stopping_restores_the_best_weights_at_the_end_of_a_run_it_did_not_stop_like_keras():
    # Keras 3 puts the best weights back when the run trains all its epochs too; trainkit kept the
    # last epoch's (validation loss 5.03 against the best 1.55).
    x, y = make_data(160)
    xv, yv = make_data(60, seed=1)
    yv = 1.0 - yv  # the more it learns, the worse the validation loss: best at the first epoch

    def fit(callback):
        keras.utils.set_random_seed(0)
        model = make_model()
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
        if isinstance(callback, EarlyStopping):
            Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.Adam(1e-2), task="binary", logdir=None,
                    diagnose=False).fit(x, y, validation_data=(xv, yv), epochs=4, shuffle=False, verbose=0, callbacks=[callback])
        else:
            model.fit(x, y, validation_data=(xv, yv), epochs=4, shuffle=False, verbose=0, callbacks=[callback])
        return model.get_weights()

    stopper = EarlyStopping(monitor="val_loss", patience=10)
    ours = fit(stopper)
    keras_weights = fit(keras.callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True))
    assert stopper.stopped_epoch is None and stopper.restored_epoch == stopper.best_epoch == 0
    for got, expected in zip(ours, keras_weights, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_early_stopping_puts_the_best_weights_back_after_a_nan_stop_like_keras():
    # Keras's callback restores them in on_train_end, after TerminateOnNaN too; trainkit's left the
    # diverged weights of the abandoned epoch (evaluate: loss NaN) when the best epoch was the last.
    x, y = make_data(96, features=4)
    xv, yv = make_data(32, features=4, seed=1)

    class NanRate(Callback):  # the updates of the third epoch make every weight NaN
        def on_epoch_end(self, epoch, logs):
            self.best = [np.array(w) for w in self.trainer.model.get_weights()]
            if epoch == 1:
                self.trainer.optimizer.learning_rate.assign(math.nan)

    spy = NanRate()
    stopper = EarlyStopping(monitor="val_loss", patience=10)
    trainer = Trainer(make_model(features=4), loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), task="binary",
                      seed=0, jit_compile=False, diagnose=False)
    history = trainer.fit(x, y, validation_data=(xv, yv), epochs=5, batch_size=32, verbose=0, callbacks=[stopper, spy])
    assert trainer.stop_reason == "nan-loss" and history.epoch == [0, 1] and stopper.best_epoch == 1
    assert stopper.restored_epoch == 1
    for got, best in zip(trainer.model.get_weights(), spy.best, strict=True):
        np.testing.assert_array_equal(got, best)


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_accuracy_of_a_binary_task_with_two_softmax_units_reads_the_class_of_the_larger(loss):
    # Binary labels, Dense(2, softmax) and a categorical loss, which the checks accept: "accuracy"
    # was BinaryAccuracy, comparing each 0/1 label with both probabilities, and read 0.5000 at every
    # epoch of a model whose predictions were 93% right.
    x, y = make_data(200, features=4)
    y = y.astype(np.int64).ravel()
    labels = y if loss.startswith("sparse") else np.eye(2)[y]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2, activation="softmax")])
    trainer = Trainer(model, loss=loss, optimizer=keras.optimizers.Adam(0.01), task="binary", metrics=["accuracy"], seed=0, diagnose=False)
    trainer.fit(x, labels, epochs=5, batch_size=20, verbose=0)
    expected = float(np.mean(trainer.predict(x).argmax(axis=1) == y))
    assert expected > 0.6
    assert trainer.evaluate(x, labels)["accuracy"] == pytest.approx(expected, abs=1e-6)


def test_compute_loss_takes_keras_s_keyword_call_without_x():
    # keras.Model.compute_loss gives every argument a default, and the guide to customizing fit
    # calls self.compute_loss(y=y, y_pred=y_pred): here it was a TypeError (missing 'x') while
    # the step traced.
    x, y = make_data(64, features=4)

    class GuideTrainer(Trainer):
        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                y_pred = self.model(x, training=True)
                loss = self.compute_loss(y=y, y_pred=y_pred)
            self.optimizer.apply(tape.gradient(loss, self.model.trainable_variables), self.model.trainable_variables)
            return {"loss": loss}

    history = GuideTrainer(make_model(features=4), loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), task="binary",
                           seed=0, diagnose=False).fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    reference = make_model(features=4)
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)


def test_a_step_returning_the_trainer_s_own_metrics_running_results_logs_them_as_keras_does():
    # The guide's step updates self.metrics itself and returns their result(): the trainer's own
    # metrics were left out of the running results, so the epoch's mae was the mean of running
    # means (2.04 against Keras's 1.98 here), the first batches counted many times over.
    x, y = make_data(192, features=4)  # whole batches: the guide's loss tracker weighs batches alike

    class GuideTrainer(Trainer):
        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                y_pred = self.model(x, training=True)
                loss = self.compute_loss(x, y, y_pred)
            self.optimizer.apply(tape.gradient(loss, self.model.trainable_variables), self.model.trainable_variables)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred)
            return {m.name: m.result() for m in self.metrics}

    trainer = GuideTrainer(make_model(features=4), loss="binary_crossentropy", optimizer=keras.optimizers.Adam(0.01), task="binary",
                           metrics=["mae"], seed=0, diagnose=False)
    _fits_like_compiled_keras(trainer, x, y, epochs=3)


def _fits_like_compiled_keras(trainer: Trainer, x: np.ndarray, y: np.ndarray, epochs: int) -> None:
    """``trainer``'s loss and mae per epoch equal those of make_model compiled with Adam(0.01)."""
    history = trainer.fit(x, y, epochs=epochs, batch_size=32, shuffle=False, verbose=0).history
    reference = make_model(features=4)
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(0.01), metrics=["mae"])
    expected = reference.fit(x, y, epochs=epochs, batch_size=32, shuffle=False, verbose=0).history
    for key in ("loss", "mae"):
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5, err_msg=key)


def test_trainer_metrics_lists_the_loss_tracker_first_as_keras_s_model_metrics_does():
    # The guide's step updates "loss" with the loss and the rest with (y, y_pred), and returns
    # every result(): trainer.metrics held no loss tracker, so the step returned no "loss" and
    # was refused (bad-step-output).
    trainer = make_trainer(make_model(features=4), metrics=["mae"])
    assert [m.name for m in trainer.metrics] == ["loss", "mae"]
    with pytest.raises(ArgumentError, match="cannot be set: pass metrics="):  # was a bare "has no setter"
        trainer.metrics = [keras.metrics.AUC()]


def test_a_subclass_may_define_a_metrics_property_as_in_keras_s_guide():
    # The guide's low-level step lists its own trackers in a metrics property: Trainer set
    # self.metrics in __init__, an AttributeError ("property 'metrics' ... has no setter").
    x, y = make_data(192, features=4)  # whole batches: the guide's loss tracker weighs batches alike

    class LowLevel(GuideTrainer):
        @property
        def metrics(self):
            return [self.loss_tracker, self.mae_metric]

    trainer = LowLevel(make_model(features=4), loss="binary_crossentropy", optimizer=keras.optimizers.Adam(0.01), task="binary", seed=0, diagnose=False)
    _fits_like_compiled_keras(trainer, x, y, epochs=2)
    assert trainer.metrics == [trainer.loss_tracker, trainer.mae_metric]


class NoisyModel(keras.Model):
    """A subclassed model whose every call draws noise (a VAE's sampling layer does)."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(4)
        self.out = keras.layers.Dense(1)
        self.seed_generator = keras.random.SeedGenerator(7)

    def call(self, x, training=False):
        h = self.hidden(x)
        return self.out(h + keras.random.normal(tf.shape(h), seed=self.seed_generator))


def test_trainkit_s_own_calls_of_a_model_leave_its_random_streams_as_model_fit_does():
    # Before training, trainkit called the model to build it and count its outputs: each call
    # advanced its SeedGenerator, and the run drew other noise than model.fit (the guide's VAE
    # ended 3e-3 away from Keras's loss).
    x, y = make_data(64, features=4)
    keras.utils.set_random_seed(0)
    trainer = Trainer(NoisyModel(), loss="mse", optimizer=keras.optimizers.SGD(0.05), task="regression", seed=0, diagnose=False)
    history = trainer.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    keras.utils.set_random_seed(0)
    reference = NoisyModel()
    reference.compile(loss="mse", optimizer=keras.optimizers.SGD(0.05))
    expected = reference.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    assert int(trainer.model.seed_generator.state.numpy()[1]) == int(reference.seed_generator.state.numpy()[1]) == 8
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)


class Sampling(keras.layers.Layer):
    """Noise in every call, inference mode too (a VAE's sampling layer)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(7)

    def call(self, x):
        return x + 0.3 * keras.random.normal(keras.ops.shape(x), seed=self.seed_generator)


@pytest.mark.parametrize("measured", ["histograms", "activity-penalty", "recurrent-reach"])
def test_trainkit_s_measurements_between_steps_leave_the_random_streams_as_model_fit_does(tmp_path, measured):
    # The histograms' probe call (with a logdir) and the activity penalty's measurement before the
    # first step (with the diagnosis) each advanced the sampling layer's SeedGenerator: the run drew
    # other noise than model.fit and ended 3e-2 (histograms) and 1e-2 (penalty) away from its loss;
    # the recurrent gradients' reach, measured at the end of a fit, moved the next fit's noise.
    x, y = make_data(64, features=4)

    def build():
        keras.utils.set_random_seed(0)
        if measured == "recurrent-reach":
            return keras.Sequential([keras.Input((24, 1)), keras.layers.SimpleRNN(4), Sampling(), keras.layers.Dense(1, activation="sigmoid")])
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", activity_regularizer=keras.regularizers.l2(0.01)),
                                 Sampling(), keras.layers.Dense(1, activation="sigmoid")])

    if measured == "recurrent-reach":
        x = np.repeat(x[:, :1], 24, axis=1)[..., None] * np.linspace(0.5, 1.5, 24, dtype="float32")[None, :, None]
    histograms = measured == "histograms"
    trainer = Trainer(build(), loss="binary_crossentropy", optimizer=keras.optimizers.Adam(0.01), task="binary", seed=0,
                      logdir=tmp_path / "run" if histograms else None, diagnose=not histograms, checkpoint_every=0)
    reference = build()
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(0.01))
    for _ in range(2):  # a second fit goes on from the streams the first left
        history = trainer.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0).history
        expected = reference.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0).history
        np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)


def stateful_rows() -> tuple[np.ndarray, np.ndarray]:
    """32 sequences of 5 steps of 3 features, and a target each, for the stateful RNN tests."""
    x = np.random.default_rng(0).normal(size=(32, 5, 3)).astype("float32")
    return x, x.sum(axis=(1, 2))[:, None] * np.float32(0.1)


def fit_beside_model_fit(build: Callable[[], keras.Model], x, y, epochs: int, **trainer_args) -> tuple[Trainer, dict, keras.Model, dict]:
    """Trains ``build()``'s model with trainkit and another with ``model.fit`` (MSE, SGD 0.05,
    batches of 8 in order): the trainer, its History, the Keras model and its History."""
    trainer = Trainer(build(), loss="mse", optimizer=keras.optimizers.SGD(0.05), task="regression", seed=0, diagnose=False,
                      checkpoint_every=0, **trainer_args)
    history = trainer.fit(x, y, epochs=epochs, batch_size=8, shuffle=False, verbose=0).history
    reference = build()
    reference.compile(loss="mse", optimizer=keras.optimizers.SGD(0.05))
    return trainer, history, reference, reference.fit(x, y, epochs=epochs, batch_size=8, shuffle=False, verbose=0).history


def test_the_histograms_probe_call_leaves_a_stateful_rnn_s_states_as_model_fit_does(tmp_path):
    # The histograms' call on the probe batch at each epoch's end ran it through a stateful LSTM's
    # kept states and moved them on: the next epoch started from other states than model.fit's
    # (epoch 2's loss 0.1627 against 0.1567).
    x, y = stateful_rows()

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input(batch_shape=(8, 5, 3)), keras.layers.LSTM(4, stateful=True), keras.layers.Dense(1)])

    trainer, history, reference, expected = fit_beside_model_fit(build, x, y, 3, logdir=tmp_path / "run")
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(trainer.model.layers[0].states[0].numpy(), reference.layers[0].states[0].numpy(), rtol=1e-4, atol=1e-6)


class StatefulRegressor(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.carried = keras.layers.LSTM(4, stateful=True)
        self.head = keras.layers.Dense(1)

    def call(self, x):
        return self.head(self.carried(x))


@pytest.mark.parametrize("kind", ["sequential", "subclassed"])
def test_an_unbuilt_stateful_rnn_trains_as_model_fit_does(kind):
    # Keras builds it on the first batch: trainkit refused a Sequential without an Input
    # (unbuilt-model: "the batch size must be static"), and built a subclassed one on 32 rows, so
    # its first batch of 8 failed ("Expected batch size: 32"); the states that build call created
    # and moved on were then the first step's (epoch 1: 0.17126 against model.fit's 0.16717).
    x, y = stateful_rows()

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.layers.LSTM(4, stateful=True), keras.layers.Dense(1)]) if kind == "sequential" else StatefulRegressor()

    _, history, _, expected = fit_beside_model_fit(build, x, y, 2)
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)


class StatefulTwoHeads(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.carried = keras.layers.LSTM(4, stateful=True)
        self.a = keras.layers.Dense(1)
        self.b = keras.layers.Dense(1)

    def call(self, x):
        h = self.carried(x)
        return self.a(h), self.b(h)


def test_an_unbuilt_stateful_rnn_of_two_outputs_trains_as_model_fit_does():
    # Its outputs were counted (y a tuple of two) by a call on one row, which built the LSTM's
    # states for 1 row: its first batch of 8 failed ("Expected batch size: 1"), where model.fit
    # trains it (losses 0.66519, 0.64101).
    x, y = stateful_rows()

    def build():
        keras.utils.set_random_seed(0)
        return StatefulTwoHeads()

    trainer, history, _, expected = fit_beside_model_fit(build, x, (y, 2 * y), 2)
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)
    assert trainer.evaluate(x, (y, 2 * y), batch_size=8, verbose=0) is not None


@pytest.mark.parametrize("as_dataset", [False, True])
def test_an_unbuilt_stateful_rnn_predicts_as_model_predict_does(as_dataset):
    # model.predict builds it on its first batch; trainkit's compiled predict traced it on batches
    # of unknown rows and failed ("When using stateful=True in a RNN, the batch size must be static").
    x, _ = stateful_rows()

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.layers.LSTM(4, stateful=True), keras.layers.Dense(1)])

    trainer = Trainer(build(), loss="mse", optimizer="sgd", task="regression", seed=0, diagnose=False, checkpoint_every=0)
    predicted = trainer.predict(tf.data.Dataset.from_tensor_slices(x).batch(8) if as_dataset else x, batch_size=8, verbose=0)
    np.testing.assert_allclose(predicted, build().predict(x, batch_size=8, verbose=0), rtol=1e-5, atol=1e-6)


def test_a_stateful_masked_tagger_s_padded_targets_are_left_out_as_a_stateless_one_s():
    # The loss positions were not read for a model with a stateful layer (a call would have moved
    # its states, which seed_states_kept now puts back): standardised targets padded with -100 at
    # the steps a Masking layer leaves out read "mean -95.44 and std 21.02", unscaled-targets.
    rng = np.random.default_rng(0)
    real = np.arange(10)[None] < rng.integers(3, 11, size=(32, 1))
    x = np.where(real[..., None], rng.normal(size=(*real.shape, 1)), 0.0).astype("float32")
    y = np.where(real[..., None], np.cumsum(x, axis=1) / 3, -100.0).astype("float32")

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input(batch_shape=(8, 10, 1)), keras.layers.Masking(),
                                 keras.layers.LSTM(4, stateful=True, return_sequences=True), keras.layers.Dense(1)])

    trainer = Trainer(build(), loss="mse", optimizer=keras.optimizers.SGD(0.05), task="regression", seed=0, checkpoint_every=0)
    history = trainer.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    assert "unscaled-targets" not in [f.code for f in trainer.findings]
    reference = build()
    reference.compile(loss="mse", optimizer=keras.optimizers.SGD(0.05))
    expected = reference.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)


@pytest.mark.parametrize("shuffle", [True, "batch", False])
def test_shuffled_rows_into_a_stateful_rnn_are_told(shuffle):
    # Each row's final state starts the row at its index in the next batch: shuffled rows (fit's
    # default) pair it with an unrelated row's, and model.fit and trainkit both shuffled in silence.
    x = np.random.default_rng(0).normal(size=(32, 5, 3)).astype("float32")
    y = x.sum(axis=(1, 2))[:, None]
    inputs = keras.Input(batch_shape=(8, 5, 3))
    hidden = keras.layers.Bidirectional(keras.layers.GRU(4, stateful=True, return_sequences=True), name="both_ways")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.LSTM(4, stateful=True, name="carried")(hidden)))
    trainer = Trainer(model, loss="mse", optimizer="sgd", task="regression", seed=0, diagnose=False)
    trainer.fit(x, y, epochs=1, batch_size=8, shuffle=shuffle, verbose=0)
    found = [f for f in trainer.findings if f.code == "stateful-shuffled"]
    if not shuffle:
        assert not found
        return
    assert len(found) == 1 and found[0].severity == "warning"
    assert "'both_ways', 'carried' are stateful" in found[0].message and "shuffle=False" in found[0].advice


def test_a_step_ported_from_keras_is_told_the_trainer_s_spelling():
    x, y = make_data(64, features=4)

    class CallsItself(Trainer):
        def train_step(self, data):
            x, y = data
            return {"loss": self.compute_loss(y=y, y_pred=self(x, training=True))}

    # self(x) was TypeError: 'CallsItself' object is not callable, from inside the trace.
    with pytest.raises(ArgumentError) as info:
        CallsItself(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0).fit(x, y, epochs=1, verbose=0)
    assert info.value.code == "trainer-is-not-the-model" and "self.model(x, training=True)" in info.value.message


@pytest.mark.parametrize(("read", "told"), [
    (lambda self, x, y, y_pred: self.compiled_loss(y, y_pred), "self.compute_loss(y=y, y_pred=y_pred"),
    (lambda self, x, y, y_pred: self.compiled_metrics.update_state(y, y_pred), "self.update_metrics(y, y_pred, sample_weight, loss)"),
    (lambda self, x, y, y_pred: self.compute_metrics(x, y, y_pred, None), "self.update_metrics(y, y_pred, sample_weight, loss)"),
    (lambda self, x, y, y_pred: self.get_metrics_result(), "{m.name: m.result() for m in self.metrics}"),
    (lambda self, x, y, y_pred: self.trainable_variables, "self.model.trainable_variables"),
    (lambda self, x, y, y_pred: self.losses, "self.model.losses"),
])
def test_a_model_s_attribute_read_from_the_trainer_is_told_the_trainer_s_spelling(read, told):
    # A step ported from Keras's guides reading self.compiled_loss, self.compute_metrics or
    # self.trainable_variables failed with a bare "object has no attribute", naming nothing to write.
    x, y = make_data(32, features=4)

    class Ported(Trainer):
        def train_step(self, data):
            x, y = data
            y_pred = self.model(x, training=True)
            read(self, x, y, y_pred)
            return {"loss": self.compute_loss(y=y, y_pred=y_pred)}

    trainer = Ported(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0)
    with pytest.raises(ArgumentError) as info:
        trainer.fit(x, y, epochs=1, verbose=0)
    assert info.value.code == "trainer-is-not-the-model" and told in info.value.message
    assert isinstance(info.value, AttributeError)  # hasattr and getattr(..., default) answer as before
    assert not hasattr(trainer, "compiled_loss") and getattr(trainer, "layers", None) is None
    with pytest.raises(AttributeError) as plain:
        trainer.no_such_attribute  # noqa: B018
    assert not isinstance(plain.value, ArgumentError)


def test_a_subclass_property_that_raises_attribute_error_inside_keeps_its_own_error():
    # Trainer.__getattr__ is also called when a property raises AttributeError inside: a
    # subclass's `extra` reading self.model.no_such_thing was told "'T' object has no attribute
    # 'extra'", and its own `layers` trainer-is-not-the-model; the real error was lost.
    class T(Trainer):
        @property
        def extra(self):
            return self.model.no_such_thing

        @property
        def layers(self):
            return self.model.not_here

    trainer = T(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0)
    for name, missing in (("extra", "no_such_thing"), ("layers", "not_here")):
        with pytest.raises(AttributeError) as info:
            getattr(trainer, name)
        assert missing in str(info.value) and not isinstance(info.value, ArgumentError), info.value


def test_an_optimizer_applied_to_variables_it_was_not_built_for_is_told_what_to_write():
    # A GAN ported with self.optimizer also stepping the generator kept beside the model got
    # Keras's "Unknown variable: ... you should recreate a new optimizer instance".
    x, y = make_data(32, features=4)

    class SharedOptimizer(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.generator = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])

        def train_step(self, data):
            x, y = data
            variables = self.model.trainable_variables + self.generator.trainable_variables
            with tf.GradientTape() as tape:
                loss = self.compute_loss(y=y, y_pred=self.model(self.generator(x), training=True))
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
            return {"loss": loss}

    trainer = SharedOptimizer(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, diagnose=False)
    with pytest.raises(ArgumentError) as info:
        trainer.fit(x, y, epochs=1, verbose=0)
    assert info.value.code == "optimizer-variables-unknown" and "Unknown variable" in info.value.message
    assert "self.g_optimizer.build(self.generator.trainable_variables)" in info.value.message


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_a_subclass_that_never_called_super_init_is_told_so(method):
    x, y = make_data(32, features=4)

    class NoSuperInit(Trainer):
        def __init__(self, model, **kwargs):
            self.extra_weight = 0.1  # super().__init__(model, **kwargs) forgotten

    trainer = NoSuperInit(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary")
    call = {"fit": lambda: trainer.fit(x, y, epochs=1, verbose=0), "evaluate": lambda: trainer.evaluate(x, y), "predict": lambda: trainer.predict(x)}
    # AttributeError: 'NoSuperInit' object has no attribute 'is_chief' ('strategy', '_predict_fn').
    with pytest.raises(ArgumentError) as info:
        call[method]()
    assert info.value.code == "trainer-not-initialized" and "super().__init__(model" in info.value.message


def test_a_compute_loss_without_training_as_keras_before_3_3_wrote_it_trains_and_validates_as_in_model_fit(tmp_path):
    # Keras calls such an override without training=; trainkit's validation and histograms passed
    # it: "tf__compute_loss() got an unexpected keyword argument 'training'".
    x, y = make_data(64, features=4)

    def penalised(base):
        class Penalised(base):
            def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
                return super().compute_loss(x, y, y_pred, sample_weight) + 0.01 * tf.reduce_mean(tf.square(y_pred))
        return Penalised

    trainer = penalised(Trainer)(make_model(features=4), loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), task="binary",
                                 seed=0, logdir=tmp_path / "run")  # a logdir: the histograms' loss too
    history = trainer.fit(x[:48], y[:48], epochs=2, batch_size=16, shuffle=False, verbose=0, validation_data=(x[48:], y[48:])).history
    reference = penalised(keras.Sequential)(make_model(features=4).layers)
    reference.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(x[:48], y[:48], epochs=2, batch_size=16, shuffle=False, verbose=0, validation_data=(x[48:], y[48:])).history
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5)
    assert trainer.evaluate(x, y)["loss"] == pytest.approx(reference.evaluate(x, y, verbose=0), rel=1e-5)


def test_a_step_of_its_own_without_targets_is_told_to_give_placeholders():
    # A GAN or a VAE fits on images alone in Keras; the advice was to zip the inputs with their
    # targets. The placeholders it now names train.
    x, _ = make_data(64, features=4)

    class Unsupervised(Trainer):
        def train_step(self, data):
            x = data[0]
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(self.model(x, training=True)))
            self.optimizer.apply(tape.gradient(loss, self.model.trainable_variables), self.model.trainable_variables)
            return {"loss": loss}

    def trainer():
        return Unsupervised(make_model(features=4), loss="mse", optimizer="sgd", task="regression", seed=0, diagnose=False)

    for data in (x, tf.data.Dataset.from_tensor_slices(x).batch(16)):
        with pytest.raises(DataError) as info:
            trainer().fit(data, epochs=1, verbose=0)
        assert info.value.code == "missing-targets" and "of its own that uses no targets" in info.value.message
    assert len(trainer().fit(x, np.zeros(len(x)), epochs=1, verbose=0).history["loss"]) == 1
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(16).map(lambda x: (x, tf.zeros(tf.shape(x)[:1])))
    assert len(trainer().fit(dataset, epochs=1, verbose=0).history["loss"]) == 1
    with pytest.raises(DataError) as info:  # the default step needs real targets: no such advice
        make_trainer(make_model(features=4)).fit(x, epochs=1, verbose=0)
    assert "placeholders" not in info.value.message


class Reconstructs(Trainer):
    """An autoencoder's trainer: a train_step of its own that reads no targets."""

    def train_step(self, data):
        x = data[0]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(self.model(x, training=True) - x))
        self.optimizer.apply(tape.gradient(loss, self.model.trainable_variables), self.model.trainable_variables)
        return {"loss": loss}


def test_the_placeholders_advised_to_a_step_of_its_own_fit_an_output_of_several_units(tmp_path):
    # An autoencoder's (a VAE's) output has a unit per feature: the advised y=np.zeros(len(x)) was
    # refused by the data checks (shape-mismatch), and with a logdir or validation rows the loss
    # of its histograms and test_step could not compare them. The advice names the output's shape.
    x = np.random.default_rng(0).uniform(size=(64, 6)).astype("float32")

    def trainer(logdir=None):
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(6)])
        return Reconstructs(model, loss="mse", optimizer="sgd", task="regression", seed=0, diagnose=False, logdir=logdir)

    with pytest.raises(DataError) as info:
        trainer().fit(x, epochs=1, verbose=0)
    assert info.value.code == "missing-targets" and "y=np.zeros((len(x), 6))" in info.value.message
    with pytest.raises(DataError) as info:
        trainer().fit(tf.data.Dataset.from_tensor_slices(x).batch(16), epochs=1, verbose=0)
    assert ".map(lambda x: (x, tf.zeros((tf.shape(x)[0], 6))))" in info.value.message
    history = trainer(tmp_path / "run").fit(x, np.zeros((len(x), 6)), epochs=1, verbose=0).history
    assert set(history) == {"loss"}
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(16).map(lambda x: (x, tf.zeros((tf.shape(x)[0], 6))))
    assert len(trainer().fit(dataset, epochs=1, verbose=0).history["loss"]) == 1


def test_validation_with_placeholder_targets_needs_a_test_step_of_its_own():
    # An autoencoder with a train_step of its own, fitted on the advised placeholders: the default
    # test_step gave them to the trainer's loss, and val_loss read its outputs against zeros (0.15
    # where it reconstructed the validation rows at 0.89), which early stopping would go by.
    x = np.random.default_rng(0).uniform(size=(64, 6)).astype("float32")

    class Validates(Reconstructs):
        def test_step(self, data):
            return {"loss": tf.reduce_mean(tf.square(self.model(data[0], training=False) - data[0]))}

    def fit(cls, *args, **kwargs):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(6)])
        return cls(model, loss="mse", optimizer="sgd", task="regression", seed=0, diagnose=False).fit(*args, epochs=1, verbose=0, **kwargs)

    zeros = np.zeros((len(x), 6))
    dataset = tf.data.Dataset.from_tensor_slices((x, zeros)).batch(16)
    for args, kwargs in [((x, zeros), {"validation_split": 0.25}), ((x, zeros), {"validation_data": (x, zeros)}),
                         ((dataset,), {"validation_data": dataset})]:
        with pytest.raises(ArgumentError) as info:
            fit(Reconstructs, *args, **kwargs)
        assert info.value.code == "validation-needs-test-step" and "Reconstructs overrides train_step but not test_step" in info.value.message
        assert set(fit(Validates, *args, **kwargs).history) == {"loss", "val_loss"}
    # Real targets (a step of its own that reads them) are validated by the default test_step.
    assert set(fit(Reconstructs, x, x, validation_data=(x, x)).history) == {"loss", "val_loss"}


def test_datasets_sorted_by_label_are_no_placeholders_for_a_step_of_its_own():
    # A train_step of its own that reads its labels, on a training and a validation dataset both
    # sorted by label and never shuffled (2,000 rows each, half class 0, batch 32): the first 8
    # batches of each are all class 0, and fit was refused ("the training and the validation
    # targets are all 0: placeholders ...").
    rng = np.random.default_rng(0)

    class Wraps(Trainer):
        def train_step(self, data):
            return super().train_step(data)

    def dataset(shuffled: bool = False, zeros: bool = False) -> tf.data.Dataset:
        x = rng.normal(size=(2000, 4)).astype("float32")
        y = np.zeros(2000, "float32") if zeros else np.sort((x[:, 0] > 0).astype("float32"))
        rows = tf.data.Dataset.from_tensor_slices((x, y))
        return (rows.shuffle(2000, seed=0) if shuffled else rows).batch(32)

    def fit(train: tf.data.Dataset, validation: tf.data.Dataset):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
        trainer = Wraps(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, diagnose=False)
        return trainer.fit(train, validation_data=validation, epochs=1, verbose=0)

    assert set(fit(dataset(), dataset()).history) == {"loss", "val_loss"}
    # Placeholders in a shuffled training dataset (its first batches a random draw) still are.
    with pytest.raises(ArgumentError) as info:
        fit(dataset(shuffled=True, zeros=True), dataset(zeros=True))
    assert info.value.code == "validation-needs-test-step"

def test_a_compute_loss_of_its_own_trains_an_add_loss_model_on_inputs_alone_as_model_fit_does():
    # model.compile(loss=None); model.fit(x) trains on the add_loss losses alone. The port, a
    # compute_loss returning them, was told no placeholders (fit(x): missing-targets) and the
    # placeholders it could guess were refused (constant-targets).
    x = np.random.default_rng(0).uniform(size=(48, 6)).astype("float32")

    class Reconstruction(keras.layers.Layer):
        def call(self, inputs):
            self.add_loss(keras.ops.mean(keras.ops.square(inputs[0] - inputs[1])))
            return inputs[1]

    def model():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6,))
        return keras.Model(inputs, Reconstruction()([inputs, keras.layers.Dense(6)(keras.layers.Dense(3, activation="relu")(inputs))]))

    class AddedLosses(Trainer):
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            return tf.add_n(self.model.losses)

    def trainer():
        return AddedLosses(model(), loss="mse", optimizer=keras.optimizers.SGD(0.1), task="regression", seed=0, diagnose=False)

    with pytest.raises(DataError) as info:
        trainer().fit(x, epochs=1, verbose=0)
    assert info.value.code == "missing-targets" and "y=np.zeros((len(x), 6))" in info.value.message
    history = trainer().fit(x, np.zeros((len(x), 6)), epochs=2, batch_size=16, shuffle=False, verbose=0).history
    reference = model()
    reference.compile(loss=None, optimizer=keras.optimizers.SGD(0.1))
    expected = reference.fit(x, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)
    # Keras's compile(loss=None) has no Trainer twin: the error says how to port it.
    with pytest.raises(UnknownNameError) as info:
        Trainer(model(), loss=None, optimizer="sgd", task="regression")
    assert info.value.code == "unknown-loss" and "tf.add_n(self.model.losses)" in info.value.message


def test_values_logged_in_a_step_of_its_own_reach_the_history_without_being_returned():
    # A train_step of its own returning {"loss": loss} dropped, in silence, what it (or the
    # compute_loss it calls) logged with log_scalar: only the default steps returned them.
    x, y = make_data(64, features=4)

    class OwnStep(PenaltyTrainer):
        def train_step(self, batch):
            x, y, w = unpack_batch(batch)
            with tf.GradientTape() as tape:
                y_pred = self.model(x, training=True)
                loss = self.compute_loss(x, y, y_pred, w)
            self.optimizer.apply(tape.gradient(loss, self.model.trainable_variables), self.model.trainable_variables)
            self.log_scalar("mean_prediction", tf.reduce_mean(y_pred))
            return {"loss": loss}

        def test_step(self, batch):
            x, y, w = unpack_batch(batch)
            return {"loss": self.compute_loss(x, y, self.model(x), w, training=False)}

    trainer = OwnStep(make_model(features=4), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, diagnose=False)
    history = trainer.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_data=(x, y)).history
    assert {"penalty", "mean_prediction", "val_penalty"} <= set(history)
    assert all(np.isfinite(history["penalty"])) and history["penalty"][0] > 0


def test_a_mixed_float16_model_gets_loss_scaling_as_model_compile_gives_it():
    # A mixed_float16 model trained with a plain optimizer: model.compile wraps it in a
    # LossScaleOptimizer, the Trainer did not (and recipes had no way to ask for one).
    x, y = make_data(96, features=4)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        def fit(optimizer, **kwargs):
            trainer = make_trainer(make_model(features=4), optimizer=optimizer, **kwargs)
            history = trainer.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=False).history
            return trainer, history["loss"]

        auto, auto_losses = fit("sgd")
        _, explicit_losses = fit(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()))
        off, _ = fit("sgd", auto_scale_loss=False)
        compiled = make_model(features=4)
        compiled.compile(optimizer="sgd", loss="binary_crossentropy")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert type(auto.optimizer) is type(compiled.optimizer) is keras.optimizers.LossScaleOptimizer
    assert isinstance(auto.optimizer.inner_optimizer, keras.optimizers.SGD)
    np.testing.assert_allclose(auto_losses, explicit_losses, rtol=1e-6)
    assert "float16-without-loss-scaling" not in [f.code for f in auto.findings]
    assert isinstance(off.optimizer, keras.optimizers.SGD) and not isinstance(off.optimizer, keras.optimizers.LossScaleOptimizer)
    assert "float16-without-loss-scaling" in [f.code for f in off.findings]


def test_a_run_resumed_under_another_precision_policy_is_refused_naming_both(tmp_path):
    # A mixed_float16 run resumed with the policy back at float32 was refused as "it holds 14
    # optimizer variables, this run has 10" (the loss scale's), "Resume with the same recipe".
    x, y = make_data(96, features=4)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        make_trainer(make_model(features=4), logdir=tmp_path).fit(x, y, epochs=1, batch_size=32, verbose=0)
        again = make_trainer(make_model(features=4), logdir=tmp_path)  # the same policy resumes
        again.fit(x, y, epochs=2, batch_size=32, verbose=0, resume=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert len(again.history.history["loss"]) == 2
    with pytest.raises(RecipeError) as info:
        make_trainer(make_model(features=4), logdir=tmp_path).fit(x, y, epochs=3, batch_size=32, verbose=0, resume=True)
    assert info.value.code == "resume-mismatch"
    assert "'mixed_float16' precision policy" in info.value.message and "set_global_policy('mixed_float16')" in info.value.message


@pytest.mark.parametrize(("policy", "auto_scale_loss"), [("mixed_bfloat16", True), ("mixed_float16", False)])
def test_a_run_whose_variables_fit_resumes_under_another_precision_policy(tmp_path, policy, auto_scale_loss):
    # Without a loss scale the checkpoint holds the float32 variables a float32 run has, and it
    # resumed so before policies were recorded; comparing them first refused it.
    x, y = make_data(96, features=4)
    keras.mixed_precision.set_global_policy(policy)
    try:
        make_trainer(make_model(features=4), logdir=tmp_path, auto_scale_loss=auto_scale_loss).fit(x, y, epochs=1, batch_size=32, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    again = make_trainer(make_model(features=4), logdir=tmp_path)
    again.fit(x, y, epochs=2, batch_size=32, verbose=0, resume=True)
    assert len(again.history.history["loss"]) == 2


def test_auto_scale_loss_must_be_a_boolean():
    with pytest.raises(ArgumentError) as info:
        make_trainer(auto_scale_loss="yes")
    assert info.value.code == "bad-argument" and "auto_scale_loss" in info.value.message


def test_bounded_output_warning_is_withdrawn_when_every_target_is_in_range():
    """A sigmoid regression output is warned about when built (targets might lie outside [0, 1]);
    fit on arrays sees every target, and targets inside [0, 1] withdraw the warning. A dataset's
    sampled batches do not prove it for every row, so there it stays."""
    x, _ = make_data(rows=64)
    targets = np.clip(0.5 + 0.1 * x[:, :1], 0.0, 1.0)
    trainer = make_trainer(loss="mse", task="regression")
    assert "bounded-output-for-regression" in [f.code for f in trainer.findings]
    trainer.fit(x, targets, epochs=1, verbose=0)
    assert "bounded-output-for-regression" not in [f.code for f in trainer.findings]

    streamed = make_trainer(loss="mse", task="regression")
    streamed.fit(tf.data.Dataset.from_tensor_slices((x, targets)).batch(16), epochs=1, verbose=0)
    assert "bounded-output-for-regression" in [f.code for f in streamed.findings]


@pytest.mark.parametrize("callback", [keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=0),
                                      keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr)])
def test_a_learning_rate_callback_with_a_scheduled_optimizer_is_refused_before_training(callback):
    # Keras raised "its learning rate is not settable" when the callback first set it: a
    # plateau's first reduction, possibly many epochs in.
    x, y = make_data(rows=64)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    for optimizer in (keras.optimizers.SGD(schedule), keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(schedule))):
        trainer = make_trainer(optimizer=optimizer)
        with pytest.raises(ArgumentError) as info:
            trainer.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
        assert info.value.code == "bad-callback" and "LearningRateSchedule" in info.value.message
        assert trainer.history.epoch == []
    make_trainer().fit(x, y, epochs=1, verbose=0, callbacks=[callback])  # a float rate: the callback sets it


def test_predict_on_arrays_runs_every_batch_in_one_call_and_equals_model_predict():
    # One compiled call a batch from Python ran at model.predict's speed; the batches now run in
    # one tf.while_loop over the same slices, so the predictions must not change.
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, {"score": keras.layers.Dense(1, activation="sigmoid")(hidden), "value": keras.layers.Dense(2)(hidden)})
    trainer = Trainer(model, loss={"score": "binary_crossentropy", "value": "mse"}, optimizer="sgd", task={"score": "binary", "value": "regression"},
                      seed=0, jit_compile=False)
    for rows, batch_size in ((101, 32), (7, 32), (64, 64), (1, 8)):
        x = rng.normal(size=(rows, 4)).astype("float32")
        got, expected = trainer.predict({"features": x}, batch_size=batch_size), model.predict({"features": x}, batch_size=batch_size, verbose=0)
        assert set(got) == {"score", "value"} and got["value"].shape == (rows, 2)
        for name in got:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, atol=1e-7)
    assert trainer._predict_arrays_fn.experimental_get_tracing_count() <= 2  # rows left open after the first size


def test_predict_on_a_dataset_runs_every_batch_in_one_call_and_equals_model_predict():
    # One call a batch from Python ran at model.predict's speed; the batches left after the first
    # now run in one compiled loop over the iterator, which must give the same predictions.
    x, y = make_data(rows=101)
    model = make_model()
    trainer = make_trainer(model)
    for dataset in (tf.data.Dataset.from_tensor_slices(x).batch(32), tf.data.Dataset.from_tensor_slices((x, y)).batch(64),
                    tf.data.Dataset.from_tensor_slices(x[:5]).batch(32)):
        np.testing.assert_allclose(trainer.predict(dataset), model.predict(dataset, verbose=0), rtol=1e-6, atol=1e-7)
    repeated = tf.data.Dataset.from_tensor_slices(x).batch(32).repeat()
    assert trainer.predict(repeated, steps=3).shape == (96, 1)  # steps still limits a dataset that repeats
    assert trainer.predict(tf.data.Dataset.from_tensor_slices(x[:0]).batch(32)).shape == (0, 1)
    assert trainer._predict_dataset_fn is not None
