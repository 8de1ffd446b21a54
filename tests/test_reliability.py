"""Reliability with real `trainkit train` processes: kill, resume, signals, non-finite losses."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainkit import Trainer
from trainkit.callbacks import Callback
from trainkit.checkpoint import TrainingCheckpoint
from trainkit.errors import ArgumentError, RecipeError, TrainingInterrupted
from trainkit.sources import unpack_batch

RECIPE = """
name: resumable
task: binary
data: {source: generator, generator: learnable_binary, rows: 3000, features: 6, seed: 0}
preprocessing: {standardize_inputs: true}
model:
  layers:
    - {type: dense, units: 16, activation: relu}
    - {type: dropout, rate: 0.3}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: adam, learning_rate: 0.01}
metrics: [accuracy]
training: {epochs: 6, batch_size: 32, steps_per_execution: 1, jit_compile: false, seed: 5, checkpoint_every: 1}
"""


def start(recipe: Path, logdir: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "trainkit.cli", "train", str(recipe), "--logdir", str(logdir), "-q", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def run_dir_of(logdir: Path) -> Path:
    (run_dir,) = [p for p in (logdir / "resumable").iterdir() if p.is_dir()]
    return run_dir


def wait_for_checkpoints(logdir: Path, count: int, proc: subprocess.Popen[str], timeout: float = 240) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sidecars = list(logdir.glob("resumable/*/checkpoints/*.json"))
        if len(sidecars) >= count:
            return sidecars[0].parents[1]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("no checkpoint appeared in time")


def final_weights(run_dir: Path) -> dict[str, np.ndarray]:
    prefix = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    reader = tf.train.load_checkpoint(prefix)
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map() if key.startswith("model/")}


def _logged_steps(run_dir: Path) -> dict[str, list[int]]:
    """Every step each tag was logged at, over all event files of ``train/`` and ``validation/``."""
    steps: dict[str, list[int]] = {}
    for split in ("train", "validation"):
        for path in sorted((run_dir / split).glob("events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                for value in event.summary.value:
                    steps.setdefault(f"{split}/{value.tag}", []).append(event.step)
    return steps


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("reliability")
    recipe = root / "resumable.yaml"
    recipe.write_text(RECIPE)
    proc = start(recipe, root / "straight")
    _out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    run_dir = run_dir_of(root / "straight")
    return recipe, {"run_dir": run_dir, "report": json.loads((run_dir / "report.json").read_text()), "weights": final_weights(run_dir)}


def assert_same_run(run_dir: Path, reference: dict) -> None:
    report = json.loads((run_dir / "report.json").read_text())
    assert report["epochs_run"] == reference["report"]["epochs_run"]
    for key, values in reference["report"]["history"].items():
        np.testing.assert_allclose(report["history"][key], values, rtol=1e-6, atol=1e-7, err_msg=key)
    weights = final_weights(run_dir)
    assert weights.keys() == reference["weights"].keys()
    for key, value in reference["weights"].items():
        np.testing.assert_allclose(weights[key], value, rtol=1e-6, atol=1e-6, err_msg=key)


def resume_to_the_end(recipe: Path, logdir: Path, run_dir: Path, reference: dict) -> None:
    """Resumes ``run_dir`` in a new process and checks it ends exactly like the reference run."""
    resumed = start(recipe, logdir, "--resume", str(run_dir))
    _out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert_same_run(run_dir, reference)
    # Each step and epoch in TensorBoard once: what the stopped process logged after its
    # checkpoint was logged again by the resumed one.
    logged, expected = _logged_steps(run_dir), _logged_steps(reference["run_dir"])
    for tag in ("train/step/loss", "train/epoch/loss", "validation/epoch/loss"):
        assert sorted(logged[tag]) == sorted(expected[tag]), tag


def test_sigkill_mid_run_then_resume_matches_uninterrupted_run(uninterrupted, tmp_path):
    recipe, reference = uninterrupted
    proc = start(recipe, tmp_path)
    wait_for_checkpoints(tmp_path, 2, proc)
    proc.send_signal(signal.SIGKILL)  # no chance to save anything: resume from the last checkpoint
    proc.wait(timeout=30)
    run_dir = run_dir_of(tmp_path)
    assert not (run_dir / "report.json").exists() or json.loads((run_dir / "report.json").read_text())["epochs_run"] < 6

    resume_to_the_end(recipe, tmp_path, run_dir, reference)


def test_sigterm_saves_flushes_and_says_how_to_resume(uninterrupted, tmp_path):
    recipe, reference = uninterrupted
    proc = start(recipe, tmp_path)
    wait_for_checkpoints(tmp_path, 1, proc)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    run_dir = run_dir_of(tmp_path)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--resume" in lines[0] and str(run_dir) in lines[0], err
    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "interrupted"
    assert list((run_dir / "train").glob("events.out.tfevents.*"))

    resume_to_the_end(recipe, tmp_path, run_dir, reference)


def test_resume_of_a_directory_without_checkpoints_is_a_clear_error(tmp_path):
    recipe = tmp_path / "resumable.yaml"  # the recipe only: no reference run to wait for
    recipe.write_text(RECIPE)
    proc = start(recipe, tmp_path, "--resume", str(tmp_path / "nothing-here"))
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert err.startswith("error: [no-checkpoint]")


def test_nonfinite_loss_stops_at_that_step_with_the_last_good_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    x[200, 0] = np.nan  # batch 6 of epoch 1 (no shuffle): steps 0-5 are clean
    keras.utils.set_random_seed(0)
    # tanh, not relu: oneDNN's ReLU kernel (TensorFlow on recent x86 CPUs) maps NaN to 0.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, jit_compile=False)
    history = trainer.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0, check_data=False)
    assert trainer.stop_reason == "nan-loss"
    assert int(trainer.global_step.numpy()) == 7  # stopped right after the bad step, not at epoch end
    assert history.epoch == []  # the abandoned epoch logs nothing
    assert all(np.isfinite(w).all() for w in model.get_weights())
    finding = next(f for f in trainer.findings if f.code == "nan-loss")
    assert finding.step == 6 and finding.severity == "error"

    # The weights are exactly those after step 5: replay the six clean steps on a fresh copy.
    keras.utils.set_random_seed(0)
    replay = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1, activation="sigmoid")])
    clean = Trainer(replay, loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, jit_compile=False, diagnose=False)
    clean.fit(x[:192], y[:192], epochs=1, batch_size=32, shuffle=False, verbose=0, check_data=False)
    for got, want in zip(model.get_weights(), replay.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_on_nan_warn_keeps_training():
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    x[40, 0] = np.inf
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, jit_compile=False, on_nan="warn", diagnose=False)
    history = trainer.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0, check_data=False)
    assert trainer.stop_reason is None and len(history.epoch) == 2


DIVERGING = """
name: diverging
task: regression
data: {source: generator, generator: learnable_regression, rows: 256, features: 4, feature_scale: 1000, target_scale: 1000, seed: 0}
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 1}
loss: mse
optimizer: {name: sgd, learning_rate: 10.0}
training: {epochs: 5, jit_compile: false}
"""


def test_cli_exits_with_its_own_code_when_the_loss_goes_nonfinite(tmp_path):
    recipe = tmp_path / "diverging.yaml"
    recipe.write_text(DIVERGING)
    proc = subprocess.run([sys.executable, "-m", "trainkit.cli", "train", str(recipe), "--logdir", str(tmp_path), "-q"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "nan-loss" in proc.stdout
    (run_dir,) = [p for p in (tmp_path / "diverging").iterdir() if p.is_dir()]
    report = json.loads((run_dir / "report.json").read_text(), parse_constant=_no_bare_constant)
    assert report["status"] == "nan-loss"
    assert any(f["code"] == "nan-loss" for f in report["findings"])


def _no_bare_constant(name: str) -> None:
    raise AssertionError(f"report.json holds a bare {name}: JSON.parse and jq refuse it")


def test_non_finite_values_are_written_as_standard_json():
    # report.json and compare --json had bare NaN / Infinity, which JavaScript's JSON.parse refuses.
    from trainkit.runs import json_text

    text = json_text({"final": {"loss": float("nan")}, "history": {"loss": [1.0, float("inf"), -float("inf")]}, "n": 3})
    assert json.loads(text, parse_constant=_no_bare_constant) == {"final": {"loss": None}, "history": {"loss": [1.0, None, None]}, "n": 3}


def checkpoint_records(logdir: Path) -> list[int]:
    """The epoch of every checkpoint record under ``logdir/checkpoints``."""
    return sorted(json.loads(p.read_text())["epoch"] for p in (logdir / "checkpoints").glob("*.json"))


@pytest.mark.parametrize(("checkpoint_every", "min_seconds", "expected"), [
    ("auto", 1e9, [4]),  # short epochs: only the final checkpoint
    ("auto", 0.0, [2, 3, 4]),  # every epoch once the interval has passed (the last 3 kept)
    (2, 1e9, [2, 4]),
    (0, 0.0, []),
])
def test_checkpoint_every(checkpoint_every, min_seconds, expected, tmp_path, monkeypatch):
    monkeypatch.setattr("trainkit.resumable.AUTO_CHECKPOINT_SECONDS", min_seconds)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, jit_compile=False,
                      diagnose=False, statistics=False, histograms_every=None, logdir=tmp_path, checkpoint_every=checkpoint_every)
    trainer.fit(x, y, epochs=4, batch_size=32, verbose=0)
    assert (checkpoint_records(tmp_path) if (tmp_path / "checkpoints").exists() else []) == expected


def test_recipe_training_options_reach_the_trainer(tmp_path):
    import yaml

    from trainkit.recipe import Recipe
    from trainkit.run import prepare_run

    def trainer_of(text: str) -> Trainer:
        return prepare_run(Recipe.from_dict(yaml.safe_load(text))).trainer

    trainer = trainer_of(RECIPE.replace("checkpoint_every: 1", "checkpoint_every: 3, on_nan: warn"))
    assert trainer.checkpoint_every == 3 and trainer.on_nan == "warn"
    assert trainer_of(RECIPE.replace(", checkpoint_every: 1", "")).checkpoint_every == "auto"


def test_a_recipe_s_mixed_float16_builder_model_trains_with_loss_scaling(tmp_path):
    # A builder's mixed_float16 model always got float16-without-loss-scaling: a recipe could not
    # ask for the LossScaleOptimizer that model.compile adds, nor the Trainer add it.
    from trainkit.recipe import load_recipe
    from trainkit.run import prepare_run

    name = f"tk_half_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "import keras\n"
        "def half(input_shape):\n"
        "    before = keras.mixed_precision.global_policy()\n"
        "    keras.mixed_precision.set_global_policy('mixed_float16')\n"
        "    try:\n"
        "        return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(4, activation='relu'), keras.layers.Dense(1, activation='sigmoid')])\n"
        "    finally:\n"
        "        keras.mixed_precision.set_global_policy(before)\n")
    model = RECIPE[RECIPE.index("model:") : RECIPE.index("loss:")]

    def trainer_of(training: str) -> Trainer:
        path = tmp_path / "r.yaml"
        path.write_text(RECIPE.replace(model, f"model: {{builder: '{name}:half'}}\n").replace("checkpoint_every: 1}", training + "}"))
        return prepare_run(load_recipe(path)).trainer

    scaled = trainer_of("checkpoint_every: 1")
    assert isinstance(scaled.optimizer, keras.optimizers.LossScaleOptimizer)
    assert "float16-without-loss-scaling" not in [f.code for f in scaled.findings]
    plain = trainer_of("checkpoint_every: 1, auto_scale_loss: false")
    assert not isinstance(plain.optimizer, keras.optimizers.LossScaleOptimizer)
    assert "float16-without-loss-scaling" in [f.code for f in plain.findings]


# -- ending a fit that failed ------------------------------------------------------------------------


def _tiny_trainer(tmp_path: Path, cls: type = Trainer, **kwargs) -> Trainer:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    return cls(model, loss="mse", optimizer="sgd", task="regression", seed=0, logdir=tmp_path, diagnose=False, **kwargs)


def _xy(rows: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(rows, 3)).astype("float32"), rng.normal(size=(rows, 1)).astype("float32")


def _writer_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name == "trainkit-tensorboard" and t.is_alive()]


def test_a_fit_that_fails_while_setting_up_closes_its_tensorboard_writer(tmp_path):
    class NoDict(Trainer):
        def train_step(self, batch):
            super().train_step(batch)
            return 1.0  # not a dict of scalars

    before = _writer_threads()
    trainer = _tiny_trainer(tmp_path, NoDict)
    with pytest.raises(ArgumentError, match="dict of scalar tensors"):
        trainer.fit(*_xy(), epochs=1, verbose=0)
    assert trainer.writer is None and _writer_threads() == before


def test_an_error_while_ending_the_run_does_not_replace_the_error_in_flight(tmp_path, capsys):
    from trainkit.callbacks import Callback

    class FailsTwice(Callback):
        def on_epoch_end(self, epoch, logs):
            raise ValueError("the real problem")

        def on_train_end(self, logs=None):
            raise RuntimeError("cleanup broke too")

    trainer = _tiny_trainer(tmp_path)
    with pytest.raises(ValueError, match="the real problem"):
        trainer.fit(*_xy(), epochs=2, verbose=0, callbacks=[FailsTwice()])
    assert "cleanup broke too" in capsys.readouterr().err
    assert trainer.writer is None


def test_an_error_while_ending_a_good_run_is_raised_after_the_writer_is_closed(tmp_path):
    from trainkit.callbacks import Callback

    class FailsAtEnd(Callback):
        def on_train_end(self, logs=None):
            raise RuntimeError("cleanup broke")

    trainer = _tiny_trainer(tmp_path)
    with pytest.raises(RuntimeError, match="cleanup broke"):
        trainer.fit(*_xy(), epochs=1, verbose=0, callbacks=[FailsAtEnd()])
    assert trainer.writer is None and list((tmp_path / "train").glob("events.out.tfevents.*"))


def test_signal_handlers_installed_outside_python_are_replaced_by_pythons_defaults(monkeypatch):
    from trainkit import interrupt

    installed = {}

    def fake_signal(sig, handler):
        previous = installed.get(sig)  # None: what Python reports for a C-level handler
        installed[sig] = handler
        return previous

    monkeypatch.setattr(interrupt.signal, "signal", fake_signal)
    with interrupt.stop_on_signals():
        pass
    assert installed[signal.SIGINT] is signal.default_int_handler and installed[signal.SIGTERM] is signal.SIG_DFL


@pytest.mark.parametrize("with_logdir", [True, False])
def test_an_interrupted_fit_says_whether_it_wrote_a_checkpoint(tmp_path, with_logdir):
    from trainkit.callbacks import Callback
    from trainkit.errors import TrainingInterrupted

    class Terminate(Callback):
        def on_epoch_end(self, epoch, logs):
            os.kill(os.getpid(), signal.SIGTERM)  # caught by fit: stops before the next epoch's first call

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    trainer = Trainer(model, loss="mse", optimizer="sgd", task="regression", seed=0, diagnose=False, logdir=tmp_path if with_logdir else None)
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit(*_xy(), epochs=5, verbose=0, callbacks=[Terminate()])
    assert info.value.exit_code == 143
    expected = "a checkpoint was written" if with_logdir else "no checkpoint was written (no logdir)"
    assert expected in info.value.message
    assert (tmp_path / "checkpoints").exists() == with_logdir


def test_a_signal_between_calls_stops_the_run_before_it_trains_another_step(tmp_path):
    # SIGINT in on_epoch_end was seen only after the next epoch's first call: 21 steps trained
    # where the History held 2 epochs of 7 (the sweep audit). The resume then starts where it stopped.
    from trainkit.callbacks import Callback
    from trainkit.errors import TrainingInterrupted

    class Interrupt(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    x, y = _xy(112)  # 7 batches of 16
    trainer = _tiny_trainer(tmp_path)
    with pytest.raises(TrainingInterrupted):
        trainer.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[Interrupt()])
    assert len(trainer.history.epoch) == 2 and trainer.step == 14
    resumed = _tiny_trainer(tmp_path)
    history = resumed.fit(x, y, epochs=4, batch_size=16, verbose=0, resume=True)
    assert history.epoch == [0, 1, 2, 3] and resumed.step == 28


@pytest.mark.parametrize("at", [1, 3])
def test_a_signal_in_the_last_epochs_on_epoch_end_interrupts_the_run_as_in_any_other(tmp_path, at):
    # SIGINT in on_epoch_end of the last epoch (of 4) was dropped: fit returned, stop_reason None,
    # and the CLI said "trained 4 epochs" with exit 0 where the same Ctrl-C an epoch earlier was an
    # interruption (exit 130). The resume of the interrupted run trains what is left, if anything.
    from trainkit.callbacks import Callback

    class Interrupt(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == at:
                os.kill(os.getpid(), signal.SIGINT)

    x, y = _xy(32)
    trainer = _tiny_trainer(tmp_path)
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[Interrupt()])
    assert info.value.exit_code == 130 and trainer.stop_reason == "interrupted"
    assert info.value.message.startswith(f"Training stopped by SIGINT after epoch {at + 1};")
    assert trainer.history.epoch == list(range(at + 1)) and trainer.step == 2 * (at + 1)
    resumed = _tiny_trainer(tmp_path)
    history = resumed.fit(x, y, epochs=4, batch_size=16, verbose=0, resume=True)
    assert history.epoch == [0, 1, 2, 3] and resumed.step == 8 and resumed.stop_reason is None


def test_a_keyboard_interrupt_raised_in_a_callback_ends_the_run_interrupted_not_failed(tmp_path):
    # A KeyboardInterrupt raised as such (a callback's, a second Ctrl-C) left stop_reason None and
    # gave on_train_end and the HParams dashboard "failed" (an end record), where the CLI said
    # "interrupted" (exit 130); the stop request's interruption writes no end record.
    from trainkit.callbacks import Callback

    ends = []

    class Interrupt(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

        def on_train_end(self, logs=None):
            ends.append(logs["stop_reason"])

    trainer = _tiny_trainer(tmp_path, hparams={"lr": 0.1})
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(*_xy(), epochs=3, verbose=0, callbacks=[Interrupt()])
    assert trainer.stop_reason == "interrupted" and ends == ["interrupted"]
    assert not list(tmp_path.glob("*.hparams_end"))


@pytest.mark.parametrize("hook", ["on_epoch_begin", "on_execution_end", "on_epoch_end"])
def test_a_keyboard_interrupt_raised_in_a_callback_checkpoints_the_run_as_ctrl_c_does(tmp_path, hook):
    # A callback's KeyboardInterrupt went out as it was, with no checkpoint: a run of 2 epochs
    # (14 steps) without one due yet had nothing to resume ("no-checkpoint"). It now stops the
    # run as Ctrl-C does: a checkpoint where it stopped (the interrupting call's steps counted,
    # or the epoch ended), TrainingInterrupted, and a resume that ends as the whole run did. The
    # callbacks after it still get the hook, as with Ctrl-C, so none misses or repeats an event.
    class Raises(Callback):
        def __init__(self):
            self.fired = False

        def _at(self, now: bool) -> None:
            if now and not self.fired:
                self.fired = True
                raise KeyboardInterrupt

        def on_epoch_begin(self, epoch, logs=None):
            self._at(hook == "on_epoch_begin" and epoch == 2)

        def on_execution_end(self, first_step, outputs):
            self._at(hook == "on_execution_end" and first_step == 9)  # in epoch 2, 3 steps of 7 in

        def on_epoch_end(self, epoch, logs=None):
            self._at(hook == "on_epoch_end" and epoch == 1)

    class Counts(Callback):
        def __init__(self):
            self.steps, self.epochs = 0, 0

        def on_execution_end(self, first_step, outputs):
            self.steps += outputs.steps

        def on_epoch_end(self, epoch, logs=None):
            self.epochs += 1

        def get_state(self):
            return {"steps": self.steps, "epochs": self.epochs}

        def set_state(self, state):
            self.steps, self.epochs = state["steps"], state["epochs"]

    x, y = _xy(112)  # 7 batches of 16, in calls of 2
    whole = _tiny_trainer(tmp_path / "whole", steps_per_execution=2).fit(x, y, epochs=4, batch_size=16, verbose=0).history["loss"]
    trainer, raises = _tiny_trainer(tmp_path / "run", steps_per_execution=2), Raises()
    with pytest.raises(KeyboardInterrupt) as info:  # (a bare one, uncaught, would end the test session)
        trainer.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[raises, Counts()])
    assert isinstance(info.value, TrainingInterrupted) and info.value.exit_code == 130 and trainer.stop_reason == "interrupted"
    assert "KeyboardInterrupt raised in a callback" in info.value.message and "a checkpoint was written" in info.value.message
    assert isinstance(info.value.__cause__, KeyboardInterrupt)
    counts = Counts()
    resumed = _tiny_trainer(tmp_path / "run", steps_per_execution=2)
    history = resumed.fit(x, y, epochs=4, batch_size=16, verbose=0, resume=True, callbacks=[raises, counts])
    assert history.epoch == [0, 1, 2, 3] and resumed.step == 28
    np.testing.assert_allclose(history.history["loss"], whole, rtol=1e-6)
    assert (counts.steps, counts.epochs) == (28, 4)  # every step and epoch once, across the two fits


@pytest.mark.parametrize("traced", ["training", "validation"])
def test_a_fit_interrupted_while_its_steps_trace_leaves_a_trainer_that_fits_again(traced):
    # Ctrl-C during a notebook's first fit, while its step traced (seconds for a large model), left
    # the trainer holding a loop that never learned its outputs' names: every later fit failed,
    # "[bad-step-output] train_step must return the step's loss ... it returned an empty dict"
    # (the training step's) or an AssertionError (the validation step's).
    armed = {"on": False}

    class CtrlC(keras.layers.Layer):
        def call(self, inputs, training=None):
            if armed["on"] and bool(training) == (traced == "training"):
                armed["on"] = False
                raise KeyboardInterrupt
            return inputs

    x, y = _xy()
    model = keras.Sequential([keras.Input((3,)), CtrlC(), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
    trainer = Trainer(model, loss="mse", optimizer="sgd", task="regression", seed=0, jit_compile=False)
    armed["on"] = True
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(x, y, epochs=2, verbose=0, validation_split=0.25)
    assert not armed["on"]  # interrupted in that trace
    history = trainer.fit(x, y, epochs=2, verbose=0, validation_split=0.25)
    assert history.epoch == [0, 1] and set(history.history) == {"loss", "val_loss"}
    assert np.isfinite(trainer.evaluate(x, y, verbose=0)["loss"])


def test_an_interrupted_fit_is_not_swallowed_by_a_loop_that_catches_exception():
    # TrainingInterrupted was a TrainkitError, an Exception: a loop of runs that logs a failed run
    # and goes on (except Exception) went on to its next run after the user's Ctrl-C.
    from trainkit.callbacks import Callback
    from trainkit.errors import TrainingInterrupted

    class Interrupt(Callback):
        def on_epoch_end(self, epoch, logs):
            os.kill(os.getpid(), signal.SIGINT)

    trained = []
    with pytest.raises(KeyboardInterrupt) as info:
        for seed in (0, 1):
            try:
                Trainer(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]), loss="mse", optimizer="sgd", task="regression",
                        seed=seed, diagnose=False).fit(*_xy(), epochs=3, verbose=0, callbacks=[Interrupt()])
            except Exception:  # a failed run: noted, and the loop goes on
                continue
            trained.append(seed)
    assert isinstance(info.value, TrainingInterrupted) and info.value.code == "interrupted" and info.value.exit_code == 130
    assert trained == []


@pytest.mark.parametrize("strategy", ["mirrored", "none"])
def test_resuming_an_epoch_whose_batches_all_ran_trains_every_later_epoch(tmp_path, strategy):
    # SIGTERM lands while an epoch's one call runs: the checkpoint holds all its batches done.
    # The resumed epoch then has nothing left, and must not trace the streaming loop on an empty
    # iterator (under a strategy that trace ran 0 steps in every later epoch).
    from trainkit.callbacks import Callback

    class Terminate(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")

    def fit(logdir, **kwargs):
        distributed = tf.distribute.MirroredStrategy(["/cpu:0"]) if strategy == "mirrored" else None
        with distributed.scope() if distributed else contextlib.nullcontext():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
        trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, diagnose=False, logdir=logdir, strategy=distributed)
        return trainer.fit(x, y, epochs=3, batch_size=32, verbose=0, validation_split=0.2, **kwargs).history

    resumed, expected = _resumed_and_whole(fit, tmp_path, Terminate())
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(resumed[key], expected[key], rtol=1e-6, err_msg=key)


def _resumed_and_whole(fit, tmp_path: Path, stop) -> tuple:
    """What ``fit(logdir, **kwargs)`` returns for a run that ``stop`` (a callback sending SIGTERM)
    interrupted and that was then resumed, and for the same run uninterrupted."""
    expected = fit(tmp_path / "whole")
    with pytest.raises(TrainingInterrupted):
        fit(tmp_path / "cut", callbacks=[stop])
    return fit(tmp_path / "cut", resume=True), expected


def _damage(prefix: Path, how: str) -> None:
    """Damages a checkpoint as a full disk, a crash or a hand edit might: its data file cut short,
    its index deleted, or its progress record not UTF-8, not a mapping, without its epoch, or with
    a key of the wrong type."""
    record = prefix.with_name(prefix.name + ".json")
    if how == "truncated-data":
        (data,) = prefix.parent.glob(prefix.name + ".data-*")
        os.truncate(data, 20)
    elif how == "missing-index":
        prefix.with_name(prefix.name + ".index").unlink()
    elif how.startswith("state-file"):  # the manager's list of checkpoints, not one checkpoint
        (prefix.parent / "checkpoint").write_bytes({"state-file": b"garbage {", "state-file-empty": b"", "state-file-not-utf8": b"\xff\xfe\x00"}[how])
    else:
        whole = b'"batches_done": 0, "seed": 0, "epochs": []'
        record.write_bytes({
            "record-not-utf8": b"\xff\xfe\x00", "record-a-list": b"[]", "record-empty": b"{}", "record-epoch-only": b'{"epoch": 2}',
            "record-history-not-a-mapping": b'{"epoch": 2, ' + whole + b', "history": "x"}',
            "record-journal-not-a-mark": b'{"epoch": 2, ' + whole + b', "history": {}, "journal": "x"}',
        }[how])


@pytest.mark.parametrize("how", ["deleted", "cut-short"])
def test_a_resume_says_when_event_files_of_the_checkpoint_are_gone(tmp_path, capsys, how):
    # Deleted or cut short since the checkpoint: the resume went on without a word, and TensorBoard
    # and trainkit diagnose showed only the epochs after it.
    _tiny_trainer(tmp_path, checkpoint_every=1).fit(*_xy(), epochs=2, verbose=0)
    (events,) = (tmp_path / "train").glob("events.out.tfevents.*")
    if how == "deleted":
        events.unlink()
    else:
        os.truncate(events, events.stat().st_size // 2)
    capsys.readouterr()
    _tiny_trainer(tmp_path, checkpoint_every=1).fit(*_xy(), epochs=3, verbose=0, resume=True)
    assert f"warning: [events-lost] train/{events.name} in {tmp_path} is gone or shorter than at the checkpoint" in capsys.readouterr().err
    capsys.readouterr()
    _tiny_trainer(tmp_path, checkpoint_every=1).fit(*_xy(), epochs=4, verbose=0, resume=True)  # intact: nothing said
    assert "events-lost" not in capsys.readouterr().err


@pytest.mark.parametrize("how", ["state-file", "state-file-empty", "state-file-not-utf8"])
def test_a_damaged_list_of_checkpoints_falls_back_to_the_checkpoints_themselves(tmp_path, how):
    # "Nothing to resume: no complete checkpoint" although all three were intact; an empty list or
    # one not UTF-8 was a ValueError / UnicodeDecodeError traceback from TensorFlow's manager.
    whole = _tiny_trainer(tmp_path, checkpoint_every=1).fit(*_xy(), epochs=3, verbose=0).history
    _damage(tmp_path / "checkpoints" / "ckpt-3", how)
    assert _tiny_trainer(tmp_path, checkpoint_every=1).fit(*_xy(), epochs=3, verbose=0, resume=True).history == whole


@pytest.mark.parametrize("how", ["state-file", "state-file-empty", "deleted"])
def test_a_run_resumed_past_a_damaged_list_of_checkpoints_still_keeps_only_the_last_ones(tmp_path, capsys, how):
    # The manager read the damaged (or missing) list as no checkpoints, so it never deleted the
    # older ones: ckpt-1..3 stayed on disk forever beside the new ones, their records deleted.
    _tiny_trainer(tmp_path, checkpoint_every=1).fit(*_xy(), epochs=3, verbose=0)
    checkpoints = tmp_path / "checkpoints"
    if how == "deleted":
        (checkpoints / "checkpoint").unlink()
    else:
        _damage(checkpoints / "ckpt-3", how)
    capsys.readouterr()
    _tiny_trainer(tmp_path, checkpoint_every=1).fit(*_xy(), epochs=5, verbose=0, resume=True)
    assert sorted(p.name for p in checkpoints.glob("ckpt-*.index")) == ["ckpt-3.index", "ckpt-4.index", "ckpt-5.index"]
    assert sorted(p.name for p in checkpoints.glob("ckpt-*.json")) == ["ckpt-3.json", "ckpt-4.json", "ckpt-5.json"]
    said = "warning: [checkpoint-corrupt]" in capsys.readouterr().err
    assert said is (how != "deleted") and (checkpoints / "checkpoint.damaged").exists() is said


@pytest.mark.parametrize("how", ["truncated-data", "missing-index", "record-not-utf8", "record-a-list", "record-empty",
                                 "record-epoch-only", "record-history-not-a-mapping", "record-journal-not-a-mark"])
def test_a_damaged_newest_checkpoint_is_skipped_for_the_next_older_one(tmp_path, capsys, how):
    # Resuming died with TensorFlow's IndexError / NotFoundError although older checkpoints were intact;
    # a record with its epoch but not the rest (edited, or cut to valid JSON) with a KeyError or
    # AttributeError traceback.
    whole = _tiny_trainer(tmp_path, checkpoint_every=1).fit(*_xy(), epochs=3, verbose=0).history
    _damage(tmp_path / "checkpoints" / "ckpt-3", how)  # 1 step an epoch: the checkpoint of epoch 3
    resumed = _tiny_trainer(tmp_path, checkpoint_every=1).fit(*_xy(), epochs=3, verbose=0, resume=True).history
    assert resumed == whole  # epoch 3 trained again from the checkpoint of epoch 2
    assert "warning: [checkpoint-corrupt] Skipped damaged checkpoint(s) ckpt-3" in capsys.readouterr().err


def test_resuming_when_no_checkpoint_reads_back_is_a_checkpoint_corrupt_error(tmp_path):
    from trainkit.errors import RunDirError

    _tiny_trainer(tmp_path, checkpoint_every=1).fit(*_xy(), epochs=2, verbose=0)
    for prefix in ("ckpt-1", "ckpt-2"):
        _damage(tmp_path / "checkpoints" / prefix, "truncated-data")
    with pytest.raises(RunDirError) as info:
        _tiny_trainer(tmp_path, checkpoint_every=1).fit(*_xy(), epochs=3, verbose=0, resume=True)
    assert info.value.code == "checkpoint-corrupt" and "ckpt-2 (" in info.value.message and "\n" not in info.value.message


def test_a_run_killed_after_its_checkpoint_logs_no_step_twice_when_resumed(tmp_path):
    # Whatever the killed process logged after its last checkpoint, the resumed run logged again:
    # TensorBoard showed those steps and epochs twice.
    import re

    def logged(run_dir: Path) -> dict[str, list[int]]:  # each fit's model has new layer names
        steps: dict[str, list[int]] = {}
        for tag, at in _logged_steps(run_dir).items():
            steps.setdefault(re.sub(r"dense_\d+", "dense", tag), []).extend(at)
        return {tag: sorted(at) for tag, at in steps.items()}

    fit = dict(epochs=4, batch_size=8, validation_split=0.2, verbose=0)  # 2 steps an epoch
    _tiny_trainer(tmp_path / "whole", checkpoint_every=2).fit(*_xy(), **fit)
    _tiny_trainer(tmp_path / "cut", checkpoint_every=2).fit(*_xy(), **fit)
    # Killed in epoch 4 before its checkpoint, its events written: the newest checkpoint is epoch 2's.
    (tmp_path / "cut" / "checkpoints" / "ckpt-8.json").unlink()
    _tiny_trainer(tmp_path / "cut", checkpoint_every=2).fit(*_xy(), **fit, resume=True)
    resumed = logged(tmp_path / "cut")
    assert resumed["train/epoch/loss"] == [0, 1, 2, 3] and resumed["validation/epoch/loss"] == [0, 1, 2, 3]
    assert resumed["train/step/loss"] == list(range(8))
    assert resumed == logged(tmp_path / "whole")


@pytest.mark.parametrize("units", [[5], [4, 4]], ids=["wider", "one-layer-more"])
def test_resuming_with_another_model_is_a_resume_mismatch_error(tmp_path, units):
    # Without the run's recipe.yaml to compare, a changed layer width reached the restore: a raw
    # ValueError (shape mismatch) from TensorFlow.
    from trainkit.errors import RecipeError

    def trainer(hidden: list[int]) -> Trainer:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), *(keras.layers.Dense(n) for n in hidden), keras.layers.Dense(1)])
        return Trainer(model, loss="mse", optimizer="sgd", task="regression", seed=0, logdir=tmp_path, diagnose=False)

    trainer([4]).fit(*_xy(), epochs=1, verbose=0)
    with pytest.raises(RecipeError) as info:
        trainer(units).fit(*_xy(), epochs=2, verbose=0, resume=True)
    assert info.value.code == "resume-mismatch" and "\n" not in info.value.message


def test_a_resumed_run_keeps_its_one_hparams_record(tmp_path):
    # Each resume wrote another HParams file into the run's root.
    _tiny_trainer(tmp_path, checkpoint_every=1, hparams={"lr": 0.01}).fit(*_xy(), epochs=1, verbose=0)
    _tiny_trainer(tmp_path, checkpoint_every=1, hparams={"lr": 0.01}).fit(*_xy(), epochs=2, verbose=0, resume=True)
    assert len(list(tmp_path.glob("*.hparams"))) == 1


def test_resuming_with_other_hyperparameters_is_a_resume_mismatch_error(tmp_path):
    # Without the run's recipe.yaml to compare, only the model's shapes were checked: a changed
    # learning rate resumed silently.
    from trainkit.errors import RecipeError

    _tiny_trainer(tmp_path, checkpoint_every=1, hparams={"learning_rate": 0.01, "batch_size": 8}).fit(*_xy(), epochs=1, verbose=0)
    with pytest.raises(RecipeError) as info:
        _tiny_trainer(tmp_path, checkpoint_every=1, hparams={"learning_rate": 0.05, "batch_size": 8}).fit(*_xy(), epochs=2, verbose=0, resume=True)
    assert info.value.code == "resume-mismatch" and "learning_rate = 0.01, not 0.05" in info.value.message
    same = _tiny_trainer(tmp_path, checkpoint_every=1, hparams={"learning_rate": 0.01, "batch_size": 8})
    same.fit(*_xy(), epochs=2, verbose=0, resume=True)
    assert same.history.epoch == [0, 1]



def _abs_loss(y_true, y_pred):
    return keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)


@pytest.mark.parametrize(("then", "now", "says"), [
    ({"loss": "mse"}, {"loss": "mae"}, "loss = MeanSquaredError(), not MeanAbsoluteError()"),
    ({"loss": "mse"}, {"loss": _abs_loss}, f"loss = MeanSquaredError(), not {__name__}._abs_loss"),
    ({"optimizer": "adam"}, {"optimizer": "adamax"}, "optimizer = Adam, not Adamax"),  # the same slots: restored in silence
    ({"optimizer": "adam"}, {"optimizer": "sgd"}, "optimizer = Adam, not SGD"),  # was "it holds 6 optimizer variables, this run has 2"
    ({"optimizer": keras.optimizers.SGD(0.01)}, {"optimizer": keras.optimizers.SGD(0.05)}, "learning_rate = 0.01, not 0.05"),
    ({"metrics": ["mae"]}, {"metrics": ["mse"]}, "metrics = [mean_absolute_error], not [mean_squared_error]"),
    # The optimizer's other settings resumed in silence: only its class and rate were recorded.
    ({"optimizer": keras.optimizers.Adam(beta_1=0.9)}, {"optimizer": keras.optimizers.Adam(beta_1=0.5)}, "optimizer = Adam(beta_1=0.9), not Adam(beta_1=0.5)"),
    ({"optimizer": keras.optimizers.AdamW(weight_decay=0.004)}, {"optimizer": keras.optimizers.AdamW(weight_decay=0.1)},
     "optimizer = AdamW(weight_decay=0.004), not AdamW(weight_decay=0.1)"),
    ({"optimizer": keras.optimizers.SGD()}, {"optimizer": keras.optimizers.SGD(clipnorm=1.0)}, "optimizer = SGD(clipnorm=None), not SGD(clipnorm=1.0)"),
    ({"optimizer": keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9))},
     {"optimizer": keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9), beta_2=0.99)},
     "optimizer = Adam(beta_2=0.999), not Adam(beta_2=0.99)"),
    # Every lambda was recorded as <module>.<lambda>: another one resumed in silence.
    ({"loss": lambda t, p: keras.ops.mean((t - p) ** 2, axis=-1)}, {"loss": lambda t, p: keras.ops.mean(keras.ops.abs(t - p), axis=-1)},
     f"loss = {__name__}.<lambda> [code "),
], ids=["loss-name", "loss-function", "optimizer-same-slots", "optimizer", "learning-rate", "metrics", "beta_1", "weight_decay", "clipnorm",
        "schedule-beta_2", "lambda"])
def test_a_python_resume_is_checked_against_the_loss_optimizer_and_metrics(tmp_path, then, now, says):
    # Only the user's hparams were compared: another loss, optimizer or metrics of the same
    # variable count resumed in silence, and SGD(0.05) trained on at the checkpoint's 0.01.
    def trainer(settings):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        given = {"loss": "mse", "optimizer": "sgd", **settings}
        return Trainer(model, task="regression", seed=0, logdir=tmp_path, diagnose=False, checkpoint_every=1, **given)

    trainer(then).fit(*_xy(), epochs=1, verbose=0)
    with pytest.raises(RecipeError) as info:
        trainer(now).fit(*_xy(), epochs=2, verbose=0, resume=True)
    assert info.value.code == "resume-mismatch" and says in info.value.message, info.value.message
    assert "a logdir of its own, or fit without resume=True" in info.value.message


def test_a_python_resume_with_the_same_setup_spelt_otherwise_goes_on(tmp_path):
    # "mse" is MeanSquaredError(); a learning rate a callback lowered is not the one given; a loss
    # function imported again is the same function; a checkpoint without the record is not checked.
    import importlib

    (tmp_path / "own_losses_for_resume.py").write_text("def loss(y_true, y_pred):\n    return (y_true - y_pred) ** 2\n")
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("own_losses_for_resume")

        class Halve(Callback):
            def on_epoch_end(self, epoch, logs=None):
                self.trainer.optimizer.learning_rate.assign(self.trainer.optimizer.learning_rate * 0.5)

        def trainer(logdir, loss, metrics=("mae",)):
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
            return Trainer(model, loss=loss, optimizer=keras.optimizers.Adam(0.01), metrics=list(metrics), task="regression", seed=0,
                           logdir=logdir, diagnose=False, checkpoint_every=1)

        trainer(tmp_path / "a", "mse").fit(*_xy(), epochs=1, verbose=0, callbacks=[Halve()])
        resumed = trainer(tmp_path / "a", keras.losses.MeanSquaredError(), [keras.metrics.MeanAbsoluteError()])
        resumed.fit(*_xy(), epochs=2, verbose=0, resume=True)
        assert resumed.history.epoch == [0, 1]
        trainer(tmp_path / "b", module.loss).fit(*_xy(), epochs=1, verbose=0)
        del sys.modules["own_losses_for_resume"]
        again = importlib.import_module("own_losses_for_resume")
        assert again.loss is not module.loss
        trainer(tmp_path / "b", again.loss).fit(*_xy(), epochs=2, verbose=0, resume=True)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("own_losses_for_resume", None)
    # Written before the record: resumed with another loss, unchecked as before.
    for record in (tmp_path / "a" / "checkpoints").glob("ckpt-*.json"):
        progress = json.loads(record.read_text())
        progress.pop("setup")
        record.write_text(json.dumps(progress))
    older = trainer(tmp_path / "a", "mae")
    older.fit(*_xy(), epochs=3, verbose=0, resume=True)
    assert older.history.epoch == [0, 1, 2]


def test_a_python_resume_with_the_same_optimizer_settings_or_a_record_without_them_goes_on(tmp_path):
    # Two equal optimizers (named adam and adam_1 by Keras), the same schedule, a numpy clipnorm:
    # the same settings. A checkpoint written before the settings were recorded resumes unchecked
    # for them (and checked for the rest).
    import numpy as np

    schedule = keras.optimizers.schedules.ExponentialDecay

    def trainer(logdir, optimizer):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        return Trainer(model, loss="mse", optimizer=optimizer, task="regression", seed=0, logdir=logdir, diagnose=False, checkpoint_every=1)

    for name, first, again in (("adam", keras.optimizers.Adam(beta_1=0.5), keras.optimizers.Adam(beta_1=0.5)),
                               ("schedule", keras.optimizers.Adam(schedule(0.1, 10, 0.9)), keras.optimizers.Adam(schedule(0.1, 10, 0.9))),
                               ("clip", keras.optimizers.SGD(clipnorm=np.float32(1.0)), keras.optimizers.SGD(clipnorm=1.0))):
        trainer(tmp_path / name, first).fit(*_xy(), epochs=1, verbose=0)
        resumed = trainer(tmp_path / name, again)
        resumed.fit(*_xy(), epochs=2, verbose=0, resume=True)
        assert resumed.history.epoch == [0, 1], name
    for record in (tmp_path / "adam" / "checkpoints").glob("ckpt-*.json"):
        progress = json.loads(record.read_text())
        assert progress["setup"].pop("optimizer_settings")["beta_1"] == 0.5
        record.write_text(json.dumps(progress))
    older = trainer(tmp_path / "adam", keras.optimizers.Adam(beta_1=0.9))
    older.fit(*_xy(), epochs=3, verbose=0, resume=True)
    assert older.history.epoch == [0, 1, 2]
    with pytest.raises(RecipeError, match=r"learning_rate = 0\.001, not 0\.01"):
        trainer(tmp_path / "adam", keras.optimizers.Adam(0.01)).fit(*_xy(), epochs=4, verbose=0, resume=True)


def test_a_python_resume_with_a_lambda_of_the_same_code_or_a_record_without_its_code_goes_on(tmp_path):
    # A lambda is told by its code, not its name (every lambda's is <lambda>): the same code, on
    # another line and with other argument names, is the same loss; a record of a lambda without
    # its code (written before) compares the name alone, as before.
    def trainer(loss):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        return Trainer(model, loss=loss, optimizer="sgd", task="regression", seed=0, logdir=tmp_path, diagnose=False, checkpoint_every=1)

    trainer(lambda t, p: keras.ops.mean((t - p) ** 2, axis=-1)).fit(*_xy(), epochs=1, verbose=0)
    resumed = trainer(
        lambda y_true, y_pred: keras.ops.mean((y_true - y_pred) ** 2, axis=-1))
    resumed.fit(*_xy(), epochs=2, verbose=0, resume=True)
    assert resumed.history.epoch == [0, 1]
    for record in (tmp_path / "checkpoints").glob("ckpt-*.json"):
        progress = json.loads(record.read_text())
        assert " [code " in progress["setup"]["loss"]
        progress["setup"]["loss"] = f"{__name__}.test_a_python_resume_with_a_lambda_of_the_same_code_or_a_record_without_its_code_goes_on.<locals>.<lambda>"
        record.write_text(json.dumps(progress))
    older = trainer(lambda t, p: keras.ops.mean(keras.ops.abs(t - p), axis=-1))
    older.fit(*_xy(), epochs=3, verbose=0, resume=True)
    assert older.history.epoch == [0, 1, 2]


@pytest.mark.parametrize(("then", "now", "same"), [
    ({"a": "mse", "b": "mae"}, ["mse", "mae"], True),
    ("mse", {"a": "mse", "b": "mse"}, True),
    ("mse", ["mse", "mse"], True),
    ({"a": "mse", "b": "mae"}, ["mae", "mse"], False),
    ("mse", {"a": "mse", "b": "mae"}, False),
], ids=["dict-list", "one-dict", "one-list", "dict-list-other", "one-dict-other"])
def test_a_two_output_models_losses_spelt_per_output_otherwise_resume(tmp_path, then, now, same):
    # The same losses by output name, in the outputs' order, or one for both (as the Trainer reads
    # them) were refused: 'trained with loss = {"a": "MeanSquaredError()", "b":
    # "MeanAbsoluteError()"}, not ["MeanSquaredError()", "MeanAbsoluteError()"]'.
    def trainer(loss):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((3,))
        model = keras.Model(inputs, [keras.layers.Dense(1, name="a")(inputs), keras.layers.Dense(1, name="b")(inputs)])
        return Trainer(model, loss=loss, optimizer="sgd", task="regression", seed=0, logdir=tmp_path, diagnose=False, checkpoint_every=1)

    x, y = _xy()
    trainer(then).fit(x, [y, y], epochs=1, verbose=0)
    if same:
        resumed = trainer(now)
        resumed.fit(x, [y, y], epochs=2, verbose=0, resume=True)
        assert resumed.history.epoch == [0, 1]
    else:
        with pytest.raises(RecipeError) as info:
            trainer(now).fit(x, [y, y], epochs=2, verbose=0, resume=True)
        assert info.value.code == "resume-mismatch" and "was trained with loss = " in info.value.message


def test_the_same_optimizer_given_again_after_a_callback_lowered_its_rate_resumes(tmp_path):
    # Given again after a callback halved its rate (0.01 given, 0.005 reached), the same optimizer
    # was refused: "trained with learning_rate = 0.01, not 0.005". The run's first rate stays
    # recorded: a later resume given Adam(0.01) goes on too, and Adam(0.02) is still refused.
    class Halve(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.trainer.optimizer.learning_rate.assign(self.trainer.optimizer.learning_rate * 0.5)

    def trainer(model, optimizer):
        return Trainer(model, loss="mse", optimizer=optimizer, task="regression", seed=0, logdir=tmp_path, diagnose=False, checkpoint_every=1)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.Adam(0.01)
    trainer(model, optimizer).fit(*_xy(), epochs=1, verbose=0, callbacks=[Halve()])
    again = trainer(model, optimizer)
    again.fit(*_xy(), epochs=2, verbose=0, resume=True)
    assert again.history.epoch == [0, 1]
    fresh = trainer(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]), keras.optimizers.Adam(0.01))
    fresh.fit(*_xy(), epochs=3, verbose=0, resume=True)
    assert fresh.history.epoch == [0, 1, 2]
    with pytest.raises(RecipeError) as info:
        trainer(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]), keras.optimizers.Adam(0.02)).fit(*_xy(), epochs=4, verbose=0, resume=True)
    assert "was trained with learning_rate = 0.01, not 0.02" in info.value.message


def test_a_resume_is_checked_against_the_data_seed_and_not_against_keys_added_since(tmp_path):
    # With recipe.yaml gone, a run resumed with another data.seed (other rows) was accepted.
    from trainkit.errors import RecipeError

    _tiny_trainer(tmp_path, checkpoint_every=1, hparams={"data_seed": 0, "lr": 0.01}).fit(*_xy(), epochs=1, verbose=0)
    with pytest.raises(RecipeError, match="data_seed = 0, not 3"):
        _tiny_trainer(tmp_path, checkpoint_every=1, hparams={"data_seed": 3, "lr": 0.01}).fit(*_xy(), epochs=2, verbose=0, resume=True)
    # A checkpoint written before a hyperparameter existed still resumes.
    newer = _tiny_trainer(tmp_path, checkpoint_every=1, hparams={"data_seed": 0, "lr": 0.01, "added_later": 1})
    newer.fit(*_xy(), epochs=2, verbose=0, resume=True)
    assert newer.history.epoch == [0, 1]


def test_a_recipe_s_hyperparameters_hold_its_data_seed(tmp_path):
    from trainkit.recipe import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: binary\ndata: {source: generator, generator: learnable_binary, rows: 100, features: 3, seed: 5}\n"
                      "model: {layers: [{type: dense, units: 1, activation: sigmoid}]}\nloss: binary_crossentropy\n")
    assert load_recipe(recipe).hparams()["data_seed"] == 5


class _TwoOptimizers(Trainer):
    """A GAN-like step: the first layer has an optimizer of its own."""

    def __init__(self, *args, build_second: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.first_layer_optimizer = keras.optimizers.Adam(0.01)
        if build_second:
            self.first_layer_optimizer.build(self.model.layers[0].trainable_variables)

    def train_step(self, batch):
        x, y, _ = unpack_batch(batch)
        first, rest = self.model.layers[0].trainable_variables, self.model.layers[1].trainable_variables
        with tf.GradientTape(persistent=True) as tape:
            loss = self.compute_loss(x, y, self.model(x, training=True))
        self.first_layer_optimizer.apply(tape.gradient(loss, first), first)
        self.optimizer.apply(tape.gradient(loss, rest), rest)
        return {"loss": loss}


def test_a_second_optimizer_of_a_subclass_is_checkpointed_and_resumed(tmp_path):
    # Only self.optimizer was saved: a resume silently reset the other's moments and iterations.
    def trainer(**kwargs) -> Trainer:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
        return _TwoOptimizers(model, loss="mse", optimizer="sgd", task="regression", seed=0, logdir=tmp_path / "run", diagnose=False, checkpoint_every=1, **kwargs)

    whole = trainer()
    whole.logdir = tmp_path / "whole"
    expected = whole.fit(*_xy(), epochs=3, batch_size=5, verbose=0).history["loss"]
    trainer().fit(*_xy(), epochs=2, batch_size=5, verbose=0)
    resumed = trainer()
    losses = resumed.fit(*_xy(), epochs=3, batch_size=5, verbose=0, resume=True).history["loss"]
    assert int(resumed.first_layer_optimizer.iterations.numpy()) == 12  # 4 steps an epoch, 3 epochs
    np.testing.assert_allclose(losses, expected, rtol=1e-6)
    with pytest.raises(ArgumentError) as info:
        trainer(build_second=False).fit(*_xy(), epochs=4, batch_size=5, verbose=0, resume=True)
    assert info.value.code == "optimizer-not-built" and "self.first_layer_optimizer.build(" in info.value.message



class _OwnState(Trainer):
    """A GAN-like step: noise from a seed generator of its own, a running mean it returns, and
    gradients accumulated over 3 steps in variables of its own (a counter among them)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed_generator = keras.random.SeedGenerator(5)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.noise_tracker = keras.metrics.Mean(name="noise")
        self.accumulated = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.model.trainable_variables]
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False)

    def train_step(self, batch):
        x, y, _ = unpack_batch(batch)
        noise = keras.random.normal(tf.shape(x), stddev=0.5, seed=self.seed_generator)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x, y, self.model(x + noise, training=True))
        for total, gradient in zip(self.accumulated, tape.gradient(loss, variables), strict=True):
            total.assign_add(gradient)
        self.count.assign_add(1)

        def apply() -> tf.Tensor:
            self.optimizer.apply([total.read_value() / 3.0 for total in self.accumulated], variables)
            for total in self.accumulated:
                total.assign(tf.zeros_like(total))
            return tf.constant(True)

        tf.cond(tf.equal(self.count % 3, 0), apply, lambda: tf.constant(False))
        self.loss_tracker.update_state(loss)
        self.noise_tracker.update_state(tf.reduce_mean(noise))
        return {"loss": self.loss_tracker.result(), "noise": self.noise_tracker.result()}


