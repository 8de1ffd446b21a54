"""Per-step statistics: values against hand-written references, names, writing, memory bounds."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainkit import Trainer, stats
from trainkit.callbacks import Callback

FEATURES = 6


def make_data(rows: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)).astype("float32")
    y = (x[:, :1] + 0.3 * x[:, 1:2] > 0).astype("float32")
    return x, y


def make_model(hidden: keras.layers.Layer | None = None, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((FEATURES,)),
        hidden or keras.layers.Dense(8, activation="relu", name="dense"),
        keras.layers.Dense(4, name="linear"),
        keras.layers.Activation("tanh", name="squash"),
        keras.layers.Dense(1, activation="sigmoid", name="head"),
    ])


def make_trainer(model: keras.Model | None = None, **kwargs) -> Trainer:
    kwargs.setdefault("loss", "binary_crossentropy")
    kwargs.setdefault("optimizer", keras.optimizers.SGD(0.1))
    kwargs.setdefault("task", "binary")
    kwargs.setdefault("seed", 0)
    kwargs.setdefault("jit_compile", False)
    # The live diagnosis is another consumer of these statistics; these tests look at the values.
    kwargs.setdefault("diagnose", False)
    return Trainer(model or make_model(), **kwargs)


def one_step(trainer: Trainer, x: np.ndarray, y: np.ndarray, jit_compile: bool = False) -> dict[str, float]:
    """Runs the trainer's train_step once, compiled, on one batch; bypasses fit's data checks."""
    trainer.model.build((None, x.shape[1]))
    trainer.optimizer.build(trainer.model.trainable_variables)
    trainer._step_xla = jit_compile
    step = tf.function(trainer.train_step, jit_compile=jit_compile)
    return {k: float(v) for k, v in step((tf.constant(x), tf.constant(y))).items()}


def first_step_stats(trainer: Trainer, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The statistics of step 0 of a one-batch fit (batch = all rows, no shuffling)."""
    trainer.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
    return {name: value for step, name, value in trainer.step_table() if step == 0}


def test_gradient_norms_equal_a_hand_written_tape():
    x, y = make_data(32)
    model = make_model()
    with tf.GradientTape() as tape:
        loss = keras.losses.BinaryCrossentropy()(y, model(x, training=True))
    expected = {v.path.removeprefix(model.name + "/"): float(tf.norm(g)) for v, g in zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables), strict=True)}

    got = first_step_stats(make_trainer(model), x, y)
    assert got["loss"] == pytest.approx(float(loss), rel=1e-6)
    for var, norm in expected.items():
        assert got[stats.grad_norm_name(var)] == pytest.approx(norm, rel=1e-5), var
    assert got[stats.GLOBAL_GRAD_NORM] == pytest.approx(float(np.sqrt(sum(n**2 for n in expected.values()))), rel=1e-5)
    assert set(expected) == {"dense/kernel", "dense/bias", "linear/kernel", "linear/bias", "head/kernel", "head/bias"}


def test_gradient_norms_are_before_clipping_and_update_ratios_after_it():
    # As the README says: grad_norm is the loss's gradient, update_ratio the step clipping left.
    x, y = make_data(32)
    plain = first_step_stats(make_trainer(make_model()), x, y)
    clipped = first_step_stats(make_trainer(make_model(), optimizer=keras.optimizers.SGD(0.1, global_clipnorm=1e-3)), x, y)
    assert clipped[stats.GLOBAL_GRAD_NORM] == pytest.approx(plain[stats.GLOBAL_GRAD_NORM], rel=1e-6)
    assert plain[stats.GLOBAL_GRAD_NORM] > 0.01
    ratio = stats.update_ratio_name("dense/kernel")
    assert clipped[ratio] == pytest.approx(plain[ratio] * 1e-3 / plain[stats.GLOBAL_GRAD_NORM], rel=1e-3)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_an_embeddings_gradient_norm_adds_the_rows_of_repeated_ids(jit_compile):
    # 8 ids a row from a vocabulary of 3: every id repeats, and the dense gradient sums its rows.
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 3, size=(32, 8)), rng.integers(0, 2, size=(32, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,), dtype="int32"), keras.layers.Embedding(3, 4, name="embedding"),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid", name="head")])
    with tf.GradientTape() as tape:
        loss = keras.losses.BinaryCrossentropy()(y, model(x, training=True))
    gradients = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]  # sparse -> dense
    expected = float(tf.norm(gradients[0]))

    got = first_step_stats(make_trainer(model, jit_compile=jit_compile), x, y)
    assert got[stats.grad_norm_name("embedding/embeddings")] == pytest.approx(expected, rel=1e-5)
    assert got[stats.GLOBAL_GRAD_NORM] == pytest.approx(float(tf.linalg.global_norm(gradients)), rel=1e-5)
    assert got[stats.grad_nonfinite_name("embedding/embeddings")] == 0


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_sparse_gradients_histogram_counts_the_rows_of_the_dense_gradient(jit_compile):
    # One row per id occurrence was counted: id 2's two rows, where the gradient holds their sum.
    values, ids = [[1.0, 2.0], [3.0, 4.0], [10.0, 20.0], [5.0, 6.0]], [2, 0, 5, 2]

    @tf.function(jit_compile=jit_compile)
    def counted() -> tf.Tensor:
        gradient = tf.IndexedSlices(tf.constant(values), tf.constant(ids), tf.constant([7, 2]))
        return stats.histograms([stats.histogram_entries(gradient)], xla=jit_compile)

    dense = np.zeros((7, 2), np.float32)
    np.add.at(dense, ids, values)
    expected = stats.histograms([tf.constant(dense[[0, 2, 5]])])  # the ids' rows: [3, 4], [6, 8], [10, 20]
    np.testing.assert_allclose(counted().numpy(), expected.numpy())
    assert counted().numpy()[0, :, 2].sum() == 6


