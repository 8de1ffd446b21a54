"""How far back a recurrent layer's gradient reaches, and the finding built on it."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from trainkit import Trainer
from trainkit.time_gradients import MIN_STEPS, TimeGradients, reach, sequence_readers


def _sequences(rows: int, steps: int, label_step: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random sequences whose label is the sign of one feature at ``label_step``."""
    x = np.random.default_rng(seed).normal(size=(rows, steps, 3)).astype("float32")
    return x, (x[:, label_step, 0] > 0).astype("float32")


def _rnn_trainer(steps: int, layer: keras.layers.Layer, **kwargs) -> Trainer:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((steps, 3)), layer, keras.layers.Dense(1, activation="sigmoid")])
    return Trainer(model, loss="binary_crossentropy", task="binary", optimizer=keras.optimizers.Adam(1e-2), seed=0, jit_compile=False, **kwargs)


def test_reach_compares_the_first_and_last_tenth_of_each_row_s_real_steps():
    steps = 40
    fading = 0.5 ** np.arange(steps)[::-1]  # 1 at the last step, halving per step back
    measured = reach(np.stack([fading, 2 * fading]))
    assert measured["steps"] == steps
    assert measured["ratio"] == pytest.approx(np.mean(fading[:4]) / np.mean(fading[-4:]))
    assert measured["reach"] == int(np.sum(fading / np.mean(fading[-4:]) >= 1e-2))
    # Masked steps (gradient exactly 0: pre-padding) are left out, and each row is judged over
    # its own real steps: 40 and 50 (a median of 45), not both cut to 40.
    longer = 0.5 ** np.arange(steps + 10)[::-1]
    both = reach(np.stack([np.concatenate([np.zeros(10), fading]), longer]))
    assert both["steps"] == 45 and both["ratio"] == pytest.approx(np.median([np.mean(fading[:4]) / np.mean(fading[-4:]), np.mean(longer[:5]) / np.mean(longer[-5:])]))
    # A row too short to judge is left out, not the batch: the others' steps are compared.
    assert reach(np.stack([np.concatenate([np.zeros(steps - 10), fading[-10:]]), fading]))["steps"] == steps
    # Too short to judge, or nothing finite.
    assert reach(np.ones((2, MIN_STEPS - 1))) is None and reach(np.full((2, 50), np.nan)) is None


def test_only_recurrent_layers_that_return_their_final_state_are_read():
    # Not a Bidirectional one: its backward half makes the gradient strong at the first steps too.
    inputs = keras.Input((30, 3))
    sequence = keras.layers.LSTM(4, return_sequences=True)(inputs)
    both = keras.layers.Bidirectional(keras.layers.GRU(4))(sequence)
    model = keras.Model(inputs, keras.layers.Concatenate()([both, keras.layers.SimpleRNN(4)(sequence)]))
    assert [type(layer).__name__ for layer in sequence_readers(model)] == ["SimpleRNN"]