def test_the_state_a_subclass_holds_itself_is_checkpointed_and_resumed(tmp_path):
    # Only the model, the optimizers and the trainer's own trackers were saved: a resumed GAN's
    # seed generator started again (other latent vectors: d_loss 0.4112 against 0.4156 in the
    # guide's GAN), and an accumulator or counter of its own restarted at zero.
    def trainer(logdir: Path) -> Trainer:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
        return _OwnState(model, loss="mse", optimizer="adam", task="regression", seed=0, logdir=logdir, diagnose=False, checkpoint_every=1)

    x, y = _xy(40)  # 5 steps an epoch: an accumulation spans the end of epoch 2
    expected = trainer(tmp_path / "whole").fit(x, y, epochs=4, batch_size=8, verbose=0).history
    trainer(tmp_path / "part").fit(x, y, epochs=2, batch_size=8, verbose=0)
    resumed = trainer(tmp_path / "part")
    history = resumed.fit(x, y, epochs=4, batch_size=8, verbose=0, resume=True).history
    for key in ("loss", "noise"):
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-6, err_msg=key)
    assert int(resumed.count.numpy()) == 20


class _LazyLayer(Trainer):
    """A layer of its own with state (moving statistics), built by the step's first call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = keras.layers.BatchNormalization(momentum=0.5)

    def train_step(self, batch):
        x, y, _ = unpack_batch(batch)
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x, y, self.model(x, training=True))
        self.optimizer.apply(tape.gradient(loss, self.model.trainable_variables), self.model.trainable_variables)
        self.log_scalar("spread", tf.reduce_mean(tf.abs(self.norm(x, training=True))))
        return {"loss": loss}


def test_a_layer_of_its_own_built_by_the_step_is_refused_at_a_resume_not_left_out(tmp_path):
    # A resume reads the checkpoint before the step's first trace builds such a layer: it had no
    # variables then, its saved state was left out of the restore in silence (moving variance
    # 0.909 against the whole run's 0.903), and out of every checkpoint the resumed run wrote.
    def trainer() -> Trainer:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        return _LazyLayer(model, loss="mse", optimizer="sgd", task="regression", seed=0, logdir=tmp_path, diagnose=False, checkpoint_every=1)

    trainer().fit(*_xy(), epochs=2, batch_size=8, verbose=0)  # built by its trace: checkpointed
    with pytest.raises(ArgumentError) as info:
        trainer().fit(*_xy(), epochs=3, batch_size=8, verbose=0, resume=True)
    assert info.value.code == "layer-not-built" and "layer.build(input_shape)" in info.value.message



class _ReturnsItsLoss(Trainer):
    """A step written as for Keras: its raw loss returned, no update_metrics, a value logged."""

    def train_step(self, batch):
        x, y, _ = unpack_batch(batch)
        with tf.GradientTape() as tape:
            y_pred = self.model(x, training=True)
            loss = self.compute_loss(x, y, y_pred)
        self.optimizer.apply(tape.gradient(loss, self.model.trainable_variables), self.model.trainable_variables)
        self.log_scalar("mean_prediction", tf.reduce_mean(y_pred))
        return {"loss": loss, **self.pop_logged_scalars()}


def test_step_averaged_epoch_values_cover_the_whole_epoch_after_a_mid_epoch_resume(tmp_path):
    # Their epoch means came from the steps the resumed process ran: the loss a step of its own
    # returns (Keras-style) and log_scalar's values covered only the steps after the resume.
    from trainkit.callbacks import Callback

    class Terminate(Callback):
        calls = 0

        def on_execution_end(self, step, outputs):
            self.calls += 1
            if self.calls == 4:  # 3 calls an epoch: the first of the second epoch's
                os.kill(os.getpid(), signal.SIGTERM)

    def fit(logdir: Path, **kwargs) -> dict:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
        trainer = _ReturnsItsLoss(model, loss="mse", optimizer="adam", task="regression", seed=0, logdir=logdir, diagnose=False,
                                  steps_per_execution=2, jit_compile=False)
        return trainer.fit(*_xy(40), epochs=3, batch_size=8, verbose=0, **kwargs).history

    resumed, expected = _resumed_and_whole(fit, tmp_path, Terminate())
    for key in ("loss", "mean_prediction"):
        np.testing.assert_allclose(resumed[key], expected[key], rtol=1e-6, err_msg=key)


def test_a_resumed_run_makes_the_xla_choice_of_the_run_it_continues(tmp_path, monkeypatch):
    # jit_compile="auto" weighs XLA's compile time against the planned steps: the resumed fit's
    # remaining epochs alone would choose otherwise, and the run would not continue exactly.
    from trainkit import jit_policy
    from trainkit.callbacks import Callback
    from trainkit.errors import TrainingInterrupted

    x, y = _xy()
    steps_per_epoch = -(-len(x) // 32)
    monkeypatch.setattr(jit_policy, "XLA_REPAY_SECONDS", 5 * steps_per_epoch * 200e-6)  # 6 epochs repay it, 2 do not

    class Terminate(Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 3:
                os.kill(os.getpid(), signal.SIGTERM)

    def trainer():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        return Trainer(model, loss="mse", optimizer="sgd", task="regression", seed=0, diagnose=False, logdir=tmp_path)

    first = trainer()
    with pytest.raises(TrainingInterrupted):
        first.fit(x, y, epochs=6, verbose=0, callbacks=[Terminate()])
    resumed = trainer()
    resumed.fit(x, y, epochs=6, verbose=0, resume=True)
    assert first._train_loop.jit_compile is True and resumed._train_loop.jit_compile is True


def test_a_run_directory_another_fit_trains_into_is_refused(tmp_path):
    # Two resumes of one run at once interleaved their checkpoints and logged every step twice.
    import subprocess
    import sys

    from trainkit import run_lock
    from trainkit.errors import RunDirError

    with run_lock.exclusive(tmp_path), pytest.raises(RunDirError) as info:
        _tiny_trainer(tmp_path).fit(*_xy(), epochs=1, verbose=0)
    assert info.value.code == "run-dir-in-use" and f"(process {os.getpid()})" in info.value.message
    assert not (tmp_path / "checkpoints").exists()  # refused before anything was written
    # Another process holding it, and its lock gone with it (as after kill -9).
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from trainkit import run_lock\n"
                               f"with run_lock.exclusive({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=f"process {holder.pid}"):
            _tiny_trainer(tmp_path).fit(*_xy(), epochs=1, verbose=0)
    finally:
        holder.kill()
        holder.wait()
    assert _tiny_trainer(tmp_path).fit(*_xy(), epochs=1, verbose=0).history["loss"]


def test_a_python_fit_whose_event_files_are_deleted_mid_run_says_so(tmp_path, capsys):
    # The open handles wrote on into deleted files: fit returned as if every event were written,
    # and TensorBoard showed nothing of the run (only the CLI warned, and only for train/).
    from trainkit.callbacks import Callback

    class RemoveTheEvents(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                shutil.rmtree(tmp_path / "train")

    x, y = _xy()
    _tiny_trainer(tmp_path).fit(x, y, epochs=2, verbose=0, validation_data=(x, y), callbacks=[RemoveTheEvents()])
    err = capsys.readouterr().err
    assert f"warning: [run-dir-changed] {tmp_path} lost its TensorBoard events (train/) while the run trained" in err
    _tiny_trainer(tmp_path / "kept").fit(x, y, epochs=2, verbose=0, validation_data=(x, y))
    assert "run-dir-changed" not in capsys.readouterr().err


def test_a_checkpoint_or_event_file_that_cannot_be_written_is_a_coded_error(tmp_path):
    # A full disk or a directory made read-only ended in TensorFlow's PermissionDeniedError or a
    # RuntimeError traceback, with no word about resuming.
    from trainkit.callbacks import Callback
    from trainkit.errors import RunDirError
    from trainkit.writers.tensorboard import RunWriter

    class TakeTheDirectory(Callback):
        def on_epoch_end(self, epoch, logs=None):
            shutil.rmtree(tmp_path / "checkpoints", ignore_errors=True)
            (tmp_path / "checkpoints").write_text("not a directory")

    with pytest.raises(RunDirError) as info:
        _tiny_trainer(tmp_path, checkpoint_every=1).fit(*_xy(), epochs=2, verbose=0, callbacks=[TakeTheDirectory()])
    # The first checkpoint failed: nothing to resume, so the message says to train the run again.
    assert info.value.code == "logdir-unwritable" and "Writing a checkpoint to" in info.value.message and "train the run again" in info.value.message

    def disk_full() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(RunDirError, match=r"Writing TensorBoard events failed: .*No space left on device"):
        RunWriter._surface(disk_full)


@pytest.mark.parametrize("limit_kb", [1, 8])
def test_a_file_size_limit_ends_train_in_one_coded_error_without_a_traceback(tmp_path, limit_kb):
    # A full disk stood in for by `ulimit -f` (writes fail with EFBIG): at 1 KB recipe.yaml could
    # not be written (an OSError traceback, and a run directory with a "failed" report left
    # behind); at 8 KB the event files (TensorFlow's OutOfRangeError, a RuntimeError traceback).
    import resource

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    logdir = tmp_path / "runs"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_kb * 1024, limit_kb * 1024))

    proc = subprocess.run([sys.executable, "-m", "trainkit.cli", "train", str(recipe), "--logdir", str(logdir), "-q"],
                          capture_output=True, text=True, preexec_fn=limit, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "second error" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and errors[0].startswith("error: [logdir-unwritable]") and "File too large" in errors[0], proc.stderr
    if limit_kb == 8:  # the events failed: whether a checkpoint was written by then, the message says what to do
        assert "--resume RUN_DIR" in errors[0] and "train it again if it stopped before its first one" in errors[0], errors[0]
    if limit_kb == 1:  # nothing was trained: nothing is left
        assert not any(p.is_dir() for p in logdir.glob("resumable/*"))


@pytest.mark.parametrize("where", ["first event", "hparams", "end record"])
def test_a_disk_full_as_the_event_files_open_or_the_run_ends_is_a_coded_error(tmp_path, monkeypatch, where):
    # A real full disk (a tmpfs with 10 KB left) failed these writes with TensorFlow's
    # ResourceExhaustedError, which trainkit train let out as a traceback: the train/ events
    # file's first event and the HParams record as fit opened its writer, and the HParams end
    # record of a run that had trained every epoch.
    import trainkit.tensorboard_logging
    from trainkit.errors import RunDirError
    from trainkit.writers.tensorboard import RecordEventWriter

    def disk_full(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, f"{tmp_path}/events.out.tfevents.1; No space left on device")

    owner, name = {"first event": (RecordEventWriter, "add_event"), "hparams": (trainkit.tensorboard_logging, "write_hparams"),
                   "end record": (trainkit.tensorboard_logging, "write_session_end")}[where]
    monkeypatch.setattr(owner, name, disk_full)
    trainer = _tiny_trainer(tmp_path, checkpoint_every=1, hparams={"lr": 0.1})
    with pytest.raises(RunDirError) as info:
        trainer.fit(*_xy(), epochs=2, verbose=0)
    assert info.value.code == "logdir-unwritable" and info.value.message.endswith(("run it again.", "shows no status for it.", "before its first one."))
    assert f"{tmp_path}/events.out.tfevents.1; No space left on device" in info.value.message and trainer.writer is None


def test_a_failed_checkpoint_write_says_which_file_and_why_without_tensorflow_s_op_wrapping(tmp_path, monkeypatch):
    # A checkpoints/ made read-only mid-run: the message carried "{{function_node __wrapped__SaveV2_
    # dtypes_21_device_/job:localhost/replica:0/task:0/device:CPU:0}} ... [Op:SaveV2]" around the
    # one useful part, the file and the reason.
    from trainkit.checkpoint import TrainingCheckpoint
    from trainkit.errors import RunDirError
    from trainkit.runs import storage_error_text

    wrapped = ("{{function_node __wrapped__SaveV2_dtypes_21_device_/job:localhost/replica:0/task:0/device:CPU:0}} "
               f"{tmp_path}/checkpoints/ckpt-3_temp; Permission denied [Op:SaveV2] name: ")

    def refused(self, progress, journal=None):
        raise tf.errors.PermissionDeniedError(None, None, wrapped)

    monkeypatch.setattr(TrainingCheckpoint, "save", refused)
    with pytest.raises(RunDirError) as info:
        _tiny_trainer(tmp_path, checkpoint_every=1).fit(*_xy(), epochs=2, verbose=0)
    assert info.value.message.startswith(f"Writing a checkpoint to {tmp_path / 'checkpoints'} failed: {tmp_path}/checkpoints/ckpt-3_temp; Permission denied. Free")
    assert storage_error_text(OSError(28, "No space left on device")) == "[Errno 28] No space left on device"


def test_early_stopping_s_restore_at_the_end_leaves_the_checkpoint_a_longer_run_resumes_from(tmp_path):
    # The last-epoch restore came before the final checkpoint: a resume with more epochs went on
    # from the best epoch's weights (losses 0.6962, 0.5874 instead of 0.4516, 0.4091).
    from trainkit import EarlyStopping

    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 4)).astype("float32")
    y = (x @ np.ones(4) > 0).astype("float32")

    def fit(logdir, epochs, **kwargs):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
        trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), task="binary", statistics=False,
                          diagnose=False, logdir=logdir, seed=0, histograms_every=None)
        stopper = EarlyStopping(monitor="loss", mode="max", patience=100)  # best at epoch 0: never stops
        history = trainer.fit(x, y, epochs=epochs, batch_size=32, callbacks=[stopper], verbose=0, shuffle=False, **kwargs)
        return history.history["loss"], stopper

    whole, stopper = fit(tmp_path / "a", 6)
    assert stopper.stopped_epoch is None and stopper.restored_epoch == 0
    fit(tmp_path / "b", 4)
    resumed, stopper = fit(tmp_path / "b", 6, resume=True)
    np.testing.assert_allclose(resumed, whole, rtol=1e-6)
    assert stopper.restored_epoch == 0


def test_an_ema_optimizer_s_averages_do_not_replace_the_weights_early_stopping_restored(tmp_path):
    # Keras averages first and restores the best epoch over the averages; trainkit did it the other
    # way round, and restored_epoch claimed weights the model no longer held.
    from trainkit import EarlyStopping
    from trainkit.callbacks import Callback

    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = (x @ np.ones(4) > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    kept = {}

    class KeepFirstEpoch(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                kept["weights"] = model.get_weights()

    trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.Adam(0.05, use_ema=True), task="binary",
                      diagnose=False, logdir=None, seed=0)
    stopper = EarlyStopping(monitor="loss", mode="max", patience=100)
    trainer.fit(x, y, epochs=3, batch_size=32, callbacks=[KeepFirstEpoch(), stopper], verbose=0, shuffle=False)
    assert stopper.restored_epoch == 0
    for got, best in zip(model.get_weights(), kept["weights"], strict=True):
        np.testing.assert_array_equal(got, best)


class _KerasGuideSteps(Trainer):
    """The Keras guide's step: a metric of its own, whose running result it returns as the loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def train_step(self, batch):
        x, y, _ = unpack_batch(batch)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.mean_squared_error(y, self.model(x, training=True)))
        self.optimizer.apply(tape.gradient(loss, self.model.trainable_variables), self.model.trainable_variables)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