def test_gradient_histograms_under_mixed_float16_are_those_of_the_loss_scaled_step():
    # The probe batch's gradients were taken of the unscaled loss: the float16 backward pass
    # flushed those under 6e-8 to 0, and the first layer's kernel histogram was all zeros
    # (range [0, 0]) where float32 and the loss-scaled training step see [-9.4e-8, 4.2e-8].
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8)).astype("float32")
    y = 1e-3 * x[:, :1]
    buckets = {}
    try:
        for policy in ("float32", "mixed_float16"):
            keras.mixed_precision.set_global_policy(policy)
            keras.utils.set_random_seed(0)
            init = keras.initializers.RandomNormal(stddev=0.02)
            model = keras.Sequential([keras.Input((8,))] + [keras.layers.Dense(32, activation="tanh", kernel_initializer=init, name=f"d{i}") for i in range(4)]
                                     + [keras.layers.Dense(1, kernel_initializer=init, dtype="float32", name="out")])
            trainer = Trainer(model, loss="mse", optimizer="sgd", task="regression", seed=0, diagnose=False)
            trainer._histograms.batch = (x, y)
            buckets[policy] = trainer._histograms.buckets()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    for name in ("d0/kernel", "d3/kernel"):
        exact, half = (buckets[p][f"histograms/gradients/{name}"] for p in ("float32", "mixed_float16"))
        assert half[0, 0] < 0 < half[-1, 1], name  # not a histogram of zeros
        np.testing.assert_allclose([half[0, 0], half[-1, 1]], [exact[0, 0], exact[-1, 1]], rtol=0.05)


def test_update_ratio_and_weight_norm_equal_the_change_measured_outside():
    x, y = make_data(32)
    model = make_model()
    before = {v.path.removeprefix(model.name + "/"): v.numpy().copy() for v in model.trainable_variables}
    got = first_step_stats(make_trainer(model, optimizer=keras.optimizers.Adam(0.05)), x, y)
    assert got[stats.LEARNING_RATE] == pytest.approx(0.05)
    for variable in model.trainable_variables:
        var = variable.path.removeprefix(model.name + "/")
        after = variable.numpy()
        ratio = np.linalg.norm(after - before[var]) / np.linalg.norm(after)
        assert got[stats.weight_norm_name(var)] == pytest.approx(float(np.linalg.norm(after)), rel=1e-5), var
        assert got[stats.update_ratio_name(var)] == pytest.approx(float(ratio), rel=1e-4), var
        assert ratio > 0  # the update was applied, so a ratio of 0 would be a read after the fact


@pytest.mark.parametrize(("bias", "dead"), [(-100.0, 1.0), (100.0, 0.0)])
def test_dead_fraction_of_a_relu_layer_follows_its_bias(bias, dead):
    x, y = make_data(32)
    hidden = keras.layers.Dense(8, activation="relu", bias_initializer=keras.initializers.Constant(bias), name="hidden")
    got = first_step_stats(make_trainer(make_model(hidden)), x, y)
    assert got[stats.activation_stat_name("hidden", stats.DEAD_FRACTION)] == pytest.approx(dead)
    assert got[stats.activation_stat_name("hidden", stats.NONPOSITIVE_FRACTION)] == pytest.approx(dead)


@pytest.mark.parametrize("xla", [False, True])
@pytest.mark.parametrize("activation", ["gelu", "silu", "mish", "softplus"])
def test_a_smooth_relu_unit_is_dead_when_its_output_stays_near_zero(activation, xla):
    # A gelu layer whose bias of -8 held every unit at ~0 (and its gradient at ~1e-10) had no
    # dead fraction: dead-relu could not see it. Units never positive but passing a gradient
    # (inputs near -1) are not dead.
    rng = np.random.default_rng(0)
    pre = rng.normal(size=(32, 6)).astype("float32")
    pre[:, 0] -= 12.0  # far below 0 for every row: dead
    pre[:, 1] = -np.abs(pre[:, 1]) - 0.5  # never positive, yet a live negative output
    out = keras.activations.get(activation)(pre)
    got = {k: float(v) for k, v in tf.function(lambda: stats.layers_activation_stats([("h", out, activation)], xla=xla), jit_compile=xla)().items()}
    assert got["activation/h/dead_fraction"] == pytest.approx(1 / 6)
    assert "activation/h/nonpositive_fraction" not in got


def test_saturation_is_near_one_for_tanh_and_sigmoid_with_huge_weights():
    x, y = make_data(32)
    huge = keras.initializers.RandomNormal(stddev=100.0, seed=1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((FEATURES,)),
        keras.layers.Dense(16, activation="tanh", kernel_initializer=huge, name="squash"),
        keras.layers.Dense(1, activation="sigmoid", kernel_initializer=huge, name="head"),
    ])
    got = first_step_stats(make_trainer(model), x, y)
    assert got[stats.activation_stat_name("squash", stats.SATURATED_FRACTION)] > 0.95
    assert got[stats.activation_stat_name("head", stats.SATURATED_FRACTION)] > 0.9
    # ...and ~0 for the same layers with small weights.
    got = first_step_stats(make_trainer(make_model()), x, y)
    assert got[stats.activation_stat_name("squash", stats.SATURATED_FRACTION)] < 0.2


@pytest.mark.parametrize("jit_compile", [False, True])
def test_nonfinite_counts_when_an_input_row_holds_nan(jit_compile):
    # tanh, not relu: oneDNN's ReLU kernel (TensorFlow on recent x86 CPUs) maps NaN to 0.
    def model() -> keras.Model:
        return make_model(keras.layers.Dense(8, activation="tanh", name="dense"))

    x, y = make_data(16)
    clean = one_step(make_trainer(model()), x, y, jit_compile)
    assert all(v == 0 for k, v in clean.items() if k.endswith("nonfinite") or k.startswith("grad_nonfinite/"))
    x[3, 2] = np.nan
    got = one_step(make_trainer(model()), x, y, jit_compile)
    assert got[stats.grad_nonfinite_name("dense/kernel")] > 0
    # one NaN input reaches every unit of the first layer for that row (8 units), and the output
    assert got[stats.activation_stat_name("dense", stats.NONFINITE)] == 8
    assert got[stats.activation_stat_name("output", stats.NONFINITE)] == 1
    assert np.isnan(got[stats.GLOBAL_GRAD_NORM])


def test_xla_and_plain_steps_give_the_same_statistics():
    x, y = make_data(48)
    plain = one_step(make_trainer(make_model(seed=3)), x, y, jit_compile=False)
    xla = one_step(make_trainer(make_model(seed=3)), x, y, jit_compile=True)
    assert plain.keys() == xla.keys()
    for name in plain:
        assert xla[name] == pytest.approx(plain[name], rel=1e-4, abs=1e-6), name


