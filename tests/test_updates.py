"""Recording the updates an optimizer applies, instead of copying the weights before it."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainkit import Trainer, stats, updates


def variables_and_gradients(seed: int = 0) -> tuple[list[keras.Variable], list[tf.Tensor]]:
    rng = np.random.default_rng(seed)
    variables = [keras.Variable(rng.normal(size=shape).astype("float32"), name=f"v{i}") for i, shape in enumerate([(5, 3), (3,)])]
    gradients = [tf.constant(rng.normal(size=v.shape).astype("float32")) for v in variables]
    return variables, gradients


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.Adam(0.05),
    lambda: keras.optimizers.SGD(0.1, momentum=0.9),
    lambda: keras.optimizers.SGD(0.1),
    lambda: keras.optimizers.RMSprop(0.01),
    lambda: keras.optimizers.Adagrad(0.1),
], ids=["adam", "sgd-momentum", "sgd", "rmsprop", "adagrad"])
def test_recorded_updates_equal_the_change_of_the_weights(optimizer):
    optimizer = optimizer()
    variables, gradients = variables_and_gradients()
    optimizer.build(variables)
    assert updates.can_capture(optimizer)

    @tf.function
    def step():
        with updates.capture_updates(optimizer, variables) as capture:
            optimizer.apply(gradients, variables)
        assert capture.complete
        return capture.updates

    for _ in range(2):  # the second step has momentum/velocity from the first
        before = [v.numpy().copy() for v in variables]
        recorded = step()
        for variable, old, update in zip(variables, before, recorded, strict=True):
            np.testing.assert_allclose(update.numpy(), variable.numpy() - old, rtol=1e-5, atol=1e-7)
    # the optimizer's own methods are back once the block ends
    assert "assign_sub" not in vars(optimizer) and "assign" not in vars(optimizer)


def test_methods_are_restored_when_the_block_raises():
    optimizer = keras.optimizers.SGD(0.1)
    variables, _ = variables_and_gradients()
    with pytest.raises(ZeroDivisionError), updates.capture_updates(optimizer, variables):
        _ = 1 / 0
    assert "assign_sub" not in vars(optimizer)


def test_optimizers_that_change_weights_elsewhere_are_not_recorded():
    assert not updates.can_capture(keras.optimizers.AdamW(0.01, weight_decay=0.1))
    assert not updates.can_capture(keras.optimizers.Adam(0.01, gradient_accumulation_steps=2))
    assert not updates.can_capture(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)))


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.Adam(0.05),
    lambda: keras.optimizers.Adam(0.05, amsgrad=True),
    lambda: keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.5), beta_1=0.8, epsilon=1e-3),
], ids=["adam", "amsgrad", "schedule"])
@pytest.mark.parametrize("jit_compile", [False, True], ids=["plain", "xla"])
def test_adams_updates_recomputed_from_its_moments_equal_the_recorded_ones(optimizer, jit_compile):
    optimizer = optimizer()
    variables, gradients = variables_and_gradients()
    large = keras.Variable(np.ones((updates.SMALL_VARIABLE + 1,), "float32"), name="large")
    variables, gradients = [*variables, large], [*gradients, tf.fill(large.shape, 0.5)]
    optimizer.build(variables)

    @tf.function(jit_compile=jit_compile)
    def step(keep):
        rate = optimizer.learning_rate
        rate = tf.convert_to_tensor(getattr(rate, "value", rate))  # read before the update, as the trainer does
        iteration = tf.convert_to_tensor(optimizer.iterations)
        with updates.capture_updates(optimizer, variables, keep=keep) as capture:
            optimizer.apply(gradients, variables)
        updates.undo_iteration(optimizer, keep)
        recorded = capture.updates
        return recorded, updates.fusable_updates(optimizer, variables, recorded, rate, iteration, keep)

    for keep in (True, True, False, True):  # later steps have moments, a skipped step has none
        recorded, recomputed = step(tf.constant(keep))
        for old, new in zip(recorded, recomputed, strict=True):
            np.testing.assert_allclose(new.numpy(), old.numpy(), rtol=1e-6, atol=1e-9)
        assert np.any(recorded[0].numpy()) == keep
    assert int(optimizer.iterations.numpy()) == 3


def test_only_plain_adams_updates_are_recomputed():
    variables, _ = variables_and_gradients()
    recorded = [tf.constant(7.0, shape=v.shape) for v in variables]
    for optimizer in (keras.optimizers.SGD(0.1), keras.optimizers.RMSprop(0.1), type("MyAdam", (keras.optimizers.Adam,), {})(0.1)):
        optimizer.build(variables)
        kept = updates.fusable_updates(optimizer, variables, recorded, tf.constant(0.1), tf.constant(0, tf.int64))
        assert all(a is b for a, b in zip(kept, recorded, strict=True))


class DirectWrites(keras.optimizers.SGD):
    """An optimizer that writes the variables itself, bypassing its assign methods."""

    def update_step(self, gradient, variable, learning_rate):
        variable.assign(variable - tf.cast(learning_rate, variable.dtype) * gradient)


@pytest.mark.parametrize("optimizer", [lambda: keras.optimizers.Adam(0.05), lambda: DirectWrites(0.5), lambda: keras.optimizers.AdamW(0.05, weight_decay=0.5)],
                         ids=["recorded", "direct writes: snapshot", "weight decay: snapshot"])
@pytest.mark.parametrize("on_nan", ["stop", "warn"])
@pytest.mark.parametrize("jit_compile", [False, True], ids=["plain", "xla"])
def test_update_ratios_are_right_whichever_way_the_update_is_known(optimizer, on_nan, jit_compile):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh", name="hidden"), keras.layers.Dense(1, activation="sigmoid", name="head")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer=optimizer(), task="binary", seed=0, diagnose=False, on_nan=on_nan, jit_compile=jit_compile)
    trainer.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)  # two steps: compiles
    before = {v.path.removeprefix(model.name + "/"): v.numpy().copy() for v in model.trainable_variables}
    trainer.fit(x[:32], y[:32], epochs=1, batch_size=32, shuffle=False, verbose=0)  # one more step
    last = {name: value for step, name, value in trainer.step_table() if step == 2}
    for variable in model.trainable_variables:
        name = variable.path.removeprefix(model.name + "/")
        after = variable.numpy()
        want = np.linalg.norm(after - before[name]) / np.linalg.norm(after)
        assert want > 0
        assert last[stats.update_ratio_name(name)] == pytest.approx(float(want), rel=1e-4), name
    assert (trainer._updates_recorded is True) == (type(optimizer()) is keras.optimizers.Adam)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["plain", "xla"])
def test_the_update_ratio_of_a_constrained_weight_includes_its_projection(jit_compile):
    # Recorded from the optimizer's assigns, the update left out the projection Keras applies
    # after them (variable.assign(constraint(variable))): a MaxNorm kernel's ratio read 0.19
    # where the weights moved by 2.85 of their norm.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", kernel_constraint=keras.constraints.MaxNorm(0.2), name="hidden"),
                              keras.layers.Dense(1, activation="sigmoid", name="head")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.5), task="binary", seed=0, diagnose=False, jit_compile=jit_compile)
    trainer.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)  # two steps: compiles
    before = model.layers[0].kernel.numpy().copy()
    trainer.fit(x[:32], y[:32], epochs=1, batch_size=32, shuffle=False, verbose=0)  # one more step
    after = model.layers[0].kernel.numpy()
    last = {name: value for step, name, value in trainer.step_table() if step == 2}
    want = np.linalg.norm(after - before) / np.linalg.norm(after)
    assert last[stats.update_ratio_name("hidden/kernel")] == pytest.approx(float(want), rel=1e-4)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("constraint", [None, "non_neg"], ids=["select in the update", "constrained: tf.cond"])
def test_a_nonfinite_step_leaves_weights_and_optimizer_state_as_after_the_last_good_step(jit_compile, constraint):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    x[100, 0] = np.nan  # batch 3 (no shuffle): steps 0-2 are clean

    def trainer_and_model() -> tuple[Trainer, keras.Model]:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh", kernel_constraint=constraint),
                                  keras.layers.Dense(1, activation="sigmoid")])
        return Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.Adam(0.05), task="binary", seed=0,
                       diagnose=False, jit_compile=jit_compile), model

    trainer, model = trainer_and_model()
    trainer.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0, check_data=False)
    assert updates.can_guard(trainer.optimizer, model.trainable_variables) is (constraint is None)
    assert trainer.stop_reason == "nan-loss" and int(trainer.global_step.numpy()) == 4
    replayer, replay = trainer_and_model()  # the three clean steps only
    replayer.fit(x[:96], y[:96], epochs=1, batch_size=32, shuffle=False, verbose=0, check_data=False)
    for got, want in zip(model.get_weights(), replay.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    for got, want in zip(trainer.optimizer.variables, replayer.optimizer.variables, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, err_msg=got.path)
    assert int(trainer.optimizer.iterations.numpy()) == 3


@pytest.mark.parametrize("jit_compile", [False, True], ids=["plain", "xla"])
def test_select_whole_picks_one_whole_tensor_by_a_scalar_condition(jit_compile):
    then = tf.constant([[1.0, np.nan], [3.0, 4.0]])
    otherwise = tf.zeros([2, 2])
    select = tf.function(updates.select_whole, jit_compile=jit_compile)
    np.testing.assert_array_equal(select(tf.constant(True), then, otherwise).numpy(), then.numpy())
    np.testing.assert_array_equal(select(tf.constant(False), then, otherwise).numpy(), otherwise.numpy())


def test_the_skip_of_a_nonfinite_step_broadcasts_no_scalar_condition():
    # tf.where with a scalar condition (SelectV2) broadcasts it element by element on CPU; the
    # select of the whole update must be the v1 Select, which copies one input whole.
    optimizer = keras.optimizers.Adam(0.05)
    variables, gradients = variables_and_gradients()
    optimizer.build(variables)

    @tf.function
    def step(keep):
        with updates.capture_updates(optimizer, variables, keep=keep):
            optimizer.apply(gradients, variables)

    graph = step.get_concrete_function(tf.TensorSpec([], tf.bool)).graph
    op_types = {op.type for op in graph.get_operations()}
    assert "Select" in op_types
    assert "SelectV2" not in op_types