class _TerminateInSecondEpoch(Callback):
    """Sends SIGTERM at step 15, in the second epoch of a fit of 10 steps an epoch."""

    def on_execution_end(self, first_step, outputs):
        if first_step < 15 <= first_step + outputs.steps:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_step_s_own_running_metric_resumes_mid_epoch_where_it_stood(tmp_path):
    # Its totals were not in the checkpoint: the resumed epoch's value was the mean of the batches
    # after the resume only (6.19 where the uninterrupted run logged 5.91).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype("float32")
    y = (x @ np.array([[1.0], [2.0], [-1.0]])).astype("float32")

    def fit(logdir, **kwargs):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        trainer = _KerasGuideSteps(model, loss="mse", optimizer=keras.optimizers.SGD(0.01), task="regression", seed=0, diagnose=False,
                                   jit_compile=False, logdir=logdir, steps_per_execution=2)
        return trainer.fit(x, y, epochs=3, batch_size=20, shuffle=False, verbose=0, **kwargs).history["loss"]

    resumed, expected = _resumed_and_whole(fit, tmp_path, _TerminateInSecondEpoch())
    np.testing.assert_allclose(resumed, expected, rtol=1e-6)


def test_metrics_that_make_their_variables_at_their_first_update_resume_mid_epoch(tmp_path):
    # F1Score and R2Score make their accumulators at their first update_state: a resume read the
    # checkpoint before any step had run, and was refused ("it holds 17 metrics variables, this
    # run has 9"). Their mid-epoch totals come back too: the History is the uninterrupted run's.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype("float32")
    y = (x[:, :1] + 0.5 * x[:, 1:2] > 0).astype("float32")

    def fit(logdir, **kwargs):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
        metrics = [keras.metrics.F1Score(average="macro", threshold=0.5, name="f1"), keras.metrics.R2Score(name="r2")]
        trainer = Trainer(model, loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), task="binary", metrics=metrics, seed=0,
                          diagnose=False, jit_compile=False, logdir=logdir, steps_per_execution=2)
        return trainer.fit(x, y, epochs=3, batch_size=20, shuffle=False, verbose=0, **kwargs).history

    resumed, expected = _resumed_and_whole(fit, tmp_path, _TerminateInSecondEpoch())
    for key in ("loss", "f1", "r2"):
        np.testing.assert_allclose(resumed[key], expected[key], rtol=1e-6, err_msg=key)