@pytest.mark.parametrize("xla", [False, True])
def test_activation_stats_match_numpy_in_both_reduction_modes(xla):
    rng = np.random.default_rng(0)
    relu = np.maximum(rng.normal(size=(32, 16)), 0).astype("float32")
    relu[:, 3] = 0.0  # a dead unit
    conv = np.maximum(rng.normal(size=(4, 5, 5, 3)), 0).astype("float32")
    tanh = np.tanh(3 * rng.normal(size=(32, 8))).astype("float32")
    soft = tf.nn.softmax(10 * rng.normal(size=(32, 5)).astype("float32")).numpy()
    items = [("relu", relu, "relu"), ("conv", conv, "relu"), ("tanh", tanh, "tanh"), ("soft", soft, "softmax")]
    got = {k: float(v) for k, v in tf.function(lambda: stats.layers_activation_stats(items, xla=xla), jit_compile=xla)().items()}
    for name, value, _ in items:
        assert got[f"activation/{name}/mean"] == pytest.approx(value.mean(), abs=1e-5)
        assert got[f"activation/{name}/std"] == pytest.approx(value.std(), rel=1e-3)
        assert got[f"activation/{name}/nonfinite"] == 0
    assert got["activation/relu/dead_fraction"] == pytest.approx(1 / 16)
    assert got["activation/relu/nonpositive_fraction"] == pytest.approx(float((relu <= 0).mean()))
    assert got["activation/conv/dead_fraction"] == 0.0
    assert got["activation/tanh/saturated_fraction"] == pytest.approx(float((np.abs(tanh) > 0.99).mean()))
    assert got["activation/soft/saturated_fraction"] == pytest.approx(float((soft.max(-1) > 0.99).mean()))
    assert "activation/tanh/dead_fraction" not in got and "activation/relu/saturated_fraction" not in got


@pytest.mark.parametrize("xla", [False, True])
def test_large_tensors_get_the_same_norms_in_both_modes(xla):
    rng = np.random.default_rng(1)
    shapes = [(300, 70), (5000,), (3,), (100, 128), (40, 256), (80, 64), (2, 3, 3, 256)]  # every way _dot_sums sums
    tensors = [tf.constant(rng.normal(size=shape).astype("float32")) for shape in shapes]
    expected = [float(np.sum(t.numpy().astype(np.float64) ** 2)) for t in tensors]
    got = tf.function(lambda: stats._squares_per_variable([tensors], xla)[0], jit_compile=xla)().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize(("width", "inner", "columns"), [
    (100 * 128, 128, 128), (256 * 256, 256, 256), (32 * 512, 512, 256), (256 * 64, 64, 64),
    (256 * 32, 32, None),  # narrower pieces measured slower than none
    (500 * 70, 70, None),  # no piece width divides the rows
    (64 * 64, 64, None),   # short: one product
    (10_000, None, None),  # unknown inner axis
])
def test_long_rows_are_cut_only_into_pieces_that_keep_to_the_tensors_rows(width, inner, columns):
    # A piece spanning two of the tensor's rows made XLA's product slower than no pieces at all.
    assert stats._piece_columns(width, inner) == columns


@pytest.mark.parametrize(("width", "inner", "columns"), [(4096 * 3, 3, 256), (5000, 5000, 8), (8192, 1, 256), (4096, 1, None)])
def test_a_single_long_row_is_always_cut_into_pieces(width, inner, columns):
    # [1, N] @ [N, 1] is a vector dot, which XLA's CPU backend runs as a slow loop.
    assert stats._piece_columns(width, inner, single_row=True) == columns


def test_statistics_off_leaves_only_loss_and_user_scalars_and_no_stats_ops():
    class Penalty(Trainer):
        def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
            loss = super().compute_loss(x, y, y_pred, sample_weight, training)
            self.log_scalar("penalty", tf.reduce_mean(y_pred))
            return loss

    x, y = make_data(64)
    trainer = Penalty(make_model(), loss="binary_crossentropy", optimizer="sgd", task="binary", statistics=False, jit_compile=False, diagnose=False)
    trainer.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert trainer._train_loop.names == ("loss", "penalty")
    graph = tf.function(trainer.train_step).get_concrete_function((tf.TensorSpec((None, FEATURES)), tf.TensorSpec((None, 1)))).graph
    off_ops = [op.type for op in graph.get_operations()]
    on = make_trainer()
    graph = tf.function(on.train_step).get_concrete_function((tf.TensorSpec((None, FEATURES)), tf.TensorSpec((None, 1)))).graph
    on_ops = [op.type for op in graph.get_operations()]
    assert "L2Loss" in on_ops and "L2Loss" not in off_ops  # the norms' kernel
    assert on_ops.count("StatelessIf") == 1 and "StatelessIf" not in off_ops  # the non-finite counts guard


def test_statistics_stay_out_of_the_epoch_history_and_user_scalars_stay_in():
    class Penalty(Trainer):
        def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
            self.log_scalar("penalty", tf.reduce_mean(y_pred))
            return super().compute_loss(x, y, y_pred, sample_weight, training)

    x, y = make_data(64)
    trainer = Penalty(make_model(), loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, jit_compile=False, diagnose=False)
    history = trainer.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert set(history.history) == {"loss", "penalty"} and len(history.history["penalty"]) == 2
    assert stats.GLOBAL_GRAD_NORM in trainer._train_loop.names and "penalty" in trainer._train_loop.names


def test_callback_receives_each_calls_statistics_as_step_arrays():
    seen: list[dict[str, np.ndarray]] = []

    class Grab(Callback):
        def on_execution_end(self, first_step, outputs):
            seen.append(outputs.as_dict())

    x, y = make_data(96)
    make_trainer(steps_per_execution=2).fit(x, y, epochs=1, batch_size=32, callbacks=[Grab()], verbose=0)
    assert [len(d["loss"]) for d in seen] == [2, 1]
    for name in (stats.grad_norm_name("dense/kernel"), stats.activation_stat_name("dense", stats.DEAD_FRACTION), stats.update_ratio_name("head/bias")):
        assert all(d[name].shape == (len(d["loss"]),) and np.isfinite(d[name]).all() for d in seen), name


