"""CompiledLoop on its own: buffers, partial calls, early stop on a non-finite loss."""

from __future__ import annotations

import gc
import itertools
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainkit.loop import CompiledLoop, compile_function, epoch_batches


def mean_step(batch):
    x, _ = batch
    return {"loss": tf.reduce_mean(x), "max": tf.reduce_max(x)}


def data_with_nan_in_batch(bad_batch: int | None, rows: int = 40, batch: int = 4):
    x = np.arange(rows, dtype=np.float32).reshape(rows, 1)
    if bad_batch is not None:
        x[bad_batch * batch, 0] = np.nan
    return (tf.constant(x), tf.zeros((rows, 1))), x


def test_epoch_batches_cover_every_row_once_with_partial_last_batch():
    order = np.random.default_rng(0).permutation(10)
    full, partial = epoch_batches(order, 4)
    assert full.shape == (2, 4) and partial.shape == (1, 2)
    assert sorted(np.concatenate([full.ravel(), partial.ravel()]).tolist()) == list(range(10))
    assert epoch_batches(np.arange(8), 4)[1] is None


@pytest.mark.parametrize("jit", [False, True])
def test_in_memory_call_returns_one_row_per_step_with_batch_sizes(jit):
    data, x = data_with_nan_in_batch(None)
    loop = CompiledLoop(mean_step, jit_compile=jit)
    loop.discover_names((tf.TensorSpec((None, 1)), tf.TensorSpec((None, 1))))
    indices = tf.constant(np.arange(40, dtype=np.int32).reshape(10, 4))
    out = loop.run_in_memory(data, indices, start=3, num_steps=5, capacity=8)
    assert out.steps == 5 and out.names == ("loss", "max")
    expected = [x[i * 4 : i * 4 + 4].mean() for i in range(3, 8)]
    np.testing.assert_allclose(out.as_dict()["loss"], expected)
    assert out.batch_sizes.tolist() == [4] * 5


@pytest.mark.parametrize("stop", [True, False])
def test_call_stops_right_after_the_first_nonfinite_loss_only_when_asked(stop):
    data, _ = data_with_nan_in_batch(bad_batch=2)
    loop = CompiledLoop(mean_step, stop_on_nonfinite=stop)
    loop.discover_names((tf.TensorSpec((None, 1)), tf.TensorSpec((None, 1))))
    indices = tf.constant(np.arange(40, dtype=np.int32).reshape(10, 4))
    out = loop.run_in_memory(data, indices, start=0, num_steps=10, capacity=10)
    losses = out.as_dict()["loss"]
    if stop:
        assert out.steps == 3 and np.isnan(losses[-1]) and np.isfinite(losses[:-1]).all()
    else:
        assert out.steps == 10 and np.isnan(losses[2])


@pytest.mark.parametrize("jit", [False, True])
def test_streaming_call_stops_on_nonfinite_and_on_exhaustion(jit):
    _, x = data_with_nan_in_batch(bad_batch=1, rows=12, batch=4)
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros_like(x))).batch(4)
    loop = CompiledLoop(mean_step, stop_on_nonfinite=True, jit_compile=jit)
    loop.discover_names(dataset.element_spec)
    assert loop.run_streaming(iter(dataset), 8).steps == 2
    clean = tf.data.Dataset.from_tensor_slices((np.ones((10, 1), np.float32), np.zeros((10, 1), np.float32))).batch(4)
    out = loop.run_streaming(iter(clean), 8)
    assert out.steps == 3 and out.batch_sizes.tolist() == [4, 4, 2]


@pytest.mark.parametrize("jit", [False, True])
def test_a_call_that_ran_fewer_steps_than_its_buffer_keeps_only_its_own_rows(jit):
    # The step table keeps calls' values for 10k steps: a view of a 32-row buffer for 3 steps
    # (a streamed epoch of unknown length, an in-memory call cut short) held the whole buffer.
    clean = tf.data.Dataset.from_tensor_slices((np.ones((10, 1), np.float32), np.zeros((10, 1), np.float32))).batch(4)
    loop = CompiledLoop(mean_step, jit_compile=jit)
    loop.discover_names(clean.element_spec)
    data, _ = data_with_nan_in_batch(None)
    indices = tf.constant(np.arange(40, dtype=np.int32).reshape(10, 4))
    for out in (loop.run_streaming(iter(clean), 32), loop.run_in_memory(data, indices, start=0, num_steps=3, capacity=10)):
        assert out.steps == 3
        held = out.values if out.values.base is None else out.values.base
        assert held.nbytes <= 3 * (len(out.names) + 1) * 4