class _Seeded(Trainer):
    """A subclass that keeps state of its own (a GAN's latent seed generator)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed_generator = keras.random.SeedGenerator(3)


@pytest.mark.parametrize(("writer", "reader", "says"), [
    (Trainer, _Seeded, "none of the state a Trainer subclass keeps itself"),  # an older trainkit's checkpoint, or another class
    (_Seeded, Trainer, "it holds own variables this run has none of"),  # restored, that state was dropped in silence
])
def test_a_checkpoint_with_or_without_a_subclass_s_own_state_is_refused_by_the_other_kind(tmp_path, writer, reader, says):
    def trainer(cls):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        return cls(model, loss="mse", optimizer="adam", task="regression", seed=0, logdir=tmp_path, diagnose=False, checkpoint_every=1)

    trainer(writer).fit(*_xy(40), epochs=1, verbose=0)
    with pytest.raises(RecipeError) as info:
        trainer(reader).fit(*_xy(40), epochs=2, verbose=0, resume=True)
    assert info.value.code == "resume-mismatch" and says in info.value.message


class _Counters(Trainer):
    """Two same-shape variables of its own that its step moves apart: ``self.a`` by 1 a step,
    ``self.b`` by 10, and a dict of its own metrics (keys a checkpoint must escape)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.a = tf.Variable(0.0, trainable=False)
        self.b = tf.Variable(0.0, trainable=False)
        self.trackers = {"x.y/z": keras.metrics.Mean(name="m")}

    def train_step(self, batch):
        logs = super().train_step(batch)
        self.a.assign_add(1.0)
        self.b.assign_add(10.0)
        self.trackers["x.y/z"].update_state(self.b)
        return logs


