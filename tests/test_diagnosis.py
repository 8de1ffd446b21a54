"""Diagnosis rules on synthetic statistics streams, the chance level, the report, live NaN handling.

Every rule gets a stream built to show its problem (it must fire, with its evidence) and the same
healthy stream (no rule may fire on it). The streams use the statistic names of trainkit.stats.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import threading
import time
import types
from collections.abc import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainkit import Trainer
from trainkit.callbacks import Callback, EarlyStopping
from trainkit.diagnosis import (
    DIAGNOSIS_CODES,
    RULES,
    Context,
    Diagnoser,
    DiagnosisCallback,
    chance_loss,
    render_markdown,
    render_text,
)
from trainkit.diagnosis.baseline import soft_target_levels, summed_over_batch
from trainkit.diagnosis.engine import FIRST_STEPS
from trainkit.diagnosis.model_facts import float16_layers, frozen_layers, layer_inputs
from trainkit.diagnosis.number_text import format_number
from trainkit.diagnosis.run_context import _untrained_outputs, build_context
from trainkit.findings import Finding
from trainkit.sources import unpack_batch

LN2 = math.log(2)
STEPS = 10  # steps per synthetic epoch
LAYERS = ("dense", "dense_1", "dense_2")


def curve(start: float, end: float, epochs: int) -> list[float]:
    """An exponential decay from start to end over the epochs (a healthy loss curve)."""
    return [end + (start - end) * math.exp(-4 * e / max(1, epochs - 1)) for e in range(epochs)]


class Stream:
    """A synthetic run: per-epoch targets for every statistic, expanded to per-step values.

    ``values[name]`` is a function ``(epoch, step_in_epoch) -> value``; the defaults describe a
    healthy 3-layer ReLU MLP on a balanced binary task (chance ln 2) whose loss falls to 0.15.
    """

    def __init__(self, epochs: int = 20, task: str = "binary", chance: float | None = LN2) -> None:
        self.epochs = epochs
        # A recipe run's: the assertions name its advice's recipe keys (a Python fit's: test_setting_text).
        self.context = Context(task=task, loss="BinaryCrossentropy(from_logits=False)", chance_loss=chance,
                               layers=("input_layer", *LAYERS), output_layers=("dense_2",), epochs=epochs,
                               learning_rate=1e-3, optimizer="Adam", has_validation=True, recipe=True)
        train = curve(0.72, 0.15, epochs)
        val = curve(0.72, 0.2, epochs)
        self.train_loss: Callable[[int, int], float] = lambda e, s: train[e] * (1 + 0.05 * math.sin(7 * s + e))
        self.val_loss: Callable[[int], float] | None = lambda e: val[e]
        self.values: dict[str, Callable[[int, int], float]] = {
            "learning_rate": lambda e, s: 1e-3,
            "grad_norm/global": lambda e, s: 1.0 + 0.1 * math.sin(s),
        }
        for i, layer in enumerate(LAYERS):
            self.values[f"grad_norm/{layer}/kernel"] = lambda e, s, i=i: 0.3 + 0.1 * i
            self.values[f"weight_norm/{layer}/kernel"] = lambda e, s: 2.0
            self.values[f"update_ratio/{layer}/kernel"] = lambda e, s: 3e-3 * math.exp(-e / 10)
            self.values[f"update_ratio/{layer}/bias"] = lambda e, s: 1.0 if e == s == 0 else 1e-2
            self.values[f"grad_nonfinite/{layer}/kernel"] = lambda e, s: 0.0
            self.values[f"activation/{layer}/mean"] = lambda e, s: 0.5
            self.values[f"activation/{layer}/std"] = lambda e, s: 0.7
            self.values[f"activation/{layer}/nonfinite"] = lambda e, s: 0.0
        for layer in LAYERS[:2]:
            self.values[f"activation/{layer}/dead_fraction"] = lambda e, s: 0.05
            self.values[f"activation/{layer}/nonpositive_fraction"] = lambda e, s: 0.5
        # A sigmoid output: confidently saturated late in training, which is no problem.
        self.values["activation/dense_2/saturated_fraction"] = lambda e, s: min(0.9, 0.05 * e)
        self.values["activation/output/saturated_fraction"] = self.values["activation/dense_2/saturated_fraction"]
        self.notes: dict[str, object] = {}
        # More of each epoch's logs (a model with several outputs' <output>_loss), by epoch.
        self.more_logs: Callable[[int], dict[str, float]] | None = None

    def rows(self, epoch: int) -> tuple[list[str], np.ndarray]:
        names = ["loss", *self.values]
        values = np.array([[self.train_loss(epoch, s), *(f(epoch, s) for f in self.values.values())] for s in range(STEPS)])
        return names, values

    def run(self, chunk: int = STEPS, diagnoser: Diagnoser | None = None) -> Diagnoser:
        """Feeds the stream through a Diagnoser in calls of ``chunk`` steps, then finishes it."""
        d = diagnoser or Diagnoser(self.context)
        for epoch in range(self.epochs):
            names, values = self.rows(epoch)
            d.begin_epoch(epoch, epoch * STEPS)
            for start in range(0, STEPS, chunk):
                d.add_steps(epoch * STEPS + start, names, values[start : start + chunk])
            logs = {"loss": float(np.mean(values[:, 0]))}
            if self.val_loss is not None:
                logs["val_loss"] = self.val_loss(epoch)
            if self.more_logs is not None:
                logs.update(self.more_logs(epoch))
            d.end_epoch(epoch, logs)
        d.finish(self.notes)
        return d


def codes(d: Diagnoser) -> list[str]:
    return [f.code for f in d.findings]


def finding(d: Diagnoser, code: str) -> Finding:
    matches = [f for f in d.findings if f.code == code]
    assert matches, f"{code} not found; got {codes(d)}"
    return matches[0]


# -- the registry and the healthy stream ------------------------------------------------------------

def _first_steps_at(stream: Stream, loss: float) -> None:
    """Makes the stream's first 3 training steps read ``loss``; the rest as they were."""
    rest = stream.train_loss
    stream.train_loss = lambda e, st: loss if e == 0 and st < 3 else rest(e, st)


def test_registry_lists_every_issue_code_once_with_valid_severity_and_moment():
    required = {"initial-loss-too-low", "initial-loss-too-high", "loss-at-chance", "loss-collapsed", "nan-loss",
                "diverging-loss", "oscillating-loss", "plateau", "lr-too-high", "lr-too-low", "vanishing-gradients",
                "exploding-gradients", "dead-relu", "saturated-activations", "overfitting", "underfitting", "regularization-dominates"}
    assert required <= set(DIAGNOSIS_CODES)
    assert len(DIAGNOSIS_CODES) == len(set(DIAGNOSIS_CODES))
    for rule in RULES:
        assert rule.severity in ("info", "warning", "error") and rule.when in ("call", "epoch", "end") and rule.summary


def test_the_readme_names_every_check_and_finding_code():
    from pathlib import Path

    from trainkit.checks.compatibility import COMPATIBILITY_CODES
    from trainkit.checks.compile_checks import COMPILE_IGNORED
    from trainkit.checks.data_checks import DATA_RULES
    from trainkit.jit_policy import XLA_FALLBACK
    from trainkit.step_checks import STATISTICS_MISSING

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Diagnosis: findings with stable codes", 1)[1].split("\n## ", 1)[0]
    codes = {*DIAGNOSIS_CODES, *COMPATIBILITY_CODES, *(rule.code for rule in DATA_RULES), STATISTICS_MISSING, XLA_FALLBACK, COMPILE_IGNORED}
    missing = sorted(code for code in codes if f"`{code}`" not in section)
    assert not missing, f"README's diagnosis section lacks {missing}"


def test_healthy_stream_has_no_findings():
    assert Stream().run().findings == []


def test_healthy_regression_and_multiclass_streams_have_no_findings():
    regression = Stream(task="regression", chance=1.0)
    train, val = curve(1.3, 0.1, 20), curve(1.2, 0.15, 20)
    regression.train_loss = lambda e, s: train[e]
    regression.val_loss = lambda e: val[e]
    assert regression.run().findings == []
    multiclass = Stream(chance=math.log(10))
    train, val = curve(2.4, 0.2, 20), curve(2.3, 0.3, 20)
    multiclass.train_loss = lambda e, s: train[e]
    multiclass.val_loss = lambda e: val[e]
    assert multiclass.run().findings == []


# -- initial loss -------------------------------------------------------------------------------------

def test_initial_loss_far_below_chance():
    s = Stream()
    s.train_loss = lambda e, st: 0.05 if e == 0 and st < 3 else 0.04
    f = finding(s.run(), "initial-loss-too-low")
    assert f.step == 0 and f.evidence["ratio"] < 0.1 and "leak" in f.advice
    # The highest of the first losses, said so: each of them is that far below chance.
    assert f.message.startswith("The loss of the first steps was at most (the highest of the first ")


@pytest.mark.parametrize("first_step", [0, 30])
def test_initial_loss_is_judged_only_from_the_runs_first_step(first_step):
    # A resumed run (or a second fit) starts with a trained model: its first losses are no
    # evidence of leakage, and every resumed run got initial-loss-too-low.
    s = Stream()
    s.train_loss = lambda e, st: 0.04
    d = Diagnoser(s.context)
    names, values = s.rows(0)
    d.begin_epoch(first_step // STEPS, first_step)
    d.add_steps(first_step, names, values)
    assert ("initial-loss-too-low" in codes(d)) == (first_step == 0)


def sine_windows(rows: int = 960, steps: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Standardised windows of a noisy sine and the value after each (a forecast's data)."""
    t = np.arange(rows + steps)
    s = np.sin(2 * np.pi * t / 50) + 0.1 * np.random.default_rng(0).normal(size=t.size)
    s = (s - s.mean()) / s.std()
    x = s[np.arange(rows)[:, None] + np.arange(steps)[None, :]]
    return x.astype("float32"), s[steps:steps + rows, None].astype("float32")


@pytest.mark.parametrize("source", ["arrays", "dataset"])
def test_a_fresh_forecaster_starting_near_the_last_value_is_not_told_a_leak(source):
    # A fresh model's output is a random function of its window, and often correlates with the
    # next value: a GRU on a noisy sine started at 0.43 of the target variance (4 in 20 seeds under
    # half) and was told initial-loss-too-low, "a random model cannot beat chance ... a label
    # leaking". Here a Dense output that starts at 0.8 x the window's last value (~0.06 of chance).
    x, y = sine_windows()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.set_weights([np.eye(8, 1, -7, dtype="float32") * 0.8, np.zeros(1, "float32")])
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", statistics=False)
    if source == "dataset":
        trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=1, verbose=0)
    else:
        trainer.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    context = trainer._live_diagnosis.diagnoser.context
    assert "initial-loss-too-low" not in {f.code for f in trainer.findings}
    # The level of the inputs' linear fit: the sine's noise, far under what the fresh model read.
    assert context.first_steps_loss < 0.1 * context.chance_loss


@pytest.mark.parametrize("source", ["arrays", "dataset"])
def test_a_series_in_time_order_starting_at_zero_is_not_told_a_leak(source):
    # A series whose first 800 steps are 0, its windows batched in time order: a fresh LSTM's
    # first losses were 0 (zero windows, zero targets) and it was told initial-loss-too-low, "a
    # label leaking", against the variance of the whole series. Predicting 0 scores 0 on those
    # batches: the first steps' level is read on them, not on batches drawn at random.
    s = np.sin(np.arange(1200) / 10) + 0.1 * np.random.default_rng(0).normal(size=1200)
    s[:800] = 0.0
    x = s[np.arange(1184)[:, None] + np.arange(16)[None, :]][..., None].astype("float32")
    y = s[16:, None].astype("float32")
    model = keras.Sequential([keras.Input((16, 1)), keras.layers.LSTM(4), keras.layers.Dense(1)])
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", statistics=False)
    if source == "dataset":
        trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=1, verbose=0)
    else:
        trainer.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    assert "initial-loss-too-low" not in {f.code for f in trainer.findings}
    assert trainer._live_diagnosis.diagnoser.context.first_steps_loss == 0.0


def test_the_first_steps_level_of_batches_in_order_reads_the_first_rows():
    from trainkit.diagnosis.baseline import chance_loss

    y = np.concatenate([np.zeros(800), np.random.default_rng(0).normal(size=400)])[:, None]
    assert chance_loss("regression", "mse", y, batch_size=32).first_steps > 0.1
    assert chance_loss("regression", "mse", y, batch_size=32, in_order=True).first_steps == 0.0


def test_the_linear_fit_level_is_that_of_what_the_inputs_explain():
    from trainkit.diagnosis.baseline import linear_fit_level

    x, y = sine_windows()
    level = linear_fit_level("mse", x, y, batch_size=32)
    assert level is not None and level < 0.05 * float(np.var(y))
    # Inputs that explain nothing: the level of a constant, about the targets' variance.
    noise = np.random.default_rng(1).normal(size=x.shape)
    assert linear_fit_level("mse", noise, y, batch_size=32) > 0.6 * float(np.var(y))
    # Too few rows for the coefficients (the fit follows the noise), or too wide inputs: no level.
    assert linear_fit_level("mse", noise[:50], y[:50], batch_size=32) is None
    assert linear_fit_level("mse", np.zeros((960, 600)), y, batch_size=32) is None


def test_an_autoencoder_is_not_compared_with_the_identity():
    # fit(x, x): the linear fit of the inputs is the identity, loss ~2e-22, which no bottleneck
    # reaches: a healthy 10-2-10 autoencoder at 17% of chance read "worse-than-linear, 8e+20x the fit".
    from trainkit.diagnosis.baseline import linear_fit

    rng = np.random.default_rng(0)
    x = np.tanh(rng.normal(size=(600, 2)) @ rng.normal(size=(2, 10))) + 0.3 * rng.normal(size=(600, 10))
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    assert linear_fit(x, x.copy()) is None
    assert linear_fit(x + 0.1 * rng.normal(size=x.shape), x) is not None  # a denoising one's clean targets: still fitted
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2),
                              keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    trainer = Trainer(model, loss="mse", optimizer=keras.optimizers.Adam(3e-3), task="regression", seed=0, jit_compile=False)
    trainer.fit(x, x, epochs=12, batch_size=32, verbose=0, validation_split=0.2)
    assert "worse-than-linear" not in {f.code for f in trainer.findings}


def test_a_denoising_autoencoder_with_a_bottleneck_is_not_compared_with_the_linear_fit():
    # fit(x_noisy, x) on 16 independent features: the linear fit (a full-rank shrinkage of the
    # noisy rows, 0.082 on the validation rows) is out of a 4-unit code's reach (~12/16 of the
    # variance is the best it gets): at 0.753 it read "worse-than-linear, 9.1x the fit".
    from trainkit.diagnosis.baseline import linear_fit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    noisy = (x + 0.3 * rng.normal(size=x.shape)).astype(np.float32)
    assert linear_fit(noisy, x, narrowest=4) is None
    assert linear_fit(noisy, x, narrowest=16) is not None and linear_fit(noisy, x) is not None  # no bottleneck: still fitted
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(16)])
    trainer = Trainer(model, loss="mse", optimizer=keras.optimizers.Adam(1e-2), task="regression", seed=0, jit_compile=False)
    trainer.fit(noisy[:320], x[:320], epochs=8, batch_size=32, verbose=0, validation_data=(noisy[320:], x[320:]))
    assert "worse-than-linear" not in {f.code for f in trainer.findings}


def test_a_side_branch_of_one_unit_is_no_bottleneck_for_the_linear_fit():
    # A Dense(1) gate beside a 32-unit path (Multiply) took narrowest_width to 1: a denoising
    # model under SGD 1e-3, 12.5x the linear fit at 1.029, got no worse-than-linear.
    from trainkit.diagnosis.model_facts import narrowest_width

    L = keras.layers
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    noisy = (x + 0.3 * rng.normal(size=x.shape)).astype(np.float32)
    keras.utils.set_random_seed(0)
    inp = keras.Input((16,))
    h = L.Dense(32, activation="relu")(inp)
    model = keras.Model(inp, L.Dense(16)(L.Multiply()([h, L.Dense(1, activation="sigmoid")(h)])))
    assert narrowest_width(model) == 16
    inner = keras.Sequential([keras.Input((16,)), L.Dense(4), L.Dense(16)])  # a bottleneck every path runs through still counts
    assert narrowest_width(keras.Model(inp, inner(L.Concatenate()([inp, L.Dense(1)(inp)])[:, :16]))) == 4
    trainer = Trainer(model, loss="mse", optimizer=keras.optimizers.SGD(1e-3), task="regression", seed=0, jit_compile=False)
    trainer.fit(noisy[:320], x[:320], epochs=5, batch_size=32, verbose=0, validation_data=(noisy[320:], x[320:]))
    assert "worse-than-linear" in {f.code for f in trainer.findings}


def linear_stream(val_end: float, *, linear: float = 0.1, validation: bool = True, **context: object) -> Stream:
    """A regression stream whose losses settle at ``val_end`` (training a little below), beside a
    linear fit of the inputs at ``linear`` on both row sets (chance 1.0)."""
    s = Stream(task="regression", chance=1.0)
    train, val = curve(1.2, 0.9 * val_end, 20), curve(1.1, val_end, 20)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = (lambda e: val[e]) if validation else None
    s.context = dataclasses.replace(s.context, loss="MeanSquaredError()", linear_loss=linear, has_validation=validation,
                                    val_linear_loss=linear if validation else None, val_chance_loss=1.0 if validation else None,
                                    **{"check_codes": (), **context})
    return s


def test_a_regression_far_worse_than_the_linear_fit_of_its_inputs_is_reported():
    # A forecaster ended at MSE 0.014 where "next = last" of its window gets 0.0033, and the run got
    # no finding: its loss was compared with the best constant's only.
    f = finding(linear_stream(0.3).run(), "worse-than-linear")
    assert f.severity == "warning" and f.evidence["rows"] == "validation"
    assert f.evidence["ratio"] == pytest.approx(f.evidence["model_loss"] / 0.1, rel=1e-4) and f.evidence["ratio"] > 2.5
    assert "least-squares linear fit of its inputs gets on the validation rows" in f.message
    assert "Nothing else this run found explains it" in f.advice
    # Without validation rows, the training loss against the fit's loss on the training rows.
    f = finding(linear_stream(0.3, validation=False).run(), "worse-than-linear")
    assert f.evidence["rows"] == "training" and "lowest training loss" in f.message


def test_worse_than_linear_stays_silent_near_the_linear_fit_or_where_it_explains_little():
    # A linear model is near-optimal on some data (diabetes, a random walk): an MLP 1.6x its loss is no fault.
    assert "worse-than-linear" not in codes(linear_stream(0.16).run())
    # A fit that explains little of the target (80% of chance) says nothing of the model.
    assert "worse-than-linear" not in codes(linear_stream(0.9, linear=0.8).run())
    # Unknown (a dataset's validation rows, several outputs, wide inputs): no verdict.
    assert "worse-than-linear" not in codes(linear_stream(0.3, linear=None).run())
    # Without validation rows under dropout: the training loss, measured with dropout on, reads high.
    assert "worse-than-linear" not in codes(linear_stream(0.3, validation=False, dropout=0.3).run())
    # A fit at the noise floor of a near-exact linear target (0.4% of chance): a model 5x that
    # (2% of chance, within 1.6% of chance of the fit) is no training fault; healthy MLPs end there.
    assert "worse-than-linear" not in codes(linear_stream(0.0, linear=0.004).run())
    assert "worse-than-linear" in codes(linear_stream(0.04, linear=0.004).run())
    # Beside label-leakage the fit reads the leaked copy of the target and scores near 0: a model
    # that leaks too was told to train longer, not to drop the column.
    assert "worse-than-linear" not in codes(linear_stream(0.08, linear=0.015, check_codes=("label-leakage",)).run())
    assert "worse-than-linear" in codes(linear_stream(0.08, linear=0.015).run())
    # A classifier's loss is never compared with a least-squares fit.
    s = linear_stream(0.3)
    s.context = dataclasses.replace(s.context, task="binary")
    assert "worse-than-linear" not in codes(s.run())


def test_worse_than_linear_names_the_causes_the_run_found():
    bounded = {"layer": "dense_2", "activation": "sigmoid", "low": 0.0, "high": 1.0}
    f = finding(linear_stream(0.3, check_codes=("unscaled-inputs",), bounded_output=bounded).run(), "worse-than-linear")
    assert f.evidence["causes"] == ["unscaled-inputs"] and f.evidence["output_activation"] == "sigmoid"
    assert "'dense_2' applies sigmoid, which keeps the predictions in [0, 1]" in f.advice
    assert "fix what unscaled-inputs says" in f.advice and "Nothing else" not in f.advice
    # At chance, loss-at-chance told such a run "the labels are unpredictable from the inputs": a
    # linear fit of them says otherwise, and the two findings say so together.
    s = linear_stream(1.0)
    s.train_loss = lambda e, st: 1.0 + 0.01 * math.sin(3 * e + st)
    s.val_loss = lambda e: 1.0 + 0.01 * math.sin(3 * e)
    d = s.run()
    at_chance = finding(d, "loss-at-chance")
    assert "although the targets can be predicted from its inputs" in at_chance.message
    assert "unpredictable" not in at_chance.message and "labels" not in at_chance.advice
    assert "not the labels" in finding(d, "worse-than-linear").message
    assert "predicts no better than the target mean (loss-at-chance)" in finding(d, "worse-than-linear").message
    # A MAPE run's constant is its loss's best one, far below the mean of skewed targets.
    s.context = dataclasses.replace(s.context, target_mean=1.4e4, target_std=2.3e4, target_constant=2104.0)
    message = finding(s.run(), "worse-than-linear").message
    assert "predicts no better than the loss's best constant 2104 (loss-at-chance)" in message and "target mean" not in message
    # Inputs that explain little (a fit at 80% of chance) leave loss-at-chance as it was.
    s.context = dataclasses.replace(s.context, linear_loss=0.8, val_linear_loss=0.8)
    assert "the labels are unpredictable" in finding(s.run(), "loss-at-chance").message


@pytest.mark.parametrize("seed", [0, 1])
def test_worse_than_linear_on_a_forecaster_and_its_read_back(tmp_path, seed):
    # A random walk's windows: "next = last" is a linear function of them, ~0.3% of the variance.
    # An MLP under SGD(1e-3) for 5 epochs ended at 8-1400x that fit's validation loss (seeds 0-2,
    # 3,000 rows) with no other finding; the same MLP under Adam(1e-3) on a noisy sine's windows,
    # for 20 epochs, at 1.07x.
    from trainkit.diagnosis.readback import diagnose_run_dir

    def trained(series: np.ndarray, optimizer: keras.optimizers.Optimizer, epochs: int, logdir: object = None) -> Trainer:
        series = (series - series.mean()) / series.std()
        x = series[np.arange(1500)[:, None] + np.arange(16)[None, :]].astype("float32")
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
        trainer = Trainer(model, loss="mse", optimizer=optimizer, task="regression", seed=seed, logdir=logdir)
        trainer.fit(x, series[16:, None].astype("float32"), epochs=epochs, batch_size=32, validation_split=0.2, verbose=0)
        return trainer

    rng = np.random.default_rng(seed)
    broken = trained(np.cumsum(rng.normal(size=1516)), keras.optimizers.SGD(1e-3), 5, tmp_path)
    f = finding(broken, "worse-than-linear")
    assert f.evidence["ratio"] > 3 and f.evidence["linear_loss"] < 0.05 * f.evidence["chance_loss"]
    assert [g.to_dict() for g in diagnose_run_dir(tmp_path)] == [g.to_dict() for g in broken.findings]
    sine = np.sin(2 * np.pi * np.arange(1516) / 50) + 0.1 * rng.normal(size=1516)
    assert "worse-than-linear" not in codes(trained(sine, keras.optimizers.Adam(1e-3), 20))


class _Batches(keras.utils.PyDataset):
    """Rows in batches of 32, in order (a PyDataset for the tests)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__()
        self.x, self.y = x, y

    def __len__(self) -> int:
        return math.ceil(len(self.x) / 32)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[32 * i:32 * (i + 1)], self.y[32 * i:32 * (i + 1)]


@pytest.mark.parametrize("kind", ["dataset", "pydataset", "dataset-no-validation", "unshuffled-no-validation"])
def test_worse_than_linear_on_datasets(kind):
    # The fit was judged on in-memory rows only: an MLP under SGD(1e-4) on a linear target ended
    # at 60-97x the fit's validation loss on arrays (seeds 0-2) and was told, while as datasets of
    # the same rows it got no word (loss-at-chance called its labels unpredictable instead). The
    # data checks' sampled first batches are the rows now: a validation dataset's, and a shuffled
    # training dataset's (a sample, which the message says).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2300, 8)).astype("float32")
    y = (x @ rng.normal(size=8) + 0.3 * rng.normal(size=2300)).astype("float32")[:, None]

    def trained(optimizer: keras.optimizers.Optimizer) -> Trainer:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
        trainer = Trainer(model, loss="mse", optimizer=optimizer, task="regression", seed=0, jit_compile=False)
        rows = tf.data.Dataset.from_tensor_slices((x[:2000], y[:2000]))
        train = rows.batch(32) if kind == "unshuffled-no-validation" else rows.shuffle(2000, seed=0).batch(32)
        if kind == "pydataset":
            trainer.fit(_Batches(x[:2000], y[:2000]), validation_data=_Batches(x[2000:], y[2000:]), epochs=5, verbose=0)
        elif kind == "dataset":
            trainer.fit(train, validation_data=tf.data.Dataset.from_tensor_slices((x[2000:], y[2000:])).batch(32), epochs=5, verbose=0)
        else:
            trainer.fit(train, epochs=5, verbose=0)
        return trainer

    if kind == "unshuffled-no-validation":
        # Its first rows are no sample of the rest (a series in time order): not judged by them.
        assert "worse-than-linear" not in codes(trained(keras.optimizers.SGD(1e-4)))
        return
    f = finding(trained(keras.optimizers.SGD(1e-4)), "worse-than-linear")
    assert f.evidence["ratio"] > 10 and f.evidence["rows"] == ("training" if kind.endswith("no-validation") else "validation")
    # 300 validation rows are every row of it (10 batches, all read); 512 of 2,000 training rows a sample.
    assert f.evidence.get("linear_rows") == (512 if kind.endswith("no-validation") else None)
    assert ("(a sample: the shuffled dataset's first batches;" in f.message) == kind.endswith("no-validation")
    assert "worse-than-linear" not in codes(trained(keras.optimizers.Adam(3e-3)))


@pytest.mark.parametrize("shuffled", [False, True])
def test_worse_than_linear_not_judged_by_a_validation_datasets_first_period(shuffled):
    # A never-shuffled validation dataset's first batches are its first rows: in time order with
    # noise that grows, the fit scored 0.10 on the first 512 of 2,000 against 0.76 on all, and a
    # healthy model at 0.80 was told 7.9x worse than linear. A shuffling pipeline's draw is a sample.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6000, 8)).astype("float32")
    y = (x @ (0.7 * rng.normal(size=8)) + np.linspace(0.05, 1.5, 6000) * rng.normal(size=6000)).astype("float32")[:, None]
    val = np.sort(rng.choice(6000, 2000, replace=False))
    train = np.setdiff1d(np.arange(6000), val)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    trainer = Trainer(model, loss="mse", optimizer=keras.optimizers.Adam(3e-3), task="regression", seed=0, jit_compile=False)
    validation = tf.data.Dataset.from_tensor_slices((x[val], y[val]))
    validation = (validation.shuffle(2000, seed=0) if shuffled else validation).batch(32)
    trainer.fit(tf.data.Dataset.from_tensor_slices((x[train], y[train])).shuffle(4000, seed=0).batch(32),
                validation_data=validation, epochs=3, verbose=0)
    context = trainer._live_diagnosis.diagnoser.context
    assert "worse-than-linear" not in codes(trainer)
    if shuffled:
        assert context.val_linear_sample_rows == 512 and 0.4 < context.val_linear_loss < 1.2
    else:
        assert context.val_linear_loss is None


def test_initial_loss_far_above_chance_and_regression_gets_more_room():
    s = Stream()
    _first_steps_at(s, 9.0)
    f = finding(s.run(), "initial-loss-too-high")
    assert f.evidence["initial_loss"] == pytest.approx(9.0) and "standardize_inputs" in f.advice
    # The lowest of the first losses, said so: a median of 1.15e7 was quoted as "the loss of the
    # first steps was 9.98e6".
    assert f.message.startswith("The loss of the first steps was at least (the lowest of the first ")
    # A classifier's constant prediction is the label prior, a regression's the target mean: "the
    # label prior / the target mean" named both to every task.
    assert "a model predicting the label prior would get" in f.message and "target mean" not in f.message
    # 4x chance is suspicious for a classifier, ordinary for a freshly initialised regression.
    reg = Stream(task="regression", chance=1.0)
    _first_steps_at(reg, 4.0)
    assert "initial-loss-too-high" not in codes(reg.run())
    _first_steps_at(reg, 40.0)
    f = finding(reg.run(), "initial-loss-too-high")
    assert "standardize_targets" in f.advice
    assert "a model predicting the target mean would get" in f.message and "label prior" not in f.message


def test_initial_loss_too_high_from_unscaled_inputs_does_not_prescribe_the_initialiser_a_layer_has_right():
    # train_scale_broken (inputs ~50 into a glorot_uniform ReLU layer, first loss 16x chance) was
    # told to "use the initialiser of the activation (he_normal for relu)": followed, the first
    # loss was 92x chance. Only an initialiser that is not fan-scaled is worth changing.
    s = Stream()
    _first_steps_at(s, 9.0)
    scaled = {name: {"layer": name, "kernel": "glorot_uniform", "bias": "zeros"} for name in LAYERS}
    s.context = dataclasses.replace(s.context, check_codes=("unscaled-inputs",), initializers=scaled)
    f = finding(s.run(), "initial-loss-too-high")
    assert f.advice.startswith("Standardise the inputs (preprocessing.standardize_inputs: true)") and "he_normal" not in f.advice
    large = {**scaled, "dense": {"layer": "dense", "kernel": "random_normal(stddev=2)", "bias": "zeros"}}
    s.context = dataclasses.replace(s.context, initializers=large)
    assert "he_normal for relu" in finding(s.run(), "initial-loss-too-high").advice


def test_initial_loss_too_high_tells_a_multilabel_output_of_one_bias_a_label():
    # Told "initialise the output bias to the log prior, log(p / (1 - p))", one bias and one p, a
    # multilabel output of labels at 2% to 33% had each unit's own log-odds to set.
    s = Stream(task="multilabel", chance=0.27)
    _first_steps_at(s, 4.3)
    s.context = dataclasses.replace(s.context, check_codes=())
    advice = finding(s.run(), "initial-loss-too-high").advice
    assert "each output unit's bias to its label's log-odds" in advice
    assert "bias_initializer: {name: constant, value: [...]} on the output layer, one value a label" in advice
    s.context = dataclasses.replace(s.context, recipe=False)
    advice = finding(s.run(), "initial-loss-too-high").advice
    assert "model.layers[-1].bias.assign(np.log(p / (1 - p)))" in advice and "bias_initializer" not in advice
    binary = Stream()
    binary.train_loss = lambda e, st: 4.3 if e == 0 and st < 3 else Stream().train_loss(e, st)
    binary.context = dataclasses.replace(binary.context, check_codes=())
    assert "the output bias to the log prior" in finding(binary.run(), "initial-loss-too-high").advice


def test_initial_loss_too_high_blames_unscaled_targets_only_when_their_output_makes_the_loss():
    # Targets ~3000 under loss_weights={"price": 1e-7} start that output at ~1.1 while a sigmoid
    # head with a random_normal(20) kernel started at 8.9 (first loss 8x chance): told to
    # standardise the targets, whose output's loss "dwarfs the others'".
    s = Stream(chance=0.83)
    _first_steps_at(s, 9.0)
    s.context = dataclasses.replace(s.context, task="mixed", check_codes=("unscaled-targets",), regression_start_loss=1.1)
    advice = finding(s.run(), "initial-loss-too-high").advice
    assert "unscaled-targets" not in advice and "initialis" in advice
    # The regression output makes most of it (a first MSE of ~1e7 unweighted): the targets, as before.
    s.context = dataclasses.replace(s.context, regression_start_loss=8.5)
    assert "see unscaled-targets" in finding(s.run(), "initial-loss-too-high").advice
    s.context = dataclasses.replace(s.context, regression_start_loss=None)
    assert "see unscaled-targets" in finding(s.run(), "initial-loss-too-high").advice


def test_the_regression_outputs_start_of_a_model_with_several_outputs_is_measured():
    # Each regression output's loss of predicting 0 (a fresh output's), times its weight.
    inputs = keras.Input((2,))
    model = keras.Model(inputs, [keras.layers.Dense(1, activation="sigmoid", name="c")(inputs), keras.layers.Dense(1, name="r")(inputs)])
    trainer = Trainer(model, loss={"c": "binary_crossentropy", "r": "mse"}, task={"c": "binary", "r": "regression"},
                      loss_weights={"r": 1e-7}, optimizer="adam")
    x, y_c, y_r = np.zeros((8, 2), "float32"), np.array([0, 1] * 4, "float32"), np.full(8, 3000.0, "float32")
    context = build_context(trainer, {"c": y_c, "r": y_r}, inputs=x)
    assert context.regression_start_loss == pytest.approx(1e-7 * 3000.0**2)
    assert Context.from_dict(context.to_dict()).regression_start_loss == context.regression_start_loss
    assert context.output_names == ("c", "r") and Context.from_dict(context.to_dict()).output_names == ("c", "r")


def test_the_regression_outputs_start_weighs_one_target_a_row_by_its_row_as_training_does():
    # 1-D targets with weights 10 and 1: the loss of predicting 0 read 204 (the mean over every row
    # times the mean weight) where training weighs each row's own loss, 324; chance_loss's start
    # (its uninformed level) and the several-output start are the same number.
    inputs = keras.Input((2,))
    model = keras.Model(inputs, [keras.layers.Dense(1, activation="sigmoid", name="c")(inputs), keras.layers.Dense(1, name="r")(inputs)])
    trainer = Trainer(model, loss={"c": "binary_crossentropy", "r": "mse"}, task={"c": "binary", "r": "regression"}, optimizer="adam")
    y_r = np.where(np.arange(200) % 2 == 0, 8.0, 3.0).astype("float32")
    w = np.where(np.arange(200) % 2 == 0, 10.0, 1.0).astype("float32")
    context = build_context(trainer, {"c": (np.arange(200) % 2).astype("float32"), "r": y_r}, inputs=np.zeros((200, 2), "float32"),
                            sample_weight=w)
    expected = float(np.mean(w * y_r**2))
    assert context.regression_start_loss == pytest.approx(expected, rel=1e-5)
    assert chance_loss("regression", "mse", y_r, w).uninformed == pytest.approx(expected, rel=1e-5)
    # A row's weight weighs each of its steps: (rows, steps, 1) targets got no start at all.
    y_seq = np.broadcast_to(y_r[:, None, None], (200, 4, 1))
    assert chance_loss("regression", "mse", y_seq, w).uninformed == pytest.approx(expected, rel=1e-5)


def test_a_classifier_starting_at_the_uniform_prediction_on_imbalanced_classes_is_not_too_high():
    # 95/5 labels: chance 0.20, and a fresh sigmoid output starts at ln 2 = 3.5x that; every
    # default-initialised run got initial-loss-too-high next to class-imbalance (seed-dependent:
    # 2.9x at one seed, 3.4x at another).
    y = (np.arange(1000) % 20 == 0).astype(int)
    baseline = chance_loss("binary", "binary_crossentropy", y)
    assert baseline.loss == pytest.approx(0.199, abs=1e-3) and baseline.uninformed == pytest.approx(LN2, abs=1e-4)
    assert chance_loss("multiclass", "sparse_categorical_crossentropy", np.arange(10)).uninformed == pytest.approx(math.log(10), abs=1e-4)
    s = Stream(chance=baseline.loss)
    s.context.uninformed_loss = baseline.uninformed
    s.train_loss = lambda e, st: 0.72 if e == 0 else 0.1
    s.val_loss = lambda e: 0.1
    assert "initial-loss-too-high" not in codes(s.run())
    # Far above the uniform start (unscaled inputs: logits of ~10) is still too high.
    s.train_loss = lambda e, st: 4.0 if e == 0 else 0.1
    assert "initial-loss-too-high" in codes(s.run())


def test_a_softmax_wider_than_the_label_classes_starts_uniform_over_all_its_units():
    # 1000 softmax units for labels 0..4 start at ln 1000 = 6.9, and were told initial-loss-too-high
    # ("4.3x the chance level 1.609 ... far from a sensible prediction") against a uniform start of ln 5.
    y = np.arange(500) % 5
    for loss in ("sparse_categorical_crossentropy", keras.losses.SparseCategoricalCrossentropy(from_logits=True)):
        baseline = chance_loss("multiclass", loss, y, units=1000, batch_size=32)
        assert baseline.loss == pytest.approx(math.log(5), abs=1e-3)
        assert baseline.uninformed == pytest.approx(math.log(1000), abs=1e-3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1000, activation="softmax")])
    context = build_context(Trainer(model, loss="sparse_categorical_crossentropy", optimizer="adam", task="multiclass", seed=0), y)
    assert context.uninformed_loss == pytest.approx(math.log(1000), abs=1e-3)
    s = Stream(chance=math.log(5))
    s.context.uninformed_loss = context.uninformed_loss
    s.train_loss = lambda e, st: 6.85 if e == 0 else 1.0
    s.val_loss = lambda e: 1.0
    assert "initial-loss-too-high" not in codes(s.run())


def test_few_validation_rows_a_class_take_a_prior_pooled_with_the_training_labels():
    # 800 validation rows of 1000 classes: their own prior read 6.23 where a constant not fitted on
    # them gets ~6.9, and a model at 6.38 (31x chance accuracy) was told loss-at-chance, "it
    # memorises the training rows ... (e.g. random labels)".
    rng = np.random.default_rng(0)
    y, y_val = rng.integers(0, 1000, 8000), rng.integers(0, 1000, 800)
    own = chance_loss("multiclass", "sparse_categorical_crossentropy", y_val, units=1000)
    pooled = chance_loss("multiclass", "sparse_categorical_crossentropy", y_val, units=1000, prior_rows=y)
    assert own.loss < 6.3 and pooled.loss > 6.8 and "pooled with the training labels" in pooled.detail
    # One-hot labels too (their rows read at most 1M values: a strided 1000 of the training rows).
    one_hot = chance_loss("multiclass", "categorical_crossentropy", np.eye(1000)[y_val], prior_rows=np.eye(1000)[y])
    assert one_hot.loss > own.loss + 0.3
    # Rows enough for their classes keep their own prior.
    few = np.arange(800) % 10
    assert chance_loss("multiclass", "sparse_categorical_crossentropy", few, prior_rows=y % 10).loss == pytest.approx(math.log(10), abs=1e-4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1000, activation="softmax")])
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="adam", task="multiclass", seed=0)
    assert build_context(trainer, y, validation_targets=y_val).val_chance_loss == pytest.approx(pooled.loss, abs=1e-4)
    s = Stream(chance=6.84)
    s.context.val_chance_loss = pooled.loss
    s.train_loss = lambda e, st: 6.9 - 0.2 * e
    s.val_loss = lambda e: 6.8 - 0.05 * min(e, 9)
    assert "loss-at-chance" not in codes(s.run())


def test_targets_already_standardised_are_not_told_to_be_standardised_again():
    # The diagnosis audit: standardised regression targets were told "standardize_targets: true".
    reg = Stream(task="regression", chance=1.0)
    reg.context.target_mean, reg.context.target_std = 0.0, 1.0
    _first_steps_at(reg, 40.0)
    f = finding(reg.run(), "initial-loss-too-high")
    assert "standardize_targets" not in f.advice and "standardize_inputs" in f.advice and "std 1" in f.advice
    reg.train_loss = lambda e, st: 6.0 - 0.05 * e
    reg.val_loss = lambda e: 6.2 - 0.05 * e
    f = finding(reg.run(), "loss-at-chance")
    assert "standardize_targets" not in f.advice and "unstandardised" not in f.message and "linear" in f.advice
    # Unscaled targets (diabetes: mean 152, std 77) still are.
    reg.context.target_mean, reg.context.target_std = 152.0, 77.0
    f = finding(reg.run(), "loss-at-chance")
    # The bias to start from is the run's own target mean: a recipe refuses the placeholder "MEAN".
    assert "standardize_targets" in f.advice and "bias_initializer: {name: constant, value: 152}" in f.advice
    reg.train_loss = lambda e, st: 40.0 if e == 0 and st < 3 else 0.9
    assert "bias_initializer: {name: constant, value: 152}" in finding(reg.run(), "initial-loss-too-high").advice


def test_unscaled_targets_with_scaled_inputs_are_not_told_to_standardise_the_inputs():
    # Standard normal features with targets of mean 1e4, std 1: initial-loss-too-high and
    # loss-at-chance told "standardise the targets ... and the inputs (standardize_inputs: true)"
    # though the data checks found the inputs scaled.
    reg = Stream(task="regression", chance=1.0)
    reg.context.target_mean, reg.context.target_std = 1e4, 1.0
    reg.context = dataclasses.replace(reg.context, check_codes=("unscaled-targets",))
    reg.train_loss = lambda e, st: 1e8 if e == 0 and st < 3 else 1e8 - e
    reg.val_loss = lambda e: 1e8 - e
    report = reg.run()
    for code in ("initial-loss-too-high", "loss-at-chance"):
        advice = finding(report, code).advice
        assert "standardize_targets" in advice and "inputs" not in advice, (code, advice)
    reg.context = dataclasses.replace(reg.context, check_codes=("unscaled-targets", "unscaled-inputs"))
    report = reg.run()
    assert all("the inputs" in finding(report, code).advice for code in ("initial-loss-too-high", "loss-at-chance"))


def test_data_unscaled_only_by_a_few_far_rows_is_not_told_to_be_standardised_by_the_rules_after_it():
    # Targets ~1 with 1% at 1000 (std ~100) under MSE: unscaled-targets told to check those rows
    # and keep the targets under huber/mae, and exploding-gradients, in the same report, "and
    # standardise the targets"; inputs with 1% of a feature at 1000, "and standardise the inputs"
    # beside unscaled-inputs' "clip it or scale it by its median and interquartile range".
    explode = lambda e, st: 1.0 if e * STEPS + st < 25 else 5e3  # noqa: E731
    reg = Stream(task="regression", chance=9900.0)
    reg.context.target_mean, reg.context.target_std = 10.0, 99.5
    reg.context = dataclasses.replace(reg.context, check_codes=("unscaled-targets",), far_value_checks=("unscaled-targets",))
    reg.values["grad_norm/global"] = explode
    advice = finding(reg.run(), "exploding-gradients").advice
    assert "standardi" not in advice.replace("rather than standardising", "") and "unscaled-targets" in advice, advice
    reg.train_loss = lambda e, st: 9900.0 - 150 * e
    reg.val_loss = lambda e: 9950.0 - 150 * e
    advice = finding(reg.run(), "underfitting").advice
    assert "standardize_targets" not in advice and "Check the few far rows unscaled-targets names first" in advice, advice
    # Targets unscaled throughout are still told to standardise them.
    reg.context = dataclasses.replace(reg.context, far_value_checks=())
    assert "standardize_targets" in finding(reg.run(), "underfitting").advice
    s = Stream()
    s.context = dataclasses.replace(s.context, check_codes=("unscaled-inputs",), far_value_checks=("unscaled-inputs",))
    s.values["grad_norm/global"] = explode
    advice = finding(s.run(), "exploding-gradients").advice
    assert "standardise the inputs" not in advice and "median and interquartile range" in advice, advice
    s.values["grad_norm/global"] = lambda e, st: 1.0
    s.train_loss = lambda e, st: 40.0 if e == 0 and st < 3 else 0.15
    advice = finding(s.run(), "initial-loss-too-high").advice
    assert "standardize_inputs" not in advice and advice.startswith("Fix what unscaled-inputs says first"), advice


def test_initial_loss_names_the_inputs_recipe_key_by_its_section():
    # Unscaled targets and inputs: initial-loss-too-high said "standardise the inputs
    # (standardize_inputs: true)", a top-level key a recipe refuses (it is preprocessing's).
    reg = Stream(task="regression", chance=1.0)
    reg.context.target_mean, reg.context.target_std = 1e4, 1.0
    reg.context = dataclasses.replace(reg.context, check_codes=("unscaled-targets", "unscaled-inputs"))
    reg.train_loss = lambda e, st: 1e8 if e == 0 and st < 3 else 1e8 - e
    reg.val_loss = lambda e: 1e8 - e
    advice = finding(reg.run(), "initial-loss-too-high").advice
    assert "preprocessing.standardize_inputs: true" in advice and "(standardize_inputs" not in advice, advice


def test_a_bias_at_the_target_mean_is_not_one_column_s_mean_for_every_column():
    # Targets of two columns (means 152 and ~0): "bias_initializer: {name: constant, value: 152}"
    # started the second column's unit 152 off; the mean known is the farthest column's only.
    reg = Stream(task="regression", chance=1.0)
    reg.context.target_mean, reg.context.target_std, reg.context.target_columns = 152.0, 77.0, 2
    reg.train_loss = lambda e, st: 40.0 if e == 0 and st < 3 else 0.9
    advice = finding(reg.run(), "initial-loss-too-high").advice
    assert "value: 152" not in advice and "bias.assign(y_train.mean(0))" in advice


def test_a_bias_at_the_target_mean_of_image_targets_is_one_a_channel():
    # Image targets (n, 32, 32, 1) of a conv output were told bias.assign(y_train.mean(0)): a
    # (32, 32, 1) mean per pixel, which the output's one bias a channel cannot take.
    reg = Stream(task="regression", chance=1.0)
    reg.context.target_mean, reg.context.target_std, reg.context.target_columns = 152.0, 77.0, 1024
    reg.context.target_axes = (0, 1, 2)
    reg.train_loss = lambda e, st: 40.0 if e == 0 and st < 3 else 0.9
    advice = finding(reg.run(), "initial-loss-too-high").advice
    assert "bias.assign(y_train.mean(axis=(0, 1, 2)))" in advice and "mean(0)" not in advice
    # It goes through TensorBoard's record of the context: trainkit diagnose reads it back alike.
    assert Context.from_dict(json.loads(json.dumps(reg.context.to_dict()))).target_axes == (0, 1, 2)
    # Targets without the channel axis, (n, 32, 32): one mean of every value, shaped as the bias.
    reg.context.target_axes = ()
    assert "bias.assign(y_train.mean()[None])" in finding(reg.run(), "initial-loss-too-high").advice


def test_build_context_records_the_axes_of_image_targets():
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, padding="same")])
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0)
    y = np.full((16, 8, 8, 2), 100.0) + np.arange(16)[:, None, None, None]
    assert build_context(trainer, y).target_axes == (0, 1, 2)
    dense = Trainer(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]), loss="mse", optimizer="adam", task="regression", seed=0)
    assert build_context(dense, np.arange(16.0)[:, None]).target_axes is None


def test_tiny_targets_are_told_to_be_standardised_not_that_they_are_on_a_unit_scale():
    # Targets of std 1e-3 (chance 1e-6): a fresh model's first MSE of ~0.5 got "The targets are
    # already on a unit scale (mean 6.4e-05, std 0.00095)" and advice on the initialisation.
    reg = Stream(task="regression", chance=1e-6)
    reg.context.target_mean, reg.context.target_std = 0.0, 1e-3
    _first_steps_at(reg, 0.5)
    f = finding(reg.run(), "initial-loss-too-high")
    assert "tiny" in f.advice and "standardize_targets" in f.advice and "unit scale" not in f.advice
    reg.train_loss = lambda e, st: 6e-6 - 5e-8 * e
    reg.val_loss = lambda e: 6.2e-6 - 5e-8 * e
    f = finding(reg.run(), "loss-at-chance")
    assert "unit scale" not in f.message and "standardize_targets" in f.advice


def test_targets_on_a_unit_scale_far_from_zero_are_told_the_output_bias_not_the_initialiser():
    # log1p of log-normal prices (mean 1.31, std 0.29, chance 0.087): a default glorot MLP near 0
    # started at 20-49x chance, predicting 0 alone scores 1.8 (20x), and was told to "use the
    # initialiser of the activation instead of a large random_normal", which it already did.
    reg = Stream(task="regression", chance=0.087)
    reg.context = dataclasses.replace(reg.context, target_mean=1.31, target_std=0.29, uninformed_loss=1.8, recipe=False)
    _first_steps_at(reg, 4.2)
    f = finding(reg.run(), "initial-loss-too-high")
    assert "random_normal" not in f.advice and "bias_initializer=keras.initializers.Constant(1.31)" in f.advice, f.advice
    assert "y - y_train.mean()" in f.advice and "1.8" in f.advice, f.advice
    # Predicting 0 within 10x chance: the start is the model's, told the initialiser as before.
    reg.context = dataclasses.replace(reg.context, uninformed_loss=0.5)
    assert "random_normal" in finding(reg.run(), "initial-loss-too-high").advice


def test_a_start_far_worse_than_predicting_zero_is_not_blamed_on_the_targets_offset():
    # Targets mean 1.27, std 0.38 (chance 0.1447, predicting 0: 1.764, 12.2x) into Dense(32, relu),
    # Dense(1), kernels random_normal(stddev=1): first loss 79.2 (547x), 45x what predicting 0
    # scores, and the advice named the output bias alone; with the bias at the mean the start was
    # 67.1 (464x) and the validation loss after 17 epochs 51.5 against 55.6: the kernels did it.
    reg = Stream(task="regression", chance=0.1447)
    reg.context = dataclasses.replace(reg.context, target_mean=1.273, target_std=0.3804, uninformed_loss=1.764, recipe=False)
    _first_steps_at(reg, 79.2)
    f = finding(reg.run(), "initial-loss-too-high")
    assert "random_normal" in f.advice and "Constant(1.273)" not in f.advice, f.advice


def test_targets_far_from_zero_in_several_columns_are_told_to_centre_each_column():
    # Two target columns, means 1.29 and -2.01 (std 0.38, 0.30): predicting 0 scored 2.98 (25x
    # chance), and the advice "centre the targets (y - y_train.mean(), ...)" subtracted their one
    # pooled mean, -0.36, which left the columns at +1.65 and -1.65: as far from 0 as before.
    reg = Stream(task="regression", chance=0.1194)
    reg.context = dataclasses.replace(reg.context, target_mean=-2.007, target_std=0.3052, uninformed_loss=2.98, recipe=False,
                                      target_columns=2)
    _first_steps_at(reg, 2.757)
    f = finding(reg.run(), "initial-loss-too-high")
    assert "y - y_train.mean(0)" in f.advice and "y_train.mean())" not in f.advice, f.advice


def test_targets_far_from_zero_with_the_output_bias_already_at_their_mean_are_not_told_to_set_it():
    # Targets mean 1.30, std 0.38; Dense(32, relu, he_normal), Dense(1, bias_initializer=Constant(1.31)):
    # first loss 2.75 (18.9x chance; predicting 0: 1.84, 12.6x), told to "Initialise the output bias
    # at the target mean (bias_initializer=keras.initializers.Constant(1.301))", its own setting; a
    # random_normal(stddev=1) kernel's start of 137 (943x) with that bias was told the same.
    reg = Stream(task="regression", chance=0.1456)
    reg.context = dataclasses.replace(
        reg.context, target_mean=1.301, target_std=0.3815, uninformed_loss=1.837, recipe=False,
        initializers={"dense_2": {"layer": "dense_2", "kernel": "glorot_uniform", "bias": "constant(1.31)"}})
    _first_steps_at(reg, 2.751)
    f = finding(reg.run(), "initial-loss-too-high")
    assert "Constant(1.301)" not in f.advice and "random_normal" in f.advice, f.advice
    # Its bias at zeros (the default), the offset is named as before.
    reg.context.initializers["dense_2"]["bias"] = "zeros"
    assert "bias_initializer=keras.initializers.Constant(1.301)" in finding(reg.run(), "initial-loss-too-high").advice


def test_an_output_bias_assigned_after_the_build_is_not_told_to_be_set():
    # Targets mean 1.30, std 0.19; Dense(64, relu) x2 (he_normal), Dense(1) whose bias was set to
    # the mean by model.layers[-1].bias.assign([1.303]): first loss 1.23 (33x chance; predicting 0:
    # 1.735, 46.6x), told to "Initialise the output bias at the target mean
    # (bias_initializer=keras.initializers.Constant(1.303))": its initializer read zeros.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.layers[-1].bias.assign([1.303])
    context = build_context(Trainer(model, loss="mse", optimizer="adam", task="regression", jit_compile=False), np.full((8, 1), 1.3))
    output = model.layers[-1].name
    assert context.initializers[output]["bias"] == "assigned 1.303", context.initializers
    assert context.initializers[model.layers[0].name]["bias"] == "zeros"
    reg = Stream(task="regression", chance=0.03722)
    reg.context = dataclasses.replace(reg.context, target_mean=1.303, target_std=0.1929, uninformed_loss=1.735, recipe=False,
                                      initializers={"dense_2": dict(context.initializers[output], layer="dense_2")})
    _first_steps_at(reg, 1.227)
    f = finding(reg.run(), "initial-loss-too-high")
    assert "Constant(1.303)" not in f.advice and "random_normal" in f.advice, f.advice
    # An LSTM's forget-gate ones are its own initializer's start, not a bias set by hand.
    lstm = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4), keras.layers.Dense(1)])
    starts = build_context(Trainer(lstm, loss="mse", optimizer="adam", task="regression", jit_compile=False), np.zeros((8, 1))).initializers
    assert {start["bias"] for start in starts.values()} == {"zeros"}, starts


@pytest.mark.parametrize("loss", ["msle", "mape"])
def test_msle_and_mape_targets_are_told_to_be_scaled_not_standardised(loss):
    # MSLE reads every value below 0 as 0 and MAPE divides by the targets: targets ~3270 with
    # msle were told "standardize_targets: true" by initial-loss-too-high and loss-at-chance,
    # which breaks both losses.
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    context = build_context(Trainer(model, loss=loss, optimizer="adam", task="regression", jit_compile=False), np.full((8, 1), 3270.0))
    assert context.relative_loss
    reg = Stream(task="regression", chance=0.25)
    reg.context = dataclasses.replace(reg.context, relative_loss=True, target_mean=3270.0, target_std=1732.0)
    _first_steps_at(reg, 63.0)
    f = finding(reg.run(), "initial-loss-too-high")
    assert "without centring" in f.advice and "standardize_targets" not in f.advice
    reg.train_loss = lambda e, st: 60.0 - 0.01 * e
    reg.val_loss = lambda e: 61.0 - 0.01 * e
    f = finding(reg.run(), "loss-at-chance")
    assert "without centring" in f.advice and "standardize_targets" not in f.advice
    # A recipe's user holds no y to divide: the recipe's data.target_scale is named too (1 / 3270).
    assert "(in a recipe, multiply data.target_scale by 0.000306; see unscaled-targets)" in f.advice
    mse = build_context(Trainer(keras.models.clone_model(model), loss="mse", optimizer="adam", task="regression", jit_compile=False), np.full((8, 1), 3270.0))
    assert not mse.relative_loss


def test_mape_runs_are_told_to_start_the_bias_at_their_best_constant_not_the_target_mean():
    # Log-normal prices (mean 1.4e4): predicting the mean scores MAPE 287, worse than a fresh output
    # near 0 (100) and 4x the best constant's 72, yet a run stuck at 95 was told "predicting the
    # target mean for every row would do better" and to start its output bias at 1.4e4.
    rng = np.random.default_rng(0)
    y = np.exp(9 + rng.normal(size=(400, 1))).astype(np.float32)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    context = build_context(Trainer(model, loss="mape", optimizer="adam", task="regression", jit_compile=False), y)
    mape = keras.losses.MeanAbsolutePercentageError()
    best, mean = context.target_constant, float(y.mean())
    assert best < 0.5 * mean and float(mape(y, np.full_like(y, best))) < 0.5 * float(mape(y, np.full_like(y, mean)))
    reg = Stream(task="regression", chance=context.chance_loss)
    reg.context = dataclasses.replace(reg.context, relative_loss=True, target_mean=context.target_mean,
                                      target_std=context.target_std, target_constant=best)
    reg.train_loss = lambda e, st: 95.0 - 0.01 * e
    reg.val_loss = lambda e: 96.0 - 0.01 * e
    f = finding(reg.run(), "loss-at-chance")
    assert f"predicting the loss's best constant {format_number(best)} for every row" in f.message
    assert f"value: {format_number(best)}}}" in f.advice and f"value: {format_number(mean)}}}" not in f.advice
    assert "target mean" not in f.message + f.advice
    # An MSE run's best constant is the mean: its text stays.
    mse = build_context(Trainer(keras.models.clone_model(model), loss="mse", optimizer="adam", task="regression", jit_compile=False), y)
    reg.context = dataclasses.replace(reg.context, relative_loss=False, target_constant=mse.target_constant)
    f = finding(reg.run(), "loss-at-chance")
    assert "predicting the target mean for every row" in f.message and f"value: {format_number(mean)}}}" in f.advice


@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_unscaled_targets_of_a_relu_output_are_told_to_be_scaled_not_standardised(activation):
    # Prices ~1.4e4 through Dense(1, activation="relu") stayed at 1.5x their variance and were told
    # "standardize_targets: true" by loss-at-chance: the next run's data checks refuse those
    # targets (labels-out-of-range), half of them below what a relu can output.
    reg = Stream(task="regression", chance=3.9e8)
    bounded = {"layer": "out", "activation": activation, "low": 0.0, "high": None}
    reg.context = dataclasses.replace(reg.context, target_mean=1.4e4, target_std=2e4, bounded_output=bounded,
                                      check_codes=("unscaled-targets",))
    reg.train_loss = lambda e, st: 5.7e9 if e == 0 and st < 3 else 5.7e8 - e
    reg.val_loss = lambda e: 5.9e8 - e
    report = reg.run()
    for code in ("initial-loss-too-high", "loss-at-chance"):
        advice = finding(report, code).advice
        assert "standardize_targets" not in advice and "y_train.mean()) / y_train.std()" not in advice, (code, advice)
        assert f"without centring them, keeping them >= 0 for the {activation} output" in advice, (code, advice)
        assert "multiply data.target_scale by 5e-05" in advice, (code, advice)
    # A linear output's targets are still standardised.
    reg.context = dataclasses.replace(reg.context, bounded_output=None)
    assert "standardize_targets: true" in finding(reg.run(), "loss-at-chance").advice


def test_a_mixed_run_with_unscaled_regression_targets_is_told_to_standardise_them():
    # A classifier output beside a regression output on targets ~3000: the first loss, 37x chance,
    # was told "the inputs are scaled, so look at the initialisation ... the log prior".
    s = Stream(task="mixed", chance=2.2e5)
    s.context.check_codes = ("unscaled-targets",)
    _first_steps_at(s, 8.2e6)
    f = finding(s.run(), "initial-loss-too-high")
    assert "standardize_targets" in f.advice and "unscaled-targets" in f.advice and "log prior" not in f.advice


def test_a_mixed_run_with_msle_targets_is_told_to_scale_them_not_standardise_them():
    # The MSLE/MAPE advice left out a regression output beside a classifier: its unscaled
    # targets were told standardize_targets, which centres them on 0 and breaks the loss.
    s = Stream(task="mixed", chance=2.2e5)
    s.context.check_codes = ("unscaled-targets",)
    s.context.relative_loss = True
    _first_steps_at(s, 8.2e6)
    f = finding(s.run(), "initial-loss-too-high")
    assert "without centring" in f.advice and "unscaled-targets" in f.advice
    assert "standardize_targets" not in f.advice and "y_train.std()" not in f.advice


def test_a_classifier_is_never_told_to_standardise_its_labels():
    s = Stream()
    s.train_loss = lambda e, st: float("nan") if e == 2 else 0.7
    f = finding(s.run(), "nan-loss")
    assert "standardise the inputs," in f.advice and "targets" not in f.advice


def test_initial_loss_discounts_the_regularization_penalty():
    s = Stream()
    s.context.regularization = 5.0
    base = s.train_loss
    s.train_loss = lambda e, st: base(e, st) + 5.0
    assert "initial-loss-too-high" not in codes(s.run())


# -- loss level and curve ---------------------------------------------------------------------------

def test_loss_at_chance_on_flat_training_loss_but_only_at_the_end():
    s = Stream()
    s.train_loss = lambda e, st: LN2 * (1 + 0.01 * math.sin(st + e))
    s.val_loss = lambda e: LN2 + 0.01
    d = Diagnoser(s.context)
    s.epochs = 10
    s.context.epochs = 20
    for epoch in range(10):  # half the run: no verdict yet
        names, values = s.rows(epoch)
        d.add_steps(epoch * STEPS, names, values)
        d.end_epoch(epoch, {"loss": float(values[:, 0].mean()), "val_loss": LN2})
    assert "loss-at-chance" not in codes(d)
    d.finish()
    f = finding(d, "loss-at-chance")
    assert f.evidence["chance_loss"] == pytest.approx(LN2)
    assert "predicts no better than the label prior:" in f.message and "target mean" not in f.message


def test_loss_at_chance_beside_dead_relus_points_to_them_not_to_the_labels():
    # "The labels are unpredictable from the inputs" beside dead-relu (or lr-too-high) sent users
    # to their labels, when the run's own findings say why the model could not learn.
    s = Stream()
    s.train_loss = lambda e, st: LN2 * (1 + 0.01 * math.sin(st + e))
    s.val_loss = lambda e: LN2 + 0.01
    s.values["activation/dense/dead_fraction"] = lambda e, st: 0.9
    f = finding(s.run(), "loss-at-chance")
    assert f.evidence["explained_by"] == ["dead-relu"]
    assert "dead-relu" in f.message and "unpredictable" not in f.message and f.advice.startswith("Fix what dead-relu says first")


def test_loss_at_chance_beside_a_blocker_does_not_say_a_model_that_memorised_cannot_learn():
    # zero_lr_1 (learning rate 1.0, random labels): "... while the training loss fell to 0.1437;
    # this run's other findings (lr-too-high) are reasons it cannot learn" said the opposite of the
    # numbers before it: the model learned the training rows, and nothing of it carried over.
    s = Stream()
    train = curve(0.72, 0.1, 20)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: LN2 + 0.05
    s.values["activation/dense/dead_fraction"] = lambda e, st: 0.9
    f = finding(s.run(), "loss-at-chance")
    assert f.evidence["explained_by"] == ["dead-relu"] and "training loss fell to 0.1" in f.message
    assert "cannot learn" not in f.message and "can be why nothing it learned carries over to new rows" in f.message


def test_a_validation_loss_blown_up_by_the_initialisation_is_not_blamed_on_the_labels():
    # Six ReLU layers at random_normal(stddev=1) on standardised breast-cancer features: the first
    # loss 2e4x chance, the training loss to 0, val_loss ~281 (400x chance) at 90% validation
    # accuracy. "Nothing the model learned carries over ... e.g. random labels" sent the user to
    # labels that were fine; the start initial-loss-too-high reported is why.
    s = Stream()
    train = [50.0 * 0.5**e for e in range(20)]
    s.train_loss = lambda e, st: 1e4 if e == 0 and st < 3 else train[e]
    s.val_loss = lambda e: 280.0 + e
    assert "initial-loss-too-high" in codes(s.run())
    f = finding(s.run(), "loss-at-chance")
    assert f.evidence["explained_by"] == ["initial-loss-too-high"]
    assert "random labels" not in f.message and f.advice.startswith("Fix what initial-loss-too-high says first")
    # Without that start, a memorised training set whose validation loss stays at chance still is
    # random labels' picture.
    s.train_loss = lambda e, st: 0.72 * 0.5**e
    f = finding(s.run(), "loss-at-chance")
    assert "explained_by" not in f.evidence and "random labels" in f.message


def test_a_training_loss_far_above_chance_is_not_at_chance():
    # A learning rate of 1 on a binary task: loss 2.8x chance, 87% accuracy; "predicts no better
    # than the label prior" would be false (the loss-curve and learning-rate findings cover it).
    s = Stream()
    s.train_loss = lambda e, st: 2.8 * LN2 * (1 + 0.01 * math.sin(st))
    s.val_loss = lambda e: 2.4 * LN2
    assert "loss-at-chance" not in codes(s.run())


def test_a_regression_ending_far_worse_than_the_mean_gets_a_verdict():
    # Raw diabetes targets: 40 epochs ended at 4.5x the target variance with no finding at all.
    s = Stream(task="regression", chance=1.0)
    s.train_loss = lambda e, st: 6.0 - 0.05 * e
    s.val_loss = lambda e: 6.2 - 0.05 * e
    f = finding(s.run(), "loss-at-chance")
    assert f.evidence["ratio"] > 4 and "mean" in f.message and "standardize_targets" in f.advice
    # A diverging run is diverging-loss's (and lr-too-high's) to explain.
    d = Diagnoser(s.context)
    d.replace(Finding("diverging-loss", "error", "m", "Lower the learning rate."))
    assert "loss-at-chance" not in codes(s.run(diagnoser=d))


def test_a_regression_above_the_mean_still_closing_the_gap_is_not_told_it_is_stuck():
    # An MLP at Adam 3e-4, 3 epochs: 1.911, 1.808, 1.729 (chance 1.263), 4-5% an epoch, was told
    # "the loss is no longer falling fast ... the predictions are stuck away from them".
    s = Stream(epochs=3, task="regression", chance=1.263)
    s.val_loss = None
    s.train_loss = lambda e, st: [1.911, 1.808, 1.729][e]
    assert "loss-at-chance" not in codes(s.run())
    # Flat there, it is stuck.
    s.train_loss = lambda e, st: [1.74, 1.73, 1.729][e]
    assert "no longer falling fast" in finding(s.run(), "loss-at-chance").message


def test_a_loss_still_falling_fast_towards_chance_has_not_stayed_at_chance():
    # 3 epochs of mlp_binary: 0.918 -> 0.795 -> 0.710 (chance 0.693) "stayed at the chance level".
    s = Stream(epochs=3)
    train, val = [0.918, 0.795, 0.710], [0.85, 0.77, 0.72]
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: val[e]
    d = s.run()
    assert "loss-at-chance" not in codes(d)
    # Flat at chance over the same epochs, it has.
    s.train_loss = lambda e, st: [0.72, 0.71, 0.705][e]
    s.val_loss = lambda e: [0.72, 0.72, 0.72][e]
    assert "loss-at-chance" in codes(s.run())


@pytest.mark.parametrize(("train_rows", "tiny"), [(4, True), (20, True), (21, False), (None, False)])
def test_loss_at_chance_on_a_tiny_training_set_says_the_run_was_the_overfit_test(train_rows, tiny):
    # 4 XOR rows through Dense(2, relu), stuck at 0.6931 (seeds 2 and 4 of 6), were told to
    # "train on 20 examples until the loss is near 0": the run was that test already.
    s = Stream()
    s.context.train_rows = train_rows
    s.train_loss = lambda e, st: LN2 + 0.002 * (-1) ** e
    s.val_loss = lambda e: LN2 + 0.002 * (-1) ** e
    f = finding(s.run(), "loss-at-chance")
    assert ("train on 20 examples" in f.advice) is not tiny
    assert (f"{train_rows} training rows are a set" in f.advice and "this run is that test" in f.advice) is tiny


def test_loss_at_chance_when_only_the_validation_loss_stays_there():
    s = Stream()
    train = curve(0.7, 0.05, 20)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: LN2 + 0.02 * e
    f = finding(s.run(), "loss-at-chance")
    assert "memorises" in f.message


@pytest.mark.parametrize(("check", "said"), [
    ("validation-scale-mismatch", "not drawn like the training rows"),
    ("validation-target-range", "not drawn like the training rows"),
    # 5 training rows of sin(x) plus noise (6 features), memorised to a loss of 0.016 while the
    # validation loss stayed at 233% of chance, were told "the labels are unpredictable".
    ("few-training-rows", "too few to learn from"),
])
def test_loss_at_chance_of_the_validation_loss_alone_names_the_check_that_explains_it(check, said):
    # Standardised training rows, x_val and y_val left raw: val_loss at 4570% of chance while the
    # training loss fell to 0.03 was told "it memorises the training rows ... (e.g. random labels)"
    # beside validation-scale-mismatch, which says why.
    s = Stream()
    s.context.check_codes = (check,)
    train = curve(0.7, 0.05, 20)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: LN2 + 0.02 * e
    f = finding(s.run(), "loss-at-chance")
    assert f.evidence["explained_by"] == [check] and "random labels" not in f.message
    assert said in f.message and f.advice.startswith(f"Fix what {check} says first")


def test_loss_at_chance_on_20_memorised_rows_is_not_told_its_loss_stayed_at_chance():
    # 20 training rows (few-training-rows needs fewer) memorised to a loss near 0 beside a
    # validation loss at chance were told "this run is that test, and its loss stayed at chance"
    # right after "the training loss fell to 0.05".
    s = Stream()
    s.context.train_rows = 20
    train = curve(0.7, 0.05, 20)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: LN2 + 0.02 * e
    f = finding(s.run(), "loss-at-chance")
    assert "while the training loss fell to" in f.message
    assert "stayed at chance" not in f.advice


def test_loss_at_chance_of_the_validation_loss_alone_after_a_first_epoch_that_learned_blames_the_validation_rows():
    # y_val shuffled alone (val_loss at chance) beside a first epoch at 70-84% of chance: each step's
    # loss is read before its update, so that first epoch scored rows not yet trained on, and the
    # labels can be learned. It was told "it memorises the training rows ... (e.g. random labels)".
    s = Stream()
    s.context.one_pass_epochs = True  # a dataset without .repeat()
    train = curve(0.5, 0.05, 20)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: LN2 + 0.02 * e
    f = finding(s.run(), "loss-at-chance")
    assert "random labels" not in f.message and "prepared unlike the training rows" in f.message
    assert f.evidence["first_epoch_loss"] == pytest.approx(0.5, rel=0.05) and "x_val and y_val" in f.advice
    # A run read back from before one_pass_epochs was recorded: in-memory rows (train_rows known) read once an epoch.
    s.context.one_pass_epochs, s.context.train_rows = None, 1000
    assert "prepared unlike the training rows" in finding(s.run(), "loss-at-chance").message
    # Over a few rows the first epoch's mean is too noisy to tell: the memorising verdict stands.
    s.context.train_rows = 100
    assert "memorises" in finding(s.run(), "loss-at-chance").message


def test_loss_at_chance_of_the_validation_loss_alone_names_lagging_batchnorm_averages_not_the_validation_rows():
    # 6 Conv-BN-ReLU layers, 40 steps at momentum 0.99, validation_split=0.2: training loss 0.08,
    # validation 1.09 against chance 1.10 (the validation rows in training mode: 0.10), told the
    # validation rows "are likely prepared unlike the training rows" beside batchnorm-lag.
    s = Stream()
    s.context.one_pass_epochs = True
    train = curve(0.5, 0.05, 20)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: LN2 + 0.02 * e
    s.context.batch_norms = {"bn": 0.99}
    d = s.run()
    f = finding(d, "loss-at-chance")
    assert "batchnorm-lag" in codes(d) and f.evidence["explained_by"] == ["batchnorm-lag"]
    assert "prepared unlike the training rows" not in f.message and "moving averages" in f.message
    # Averages that have followed the batches (momentum 0.9) explain nothing: the validation rows are blamed, as before.
    s.context.batch_norms = {"bn": 0.9}
    d = s.run()
    assert "batchnorm-lag" not in codes(d) and "prepared unlike the training rows" in finding(d, "loss-at-chance").message


def test_loss_at_chance_does_not_read_a_first_epoch_that_may_read_its_rows_several_times():
    # 128 rows of random labels in a .repeat()-ed dataset, 120 steps an epoch (30 passes): the first
    # epoch memorised them (17% of chance) and was told "the labels can be learned".
    s = Stream()
    train = curve(0.12, 0.001, 20)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: 2.3 + 0.1 * e
    for one_pass in (False, None):  # a dataset that repeats, or unknown
        s.context.one_pass_epochs = one_pass
        assert "memorises" in finding(s.run(), "loss-at-chance").message


def test_loss_at_chance_does_not_read_the_first_epoch_of_a_model_trained_before():
    # A model that had memorised 300 rows of random labels, given to a new Trainer, began its first
    # epoch at 0.2% of chance: it was told "the labels can be learned" and the validation rows blamed.
    s = Stream()
    s.context.one_pass_epochs, s.context.trained_before = True, True
    train = curve(0.01, 0.001, 20)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: 2.8 + 0.05 * e
    assert "memorises" in finding(s.run(), "loss-at-chance").message


def test_one_pass_epochs_of_a_training_source():
    from trainkit.diagnosis.run_context import one_pass_epochs
    from trainkit.sources import ArraySource, DatasetSource

    rows = tf.data.Dataset.from_tensor_slices((np.zeros((64, 2), "float32"), np.zeros(64, "float32")))
    assert one_pass_epochs(ArraySource((np.zeros((8, 2), "float32"), np.zeros(8, "float32")))) is True
    assert one_pass_epochs(DatasetSource(rows.batch(8))) is True
    assert one_pass_epochs(DatasetSource(rows.shuffle(64).repeat().batch(8), 30)) is False
    # A generator may loop over its rows without a .repeat(): read steps_per_epoch batches an
    # epoch, how often it reads each is unknown (run to its end, once).
    batches = tf.data.Dataset.from_generator(lambda: iter([(np.zeros((8, 2), "float32"), np.zeros(8, "float32"))]),
                                             output_signature=(tf.TensorSpec((None, 2), tf.float32), tf.TensorSpec((None,), tf.float32)))
    assert one_pass_epochs(DatasetSource(batches, 30)) is None
    assert one_pass_epochs(DatasetSource(batches)) is True
    assert one_pass_epochs(DatasetSource(rows.batch(8), 4)) is True


def test_loss_at_chance_names_rows_shuffled_apart_from_their_labels():
    # A validation dataset zipped from x and y.shuffle(n) (val_loss 125% of chance, training loss
    # 0.06) was told "it memorises the training rows ... (e.g. random labels)".
    s = Stream()
    s.context.check_codes = ("shuffled-apart",)
    train = curve(0.7, 0.05, 20)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: LN2 + 0.02 * e
    f = finding(s.run(), "loss-at-chance")
    assert f.evidence["explained_by"] == ["shuffled-apart"] and "random labels)" not in f.message.split(";")[0]
    assert f.advice.startswith("Fix what shuffled-apart says first")
    # Training rows so paired: their loss stays at chance too, and the finding says why.
    s.train_loss = lambda e, st: LN2
    s.val_loss = lambda e: LN2
    assert "shuffled-apart" in finding(s.run(), "loss-at-chance").evidence["explained_by"]


def test_a_validation_loss_falling_back_from_a_jump_does_not_keep_loss_at_chance_silent():
    # low_batch_max at batch 64 (random labels, 10 classes, 20 validation rows): the validation loss
    # went from its best 2.21 up to 2.96 and back to 2.73 over the last 5 epochs, a 7.6% fall that
    # read as "still falling": no finding, while the training loss fell to 0.003 (memorising).
    s = Stream(epochs=20, task="multiclass", chance=math.log(10))
    train = curve(2.5, 0.003, 20)
    val = [2.36, 2.23, 2.21, 2.21, 2.37, 2.53, 2.42, 2.30, 2.37, 2.34, 2.35, 2.59, 2.77, 2.84, 2.90, 2.96, 2.92, 2.84, 2.78, 2.73]
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: val[e]
    f = finding(s.run(), "loss-at-chance")
    assert "memorises" in f.message
    # Falling that much back to its best level, it may still get below chance: no verdict yet.
    val[-5:] = [2.50, 2.42, 2.35, 2.30, 2.25]
    assert "loss-at-chance" not in codes(s.run())


def test_loss_collapsed_right_after_the_first_epoch():
    s = Stream()
    s.train_loss = lambda e, st: 0.7 if e == 0 and st == 0 else 0.004
    f = finding(s.run(), "loss-collapsed")
    assert f.epoch == 1 and f.evidence["epoch_loss"] == pytest.approx(0.004) and "leak" in f.advice


def test_loss_collapsed_without_a_chance_level_needs_a_loss_whose_floor_is_zero():
    # A cosine-similarity loss learning well (0.01, then -0.23 after epoch 2) was "under 2% of the
    # chance level n/a": with no chance level the bar is 1e-3, which any negative loss passed.
    s = Stream(task="regression", chance=None)
    s.train_loss = lambda e, st: 0.01 - 0.24 * e - 0.001 * st
    assert "loss-collapsed" not in codes(s.run())
    s.train_loss = lambda e, st: 0.7 if e == 0 and st == 0 else 0.0004  # a loss that cannot go below 0
    f = finding(s.run(), "loss-collapsed")
    assert "under 0.001 (no chance level is known for this loss)" in f.message and "n/a" not in f.message


def test_loss_collapsed_without_a_chance_level_needs_a_loss_that_fell():
    # A custom loss scaled by 1e-4 (MSE * 1e-4) read 5.2e-4 at its first step and at every epoch
    # after: "under 0.001 ... few tasks are solved that fast: the inputs contain the answer".
    s = Stream(task="regression", chance=None)
    s.train_loss = lambda e, st: 0.000522 - 1e-8 * (10 * e + st)
    assert "loss-collapsed" not in codes(s.run())
    s.train_loss = lambda e, st: 0.0009 if e == 0 and st == 0 else 0.0004  # fell, but not under 2% of its start
    assert "loss-collapsed" not in codes(s.run())
    s.train_loss = lambda e, st: 0.05 if e == 0 and st == 0 else 0.0004  # a fall from 0.05 to 0.0004 is one
    assert "loss-collapsed" in codes(s.run())


def test_loss_collapsed_without_a_chance_level_measures_the_fall_on_the_data():
    # The first step's loss holds the weight penalty, which the epoch's loss on the data does not:
    # MSE * 1e-4 (5.2e-4 throughout) beside an L2 penalty of 0.4 read as a fall from 0.4005 to
    # 5.2e-4, "the inputs contain the answer" again.
    s = Stream(task="regression", chance=None)
    s.context = dataclasses.replace(s.context, regularization=0.4)
    s.train_loss = lambda e, st: 0.4 + 0.000522 - 1e-8 * (10 * e + st)
    assert "loss-collapsed" not in codes(s.run())
    s.train_loss = lambda e, st: 0.4 + (0.05 if e == 0 and st == 0 else 0.0004)  # a fall from 0.05 to 0.0004 on the data is one
    assert "loss-collapsed" in codes(s.run())


def test_a_run_without_a_chance_level_is_told_which_verdicts_were_not_made():
    # A hinge or custom loss left six rules silent, and "no findings" read as a healthy run.
    s = Stream(task="regression", chance=None)
    s.context.loss = "Hinge()"
    f = finding(s.run(), "chance-level-unknown")
    assert f.severity == "info" and "Hinge()" in f.message and "loss-at-chance" in f.message and "plateau" in f.message
    assert "MAPE, MSLE" in f.advice and "Poisson" not in f.advice
    assert "chance-level-unknown" not in codes(Stream().run())
    # A Poisson loss goes below 0 (count models ended at -0.20 and -830): its two levels are named.
    s.context.loss = "Poisson()"
    advice = finding(s.run(), "chance-level-unknown").advice
    assert "m = y_train.mean(), scoring mean(m - y * log(m))" in advice and "mean(y - y * log(y))" in advice


def test_loss_collapsed_after_a_label_leak_the_checks_found_says_so():
    # It still hedged ("or the task is easy, which is fine") with label-leakage in the same report.
    s = Stream()
    s.context.check_codes = ("label-leakage",)
    s.train_loss = lambda e, st: 0.7 if e == 0 and st == 0 else 0.004
    f = finding(s.run(), "loss-collapsed")
    assert "label-leakage" in f.message and "fine" not in f.message and f.evidence["data_checks"] == ["label-leakage"]
    # Its fix names the leak's, not an overlap the checks did not find.
    assert f.advice.startswith("Do what that finding says (drop the leaked column)") and "validation rows" not in f.advice
    s.context.check_codes = ("label-leakage", "train-validation-overlap")
    f = finding(s.run(), "loss-collapsed")
    assert "(drop the leaked column; keep copies of training rows out of the validation rows)" in f.advice
    assert "give the answer away" in f.message
    # An overlap alone makes no training loss collapse: shifted windows of a series split at random
    # were told "the inputs give the answer away". It keeps the validation loss from showing it.
    s.context.check_codes = ("train-validation-overlap",)
    f = finding(s.run(), "loss-collapsed")
    assert "give the answer away" not in f.message and "validation rows repeat training rows" in f.message


def test_loss_collapsed_is_a_note_when_the_data_checks_found_no_leak():
    # Separable blobs with BatchNorm reached 1% of chance in epoch 2: a warning on a healthy run,
    # though the checks had looked for a leaked column and copied rows and found none.
    s = Stream()
    s.context.check_codes = ("class-imbalance",)
    s.train_loss = lambda e, st: 0.7 if e == 0 and st == 0 else 0.004
    f = finding(s.run(), "loss-collapsed")
    assert f.severity == "info" and "found no input column" in f.message and f.evidence["data_checks"] == []


def test_loss_collapsed_is_a_note_when_a_linear_fit_of_the_inputs_gets_as_low():
    # A random walk's next value from its window reached 0.3% of the walk's variance after 2
    # epochs, as its least-squares linear fit does: warned as a collapse to look into.
    s = Stream()
    s.train_loss = lambda e, st: 0.7 if e == 0 and st == 0 else 0.004
    s.context.linear_loss = 0.003
    f = finding(s.run(), "loss-collapsed")
    assert f.severity == "info" and "linear fit" in f.message and f.evidence["linear_loss"] == 0.003
    # A linear fit far from it explains nothing: the warning stands.
    s.context.linear_loss = 0.3
    f = finding(s.run(), "loss-collapsed")
    assert f.severity == "warning" and "linear fit" not in f.message


def test_loss_collapsed_is_not_read_from_a_penalty_that_fell_within_the_epoch():
    # L2(1.0) fell from ~5 to ~1.5 in epoch 1: the mean of the two taken out of the 5.08 loss left
    # -0.47, "under 2% of the chance level", on a run whose val_loss was 1.6.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 2.6).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.L2(1.0)),
                              keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.Adam(1e-2), task="binary", statistics=False)
    trainer.fit(x, y, epochs=1, batch_size=32, verbose=0, validation_split=0.2)
    assert trainer._live_diagnosis.diagnoser.epoch_losses(data_only=True)[0] < 0  # the estimate this guards against
    assert "loss-collapsed" not in {f.code for f in trainer.findings}


def test_loss_collapsed_without_validation_rows_claims_no_overlap_check():
    # With no validation data the overlap check returns nothing: the note said it "found no
    # validation rows copied from training", and downgraded the warning on that check.
    s = Stream()
    s.context.check_codes = ("class-imbalance",)
    s.context.has_validation = False
    s.val_loss = None
    s.train_loss = lambda e, st: 0.7 if e == 0 and st == 0 else 0.004
    f = finding(s.run(), "loss-collapsed")
    assert f.severity == "warning" and "no validation rows copied" not in f.message


@pytest.mark.parametrize(("fraction", "collapsed"), [(0.012, True), (0.026, False), (0.049, False)])
def test_loss_collapsed_spares_honest_easy_tasks_and_names_both_causes(fraction, collapsed):
    # A near-deterministic regression measured 2.6% of chance after epoch 2, separable blobs 4.9%:
    # both were told "the inputs almost certainly contain the answer". The leak recipe: ~1.2%.
    s = Stream()
    s.train_loss = lambda e, st: LN2 if e == 0 else fraction * LN2
    d = s.run()
    assert ("loss-collapsed" in codes(d)) is collapsed
    if collapsed:
        message = finding(d, "loss-collapsed").message
        assert "contain the answer" in message and "deterministic" in message and "almost certainly" not in message


def test_a_signal_that_fades_going_forward_is_vanishing_even_when_every_gradient_is_tiny_alike():
    # Ten tanh layers from random_normal(0.05): std 3e-3 at layer 3, 1.5e-6 at layer 9, gradients
    # ~5e-6 everywhere (first/last ratio ~1), and only loss-at-chance was reported.
    s = Stream()
    s.context = dataclasses.replace(s.context, layers=("input_layer", "dense", "dense_1", "dense_3", "dense_4", "dense_2"))
    for layer, std in (("dense", 3e-3), ("dense_1", 1e-4), ("dense_3", 1e-5), ("dense_4", 1.5e-6)):
        s.values[f"activation/{layer}/std"] = lambda e, st, std=std: std
    s.train_loss = lambda e, st: LN2
    s.val_loss = lambda e: LN2
    f = finding(s.run(), "vanishing-gradients")
    assert f.layer == "dense_4" and "fades on the way forward" in f.message and "glorot_uniform" in f.advice
    assert "vanishing-gradients" not in codes(Stream().run())  # healthy stds stay quiet


def test_nan_loss_names_the_step_and_the_first_layer_that_broke():
    s = Stream()
    bad = 3 * STEPS + 4
    s.train_loss = lambda e, st: math.nan if e * STEPS + st >= bad else 0.5
    s.values["activation/dense_1/nonfinite"] = lambda e, st: 7.0 if e * STEPS + st >= bad - 1 else 0.0
    s.values["activation/dense_2/nonfinite"] = lambda e, st: 1.0 if e * STEPS + st >= bad - 1 else 0.0
    f = finding(s.run(), "nan-loss")
    assert f.severity == "error" and f.step == bad and f.epoch == 3
    assert f.layer == "dense_1" and f.evidence["first_nonfinite_step"] == bad - 1
    assert f.evidence["last_finite_loss"] == pytest.approx(0.5)


def test_nan_weights_behind_a_finite_loss_are_reported_in_the_epoch_of_their_first_step():
    # A NaN batch late in epoch 1 (a ReLU kept the loss finite): the finding is judged at the end
    # of epoch 2, the first whose every step had NaN weights, and said "step 18, epoch 2" of it.
    s = Stream()
    bad = 2 * STEPS - 2
    s.values["weight_norm/dense/kernel"] = lambda e, st: math.nan if e * STEPS + st >= bad else 2.0
    f = finding(s.run(), "nan-loss")
    assert f.step == bad and f.epoch == 1 and "every step of epoch 3" in f.message


def test_nan_loss_is_not_blamed_on_gradients_a_loss_scale_optimizer_skipped():
    # mixed_float16 with a LossScaleOptimizer: the first steps' scaled gradients overflow float16
    # (skipped, the scale halved), then training goes on finite until an activation overflows.
    s = Stream()
    bad = 3 * STEPS + 4
    s.train_loss = lambda e, st: math.nan if e * STEPS + st >= bad else 0.5
    s.values["grad_norm/global"] = lambda e, st: math.inf if e * STEPS + st < 5 or e * STEPS + st >= bad else 1.0
    s.values["grad_nonfinite/dense_2/kernel"] = lambda e, st: 4.0 if e * STEPS + st < 5 or e * STEPS + st >= bad else 0.0
    s.values["activation/dense_1/nonfinite"] = lambda e, st: 7.0 if e * STEPS + st >= bad - 1 else 0.0
    for chunk in (STEPS, 3):
        f = finding(s.run(chunk=chunk), "nan-loss")
        assert f.step == bad and f.layer == "dense_1" and f.evidence["first_nonfinite_step"] == bad - 1
        assert "step 33 in the activations of layer 'dense_1'" in f.message


def test_nan_loss_in_a_float16_layer_names_float16_s_range_and_its_fixes():
    # A mixed_float16 layer's outputs overflow past 65,504, where float32 holds them: the advice
    # was to standardise the inputs and look at the weights, with no word of float16.
    s = Stream()
    bad = 2 * STEPS + 1
    s.train_loss = lambda e, st: math.nan if e * STEPS + st >= bad else 0.5
    s.values["activation/dense_1/nonfinite"] = lambda e, st: 7.0 if e * STEPS + st >= bad else 0.0
    f = finding(s.run(), "nan-loss")
    assert f.layer == "dense_1" and "float16" not in f.message + f.advice and "float16_layer" not in f.evidence
    s.context = dataclasses.replace(s.context, float16_layers=("dense_1", "dense_2"))
    f = finding(s.run(), "nan-loss")
    assert f.layer == "dense_1" and "'dense_1' computes in float16" in f.message and f.evidence["float16_layer"]
    assert f.advice.startswith("Build 'dense_1' with dtype='float32', or use keras.mixed_precision.set_global_policy('mixed_bfloat16')")
    assert Context.from_dict(s.context.to_dict()).float16_layers == ("dense_1", "dense_2")


def test_the_context_names_the_layers_that_compute_in_float16():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, dtype="mixed_float16", name="half"),
                              keras.layers.Dense(1, dtype="float32", name="out")])
    assert float16_layers(model) == ("half",)


def test_a_loss_non_finite_from_the_first_step_is_not_blamed_on_the_learning_rate():
    # Targets near 1e30 make the first MSE inf, before any update: lowering the rate cannot help.
    s = Stream(task="regression", chance=1.0)
    s.train_loss = lambda e, st: math.inf
    f = finding(s.run(), "nan-loss")
    assert f.step == 0 and "before any update" in f.message and "standardise the inputs and the targets" in f.advice
    assert "learning rate" not in f.advice and "last_finite_loss" not in f.evidence


def test_nan_loss_from_gradients_names_the_layer_back_propagation_reaches_first():
    s = Stream()
    s.train_loss = lambda e, st: math.inf if e * STEPS + st >= 12 else 0.5
    for layer in LAYERS:
        s.values[f"grad_nonfinite/{layer}/kernel"] = lambda e, st: 3.0 if e * STEPS + st >= 12 else 0.0
    assert finding(s.run(), "nan-loss").layer == "dense_2"


def test_nan_loss_looks_past_the_outputs_of_a_model_with_several():
    # The outputs (output_0, output_1 of a multi-output model) are where a NaN ends up, not where
    # it began: with every hidden layer finite, the gradients name the layer.
    s = Stream()
    s.train_loss = lambda e, st: math.nan if e * STEPS + st >= 12 else 0.5
    s.values["activation/output_1/nonfinite"] = lambda e, st: 2.0 if e * STEPS + st >= 12 else 0.0
    s.values["grad_nonfinite/dense_1/kernel"] = lambda e, st: 3.0 if e * STEPS + st >= 12 else 0.0
    f = finding(s.run(), "nan-loss")
    assert f.layer == "dense_1" and "gradients of layer 'dense_1'" in f.message


def test_nan_loss_tells_gradients_too_large_to_square_from_nan_gradients():
    # Finite gradients over ~1e19 have an infinite float32 norm but no NaN/inf entry.
    s = Stream()
    s.train_loss = lambda e, st: math.inf if e * STEPS + st >= 12 else 0.5
    s.values["grad_norm/dense_1/kernel"] = lambda e, st: math.inf if e * STEPS + st >= 12 else 0.4
    f = finding(s.run(), "nan-loss")
    assert f.layer == "dense_1" and "finite but too large for float32 to square" in f.message


def test_diverging_loss():
    s = Stream()
    losses = [0.7, 0.6, 0.55, 0.7, 1.2, 2.0, 3.5, 6.0] + [8.0] * 12
    s.train_loss = lambda e, st: losses[e]
    f = finding(s.run(), "diverging-loss")
    assert f.severity == "error" and "learning rate" in f.advice
    assert "its best (0.55) and above the first epoch's (0.7)" in f.message
    # Rising from the first epoch on, its best is the first epoch's loss: said once, not twice
    # (zero_lr_1 at seed 2: "13.4x its best (0.7673) and above the first epoch's (0.7673)").
    rising = [0.7, 1.0, 2.0] + [8.0] * 17
    s.train_loss = lambda e, st: rising[e]
    f = finding(s.run(), "diverging-loss")
    assert f.message.endswith("its best, the first epoch's (0.7).") and f.message.count("0.7)") == 1


def test_a_lone_low_epoch_of_a_noisy_loss_is_not_the_best_a_rise_is_measured_from():
    # 16 random-label rows under Dropout(0.9), 2 steps an epoch: the epoch loss jumped 0.47-1.35
    # about 0.8, and a rise to 1.022 was "2.2x its best (0.4708)", an error, in 5 of 10 seeds.
    noisy = [0.89, 0.66, 0.59, 0.83, 0.86, 0.62, 0.9, 0.68, 0.47, 1.03, 0.89, 0.74, 0.96, 0.78, 0.8,
             0.66, 0.8, 0.52, 0.7, 1.02]
    s = Stream()
    s.train_loss = lambda e, st: noisy[e]
    assert "diverging-loss" not in codes(s.run())
    # The same dip before a loss that grows 10x is divergence still, measured from the dip.
    rising = [*noisy[:17], 1.5, 3.0, 6.0]
    s.train_loss = lambda e, st: rising[e]
    assert "its best (0.47)" in finding(s.run(), "diverging-loss").message


def test_a_short_run_diverging_after_its_second_epoch_is_not_measured_from_its_first_epochs_descent():
    # 4 epochs, 5.5x its best: the only 3 epochs in a row before the last began with the first
    # epoch's loss, a fresh model's descent, whose mean (0.6) hid the rise to 1.1.
    rising = [1.0, 0.2, 0.6, 1.1]
    s = Stream(epochs=4)
    s.train_loss = lambda e, st: rising[e]
    assert "its best (0.2)" in finding(s.run(), "diverging-loss").message


def test_oscillating_loss_but_not_dropout_noise_at_a_low_loss():
    s = Stream()
    s.train_loss = lambda e, st: 0.3 if e % 2 else 0.9
    f = finding(s.run(), "oscillating-loss")
    assert f.evidence["sign_change_fraction"] >= 0.5
    # The lowest and highest losses are a range, not a move from one to the other.
    assert "(between 0.3 and 0.9)" in f.message
    quiet = Stream()
    train = curve(0.7, 0.05, 20)
    quiet.train_loss = lambda e, st: train[e] * (1.15 if e % 2 else 0.85)
    assert "oscillating-loss" not in codes(quiet.run())


def test_a_run_on_a_schedule_is_not_told_to_use_a_decaying_schedule():
    # A CosineDecay already decays: "or use a decaying schedule" told it what it had.
    rising = [0.7, 1.0, 2.0] + [8.0] * 17
    for code, loss in (("oscillating-loss", lambda e, st: 0.3 if e % 2 else 0.9), ("diverging-loss", lambda e, st: rising[e])):
        s = Stream()
        s.train_loss = loss
        assert "decaying schedule" in finding(s.run(), code).advice
        s.context = dataclasses.replace(s.context, schedule="CosineDecay", schedule_rate="initial_learning_rate")
        advice = finding(s.run(), code).advice
        assert "decaying schedule" not in advice and advice.startswith("Lower the learning rate")
    assert "and clip gradients" in advice


def test_oscillating_loss_from_strong_dropout_is_told_to_lower_the_dropout_not_the_learning_rate():
    # Dropout 0.9 after each hidden layer: the training loss (dropout on) zig-zagged between 0.92
    # and 1.67 above a validation loss of ~0.68, as much at a 10x lower learning rate, and was
    # told to lower the learning rate.
    s = Stream()
    s.context.dropout = 0.9
    s.train_loss = lambda e, st: 1.0 if e % 2 else 1.4
    s.val_loss = lambda e: 0.68
    f = finding(s.run(), "oscillating-loss")
    assert f.advice.startswith("Lower the dropout rate (now 0.9") and "learning_rate:" not in f.advice
    assert f.evidence["dropout"] == 0.9 and f.evidence["mean_val_loss"] == pytest.approx(0.68)
    # Without dropout the same curves get the usual advice.
    s.context.dropout = 0.0
    assert finding(s.run(), "oscillating-loss").advice.startswith("Lower the learning rate")


def test_plateau_after_a_little_learning():
    s = Stream()
    s.train_loss = lambda e, st: 0.69 if e == 0 else 0.6
    s.val_loss = lambda e: 0.61
    f = finding(s.run(), "plateau")
    assert f.evidence["final_loss"] == pytest.approx(0.6)


def test_plateau_measures_improvement_towards_the_floor_label_smoothing_sets():
    # BinaryCrossentropy(label_smoothing=0.4) never goes below 0.50 (the smoothed labels' entropy):
    # a model there after 0.58 -> 0.508 (13% of the loss, 90% of the way to its floor) was told
    # its training was stuck.
    baseline = chance_loss("binary", {"name": "binary_crossentropy", "label_smoothing": 0.4}, np.array([0.0, 1.0] * 50))
    assert baseline.floor == pytest.approx(-(0.2 * math.log(0.2) + 0.8 * math.log(0.8)), rel=1e-4)
    logits = chance_loss("multiclass", {"name": "categorical_crossentropy", "label_smoothing": 0.1, "from_logits": True},
                         np.eye(4)[np.arange(100) % 4])
    assert logits.floor == pytest.approx(-(0.925 * math.log(0.925) + 3 * 0.025 * math.log(0.025)), rel=1e-3)
    assert chance_loss("binary", "binary_crossentropy", np.array([0.0, 1.0] * 50)).floor == 0.0
    s = Stream()
    s.train_loss = lambda e, st: 0.58 if e == 0 else 0.508
    s.val_loss = lambda e: 0.51
    assert "plateau" in codes(s.run())  # without the floor: 12% in all
    s.context.loss_floor = baseline.floor
    assert "plateau" not in codes(s.run())
    # Stuck well above the floor is still a plateau, told so against the floor.
    s.train_loss = lambda e, st: 0.60 if e == 0 else 0.59
    f = finding(s.run(), "plateau")
    assert "floor 0.5004 that label smoothing sets" in f.message and f.evidence["loss_floor"] == pytest.approx(baseline.floor)
    # A fit's context carries it, weighted as its loss (weights of mean 2 double it).
    x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss=keras.losses.BinaryCrossentropy(label_smoothing=0.4), optimizer="adam", task="binary", statistics=False)
    trainer.fit(x, (x[:, 0] > 0).astype("float32"), sample_weight=np.full(64, 2.0), epochs=1, verbose=0)
    assert trainer._live_diagnosis.diagnoser.context.loss_floor == pytest.approx(2 * baseline.floor, rel=1e-4)


def test_no_plateau_while_the_validation_loss_below_the_training_loss_still_improves():
    # GaussianNoise(0.6) and Dropout(0.3) on a binary MLP: the training loss, measured with the
    # noise on, sat at 0.61-0.63 over the second half while the validation loss fell 0.586 -> 0.552,
    # and was told "training is stuck" (a larger learning rate).
    s = Stream()
    s.train_loss = lambda e, st: 0.69 if e == 0 else 0.6
    s.val_loss = lambda e: 0.58 - 0.003 * e
    assert "plateau" not in codes(s.run())
    # GaussianNoise(1.0) on a linear task: training flat at 0.51-0.56, 23% below its first epoch,
    # validation 0.60 -> 0.37 and flat since: a model that learned, then converged.
    s.val_loss = lambda e: 0.60 if e == 0 else 0.37
    assert "plateau" not in codes(s.run())
    # Flat, or falling back from a jump rather than to a new best: still a plateau.
    s.val_loss = lambda e: 0.55
    assert "plateau" in codes(s.run())
    s.val_loss = lambda e: 0.50 if e < 6 else 0.58 - 0.002 * e
    assert "plateau" in codes(s.run())
    # Falling from above the training loss (BatchNormalization's moving statistics catching up
    # with a stuck model) is no sign of learning.
    s.val_loss = lambda e: 0.9 - 0.01 * e
    assert "plateau" in codes(s.run())


def test_a_plateau_behind_a_rate_decayed_to_zero_names_the_decay_not_a_larger_rate():
    # SGD on ExponentialDecay(0.5, 10, 1e-3), flat from epoch 2: "try a larger learning rate
    # (learning_rate: 241 (now 0.5))", from the first steps' ratios, taken while the rate fell.
    s = Stream()
    s.context.optimizer, s.context.learning_rate = "SGD", None
    s.values["learning_rate"] = lambda e, st: 0.5 * 1e-3 ** (e * 2 + st / 16)
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 1e-6
    s.train_loss = lambda e, st: 0.69 if e == 0 else 0.6
    s.val_loss = lambda e: 0.61
    f = finding(s.run(), "plateau")
    assert "it fell from 0.5 to" in f.advice and "learning_rate: " not in f.advice
    # A rate that stays up (or a cosine decay, still 15% of its peak at three quarters of the
    # run) gets a larger rate.
    s.values["learning_rate"] = lambda e, st: 0.5 * (1 + math.cos(math.pi * e / 20)) / 2
    assert "learning_rate: " in finding(s.run(), "plateau").advice


def test_a_plateau_whose_rate_was_cut_after_the_loss_stopped_is_not_blamed_on_the_cut():
    # ReduceLROnPlateau(factor=0.1, patience=1) on a linear model of noisy labels: flat at 0.886
    # (0.909, 0.890, 0.888 at 0.05, 0.005, 0.005) and cut down to 5e-14. plateau said the rate was
    # "taken to ~0 while the loss still had to fall": the flat loss lowered the rate.
    s = Stream()
    s.context.optimizer, s.context.learning_rate = "Adam", 0.05
    s.values["learning_rate"] = lambda e, st: 0.05 * 0.1 ** max(0, e - 4)
    s.train_loss = lambda e, st: 0.69 if e == 0 else 0.6
    s.val_loss = lambda e: 0.61
    f = finding(s.run(), "plateau")
    assert "it fell from" not in f.advice and "optimizer.learning_rate: " in f.advice, f.advice
    # The same cut while the loss still fell at the working rate cut the run short (the validation
    # loss falling with it).
    s.train_loss = lambda e, st: 0.69 - 0.03 * min(e, 5) if e < 6 else 0.54
    s.val_loss = lambda e: 0.72 - 0.03 * min(e, 5) if e < 6 else 0.57
    f = finding(s.run(), "plateau")
    assert "it fell from 0.05 to" in f.advice, f.advice


def test_a_rate_cut_when_the_validation_loss_stopped_is_no_plateau_of_a_rate_cut_short():
    # ReduceLROnPlateau(patience=1, factor=0.1) watching val_loss on an overfitting MLP: the
    # validation loss 0.440 -> 0.464 while the training loss fell 0.28 -> 0.15, the rate cut 10x an
    # epoch from 3e-3, was told its training plateau came from a rate "fell ... while the loss was
    # still falling", with advice to give ReduceLROnPlateau a min_lr.
    s = Stream()
    s.context.optimizer, s.context.learning_rate = "Adam", 3e-3
    s.values["learning_rate"] = lambda e, st: 3e-3 * 0.1 ** max(0, e - 4)
    s.train_loss = lambda e, st: (0.62, 0.40, 0.28, 0.23, 0.19, 0.15, 0.147)[e] if e < 7 else 0.146
    s.val_loss = lambda e: (0.57, 0.455, 0.44, 0.438, 0.465, 0.464)[e] if e < 6 else 0.464
    assert "plateau" not in codes(s.run())
    # The validation loss still falling with it: the cut stopped a model that was learning.
    s.val_loss = lambda e: (0.57, 0.455, 0.40, 0.35, 0.30, 0.25, 0.24)[e] if e < 7 else 0.24
    assert "while the loss was still falling" in finding(s.run(), "plateau").message
    # Or still setting new bests, however slowly (0.425, 0.423, 0.422: under 1% an epoch).
    s.val_loss = lambda e: (0.57, 0.455, 0.44, 0.43, 0.425, 0.423, 0.422)[e] if e < 7 else 0.422
    assert "while the loss was still falling" in finding(s.run(), "plateau").message


def test_a_rate_plateau_cut_on_one_noisy_epoch_while_the_loss_fell_names_the_cuts_and_the_patience():
    # ReduceLROnPlateau(patience=1) on digits (Adam 1e-3, 40 validation rows): cut after epoch 6,
    # then every epoch to 1e-27, for a validation loss 0.4% above its best while the training loss
    # fell 9% an epoch. It ended at validation loss 1.63 where the run without it reached 1.45, and
    # nothing was reported: the loss was judged two cuts later, already stopped by them.
    train = (2.168, 1.79, 1.46, 1.228, 1.083, 0.999, 0.946, 0.942)
    val = (2.093, 1.885, 1.722, 1.691, 1.629, 1.635, 1.633, 1.634)
    s = Stream(epochs=30, task="multiclass", chance=math.log(10))
    s.context.val_rows = 40
    s.context.rate_plateau = {"monitor": "val_loss", "patience": 1, "min_delta": 1e-4, "cooldown": 0, "factor": 0.1, "min_lr": 0.0}
    s.values["learning_rate"] = lambda e, st: 1e-3 * 0.1 ** max(0, e - 5)
    s.train_loss = lambda e, st: train[min(e, 7)] if e < 8 else 0.941
    s.val_loss = lambda e: val[min(e, 7)] if e < 8 else 1.633
    f = finding(s.run(), "plateau")
    assert "cut after epoch 6, 7, 8, ... (24 cuts)" in f.message and "fell 9% an epoch" in f.message, f.message
    assert "0.4% above its best" in f.message and "40 rows" in f.message
    assert "patience=1" in f.advice and "min_delta=0.081" in f.advice and "cooldown" in f.advice, f.advice
    assert f.evidence["cut_epochs"][0] == 6 and f.epoch == 5
    # The validation loss 6% above its best at the cut (overfitting, beyond the noise of 40 rows'
    # 5%): the callback did its job, as before.
    s.val_loss = lambda e: (*val[:5], 1.73, 1.73, 1.73)[min(e, 7)] if e < 8 else 1.73
    assert "plateau" not in codes(s.run())
    # Its best 3 epochs before the cut (a patience that ran out): the validation loss had stopped.
    s.val_loss = lambda e: (2.093, 1.885, 1.629, 1.635, 1.633, 1.634, 1.633, 1.634)[min(e, 7)] if e < 8 else 1.633
    assert "cut after epoch" not in " ".join(f.message for f in s.run().findings)
    # The training loss no longer falling when it was cut: no plateau of a cut, as before.
    s.val_loss = lambda e: val[min(e, 7)] if e < 8 else 1.633
    s.train_loss = lambda e, st: (2.168, 1.79, 0.95, 0.948, 0.946, 0.945, 0.944, 0.942)[min(e, 7)] if e < 8 else 0.941
    assert "cut after epoch" not in " ".join(f.message for f in s.run().findings)


@pytest.mark.parametrize("plateau", [True, False])
def test_a_rate_cut_on_noise_after_which_the_validation_loss_set_a_new_best_helped(plateau):
    # Cut after epoch 9 of 30 on a validation loss 0.3% above its best while the training loss
    # fell 10% an epoch, as a ReduceLROnPlateau(patience=1) does: the validation loss then fell
    # 0.603 -> 0.46 (the cut helped), and the later cuts came as it stopped. It was told "the
    # cuts, not the model, stopped it" and to raise the patience; before the rule, nothing.
    train = [1.2 * 0.9**e for e in range(9)] + [0.45, 0.40, 0.385, 0.38]
    val = [1.25 * 0.9**e for e in range(8)] + [1.25 * 0.9**7 * 1.003, 0.52, 0.47, 0.462, 0.46]
    cuts = (8, 12, 14, 16, 18, 20, 22, 24, 26, 28)
    s = Stream(epochs=30, task="multiclass", chance=math.log(10))
    s.context.val_rows = 1000
    if plateau:
        s.context.rate_plateau = {"monitor": "val_loss", "patience": 1, "min_delta": 1e-4, "cooldown": 0, "factor": 0.1, "min_lr": 0.0}
    s.values["learning_rate"] = lambda e, st: 1e-3 * 0.1 ** sum(1 for c in cuts if c < e)
    s.train_loss = lambda e, st: train[e] if e < len(train) else 0.3799
    s.val_loss = lambda e: val[e] if e < len(val) else 0.4599
    assert "plateau" not in codes(s.run())
    # No new best past its noise (3% over 1000 rows) after the cut: the cuts stopped it.
    s.val_loss = lambda e: val[e] if e < 9 else 0.59
    assert "cut after epoch 9, 13, 15, ... (10 cuts)" in finding(s.run(), "plateau").message


@pytest.mark.parametrize("monitor", ["val_accuracy", "loss"])
def test_a_rate_plateau_on_another_monitor_is_not_given_the_validation_loss_s_min_delta(monitor):
    # min_delta is in the monitored value's units: a ReduceLROnPlateau watching val_accuracy
    # (mode 'max') was told "set min_delta=0.081 (~5% of the loss)", the validation loss's noise.
    train = (2.168, 1.79, 1.46, 1.228, 1.083, 0.999, 0.946, 0.942)
    val = (2.093, 1.885, 1.722, 1.691, 1.629, 1.635, 1.633, 1.634)
    s = Stream(epochs=30, task="multiclass", chance=math.log(10))
    s.context.val_rows = 40
    s.context.rate_plateau = {"monitor": monitor, "patience": 1, "min_delta": 1e-4, "cooldown": 0, "factor": 0.1, "min_lr": 0.0}
    s.values["learning_rate"] = lambda e, st: 1e-3 * 0.1 ** max(0, e - 5)
    s.train_loss = lambda e, st: train[min(e, 7)] if e < 8 else 0.941
    s.val_loss = lambda e: val[min(e, 7)] if e < 8 else 1.633
    advice = finding(s.run(), "plateau").advice
    assert "min_delta=0.081" not in advice and f"change of '{monitor}' that is noise, in its own units" in advice, advice
    assert ("~0.079 by chance" in advice) == (monitor == "val_accuracy")


def test_a_rate_plateau_is_not_asked_for_the_cooldown_and_min_lr_it_has():
    # ReduceLROnPlateau(patience=1, cooldown=2, min_lr=1e-7) was told to "give it a cooldown
    # (2-5 epochs)" and "a min_lr": it had both; its min_lr is too low, its cooldown is not.
    train = (2.168, 1.79, 1.46, 1.228, 1.083, 0.999, 0.946, 0.942)
    val = (2.093, 1.885, 1.722, 1.691, 1.629, 1.635, 1.633, 1.634)
    s = Stream(epochs=30, task="multiclass", chance=math.log(10))
    s.context.val_rows = 40
    s.context.rate_plateau = {"monitor": "val_loss", "patience": 1, "min_delta": 1e-4, "cooldown": 2, "factor": 0.1, "min_lr": 1e-7}
    s.values["learning_rate"] = lambda e, st: max(1e-7, 1e-3 * 0.1 ** max(0, (e - 3) // 3))
    s.train_loss = lambda e, st: train[min(e, 7)] if e < 8 else 0.941
    s.val_loss = lambda e: val[min(e, 7)] if e < 8 else 1.633
    advice = finding(s.run(), "plateau").advice
    assert "give it a cooldown" not in advice and "cooldown=2, min_lr=1e-07)" in advice, advice
    assert "raise its min_lr to ~1e-05" in advice and "give it a min_lr" not in advice


def test_a_keras_rate_plateau_callbacks_settings_reach_the_context_as_json_values():
    from trainkit.callbacks.keras_callbacks import KerasCallback
    from trainkit.diagnosis.run_context import _rate_plateau_config

    plateau = keras.callbacks.ReduceLROnPlateau(patience=np.int64(1), min_delta=np.float32(0.01), cooldown=2)
    config = _rate_plateau_config([KerasCallback(plateau)])
    assert config == {"monitor": "val_loss", "patience": 1, "min_delta": pytest.approx(0.01), "cooldown": 2, "factor": 0.1, "min_lr": 0.0}
    context = Context.from_dict(json.loads(json.dumps(dataclasses.replace(Context(), rate_plateau=config).to_dict())))
    assert context.rate_plateau["patience"] == 1
    assert _rate_plateau_config([KerasCallback(keras.callbacks.EarlyStopping())]) is None


def test_a_rate_cut_to_zero_while_the_loss_fell_fast_is_a_plateau_however_far_it_had_come():
    # LearningRateScheduler at 1e-8 from epoch 4 of 14: the loss 0.865 -> 0.145, falling 25% an
    # epoch, then 0.1447 for 11 epochs, and no finding (plateau wants < 25% improvement in all).
    s = Stream()
    s.values["learning_rate"] = lambda e, st: 1e-3 if e < 4 else 1e-9
    s.train_loss = lambda e, st: (0.69, 0.5, 0.35, 0.25)[e] if e < 4 else 0.2
    s.val_loss = lambda e: (0.69, 0.5, 0.35, 0.25)[e] + 0.02 if e < 4 else 0.22
    f = finding(s.run(), "plateau")
    assert "the learning rate fell from 0.001 to 1e-09 while the loss was still falling" in f.message, f.message
    assert "decay more slowly or to a floor" in f.advice and f.evidence["learning_rate_peak"] == pytest.approx(1e-3)
    # The same curve at a rate that stays up converged: no plateau.
    s.values["learning_rate"] = lambda e, st: 1e-3
    assert "plateau" not in codes(s.run())
    # The same cut on a solved task (0.69 -> 0.012, under 5% of chance) ended its fine-tuning:
    # no plateau, as before the cut was judged.
    s.values["learning_rate"] = lambda e, st: 1e-3 if e < 4 else 1e-9
    s.train_loss = lambda e, st: (0.69, 0.2, 0.06, 0.02)[e] if e < 4 else 0.012
    s.val_loss = lambda e: (0.69, 0.2, 0.06, 0.02)[e] + 0.005 if e < 4 else 0.017
    assert "plateau" not in codes(s.run())


def test_loss_at_chance_behind_a_rate_decayed_to_zero_names_the_decay_not_the_labels():
    # Adam on ExponentialDecay(1e-3, decay_steps=5, decay_rate=0.1): ~0 after the first epoch, the
    # loss flat at 108% of chance, told "the labels are unpredictable from the inputs".
    s = Stream()
    s.context.learning_rate = None
    s.values["learning_rate"] = lambda e, st: 1e-3 * 0.1 ** ((e * STEPS + st) / 5)
    s.train_loss = lambda e, st: 0.75 + 1e-3 * math.sin(7 * st + e)
    s.val_loss = lambda e: 0.725
    f = finding(s.run(), "loss-at-chance")
    assert "learning rate fell from 0.001" in f.message and "unpredictable" not in f.message
    assert "decay more slowly" in f.advice and f.evidence["learning_rate_peak"] == pytest.approx(1e-3)
    # A rate that stays up: the labels are suspected, as before.
    s.values["learning_rate"] = lambda e, st: 1e-3
    assert "unpredictable" in finding(s.run(), "loss-at-chance").message
    # ReduceLROnPlateau(patience=1) cutting the rate 10x an epoch after 2 flat epochs at the full
    # rate (random labels at chance from the first step): the flat loss lowered the rate, not the
    # other way round, and it was told "says nothing about the labels yet".
    s.values["learning_rate"] = lambda e, st: 1e-3 * 0.1 ** max(0, e - 1)
    assert "unpredictable" in finding(s.run(), "loss-at-chance").message


def test_loss_at_chance_behind_a_weight_decay_that_collapsed_the_weights_names_the_decay():
    # AdamW(1e-3, weight_decay=50): 5% of every weight gone each step, kernels at 0.1-0.4% of their
    # start, the loss at 100% of chance, told "the labels are unpredictable from the inputs".
    s = Stream()
    s.context = dataclasses.replace(s.context, optimizer="AdamW", weight_decay=50.0)
    for layer in LAYERS:
        s.values[f"weight_norm/{layer}/kernel"] = lambda e, st: 2.0 * 0.95 ** (e * STEPS + st)
    s.train_loss = lambda e, st: LN2 + 1e-3 * math.sin(7 * st + e)
    s.val_loss = lambda e: LN2
    f = finding(s.run(), "loss-at-chance")
    assert "weight_decay (50) shrank the weight matrices" in f.message and "unpredictable" not in f.message
    assert "optimizer.weight_decay" in f.advice and f.evidence["weight_share"] < 0.01
    # Weights that kept their size (weight_decay 5: 53-74%), or no weight decay: the labels, as before.
    for layer in LAYERS:
        s.values[f"weight_norm/{layer}/kernel"] = lambda e, st: 2.0 * 0.997 ** (e * STEPS + st)
    assert "unpredictable" in finding(s.run(), "loss-at-chance").message


def test_weights_frozen_behind_a_dead_relu_output_names_the_output_not_a_train_step():
    # Dense(1, activation="relu") with its input below 0 for every row: outputs 0, no gradient, the
    # loss 11.77 at every epoch; told to check a train_step override and the learning rate.
    s = Stream(task="regression", chance=1.03)
    s.train_loss = lambda e, st: 11.77
    s.val_loss = lambda e: 11.61
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 0.0
        s.values[f"update_ratio/{layer}/bias"] = lambda e, st: 0.0
        s.values[f"grad_norm/{layer}/kernel"] = lambda e, st: 0.0
    s.values["grad_norm/global"] = lambda e, st: 0.0
    s.values["activation/dense_2/dead_fraction"] = lambda e, st: 1.0
    f = finding(s.run(), "weights-frozen")
    assert "output layer 'dense_2' applies a ReLU" in f.message and "train_step" not in f.advice
    assert "linear" in f.advice and f.layer == "dense_2"
    # An output that was alive: the step is suspected, as before.
    s.values["activation/dense_2/dead_fraction"] = lambda e, st: 0.0
    assert "train_step" in finding(s.run(), "weights-frozen").advice


def test_weights_frozen_by_gradients_nonfinite_at_every_step_says_the_steps_were_skipped():
    # uint8 images into a mixed_float16 Conv2D: every step's gradients overflowed float16, the
    # LossScaleOptimizer skipped all 9 steps, and the run was told to check a train_step override.
    s = Stream()
    s.train_loss = lambda e, st: 5.146
    s.val_loss = lambda e: 5.2
    s.values["grad_norm/global"] = lambda e, st: math.nan
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 0.0
    s.context = dataclasses.replace(s.context, float16_layers=tuple(LAYERS))
    f = finding(s.run(), "weights-frozen")
    assert "NaN/inf at every one of the" in f.message and "LossScaleOptimizer" in f.message
    assert "train_step" not in f.advice and "mixed_bfloat16" in f.advice and f.evidence["float16"]
    # In float32 (no float16 layer): the gradients, not float16, are named.
    s.context = dataclasses.replace(s.context, float16_layers=())
    f = finding(s.run(), "weights-frozen")
    assert "LossScaleOptimizer" not in f.message and "grad_nonfinite" in f.advice
    # One finite gradient: a step could apply, so the step itself is suspected, as before.
    s.values["grad_norm/global"] = lambda e, st: 1.0 if e == 1 and st == 2 else math.nan
    assert "train_step" in finding(s.run(), "weights-frozen").advice


def test_a_dead_relu_head_beside_one_that_learns_is_named():
    # Dense(1, activation="relu") whose bias started at -50, beside a sigmoid head that learned:
    # price_loss 2.181 at every epoch while the total fell, and no finding said so.
    s = Stream()
    s.context = dataclasses.replace(s.context, output_layers=("dense_2", "price"))
    s.values["activation/price/dead_fraction"] = lambda e, st: 1.0
    f = finding(s.run(), "dead-relu")
    assert f.layer == "price" and "output layer 'price'" in f.message and "other outputs train" in f.message
    assert "linear" in f.advice and "get_layer('price')" in f.advice
    assert "weights-frozen" not in codes(s.run())
    # Alive at one step, or a model with one output (weights-frozen's case): nothing.
    s.values["activation/price/dead_fraction"] = lambda e, st: 0.0 if e == 0 and st == 3 else 1.0
    assert "dead-relu" not in codes(s.run())
    s.values["activation/price/dead_fraction"] = lambda e, st: 1.0
    # An output trained with no loss (loss=[..., None]) is asked nothing: its ReLU may stay off.
    s.context = dataclasses.replace(s.context, untrained_outputs=("price",))
    assert "dead-relu" not in codes(s.run())
    s.context = dataclasses.replace(s.context, output_layers=("price",), untrained_outputs=())
    assert "dead-relu" not in codes(s.run())


def test_the_context_names_the_output_layers_trained_with_no_loss():
    heads = [types.SimpleNamespace(loss="mse"), types.SimpleNamespace(loss=None)]
    assert _untrained_outputs(types.SimpleNamespace(heads=heads), ("dense_2", "price")) == ("price",)
    assert _untrained_outputs(types.SimpleNamespace(heads=heads[:1]), ("dense_2", "price")) == ()
    context = Context(task="regression", loss="mse", untrained_outputs=("price",))
    assert Context.from_dict(context.to_dict()).untrained_outputs == ("price",)


def test_underfitting_when_training_ends_while_the_loss_falls_fast():
    s = Stream()
    s.train_loss = lambda e, st: 0.69 - 0.012 * e
    s.val_loss = lambda e: 0.70 - 0.012 * e
    f = finding(s.run(), "underfitting")
    assert "epochs" in f.advice
    assert "raise the learning rate" in f.advice


def test_underfitting_names_no_validation_loss_it_did_not_read():
    # 5 rows of y = 2x + 1, no validation, Adam 1e-3 for 200 epochs: "with the validation loss
    # falling too" was said of a fit that had no validation rows.
    s = Stream()
    s.train_loss = lambda e, st: 0.69 - 0.012 * e
    s.val_loss, s.context.has_validation = None, False
    f = finding(s.run(), "underfitting")
    assert "validation" not in f.message and "the model is undertrained" in f.message
    # Two validation rows are no measure either: their flat loss neither vetoes the verdict (as
    # the validation loss of 5 rows or more does) nor is named in it.
    s = Stream()
    s.context.val_rows = 2
    s.train_loss = lambda e, st: 0.69 - 0.012 * e
    s.val_loss = lambda e: 0.70
    f = finding(s.run(), "underfitting")
    assert "validation" not in f.message
    s.context.val_rows = 5
    assert "underfitting" not in codes(s.run())


def test_underfitting_after_early_stopping_says_to_let_it_go_on_not_to_raise_the_epochs():
    # "Train for more epochs (training.epochs: 40)" to a run early stopping had ended: more epochs
    # would be cut short by the same stop.
    s = Stream()
    s.train_loss = lambda e, st: 0.69 - 0.012 * e
    s.val_loss = lambda e: 0.70 - 0.012 * e
    s.notes["stop_reason"] = "stopped"
    d = s.run()
    advice = finding(d, "underfitting").advice
    assert "early stopping" in advice and "patience" in advice and "training.epochs" not in advice


def test_underfitting_on_data_the_checks_found_unscaled_says_to_standardise_first():
    # Three features x1000: 20 epochs ended at 3.6x chance, still falling, and the advice was
    # "train for more epochs or raise the learning rate"; the scale is what slows every step.
    s = Stream()
    s.context.check_codes = ("unscaled-inputs",)
    s.train_loss = lambda e, st: 0.69 - 0.012 * e
    s.val_loss = lambda e: 0.70 - 0.012 * e
    f = finding(s.run(), "underfitting")
    assert f.advice.startswith("Standardise the inputs first (preprocessing.standardize_inputs: true; see unscaled-inputs)")
    assert "then: train for more epochs" in f.advice.lower()
    s = Stream(task="regression", chance=1.0)
    s.context.check_codes = ("unscaled-inputs", "unscaled-targets")
    s.train_loss = lambda e, st: 1.5 - 0.03 * e
    s.val_loss = lambda e: 1.55 - 0.03 * e
    f = finding(s.run(), "underfitting")
    assert f.advice.startswith("Standardise the inputs and targets first (preprocessing.standardize_inputs: true and preprocessing.standardize_targets: true")
    s.context.check_codes = ()
    assert finding(s.run(), "underfitting").advice.startswith("Train for more epochs")
    # A Python fit's: the code that standardises them and fit's own epochs, no recipe key.
    s.context.recipe, s.context.check_codes = False, ("unscaled-inputs", "unscaled-targets")
    advice = finding(s.run(), "underfitting").advice
    assert advice.startswith("Standardise the inputs and targets first (keras.layers.Normalization() adapted on x_train first in the model"), advice
    assert "y = (y - y_train.mean()) / y_train.std()" in advice and "for more epochs (epochs=40 in fit)" in advice, advice
    assert not any(key in advice for key in ("preprocessing.", "training.", "optimizer.")), advice


def test_underfitting_after_a_start_far_above_chance_says_to_fix_that_first():
    # ReLU layers at random_normal(stddev=1) on the diabetes data started and ended at 1e5x chance,
    # still falling, and were told "more epochs, a larger learning rate, more capacity".
    s = Stream()
    s.train_loss = lambda e, st: 40.0 if e == 0 and st < 3 else 0.69 - 0.012 * e
    s.val_loss = lambda e: 0.70 - 0.012 * e
    d = s.run()
    assert "initial-loss-too-high" in codes(d)
    assert finding(d, "underfitting").advice.startswith("Fix what initial-loss-too-high says first")


@pytest.mark.parametrize("code", ["lr-too-high", "diverging-loss", "exploding-gradients", "dead-relu", "saturated-activations"])
def test_no_advice_to_raise_the_learning_rate_after_a_finding_that_lowers_it(code):
    # Learning rate 1.0 got lr-too-high ("Lower the learning rate") and underfitting "... or raise
    # the learning rate (... 3 (now 1))".
    s = Stream()
    if code == "dead-relu":  # judged again on the whole run at its end: its units stay dead to the end
        s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.8 if e >= 2 else 0.05
    s.train_loss = lambda e, st: 0.69 - 0.012 * e
    s.val_loss = lambda e: 0.70 - 0.012 * e
    d = Diagnoser(s.context)
    d.replace(Finding(code, "warning", "m", "Lower the learning rate."))
    f = finding(s.run(diagnoser=d), "underfitting")
    assert "raise the learning rate" not in f.advice and code in f.advice and "epochs" in f.advice
    s.train_loss = lambda e, st: 0.69 if e == 0 else 0.6
    s.val_loss = lambda e: 0.61
    d = Diagnoser(s.context)
    d.replace(Finding(code, "warning", "m", "Lower the learning rate."))
    f = finding(s.run(diagnoser=d), "plateau")
    assert "larger learning rate" not in f.advice and code in f.advice


def test_underfitting_held_back_by_strong_dropout_is_told_to_lower_it_not_to_grow_the_model():
    # Dropout 0.9 after each hidden layer: 30 epochs ended at 93% of chance with the training loss
    # (dropout on) above the validation loss (off), and the advice was "raise the learning rate,
    # more capacity".
    s = Stream(epochs=20)
    s.context.dropout = 0.9
    s.train_loss = lambda e, st: 1.4 * 0.96**e
    s.val_loss = lambda e: 0.67 - 0.002 * e
    f = finding(s.run(), "underfitting")
    assert f.advice.startswith("Lower the dropout rate (now 0.9") and "capacity" not in f.advice
    assert f.evidence["dropout"] == 0.9
    # Without dropout the training loss compares with the validation loss: falling in step with it,
    # the same training curve gets the usual advice; next to a flat validation loss it is
    # memorising, not undertrained.
    s.context.dropout = 0.0
    assert "underfitting" not in codes(s.run())
    s.val_loss = lambda e: 1.45 * 0.96**e
    assert "capacity" in finding(s.run(), "underfitting").advice


def test_a_training_loss_falling_beside_a_flat_validation_loss_is_not_undertrained():
    # train_simple_fixed at batch 64 (80 rows, 150 epochs): 16% over the last 38 epochs (0.44 ->
    # 0.37) while the validation loss went 0.606 -> 0.602 was "undertrained: train for 300 epochs";
    # at 300 epochs its validation loss rose from epoch 119 (overfitting).
    s = Stream(epochs=40)
    s.train_loss = lambda e, st: 0.60 - 0.006 * e
    s.val_loss = lambda e: 0.62 - 0.0002 * e
    assert "underfitting" not in codes(s.run())
    s.val_loss = lambda e: 0.62 - 0.004 * e  # most of the fall carries over: undertrained
    assert "underfitting" in codes(s.run())


def test_loss_at_chance_under_strong_dropout_blames_the_dropout_not_the_labels():
    # Dropout 0.9 after each hidden layer: 15 epochs ended at 118% of chance (validation 93%),
    # the training loss (dropout on) above the validation loss (off); loss-at-chance said "the
    # labels are unpredictable from the inputs".
    s = Stream(epochs=15)
    s.context.dropout = 0.9
    s.train_loss = lambda e, st: 0.82 + 0.06 * ((e + 1) % 2)
    s.val_loss = lambda e: 0.66 - 0.001 * e
    f = finding(s.run(), "loss-at-chance")
    assert f.advice.startswith("Lower the dropout rate (now 0.9") and "unpredictable" not in f.message
    assert f.evidence["dropout"] == 0.9 and f.evidence["final_val_loss"] == pytest.approx(0.646)
    # Without dropout the same curves are the labels' verdict.
    s.context.dropout = 0.0
    f = finding(s.run(), "loss-at-chance")
    assert "unpredictable" in f.message and "dropout" not in f.advice


def test_dead_relus_found_by_the_run_itself_change_the_underfitting_advice():
    s = Stream()
    s.train_loss = lambda e, st: 0.69 - 0.012 * e
    s.val_loss = lambda e: 0.70 - 0.012 * e
    s.values["activation/dense/dead_fraction"] = lambda e, st: 0.8
    d = s.run()
    assert "dead-relu" in codes(d)
    assert "raise the learning rate" not in finding(d, "underfitting").advice



@pytest.mark.parametrize("stat", ["dead_fraction", "saturated_fraction"])
def test_units_blocked_before_the_first_update_are_not_told_to_lower_the_learning_rate_elsewhere(stat):
    # A bias of -5 kills every unit at initialisation: dead-relu says the learning rate did not do
    # it, while plateau said "lower the learning rate (see dead-relu)" and underfitting "once the
    # learning rate is lowered (see dead-relu)".
    code = "dead-relu" if stat == "dead_fraction" else "saturated-activations"
    s = Stream()
    s.train_loss = lambda e, st: 0.69 if e == 0 else 0.6
    s.val_loss = lambda e: 0.61
    s.values[f"activation/dense/{stat}"] = lambda e, st: 0.9
    f = finding(s.run(), "plateau")
    assert f"fix what {code} says first" in f.advice and "lower the learning rate" not in f.advice
    s.train_loss = lambda e, st: 0.69 - 0.012 * e
    s.val_loss = lambda e: 0.70 - 0.012 * e
    f = finding(s.run(), "underfitting")
    assert f"once what {code} says is fixed" in f.advice and "learning rate is lowered" not in f.advice
    # Killed by training (alive at the first step): the learning rate, with the rate to use.
    s.values[f"activation/dense/{stat}"] = lambda e, st: 0.0 if e == st == 0 else 0.9
    assert f"once the learning rate is lowered (see {code})" in finding(s.run(), "underfitting").advice
    s.train_loss = lambda e, st: 0.69 if e == 0 else 0.6
    s.val_loss = lambda e: 0.61
    assert f"lower the learning rate (optimizer.learning_rate: 0.0001 (now 0.001); see {code})" in finding(s.run(), "plateau").advice

# -- learning rate ----------------------------------------------------------------------------------

def test_lr_too_high_needs_large_updates_and_a_bad_loss_trend():
    s = Stream()
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 0.8
    base = s.train_loss
    s.train_loss = lambda e, st: 5.0 if (e, st) == (0, 2) else base(e, st)
    f = finding(s.run(), "lr-too-high")
    # The rate that brings the steps from 80% to ~1% of the weights.
    assert f.evidence["update_ratio_median"] == pytest.approx(0.8) and "optimizer.learning_rate: 1.25e-05 (now 0.001)" in f.advice
    # The same update sizes while the loss falls smoothly: no verdict.
    calm = Stream()
    for layer in LAYERS:
        calm.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 0.8
    assert "lr-too-high" not in codes(calm.run())


def test_lr_too_high_names_the_rate_a_callback_raised_not_the_optimizer_s_starting_one():
    # LearningRateScheduler(lambda e, lr: min(0.4, 1e-5 * 10 ** e)) on Adam(1e-5): the steps at 0.4
    # blew up, and lr-too-high said "learning_rate=7.61e-07 in the optimizer (now 1e-05)".
    s = Stream()
    s.context.learning_rate = 1e-5
    s.values["learning_rate"] = lambda e, st: min(0.4, 1e-5 * 10 ** (e + 1))
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 0.3 if e >= 4 else 1e-3
    s.train_loss = lambda e, st: 0.69 if e < 4 else 3.0
    f = finding(s.run(), "lr-too-high")
    assert f.evidence["learning_rate"] == pytest.approx(0.4) and "optimizer.learning_rate: 0.001 (now 0.4)" in f.advice, f.advice


def test_rate_advice_names_the_learning_rate_scheduler_s_function_not_the_optimizer_s_rate():
    # A LearningRateScheduler sets the optimizer's rate at every epoch: a Python fit diverging at
    # the 10 its function returned was told "learning_rate=0.121 in the optimizer (now 10)", a
    # setting the callback overwrites at the next epoch.
    s = Stream()
    s.context.learning_rate, s.context.recipe, s.context.rate_callback = 1e-5, False, "LearningRateScheduler"
    s.values["learning_rate"] = lambda e, st: min(0.4, 1e-5 * 10 ** (e + 1))
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 0.3 if e >= 4 else 1e-3
    s.train_loss = lambda e, st: 0.69 if e < 4 else 3.0
    f = finding(s.run(), "lr-too-high")
    assert "the rates your LearningRateScheduler's function returns times 0.0025, its largest 0.001 (now 0.4)" in f.advice, f.advice
    assert "in the optimizer (now" not in f.advice


def test_a_fit_with_a_learning_rate_scheduler_records_it_in_the_context():
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    trainer = Trainer(model, loss="mse", optimizer=keras.optimizers.SGD(0.01), task="regression", logdir=None, jit_compile=False)
    trainer.fit(x, x[:, 0], epochs=1, verbose=0, callbacks=[keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr)])
    assert trainer._live_diagnosis.diagnoser.context.rate_callback == "LearningRateScheduler"
    trainer.fit(x, x[:, 0], epochs=1, verbose=0)
    assert trainer._live_diagnosis.diagnoser.context.rate_callback is None


def fine_tune_stream(trained_before: bool, step_ratio: float) -> Stream:
    """A run whose steps move every kernel by ``step_ratio`` of its weights, from trained weights or not."""
    s = Stream()
    s.context.trained_before = trained_before
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: step_ratio
    return s


@pytest.mark.parametrize("trained_before", [True, False])
def test_lr_too_high_sees_a_fine_tune_whose_validation_loss_jumps_as_its_training_loss_falls(trained_before):
    # A pretrained base unfrozen under Adam 3e-2: steps of 27-39% of its kernels, training loss
    # 0.32 -> 0.001 while the validation loss went 0.45 -> 6.6 after one epoch; nothing was said.
    s = fine_tune_stream(trained_before, 0.3)
    train = curve(0.45, 0.001, s.epochs)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: 6.6 if e == 0 else 1.2
    found = [f for f in s.run().findings if f.code == "lr-too-high"]
    if not trained_before:  # a fresh model's first loss is chance, no measure of what it knew
        assert not found
        return
    assert "the validation loss jumped to 6.6, 14.7x" in found[0].message and found[0].evidence["peak_val_loss"] == 6.6
    # The same fine-tune with steps of ~1% of the weights is no learning rate's fault.
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 0.01
    assert "lr-too-high" not in codes(s.run())


@pytest.mark.parametrize("trained_before", [True, False])
def test_lr_too_high_sees_a_fine_tune_whose_first_epoch_undoes_the_trained_weights(trained_before):
    # A trained base unfrozen under Adam 1e-2: steps of 6% of its kernels, its first step's loss
    # 0.02 (the trained weights') and the first epoch's 0.25, validation 0.067 -> 0.09-0.22; under
    # the 10% bar nothing was said (overfitting, "stop at epoch 1", at best).
    s = fine_tune_stream(trained_before, 0.06)
    s.train_loss = lambda e, st: 0.02 if e == st == 0 else (0.25 if e == 0 else 0.06)
    s.val_loss = lambda e: 0.15
    found = [f for f in s.run().findings if f.code == "lr-too-high"]
    if not trained_before:  # a fresh model's first loss is chance, no measure of what it knew
        assert not found
        return
    assert "the first epoch's training loss rose to" in found[0].message and "undo what they learned" in found[0].message
    # Steps of 1-2% (Adam 3e-3 measured 1.9%: loss 0.02 -> 0.085, validation unharmed) are let be,
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 0.02
    assert "lr-too-high" not in codes(s.run())
    # and so is a first epoch only a few hundredths of chance above an easy first batch.
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 0.06
    s.train_loss = lambda e, st: 0.02 if e == st == 0 else (0.07 if e == 0 else 0.06)
    assert "lr-too-high" not in codes(s.run())


@pytest.mark.parametrize("level", [0.3, -0.3])
def test_lr_too_high_sees_no_progress_of_a_negative_loss(level):
    # "No better than 90% of the start" of a start of -0.3 asked for a loss above -0.27, worse
    # than the start: a cosine-similarity loss stuck where it began under 80% steps was learning.
    s = Stream(task="regression", chance=None)
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 0.8
    s.train_loss = lambda e, st: level + 0.01 * math.sin(3 * e + st)
    s.val_loss = None
    assert "the loss is not falling" in finding(s.run(), "lr-too-high").message


def test_lr_too_high_from_the_very_first_steps_before_the_units_die():
    # Adam lr=1.0: update ratio 0.99 at step 0, then ~0 once the ReLUs died: the median over the
    # first 32 steps (0.03) missed it; diverging-loss advised lr 0.1, still 100x Adam's default.
    s = Stream()
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 0.99 if e == st == 0 else 1e-5
    base = s.train_loss
    s.train_loss = lambda e, st: 500.0 if (e, st) == (0, 3) else base(e, st)
    d = s.run()
    f = finding(d, "lr-too-high")
    assert f.evidence["update_ratio_median"] == pytest.approx(0.99)
    # One rate for every finding of the run: the steps measured at 99% of the weights bring it to
    # ~1% (lr-too-high said 1e-5 while diverging-loss said 1e-4; SGD at 2 was told 0.001 and 0.2).
    assert "optimizer.learning_rate: 1.01e-05 (now 0.001)" in f.advice and "optimizer.learning_rate: 1.01e-05 (now 0.001)" in finding(d, "diverging-loss").advice
    s.context = dataclasses.replace(s.context, learning_rate=1.0)
    assert "optimizer.learning_rate: 0.001 (now 1)" in finding(s.run(), "diverging-loss").advice
    # A healthy run's first steps (bias ratios of 1 at their first update included) stay quiet.
    assert "lr-too-high" not in codes(Stream().run())


def test_the_lower_learning_rate_advised_for_sgd_is_sgd_s_own():
    # SGD at 2 was told 0.001, "Adam's default": 2000x lower, where ~100x brings its steps to ~1%.
    s = Stream()
    s.context = dataclasses.replace(s.context, optimizer="SGD", learning_rate=2.0)
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 1.0
    base = s.train_loss
    s.train_loss = lambda e, st: 5.0 if (e, st) == (0, 2) else base(e, st)
    advice = finding(s.run(), "lr-too-high").advice
    assert "optimizer.learning_rate: 0.02 (now 2)" in advice and "Adam" not in advice


def test_lr_too_low_from_the_first_updates_and_a_steadily_falling_loss():
    s = Stream()
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 1e-4
    s.train_loss = lambda e, st: 0.70 - 0.005 * e
    s.val_loss = lambda e: 0.71 - 0.005 * e
    f = finding(s.run(), "lr-too-low")
    assert f.evidence["update_ratio_early"] == pytest.approx(1e-4) and "learning_rate: 0.01" in f.advice
    assert "by only 0.01% of their size" in f.message  # "0.00%" said nothing
    # A fall of 0.17% (Adam at 1e-6: 0.6834 to 0.6823) read "having fallen only 0%".
    s.train_loss = lambda e, st: 0.6834 - 0.00006 * e
    assert "having fallen only 0.17% (0.6834 to 0.6823)" in finding(s.run(), "lr-too-low").message
    # An adaptive optimizer's step is ~the rate itself: at most 10x (Ftrl was told 0.01 -> 10).
    for optimizer in ("Adagrad", "Ftrl"):
        s.context = dataclasses.replace(s.context, optimizer=optimizer, learning_rate=0.01)
        for layer in LAYERS:
            s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 1e-6
        assert "optimizer.learning_rate: 0.1 " in finding(s.run(), "lr-too-low").advice


def test_lr_too_low_under_gradient_clipping_that_cuts_every_step_names_the_threshold():
    # SGD(0.01, clipnorm=1e-4): steps 2.6e-7 of the weights, gradients ~0.3-0.5 clipped to 1e-4;
    # told to raise the rate 1000x, which left the steps clipped 5x too small.
    s = Stream()
    s.context = dataclasses.replace(s.context, optimizer="SGD", learning_rate=0.01, clipping={"clipnorm": 1e-4})
    s.values["learning_rate"] = lambda e, st: 0.01
    for layer in LAYERS:  # unclipped: 0.01 * grad_norm / 2.0; clipped: 0.01 * 1e-4 / 2.0
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 5e-7
    s.train_loss = lambda e, st: 0.90 - 0.001 * e
    s.val_loss = lambda e: 0.91 - 0.001 * e
    f = finding(s.run(), "lr-too-low")
    assert "gradient clipping (clipnorm 0.0001)" in f.message and "optimizer.clipnorm: 0.4," in f.advice and "1/4000 " in f.message
    assert f.evidence["clipping_shrink"] == pytest.approx(4000) and "learning_rate:" not in f.advice
    # A threshold the gradients stay under (steps as the rate gives them), or Adam's steps, which
    # clipping hardly changes: the rate is named, as before.
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 1e-4
    s.context = dataclasses.replace(s.context, learning_rate=1e-4)
    s.values["learning_rate"] = lambda e, st: 1e-4
    assert "learning_rate:" in finding(s.run(), "lr-too-low").advice
    s.context = dataclasses.replace(s.context, optimizer="Adam", learning_rate=0.01)
    s.values["learning_rate"] = lambda e, st: 0.01
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 5e-7
    assert "learning_rate:" in finding(s.run(), "lr-too-low").advice


def test_an_epsilon_far_above_the_gradients_is_named_instead_of_the_learning_rate():
    # Adam(epsilon=1.0): steps rate x sqrt(1 - beta_2^t) x gradient / epsilon, 1.2e-5 of the
    # weights; told to raise the rate 10x, which left it learning ~10x too slowly.
    s = Stream()
    s.context = dataclasses.replace(s.context, optimizer="Adam", learning_rate=1e-3, epsilon=1.0, beta_2=0.999)
    for i, layer in enumerate(LAYERS):  # grad_norm 0.3 + 0.1 i, weight_norm 2.0: 0.9 of the epsilon-bound step
        s.values[f"update_ratio/{layer}/kernel"] = (
            lambda e, st, i=i: 0.9 * 1e-3 * math.sqrt(1 - 0.999 ** (e * STEPS + st + 1)) * (0.3 + 0.1 * i) / 2.0)
    s.train_loss = lambda e, st: 0.90 - 0.001 * e
    s.val_loss = lambda e: 0.91 - 0.001 * e
    f = finding(s.run(), "lr-too-low")
    assert "epsilon (1) is far above the gradients" in f.message and "optimizer.epsilon: 1e-07" in f.advice
    assert "learning_rate:" not in f.advice and f.evidence["epsilon"] == 1.0
    # The same steps under Keras's epsilon are the rate's: it is named, as before.
    s.context = dataclasses.replace(s.context, epsilon=1e-7)
    assert "learning_rate: 0.01" in finding(s.run(), "lr-too-low").advice
    # At chance, RMSprop's epsilon (under its square root) is named instead of the labels.
    s.context = dataclasses.replace(s.context, optimizer="RMSprop", epsilon=1.0, beta_2=None)
    for i, layer in enumerate(LAYERS):
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st, i=i: 0.5 * 1e-3 * (0.3 + 0.1 * i) / 2.0
    s.train_loss = lambda e, st: 0.72 + 1e-3 * math.sin(7 * st + e)
    s.val_loss = lambda e: 0.70
    f = finding(s.run(), "loss-at-chance")
    assert "epsilon (1) is far above the gradients" in f.message and "unpredictable" not in f.message


def test_a_fine_tune_of_a_model_that_already_fits_is_neither_a_plateau_nor_lr_too_low():
    # A head trained on a frozen base (validation loss 0.17, accuracy 0.95, chance 0.69), the base
    # then unfrozen under Adam 1e-5 (steps of 0.0014% of the weights): 0.1627 -> 0.161 over 8
    # epochs was told plateau ("training is stuck, typically behind dead or saturated units") and
    # lr-too-low ("too low for the number of epochs"), as if it had learned 1% from scratch.
    s = Stream(epochs=8)
    s.context.trained_before = True
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 1.4e-5
    s.train_loss = lambda e, st: 0.1627 - 0.00025 * e
    s.val_loss = lambda e: 0.1717 - 0.0001 * e
    assert not {"plateau", "lr-too-low"} & set(codes(s.run()))
    # A model trained before that got little below chance is still told, as is a fresh one there.
    s.train_loss = lambda e, st: 0.60 - 0.002 * e
    s.val_loss = lambda e: 0.61 - 0.002 * e
    assert "lr-too-low" in codes(s.run())
    s.train_loss = lambda e, st: 0.69 if e == 0 else 0.6
    s.val_loss = lambda e: 0.61
    assert "plateau" in codes(s.run())


def test_a_loss_already_near_zero_is_not_lr_too_low():
    # A model that started at the answer (loss 2e-9, chance 0.69), its steps tiny because its
    # gradients are: "raise the learning rate" has nothing left to speed up.
    s = Stream()
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 1e-4
    s.train_loss = lambda e, st: 2e-9 * (1.0 - 0.005 * e)
    s.val_loss = lambda e: 2.1e-9 * (1.0 - 0.005 * e)
    assert "lr-too-low" not in codes(s.run())
    s.train_loss = lambda e, st: 0.70 - 0.005 * e  # the same steps on a loss at chance: too low
    s.val_loss = lambda e: 0.71 - 0.005 * e
    assert "lr-too-low" in codes(s.run())


@pytest.mark.parametrize(("ratio", "raised"), [(2e-7, "0.001"), (1e-5, "0.0001"), (5e-4, "3e-06")])
def test_sgd_far_too_slow_is_told_a_rate_that_brings_its_steps_to_the_healthy_range(ratio, raised):
    # SGD at 1e-6 (steps 2e-7 of the weights) was told 1e-5: steps still 5000x too small.
    s = slow_stream(ratio)
    s.context.optimizer, s.context.learning_rate = "SGD", 1e-6
    s.values["learning_rate"] = lambda e, st: 1e-6
    f = finding(s.run(), "lr-too-low")
    assert f"optimizer.learning_rate: {raised} (now 1e-06)" in f.advice
    # Adam's step is the rate itself: still at most 10x; so are Adagrad's and Adafactor's.
    for adaptive in ("Adam", "Adagrad", "Adafactor"):
        s.context.optimizer = adaptive
        if ratio < 1e-4:
            assert "optimizer.learning_rate: 1e-05 (now 1e-06)" in finding(s.run(), "lr-too-low").advice


def test_a_slow_loss_above_chance_and_a_loss_settling_at_chance_each_get_their_own_cause():
    # Learnable labels at Adam 1e-5 (1.80 -> 1.53, chance 1.39) were told "the labels are
    # unpredictable"; random labels at Adam 1e-4 (0.88 -> 0.68, chance 0.69) were told to raise
    # the learning rate, which would only memorise them.
    slow = Stream()
    for layer in LAYERS:
        slow.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 1e-4
    slow.train_loss = lambda e, st: 0.95 - 0.008 * e  # steadily, 37% -> 15% above chance
    slow.val_loss = lambda e: 0.96 - 0.008 * e
    assert "lr-too-low" in codes(d := slow.run()) and "loss-at-chance" not in codes(d)
    settled = Stream()
    for layer in LAYERS:
        settled.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 1e-4
    settled.train_loss = lambda e, st: LN2 + 0.19 * 0.8 ** e - 0.01  # from 0.87 down onto chance
    settled.val_loss = lambda e: LN2 + 0.19 * 0.8 ** e
    assert "loss-at-chance" in codes(d := settled.run()) and "lr-too-low" not in codes(d)


def test_a_loss_above_chance_falling_every_epoch_is_said_to_be_still_falling_not_to_have_stayed():
    # The README's MirroredStrategy example, 10 epochs: 0.887 -> 0.841, lower at every epoch, was
    # told "the training loss stayed at the chance level (121% of chance)" -- steps not small
    # enough for lr-too-low, the last quarter's fall under underfitting's 5%.
    s = Stream(epochs=10)
    train = [0.887 - 0.005 * e for e in range(10)]
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: train[e] + 0.01
    f = finding(s.run(), "loss-at-chance")
    assert "still above" in f.message and "stayed" not in f.message and f.evidence["still_falling"]
    assert f.advice.startswith("Train for more epochs")
    # Flat at the same height, it stayed there.
    s.train_loss = lambda e, st: 0.70 + 0.002 * math.sin(e)
    s.val_loss = lambda e: 0.71
    f = finding(s.run(), "loss-at-chance")
    assert "stayed" in f.message and "still_falling" not in f.evidence


@pytest.mark.parametrize("train", [[0.684, 0.663, 0.642], [0.723, 0.705, 0.692], [0.72, 0.71, 0.70, 0.69, 0.68]])
def test_a_loss_near_chance_still_falling_measurably_has_not_stayed_there(train):
    # A 3-epoch text classifier without validation, 0.684 -> 0.642 (chance 0.693), and an MLP at
    # Adam 3e-4, 0.723 -> 0.692, were told "the training loss stayed at the chance level ... the
    # labels are unpredictable from the inputs": a loss still falling 1.4-3% of chance an epoch has
    # shown no level it settles at.
    s = Stream(epochs=len(train))
    s.val_loss = None
    s.train_loss = lambda e, st: train[e]
    f = finding(s.run(), "loss-at-chance")
    assert "still near" in f.message and "stayed" not in f.message and "unpredictable" not in f.message
    assert f.evidence["still_falling"] and f.advice.startswith("Train for more epochs")
    # With a validation loss falling so too, the same.
    s.val_loss = lambda e: train[e] + 0.01
    f = finding(s.run(), "loss-at-chance")
    assert "still near" in f.message and "and so is the validation loss" in f.message
    # Random labels memorised: the training loss creeps down, the validation loss stays flat.
    s.val_loss = lambda e: LN2 + 0.002 * (-1) ** e
    f = finding(s.run(), "loss-at-chance")
    assert "stayed" in f.message and "still_falling" not in f.evidence
    # Steps too small: lr-too-low (which judges 4 epochs or more) says the loss is still falling,
    # loss-at-chance waits; it said "stayed at the chance level ... (lr-too-low) are reasons it cannot learn".
    s.val_loss = None
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 1e-4
    d = s.run()
    assert ("lr-too-low" in codes(d)) is (len(train) >= 4) and ("loss-at-chance" in codes(d)) is (len(train) < 4)


def test_a_validation_loss_falling_from_far_above_chance_is_no_sign_the_creeping_loss_learns():
    # A SimpleRNN that cannot reach the label's step (validation 0.89 -> 0.73 against its level):
    # its validation loss only nears what a constant scores, and the run was told "still near
    # chance and falling, too few epochs to tell" where it had stayed there (half of the runs of
    # tests/test_time_gradients.py's, whose training is not deterministic).
    train = [0.8813, 0.8147, 0.7709, 0.7308, 0.7074, 0.6882, 0.6772, 0.6657]
    s = Stream(epochs=len(train))
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: train[e] + 0.09  # 0.756 at the end: 109% of chance
    f = finding(s.run(), "loss-at-chance")
    assert "still near" not in f.message and "still_falling" not in f.evidence
    # Falling to within the chance band, it is the slow learner's "still near chance and falling".
    s.val_loss = lambda e: train[e] + 0.02
    f = finding(s.run(), "loss-at-chance")
    assert "still near" in f.message and f.evidence["still_falling"]


@pytest.mark.parametrize("train, val", [
    ([0.749, 0.737, 0.726, 0.715, 0.704], [0.782, 0.771, 0.761, 0.750, 0.740]),
    ([0.767, 0.740, 0.713], [0.857, 0.824, 0.797]),
    ([0.767, 0.740, 0.713, 0.690], [0.857, 0.824, 0.797, 0.770]),
])
def test_both_losses_still_falling_from_above_chance_have_not_stayed_there(train, val):
    # A healthy MLP on x0+x1>0 (320 rows, 64 held out, Adam 1e-3), 3-5 epochs: the training loss at
    # 102% of chance, the validation loss still 0.01-0.03 an epoch lower at 107-111% of its level,
    # was told "the training loss stayed at the chance level ... the labels are unpredictable": a
    # validation loss above the chance band reads as "only nearing a constant" (the SimpleRNN's,
    # above) only once the training loss is under chance over its last third.
    s = Stream(epochs=len(train))
    s.context.val_rows = 64
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: val[e]
    f = finding(s.run(), "loss-at-chance")
    assert "stayed" not in f.message and "unpredictable" not in f.message
    assert "still near" in f.message and "too few epochs to tell" in f.message and f.evidence["still_falling"]
    # A validation loss that stays flat above chance beside it still stayed (nothing carries over).
    s.val_loss = lambda e: val[0] + 0.002 * (-1) ** e
    assert "still_falling" not in finding(s.run(), "loss-at-chance").evidence


def test_a_loss_near_chance_creeping_down_by_a_sliver_still_stayed_there():
    # An LSTM on random labels, 0.694, 0.693, 0.6926 (0.07% of chance an epoch): no measurable fall.
    s = Stream(epochs=3)
    s.val_loss = None
    s.train_loss = lambda e, st: [0.694, 0.693, 0.6926][e]
    f = finding(s.run(), "loss-at-chance")
    assert "stayed" in f.message and "unpredictable" in f.message


def test_a_loss_falling_every_epoch_just_under_chance_with_the_validation_loss_under_its_own_is_not_at_chance():
    # low_mse_binary_fixed (a logistic regression at Adam 1e-3) at 500 rows: 0.748 -> 0.687 (chance
    # 0.693), validation 0.722 -> 0.677, lower at every epoch, accuracy rising: "stayed at the chance
    # level ... the labels are unpredictable from the inputs".
    s = Stream(epochs=30)
    s.train_loss = lambda e, st: 0.748 - 0.0021 * e
    s.val_loss = lambda e: 0.722 - 0.0015 * e
    assert "loss-at-chance" not in codes(s.run())
    # The same training curve while the validation loss settles at chance has learned nothing.
    s.val_loss = lambda e: max(LN2 + 0.001, 0.722 - 0.0015 * e)
    assert "loss-at-chance" in codes(s.run())


def test_a_validation_loss_settled_within_noise_under_its_chance_level_is_not_learning():
    # Random multi-hot labels on 40 validation rows (a logistic model at Adam 1e-3) ended 0.35%
    # under their chance level, lower at every epoch by ~0.01%: "the model is learning", no finding
    # at 1 seed in 20 to 5. Within ~1/sqrt(rows) of chance, a settled loss is noise.
    s = Stream(epochs=30)
    s.context.val_rows = 40
    s.train_loss = lambda e, st: 0.748 - 0.0021 * e
    s.val_loss = lambda e: LN2 * 0.9965 + 0.02 * math.exp(-e / 5)
    assert "loss-at-chance" in codes(s.run())
    # Still falling through it by more than that noise (a logistic regression on 500 rows, 0.707 ->
    # 0.692 over the last third, its level 0.693), it learns.
    s.val_loss = lambda e: LN2 * (1.055 - 0.002 * e)
    assert "loss-at-chance" not in codes(s.run())
    # The README's logistic regression on 400 rows, 80 held out: 1.9% under its level is learning.
    s.context.val_rows = 80
    s.val_loss = lambda e: 0.722 - 0.0015 * e
    assert "loss-at-chance" not in codes(s.run())


def test_a_learning_rate_of_zero_for_the_whole_run_is_lr_too_low():
    # Adam(0.0) for 6 epochs, loss flat at 177% of chance: no finding at all (updates of exactly 0
    # read as "no gradient reaches the weights").
    s = Stream(epochs=6, task="regression", chance=1.0)
    s.values["learning_rate"] = lambda e, st: 0.0
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 0.0
        s.values[f"update_ratio/{layer}/bias"] = lambda e, st: 0.0
    s.train_loss = lambda e, st: 1.77
    s.val_loss = lambda e: 1.78
    d = s.run()
    f = finding(d, "lr-too-low")
    assert "was 0" in f.message and f.evidence["learning_rate"] == 0.0
    # loss-at-chance sends the user there, not to the labels.
    assert all(g.evidence.get("explained_by") == ["lr-too-low"] for g in d.findings if g.code == "loss-at-chance")
    # A warm-up from 0 is not a rate of 0.
    s.values["learning_rate"] = lambda e, st: 1e-3 * min(1.0, e / 3)
    assert all("was 0" not in f.message for f in s.run().findings if f.code == "lr-too-low")



def test_a_warm_up_from_zero_without_statistics_is_not_a_learning_rate_of_zero():
    # statistics=False: only the rate read when training began (0 for a warm-up from 0) was known,
    # and a loss falling 0.80 -> 0.15 was told "the learning rate was 0 for the whole run".
    x, y = regression_data(256)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=100, warmup_target=0.01, warmup_steps=10)
    trainer = Trainer(tiny_model(), loss="mse", optimizer=keras.optimizers.Adam(schedule), task="regression", seed=0,
                      jit_compile=False, statistics=False)
    trainer.fit(x, y, epochs=4, batch_size=32, verbose=0)
    assert all("was 0" not in f.message for f in trainer.findings)
    flat = Trainer(tiny_model(), loss="mse", optimizer=keras.optimizers.Adam(0.0), task="regression", seed=0,
                   jit_compile=False, statistics=False)
    flat.fit(x, y, epochs=4, batch_size=32, verbose=0)
    assert any("was 0" in f.message for f in flat.findings if f.code == "lr-too-low")


@pytest.mark.parametrize("statistics", [False, True])
def test_a_long_warm_up_from_zero_is_neither_a_rate_of_zero_nor_told_to_raise_it_to_zero(statistics):
    # Warm-up over 5000 steps, 32 trained: the loss hardly moves. Without statistics it was "the
    # learning rate was 0 for the whole run"; with them lr-too-low said to raise it to 0 (now 0),
    # the schedule's value when training began.
    x, y = regression_data(256)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=10000, warmup_target=1e-3, warmup_steps=5000)
    trainer = Trainer(tiny_model(), loss="mse", optimizer=keras.optimizers.Adam(schedule), task="regression", seed=0,
                      jit_compile=False, statistics=statistics)
    trainer.fit(x, y, epochs=4, batch_size=32, verbose=0)
    assert all("was 0" not in f.message for f in trainer.findings)
    for f in trainer.findings:
        if "learning_rate" in f.evidence:
            assert f.evidence["learning_rate"] > 0 and "learning_rate: 0 " not in f.advice and "(now 0)" not in f.advice
    assert not statistics or any(f.code == "lr-too-low" for f in trainer.findings)


def test_a_warm_up_s_small_first_steps_are_judged_at_the_rate_it_rises_to():
    # CosineDecay(0.0, warmup_target=1e-3, warmup_steps=160) under AdamW: the first 32 steps
    # measured 0.015% of the weights and a run whose steps at 1e-3 were healthy got lr-too-low,
    # told to raise the rate 6.6x; the same run at a constant 1e-3 got no finding.
    s = Stream()
    s.context = dataclasses.replace(s.context, learning_rate=None)  # a schedule
    s.values["learning_rate"] = lambda e, st: 1e-3 * min(1.0, (e * STEPS + st) / 100)
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 3.0 * s.values["learning_rate"](e, st)
    s.train_loss = lambda e, st: 0.70 - 0.005 * e
    s.val_loss = lambda e: 0.71 - 0.005 * e
    assert "lr-too-low" not in codes(s.run())
    # A warm-up to a rate that is too low is still found, its steps measured at that rate.
    s.values["learning_rate"] = lambda e, st: 1e-4 * min(1.0, (e * STEPS + st) / 100)
    f = finding(s.run(), "lr-too-low")
    assert f.evidence["update_ratio_early"] == pytest.approx(3e-4)
    assert "At the run's largest learning rate (0.0001)" in f.message and "(now 0.0001)" in f.advice


def test_a_negative_loss_falling_slowly_under_tiny_updates_is_lr_too_low():
    # A cosine-similarity loss from -0.10 to -0.11 in 20 epochs with updates of 1e-4 of the
    # weights: the fall was divided by a floor of 1e-12 (the start being negative), a "fall" of
    # 10^10 %, and never too slow.
    s = Stream(task="regression", chance=None)
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 1e-4
    s.train_loss = lambda e, st: -0.10 - 0.0005 * e
    s.val_loss = lambda e: -0.09 - 0.0005 * e
    assert "having fallen only 9.5% (-0.1 to -0.1095)" in finding(s.run(), "lr-too-low").message


def slow_stream(ratio: float) -> Stream:
    """lr-too-low's stream: first updates of ``ratio`` and a loss still falling slowly at the end."""
    s = Stream()
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: ratio
    s.train_loss = lambda e, st: 0.70 - 0.005 * e
    s.val_loss = lambda e: 0.71 - 0.005 * e
    return s


@pytest.mark.parametrize("blocked", ["zero-updates", "dead", "saturated", "vanishing"])
def test_lr_too_low_defers_when_no_gradient_flows(blocked):
    # ReLUs dead from a bias of -5 gave dead-relu "lower the learning rate" and lr-too-low (update
    # ratio exactly 0) "raise it"; a saturated 10-layer tanh stack the same pair.
    s = slow_stream(0.0 if blocked == "zero-updates" else 1e-4)
    if blocked == "dead":
        s.values["activation/dense/dead_fraction"] = lambda e, st: 1.0
    elif blocked == "saturated":
        s.values["activation/dense/saturated_fraction"] = lambda e, st: 0.7
    elif blocked == "vanishing":
        s.values["grad_norm/dense/kernel"] = lambda e, st: 1e-8
    d = s.run()
    assert "lr-too-low" not in codes(d)
    if blocked != "zero-updates":
        assert {"dead-relu", "saturated-activations", "vanishing-gradients"} & set(codes(d))
    # Partial saturation (an info note) stalls nothing: the learning rate is still the verdict.
    s = slow_stream(1e-4)
    s.values["activation/dense/saturated_fraction"] = lambda e, st: 0.3
    assert "lr-too-low" in codes(s.run())


def test_lr_too_low_measures_only_the_steps_that_updated_under_gradient_accumulation():
    # gradient_accumulation_steps=3: two steps of every three change nothing. SGD at 1e-3 (loss
    # 0.7244 -> 0.7131 in 12 epochs, steps 0.028% of the weights) got no lr-too-low, and
    # loss-at-chance blamed the labels: the median over the first steps was 0 ("no gradient flows").
    s = slow_stream(1e-4)
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 1e-4 if st % 3 == 2 else 0.0
    f = finding(s.run(), "lr-too-low")
    assert f.evidence["update_ratio_early"] == pytest.approx(1e-4)


# -- gradients -------------------------------------------------------------------------------------

def test_a_hidden_softmax_s_small_std_is_no_signal_fading_forward():
    # An attention over 512 keys, its softmax read inside MultiHeadAttention: probabilities near
    # 1/512 have a std of ~1e-4, reported as "the outputs of layer 'softmax' vary 0.0003x as much
    # as those of layer 'embed'": a signal fading forward.
    s = Stream()
    s.context = dataclasses.replace(s.context, layers=("input_layer", "dense", "dense_1", "softmax", "dense_2"), softmax_layers=("softmax",))
    for layer, std in (("dense", 0.44), ("dense_1", 0.27), ("softmax", 1.3e-4)):
        s.values[f"activation/{layer}/std"] = lambda e, st, std=std: std
    s.train_loss = lambda e, st: LN2
    s.val_loss = lambda e: LN2
    assert "vanishing-gradients" not in codes(s.run())
    s.context = dataclasses.replace(s.context, softmax_layers=())  # a tanh layer that small: it fades
    assert finding(s.run(), "vanishing-gradients").layer == "softmax"


def test_a_repeated_layer_call_sorts_with_its_layer_not_last():
    # A shared encoder's second call (e_1, a name no layer has) was sorted after the head: it
    # stood as the last hidden layer, and the head's faded signal went unseen.
    s = Stream()
    s.context = dataclasses.replace(s.context, layers=("input_layer", "dense", "dense_1", "e", "m", "h", "dense_2"))
    for layer, std in (("e", 0.5), ("e_1", 0.5), ("m", 1e-2), ("h", 1e-5)):
        s.values[f"activation/{layer}/std"] = lambda e, st, std=std: std
    s.train_loss = lambda e, st: LN2
    s.val_loss = lambda e: LN2
    d = s.run()
    assert d.layer_order(["h", "e", "m", "e_1"]) == ["e", "e_1", "m", "h"]  # calls in the order they ran
    assert finding(d, "vanishing-gradients").layer == "h"


def test_vanishing_gradients_first_layer_vs_last():
    s = Stream()
    s.values["grad_norm/dense/kernel"] = lambda e, st: 1e-6
    f = finding(s.run(), "vanishing-gradients")
    assert f.layer == "dense" and f.evidence["relative_ratio"] < 1e-3


def test_an_attention_s_query_and_key_gradients_are_no_vanishing_gradient():
    # A healthy one-block Transformer (loss 0.50 -> 0.003 in 6 epochs, as model.fit) got
    # vanishing-gradients: its attention's query projection, the first weight layer, read a
    # gradient 3e-4x the output's relative to the weights. The query and key get theirs through
    # the scores' softmax alone, small by design; a vanishing one is judged from the value on.
    from trainkit.diagnosis.model_facts import attention_score_layers
    from trainkit.stat_names import variable_name

    tokens = keras.Input((6, 4))
    attention = keras.layers.MultiHeadAttention(2, 4, name="attention")
    model = keras.Model(tokens, keras.layers.Dense(1)(attention(tokens, tokens)))
    score_layers = attention_score_layers(model)
    assert score_layers == ("attention/query", "attention/key")
    assert {variable_name(v, model.name) for v in model.trainable_variables} >= {f"{n}/kernel" for n in score_layers}

    s = Stream()
    layers = ("attention/query", "attention/key", "attention/value", "dense_2")
    s.context = dataclasses.replace(s.context, layers=("input_layer", "attention", "query", "key", "value", "dense_2"),
                                    attention_score_layers=score_layers)
    s.values = {k: v for k, v in s.values.items() if not k.startswith(("grad_norm/dense", "weight_norm/dense"))}
    for layer, grad in zip(layers, (1e-4, 1e-4, 0.3, 0.4), strict=True):
        s.values[f"grad_norm/{layer}/kernel"] = lambda e, st, grad=grad: grad
        s.values[f"weight_norm/{layer}/kernel"] = lambda e, st: 2.0
    assert "vanishing-gradients" not in codes(s.run())
    s.values["grad_norm/attention/value/kernel"] = lambda e, st: 1e-6  # the value's fades: it vanishes
    assert finding(s.run(), "vanishing-gradients").layer == "attention/value"


def test_vanishing_gradients_in_a_nested_model_compares_its_first_layer_with_the_last():
    # An encoder nested in a Functional model names its weights by path (enc/dense/kernel): read
    # as unknown layers, they sorted after the head, so its first layer (gradient ~0) was compared
    # as the last and a 12-layer tanh chain that loses the gradient got lr-too-low instead.
    s = Stream()
    for layer in LAYERS[:2]:
        for kind in ("grad_norm", "weight_norm", "update_ratio", "grad_nonfinite"):
            s.values[f"{kind}/enc/{layer}/kernel"] = s.values.pop(f"{kind}/{layer}/kernel")
    s.values["grad_norm/enc/dense/kernel"] = lambda e, st: 1e-6
    s.context.layers = ("input_layer", "enc", *LAYERS)
    f = finding(s.run(), "vanishing-gradients")
    assert f.layer == "enc/dense" and f.evidence["last_layer"] == "grad_norm/dense_2/kernel"


def test_vanishing_gradients_is_judged_along_a_path_and_not_from_a_dead_branch():
    # A branch killed by a bias of -50 beside live ones: its first layer's kernel got no gradient,
    # and read "The gradient of the first weight layer 'a1' is 0, 0x the last layer's" beside
    # dead-relu, with advice to replace tanh stacks in a ReLU network.
    s = Stream()
    s.values["activation/dense/dead_fraction"] = lambda e, st: 1.0
    s.values["grad_norm/dense/kernel"] = lambda e, st: 0.0
    d = s.run()
    assert "dead-relu" in codes(d) and "vanishing-gradients" not in codes(d)
    # A first layer that feeds none of the later weight layers (a head of its own): no path to judge.
    s = Stream()
    s.values["grad_norm/dense/kernel"] = lambda e, st: 1e-6
    assert "vanishing-gradients" in codes(s.run())
    s.context.layer_inputs = {"dense": ["input_layer"], "dense_1": ["input_layer"], "dense_2": ["dense_1"]}
    assert "vanishing-gradients" not in codes(s.run())


def test_vanishing_gradients_is_not_judged_from_a_network_gone_nan():
    # on_nan: warn trains on with NaN weights: the first layer's gradient read 0 and the message
    # "The gradient of the first weight layer 'dense' is 0, n/ax the last layer's".
    s = Stream()
    broken = 5
    s.train_loss = lambda e, st, base=s.train_loss: math.nan if e >= broken else base(e, st)
    for name in list(s.values):
        if name.startswith(("weight_norm/", "grad_norm/")):
            s.values[name] = lambda e, st, base=s.values[name]: math.nan if e >= broken else base(e, st)
    s.values["grad_norm/dense/kernel"] = lambda e, st: 0.0 if e >= broken else 0.3
    d = s.run()
    assert "nan-loss" in codes(d) and "vanishing-gradients" not in codes(d)
    assert not any("n/a" in f.message for f in d.findings)


def test_exploding_gradients_at_the_first_step_over_100x_the_baseline():
    s = Stream()
    s.values["grad_norm/global"] = lambda e, st: 1.0 if e * STEPS + st < 25 else 5e3
    f = finding(s.run(), "exploding-gradients")
    assert f.step == 25 and f.epoch == 2 and "clipnorm" in f.advice


def test_a_run_that_clips_already_is_told_to_clip_harder_not_to_add_what_it_has():
    # SGD(10, global_clipnorm=1.0) and Adam(0.5, clipnorm=1.0) were told "clip gradients
    # (clipnorm: 1.0)" by exploding-gradients, lr-too-high and diverging-loss.
    s = Stream()
    s.values["grad_norm/global"] = lambda e, st: 1.0 if e * STEPS + st < 25 else 5e3
    s.context.optimizer, s.context.clipping = "SGD", {"global_clipnorm": 1.0}
    f = finding(s.run(), "exploding-gradients")
    assert "optimizer.global_clipnorm: 0.1 (now 1)" in f.advice and "clipnorm: 1.0" not in f.advice
    s.context.clipping = None
    assert "optimizer.clipnorm: 1.0)" in finding(s.run(), "exploding-gradients").advice


def test_clipping_beside_a_lowered_rate_names_the_optimizer_key():
    # "clip gradients (clipnorm: 1.0)" read as a top-level key: --set clipnorm=1.0 is refused.
    s = Stream()
    s.train_loss = lambda e, st: 0.7 if e * STEPS + st < 5 else 200.0
    advice = finding(s.run(), "diverging-loss").advice
    assert "clip gradients (optimizer.clipnorm: 1.0)" in advice
    s.context.optimizer, s.context.clipping = "SGD", {"global_clipnorm": 1.0}
    assert "clip gradients (optimizer.global_clipnorm: 0.1 (now 1))" in finding(s.run(), "diverging-loss").advice


def test_the_clipping_of_a_run_is_in_its_diagnosis_context():
    from trainkit.diagnosis.engine import Context
    from trainkit.diagnosis.run_context import _clipping

    assert _clipping(keras.optimizers.Adam(0.1, clipnorm=2)) == {"clipnorm": 2.0}
    assert _clipping(keras.optimizers.SGD(0.1, clipvalue=0.5)) == {"clipvalue": 0.5}
    assert _clipping(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1, global_clipnorm=1.0))) == {"global_clipnorm": 1.0}
    assert _clipping(keras.optimizers.Adam()) is None
    # Keras keeps numpy numbers as given: np.float32(1.0) read as no clipping, and such a run was told to add clipnorm: 1.0.
    assert _clipping(keras.optimizers.SGD(0.1, clipnorm=np.float32(1.0))) == {"clipnorm": 1.0}
    # trainkit diagnose reads it back from the run's events.
    assert Context.from_dict(json.loads(json.dumps(Context(clipping={"clipnorm": 2.0}).to_dict()))).clipping == {"clipnorm": 2.0}


def test_a_dropout_rate_given_as_a_numpy_number_is_in_the_diagnosis_context():
    from trainkit.diagnosis.model_facts import strongest_dropout

    # Keras keeps Dropout(np.float32(0.5)).rate as given: it read as no dropout at all.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dropout(np.float32(0.5)), keras.layers.Dense(1)])
    assert strongest_dropout(model)[0] == 0.5


def test_the_strongest_dropout_is_named_with_where_it_sits():
    from trainkit.diagnosis.model_facts import strongest_dropout

    hidden = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.1, name="in"), keras.layers.Dense(8),
                               keras.layers.Dropout(0.6, name="mid"), keras.layers.Dense(1)])
    assert strongest_dropout(hidden) == (0.6, "mid", False)
    inputs = keras.Input((4,))
    functional = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dropout(0.8, name="raw")(inputs)))
    assert strongest_dropout(functional) == (0.8, "raw", True)
    assert strongest_dropout(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])) == (0.0, None, False)


def test_exploding_gradients_behind_steps_a_loss_scale_optimizer_skipped():
    # mixed_float16 with a LossScaleOptimizer: the growing gradients overflow float16 once scaled,
    # and each such step is skipped with an infinite norm. One ahead of the explosion in every
    # call hid it: SGD(0.2) got no exploding-gradients at a norm 182x its first.
    s = Stream()
    s.values["grad_norm/global"] = lambda e, st: math.inf if e and st in (0, 7) else 1.0 if e * STEPS + st < 25 else 5e3
    s.values["grad_nonfinite/dense_2/kernel"] = lambda e, st: 4.0 if e and st in (0, 7) else 0.0
    d = s.run()
    assert finding(d, "exploding-gradients").step == 25 and "nan-loss" not in codes(d)


def test_steps_of_no_gradient_are_no_baseline_of_an_explosion():
    # A series in time order whose first 800 steps are 0 (zero windows, zero targets): a fresh
    # LSTM fits them exactly, its first norms were 0, and the first batch of real values (2.3)
    # read "2e12x its level in the first steps ... the updates feed on themselves".
    s = Stream()
    s.values["grad_norm/global"] = lambda e, st: 0.0 if e * STEPS + st < 25 else 2.3
    s.train_loss = lambda e, st: 0.0 if e * STEPS + st < 25 else 0.3
    assert "exploding-gradients" not in codes(s.run())
    s.values["grad_norm/global"] = lambda e, st: 0.0 if e * STEPS + st < 25 else 2.3 if e * STEPS + st < 40 else 5e3
    assert finding(s.run(), "exploding-gradients").evidence["baseline_grad_norm"] == 2.3
    # Nor are a float16 sigmoid's, saturated to exactly 0/1 (or skipped as inf) under
    # mixed_float16 on inputs ~2000: its first nonzero norm, 204.6 at step 19, read "2e14x (0)".
    s = Stream()
    s.values["grad_norm/global"] = lambda e, st: 204.6 if e * STEPS + st == 19 else math.inf if st == 1 else 0.0
    assert "exploding-gradients" not in codes(s.run())


def test_a_gradient_norm_growing_while_the_loss_falls_far_is_no_explosion():
    # 10 tanh layers initialised with stddev 0.05: the norm went from 0.06 to 10 (171x) at a loss
    # of 0.036, from ln 2 at the start, and the run ended at a validation loss of 0.007.
    s = Stream()
    s.values["grad_norm/global"] = lambda e, st: 0.06 if e * STEPS + st < 25 else 10.0
    s.train_loss = lambda e, st: LN2 if e * STEPS + st < 25 else 0.036
    assert "exploding-gradients" not in codes(s.run())
    # The same norms at a loss that did not fall so far are an explosion.
    s.train_loss = lambda e, st: LN2 if e * STEPS + st < 25 else 0.5
    assert finding(s.run(), "exploding-gradients").step == 25


def test_a_gradient_spike_on_one_hard_batch_of_a_model_that_learns_is_no_explosion():
    # A BiLSTM text classifier left its flat start (norm 0.11, loss 0.69) and learned: its norm
    # reached 53 (472x) at a batch whose own loss jumped to 0.41 among steps at 0.10-0.27, and it
    # trained on to 0.006. The spiking batch's loss alone read "not falling": "the updates feed
    # on themselves". Its loss is read with the steps before it, in any split into calls.
    s = Stream()
    s.values["grad_norm/global"] = lambda e, st: 0.1 if e * STEPS + st < 25 else 50.0 if e * STEPS + st == 45 else 5.0
    s.train_loss = lambda e, st: LN2 if e * STEPS + st < 25 else 0.41 if e * STEPS + st == 45 else 0.2
    for chunk in (STEPS, 3, 1):
        assert "exploding-gradients" not in codes(s.run(chunk=chunk))
    # Norms that grow while the loss climbs back up are an explosion, found within a few steps.
    s.values["grad_norm/global"] = lambda e, st: 0.1 if e * STEPS + st < 25 else 50.0 if e * STEPS + st >= 45 else 5.0
    s.train_loss = lambda e, st: LN2 if e * STEPS + st < 25 else 0.2 if e * STEPS + st < 45 else 0.6
    for chunk in (STEPS, 3, 1):
        assert finding(s.run(chunk=chunk), "exploding-gradients").step in range(45, 50)


def test_call_level_findings_do_not_depend_on_how_steps_are_split_into_calls():
    s = Stream()
    s.values["grad_norm/global"] = lambda e, st: 1.0 if e * STEPS + st < 25 else 5e3
    s.train_loss = lambda e, st: math.nan if e * STEPS + st >= 47 else 0.5
    whole, split = s.run(chunk=STEPS), s.run(chunk=3)
    assert [f.to_dict() for f in whole.findings] == [f.to_dict() for f in split.findings]


# -- activations -----------------------------------------------------------------------------------

def test_dead_relu_names_the_layer_the_fraction_and_since_when():
    s = Stream()
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.8 if e >= 6 else 0.05
    f = finding(s.run(), "dead-relu")
    assert f.layer == "dense_1" and f.evidence["since_epoch"] == 6 and f.evidence["dead_fraction"] == pytest.approx(0.8)


def test_units_dead_or_saturated_in_the_weights_a_fine_tune_starts_from_are_not_blamed_on_its_rate():
    # A base unfrozen for fine-tuning under Adam 1e-5, 60% of a layer's units dead from this fit's
    # first step (the weights it started from): told "Lower the learning rate ... one big update
    # is the usual killer" and he_normal, which neither killed nor revives them.
    s = Stream(epochs=8)
    s.context.trained_before = True
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.6
    f = finding(s.run(), "dead-relu")
    assert "already at this fit's first step" in f.message and f.evidence["fit_first_step_dead_fraction"] == 0.6
    assert "Lower the learning rate" not in f.advice and "did not kill them" in f.advice
    # Units that died during the fine-tune are its rate's doing, as in a fresh run.
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.6 if e >= 2 else 0.05
    assert finding(s.run(), "dead-relu").advice.startswith("Lower the learning rate")
    # So with tanh units saturated from the fit's first step.
    s.values["activation/dense_1/saturated_fraction"] = lambda e, st: 0.7
    f = finding(s.run(), "saturated-activations")
    assert "already at this fit's first step" in f.message and "did not saturate them" in f.advice
    assert "Lower the learning rate" not in f.advice


@pytest.mark.parametrize(("batch_size", "reported"), [(1, False), (4, False), (8, True), (None, True)])
def test_dead_relu_needs_batches_of_several_rows(batch_size, reported):
    # At batch_size 1 "never active in the batch" is "not active for this one row": a healthy
    # MLP read 55% dead and was told to fix its (good) initialisation.
    s = Stream()
    s.context.batch_size = batch_size
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.55
    assert ("dead-relu" in codes(s.run())) is reported


@pytest.mark.parametrize(("batch_size", "rate", "reported"), [(8, 0.9, False), (32, 0.8, False), (32, 0.5, True), (64, 0.8, True)])
def test_dead_relu_counts_the_rows_a_dropout_before_the_activation_leaves(batch_size, rate, reported):
    # Dense(32), Dropout(0.9), Activation("relu") at batch_size 8: the zeroed inputs read 66% of
    # the units "dead" at the first step, told to fix the initialisation.
    s = Stream()
    s.context.batch_size = batch_size
    s.context.dropped_activations = {"dense_1": rate}
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.66
    assert ("dead-relu" in codes(s.run())) is reported


def test_dropped_activations_are_read_off_the_model():
    from trainkit.diagnosis.model_facts import dropped_activations, layer_inputs

    layers = keras.layers
    model = keras.Sequential([keras.Input((4,)), layers.Dense(8, name="a"), layers.Dropout(0.7, name="drop"),
                              layers.Activation("relu", name="act"), layers.Dropout(0.2, name="late"), layers.Dense(8, activation="relu", name="b"),
                              layers.GaussianDropout(0.5, name="noise"), layers.ReLU(name="relu")])
    # Only an activation taking the zeroed values as they are: the Dense after a Dropout sums
    # them with its weights, and GaussianDropout multiplies its inputs by noise about 1.
    assert dropped_activations(model, layer_inputs(model)) == {"act": 0.7}


@pytest.mark.parametrize(("train_rows", "reported"), [(2, False), (5, False), (8, True), (None, True)])
def test_dead_relu_reads_the_rows_a_batch_holds_not_the_batch_size(train_rows, reported):
    # fit(x, y, batch_size=32) on 2 rows (Trainer's default batch_size) trains on batches of 2:
    # "never active in a batch" of 2 rows was reported as dead-relu (75%, "never recover").
    s = Stream()
    s.context.batch_size = 32
    s.context.train_rows = train_rows
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.55
    assert ("dead-relu" in codes(s.run())) is reported


@pytest.mark.parametrize("as_dataset", [False, True])
def test_dead_relu_is_not_judged_on_batches_of_two_rows_from_arrays_or_a_dataset(as_dataset):
    # 2 rows, ReLUs with bias -2: "100% of the units of layer 'dense' output 0 for every example
    # of a batch" was reported from batches of 2 rows (a dataset's batch size was unknown).
    x = np.random.default_rng(1).normal(size=(2, 4)).astype("float32")
    y = np.array([0.0, 1.0], "float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", bias_initializer=keras.initializers.Constant(-2.0)),
                              keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", logdir=None)
    data = (tf.data.Dataset.from_tensor_slices((x, y)).batch(4), None) if as_dataset else (x, y)
    trainer.fit(*data, epochs=6, verbose=0)
    assert trainer._live_diagnosis.diagnoser.context.batch_size == (2 if as_dataset else 32)
    assert "dead-relu" not in [f.code for f in trainer.findings]


def test_relus_dead_before_the_first_update_get_initialisation_advice():
    # A bias of -5 kills every unit at initialisation; the advice led with "Lower the learning rate".
    s = Stream()
    s.values["activation/dense/dead_fraction"] = lambda e, st: 1.0
    f = finding(s.run(), "dead-relu")
    assert f.evidence["first_step_dead_fraction"] == 1.0 and "first step" in f.message
    assert f.advice.startswith("Fix the initialisation") and "bias_initializer" in f.advice
    assert "Lower the learning rate" not in f.advice
    # Killed during training (alive at the first step): the learning rate comes first.
    s.values["activation/dense/dead_fraction"] = lambda e, st: 0.05 if e == st == 0 else 1.0
    f = finding(s.run(), "dead-relu")
    assert "first_step_dead_fraction" not in f.evidence and f.advice.startswith("Lower the learning rate")


def test_a_leaky_relu_layer_never_positive_is_not_told_it_outputs_0_nor_to_use_leaky_relu():
    # Dense(32, "leaky_relu", bias -5): every unit negative (mean -1.0) was said to "output 0 ...:
    # dead ReLUs pass no gradient and never recover", and told to "use activation: leaky_relu".
    x, y = regression_data(64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="leaky_relu", bias_initializer=keras.initializers.Constant(-5.0)),
                              keras.layers.Dense(1)])
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=3, batch_size=16, verbose=0)
    f = next(f for f in trainer.findings if f.code == "dead-relu")
    assert "are negative for every example" in f.message and "output 0" not in f.message and "never recover" not in f.message
    assert "leaky_relu (or elu)" not in f.advice and "BatchNormalization" in f.advice
    # A relu layer keeps its message and advice.
    s = Stream()
    s.values["activation/dense/dead_fraction"] = lambda e, st: 1.0
    f = finding(s.run(), "dead-relu")
    assert "output 0" in f.message and "use activation: leaky_relu (or elu)" in f.advice


def test_a_gelu_layer_held_near_zero_by_its_bias_is_dead_relu_and_not_vanishing_gradients():
    # Dense(64, "gelu", bias -8): every unit at ~0 with a gradient of ~3e-10; it got no dead-relu
    # (gelu had no dead fraction), only vanishing-gradients, "replace tanh stacks with relu".
    x, y = regression_data(128)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="gelu", bias_initializer=keras.initializers.Constant(-8.0), name="h"),
                              keras.layers.Dense(1)])
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=3, batch_size=16, verbose=0)
    found = [f.code for f in trainer.findings]
    assert "dead-relu" in found and "vanishing-gradients" not in found
    f = next(f for f in trainer.findings if f.code == "dead-relu")
    assert "output nearly 0 (|a| < 0.01)" in f.message and "gelu/silu/mish/softplus passes almost no gradient" in f.message
    assert "bias_initializer='zeros'" in f.advice and "leaky_relu (or elu)" not in f.advice
    # The same layer with a zero bias trains without it.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="gelu", name="h"), keras.layers.Dense(1)])
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert "dead-relu" not in [f.code for f in trainer.findings]


def test_a_layer_dead_behind_a_wholly_dead_layer_is_told_to_fix_that_layer_first():
    # A bias of -5 on the first of two ReLU layers: the second, fed zeros, was told to use
    # he_normal, which changed nothing until the first layer's bias was fixed.
    s = Stream()
    s.values["activation/dense/dead_fraction"] = lambda e, st: 1.0
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 1.0
    d = s.run()
    first, second = (f for f in d.findings if f.code == "dead-relu")
    assert (first.layer, second.layer) == ("dense", "dense_1")
    assert first.advice.startswith("Fix the initialisation") and second.advice.startswith("Fix layer 'dense' first")
    assert "If this layer is still dead after that: fix the initialisation" in second.advice
    # Most, not all, of the first layer's units dead: the second has inputs of its own.
    s.values["activation/dense/dead_fraction"] = lambda e, st: 0.8
    assert all(not f.advice.startswith("Fix layer") for f in s.run().findings if f.code == "dead-relu")

def test_a_layer_dead_beside_a_wholly_dead_branch_is_not_told_to_fix_that_branch():
    # Two branches joined by a Concatenate, each with a bias of -50: the second branch's dead
    # layer was told "Fix layer 'a' first", a layer on the other branch that feeds it nothing.
    inputs = keras.Input((4,))
    dead = keras.initializers.Constant(-50.0)
    a = keras.layers.Dense(3, activation="relu", name="a", bias_initializer=dead)(inputs)
    b = keras.layers.Dense(3, activation="relu", name="b2")(keras.layers.Dense(3, activation="relu", name="b", bias_initializer=dead)(inputs))
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2, activation="relu", name="n")], name="inner")
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(inner(keras.layers.Concatenate(name="cat")([a, b]))))
    graph = Context(layer_inputs=layer_inputs(model))
    assert graph.feeds("b", "b2") and graph.feeds("a", "n") and graph.feeds("n", "out")
    assert not graph.feeds("a", "b2") and not graph.feeds("b2", "a") and not graph.feeds("out", "n")
    s = Stream()
    s.values["activation/a/dead_fraction"] = lambda e, st: 1.0
    s.values["activation/b/dead_fraction"] = lambda e, st: 1.0
    s.values["activation/b2/dead_fraction"] = lambda e, st: 1.0
    s.context.layers = ("input_layer", "a", "b", "b2", "cat", "inner", "n", "out")
    s.context.layer_inputs = Context.from_dict(json.loads(json.dumps(graph.to_dict()))).layer_inputs
    advice = {f.layer: f.advice for f in s.run().findings if f.code == "dead-relu"}
    assert advice["b"].startswith("Fix the initialisation") and advice["b2"].startswith("Fix layer 'b' first")
    s.context.layer_inputs = None  # a subclassed model's (or an older run's): taken as a chain
    assert {f.layer: f.advice for f in s.run().findings if f.code == "dead-relu"}["b"].startswith("Fix layer 'a' first")


def test_dead_relu_advice_prescribes_only_the_initialisation_a_layer_lacks():
    # "Use kernel_initializer: he_normal" was told to he_normal layers (mlp_binary at a learning
    # rate of 1.0), and "this layer's bias_initializer" to a ReLU layer, which has none.
    s = Stream()
    s.values["activation/dense/dead_fraction"] = lambda e, st: 1.0  # dead from the first step
    s.context.initializers = {"dense": {"layer": "dense", "kernel": "he_normal", "bias": "constant(-10)"}}
    advice = finding(s.run(), "dead-relu").advice
    assert advice.startswith("Fix the initialisation of this layer: bias_initializer: zeros (it is constant(-10);") and "he_normal" not in advice
    s.context.initializers = {"dense": {"layer": "dense_0", "kernel": "random_normal(stddev=5)", "bias": "zeros"}}  # a ReLU layer after dense_0
    advice = finding(s.run(), "dead-relu").advice
    assert advice.startswith("Fix the initialisation of layer 'dense_0' (which this activation follows): kernel_initializer: he_normal (it is random_normal(stddev=5))")
    assert "bias_initializer" not in advice
    s.context.initializers = {"dense": {"layer": "dense", "kernel": "he_uniform", "bias": "zeros"}}
    assert finding(s.run(), "dead-relu").advice.startswith("The initialisation of this layer is already what relu needs (he_uniform, bias zeros): standardise")
    s.values["activation/dense/dead_fraction"] = lambda e, st: 0.05 if e == st == 0 else 1.0  # killed by updates
    advice = finding(s.run(), "dead-relu").advice
    assert advice.startswith("Lower the learning rate") and "he_normal" not in advice
    s.context.initializers = None  # unknown (a run from before): the full advice
    assert "use kernel_initializer: he_normal for this layer" in finding(s.run(), "dead-relu").advice
    # A Python fit is told the layer's arguments as Keras takes them.
    s.context = dataclasses.replace(s.context, recipe=False)
    advice = finding(s.run(), "dead-relu").advice
    assert "use kernel_initializer='he_normal' for this layer" in advice and "activation='leaky_relu' (or elu)" in advice
    s.values["activation/dense/dead_fraction"] = lambda e, st: 1.0
    s.context.initializers = {"dense": {"layer": "dense", "kernel": "glorot_uniform", "bias": "constant(-10)"}}
    advice = finding(s.run(), "dead-relu").advice
    assert "bias_initializer='zeros' (it is constant(-10)" in advice and "kernel_initializer='he_normal'" in advice
    assert ": he_normal" not in advice and ": zeros" not in advice and ": leaky_relu" not in advice


def test_the_advice_for_a_shared_layer_s_later_call_reads_that_layer_s_initializers():
    # A shared layer's second call is reported as shared_1 (a name no layer has): its
    # initializers were not found, and a he_normal, zero-bias layer was told to use both.
    s = Stream()
    s.values["activation/shared_1/dead_fraction"] = lambda e, st: 1.0  # dead from the first step
    s.context.layers = (*s.context.layers, "shared")
    s.context.initializers = {"shared": {"layer": "shared", "kernel": "he_normal", "bias": "zeros"}}
    s.context.check_codes = ()
    found = finding(s.run(), "dead-relu")
    assert found.layer == "shared_1" and "of layer 'shared' (its later call, shared_1) output 0" in found.message
    assert found.advice.startswith("The initialisation of this layer is already what relu needs (he_normal, bias zeros)")
    s = Stream()
    s.values["activation/shared_1/saturated_fraction"] = lambda e, st: 0.9
    s.context.layers = (*s.context.layers, "shared")
    s.context.initializers = {"shared": {"layer": "shared", "kernel": "glorot_uniform", "bias": "zeros"}}
    saturated = finding(s.run(), "saturated-activations")
    assert "glorot" not in saturated.advice and "of layer 'shared' (its later call, shared_1) sit" in saturated.message


def test_dead_or_saturated_units_of_layers_no_step_changes_are_no_finding():
    # A frozen base (transfer learning) with dead ReLUs got dead-relu, "fix the initialisation"
    # of a layer no step trains, and loss-at-chance named it as why the model could not learn.
    s = Stream()
    s.values["activation/dense/dead_fraction"] = lambda e, st: 1.0  # dead from the first step
    s.values["activation/dense_1/saturated_fraction"] = lambda e, st: 0.9
    assert {"dead-relu", "saturated-activations"} <= set(codes(s.run()))
    s.context.frozen_layers = ("input_layer", "dense", "dense_1")
    assert not {"dead-relu", "saturated-activations"} & set(codes(s.run()))
    assert Context.from_dict(json.loads(json.dumps(s.context.to_dict()))).frozen_layers == s.context.frozen_layers


def test_a_layer_dead_behind_a_wholly_dead_frozen_layer_is_told_to_fix_that_layer_first():
    # A frozen layer with every unit dead (bias -5) left the trainable ReLU layer after it only
    # its bias: that layer was told to use he_normal, as if the frozen one were not there.
    s = Stream()
    s.values["activation/dense/dead_fraction"] = lambda e, st: 1.0
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 1.0
    s.context.frozen_layers = ("input_layer", "dense")
    [found] = [f for f in s.run().findings if f.code == "dead-relu"]
    assert found.layer == "dense_1" and found.advice.startswith("Fix layer 'dense' first")


def test_frozen_layers_are_those_before_the_first_trainable_weights():
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", name="b1"), keras.layers.ReLU(name="b2")], name="base")
    base.trainable = False
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="head")(keras.layers.Dense(3, activation="relu", name="h1")(base(inputs))))
    frozen = frozen_layers(model)
    assert {"base", "b1", "b2"} <= set(frozen) and not {"h1", "head"} & set(frozen)
    # A trainable layer before them feeds them: their units die or revive as it trains.
    pre = keras.Input((4,))
    model = keras.Model(pre, base(keras.layers.Dense(4, name="pre")(pre)))
    assert not {"b1", "b2"} & set(frozen_layers(model))


class ReluAssignedFirst(keras.Model):
    """Its ReLU is assigned before the Dense it follows: the order of ``layers`` is not the calls'."""

    def __init__(self, base: keras.Model | None = None):
        super().__init__()
        self.base = base
        self.act = keras.layers.ReLU(name="act")
        self.dense = keras.layers.Dense(4, name="dense_after")
        self.out = keras.layers.Dense(1, activation="sigmoid", name="out")

    def call(self, inputs):
        return self.out(self.act(self.dense(self.base(inputs) if self.base is not None else inputs)))


def test_a_subclassed_model_s_weightless_layers_are_not_taken_for_frozen_ones():
    # A ReLU assigned before the trainable Dense that feeds it was taken for a frozen layer, and a
    # dead-relu of a model dying under training was left out (loss-at-chance named no cause).
    model = ReluAssignedFirst()
    model(np.zeros((1, 4), "float32"))
    assert frozen_layers(model) == ()
    # A frozen base is still one, whatever the model's order.
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="relu", name="b1")], name="base")
    base.trainable = False
    model = ReluAssignedFirst(base)
    model(np.zeros((1, 4), "float32"))
    frozen = frozen_layers(model)
    assert {"base", "b1"} <= set(frozen) and not {"act", "dense_after"} & set(frozen)


def test_dead_relu_advice_for_a_right_start_on_scaled_inputs_is_a_whole_sentence():
    # With nothing to fix before it, it read "... (he_normal, bias zeros): or use activation: ...".
    s = Stream()
    s.values["activation/dense/dead_fraction"] = lambda e, st: 1.0  # dead from the first step
    s.context.initializers = {"dense": {"layer": "dense", "kernel": "he_normal", "bias": "zeros"}}
    s.context.check_codes = ()  # the data checks ran and found the inputs scaled
    advice = finding(s.run(), "dead-relu").advice
    assert advice.startswith("The initialisation of this layer is already what relu needs (he_normal, bias zeros): use activation: leaky_relu (or elu).")



def test_dead_relu_beside_unscaled_targets_is_told_to_standardise_them_before_lowering_the_rate():
    # Raw diabetes targets (mean 152) on sklearn's scaled features: 53% of a layer died at epoch 32
    # and was told to lower the learning rate 10x, which left the loss at 5x the target variance
    # (lr-too-low); standardised targets trained cleanly.
    s = Stream(task="regression", chance=1.0)
    s.values["activation/dense/dead_fraction"] = lambda e, st: 0.6 if e >= 8 else 0.05
    s.context.check_codes = ("unscaled-targets",)
    advice = finding(s.run(), "dead-relu").advice
    assert advice.startswith("Standardise the targets first (preprocessing.standardize_targets: true")
    assert "lower the learning rate" in advice
    s.context.check_codes = ()
    assert finding(s.run(), "dead-relu").advice.startswith("Lower the learning rate")

def test_layer_names_list_a_nested_block_s_layers_in_its_own_order():
    # _flatten_layers listed them last to first: the "first weight layer" of a block was its last.
    from trainkit.diagnosis.model_facts import layer_names

    block = keras.Sequential([keras.layers.Dense(4, name="in1"), keras.layers.ReLU(name="in2"), keras.layers.Dense(4, name="in3")], name="block")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="last")(block(keras.layers.Dense(4, name="first")(inputs))))
    names = [n for n in layer_names(model) if not n.startswith("input_layer")]
    assert names == ["first", "block", "in1", "in2", "in3", "last"]


def test_layer_initializers_follow_a_weight_layer_into_the_activation_layer_after_it():
    from trainkit.diagnosis.model_facts import layer_initializers

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", kernel_initializer="he_normal", name="a"),
                              keras.layers.Dense(8, bias_initializer=keras.initializers.Constant(-10), name="b"), keras.layers.ReLU(name="b_relu"),
                              keras.layers.Dense(8, use_bias=False, kernel_initializer=keras.initializers.RandomNormal(stddev=2.0), name="c"),
                              keras.layers.BatchNormalization(name="norm"), keras.layers.Activation("tanh", name="c_tanh"),
                              keras.layers.Dense(1, name="out")])
    found = layer_initializers(model)
    assert found["a"] == {"layer": "a", "kernel": "he_normal", "bias": "zeros"}
    assert found["b_relu"] == found["b"] == {"layer": "b", "kernel": "glorot_uniform", "bias": "constant(-10)"}
    assert found["c"] == {"layer": "c", "kernel": "random_normal(stddev=2)", "bias": "none"}
    assert "c_tanh" not in found  # normalised in between: the weights' start no longer sets its input
    assert Context.from_dict(json.loads(json.dumps(Context(initializers=found).to_dict()))).initializers == found  # read back by diagnose


def test_layer_initializers_of_a_nested_model_follow_its_layers_in_order():
    # A nested model's layers were walked last to first: its ReLU took the Dense after it.
    from trainkit.diagnosis.model_facts import layer_initializers

    block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, kernel_initializer="he_normal", name="n_a"), keras.layers.ReLU(name="n_a_relu"),
                              keras.layers.Dense(8, kernel_initializer="zeros", name="n_b"), keras.layers.ReLU(name="n_b_relu")])
    inputs = keras.Input((4,))
    found = layer_initializers(keras.Model(inputs, keras.layers.Dense(1)(block(inputs))))
    assert found["n_a_relu"]["layer"] == "n_a" and found["n_b_relu"]["layer"] == "n_b"

    class Block(keras.layers.Layer):  # a subclassed model's layers, whose names record() gives
        def __init__(self) -> None:
            super().__init__()
            self.first, self.relu, self.second = keras.layers.Dense(8, name="c_a"), keras.layers.ReLU(name="c_a_relu"), keras.layers.Dense(8, name="c_b")

        def call(self, x):
            return self.second(self.relu(self.first(x)))

    inputs = keras.Input((4,))
    found = layer_initializers(keras.Model(inputs, Block()(inputs)))
    assert found["c_a_relu"]["layer"] == "c_a" and "c_b" in found


def test_layer_initializers_link_no_activation_to_a_weight_layer_before_other_weights():
    # A ReLU after a DepthwiseConv2D (depthwise_initializer, no kernel_initializer) took the
    # initializers of the Conv2D before that.
    from trainkit.diagnosis.model_facts import layer_initializers

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, kernel_initializer="he_normal", name="w_conv"),
                              keras.layers.DepthwiseConv2D(3, name="w_depthwise"), keras.layers.ReLU(name="w_relu")])
    found = layer_initializers(model)
    assert "w_conv" in found and "w_relu" not in found


def test_layer_initializers_of_a_time_distributed_layer_are_its_wrapped_layers():
    # Its activation statistics are under its own name: the dead-relu advice knew no initializers.
    from trainkit.diagnosis.model_facts import layer_initializers

    model = keras.Sequential([keras.Input((3, 4)), keras.layers.TimeDistributed(
        keras.layers.Dense(4, activation="relu", bias_initializer=keras.initializers.Constant(-5.0), name="t_dense"), name="t_wrap")])
    found = layer_initializers(model)
    assert found["t_wrap"] == found["t_dense"] == {"layer": "t_dense", "kernel": "glorot_uniform", "bias": "constant(-5)"}


def test_initializer_text_names_a_plain_function_initializer():
    # Keras takes any callable as an initializer: one was "function" ("it is function").
    from trainkit.diagnosis.model_facts import initializer_text

    def small_normal(shape, dtype=None):
        return keras.random.normal(shape, stddev=0.01, dtype=dtype)

    assert initializer_text(small_normal) == "small_normal"
    assert initializer_text(keras.initializers.RandomNormal(stddev=0.5)) == "random_normal(stddev=0.5)"


def test_relus_dead_before_the_first_update_on_unscaled_inputs_are_told_to_standardise_first():
    # Raw breast-cancer features, he_normal and zero biases: half of the units dead from the first
    # step; the advice led with "Fix the initialisation: bias zeros and he_normal", what it had.
    s = Stream()
    s.context.check_codes = ("unscaled-inputs",)
    s.values["activation/dense/dead_fraction"] = lambda e, st: 0.52
    f = finding(s.run(), "dead-relu")
    assert f.advice.startswith("Standardise the inputs first") and "standardize_inputs: true" in f.advice
    assert "Lower the learning rate" not in f.advice
    # Scaled inputs: the initialisation is the suspect, as before.
    s.context.check_codes = ()
    assert finding(s.run(), "dead-relu").advice.startswith("Fix the initialisation")


def test_relus_killed_during_training_on_unscaled_inputs_are_told_to_fix_the_inputs_first():
    # Images scaled twice (x / 255, then Rescaling(1 / 255)): units dead from epoch 1-2, told only
    # "Lower the learning rate"; at 1e-4 the run stayed at chance and got lr-too-low instead.
    s = Stream()
    s.context.check_codes = ("unscaled-inputs",)
    s.values["activation/dense/dead_fraction"] = lambda e, st: 0.0 if e == 0 and st < 3 else 0.7
    f = finding(s.run(), "dead-relu")
    assert f.advice.startswith("Fix the inputs' scale first") and "unscaled-inputs" in f.advice
    assert "lower the learning rate" in f.advice
    assert "standardise the inputs" not in f.advice  # the inputs' fix said once, first
    # Scaled inputs: the learning rate first, as before.
    s.context.check_codes = ()
    assert finding(s.run(), "dead-relu").advice.startswith("Lower the learning rate")


def test_relus_dead_before_the_first_update_on_constant_inputs_are_told_to_fix_the_inputs():
    # All-zero x, zero biases: every unit's input is 0, "dead" from the first step; the advice was
    # "bias_initializer: zeros", what it had.
    s = Stream()
    s.context.check_codes = ("constant-inputs",)
    s.values["activation/dense/dead_fraction"] = lambda e, st: 1.0
    f = finding(s.run(), "dead-relu")
    assert f.advice.startswith("Fix the inputs first") and "constant-inputs" in f.advice
    assert "bias_initializer" not in f.advice


@pytest.mark.parametrize("check", ["unscaled-inputs", "constant-inputs"])
def test_loss_at_chance_names_the_data_checks_that_explain_it(check):
    # An LSTM on features ~3000 sat at ln 2 beside unscaled-inputs and was told "the labels are
    # unpredictable from the inputs".
    s = Stream()
    s.context.check_codes = (check,)
    s.train_loss = lambda e, st: LN2 * (1 + 0.01 * math.sin(st + e))
    s.val_loss = lambda e: LN2 + 0.01
    f = finding(s.run(), "loss-at-chance")
    assert f.evidence["explained_by"] == [check] and "unpredictable" not in f.message
    assert f.advice.startswith(f"Fix what {check} says first")


def test_loss_at_chance_measures_its_bars_from_the_loss_floor():
    # The same rows and model without validation: BinaryCrossentropy ended at 0.609 (88% of 0.693:
    # learned), with label_smoothing=0.1 at 0.626 (90%), whose floor is the smoothed labels'
    # entropy, 0.199 (86% of the way from it): told "the labels are unpredictable from the inputs".
    s = Stream()
    s.context = dataclasses.replace(s.context, has_validation=False, loss_floor=0.1985)
    s.val_loss = None
    s.train_loss = lambda e, st: 0.72 if e == 0 else 0.626
    assert "loss-at-chance" not in codes(s.run())
    s.context = dataclasses.replace(s.context, loss_floor=0.0)
    assert "loss-at-chance" in codes(s.run())
    # Random labels stay at chance whatever the floor.
    s.context = dataclasses.replace(s.context, loss_floor=0.1985)
    s.train_loss = lambda e, st: LN2 * (1 + 0.01 * math.sin(st + e))
    assert "loss-at-chance" in codes(s.run())
    # Poisson counts of mean 1 (floor 0.356; the validation rows' level 0.998 and floor 0.35): a
    # model at 0.904 (validation 0.928) that learned 15% of the way was told the same.
    p = Stream(task="regression", chance=1.0)
    p.context = dataclasses.replace(p.context, loss="Poisson()", loss_floor=0.356, val_chance_loss=0.998, val_loss_floor=0.35)
    p.train_loss = lambda e, st: 1.05 if e == 0 else 0.904
    p.val_loss = lambda e: 1.0 if e == 0 else 0.928
    assert "loss-at-chance" not in codes(p.run())
    p.val_loss = lambda e: 0.998
    p.train_loss = lambda e, st: 0.995
    assert "loss-at-chance" in codes(p.run())


def test_loss_at_chance_names_unscaled_targets_as_the_reason():
    # Targets of std ~2e6: Adam's MSE stayed at 101% of their variance for 20 epochs, and was told
    # "the labels are unpredictable from the inputs" beside unscaled-targets.
    chance = 3.7e12
    s = Stream(task="regression", chance=chance)
    s.context.check_codes = ("unscaled-targets",)
    s.train_loss = lambda e, st: chance * (1.01 + 0.001 * math.sin(st + e))
    s.val_loss = lambda e: chance * 1.01
    f = finding(s.run(), "loss-at-chance")
    assert f.evidence["explained_by"] == ["unscaled-targets"] and "unpredictable" not in f.message
    assert f.advice.startswith("Fix what unscaled-targets says first")


@pytest.mark.parametrize("checks", [(), ("label-leakage",)])
def test_loss_at_chance_beside_a_leaked_label_does_not_call_the_labels_unpredictable(checks):
    # An exact copy of the label in x, trained slowly, stayed near chance and was told "the labels
    # are unpredictable from the inputs" beside label-leakage, which says they are given away.
    chance = 0.693
    s = Stream(chance=chance)
    s.context.check_codes = checks
    s.train_loss = lambda e, st: chance * (1.01 + 0.001 * math.sin(st + e))
    s.val_loss = lambda e: chance * 1.01
    f = finding(s.run(), "loss-at-chance")
    assert ("unpredictable" in f.message) is not bool(checks)
    assert ("found the label among the inputs" in f.message) is bool(checks)


def test_a_transient_dead_spell_is_not_reported():
    s = Stream()
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.8 if e == 6 else 0.05
    assert "dead-relu" not in codes(s.run())


def test_relus_that_come_back_after_a_dead_spell_are_withdrawn_at_the_end():
    # An Embedding-GAP text classifier's Dense(16, relu) read 58% and 54% dead in epochs 2-3 and was
    # told "dead ReLUs pass no gradient and never recover" there, live; from epoch 4 to the end of
    # its 15 epochs 30-31% (val_loss 0.08): the units came back, and the report still said they never would.
    s = Stream()
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.56 if e in (1, 2) else 0.3
    assert "dead-relu" not in codes(s.run())
    # Dead to the end, it stands, with the last epoch's fraction.
    kept = Stream()
    kept.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.56 if e in (1, 2) else (0.6 if e >= 10 else 0.3)
    f = finding(kept.run(), "dead-relu")
    assert f.evidence["since_epoch"] == 10 and f.evidence["dead_fraction"] == pytest.approx(0.6)


def test_relus_back_for_the_last_epoch_alone_are_not_withdrawn():
    # Dense(16, relu): 9 units dead (56%) in epochs 2-6, 7 (44%) in the 7th and last; the end
    # withdrew dead-relu ("it no longer holds"), which one more epoch at 9 would have kept: one
    # epoch under the bar undid a finding two over it are needed to make.
    s = Stream()
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.44 if e == 19 else 0.56 if e >= 1 else 0.05
    f = finding(s.run(), "dead-relu")
    assert f.evidence["dead_fraction"] == pytest.approx(0.56) and f.evidence["final_dead_fraction"] == pytest.approx(0.44)
    assert "mean over epoch 19" in f.message and "44% in the last epoch alone" in f.message, f.message
    # Back for two epochs (as long as they had to be dead to be told): withdrawn.
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.44 if e >= 18 else 0.56 if e >= 1 else 0.05
    assert "dead-relu" not in codes(s.run())


def test_relus_back_only_to_just_under_the_bar_are_not_withdrawn():
    # 60% of a layer's units dead in epochs 2-12, then 49% to the end (8 epochs): the end withdrew
    # dead-relu ("it no longer holds") with nearly half the units still dead.
    s = Stream()
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.49 if e >= 12 else 0.6 if e >= 1 else 0.05
    f = finding(s.run(), "dead-relu")
    assert f.evidence["dead_fraction"] == pytest.approx(0.6) and f.evidence["final_dead_fraction"] == pytest.approx(0.49)
    assert "mean over epoch 12" in f.message and "49% in the last epoch alone" in f.message, f.message
    # Clearly under the bar for two epochs (40%): they came back, withdrawn.
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.4 if e >= 18 else 0.49 if e >= 12 else 0.6 if e >= 1 else 0.05
    assert "dead-relu" not in codes(s.run())
    # A layer at 49% all along was never dead by the rule: silent.
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.49
    assert "dead-relu" not in codes(s.run())


def test_relus_dead_at_the_epoch_whose_weights_early_stopping_restored_are_not_withdrawn():
    # Dense(16, relu) with 12 of its units dead in epochs 2-5 (75%), alive from epoch 6 on; early
    # stopping (patience 3) restored epoch 5's weights, 12 units still dead in the model it returned,
    # and the end withdrew dead-relu because the last epochs read 0%: the report said nothing of them.
    s = Stream(epochs=12)
    s.values["activation/dense_1/dead_fraction"] = lambda e, st: 0.75 if 1 <= e <= 4 else 0.05
    s.notes = {"early_stopping": {"stopped_epoch": 7, "best_epoch": 4, "restored_epoch": 4}}
    f = finding(s.run(), "dead-relu")
    assert f.evidence["restored_epoch"] == 4 and f.evidence["dead_fraction"] == 0.75 and f.epoch == 1, f.evidence
    assert "mean over epoch 5" in f.message and "early stopping restored" in f.message, f.message
    # Weights restored from an epoch after the units came back: withdrawn, as without early stopping.
    s.notes = {"early_stopping": {"stopped_epoch": 10, "best_epoch": 7, "restored_epoch": 7}}
    assert "dead-relu" not in codes(s.run())


def test_saturated_hidden_layer_warns_partial_saturation_is_info_and_outputs_are_exempt():
    s = Stream()
    s.values["activation/dense/saturated_fraction"] = lambda e, st: 0.7 if e >= 4 else 0.0
    f = finding(s.run(), "saturated-activations")
    assert f.severity == "warning" and f.layer == "dense" and f.evidence["since_epoch"] == 4
    partial = Stream()
    partial.values["activation/dense/saturated_fraction"] = lambda e, st: 0.3 if e >= 4 else 0.0
    assert finding(partial.run(), "saturated-activations").severity == "info"
    # Growing from info to warning replaces the note with the warning.
    growing = Stream()
    growing.values["activation/dense/saturated_fraction"] = lambda e, st: 0.3 if e < 12 else 0.8
    found = [f for f in growing.run().findings if f.code == "saturated-activations"]
    assert len(found) == 1 and found[0].severity == "warning"


def test_a_peaked_hidden_softmax_is_not_saturated_activations():
    # An attention's Softmax, read inside MultiHeadAttention, has a saturated_fraction (rows whose
    # top probability is > 0.99): a sharp attention got "|tanh| > 0.99, or sigmoid outside
    # 0.01..0.99" and advice to switch to relu.
    from trainkit import Trainer
    from trainkit.diagnosis.run_context import build_context

    s = Stream()
    s.values["activation/softmax/saturated_fraction"] = lambda e, st: 0.9
    s.context.softmax_layers = ("softmax",)
    assert "saturated-activations" not in codes(s.run())
    assert Context.from_dict(s.context.to_dict()).softmax_layers == ("softmax",)

    keras.utils.set_random_seed(0)
    x_in = keras.Input((3, 4))
    attention = keras.layers.MultiHeadAttention(1, 4, dropout=0.1, name="attention")
    model = keras.Model(x_in, keras.layers.Dense(1, name="head")(keras.layers.Softmax(name="top_softmax")(attention(x_in, x_in))))
    trainer = Trainer(model, loss="mse", optimizer="sgd", task="regression", diagnose=False)
    assert build_context(trainer, None).softmax_layers == (attention._softmax.name, "top_softmax")


def test_a_shared_attentions_second_softmax_call_is_not_saturated_activations():
    # A shared MultiHeadAttention called twice reports its softmax as softmax and softmax_1 (a
    # repeated call is numbered past every layer name): the second call was judged as a tanh/sigmoid.
    s = Stream()
    s.values["activation/softmax/saturated_fraction"] = lambda e, st: 0.9
    s.values["activation/softmax_1/saturated_fraction"] = lambda e, st: 0.9
    s.context.layers = (*s.context.layers, "softmax")
    s.context.softmax_layers = ("softmax",)
    assert "saturated-activations" not in codes(s.run())
    # A layer of that name of its own is judged as itself.
    s.context.layers = (*s.context.layers, "softmax_1")
    assert finding(s.run(), "saturated-activations").layer == "softmax_1"


class RecordsASoftmax(keras.Model):
    """A subclassed model whose hidden softmax (sharpened 50x: peaked rows) is read by record()."""

    def __init__(self) -> None:
        super().__init__()
        self.scores = keras.layers.Dense(16)
        self.head = keras.layers.Dense(1, activation="sigmoid")

    def call(self, x):
        from trainkit.probes import record

        return self.head(record("attention", tf.nn.softmax(50.0 * self.scores(x)), "softmax"))


def test_a_recorded_hidden_softmax_is_not_saturated_activations():
    # record("attention", ..., "softmax") in a subclassed model: its peaked rows (a confident
    # choice) were judged as a tanh/sigmoid's flat tails, only a softmax layer's name was exempt.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = RecordsASoftmax()
    model(x[:2])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=6, batch_size=32, verbose=0)
    saturated = [row[2] for row in trainer.step_table() if row[1] == "activation/attention/saturated_fraction"]
    assert min(saturated[-8:]) > 0.5  # what the rule would have judged
    assert "saturated-activations" not in [f.code for f in trainer.findings]
    assert trainer._probe.softmax_taps == {"attention"}


class OutputLayerFirst(keras.Model):
    """A subclassed model that creates its output layer before its hidden layer."""

    def __init__(self) -> None:
        super().__init__()
        self.out = keras.layers.Dense(1, activation="sigmoid", name="out")
        self.hidden = keras.layers.Dense(3, activation="relu", name="hidden")

    def call(self, x):
        return self.out(self.hidden(x))


def test_a_subclassed_models_output_layer_is_the_one_the_step_saw_produce_the_output():
    # Its layers are read through hooks; its output layer was guessed as the last one it holds:
    # "out", created first, was judged as a hidden layer (saturated-activations on a confident
    # prediction) and "hidden" as the output (dead-relu never judged it).
    from trainkit.diagnosis.run_context import build_context

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    model = OutputLayerFirst()
    model(x[:1])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", jit_compile=False, diagnose=False, seed=0)
    trainer.fit(x, (x[:, :1] > 0).astype("float32"), epochs=1, batch_size=16, verbose=0)
    assert build_context(trainer, None).output_layers == ("out",)


def test_a_nested_models_output_layer_is_an_output_layer_not_a_hidden_one():
    # A nested model's layers are read through hooks; its sigmoid output layer was judged as a
    # hidden layer, and a confident prediction got saturated-activations.
    from trainkit.diagnosis.run_context import build_context

    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu", name="h"),
                              keras.layers.Dense(1, activation="sigmoid", name="inner_out")], name="inner")
    x_in = keras.Input((4,))
    trainer = Trainer(keras.Model(x_in, inner(x_in)), loss="binary_crossentropy", optimizer="sgd", task="binary", diagnose=False)
    assert build_context(trainer, None).output_layers == ("inner", "inner_out")

    s = Stream()
    s.values["activation/inner_out/saturated_fraction"] = lambda e, st: 0.9
    s.context.output_layers = ("dense_2", "inner", "inner_out")
    assert "saturated-activations" not in codes(s.run())


def test_saturated_activations_advise_glorot_only_to_a_layer_that_lacks_it():
    # zero_tanh_saturated (glorot_uniform already) was told to initialise with glorot.
    s = Stream()
    s.values["activation/dense/saturated_fraction"] = lambda e, st: 0.9
    s.context.initializers = {"dense": {"layer": "dense", "kernel": "glorot_uniform", "bias": "zeros"}}
    assert "glorot" not in finding(s.run(), "saturated-activations").advice
    s.context.initializers = {"dense": {"layer": "dense", "kernel": "random_normal(stddev=3)", "bias": "zeros"}}
    assert "initialise with glorot_uniform/glorot_normal (it is random_normal(stddev=3))" in finding(s.run(), "saturated-activations").advice



def test_units_saturated_before_the_first_update_are_not_told_to_lower_the_learning_rate():
    # A 10-layer tanh stack at random_normal(stddev=1) saturated at the first step was told to
    # "Lower the learning rate" first; at a tenth of it it stayed saturated, its loss higher.
    s = Stream()
    s.values["activation/dense/saturated_fraction"] = lambda e, st: 0.6
    s.context.initializers = {"dense": {"layer": "dense", "kernel": "random_normal(stddev=1)", "bias": "zeros"}}
    s.context.check_codes = ()  # the data checks ran and found the inputs scaled
    f = finding(s.run(), "saturated-activations")
    assert f.evidence["first_step_saturated_fraction"] == 0.6 and "before any update" in f.message
    assert "learning rate (" not in f.advice and f.advice.startswith("Initialise with glorot_uniform")
    assert "did not saturate these units" in f.advice
    # Saturated by training (not at the first step): the learning rate, with the rate to use.
    s.values["activation/dense/saturated_fraction"] = lambda e, st: 0.0 if e == st == 0 else 0.6
    f = finding(s.run(), "saturated-activations")
    assert "first_step_saturated_fraction" not in f.evidence
    assert f.advice.startswith("Lower the learning rate (optimizer.learning_rate: 0.0001 (now 0.001))")

# -- generalisation --------------------------------------------------------------------------------

def overfitting_stream() -> Stream:
    s = Stream()
    train = curve(0.7, 0.02, 20)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: 0.4 + (0.0 if e <= 6 else 0.05 * (e - 6)) + (0.3 - 0.05 * e if e < 6 else 0.0)
    return s


def test_overfitting_from_the_epoch_of_the_best_validation_loss():
    f = finding(overfitting_stream().run(), "overfitting")
    assert f.severity == "warning" and f.epoch == 6 and "early_stopping" in f.advice
    # The --set paths: "training: {early_stopping: ...}" beside a recipe's own training: mapping is a
    # duplicate key, and "(or epochs: 7)" named a top-level key no recipe has.
    assert ("training.early_stopping: {monitor: val_loss, patience: 5, restore_best_weights: true} (or training.epochs: 7)"
            in f.advice), f.advice
    # Recipe keys a user can copy, without a brace left hanging ("rate: 0.2}..0.5)").
    assert "({type: dropout, rate: 0.2}; rates of 0.2 to 0.5 are usual)" in f.advice and "}.." not in f.advice
    assert "kernel_regularizer: {l2: 0.01} to the dense or conv2d layers" in f.advice


def test_a_validation_loss_rising_through_lagging_batchnorm_averages_is_batchnorm_lag_not_overfitting():
    # Dense, BatchNormalization(momentum 0.99), ReLU on inputs centred at 20, 4 steps an epoch:
    # after 48 steps the validation loss rose 0.56 -> 1.45 while the training loss fell to 0.47,
    # told "overfits from epoch 8", where evaluate scored the training rows themselves at 1.77.
    s = overfitting_stream()
    s.context.batch_norms = {"bn": 0.99}  # 200 steps: its averages still weigh their start 13%
    d = s.run()
    assert "overfitting" not in codes(d)
    f = finding(d, "batchnorm-lag")
    assert f.severity == "warning" and f.layer == "bn" and f.evidence["steps"] == 200
    assert f.evidence["start_share"] == pytest.approx(0.99 ** 200, rel=1e-3)
    assert "need not be overfitting" in f.message and "a weight of 13%" in f.message
    assert "trainer.evaluate(x_train, y_train)" in f.advice and "momentum: 0.9 on its {type: batchnorm} layer" in f.advice
    assert "~100, 10 epochs of 10 steps" in f.advice
    # Averages that have long followed the batches (momentum 0.9), or a model trained before this
    # run (steps it took are not counted): overfitting as before.
    for context in ({"batch_norms": {"bn": 0.9}}, {"batch_norms": {"bn": 0.99}, "trained_before": True}):
        s = overfitting_stream()
        for key, value in context.items():
            setattr(s.context, key, value)
        assert "overfitting" in codes(s.run()) and "batchnorm-lag" not in codes(s.run())
    # A validation loss below the training loss is no lag to tell of.
    below = _validation_below(batch_norms={"bn": 0.99}, batch_size=32)
    assert "batchnorm-lag" not in codes(below.run())
    # Batches of one row are the data check's case: told "lower the momentum, smaller batches" beside it.
    s = overfitting_stream()
    s.context.batch_norms, s.context.batch_size, s.context.check_codes = {"bn": 0.99}, 1, ("batchnorm-batch-of-one",)
    assert "batchnorm-lag" not in codes(s.run())
    s = overfitting_stream()
    s.context.batch_norms, s.context.batch_size = {"bn": 0.99}, 8
    f = finding(s.run(), "batchnorm-lag")
    assert "(more epochs)" in f.advice and "smaller batches" not in f.advice  # 8 rows a batch are small already


def test_batchnorm_averages_that_err_little_from_the_batches_are_no_lag_and_overfitting_is_told():
    # An MLP with BatchNormalization on standardised inputs that overfit (240 steps at momentum 0.99,
    # 8% of the start left; evaluate scored its training rows at 0.04, their training loss) was told
    # batchnorm-lag, "need not be overfitting", and no overfitting: its averages erred by 0.1 of a
    # normalised value's spread from the batches' statistics. Inputs centred at 20: 9.2.
    s = overfitting_stream()
    s.context.batch_norms = {"bn": 0.99}
    s.notes["batch_norm_errors"] = {"bn": 0.1}
    d = s.run()
    assert "overfitting" in codes(d) and "batchnorm-lag" not in codes(d)
    s = overfitting_stream()
    s.context.batch_norms = {"bn": 0.99}
    s.notes["batch_norm_errors"] = {"bn": 9.2}
    d = s.run()
    assert "batchnorm-lag" in codes(d) and "overfitting" not in codes(d)


@pytest.mark.parametrize(("mean", "batch_variance", "lags"), [(0.0, 1.0, False), (0.1, 0.8, False), (20.0, 1.0, True), (0.0, 0.01, True)])
def test_batch_norm_errors_measure_averages_against_the_batch_statistics_they_imply(mean, batch_variance, lags):
    from trainkit.diagnosis.model_facts import batch_norm_errors
    from trainkit.diagnosis.rule_types import Thresholds

    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(momentum=0.99, name="bn")])
    share = 0.99 ** 48
    model.layers[0].moving_mean.assign(np.full(3, (1 - share) * mean, "float32"))
    model.layers[0].moving_variance.assign(np.full(3, share + (1 - share) * batch_variance, "float32"))
    error = batch_norm_errors(model, 48)["bn"]
    assert (error >= Thresholds().batchnorm_lag_error) == lags, error


def test_overfitting_of_a_python_fit_names_the_callback_and_layers_it_passes_not_recipe_keys():
    # A Trainer.fit was told "training.early_stopping: {...} (or training.epochs: 7)" and
    # "{type: dropout, rate: 0.2}": a recipe's keys and YAML, which it has no recipe for.
    s = overfitting_stream()
    s.context.recipe = False
    advice = finding(s.run(), "overfitting").advice
    assert ("Stop at the best epoch: callbacks=[trainkit.EarlyStopping(monitor='val_loss', patience=5, restore_best_weights=True)] "
            "in fit (or epochs=7 in fit)") in advice, advice
    assert "add dropout layers (keras.layers.Dropout(0.2); rates of 0.2 to 0.5 are usual)" in advice, advice
    assert "kernel_regularizer=keras.regularizers.L2(0.01) to the Dense or Conv2D layers" in advice, advice
    assert not any(key in advice for key in ("training.", "{type:", "{l2:")), advice
    s.context.dropout, s.context.regularizers = 0.2, {"dense": {"kernel_regularizer": {"l2": 0.001}}}
    advice = finding(s.run(), "overfitting").advice
    assert "a higher dropout rate (keras.layers.Dropout(0.4), now 0.2;" in advice and "keras.regularizers.L2(0.01) (now L2(0.001))" in advice, advice


@pytest.mark.parametrize(("val_rows", "judged"), [(1, False), (4, False), (5, True), (None, True)])
def test_verdicts_read_from_the_validation_loss_need_validation_rows(val_rows, judged):
    # fit(validation_split=0.2) on 5 rows holds out 1: its loss rising from 0.018 to 0.44 was told
    # "the model overfits from epoch 1", and 2 held-out rows at 96% of chance "nothing the model
    # learned carries over to new rows" (a validation dataset's rows are unknown: judged).
    s = overfitting_stream()
    s.context.val_rows = val_rows
    assert ("overfitting" in codes(s.run())) is judged
    s = Stream()
    train = curve(0.7, 0.05, 20)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: LN2 + 0.02 * e
    s.context.val_rows = val_rows
    assert ("loss-at-chance" in codes(s.run())) is judged


def test_a_fit_gives_the_diagnosis_its_validation_rows():
    x = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    y = np.arange(10) % 2
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", logdir=None)
    trainer.fit(x, y, epochs=1, verbose=0, validation_split=0.2)
    assert trainer._live_diagnosis.diagnoser.context.val_rows == 2
    trainer.fit(x, y, epochs=1, verbose=0, validation_data=tf.data.Dataset.from_tensor_slices((x, y)).batch(4))
    assert trainer._live_diagnosis.diagnoser.context.val_rows is None


def test_overfitting_advice_raises_the_regularisation_the_model_has_instead_of_adding_it():
    # Dropout 0.2 and L2 0.001 were told to "add dropout layers ({type: dropout, rate: 0.2})
    # and kernel_regularizer: {l2: 0.01}": the dropout it had.
    s = overfitting_stream()
    s.context.dropout = 0.2
    s.context.regularizers = {"dense": {"kernel_regularizer": {"l2": 0.001}}}
    advice = finding(s.run(), "overfitting").advice
    assert "a higher dropout rate ({type: dropout, rate: 0.4}, now 0.2;" in advice and "add dropout" not in advice
    assert "kernel_regularizer: {l2: 0.01} (now {l2: 0.001})" in advice
    s.context.dropout = 0.5
    assert "dropout" not in finding(s.run(), "overfitting").advice.split("regularise:")[1]

def test_overfitting_of_one_output_names_it_and_the_output_still_learning():
    # price under loss_weights 1000 overfit from epoch 4 while is_pos still improved (val 0.53 there,
    # 0.48 at the end): "the model overfits, stop at epoch 4" named neither.
    s = overfitting_stream()
    s.context = dataclasses.replace(s.context, output_names=("is_pos", "price"))
    d = Diagnoser(s.context)
    for epoch in range(s.epochs):
        names, values = s.rows(epoch)
        d.add_steps(epoch * STEPS, names, values)
        d.end_epoch(epoch, {"loss": float(np.mean(values[:, 0])), "val_loss": s.val_loss(epoch),
                            "val_is_pos_loss": 0.6 - 0.01 * epoch, "val_price_loss": s.val_loss(epoch) - 0.3})
    d.finish()
    f = finding(d, "overfitting")
    assert "by output: is_pos's validation loss fell from 0.54 to 0.41, price's rose from" in f.message
    assert "Only price overfits: is_pos still improves" in f.advice and "loss_weights entry for price lets is_pos go on" in f.advice
    assert f.evidence["output_val_losses"]["is_pos"] == pytest.approx([0.54, 0.41])
    # One output: the message and advice as before.
    plain = finding(overfitting_stream().run(), "overfitting")
    assert "by output" not in plain.message and "Only" not in plain.advice


def two_output_stream(b_train: list[float], b_val: list[float] | None, *, weight_b: float = 1.0,
                      validation: bool = True) -> Stream:
    """Two binary outputs: ``a`` learns (0.69 -> 0.10, validation -> 0.15), ``b``'s losses are given;
    the total is their weighted sum, against its chance level (each output's is ln 2)."""
    epochs = len(b_train)
    s = Stream(epochs=epochs, chance=LN2 * (1 + weight_b))
    s.context = dataclasses.replace(s.context, output_names=("a", "b"), output_chance_losses={"a": LN2, "b": LN2},
                                    val_output_chance_losses={"a": LN2, "b": LN2} if validation else None,
                                    output_loss_weights={"a": 1.0, "b": weight_b}, has_validation=validation)
    a_train, a_val = curve(0.69, 0.10, epochs), curve(0.69, 0.15, epochs)
    s.train_loss = lambda e, st: a_train[e] + weight_b * b_train[e]
    s.val_loss = (lambda e: a_val[e] + weight_b * b_val[e]) if validation and b_val is not None else None
    s.more_logs = lambda e: {"a_loss": a_train[e], "b_loss": b_train[e],
                             **({"val_a_loss": a_val[e], "val_b_loss": b_val[e]} if validation and b_val is not None else {})}
    return s


def test_an_output_at_its_own_chance_beside_one_that_learns_is_named():
    # b on random labels: its training loss memorises slowly (0.69 -> 0.62) and its validation loss
    # rises (0.70 -> 0.72), while a learns and the total ends at 53% of its level: no finding at all.
    s = two_output_stream(curve(0.70, 0.62, 15), [0.70 + 0.0015 * e for e in range(15)])
    f = finding(s.run(), "loss-at-chance")
    assert f.message.startswith("Output b's validation loss never got clearly below its own chance level 0.6931: its best was 0.7")
    assert "while the total loss fell to" in f.message and "of the total's chance level 1.386" in f.message
    assert "its labels are unpredictable from the inputs" in f.message and "(its loss weight (1) makes it 50% of" in f.message
    assert "predicts no better than a constant" in f.message
    assert f.advice.startswith("Check that b's labels can be predicted") and "loss_weights={'b': ...}" in f.advice
    assert f.evidence["output"] == "b" and f.evidence["output_chance_loss"] == pytest.approx(LN2, abs=1e-6)
    assert f.evidence["output_val_chance_loss"] == pytest.approx(LN2, abs=1e-6) and f.evidence["best_output_val_loss"] > LN2
    # Without validation rows, its training loss at its level over the last third.
    flat = [LN2 * (1.0 + 0.002 * math.sin(e)) for e in range(15)]
    f = finding(two_output_stream(flat, None, validation=False).run(), "loss-at-chance")
    assert f.message.startswith("Output b's training loss stayed at its own chance level 0.6931")


def test_an_output_at_chance_under_a_small_loss_weight_is_told_to_raise_it():
    flat = [LN2 * (1.0 + 0.002 * math.sin(e)) for e in range(15)]
    f = finding(two_output_stream(flat, [LN2 * 1.01] * 15, weight_b=0.01).run(), "loss-at-chance")
    assert "it learned nothing, not even the training rows, and its loss weight (0.01) makes it 1% of the total loss" in f.message
    assert f.advice.startswith("Raise its weight: a larger loss_weights entry for b") and "check that b's labels" in f.advice
    assert f.evidence["output_chance_share"] == pytest.approx(0.01 / 1.01, rel=1e-3)
    # Creeping down far above its level (SGD, loss_weights 0.005: validation 0.855 -> 0.838, 121% of
    # it, in 15 epochs) is no head still learning through its level.
    creeping = [0.855 - 0.0012 * e for e in range(15)]
    f = finding(two_output_stream([v + 0.015 for v in creeping], creeping, weight_b=0.005).run(), "loss-at-chance")
    assert f.message.startswith("Output b's validation loss") and f.advice.startswith("Raise its weight")
    assert "predicts worse than a constant" in f.message  # at its best 121% of its level


def test_an_output_under_loss_weight_zero_is_not_told_to_raise_it():
    # loss_weights 0 on a head only watched (as loss=None): it was told "its loss weight (0) makes it
    # 0% of the total loss at chance: the other outputs' gradients drown its own. Raise its weight".
    flat = [LN2 * (1.0 + 0.002 * math.sin(e)) for e in range(15)]
    assert "loss-at-chance" not in codes(two_output_stream(flat, [LN2 * 1.05] * 15, weight_b=0.0).run())


def test_without_the_totals_level_an_output_is_named_only_beside_one_that_learned():
    # A custom loss on a third output leaves the total's level unknown. With SGD at 1e-6 every head
    # stayed at its level (lr-too-low): a head on learnable labels was told its labels are
    # "unpredictable from the inputs". Beside a head that learns, one at its level is still named.
    flat = [LN2 * (1.0 + 0.002 * math.sin(e)) for e in range(15)]
    s = two_output_stream(flat, [LN2 * 1.01] * 15)
    s.context.chance_loss = None
    assert finding(s.run(), "loss-at-chance").evidence["output"] == "b"
    s = two_output_stream(flat, [LN2 * 1.01] * 15)
    s.context.chance_loss = None
    s.train_loss = lambda e, st: 2 * flat[e]
    s.val_loss = lambda e: 2 * LN2 * 1.01
    s.more_logs = lambda e: {"a_loss": flat[e], "b_loss": flat[e], "val_a_loss": LN2 * 1.01, "val_b_loss": LN2 * 1.01}
    assert "loss-at-chance" not in codes(s.run())


def test_an_output_at_chance_beside_a_penalty_says_the_total_quoted_is_without_it():
    # L2 0.01: "while the total loss fell to 0.8107" where the History's last loss was 0.8927.
    s = two_output_stream(curve(0.70, 0.62, 15), [0.70 + 0.0015 * e for e in range(15)])
    d = Diagnoser(s.context)
    for epoch in range(s.epochs):
        names, values = s.rows(epoch)
        d.add_steps(epoch * STEPS, names, values)
        d.end_epoch(epoch, {"loss": float(np.mean(values[:, 0])) + 0.08, "val_loss": s.val_loss(epoch) + 0.08, **s.more_logs(epoch)},
                    regularization=0.08)
    d.finish()
    f = finding(d, "loss-at-chance")
    assert f.evidence["output"] == "b" and "without the regularization penalty, 0.08 in the last epoch" in f.message


def test_outputs_that_learn_even_slowly_get_no_loss_at_chance():
    # Both learn; and b hard but learning: its validation loss came back from 0.72 and falls steadily
    # through its last third (0.712 -> 0.694), not yet under its level (a product-of-inputs head at
    # epoch 15 that reached 0.646 by epoch 30).
    assert "loss-at-chance" not in codes(two_output_stream(curve(0.69, 0.2, 15), curve(0.69, 0.3, 15)).run())
    hard_val = [0.704, 0.701, 0.706, 0.707, 0.710, 0.713, 0.716, 0.717, 0.719, 0.719, 0.712, 0.706, 0.703, 0.702, 0.694]
    assert "loss-at-chance" not in codes(two_output_stream(curve(0.78, 0.60, 15), hard_val).run())
    # The total not clearly below its level (0.72 at 92% of 0.78): the total's rule judges the run.
    s = two_output_stream(curve(0.70, 0.62, 15), [0.70 + 0.0015 * e for e in range(15)])
    s.context.chance_loss = 0.78
    assert not any(f.message.startswith("Output") for f in s.run().findings)


def test_the_outputs_chance_levels_are_saved_and_read_back():
    context = two_output_stream(curve(0.69, 0.2, 15), curve(0.69, 0.3, 15)).context
    back = Context.from_dict(json.loads(json.dumps(context.to_dict())))
    assert back.output_chance_losses == {"a": pytest.approx(LN2), "b": pytest.approx(LN2)}
    assert back.val_output_chance_losses == context.val_output_chance_losses and back.output_loss_weights == {"a": 1.0, "b": 1.0}
    # A resumed fit keeps the run's levels, as it keeps the total's.
    from trainkit.diagnosis.run_context import resumed_context

    resumed = resumed_context(back, Context(output_names=("a", "b")))
    assert resumed.output_chance_losses == back.output_chance_losses and resumed.val_output_chance_losses == back.val_output_chance_losses


def test_overfitting_quoting_losses_without_the_penalty_says_so():
    # L2 0.001 on two 256-unit layers: the message said the validation loss rose "to 0.7322",
    # report.json's last val_loss was 0.768 (the penalty, 0.0357, included).
    s = overfitting_stream()
    d = Diagnoser(s.context)
    for epoch in range(s.epochs):
        names, values = s.rows(epoch)
        d.add_steps(epoch * STEPS, names, values)
        d.end_epoch(epoch, {"loss": float(np.mean(values[:, 0])) + 0.05, "val_loss": s.val_loss(epoch) + 0.05}, regularization=0.05)
    d.finish()
    f = finding(d, "overfitting")
    assert f.evidence["final_val_loss"] == pytest.approx(s.val_loss(s.epochs - 1), abs=1e-6)
    assert "without the regularization penalty, 0.05 in the last epoch" in f.message
    assert "weight penalty" not in finding(overfitting_stream().run(), "overfitting").message
    # An activity penalty's in the training loss (its rows', over the epoch) is its own: both said.
    d = Diagnoser(s.context)
    for epoch in range(s.epochs):
        names, values = s.rows(epoch)
        d.add_steps(epoch * STEPS, names, values)
        d.end_epoch(epoch, {"loss": float(np.mean(values[:, 0])) + 0.08, "val_loss": s.val_loss(epoch) + 0.05}, regularization=0.05,
                    train_regularization=0.08)
    d.finish()
    assert "0.08 in the last epoch's training loss and 0.05 in its validation loss" in finding(d, "overfitting").message


def test_an_overfitting_the_rest_of_the_run_undoes_is_withdrawn_at_its_end():
    # It stood with its epoch-10 evidence ("or epochs: 10") though the validation loss later
    # reached a new minimum: that advice would ship a worse model.
    s = Stream()
    train = curve(0.7, 0.02, 20)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: 0.7 - 0.05 * e if e <= 6 else (0.4 + 0.08 * (e - 6) if e <= 13 else 0.96 - 0.12 * (e - 13))
    d = Diagnoser(s.context)
    for epoch in range(20):
        names, values = s.rows(epoch)
        d.add_steps(epoch * STEPS, names, values)
        d.end_epoch(epoch, {"loss": float(np.mean(values[:, 0])), "val_loss": s.val_loss(epoch)})
        if epoch == 13:
            assert "overfitting" in codes(d)
    d.finish()
    assert "overfitting" not in codes(d)


def test_no_overfitting_while_the_training_loss_is_above_chance():
    # Unscaled inputs: a training loss at 29x chance and a jumpy validation curve were called
    # "overfits from epoch 2", with dropout and L2 as the fix.
    s = overfitting_stream()
    train = curve(3.0, 1.5, 20)  # falling, but always over ln 2
    s.train_loss = lambda e, st: train[e]
    assert "overfitting" not in codes(s.run())


def test_no_overfitting_when_nothing_ever_generalised():
    # Random labels: the validation loss at best 98-141% of chance, then rising as the model
    # memorised; overfitting came first with "stop at epoch 37", contradicting loss-at-chance.
    s = overfitting_stream()
    s.val_loss = lambda e: LN2 * (0.98 + (0.0 if e <= 6 else 0.03 * (e - 6)))
    d = s.run()
    assert "overfitting" not in codes(d) and "loss-at-chance" in codes(d)


def test_no_overfitting_when_the_steps_overshoot():
    # Learning rate 1.0: a validation loss jumping about was "overfitting", with dropout and L2.
    s = overfitting_stream()
    d = Diagnoser(s.context)
    d.replace(Finding("lr-too-high", "warning", "m", "Lower the learning rate."))
    assert "overfitting" not in codes(s.run(diagnoser=d))
    assert "overfitting" in codes(overfitting_stream().run())


def test_no_overfitting_for_a_lucky_minimum_of_a_validation_loss_that_jumps_about():
    # load_breast_cancer's raw features (0.05..2500), validation_split=0.2, 30 epochs: val_loss
    # jumped 0.50 -> 1.08 -> 0.48 while the training loss fell smoothly, and a dip to 0.287 then
    # 0.356 was told "overfits from epoch 24" (standardised inputs: 0.12, no rise at all).
    train = [106.3, 54.83, 15.2, 9.432, 5.965, 3.591, 2.304, 1.925, 1.639, 1.484, 1.261, 1.098, 0.942, 0.875, 0.728,
             0.651, 0.601, 0.612, 0.694, 0.488, 0.478, 0.398, 0.414, 0.325, 0.366, 0.291, 0.289, 0.294, 0.318, 0.303]
    val = [102.6, 39.11, 11.93, 10.98, 6.362, 3.635, 2.79, 2.241, 1.903, 1.657, 1.668, 1.215, 1.136, 0.86, 1.026,
           0.71, 0.496, 0.649, 0.691, 1.084, 0.483, 0.746, 0.59, 0.287, 0.378, 0.46, 0.456, 0.665, 0.759, 0.356]
    s = Stream(epochs=30)
    s.train_loss, s.val_loss = (lambda e, st: train[e]), (lambda e: val[e])
    assert "overfitting" not in codes(s.run())
    # The same minimum and a steady climb from it, each epoch's move far under the rise: told.
    steady = val[:24] + [0.287 + 0.03 * k for k in range(1, 7)]
    s.val_loss = lambda e: steady[e]
    assert finding(s.run(), "overfitting").epoch == 23


@pytest.mark.parametrize("shape", ["parabola", "steep fall"])
def test_a_smooth_climb_after_a_smooth_fall_is_overfitting(shape):
    # Every epoch of a smooth curve moves: the median move was the lucky-dip guard's bar, and a
    # parabola's climb from 0.30 to 0.54 over its last 4 epochs (or a steady climb to 0.46 after
    # a fall of 0.17 an epoch) was no rise above it. Its moves' changes are small: told.
    val = ([0.3 + 0.015 * (e - 10) ** 2 for e in range(15)] if shape == "parabola"
           else [2.0 - 0.17 * e for e in range(11)] + [0.3 + 0.04 * k for k in range(1, 5)])
    s = Stream(epochs=15)
    s.train_loss, s.val_loss = (lambda e, st: 1.5 * 0.85**e), (lambda e: val[e])
    assert finding(s.run(), "overfitting").epoch == 10


@pytest.mark.parametrize(("penalty", "reported"), [(1.0, True), (0.1, False)])
def test_a_penalty_that_is_most_of_the_loss_is_named_instead_of_underfitting(penalty, reported):
    # L2 1.0 on every layer: 85% of the loss was the penalty, accuracy 0.51, and the only finding
    # was underfitting's "train longer, raise the learning rate, more capacity".
    s = Stream()
    data = curve(0.72, 0.6, 20)
    d = Diagnoser(s.context)
    for epoch in range(20):
        names, values = s.rows(epoch)
        d.add_steps(epoch * STEPS, names, values)
        d.end_epoch(epoch, {"loss": data[epoch] + penalty, "val_loss": data[epoch] + 0.02 + penalty}, regularization=penalty)
    d.finish()
    assert ("regularization-dominates" in codes(d)) is reported
    if reported:
        f = finding(d, "regularization-dominates")
        assert f.evidence["penalty_share"] == pytest.approx(1.0 / 1.6, rel=0.02) and "l2: 0.001" in f.advice
        assert "underfitting" not in codes(d)


def test_a_dominating_penalty_is_told_a_tenth_of_its_own_strength():
    # L2 1.0 on two layers was told "kernel_regularizer: {l2: 0.001} where it is 0.01", a
    # thousandth of its penalty; the advice now names the run's layers and factors.
    from trainkit.diagnosis.model_facts import layer_regularizers

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", kernel_regularizer=keras.regularizers.L2(1.0)),
                              keras.layers.Dense(8, activation="relu", kernel_regularizer=keras.regularizers.L2(1.0),
                                                 bias_regularizer=keras.regularizers.L1L2(l1=0.5)),
                              keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=keras.regularizers.OrthogonalRegularizer())])
    names = [layer.name for layer in model.layers]
    assert layer_regularizers(model) == {names[0]: {"kernel_regularizer": {"l2": 1.0}},
                                         names[1]: {"kernel_regularizer": {"l2": 1.0}, "bias_regularizer": {"l1": 0.5}},
                                         names[2]: {"kernel_regularizer": {}}}
    s = Stream()
    data = curve(0.72, 0.6, 20)
    s.context.regularizers = {"dense": {"kernel_regularizer": {"l2": 1.0}}, "dense_1": {"kernel_regularizer": {"l2": 1.0}}}

    def dominated_advice() -> str:
        d = Diagnoser(s.context)
        for epoch in range(20):
            names_, values = s.rows(epoch)
            d.add_steps(epoch * STEPS, names_, values)
            d.end_epoch(epoch, {"loss": data[epoch] + 1.0, "val_loss": data[epoch] + 1.02}, regularization=1.0)
        d.finish()
        return finding(d, "regularization-dominates").advice

    advice = dominated_advice()
    assert "Lower the penalty 10x (kernel_regularizer: {l2: 0.1} (now {l2: 1}) on dense, dense_1)" in advice
    assert "0.001" not in advice
    # A Python fit's: the Keras regularizer its layers take, not the recipe's mapping.
    s.context.recipe = False
    s.context.regularizers = {"dense": {"kernel_regularizer": {"l2": 1.0}}, "dense_1": {"bias_regularizer": {"l1": 0.5, "l2": 0.2}}}
    advice = dominated_advice()
    assert ("Lower the penalty 10x (kernel_regularizer=keras.regularizers.L2(0.1) (now L2(1)) on dense; "
            "bias_regularizer=keras.regularizers.L1L2(l1=0.05, l2=0.02) (now L1L2(l1=0.5, l2=0.2)) on dense_1)") in advice, advice


def test_regularization_advice_names_an_embedding_s_and_a_recurrent_layer_s_penalty():
    # Only kernel, bias and activity penalties were read: an Embedding's L2 of 0.01 (16.7 of a
    # loss of 17.5) was left out, and the advice lowered the Dense's 0.001 (0.002 of it) instead.
    from trainkit.diagnosis.model_facts import layer_regularizers

    inputs = keras.Input((6,), dtype="int32")
    embedded = keras.layers.Embedding(20, 4, embeddings_regularizer=keras.regularizers.L2(0.01))(inputs)
    hidden = keras.layers.LSTM(4, recurrent_regularizer=keras.regularizers.L2(0.5))(embedded)
    model = keras.Model(inputs, keras.layers.Dense(1, kernel_regularizer=keras.regularizers.L2(0.001))(hidden))
    embedding, lstm, dense = (layer.name for layer in model.layers[1:])
    # The LSTM's penalty once, under its own name (not again under its cell's).
    assert layer_regularizers(model) == {embedding: {"embeddings_regularizer": {"l2": 0.01}},
                                         lstm: {"recurrent_regularizer": {"l2": 0.5}},
                                         dense: {"kernel_regularizer": {"l2": 0.001}}}


def test_an_activity_penalty_is_told_apart_from_the_loss_on_the_data(tmp_path):
    # activity_regularizer L2(1.0): the penalty was read as part of the data loss (model.losses
    # holds it as a tensor of the traced step), so the run got initial-loss-too-high (9.4x chance)
    # and underfitting, where its penalty was 77% of the loss and the data loss at chance.
    from trainkit.diagnosis.readback import diagnose_run_dir

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, :2].sum(1, keepdims=True) > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu", activity_regularizer=keras.regularizers.L2(1.0)),
                              keras.layers.Dense(1, activation="sigmoid")])
    # Keras divides a batch's penalty by its rows: the mean over the training rows, at the start.
    expected = float(keras.ops.sum(keras.ops.square(model.layers[0](x[:204])))) / 204
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, jit_compile=False, logdir=tmp_path)
    history = trainer.fit(x, y, epochs=8, batch_size=32, verbose=0, validation_split=0.2, shuffle=False).history
    diagnoser = trainer._live_diagnosis.diagnoser
    assert diagnoser.context.regularization == pytest.approx(expected, rel=1e-4)
    assert set(history) == {"loss", "val_loss"}  # the penalties' means stay out of the logs
    # The loss on the data is the training loss less the steps' own penalties: the model's bce
    # on the training rows at the end is close to it (the weights moved during the last epoch).
    bce = float(keras.losses.binary_crossentropy(y[:204], model(x[:204])).numpy().mean())
    assert diagnoser.epoch_losses(data_only=True)[-1] == pytest.approx(bce, abs=0.02)
    found = codes(trainer)
    assert "regularization-dominates" in found and "initial-loss-too-high" not in found
    assert "shrink the layers' outputs" in finding(trainer, "regularization-dominates").message
    assert [f.to_dict() for f in diagnose_run_dir(tmp_path)] == [f.to_dict() for f in trainer.findings]


@pytest.mark.parametrize("validate", [False, True])
def test_the_steps_measure_the_activity_penalty_in_each_epoch_s_losses_exactly(validate):
    # Learning rate 0: the penalty stays what it is, so each split's epoch mean is the mean over
    # its rows (Keras divides each batch's penalty by its rows), the partial last batch included.
    x = np.random.default_rng(1).normal(size=(100, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh", activity_regularizer=keras.regularizers.L1L2(0.1, 0.5)),
                              keras.layers.Dense(1, activation="sigmoid")])

    def penalty(rows: np.ndarray) -> float:
        out = model.layers[0](rows).numpy().astype(np.float64)
        return float((0.1 * np.abs(out).sum() + 0.5 * np.square(out).sum()) / len(rows))

    trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.0), task="binary", seed=0, jit_compile=False)
    extra = {"validation_data": (x[80:], y[80:])} if validate else {}
    trainer.fit(x[:80], y[:80], epochs=2, batch_size=32, verbose=0, **extra)
    assert trainer.epoch_activity_penalties["train"] == pytest.approx(penalty(x[:80]), rel=1e-5)
    diagnoser = trainer._live_diagnosis.diagnoser
    np.testing.assert_allclose(diagnoser.train_regularization_values(), penalty(x[:80]), rtol=1e-5)
    np.testing.assert_allclose(diagnoser.regularization_values(), penalty(x[80:] if validate else x[:80]), rtol=1e-5)


def test_an_undiagnosed_run_does_not_measure_its_activity_penalties():
    # diagnose=False: the steps still summed the penalties into epoch means nothing reads.
    x = np.random.default_rng(1).normal(size=(64, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh", activity_regularizer=keras.regularizers.L2(0.5)),
                              keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, jit_compile=False, diagnose=False)
    history = trainer.fit(x, y, epochs=1, batch_size=32, verbose=0).history
    assert set(history) == {"loss"} and trainer.epoch_activity_penalties == {} and not trainer._penalty_trackers


def shrinking_penalty_run(data: list[float], val: list[float]) -> Diagnoser:
    """L2 1.0 on every layer under Adam: the penalty is 98% of the first loss and shrinks the weights."""
    s = Stream()
    d = Diagnoser(s.context)
    for epoch in range(20):
        penalty = 40 * 0.7**epoch + 0.15
        names, values = s.rows(epoch)
        d.add_steps(epoch * STEPS, names, values)
        d.end_epoch(epoch, {"loss": data[epoch] + penalty, "val_loss": val[epoch] + penalty}, regularization=penalty)
    d.finish()
    return d


def test_a_penalty_that_shrank_the_weights_to_a_loss_at_chance_is_named_though_small_at_the_end():
    # L2 1.0, 10-32-32-1 MLP, Adam, 20 epochs: the penalty was most of the loss until epoch 17 and
    # 18% at the end, the data loss 104% of chance. The findings were loss-at-chance's "it memorises
    # the training rows (e.g. random labels)" and underfitting's "raise the rate, more capacity".
    d = shrinking_penalty_run([0.75 - 0.002 * e for e in range(20)], [0.70] * 20)
    f = finding(d, "regularization-dominates")
    assert f.evidence["dominated_epochs"] >= 10 and "l2: 0.001" in f.advice
    assert "underfitting" not in codes(d)
    chance = finding(d, "loss-at-chance")
    assert chance.evidence["explained_by"] == ["regularization-dominates"] and "memorises" not in chance.message
    # The same penalty on a model that learned (data loss 40% of chance): a healthy regularised run.
    d = shrinking_penalty_run(curve(0.72, 0.28, 20), curve(0.72, 0.3, 20))
    assert "regularization-dominates" not in codes(d) and "loss-at-chance" not in codes(d)


def test_a_validation_loss_at_chance_with_a_training_loss_at_chance_is_not_memorising():
    s = Stream()
    s.train_loss = lambda e, st: 1.2 * LN2 - 0.01 * e
    s.val_loss = lambda e: LN2 - 0.002
    d = s.run()
    f = finding(d, "loss-at-chance")
    assert "memorises" not in f.message and "Neither" in f.message


def test_overfitting_handled_by_early_stopping_is_a_note():
    s = overfitting_stream()
    s.context.early_stopping = {"monitor": "val_loss", "patience": 5, "restore_best_weights": True}
    s.notes = {"early_stopping": {"stopped_epoch": 19, "best_epoch": 6, "restored_epoch": 6}}
    f = finding(s.run(), "overfitting")
    assert f.severity == "info" and f.evidence["restored_epoch"] == 6


@pytest.mark.parametrize("stopping", ["trainkit", "keras"])
def test_overfitting_that_keras_s_early_stopping_handled_is_a_note_as_with_trainkit_s(stopping):
    # With keras.callbacks.EarlyStopping, which fit runs as model.fit does, the diagnosis did not see
    # the stop: "The model overfits from epoch 3 ... Stop at the best epoch: training: {early_stopping:
    # ...}", a warning, though it had stopped the run and put back epoch 3's weights.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(280, 10)).astype("float32")
    y = ((x[:, 0] + x[:, 1] + 0.8 * rng.normal(size=280)) > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    kinds = {"trainkit": EarlyStopping, "keras": keras.callbacks.EarlyStopping}
    callback = kinds[stopping](monitor="val_loss", patience=8, restore_best_weights=True)
    trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.Adam(3e-3), task="binary", seed=0)
    history = trainer.fit(x[:80], y[:80], epochs=40, batch_size=16, validation_data=(x[80:], y[80:]), verbose=0, callbacks=[callback])
    best = int(np.argmin(history.history["val_loss"]))
    assert len(history.epoch) == best + 9  # stopped
    f = next(f for f in trainer.findings if f.code == "overfitting")
    assert f.severity == "info" and f.evidence["restored_epoch"] == best and "early stopping handled it" in f.advice


def test_overfitting_ignores_a_rise_in_the_regularization_free_loss_only_when_there_is_none():
    # The L2 penalty shrinks while the data loss is flat: the total validation loss falls, and there
    # is nothing to report; a data loss that rises under a shrinking penalty is overfitting.
    s = Stream()
    train, val = curve(0.7, 0.15, 20), curve(0.7, 0.2, 20)

    def run(val_data: Callable[[int], float]) -> Diagnoser:
        d = Diagnoser(s.context)
        for epoch in range(20):
            names, values = s.rows(epoch)
            d.add_steps(epoch * STEPS, names, values)
            penalty = 1.0 - 0.04 * epoch
            d.end_epoch(epoch, {"loss": train[epoch] + penalty, "val_loss": val_data(epoch) + penalty}, regularization=penalty)
        d.finish()
        return d

    assert run(lambda e: val[e]).findings == []
    rising = run(lambda e: val[min(e, 8)] + 0.03 * max(0, e - 8))  # total val loss still falls
    assert codes(rising) == ["overfitting"] and finding(rising, "overfitting").epoch == 8


# -- the engine's memory and the chance level ------------------------------------------------------

def test_memory_is_bounded_by_epochs_not_steps():
    d = Diagnoser(Context(task="binary", chance_loss=LN2, epochs=3))
    names = ["loss", "grad_norm/global"]
    for epoch in range(3):
        for call in range(100):
            first = epoch * 10_000 + call * 100
            d.add_steps(first, names, np.column_stack([np.full(100, 0.5), np.ones(100)]))
        d.end_epoch(epoch, {"loss": 0.5})
    assert d.first_rows.shape[0] == FIRST_STEPS and len(d.epochs) == 3 and d.steps == 30_000
    assert d.epochs[1].steps == 10_000 and d.epochs[1].mean[0] == pytest.approx(0.5)


@pytest.mark.parametrize(("task", "loss", "y", "expected"), [
    ("binary", "binary_crossentropy", np.array([[0.0], [1.0]] * 50), LN2),
    ("binary", {"name": "binary_crossentropy", "from_logits": True}, np.array([[0.0]] * 75 + [[1.0]] * 25),
     -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))),
    ("multiclass", "sparse_categorical_crossentropy", np.arange(100) % 10, math.log(10)),
    ("multiclass", "categorical_crossentropy", np.eye(4)[np.arange(100) % 4], math.log(4)),
    ("regression", "mse", np.arange(10, dtype=float).reshape(-1, 1), np.var(np.arange(10))),
    ("binary", "mse", np.array([[0.0], [1.0]] * 50), 0.25),
])
def test_chance_loss_is_the_loss_of_the_best_constant_prediction(task, loss, y, expected):
    baseline = chance_loss(task, loss, y)
    assert baseline is not None and baseline.loss == pytest.approx(expected, rel=1e-3)


def _segmentation_masks() -> np.ndarray:
    """40 8x8 class-id masks, each pixel's class drawn from a 70/20/10 prior."""
    return np.random.default_rng(0).choice(3, size=(40, 8, 8), p=[0.7, 0.2, 0.1])


@pytest.mark.parametrize(("task", "loss", "layout"), [
    ("multiclass", "sparse_categorical_crossentropy", lambda y: y),
    ("multiclass", "sparse_categorical_crossentropy", lambda y: y[..., None]),
    ("multiclass", {"name": "sparse_categorical_crossentropy", "from_logits": True}, lambda y: y),
    ("multiclass", "categorical_crossentropy", lambda y: np.eye(3)[y]),
    ("binary", "binary_crossentropy", lambda y: (y > 0)[..., None].astype(float)),
])
def test_a_segmentations_chance_level_is_the_entropy_of_the_pixels_class_prior(task, loss, layout):
    # A label per pixel ((n, H, W) or (n, H, W, 1) class ids, (n, H, W, k) one-hot masks) got no
    # chance level (the constant was shaped (n, k), or normalised over every pixel's one-hot row
    # at once), so none of the six verdicts were made; a sigmoid mask's was each pixel's own prior
    # over the images, "the mean entropy of the 64 labels' priors". A row's weight weighs its pixels.
    masks = _segmentation_masks()
    if task == "binary":
        p = np.array([1 - (masks > 0).mean(), (masks > 0).mean()])
    else:
        p = np.bincount(masks.ravel()) / masks.size
    entropy = float(-(p * np.log(p)).sum())
    y = layout(masks)
    baseline = chance_loss(task, loss, y, batch_size=8)
    assert baseline is not None and baseline.loss == pytest.approx(entropy, rel=1e-4)
    assert "labels' priors" not in baseline.detail and baseline.first_steps is not None
    w = np.where(np.arange(len(y)) % 2 == 0, 1.0, 3.0)
    weighted = chance_loss(task, loss, y, sample_weight=w)
    assert weighted is not None and weighted.loss == pytest.approx(2 * entropy, rel=0.05)


def test_the_chance_level_of_wide_targets_reads_a_strided_sample_of_their_rows(monkeypatch):
    # 2000 64x64 masks (8M pixels) took 2.9 s of each fit's start; rows are now read up to
    # MAX_VALUES label values (here 100 masks of 8x8: every third of 300).
    from trainkit.diagnosis import baseline

    masks = np.random.default_rng(1).choice(3, size=(300, 8, 8), p=[0.6, 0.3, 0.1])
    monkeypatch.setattr(baseline, "MAX_VALUES", 100 * 64)
    read = masks[::3]
    p = np.bincount(read.ravel()) / read.size
    got = chance_loss("multiclass", "sparse_categorical_crossentropy", masks)
    assert got.loss == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-5)
    # Narrow rows keep MAX_ROWS.
    assert chance_loss("binary", "binary_crossentropy", (np.arange(1000) % 4 == 0).astype(float)).loss == pytest.approx(
        -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), rel=1e-5)


@pytest.mark.parametrize(("task", "loss", "y"), [
    ("binary", "binary_crossentropy", np.array([[0.0]] * 90 + [[1.0]] * 10)),
    ("multiclass", "sparse_categorical_crossentropy", np.arange(100) % 3),
    ("multiclass", "categorical_crossentropy", np.eye(3)[np.arange(100) % 3]),
    ("regression", "mse", np.arange(100, dtype=float).reshape(-1, 1)),
    ("regression", "mae", np.arange(100, dtype=float).reshape(-1, 1)),
])
def test_weighted_chance_loss_is_the_best_weighted_constant_with_trainings_reduction(task, loss, y):
    # Sample weights with mean ~5 made a healthy run's first loss "3.7x chance", weights summing
    # to 1 made it "far below chance": the chance level was unweighted, the training loss weighted.
    from trainkit.resolve import get_loss

    w = np.random.default_rng(0).uniform(1, 9, len(y))
    baseline = chance_loss(task, loss, y, sample_weight=w)
    assert baseline is not None and "weights" in baseline.detail
    fn = get_loss(loss)
    rows = len(y)
    shape = (rows, 3) if loss == "sparse_categorical_crossentropy" else y.shape

    def weighted(constant: np.ndarray) -> float:
        pred = np.broadcast_to(constant, shape).astype(np.float32)
        return float(fn(y.astype(np.float32), pred, sample_weight=w.astype(np.float32)))

    # No constant does better, with the loss training reports (sum(w * loss) / rows).
    if task == "regression":
        candidates = [np.array([c]) for c in np.linspace(0, 99, 199)]
    elif task == "binary":
        candidates = [np.array([p]) for p in np.linspace(0.01, 0.99, 99)]
    else:
        candidates = [p / p.sum() for p in np.random.default_rng(1).uniform(0.05, 1, (300, 3))]
    assert baseline.loss <= min(weighted(c) for c in candidates) + 1e-4
    # Weights that sum to 1 scale it by 1 / (5 * rows) or so: far below the unweighted level.
    tiny = chance_loss(task, loss, y, sample_weight=w / w.sum())
    assert tiny.loss == pytest.approx(baseline.loss / w.sum(), rel=1e-3)
    # All-ones weights are no weights; unusable ones give no chance level rather than a wrong one.
    assert chance_loss(task, loss, y, sample_weight=np.ones(rows)) == chance_loss(task, loss, y)
    assert chance_loss(task, loss, y, sample_weight=np.ones(rows - 1)) is None


@pytest.mark.parametrize("loss", ["huber", {"name": "huber", "delta": 0.3}, "log_cosh", "mape", "msle"])
@pytest.mark.parametrize("weighted", [False, True])
def test_chance_loss_of_losses_the_mean_does_not_minimise_is_their_best_constant(loss, weighted):
    # On log-normal targets the mean's MAPE was 922 where the best constant's is 85: a fresh model
    # was told initial-loss-too-low (a leak), and Huber/log-cosh runs stuck at the best constant
    # ended below "chance" with no loss-at-chance. Two columns (one signed: MSLE is flat below 0).
    from trainkit.resolve import get_loss

    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 2))
    y = np.column_stack([np.exp(1.5 * z[:, 0]), z[:, 1]]).astype(np.float32)
    w = rng.uniform(0.5, 3, len(y)) if weighted else None
    baseline = chance_loss("regression", loss, y, sample_weight=w)
    fn, kw = get_loss(loss), {} if w is None else {"sample_weight": w.astype(np.float32)}
    grid = [np.quantile(y[:, j], np.linspace(0, 1, 401)) for j in range(2)]

    def column(j: int, c: float) -> float:
        pred = np.full((len(y), 1), c, np.float32)
        return float(fn(y[:, j:j + 1], pred, **kw))

    best = sum(min(column(j, c) for c in grid[j]) for j in range(2)) / 2
    mean = float(fn(y, np.broadcast_to(y.mean(0), y.shape).astype(np.float32), **kw))
    assert baseline is not None and baseline.loss <= best + 1e-4 * abs(best) and baseline.loss == pytest.approx(best, rel=2e-3)
    assert baseline.loss < mean


@pytest.mark.parametrize("weighted", [False, True])
def test_chance_loss_of_poisson_is_keras_poisson_of_the_target_mean(weighted):
    # Poisson had no chance level: count regressions got chance-level-unknown, and initial-loss /
    # loss-at-chance never judged them. Its best constant is the (weighted) target mean.
    rng = np.random.default_rng(0)
    y = rng.poisson([0.3, 1.0], size=(500, 2)).astype(np.float32)
    w = rng.uniform(0.5, 2, len(y)).astype(np.float32) if weighted else None
    kw = {} if w is None else {"sample_weight": w}
    baseline = chance_loss("regression", keras.losses.Poisson(), y, sample_weight=w)
    mean = np.average(y, axis=0, weights=w)

    def keras_poisson(c: np.ndarray) -> float:
        return float(keras.losses.Poisson()(y, np.broadcast_to(c, y.shape).astype(np.float32), **kw))

    assert baseline is not None and baseline.loss == pytest.approx(keras_poisson(mean), rel=1e-5)
    assert all(baseline.loss < keras_poisson(mean * f) for f in (0.9, 1.1))
    # Its floor, a perfect prediction's loss, is above 0: plateau reads the way from it.
    assert baseline.floor == pytest.approx(float(keras.losses.Poisson()(y, y, **kw)), rel=1e-5) and 0 < baseline.floor < baseline.loss
    # Counts mostly above e score below 0 at a perfect prediction: no ratio to 0 says anything there.
    assert chance_loss("regression", "poisson", rng.poisson(10.0, size=(500, 1)).astype(np.float32)) is None


@pytest.mark.parametrize(("task", "loss"), [("binary", "binary_crossentropy"), ("regression", "mse")])
def test_weighted_chance_loss_of_one_label_per_row_is_that_of_a_column(task, loss):
    # y of shape (rows,), as most data comes: weights 10 and 1 on ~50/50 random labels gave a
    # chance level of 6.7 (the unweighted loss times the mean weight) for 1.7, and the run that
    # stayed at 1.75 got no loss-at-chance.
    rng = np.random.default_rng(0)
    y = (rng.random(480) < 0.5).astype(float) if task == "binary" else rng.normal(1.0, 2.0, 480)
    w = np.where(y == 1, 10.0, 1.0) if task == "binary" else rng.uniform(0, 3, 480)
    flat = chance_loss(task, loss, y, sample_weight=w)
    assert flat.loss == pytest.approx(chance_loss(task, loss, y[:, None], sample_weight=w).loss, rel=1e-5)
    if task == "binary":
        p = np.average(y, weights=w)
        assert flat.loss == pytest.approx(float(np.mean(-w * (y * np.log(p) + (1 - y) * np.log(1 - p)))), rel=1e-4)


def test_class_weight_and_sample_weight_reach_the_chance_level_of_a_fit():
    # class_weight {0: 1, 1: 19} gave initial-loss-too-high 4.8x and underfitting at 103% of
    # chance on a run with validation AUC 0.986.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 4)).astype(np.float32)
    y = (x[:, 0] > 1.2).astype(np.float32).reshape(-1, 1)
    w = rng.uniform(1, 9, len(y)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", logdir=None)
    trainer.fit(x, y, epochs=1, batch_size=50, verbose=0, sample_weight=w, class_weight={0: 1.0, 1: 19.0})
    rows = w * np.where(y[:, 0] == 1, 19.0, 1.0)
    expected = chance_loss("binary", "binary_crossentropy", y, sample_weight=rows)
    context = trainer._live_diagnosis.diagnoser.context
    assert context.chance_loss == pytest.approx(expected.loss, rel=1e-4)
    assert context.chance_loss > 2 * chance_loss("binary", "binary_crossentropy", y).loss


def test_a_masked_taggers_chance_level_leaves_out_its_padding(monkeypatch):
    # Embedding(mask_zero=True) into a GRU(return_sequences=True): the loss averages over the real
    # tokens only, but the prior was taken over every position, 77% padding labelled 0: the chance
    # level read 0.75 where random tags cannot go below ln 5 = 1.61, and a tagger of random tags
    # (train 1.50, val rising to 1.74) was told nothing.
    rng = np.random.default_rng(0)
    steps, classes = 30, 5
    lengths = rng.integers(3, 12, size=320)
    real = np.arange(steps)[None] < lengths[:, None]
    x = np.where(real, rng.integers(1, 100, size=real.shape), 0)
    y = np.where(real, rng.integers(0, classes, size=real.shape), 0).astype(np.int32)
    w = rng.uniform(1, 3, len(y)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((steps,), dtype="int32"), keras.layers.Embedding(100, 8, mask_zero=True),
                              keras.layers.GRU(8, return_sequences=True), keras.layers.Dense(classes, activation="softmax")])
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="adam", task="multiclass", logdir=None)
    from trainkit.diagnosis import masked_positions

    reads = []
    read = masked_positions._output_masks
    monkeypatch.setattr(masked_positions, "_output_masks", lambda *args: reads.append(args) or read(*args))
    trainer.fit(x, y, epochs=1, batch_size=64, verbose=0, sample_weight=w, validation_split=0.25)
    # The output's mask is read once a model: the checks, the training and the validation rows
    # called the LSTM tagger eagerly six times (~0.1-0.2 s each).
    assert len(reads) == 1
    context = trainer._live_diagnosis.diagnoser.context
    weights = np.broadcast_to(w[:, None], real.shape)
    expected = chance_loss("multiclass", "sparse_categorical_crossentropy", y[:240][real[:240]], sample_weight=weights[:240][real[:240]])
    assert context.chance_loss == pytest.approx(expected.loss, rel=1e-4)
    # The weighted mean over the real tokens: ln 5 per unit of weight.
    assert context.chance_loss / weights[:240][real[:240]].mean() == pytest.approx(math.log(classes), rel=0.02)
    assert context.val_chance_loss / weights[240:][real[240:]].mean() == pytest.approx(math.log(classes), rel=0.05)


def test_a_masking_taggers_chance_level_leaves_out_its_padding():
    # A Masking layer on padded features makes the loss read the real steps only, as
    # Embedding(mask_zero=True) does, but only the Embedding's mask was read: 72% padding labelled
    # 0 put the chance level at 0.84 where random tags sat at ln 5 = 1.61, and no loss-at-chance.
    rng = np.random.default_rng(0)
    steps, classes = 40, 5
    real = np.arange(steps)[None] < np.minimum(rng.geometric(0.12, size=(200, 1)) + 2, steps)
    x = np.where(real[..., None], rng.normal(size=(*real.shape, 4)), 0.0).astype(np.float32)
    x[~real] = -1.0  # padded with the Masking layer's own value, not 0
    y = np.where(real, rng.integers(0, classes, size=real.shape), 0).astype(np.int32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((steps, 4)), keras.layers.Masking(mask_value=-1.0), keras.layers.LSTM(8, return_sequences=True),
                              keras.layers.Dense(classes, activation="softmax")])
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="adam", task="multiclass", logdir=None)
    trainer.fit(x, y, epochs=1, batch_size=64, verbose=0, validation_split=0.25)
    context = trainer._live_diagnosis.diagnoser.context
    expected = chance_loss("multiclass", "sparse_categorical_crossentropy", y[:150][real[:150]])
    assert context.chance_loss == pytest.approx(expected.loss, rel=1e-4)
    assert context.chance_loss == pytest.approx(math.log(classes), rel=0.02)
    assert context.val_chance_loss == pytest.approx(math.log(classes), rel=0.05)


def test_a_mask_the_model_consumes_leaves_every_row_in_the_chance_level():
    # Pooled over its real tokens, a masked classifier has one label a row: nothing to leave out.
    rng = np.random.default_rng(0)
    x = np.where(np.arange(10)[None] < rng.integers(2, 10, size=(64, 1)), rng.integers(1, 50, size=(64, 10)), 0)
    y = (rng.random(64) < 0.25).astype(np.float32)
    model = keras.Sequential([keras.Input((10,), dtype="int32"), keras.layers.Embedding(50, 4, mask_zero=True),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", logdir=None)
    context = build_context(trainer, y, inputs=x)
    assert context.chance_loss == pytest.approx(chance_loss("binary", "binary_crossentropy", y).loss, rel=1e-6)


def test_a_pooled_masked_classifier_on_padded_batches_keeps_its_chance_level():
    # padded_batch's batches of several lengths do not join into one array of inputs: the mask,
    # which pooling consumes, must not need them.
    rng = np.random.default_rng(0)
    rows = [rng.integers(1, 50, size=rng.integers(3, 12)) for _ in range(64)]
    y = (rng.random(64) < 0.25).astype(np.float32)
    data = tf.data.Dataset.from_generator(lambda: zip(rows, y, strict=True), output_signature=(
        tf.TensorSpec((None,), tf.int32), tf.TensorSpec((), tf.float32))).padded_batch(16)
    model = keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(50, 4, mask_zero=True),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", logdir=None)
    trainer.fit(data, epochs=1, verbose=0)
    context = trainer._live_diagnosis.diagnoser.context
    assert context.chance_loss == pytest.approx(chance_loss("binary", "binary_crossentropy", y).loss, rel=1e-4)


def test_the_chance_level_names_a_rare_class_share_with_its_digits():
    # 0.4% positives read "entropy of the label prior, p(1)=0.00", as if the labels held no positive.
    y = np.zeros(2000)
    y[::250] = 1
    assert chance_loss("binary", "binary_crossentropy", y).detail.endswith("p(1)=0.0040")
    assert chance_loss("binary", "binary_crossentropy", 1 - y).detail.endswith("p(1)=0.9960")
    assert chance_loss("binary", "binary_crossentropy", np.arange(10) % 2).detail.endswith("p(1)=0.50")


@pytest.mark.parametrize("start,dataset", [("prior-bias", False), ("class-weight", False), ("prior-bias", True)])
def test_first_batches_without_the_rare_class_are_not_read_as_below_chance(start, dataset):
    # 4% positives, none in the first three batches of 32: a model at the prior (its output bias
    # at log(p / (1 - p)), as class-imbalance advises) read 0.043 against a chance level of 0.17,
    # and a fresh one with class_weight {0: 1, 1: 25} read ln 2 against 1.39: both were told
    # initial-loss-too-low, a leak, before they had learned anything.
    x = np.random.default_rng(0).standard_normal((640, 4)).astype(np.float32)
    y = np.zeros(640, np.float32)
    y[100::20] = 1
    p = float(y.mean())
    bias = math.log(p / (1 - p)) if start == "prior-bias" else 0.0
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid", kernel_initializer="zeros",
                                                                    bias_initializer=keras.initializers.Constant(bias))])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", statistics=False)
    class_weight = {0: 1.0, 1: 25.0} if start == "class-weight" else None
    if dataset:  # its batch size read from its first batch
        trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=1, verbose=0, class_weight=class_weight)
    else:
        trainer.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0, class_weight=class_weight)
    assert "initial-loss-too-low" not in {f.code for f in trainer.findings}
    context = trainer._live_diagnosis.diagnoser.context
    assert context.first_steps_loss < 0.5 * context.chance_loss  # a lean batch's loss, far below the mean's
    # Balanced labels keep the first steps' level near chance: a loss far below it is still judged.
    balanced = chance_loss("binary", "binary_crossentropy", np.arange(640) % 2, batch_size=32)
    assert balanced.first_steps > 0.9 * balanced.loss


@pytest.mark.parametrize("loss", ["huber", "mae"])
def test_regression_targets_with_a_few_far_rows_are_no_leak_when_the_first_batches_hold_none(loss):
    # 1% of the targets at 1000 among values ~1: most batches of 32 hold none, and a fresh model
    # read 0.57-1.25 over its first 3 steps against a chance level of 11-13 that those rows make,
    # told initial-loss-too-low ("a label leaking") in 7 of 12 runs.
    x = np.random.default_rng(0).standard_normal((640, 4)).astype(np.float32)
    y = (x[:, 0] - 0.5 * x[:, 1] ** 2).astype(np.float32)
    y[100::100] = 1000.0
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    trainer = Trainer(model, loss=loss, optimizer="adam", task="regression", statistics=False)
    trainer.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    assert "initial-loss-too-low" not in {f.code for f in trainer.findings}
    context = trainer._live_diagnosis.diagnoser.context
    assert context.first_steps_loss < 0.1 * context.chance_loss
    # Targets without such rows keep the first steps' level near chance: a loss far below it is still judged.
    clean = chance_loss("regression", loss, y[y < 1000], batch_size=32)
    assert clean.first_steps > 0.6 * clean.loss


def class_weighted_random_labels_stream() -> Stream:
    """Balanced class weights on 90/10 random labels, as measured: the weighted training loss
    stays near its chance level (1.31); the unweighted validation loss (0.60 -> 0.71) is far below
    that, yet never gets near its own chance level (0.37, the validation rows' 12% positives)."""
    s = Stream(epochs=15)
    s.context = dataclasses.replace(s.context, chance_loss=1.307, val_chance_loss=0.372,
                                    val_chance_detail="entropy of the label prior, p(1)=0.12")
    train = curve(1.39, 1.24, 15)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: 0.603 + 0.104 * (1 - math.exp(-e / 3))
    return s


def test_the_validation_loss_is_judged_against_its_own_chance_level():
    d = class_weighted_random_labels_stream().run()
    assert codes(d) == ["loss-at-chance"]
    assert finding(d, "loss-at-chance").evidence["val_chance_loss"] == 0.372
    # Compared with the training rows' weighted chance level, the validation loss read as
    # something learned: "overfits from epoch 1" and no loss-at-chance.
    s = class_weighted_random_labels_stream()
    s.context = dataclasses.replace(s.context, val_chance_loss=None)
    assert "loss-at-chance" not in codes(s.run())


@pytest.mark.parametrize(("chance", "val_chance", "best_val"), [(0.688, 0.611, 0.658), (2.241, 2.013, 2.359), (0.673, 0.637, 0.72)])
def test_random_labels_with_another_validation_mix_are_at_chance_not_overfitting(chance, val_chance, best_val):
    # Random labels whose validation rows hold another label mix (recipes zero_linear_logits at
    # seed 1 and low_batch_max at seed 2; and 15 validation rows of a 60-row set): the memorising
    # model's best validation loss lands 108-117% of the validation rows' own chance level, and
    # below what the training prior scores there (0.74, 2.56, 0.78). Judged against the latter,
    # they read as "overfits from epoch 1": the validation chance level is the rows' own.
    val = [best_val * 1.2, best_val * 1.05, best_val] + [best_val * (1 + 0.06 * e) for e in range(1, 18)]
    s = Stream(chance=chance)
    s.context = dataclasses.replace(s.context, val_chance_loss=val_chance)
    s.train_loss = lambda e, st: chance * 0.6**e
    s.val_loss = lambda e: val[e]
    d = s.run()
    assert "loss-at-chance" in codes(d) and "overfitting" not in codes(d)


def test_a_regression_with_shifted_validation_targets_still_overfits_by_its_spread():
    # Validation targets 3 std off the training mean: the training mean scores 9.84 there, their
    # own spread is 1.47. The rise asked of an overfitting validation loss (3% of the scale) was
    # taken from 9.84, and a loss rising from 0.10 to 0.34 over 12 epochs fell under it.
    val = [0.7**e for e in range(7)] + [0.10 + 0.02 * e for e in range(13)]
    s = Stream(task="regression", chance=1.0)
    s.context = dataclasses.replace(s.context, loss="MeanSquaredError()", val_chance_loss=1.47)
    s.train_loss = lambda e, st: 0.7**e
    s.val_loss = lambda e: val[e]
    assert "overfitting" in codes(s.run())
    s.context = dataclasses.replace(s.context, val_chance_loss=9.84)
    assert "overfitting" not in codes(s.run())


def test_the_validation_chance_level_is_named_where_the_validation_loss_is_judged():
    s = Stream()
    s.context = dataclasses.replace(s.context, val_chance_loss=0.5, val_chance_detail="entropy of the label prior, p(1)=0.20")
    train = curve(0.7, 0.05, 20)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: 0.5 + 0.01 * e
    f = finding(s.run(), "loss-at-chance")
    assert "validation chance level 0.5 (entropy of the label prior, p(1)=0.20)" in f.message
    assert f.evidence["val_chance_loss"] == 0.5 and f.evidence["chance_loss"] == pytest.approx(LN2)


def test_the_validation_chance_level_of_a_fit_is_that_of_its_validation_rows_without_class_weight():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 4)).astype(np.float32)
    y = (rng.random(200) < 0.2).astype(np.float32).reshape(-1, 1)
    w_val = rng.uniform(1, 3, 40).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", logdir=None)
    trainer.fit(x[:160], y[:160], epochs=1, batch_size=50, verbose=0, class_weight={0: 1.0, 1: 4.0},
                validation_data=(x[160:], y[160:], w_val))
    context = trainer._live_diagnosis.diagnoser.context
    own = chance_loss("binary", "binary_crossentropy", y[160:], sample_weight=w_val)
    assert context.val_chance_loss == pytest.approx(own.loss, rel=1e-4)
    class_weighted = chance_loss("binary", "binary_crossentropy", y[160:], sample_weight=w_val * np.where(y[160:, 0] == 1, 4.0, 1.0))
    assert context.val_chance_loss < 0.9 * class_weighted.loss  # class_weight weighs the training rows only
    # Without validation rows in memory there is none of its own.
    trainer.fit(x, y, epochs=1, batch_size=50, verbose=0)
    assert trainer._live_diagnosis.diagnoser.context.val_chance_loss is None


@pytest.mark.parametrize(("task", "loss", "y"), [
    ("binary", {"name": "binary_crossentropy", "label_smoothing": 0.1}, np.array([[1.0]] * 1 + [[0.0]] * 99)),
    ("binary", {"name": "binary_crossentropy", "label_smoothing": 0.1, "from_logits": True}, np.array([1.0] * 10 + [0.0] * 90)),
    ("multiclass", {"name": "categorical_crossentropy", "label_smoothing": 0.1}, np.eye(4)[[0] * 97 + [1, 2, 3]]),
])
def test_chance_loss_with_label_smoothing_is_the_entropy_of_the_smoothed_prior(task, loss, y):
    # The raw prior is not the best constant for smoothed labels: on 99:1 labels it read 0.28 for
    # 0.22, and random labels that settled at 0.24 were not reported at chance.
    from trainkit.resolve import get_loss

    baseline = chance_loss(task, loss, y)
    flat = y.reshape(len(y), -1)
    k = 2 if task == "binary" else flat.shape[1]
    smoothed = flat.mean(axis=0) * 0.9 + 0.1 / k
    if task == "binary":
        best = -(smoothed * np.log(smoothed) + (1 - smoothed) * np.log(1 - smoothed))
    else:
        best = -(smoothed * np.log(smoothed)).sum()
    assert baseline is not None and baseline.loss == pytest.approx(float(best.sum()), rel=1e-4)
    # No constant does better.
    fn, logits = get_loss(loss), loss.get("from_logits", False)
    for p in ([np.array([q]) for q in np.linspace(0.01, 0.99, 99)] if task == "binary" else
              [q / q.sum() for q in np.random.default_rng(0).uniform(0.01, 1, (200, k))]):
        pred = np.broadcast_to(np.log(p / (1 - p)) if logits else p, flat.shape).astype(np.float32)
        assert baseline.loss <= float(fn(flat.astype(np.float32), pred)) + 1e-5


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("balancing", [False, True])
def test_chance_loss_of_binary_focal_crossentropy_is_its_best_constant(from_logits, balancing):
    # The focal term makes the prior no minimiser: 90:10 labels read 0.187 where p = 0.31 gets
    # 0.088, so random labels settling near 0.09 were never reported at chance.
    from trainkit.resolve import get_loss

    y = np.array([[1.0]] * 10 + [[0.0]] * 90)
    loss = {"name": "binary_focal_crossentropy", "gamma": 2.0, "apply_class_balancing": balancing,
            "from_logits": from_logits}
    baseline = chance_loss("binary", loss, y)
    fn = get_loss(loss)
    grid = np.linspace(0.001, 0.999, 999)
    values = [float(fn(y.astype(np.float32), np.full(y.shape, np.log(p / (1 - p)) if from_logits else p, np.float32)))
              for p in grid]
    assert baseline is not None and baseline.loss == pytest.approx(min(values), rel=1e-4)
    # It is below what the label prior scores.
    prior = float(fn(y.astype(np.float32), np.full(y.shape, math.log(0.1 / 0.9) if from_logits else 0.1, np.float32)))
    assert baseline.loss < 0.75 * prior


def test_chance_detail_of_binary_focal_crossentropy_on_several_labels_gives_their_range():
    # Each label column has its own best constant: their mean, "p(1)=0.46", read as one label's.
    y = (np.random.default_rng(1).random((1000, 3)) < [0.02, 0.1, 0.3]).astype("float32")
    loss = {"name": "binary_focal_crossentropy", "apply_class_balancing": True, "alpha": 0.9}
    detail = chance_loss("multilabel", loss, y).detail
    assert re.search(r"one a label, p\(1\) from 0\.\d+ to 0\.\d+$", detail), detail
    assert "p(1)=" in chance_loss("binary", loss, y[:, :1]).detail


@pytest.mark.parametrize("config", [{}, {"gamma": 0.5, "from_logits": True}, {"gamma": 3.0, "label_smoothing": 0.1}, {"gamma": 0.0}])
def test_chance_loss_of_categorical_focal_crossentropy_is_its_best_constant(config):
    # Scored at the label prior, 94/2/2/2 labels read 0.056 where the best constant gets 0.036.
    from trainkit.resolve import get_loss

    y = np.eye(4)[[0] * 94 + [1] * 2 + [2] * 2 + [3] * 2]
    loss = {"name": "categorical_focal_crossentropy", **config}
    baseline = chance_loss("multiclass", loss, y)
    fn = get_loss(loss)

    def scored(p: np.ndarray) -> float:
        pred = np.broadcast_to(np.log(p) if config.get("from_logits") else p, y.shape).astype(np.float32)
        return float(fn(y.astype(np.float32), pred))

    candidates = np.random.default_rng(0).dirichlet(np.full(4, 0.3), 3000)
    assert baseline is not None and baseline.loss <= min(scored(p) for p in candidates) + 1e-6
    prior = scored(np.array([0.94, 0.02, 0.02, 0.02]))
    if config.get("gamma") == 0.0:  # plain cross-entropy: the prior is the minimiser
        assert baseline.loss == pytest.approx(prior, rel=1e-5)
    else:
        assert baseline.loss < prior


def test_chance_loss_of_kl_divergence_is_the_entropy_of_the_label_prior():
    # KL(y || p) is cross-entropy less the labels' own entropy: the label prior minimises it, and
    # one-hot labels score the prior's entropy. It gave no chance level, so random labels trained
    # with kl_divergence were never reported at chance.
    y = np.eye(3)[[0] * 70 + [1] * 20 + [2] * 10]
    prior = np.array([0.7, 0.2, 0.1])
    baseline = chance_loss("multiclass", "kl_divergence", y)
    assert baseline is not None and baseline.loss == pytest.approx(float(-(prior * np.log(prior)).sum()), rel=1e-4)
    soft = np.tile([[0.5, 0.3, 0.2]], (10, 1))  # rows that are one distribution: predicting it is exact
    assert chance_loss("multiclass", "kl_divergence", soft).loss == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("loss", [keras.losses.binary_crossentropy, keras.losses.binary_focal_crossentropy])
def test_chance_loss_of_a_loss_function_is_that_of_its_name(loss):
    # A plain function gave None: called as is, it returned one loss per row.
    y = np.array([[1.0]] * 10 + [[0.0]] * 90)
    w = np.linspace(0.5, 2, 100)
    for weights in (None, w):
        baseline = chance_loss("binary", loss, y, sample_weight=weights)
        assert baseline is not None and baseline == chance_loss("binary", loss.__name__, y, sample_weight=weights)


@pytest.mark.parametrize("ignore_class", [0, -1])
def test_chance_loss_of_sparse_crossentropy_leaves_the_ignored_class_out_of_the_prior(ignore_class):
    # 70 ignored rows over classes 1-3 (10 each) read 2.33: the ignored class took 70% of the
    # prior from the classes the loss reads, whose best constant is 1/3 each (ln 3 = 1.10).
    ids = np.repeat([0, 1, 2, 3], [70, 10, 10, 10])
    if ignore_class == -1:
        ids = ids - 1  # -1 ignored, classes 0-2 read
    loss = {"name": "sparse_categorical_crossentropy", "ignore_class": ignore_class}
    baseline = chance_loss("multiclass", loss, ids)
    assert baseline is not None and baseline.loss == pytest.approx(math.log(3), rel=1e-4)


def test_chance_loss_is_unknown_for_losses_without_a_constant_baseline():
    assert chance_loss("binary", "hinge", np.array([[0.0], [1.0]])) is None
    assert chance_loss("binary", "binary_crossentropy", np.array(["a", "b"])) is None


def test_chance_loss_of_cross_entropy_on_soft_targets_is_unknown():
    # An autoencoder's pixels in [0.3, 0.7] with binary cross-entropy: the loss cannot go below the
    # pixels' own entropy (0.649 here, against 0.693 for the column means), so a model that
    # reconstructed them well ended at 94% of that "chance level" and was told loss-at-chance.
    pixels = 0.5 + 0.2 * np.tanh(np.random.default_rng(0).normal(size=(100, 6)))
    assert chance_loss("multilabel", "binary_crossentropy", pixels) is None
    assert chance_loss("regression", "binary_crossentropy", pixels) is None
    assert chance_loss("multiclass", "categorical_crossentropy", np.tile([[0.7, 0.2, 0.1]], (10, 1))) is None
    # 0/1 labels keep theirs, as does KL divergence, whose floor is 0 on soft targets too.
    assert chance_loss("multilabel", "binary_crossentropy", (pixels > 0.5).astype(float)) is not None
    assert chance_loss("multiclass", "kl_divergence", np.tile([[0.7, 0.2, 0.1]], (10, 1))) is not None


def test_cross_entropy_on_soft_targets_is_told_how_far_it_got_between_their_mean_and_their_entropy():
    # An autoencoder's pixels with binary cross-entropy got the generic "a loss without one, ... targets
    # it cannot be computed on" note and no numbers: its loss ending near 0.59 read as poor, where the
    # mean prediction scores 0.69 and the pixels' own entropy, the floor, is 0.58.
    pixels = 0.5 + 0.4 * np.tanh(np.random.default_rng(0).normal(size=(200, 6)))
    levels = soft_target_levels("binary_crossentropy", pixels)
    mean = pixels.mean(0)
    assert levels.constant == pytest.approx(float(-(mean * np.log(mean) + (1 - mean) * np.log(1 - mean)).mean()), rel=1e-4)
    assert levels.floor == pytest.approx(float(-(pixels * np.log(pixels) + (1 - pixels) * np.log(1 - pixels)).mean()), rel=1e-4)
    assert soft_target_levels(keras.losses.BinaryCrossentropy(from_logits=True), pixels).floor == pytest.approx(levels.floor, rel=1e-4)
    teacher = np.random.default_rng(1).dirichlet(np.ones(3), 50)
    assert soft_target_levels("categorical_crossentropy", teacher).floor == pytest.approx(
        float(-(teacher * np.log(teacher)).sum(1).mean()), rel=1e-3)
    # 0/1 labels have a chance level; other losses (MSE, KL divergence: floor 0) need no such levels.
    for loss, y in (("binary_crossentropy", (pixels > 0.5).astype(float)), ("mse", pixels), ("kl_divergence", teacher)):
        assert soft_target_levels(loss, y) is None
    s = Stream(task="multilabel", chance=None)
    s.context = dataclasses.replace(s.context, soft_target_loss=levels.constant, loss_floor=levels.floor)
    s.train_loss = lambda e, st: levels.floor + 0.1 * (levels.constant - levels.floor)
    f = finding(s.run(), "chance-level-unknown")
    assert "covers 90% of the way" in f.message and f.evidence["share_of_the_way"] == pytest.approx(0.9, abs=1e-3)
    assert f"their own entropy, {format_number(levels.floor)}" in f.message and "loss-at-chance" in f.message
    s.train_loss = lambda e, st: levels.constant + 0.1
    assert "is still above the mean prediction's loss" in finding(s.run(), "chance-level-unknown").message
    s.train_loss = lambda e, st: float("nan") if e >= 3 else levels.constant - 0.01  # beside nan-loss
    message = finding(s.run(), "chance-level-unknown").message
    assert "is not finite" in message and "above the mean prediction's loss" not in message
    # A fit works them out from its targets.
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="multilabel", statistics=False)
    trainer.fit(pixels, pixels, epochs=1, verbose=0)
    context = trainer._live_diagnosis.diagnoser.context
    assert (context.soft_target_loss, context.loss_floor) == pytest.approx((levels.constant, levels.floor), rel=1e-4)
    assert "the mean prediction's loss" in {f.code: f for f in trainer.findings}["chance-level-unknown"].message


@pytest.mark.parametrize("reduction", ["sum", "mean", "mean_with_sample_weight"])
def test_chance_loss_of_a_loss_summed_over_its_batch_is_unknown(reduction):
    # reduction="sum" was summed over all 320 training rows (221 for ln 2 a row) while each
    # training loss is one batch's sum (~22 at batch 32): a healthy run got initial-loss-too-low.
    y = np.array([[0.0], [1.0]] * 160)
    baseline = chance_loss("binary", {"name": "binary_crossentropy", "reduction": reduction}, y)
    if reduction == "sum":
        assert baseline is None
    else:
        assert baseline is not None and baseline.loss == pytest.approx(LN2, rel=1e-4)


# -- the report --------------------------------------------------------------------------------------

def test_report_groups_by_severity_with_advice():
    findings = [
        Finding("dead-relu", "warning", "most units dead", "use he_normal", {"dead_fraction": 0.8}, epoch=3, layer="dense"),
        Finding("nan-loss", "error", "the loss went NaN", "lower the learning rate", step=40),
        Finding("overfitting", "info", "handled", "nothing to do"),
    ]
    text = render_text(findings)
    assert text.index("ERROR [nan-loss]") < text.index("WARNING [dead-relu]") < text.index("INFO [overfitting]")
    assert "fix: use he_normal" in text and "1 error, 1 warning" in text
    markdown = render_markdown(findings)
    assert "### Errors (1)" in markdown and "**`dead-relu`** (layer `dense`, epoch 4)" in markdown
    assert render_text([]) == "diagnosis: no findings"
    # An interrupted run's TensorBoard report said "nothing ... looks wrong" without its end verdicts.
    unfinished = render_markdown([], unfinished="interrupted")
    assert unfinished.startswith("**Unfinished**: the run was interrupted") and "looks wrong" not in unfinished
    assert render_markdown(findings, unfinished="failed").startswith("**Unfinished**: the run was ended by an error")


def test_the_markdown_report_nests_each_fix_under_its_finding_as_tensorboard_renders_it():
    # Indented two spaces, TensorBoard's text dashboard showed each fix as a finding of its own.
    from tensorboard.plugin_util import markdown_to_safe_html

    findings = [Finding("dead-relu", "warning", "most units dead", "use he_normal"), Finding("underfitting", "warning", "still falling", "train longer")]
    html = markdown_to_safe_html(render_markdown(findings))
    assert html.count("<ul>") == 3  # the findings' list, and one list under each holding its fix
    assert "most units dead<ul>\n<li><em>fix</em>: use he_normal</li>\n</ul>" in html


# -- live: the callback in a real Trainer ----------------------------------------------------------

def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])


class NanAfter(Trainer):
    """Makes the loss NaN from global step ``bad`` on (a deterministic broken step)."""

    bad = 25

    def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        return tf.where(self.global_step >= self.bad, tf.constant(math.nan), loss) if training else loss


class WeightsAtEpochEnd(Callback):
    def __init__(self) -> None:
        self.weights: dict[int, list[np.ndarray]] = {}

    def on_epoch_end(self, epoch, logs):
        self.weights[epoch] = [np.array(w) for w in self.trainer.model.get_weights()]


def regression_data(rows: int = 100) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 4)).astype(np.float32)
    return x, (x @ np.array([1.0, -2.0, 0.5, 0.0], dtype=np.float32)).reshape(-1, 1)


def nan_findings(trainer: Trainer) -> list[Finding]:
    return [f for f in trainer.findings if f.code == "nan-loss"]


class MseOfItsOwn(Trainer):
    """A binary task's compute_loss of its own: the MSE of the probabilities, not the trainer's
    cross-entropy (whose chance level is ln 2 where this one starts near 0.25)."""

    def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
        return tf.reduce_mean(tf.square(tf.reshape(tf.cast(y, y_pred.dtype), [-1, 1]) - y_pred))


def test_a_compute_loss_of_its_own_is_not_judged_against_the_trainer_losss_chance_level():
    # Its first losses (0.33 at most) were compared with the cross-entropy's ln 2 and read
    # "initial-loss-too-low ... label leaking into the inputs".
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
    trainer = MseOfItsOwn(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=2, batch_size=32, verbose=0)
    found = {f.code: f for f in trainer.findings}
    assert "initial-loss-too-low" not in found
    assert "MseOfItsOwn.compute_loss" in found["chance-level-unknown"].message


class KlSampling(keras.layers.Layer):
    """A VAE's sampling layer that adds its KL term (times ``beta``) with add_loss in its call."""

    def __init__(self, beta: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.beta = beta
        self.seed = keras.random.SeedGenerator(0)

    def call(self, inputs):
        mean, log_var = inputs
        kl = -0.5 * keras.ops.mean(keras.ops.sum(1 + log_var - keras.ops.square(mean) - keras.ops.exp(log_var), axis=-1))
        self.add_loss(self.beta * kl)
        return mean + keras.ops.exp(0.5 * log_var) * keras.random.normal(keras.ops.shape(mean), seed=self.seed)


def test_a_loss_that_holds_an_add_loss_term_is_not_judged_against_a_chance_level(tmp_path):
    # A beta-VAE (KL x 20): its first loss, 19x the MSE's chance level, was read as
    # "initial-loss-too-high" (an initialiser blamed), its collapsed posterior as "loss-at-chance:
    # fix initial-loss-too-high first": the KL term was read as loss on the data.
    from trainkit.diagnosis.readback import diagnose_run_dir

    rng = np.random.default_rng(0)
    x = np.tanh(rng.standard_normal((300, 2)) @ rng.standard_normal((2, 6))).astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    z = KlSampling(beta=20.0, name="sampling")([keras.layers.Dense(2)(hidden), keras.layers.Dense(2)(hidden)])
    model = keras.Model(inputs, keras.layers.Dense(6)(keras.layers.Dense(16, activation="relu")(z)))
    trainer = Trainer(model, loss="mse", optimizer=keras.optimizers.Adam(3e-3), task="regression", seed=0, jit_compile=False, logdir=tmp_path)
    trainer.fit(x, x, epochs=6, batch_size=32, verbose=0)
    found = {f.code: f for f in trainer.findings}
    assert not {"initial-loss-too-high", "loss-at-chance", "worse-than-linear"} & set(found)
    assert "layer sampling adds with add_loss" in found["chance-level-unknown"].message
    assert [f.to_dict() for f in diagnose_run_dir(tmp_path)] == [f.to_dict() for f in trainer.findings]


def test_an_activity_regularizer_keeps_the_chance_level():
    # Keras adds an activity penalty with add_loss too: it is measured apart, not a term of unknown level.
    x, y = regression_data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", activity_regularizer="l2"), keras.layers.Dense(1)])
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert trainer._call_loss_layers == ()
    assert "chance-level-unknown" not in {f.code for f in trainer.findings}


def test_layers_adding_a_loss_are_read_without_keras_private_layer_apis():
    # _flatten_layers and _get_own_losses are Keras internals, read in the step of every model
    # with a loss term: an object without them failed with AttributeError instead of training.
    from types import SimpleNamespace

    from trainkit.activity_penalty import call_loss_layers

    kl = SimpleNamespace(name="kl", _get_own_losses=lambda: [1.0])
    bare = SimpleNamespace(name="bare")  # no _get_own_losses: nothing known
    assert call_loss_layers(SimpleNamespace(name="model", layers=[kl, bare])) == ("kl",)


def test_a_lambda_that_passes_no_gradient_is_named_rather_than_a_tanh_stack():
    # Lambda(tf.round) between two Dense layers: the first one's gradient is exactly 0, and the
    # finding told to use relu + he_normal instead of tanh stacks and to add batchnorm.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Lambda(lambda t: tf.round(t), name="rounding"), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=4, batch_size=32, verbose=0)
    found = {f.code: f for f in trainer.findings}["vanishing-gradients"]
    assert "layer 'rounding' between them passes no gradient back" in found.message
    assert "straight-through" in found.advice and "tanh" not in found.advice
    assert found.layer == "rounding"


def test_weights_frozen_by_a_clip_on_the_outputs_names_the_clip():
    # Lambda(clip_by_value(t, 0, 1)) on outputs that all lay below 0: every gradient exactly 0, and
    # weights-frozen sent the user to a train_step override and the learning rate.
    x, y = regression_data(200)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(-5.0)),
                              keras.layers.Lambda(lambda t: tf.clip_by_value(t, 0.0, 1.0), name="clip01")])
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=3, batch_size=32, verbose=0)
    found = {f.code: f for f in trainer.findings}["weights-frozen"]
    assert "layer 'clip01'" in found.message and "train_step" not in found.advice and found.layer == "clip01"


def test_weights_frozen_by_a_dead_relu_output_is_not_put_on_a_lambda_before_it():
    x, y = regression_data(200)
    y = np.abs(y)  # in the relu's range
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: 2.0 * t, name="scale"), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="relu", bias_initializer=keras.initializers.Constant(-50.0))])
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=3, batch_size=32, verbose=0)
    found = {f.code: f for f in trainer.findings}["weights-frozen"]
    assert "'scale'" not in found.message


def test_penalties_a_compute_loss_of_its_own_leaves_out_are_not_taken_out_of_its_loss():
    # L2 penalties of ~0.5 taken out of a cross-entropy that never held them: the loss on the data
    # read -0.38 after an epoch ("initial-loss-too-low" at -0.12 before chance levels were dropped).
    class WithoutPenalties(Trainer):
        def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
            return self.heads[0].loss(tf.reshape(y, [-1, 1]), y_pred, sample_weight=sample_weight)

    class WithPenalties(Trainer):  # through the default one: they are in its loss
        def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
            return super().compute_loss(x, y, y_pred, sample_weight, training) + 0.0

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    found = {}
    for cls in (WithoutPenalties, WithPenalties):
        keras.utils.set_random_seed(0)
        l2 = keras.regularizers.l2(0.05)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(32, activation="relu", kernel_regularizer=l2),
                                  keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=l2)])
        trainer = cls(model, loss="binary_crossentropy", optimizer=keras.optimizers.Adam(0.01), task="binary", seed=0, jit_compile=False)
        trainer.fit(x, y, epochs=2, batch_size=32, verbose=0)
        found[cls] = trainer._live_diagnosis.diagnoser
    without, with_ = found[WithoutPenalties], found[WithPenalties]
    assert without.context.regularization == 0.0 and min(without.epoch_losses(data_only=True)) > 0
    assert with_.context.regularization > 0.1


# Stopping on a NaN is the trainer's job (Trainer(on_nan=...), issue 6); the diagnosis callback
# stops by itself only when asked to.
def test_nan_loss_names_the_step_and_the_trainer_stops_there_with_good_weights():
    x, y = regression_data()
    trainer = NanAfter(tiny_model(), loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False)
    history = trainer.fit(x, y, epochs=10, batch_size=10, verbose=0)
    assert len(history.epoch) == 2  # the epoch of step 25 is abandoned at that step
    (f,) = nan_findings(trainer)  # one finding: the diagnosis's, with its evidence
    assert f.step == 25 and f.epoch == 2 and f.severity == "error" and f.evidence["first_nonfinite_step"] == 25
    # The NaN comes from the loss function (every gradient and activation finite): no layer is blamed.
    assert f.layer is None and "loss computation itself" in f.message
    assert "update was skipped" in f.message
    assert all(np.isfinite(w).all() for w in trainer.model.get_weights())


def test_nan_loss_of_a_custom_loss_on_finite_outputs_blames_the_loss_not_the_output_layer():
    # log(0) of a sigmoid saturated to exactly 0 or 1 (the fourth batch's inputs are 1e4 times the
    # others): the loss is inf, so the output layer's gradients are NaN, and the finding named them
    # as the origin, with "lower the learning rate" as its first advice.
    def log_loss(y_true, y_pred):
        return -tf.reduce_mean(y_true * tf.math.log(y_pred) + (1.0 - y_true) * tf.math.log(1.0 - y_pred))

    x, y = regression_data(64)
    x[48:] *= 1e4
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss=log_loss, optimizer="adam", task="binary", seed=0, jit_compile=False)
    trainer.fit(x, (y > 0).astype("float32"), epochs=1, batch_size=16, shuffle=False, check_data=False, verbose=0)
    (f,) = nan_findings(trainer)
    assert f.step == 3 and f.evidence["first_nonfinite_step"] == 3 and f.layer is None
    assert "outputs were finite" in f.message and "gradients of layer" not in f.message
    assert f.advice.startswith("Guard custom losses against log(0)") and "targets and sample weights" in f.advice


def test_nan_loss_of_a_keras_loss_that_overflowed_puts_the_learning_rate_first_not_custom_losses():
    # SGD at 10 on targets ~5e4: the MSE grew to 3e22 and overflowed. Keras's own losses clip
    # probabilities, yet the first advice was "Guard custom losses against log(0)".
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 4)).astype("float32")
    y = (5e4 + 1e4 * x[:, 0]).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    trainer = Trainer(model, loss="mse", optimizer=keras.optimizers.SGD(10.0), task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=2, batch_size=32, check_data=False, verbose=0)
    (f,) = nan_findings(trainer)
    assert trainer._live_diagnosis.diagnoser.context.keras_loss
    assert "Keras's own loss" in f.message and "overflowed" in f.message
    assert f.advice.startswith("The loss grew until it overflowed: lower the learning rate") and "custom" not in f.advice


def test_nan_loss_of_a_sparse_cross_entropy_under_xla_names_class_ids_past_the_units():
    # XLA scores a class id past a sparse cross-entropy's units as NaN, where TensorFlow's kernel
    # raises: a dataset's label 7 for 5 units, past the batches the checks read, was told only
    # "check the targets and sample weights of that step's batch for NaN/inf".
    rng = np.random.default_rng(0)
    x = rng.normal(size=(640, 4)).astype("float32")
    y = rng.integers(0, 5, size=640)
    y[600] = 7
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="softmax")])
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="adam", task="multiclass", seed=0, jit_compile=True)
    trainer.fit(data, epochs=1, verbose=0)
    (f,) = nan_findings(trainer)
    assert f.step == 18
    assert "class id outside the output's units" in f.message and "class ids outside 0..units-1" in f.advice


def test_nan_loss_of_a_keras_loss_that_overflowed_from_a_first_loss_of_zero():
    # A linear model of zero weights on a first batch of zero targets starts at a loss of exactly 0;
    # SGD at 10 then overflowed the MSE, and the ratio to the first step's loss stopped the fit
    # with ZeroDivisionError.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 4)).astype("float32")
    y = (5e4 + 1e4 * x[:, 0]).astype("float32")
    y[:32] = 0.0
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    trainer = Trainer(model, loss="mse", optimizer=keras.optimizers.SGD(10.0), task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=10, batch_size=32, check_data=False, verbose=0, shuffle=False)
    (f,) = nan_findings(trainer)
    assert "overflowed" in f.message and "the first step's" not in f.message and "lower the learning rate" in f.advice


def test_advice_names_the_optimizer_a_loss_scale_optimizer_wraps():
    # It named {name: lossscaleoptimizer, ...} (no recipe takes it) and judged Adam's rate as plain
    # SGD's: lowered to 0.00589 instead of at most Adam's 1e-3.
    x, y = regression_data()
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.5))
    trainer = NanAfter(tiny_model(), loss="mse", optimizer=optimizer, task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=4, batch_size=10, verbose=0)
    (f,) = nan_findings(trainer)
    assert "learning_rate=0.001 in the optimizer" in f.advice and "lossscale" not in f.advice


def test_weights_broken_by_the_update_itself_are_named_as_weights_not_gradients():
    # A NaN learning rate: step 0's gradients are finite, its update turns every weight NaN, and
    # step 1's loss is NaN. The skipped update cannot help: the weights before it are NaN too.
    x, y = regression_data()
    trainer = Trainer(tiny_model(), loss="mse", optimizer=keras.optimizers.SGD(float("nan")), task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=2, batch_size=10, verbose=0)
    (f,) = nan_findings(trainer)
    assert f.step == 1 and f.evidence["first_nonfinite_step"] == 0
    assert "the weights of layer" in f.message and "from finite gradients" in f.message and "gradients of layer" not in f.message
    assert "already hold NaN/inf values" in f.message and "since step 0" in f.message


def test_readback_of_a_run_stopped_by_nan_equals_the_live_findings(tmp_path):
    from trainkit.diagnosis.readback import diagnose_run_dir

    x, y = regression_data()
    trainer = NanAfter(tiny_model(), loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False, logdir=tmp_path)
    trainer.fit(x, y, epochs=10, batch_size=10, verbose=0)
    live = [f.to_dict() for f in trainer.findings]
    assert "nan-loss" in [f["code"] for f in live]
    # The abandoned epoch has no epoch values in TensorBoard: its steps are replayed all the same.
    assert [f.to_dict() for f in diagnose_run_dir(tmp_path)] == live


def test_readback_of_a_run_resumed_with_a_rebuilt_model_equals_the_live_findings(tmp_path):
    # Rebuilt in the same process, the model's layers are dense_2 and dense_3 where they were dense
    # and dense_1 (Keras numbers them per process): each fit's statistics have tags the other's steps lack. Read as NaN values, those
    # gaps made a nan-loss error the live run did not have.
    from trainkit.diagnosis.readback import diagnose_run_dir, read_run

    x, y = regression_data(200)
    for epochs, resume in ((2, False), (4, True)):
        trainer = Trainer(tiny_model(), loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False, logdir=tmp_path)
        trainer.fit(x, y, epochs=epochs, batch_size=20, verbose=0, resume=resume)
    kernels = [n for n in read_run(tmp_path).names if n.startswith("grad_norm/") and n.endswith("/kernel")]
    assert len(kernels) == 4  # two layers, named apart by each fit
    live = [f.to_dict() for f in trainer.findings]
    assert "nan-loss" not in [f["code"] for f in live]
    assert [f.to_dict() for f in diagnose_run_dir(tmp_path)] == live


def test_readback_judges_each_fit_of_a_resumed_run_in_that_fit_s_context(tmp_path):
    # The resumed fit's rebuilt model has other layer names. Replayed in its context from the first
    # step on, the first fit's sigmoid output layer was no output layer but a hidden one, and its
    # confident outputs a saturated-activations warning the live run never reported.
    from trainkit.diagnosis.readback import diagnose_run_dir, read_run

    rng = np.random.default_rng(0)
    x = rng.standard_normal((240, 6)).astype("float32")
    y = (x[:, :3].sum(axis=1) > 0).astype("float32")
    for epochs, resume in ((6, False), (12, True)):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
        trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.Adam(1.0), task="binary", seed=0, jit_compile=False,
                          logdir=tmp_path, steps_per_execution=2)
        trainer.fit(x, y, epochs=epochs, batch_size=20, validation_split=0.25, verbose=0, resume=resume)
    live = [f.to_dict() for f in trainer.findings]
    assert "saturated-activations" not in [f["code"] for f in live]
    assert [f.to_dict() for f in diagnose_run_dir(tmp_path)] == live
    events = read_run(tmp_path)
    assert [step for step, _ in events.fit_contexts] == [0, 54] and events.fit_contexts[0][1].layers != events.context.layers


def test_readback_of_a_trainers_second_fit_in_its_logdir_equals_that_fit_s_findings(tmp_path):
    # A trainer's own second fit (no resume) goes on with the step count in the same event files
    # and its findings replace the first fit's. The readback replayed both fits as one run: the
    # first fit's losses (targets around 50) were "the first steps", an initial-loss-too-high that
    # the second fit, starting trained, never had; and the first fit's epochs 2 and 3 stayed in.
    from trainkit.diagnosis.readback import diagnose_run_dir

    x, y = regression_data(200)
    trainer = Trainer(tiny_model(), loss="mse", optimizer=keras.optimizers.Adam(0.05), task="regression", seed=0, jit_compile=False,
                      logdir=tmp_path)
    trainer.fit(x, y + 50, epochs=4, batch_size=20, verbose=0)
    assert "initial-loss-too-high" in [f.code for f in trainer.findings]
    trainer.fit(x, y + 50, epochs=2, batch_size=20, verbose=0)
    live = [f.to_dict() for f in trainer.findings]
    assert "initial-loss-too-high" not in [f["code"] for f in live]
    assert [f.to_dict() for f in diagnose_run_dir(tmp_path)] == live


def test_the_callbacks_own_recovery_restores_the_last_good_epoch():
    from trainkit.diagnosis import DiagnosisCallback

    x, y = regression_data()
    trainer = NanAfter(tiny_model(), loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False,
                       diagnose=DiagnosisCallback(stop_on_nan=True), on_nan="warn")
    spy = WeightsAtEpochEnd()
    history = trainer.fit(x, y, epochs=10, batch_size=10, callbacks=[spy], verbose=0)
    assert len(history.epoch) == 3  # steps 0-9, 10-19, 20-29: stops after the epoch of step 25
    (f,) = nan_findings(trainer)
    assert f.step == 25 and "weights from the end of epoch 2 were restored" in f.message
    for restored, good in zip(trainer.model.get_weights(), spy.weights[1], strict=True):
        np.testing.assert_array_equal(restored, good)


def test_nan_loss_with_on_nan_warn_records_the_finding_and_trains_on():
    x, y = regression_data()
    trainer = NanAfter(tiny_model(), loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False, on_nan="warn")
    history = trainer.fit(x, y, epochs=4, batch_size=10, verbose=0)
    assert len(history.epoch) == 4 and len(nan_findings(trainer)) == 1


def test_a_fit_whose_last_epochs_are_nan_prints_no_numpy_warning():
    # With on_nan: warn, the end-of-run diagnosis took np.nanmin of the last epochs' losses, all
    # NaN: numpy's "All-NaN slice encountered" RuntimeWarning landed in the user's output.
    import warnings

    x, y = regression_data(200)
    x[:, 3] *= 1000  # unscaled, with a learning rate far too high: NaN within the first epoch
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.5), task="binary", seed=0, jit_compile=False, on_nan="warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = trainer.fit(x, (y > 0).astype("float32"), epochs=3, batch_size=10, verbose=0)
    assert np.isnan(history.history["loss"][-1]) and len(nan_findings(trainer)) == 1
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


def test_nan_weights_behind_a_finite_loss_are_nan_loss():
    # sqrt of negative pre-activations: NaN gradients made the next layer's weights NaN at step 0,
    # a ReLU turned its NaN outputs into 0 and the loss stayed finite (ln 2): the run got only
    # dead-relu, with "fix the initialisation" as the advice.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    h = keras.layers.Dense(8, name="pre")(inputs)
    h = keras.layers.Lambda(tf.sqrt, name="sqrt")(h)
    h = keras.layers.Dense(8, activation="relu", name="after")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(h))
    x, y = regression_data(64)
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, jit_compile=False)
    history = trainer.fit(x, (y > 0).astype("float32"), epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    (f,) = nan_findings(trainer)
    assert f.severity == "error" and f.step == 0 and f.layer == "after" and "after/kernel" in f.evidence["nonfinite_weights"]
    assert "sqrt or log" in f.advice
    # A healthy model's finite weights are no such finding.
    healthy = Trainer(tiny_model(), loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False)
    healthy.fit(*regression_data(64), epochs=2, batch_size=16, verbose=0)
    assert not nan_findings(healthy)


def test_finite_weights_too_large_to_square_in_float32_are_not_called_nan():
    # An output kernel of ~5e19: its norm (a float32 sum of squares) read inf at every step while
    # the loss stayed finite (~1e34), and nan-loss said the weights "were NaN/inf", told a story of
    # a ReLU turning NaN into 0 and ended "The weights of this run are NaN: train again".
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid", name="out")])
    model.set_weights([w * 1e20 if i == 2 else w for i, w in enumerate(model.get_weights())])
    x, y = regression_data(64)
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, jit_compile=False)
    history = trainer.fit(x, (y > 0).astype("float32"), epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.isfinite(w).all() for w in model.get_weights()) and np.abs(model.get_weights()[2]).max() > 1e19
    (f,) = nan_findings(trainer)
    assert f.evidence["weight_norm_overflow"] is True and f.evidence["nonfinite_weights"] == ["out/kernel"]
    assert "Their norm read inf, not NaN, at step 0" in f.message and "overflow" in f.message
    assert "NaN turns it into 0" not in f.message and "are NaN" not in f.advice


def test_nan_weights_from_a_nan_batch_of_inputs_past_the_checked_ones_name_the_inputs():
    # A NaN in batch 18 of a tf.data pipeline (the data checks read the first 8): the first
    # layer's kernel went NaN (its bias's gradient stayed finite), the loss stayed finite, and the
    # run was told to look for "a sqrt or log of a negative value" and got dead-relu advising a
    # lower learning rate for units its NaN weights had zeroed.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(640, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    x[600, 1] = np.nan
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", name="first"), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, jit_compile=False)
    trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=3, verbose=0)
    (f,) = nan_findings(trainer)
    assert f.step == 18 and f.epoch == 0 and f.layer == "first" and f.evidence["inputs_nonfinite"]
    assert "that step's batch of inputs held NaN/inf" in f.message and f.advice.startswith("Check the inputs of that step's batch")
    assert "dead-relu" not in [g.code for g in trainer.findings]
    # The filter it advises runs on a dict of named inputs beside integer ids too (the one it
    # advised, tf.math.is_finite(x), raised a TypeError on both), and drops the NaN row alone.
    # Elements with sample weights too: lambda x, y raised a TypeError on (x, y, w).
    advised = eval(re.search(r"ds\.filter\((lambda x, \*targets: .*\]\))\)", f.advice).group(1), {"tf": tf})
    for features in (x, {"num": x, "id": np.arange(len(x))[:, None]}):
        assert len(list(tf.data.Dataset.from_tensor_slices((features, y)).filter(advised))) == len(x) - 1
        assert len(list(tf.data.Dataset.from_tensor_slices((features, y, np.ones(len(x)))).filter(advised))) == len(x) - 1


def test_warnings_print_once_when_verbose_and_never_when_quiet(capsys):
    rng = np.random.default_rng(0)
    x = rng.random((200, 4)).astype(np.float32) * 100.0
    y = rng.integers(0, 2, (200, 1)).astype(np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=3, batch_size=20, verbose=1)
    err = capsys.readouterr().err
    assert err.count("[initial-loss-too-high]") == 1
    assert "initial-loss-too-high" in [f.code for f in trainer.findings]
    quiet = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, jit_compile=False)
    quiet.fit(x, y, epochs=1, batch_size=20, verbose=0)
    assert "[initial-loss-too-high]" not in capsys.readouterr().err


def test_diagnose_false_adds_no_diagnosis():
    rng = np.random.default_rng(0)
    x = rng.random((200, 4)).astype(np.float32) * 100.0
    y = rng.integers(0, 2, (200, 1)).astype(np.float32)
    keras.utils.set_random_seed(0)  # the weights it starts from decide the first losses: not the test order's
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
    on = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, jit_compile=False)
    on.fit(x, y, epochs=1, batch_size=20, verbose=0)
    off = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, jit_compile=False, diagnose=False)
    off.fit(x, y, epochs=1, batch_size=20, verbose=0)
    assert "initial-loss-too-high" in [f.code for f in on.findings]
    assert not [f for f in off.findings if f.code in DIAGNOSIS_CODES]


def test_loss_direction_changes_count_the_same_however_the_steps_are_split():
    from trainkit.diagnosis.engine import _EpochAccumulator

    rng = np.random.default_rng(0)
    losses = np.round(rng.normal(size=200), 0)  # rounding makes equal neighbours (no direction)
    losses[rng.integers(0, 200, 20)] = np.nan
    finite = losses[np.isfinite(losses)]
    steps = np.sign(np.diff(finite))
    steps = steps[steps != 0]
    expected = int(np.count_nonzero(steps[1:] != steps[:-1]))
    for pieces in (1, 3, 17, 200):
        accumulator = _EpochAccumulator(0, 0)
        for chunk in np.array_split(losses, pieces):
            accumulator._count_sign_changes(chunk)
        assert accumulator.sign_changes == expected


def test_row_medians_ignore_non_finite_entries():
    from trainkit.diagnosis.update_ratios import row_medians_of_finite

    matrix = np.array([[1.0, np.nan, 3.0, 10.0], [np.inf, 2.0, np.nan, np.nan], [np.nan, np.nan, np.nan, np.nan], [4.0, 1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(row_medians_of_finite(matrix), [3.0, 2.0, np.nan, 2.5])


def _unscaled_run(background: bool, rules=None, callback=None) -> Trainer:
    from trainkit.diagnosis.callback import DiagnosisCallback

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(300, 5)) * 100).astype("float32")  # unscaled: the loss starts high
    y = (rng.random((300, 1)) > 0.5).astype("float32")  # random labels: nothing to learn
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu", name="hidden"), keras.layers.Dense(1, activation="sigmoid", name="head")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.01), task="binary", seed=0,
                      diagnose=callback or DiagnosisCallback(background=background, rules=rules), steps_per_execution=3)
    trainer.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return trainer


def _numbers(evidence: dict) -> dict:
    return {k: v for k, v in evidence.items() if isinstance(v, int | float)}


def test_diagnosis_on_its_worker_thread_finds_exactly_what_it_finds_between_calls():
    between_calls = _unscaled_run(background=False)
    in_background = _unscaled_run(background=True)
    where = [(f.code, f.severity, f.step, f.epoch, f.layer) for f in between_calls.findings]
    # a rule after each call (initial-loss-too-high) and a rule at the end (underfitting: the
    # loss still falls fast, from 19x chance to 1.4x)
    assert {"initial-loss-too-high", "underfitting"} <= {code for code, *_ in where}
    assert [(f.code, f.severity, f.step, f.epoch, f.layer) for f in in_background.findings] == where
    for got, want in zip(in_background.findings, between_calls.findings, strict=True):
        # two trainings of one seed may differ in the last bits on a loaded multi-core CPU
        assert _numbers(got.evidence) == pytest.approx(_numbers(want.evidence), rel=1e-4), got.code
    assert not [t for t in threading.enumerate() if t.name == "trainkit-diagnosis"]  # the worker ended with fit


def test_a_worker_that_lags_behind_training_still_files_every_step_under_its_epoch():
    from trainkit.diagnosis.callback import DiagnosisCallback

    class Lagging(DiagnosisCallback):
        """Diagnoses each call only after the training thread has moved on (a loaded machine)."""

        def _add_steps(self, first_step, outputs):
            time.sleep(0.05)
            super()._add_steps(first_step, outputs)

    plain, lagging = DiagnosisCallback(background=False), Lagging(background=True)
    between_calls = _unscaled_run(background=False, callback=plain)
    in_background = _unscaled_run(background=True, callback=lagging)
    epochs = [(r.epoch, r.first_step, r.steps) for r in plain.diagnoser.epochs]
    assert epochs == [(e, 10 * e, 10) for e in range(8)]  # 300 rows, batch 32: 10 steps an epoch
    assert [(r.epoch, r.first_step, r.steps) for r in lagging.diagnoser.epochs] == epochs
    where = [(f.code, f.severity, f.step, f.epoch, f.layer) for f in between_calls.findings]
    assert [(f.code, f.severity, f.step, f.epoch, f.layer) for f in in_background.findings] == where


def test_a_failing_rule_on_the_worker_thread_fails_fit_on_the_training_thread():
    from trainkit.diagnosis.rule_types import Rule

    def broken(view):
        raise ZeroDivisionError("rule bug")

    with pytest.raises(ZeroDivisionError, match="rule bug"):
        _unscaled_run(background=True, rules=[*RULES, Rule("broken", "warning", "call", broken, "always fails")])


def test_the_runs_recorded_checks_leave_out_the_diagnosis_own_findings(tmp_path):
    # A resumed trainer holds the diagnosis findings of its checkpoint; `trainkit diagnose`
    # replays those from the steps, so recording them as checks listed them twice.
    from trainkit.diagnosis.readback import read_run

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = x[:, :1]
    keras.utils.set_random_seed(0)
    trainer = Trainer(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]), loss="mse", optimizer="sgd", task="regression", seed=0, logdir=tmp_path)
    restored = Finding(code="overfitting", severity="warning", message="m", advice="a", epoch=3)
    check = Finding(code="float16-without-loss-scaling", severity="warning", message="m", advice="a")
    checked = trainer._check_sources

    def as_if_resumed(*args, **kwargs):  # what a resumed trainer holds once its data is checked
        checked(*args, **kwargs)
        trainer.findings.extend([check, restored])

    trainer._check_sources = as_if_resumed
    trainer.fit(x, y, epochs=1, verbose=0)
    recorded = [f.code for f in read_run(tmp_path).checks]
    assert "float16-without-loss-scaling" in recorded and "overfitting" not in recorded


def test_evidence_keeps_numbers_by_layer_as_numbers_through_json():
    finding = Finding("lr-too-high", "warning", "m", "a", evidence={"update_ratio_by_layer": {"dense": np.float32(0.5), "dense_1": 0.25}})
    again = Finding.from_dict(json.loads(json.dumps(finding.to_dict())))
    assert again.evidence["update_ratio_by_layer"] == {"dense": 0.5, "dense_1": 0.25}


# -- resumed runs -----------------------------------------------------------------------------------

class TerminateAt(Callback):
    """Sends SIGTERM to this process after the compiled call that reaches ``step`` (fit stops there)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_execution_end(self, first_step, outputs):
        if first_step < self.step <= first_step + outputs.steps:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)


def lr_high_fit(logdir, epochs: int = 8, **kwargs) -> Trainer:
    """A run with learning rate 1.0: its findings depend on the first steps and on every epoch."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(800, 10)).astype("float32")
    y = (x[:, :3].sum(axis=1) > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(64, activation="relu", name="hidden"),
                              keras.layers.Dense(1, activation="sigmoid", name="out")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.Adam(1.0), task="binary", seed=0,
                      logdir=logdir, steps_per_execution=5, jit_compile=False, checkpoint_every=1)
    trainer.fit(x, y, epochs=epochs, batch_size=32, validation_split=0.2, verbose=0, **kwargs)
    return trainer


@pytest.mark.parametrize("stop_step", [60, 47], ids=["at-an-epoch-end", "mid-epoch"])
def test_a_resumed_run_is_diagnosed_like_the_uninterrupted_run(tmp_path, stop_step):
    # The resumed diagnosis judged from where it resumed: the loss there was "244x the first loss",
    # the gradients "450x their level in the first steps", the ReLUs dead "since epoch 5".
    from trainkit.diagnosis.readback import diagnose_run_dir
    from trainkit.errors import TrainingInterrupted

    whole = [f.to_dict() for f in lr_high_fit(tmp_path / "whole").findings]
    found = {f["code"] for f in whole}
    # Findings judged from the first steps and from every epoch (which of the two loss-curve ones
    # depends on the CPU: learning rate 1.0 makes the run chaotic).
    assert "lr-too-high" in found and found & {"diverging-loss", "oscillating-loss"}
    with pytest.raises(TrainingInterrupted):
        lr_high_fit(tmp_path / "cut", callbacks=[TerminateAt(stop_step)])  # 20 steps an epoch
    resumed = lr_high_fit(tmp_path / "cut", resume=True)
    assert [f.to_dict() for f in resumed.findings] == whole
    assert [f.to_dict() for f in diagnose_run_dir(tmp_path / "cut")] == whole


@pytest.mark.parametrize("kernel", [None, 0.05], ids=["activity", "activity-and-weights"])
def test_a_mid_epoch_resume_keeps_the_activity_penalty_of_the_steps_before_it(tmp_path, kernel):
    # The penalty's running mean was not checkpointed: the resumed epoch's covered its last steps
    # only (0.757 where the whole run's was 1.106), and regularization-dominates was lost. With a
    # weight penalty too, the epoch's training penalty took the weight penalty where the run
    # resumed for the one at the epoch's start (0.13377 against 0.13345).
    from trainkit.errors import TrainingInterrupted

    def fit(logdir, **kwargs) -> Trainer:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(200, 8)).astype("float32")
        y = (x[:, :2].sum(1, keepdims=True) > 0).astype("float32")
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", activity_regularizer=keras.regularizers.L2(1.0),
                                                                          kernel_regularizer=kernel and keras.regularizers.L2(kernel), name="hidden"),
                                  keras.layers.Dense(1, activation="sigmoid", name="out")])
        trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.Adam(0.01), task="binary", seed=0, jit_compile=False,
                          logdir=logdir, steps_per_execution=2, checkpoint_every=1)
        trainer.fit(x, y, epochs=2, batch_size=32, validation_split=0.2, verbose=0, **kwargs)
        return trainer

    whole = fit(tmp_path / "whole")._live_diagnosis.diagnoser.train_regularization_values()
    with pytest.raises(TrainingInterrupted):
        fit(tmp_path / "cut", callbacks=[TerminateAt(8)])  # 5 steps an epoch: 3 steps into the second
    resumed = fit(tmp_path / "cut", resume=True)._live_diagnosis.diagnoser.train_regularization_values()
    np.testing.assert_allclose(resumed, whole, rtol=1e-6)


def test_a_loss_falling_back_from_a_jump_is_not_undertrained():
    # Adam at 1.0: 1.54, 2.10, 5.13, 4.40 (635% of chance) at the end, beside lr-too-high and
    # oscillating-loss, was also "still falling fast ... the model is undertrained".
    s = Stream(epochs=8)
    losses = [7.23, 4.01, 2.95, 3.23, 1.54, 2.10, 5.13, 4.40]
    s.train_loss = lambda e, st: losses[e]
    s.val_loss = lambda e: losses[e] * 1.1
    assert "underfitting" not in codes(s.run())
    losses[4:] = [2.9, 2.8, 2.6, 2.4]  # still falling to a new best: undertrained
    assert "underfitting" in codes(s.run())


@pytest.mark.parametrize("reason", ["interrupted", "failed"])
def test_a_run_that_did_not_end_gets_no_end_of_run_verdicts(reason):
    # Ctrl-C at epoch 5 of 12 got underfitting: "Train for more epochs".
    s = Stream()
    s.train_loss = lambda e, st: 0.69 - 0.012 * e
    s.val_loss = lambda e: 0.70 - 0.012 * e
    s.notes = {"stop_reason": reason}
    d = s.run()
    assert "underfitting" not in codes(d) and not d.finished
    s.notes = {"stop_reason": None}
    assert "underfitting" in codes(s.run())


def test_an_interrupted_fit_is_judged_at_the_end_of_its_resumed_run(tmp_path):
    from trainkit.diagnosis.readback import diagnose_run_dir
    from trainkit.errors import TrainingInterrupted

    end_codes = {rule.code for rule in RULES if rule.when == "end"}
    x, y = regression_data(400)

    def trainer() -> Trainer:  # SGD(1e-3): the loss has barely left chance when stopped
        return Trainer(tiny_model(), loss="mse", optimizer=keras.optimizers.SGD(1e-3), task="regression", seed=0,
                       jit_compile=False, logdir=tmp_path)

    cut = trainer()
    with pytest.raises(TrainingInterrupted):
        cut.fit(x, y, epochs=12, batch_size=40, verbose=0, callbacks=[TerminateAt(45)])  # in epoch 5
    assert not end_codes & {f.code for f in cut.findings}
    assert not end_codes & {f.code for f in diagnose_run_dir(tmp_path)}
    resumed = trainer()
    resumed.fit(x, y, epochs=12, batch_size=40, verbose=0, resume=True)
    assert end_codes & {f.code for f in resumed.findings}  # judged at its end


def test_resuming_a_finished_run_keeps_its_end_of_run_findings(tmp_path):
    # The last checkpoint was written before on_train_end made the end-of-run findings, and a
    # resume of the finished run rewrote report.json with "findings": [].
    from trainkit.checkpoint import CHECKPOINT_SUBDIR, TrainingCheckpoint

    end_codes = {rule.code for rule in RULES if rule.when == "end"}
    x, y = regression_data(400)

    def fit(**kwargs) -> Trainer:  # SGD(1e-3): the loss barely leaves chance (loss-at-chance)
        trainer = Trainer(tiny_model(), loss="mse", optimizer=keras.optimizers.SGD(1e-3), task="regression", seed=0,
                          jit_compile=False, logdir=tmp_path)
        trainer.fit(x, y, epochs=4, batch_size=40, verbose=0, **kwargs)
        return trainer

    finished = [f.to_dict() for f in fit().findings]
    assert end_codes & {f["code"] for f in finished}
    model = tiny_model()
    latest = TrainingCheckpoint(tmp_path / CHECKPOINT_SUBDIR, model_variables=model.variables, optimizer_variables=[],
                                metric_variables=[], global_step=tf.Variable(0, dtype=tf.int64)).latest()
    assert latest is not None and latest[1]["findings"] == finished
    events = {path: path.read_bytes() for path in tmp_path.rglob("events.out.tfevents.*")}
    assert [f.to_dict() for f in fit(resume=True).findings] == finished
    # The finished run's event files stay as they were: the resume used to cut its end-of-run
    # notes and write them again (lost if that process was killed in between).
    assert {path: path.read_bytes() for path in tmp_path.rglob("events.out.tfevents.*")} == events
    from trainkit.diagnosis.readback import diagnose_run_dir

    assert [f.to_dict() for f in diagnose_run_dir(tmp_path)] == finished


def test_the_per_epoch_series_grow_in_place_and_match_the_records():
    # The tables were stacked again each epoch (quadratic in a long run); now buffers grow in
    # place, through capacity doublings and a statistic that appears mid-run.
    d = Diagnoser(Context(task="binary", loss="binary_crossentropy"))
    step = 0
    for epoch in range(40):
        names = ["loss", "grad_norm/global"] + (["grad_norm/dense/kernel"] if epoch >= 20 else [])
        values = np.full((3, len(names)), float(epoch)) + np.arange(3)[:, None]
        d.begin_epoch(epoch, step)
        d.add_steps(step, names, values)
        step += 3
        d.end_epoch(epoch, {"loss": epoch * 0.5, "val_loss": epoch * 0.25}, regularization=epoch * 0.125)
        assert d.epoch_values("grad_norm/global").tolist() == [e + 1.0 for e in range(epoch + 1)]  # mean of e, e+1, e+2
    late = d.epoch_values("grad_norm/dense/kernel", "last")
    assert np.isnan(late[:20]).all() and late[20:].tolist() == [e + 2.0 for e in range(20, 40)]
    assert d.log_values("val_loss").tolist() == [e * 0.25 for e in range(40)]
    assert d.regularization_values().tolist() == [e * 0.125 for e in range(40)]
    d.log_values("val_loss")[:] = -1  # a copy: the cache stays as it was
    assert d.log_values("val_loss")[3] == 0.75


@pytest.mark.parametrize("losses", [[0.0, 0.2, 0.4, 0.6], [-0.9, -0.8, -0.6, -0.3]], ids=["from-zero", "negative"])
def test_a_rise_from_a_best_of_zero_or_below_is_no_divergence_by_ratio(losses):
    # "2x the best" divided by a best of 0 (ZeroDivisionError in the diagnosis) and passed for
    # every rise of a negative loss (a cosine-similarity loss improving from -0.9 to -0.3, say).
    s = Stream(epochs=len(losses), task="regression", chance=None)
    s.train_loss = lambda e, st: losses[e]
    s.val_loss = None
    assert "diverging-loss" not in codes(s.run())


def test_a_negative_loss_jittering_where_it_settled_is_no_oscillation():
    # A cosine-similarity loss settled near -0.98 with a jitter of 0.002 was measured against a
    # scale of 1e-12 (the larger of a negative mean and a negative first loss): "oscillating".
    losses = [*curve(-0.2, -0.97, 10), *(-0.98 + 0.001 * (-1) ** e for e in range(10))]
    s = Stream(epochs=len(losses), task="regression", chance=None)
    s.train_loss = lambda e, st: losses[e]
    s.val_loss = None
    assert "oscillating-loss" not in codes(s.run())
    swings = [-0.5 + 0.3 * (-1) ** e for e in range(20)]  # -0.2, -0.8, -0.2...: moves of 0.6 on a scale of 0.5
    s.train_loss = lambda e, st: swings[e]
    assert finding(s.run(), "oscillating-loss").evidence["relative_amplitude"] == pytest.approx(1.2, rel=0.05)


def test_no_overfitting_by_ratio_for_a_validation_loss_below_zero_without_a_chance_level():
    # Random targets under a cosine-similarity loss: the validation loss rose from -0.0215 to
    # -0.0074, noise about chance, and "10% above the minimum" of a negative minimum was a bar
    # below it: "the model overfits". A loss that stays positive is still judged.
    for shift, expected in ((-0.3, False), (0.3, True)):
        s = Stream(task="regression", chance=None)
        s.train_loss = lambda e, st, shift=shift: shift + 0.1 - 0.02 * e
        s.val_loss = lambda e, shift=shift: shift + abs(e - 8) * 0.02  # lowest at epoch 9, up 0.24 by the end
        assert ("overfitting" in codes(s.run())) is expected


def test_checkpoints_journal_each_epoch_record_once(tmp_path, monkeypatch):
    # Every checkpoint's record held every epoch's diagnosis record: a checkpoint after 1500
    # epochs of a small MLP took 358 ms and 5 MB. Each record now goes to the journal once.
    import trainkit.diagnosis.callback as diagnosis_callback
    from trainkit.diagnosis.engine import epoch_record_state

    encoded: list[int] = []
    monkeypatch.setattr(diagnosis_callback, "epoch_record_state", lambda r: encoded.append(r.epoch) or epoch_record_state(r))
    lr_high_fit(tmp_path, epochs=4)  # a checkpoint every epoch
    assert encoded == [0, 1, 2, 3]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "checkpoints").glob("ckpt-*.json"))]
    assert records and all("epochs" not in r["diagnosis"]["diagnoser"] for r in records)
    assert sorted(r["journal"]["count"] for r in records) == [2, 3, 4]  # the three checkpoints kept
    lines = (tmp_path / "checkpoints" / "epochs.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2, 3]


def test_a_run_killed_before_its_last_checkpoint_record_is_diagnosed_like_the_whole_run(tmp_path):
    # The killed process journaled epoch 8, whose checkpoint record it never wrote: the resume
    # goes on from epoch 7's checkpoint and must not read epoch 8's journal line as its own.
    from trainkit.diagnosis.readback import diagnose_run_dir

    whole = [f.to_dict() for f in lr_high_fit(tmp_path / "whole").findings]
    lr_high_fit(tmp_path / "cut")
    newest = max((tmp_path / "cut" / "checkpoints").glob("ckpt-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    newest.unlink()
    assert len((tmp_path / "cut" / "checkpoints" / "epochs.jsonl").read_text().splitlines()) == 8
    resumed = lr_high_fit(tmp_path / "cut", resume=True)
    assert [f.to_dict() for f in resumed.findings] == whole
    assert [f.to_dict() for f in diagnose_run_dir(tmp_path / "cut")] == whole
    assert len((tmp_path / "cut" / "checkpoints" / "epochs.jsonl").read_text().splitlines()) == 8


def test_a_damaged_journal_resumes_with_a_warning_and_a_fresh_diagnosis(tmp_path, capsys):
    from trainkit.errors import TrainingInterrupted

    with pytest.raises(TrainingInterrupted):
        lr_high_fit(tmp_path, callbacks=[TerminateAt(60)])
    journal = tmp_path / "checkpoints" / "epochs.jsonl"
    journal.write_text(journal.read_text()[:-5])
    capsys.readouterr()
    resumed = lr_high_fit(tmp_path, resume=True)
    assert "warning: [checkpoint-corrupt] " in capsys.readouterr().err
    assert resumed.history.epoch == list(range(8))  # the weights and progress were intact
    # The fresh diagnosis's epochs, from the one it resumed in (epoch 2's steps had all run).
    assert [json.loads(line)["epoch"] for line in journal.read_text().splitlines()] == list(range(2, 8))


def test_a_finished_run_trained_further_without_its_journal_drops_its_old_end_of_run_verdicts(tmp_path):
    # The fresh diagnosis (the journal lost) kept the checkpoint's end-of-run findings: the report of
    # a run trained from 3 to 5 epochs said "underfitting" at epoch 3, with that epoch's loss.
    from trainkit.findings import Finding

    lr_high_fit(tmp_path, epochs=3)
    (record,) = sorted((tmp_path / "checkpoints").glob("ckpt-*.json"), key=lambda p: int(p.stem.split("-")[1]))[-1:]
    progress = json.loads(record.read_text())
    stale = Finding("underfitting", "warning", "The training loss was still falling fast when training ended.", "Train longer.", epoch=2)
    record.write_text(json.dumps({**progress, "findings": [*progress["findings"], stale.to_dict()]}))
    (tmp_path / "checkpoints" / "epochs.jsonl").unlink()
    resumed = lr_high_fit(tmp_path, epochs=5, resume=True)
    assert resumed.history.epoch == list(range(5))
    assert not [f for f in resumed.findings if f.code == "underfitting" and f.epoch == 2]


def test_a_second_fit_of_a_trainer_journals_its_own_epochs(tmp_path):
    # The journal's mark carried over from the first fit: the second fit's checkpoints pointed at
    # the first fit's records, and its resume was diagnosed with them.
    from trainkit.checkpoint import CHECKPOINT_SUBDIR

    x, y = regression_data(200)
    trainer = Trainer(tiny_model(), loss="mse", optimizer=keras.optimizers.SGD(1e-2), task="regression", seed=0,
                      jit_compile=False, logdir=tmp_path)  # a checkpoint at the end of each fit: 3 records each
    trainer.fit(x, y, epochs=3, batch_size=40, verbose=0)
    second = trainer.fit(x, y, epochs=3, batch_size=40, verbose=0).history["loss"]
    lines = (tmp_path / CHECKPOINT_SUBDIR / "epochs.jsonl").read_text().splitlines()
    np.testing.assert_allclose([json.loads(line)["logs"]["loss"] for line in lines], second, rtol=1e-6)


def test_a_regression_fit_knows_the_scale_of_its_targets():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 3)).astype(np.float32)
    y = np.stack([x[:, 0], 150 + 70 * x[:, 1]], axis=1).astype(np.float32)  # the second column is unscaled
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", logdir=None)
    trainer.fit(x, y, epochs=1, batch_size=40, verbose=0)
    context = trainer._live_diagnosis.diagnoser.context
    assert context.target_mean == pytest.approx(float(y[:, 1].mean()), rel=1e-5)
    assert context.target_std == pytest.approx(float(y[:, 1].std()), rel=1e-4)
    assert "unscaled-targets" in context.check_codes and "unscaled-inputs" not in context.check_codes
    back = Context.from_dict(json.loads(json.dumps(context.to_dict())))  # `trainkit diagnose` reads it back
    assert (back.target_std, back.check_codes) == (context.target_std, context.check_codes)
    trainer.fit(x, y, epochs=1, batch_size=40, verbose=0, check_data=False)  # the same data, checked already
    assert trainer._live_diagnosis.diagnoser.context.check_codes == context.check_codes
    unchecked = Trainer(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), loss="mse", optimizer="adam", task="regression", logdir=None)
    unchecked.fit(x, y, epochs=1, batch_size=40, verbose=0, check_data=False)
    assert unchecked._live_diagnosis.diagnoser.context.check_codes is None  # unknown, not "all scaled"
    # A classifier's labels have no scale to speak of.
    classifier = Trainer(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")]),
                         loss="binary_crossentropy", optimizer="adam", task="binary", logdir=None)
    classifier.fit(x, (x[:, :1] > 0).astype(np.float32), epochs=1, batch_size=40, verbose=0)
    assert classifier._live_diagnosis.diagnoser.context.target_std is None


def test_inputs_the_checks_found_scaled_are_not_told_to_be_standardised():
    # dead-relu told a recipe with standardize_inputs: true to standardise the inputs.
    def dead_relu_advice(check_codes):
        s = Stream()
        s.context.check_codes = check_codes
        s.values["activation/dense/dead_fraction"] = lambda e, st: 0.8 if e >= 3 else 0.05
        return finding(s.run(), "dead-relu").advice

    assert "standardise the inputs" in dead_relu_advice(None)  # no checks ran: unknown
    assert "standardise the inputs" in dead_relu_advice(("data-not-inspectable",))  # they could not read x
    # Found unscaled: the inputs' scale is fixed first, and said once.
    assert dead_relu_advice(("unscaled-inputs",)).startswith("Fix the inputs' scale first")
    scaled = dead_relu_advice(())
    assert "standardise" not in scaled and "he_normal for this layer, or use" in scaled


def test_one_raised_learning_rate_for_every_finding_of_a_run():
    # lr-too-low said 0.001 and underfitting 0.0003 for one run at 1e-4.
    s = Stream()
    s.context.learning_rate = 1e-4
    s.values["learning_rate"] = lambda e, st: 1e-4
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 1e-4
    s.train_loss = lambda e, st: 0.70 - 0.01 * e
    s.val_loss = lambda e: 0.71 - 0.01 * e
    d = s.run()
    assert {"lr-too-low", "underfitting"} <= set(codes(d))
    rates = {re.search(r"learning_rate: ([0-9.e-]+)", finding(d, code).advice).group(1) for code in ("lr-too-low", "underfitting")}
    assert rates == {"0.001"}


def test_a_finding_printed_while_training_and_withdrawn_at_the_end_is_said_to_be_withdrawn():
    # The overfitting printed at epoch 10 vanished from the final report without a word: stderr
    # and the report contradicted each other.
    import types

    from trainkit.diagnosis import DiagnosisCallback

    class Lines:
        def __init__(self):
            self.lines = []

        def print(self, text, **_):
            self.lines.append(text)

    withdrawn = Finding("overfitting", "warning", "m", "a", epoch=6)
    kept = Finding("loss-at-chance", "warning", "m", "a")
    callback = DiagnosisCallback()
    callback.console = Lines()
    callback.diagnoser = Diagnoser(Context(task="binary"))  # judged again: no overfitting
    callback.set_trainer(types.SimpleNamespace(findings=[withdrawn, kept]))
    callback._sync_rejudged()
    assert callback.trainer.findings == [kept]
    assert callback.console.lines == ["diagnosis: withdrawn [overfitting] (epoch 7): judged again on the whole run, it no longer holds."]


def test_ratios_in_messages_stay_readable_when_a_loss_diverges():
    # "1150632885938249624815189098496x the first loss".
    from trainkit.diagnosis.number_text import times_text

    assert [times_text(r) for r in (2.83, 12.64, 244.2, 1.150632885938249e30)] == ["2.8x", "12.6x", "244x", "1.151e+30x"]


def test_steps_read_back_from_every_nth_step_count_the_steps_the_run_trained():
    # With logging.scalars_every=25 the read-back counted 1 step an epoch, and the loss-curve rules
    # (at least 20 steps) stayed off until epoch 20: oscillating-loss was missed.
    d = Diagnoser(Context(task="binary", chance_loss=LN2))
    for step in range(0, 100, 25):
        d.add_steps(step, ["loss"], np.array([[0.5]]))
    assert d.steps == 76
    live = Diagnoser(Context(task="binary", chance_loss=LN2))
    live.add_steps(0, ["loss"], np.full((76, 1), 0.5))
    assert live.steps == 76


def test_steps_read_back_from_every_nth_step_fall_in_the_epoch_they_trained_in():
    # Rows at steps 0, 4 | 8, 12: step 4 was put in epoch 2 (after the last) and step 12 too.
    from trainkit.diagnosis.stat_reads import epoch_of_step

    d = Diagnoser(Context(task="binary", chance_loss=LN2))
    for epoch, steps in ((0, (0, 4)), (1, (8, 12))):
        d.begin_epoch(epoch, steps[0])
        for step in steps:
            d.add_steps(step, ["loss"], np.array([[0.5]]))
        d.end_epoch(epoch, {"loss": 0.5})
    assert [epoch_of_step(d, s) for s in (0, 4, 6, 8, 12, 13)] == [0, 0, 0, 1, 1, 2]


def test_a_regression_falling_slowly_from_far_above_the_mean_is_lr_too_low_s_alone():
    # RMSprop at 1e-6 on standardised targets: 3.22 -> 2.62 over 30 epochs, steadily, got
    # lr-too-low ("raise it to 1e-5") and loss-at-chance ("stuck away from the targets ... try the
    # learning rate lower (1e-07)"): a cure that contradicts the other, for a loss still falling.
    s = Stream(epochs=30, task="regression", chance=1.0)
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 6e-6
    s.train_loss = lambda e, st: 2.5 + 0.7 * math.exp(-e / 15)  # under 5% over the last quarter
    s.val_loss = lambda e: 2.6 + 0.7 * math.exp(-e / 15)
    d = s.run()
    assert "lr-too-low" in codes(d) and "loss-at-chance" not in codes(d)


def test_overfitting_of_a_many_class_task_is_judged_on_a_binary_loss_scale():
    # 200 digits, a 2x256 MLP, 150 epochs: the validation loss rose steadily from 0.165 (epoch 52)
    # to 0.236 while the training loss fell to 1e-4, with no finding: the rise had to clear 3% of
    # chance, which for 10 classes (ln 10) is 0.069.
    s = Stream(epochs=40, task="multiclass", chance=math.log(10))
    train = curve(2.0, 1e-4, 40)
    s.train_loss = lambda e, st: train[e]
    s.val_loss = lambda e: 0.165 + (0.1 * (12 - e) if e < 12 else 0.0025 * (e - 12))
    f = finding(s.run(), "overfitting")
    assert f.epoch == 12 and f.evidence["final_val_loss"] == pytest.approx(0.2325)
    # A binary task's noise floor is unchanged: 0.117 -> 0.130 (chance ln 2) is no overfitting.
    b = Stream(epochs=40)
    b.train_loss = lambda e, st: train[e] * LN2 / 2.0
    b.val_loss = lambda e: 0.117 + (0.05 * (12 - e) if e < 12 else 0.013 * min(1.0, (e - 12) / 5))
    assert "overfitting" not in codes(b.run())


def test_every_finding_of_a_run_names_the_same_lower_learning_rate():
    # SGD(1.0, momentum 0.9) on breast cancer: exploding-gradients, judged after the first call,
    # advised learning_rate 0.0468; diverging-loss, lr-too-high and dead-relu, judged once the
    # epoch's larger steps were measured, 0.0288.
    s = Stream()
    s.context = dataclasses.replace(s.context, optimizer="SGD", learning_rate=1.0)
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 0.2 if e * STEPS + st < 8 else 2.0
    s.values["grad_norm/global"] = lambda e, st: 1.0 if e * STEPS + st < 8 else 5e3
    base = s.train_loss
    s.train_loss = lambda e, st: 500.0 if (e, st) == (0, 5) else base(e, st)
    d = s.run(chunk=5)
    rates = {code: re.findall(r"learning_rate: ([0-9.e-]+)", finding(d, code).advice)
             for code in ("exploding-gradients", "diverging-loss", "lr-too-high")}
    assert all(rates.values()) and len({r for found in rates.values() for r in found}) == 1, rates


class ForgetsToApply(Trainer):
    """A train_step override that computes the loss and its gradients but never applies them."""

    def train_step(self, batch):
        x, y, w = unpack_batch(batch)
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x, y, self.model(x, training=True), w)
        tape.gradient(loss, self.model.trainable_variables)
        return {"loss": loss}


@pytest.mark.parametrize("trainer_class", [ForgetsToApply, Trainer], ids=["never applied", "trained"])
def test_a_step_that_never_changes_the_weights_is_weights_frozen(trainer_class):
    # The audit's run: the loss 0.8563 at every epoch was told only that it stayed at chance.
    x, y = regression_data(128)
    trainer = trainer_class(tiny_model(), loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=4, batch_size=32, verbose=0)
    frozen = [f for f in trainer.findings if f.code == "weights-frozen"]
    if trainer_class is Trainer:
        assert not frozen
        return
    assert len(frozen) == 1 and frozen[0].severity == "error" and "apply" in frozen[0].advice
    assert frozen[0].evidence["epochs"] == 4 and frozen[0].evidence["relative_spread"] <= 1e-6
    # Next to it, loss-at-chance names it as the reason, not the labels.
    assert all("weights-frozen" in f.evidence.get("explained_by", ["weights-frozen"]) for f in trainer.findings if f.code == "loss-at-chance")
    assert "update_ratio_early" not in frozen[0].evidence  # no step applied: the generic checks


def test_a_model_without_trainable_weights_is_told_so_not_to_check_a_train_step():
    # A frozen model in a plain fit was told "a train_step override must apply its gradients".
    x, y = regression_data(128)
    model = tiny_model()
    model.trainable = False
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=4, batch_size=32, verbose=0)
    (frozen,) = [f for f in trainer.findings if f.code == "weights-frozen"]
    assert "no trainable weights" in frozen.message and "train_step" not in frozen.advice
    assert frozen.evidence["trainable_weights"] == 0


def test_a_dead_relu_output_names_the_bias_at_the_target_mean_as_its_run_writes_it():
    # A relu output started below 0 for every row: told "bias_initializer=Constant(mean of y)",
    # which neither a recipe (bias_initializer: {name: constant, value: ...}) nor Python takes. A
    # Python fit is told the Keras initializer at the number (a recipe run the recipe's mapping).
    x, y = regression_data(128)
    y = np.abs(y) + 5.0
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="relu", bias_initializer=keras.initializers.Constant(-50.0))])
    trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False,
                      allow=("labels-out-of-range",))
    trainer.fit(x, y, epochs=4, batch_size=32, verbose=0)
    (frozen,) = [f for f in trainer.findings if f.code == "weights-frozen"]
    assert "dead output" in frozen.message
    mean = format_number(float(np.mean(y)))
    assert f"bias_initializer=keras.initializers.Constant({mean}) on the output layer" in frozen.advice, frozen.advice
    assert "Constant(mean" not in frozen.advice and "{name: constant" not in frozen.advice, frozen.advice


def test_a_learning_rate_of_0_is_lr_too_low_not_weights_frozen():
    # The README's weights-frozen row: the same epoch loss at a rate of 0 is lr-too-low's finding.
    x, y = regression_data(128)
    trainer = Trainer(tiny_model(), loss="mse", optimizer=keras.optimizers.SGD(0.0), task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=4, batch_size=32, verbose=0)
    codes = [f.code for f in trainer.findings]
    assert "lr-too-low" in codes and "weights-frozen" not in codes


def test_weights_frozen_by_a_tiny_learning_rate_advises_raising_it():
    # SGD(1e-9): steps of ~2e-9 of the weights, the loss the same at every epoch. The advice began
    # with a train_step override that must apply its gradients, which this run did not have.
    x, y = regression_data(128)
    trainer = Trainer(tiny_model(), loss="mse", optimizer=keras.optimizers.SGD(1e-9), task="regression", seed=0, jit_compile=False)
    trainer.fit(x, y, epochs=4, batch_size=32, verbose=0)
    (frozen,) = [f for f in trainer.findings if f.code == "weights-frozen"]
    assert 0 < frozen.evidence["update_ratio_early"] < 1e-6
    assert "learning_rate=1e-06 in the optimizer (now 1e-09)" in frozen.advice and "train_step" not in frozen.advice


def test_a_loss_already_near_zero_with_measured_steps_is_not_weights_frozen():
    # A model at the answer (loss 2e-9, chance 0.69) whose steps move its weights (1e-4 of them) was
    # told, as an error, to raise its learning rate: lr-too-low leaves such a loss alone, and
    # weights-frozen, deferring to it, then fired in its place.
    s = Stream()
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: 1e-4
    s.train_loss = lambda e, st: 2e-9 * (1.0 - 1e-8 * e)
    s.val_loss = lambda e: 2.1e-9 * (1.0 - 1e-8 * e)
    assert "weights-frozen" not in codes(s.run())
    s.train_loss = lambda e, st: 0.70 * (1.0 - 1e-8 * e)  # the same steps on a loss at chance: frozen in effect
    s.val_loss = lambda e: 0.71 * (1.0 - 1e-8 * e)
    assert "Raise the learning rate" in finding(s.run(), "weights-frozen").advice


def test_a_run_whose_events_never_reached_its_end_gets_no_end_of_run_verdicts_read_back(tmp_path, monkeypatch):
    # A run killed (SIGKILL), still training, or stopped by a full disk has no diagnosis_end
    # record: trainkit diagnose said "the end-of-run verdicts are missing" and printed one
    # (underfitting, at the last epoch written), where report.json had none.
    from trainkit.diagnosis.callback import DiagnosisCallback
    from trainkit.diagnosis.readback import diagnose_run_dir

    end_codes = {rule.code for rule in RULES if rule.when == "end"}
    x, y = regression_data(400)

    def fit(logdir) -> None:  # SGD(1e-3): the loss barely leaves chance (end verdicts at the end)
        Trainer(tiny_model(), loss="mse", optimizer=keras.optimizers.SGD(1e-3), task="regression", seed=0,
                jit_compile=False, logdir=logdir).fit(x, y, epochs=4, batch_size=40, verbose=0)

    fit(tmp_path / "ended")
    assert end_codes & {f.code for f in diagnose_run_dir(tmp_path / "ended")}
    monkeypatch.setattr(DiagnosisCallback, "on_train_end", lambda self, logs=None: None)  # the end never came
    fit(tmp_path / "killed")
    assert not end_codes & {f.code for f in diagnose_run_dir(tmp_path / "killed")}


def test_the_newest_run_of_a_recipe_folder_is_found_past_nine_runs_in_one_second(tmp_path):
    # By name, "-10" sorted before "-2": the tenth run of a second was not the newest.
    from trainkit.diagnosis.readback import find_run_dir

    for name in ["20261206-113759", "20261206-113800", "20261206-113800-2", "20261206-113800-10"]:
        (tmp_path / name / "train").mkdir(parents=True)
        (tmp_path / name / "train" / "events.out.tfevents.1").write_bytes(b"")
    assert find_run_dir(tmp_path).name == "20261206-113800-10"
    (tmp_path / "20261206-113801" / "train").mkdir(parents=True)
    (tmp_path / "20261206-113801" / "train" / "events.out.tfevents.1").write_bytes(b"")
    assert find_run_dir(tmp_path).name == "20261206-113801"


def test_one_class_validation_rows_have_no_chance_level_of_their_own():
    # iris unshuffled: validation_split's last 30 rows are all class 2. The best constant scores
    # the clipped cross-entropy's ~2.4e-7 there, which passed as a level: val_loss 0.64 read
    # "268611732% of chance ... e.g. random labels". The training rows' level stands in.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="adam", task="multiclass", jit_compile=False)
    y = np.repeat([0, 1, 2], [50, 50, 20])
    one_class = build_context(trainer, y, validation_targets=np.full(30, 2))
    assert one_class.chance_loss == pytest.approx(1.0282, abs=1e-3) and one_class.val_chance_loss is None
    mixed = build_context(trainer, y, validation_targets=np.repeat([1, 2], [5, 25]))
    assert mixed.val_chance_loss == pytest.approx(0.4506, abs=1e-3)


@pytest.mark.parametrize("first_step", [0, 30])
def test_loss_collapsed_is_judged_only_from_the_runs_first_step(first_step):
    # A trainer's second fit starts with the model the first one trained: its loss, low from its
    # first epoch, was "under 2% of chance after epoch 1: the inputs contain the answer".
    s = Stream(epochs=2)
    s.train_loss = lambda e, st: 0.7 if first_step == 0 and e == 0 and st == 0 else 0.004
    assert ("loss-collapsed" in codes(run_from(s, first_step))) == (first_step == 0)


def run_from(s: Stream, first_step: int) -> Diagnoser:
    """Feeds ``s`` through a Diagnoser whose first step is ``first_step`` (a second fit's is not 0)."""
    d = Diagnoser(s.context)
    for epoch in range(s.epochs):
        names, values = s.rows(epoch)
        d.begin_epoch(epoch, first_step + epoch * STEPS)
        d.add_steps(first_step + epoch * STEPS, names, values)
        d.end_epoch(epoch, {"loss": float(np.mean(values[:, 0])), "val_loss": 0.01})
    d.finish({})
    return d


def separable_rows() -> tuple[np.ndarray, np.ndarray]:
    """300 rows of 4 features whose binary label is the sign of the first two's sum."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("float32")


def small_classifier() -> keras.Model:
    """4 -> 16 relu -> 1 sigmoid."""
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])


def train_far_below_chance(model: keras.Model, x: np.ndarray, y: np.ndarray, trained_by: str = "trainer") -> None:
    """20 epochs at Adam 0.05, by a Trainer or by model.fit: the loss ends far below chance."""
    if trained_by == "trainer":
        Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.Adam(0.05), task="binary", seed=0,
                jit_compile=False).fit(x, y, epochs=20, verbose=0)
    else:
        model.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(0.05))
        model.fit(x, y, epochs=20, verbose=0)


@pytest.mark.parametrize("trained_by", ["trainer", "model.fit"])
def test_a_new_trainer_for_a_model_trained_before_judges_no_fresh_start(tmp_path, trained_by):
    # A notebook's sweep that builds a new Trainer for the model an earlier cell trained: its first
    # losses are that training's, and it was told "far below chance before the model had learned
    # anything ... look for label leakage" (initial-loss-too-low), live and read back.
    from trainkit.diagnosis.readback import diagnose_run_dir

    x, y = separable_rows()
    keras.utils.set_random_seed(0)
    model = small_classifier()
    # Made first: whether the model is trained is asked when it fits.
    trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.Adam(1e-3), task="binary", seed=0,
                      jit_compile=False, logdir=tmp_path)
    train_far_below_chance(model, x, y, trained_by)
    history = trainer.fit(x, y, epochs=2, verbose=0)
    assert history.history["loss"][0] < 0.1  # far below chance (ln 2) from its first epoch
    live = [f.to_dict() for f in trainer.findings]
    assert not {"initial-loss-too-low", "loss-collapsed"} & {f["code"] for f in live}
    assert [f.to_dict() for f in diagnose_run_dir(tmp_path)] == live


@pytest.mark.parametrize(("trained_by", "built"), [("trainer", "nested"), ("trainer", "its layers"), ("model.fit", "nested"), ("model.fit", "called")])
def test_a_new_model_built_around_trained_layers_judges_no_fresh_start(trained_by, built):
    # Fine-tuning code builds a new model around a trained one: its first loss (0.01 against a chance
    # level of 0.69) was read as a leak and a collapsed loss.
    x, y = separable_rows()
    keras.utils.set_random_seed(0)
    base = small_classifier()
    train_far_below_chance(base, x, y, trained_by)
    inputs = keras.Input((4,))
    model = {"nested": lambda: keras.Sequential([inputs, base]), "called": lambda: keras.Model(inputs, base(inputs)),
             "its layers": lambda: keras.Model(base.inputs, base.layers[-1].output)}[built]()
    trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.Adam(1e-3), task="binary", seed=0, jit_compile=False)
    history = trainer.fit(x, y, epochs=2, verbose=0)
    assert history.history["loss"][0] < 0.1  # far below chance (ln 2) from its first epoch
    assert trainer._model_trained_before is True
    assert not {"initial-loss-too-low", "loss-collapsed"} & set(codes(trainer))


@pytest.mark.parametrize("read_back", ["load_model", "load_weights"])
def test_a_trained_model_read_back_from_a_file_judges_no_fresh_start(tmp_path, read_back):
    # A notebook saves the model a Trainer trained and, in a later session, loads it to train on:
    # the file holds no optimizer that took steps, so its first loss (0.02 against a chance level
    # of 0.69) was told initial-loss-too-low ("look for label leakage") and diverging-loss.
    x, y = separable_rows()
    keras.utils.set_random_seed(0)
    base = small_classifier()
    train_far_below_chance(base, x, y)
    if read_back == "load_model":
        base.save(tmp_path / "model.keras")
        model = keras.models.load_model(tmp_path / "model.keras")
    else:
        base.save_weights(tmp_path / "model.weights.h5")
        model = small_classifier()
        model.load_weights(tmp_path / "model.weights.h5")
    trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.Adam(1e-3), task="binary", seed=0, jit_compile=False)
    history = trainer.fit(x, y, epochs=2, verbose=0)
    assert history.history["loss"][0] < 0.1  # far below chance (ln 2) from its first epoch
    assert trainer._model_trained_before is True
    assert not {"initial-loss-too-low", "loss-collapsed", "diverging-loss"} & set(codes(trainer))


def test_a_fresh_model_with_one_bias_set_by_hand_or_a_clone_of_a_trained_one_is_a_fresh_start():
    from trainkit import trained_models

    x, y = regression_data(64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", bias_initializer=keras.initializers.Constant(0.1)),
                              keras.layers.BatchNormalization(), keras.layers.Dense(1)])
    model.layers[-1].bias.assign([2.0])  # an output bias started at the targets' mean
    assert trained_models.trained_before(model) is False
    Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False).fit(x, y, epochs=2, verbose=0)
    assert trained_models.left_initialization(model) is True
    assert trained_models.trained_before(keras.models.clone_model(model)) is False  # new weights


def test_a_fresh_model_whose_hidden_biases_were_set_by_hand_is_a_fresh_start():
    # ReLU biases started at 0.01 by hand (bias.assign, not an initializer): every hidden layer
    # "moved" (2 of 2), so the fresh model was judged trained and its fresh-start verdicts went unsaid.
    from trainkit import trained_models

    x, y = regression_data(64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1)])
    for layer in model.layers[:2]:
        layer.bias.assign(np.full(layer.bias.shape, 0.01))
    assert trained_models.trained_before(model) is False
    Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False).fit(x, y, epochs=2, verbose=0)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    assert trained_models.trained_before(copy) is True  # trained: each unit's bias moved its own way


@pytest.mark.parametrize("start", ["logistic_regression", "softmax_prior", "two_heads", "dense_then_activation"])
def test_a_fresh_model_whose_output_biases_start_at_the_prior_is_a_fresh_start(start):
    # initial-loss-too-low's own advice, model.layers[-1].bias.assign(np.log(p / (1 - p))): a
    # one-layer model (1 of 1 layers "moved"), a model of two heads so started (2 of 3) and a
    # Dense before an Activation were judged trained, so their leaks went unsaid.
    from trainkit import trained_models

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    if start == "two_heads":
        hidden = keras.layers.Dense(8, activation="relu")(inputs)
        heads = [keras.layers.Dense(1, name=name)(hidden) for name in ("a", "b")]
        model = keras.Model(inputs, heads)
        biases = [model.get_layer("a").bias, model.get_layer("b").bias]
    else:
        units = 3 if start == "softmax_prior" else 1
        layers = [keras.layers.Dense(units)] + ([keras.layers.Activation("sigmoid")] if start == "dense_then_activation" else [])
        model = keras.Sequential([inputs, *layers])
        biases = [model.layers[0].bias]
    for bias in biases:
        bias.assign(np.full(bias.shape, np.log(0.1 / 0.9)))
    assert trained_models.trained_before(model) is False


@pytest.mark.parametrize("recurrent", ["lstm", "bidirectional", "conv_lstm"])
def test_a_fresh_model_of_lstms_is_a_fresh_start(recurrent):
    # An LSTM cell's bias starts with its forget gate's quarter at 1 (unit_forget_bias, Keras's
    # default) although its bias_initializer is "zeros": two LSTMs and a Dense, fresh, were judged
    # trained (2 of 3 layers "moved"), and their leak went without initial-loss-too-low.
    from trainkit import trained_models

    def stacked():
        if recurrent == "conv_lstm":
            return [keras.Input((3, 6, 2)), keras.layers.ConvLSTM1D(2, 3, return_sequences=True), keras.layers.ConvLSTM1D(2, 3),
                    keras.layers.Flatten()]
        first, second = keras.layers.LSTM(4, return_sequences=True), keras.layers.LSTM(4)
        if recurrent == "bidirectional":
            first, second = keras.layers.Bidirectional(first), keras.layers.Bidirectional(second)
        return [keras.Input((5, 3)), first, second]

    keras.utils.set_random_seed(0)
    model = keras.Sequential([*stacked(), keras.layers.Dense(1)])
    assert trained_models.trained_before(model) is False
    for layer in model.layers[:2]:  # trained: every bias moves
        for weight in layer.trainable_weights:
            weight.assign(weight + 0.01)
    assert trained_models.left_initialization(model) is True


def test_a_fresh_model_is_judged_without_reading_the_weights_of_unrelated_trained_models(monkeypatch):
    # trained_before fingerprinted every trained model alive in the process (4 variables copied to
    # the host each) before asking whether it shared a weight with the new one: 100 a notebook
    # kept cost ~95 ms at each fit's start, for models it shares nothing with.
    from trainkit import trained_models

    kept = [keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]) for _ in range(5)]
    for model in kept:
        trained_models.record_training(model, False)
    read = []
    real = trained_models.weights_fingerprint
    monkeypatch.setattr(trained_models, "weights_fingerprint", lambda model: read.append(model) or real(model))
    fresh = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert trained_models.trained_before(fresh) is False and read == []
    # A model taking one of their layers still reads that one's.
    shared = keras.Sequential([keras.Input((4,)), kept[2].layers[0]])
    assert trained_models.trained_before(shared) is False and read == [kept[2]]


def test_a_model_whose_weights_were_put_back_to_their_start_is_a_fresh_start_again():
    # A sweep resetting one model with set_weights(initial) for each new Trainer was judged "trained
    # before" for good (the review audit): no initial-loss verdicts, no dead-at-start evidence.
    x, y = regression_data(64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    initial = model.get_weights()

    def fit_new_trainer():
        trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False)
        trainer.fit(x, y, epochs=1, verbose=0)
        return trainer._model_trained_before

    assert fit_new_trainer() is False
    assert fit_new_trainer() is True  # the weights the first trainer left
    model.set_weights(initial)
    assert fit_new_trainer() is False


def test_weights_model_fit_trained_put_back_for_a_new_trainer_are_no_fresh_start():
    # A fine-tuning sweep from model.fit's weights, put back for each variant: the second variant
    # was judged a fresh start (initial-loss-too-low), as the first trainer recorded those trained
    # weights as where its training started.
    x, y = regression_data(64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(loss="mse", optimizer="adam")
    model.fit(x, y, epochs=1, verbose=0)
    pretrained = model.get_weights()
    for _ in range(2):
        model.set_weights(pretrained)
        trainer = Trainer(model, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False)
        trainer.fit(x, y, epochs=1, verbose=0)
        assert trainer._model_trained_before is True


def test_a_resumed_run_of_a_model_trained_before_judges_no_fresh_start(tmp_path):
    # The resumed fit's context said trained_before=False (its model holds the run's own weights):
    # the resume of a run on a model model.fit had trained was told initial-loss-too-low, live and
    # read back, which the uninterrupted run was not.
    from trainkit.diagnosis.readback import diagnose_run_dir
    from trainkit.errors import TrainingInterrupted

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("float32")

    def fit(logdir, **kwargs):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu", name="hidden"),
                                  keras.layers.Dense(1, activation="sigmoid", name="out")])
        model.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(0.05))
        model.fit(x, y, epochs=20, verbose=0)
        trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.Adam(1e-3), task="binary", seed=0,
                          jit_compile=False, logdir=logdir, checkpoint_every=1, steps_per_execution=2)
        trainer.fit(x, y, epochs=3, batch_size=30, verbose=0, **kwargs)
        return trainer

    whole = [f.to_dict() for f in fit(tmp_path / "whole").findings]
    assert "initial-loss-too-low" not in {f["code"] for f in whole}
    with pytest.raises(TrainingInterrupted):
        fit(tmp_path / "cut", callbacks=[TerminateAt(15)])  # mid-epoch 2 (10 steps an epoch)
    resumed = fit(tmp_path / "cut", resume=True)
    assert [f.to_dict() for f in resumed.findings] == whole
    assert [f.to_dict() for f in diagnose_run_dir(tmp_path / "cut")] == whole


@pytest.mark.parametrize(("first_step", "trained_before"), [(0, False), (30, False), (0, True)])
def test_a_step_spike_is_measured_against_a_fresh_model_s_first_loss_only(first_step, trained_before):
    # A trained model's batch losses spread over orders of magnitude near 0: a second fit (or a new
    # Trainer's) of one at 0.02 an epoch "jumped to 0.0833 at step 15, 128x the first loss
    # (0.000649)", a diverging-loss error, while its epoch losses fell.
    s = Stream(epochs=3)
    s.context.trained_before = trained_before
    s.train_loss = lambda e, st: 0.0006 if e == st == 0 else 0.08 if st == 3 else 0.02 - 0.001 * e
    assert ("diverging-loss" in codes(run_from(s, first_step))) == (first_step == 0 and not trained_before)


def test_a_step_spike_no_higher_than_the_worst_batch_of_a_constant_is_no_divergence():
    # Targets with a few far rows (1% at 1000 under Huber): a batch holding two or three of them
    # read 63-94 against a first loss of 0.3-0.75, "213x the first loss", a diverging-loss error,
    # while the model learned. A constant prediction's worst batch reads that high too.
    s = Stream(epochs=3, task="regression", chance=10.0)
    s.context.worst_batch_loss = 250.0
    s.train_loss = lambda e, st: 63.0 if (e, st) == (1, 3) else 0.3 - 0.05 * e
    assert "diverging-loss" not in codes(s.run())
    # A little over it too: a model that learned predicts a far row a little off the constants.
    s.train_loss = lambda e, st: 260.0 if (e, st) == (1, 3) else 0.3 - 0.05 * e
    assert "diverging-loss" not in codes(s.run())
    # Past it, the model's own outputs make the loss: thrown away.
    s.train_loss = lambda e, st: 1e4 if (e, st) == (1, 3) else 0.3 - 0.05 * e
    assert "diverging-loss" in codes(s.run())
    # Without the level (a custom loss), 100x the first loss stays the bar.
    s.context.worst_batch_loss = None
    s.train_loss = lambda e, st: 63.0 if (e, st) == (1, 3) else 0.3 - 0.05 * e
    assert "diverging-loss" in codes(s.run())


def test_the_worst_batch_level_is_the_batch_of_the_rows_a_constant_fits_worst():
    from trainkit.diagnosis.baseline import chance_loss

    rng = np.random.default_rng(0)
    y = rng.normal(size=(800, 1))
    y[rng.choice(800, 8, replace=False)] = 1000.0
    # Huber's best constant is ~0: each far row reads ~999.5, and all 8 fit in one batch of 32.
    worst = chance_loss("regression", keras.losses.Huber(), y, batch_size=32).worst_batch
    assert 8 * 999 / 32 < worst < 8 * 1000 / 32 + 3  # and 24 normal rows' few
    # Weights scale each row's share of a batch; under mean_with_sample_weight they divide it.
    weights = np.ones(800)
    weights[y[:, 0] > 100] = 2.0
    assert chance_loss("regression", keras.losses.Huber(), y, weights, batch_size=32).worst_batch > 1.9 * worst
    by_weight = keras.losses.Huber(reduction="mean_with_sample_weight")
    assert chance_loss("regression", by_weight, y, weights, batch_size=32).worst_batch < 1000
    # ... where a heavy row outweighs the rest of its batch: one far row of weight 100 among 31
    # rows of 1 makes its batch (100 * 999.5 + 31 * ~0.1) / 131 = 763, its own loss nearly.
    heavy = np.ones(800)
    heavy[int(np.argmax(y[:, 0]))] = 100.0
    assert chance_loss("regression", by_weight, y, heavy, batch_size=32).worst_batch == pytest.approx(999.5, abs=0.5)
    # Equal weights divide out: the batch of the worst rows, as without weights.
    assert chance_loss("regression", by_weight, y, np.full(800, 3.0), batch_size=32).worst_batch == pytest.approx(worst)
    # A balanced binary task's prior scores ln 2 on every row: no batch reads more.
    labels = np.tile([0.0, 1.0], 200)
    assert chance_loss("binary", "binary_crossentropy", labels, batch_size=32).worst_batch == pytest.approx(math.log(2), rel=1e-4)


def test_an_epoch_s_short_last_batch_of_a_far_row_is_no_divergence():
    # 993 rows in batches of 32 end each epoch on a batch of 1 row: holding the far row, it read
    # that row's whole loss (999.8 under Huber) against a worst batch of 32 rows of ~33, and a
    # model whose every epoch's loss fell was told diverging-loss ("779x the first loss").
    from trainkit.diagnosis.baseline import chance_loss

    rng = np.random.default_rng(0)
    x = rng.normal(size=(993, 4)).astype("float32")
    y = x[:, :1] * 0.5
    y[-1] = 1000.0
    assert chance_loss("regression", keras.losses.Huber(), y, batch_size=32, last_batch=993 % 32).worst_batch == pytest.approx(999.5, abs=0.5)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    trainer = Trainer(model, loss=keras.losses.Huber(), optimizer="adam", task="regression", seed=0)
    history = trainer.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert "diverging-loss" not in codes(trainer)


@pytest.mark.parametrize("in_order", [True, False])
def test_a_step_spike_in_batches_of_a_rising_series_read_in_order_is_no_divergence(in_order):
    # An unshuffled series with a trend (timeseries_dataset_from_array's default order) starts
    # near 0: its later batches' losses were "1018x the first loss (2.17)", a diverging-loss error,
    # while every epoch's loss fell. In order, the first batches are no sample of the data.
    s = Stream(epochs=6, task="regression", chance=160.0)
    s.context.batches_in_order = in_order
    s.train_loss = lambda e, st: (2.0 + 300.0 * st) * (1 - 0.05 * e)
    assert ("diverging-loss" in codes(s.run())) == (not in_order)
    # A real blow-up in order is still one: 100x the first epoch's loss.
    s.train_loss = lambda e, st: 1e6 if e == 4 else (2.0 + 300.0 * st) * (1 - 0.05 * e)
    assert "diverging-loss" in codes(s.run())
    # A blow-up within the first epoch raises that epoch's loss to its level: the model thrown
    # away at step 4 (1 -> 500 and staying there) read 1.7x the first epoch's loss, and was told
    # nothing. Later epochs that never come back to the first loss's level are no data order.
    s.train_loss = lambda e, st: 1.0 if e == 0 and st < 4 else 500.0
    assert "diverging-loss" in codes(s.run())


@pytest.mark.parametrize(("data", "in_order"), [("dataset", True), ("shuffled dataset", False), ("arrays", True), ("shuffled arrays", False)])
def test_the_diagnosis_knows_whether_the_training_batches_come_in_order(data, in_order):
    x, y = np.arange(64, dtype="float32")[:, None], np.arange(64, dtype="float32")[:, None]
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    trainer = Trainer(model, loss="mse", optimizer="sgd", task="regression", seed=0, diagnose=DiagnosisCallback())
    if "dataset" in data:
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        trainer.fit((ds.shuffle(64, seed=0) if "shuffled" in data else ds).batch(16), epochs=1, verbose=0)
    else:
        trainer.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle="shuffled" in data)
    assert trainer.diagnose.diagnoser.context.batches_in_order is in_order


@pytest.mark.parametrize("second", [(16, 1), (16,)])
def test_a_dataset_of_several_outputs_knows_its_batch_rows(second):
    # Targets of two outputs in a tuple: their structure's shape read 2 rows for (16, 1) and (16, 1),
    # and (16, 1) beside (16,) made fit fail before its first step.
    x = np.zeros((64, 3), "float32")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, [keras.layers.Dense(1, name="r")(inputs), keras.layers.Dense(1, name="s")(inputs)])
    trainer = Trainer(model, loss=["mse", "mse"], optimizer="sgd", task=["regression", "regression"], seed=0, diagnose=DiagnosisCallback())
    ds = tf.data.Dataset.from_tensor_slices((x, (np.zeros((64, 1), "float32"), np.zeros((64, *second[1:]), "float32")))).batch(16)
    trainer.fit(ds, epochs=1, verbose=0)
    assert trainer.diagnose.diagnoser.context.batch_size == 16


@pytest.mark.parametrize(("times_chance", "told"), [(1.0, True), (3.0, False)])
def test_a_fading_gradient_through_time_explains_no_loss_worse_than_a_constant(times_chance, told):
    # An LSTM forecasting an unscaled rising series ended at 305% of chance (unscaled targets) and
    # was told it learned from the last 5 of its 24 steps only: all a forecast needs. A model that
    # reads only the last steps still reaches the target mean.
    s = Stream(epochs=6, task="regression", chance=160.0)
    s.train_loss = lambda e, st: 160.0 * times_chance
    s.val_loss = lambda e: 160.0 * times_chance
    s.notes["recurrent_reach"] = [{"layer": "dense_1", "steps": 24, "reach": 5, "ratio": 1.7e-4, "kind": "LSTM"}]
    assert ("vanishing-gradients-through-time" in codes(s.run())) == told


def test_unmasked_padding_is_named_as_why_the_loss_stayed_at_chance():
    # Ids mostly padding averaged without a mask: loss-at-chance said "the labels are
    # unpredictable from the inputs" at 99% validation accuracy.
    s = Stream(epochs=6, task="binary", chance=0.693)
    s.train_loss = lambda e, st: 0.692
    s.val_loss = lambda e: 0.692
    s.context = dataclasses.replace(s.context, check_codes=("unmasked-padding",))
    found = finding(s.run(), "loss-at-chance")
    assert "unmasked-padding" in found.evidence["explained_by"] and "Fix what unmasked-padding" in found.advice


@pytest.mark.parametrize(("tail", "backwards"), [(0, False), (61, False), (61, True), (10, False)])
def test_padding_read_last_is_named_as_what_the_gradient_reaches(tail, backwards):
    # Post-padded ids into an Embedding without mask_zero: an LSTM read 80 steps, ~61 of them
    # padding after the last real token, stayed at chance, and was told to pool its states or feed
    # shorter sequences, where pre-padding or mask_zero=True reached a validation loss of 0.004.
    s = Stream(epochs=6, task="binary", chance=0.69)
    s.train_loss = lambda e, st: 0.69
    s.val_loss = lambda e: 0.69
    s.notes["recurrent_reach"] = [{"layer": "lstm", "steps": 80, "reach": 22, "ratio": 5.6e-8, "kind": "LSTM",
                                   "go_backwards": backwards, "padded_tail": tail}]
    d = s.run()
    (found,) = [f for f in d.findings if f.code == "vanishing-gradients-through-time"]
    told = tail >= 22  # the gradient reaches no further than the padding
    assert ("the last 61 steps it reads repeat one vector: padding" in found.message) == told
    assert ("mask_zero=True" in found.advice) == told and ("GlobalAveragePooling1D" in found.advice) != told
    if told:
        assert f"padding={'post' if backwards else 'pre'!r}" in found.advice and found.evidence["padded_tail"] == 61
        assert "a TextVectorization always pads at the end: mask it" in found.advice


@pytest.mark.parametrize("in_order", [True, False])
def test_a_stretch_of_a_series_read_in_order_is_no_start_far_above_chance(in_order):
    # A random walk's windows in order (timeseries_dataset_from_array's default): its first 16
    # batches sat near +1.5 std, so their chance level (variance 0.48) was 11x below what a fresh
    # output near 0 scores there (5.4), and the run was told to fix its initialisation.
    y = np.random.default_rng(0).normal(1.5, 0.7, size=(512, 1)).astype("float32")
    baseline = chance_loss("regression", "mse", y)
    assert baseline.uninformed == pytest.approx(float(np.mean(y ** 2)), rel=1e-5)
    s = Stream(epochs=4, task="regression", chance=baseline.loss)
    s.context.uninformed_loss, s.context.batches_in_order = baseline.uninformed, in_order
    s.train_loss = lambda e, st: 11.0 * baseline.loss if e == 0 and st < 5 else 0.3
    assert ("initial-loss-too-high" in codes(s.run())) == (not in_order)
    # Far above where a fresh output starts, in order too, it still is one.
    s.train_loss = lambda e, st: 20.0 * baseline.uninformed if e == 0 and st < 5 else 0.3
    assert "initial-loss-too-high" in codes(s.run())


@pytest.mark.parametrize("falling", [True, False])
def test_a_fading_gradient_through_time_explains_no_loss_still_falling_fast(falling):
    # A GRU on a random walk's windows, 3 epochs: validation 1.16, 0.66, 0.27 against its chance
    # level 0.1 ("next = last" 0.003) was told nothing it learned carried over to the validation rows.
    s = Stream(epochs=3, task="regression", chance=1.0)
    val = [1.16, 0.66, 0.27] if falling else [1.16, 1.15, 1.15]
    s.train_loss = lambda e, st: [1.46, 0.86, 0.43][e] if falling else 1.0
    s.val_loss = lambda e: val[e]
    s.context.val_chance_loss = 0.1
    s.notes["recurrent_reach"] = [{"layer": "dense_1", "steps": 24, "reach": 16, "ratio": 5e-4, "kind": "GRU"}]
    assert ("vanishing-gradients-through-time" in codes(s.run())) == (not falling)


def _three_class_run(freeze_output: bool, seed: int, tmp_path=None) -> Trainer:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1000, 10)).astype("float32")
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)
    keras.utils.set_random_seed(seed)
    # The output's softmax in a layer of its own: the frozen Dense behind it is the one named.
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(3, name="head"), keras.layers.Activation("softmax", name="probs")])
    if freeze_output:
        model.get_layer("head").trainable = False  # meant for the layers below it
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="adam", task="multiclass", seed=seed,
                      logdir=str(tmp_path) if tmp_path is not None else None)
    trainer.fit(x, y, epochs=20, batch_size=32, validation_split=0.2, verbose=0)
    return trainer


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_frozen_output_layer_is_named_when_the_loss_stalls(seed):
    # model.layers[-1].trainable = False trained the hidden layer under a fixed random head: the
    # loss ended at 56-60% of chance (35-48% with the head trainable) and the run was told only
    # that it was undertrained (more epochs, a larger learning rate).
    (found,) = [f for f in _three_class_run(True, seed).findings if f.code == "frozen-output"]
    assert found.layer == "head" and "'head'" in found.message and "trainable = True" in found.advice
    assert found.evidence["stalled"]
    assert "frozen-output" not in {f.code for f in _three_class_run(False, seed).findings}


def test_frozen_output_layers_are_the_weight_layers_behind_the_outputs():
    from trainkit.diagnosis.model_facts import frozen_output_layers, output_layer_names

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="hidden"), keras.layers.Dense(2, name="head"),
                              keras.layers.Activation("softmax", name="probs")])

    def frozen() -> tuple[str, ...]:
        return frozen_output_layers(model, output_layer_names(model), layer_inputs(model))

    model.get_layer("head").trainable = False
    assert frozen() == ("head",)
    model.trainable = False  # nothing trains: weights-frozen's case, not this one
    assert frozen() == ()
    model.trainable = True
    model.get_layer("hidden").trainable = False  # a frozen hidden layer is no frozen output
    assert frozen() == ()


def test_an_output_layer_whose_weights_are_state_is_no_frozen_output():
    # Normalization(invert=True) after Dense(1) turns a regression's outputs back into target
    # units; its mean and variance are not trainable by design. With lr-too-low found (Adam 1e-4,
    # 6 epochs, 15% fallen) frozen-output called 'denorm' a frozen head, "more epochs or another
    # learning rate help little", against lr-too-low's own advice.
    from trainkit.diagnosis.model_facts import frozen_output_layers, output_layer_names

    denorm = keras.layers.Normalization(axis=None, invert=True, name="denorm")
    denorm.adapt(np.array([400.0, 500.0, 600.0], "float32"))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="hidden"), keras.layers.Dense(1, name="head"), denorm])

    def frozen() -> tuple[str, ...]:
        return frozen_output_layers(model, output_layer_names(model), layer_inputs(model))

    assert frozen() == ()
    model.get_layer("head").trainable = False  # the Dense behind it, frozen by mistake, is still named
    assert frozen() == ("head",)
    assert frozen_output_layers(model, output_layer_names(model), None) == ("head",)


def test_a_frozen_output_is_found_again_from_the_run_directory(tmp_path):
    from trainkit.diagnosis.readback import diagnose_run_dir

    trainer = _three_class_run(True, 0, tmp_path)
    live = [f.to_dict() for f in trainer.findings if f.code == "frozen-output"]
    assert live and [f.to_dict() for f in diagnose_run_dir(tmp_path) if f.code == "frozen-output"] == live


@pytest.mark.parametrize(("rate", "ceiling"), [(0.5, False), (0.6, True)])
def test_dropout_too_high_advice_names_no_ceiling_the_rate_already_meets(rate, ceiling):
    # Dropout(0.5), training at 97% of chance, validation at 85%: "Lower the dropout rate (now
    # 0.5; 0.1-0.3 is usual, 0.5 at most)" told it to go down to where it was.
    s = Stream()
    s.context.dropout = rate
    s.train_loss = lambda e, st: LN2 * (0.97 + 0.004 * ((e + st) % 3))
    s.val_loss = lambda e: LN2 * (0.95 - 0.01 * e if e < 10 else 0.85)
    s.context.dropout_layer = "hidden_dropout"
    f = finding(s.run(), "dropout-too-high")
    assert f"of 'hidden_dropout' (now {rate:g}; 0.1-0.3 is usual" in f.advice and ("0.5 at most" in f.advice) is ceiling


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dropout_so_strong_that_the_training_loss_stays_at_chance_is_named(seed):
    # Dropout(0.9) right on the inputs: the training loss (dropout on) ended at 94-97% of chance,
    # the validation loss (dropout off) at 84-88% of it, and the run got no finding.
    def run(rate: float) -> Trainer:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(1000, 10)).astype("float32")
        y = (x[:, 0] + x[:, 1] > 0).astype(int)
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((10,)), keras.layers.Dropout(rate, name="input_dropout"), keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=seed)
        trainer.fit(x, y, epochs=20, batch_size=32, validation_split=0.2, verbose=0)
        return trainer

    (found,) = [f for f in run(0.9).findings if f.code == "dropout-too-high"]
    assert found.evidence["dropout"] == 0.9 and found.evidence["best_val_loss"] < found.evidence["final_train_loss"]
    # The layer is named, and where it sits: a hidden Dropout(0.9) was told "on the inputs, 0.2 at most".
    assert found.evidence["dropout_layer"] == "input_dropout" and found.evidence["on_inputs"] is True
    assert "Lower the dropout rate of 'input_dropout' (now 0.9; on the inputs 0.2 at most" in found.advice
    assert "dropout-too-high" not in {f.code for f in run(0.2).findings}


@pytest.mark.parametrize("columns", ["standardised", "unscaled", "constant-and-repeated"])
def test_the_linear_fit_fits_as_least_squares_does(columns):
    # Solved from the normal equations (17 against 280 ms for 5,000 rows of 257 columns): raw
    # inputs ~1e3 beside the column of ones, and a constant or repeated column, fit as lstsq does.
    from trainkit.diagnosis.baseline import _least_squares

    rng = np.random.default_rng(0)
    n = 2000
    x = {"standardised": rng.normal(size=(n, 40)),
         "unscaled": np.c_[rng.normal(size=(n, 6)) * 300 + 1000, rng.normal(size=(n, 2)) * 1e-3],
         "constant-and-repeated": np.c_[np.ones((n, 2)), np.tile(rng.normal(size=(n, 1)), 3), rng.normal(size=(n, 2))]}[columns]
    a = np.c_[x, np.ones(n)]
    b = (x[:, :3] @ np.array([1.0, -2.0, 0.5]))[:, None] + rng.normal(size=(n, 1)) * 0.1
    ours = np.mean((a @ _least_squares(a, b) - b) ** 2)
    best = np.mean((a @ np.linalg.lstsq(a, b, rcond=None)[0] - b) ** 2)
    assert ours == pytest.approx(best, rel=1e-6)


# -- validation-below-training ---------------------------------------------------------------------

def _validation_below(layers: tuple[str, ...] = (), train_end: float = 0.5, falling: bool = False, **context: object) -> Stream:
    """A run whose validation loss settles at 70% of its training loss."""
    s = Stream()
    s.context.training_only_layers = layers
    for key, value in context.items():
        setattr(s.context, key, value)
    # Falling: the training loss still falls 0.2 an epoch at the end, as the mean lags by half of it.
    s.train_loss = (lambda e, st: train_end + 0.2 * (s.epochs - 1 - e)) if falling else (lambda e, st: train_end * (1 + 0.01 * ((e + st) % 3)))
    s.val_loss = lambda e: 0.7 * train_end
    return s


def test_a_validation_loss_below_the_training_loss_names_the_training_only_layers():
    # GaussianNoise(1.0) on an MLP's inputs: validation 0.36 against training 0.51, and no word on why.
    f = finding(_validation_below(("gaussian_noise", "dropout")).run(), "validation-below-training")
    assert f.severity == "info" and "'gaussian_noise', 'dropout'" in f.message and "epoch's mean" not in f.message
    assert f.advice.startswith("Nothing is wrong in itself") and "trainer.evaluate(x_train, y_train)" in f.advice
    assert f.evidence["mean_val_loss"] == pytest.approx(0.7 * f.evidence["mean_train_loss"], rel=0.02)


def test_a_validation_loss_below_a_training_loss_still_falling_names_the_epoch_mean():
    f = finding(_validation_below(train_end=0.3, falling=True).run(), "validation-below-training")
    assert "each epoch's mean over its steps" in f.message and "fell 0.2 over the last epoch" in f.message
    assert "Check how the split" not in f.advice


def test_a_validation_loss_below_the_training_loss_with_nothing_to_explain_it_points_at_the_split():
    f = finding(_validation_below().run(), "validation-below-training")
    assert "validation rows may be easier" in f.message and "Check how the split was made" in f.advice
    assert not f.advice.startswith("Nothing is wrong")
    f = finding(_validation_below(check_codes=("train-validation-overlap",)).run(), "validation-below-training")
    assert "(train-validation-overlap)" in f.message and "validation rows may be easier" not in f.message


def test_a_validation_loss_below_a_class_weighted_training_loss_names_the_chance_levels_not_the_split():
    # Balanced class_weight on 12% positives: training chance ln 2, validation chance 0.37; healthy
    # MLPs ended at 65-70% of the training loss and were told the validation rows may be easier.
    f = finding(_validation_below(train_end=0.4, val_chance_loss=0.37).run(), "validation-below-training")
    assert "a constant prediction scores 0.37 on the validation rows against 0.6931" in f.message
    assert "validation rows may be easier" not in f.message and f.advice.startswith("Nothing is wrong in itself")
    # The same chance levels on both splits: the split is still what is left to suspect.
    f = finding(_validation_below(train_end=0.4, val_chance_loss=LN2).run(), "validation-below-training")
    assert "a constant prediction scores" not in f.message and "validation rows may be easier" in f.message


def test_no_validation_below_training_note_where_it_is_not_below_or_another_finding_explains_it():
    assert "validation-below-training" not in codes(Stream().run())  # validation above training
    near = _validation_below()
    near.val_loss = lambda e: 0.9 * 0.5  # 90% of the training loss: the usual noise of two estimates
    assert "validation-below-training" not in codes(near.run())
    tiny = _validation_below(train_end=0.01)  # 0.007 against 0.01: under 2% of chance apart
    assert "validation-below-training" not in codes(tiny.run())
    few = _validation_below(val_rows=3)
    assert "validation-below-training" not in codes(few.run())
    # Strong dropout that keeps the training loss at chance is dropout-too-high's to tell.
    strong = _validation_below(("dropout",), train_end=0.97 * LN2, dropout=0.9)
    assert "dropout-too-high" in codes(strong.run()) and "validation-below-training" not in codes(strong.run())


def _summed_bce(y_true, y_pred):
    return keras.ops.sum(keras.losses.binary_crossentropy(y_true, y_pred))


def test_no_validation_below_training_note_for_a_loss_summed_over_each_batch():
    # A loss summed over each batch's rows reads a batch's rows times their mean: 40 validation
    # rows in batches of 64 against 160 training rows in 64, 64, 32 read 61-64% of the training
    # loss on rows drawn alike, told "the validation rows may be easier".
    assert "validation-below-training" in codes(_validation_below(chance_loss=None).run())
    assert "validation-below-training" not in codes(_validation_below(chance_loss=None, summed_loss=True).run())


def test_a_loss_summed_over_its_batch_is_told_from_one_averaged_over_it():
    y = np.array([0, 1, 1, 0, 1], dtype=np.float32)
    assert summed_over_batch(_summed_bce, y, (None, 1))
    assert summed_over_batch(keras.losses.BinaryCrossentropy(reduction="sum"), y)
    assert not summed_over_batch(lambda t, p: keras.losses.binary_crossentropy(t, p) * 100, y, (None, 1))
    assert not summed_over_batch(lambda t, p: keras.ops.mean(keras.ops.square(t - p)), y)  # one scalar, a mean
    assert not summed_over_batch("binary_crossentropy", y)
    assert not summed_over_batch(lambda t, p: t["missing"], y)  # cannot be scored: taken for a mean, as before
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss=_summed_bce, optimizer="sgd", task="binary", statistics=False)
    trainer.fit(x, (x[:, 0] > 0).astype(np.float32), epochs=1, batch_size=16, verbose=0)
    assert trainer._live_diagnosis.diagnoser.context.summed_loss


def test_a_subclassed_model_s_loss_summed_over_its_batch_is_found():
    # A subclassed model has no outputs before its first call: its summed loss went unprobed.
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1, activation="sigmoid")

        def call(self, x):
            return self.dense(x)

    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    for loss, summed in ((_summed_bce, True), (lambda t, p: keras.ops.mean(keras.losses.binary_crossentropy(t, p)), False)):
        keras.utils.set_random_seed(0)
        trainer = Trainer(Net(), loss=loss, optimizer="sgd", task="binary", statistics=False)
        trainer.fit(x, (x[:, :1] > 0).astype(np.float32), epochs=1, batch_size=16, verbose=0)
        assert trainer._live_diagnosis.diagnoser.context.summed_loss is summed


def test_the_summed_loss_probe_converts_only_the_rows_it_scores():
    # It made the whole of y float32 to read 8 rows of it: 66 MB of uint8 masks for a dice loss
    # held 262 MB at once.
    import tracemalloc

    masks = np.zeros((2000, 32, 32, 1), dtype=np.uint8)  # 2 MB; 8 MB as float32
    masks[:, :16] = 1
    summed_over_batch(_summed_bce, masks[:8], (None, 32, 32, 1))  # the loss's first call, outside the count
    tracemalloc.start()
    try:
        assert summed_over_batch(_summed_bce, masks, (None, 32, 32, 1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < masks.nbytes


def test_a_validation_loss_below_the_training_loss_names_batchnorm_over_tiny_batches():
    # Dense, BatchNormalization, ReLU at batch_size 2: training 0.49, validation 0.36 (evaluate on
    # the training rows 0.42), told "nothing in the model or the curves explains it".
    f = finding(_validation_below(batch_norms={"bn": 0.99}, batch_size=2).run(), "validation-below-training")
    assert "BatchNormalization ('bn') normalises each training batch of 2 rows" in f.message
    assert "validation rows may be easier" not in f.message and f.advice.startswith("Nothing is wrong in itself")
    assert f.evidence["batch_norms"] == ["bn"]
    # Over batches of 32 its statistics are no reason to name.
    f = finding(_validation_below(batch_norms={"bn": 0.99}, batch_size=32).run(), "validation-below-training")
    assert "BatchNormalization" not in f.message and "validation rows may be easier" in f.message


def test_batch_norm_momenta_are_read_off_the_model():
    from trainkit.diagnosis.model_facts import batch_norm_momenta

    frozen = keras.layers.BatchNormalization(name="frozen")
    frozen.trainable = False
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.BatchNormalization(momentum=0.9, name="bn"),
                              frozen, keras.layers.Dense(1)])
    assert batch_norm_momenta(model) == {"bn": 0.9}  # a frozen one normalises by its moving averages in training too
    assert batch_norm_momenta(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])) == {}


def test_training_only_layers_are_read_off_the_model():
    from trainkit.diagnosis.model_facts import training_only_layers

    inputs = keras.Input((6, 4))
    h = keras.layers.GaussianNoise(0.1, name="noise")(inputs)
    h = keras.layers.LSTM(8, dropout=0.2, name="lstm")(h)
    h = keras.layers.Dense(8, name="dense")(h)
    h = keras.layers.Dropout(0.3, name="drop")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(keras.layers.GRU(4, name="gru")(keras.layers.Reshape((2, 4))(h))))
    assert training_only_layers(model) == ("noise", "lstm", "drop")
    images = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.RandomFlip(name="flip"), keras.layers.Conv2D(2, 3, name="conv")])
    assert training_only_layers(images) == ("flip",)
    # A rate of 0 changes nothing: MultiHeadAttention's own Dropout(0) was named in every attention model.
    tokens = keras.Input((5, 4))
    h = keras.layers.MultiHeadAttention(2, 4, name="attention")(tokens, tokens)
    h = keras.layers.GaussianNoise(0.0, name="no_noise")(keras.layers.Dropout(0.0, name="no_drop")(h))
    assert training_only_layers(keras.Model(tokens, h)) == ()
    tokens = keras.Input((5, 4))
    model = keras.Model(tokens, keras.layers.MultiHeadAttention(2, 4, dropout=0.1, name="attention")(tokens, tokens))
    assert training_only_layers(model) == ("attention",)  # its inner Dropout is not listed again
    # A frozen base called with training=False runs its dropout in training all the same: Keras 3
    # passes the model's training=True over it (the training loss read 0.79 where evaluate read 0.52).
    base_inputs = keras.Input((8,))
    base = keras.Model(base_inputs, keras.layers.Dropout(0.3, name="base_drop")(keras.layers.Dense(8)(base_inputs)), name="base")
    base.trainable = False
    inputs = keras.Input((8,))
    h = keras.layers.Dropout(0.2, name="head_drop")(base(keras.layers.RandomFlip("horizontal", name="flip")(inputs), training=False))
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    assert training_only_layers(model) == ("flip", "base_drop", "head_drop")
    inputs = keras.Input((8,))
    alone = keras.Model(inputs, base(inputs, training=False))
    x = np.ones((64, 8), "float32")
    assert not np.allclose(alone(x, training=True), alone(x, training=False))  # what Keras does, checked


@pytest.mark.parametrize("noise", [1.0, 0.0])
def test_input_noise_that_keeps_the_training_loss_above_the_validation_loss_is_explained(noise, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 10)).astype("float32")
    y = (x[:, 0] + x[:, 1] - x[:, 2] > 0).astype(int)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.GaussianNoise(noise, name="input_noise"), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, logdir=tmp_path)
    trainer.fit(x, y, epochs=20, batch_size=32, validation_split=0.2, verbose=0)
    found = [f for f in trainer.findings if f.code == "validation-below-training"]
    if noise == 0.0:
        assert found == []  # the same model without the noise: the two losses close, no note
        return
    (f,) = found
    assert "'input_noise'" in f.message and f.evidence["mean_val_loss"] < 0.85 * f.evidence["mean_train_loss"]
    from trainkit.diagnosis.readback import diagnose_run_dir

    assert [g.to_dict() for g in diagnose_run_dir(tmp_path) if g.code == "validation-below-training"] == [f.to_dict()]


def test_a_second_fit_counts_the_batchnorm_steps_of_the_first():
    # A trainer's second fit of 14 epochs after 12 (364 steps in all at momentum 0.99, 3% of the
    # averages' start left) was judged on its own 196 steps (14%): averages that had long followed
    # the batches read as lagging, and the batch_norm_errors it read assumed they started there.
    s = overfitting_stream()
    s.context.batch_norms = {"bn": 0.99}
    d = Diagnoser(s.context)
    offset = 2000  # the first fit's steps
    for epoch in range(s.epochs):
        names, values = s.rows(epoch)
        d.begin_epoch(epoch, offset + epoch * STEPS)
        d.add_steps(offset + epoch * STEPS, names, values)
        d.end_epoch(epoch, {"loss": float(np.mean(values[:, 0])), "val_loss": s.val_loss(epoch)})
    d.finish({})
    assert "overfitting" in codes(d) and "batchnorm-lag" not in codes(d)
    # The averages' error is read over every step they moved in.
    from trainkit.diagnosis.fit_rules import batchnorm_steps
    assert batchnorm_steps(d) == offset + s.epochs * STEPS


def _in_order_fit(data: str, **fit: object) -> Trainer:
    """A trainer fitted one epoch on a dataset read in order: a rising series' windows
    (``timeseries_dataset_from_array``'s default order) under MSE, or 4 classes sorted by label."""
    rng = np.random.default_rng(0)
    if data == "series":
        series = (np.linspace(1, 120, 3000) + rng.normal(0, 1, 3000)).astype("float32")
        ds = keras.utils.timeseries_dataset_from_array(series[:-8, None], series[8:], sequence_length=8, batch_size=32)
        model = keras.Sequential([keras.Input((8, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
        trainer = Trainer(model, loss="mse", optimizer="sgd", task="regression", seed=0, diagnose=DiagnosisCallback())
    else:
        y = np.repeat(np.arange(4), 500).astype("int32")
        ds = tf.data.Dataset.from_tensor_slices((rng.standard_normal((2000, 5)).astype("float32"), y))
        ds = (ds.shuffle(2000, seed=0) if data == "shuffled" else ds).batch(32)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="softmax")])
        trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="sgd", task="multiclass", seed=0,
                          diagnose=DiagnosisCallback())
    trainer.fit(ds, epochs=1, verbose=0, **fit)
    return trainer


@pytest.mark.parametrize("check_data", [True, False])
def test_the_chance_level_of_a_series_read_in_order_reads_past_its_first_batches(check_data):
    # A rising series' windows in time order: its first 16 batches (targets ~1..17) read a chance
    # level of 35.4 where the series' variance is ~1,200, and loss-at-chance quoted it.
    context = _in_order_fit("series", check_data=check_data).diagnose.diagnoser.context
    rows = 8 * 32 + 2048 if check_data else 16 * 32 + 2048  # the checks' 8 batches, or the 16 kept, and the read past them
    targets = np.linspace(1, 120, 3000)[8:8 + rows]
    assert context.chance_loss == pytest.approx(np.var(targets), rel=0.02)
    assert context.chance_detail == f"variance of the targets, on the first {rows:,} rows: the dataset never shuffles, and was read no further"
    assert context.target_std == pytest.approx(np.std(targets), rel=0.02)
    # The first steps are the first batches' still: a fresh output near 0 scores ~0 there at best.
    assert context.first_steps_loss < 2 and context.uninformed_loss < 300


def test_the_chance_level_of_rows_sorted_by_label_is_their_prior():
    # 4 classes of 500 rows sorted by label: the first 16 batches held two classes (0.11), and a
    # model at the prior (ln 4) was far above that "chance".
    context = _in_order_fit("sorted").diagnose.diagnoser.context
    assert context.chance_loss == pytest.approx(math.log(4), rel=1e-4)
    assert context.chance_detail == "entropy of the label prior over 4 classes"  # every row read: no note


def test_a_shuffled_dataset_chance_level_reads_its_first_batches_alone():
    from trainkit.diagnosis.run_context import source_targets_read_on
    from trainkit.sources import DatasetSource

    ds = tf.data.Dataset.from_tensor_slices((np.zeros((2000, 5), "float32"), np.repeat(np.arange(4), 500))).shuffle(2000, seed=0).batch(32)
    source = DatasetSource(ds)
    assert source_targets_read_on(source) is None and source._further is None  # nothing read past the sample
    context = _in_order_fit("shuffled").diagnose.diagnoser.context
    assert context.chance_detail == "entropy of the label prior over 4 classes"


def test_the_rows_past_a_dataset_in_order_are_read_once_for_the_checks_and_the_chance_level(monkeypatch):
    from trainkit.checks import data_sampling

    # The read's 2 s budget, not its rows, ends it on a busy machine: the two fits then read
    # different numbers of rows. Rows alone end it here.
    monkeypatch.setattr(data_sampling, "FURTHER_SECONDS", 600.0)
    mapped = []

    def count(row):
        mapped.append(1)
        return row

    x = np.random.default_rng(0).standard_normal((600, 4)).astype("float32")
    y = np.linspace(0, 1, 600, dtype="float32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).map(lambda row, t: (tf.py_function(count, [row], tf.float32), t)).batch(32)
    ds = ds.map(lambda row, t: (tf.ensure_shape(row, (None, 4)), t))
    rows = {}
    for diagnose in (False, True):
        mapped.clear()
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        trainer = Trainer(model, loss="mse", optimizer="sgd", task="regression", seed=0, diagnose=DiagnosisCallback() if diagnose else False)
        trainer.fit(ds, epochs=1, verbose=0)
        rows[diagnose] = len(mapped)
    # The data checks read past their 8 batches to the end: the chance level reads nothing more. (A
    # read of its own would map the ~340 rows past the sample again; training's prefetch maps a row
    # or two more or fewer from run to run: 1,713 and 1,715 were seen.)
    assert abs(rows[True] - rows[False]) < 32
    assert trainer.diagnose.diagnoser.context.chance_loss == pytest.approx(np.var(y), rel=1e-3)


def test_lr_too_low_under_a_decaying_schedule_names_no_warm_up():
    # ExponentialDecay(2e-5, decay_steps=1000, decay_rate=0.5) for 300 epochs: its first steps ran at
    # 98-100% of the peak rate, a ratio 1% below the peak's, and lr-too-low said "they ran at a
    # warm-up's lower rates and changed them by 0.0048%" (0.0049% at the peak) of a run with no warm-up.
    s = slow_stream(1e-4)
    s.context = dataclasses.replace(s.context, learning_rate=None)  # a schedule
    s.values["learning_rate"] = lambda e, st: 1e-4 * 0.999 ** (e * STEPS + st)
    for layer in LAYERS:
        s.values[f"update_ratio/{layer}/kernel"] = lambda e, st: s.values["learning_rate"](e, st)
    f = finding(s.run(), "lr-too-low")
    assert "warm-up" not in f.message and f.message.startswith("The first steps changed the weights by only 0.0098%")


def test_train_longer_advice_under_a_schedule_that_ended_says_to_stretch_it():
    # CosineDecay(3e-5, decay_steps=3000) over 300 epochs of 10 steps: lr-too-low said "or train for
    # more epochs (fit's epochs)", but the schedule counts steps and stays at 0 past decay_steps, so
    # the added epochs would have run at a rate of 0.
    s = slow_stream(1e-4)
    s.context = dataclasses.replace(s.context, learning_rate=None, schedule="CosineDecay", schedule_rate="initial_learning_rate")
    total = s.epochs * STEPS
    s.values["learning_rate"] = lambda e, st: 1e-4 * 0.5 * (1 + math.cos(math.pi * (e * STEPS + st) / total))
    f = finding(s.run(), "lr-too-low")
    assert "or train for more epochs (training.epochs, with optimizer.learning_rate.config.decay_steps raised in proportion" in f.advice
    assert "under 1% of its largest 0.0001, and epochs added past the schedule's end run at that rate or lower)." in f.advice
    s.context = dataclasses.replace(s.context, recipe=False)
    assert "(fit's epochs, with the CosineDecay schedule's decay_steps raised in proportion" in finding(s.run(), "lr-too-low").advice
    # A constant rate, or a schedule still at a working rate at the end, is told to train longer alone.
    s.values["learning_rate"] = lambda e, st: 1e-4 * 0.5 ** ((e * STEPS + st) / total)
    assert "or train for more epochs (fit's epochs)." in finding(s.run(), "lr-too-low").advice


def test_train_longer_advice_under_a_restarting_schedule_says_nothing_of_its_end():
    # CosineDecayRestarts(1e-4, first_decay_steps) ending a cycle with the run: its last epoch ran near 0,
    # and the advice said "epochs added past the schedule's end run at that rate or lower", where they
    # restart at its largest rate.
    s = slow_stream(1e-4)
    s.context = dataclasses.replace(s.context, learning_rate=None, schedule="CosineDecayRestarts", schedule_rate="initial_learning_rate")
    cycle = s.epochs * STEPS // 2
    s.values["learning_rate"] = lambda e, st: 1e-4 * 0.5 * (1 + math.cos(math.pi * ((e * STEPS + st) % cycle) / cycle))
    assert "or train for more epochs (training.epochs)." in finding(s.run(), "lr-too-low").advice


def test_train_longer_advice_under_a_schedule_of_ones_own_names_no_argument_it_lacks():
    # A LearningRateSchedule subclass of the user's that decayed to ~0: the advice said to raise "the
    # MyDecay schedule's steps" (a recipe's too), an argument no such class need have.
    s = slow_stream(1e-4)
    s.context = dataclasses.replace(s.context, learning_rate=None, schedule="MyDecay", schedule_rate=None, recipe=False)
    total = s.epochs * STEPS
    s.values["learning_rate"] = lambda e, st: 1e-4 * (1 - (e * STEPS + st) / total)
    advice = finding(s.run(), "lr-too-low").advice
    assert "schedule's steps" not in advice and "with the step counts of your MyDecay schedule raised in proportion" in advice


@pytest.mark.parametrize("ending", ["ops_sigmoid", "nested_masked_pooling"])
def test_a_model_whose_output_comes_from_a_keras_operation_is_judged_and_trains(ending):
    # The walk back from the outputs to the layers that give them read `.weights` of every
    # operation it met: a functional model ending in keras.ops.sigmoid(...), and a Sequential
    # encoder of Embedding(mask_zero=True) + GlobalAveragePooling1D nested in a model (its mask
    # is computed by a NotEqual operation), failed every fit with
    # AttributeError: 'Sigmoid' / 'NotEqual' object has no attribute 'weights'.
    from trainkit import trained_models

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    if ending == "ops_sigmoid":
        inputs = keras.Input((4,))
        outputs = keras.ops.sigmoid(keras.layers.Dense(1)(keras.layers.Dense(8, activation="relu")(inputs)))
        x = rng.normal(size=(64, 4))
        y = (x[:, 0] > 0).astype("int32")
    else:
        encoder = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(20, 4, mask_zero=True),
                                    keras.layers.GlobalAveragePooling1D()])
        inputs = keras.Input((6,), dtype="int32")
        outputs = keras.layers.Dense(1, activation="sigmoid")(encoder(inputs))
        x = rng.integers(1, 20, size=(64, 6)).astype("int32")
        x[:, 4:] = 0  # padded at the end
        y = (x[:, 0] > 10).astype("int32")
    model = keras.Model(inputs, outputs)
    assert trained_models.trained_before(model) is False
    history = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0,
                      jit_compile=False).fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def _shared_base_and_new_heads():
    """(base, its initial weights, a function making a new model of that base under a new head)."""
    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu")])

    def headed():
        return keras.Sequential([keras.Input((4,)), base, keras.layers.Dense(1)])

    return base, base.get_weights(), headed


def test_a_base_put_back_to_its_start_under_a_new_head_is_a_fresh_start():
    # Cross-validation putting a base back (base.set_weights(initial)) under a new head each fold:
    # the earlier fold's model, alive (kept, or not yet collected), shares the base and its own
    # head trained, so every fold from the second on was judged trained before.
    from trainkit import trained_models

    x, y = regression_data(64)
    base, initial, fold_model = _shared_base_and_new_heads()
    first = fold_model()
    Trainer(first, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False).fit(x, y, epochs=1, verbose=0)
    assert trained_models.trained_before(fold_model()) is True  # the base the first fold trained
    base.set_weights(initial)
    assert trained_models.trained_before(fold_model()) is False
    assert trained_models.trained_before(first) is True  # its own head trained


def test_a_base_frozen_under_a_trained_head_is_untrained_under_a_new_one():
    # A base frozen (base.trainable = False) under a first head that a Trainer trained, unfrozen
    # under a new head: its weights never moved, yet it was judged trained before (the first
    # model's head moved), and the new model's fresh-start verdicts went unsaid.
    from trainkit import trained_models

    x, y = regression_data(64)
    base, initial, headed = _shared_base_and_new_heads()
    base.trainable = False
    first = headed()
    Trainer(first, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False).fit(x, y, epochs=2, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(initial, base.get_weights(), strict=True))
    base.trainable = True
    assert trained_models.trained_before(headed()) is False
    assert trained_models.trained_before(first) is True  # its own head trained
    # Once a fit of the first model trains the base too, a new head's model is trained before.
    Trainer(first, loss="mse", optimizer="adam", task="regression", seed=0, jit_compile=False).fit(x, y, epochs=1, verbose=0)
    assert trained_models.trained_before(headed()) is True