@pytest.mark.parametrize("stop_at", [None, 40, 75], ids=["clean", "nan in a stack", "nan at a stack's end"])
def test_xla_streaming_stacks_batches_with_the_same_steps_as_one_launch_per_step(monkeypatch, stop_at):
    # The XLA streaming call runs stacks of batches in one XLA loop: every step, in order, across
    # stacks, calls and the partial last batch (another shape), stopping where the per-step path stops.
    import trainkit.loop as loop_module

    x = np.arange(4 * 21 + 3, dtype=np.float32).reshape(-1, 1)  # 21 batches of 4, one of 3
    if stop_at is not None:
        x[stop_at, 0] = np.inf
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros_like(x))).batch(4)
    monkeypatch.setattr(loop_module, "_STREAM_CHUNK", 5)
    results = []
    for jit in (False, True):
        loop = CompiledLoop(mean_step, jit_compile=jit, stop_on_nonfinite=True)
        loop.discover_names(dataset.element_spec)
        iterator, calls = iter(dataset), []
        while not calls or (calls[-1].steps == 7 and np.isfinite(calls[-1].values).all()):
            calls.append(loop.run_streaming(iterator, 7))
        assert bool(loop._chunked_fns) == jit
        results.append((np.concatenate([c.values for c in calls]), np.concatenate([c.batch_sizes for c in calls]), [c.steps for c in calls]))
    (values, sizes, steps), (xla_values, xla_sizes, xla_steps) = results
    np.testing.assert_allclose(xla_values, values)
    assert xla_sizes.tolist() == sizes.tolist() and xla_steps == steps
    assert sizes.tolist() == ([4] * 21 + [3] if stop_at is None else [4] * (stop_at // 4 + 1))


def test_batches_whose_shape_changes_every_batch_run_one_step_each_with_the_same_results():
    # Every stack held one batch, padded to a whole stack of zeros: 2.2x slower than one launch a step.
    sizes = [4, 3] * 6
    x = np.arange(sum(sizes), dtype=np.float32).reshape(-1, 1)
    bounds = np.cumsum([0, *sizes])
    spec = (tf.TensorSpec((None, 1), tf.float32), tf.TensorSpec((None, 1), tf.float32))
    dataset = tf.data.Dataset.from_generator(lambda: ((x[a:b], np.zeros_like(x[a:b])) for a, b in itertools.pairwise(bounds)),
                                             output_signature=spec)
    results = []
    for jit in (False, True):
        loop = CompiledLoop(mean_step, jit_compile=jit)
        loop.discover_names(spec)
        results.append(loop.run_streaming(iter(dataset), 20))
    plain, stacked = results
    assert stacked.batch_sizes.tolist() == plain.batch_sizes.tolist() == sizes
    np.testing.assert_allclose(stacked.values, plain.values)


@pytest.mark.parametrize(("stack_bytes", "stacked"), [(16 * 4 * 2 * 3, 3), (16 * 4 * 2 - 1, None)], ids=["three-batches", "one-batch-too-large"])
def test_stacks_hold_only_as_many_batches_as_their_byte_budget(monkeypatch, stack_bytes, stacked):
    # A stack of 32 padded batches of large images would take hundreds of MB.
    import trainkit.loop as loop_module
    from trainkit.sources import DatasetSource

    x = np.arange(16 * 10, dtype=np.float32).reshape(-1, 1)
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros_like(x))).batch(16)  # 16 rows x 2 float32 a batch
    monkeypatch.setattr(loop_module, "STACK_BYTES", stack_bytes)
    built: list[int] = []
    build = CompiledLoop._build_chunked_streaming
    monkeypatch.setattr(CompiledLoop, "_build_chunked_streaming", lambda self, spec, chunk: built.append(chunk) or build(self, spec, chunk))
    loop = CompiledLoop(mean_step, jit_compile=True)
    loop.discover_names(dataset.element_spec)
    out = loop.run_streaming(iter(dataset), 10, DatasetSource(dataset).batch_bytes)
    assert built == ([stacked] if stacked else [])
    np.testing.assert_allclose(out.as_dict()["loss"], x.reshape(10, 16).mean(axis=1))


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("bad_batch", [None, 2], ids=["clean", "nan in a full batch"])
def test_the_partial_last_batch_runs_in_the_call_that_ends_the_epoch(jit, bad_batch):
    data, x = data_with_nan_in_batch(bad_batch, rows=42)  # 10 batches of 4 and a partial one of 2
    loop = CompiledLoop(mean_step, jit_compile=jit, stop_on_nonfinite=True)
    loop.discover_names((tf.TensorSpec((None, 1)), tf.TensorSpec((None, 1))))
    full, partial = epoch_batches(np.arange(42), 4)
    out = loop.run_in_memory(data, tf.constant(full), start=6, num_steps=4, capacity=8, tail=tf.constant(partial))
    if bad_batch is None:
        assert out.steps == 5 and out.batch_sizes.tolist() == [4, 4, 4, 4, 2]
        np.testing.assert_allclose(out.as_dict()["loss"][-1], x[40:].mean())
    out = loop.run_in_memory(data, tf.constant(full), start=0, num_steps=8, capacity=8, tail=tf.constant(partial))
    if bad_batch is None:
        assert out.steps == 9 and out.batch_sizes[-1] == 2
    else:  # stopped at the bad batch: the partial one does not run after it
        assert out.steps == 3 and np.isnan(out.as_dict()["loss"][-1])