class _CountersRenamed(Trainer):
    """:class:`_Counters` with its attributes renamed so that their order by name swaps: ``y`` is
    ``a`` and ``x`` is ``b``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.y = tf.Variable(0.0, trainable=False)
        self.x = tf.Variable(0.0, trainable=False)
        self.trackers = {"x.y/z": keras.metrics.Mean(name="m")}

    def train_step(self, batch):
        logs = super().train_step(batch)
        self.y.assign_add(1.0)
        self.x.assign_add(10.0)
        self.trackers["x.y/z"].update_state(self.x)
        return logs


def test_a_subclass_s_own_state_resumes_into_the_attributes_it_came_from(tmp_path):
    trainer = _tiny_trainer(tmp_path, _Counters, checkpoint_every=1)
    trainer.fit(*_xy(), epochs=1, batch_size=5, verbose=0)
    resumed = _tiny_trainer(tmp_path, _Counters, checkpoint_every=1)
    resumed.fit(*_xy(), epochs=2, batch_size=5, verbose=0, resume=True)
    assert (float(resumed.a.numpy()), float(resumed.b.numpy())) == (8.0, 80.0)  # 4 steps an epoch
    assert float(resumed.trackers["x.y/z"].count.numpy()) == 8.0


def test_a_subclass_s_own_state_under_renamed_attributes_is_refused_not_swapped(tmp_path):
    # Keyed by position (the attributes in the order of their names: a, b, trackers there;
    # trackers, x, y here), every variable went into another's place in silence: x resumed at 100
    # (the tracker's total) where b stood at 40, y at 4 (its count), the tracker at a and b.
    _tiny_trainer(tmp_path, _Counters, checkpoint_every=1).fit(*_xy(), epochs=1, batch_size=5, verbose=0)
    renamed = _tiny_trainer(tmp_path, _CountersRenamed, checkpoint_every=1)
    with pytest.raises(RecipeError) as info:
        renamed.fit(*_xy(), epochs=2, batch_size=5, verbose=0, resume=True)
    assert info.value.code == "resume-mismatch"
    assert "missing from this run: self.a, self.b" in info.value.message
    assert "new in this run: self.x, self.y" in info.value.message
    assert "start a new run" in info.value.message
    assert (float(renamed.x.numpy()), float(renamed.y.numpy())) == (0.0, 0.0)  # nothing restored


def test_a_checkpoint_that_keeps_a_subclass_s_own_state_by_position_is_restored_as_before(tmp_path, capsys):
    # trainkit before own state was keyed by attribute wrote it as one list, the attributes in the
    # order of their names: such a run still resumes (as it did), with a warning, and goes on by name.
    trainer = _tiny_trainer(tmp_path, _Counters, checkpoint_every=1)
    trainer.fit(*_xy(), epochs=1, batch_size=5, verbose=0)
    prefix = str(tmp_path / "checkpoints" / "ckpt-4")
    groups = trainer._checkpoint._groups  # model, optimizer and metrics: laid out as they were
    own = [trainer.a, trainer.b, *(v.value for v in trainer.trackers["x.y/z"].variables)]
    legacy = tf.train.Checkpoint(**groups, own=own, global_step=trainer.global_step)
    legacy.save_counter.assign(1)  # written by the manager's save, as trainkit's are
    legacy.write(prefix)
    assert sorted(k for k in tf.train.load_checkpoint(prefix).get_variable_to_shape_map() if k.startswith("own/")) == [
        f"own/{i}/.ATTRIBUTES/VARIABLE_VALUE" for i in range(4)]

    resumed = _tiny_trainer(tmp_path, _Counters, checkpoint_every=1)
    resumed.fit(*_xy(), epochs=2, batch_size=5, verbose=0, resume=True)
    assert (float(resumed.a.numpy()), float(resumed.b.numpy())) == (8.0, 80.0)
    assert float(resumed.trackers["x.y/z"].count.numpy()) == 8.0
    assert "warning: [checkpoint-own-by-position] ckpt-4 was written by an older trainkit" in capsys.readouterr().err
    saved = tf.train.load_checkpoint(str(tmp_path / "checkpoints" / "ckpt-8")).get_variable_to_shape_map()
    assert "own/a/0/.ATTRIBUTES/VARIABLE_VALUE" in saved and "own/0/.ATTRIBUTES/VARIABLE_VALUE" not in saved
    again = _tiny_trainer(tmp_path, _Counters, checkpoint_every=1)
    again.fit(*_xy(), epochs=3, batch_size=5, verbose=0, resume=True)
    assert float(again.b.numpy()) == 120.0 and "checkpoint-own-by-position" not in capsys.readouterr().err


def _own_checkpoint(directory: Path, own: dict[str, list[list[int]]]) -> TrainingCheckpoint:
    """A checkpoint writer of a one-variable model and own state of the given shapes, by
    attribute path then index."""
    variables = {path: {str(i): tf.Variable(tf.zeros(shape)) for i, shape in enumerate(shapes)} for path, shapes in own.items()}
    return TrainingCheckpoint(directory, model_variables=[tf.Variable([1.0, 2.0])], optimizer_variables=[], metric_variables=[],
                              global_step=tf.Variable(1, dtype=tf.int64), own_variables=variables)


@pytest.mark.parametrize(("here", "says"), [
    ({"a": [[]], "aa": [[]], "b": [[2]]}, "missing from this run: none; new in this run: self.aa"),  # added, before b by name
    ({"a": [[]]}, "missing from this run: self.b; new in this run: none"),
    ({"a": [[]], "b_renamed": [[2]]}, "missing from this run: self.b; new in this run: self.b_renamed"),
    ({"a": [[]], "b": [[3]]}, "own variable Variable:0 (self.b) has shape [2] there, [3] here"),
    ({"a": [[], []], "b": [[2]]}, "self.a holds 1 variables there, 2 here"),
])
def test_a_checkpoint_of_a_subclass_s_own_state_is_refused_by_other_attributes(tmp_path, here, says):
    _own_checkpoint(tmp_path, {"a": [[]], "b": [[2]]}).save({"epoch": 1})
    with pytest.raises(RecipeError) as info:
        _own_checkpoint(tmp_path, here).restore_latest()
    assert info.value.code == "resume-mismatch" and says in info.value.message and "start a new run" in info.value.message


def test_a_second_error_without_text_is_still_printed_beside_the_first(capsys):
    # Only the same failure again (a full disk failing the writer's close as it failed the write)
    # is left unprinted; two errors without text (Ctrl-C's KeyboardInterrupt, then a bare
    # ValueError()) matched as "the same" and the second was lost.
    from trainkit.callbacks import CallbackList

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    trainer = Trainer(model, loss="mse", optimizer="sgd", task="regression", logdir=None)

    def failing_close() -> None:
        raise ValueError()

    trainer._close_writer = failing_close
    trainer._end_training(CallbackList([], trainer), began=False, in_flight=KeyboardInterrupt())
    assert "a second error while ending a run that had already failed: ValueError" in capsys.readouterr().err
    trainer._end_training(CallbackList([], trainer), began=False, in_flight=ValueError())
    assert "second error" not in capsys.readouterr().err  # the same failure again: printed once


def test_a_run_killed_while_recording_its_end_gets_its_end_record_on_resume(tmp_path, monkeypatch):
    # The last checkpoint was marked ended before the HParams end record was written: a kill in
    # between left a resume nothing to do, and the finished run no status in TensorBoard for good.
    import trainkit.tensorboard_logging

    class Killed(BaseException):
        pass

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(trainkit.tensorboard_logging, "write_session_end", killed)
    with pytest.raises(Killed):
        _tiny_trainer(tmp_path, checkpoint_every=1, hparams={"lr": 0.1}).fit(*_xy(), epochs=2, verbose=0)
    monkeypatch.undo()
    assert not list(tmp_path.glob("*.hparams_end"))
    _tiny_trainer(tmp_path, checkpoint_every=1, hparams={"lr": 0.1}).fit(*_xy(), epochs=2, verbose=0, resume=True)
    assert len(list(tmp_path.glob("*.hparams_end"))) == 1


def test_a_diagnose_probing_the_run_lock_does_not_refuse_a_fit_starting_then(tmp_path, monkeypatch):
    # trainkit diagnose holds the lock shared for an instant (training_process); a fit taking it
    # in that instant was refused as run-dir-in-use, naming no process that trains there.
    import fcntl

    from trainkit import run_lock

    real_flock, probes = fcntl.flock, []

    def probed_first(fd, operation):
        if operation & fcntl.LOCK_EX and not probes:
            probes.append(fd)
            raise BlockingIOError  # the probe's shared hold, then gone
        return real_flock(fd, operation)

    monkeypatch.setattr(run_lock.fcntl, "flock", probed_first)
    monkeypatch.setattr(run_lock.time, "sleep", lambda seconds: None)
    with run_lock.exclusive(tmp_path):
        assert run_lock.training_process(tmp_path) == os.getpid()
    assert probes and run_lock.training_process(tmp_path) is None


def test_a_failed_first_checkpoint_says_to_train_again_and_a_later_one_to_resume(tmp_path, monkeypatch):
    # A full disk at the run's first checkpoint (ulimit -f: 1 epoch trained, checkpoints/ holding
    # only ckpt-8_temp) said "continue the run from its last good checkpoint (--resume RUN_DIR)",
    # and that resume answered "Resume a run directory that trained at least one epoch".
    from trainkit.checkpoint import TrainingCheckpoint
    from trainkit.errors import RunDirError

    real_save = TrainingCheckpoint.save

    def full_after(kept):
        saves = []

        def save(self, progress, journal=None):
            saves.append(progress["epoch"])
            if len(saves) > kept:
                raise tf.errors.ResourceExhaustedError(None, None, f"{self.directory}/ckpt_temp; No space left on device")
            return real_save(self, progress, journal)
        return save

    monkeypatch.setattr(TrainingCheckpoint, "save", full_after(0))
    with pytest.raises(RunDirError) as first:
        _tiny_trainer(tmp_path / "first", checkpoint_every=1).fit(*_xy(), epochs=2, verbose=0)
    assert first.value.code == "logdir-unwritable" and "train the run again" in first.value.message and "--resume" not in first.value.message
    monkeypatch.setattr(TrainingCheckpoint, "save", real_save)
    with pytest.raises(RunDirError) as resumed:
        _tiny_trainer(tmp_path / "first", checkpoint_every=1).fit(*_xy(), epochs=2, verbose=0, resume=True)
    assert resumed.value.code == "no-checkpoint" and "Train it again without --resume" in resumed.value.message
    assert "trained at least one epoch" not in resumed.value.message

    monkeypatch.setattr(TrainingCheckpoint, "save", full_after(1))
    with pytest.raises(RunDirError) as later:
        _tiny_trainer(tmp_path / "later", checkpoint_every=1).fit(*_xy(), epochs=3, verbose=0)
    assert later.value.code == "logdir-unwritable" and "last good checkpoint (--resume RUN_DIR" in later.value.message


def _logistic_rows() -> tuple[np.ndarray, np.ndarray]:
    """64 rows of 4 features and 0/1 labels for the tests of trainers sharing a logdir below."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 4)).astype("float32"), (rng.normal(size=(64, 1)) > 0).astype("float32")