def test_step_table_is_bounded_and_tidy():
    x, y = make_data(320)
    trainer = make_trainer(step_table_steps=5, steps_per_execution=2)
    trainer.fit(x, y, epochs=2, batch_size=32, verbose=0)  # 20 steps
    rows = trainer.step_table()
    steps = sorted({step for step, _, _ in rows})
    assert steps == list(range(14, 20))  # at least the last 5, kept by whole calls of 2 steps
    names = trainer._train_loop.names
    assert len(rows) == len(steps) * len(names)
    assert [(step, name) for step, name, _ in rows[-len(names):]] == [(19, name) for name in names]
    unbounded = make_trainer(step_table_steps=None, steps_per_execution=2)
    unbounded.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert sorted({s for s, _, _ in unbounded.step_table()}) == list(range(20))
    none = make_trainer(step_table_steps=0)
    none.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert none.step_table() == []


def test_names_are_built_and_parsed_by_the_helpers():
    assert stats.grad_norm_name("dense/kernel") == "grad_norm/dense/kernel"
    assert stats.variable_stat_names("d/b") == ("grad_norm/d/b", "weight_norm/d/b", "update_ratio/d/b", "grad_nonfinite/d/b")
    assert stats.activation_stat_names("dense", "relu") == tuple(f"activation/dense/{s}" for s in ("mean", "std", "nonfinite", "nonpositive_fraction", "dead_fraction"))
    assert stats.activation_stat_names("h", "gelu") == ("activation/h/mean", "activation/h/std", "activation/h/nonfinite", "activation/h/dead_fraction")
    assert stats.activation_stat_names("h", "softsign") == ("activation/h/mean", "activation/h/std", "activation/h/nonfinite")
    assert "saturated_fraction" in stats.ACTIVATION_KINDS["sigmoid"]
    parsed = stats.parse_stat_name("grad_norm/block/dense/kernel")
    assert parsed == stats.StatName("grad_norm", "block/dense/kernel") and parsed.layer == "block/dense"
    assert stats.parse_stat_name("activation/output/dead_fraction") == stats.StatName("activation", "output", "dead_fraction")
    assert stats.parse_stat_name("penalty") is None and stats.parse_stat_name("activation/x/bogus") is None
    assert stats.is_statistic("learning_rate") and not stats.is_statistic("loss")
    assert stats.output_names(1) == ["output"] and stats.output_names(2) == ["output_0", "output_1"]
    assert all(stats.is_output_name(n) for n in [*stats.output_names(1), *stats.output_names(12)])
    assert not any(stats.is_output_name(n) for n in ("dense", "output_layer", "outputs", "output_", "my_output_1"))


def test_statistics_are_picked_by_kind_and_not_by_prefix():
    from trainkit.stat_names import activation_stat_of, variable_of

    assert variable_of("grad_norm/block/dense/kernel", "grad_norm") == "block/dense/kernel"
    assert variable_of("grad_norm/global", "grad_norm") is None  # all variables together: no VAR
    assert variable_of("weight_norm/dense/kernel", "grad_norm") is None
    assert variable_of("grad_norm_scale", "grad_norm") is None and variable_of("loss", "grad_norm") is None
    assert activation_stat_of("activation/block/dense/std", "mean", "std") == "block/dense"
    assert activation_stat_of("activation/dense/dead_fraction", "mean") is None
    assert activation_stat_of("activation/dense/dead_fraction") == "dense"
    assert activation_stat_of("val/mean", "mean") is None and activation_stat_of("grad_norm/dense/kernel") is None


def test_event_files_hold_one_value_per_step_histograms_and_the_layout(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata

    x, y = make_data(96)
    trainer = make_trainer(logdir=tmp_path)
    trainer.fit(x, y, epochs=2, batch_size=32, verbose=0)  # 3 steps an epoch
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0}).Reload()
    tags = events.Tags()
    for tag in (stats.grad_norm_name("dense/kernel"), stats.activation_stat_name("dense", stats.DEAD_FRACTION), "step/learning_rate"):
        assert [e.step for e in events.Scalars(tag)] == list(range(6)), tag
    histograms = {"histograms/weights/dense/kernel", "histograms/gradients/dense/kernel", "histograms/activations/dense", "histograms/activations/output"}
    assert histograms <= set(tags["tensors"])
    assert {events.SummaryMetadata(tag).plugin_data.plugin_name for tag in histograms} == {"histograms"}
    weights = events.Tensors("histograms/weights/dense/kernel")
    assert [e.step for e in weights] == [3, 6]  # once an epoch
    buckets = tf.make_ndarray(weights[-1].tensor_proto)  # [buckets, (left, right, count)]
    assert buckets[:, 2].sum() == FEATURES * 8
    (layout_event,) = events.Tensors(metadata.CONFIG_SUMMARY_TAG)
    layout = layout_pb2.Layout.FromString(tf.make_ndarray(layout_event.tensor_proto).item())
    categories = {c.title: c for c in layout.category}
    assert {"overview", "layer dense", "layer linear", "layer squash", "layer head", "layer output"} <= set(categories)
    charts = {chart.title: list(chart.multiline.tag) for chart in categories["layer dense"].chart}
    assert charts["gradient norm"] == ["^grad_norm/dense/kernel$", "^grad_norm/dense/bias$"]
    assert "dead units and outputs <= 0" in charts and "update / weight ratio" in charts


def test_a_nested_layers_activation_charts_share_its_category_with_its_gradient_charts():
    # A layer of a nested model names its variables by path (block/inner/kernel) and its
    # activations by its name (activation/inner/...): it had two custom-scalars categories,
    # "layer block/inner" with the gradient charts and "layer inner" with the activation ones.
    from trainkit.writers.tensorboard import stats_layout

    names = ["loss", stats.grad_norm_name("block/inner/kernel"), stats.update_ratio_name("block/inner/kernel"),
             stats.grad_norm_name("a/dense/kernel"), stats.grad_norm_name("b/dense/kernel"),
             stats.activation_stat_name("inner", stats.MEAN), stats.activation_stat_name("inner", stats.DEAD_FRACTION),
             stats.activation_stat_name("dense", stats.MEAN), stats.activation_stat_name("output", stats.MEAN)]
    categories = {c.title: [chart.title for chart in c.chart] for c in stats_layout(names).category}
    assert "layer inner" not in categories
    assert categories["layer block/inner"] == ["gradient norm", "update / weight ratio", "activation mean and std", "dead units and outputs <= 0"]
    # Two nested layers named dense: which one the activations are is not known, so they stay apart.
    assert categories["layer dense"] == ["activation mean and std"] and categories["layer a/dense"] == ["gradient norm"]
    assert categories["layer output"] == ["activation mean and std"]


