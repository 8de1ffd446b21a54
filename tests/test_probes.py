"""Probes: the tapped forward pass equals the model's, and every kind of model reports activations."""

from __future__ import annotations

import threading
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainkit import Trainer, probes, stats
from trainkit.errors import ArgumentError


def rows(n: int = 16, features: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, features)).astype("float32")


def sequential() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(8, activation="relu", name="hidden", activity_regularizer=keras.regularizers.L2(0.01)),
        keras.layers.Dropout(0.5, name="drop"),
        keras.layers.Dense(6, name="linear"),
        keras.layers.LeakyReLU(negative_slope=0.1, name="leaky"),
        keras.layers.Dense(4, name="pre"),
        keras.layers.Activation("tanh", name="squash"),
        keras.layers.Dense(3, activation="softmax", name="head"),
    ])


def test_tapped_forward_pass_gives_the_same_output_loss_and_gradients():
    model = sequential()
    probe = probes.build_probe(model)
    assert probe.tapped == [("hidden", "relu"), ("leaky", "leaky_relu"), ("squash", "tanh"), ("head", "softmax")]
    assert probe.output_activations == ["softmax"]
    x = tf.constant(rows())
    y = tf.one_hot(np.arange(16) % 3, 3)
    loss_fn = keras.losses.CategoricalCrossentropy()

    seed_state = model.get_layer("drop").seed_generator.state
    saved = seed_state.numpy()

    def grads(forward):
        seed_state.assign(saved)  # the same dropout mask on both paths
        with tf.GradientTape() as tape:
            y_pred = forward()
            loss = loss_fn(y, y_pred) + tf.add_n(model.losses)
        return y_pred, loss, tape.gradient(loss, model.trainable_variables)

    reference = grads(lambda: model(x, training=True))
    tapped = grads(lambda: probe(x, training=True)[0])
    np.testing.assert_array_equal(tapped[0].numpy(), reference[0].numpy())
    assert float(tapped[1]) == float(reference[1])  # activity regularizer loss included alike
    for got, want in zip(tapped[2], reference[2], strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())

    _, taps = probe(x, training=False)
    by_name = {t.name: t for t in taps}
    assert list(by_name) == ["hidden", "leaky", "squash", "head", "output"]
    assert by_name["head"].tensor is by_name["output"].tensor  # the output layer is the output
    np.testing.assert_allclose(by_name["hidden"].tensor.numpy(), model.get_layer("hidden")(x).numpy(), rtol=1e-6)


def test_functional_model_with_dict_inputs_and_two_outputs():
    keras.utils.set_random_seed(0)
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    shared = keras.layers.Dense(4, activation="elu", name="trunk")(keras.layers.Concatenate()([a, b]))
    relu = keras.layers.ReLU(max_value=6.0, name="clip")(shared)
    model = keras.Model({"a": a, "b": b}, {"score": keras.layers.Dense(1, name="score")(relu), "prob": keras.layers.Dense(2, activation="sigmoid", name="prob")(relu)})
    probe = probes.build_probe(model)
    assert probe.tapped == [("trunk", "elu"), ("clip", "relu6"), ("prob", "sigmoid")]
    x = {"a": tf.constant(rows(8, 3)), "b": tf.constant(rows(8, 2, seed=1))}
    y_pred, taps = probe(x)
    reference = model(x)
    assert set(y_pred) == {"score", "prob"}
    for key in y_pred:
        np.testing.assert_array_equal(y_pred[key].numpy(), reference[key].numpy())
    outputs = {t.name: t.activation for t in taps if t.name.startswith("output")}
    assert sorted(outputs.items()) == [("output_0", "sigmoid"), ("output_1", "linear")]  # flattened dict order: prob, score
    got = {k: float(v) for k, v in probes.tap_stats(taps).items()}
    assert got["activation/output_0/saturated_fraction"] == got["activation/prob/saturated_fraction"]
    assert "activation/output_1/mean" in got and "activation/output_1/saturated_fraction" not in got
    assert "activation/clip/dead_fraction" in got