@pytest.mark.parametrize("bad_batch", [None, 2], ids=["clean", "nan in a full batch"])
def test_names_learnt_from_the_in_memory_loop_serve_every_call_of_the_epoch(bad_batch):
    """Without XLA, discover_names traces the in-memory call itself for the epoch's batch shapes:
    calls of any length, with the partial batch or without it, reuse that one trace."""
    data, x = data_with_nan_in_batch(bad_batch, rows=42)  # 10 batches of 4 and a partial one of 2
    traced = []

    def counted_step(batch):
        traced.append(batch[0].shape[0])
        return mean_step(batch)

    loop = CompiledLoop(counted_step, stop_on_nonfinite=True)
    assert loop.discover_names((tf.TensorSpec((None, 1)), tf.TensorSpec((None, 1))), batch_rows=4, tail_rows=2) == ("loss", "max")
    full, partial = epoch_batches(np.arange(42), 4)
    indices, tail = tf.constant(full), tf.constant(partial)
    calls = [loop.run_in_memory(data, indices, start, steps, 10, tail, run_tail=start + steps == 10) for start, steps in ((0, 1), (1, 0), (1, 9))]
    assert traced == [4, None]  # the partial batch's rows left open, for data of any size
    ((key, fn),) = loop._in_memory_fns.items()
    assert key is None and fn.experimental_get_tracing_count() == 1
    assert [call.steps for call in calls[:2]] == [1, 0]
    if bad_batch is None:
        assert calls[2].batch_sizes.tolist() == [4] * 9 + [2]
        np.testing.assert_allclose(calls[2].as_dict()["loss"], [x[i : i + 4].mean() for i in range(4, 42, 4)])
    else:  # stopped at the bad batch: the partial one does not run after it
        assert calls[2].steps == 2 and np.isnan(calls[2].as_dict()["loss"][-1])