def test_a_top_level_layers_activation_charts_stay_apart_from_a_nested_layer_of_its_name():
    # A top-level Activation named inner beside a block's Dense named inner: the nested one names its
    # activations by path (activation/block/inner/...), and the top-level one's activation/inner/...
    # were merged into "layer block/inner", two layers' lines in one chart and no "layer inner".
    from trainkit.writers.tensorboard import stats_layout

    names = [stats.grad_norm_name("block/inner/kernel"), stats.activation_stat_name("block/inner", stats.MEAN),
             stats.activation_stat_name("inner", stats.MEAN)]
    layout = {c.title: [list(chart.multiline.tag) for chart in c.chart] for c in stats_layout(names).category}
    assert layout["layer inner"] == [["^activation/inner/mean$"]]
    assert layout["layer block/inner"][-1] == ["^activation/block/inner/mean$"]


@pytest.mark.parametrize(("source", "steps_per_execution"), [("numpy", 1), ("numpy", 7), ("numpy", "auto"), ("dataset", 7), ("dataset", "auto")])
def test_histograms_every_n_steps(tmp_path, source, steps_per_execution):
    # Calls longer than N wrote one histogram per call (at steps 7 and 14 for every 3 steps).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = make_data(448)  # 14 steps of 32
    data = (x, y) if source == "numpy" else (tf.data.Dataset.from_tensor_slices((x, y)).batch(32), None)
    trainer = make_trainer(logdir=tmp_path, histograms_every=3, steps_per_execution=steps_per_execution)
    trainer.fit(*data, epochs=1, batch_size=32, verbose=0, shuffle=False)
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"tensors": 0, "scalars": 0}).Reload()
    assert [e.step for e in events.Tensors("histograms/gradients/head/kernel")] == [3, 6, 9, 12]
    step_loss = events.Scalars("step/loss")
    assert [e.step for e in step_loss] == list(range(14))  # every step still written
    # Each step has its own wall time (all of a call's steps had the time it was written at).
    assert all(later.wall_time > earlier.wall_time for earlier, later in itertools.pairwise(step_loss))
    if source == "dataset":  # calls of every size share one trace
        loop = trainer._train_loop
        functions = [f for f in (loop._streaming_fn, *loop._chunked_fns.values()) if f is not None]
        assert [f.experimental_get_tracing_count() for f in functions] == [1]


def test_histograms_every_may_be_a_numpy_integer(tmp_path):
    # np.int64(3) passed the argument check but wrote no histogram: the steps were matched by isinstance(every, int).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = make_data(192)  # 6 steps of 32
    make_trainer(logdir=tmp_path, histograms_every=np.int64(3)).fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False)
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"tensors": 0}).Reload()
    assert [e.step for e in events.Tensors("histograms/gradients/head/kernel")] == [3, 6]


def test_histograms_every_rejects_what_is_not_a_positive_int():
    with pytest.raises(ValueError, match="histograms_every"):
        make_trainer(histograms_every=0)


@pytest.mark.parametrize("xla", [False, True])
def test_step_stats_equal_the_separate_functions(xla):
    rng = np.random.default_rng(2)
    weights = [tf.Variable(rng.normal(size=shape).astype("float32")) for shape in [(70, 80), (80,), (3,)]]
    before = [w.numpy() for w in weights]
    grads = [tf.constant(rng.normal(size=w.shape).astype("float32")) for w in weights[:2]] + [None]  # unused variable
    for w, g in zip(weights, grads, strict=True):
        w.assign_sub(0.1 * (g if g is not None else tf.zeros_like(w)))
    names = ["a/kernel", "a/bias", "b/unused"]
    layers = [("relu", tf.constant(np.maximum(rng.normal(size=(16, 8)), 0).astype("float32")), "relu"),
              ("sig", tf.constant(rng.uniform(size=(16, 2)).astype("float32")), "sigmoid")]

    def both():
        fused = stats.step_stats(grads, before, weights, names, layers, xla=xla)
        separate = {**stats.gradient_stats(grads, weights, names, xla=xla), **stats.update_stats(before, weights, names, xla=xla), **stats.layers_activation_stats(layers, xla=xla)}
        return fused, separate

    fused, separate = tf.function(both, jit_compile=xla)()
    assert list(fused) == list(separate)
    for name in fused:
        assert float(fused[name]) == pytest.approx(float(separate[name]), rel=1e-5, abs=1e-7), name
    assert float(fused["grad_norm/b/unused"]) == 0.0 and float(fused["update_ratio/b/unused"]) == 0.0
    assert float(fused["update_ratio/a/bias"]) == pytest.approx(np.linalg.norm(weights[1].numpy() - before[1]) / np.linalg.norm(weights[1].numpy()), rel=1e-5)


def test_activation_passes_wait_for_every_gradient_without_xla():
    # Without XLA the executor would run them beside the backward pass's convolutions (slower).
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            hidden = tf.nn.relu(x * 2.0)
            loss = tf.reduce_sum(hidden * 3.0)
        first, second = tape.gradient(loss, [x, hidden])
        gradient_ops.update({first.op.name, second.op.name})
        return stats.step_stats([first, second], [x, hidden], [x, hidden], ["x", "hidden"], [("hidden", hidden, "relu")])

    gradient_ops: set[str] = set()
    x = tf.constant([[1.0, -1.0], [2.0, 0.5]])
    graph = tf.function(step).get_concrete_function(x).graph
    waiting = [op for op in graph.get_operations() if op.type == "Identity" and op.control_inputs]
    assert waiting, "no activation tensor waits for the gradients"
    for op in waiting:
        assert {c.name for c in op.control_inputs} == gradient_ops, op.name
    values = tf.function(step)(x)
    assert float(values["activation/hidden/mean"]) == pytest.approx(np.maximum(2 * x.numpy(), 0).mean())