class Recorded(keras.Model):
    """A subclassed model reporting its activations with trainkit.probes.record."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu", bias_initializer=keras.initializers.Constant(-50.0), name="hidden")
        self.out = keras.layers.Dense(1, name="out")

    def call(self, x):
        h = probes.record("hidden", self.hidden(x), activation="relu")
        return probes.record("output", tf.sigmoid(self.out(h)), activation="sigmoid")


class Plain(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu", name="hidden")
        self.out = keras.layers.Dense(1, activation="sigmoid", name="out")

    def call(self, x):
        return self.out(self.hidden(x))


def test_subclassed_models_get_gradient_stats_automatically_and_activations_via_record():
    x = rows(32)
    y = (x[:, :1] > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = Recorded()
    model(x[:1])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", jit_compile=False, diagnose=False, seed=0)
    trainer.fit(x, y, epochs=1, batch_size=32, verbose=0)
    names = set(trainer._train_loop.names)
    assert {"grad_norm/hidden/kernel", "weight_norm/out/kernel", "update_ratio/out/bias", "grad_nonfinite/hidden/bias", "grad_norm/global"} <= names
    last = {name: value for step, name, value in trainer.step_table() if step == 0}
    assert last["activation/hidden/dead_fraction"] == 1.0  # the bias of -50 kills every unit
    assert "activation/output/saturated_fraction" in last  # declared sigmoid by record("output", ...)
    # outside a trainkit step record() is a no-op returning its input
    out = model(x)
    np.testing.assert_allclose(out.numpy(), tf.sigmoid(model.out(model.hidden(x))).numpy(), rtol=1e-6)

    keras.utils.set_random_seed(0)
    plain = Plain()
    plain(x[:1])
    probe = probes.build_probe(plain)
    assert probe.reason is not None and probe.tapped == []  # no graph to tap: hooks only
    trainer = Trainer(plain, loss="binary_crossentropy", optimizer="sgd", task="binary", jit_compile=False, diagnose=False, seed=0)
    trainer.fit(x, y, epochs=1, batch_size=32, verbose=0)
    names = trainer._train_loop.names
    assert [n for n in names if n.startswith("grad_norm/")] == ["grad_norm/global", "grad_norm/hidden/kernel", "grad_norm/hidden/bias", "grad_norm/out/kernel", "grad_norm/out/bias"]
    # Its layers are read as they are called, in call order; the output takes its layer's sigmoid.
    layers = [n.split("/")[1] for n in names if n.endswith("/mean")]
    assert layers == ["hidden", "out", "output"]
    assert {"activation/hidden/dead_fraction", "activation/output/saturated_fraction"} <= set(names)
    last = {name: value for step, name, value in trainer.step_table() if step == 0}
    assert last["activation/out/mean"] == last["activation/output/mean"]


def test_record_suffixes_repeated_names_and_ignores_symbolic_tensors():
    with probes.collect() as taps:
        probes.record("block", tf.ones((2, 3)), activation="relu")
        probes.record("block", tf.zeros((2, 3)), activation="relu")
        probes.record("symbolic", keras.Input((3,)))
    assert [t.name for t in taps] == ["block", "block"]  # suffixed when the probe merges them
    assert [t.name for t in probes._unique(taps)] == ["block", "block_1"]
    free = tf.ones(1)
    assert probes.record("free", free) is free  # no collector: a no-op returning its input


def test_record_refuses_an_activation_name_that_names_none():
    # "rleu" was taken as it was: the layer got a linear layer's statistics (no dead_fraction), and
    # dead-relu never looked at it.
    with probes.collect() as taps:
        with pytest.raises(ArgumentError) as info:
            probes.record("hidden", tf.ones((2, 3)), activation="rleu")
        probes.record("gelu", tf.ones((2, 3)), activation="gelu")  # a Keras activation without statistics of its own
        probes.record("fn", tf.ones((2, 3)), activation=keras.activations.relu)
    assert info.value.code == "bad-argument" and 'Did you mean "relu"?' in info.value.message
    assert [(t.name, t.activation) for t in taps] == [("gelu", "gelu"), ("fn", "relu")]
    assert probes.record("free", tf.ones(1), activation="rleu") is not None  # outside a trainkit step: a no-op


@pytest.mark.parametrize(("layer", "expected"), [
    (keras.layers.Dense(2), None),
    (keras.layers.Dense(2, activation="gelu"), "gelu"),
    (keras.layers.Conv2D(2, 3, activation="relu"), "relu"),
    (keras.layers.Activation("sigmoid"), "sigmoid"),
    (keras.layers.ReLU(), "relu"),
    (keras.layers.ReLU(negative_slope=0.2), "leaky_relu"),
    (keras.layers.Softmax(), "softmax"),
    (keras.layers.Dropout(0.1), None),
    (keras.layers.LSTM(2), None),
    (keras.layers.TimeDistributed(keras.layers.Dense(2, activation="relu")), "relu"),
    (keras.layers.TimeDistributed(keras.layers.Dense(2)), None),
])
def test_layer_activation_rules(layer, expected):
    assert probes.layer_activation(layer) == expected


def nested_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([
        keras.Input((5,)), keras.layers.Dense(4, activation="relu", name="inner_dense"),
        keras.layers.Dense(4, name="inner_linear"), keras.layers.ReLU(name="inner_relu"),
    ], name="inner")
    x_in = keras.Input((5,))
    hidden = keras.layers.Dense(5, activation="tanh", name="first")(x_in)
    return keras.Model(x_in, keras.layers.Dense(1, activation="sigmoid", name="top")(inner(hidden)))


def test_nested_model_layers_are_tapped_in_model_order_and_the_forward_pass_is_the_models():
    # A nested model's layers were not tapped at all: a dead ReLU inside a block went unseen.
    model = nested_model()
    probe = probes.build_probe(model)
    assert probe.tapped == [("first", "tanh"), ("top", "sigmoid")]  # the graph's own; the rest by hooks
    x = tf.constant(rows())
    y_pred, taps = probe(x, training=True)
    np.testing.assert_array_equal(y_pred.numpy(), model(x, training=True).numpy())
    assert [(t.name, t.activation) for t in taps] == [("first", "tanh"), ("inner_dense", "relu"), ("inner_relu", "relu"), ("top", "sigmoid"), ("output", "sigmoid")]
    inner = model.get_layer("inner")
    by_name = {t.name: t.tensor for t in taps}
    first = model.get_layer("first")(x)
    np.testing.assert_allclose(by_name["inner_dense"].numpy(), inner.get_layer("inner_dense")(first).numpy(), rtol=1e-6)
    # Nothing of the hooks is left on the layers once the forward pass is traced.
    assert all("call" not in layer.__dict__ for layer in inner.layers)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_nested_model_trains_with_statistics_of_its_inner_layers(jit_compile):
    model = nested_model()
    names = stats.variable_names(model.trainable_variables, model.name)
    assert names[:4] == ["first/kernel", "first/bias", "inner/inner_dense/kernel", "inner/inner_dense/bias"]
    x = rows(32)
    y = (x[:, :1] > 0).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", jit_compile=jit_compile, diagnose=False, seed=0)
    history = trainer.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    assert all(not np.array_equal(b, a) for b, a in zip(before, model.get_weights(), strict=True))
    assert {f"grad_norm/{name}" for name in names} <= set(trainer._train_loop.names)
    last = {name: value for step, name, value in trainer.step_table() if step == 0}
    assert 0.0 <= last["activation/inner_relu/dead_fraction"] <= 1.0 and "activation/inner_dense/nonpositive_fraction" in last
    # The same losses as the model trained without statistics (nothing about the forward changed).
    plain = nested_model()
    reference = Trainer(plain, loss="binary_crossentropy", optimizer="sgd", task="binary", jit_compile=jit_compile, diagnose=False, seed=0,
                        statistics=False).fit(x, y, epochs=2, batch_size=16, verbose=0)
    np.testing.assert_allclose(history.history["loss"], reference.history["loss"], rtol=1e-5)


class Block(keras.layers.Layer):
    """A custom layer holding activated layers of its own."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.expand = keras.layers.Dense(6, activation="relu", name="expand")
        self.project = keras.layers.Dense(5, name="project")

    def call(self, x):
        return x + self.project(self.expand(x))