@pytest.mark.parametrize("bad_batch", [None, 2], ids=["clean", "nan in a full batch"])
def test_data_without_a_partial_batch_reuses_the_trace_with_one(bad_batch):
    """Without XLA, data with no partial batch after data with one (a fit with validation_split
    after a fit without) runs through the trace that has the tail, leaving it unrun: the whole
    loop, the step twice, was traced again."""
    traced = []

    def counted_step(batch):
        traced.append(batch[0].shape[0])
        return mean_step(batch)

    loop = CompiledLoop(counted_step, stop_on_nonfinite=True)
    loop.discover_names((tf.TensorSpec((None, 1)), tf.TensorSpec((None, 1))), batch_rows=4, tail_rows=2)  # 42 rows
    data, x = data_with_nan_in_batch(bad_batch, rows=40)  # 10 full batches, no partial one
    full, partial = epoch_batches(np.arange(40), 4)
    assert partial is None
    out = loop.run_in_memory(data, tf.constant(full), 0, 10, 10)
    assert traced == [4, None]
    ((_, fn),) = loop._in_memory_fns.items()
    assert fn.experimental_get_tracing_count() == 1
    if bad_batch is None:
        assert out.steps == 10 and out.batch_sizes.tolist() == [4] * 10
        np.testing.assert_allclose(out.as_dict()["loss"], x.reshape(10, 4).mean(axis=1))
    else:
        assert out.steps == 3 and np.isnan(out.as_dict()["loss"][-1])


@pytest.mark.parametrize("bad_batch", [None, 2], ids=["clean", "nan in a full batch"])
def test_names_learnt_from_the_streaming_loop_serve_every_call(bad_batch):
    """Without XLA, discover_names(streaming=True) traces the streaming call itself: calls of any
    length, the one that finds the iterator dry included, reuse that trace of the step."""
    _, x = data_with_nan_in_batch(bad_batch, rows=42)  # 10 batches of 4 and a partial one of 2
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros_like(x))).batch(4)
    traced = []

    def counted_step(batch):
        traced.append(batch[0].shape[0])
        return mean_step(batch)

    loop = CompiledLoop(counted_step, stop_on_nonfinite=True)
    assert loop.discover_names(dataset.element_spec, streaming=True) == ("loss", "max")
    iterator = iter(dataset)
    calls = [loop.run_streaming(iterator, capacity) for capacity in (1, 5, 8, 3)]
    assert traced == [None]
    assert loop._streaming_fn.experimental_get_tracing_count() == 1
    losses = np.concatenate([call.as_dict()["loss"] for call in calls])
    if bad_batch is None:
        assert [call.steps for call in calls] == [1, 5, 5, 0]
        assert np.concatenate([call.batch_sizes for call in calls]).tolist() == [4] * 10 + [2]
        np.testing.assert_allclose(losses, [x[i : i + 4].mean() for i in range(0, 42, 4)])
    else:  # the call stops right after the bad batch; the next one goes on from there
        assert [call.steps for call in calls] == [1, 2, 8, 0]
        assert np.isnan(losses[2]) and np.isfinite(np.delete(losses, 2)).all()


def test_names_learnt_from_the_distributed_streaming_loop_serve_its_calls():
    """Under a strategy, discover_distributed_names traces the streaming call itself: the
    replicated step was traced alone first, then again in that call."""
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    x = np.arange(42, dtype=np.float32).reshape(42, 1)
    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, np.zeros_like(x))).batch(4))
    traced = []

    def counted_step(batch):
        traced.append(batch[0].shape[0])
        return mean_step(batch)

    loop = CompiledLoop(counted_step, strategy=strategy)
    iterator = iter(dataset)
    assert loop.discover_distributed_names(iterator) == ("loss", "max")
    calls = [loop.run_streaming(iterator, capacity) for capacity in (3, 16)]
    assert len(traced) == 1 and loop._streaming_fn.experimental_get_tracing_count() == 1
    assert [call.steps for call in calls] == [3, 8]
    np.testing.assert_allclose(np.concatenate([call.as_dict()["loss"] for call in calls]), [x[i : i + 4].mean() for i in range(0, 42, 4)])


@pytest.mark.parametrize("jit", [False, True], ids=["plain", "xla stacks"])
def test_streaming_calls_are_traced_without_autograph(monkeypatch, jit):
    """The streaming loops are tf.while_loop and tf.cond as written: AutoGraph converting their
    Python while/for/if took ~0.6 s of a small MLP's first fit on a dataset (~1.4 s with XLA)."""
    from tensorflow.python.autograph.impl import api

    converted = []
    real = api.converted_call
    monkeypatch.setattr(api, "converted_call", lambda f, *args, **kwargs: converted.append(getattr(f, "__name__", f)) or real(f, *args, **kwargs))
    x = np.arange(42, dtype=np.float32).reshape(42, 1)
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros_like(x))).batch(4)
    loop = CompiledLoop(mean_step, jit_compile=jit)
    loop.discover_names(dataset.element_spec, streaming=True)
    out = loop.run_streaming(iter(dataset), 16)
    assert converted == []
    assert out.steps == 11 and out.batch_sizes.tolist() == [4] * 10 + [2]
    np.testing.assert_allclose(out.as_dict()["loss"], [x[i : i + 4].mean() for i in range(0, 42, 4)])