def test_softmax_statistics_come_from_the_logits_without_xla():
    # oneDNN's softmax kernel costs more than the statistics; the loss never needs its output.
    logits = tf.constant(np.random.default_rng(3).normal(scale=4.0, size=(16, 5)).astype("float32"))

    def step(logits):
        return stats.step_stats([], [], [], [], [("head", tf.nn.softmax(logits), "softmax")])

    graph = tf.function(step).get_concrete_function(logits).graph
    (softmax,) = [op for op in graph.get_operations() if op.type == "Softmax"]
    assert softmax.outputs[0].consumers() == []
    def used_downstream(logits):
        probs = tf.nn.softmax(logits)
        total = tf.reduce_sum(probs)
        return stats.step_stats([], [], [], [], [("head", probs, "softmax")]), total

    graph = tf.function(used_downstream).get_concrete_function(logits).graph
    assert not [op for op in graph.get_operations() if op.type == "LogSoftmax"]  # runs anyway: not twice
    got = {name: float(value) for name, value in tf.function(step)(logits).items()}
    probs = tf.nn.softmax(logits).numpy()
    assert got["activation/head/mean"] == pytest.approx(probs.mean(), rel=1e-6)
    assert got["activation/head/std"] == pytest.approx(probs.std(), rel=1e-5)
    assert got["activation/head/saturated_fraction"] == pytest.approx((probs.max(axis=1) > 0.99).mean())


def test_step_scalar_encoder_writes_the_events_protobuf_would():
    from tensorboard.compat.proto import event_pb2

    from trainkit.writers.tensorboard import StepScalarEncoder

    tags = ["loss", "grad_norm/dense/kernel", "activation/" + "x" * 150 + "/mean"]  # a tag over 127 bytes
    values = np.array([[0.5, 1.0, -2.0], [np.nan, 3.0, 1e30], [7.0, 8.0, 9.0]], np.float32)
    records = StepScalarEncoder(tags).encode(299, values, every=2, wall_times=(12.0, 13.5))
    events = [event_pb2.Event.FromString(r) for r in records]
    assert [e.step for e in events] == [300]  # steps 299..301, every 2nd
    (event,) = events
    assert event.wall_time == 13.0  # the second of three steps that ran from 12.0 to 13.5
    assert [v.tag for v in event.summary.value] == tags
    got = [v.simple_value for v in event.summary.value]
    assert np.isnan(got[0]) and got[1:] == [3.0, np.float32(1e30)]


def test_step_scalar_encoder_writes_nothing_for_a_call_without_a_kept_step():
    # scalars_every=7 and a call of steps 1..6 crashed the writer (a reshape of 0 rows).
    from trainkit.writers.tensorboard import StepScalarEncoder

    encoder = StepScalarEncoder(["loss", "grad_norm/global"])
    assert encoder.encode(1, np.ones((6, 2), np.float32), every=7) == []
    assert len(encoder.encode(1, np.ones((7, 2), np.float32), every=7)) == 1


def test_step_scalar_encoder_spreads_wall_times_over_the_steps():
    from tensorboard.compat.proto import event_pb2

    from trainkit.writers.tensorboard import StepScalarEncoder

    records = StepScalarEncoder(["loss"]).encode(0, np.arange(4, dtype=np.float32)[:, None], wall_times=(100.0, 104.0))
    assert [event_pb2.Event.FromString(r).wall_time for r in records] == [101.0, 102.0, 103.0, 104.0]


@pytest.mark.parametrize("path", ["counted together", "counted alone", "xla"])
@pytest.mark.parametrize("case", ["spread", "one value", "no finite value", "with nan and inf"])
def test_histogram_buckets_match_tensorboards_own(case, path, monkeypatch):
    if path == "counted alone":  # every tensor takes the path of large ones
        monkeypatch.setattr(stats, "_LARGE_HISTOGRAM", 0)
    xla = path == "xla"
    from tensorboard.plugins.histogram import summary_v2

    values = {
        "spread": np.random.default_rng(3).normal(size=(40, 30)).astype("float32"),
        "one value": np.full((7, 3), 2.5, "float32"),
        "no finite value": np.array([np.nan, np.inf], "float32"),
        "with nan and inf": np.array([1.0, np.nan, -3.0, np.inf, 0.5, 2.0], "float32"),
    }[case]
    # with other tensors in the same call: each is counted on its own
    together = tf.function(lambda ts: stats.histograms(ts, xla=xla), jit_compile=xla)([tf.constant(values), tf.range(5.0), tf.zeros([0])]).numpy()
    np.testing.assert_array_equal(together[1, :, 2].sum(), 5)
    assert not together[2].any()
    got = tf.function(lambda t: stats.histograms([t], xla=xla)[0], jit_compile=xla)(tf.constant(values)).numpy()
    np.testing.assert_array_equal(got, together[0])
    finite = values[np.isfinite(values)].astype(np.float64)
    want = tf.make_ndarray(summary_v2.histogram_pb("t", finite, buckets=30).value[0].tensor)
    assert got.shape == want.shape == (30, 3)
    np.testing.assert_allclose(got[:, :2], want[:, :2], rtol=1e-6, atol=1e-6)
    assert got[:, 2].sum() == finite.size
    # float32 against float64 arithmetic may move a value sitting on an edge by one bucket, never
    # more: each cumulative count lies between TensorBoard's one bucket either side.
    got_cum, want_cum = np.cumsum(got[:, 2]), np.cumsum(want[:, 2])
    assert np.all(got_cum >= np.concatenate([[0], want_cum[:-1]])) and np.all(got_cum <= np.concatenate([want_cum[1:], [finite.size]]))


@pytest.mark.parametrize("shape", [(30, 3), (0, 3), (1, 3)])
def test_histogram_tables_encode_as_tensorboards_own_tensor_proto(shape):
    from tensorboard.util import tensor_util

    from trainkit.writers.tensorboard import _float64_tensor

    table = np.random.default_rng(5).normal(size=shape)
    got = _float64_tensor(table)
    assert got == tensor_util.make_tensor_proto(table, dtype=np.float64)
    np.testing.assert_array_equal(tensor_util.make_ndarray(got), table)


def test_histograms_of_large_tensors_under_xla_count_every_entry():
    rng = np.random.default_rng(4)
    tensors = [tf.constant(rng.normal(size=shape).astype("float32")) for shape in [(300, 300), (1000,), (256, 256)]]
    got = tf.function(lambda ts: stats.histograms(ts, xla=True), jit_compile=True)(tensors).numpy()
    plain = tf.function(stats.histograms)(tensors).numpy()
    assert got[:, :, 2].sum(axis=1).tolist() == [90000, 1000, 65536]
    np.testing.assert_allclose(got[:, :, :2], plain[:, :, :2], rtol=1e-6)
    assert np.abs(got[:, :, 2] - plain[:, :, 2]).sum() <= 4  # float rounding at bucket edges, at most