class Recurrent(keras.Model):
    """A recurrent layer (its cell's activation runs inside a loop) and a named hidden layer."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = keras.layers.SimpleRNN(4, name="rnn")
        self.hidden = keras.layers.Dense(4, activation="relu", name="d1")
        self.out = keras.layers.Dense(1, activation="sigmoid", name="out")

    def call(self, x):
        return self.out(probes.record("named", self.hidden(self.rnn(x)), activation="relu"))


def test_blocks_shared_calls_recurrent_layers_and_recorded_names():
    keras.utils.set_random_seed(0)
    x_in = keras.Input((5,))
    block = Block(name="block")
    model = keras.Model(x_in, keras.layers.Dense(1, name="head")(block(block(x_in))))
    _, taps = probes.build_probe(model)(tf.constant(rows()))
    # The block is called twice: its inner layer is reported once per call.
    assert [t.name for t in taps] == ["expand", "expand_1", "output"]

    # So is a layer the model's own graph calls twice (a Siamese branch).
    keras.utils.set_random_seed(0)
    a, b = keras.Input((5,)), keras.Input((5,))
    shared = keras.layers.Dense(4, activation="relu", name="shared")
    siamese = keras.Model([a, b], keras.layers.Dense(1, activation="sigmoid", name="head")(keras.layers.Subtract()([shared(a), shared(b)])))
    left, right = tf.constant(rows()), tf.constant(rows(seed=1))
    _, taps = probes.build_probe(siamese)([left, right])
    assert [t.name for t in taps] == ["shared", "shared_1", "head", "output"]
    np.testing.assert_allclose(taps[1].tensor.numpy(), shared(right).numpy(), rtol=1e-6)


def test_a_repeated_call_is_never_named_as_another_layer():
    # Keras names layers dense, dense_1, dense_2...: the second call of a Siamese branch's "dense"
    # was reported as "dense_2", the head's name, and the head itself as "dense_2_1" (dead-relu
    # then blamed the head, with the head's initializers as advice).
    keras.utils.set_random_seed(0)
    branch = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu", name="dense"),
                               keras.layers.Dense(3, activation="tanh", name="dense_1")], name="branch")
    a, b = keras.Input((5,)), keras.Input((5,))
    head = keras.layers.Dense(2, activation="relu", name="dense_2")
    model = keras.Model([a, b], keras.layers.Dense(1, name="dense_3")(head(keras.layers.Subtract()([branch(a), branch(b)]))))
    left, right = tf.constant(rows()), tf.constant(rows(seed=1))
    _, taps = probes.build_probe(model)([left, right])
    by_name = {t.name: t.tensor for t in taps}
    assert list(by_name) == ["dense", "dense_1", "dense_4", "dense_1_1", "dense_2", "output"]
    np.testing.assert_allclose(by_name["dense_2"].numpy(), model.get_layer("dense_2")(branch(left) - branch(right)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(by_name["dense_4"].numpy(), branch.get_layer("dense")(right).numpy(), rtol=1e-6)


def test_a_time_distributed_layer_is_read_whole_not_once_per_time_step():
    # TimeDistributed runs its layer once per time step: each step was reported as a layer of its
    # own (td_dense, td_dense_1 ... td_dense_4), and a padded step's units were "dead" (dead-relu
    # named td_dense_3 and td_dense_4, no layers of the model, while every unit was alive).
    keras.utils.set_random_seed(0)
    sequences = np.random.default_rng(0).normal(size=(32, 5, 4)).astype("float32")
    sequences[:, 3:] = 0.0  # padding
    inner_in = keras.Input((5, 4))
    td = keras.layers.TimeDistributed(keras.layers.Dense(6, activation="relu", name="td_dense"), name="td")
    inner = keras.Model(inner_in, td(inner_in), name="inner")
    x_in = keras.Input((5, 4))
    model = keras.Model(x_in, keras.layers.Dense(1, activation="sigmoid", name="head")(keras.layers.GlobalAveragePooling1D()(inner(x_in))))
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", jit_compile=False, diagnose=False, seed=0)
    expected = td(sequences[:16]).numpy()
    trainer.fit(sequences, (sequences[:, 0, :1] > 0).astype("float32"), epochs=1, batch_size=16, shuffle=False, verbose=0)
    first = {name: value for step, name, value in trainer.step_table() if step == 0}
    assert sorted({name.split("/")[1] for name in first if name.startswith("activation/")}) == ["head", "output", "td"]
    assert first["activation/td/dead_fraction"] == float(np.mean(~(expected > 0).any(axis=(0, 1)))) == 0.0
    np.testing.assert_allclose(first["activation/td/mean"], expected.mean(), rtol=1e-5)


@pytest.mark.parametrize("nested", [False, True], ids=["in the graph", "in a nested model"])
def test_the_layers_of_a_block_a_time_distributed_layer_wraps_are_not_read_once_per_time_step(nested):
    # TimeDistributed(Sequential([Dense(relu)])) runs the block once per time step, and the hook
    # read each call: 5 steps gave 5 sets of statistics (td_dense, td_dense_1...), each over
    # that step's rows only, as a wrapped Dense's did.
    keras.utils.set_random_seed(0)
    block = keras.Sequential([keras.layers.Dense(6, activation="relu", name="td_dense")], name="block")
    td = keras.layers.TimeDistributed(block, name="td")
    x_in = keras.Input((5, 4))
    h = keras.Model(x_in, td(x_in), name="inner")(x_in) if nested else td(x_in)
    model = keras.Model(x_in, keras.layers.Dense(1, name="head")(keras.layers.GlobalAveragePooling1D()(h)))
    _, taps = probes.build_probe(model)(tf.constant(np.random.default_rng(0).normal(size=(8, 5, 4)).astype("float32")))
    assert [t.name for t in taps] == ["output"]
    assert all("call" not in layer.__dict__ for layer in block.layers)


def test_a_layer_hooked_for_another_threads_trace_is_not_read_by_this_one():
    # Hooks are installed on the layer, recordings are per thread: a model that taps a shared
    # layer from its graph, traced while another thread's model had it hooked (inside a nested
    # model), got its output through the hook as well and failed with KeyError.
    ready, done = threading.Event(), threading.Event()

    class Wait(keras.layers.Layer):
        def call(self, x):
            ready.set()
            done.wait(30)
            return x

    shared = keras.layers.Dense(4, activation="relu", name="shared")
    inner = keras.Sequential([keras.Input((5,)), shared], name="inner")
    a_in, b_in = keras.Input((5,)), keras.Input((5,))
    hooking = probes.build_probe(keras.Model(a_in, keras.layers.Dense(1, name="head_a")(Wait()(inner(a_in)))))
    tapping = probes.build_probe(keras.Model(b_in, keras.layers.Dense(1, name="head_b")(shared(b_in))))
    x = tf.constant(rows())
    names: dict[str, Any] = {}

    def trace_hooking() -> None:
        names["hooking"] = [t.name for t in hooking(x)[1]]

    def trace_tapping() -> None:
        ready.wait(30)
        try:
            names["tapping"] = [t.name for t in tapping(x)[1]]
        except Exception as err:  # reported by the assertion below
            names["tapping"] = repr(err)
        finally:
            done.set()

    threads = [threading.Thread(target=trace_hooking), threading.Thread(target=trace_tapping)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert names == {"hooking": ["shared", "output"], "tapping": ["shared", "output"]}


def test_a_layer_called_in_the_graph_and_inside_a_nested_model_is_reported_once_per_call():
    # Tapped from the graph and hooked for the nested model, its call in the graph was reported
    # twice ("shared", "shared_1") and the nested call as "shared_2".
    keras.utils.set_random_seed(0)
    shared = keras.layers.Dense(5, activation="relu", name="shared")
    inner = keras.Sequential([keras.Input((5,)), shared, keras.layers.Dense(3, activation="tanh", name="inner_tanh")], name="inner")
    x_in = keras.Input((5,))
    model = keras.Model(x_in, keras.layers.Dense(1, name="head")(inner(shared(x_in))))
    x = tf.constant(rows())
    _, taps = probes.build_probe(model)(x)
    assert [t.name for t in taps] == ["shared", "shared_1", "inner_tanh", "output"]
    np.testing.assert_allclose(taps[0].tensor.numpy(), shared(x).numpy(), rtol=1e-6)
    np.testing.assert_allclose(taps[1].tensor.numpy(), shared(shared(x)).numpy(), rtol=1e-6)


def test_nested_layers_whose_names_repeat_are_reported_by_their_path():
    # Two blocks built by one function both hold a "h": the second's dead units read "layer 'h'
    # (its later call, h_1)", a call of the first, with the first's initializers in the advice.
    from trainkit.diagnosis.model_facts import layer_initializers, layer_names

    def block(name: str, bias: float) -> keras.Model:
        x_in = keras.Input((5,))
        dense = keras.layers.Dense(4, activation="relu", name="h", bias_initializer=keras.initializers.Constant(bias))
        return keras.Model(x_in, dense(x_in), name=name)

    keras.utils.set_random_seed(0)
    x_in = keras.Input((5,))
    model = keras.Model(x_in, keras.layers.Dense(1, activation="sigmoid", name="out")(
        keras.layers.Concatenate()([block("good", 0.0)(x_in), block("bad", -50.0)(x_in)])))
    _, taps = probes.build_probe(model)(tf.constant(rows()))
    assert [t.name for t in taps] == ["good/h", "bad/h", "out", "output"]
    assert float(stats.activation_stats("bad/h", taps[1].tensor, "relu")["activation/bad/h/dead_fraction"]) == 1.0
    assert {"good/h", "bad/h"} <= set(layer_names(model)) and "h" not in layer_names(model)
    assert layer_initializers(model)["bad/h"]["bias"] == "constant(-50)"
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0)
    x = rows(64)
    trainer.fit(x, (x[:, 0] > 0).astype("float32"), epochs=3, batch_size=16, verbose=0)
    [dead] = [f for f in trainer.findings if f.code == "dead-relu"]
    assert dead.layer == "bad/h" and "layer 'bad/h' output 0" in dead.message and "constant(-50)" in dead.advice


def test_a_layer_first_called_for_another_model_is_tapped_in_this_ones_graph():
    # layer.output is its first call's: built into an encoder first, the layer's tap was a tensor
    # of the encoder's graph, and the probe could not be built (no hidden layer tapped at all).
    keras.utils.set_random_seed(0)
    encode = keras.layers.Dense(4, activation="relu", name="encode")
    first = keras.Input((5,))
    keras.Model(first, encode(first), name="encoder")
    x_in = keras.Input((5,))
    model = keras.Model(x_in, keras.layers.Dense(1, activation="sigmoid", name="head")(encode(keras.layers.Dense(5, activation="tanh", name="pre")(x_in))))
    probe = probes.build_probe(model)
    assert probe.reason is None and probe.tapped == [("pre", "tanh"), ("encode", "relu"), ("head", "sigmoid")]
    x = tf.constant(rows())
    _, taps = probe(x)
    np.testing.assert_allclose(taps[1].tensor.numpy(), encode(model.get_layer("pre")(x)).numpy(), rtol=1e-6)

    keras.utils.set_random_seed(0)
    recurrent = Recurrent()
    sequences = np.random.default_rng(0).normal(size=(32, 3, 5)).astype("float32")
    recurrent(sequences[:1])
    trainer = Trainer(recurrent, loss="binary_crossentropy", optimizer="sgd", task="binary", jit_compile=False, diagnose=False, seed=0)
    trainer.fit(sequences, (sequences[:, 0, :1] > 0).astype("float32"), epochs=1, batch_size=16, verbose=0)
    layers = [n.split("/")[1] for n in trainer._train_loop.names if n.endswith("/mean")]
    # The recorded name replaces the layer's for the same tensor (recorded ones come last); the
    # SimpleRNN's output is its tanh, but its cell, run inside the recurrence's loop, is left out.
    assert layers == ["rnn", "out", "named", "output"]


class Looped(keras.layers.Layer):
    """A custom layer calling an activated layer inside a loop of its own (``tf.map_fn``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.inside = keras.layers.Dense(3, activation="relu", name="inside")

    def call(self, x):
        return tf.map_fn(lambda row: self.inside(row[None])[0], x)


def test_a_layer_called_inside_a_loop_is_not_reported():
    # Its output lives in the loop's body graph: used by the step, it would fail to trace.
    keras.utils.set_random_seed(0)
    x_in = keras.Input((5,))
    model = keras.Model(x_in, keras.layers.Dense(1, name="head")(Looped(name="looped")(x_in)))
    step = tf.function(lambda x: probes.tap_stats(probes.build_probe(model)(x)[1]))
    assert sorted(step(tf.constant(rows()))) == ["activation/output/mean", "activation/output/nonfinite", "activation/output/std"]


class Branching(keras.layers.Layer):
    """A custom layer calling its activated layers inside ``keras.ops.cond`` branches."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.a = keras.layers.Dense(3, activation="relu", name="branch_a")
        self.b = keras.layers.Dense(3, activation="tanh", name="branch_b")

    def build(self, input_shape):
        self.a.build(input_shape)
        self.b.build(input_shape)

    def call(self, x):
        return keras.ops.cond(keras.ops.mean(x) > 100.0, lambda: self.a(x), lambda: self.b(x))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)


def test_a_layer_called_inside_a_cond_branch_is_not_reported():
    # As the README says: the branch's output lives in the branch's graph.
    keras.utils.set_random_seed(0)
    x_in = keras.Input((5,))
    model = keras.Model(x_in, keras.layers.Dense(1, name="head")(Branching(name="branching")(x_in)))
    step = tf.function(lambda x: probes.tap_stats(probes.build_probe(model)(x)[1]))
    assert sorted({name.split("/")[1] for name in step(tf.constant(rows()))}) == ["output"]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_channels_first_conv_layer_counts_its_channels_as_units(jit_compile):
    # Read as [batch, channels, h, w], the last axis (columns of pixels) was taken for the units: a
    # layer with 3 of its 5 channels never active reported dead_fraction 0.0.
    keras.utils.set_random_seed(0)
    conv = {"kernel_size": 3, "activation": "relu", "data_format": "channels_first", "kernel_initializer": "ones",
            "bias_initializer": keras.initializers.Constant([-100.0] * 3 + [0.0] * 2)}
    inner = keras.Sequential([keras.Input((2, 10, 8)), keras.layers.Conv2D(5, name="nested_conv", **conv)], name="inner")
    inputs = keras.Input((2, 10, 8))
    flat = keras.layers.Flatten()(keras.layers.Concatenate()([keras.layers.Conv2D(5, name="graph_conv", **conv)(inputs), inner(inputs)]))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(flat))
    x = np.random.default_rng(0).uniform(size=(16, 2, 10, 8)).astype("float32")
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.SGD(0.0), task="multiclass",
                      jit_compile=jit_compile, diagnose=False, seed=0)
    trainer.fit(x, np.arange(16) % 3, epochs=1, batch_size=16, verbose=0)
    first = {name: value for step, name, value in trainer.step_table() if step == 0}
    outputs = model.get_layer("graph_conv")(x).numpy()  # [16, 5, 8, 6]
    assert list((outputs > 0).sum(axis=(0, 2, 3)) == 0) == [True] * 3 + [False] * 2
    assert first["activation/graph_conv/dead_fraction"] == pytest.approx(0.6)
    assert first["activation/nested_conv/dead_fraction"] == pytest.approx(0.6)
    assert first["activation/graph_conv/nonpositive_fraction"] == pytest.approx(float(np.mean(outputs <= 0)))


def test_a_relu_layer_after_a_channels_first_conv_counts_the_conv_s_channels_as_units():
    # A separate ReLU() has no data_format: it was read on its last axis (pixel columns), and 3
    # of 5 channels never active reported dead_fraction 0.0.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((2, 10, 8))
    conv = keras.layers.Conv2D(5, 3, data_format="channels_first", kernel_initializer="ones",
                               bias_initializer=keras.initializers.Constant([-100.0] * 3 + [0.0] * 2))(inputs)
    relu = keras.layers.ReLU(name="relu_after_conv")(keras.layers.Dropout(0.0)(conv))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(keras.layers.Flatten()(relu)))
    x = np.random.default_rng(0).uniform(size=(16, 2, 10, 8)).astype("float32")
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.SGD(0.0), task="multiclass",
                      jit_compile=False, diagnose=False, seed=0)
    trainer.fit(x, np.arange(16) % 3, epochs=1, batch_size=16, verbose=0)
    first = {name: value for step, name, value in trainer.step_table() if step == 0}
    assert first["activation/relu_after_conv/dead_fraction"] == pytest.approx(0.6)


def padded_ids(rows_: int = 32, steps: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Token ids padded with 0 to ``steps``, most rows short, and where the real tokens are."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.geometric(0.12, size=rows_) + 2, steps)
    real = np.arange(steps)[None] < lengths[:, None]
    return np.where(real, rng.integers(1, 50, size=real.shape), 0).astype(np.int32), real


@pytest.mark.parametrize("jit_compile", [False, True])
def test_masked_padding_is_left_out_of_a_sequence_layers_statistics(jit_compile):
    # A tanh Dense per timestep after Embedding(mask_zero=True): its padding positions read
    # tanh(bias) of the pad embedding, which no loss reads. Counted in, 72% padding put a layer
    # saturated at 86% of its real positions at 24% (no saturated-activations), and a ReLU unit
    # dead at every real token but active on the padding was not dead.
    keras.utils.set_random_seed(0)
    x_in = keras.Input((40,), dtype="int32")
    embedded = keras.layers.Embedding(50, 8, mask_zero=True, embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0))(x_in)
    squash = keras.layers.Dense(16, activation="tanh", name="squash", kernel_initializer=keras.initializers.RandomNormal(stddev=5.0))(embedded)
    relu = keras.layers.Dense(4, activation="relu", name="hidden", bias_initializer=keras.initializers.Constant([1.0, 1.0, -1.0, -1.0]))(embedded)
    tagged = keras.layers.Dense(3, activation="softmax", name="tags")(keras.layers.Concatenate()([squash, relu]))
    model = keras.Model(x_in, tagged)
    # Every real token's first feature 1, the pad embedding 0: the second ReLU unit is active on
    # the padding only, dead at every real token (and the last two everywhere).
    table = model.layers[1].embeddings
    table.assign(np.concatenate([np.zeros((1, 8)), np.concatenate([np.ones((49, 1)), table.numpy()[1:, 1:]], axis=1)]).astype(np.float32))
    kernel = np.zeros((8, 4), np.float32)
    kernel[0, 1] = -10.0
    model.get_layer("hidden").kernel.assign(kernel)
    x, real = padded_ids()
    got = {k: float(v) for k, v in tf.function(lambda x: probes.tap_stats(probes.build_probe(model)(x)[1], xla=jit_compile),
                                               jit_compile=jit_compile)(tf.constant(x)).items()}
    squashed = keras.Model(x_in, squash)(x).numpy()[real]
    assert got["activation/squash/saturated_fraction"] == pytest.approx(np.mean(np.abs(squashed) > 0.99), abs=1e-5)
    assert got["activation/squash/mean"] == pytest.approx(squashed.mean(), abs=1e-4)
    assert got["activation/squash/std"] == pytest.approx(squashed.std(), rel=1e-3)
    assert got["activation/squash/saturated_fraction"] > 0.5 > np.mean(np.abs(keras.Model(x_in, squash)(x).numpy()) > 0.99)
    active = keras.Model(x_in, relu)(x).numpy()[real] > 0
    assert got["activation/hidden/dead_fraction"] == pytest.approx(np.mean(~active.any(axis=0))) == 0.75
    assert got["activation/hidden/nonpositive_fraction"] == pytest.approx(1 - active.mean())
    peaked = keras.Model(x_in, tagged)(x).numpy()[real].max(axis=-1) > stats.SATURATION_THRESHOLD
    assert got["activation/output/saturated_fraction"] == pytest.approx(peaked.mean(), abs=1e-5)
    # Every tap after the Embedding carries its mask; a model without one gets none.
    _, taps = probes.build_probe(model)(tf.constant(x))
    assert {tap.name for tap in taps if tap.mask is not None} == {"squash", "hidden", "tags", "output"}
    plain = probes.build_probe(sequential())
    assert all(tap.mask is None for tap in plain(tf.constant(rows()))[1])


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("activation", ["sigmoid", "hard_sigmoid"])
def test_a_masked_sigmoid_layers_padding_is_not_counted_saturated(jit_compile, activation):
    # The padding's outputs are set to 0 before the statistics read them, and 0 lies in a
    # sigmoid's saturated band (|a - 0.5| > 0.49): 72% padding put a sigmoid layer 75% saturated
    # at its real positions at 3.3 (every padded output counted, divided by the real ones).
    keras.utils.set_random_seed(0)
    x_in = keras.Input((40,), dtype="int32")
    embedded = keras.layers.Embedding(50, 8, mask_zero=True, embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0))(x_in)
    squash = keras.layers.Dense(16, activation=activation, name="squash", kernel_initializer=keras.initializers.RandomNormal(stddev=5.0))(embedded)
    model = keras.Model(x_in, keras.layers.Dense(1)(squash))
    x, real = padded_ids()
    got = tf.function(lambda x: probes.tap_stats(probes.build_probe(model)(x)[1], xla=jit_compile), jit_compile=jit_compile)(tf.constant(x))
    squashed = keras.Model(x_in, squash)(x).numpy()[real]
    expected = np.mean(np.abs(squashed - 0.5) > stats.SATURATION_THRESHOLD - 0.5)
    assert 0.1 < expected < 0.9
    assert float(got["activation/squash/saturated_fraction"]) == pytest.approx(expected, abs=1e-5)


class Tower(keras.Model):
    """A nested model: its tanh layer is read through a hook, its mask with it."""

    def __init__(self) -> None:
        super().__init__(name="tower")
        self.squash = keras.layers.Dense(16, activation="tanh", name="inner", kernel_initializer=keras.initializers.RandomNormal(stddev=2.0))

    def call(self, x):
        return self.squash(x)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_padded_runs_saturated_layer_is_told_from_its_real_steps(jit_compile):
    # Unscaled features behind Masking, 72% of the steps padding: the tanh layer's real steps were
    # 86% saturated, its padding (tanh of its bias) never, and it read 24%: no finding.
    rng = np.random.default_rng(0)
    _, real = padded_ids(rows_=96)
    x = np.where(real[..., None], rng.normal(size=(*real.shape, 6)) * 30.0, 0.0).astype(np.float32)
    y = (rng.random(len(x)) < 0.5).astype(np.float32)
    keras.utils.set_random_seed(0)
    x_in = keras.Input((40, 6))
    masked = keras.layers.Masking()(x_in)
    hidden = keras.layers.Dense(16, activation="tanh", name="squash")(masked)
    nested = Tower()(keras.layers.Dense(6, name="lift")(masked))
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Concatenate()([hidden, nested]))
    model = keras.Model(x_in, keras.layers.Dense(1, activation="sigmoid")(pooled))
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", logdir=None, jit_compile=jit_compile)
    trainer.fit(x, y, epochs=2, batch_size=32, verbose=0)
    values = trainer._live_diagnosis.diagnoser.epoch_values("activation/squash/saturated_fraction")
    outputs = keras.Model(x_in, hidden)(x).numpy()
    assert values[-1] == pytest.approx(np.mean(np.abs(outputs[real]) > 0.99), abs=0.02)
    inner = trainer._live_diagnosis.diagnoser.epoch_values("activation/inner/saturated_fraction")
    assert inner[-1] > 0.5 > np.mean(np.abs(keras.Model(x_in, nested)(x).numpy()) > 0.99)
    assert "saturated-activations" in {f.code for f in trainer.findings}


def test_an_activation_histogram_counts_the_unmasked_positions_only():
    # The histogram of a per-step ReLU after Embedding(mask_zero=True) held every padding position
    # (the pad embedding's one output per unit, 0 or not), mostly padding at 72% of the steps.
    from trainkit.histograms import ProbeHistograms

    x, real = padded_ids(rows_=32)
    y = (np.random.default_rng(0).random(32) < 0.5).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((40,), dtype="int32"), keras.layers.Embedding(50, 8, mask_zero=True),
                              keras.layers.Dense(3, activation="relu", name="hidden"), keras.layers.GlobalAveragePooling1D(),
                              keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", logdir=None)
    trainer.fit(x, y, epochs=1, batch_size=32, verbose=0)
    histograms = ProbeHistograms(trainer)
    histograms.batch = (tf.constant(x), tf.constant(y))
    buckets = histograms.buckets()
    assert buckets["histograms/activations/hidden"][:, 2].sum() == real.sum() * 3