def _logistic_trainer(logdir: Path) -> Trainer:
    """A fresh logistic regression's trainer into ``logdir``, a checkpoint each epoch: a notebook cell run again."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    return Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, logdir=logdir, checkpoint_every=1,
                   diagnose=False, jit_compile=False)


def test_a_new_trainer_in_a_logdir_holding_another_run_is_refused_and_its_own_second_fit_is_not(tmp_path):
    # Re-running a notebook cell: the new run's steps started at 0 beside the old run's, its
    # ckpt-4 next to the old ckpt-12 (listed as the older one) and every event step twice.
    from trainkit.errors import RunDirError

    x, y = _logistic_rows()
    trainer = functools.partial(_logistic_trainer, tmp_path)

    first = trainer()
    first.fit(x, y, epochs=2, verbose=0)
    first.fit(x, y, epochs=1, verbose=0)  # its own second fit goes on with its steps
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    with pytest.raises(RunDirError) as info:
        trainer().fit(x, y, epochs=2, verbose=0)
    assert info.value.code == "logdir-has-run" and "resume=True" in info.value.message and "ckpt-6" in info.value.message
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before  # nothing touched
    resumed = trainer()
    resumed.fit(x, y, epochs=2, verbose=0, resume=True)  # what the message offers works


def test_a_logdir_set_between_fits_is_a_new_run_there(tmp_path):
    # trainer.logdir = ... between fits moved only the events: the second fit's ckpt-6 and its
    # diagnosis journal went on into the old logdir, beside a run directory holding its events alone.
    from trainkit.errors import RunDirError

    x, y = _logistic_rows()
    first = _logistic_trainer(tmp_path / "a")
    first.fit(x, y, epochs=2, verbose=0)
    before = sorted(p.name for p in (tmp_path / "a").rglob("*"))
    first.logdir = str(tmp_path / "b")  # a str, as the argument takes
    first.fit(x, y, epochs=1, verbose=0)
    assert sorted(p.name for p in (tmp_path / "a").rglob("*")) == before
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").glob("ckpt-*.index")) == ["ckpt-6.index"]
    assert list((tmp_path / "b" / "train").glob("events.out.tfevents.*"))
    _logistic_trainer(tmp_path / "b").fit(x, y, epochs=2, verbose=0, resume=True)  # a run of its own there
    # Refused as a new trainer's fit is, in a logdir holding another run.
    _logistic_trainer(tmp_path / "c").fit(x, y, epochs=1, verbose=0)
    first.logdir = tmp_path / "c"
    with pytest.raises(RunDirError) as info:
        first.fit(x, y, epochs=1, verbose=0)
    assert info.value.code == "logdir-has-run" and "ckpt-2" in info.value.message


def test_a_logdir_set_again_spelt_another_way_goes_on_with_its_run(tmp_path, monkeypatch):
    # The logdir change was judged by the path's spelling: the trainer's own run directory set
    # again as an absolute path (it was made with a relative one) was taken for a new run there,
    # and its fit refused as "holds another run's checkpoints" (logdir-has-run).
    monkeypatch.chdir(tmp_path)
    x, y = _logistic_rows()
    trainer = _logistic_trainer("run")
    trainer.fit(x, y, epochs=2, verbose=0)
    trainer.logdir = tmp_path / "run"
    trainer.fit(x, y, epochs=1, verbose=0)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("ckpt-*.index")) == ["ckpt-2.index", "ckpt-4.index", "ckpt-6.index"]


def test_a_trainer_s_own_second_fit_is_refused_once_another_trainer_trained_its_run_further(tmp_path):
    # Notebook cells: `first` trains, a second cell resumes the run with a new trainer and trains
    # it further (ckpt-6 -> ckpt-14), then the first cell's fit runs again. It went on from its
    # own step 6: steps 6-13 were logged a second time beside the other trainer's, and its ckpt-14
    # overwrote the other trainer's without a word.
    from trainkit.errors import RunDirError

    x, y = _logistic_rows()
    trainer = functools.partial(_logistic_trainer, tmp_path)

    first = trainer()
    first.fit(x, y, epochs=2, verbose=0)
    first.fit(x, y, epochs=1, verbose=0)  # its own second fit, alone in the run: goes on
    assert first.step == 6
    trainer().fit(x, y, epochs=5, verbose=0, resume=True)  # the second fit's 1 epoch, 4 more: ckpt-14
    files = {p.name: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file() and p.name != ".trainkit.lock"}
    with pytest.raises(RunDirError) as info:
        first.fit(x, y, epochs=2, verbose=0)
    assert info.value.code == "logdir-has-run" and "ckpt-14" in info.value.message and "step 6" in info.value.message
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file() and p.name != ".trainkit.lock"} == files


def test_a_trainer_s_resume_finds_the_checkpoints_another_trainer_saved_since(tmp_path):
    # A trainer's checkpoint manager listed the checkpoints it had seen: after another trainer (a
    # notebook cell resuming the run) saved newer ones, its resume restored its own older ckpt-4
    # in silence and trained epoch 3 again over the other's ckpt-6, or, once the other's saves had
    # deleted those, was refused "Nothing to resume: no complete checkpoint".
    from trainkit.callbacks import Callback

    x, y = _logistic_rows()
    trainer = functools.partial(_logistic_trainer, tmp_path)

    class Epochs(Callback):
        ran = 0

        def on_epoch_end(self, epoch, logs):
            Epochs.ran += 1

    first = trainer()
    first.fit(x, y, epochs=2, verbose=0)  # ckpt-2, ckpt-4
    other = trainer()
    other.fit(x * 2, y, epochs=3, verbose=0, resume=True)  # ckpt-6, from other rows
    first.fit(x, y, epochs=3, verbose=0, resume=True, callbacks=[Epochs()])
    assert Epochs.ran == 0 and first.step == 6  # the finished run: nothing left to train
    for mine, theirs in zip(first.model.get_weights(), other.model.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)

    other.fit(x * 2, y, epochs=6, verbose=0, resume=True)  # ckpt-8..12: first's ckpt-2, -4 are gone
    assert not (tmp_path / "checkpoints" / "ckpt-4.index").exists()
    first.fit(x, y, epochs=7, verbose=0, resume=True, callbacks=[Epochs()])
    assert Epochs.ran == 1 and first.step == 14


def test_a_new_trainer_in_a_logdir_of_a_run_stopped_before_its_first_checkpoint_is_refused(tmp_path):
    # A notebook cell run again after a run that a callback's error stopped in its first 30 s
    # (no checkpoint yet): the new run logged steps 0.. in a second event file beside the old
    # run's steps 0.., and TensorBoard showed each step twice.
    from trainkit.callbacks import Callback, EarlyStopping
    from trainkit.errors import RunDirError

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), (rng.normal(size=(64, 1)) > 0).astype("float32")

    class Fails(Callback):
        def on_epoch_end(self, epoch, logs):
            raise RuntimeError("a bug in the callback")

    def trainer(logdir: Path, checkpoint_every: int | str = "auto") -> Trainer:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
        return Trainer(model, loss="binary_crossentropy", optimizer="sgd", task="binary", seed=0, logdir=logdir, diagnose=False,
                       jit_compile=False, checkpoint_every=checkpoint_every)

    with pytest.raises(RuntimeError):
        trainer(tmp_path / "failed").fit(x, y, epochs=3, verbose=0, callbacks=[Fails()])
    assert not (tmp_path / "failed" / "checkpoints").exists()
    events = sorted((tmp_path / "failed" / "train").iterdir())
    with pytest.raises(RunDirError) as info:
        trainer(tmp_path / "failed").fit(x, y, epochs=2, verbose=0)
    assert info.value.code == "logdir-has-run" and events[0].name in info.value.message
    assert sorted((tmp_path / "failed" / "train").iterdir()) == events  # nothing logged beside it

    # checkpoint_every=0 keeps none either; the trainer's own second fit still goes on.
    kept = trainer(tmp_path / "unkept", checkpoint_every=0)
    kept.fit(x, y, epochs=1, verbose=0)
    kept.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(RunDirError, match="logdir-has-run"):
        trainer(tmp_path / "unkept", checkpoint_every=0).fit(x, y, epochs=1, verbose=0)

    # One that failed while its step was traced trained nothing: a new trainer may use its logdir.
    with pytest.raises(Exception, match="bad-monitor"):
        trainer(tmp_path / "untrained").fit(x, y, epochs=1, verbose=0, callbacks=[EarlyStopping(monitor="val_los")])
    trainer(tmp_path / "untrained").fit(x, y, epochs=1, verbose=0)


def test_a_checkpoint_write_that_fails_leaves_no_temporary_directory(tmp_path):
    # A full disk (here a file-size limit) left checkpoints/ckpt-N_temp/ behind: TensorFlow writes
    # the shards there first, and a dead copy of the checkpoint stayed in the run for good.
    import resource

    big = TrainingCheckpoint(tmp_path, model_variables=[tf.Variable(tf.zeros([50_000]))], optimizer_variables=[], metric_variables=[],
                             global_step=tf.Variable(7, dtype=tf.int64))
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing pytest
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, limits[1]))
    try:
        with pytest.raises(tf.errors.OpError):
            big.save({"epoch": 1})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert not list(tmp_path.glob("*_temp")) and big.latest() is None
    assert big.save({"epoch": 1}).name == "ckpt-7"  # the next write, with room, works as before


def test_a_callback_state_a_checkpoint_cannot_keep_is_a_coded_error_naming_the_callback(tmp_path):
    # A best value kept as np.float32 failed the run at its first checkpoint with json's bare
    # "TypeError: Object of type float32 is not JSON serializable", naming no callback.
    from trainkit.callbacks import Callback

    class KeepsBest(Callback):
        def get_state(self):
            return {"best": np.float32(0.5)}

    with pytest.raises(ArgumentError) as info:
        _tiny_trainer(tmp_path, checkpoint_every=1).fit(*_xy(), epochs=2, verbose=0, callbacks=[KeepsBest()])
    assert info.value.code == "bad-callback" and info.value.message.startswith("KeepsBest.get_state() returned what a checkpoint cannot keep")
    assert "float32" in info.value.message


@pytest.mark.parametrize("checkpoint_every", [0, 1])
def test_a_failed_run_s_tensorboard_report_says_resume_only_when_it_has_a_checkpoint(tmp_path, checkpoint_every):
    # An error in a run's first 30 s (before its first checkpoint) left a report in TensorBoard's
    # Text tab saying "Resume it to have them", and the resume then found no checkpoint.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class Fail(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("callback broke")

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    trainer = Trainer(model, loss="mse", optimizer="sgd", task="regression", seed=0, logdir=tmp_path, checkpoint_every=checkpoint_every)
    with pytest.raises(RuntimeError, match="callback broke"):
        trainer.fit(*_xy(), epochs=3, batch_size=10, verbose=0, callbacks=[Fail()])
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"tensors": 0}).Reload()
    report = events.Tensors("report/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert report.startswith("**Unfinished**: the run was ended by an error")
    if checkpoint_every:
        assert "Resume it to have them." in report and "cannot be resumed" not in report
    else:
        assert "Resume it" not in report and "cannot be resumed: train it again" in report