def test_epoch_learning_rate_is_the_rate_of_the_epochs_last_step(tmp_path):
    # With a schedule that changes at an epoch's boundary, epoch/learning_rate was one epoch ahead
    # of step/learning_rate (read after the last update had moved the schedule on).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = make_data(128)  # 4 steps of 32 an epoch
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([3], [0.1, 0.01])  # steps 0-3, then 4-
    trainer = make_trainer(logdir=tmp_path, optimizer=keras.optimizers.SGD(schedule))
    trainer.fit(x, y, epochs=2, batch_size=32, verbose=0)
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"scalars": 0}).Reload()
    steps = [round(e.value, 6) for e in events.Scalars("step/learning_rate")]
    assert steps == [0.1] * 4 + [0.01] * 4
    assert [round(e.value, 6) for e in events.Scalars("epoch/learning_rate")] == [0.1, 0.01]



def test_epoch_learning_rate_under_a_loss_scale_optimizer_is_the_rate_of_the_epochs_last_step(tmp_path):
    # A LossScaleOptimizer (mixed_float16, auto_scale_loss) holds no schedule of its own: the epoch's
    # rate was read through its learning_rate property, one step on, the next epoch's rate.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = make_data(128)  # 4 steps of 32 an epoch
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([3], [0.1, 0.01])  # steps 0-3, then 4-
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(schedule))
    trainer = make_trainer(logdir=tmp_path, optimizer=optimizer)
    trainer.fit(x, y, epochs=2, batch_size=32, verbose=0)
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"scalars": 0}).Reload()
    assert [round(e.value, 6) for e in events.Scalars("step/learning_rate")] == [0.1] * 4 + [0.01] * 4
    assert [round(e.value, 6) for e in events.Scalars("epoch/learning_rate")] == [0.1, 0.01]


def test_epoch_learning_rate_is_the_epochs_rate_when_a_callback_lowers_it_at_the_end(tmp_path):
    # ReduceLROnPlateau lowers the rate in on_epoch_end; epoch/learning_rate was read after it, so
    # each epoch's point showed the next epoch's rate (History and step/learning_rate: this one's).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = make_data(128)  # 4 steps of 32 an epoch
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)  # halves every epoch
    trainer = make_trainer(logdir=tmp_path, optimizer=keras.optimizers.SGD(0.1))
    history = trainer.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[plateau])
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"scalars": 0}).Reload()
    steps = [round(e.value, 6) for e in events.Scalars("step/learning_rate")]
    assert steps == [0.1] * 8 + [0.05] * 4
    assert [round(e.value, 6) for e in events.Scalars("epoch/learning_rate")] == [round(v, 6) for v in history.history["learning_rate"]] == [0.1, 0.1, 0.05]


def test_the_step_whose_loss_stops_the_run_is_written_whatever_scalars_every(tmp_path):
    # With scalars_every=4 a NaN loss at step 6 left no trace in TensorBoard (steps 0 and 4 only),
    # so `trainkit diagnose` found nothing where the report said nan-loss.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = make_data(128)
    y[96] = np.nan  # the first row of step 6 at batch size 16
    trainer = make_trainer(logdir=tmp_path, scalars_every=4, allow=["non-finite-data"])
    trainer.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert trainer.stop_reason == "nan-loss"
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"scalars": 0}).Reload()
    losses = events.Scalars("step/loss")
    assert [e.step for e in losses] == [0, 4, 6]
    assert np.isnan(losses[-1].value) and np.isfinite(losses[1].value)

def test_the_validation_run_exists_only_when_it_has_events(tmp_path):
    # Every run had a validation/ directory, listed in TensorBoard as an empty run without validation data.
    from trainkit.writers.tensorboard import RunWriter

    without, with_validation = RunWriter(tmp_path / "a"), RunWriter(tmp_path / "b")
    for writer in (without, with_validation):
        writer.scalars("train", 0, {"loss": 1.0})
    with_validation.scalars("validation", 0, {"val_loss": 2.0})
    for writer in (without, with_validation):
        writer.close()
    assert (tmp_path / "a" / "train").is_dir() and not (tmp_path / "a" / "validation").exists()
    assert len(list((tmp_path / "b" / "validation").glob("events.out.tfevents.*"))) == 1


@pytest.mark.parametrize(("rows", "spe", "every", "calls", "histogram_steps"), [
    (640, 4, 7, [4, 3, 4, 3, 4, 2], [7, 14]),  # a call cut short for histograms: the next is 4 again
    (266, 7, 4, [4, 4, 1], [4, 8]),  # due after the last full batch: before the partial one
])
def test_histogram_cuts_leave_later_calls_their_size(tmp_path, rows, spe, every, calls, histogram_steps):
    # With a fixed steps_per_execution, every call after one the histograms cut short kept its
    # size (4, 3, 3, 3, 1, 1, ...); a histogram due after the last full batch came after the tail.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class CallSizes(Callback):
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def on_execution_end(self, first_step, outputs) -> None:
            self.sizes.append(outputs.steps)

    x, y = make_data(rows)
    sizes = CallSizes()
    make_trainer(logdir=tmp_path, histograms_every=every, steps_per_execution=spe).fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False, callbacks=[sizes])
    assert sizes.sizes == calls
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"tensors": 0}).Reload()
    assert [e.step for e in events.Tensors("histograms/gradients/head/kernel")] == histogram_steps