def test_a_dataset_source_reads_its_first_batch_once_for_every_use():
    """batch_bytes and first_batch share one read: each read starts a pass through the pipeline."""
    from trainkit.sources import DatasetSource

    passes = []

    def rows():
        passes.append(1)
        for i in range(20):
            yield np.full([3], i, np.float32), np.float32(i)

    spec = (tf.TensorSpec([3], tf.float32), tf.TensorSpec([], tf.float32))
    source = DatasetSource(tf.data.Dataset.from_generator(rows, output_signature=spec).batch(8))  # batch axis None
    assert source.batch_bytes() == 8 * 3 * 4 + 8 * 4
    first_x, first_y = source.first_batch()
    assert first_x.shape == (8, 3)
    assert source.batch_bytes() == 8 * 3 * 4 + 8 * 4
    assert len(passes) == 1
    np.testing.assert_array_equal(first_y, np.arange(8))


def test_a_dataset_sample_stops_at_its_byte_budget(monkeypatch):
    import trainkit.sources as sources

    x = np.zeros([100, 256], np.float32)  # batches of 10 rows: 10 KiB each, with their targets
    source = sources.DatasetSource(tf.data.Dataset.from_tensor_slices((x, x[:, 0])).batch(10))
    monkeypatch.setattr(sources, "SAMPLE_BYTES", 25 * 1024)
    kept = source.sample(8)
    assert len(kept) == 3  # the batch that reaches the budget is the last one read
    assert len(source.sample(16)) == 3 and source.first_batch() is kept[0]
    source.release_sample(1)
    assert len(source.sample()) == 1


def test_a_sample_cut_short_by_its_byte_budget_is_not_all_of_the_dataset(monkeypatch):
    # The 3 batches the budget let in were taken for every batch of the 10 (sampled_all): the chance
    # level then read no row past them, as if the dataset had ended there.
    import trainkit.sources as sources

    x = np.zeros([100, 256], np.float32)
    monkeypatch.setattr(sources, "SAMPLE_BYTES", 25 * 1024)
    source = sources.DatasetSource(tf.data.Dataset.from_tensor_slices((x, x[:, 0])).batch(10))
    assert len(source.sample()) == 3 and not source.sampled_all
    short = sources.DatasetSource(tf.data.Dataset.from_tensor_slices((x[:20], x[:20, 0])).batch(10))
    assert len(short.sample()) == 2 and short.sampled_all  # it ended before the budget


def test_the_rows_past_the_checks_sample_are_read_from_the_kept_batches_first():
    # The shared read past the checks' 8 batches started a pass of its own at skip(8): the 8 sampled
    # batches went through the pipeline again (its maps, a file's parsing) and the 8 kept after
    # them were read twice; 1,000-row batches mapped 28 before training for the 16 kept.
    import trainkit.sources as sources
    from trainkit.checks.data_sampling import FURTHER_ROWS

    y = np.arange(6000, dtype=np.float32)
    read = []

    def rows():
        for value in y:
            read.append(1)
            yield np.full(3, value, np.float32), value

    spec = (tf.TensorSpec([3], tf.float32), tf.TensorSpec([], tf.float32))
    for batch in (256, 32):  # the kept batches hold the budget's 2,048 rows; they do not
        read.clear()
        source = sources.DatasetSource(tf.data.Dataset.from_generator(rows, output_signature=spec).batch(batch))
        kept = source.sample()
        reader = source.shared_further_rows(8, kept[0][0])
        labels = reader.labels()
        np.testing.assert_array_equal(labels, y[8 * batch : 8 * batch + len(labels)])  # the same rows, in order
        assert len(labels) >= FURTHER_ROWS and not reader.ended and reader.inputs_vary()
        if batch == 256:
            assert len(read) == 16 * batch  # the sample's pass alone
    short = sources.DatasetSource(tf.data.Dataset.from_tensor_slices((y[:200, None], y[:200])).batch(32))  # 7 batches: all kept
    reader = short.shared_further_rows(4, short.sample()[0][0])
    np.testing.assert_array_equal(reader.labels(), y[128:200])
    assert reader.ended