def test_a_recurrent_layer_inside_a_nested_model_is_measured_too():
    # Only the model's own layers were read: an encoder block holding the SimpleRNN went unmeasured.
    x, y = _sequences(32, 60, label_step=0)
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential([keras.Input((60, 3)), keras.layers.SimpleRNN(8)], name="encoder")
    model = keras.Sequential([keras.Input((60, 3)), encoder, keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", task="binary", optimizer="adam", seed=0, jit_compile=False)
    assert [layer.name for layer in sequence_readers(model)] == [encoder.layers[0].name]
    trainer._time_gradients.batch = (x, y)
    (measured,) = trainer._time_gradients.measure()
    assert measured["layer"] == encoder.layers[0].name and measured["ratio"] < 1e-3 and measured["steps"] == 60


def test_a_backwards_layer_s_steps_are_compared_in_the_order_it_reads_them_and_a_stateful_one_is_left_alone():
    # go_backwards reads the last step first: its gradient is strong at the sequence's start and
    # fades towards its end, and compared the other way round it could never vanish.
    x, y = _sequences(32, 60, label_step=-1)
    trainer = _rnn_trainer(60, keras.layers.SimpleRNN(8, go_backwards=True))
    trainer._time_gradients.batch = (x, y)
    (measured,) = trainer._time_gradients.measure()
    assert measured["go_backwards"] and measured["ratio"] < 1e-3 and measured["steps"] == 60
    # A stateful layer is not measured: the extra pass would move its kept states after the fit.
    stateful = keras.Sequential([keras.Input((60, 3), batch_size=32), keras.layers.SimpleRNN(8, stateful=True), keras.layers.Dense(1)])
    assert sequence_readers(stateful) == []


def test_a_simple_rnn_that_cannot_reach_the_label_s_step_is_told_so_beside_loss_at_chance():
    # The label is decided by the first of 60 steps: a SimpleRNN's gradient there is ~1e-13 of
    # the last steps', and the loss stays at chance. loss-at-chance said only "the labels are
    # unpredictable from the inputs, or the model cannot learn".
    x, y = _sequences(192, 60, label_step=0)
    trainer = _rnn_trainer(60, keras.layers.SimpleRNN(8))
    trainer.fit(x, y, epochs=8, batch_size=32, verbose=0, validation_split=0.25)
    found = {f.code: f for f in trainer.findings}
    through_time = found["vanishing-gradients-through-time"]
    assert through_time.layer == trainer.model.layers[0].name and through_time.evidence["steps"] == 60
    assert through_time.evidence["ratio"] < 1e-3 and through_time.evidence["reach"] < 60
    assert "Use LSTM or GRU instead of SimpleRNN" in through_time.advice and "GlobalAveragePooling1D" in through_time.advice
    assert "vanishing-gradients-through-time" in found["loss-at-chance"].evidence["explained_by"]


def test_a_fading_gradient_is_no_finding_when_the_model_learns():
    # The same fade with the label at the last step: nothing the model needs lies out of reach.
    x, y = _sequences(192, 60, label_step=-1)
    trainer = _rnn_trainer(60, keras.layers.SimpleRNN(8))
    trainer._time_gradients.batch = (x[:32], y[:32])
    assert trainer._time_gradients.measure()[0]["ratio"] < 1e-3  # it fades all the same
    history = trainer.fit(x, y, epochs=8, batch_size=32, verbose=0, validation_split=0.25)
    assert history.history["val_loss"][-1] < 0.6
    assert "vanishing-gradients-through-time" not in [f.code for f in trainer.findings]
    # A run that learned needs no reason why it could not: the end of fit does not measure it.
    assert "recurrent_reach" not in trainer._live_diagnosis.diagnoser.notes


def test_masked_padding_is_not_read_as_a_vanished_gradient():
    # Pre-padded token ids with mask_zero: the padded steps get no gradient at all, which is the
    # mask, not a fade. Only the 25 real steps of 40 are compared; 4 are too few to judge.
    ids = np.zeros((32, 40), dtype="int32")
    ids[:, -25:] = np.random.default_rng(0).integers(1, 9, size=(32, 25))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((40,), dtype="int32"), keras.layers.Embedding(10, 4, mask_zero=True),
                              keras.layers.SimpleRNN(4), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", task="binary", optimizer="adam", jit_compile=False)
    measurer = TimeGradients(trainer)
    measurer.batch = (ids, (ids[:, -1] > 4).astype("float32"))
    assert [(m["layer"], m["kind"], m["steps"]) for m in measurer.measure()] == [(model.layers[1].name, "SimpleRNN", 25)]
    short = TimeGradients(trainer)
    short.batch = (np.where(np.arange(40) < 36, 0, ids), measurer.batch[1])
    assert short.measure() == []
    # The layer's own call is back on the class after the traces: nothing is left on the instance.
    assert "call" not in vars(model.layers[1])


@pytest.mark.parametrize(("padding", "mask_zero", "tail"), [("post", False, 30), ("pre", False, 0), ("post", True, 0)])
def test_the_padding_a_layer_reads_last_unmasked_is_measured(padding, mask_zero, tail):
    # Post-padded ids through an Embedding without mask_zero: the LSTM reads 30 steps of padding
    # (the row of id 0) after the 20 real ones, and its gradient reaches only them. Pre-padding
    # puts them first, and a mask leaves them out: no padding is read last.
    real = np.random.default_rng(0).integers(1, 9, size=(32, 20))
    ids = np.zeros((32, 50), dtype="int32")
    if padding == "post":
        ids[:, :20] = real
    else:
        ids[:, -20:] = real
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((50,), dtype="int32"), keras.layers.Embedding(10, 4, mask_zero=mask_zero),
                              keras.layers.LSTM(4), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", task="binary", optimizer="adam", jit_compile=False)
    trainer._time_gradients.batch = (ids, (real[:, -1] > 4).astype("float32"))
    (measured,) = trainer._time_gradients.measure()
    assert measured["padded_tail"] == tail


def test_diagnose_reads_the_finding_back_from_the_run_s_events(tmp_path):
    from trainkit.diagnosis.readback import diagnose_run_dir

    x, y = _sequences(128, 50, label_step=0)
    trainer = _rnn_trainer(50, keras.layers.SimpleRNN(8), logdir=tmp_path)
    trainer.fit(x, y, epochs=6, batch_size=32, verbose=0, validation_split=0.25)
    live = [f.to_dict() for f in trainer.findings]
    assert "vanishing-gradients-through-time" in [f["code"] for f in live]
    assert [f.to_dict() for f in diagnose_run_dir(tmp_path)] == live


def test_a_float16_gradient_that_underflows_to_zero_is_a_vanished_step_not_a_masked_one():
    # A float16 gradient under 6e-8 is exactly 0, which was read as a masked step: a 50-step
    # SimpleRNN under mixed_float16 was judged on its last 23 steps. Only the mask leaves steps out.
    x, y = _sequences(32, 60, label_step=0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((60, 3)), keras.layers.SimpleRNN(8, dtype="mixed_float16"),
                              keras.layers.Dense(1, activation="sigmoid", dtype="float32")])
    measurer = TimeGradients(Trainer(model, loss="binary_crossentropy", task="binary", optimizer="adam", jit_compile=False))
    measurer.batch = (x, y)
    [measured] = measurer.measure()
    assert measured["steps"] == 60 and measured["ratio"] < 1e-3