def test_epoch_values_texts_and_histograms_carry_the_time_they_were_logged_not_written(tmp_path, monkeypatch):
    # The writer thread stamped them when it wrote them, which in a fit is during the next compiled
    # call: every epoch's epoch/loss had a wall time after the next epoch's first step (by 1-6 ms
    # for the 10-16-1 MLP, 20 epochs), and a backlog delayed them further.
    import threading
    import types

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary

    import trainkit.writers.tensorboard as tb

    clock = [1_800_000_000.0]
    monkeypatch.setattr(tb, "time", types.SimpleNamespace(time=lambda: clock[0]))
    writer = tb.RunWriter(tmp_path)
    release = threading.Event()
    writer._put(release.wait)  # the writer thread busy, as while training's next call runs
    writer.scalars("train", 0, {"loss": 1.0})
    writer.scalars("validation", 0, {"val_loss": 2.0})
    writer.text("train", 0, "note", "logged")
    writer.bucketed_histograms("train", 0, {"mine": [[0.0, 1.0, 4.0], [1.0, 2.0, 1.0]]})
    writer.summary("train", 0, custom_scalar_summary.pb(tb.stats_layout(["loss"])))
    clock[0] += 5.0  # written later
    release.set()
    writer.close()
    times = {}
    for split in ("train", "validation"):
        events = EventAccumulator(str(tmp_path / split), size_guidance={"tensors": 0, "scalars": 0}).Reload()
        times.update({(split, tag): [e.wall_time for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]})
        times.update({(split, tag): [e.wall_time for e in events.Tensors(tag)] for tag in events.Tags()["tensors"]})
    assert set(times) == {("train", "epoch/loss"), ("validation", "epoch/loss"), ("train", "note/text_summary"), ("train", "mine"),
                          ("train", "custom_scalars__config__")}
    assert all(stamps == [1_800_000_000.0] for stamps in times.values()), times


def test_writing_to_an_unknown_split_or_a_closed_writer_is_a_coded_error_where_it_is_written(tmp_path):
    # A callback's trainer.writer.scalars("val", ...) failed on the writer thread, then the next write
    # of training itself, as "RuntimeError: Writing TensorBoard events failed".
    from trainkit.errors import ArgumentError
    from trainkit.writers.tensorboard import RunWriter

    writer = RunWriter(tmp_path)
    with pytest.raises(ArgumentError, match="Unknown TensorBoard split 'val'"):
        writer.scalars("val", 0, {"loss": 1.0})
    writer.scalars("validation", 0, {"loss": 1.0})  # the writer goes on
    writer.close()
    with pytest.raises(ArgumentError) as info:
        writer.scalars("train", 1, {"loss": 1.0})
    assert info.value.code == "writer-closed"


def test_event_files_opened_in_the_same_second_sort_in_the_order_they_were_opened(tmp_path, monkeypatch):
    # TensorBoard and trainkit diagnose read a directory's event files in name order: a trainer's
    # second fit opening its file in the same second as the first, counter 10 after 9, sorted
    # first, and the readback took the earlier fit's steps for a restart (its findings, not the
    # later fit's). A flaky test showed it when the suite's files crossed 9 -> 10.
    import itertools
    import types

    import trainkit.writers.tensorboard as tb

    monkeypatch.setattr(tb, "_file_ids", itertools.count(9))
    monkeypatch.setattr(tb, "time", types.SimpleNamespace(time=lambda: 1_800_000_000.0))
    opened = [tb.RecordEventWriter(tmp_path) for _ in range(3)]
    for writer in opened:
        writer.close()
    assert sorted(path.name for path in tmp_path.iterdir()) == [writer.path.name for writer in opened]


def test_a_text_or_summary_that_cannot_be_written_is_refused_where_it_is_logged(tmp_path):
    # A callback's trainer.writer.text("train", 0, "note", None) failed on the writer thread: the
    # epoch values queued after it were dropped, and training's next write raised "RuntimeError:
    # Writing TensorBoard events failed: None values not supported", far from the callback.
    from trainkit.callbacks import Callback
    from trainkit.errors import ArgumentError
    from trainkit.writers.tensorboard import RunWriter

    writer = RunWriter(tmp_path / "direct")
    with pytest.raises(ArgumentError, match="must be a string"):
        writer.text("train", 0, "note", None)
    with pytest.raises(ArgumentError, match="takes a Summary protobuf"):
        writer.summary("train", 0, "not a proto")
    with pytest.raises(ArgumentError, match=r"must be \[k, 3\] buckets"):  # written as it was, TensorBoard showed nothing
        writer.bucketed_histograms("train", 0, {"mine": np.arange(5.0)})
    writer.bucketed_histograms("train", 0, {"mine": [[0.0, 1.0, 4.0], [1.0, 2.0, 1.0]]})
    writer.text("train", 0, "note", "fine")  # the writer goes on
    writer.close()

    class Notes(Callback):
        def on_epoch_end(self, epoch, logs):
            self.trainer.writer.text("train", epoch, "note", logs.get("missing"))

    x, y = make_data(64)
    trainer = make_trainer(logdir=tmp_path / "fit")
    with pytest.raises(ArgumentError, match="'note' must be a string"):
        trainer.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[Notes()])
    with pytest.raises(ArgumentError, match="must be a string"):
        trainer.log_text("note", 3.5)  # before any fit: it failed the next one when its writer opened


def test_a_finding_with_an_unknown_severity_is_a_coded_error():
    from trainkit import Finding
    from trainkit.errors import ArgumentError

    with pytest.raises(ArgumentError, match="severity must be one of"):
        Finding("my-code", "fatal", "message", "advice")


def test_a_batch_of_no_rows_counts_no_unit_dead():
    # Every ReLU unit is active on none of an empty batch's rows: dead_fraction read 1 for it (its
    # mean and std NaN), and a healthy MLP fed 13 empty batches of 20 (a filter that emptied them)
    # read 65% dead at every epoch: a false dead-relu.
    from trainkit.loop import StepOutputs, without_empty_batches

    names = ("loss", "activation/dense/mean", "activation/dense/dead_fraction", "activation/dense/nonfinite")
    values = np.array([[0.5, 0.2, 0.0, 0.0], [0.0, np.nan, 1.0, 0.0]])
    read = without_empty_batches(StepOutputs(names, values, np.array([32, 0])))
    np.testing.assert_array_equal(read.values[:, 2], [0.0, np.nan])
    np.testing.assert_array_equal(read.values[:, [0, 3]], values[:, [0, 3]])  # nothing else changes

    x, y = make_data(640)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).enumerate()
    batches = batches.map(lambda i, b: tuple(t[: tf.where(i % 3 == 0, 32, 0)] for t in b))  # 2 batches in 3 empty
    trainer = make_trainer(optimizer=keras.optimizers.Adam(0.01), diagnose=True)
    trainer.fit(batches, epochs=6, verbose=0)
    assert "dead-relu" not in [f.code for f in trainer.findings]