# ------------------------------------------------------------------- what a finished trainer leaves


def _custom_gradient_names() -> set[str]:
    from tensorflow.python.framework import ops

    return {name for name in ops._gradient_registry._registry if name.startswith("CustomGradient-")}


@tf.custom_gradient
def _half_gradient(x):
    return tf.identity(x), lambda dy: 0.5 * dy


@pytest.mark.parametrize("autograph", [False, True])
def test_the_custom_gradients_a_function_traced_go_when_it_does(autograph):
    # TensorFlow keeps each tf.custom_gradient traced in a graph (and so the graph) for the life of
    # the process; Keras's optimizers trace one in every optimizer.apply.
    v = tf.Variable(3.0)

    def step(x):
        with tf.GradientTape() as tape:
            y = _half_gradient(v * x)
        return tape.gradient(y, v)

    before = _custom_gradient_names()
    fn = compile_function(step, autograph=autograph)
    assert float(fn(tf.constant(5.0))) == 2.5  # the custom gradient is used (5.0 without it)
    assert fn.__name__ == "step" and fn.experimental_get_tracing_count() == 1
    added = _custom_gradient_names() - before
    assert added
    del fn
    gc.collect()
    assert not added & _custom_gradient_names()


def test_a_user_tf_function_traced_inside_keeps_its_custom_gradients():
    # Its graph lives on in its own cache: a later gradient through it raised LookupError ("No
    # gradient defined for operation 'IdentityN'") once trainkit's function was collected.
    @tf.function
    def user_fn(x):
        return _half_gradient(x)

    v = tf.Variable(3.0)

    def step(x):
        with tf.GradientTape() as tape:
            y = user_fn(v * x) + _half_gradient(v * x)  # one of the user's, one of the step's own
        return tape.gradient(y, v)

    before = _custom_gradient_names()
    fn = compile_function(step)
    assert float(fn(tf.constant(5.0))) == 5.0
    added = _custom_gradient_names() - before
    del fn
    gc.collect()
    assert len(added - _custom_gradient_names()) == 1  # the step's own went, the user's stayed
    with tf.GradientTape() as tape:
        y = user_fn(v * 2.0)
    assert float(tape.gradient(y, v)) == 1.0


def test_custom_gradients_inside_a_loop_body_of_the_function_go_with_it():
    v = tf.Variable(3.0)

    def step(x):
        with tf.GradientTape() as tape:
            _, y = tf.while_loop(lambda i, a: i < 2, lambda i, a: (i + 1, a + _half_gradient(v * x)), [0, tf.constant(0.0)])
        return tape.gradient(y, v)

    before = _custom_gradient_names()
    fn = compile_function(step)
    assert float(fn(tf.constant(5.0))) == 5.0
    added = _custom_gradient_names() - before
    assert added
    del fn
    gc.collect()
    assert not added & _custom_gradient_names()


def test_a_finished_trainers_traced_graphs_are_freed():
    from tensorflow.python.framework import ops

    from trainkit import Trainer

    def func_graphs() -> list[ops.Graph]:
        return [o for o in gc.get_objects() if isinstance(o, ops.Graph) and type(o) is not ops.Graph]

    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    before = {id(g) for g in func_graphs()}
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", jit_compile=False, diagnose=False, histograms_every=None, checkpoint_every=0)
    trainer.fit(x, y, epochs=1, batch_size=16, verbose=0)
    traced = [weakref.ref(g) for g in func_graphs() if id(g) not in before]
    assert any(ref().name == "run" for ref in traced)  # the training loop's graph among them
    del trainer, model
    gc.collect()
    tf.function(lambda: tf.constant(0.0))()  # TensorFlow holds on to the last graph traced until the next trace
    gc.collect()
    assert [ref().name for ref in traced if ref() is not None] == []
